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
    /// The node's commit index now.
    pub fn observe_commit(
        &mut self,
        id: NodeId,
        incarnation: u64,
        commit: LogIndex,
    ) -> Result<(), Violation> {
        let e = self.seen.entry((id, incarnation)).or_default();
        if commit < e.0 {
            return Err(violation(
                "Monotonic commit",
                format!("{id} commit went from {} to {}", e.0, commit),
            ));
        }
        e.0 = commit;
        Ok(())
    }

    /// The node applied the entry at `index`: it must be the next one.
    pub fn observe_apply(
        &mut self,
        id: NodeId,
        incarnation: u64,
        index: LogIndex,
    ) -> Result<(), Violation> {
        let e = self.seen.entry((id, incarnation)).or_default();
        if index != e.1.next() {
            return Err(violation(
                "Applied exactly once, in order",
                format!("{id} applied index {index} after {}", e.1),
            ));
        }
        e.1 = index;
        Ok(())
    }
}
