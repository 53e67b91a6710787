//! Hand-made histories, linearizable and not, each named after the situation it captures, and
//! property tests: histories recorded from a real sequential execution (with overlapping
//! intervals) are always linearizable; corrupting one read makes them not.

use flotilla_lincheck::{check, Call, Operation, Outcome, Verdict};
use proptest::prelude::*;

/// `"<client> <op> <key> [args] <invoke>..<complete|?> <ok|failed|unknown> [result]"`:
/// `put a 1`, `get a` (result `=v` or `=-` for absent), `del a`, `cas a EXP NEW` (`-` for
/// absent; result `true`/`false`).
fn op(s: &str) -> Operation {
    let w: Vec<&str> = s.split_whitespace().collect();
    let client = w[0].parse().unwrap();
    let key = w[2].to_string();
    let (call, rest) = match w[1] {
        "put" => (Call::Put { key, value: w[3].into() }, &w[4..]),
        "get" => (Call::Get { key }, &w[3..]),
        "del" => (Call::Delete { key }, &w[3..]),
        "cas" => {
            let expected = (w[3] != "-").then(|| w[3].to_string());
            (Call::Cas { key, expected, value: w[4].into() }, &w[5..])
        }
        other => panic!("bad op {other}"),
    };
    let (inv, comp) = rest[0].split_once("..").unwrap();
    let outcome = match rest[1] {
        "ok" => Outcome::Ok,
        "failed" => Outcome::Failed,
        "unknown" => Outcome::Unknown,
        o => panic!("bad outcome {o}"),
    };
    let mut read = None;
    let mut succeeded = None;
    if let Some(r) = rest.get(2) {
        if let Some(v) = r.strip_prefix('=') {
            read = (v != "-").then(|| v.to_string());
        } else {
            succeeded = Some(*r == "true");
        }
    }
    Operation {
        client,
        call,
        invoke: inv.parse().unwrap(),
        complete: (comp != "?").then(|| comp.parse().unwrap()),
        outcome,
        read,
        succeeded,
    }
}

fn verdict(lines: &[&str]) -> bool {
    let ops: Vec<Operation> = lines.iter().map(|l| op(l)).collect();
    match check(&ops) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable { .. } => false,
        v => panic!("inconclusive: {v:?}"),
    }
}

macro_rules! history_test {
    ($name:ident, $want:expr, [$($line:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            assert_eq!(verdict(&[$($line),*]), $want, "history {}", stringify!($name));
        }
    };
}

history_test!(empty_history_is_linearizable, true, []);
history_test!(single_put, true, ["1 put a 1 0..10 ok"]);
history_test!(read_after_write_sees_it, true, ["1 put a 1 0..10 ok", "2 get a 11..12 ok =1"]);
history_test!(
    stale_read_after_completed_write,
    false,
    ["1 put a 1 0..10 ok", "2 get a 11..12 ok =-"]
);
history_test!(
    lost_write_read_returns_overwritten_value,
    false,
    ["1 put a 1 0..10 ok", "1 put a 2 11..20 ok", "2 get a 21..22 ok =1"]
);
history_test!(read_of_a_value_never_written, false, ["1 put a 1 0..10 ok", "2 get a 11..12 ok =7"]);
history_test!(
    concurrent_read_may_see_new_value,
    true,
    ["1 put a 1 0..10 ok", "2 get a 5..6 ok =1"]
);
history_test!(
    concurrent_read_may_see_old_value,
    true,
    ["1 put a 1 0..10 ok", "2 get a 5..6 ok =-"]
);
history_test!(
    new_then_old_inversion_between_sequential_reads,
    false,
    ["1 put a 1 0..100 ok", "2 get a 10..20 ok =1", "3 get a 30..40 ok =-"]
);
history_test!(
    timed_out_write_that_took_effect,
    true,
    ["1 put a 1 0..? unknown", "2 get a 50..60 ok =1"]
);
history_test!(
    timed_out_write_that_did_not_take_effect,
    true,
    ["1 put a 1 0..? unknown", "2 get a 50..60 ok =-"]
);
history_test!(
    timed_out_write_may_take_effect_long_after_the_timeout,
    true,
    ["1 put a 1 0..? unknown", "2 get a 50..60 ok =-", "2 get a 500..600 ok =1"]
);
history_test!(
    timed_out_write_cannot_be_undone,
    false,
    ["1 put a 1 0..? unknown", "2 get a 50..60 ok =1", "2 get a 70..80 ok =-"]
);
history_test!(
    timed_out_write_cannot_take_effect_before_invocation,
    false,
    ["2 get a 0..10 ok =1", "1 put a 1 20..? unknown"]
);
history_test!(
    failed_write_never_takes_effect,
    false,
    ["1 put a 1 0..10 failed", "2 get a 20..30 ok =1"]
);
history_test!(
    concurrent_cas_from_same_value_cannot_both_succeed,
    false,
    ["1 cas a - x 0..10 ok true", "2 cas a - y 0..10 ok true"]
);
history_test!(
    concurrent_cas_one_wins_one_loses,
    true,
    ["1 cas a - x 0..10 ok true", "2 cas a - y 0..10 ok false", "3 get a 20..30 ok =x"]
);
history_test!(
    cas_fails_although_value_matched,
    false,
    ["1 put a 1 0..10 ok", "2 cas a 1 2 20..30 ok false"]
);
history_test!(
    unknown_cas_may_have_swapped,
    true,
    ["1 put a 1 0..10 ok", "2 cas a 1 2 20..? unknown", "3 get a 40..50 ok =2"]
);
history_test!(
    unknown_cas_may_not_have_swapped,
    true,
    ["1 put a 1 0..10 ok", "2 cas a 1 2 20..? unknown", "3 get a 40..50 ok =1"]
);
history_test!(
    delete_then_read_absent,
    true,
    ["1 put a 1 0..10 ok", "1 del a 11..20 ok", "2 get a 21..30 ok =-"]
);
history_test!(
    read_after_delete_returns_deleted_value,
    false,
    ["1 put a 1 0..10 ok", "1 del a 11..20 ok", "2 get a 21..30 ok =1"]
);
history_test!(
    keys_are_independent_and_one_bad_key_fails_the_history,
    false,
    ["1 put a 1 0..10 ok", "2 get a 11..12 ok =1", "1 put b 1 0..10 ok", "2 get b 11..12 ok =-"]
);
history_test!(
    touching_intervals_count_as_concurrent,
    true,
    ["1 put a 1 0..10 ok", "2 get a 10..12 ok =-"]
);
history_test!(
    reads_see_sequential_writes_out_of_order,
    false,
    ["1 put a 1 0..10 ok", "1 put a 2 11..20 ok", "2 get a 21..22 ok =2", "3 get a 23..24 ok =1"]
);
history_test!(
    many_concurrent_writers_with_consistent_reads,
    true,
    [
        "1 put a 1 0..50 ok",
        "2 put a 2 0..50 ok",
        "3 put a 3 0..50 ok",
        "4 get a 10..20 ok =2",
        "5 get a 25..30 ok =1",
        "6 get a 60..70 ok =3",
    ]
);
history_test!(
    failed_operations_are_ignored,
    true,
    [
        "1 put a 9 0..5 failed",
        "1 put a 1 6..10 ok",
        "2 cas a 1 2 7..9 failed",
        "2 get a 11..12 ok =1"
    ]
);

/// On failure the checker names the key and shrinks to a small sub-history.
#[test]
fn counterexample_names_the_key_and_is_small() {
    let mut lines: Vec<String> = Vec::new();
    for i in 0..200u64 {
        lines.push(format!("{} put k {} {}..{} ok", i % 5, i, i * 10, i * 10 + 5));
        lines.push(format!("{} get k {}..{} ok ={}", i % 5 + 10, i * 10 + 6, i * 10 + 8, i));
    }
    // One stale read in the middle.
    lines[201] = "99 get k 1006..1008 ok =3".into();
    let ops: Vec<Operation> = lines.iter().map(|l| op(l)).collect();
    match check(&ops) {
        Verdict::NotLinearizable { key, ops } => {
            assert_eq!(key, "k");
            assert!(ops.len() <= 3, "shrunk to {} operations", ops.len());
            assert!(ops.iter().any(|o| o.client == 99), "the stale read is in it: {ops:?}");
        }
        v => panic!("{v:?}"),
    }
}

/// A sequential execution of random operations on one model, recorded with random intervals
/// that contain the true execution instant: always linearizable.
fn recorded_history(seed_ops: &[(u8, u8, u8, u16, u16)]) -> Vec<Operation> {
    let mut state: std::collections::BTreeMap<String, String> = Default::default();
    let mut out = Vec::new();
    for (t, (kind, key, val, before, after)) in seed_ops.iter().enumerate() {
        let key = format!("k{}", key % 3);
        let value = format!("v{}", val % 4);
        // Instants 1000 apart, intervals up to 3000 either side: each overlaps several others.
        let at = 3000 + t as u64 * 1000;
        let invoke = at - u64::from(*before);
        let complete = Some(at + u64::from(*after));
        let mut o = Operation {
            client: t as u64,
            call: Call::Get { key: key.clone() },
            invoke,
            complete,
            outcome: Outcome::Ok,
            read: None,
            succeeded: None,
        };
        match kind % 4 {
            0 => o.read = state.get(&key).cloned(),
            1 => {
                o.call = Call::Put { key: key.clone(), value: value.clone() };
                state.insert(key, value);
            }
            2 => {
                o.call = Call::Delete { key: key.clone() };
                state.remove(&key);
            }
            _ => {
                let expected = (val % 2 == 0).then(|| format!("v{}", (val / 2) % 4));
                let swaps = state.get(&key) == expected.as_ref();
                o.call = Call::Cas { key: key.clone(), expected, value: value.clone() };
                o.succeeded = Some(swaps);
                if swaps {
                    state.insert(key, value);
                }
            }
        }
        out.push(o);
    }
    out
}

proptest! {
    #[test]
    fn recorded_sequential_executions_are_linearizable(
        ops in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 0u16..3000, 0u16..3000), 1..80),
        unknown in proptest::collection::vec(any::<bool>(), 80),
    ) {
        let mut h = recorded_history(&ops);
        // Turning any write's outcome into "unknown" keeps it linearizable: it did take effect.
        for (o, u) in h.iter_mut().zip(unknown) {
            if u && !matches!(o.call, Call::Get { .. }) {
                o.outcome = Outcome::Unknown;
                o.complete = None;
            }
        }
        prop_assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught(
        ops in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 0u16..3000, 0u16..3000), 1..80),
        pick in any::<usize>(),
    ) {
        let mut h = recorded_history(&ops);
        let reads: Vec<usize> = (0..h.len()).filter(|i| matches!(h[*i].call, Call::Get { .. })).collect();
        prop_assume!(!reads.is_empty());
        let i = reads[pick % reads.len()];
        h[i].read = Some("never-written".into());
        let is_not_linearizable = matches!(check(&h), Verdict::NotLinearizable { .. });
        prop_assert!(is_not_linearizable);
    }
}
