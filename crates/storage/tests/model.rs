//! The WAL against a model, under proptest: random appends (including ones that rewrite a
//! suffix), hard states, syncs, segment rollovers and crashes (clean or torn). After every
//! crash the recovered state must be one the model passed through since the last sync: all
//! synced records survive, and a torn write keeps a prefix of the later ones, never a mix.

use std::path::PathBuf;

use flotilla_raft::{Entry, HardState, LogIndex, Membership, NodeId, Term};
use flotilla_storage::{SimFs, Wal, WalOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries of `term`, starting `back` entries before the end (a rewrite).
    Append {
        back: u8,
        n: u8,
        term: u8,
    },
    HardState {
        commit: u8,
    },
    Sync,
    Crash {
        torn: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 1u8..5, 1u8..4).prop_map(|(back, n, term)| Op::Append { back, n, term }),
        2 => any::<u8>().prop_map(|commit| Op::HardState { commit }),
        4 => Just(Op::Sync),
        1 => proptest::option::of(any::<u64>()).prop_map(|torn| Op::Crash { torn }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct State {
    entries: Vec<(u64, u64, Vec<u8>)>,
    hard_state: HardState,
}

fn apply(state: &mut State, entries: &[Entry]) {
    let first = entries[0].index.0;
    state.entries.truncate((first - 1) as usize);
    state.entries.extend(entries.iter().map(|e| (e.index.0, e.term.0, e.data.to_vec())));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn recovery_yields_a_state_the_log_passed_through(ops in proptest::collection::vec(op(), 1..80)) {
        let fs = SimFs::new();
        let dir = PathBuf::from("/m/wal");
        let o = WalOptions { segment_bytes: 300, ..WalOptions::default() };
        let members = Membership::new([NodeId(1)], []).unwrap();
        let mut wal = Wal::create(fs.clone(), &dir, members, o).unwrap();
        let mut state = State { entries: Vec::new(), hard_state: HardState::default() };
        // States reachable by a crash: the synced one, then one per record written since.
        let mut candidates = vec![state.clone()];
        let mut max_term = 1u64;
        for op in ops {
            match op {
                Op::Append { back, n, term } => {
                    // Terms never go back: a rewrite carries a term at least the newest so far.
                    max_term = max_term.max(u64::from(term));
                    let last = state.entries.len() as u64;
                    let first = last.saturating_sub(u64::from(back)) + 1;
                    let entries: Vec<Entry> = (first..first + u64::from(n))
                        .map(|i| Entry::new(Term(max_term), LogIndex(i), format!("{i}-{max_term}")))
                        .collect();
                    wal.append_entries(&entries);
                    apply(&mut state, &entries);
                    candidates.push(state.clone());
                }
                Op::HardState { commit } => {
                    let hs = HardState { term: Term(max_term), vote: Some(NodeId(1)), commit: LogIndex(u64::from(commit) % (state.entries.len() as u64 + 1)) };
                    wal.set_hard_state(hs);
                    state.hard_state = hs;
                    candidates.push(state.clone());
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    candidates = vec![state.clone()];
                }
                Op::Crash { torn } => {
                    // Whatever is buffered is written (not synced) as the machine dies mid-sync.
                    fs.fail_next_syncs(1);
                    let _ = wal.sync();
                    drop(wal);
                    fs.crash(torn);
                    let (w, rec) = Wal::open(fs.clone(), &dir, o).unwrap();
                    wal = w;
                    let got = State {
                        entries: rec.entries.iter().map(|e| (e.index.0, e.term.0, e.data.to_vec())).collect(),
                        hard_state: rec.hard_state,
                    };
                    prop_assert!(candidates.contains(&got), "recovered {:?}\nnot among {:?}", got, candidates);
                    if torn.is_none() {
                        prop_assert_eq!(&got, &candidates[0], "a clean crash keeps exactly the synced state");
                    }
                    state = got;
                    candidates = vec![state.clone()];
                }
            }
        }
    }
}
