//! Teeth: the simulator must find known bugs. With the `planted-bugs` feature, each bug of
//! `flotilla_raft::PlantedBug` is planted into every node in turn, and the simulator must
//! report a violation within a bounded number of seeds.
//!
//! `cargo test -p flotilla-sim --release --features planted-bugs --test teeth -- --nocapture`
#![cfg(feature = "planted-bugs")]

use flotilla_raft::PlantedBug;
use flotilla_sim::{run, SimConfig};

/// Seeds tried per bug before the test fails.
const SEEDS_MAX: u64 = 200;

fn first_failing_seed(bug: PlantedBug) -> Option<(u64, String)> {
    (1..=SEEDS_MAX).find_map(|seed| {
        let cfg = SimConfig { bug: Some(bug), ..SimConfig::from_seed(seed) };
        let outcome = std::panic::catch_unwind(|| run(cfg));
        match outcome {
            Ok(r) => r.violation.map(|v| (seed, v.to_string())),
            Err(_) => Some((seed, "panic".to_string())),
        }
    })
}

#[test]
fn simulator_finds_every_planted_bug() {
    let mut missed = Vec::new();
    for bug in PlantedBug::ALL {
        match first_failing_seed(bug) {
            Some((seed, what)) => {
                let first_line = what.lines().next().unwrap_or_default().to_string();
                println!("{:<26} found at seed {seed:>3}: {first_line}", bug.name());
            }
            None => {
                println!("{:<26} NOT found in {SEEDS_MAX} seeds", bug.name());
                missed.push(bug);
            }
        }
    }
    assert!(missed.is_empty(), "the simulator missed {missed:?}");
}

/// Without a planted bug the same seeds pass: the failures above are the bugs' doing.
#[test]
fn same_seeds_pass_without_a_bug() {
    for seed in 1..=20 {
        let r = run(SimConfig::from_seed(seed));
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
    }
}
