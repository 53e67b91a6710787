//! Checker speed: a 10,000-operation history over 10 keys from 20 concurrent clients, made by
//! a seeded simulated execution (each operation takes effect at a random instant inside its
//! interval; 5% of writes time out and become "unknown", half of them having taken effect).
//! Goal: checked in under a second.
//!
//! Run: `cargo bench -p flotilla-lincheck --bench check`

// The clock is used only to time the check.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Instant;

use flotilla_lincheck::{check, Call, Operation, Outcome, Verdict};
use flotilla_raft::Rng;

fn history(seed: u64, n_ops: usize, keys: u32, clients: u64) -> Vec<Operation> {
    let mut rng = Rng::new(seed);
    // Each client runs operations back to back: (invoke, complete, effect instant).
    let mut clock = vec![0u64; clients as usize];
    let mut planned = Vec::new();
    for i in 0..n_ops {
        let c = i % clients as usize;
        let invoke = clock[c] + u64::from(rng.in_range(0, 20));
        let complete = invoke + u64::from(rng.in_range(1, 200));
        let at = invoke + u64::from(rng.in_range(0, (complete - invoke) as u32 + 1));
        clock[c] = complete;
        let key = format!("k{}", rng.in_range(0, keys));
        let value = format!("v{i}");
        let call = match rng.in_range(0, 10) {
            0..=4 => Call::Get { key },
            5..=7 => Call::Put { key, value },
            8 => Call::Delete { key },
            _ => Call::Cas {
                key,
                expected: Some(format!("v{}", rng.in_range(0, i as u32 + 1))),
                value,
            },
        };
        planned.push((at, c as u64, invoke, complete, call, rng.in_range(0, 100)));
    }
    planned.sort_by_key(|p| p.0);
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    let mut ops = Vec::new();
    for (_, client, invoke, complete, call, dice) in planned {
        let timed_out = !matches!(call, Call::Get { .. }) && dice < 5;
        let takes_effect = !timed_out || dice < 3;
        let mut op = Operation {
            client,
            call: call.clone(),
            invoke,
            complete: Some(complete),
            outcome: Outcome::Ok,
            read: None,
            succeeded: None,
        };
        if takes_effect {
            match call {
                Call::Get { key } => op.read = state.get(&key).cloned(),
                Call::Put { key, value } => {
                    state.insert(key, value);
                }
                Call::Delete { key } => {
                    state.remove(&key);
                }
                Call::Cas { key, expected, value } => {
                    let swaps = state.get(&key) == expected.as_ref();
                    op.succeeded = Some(swaps);
                    if swaps {
                        state.insert(key, value);
                    }
                }
            }
        }
        if timed_out {
            op.outcome = Outcome::Unknown;
            op.complete = None;
            op.succeeded = None;
        }
        ops.push(op);
    }
    ops.sort_by_key(|o| o.invoke);
    ops
}

fn main() {
    println!("flotilla-lincheck: 10,000 operations, 10 keys, 20 clients");
    let mut worst = 0f64;
    for seed in 1..=5 {
        let h = history(seed, 10_000, 10, 20);
        let start = Instant::now();
        let v = check(&h);
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(v, Verdict::Linearizable, "seed {seed}: a recorded execution is linearizable");
        worst = worst.max(secs);
        println!("seed {seed}: linearizable, checked in {:.3} s", secs);
    }
    println!("worst: {worst:.3} s (goal: under 1 s)");
}
