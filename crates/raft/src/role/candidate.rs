//! Elections: campaigning as pre-candidate and candidate, granting votes, tallying answers
//! (Raft §5.2, §5.4.1; Thesis §9.6).

use crate::message::MessageBody;
use crate::quorum::VoteResult;
use crate::raft::{Dispatch, Raft};
use crate::storage::LogStore;
use crate::types::{EntryId, NodeId, Role, Term};

impl<S: LogStore> Raft<S> {
    /// Starts an election: a pre-vote round first when configured (Thesis §9.6), else a real
    /// one.
    pub(crate) fn campaign(&mut self) -> Result<(), crate::error::StorageError> {
        if self.config.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        self.request_votes()
    }

    /// The election a leadership transfer asks for: no pre-vote, and marked so that voters
    /// waive leader stickiness (Thesis §3.10).
    pub(crate) fn campaign_transfer(&mut self) -> Result<(), crate::error::StorageError> {
        self.become_candidate();
        self.request_votes_marked(true)
    }

    /// Thesis §9.6: "a candidate would first ask other servers whether its log was
    /// up-to-date enough to get their vote. Only if the candidate believed it could get votes
    /// from a majority of the cluster would it increment its term and start a normal
    /// election." Term and vote stay as they are.
    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader_id = None;
        self.reset_role_state();
        self.votes.insert(self.id, true);
    }

    /// Raft §5.2: "To begin an election, a follower increments its current term and
    /// transitions to candidate state. It then votes for itself".
    fn become_candidate(&mut self) {
        self.term = self.term.next();
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader_id = None;
        self.reset_role_state();
        self.votes.insert(self.id, true);
    }

    /// Sends the round's requests, or wins at once in a single-voter cluster.
    fn request_votes(&mut self) -> Result<(), crate::error::StorageError> {
        self.request_votes_marked(false)
    }

    fn request_votes_marked(&mut self, transfer: bool) -> Result<(), crate::error::StorageError> {
        let pre_vote = self.role == Role::PreCandidate;
        if self.tally() == VoteResult::Won {
            return self.win_round(pre_vote);
        }
        let term = if pre_vote { self.term.next() } else { self.term };
        let last_log = self.log.last_entry_id()?;
        for to in self.quorum.voter_ids() {
            if to != self.id {
                // Sent only after the new term and self-vote are durable: a candidate that
                // crashed and forgot its vote could otherwise vote twice in one term.
                let body = MessageBody::VoteRequest { pre_vote, last_log, transfer };
                self.send_after_persist(to, term, body);
            }
        }
        Ok(())
    }

    fn tally(&self) -> VoteResult {
        self.quorum.vote_result(|id| self.votes.get(&id).copied())
    }

    fn win_round(&mut self, pre_vote: bool) -> Result<(), crate::error::StorageError> {
        if pre_vote {
            self.become_candidate();
            self.request_votes()
        } else {
            self.become_leader()
        }
    }

    /// RequestVote receiver (Raft Fig. 2): "If votedFor is null or candidateId, and
    /// candidate's log is at least as up-to-date as receiver's log, grant vote." A pre-vote is
    /// answered by the same rule for the term it names, without recording anything.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log: EntryId,
    ) -> Result<(), Dispatch> {
        // At our own term a vote is free only if we gave none and know no leader: Raft §5.2,
        // "each server will vote for at most one candidate in a given term, on a
        // first-come-first-served basis". A pre-vote for a later term binds nothing.
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader_id.is_none())
            || (pre_vote && term > self.term);
        let granted = can_vote
            && (self.config.has_bug("VoteWithoutLogCheck") || self.log.is_up_to_date(last_log)?);
        if granted && !pre_vote {
            self.vote = Some(from);
            // Raft §5.2: granting a vote resets the election timer.
            self.election_elapsed = 0;
        }
        // A granted pre-vote echoes the term asked about; a refusal carries ours.
        let reply_term = if granted && pre_vote { term } else { self.term };
        let body = MessageBody::VoteResponse { pre_vote, granted };
        if self.config.has_bug("VoteBeforeDurable") {
            self.msgs.push(crate::message::Message {
                from: self.id,
                to: from,
                term: reply_term,
                body,
            });
            return Ok(());
        }
        self.send_after_persist(from, reply_term, body);
        Ok(())
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) -> Result<(), Dispatch> {
        let counts = match (self.role, pre_vote) {
            // A granted pre-vote must be for the term this round asks about; an older round's
            // answer does not count.
            (Role::PreCandidate, true) => !granted || term == self.term.next(),
            (Role::Candidate, false) => term == self.term,
            _ => false,
        };
        if !counts || !self.quorum.contains(from) {
            return Ok(());
        }
        self.votes.entry(from).or_insert(granted);
        match self.tally() {
            VoteResult::Won => self.win_round(pre_vote)?,
            VoteResult::Lost => {
                // Raft §5.2: the election is lost; wait as a follower for the winner or the
                // next timeout.
                self.become_follower(self.term, None)
            }
            VoteResult::Pending => {}
        }
        Ok(())
    }
}
