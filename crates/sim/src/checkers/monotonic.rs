//! Monotonic commit and applied indices (Raft Fig. 2: commitIndex and lastApplied
//! "increase monotonically"), and exactly-once, in-order application ("If commitIndex >
//! lastApplied: increment lastApplied, apply log[lastApplied]"). Per node incarnation: a
//! restart rebuilds volatile state from disk.

use std::collections::BTreeMap;

use flotilla_raft::{LogIndex, NodeId};

use super::{violation, Violation};

/// Last commit and applied index seen per (node, incarnation).
#[derive(Debug, Default)]
pub struct Monotonic {
    seen: BTreeMap<(NodeId, u64), (LogIndex, LogIndex)>,
}

impl Monotonic {
    /// Runs `check` on the (commit, applied) pair of (node, incarnation).
    fn update(
        &mut self,
        id: NodeId,
        incarnation: u64,
        check: impl FnOnce(&mut (LogIndex, LogIndex)) -> Result<(), (&'static str, String)>,
    ) -> Result<(), Violation> {
        check(self.seen.entry((id, incarnation)).or_default()).map_err(|(p, d)| violation(p, d))
    }

    /// The node's commit index now.
    pub fn observe_commit(
        &mut self,
        id: NodeId,
        incarnation: u64,
        commit: LogIndex,
    ) -> Result<(), Violation> {
        self.update(id, incarnation, |e| {
            if commit < e.0 {
                return Err((
                    "Monotonic commit",
                    format!("{id} commit went from {} to {commit}", e.0),
                ));
            }
            e.0 = commit;
            Ok(())
        })
    }

    /// The node replaced its state machine with a snapshot through `index` (Raft §7): it
    /// must lie ahead of what it applied.
    pub fn observe_restore(
        &mut self,
        id: NodeId,
        incarnation: u64,
        index: LogIndex,
    ) -> Result<(), Violation> {
        self.update(id, incarnation, |e| {
            if index <= e.1 && index > LogIndex::ZERO {
                let d = format!("{id} restored a snapshot through {index} after applying {}", e.1);
                return Err(("Applied exactly once, in order", d));
            }
            e.1 = e.1.max(index);
            Ok(())
        })
    }

    /// The node applied the entry at `index`: it must be the next one.
    pub fn observe_apply(
        &mut self,
        id: NodeId,
        incarnation: u64,
        index: LogIndex,
    ) -> Result<(), Violation> {
        self.update(id, incarnation, |e| {
            if index != e.1.next() {
                let d = format!("{id} applied index {index} after {}", e.1);
                return Err(("Applied exactly once, in order", d));
            }
            e.1 = index;
            Ok(())
        })
    }
}
