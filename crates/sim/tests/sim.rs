//! The simulator's own guarantees: a seed replays byte for byte; the sweep passes; and the
//! linearizability check has teeth of its own.

use flotilla_sim::{run, SimConfig};

/// ARCHITECTURE.md, design rule 3: "every choice drawn from one u64 seed". The same seed gives
/// a byte-identical trace; another seed a different one.
#[test]
fn same_seed_gives_a_byte_identical_trace() {
    let traced =
        |seed| run(SimConfig { trace: true, fault_us: 3_000_000, ..SimConfig::from_seed(seed) });
    let a = traced(5);
    let b = traced(5);
    assert!(a.trace.len() > 500, "the trace records events ({} lines)", a.trace.len());
    assert_eq!(a.trace.join("\n"), b.trace.join("\n"));
    assert_eq!(a.history, b.history);
    assert_ne!(a.trace, traced(6).trace);
}

/// A short sweep in the test suite (the long one runs in CI in release mode).
#[test]
fn a_sweep_of_seeds_holds_every_property() {
    for seed in 1..=12 {
        let r = run(SimConfig { fault_us: 5_000_000, ..SimConfig::from_seed(seed) });
        assert!(r.violation.is_none(), "seed {seed}: {}", r.violation.unwrap());
        assert!(r.stats.ops_ok > 0, "seed {seed} committed client operations");
    }
}

/// Runs do exercise faults: across a few seeds there are crashes, partitions, lost messages,
/// storage errors, several terms and operations with unknown outcomes.
#[test]
fn runs_exercise_faults() {
    let (mut crashes, mut partitions, mut dropped, mut max_term, mut unknown, mut disk) =
        (0, 0, 0, 0, 0, 0);
    for seed in 1..=8 {
        let s = run(SimConfig { fault_us: 5_000_000, ..SimConfig::from_seed(seed) }).stats;
        crashes += s.crashes;
        disk += s.disk_faults;
        partitions += s.partitions;
        dropped += s.dropped;
        max_term = max_term.max(s.max_term);
        unknown += s.ops_unknown;
    }
    assert!(
        crashes > 0 && partitions > 0 && dropped > 0 && unknown > 0,
        "{crashes} {partitions} {dropped} {unknown}"
    );
    assert!(max_term >= 5, "leaders changed: max term {max_term}");
    assert!(disk > 0, "storage errors stopped servers");
}

/// A leader that answers reads locally, without the log or a leadership check, serves stale
/// reads once deposed. No per-node invariant notices; the history check must.
#[test]
fn linearizability_check_catches_stale_local_reads() {
    let found = (1..=100).find_map(|seed| {
        let r = run(SimConfig { unsafe_local_reads: true, ..SimConfig::from_seed(seed) });
        r.violation.map(|v| (seed, v))
    });
    let (seed, v) = found.expect("stale reads are found within 100 seeds");
    assert_eq!(v.property, "Linearizability", "seed {seed}: {v}");
}

/// The state machine is the server's MVCC store, and the states themselves are compared:
/// a snapshot that restores a different state than was taken is caught by the state hash
/// check, which no per-entry checker sees (the log itself stays correct).
#[test]
fn state_hash_check_catches_unfaithful_snapshots() {
    let found = (1..=200).find_map(|seed| {
        let r = run(SimConfig { lossy_snapshots: true, ..SimConfig::from_seed(seed) });
        r.violation.map(|v| (seed, v))
    });
    let (seed, v) = found.expect("unfaithful snapshots are found within 200 seeds");
    assert_eq!(v.property, "State Machine Safety (state)", "seed {seed}: {v}");
}

/// Background syncs (as the server's driver makes them): every mode of the rule — never,
/// always, and the server's (batches only) — holds every property across seeds, and the
/// syncs do run in the background.
#[test]
fn background_syncs_hold_every_property() {
    for detach in [0, 1, 2] {
        let mut detached = 0;
        for seed in 1..=6 {
            let cfg = SimConfig {
                fault_us: 5_000_000,
                detach_min_entries: detach,
                ..SimConfig::from_seed(seed)
            };
            let r = run(cfg);
            assert!(
                r.violation.is_none(),
                "detach {detach}, seed {seed}: {}",
                r.violation.unwrap()
            );
            detached += r.stats.detached_syncs;
        }
        assert_eq!(detached > 0, detach > 0, "detach {detach}: {detached} background syncs");
    }
}

/// A server that answers before its background sync has made the write durable is caught:
/// the commit rule sees a leader count a copy that is not durable yet.
#[test]
fn answering_before_a_background_sync_is_caught() {
    let found = (1..=50).find_map(|seed| {
        let cfg =
            SimConfig { early_answers: true, detach_min_entries: 1, ..SimConfig::from_seed(seed) };
        run(cfg).violation.map(|v| (seed, v))
    });
    let (seed, v) = found.expect("early answers are found within 50 seeds");
    assert_eq!(v.property, "Commit rule", "seed {seed}: {v}");
}

/// Issue 5: with compaction on, servers snapshot and compact, and servers that were down or
/// cut off long enough catch up through InstallSnapshot (in small chunks, so transfers span
/// several and are interrupted by crashes and losses), with every checker green.
#[test]
fn compaction_runs_snapshot_and_install() {
    let (mut taken, mut installed, mut overlapped) = (0, 0, 0);
    for seed in 1..=10 {
        let cfg = SimConfig {
            fault_us: 5_000_000,
            snapshot_every: 20,
            snapshot_keep: 5,
            snapshot_chunk_bytes: 64,
            ..SimConfig::from_seed(seed)
        };
        let r = run(cfg);
        assert!(r.violation.is_none(), "seed {seed}: {}", r.violation.unwrap());
        taken += r.stats.snapshots;
        installed += r.stats.installs;
        overlapped += r.stats.snapshots_overlapped;
    }
    assert!(overlapped > 10, "applies continued during background snapshot writes: {overlapped}");
    assert!(taken > 50, "snapshots taken: {taken}");
    assert!(installed > 5, "snapshots installed from a leader: {installed}");
}
