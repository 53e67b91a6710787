//! The commit rule (Raft §5.4.2, Fig. 8): "Raft never commits log entries from previous terms
//! by counting replicas. Only log entries from the leader's current term are committed by
//! counting replicas". Checked from outside, against what the disks really hold: whenever a
//! leader moves its commit index forward, the entry there must be of the leader's term and
//! durable on a majority of the servers. Leader Completeness depends on it; this checker
//! catches a breach the moment it happens, before it costs data.

use std::collections::BTreeMap;

use flotilla_raft::{EntryId, LogIndex, Membership, NodeId, Term};

use super::{violation, Violation};

/// The commit index each leader was last seen with, per (node, incarnation, term).
#[derive(Debug, Default)]
pub struct CommitRule {
    seen: BTreeMap<(NodeId, u64), (Term, LogIndex)>,
}

impl CommitRule {
    /// Leader `id` (in this incarnation) has commit index `commit` in `term` under
    /// `membership`. `entry_at` reads its log; `durable_at` says whether a server's durable log
    /// holds an entry. In a joint configuration both halves need a durable majority.
    #[allow(clippy::too_many_arguments)]
    pub fn observe_leader(
        &mut self,
        id: NodeId,
        incarnation: u64,
        term: Term,
        commit: LogIndex,
        membership: &Membership,
        entry_at: impl Fn(u64) -> Option<EntryId>,
        durable_at: impl Fn(NodeId, EntryId) -> bool,
    ) -> Result<(), Violation> {
        let before = self.seen.insert((id, incarnation), (term, commit));
        let advanced = match before {
            Some((t, c)) if t == term => commit > c,
            // Newly leader: the commit index it inherited was set as a follower.
            _ => false,
        };
        if !advanced {
            return Ok(());
        }
        let Some(entry) = entry_at(commit.0) else {
            return Err(violation(
                "Commit rule",
                format!("leader {id} committed {commit} beyond its log"),
            ));
        };
        if entry.term != term {
            return Err(violation(
                "Commit rule",
                format!("leader {id} of term {} advanced its commit index to {entry}, an entry of an earlier term", term.0),
            ));
        }
        for voters in [membership.voters(), membership.outgoing_voters()] {
            if voters.is_empty() {
                continue;
            }
            let copies = voters.iter().filter(|v| durable_at(**v, entry)).count();
            if copies * 2 <= voters.len() {
                return Err(violation(
                    "Commit rule",
                    format!("leader {id} committed {entry}, durable on only {copies} of voters {voters:?}"),
                ));
            }
        }
        Ok(())
    }
}
