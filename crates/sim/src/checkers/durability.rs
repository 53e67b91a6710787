//! No acknowledged write lost (RAFT.md, "What a server must never do": "Lose an acknowledged
//! write when a minority of servers fail, or when any server crashes and loses data that it
//! never reported durable"). An entry acknowledged to a client was committed, so every later
//! leader must hold it (checked when a leader appears) and the final log must hold it.

use flotilla_raft::{EntryId, NodeId};

use super::{violation, Violation};

/// Every entry acknowledged to a client.
#[derive(Debug, Default)]
pub struct Durability {
    acked: Vec<EntryId>,
}

impl Durability {
    /// A client was told `entry` succeeded.
    pub fn on_ack(&mut self, entry: EntryId) {
        self.acked.push(entry);
    }

    /// Checks a log (a leader's of term `below`, or the final one: `None`) for every
    /// acknowledged entry; a leader only for those of earlier terms (an entry of its term or
    /// later was committed in a term the leader's does not follow: see
    /// `leader_completeness.rs`).
    pub fn check(
        &self,
        id: NodeId,
        below: Option<flotilla_raft::Term>,
        holds: impl Fn(EntryId) -> bool,
    ) -> Result<(), Violation> {
        let due = |a: &&EntryId| below.is_none_or(|t| a.term < t);
        match self.acked.iter().filter(due).find(|a| !holds(**a)) {
            Some(lost) => Err(violation(
                "No acknowledged write lost",
                format!("acknowledged entry {lost} is not in {id}'s log"),
            )),
            None => Ok(()),
        }
    }

    /// How many writes were acknowledged.
    pub fn count(&self) -> usize {
        self.acked.len()
    }
}
