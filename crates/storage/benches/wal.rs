//! WAL throughput with group commit, beside the raw `fdatasync` rate of the same disk measured
//! in the same run. Reports entries/s and MB/s for 64 B and 1 KiB entries with 1, 8 and 64
//! concurrent appenders, and the ratio of entries/s to the raw fsyncs/s.
//!
//! Run: `cargo bench -p flotilla-storage --bench wal` (files go to `target/wal-bench`, on the
//! same disk as the build, or to `$FLOTILLA_BENCH_DIR`). Add `-- --quick` for short runs.

// Wall-clock timing is the point of a benchmark.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_raft::{Membership, NodeId, Term};
use flotilla_storage::{FileSystem, FsFile, GroupWal, RealFs, WalOptions};

fn bench_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/wal-bench"))
}

fn raw_fsyncs_per_sec(dir: &std::path::Path, secs: f64) -> f64 {
    let path = dir.join("raw.bin");
    let mut f = RealFs.create(&path).expect("create the raw file");
    let block = [0u8; 64];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.append(&block).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

fn group_commit(dir: &std::path::Path, appenders: usize, size: usize, secs: f64) -> (f64, f64) {
    let wal_dir = dir.join(format!("wal-{appenders}-{size}"));
    let _ = std::fs::remove_dir_all(&wal_dir);
    let members = Membership::new([NodeId(1)], []).expect("one voter");
    let wal = GroupWal::create(RealFs, &wal_dir, members, Term(1), WalOptions::default())
        .expect("create");
    let payload = Bytes::from(vec![0x5Au8; size]);
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..appenders {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    wal.append(payload.clone()).expect("append");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed) as f64;
    let batches = wal.batches() as f64;
    drop(wal);
    let _ = std::fs::remove_dir_all(&wal_dir);
    (n / elapsed, n / batches.max(1.0))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 0.5 } else { 2.0 };
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench directory");
    let raw = raw_fsyncs_per_sec(&dir, secs);
    println!("flotilla-storage WAL, directory {}", dir.display());
    println!("raw fdatasync (64 B write + fdatasync, one thread): {raw:.0} fsyncs/s");
    println!(
        "{:>9} {:>8} {:>12} {:>9} {:>12} {:>16}",
        "appenders", "entry", "entries/s", "MB/s", "per sync", "x raw fsyncs/s"
    );
    for size in [64usize, 1024] {
        for appenders in [1usize, 8, 64] {
            let (rate, per_batch) = group_commit(&dir, appenders, size, secs);
            println!(
                "{appenders:>9} {size:>7}B {rate:>12.0} {:>9.2} {per_batch:>12.1} {:>16.1}",
                rate * size as f64 / 1e6,
                rate / raw
            );
        }
    }
}
