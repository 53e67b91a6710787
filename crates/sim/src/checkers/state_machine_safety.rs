//! State Machine Safety (Raft §5.4.3, Fig. 3): "if a server has applied a log entry at a given
//! index to its state machine, no other server will ever apply a different log entry for the
//! same index".

use flotilla_raft::{EntryId, NodeId};

use super::{violation, Violation};

/// The sequence of entries applied anywhere: every node's applications must follow it.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    agreed: Vec<EntryId>,
}

impl StateMachineSafety {
    /// `id` applied `entry` as its `position`-th entry (1-based).
    pub fn on_apply(&mut self, id: NodeId, entry: EntryId) -> Result<(), Violation> {
        let pos = entry.index.0 as usize;
        match self.agreed.get(pos - 1) {
            Some(want) if *want != entry => Err(violation(
                "State Machine Safety",
                format!("{id} applied {entry} where {want} was applied elsewhere"),
            )),
            Some(_) => Ok(()),
            None => {
                if pos == self.agreed.len() + 1 {
                    self.agreed.push(entry);
                }
                Ok(())
            }
        }
    }

    /// A snapshot through `last` replaced `id`'s state machine: its last entry must be the
    /// one applied at that index everywhere (State Machine Safety across compaction).
    pub fn on_restore(&mut self, id: NodeId, last: EntryId) -> Result<(), Violation> {
        match self.agreed.get(last.index.0 as usize - 1) {
            Some(want) if *want != last => Err(violation(
                "State Machine Safety",
                format!("{id} restored a snapshot through {last} where {want} was applied"),
            )),
            _ => Ok(()),
        }
    }

    /// Entries known committed (applied somewhere), in index order.
    pub fn committed(&self) -> &[EntryId] {
        &self.agreed
    }
}
