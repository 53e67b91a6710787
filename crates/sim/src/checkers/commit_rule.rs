//! The commit rule (Raft §5.4.2, Fig. 8): "Raft never commits log entries from previous terms
//! by counting replicas. Only log entries from the leader's current term are committed by
//! counting replicas". Checked from outside, against what the disks really hold: whenever a
//! leader moves its commit index forward, the entry there must be of the leader's term and
//! durable on a majority of the servers. Leader Completeness depends on it; this checker
//! catches a breach the moment it happens, before it costs data.

use std::collections::BTreeMap;

use flotilla_raft::{EntryId, LogIndex, NodeId, Term};

use super::{violation, Violation};

/// The commit index each leader was last seen with, per (node, incarnation, term).
#[derive(Debug)]
pub struct CommitRule {
    seen: BTreeMap<(NodeId, u64), (Term, LogIndex)>,
    cluster_size: usize,
}

impl CommitRule {
    /// A checker for a cluster of `cluster_size` servers.
    pub fn new(cluster_size: usize) -> CommitRule {
        CommitRule { seen: BTreeMap::new(), cluster_size }
    }

    /// Leader `id` (in this incarnation) has commit index `commit` in `term`. `entry_at`
    /// reads its log; `durable_on` counts the servers whose durable log holds an entry.
    pub fn observe_leader(
        &mut self,
        id: NodeId,
        incarnation: u64,
        term: Term,
        commit: LogIndex,
        entry_at: impl Fn(u64) -> Option<EntryId>,
        durable_on: impl Fn(EntryId) -> usize,
    ) -> Result<(), Violation> {
        let cluster_size = self.cluster_size;
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
        let copies = durable_on(entry);
        if copies * 2 <= cluster_size {
            return Err(violation(
                "Commit rule",
                format!("leader {id} committed {entry}, durable on only {copies} of {cluster_size} servers"),
            ));
        }
        Ok(())
    }
}
