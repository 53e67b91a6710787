//! Golden interaction scripts: `tests/testdata/*.txt` drive a small cluster step by step and
//! record every message delivered and every state reached. A change in behaviour shows up as
//! a diff in these files.
//!
//! Format: blocks separated by blank lines. Each block is optional `#` comment lines, one
//! command line, a `----` line, and the recorded output. Run with `REWRITE=1` to regenerate
//! the outputs after an intended change, then review the diff:
//!
//! ```text
//! REWRITE=1 cargo test -p flotilla-raft --test interaction
//! ```
//!
//! Commands:
//! - `cluster n=3 [seed=1] [pre_vote=true] [check_quorum=true] [chunk=BYTES] [inflight=N]
//!   [retry=TICKS]`: a fresh cluster (snapshot chunk size, chunks in flight, retry interval)
//! - `campaign ID`, `tick ID [COUNT]`, `tick-all [COUNT]`: timers (output stays queued)
//! - `deliver`: deliver queued messages until none is left, printing each (`x` = dropped);
//!   `deliver-some COUNT`: deliver only the first COUNT
//! - `compact ID [INDEX]`: snapshot ID's state machine at INDEX (default: applied) and
//!   compact its log through it
//! - `run ROUNDS`: ROUNDS of tick-all then deliver, printing only role and term changes
//! - `propose ID DATA`: a proposal and its result (the messages stay queued)
//! - `partition 1 2 | 3`, `isolate ID`, `heal`, `crash ID`, `restart ID`
//! - `status`: one line per node (`first=` once compacted; a leader's `snap[ID]=INDEX:ACKED/SIZE`
//!   for each snapshot transfer); `log ID`: that node's entries
//! - `add-node ID`: start an empty node; `conf ID add-voter|add-learner|promote|remove N` or
//!   `conf ID joint V1,V2,.. [L1,..]`: a membership change proposed on ID; `members ID`
//! - `transfer FROM TO`: leadership transfer; `read ID CTX`: a read-index request;
//!   `reads ID`: the reads served and failed on that node

use std::fmt::Write as _;
use std::path::Path;

use flotilla_raft::testkit::Cluster;
use flotilla_raft::{ConfChange, Config, LogIndex, LogStore, NodeId, Role};

struct Script {
    cluster: Option<Cluster>,
}

fn arg<'a>(args: &'a [&'a str], key: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn id(s: &str) -> NodeId {
    NodeId(s.parse().unwrap_or_else(|_| panic!("bad node id {s:?}")))
}

impl Script {
    fn c(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("the script starts with a `cluster` command")
    }

    fn run(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = (words[0], &words[1..]);
        let mut out = String::new();
        match cmd {
            "cluster" => {
                let n: u64 = arg(args, "n").unwrap_or("3").parse().unwrap();
                let seed: u64 = arg(args, "seed").unwrap_or("1").parse().unwrap();
                let pre_vote = arg(args, "pre_vote").unwrap_or("true") == "true";
                let check_quorum = arg(args, "check_quorum").unwrap_or("true") == "true";
                let chunk: u64 = arg(args, "chunk").unwrap_or("1048576").parse().unwrap();
                let inflight: u64 = arg(args, "inflight").unwrap_or("4").parse().unwrap();
                let retry: u32 = arg(args, "retry").unwrap_or("30").parse().unwrap();
                self.cluster = Some(Cluster::with_config(n, |id| Config {
                    rng_seed: seed * 100 + id.0,
                    pre_vote,
                    check_quorum,
                    snapshot_chunk_bytes: chunk,
                    snapshot_chunks_inflight: inflight,
                    snapshot_retry_ticks: retry,
                    ..Config::new(id)
                }));
                out.push_str("ok");
            }
            "campaign" => {
                self.c().campaign(id(args[0]));
                out.push_str(&self.status_line(id(args[0])));
            }
            "tick" => {
                let count: u32 = args.get(1).map_or(1, |c| c.parse().unwrap());
                for _ in 0..count {
                    self.c().tick(id(args[0]));
                }
                out.push_str(&self.status_line(id(args[0])));
            }
            "tick-all" => {
                let count: u32 = args.first().map_or(1, |c| c.parse().unwrap());
                for _ in 0..count {
                    self.c().tick_all();
                }
                out.push_str(&format!("{} queued", self.c().queued().len()));
            }
            "deliver-some" => {
                // Delivers only the first COUNT queued messages (and what they trigger stays
                // queued behind the rest).
                let count: usize = args[0].parse().unwrap();
                for _ in 0..count {
                    if let Some((m, ok)) = self.c().deliver_one() {
                        let _ = writeln!(out, "{}{m:?}", if ok { "" } else { "x " });
                    }
                }
                let _ = write!(out, "{} queued", self.c().queued().len());
            }
            "compact" => {
                let node = id(args[0]);
                let index = match args.get(1) {
                    Some(i) => LogIndex(i.parse().unwrap()),
                    None => self.c().node(node).status().applied,
                };
                match self.c().compact(node, index) {
                    Ok(()) => {
                        let n = self.c().node(node);
                        let info = n.store().snapshot().expect("a snapshot was just saved");
                        out.push_str(&format!(
                            "ok snapshot={} size={} first={}",
                            info.meta.id(),
                            info.size,
                            n.first_index().0
                        ));
                    }
                    Err(e) => out.push_str(&format!("error: {e}")),
                }
            }
            "deliver" => {
                let delivered = self.c().deliver_all();
                for (m, ok) in &delivered {
                    let _ = writeln!(out, "{}{m:?}", if *ok { "" } else { "x " });
                }
                if delivered.is_empty() {
                    out.push_str("nothing queued");
                }
            }
            "run" => {
                let rounds: u32 = args[0].parse().unwrap();
                let mut last = self.roles();
                for r in 1..=rounds {
                    self.c().tick_all();
                    self.c().deliver_all();
                    let now = self.roles();
                    for (before, after) in last.iter().zip(&now) {
                        if before != after {
                            let _ =
                                writeln!(out, "round {r}: {} {} -> {}", after.0, before.1, after.1);
                        }
                    }
                    last = now;
                }
                if out.is_empty() {
                    out.push_str("no role changes");
                }
            }
            "propose" => {
                let r = self.c().propose(id(args[0]), args[1]);
                match r {
                    Ok(e) => out.push_str(&format!("ok index={} term={}", e.index.0, e.term.0)),
                    Err(e) => out.push_str(&format!("error: {e}")),
                }
            }
            "partition" => {
                let groups: Vec<Vec<u64>> = args
                    .split(|a| *a == "|")
                    .map(|g| g.iter().map(|s| s.parse().unwrap()).collect())
                    .collect();
                let refs: Vec<&[u64]> = groups.iter().map(Vec::as_slice).collect();
                self.c().partition(&refs);
                out.push_str("ok");
            }
            "transfer" => match self.c().transfer_leader(id(args[0]), id(args[1])) {
                Ok(()) => out.push_str("ok"),
                Err(e) => out.push_str(&format!("error: {e}")),
            },
            "read" => match self.c().read_index(id(args[0]), args[1]) {
                Ok(()) => out.push_str("ok"),
                Err(e) => out.push_str(&format!("error: {e}")),
            },
            "reads" => {
                let c = self.c();
                let served: Vec<String> = c
                    .reads(id(args[0]))
                    .iter()
                    .map(|(ctx, index, applied)| {
                        format!("{ctx}@{} (applied {})", index.0, applied.0)
                    })
                    .collect();
                let failed = c.aborted_reads(id(args[0])).join(", ");
                out.push_str(&format!("served: [{}] failed: [{failed}]", served.join(", ")));
            }
            "add-node" => {
                self.c().add_node(id(args[0]));
                out.push_str("ok");
            }
            "conf" => {
                let ids = |list: &[&str]| -> std::collections::BTreeSet<NodeId> {
                    list.iter().filter(|s| !s.is_empty()).map(|s| id(s)).collect()
                };
                let change = match args[1] {
                    "add-voter" => ConfChange::AddVoter(id(args[2])),
                    "add-learner" => ConfChange::AddLearner(id(args[2])),
                    "promote" => ConfChange::PromoteLearner(id(args[2])),
                    "remove" => ConfChange::Remove(id(args[2])),
                    "joint" => {
                        let voters: Vec<&str> = args[2].split(',').collect();
                        let learners: Vec<&str> =
                            args.get(3).map_or(vec![], |l| l.split(',').collect());
                        ConfChange::EnterJoint { voters: ids(&voters), learners: ids(&learners) }
                    }
                    other => panic!("unknown change {other:?}"),
                };
                match self.c().propose_conf_change(id(args[0]), change) {
                    Ok(e) => out.push_str(&format!("ok index={} term={}", e.index.0, e.term.0)),
                    Err(e) => out.push_str(&format!("error: {e}")),
                }
            }
            "members" => {
                let m = self.c().node(id(args[0])).membership().clone();
                let show = |s: &std::collections::BTreeSet<NodeId>| {
                    s.iter().map(|i| i.0.to_string()).collect::<Vec<_>>().join(",")
                };
                out.push_str(&format!(
                    "voters={} outgoing={} learners={}",
                    show(m.voters()),
                    show(m.outgoing_voters()),
                    show(m.learners())
                ));
            }
            "isolate" => {
                self.c().isolate(id(args[0]));
                out.push_str("ok");
            }
            "heal" => {
                self.c().heal();
                out.push_str("ok");
            }
            "crash" => {
                self.c().crash(id(args[0]));
                out.push_str("ok");
            }
            "restart" => {
                self.c().restart(id(args[0]));
                out.push_str(&self.status_line(id(args[0])));
            }
            "status" => {
                let ids = self.c().ids();
                let lines: Vec<String> = ids.iter().map(|i| self.status_line(*i)).collect();
                out.push_str(&lines.join("\n"));
            }
            "log" => {
                let c = self.c();
                let entries = c.node(id(args[0])).store().all_entries().to_vec();
                let parts: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
                out.push_str(&format!("[{}]", parts.join(", ")));
            }
            other => panic!("unknown command {other:?}"),
        }
        let c = self.c();
        if let Some(v) = c.violations().first() {
            panic!("safety violation during `{line}`: {v}");
        }
        out.trim_end().to_string()
    }

    fn roles(&mut self) -> Vec<(String, String)> {
        let c = self.c();
        c.ids()
            .into_iter()
            .map(|i| {
                let st = c.node(i).status();
                let role = if c.is_down(i) { "down".to_string() } else { st.role.to_string() };
                (format!("{i}"), format!("{role}@{}", st.term.0))
            })
            .collect()
    }

    fn status_line(&mut self, i: NodeId) -> String {
        let c = self.c();
        let st = c.node(i).status();
        let down = if c.is_down(i) { " (down)" } else { "" };
        let lead = match (st.role, st.leader) {
            (Role::Leader, _) => String::new(),
            (_, Some(l)) => format!(" leader={}", l.0),
            _ => String::new(),
        };
        let first = c.node(i).first_index();
        let first = if first > LogIndex(1) { format!(" first={}", first.0) } else { String::new() };
        let snaps: String = st
            .progress
            .iter()
            .filter_map(|p| {
                p.snapshot
                    .map(|(at, acked, size)| format!(" snap[{}]={}:{acked}/{size}", p.id.0, at.0))
            })
            .collect();
        format!(
            "{i}: {}{down} term={} vote={} commit={} applied={} last={}{lead}{first} log={:?}{snaps}",
            st.role,
            st.term.0,
            st.vote.map_or(0, |v| v.0),
            st.commit.0,
            st.applied.0,
            st.last_index.0,
            c.log_terms(i)
        )
    }
}

/// Runs one script; returns the file as it should be.
fn replay(text: &str) -> String {
    let mut s = Script { cluster: None };
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // A command: skip its old output (through the next blank line) and write the new one.
        assert_eq!(lines.next(), Some("----"), "command {line:?} must be followed by ----");
        while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            lines.next();
        }
        let result = s.run(line);
        let _ = write!(out, "{line}\n----\n{result}\n");
    }
    out
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the golden runner reads and rewrites its own test data"
)]
fn interaction_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/testdata exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "the golden scripts are present: {paths:?}");
    let mut failed = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable script");
        let got = replay(&text);
        if got == text {
            continue;
        }
        if rewrite {
            std::fs::write(&path, &got).expect("writable script");
            continue;
        }
        let (want_lines, got_lines): (Vec<_>, Vec<_>) =
            (text.lines().collect(), got.lines().collect());
        let at = want_lines.iter().zip(&got_lines).position(|(a, b)| a != b).unwrap_or(0);
        failed.push(format!(
            "{}: first difference at line {}:\n  want: {:?}\n  got:  {:?}",
            path.display(),
            at + 1,
            want_lines.get(at),
            got_lines.get(at)
        ));
    }
    assert!(
        failed.is_empty(),
        "golden scripts differ (REWRITE=1 to accept):\n{}",
        failed.join("\n")
    );
}
