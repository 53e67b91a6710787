//! Leader Completeness (Raft §5.4, Fig. 3): "if a log entry is committed in a given term,
//! then that entry will be present in the logs of the leaders for all higher-numbered terms".
//!
//! Checked when a leader is first seen in its term: every entry known committed by then (it
//! was applied somewhere, or acknowledged to a client) must be in its log, except entries of
//! its term or later. Those were committed in a term no lower than the leader's, which the
//! property does not cover: a candidate that collected its last vote late (the message was
//! slow) becomes leader of a term older than the newest, after entries of the newest
//! committed (the simulator's seed 42752 of a sweep); it steps down at its first contact.

use flotilla_raft::{EntryId, NodeId, Term};

use super::{violation, Violation};

/// Checks a new leader's log against the entries known committed.
pub fn check_new_leader(
    id: NodeId,
    term: Term,
    committed: &[EntryId],
    holds: impl Fn(EntryId) -> bool,
) -> Result<(), Violation> {
    match committed.iter().filter(|c| c.term < term).find(|c| !holds(**c)) {
        Some(missing) => Err(violation(
            "Leader Completeness",
            format!("leader {id} of term {} lacks committed entry {missing}", term.0),
        )),
        None => Ok(()),
    }
}
