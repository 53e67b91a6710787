//! The simulated world: a priority queue of timed events, the hosts, the network, the clients
//! and the checkers, all driven from one seed. Nothing here reads a clock or a global random
//! source, so a seed replays exactly.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use flotilla_lincheck::{Operation, Outcome};
use flotilla_raft::{
    Config, EntryId, EntryKind, Membership, Message, NodeId, ProposeError, ReadError, ReadMode,
    Rng, Role,
};

use crate::checkers::{
    commit_rule::CommitRule, durability::Durability, election_safety::ElectionSafety,
    leader_append_only::LeaderAppendOnly, leader_completeness, linearizability, log_matching,
    monotonic::Monotonic, state_hash::StateHash, state_machine_safety::StateMachineSafety,
    violation, Violation,
};
use crate::client::Client;
use crate::config::SimConfig;
use crate::host::{Host, InFlight, Job, Proposal};
use crate::kv::{Command, Output};
use crate::net::Net;

/// What a node answers a client.
#[derive(Clone, Debug)]
enum Reply {
    /// Committed and applied at `entry`, with this output.
    Ok(Output, EntryId),
    /// Not the leader; try the hint.
    NotLeader(Option<NodeId>),
    /// Refused (backpressure) or certainly not committed: retry.
    Retry,
}

#[derive(Clone, Debug)]
enum Event {
    Tick(usize),
    Deliver(Message),
    FsyncDone(usize, u64),
    /// A detached sync finished (host, incarnation, job).
    JobSynced(usize, u64, u64),
    /// A background snapshot write finished (host, incarnation).
    SnapshotDone(usize, u64),
    Crash(usize),
    Restart(usize),
    Isolate(usize),
    NextFault,
    EndFaults,
    ClientStart(usize),
    Request {
        node: usize,
        client: usize,
        attempt: u64,
        cmd: Command,
    },
    Response {
        client: usize,
        attempt: u64,
        reply: Reply,
    },
    ClientTimeout {
        client: usize,
        op: usize,
    },
    End,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first (the heap is a max-heap); ties in scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Healing { since: u64 },
    Settling,
    Done,
}

/// Counts of what a run did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Simulated time, microseconds.
    pub sim_us: u64,
    /// Client operations that completed ok.
    pub ops_ok: u64,
    /// Client operations whose outcome stayed unknown.
    pub ops_unknown: u64,
    /// Highest term reached.
    pub max_term: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Storage errors (failed fsync, full disk) that stopped a server.
    pub disk_faults: u64,
    /// Messages dropped by the network.
    pub dropped: u64,
    /// Snapshots taken (log compaction, Raft §7).
    pub snapshots: u64,
    /// Snapshots installed from a leader.
    pub installs: u64,
    /// Snapshots during whose background write the state machine applied more entries
    /// (the service did not stop for them).
    pub snapshots_overlapped: u64,
    /// Log writes synced in the background while the server went on (detached syncs).
    pub detached_syncs: u64,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The configuration that ran.
    pub config: SimConfig,
    /// The first property broken, if any.
    pub violation: Option<Violation>,
    /// What happened.
    pub stats: Stats,
    /// Every event, if tracing was on.
    pub trace: Vec<String>,
    /// The clients' history.
    pub history: Vec<Operation>,
}

struct Checks {
    commit_rule: CommitRule,
    election: ElectionSafety,
    append_only: LeaderAppendOnly,
    sms: StateMachineSafety,
    hashes: StateHash,
    mono: Monotonic,
    durability: Durability,
}

/// The whole simulated world.
pub struct World {
    cfg: SimConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    rng: Rng,
    net: Net,
    hosts: Vec<Host>,
    clients: Vec<Client>,
    history: Vec<Operation>,
    checks: Checks,
    phase: Phase,
    violation: Option<Violation>,
    stats: Stats,
    trace: Option<Vec<String>>,
    next_read: u64,
}

/// Runs one simulation to its end and reports.
pub fn run(cfg: SimConfig) -> Report {
    let mut w = World::new(cfg);
    w.run();
    Report {
        config: w.cfg,
        violation: w.violation,
        stats: w.stats,
        trace: w.trace.unwrap_or_default(),
        history: w.history,
    }
}

impl World {
    fn new(cfg: SimConfig) -> World {
        let mut rng = Rng::new(cfg.seed);
        let ids: Vec<NodeId> = (1..=cfg.nodes as u64).map(NodeId).collect();
        let membership =
            Membership::new(ids.iter().copied(), []).expect("1..=n is a valid membership");
        // Spare servers run from the start but are not members until a change adds them.
        let all: Vec<NodeId> = (1..=(cfg.nodes + cfg.spare_nodes) as u64).map(NodeId).collect();
        let hosts = all
            .iter()
            .map(|id| {
                let config = Config {
                    rng_seed: rng.next_u64(),
                    pre_vote: cfg.pre_vote,
                    check_quorum: cfg.check_quorum,
                    read_mode: if cfg.lease_reads { ReadMode::LeaseBased } else { ReadMode::Safe },
                    append_bytes_max: cfg.append_bytes_max,
                    inflight_bytes_max: cfg.append_bytes_max.max(64 << 20),
                    snapshot_chunk_bytes: cfg.snapshot_chunk_bytes,
                    #[cfg(feature = "planted-bugs")]
                    planted_bug: cfg.bug,
                    ..Config::new(*id)
                };
                Host::new(config, membership.clone())
            })
            .collect();
        let clients = (0..cfg.clients).map(|c| Client::new(c, c % cfg.nodes)).collect();
        let net = cfg.net.clone();
        let trace = cfg.trace.then(Vec::new);
        let mut w = World {
            cfg,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng,
            net,
            hosts,
            clients,
            history: Vec::new(),
            checks: Checks {
                commit_rule: CommitRule::default(),
                election: ElectionSafety::default(),
                append_only: LeaderAppendOnly::default(),
                sms: StateMachineSafety::default(),
                hashes: StateHash::default(),
                mono: Monotonic::default(),
                durability: Durability::default(),
            },
            phase: Phase::Faults,
            violation: None,
            stats: Stats::default(),
            trace,
            next_read: 0,
        };
        for i in 0..w.hosts.len() {
            // Tick phases differ per node, as real clocks do.
            let offset = u64::from(w.rng.in_range(0, w.cfg.tick_us as u32));
            w.schedule(offset, Event::Tick(i));
        }
        for c in 0..w.clients.len() {
            let start = u64::from(w.rng.in_range(0, 200_000));
            w.schedule(start, Event::ClientStart(c));
        }
        if w.cfg.fault_interval_us > 0 {
            let first = u64::from(w.rng.in_range(0, w.cfg.fault_interval_us));
            w.schedule(first, Event::NextFault);
        }
        let end = w.cfg.fault_us;
        w.schedule(end, Event::EndFaults);
        w
    }

    fn schedule(&mut self, delay_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled { at: self.now + delay_us, seq: self.seq, event });
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(format!("{:>10} {}", self.now, line()));
        }
    }

    fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            let detail = v.to_string();
            self.log(|| format!("VIOLATION {detail}"));
            self.violation = Some(v);
        }
    }

    fn run(&mut self) {
        while let Some(s) = self.queue.pop() {
            if self.violation.is_some() || self.phase == Phase::Done {
                break;
            }
            self.now = s.at;
            self.stats.events += 1;
            self.handle(s.event);
            if let Phase::Healing { since } = self.phase {
                if self.now > since + self.cfg.heal_limit_us {
                    let detail = format!(
                        "no client operation committed within {} ms of healing (leader: {:?})",
                        self.cfg.heal_limit_us / 1000,
                        self.leader().map(|i| self.hosts[i].id)
                    );
                    self.fail(violation("Liveness", detail));
                }
            }
        }
        self.stats.sim_us = self.now;
        if self.violation.is_none() {
            self.final_checks();
        }
        self.stats.ops_unknown =
            self.history.iter().filter(|o| o.outcome == Outcome::Unknown).count() as u64;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                let tick = self.cfg.tick_us;
                self.schedule(tick, Event::Tick(i));
                if let Some(node) = self.hosts[i].node.as_mut() {
                    if let Err(e) = node.tick() {
                        let detail = format!("node {} halted: {e}", self.hosts[i].id);
                        self.fail(violation("Storage", detail));
                    }
                    self.maybe_compact(i);
                    self.maybe_lease_op(i);
                    self.pump(i);
                }
            }
            Event::Deliver(m) => {
                let to = (m.to.0 - 1) as usize;
                if self.net.is_cut(m.from, m.to) || self.hosts[to].node.is_none() {
                    self.stats.dropped += 1;
                    self.log(|| format!("x {m:?}"));
                    return;
                }
                self.log(|| format!("  {m:?}"));
                let node = self.hosts[to].node.as_mut().expect("checked running above");
                if let Err(e) = node.step(m) {
                    if matches!(e, flotilla_raft::StepError::UnknownSender { .. }) {
                        // A removed server still talks; members refuse it, as they should.
                        return self.pump(to);
                    }
                    // Every other message here comes from a correct peer: a refusal is a bug.
                    let detail =
                        format!("node {} refused a message from a correct peer: {e}", to + 1);
                    self.fail(violation("Step", detail));
                }
                self.pump(to);
            }
            Event::FsyncDone(i, incarnation) => {
                if self.hosts[i].incarnation != incarnation {
                    return;
                }
                let host = &mut self.hosts[i];
                if let Some(node) = host.node.as_mut() {
                    if let Err(e) = node.store_mut().sync() {
                        return self.storage_fault(i, e);
                    }
                }
                host.disk.sync();
                // Everything written is durable now, what detached jobs wait for included.
                self.release_jobs(i, u64::MAX);
                if let Some(inflight) = self.hosts[i].inflight.take() {
                    self.complete(i, inflight);
                }
                self.pump(i);
            }
            Event::JobSynced(i, incarnation, seq) => {
                if self.hosts[i].incarnation != incarnation {
                    return;
                }
                let host = &mut self.hosts[i];
                // Gone if a later sync on this host covered it already.
                if let Some(job) = host.jobs.iter().find(|j| j.seq == seq) {
                    let mark = job.mark;
                    if let Some(Err(e)) = job.file.as_ref().map(|f| f.sync_data()) {
                        let e = flotilla_storage::WalError::Failed(format!("fsync: {e}"));
                        return self.storage_fault(i, e);
                    }
                    host.disk.sync_through(mark);
                    self.release_jobs(i, seq);
                }
                self.pump(i);
            }
            Event::SnapshotDone(i, incarnation) => {
                if self.hosts[i].incarnation == incarnation {
                    self.finish_snapshot(i);
                }
            }
            Event::Crash(i) => {
                if self.hosts[i].node.is_some() {
                    self.log(|| format!("crash n{}", i + 1));
                    self.stats.crashes += 1;
                    // Half the crashes tear the write in progress.
                    let torn = (self.rng.in_range(0, 2) == 0).then(|| self.rng.next_u64());
                    self.hosts[i].crash(torn);
                    self.checks.append_only.forget(self.hosts[i].id);
                }
            }
            Event::Restart(i) => {
                if self.hosts[i].node.is_none() {
                    self.log(|| format!("restart n{}", i + 1));
                    // The operator fixed the disk (failing syncs, full disk) before restarting.
                    self.hosts[i].fs.clear_faults();
                    match self.hosts[i].restart() {
                        Ok(Some(snap)) => {
                            let (id, inc) = (self.hosts[i].id, self.hosts[i].incarnation);
                            if self.cfg.lossy_snapshots {
                                let planted = Command::Put("a".into(), "planted".into());
                                self.hosts[i].kv.apply(&planted);
                            }
                            let hash = self.hosts[i].kv.hash();
                            let r = self
                                .checks
                                .sms
                                .on_restore(id, snap)
                                .and_then(|_| self.checks.mono.observe_restore(id, inc, snap.index))
                                .and_then(|_| {
                                    let at = snap.index.0;
                                    self.checks.hashes.observe(id, at, hash, "restored at restart")
                                });
                            if let Err(v) = r {
                                return self.fail(v);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let detail = format!("node {} cannot recover its WAL: {e}", i + 1);
                            return self.fail(violation("Storage", detail));
                        }
                    }
                    self.pump(i);
                }
            }
            Event::Isolate(i) => {
                if self.phase == Phase::Faults {
                    let id = self.hosts[i].id;
                    let rest: Vec<NodeId> =
                        self.hosts.iter().map(|h| h.id).filter(|x| *x != id).collect();
                    self.net.cut.clear();
                    self.net.split(&[id], &rest);
                    self.stats.partitions += 1;
                    self.log(|| format!("churn: isolate new leader {id}"));
                }
            }
            Event::NextFault => self.inject_fault(),
            Event::EndFaults => self.end_faults(),
            Event::ClientStart(c) => self.client_start(c),
            Event::Request { node, client, attempt, cmd } => {
                self.request(node, client, attempt, cmd)
            }
            Event::Response { client, attempt, reply } => self.response(client, attempt, reply),
            Event::ClientTimeout { client, op } => {
                if self.clients[client].current.as_ref().is_some_and(|(o, _)| *o == op) {
                    self.log(|| format!("client {client} times out on op {op}"));
                    let n = self.hosts.len();
                    let cl = &mut self.clients[client];
                    cl.current = None;
                    cl.target = (cl.target + 1) % n;
                    self.client_next(client);
                }
            }
            Event::End => self.phase = Phase::Done,
        }
    }

    // ---- the driver loop of one host --------------------------------------------------

    /// Runs host `i`'s Ready loop until it waits for a sync or has nothing to do.
    fn pump(&mut self, i: usize) {
        loop {
            let host = &mut self.hosts[i];
            if host.inflight.is_some() {
                break;
            }
            let Some(node) = host.node.as_mut() else { return };
            if !node.has_ready() {
                break;
            }
            let rd = match node.ready() {
                Ok(rd) => rd,
                Err(e) => {
                    let detail = format!("node {} halted: {e}", host.id);
                    self.fail(violation("Storage", detail));
                    return;
                }
            };
            let ack = rd.ack();
            let has_snapshot = rd.snapshot.is_some() || !rd.snapshot_chunks.is_empty();
            for r in &rd.read_states {
                let id =
                    u64::from_le_bytes(r.ctx[..].try_into().expect("read contexts are 8 bytes"));
                if let Some(entry) = host.reads.get_mut(&id) {
                    entry.3 = Some(r.index.0);
                }
            }
            let mut aborted = Vec::new();
            for ctx in &rd.aborted_reads {
                let id = u64::from_le_bytes(ctx[..].try_into().expect("read contexts are 8 bytes"));
                if let Some((client, attempt, ..)) = host.reads.remove(&id) {
                    aborted.push((client, attempt));
                }
            }
            // 2. Snapshot chunks, then a completed snapshot, before the entries after it.
            let mut stored = Ok(None);
            for c in &rd.snapshot_chunks {
                if let Err(e) = node.store_mut().write_snapshot_chunk(c) {
                    stored = Err(e);
                    break;
                }
            }
            if let (Ok(_), Some(meta)) = (&stored, &rd.snapshot) {
                stored = node.store_mut().install_snapshot(meta).map(|d| Some((meta.clone(), d)));
            }
            let installed = match stored {
                Ok(x) => x,
                Err(e) => return self.storage_fault(i, e),
            };
            if let Some((meta, data)) = installed {
                // Raft Fig. 13, step 8: reset the state machine from the snapshot.
                let Some(kv) = crate::kv::Kv::decode(&data) else {
                    let detail = format!("{} installed a snapshot that does not decode", host.id);
                    return self.fail(violation("Snapshot", detail));
                };
                host.kv = kv;
                if self.cfg.lossy_snapshots {
                    host.kv.apply(&Command::Put("a".into(), "planted".into()));
                }
                host.applied = meta.index.0;
                host.snapshot_index = host.snapshot_index.max(meta.index.0);
                host.disk.install(meta.clone());
                let (id, inc, hash) = (host.id, host.incarnation, host.kv.hash());
                self.stats.installs += 1;
                self.log(|| format!("n{} installs snapshot {}", id.0, meta.id()));
                let r = self
                    .checks
                    .sms
                    .on_restore(id, meta.id())
                    .and_then(|_| self.checks.mono.observe_restore(id, inc, meta.index))
                    .and_then(|_| {
                        let at = meta.index.0;
                        self.checks.hashes.observe(id, at, hash, "installed from the leader")
                    });
                if let Err(v) = r {
                    return self.fail(v);
                }
            }
            let host = &mut self.hosts[i];
            let node = host.node.as_mut().expect("running: it produced a Ready");
            // 1. The leader's appends and heartbeats may leave before the write.
            node.store_mut().write(&rd.entries, rd.hard_state);
            let entries = rd.entries.len();
            host.disk.write(rd.entries, rd.hard_state);
            let mut inflight = InFlight {
                persisted_messages: rd.persisted_messages,
                committed: rd.committed_entries,
                ack,
            };
            // As the server's driver: a batch (or any write while a sync runs) is synced in
            // the background, and the host goes on; a lone entry is waited for.
            let min = self.cfg.detach_min_entries;
            let detach = rd.must_sync
                && !has_snapshot
                && min > 0
                && (entries >= min || !host.jobs.is_empty());
            let mut job = None;
            if detach {
                let file = match node.store_mut().write_unsynced() {
                    Ok(f) => f,
                    Err(e) => return self.storage_fault(i, e),
                };
                let host = &mut self.hosts[i];
                let (persisted, rest) = inflight.ack.split_persisted();
                inflight.ack = rest;
                host.job_seq += 1;
                job = Some(host.job_seq);
                self.stats.detached_syncs += 1;
                host.jobs.push_back(Job {
                    seq: host.job_seq,
                    file,
                    mark: host.disk.mark(),
                    persisted_messages: if self.cfg.early_answers {
                        Vec::new() // the planted bug: `complete` sends them now
                    } else {
                        std::mem::take(&mut inflight.persisted_messages)
                    },
                    persisted,
                });
            } else if !rd.must_sync && !host.jobs.is_empty() {
                // Answers go out in order: these wait behind the running syncs.
                host.jobs.push_back(Job {
                    seq: host.job_seq,
                    file: None,
                    mark: 0,
                    persisted_messages: std::mem::take(&mut inflight.persisted_messages),
                    persisted: None,
                });
            }
            let host = &mut self.hosts[i];
            let must_sync = rd.must_sync && !detach;
            let incarnation = host.incarnation;
            let new_vote = rd.hard_state.and_then(|hs| {
                let vote = (hs.term, hs.vote?);
                (vote.1 != host.id && host.last_vote != Some(vote)).then_some(vote)
            });
            if let Some(v) = new_vote {
                host.last_vote = Some(v);
            }
            if let Some(seq) = job {
                let d = u64::from(self.cfg.fsync_min_us)
                    + u64::from(self.rng.in_range(0, self.cfg.fsync_jitter_us.max(1)));
                self.schedule(d, Event::JobSynced(i, incarnation, seq));
                self.maybe_crash_after_vote(i, new_vote.is_some());
            }
            for m in rd.messages {
                self.send(m);
            }
            for (client, attempt) in aborted {
                // The read failed (leadership lost): it had no effect, so the client retries.
                let d = self.client_latency();
                self.schedule(d, Event::Response { client, attempt, reply: Reply::Retry });
            }
            self.serve_reads(i);
            if must_sync {
                // 2. Wait for the sync before answering anyone.
                self.hosts[i].inflight = Some(inflight);
                let d = u64::from(self.cfg.fsync_min_us)
                    + u64::from(self.rng.in_range(0, self.cfg.fsync_jitter_us.max(1)));
                self.schedule(d, Event::FsyncDone(i, incarnation));
                self.maybe_crash_after_vote(i, new_vote.is_some());
                break;
            }
            self.complete(i, inflight);
        }
        self.observe(i);
    }

    /// With a new vote being synced, sometimes crash before the vote is durable, and come
    /// back quickly: a node that answered too early would now vote again in the same term.
    fn maybe_crash_after_vote(&mut self, i: usize, new_vote: bool) {
        if new_vote && self.chance(self.cfg.crash_after_vote_ppm) {
            let at = u64::from(self.rng.in_range(0, self.cfg.fsync_min_us));
            self.schedule(at, Event::Crash(i));
            let back = at + u64::from(self.rng.in_range(1_000, 30_000));
            self.schedule(back, Event::Restart(i));
        }
    }

    /// Detached syncs through `seq` are done: their answers go out and the node learns what
    /// is durable, oldest first.
    fn release_jobs(&mut self, i: usize, seq: u64) {
        while self.hosts[i].jobs.front().is_some_and(|j| j.seq <= seq) {
            let host = &mut self.hosts[i];
            let job = host.jobs.pop_front().expect("checked: a front");
            if let (Some(node), Some(id)) = (host.node.as_mut(), job.persisted) {
                node.advance(flotilla_raft::Ack::persisted(id));
            }
            for m in job.persisted_messages {
                self.send(m);
            }
        }
    }

    /// Steps 3 to 5 of the Ready contract, once the write is durable.
    fn complete(&mut self, i: usize, inflight: InFlight) {
        for m in inflight.persisted_messages {
            self.send(m);
        }
        for e in inflight.committed {
            if self.violation.is_some() {
                return;
            }
            self.apply(i, e);
        }
        if let Some(node) = self.hosts[i].node.as_mut() {
            node.advance(inflight.ack);
        }
        self.serve_reads(i);
        self.maybe_start_snapshot(i);
    }

    /// The server's automatic compaction, as a leader proposes it: through the log, so that
    /// every member compacts its store at the same revision, keeping the newest 32.
    fn maybe_compact(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        let Some(node) = host.node.as_mut() else { return };
        let target = host.kv.revision() - 32;
        if node.status().role != Role::Leader
            || target < host.kv.compact_revision() + 32
            || target <= host.compaction_proposed
        {
            return;
        }
        if node.propose(crate::kv::compaction(target)).is_ok() {
            host.compaction_proposed = target;
        }
    }

    /// Lease traffic from the leader, one step per tick it leads (see `kv::lease_op`).
    fn maybe_lease_op(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        let Some(node) = host.node.as_mut() else { return };
        if node.status().role != Role::Leader {
            return;
        }
        host.lease_steps += 1;
        if let Some(data) = crate::kv::lease_op(host.lease_steps) {
            let _ = node.propose(data);
        }
    }

    /// The snapshot policy (Raft §7: "servers take snapshots ... when the log reaches a fixed
    /// size"): every `snapshot_every` applied entries, the state machine's view at the applied
    /// index is taken at once and written in the background; applies go on meanwhile.
    fn maybe_start_snapshot(&mut self, i: usize) {
        let every = self.cfg.snapshot_every;
        let host = &mut self.hosts[i];
        if host.node.is_none() {
            return;
        }
        if every == 0 || host.snapshot_job.is_some() || host.applied < host.snapshot_index + every {
            return;
        }
        if !host.jobs.is_empty() {
            // As the server's driver: a snapshot must not get ahead of the durable log (a
            // leader applies what its followers made durable), so sync everything first.
            let node = host.node.as_mut().expect("checked: running");
            if let Err(e) = node.store_mut().sync() {
                return self.storage_fault(i, e);
            }
            host.disk.sync();
            self.release_jobs(i, u64::MAX);
        }
        let host = &mut self.hosts[i];
        let Some(node) = host.node.as_ref() else { return };
        let meta = match node.snapshot_meta(flotilla_raft::LogIndex(host.applied)) {
            Ok(m) => m,
            // A newer snapshot from the leader was accepted while this host was still
            // applying the entries before it (stepping goes on while a Ready's write is in
            // flight): its install, next, supersedes anything taken here. The server's
            // driver waits for the next chance the same way.
            Err(flotilla_raft::SnapshotError::Compacted { .. }) => return,
            Err(e) => {
                let detail = format!("{}: cannot describe a snapshot: {e}", host.id);
                return self.fail(violation("Snapshot", detail));
            }
        };
        let (id, at, hash) = (host.id, meta.index.0, host.kv.hash());
        host.snapshot_job = Some((meta, host.kv.encode()));
        if let Err(v) = self.checks.hashes.observe(id, at, hash, "snapshotted") {
            return self.fail(v);
        }
        let (d, inc) = (u64::from(self.cfg.snapshot_write_us), host.incarnation);
        self.schedule(d, Event::SnapshotDone(i, inc));
    }

    /// The background write finished: store the snapshot, then compact the log up to
    /// `snapshot_keep` entries below it.
    fn finish_snapshot(&mut self, i: usize) {
        let keep = self.cfg.snapshot_keep;
        let host = &mut self.hosts[i];
        let (Some(node), Some((meta, data))) = (host.node.as_mut(), host.snapshot_job.take())
        else {
            return;
        };
        if meta.index.0 <= host.snapshot_index {
            return; // A newer snapshot was installed meanwhile.
        }
        if let Err(e) = node.store_mut().save_snapshot(&meta, &data) {
            return self.storage_fault(i, e);
        }
        host.snapshot_index = meta.index.0;
        self.stats.snapshots += 1;
        if host.applied > meta.index.0 {
            self.stats.snapshots_overlapped += 1;
        }
        let at = flotilla_raft::LogIndex(
            meta.index.0.saturating_sub(keep).max(node.first_index().prev().0),
        );
        let Ok(at) = node.snapshot_meta(at) else { return };
        host.disk.compact(&at);
        if let Err(e) = node.store_mut().compact(&at) {
            return self.storage_fault(i, e);
        }
        let id = host.id;
        self.log(|| format!("n{} snapshot {} compacted through {}", id.0, meta.id(), at.index));
        self.pump(i);
    }

    /// A storage error stops the node rather than risk safety (ARCHITECTURE.md, design rule
    /// 5); an operator restarts it later, with the disk fixed.
    fn storage_fault(&mut self, i: usize, e: flotilla_storage::WalError) {
        self.stats.disk_faults += 1;
        self.log(|| format!("n{} storage error, node stops: {e}", i + 1));
        self.handle(Event::Crash(i));
        let after = u64::from(self.rng.in_range(200_000, 2_000_000));
        self.schedule(after, Event::Restart(i));
    }

    /// Thesis §6.4 step 4: a read is served once the state machine has applied its read index.
    fn serve_reads(&mut self, i: usize) {
        let applied = self.hosts[i].applied;
        let ready: Vec<u64> = self.hosts[i]
            .reads
            .iter()
            .filter(|(_, r)| r.3.is_some_and(|idx| idx <= applied))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            let (client, attempt, key, _) = self.hosts[i].reads.remove(&id).expect("listed above");
            let output = self.hosts[i].kv.apply(&Command::Get(key));
            let d = self.client_latency();
            self.schedule(
                d,
                Event::Response { client, attempt, reply: Reply::Ok(output, EntryId::default()) },
            );
        }
    }

    fn apply(&mut self, i: usize, e: flotilla_raft::Entry) {
        let (id, incarnation) = (self.hosts[i].id, self.hosts[i].incarnation);
        if let Err(v) = self.checks.mono.observe_apply(id, incarnation, e.index) {
            return self.fail(v);
        }
        if let Err(v) = self.checks.sms.on_apply(id, e.id()) {
            return self.fail(v);
        }
        self.hosts[i].applied = e.index.0;
        let output = match e.kind {
            EntryKind::Normal => match self.hosts[i].kv.apply_entry(&e.data) {
                Ok(output) => Some(output),
                Err(why) => {
                    return self.fail(violation(
                        "Apply",
                        format!("{id} applied an undecodable entry {e:?}: {why}"),
                    ))
                }
            },
            EntryKind::Noop | EntryKind::ConfChange => None,
        };
        // Every 16th index, the state itself: equal wherever those entries were applied.
        if e.index.0 % 16 == 0 {
            let hash = self.hosts[i].kv.hash();
            if let Err(v) = self.checks.hashes.observe(id, e.index.0, hash, "applied") {
                return self.fail(v);
            }
        }
        if let Some(p) = self.hosts[i].proposals.remove(&e.index.0) {
            let reply = if p.entry == e.id() {
                self.checks.durability.on_ack(p.entry);
                Reply::Ok(output.unwrap_or(Output::Done), p.entry)
            } else {
                // Another entry was committed at this index: ours never will be.
                Reply::Retry
            };
            let d = self.client_latency();
            self.schedule(d, Event::Response { client: p.client, attempt: p.attempt, reply });
        }
    }

    /// Checks everything that can be checked after host `i` changed.
    fn observe(&mut self, i: usize) {
        let host = &self.hosts[i];
        let Some(node) = host.node.as_ref() else { return };
        if let Err(e) = node.check_invariants() {
            let detail = format!("node {}: {e}", host.id);
            return self.fail(violation("Invariant", detail));
        }
        let st = node.status();
        let (id, incarnation) = (host.id, host.incarnation);
        self.stats.max_term = self.stats.max_term.max(st.term.0);
        if let Err(v) = self.checks.mono.observe_commit(id, incarnation, st.commit) {
            return self.fail(v);
        }
        if st.role != Role::Leader {
            self.checks.append_only.forget(id);
            return;
        }
        let newly = match self.checks.election.observe_leader(id, st.term) {
            Ok(n) => n,
            Err(v) => return self.fail(v),
        };
        if newly {
            self.log(|| format!("n{} leads term {}", id.0, st.term.0));
            if self.phase == Phase::Faults && self.chance(self.cfg.leader_churn_ppm) {
                let after = u64::from(self.rng.in_range(0, 5_000));
                self.schedule(after, Event::Isolate(i));
            }
            let holds = |e: EntryId| self.hosts[i].holds(e);
            let r = leader_completeness::check_new_leader(
                id,
                st.term,
                self.checks.sms.committed(),
                holds,
            )
            .and_then(|_| self.checks.durability.check(id, Some(st.term), holds));
            if let Err(v) = r {
                return self.fail(v);
            }
        }
        let entry_at = |idx: u64| self.hosts[i].entry_at(idx);
        let durable_at = |n: NodeId, e: EntryId| {
            self.hosts.get((n.0 - 1) as usize).is_some_and(|h| h.disk.durably_holds(e))
        };
        let membership =
            self.hosts[i].node.as_ref().expect("observed running").membership().clone();
        if let Err(v) = self.checks.commit_rule.observe_leader(
            id,
            incarnation,
            st.term,
            st.commit,
            &membership,
            entry_at,
            durable_at,
        ) {
            return self.fail(v);
        }
        let last = entry_at(st.last_index.0).unwrap_or_default();
        let holds = |e: EntryId| self.hosts[i].holds(e);
        if let Err(v) = self.checks.append_only.observe_leader(id, st.term, last, holds) {
            self.fail(v);
        }
    }

    // ---- network ----------------------------------------------------------------------

    fn send(&mut self, m: Message) {
        if self.net.drops(&mut self.rng) {
            self.stats.dropped += 1;
            self.log(|| format!("lost {m:?}"));
            return;
        }
        if self.net.duplicates(&mut self.rng) {
            let d = self.net.latency_us(&mut self.rng);
            self.schedule(d, Event::Deliver(m.clone()));
        }
        let d = self.net.latency_us(&mut self.rng);
        self.schedule(d, Event::Deliver(m));
    }

    fn client_latency(&mut self) -> u64 {
        u64::from(self.rng.in_range(100, 600))
    }

    // ---- faults -------------------------------------------------------------------------

    fn leader(&self) -> Option<usize> {
        (0..self.hosts.len())
            .filter_map(|i| {
                let st = self.hosts[i].node.as_ref()?.status();
                (st.role == Role::Leader).then_some((st.term, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn inject_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let n = self.hosts.len();
        let ids: Vec<NodeId> = self.hosts.iter().map(|h| h.id).collect();
        let pick = self.rng.in_range(0, 100);
        match pick {
            0..=29 => {
                let i = match self.leader() {
                    Some(l) if self.rng.in_range(0, 2) == 0 => l,
                    _ => self.rng.in_range(0, n as u32) as usize,
                };
                self.handle(Event::Crash(i));
                let down = u64::from(self.rng.in_range(100_000, 3_000_000));
                self.schedule(down, Event::Restart(i));
            }
            30..=46 => {
                let mut shuffled = ids.clone();
                self.shuffle(&mut shuffled);
                let k = self.rng.in_range(1, n as u32) as usize;
                self.net.cut.clear();
                self.net.split(&shuffled[..k], &shuffled[k..]);
                self.stats.partitions += 1;
                self.log(|| format!("partition {:?} | {:?}", &shuffled[..k], &shuffled[k..]));
            }
            47..=54 => {
                // A disk fault on one server: its next fsync fails, or its disk fills up.
                let i = self.rng.in_range(0, n as u32) as usize;
                if self.rng.in_range(0, 2) == 0 {
                    self.hosts[i].fs.fail_next_syncs(1);
                    self.log(|| format!("n{}: next fsync will fail", i + 1));
                } else {
                    let left = u64::from(self.rng.in_range(0, 4096));
                    self.hosts[i].fs.set_space_left(Some(left));
                    self.log(|| format!("n{}: disk full after {left} more bytes", i + 1));
                }
            }
            55..=64 => {
                // One-way: a node can send but not receive, or the reverse.
                let x = ids[self.rng.in_range(0, n as u32) as usize];
                let outgoing = self.rng.in_range(0, 2) == 0;
                self.net.cut.clear();
                for y in &ids {
                    if *y != x {
                        self.net.cut.insert(if outgoing { (x, *y) } else { (*y, x) });
                    }
                }
                self.stats.partitions += 1;
                self.log(|| format!("one-way cut {} {x}", if outgoing { "from" } else { "to" }));
            }
            65..=74 => {
                if let Some(l) = self.leader() {
                    let lid = self.hosts[l].id;
                    let rest: Vec<NodeId> = ids.iter().copied().filter(|i| *i != lid).collect();
                    self.net.cut.clear();
                    self.net.split(&[lid], &rest);
                    self.stats.partitions += 1;
                    self.log(|| format!("isolate leader {lid}"));
                }
            }
            75..=84 => {
                // A bridge node sees both halves, which cannot see each other.
                let mut shuffled = ids.clone();
                self.shuffle(&mut shuffled);
                let bridge = shuffled[0];
                let half = (n - 1) / 2 + 1;
                let (a, b) = shuffled[1..].split_at(half.min(n - 1));
                self.net.cut.clear();
                self.net.split(a, b);
                self.stats.partitions += 1;
                self.log(|| format!("bridge {bridge} between {a:?} and {b:?}"));
            }
            _ => {
                self.net.cut.clear();
                self.log(|| "heal".to_string());
            }
        }
        if self.chance(self.cfg.conf_change_ppm) {
            self.inject_conf_change();
        }
        if self.chance(self.cfg.transfer_ppm) {
            if let Some(l) = self.leader() {
                let target = ids[self.rng.in_range(0, n as u32) as usize];
                let r = self.hosts[l].node.as_mut().map(|node| node.transfer_leader(target));
                self.log(|| format!("transfer leadership n{} -> {target}: {r:?}", l + 1));
                self.pump(l);
            }
        }
        let next = u64::from(
            self.rng.in_range(self.cfg.fault_interval_us / 4, self.cfg.fault_interval_us * 2),
        );
        self.schedule(next, Event::NextFault);
    }

    /// A random membership change through the leader: add a learner, promote one, remove a
    /// member (keeping at least three voters), or a joint change to a random set of voters.
    fn inject_conf_change(&mut self) {
        use flotilla_raft::ConfChange;
        let Some(l) = self.leader() else { return };
        let m = self.hosts[l].node.as_ref().expect("the leader runs").membership().clone();
        let all: Vec<NodeId> = self.hosts.iter().map(|h| h.id).collect();
        let outsiders: Vec<NodeId> = all.iter().copied().filter(|i| !m.contains(*i)).collect();
        let learners: Vec<NodeId> = m.learners().iter().copied().collect();
        let voters: Vec<NodeId> = m.voters().iter().copied().collect();
        let kind = self.rng.in_range(0, 4);
        let mut pick = |v: &[NodeId]| v[self.rng.in_range(0, v.len() as u32) as usize];
        let change = match kind {
            0 if !outsiders.is_empty() => ConfChange::AddLearner(pick(&outsiders)),
            1 if !learners.is_empty() => ConfChange::PromoteLearner(pick(&learners)),
            2 if voters.len() > 3 => ConfChange::Remove(pick(&voters)),
            2 if !learners.is_empty() => ConfChange::Remove(pick(&learners)),
            _ => {
                let mut shuffled = all.clone();
                self.shuffle(&mut shuffled);
                let k = self.rng.in_range(3, shuffled.len().max(3) as u32 + 1) as usize;
                let voters = shuffled.into_iter().take(k).collect();
                ConfChange::EnterJoint { voters, learners: Default::default() }
            }
        };
        let node = self.hosts[l].node.as_mut().expect("the leader runs");
        let r = node.propose_conf_change(change.clone());
        self.log(|| format!("conf change at n{}: {change:?}: {r:?}", l + 1));
        self.pump(l);
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.in_range(0, 1_000_000) < ppm
    }

    fn shuffle(&mut self, v: &mut [NodeId]) {
        for i in (1..v.len()).rev() {
            let j = self.rng.in_range(0, i as u32 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// The fault phase ends: heal the network, restart everyone, and start the liveness clock.
    fn end_faults(&mut self) {
        self.log(|| "faults end: heal everything".to_string());
        self.net.cut.clear();
        self.net.drop_ppm = 0;
        self.net.dup_ppm = 0;
        for i in 0..self.hosts.len() {
            self.handle(Event::Restart(i));
        }
        self.phase = Phase::Healing { since: self.now };
    }

    // ---- clients ------------------------------------------------------------------------

    fn client_start(&mut self, c: usize) {
        if matches!(self.phase, Phase::Settling | Phase::Done) {
            return;
        }
        let (cmd, op) = self.clients[c].next_op(&mut self.rng, self.now);
        if self.rng.in_range(0, 4) == 0 {
            // Clients spread over endpoints as etcd clients do, so a read may reach a server
            // other than the one that took the client's last write (a stale server shows).
            self.clients[c].target = self.rng.in_range(0, self.hosts.len() as u32) as usize;
        }
        let index = self.history.len();
        self.history.push(op);
        self.clients[c].current = Some((index, cmd));
        let timeout = self.cfg.client_timeout_us;
        self.schedule(timeout, Event::ClientTimeout { client: c, op: index });
        let d = self.client_latency();
        self.client_send(c, d);
    }

    /// Sends the current operation as a fresh attempt, after `delay` microseconds. A retry is
    /// sent only after a refusal that proved the previous attempt took no effect.
    fn client_send(&mut self, c: usize, delay: u64) {
        let Some((_, cmd)) = self.clients[c].current.clone() else { return };
        let client = &mut self.clients[c];
        client.attempt += 1;
        let (node, attempt) = (client.target, client.attempt);
        self.schedule(delay, Event::Request { node, client: c, attempt, cmd });
    }

    fn client_next(&mut self, c: usize) {
        let think = u64::from(self.rng.in_range(1_000, 20_000));
        self.schedule(think, Event::ClientStart(c));
    }

    fn request(&mut self, i: usize, client: usize, attempt: u64, cmd: Command) {
        let Some(node) = self.hosts[i].node.as_ref() else { return };
        if let (true, Command::Get(_)) = (self.cfg.unsafe_local_reads, &cmd) {
            if node.status().role == Role::Leader {
                let output = self.hosts[i].kv.apply(&cmd);
                let d = self.client_latency();
                let reply = Reply::Ok(output, EntryId::default());
                return self.schedule(d, Event::Response { client, attempt, reply });
            }
        }
        if let Command::Get(key) = &cmd {
            if self.chance(self.cfg.read_index_ppm) {
                self.next_read += 1;
                let id = self.next_read;
                let node = self.hosts[i].node.as_mut().expect("checked running above");
                let reply = match node.read_index(id.to_le_bytes().to_vec()) {
                    Ok(()) => {
                        self.hosts[i].reads.insert(id, (client, attempt, key.clone(), None));
                        self.pump(i);
                        return;
                    }
                    Err(ReadError::NoLeader) => Reply::NotLeader(None),
                    Err(ReadError::TooManyPending { .. }) => Reply::Retry,
                    Err(ReadError::Halted(_)) => return,
                };
                let d = self.client_latency();
                return self.schedule(d, Event::Response { client, attempt, reply });
            }
        }
        let Some(node) = self.hosts[i].node.as_mut() else { return };
        let reply = match node.propose(cmd.encode()) {
            Ok(entry) => {
                self.hosts[i].proposals.insert(entry.index.0, Proposal { entry, client, attempt });
                self.pump(i);
                return;
            }
            Err(ProposeError::NotLeader { leader_hint }) => Reply::NotLeader(leader_hint),
            Err(ProposeError::Backpressure { .. }) => Reply::Retry,
            Err(ProposeError::TransferInProgress { to }) => Reply::NotLeader(Some(to)),
            Err(ProposeError::Halted(_)) => return,
        };
        let d = self.client_latency();
        self.schedule(d, Event::Response { client, attempt, reply });
    }

    fn response(&mut self, c: usize, attempt: u64, reply: Reply) {
        let client = &self.clients[c];
        if client.attempt != attempt {
            return;
        }
        let Some((op, _)) = client.current.clone() else { return };
        match reply {
            Reply::Ok(output, entry) => {
                let rec = &mut self.history[op];
                rec.outcome = Outcome::Ok;
                rec.complete = Some(self.now);
                match output {
                    Output::Read(v) => rec.read = v,
                    Output::Swapped(s) => rec.succeeded = Some(s),
                    Output::Done => {}
                }
                self.stats.ops_ok += 1;
                self.log(|| format!("client {c} ok op {op} at {entry}"));
                self.clients[c].current = None;
                if let Phase::Healing { since } = self.phase {
                    if self.history[op].invoke >= since {
                        // Liveness shown: a leader exists and a new operation committed. Let
                        // the cluster settle, then check the final state.
                        self.phase = Phase::Settling;
                        self.schedule(1_000_000, Event::End);
                    }
                }
                self.client_next(c);
            }
            Reply::NotLeader(hint) => {
                let n = self.hosts.len();
                let client = &mut self.clients[c];
                client.target = match hint {
                    Some(h) => (h.0 - 1) as usize,
                    None => (client.target + 1) % n,
                };
                let backoff = u64::from(self.rng.in_range(1_000, 30_000));
                self.client_send(c, backoff);
            }
            Reply::Retry => {
                let backoff = u64::from(self.rng.in_range(5_000, 50_000));
                self.client_send(c, backoff);
            }
        }
    }

    // ---- the end ------------------------------------------------------------------------

    fn final_checks(&mut self) {
        let logs: Vec<(NodeId, &[flotilla_raft::Entry])> = self
            .hosts
            .iter()
            .filter_map(|h| Some((h.id, h.node.as_ref()?.store().entries_in_memory())))
            .collect();
        if let Err(v) = log_matching::check(&logs) {
            return self.fail(v);
        }
        if let Some(l) = self.leader() {
            let r =
                self.checks.durability.check(self.hosts[l].id, None, |e| self.hosts[l].holds(e));
            if let Err(v) = r {
                return self.fail(v);
            }
        }
        if let Err(v) = linearizability::check(&self.history) {
            self.fail(v);
        }
    }
}
