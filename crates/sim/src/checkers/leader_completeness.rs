//! Leader Completeness (Raft §5.4, Fig. 3): "if a log entry is committed in a given term,
//! then that entry will be present in the logs of the leaders for all higher-numbered terms".
//!
//! Checked when a leader is first seen in its term: every entry known committed by then (it
//! was applied somewhere, or acknowledged to a client) must be in its log.

use flotilla_raft::{EntryId, NodeId, Term};

use super::{violation, Violation};

/// Checks a new leader's log against the entries known committed.
pub fn check_new_leader(
    id: NodeId,
    term: Term,
    committed: &[EntryId],
    holds: impl Fn(EntryId) -> bool,
) -> Result<(), Violation> {
    // Entries committed in a higher term than the leader's cannot exist yet (the leader's
    // term is the newest), so every one of them must be present.
    match committed.iter().find(|c| !holds(**c)) {
        Some(missing) => Err(violation(
            "Leader Completeness",
            format!("leader {id} of term {} lacks committed entry {missing}", term.0),
        )),
        None => Ok(()),
    }
}
