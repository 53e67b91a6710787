//! Real crashes: a child process appends from four threads and prints each index once it is
//! acknowledged durable; it is killed with SIGKILL at a random moment and the log reopened.
//! Every acknowledged index must be present with its data. The next round appends to the
//! same log, so the rounds also test recovery after recovery.
//!
//! Rounds: `FLOTILLA_CRASH_ROUNDS` (default 100).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_storage::{RealFs, Wal, WalOptions};

#[test]
fn acknowledged_appends_survive_sigkill() {
    let rounds: u64 =
        std::env::var("FLOTILLA_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut rng = flotilla_raft::Rng::new(0xC0FFEE);
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        std::thread::sleep(Duration::from_millis(u64::from(rng.in_range(5, 60))));
        child.kill().expect("SIGKILL the child");
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(err.is_empty(), "round {round}: the child reported {err:?} ({status})");
        for line in out.lines() {
            // The last line may be cut by the kill; only whole lines were acknowledged.
            if let Some((i, d)) = line.split_once(' ') {
                if let Ok(i) = i.parse::<u64>() {
                    if d.starts_with('p') && d.contains('i') {
                        acked.insert(i, d.to_string());
                    }
                }
            }
        }
        let (_, rec) = Wal::open(
            RealFs,
            &dir,
            WalOptions { segment_bytes: 64 << 10, ..WalOptions::default() },
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let got: BTreeMap<u64, &[u8]> =
            rec.entries.iter().map(|e| (e.index.0, &e.data[..])).collect();
        for (i, d) in &acked {
            match got.get(i) {
                Some(data) if *data == d.as_bytes() => {}
                other => panic!("round {round}: acknowledged {i} = {d:?} but recovered {other:?}"),
            }
        }
    }
    assert!(
        acked.len() as u64 > rounds,
        "the children acknowledged appends ({} in {rounds} rounds)",
        acked.len()
    );
}
