//! Fault injection against real `flotilla serve` processes: clients run gets, puts,
//! compare-and-swaps (Txn) and deletes through etcd's gRPC API while a nemesis kills members
//! with SIGKILL and restarts them, freezes them with SIGSTOP, or moves the leadership
//! elsewhere (Maintenance.MoveLeader); the recorded history must be
//! linearizable (checked by `flotilla-lincheck`), and afterwards every member's store must
//! hash alike (HashKV). Snapshots are taken every few hundred entries, so restarted members
//! also catch up by InstallSnapshot.
//!
//! `FLOTILLA_FAULT_SECS` sets how long the clients run (default 12); `FLOTILLA_FAULT_SEED`
//! the nemesis's and clients' choices (default: the clock).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_lincheck::{check, Call, Operation, Outcome, Verdict};
use flotilla_server::pb;
use flotilla_server::rpc::k_v_client::KVClient;
use flotilla_server::rpc::maintenance_client::MaintenanceClient;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed for the
/// choices the test makes (the processes' timing stays the machine's).
struct Rng(u64);

impl Rng {
    /// Seeds the generator through SplitMix64's output function (a bijection), so that
    /// seeds one apart start far apart: the state must be odd, and `seed | 1` alone gave
    /// seeds 2k and 2k + 1 the same clients and the same faults.
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn neighbouring_seeds_make_different_choices() {
    for seed in 0..1000u64 {
        let draw = |s| {
            let mut r = Rng::new(s);
            [r.next(), r.next(), r.next()]
        };
        assert_ne!(draw(seed), draw(seed + 1), "seeds {seed} and {} share their choices", seed + 1);
    }
}

const KEYS: u64 = 6;
const CLIENTS: u64 = 6;

fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

/// Runs one call: the value read (gets) and whether it swapped (compare-and-swaps).
async fn call(
    c: &mut KVClient<tonic::transport::Channel>,
    op: &Call,
) -> Result<(Option<String>, Option<bool>), tonic::Status> {
    match op {
        Call::Get { key } => {
            let r = c.range(pb::RangeRequest { key: b(key), ..Default::default() }).await?;
            let v = r.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into());
            Ok((v, None))
        }
        Call::Put { key, value } => {
            let req = pb::PutRequest { key: b(key), value: b(value), ..Default::default() };
            c.put(req).await?;
            Ok((None, None))
        }
        Call::Delete { key } => {
            c.delete_range(pb::DeleteRangeRequest { key: b(key), ..Default::default() }).await?;
            Ok((None, None))
        }
        Call::Cas { key, expected, value } => {
            use pb::compare::TargetUnion;
            // Absent: version 0; else the value must match.
            let compare = match expected {
                Some(v) => pb::Compare {
                    result: 0,
                    target: 3,
                    key: b(key),
                    target_union: Some(TargetUnion::Value(b(v))),
                    ..Default::default()
                },
                None => pb::Compare {
                    result: 0,
                    target: 0,
                    key: b(key),
                    target_union: Some(TargetUnion::Version(0)),
                    ..Default::default()
                },
            };
            let put = pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: b(key),
                    value: b(value),
                    ..Default::default()
                })),
            };
            let req =
                pb::TxnRequest { compare: vec![compare], success: vec![put], failure: vec![] };
            let r = c.txn(req).await?;
            Ok((None, Some(r.into_inner().succeeded)))
        }
    }
}

/// One client: one operation at a time against one member, switching members after an
/// error. After an operation with an unknown outcome it continues under a new client id
/// (that operation may still take effect at any time).
async fn client(
    id: u64,
    eps: Vec<String>,
    seed: u64,
    start: Instant,
    until: Instant,
    history: Arc<Mutex<Vec<Operation>>>,
) {
    let mut rng = Rng::new(seed);
    let mut me = id;
    let mut n = 0u64;
    let mut conn: Option<KVClient<tonic::transport::Channel>> = None;
    while Instant::now() < until {
        if conn.is_none() {
            let ep = &eps[rng.below(eps.len() as u64) as usize];
            conn = common::kv(ep).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let c = conn.as_mut().expect("connected above");
        n += 1;
        let key = format!("k{}", rng.below(KEYS));
        let value = format!("c{id}-{n}");
        let op = match rng.below(20) {
            0..=7 => Call::Get { key },
            8..=13 => Call::Put { key, value },
            14..=17 => {
                let expected = if rng.below(4) == 0 {
                    None
                } else {
                    // A value some client may have written recently.
                    Some(format!("c{}-{}", rng.below(CLIENTS), n.saturating_sub(rng.below(4))))
                };
                Call::Cas { key, expected, value }
            }
            _ => Call::Delete { key },
        };
        let invoke = start.elapsed().as_micros() as u64;
        let r = tokio::time::timeout(Duration::from_secs(3), call(c, &op)).await;
        let complete = start.elapsed().as_micros() as u64;
        let mut rec = Operation {
            client: me,
            call: op.clone(),
            invoke,
            complete: None,
            outcome: Outcome::Unknown,
            read: None,
            succeeded: None,
        };
        match r {
            Ok(Ok((read, succeeded))) => {
                rec.outcome = Outcome::Ok;
                rec.complete = Some(complete);
                rec.read = read;
                rec.succeeded = succeeded;
            }
            Ok(Err(status)) => {
                // Reads change nothing; a write refused before it was proposed ("no leader")
                // or whose entry was replaced ("leader changed") did not take effect.
                let proven = status.message().contains("no leader")
                    || status.message().contains("leader changed");
                if matches!(op, Call::Get { .. }) || proven {
                    rec.outcome = Outcome::Failed;
                }
                conn = None;
            }
            Err(_elapsed) => {
                if matches!(op, Call::Get { .. }) {
                    rec.outcome = Outcome::Failed;
                }
                conn = None;
            }
        }
        let unknown = rec.outcome == Outcome::Unknown;
        history.lock().unwrap().push(rec);
        if unknown {
            me += 1000;
        }
    }
}

/// Asks the current leader to hand leadership to another member (Thesis §3.10). Returns what
/// happened, for the test's log; a refusal (no leader known, a transfer already running) is
/// fine: the fault is best effort.
fn move_leader(eps: &[String], pick: u64) -> String {
    common::runtime().block_on(async {
        let mut members = Vec::new();
        for ep in eps {
            let Ok(ch) = tonic::transport::Endpoint::from_shared(ep.clone()) else { continue };
            let Ok(ch) = ch.timeout(Duration::from_secs(1)).connect().await else { continue };
            let mut m = MaintenanceClient::new(ch);
            if let Ok(st) = m.status(pb::StatusRequest {}).await {
                let st = st.into_inner();
                let id = st.header.map_or(0, |h| h.member_id);
                members.push((id, st.leader, m));
            }
        }
        let Some(i) = members.iter().position(|(id, leader, _)| id == leader) else {
            return "no leader to move".to_string();
        };
        let others: Vec<u64> =
            members.iter().map(|(id, _, _)| *id).filter(|id| *id != members[i].0).collect();
        if others.is_empty() {
            return "no other member to move the leader to".to_string();
        }
        let target = others[pick as usize % others.len()];
        let from = members[i].0;
        match members[i].2.move_leader(pb::MoveLeaderRequest { target_id: target }).await {
            Ok(_) => format!("moved the leader from {from} to {target}"),
            Err(e) => format!("leader move {from} -> {target} refused: {}", e.message()),
        }
    })
}

#[test]
fn histories_under_kills_pauses_and_leader_moves_are_linearizable() {
    let secs: u64 =
        std::env::var("FLOTILLA_FAULT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let seed: u64 = std::env::var("FLOTILLA_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("FLOTILLA_FAULT_SEED={seed} FLOTILLA_FAULT_SECS={secs}");
    let dir = tempfile::tempdir().unwrap();
    let mut servers = common::cluster(dir.path(), 200);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();

    // Clients on their own thread; the nemesis on this one.
    let history = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let clients = {
        let (eps, history) = (eps.clone(), history.clone());
        std::thread::spawn(move || {
            common::runtime().block_on(async move {
                let tasks: Vec<_> = (0..CLIENTS)
                    .map(|i| {
                        let s = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                        tokio::spawn(client(i, eps.clone(), s, start, until, history.clone()))
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    };
    let mut rng = Rng::new(seed ^ 0xA5A5_A5A5);
    let mut faults = Vec::new();
    // Let the cluster elect and serve a little before the first fault.
    std::thread::sleep(Duration::from_millis(1500));
    while Instant::now() + Duration::from_millis(2500) < until {
        let victim = rng.below(3) as usize;
        let pause = Duration::from_millis(300 + rng.below(900));
        let pid = servers[victim].pid().expect("every member runs between faults");
        let fault = rng.below(4);
        if fault == 3 {
            faults.push(move_leader(&eps, rng.next()));
        } else if fault == 2 {
            // Frozen: its peers time out and elect; its clients wait.
            kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
            std::thread::sleep(pause);
            kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
            faults.push(format!("froze m{victim} for {} ms", pause.as_millis()));
        } else {
            servers[victim].kill();
            std::thread::sleep(pause);
            servers[victim].start();
            faults.push(format!("killed m{victim}, restarted after {} ms", pause.as_millis()));
        }
        std::thread::sleep(Duration::from_millis(500 + rng.below(1000)));
    }
    clients.join().unwrap();
    for (i, s) in servers.iter_mut().enumerate() {
        if let Some(c) = s.child.as_mut() {
            assert!(c.try_wait().unwrap().is_none(), "member m{i} exited on its own");
        }
    }
    // Replicas converge: a last write, then every member's store hashes alike at its
    // revision (HashKV), the restarted and the snapshot-restored ones too.
    let rt = common::runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    let eps_ref: Vec<&str> = eps.iter().map(String::as_str).collect();
    let last = rt.block_on(common::put(&eps_ref, "faults/last", "x", deadline));
    let hashes = common::hashes_at(&rt, &eps, last, deadline);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "members' stores differ at {last}: {hashes:?}");
    let ops = history.lock().unwrap().clone();
    let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let (ok, failed, unknown) =
        (count(Outcome::Ok), count(Outcome::Failed), count(Outcome::Unknown));
    eprintln!(
        "{} operations: {ok} ok, {failed} failed, {unknown} unknown; faults: {}",
        ops.len(),
        faults.join("; ")
    );
    assert!(faults.len() >= 2, "the nemesis acted: {faults:?}");
    assert!(ok >= 200, "the cluster served through the faults: {ok} ok operations");
    match check(&ops) {
        Verdict::Linearizable => {}
        other => {
            let path = std::env::temp_dir().join(format!("flotilla-faults-{seed}.jsonl"));
            let mut f = std::fs::File::create(&path).unwrap();
            flotilla_lincheck::write(&mut f, &ops).unwrap();
            panic!("not linearizable (seed {seed}, history in {}): {other:?}", path.display());
        }
    }
}
