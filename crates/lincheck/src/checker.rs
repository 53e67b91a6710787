//! Linearizability of key-value histories (Herlihy & Wing, 1990).
//!
//! The search is Wing and Gong's, with Lowe's memoization ("Testing for linearizability",
//! 2017), as Porcupine uses it: walk the history's call and return events in time order; at
//! a call, try to linearize that operation now (apply it to the model; if the model accepts
//! its recorded output, remove it from the list and restart from the head); at the return of
//! an operation not yet linearized, undo the last choice. A set of (operations linearized,
//! model state) pairs already explored cuts repeated work.
//!
//! A key-value store is a set of independent registers, so the history is split per key and
//! each part checked alone (P-compositionality, Horn & Kroening, 2015): a history is
//! linearizable if and only if every per-key sub-history is.
//!
//! Outcomes: `failed` operations never took effect and are dropped. `unknown` operations may
//! take effect at any point after their invocation or never: they have no return event, so
//! the search may linearize them anywhere after their call, or not at all. An unknown `get`
//! constrains nothing and is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{Call, Operation, Outcome};

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// This key's operations cannot be linearized; `ops` is a small sub-history that cannot be
    /// either (found by shrinking), in invocation order.
    NotLinearizable {
        /// The key.
        key: String,
        /// A non-linearizable sub-history.
        ops: Vec<Operation>,
    },
    /// The search for this key explored more states than the budget allowed.
    Inconclusive {
        /// The key.
        key: String,
        /// States explored.
        states: usize,
    },
}

/// Limits on the search.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Distinct (linearized set, state) pairs per key before giving up.
    pub max_states_per_key: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget { max_states_per_key: 5_000_000 }
    }
}

/// Checks a history with the default budget.
///
/// ```
/// use flotilla_lincheck::{check, read, Verdict};
/// // Client 2 reads "1" after client 1's put of "1" completed: fine. Client 3 then reads the
/// // key as absent although nothing deleted it: a stale read.
/// let history = r#"
/// {"client":1,"op":"put","key":"a","value":"1","invoke":0,"complete":10,"outcome":"ok"}
/// {"client":2,"op":"get","key":"a","invoke":11,"complete":12,"outcome":"ok","read":"1"}
/// {"client":3,"op":"get","key":"a","invoke":13,"complete":14,"outcome":"ok","read":null}
/// "#;
/// let ops = read(history.as_bytes()).unwrap();
/// assert!(matches!(check(&ops), Verdict::NotLinearizable { .. }));
/// assert_eq!(check(&ops[..2]), Verdict::Linearizable);
/// ```
pub fn check(ops: &[Operation]) -> Verdict {
    check_with(ops, Budget::default())
}

/// Checks a history, key by key, within `budget`.
pub fn check_with(ops: &[Operation], budget: Budget) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.call.key()).or_default().push(op);
    }
    for (key, ops) in by_key {
        let prepared = Prepared::new(&ops);
        match prepared.search(budget.max_states_per_key) {
            Search::Linearizable => {}
            Search::Exceeded(states) => {
                return Verdict::Inconclusive { key: key.to_string(), states };
            }
            Search::NotLinearizable => {
                let keep = prepared.shrink(budget.max_states_per_key);
                let mut sub: Vec<Operation> =
                    keep.into_iter().map(|i| prepared.source[i].clone()).collect();
                sub.sort_by_key(|o| o.invoke);
                return Verdict::NotLinearizable { key: key.to_string(), ops: sub };
            }
        }
    }
    Verdict::Linearizable
}

/// An operation reduced to what the model needs; values interned (0 = absent).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Get { read: u32 },
    Put { value: u32 },
    Delete,
    Cas { expected: u32, value: u32, succeeded: Option<bool> },
}

impl Kind {
    /// The register model: the new state if the operation, with its recorded output, is
    /// possible in `state`.
    fn step(self, state: u32) -> Option<u32> {
        match self {
            Kind::Get { read } => (state == read).then_some(state),
            Kind::Put { value } => Some(value),
            Kind::Delete => Some(0),
            Kind::Cas { expected, value, succeeded } => {
                let swaps = state == expected;
                match succeeded {
                    Some(true) => swaps.then_some(value),
                    Some(false) => (!swaps).then_some(state),
                    // Unknown outcome: it did whatever the state made it do.
                    None => Some(if swaps { value } else { state }),
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Op {
    kind: Kind,
    invoke: u64,
    /// `None`: unknown outcome, no return event.
    complete: Option<u64>,
}

struct Prepared<'a> {
    ops: Vec<Op>,
    source: Vec<&'a Operation>,
}

enum Search {
    Linearizable,
    NotLinearizable,
    Exceeded(usize),
}

impl<'a> Prepared<'a> {
    fn new(history: &[&'a Operation]) -> Prepared<'a> {
        let mut values: HashMap<&str, u32> = HashMap::new();
        let mut intern = |v: &'a str| {
            let next = values.len() as u32 + 1;
            *values.entry(v).or_insert(next)
        };
        let mut ops = Vec::new();
        let mut source = Vec::new();
        for op in history {
            let known = op.outcome == Outcome::Ok;
            let kind = match (&op.call, op.outcome) {
                (_, Outcome::Failed) => continue,
                (Call::Get { .. }, Outcome::Unknown) => continue,
                (Call::Get { .. }, _) => {
                    Kind::Get { read: op.read.as_deref().map_or(0, &mut intern) }
                }
                (Call::Put { value, .. }, _) => Kind::Put { value: intern(value) },
                (Call::Delete { .. }, _) => Kind::Delete,
                (Call::Cas { expected, value, .. }, _) => Kind::Cas {
                    expected: expected.as_deref().map_or(0, &mut intern),
                    value: intern(value),
                    succeeded: if known { op.succeeded } else { None },
                },
            };
            ops.push(Op {
                kind,
                invoke: op.invoke,
                complete: if known { op.complete } else { None },
            });
            source.push(*op);
        }
        Prepared { ops, source }
    }

    fn search(&self, max_states: usize) -> Search {
        search(&self.ops, max_states)
    }

    /// A small subset of the operations that is still not linearizable: the shortest failing
    /// prefix in invocation order, then removal of chunks and single operations while it stays
    /// failing.
    fn shrink(&self, max_states: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.ops.len()).collect();
        order.sort_by_key(|i| self.ops[*i].invoke);
        let fails = |ids: &[usize]| {
            let sub: Vec<Op> = ids.iter().map(|i| self.ops[*i]).collect();
            matches!(search(&sub, max_states), Search::NotLinearizable)
        };
        // Smallest failing prefix, by doubling then bisection.
        let mut hi = 1;
        while hi < order.len() && !fails(&order[..hi]) {
            hi *= 2;
        }
        hi = hi.min(order.len());
        let mut lo = hi / 2;
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if fails(&order[..mid]) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let mut keep: Vec<usize> = order[..hi].to_vec();
        if !fails(&keep) {
            keep = order;
        }
        // Then drop chunks, halving their size down to single operations, keeping every
        // removal after which the history still fails (delta debugging, simplified).
        let mut chunk = keep.len() / 2;
        while chunk >= 1 {
            let mut start = 0;
            while start < keep.len() {
                let end = (start + chunk).min(keep.len());
                let without: Vec<usize> =
                    keep[..start].iter().chain(&keep[end..]).copied().collect();
                if !without.is_empty() && fails(&without) {
                    keep = without;
                } else {
                    start = end;
                }
            }
            chunk /= 2;
        }
        keep
    }
}

const HEAD: usize = usize::MAX;

/// Wing–Gong–Lowe search over one key's operations.
fn search(ops: &[Op], max_states: usize) -> Search {
    // Events: (time, is_return, op). Calls sort before returns at equal times, so operations
    // that touch at an instant count as concurrent (the permissive reading of a coarse clock).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        if let Some(c) = op.complete {
            events.push((c, true, i));
        }
    }
    events.sort_unstable();
    let n_ev = events.len();
    // A doubly linked list over event slots; `HEAD` is the sentinel, stored at index n_ev.
    let slot = |e: usize| if e == HEAD { n_ev } else { e };
    let mut next: Vec<usize> = (1..=n_ev).map(|e| if e == n_ev { HEAD } else { e }).collect();
    next.push(if n_ev == 0 { HEAD } else { 0 });
    let mut prev: Vec<usize> = (0..n_ev).map(|e| if e == 0 { HEAD } else { e - 1 }).collect();
    prev.push(if n_ev == 0 { HEAD } else { n_ev - 1 });
    let mut call_ev = vec![0; ops.len()];
    let mut ret_ev = vec![None; ops.len()];
    for (e, (_, is_ret, op)) in events.iter().enumerate() {
        if *is_ret {
            ret_ev[*op] = Some(e);
        } else {
            call_ev[*op] = e;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[slot(p)] = n;
        prev[slot(n)] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[slot(p)] = e;
        prev[slot(n)] = e;
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state = 0u32;
    let mut remaining = ret_ev.iter().filter(|r| r.is_some()).count();
    let mut e = next[n_ev];
    while remaining > 0 {
        debug_assert!(e != HEAD, "an unlinearized ok operation's return is still listed");
        let (_, is_ret, op) = events[e];
        if !is_ret {
            if let Some(after) = ops[op].kind.step(state) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), after)) {
                    if cache.len() > max_states {
                        return Search::Exceeded(cache.len());
                    }
                    stack.push((op, state));
                    state = after;
                    unlink(&mut next, &mut prev, call_ev[op]);
                    if let Some(r) = ret_ev[op] {
                        unlink(&mut next, &mut prev, r);
                        remaining -= 1;
                    }
                    e = next[n_ev];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            e = next[e];
        } else {
            // An operation returned before we found a place for it: undo the last choice.
            let Some((op, before)) = stack.pop() else { return Search::NotLinearizable };
            if let Some(r) = ret_ev[op] {
                relink(&mut next, &mut prev, r);
                remaining += 1;
            }
            relink(&mut next, &mut prev, call_ev[op]);
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            e = next[call_ev[op]];
        }
    }
    Search::Linearizable
}
