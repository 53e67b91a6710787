//! The receiving side of replication: AppendEntries and heartbeats (Raft §5.3, Fig. 2).

use crate::error::Malformed;
use crate::log::AppendRefusal;
use crate::message::{AppendOutcome, MessageBody};
use crate::raft::{Dispatch, Raft};
use crate::storage::LogStore;
use crate::types::{Entry, EntryId, LogIndex, NodeId, Role};

impl<S: LogStore> Raft<S> {
    /// A message from the leader of our term: follow it. Raft §5.2: "If the leader's term ...
    /// is at least as large as the candidate's current term, then the candidate recognizes
    /// the leader as legitimate and returns to follower state."
    pub(crate) fn follow(&mut self, leader: NodeId) -> Result<(), Dispatch> {
        match self.role {
            Role::Leader => {
                // Two leaders in one term would break Election Safety (Raft §5.2): only a
                // broken or forged peer sends this.
                return Err(Dispatch::Malformed(
                    leader,
                    Malformed::SecondLeader { term: self.term },
                ));
            }
            Role::Candidate | Role::PreCandidate => self.become_follower(self.term, Some(leader)),
            Role::Follower => {
                self.leader_id = Some(leader);
                self.election_elapsed = 0;
            }
        }
        Ok(())
    }

    pub(crate) fn handle_append_entries(
        &mut self,
        from: NodeId,
        prev_log: EntryId,
        entries: &[Entry],
        leader_commit: LogIndex,
    ) -> Result<(), Dispatch> {
        self.follow(from)?;
        let term = self.term;
        let reply = |outcome| MessageBody::AppendResponse { outcome };
        // Everything up to our commit index matches the leader's log already (Leader
        // Completeness, Raft §5.4): say so instead of re-checking compacted history.
        if prev_log.index < self.log.committed() {
            let outcome = AppendOutcome::Success { match_index: self.log.committed() };
            self.send_after_persist(from, term, reply(outcome));
            return Ok(());
        }
        if self.config.has_bug("TruncateOnStaleAppend")
            && !entries.is_empty()
            && self.log.match_term(prev_log)?
        {
            // Planted bug: replace the suffix even when every entry matches.
            self.log.unstable_mut().truncate_and_append(entries);
            self.rebuild_membership(entries[0].index)?;
        }
        match self.log.maybe_append(prev_log, leader_commit, entries) {
            Ok((match_index, rewritten_from)) => {
                if let Some(from) = rewritten_from {
                    // Thesis §4.1: configurations take effect when appended, and revert when
                    // a conflicting suffix that held one is cut.
                    self.rebuild_membership(from)?;
                }
                // Sent after persistence: the leader counts this follower's copy toward
                // commitment, so it must be durable first (Raft Fig. 2).
                self.send_after_persist(from, term, reply(AppendOutcome::Success { match_index }));
            }
            Err(AppendRefusal::Mismatch) => {
                let hint = self.log.reject_hint(prev_log.index)?;
                let outcome = AppendOutcome::Reject { rejected_prev: prev_log.index, hint };
                self.send_after_persist(from, term, reply(outcome));
            }
            Err(AppendRefusal::Malformed(reason)) => return Err(Dispatch::Malformed(from, reason)),
            Err(AppendRefusal::Storage(e)) => return Err(Dispatch::Storage(e)),
        }
        Ok(())
    }

    /// Thesis §3.10: the leader, having brought this node up to date, asks it to "start an
    /// election immediately", skipping pre-vote and with a flag that lets voters ignore
    /// leader stickiness (the leader itself asked for it).
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) -> Result<(), Dispatch> {
        if self.role == Role::Leader || !self.promotable() || self.leader_id != Some(from) {
            return Ok(());
        }
        self.campaign_transfer()?;
        Ok(())
    }

    /// A heartbeat carries `min(match, commit)`: an index our log is known to share with the
    /// leader, so it can be adopted without a consistency check.
    pub(crate) fn handle_heartbeat(
        &mut self,
        from: NodeId,
        commit: LogIndex,
        read_seq: u64,
    ) -> Result<(), Dispatch> {
        let last = self.log.last_index();
        if commit > last {
            return Err(Dispatch::Malformed(from, Malformed::CommitBeyondLog { commit, last }));
        }
        self.follow(from)?;
        self.log.commit_to(commit);
        self.send_after_persist(from, self.term, MessageBody::HeartbeatResponse { read_seq });
        Ok(())
    }
}
