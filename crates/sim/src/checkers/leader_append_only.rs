//! Leader Append-Only (Raft §5.3, Fig. 3): "a leader never overwrites or deletes entries in
//! its log; it only appends new entries".

use std::collections::BTreeMap;

use flotilla_raft::{EntryId, NodeId, Term};

use super::{violation, Violation};

/// The last entry of each current leader, when last seen.
#[derive(Debug, Default)]
pub struct LeaderAppendOnly {
    last: BTreeMap<NodeId, (Term, EntryId)>,
}

impl LeaderAppendOnly {
    /// `id` leads `term`; `entry_at` reads its log; `last` is its last entry now.
    pub fn observe_leader(
        &mut self,
        id: NodeId,
        term: Term,
        last: EntryId,
        holds: impl Fn(EntryId) -> bool,
    ) -> Result<(), Violation> {
        if let Some((t, seen)) = self.last.get(&id) {
            if *t == term && !holds(*seen) {
                return Err(violation(
                    "Leader Append-Only",
                    format!("leader {id} of term {} lost its entry {seen}", term.0),
                ));
            }
        }
        self.last.insert(id, (term, last));
        Ok(())
    }

    /// `id` is not leading (or restarted): forget it.
    pub fn forget(&mut self, id: NodeId) {
        self.last.remove(&id);
    }
}
