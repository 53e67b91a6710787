//! The leader: appending proposals, replicating with flow control, committing
//! (Raft §5.3, §5.4.2; Thesis §6.2, §10.2).

use bytes::Bytes;

use crate::error::{Malformed, ProposeError, StorageError};
use crate::message::{AppendOutcome, Message, MessageBody, RejectHint};
use crate::progress::{Progress, ProgressState};
use crate::raft::{Dispatch, Raft};
use crate::storage::LogStore;
use crate::types::{Entry, EntryId, EntryKind, LogIndex, NodeId, Role};

impl<S: LogStore> Raft<S> {
    /// Raft Fig. 2, "Volatile state on leaders (reinitialized after election)": nextIndex is
    /// the leader's last index + 1, matchIndex 0. Then the no-op of Raft §8, so that entries
    /// of earlier terms get committed (Raft §5.4.2) and reads can be served (Thesis §6.4).
    pub(crate) fn become_leader(&mut self) -> Result<(), StorageError> {
        debug_assert_eq!(self.vote, Some(self.id), "a leader voted for itself");
        self.role = Role::Leader;
        self.leader_id = Some(self.id);
        self.reset_role_state();
        let next = self.log.last_index().next();
        let members: Vec<NodeId> = self.membership.members().collect();
        for id in members {
            let mut pr =
                Progress::new(next, self.config.inflight_msgs_max, self.config.inflight_bytes_max);
            pr.recent_active = true;
            if id == self.id {
                pr.matched = self.log.persisted_index();
                pr.state = ProgressState::Replicate;
            }
            self.progress.insert(id, pr);
        }
        let noop =
            Entry { term: self.term, index: next, kind: EntryKind::Noop, data: Bytes::new() };
        self.log.append_own(noop);
        self.bcast_pending = true;
        // A joint configuration committed under an earlier leader is left by this one.
        self.maybe_leave_joint();
        // A single-voter cluster commits as soon as its own write is durable.
        self.maybe_commit_leader();
        Ok(())
    }

    /// Appends a client command (Raft §5.3: "The leader appends the command to its log as a
    /// new entry"). It is sent with the next `Ready`, batched with its neighbours.
    pub(crate) fn propose(&mut self, data: Bytes) -> Result<EntryId, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader_hint: self.leader_id });
        }
        if let Some(to) = self.lead_transferee {
            return Err(ProposeError::TransferInProgress { to });
        }
        let entry = Entry::new(self.term, self.log.last_index().next(), data);
        let size = entry.size_bytes();
        // Backpressure, but never against an idle pipeline: one proposal is always admitted,
        // however large, or it could never be committed.
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.config.uncommitted_bytes_max
        {
            return Err(ProposeError::Backpressure {
                uncommitted_bytes: self.uncommitted_bytes,
                limit_bytes: self.config.uncommitted_bytes_max,
            });
        }
        self.uncommitted_bytes += size;
        let id = entry.id();
        self.log.append_own(entry);
        self.bcast_pending = true;
        Ok(id)
    }

    /// Proposes a single-server membership change (Thesis §4.1): validated against the
    /// latest configuration, appended, and in effect at once.
    pub(crate) fn propose_conf_change(
        &mut self,
        change: crate::membership::ConfChange,
    ) -> Result<EntryId, crate::error::ConfChangeError> {
        use crate::error::ConfChangeError;
        use crate::membership::ConfChange;
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader { leader_hint: self.leader_id });
        }
        if self.lead_transferee.is_some() {
            return Err(ConfChangeError::TransferInProgress);
        }
        if let Some((pending, _)) = self.conf_history.last() {
            if *pending > self.log.committed() {
                return Err(ConfChangeError::InProgress { pending: *pending });
            }
        }
        // Thesis §4.3: a leader that has not committed an entry of its own term may hold a
        // configuration an earlier leader's uncommitted change replaced elsewhere.
        if self.log.term(self.log.committed()).ok() != Some(self.term) {
            return Err(ConfChangeError::LeaderNotReady);
        }
        self.membership.apply(&change)?;
        if let ConfChange::PromoteLearner(id) = change {
            let id: NodeId = id;
            let last = self.log.last_index();
            let matched = self.progress.get(&id).map_or(LogIndex::ZERO, |p| p.matched);
            let lag = last.0 - matched.0.min(last.0);
            // A learner that has acknowledged nothing to this leader is refused whatever
            // the lag (a short log makes any lag small): it may never have been reached, and
            // as a voter it would count toward every quorum (etcd checks its match too).
            if lag > self.config.promotion_lag_max || matched == LogIndex::ZERO {
                return Err(ConfChangeError::LearnerLagging {
                    id,
                    lag,
                    max: self.config.promotion_lag_max,
                });
            }
        }
        let entry = Entry {
            term: self.term,
            index: self.log.last_index().next(),
            kind: EntryKind::ConfChange,
            data: change.encode(),
        };
        let id = entry.id();
        self.log.append_own(entry);
        self.rebuild_membership(id.index).map_err(ConfChangeError::Halted)?;
        self.bcast_pending = true;
        // A leader that is no longer a voter does not count itself (Raft §6), so the entry
        // may already be committed in a configuration of one.
        self.maybe_commit_leader();
        Ok(id)
    }

    pub(crate) fn tick_leader(&mut self) -> Result<(), StorageError> {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.read_only.tick();
        self.tick_snapshots()?;
        if self.lead_transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.config.election_timeout_ticks_min {
                // Thesis §3.10: "if the transfer does not complete within an election
                // timeout, the prior leader aborts the transfer and resumes accepting client
                // requests".
                self.lead_transferee = None;
                self.transfer_elapsed = 0;
            }
        }
        if self.election_elapsed >= self.config.election_timeout_ticks_min {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                // Thesis §6.2: "a leader steps down if an election timeout elapses without a
                // successful round of heartbeats to a majority of its cluster".
                self.become_follower(self.term, None);
                return Ok(());
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
        Ok(())
    }

    /// Whether a quorum was heard from since the last check; starts the next period.
    fn quorum_active(&mut self) -> bool {
        let me = self.id;
        let active = self
            .quorum
            .vote_result(|id| self.progress.get(&id).map(|p| p.recent_active || id == me))
            == crate::quorum::VoteResult::Won;
        for (id, pr) in self.progress.iter_mut() {
            pr.recent_active = *id == me;
        }
        active
    }

    pub(crate) fn bcast_heartbeat(&mut self) {
        if self.config.read_mode == crate::config::ReadMode::LeaseBased {
            // Every heartbeat is a round whose acknowledgement extends the lease.
            self.read_only.start_round();
        }
        let committed = self.log.committed();
        for (&to, pr) in &self.progress {
            if to == self.id {
                continue;
            }
            // Only what the follower is known to share with us: it adopts it unchecked.
            let commit = pr.matched.min(committed);
            let read_seq = self.read_only.last_seq();
            self.msgs.push(Message {
                from: self.id,
                to,
                term: self.term,
                body: MessageBody::Heartbeat { commit, read_seq },
            });
        }
    }

    /// Sends whatever each follower lacks: new entries, or a commit index it has not seen.
    /// Called once per `Ready`, so proposals made since the last one share messages.
    pub(crate) fn flush_appends(&mut self) -> Result<(), StorageError> {
        if !std::mem::take(&mut self.bcast_pending) || self.role != Role::Leader {
            return Ok(());
        }
        let ids: Vec<NodeId> = self.progress.keys().copied().filter(|id| *id != self.id).collect();
        for to in ids {
            self.maybe_send_append(to, false)?;
        }
        Ok(())
    }

    /// Sends AppendEntries to `to` while there is something to send and flow control allows.
    /// With `even_if_empty`, sends one empty probe when there is nothing new. Returns whether
    /// anything was sent.
    pub(crate) fn maybe_send_append(
        &mut self,
        to: NodeId,
        even_if_empty: bool,
    ) -> Result<bool, StorageError> {
        let last = self.log.last_index();
        let committed = self.log.committed();
        let mut sent = false;
        loop {
            let Some(pr) = self.progress.get(&to) else { return Ok(sent) };
            if pr.state == ProgressState::Snapshot {
                return Ok(self.maybe_send_snapshot(to)? || sent);
            }
            if pr.is_paused() {
                return Ok(sent);
            }
            let has_entries = pr.next <= last;
            let commit_news = pr.commit_sent < committed;
            let want_empty = even_if_empty && !sent;
            if !(has_entries || commit_news || want_empty) {
                return Ok(sent);
            }
            let prev_index = pr.next.prev();
            let next = pr.next;
            let mut entries = Vec::new();
            let read = self.log.term(prev_index).and_then(|t| {
                if has_entries {
                    self.log.entries(
                        next,
                        last.next(),
                        self.config.append_bytes_max,
                        &mut entries,
                    )?;
                }
                Ok(t)
            });
            let prev_term = match read {
                Ok(t) => t,
                // Raft §7: the follower needs entries this leader has compacted away.
                Err(StorageError::Compacted(_)) => {
                    if self.start_snapshot(to) {
                        continue;
                    }
                    return Ok(sent);
                }
                Err(e) => return Err(e),
            };
            let bytes: u64 = entries.iter().map(Entry::size_bytes).sum();
            let pr = self.progress.get_mut(&to).expect("progress checked above");
            if let Some(e) = entries.last() {
                pr.sent_entries(e.index, bytes);
            } else if pr.state == ProgressState::Probe {
                pr.probe_sent = true;
            }
            pr.commit_sent = pr.commit_sent.max(committed);
            let prev_log = EntryId::new(prev_term, prev_index);
            let n = entries.len();
            self.msgs.push(Message {
                from: self.id,
                to,
                term: self.term,
                body: MessageBody::AppendEntries { prev_log, entries, leader_commit: committed },
            });
            sent = true;
            if n == 0 {
                return Ok(true);
            }
        }
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        outcome: AppendOutcome,
    ) -> Result<(), Dispatch> {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return Ok(()) };
        pr.recent_active = true;
        match outcome {
            AppendOutcome::Success { match_index } => {
                if match_index > last {
                    return Err(Dispatch::Malformed(
                        from,
                        Malformed::AckBeyondLog { index: match_index, last },
                    ));
                }
                let first = self.log.first_index();
                if pr.maybe_update(match_index) {
                    match pr.state {
                        // Thesis §10.2: the logs now agree, so pipeline from here on.
                        ProgressState::Probe => pr.become_replicate(),
                        ProgressState::Replicate => pr.inflights.free_to(match_index),
                        ProgressState::Snapshot => {
                            let covered = pr.snapshot.as_ref().is_none_or(|s| {
                                pr.matched >= s.info.meta.index || pr.matched.next() >= first
                            });
                            if covered {
                                // Installed (or no longer needed): probe from just after it;
                                // a newer compaction starts another snapshot.
                                pr.become_probe();
                                pr.next = pr.matched.next();
                            }
                        }
                    }
                    self.maybe_commit_leader();
                    if self.lead_transferee == Some(from) {
                        self.maybe_send_timeout_now(from)?;
                    }
                }
                // Still leader (a commit may have removed it): send what this follower lacks.
                self.bcast_pending = self.role == Role::Leader;
            }
            AppendOutcome::Reject { rejected_prev, hint } => {
                // A leader's log only grows while it leads, so every AppendEntries it sent
                // had its previous index within the log; a rejection of one beyond it is
                // forged (found by the hostile-input property test).
                if rejected_prev > last {
                    return Err(Dispatch::Malformed(
                        from,
                        Malformed::RejectBeyondLog { index: rejected_prev, last },
                    ));
                }
                let hinted = match hint {
                    RejectHint::LogTooShort { last_index } => last_index.next(),
                    RejectHint::ConflictingTerm { conflict_term, first_index_of_term } => {
                        // Raft §5.3 optimization: skip the follower's whole conflicting term,
                        // or, if we hold that term too, resume just after our last entry of it.
                        let (index, term) =
                            self.log.find_conflict_by_term(rejected_prev, conflict_term)?;
                        if term == conflict_term {
                            index.next()
                        } else {
                            first_index_of_term
                        }
                    }
                };
                let pr = self.progress.get_mut(&from).expect("progress looked up above");
                if pr.maybe_decr_to(rejected_prev, hinted) {
                    self.maybe_send_append(from, true)?;
                }
            }
            // A higher term was handled by `step`; an equal one cannot be stale.
            AppendOutcome::StaleTerm => {}
        }
        Ok(())
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId) -> Result<(), Dispatch> {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return Ok(()) };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.matched < last {
            // A lost AppendEntries would otherwise never be noticed: free a window slot and
            // send a (possibly empty) append whose consistency check reveals the gap.
            if pr.state == ProgressState::Replicate && pr.inflights.full() {
                pr.inflights.free_first_one();
            }
            self.maybe_send_append(from, true)?;
        }
        Ok(())
    }

    /// Raft §5.4.2 and Fig. 8: "Raft never commits log entries from previous terms by counting
    /// replicas. Only log entries from the leader's current term are committed by counting
    /// replicas; once an entry from the current term has been committed in this way, then all
    /// prior entries are committed indirectly."
    pub(crate) fn maybe_commit_leader(&mut self) -> bool {
        let index = self.quorum.committed_index(|id| self.progress.get(&id).map(|p| p.matched));
        let advanced =
            if self.config.has_bug("CommitPriorTermByCounting") && index > self.log.committed() {
                self.log.commit_to(index);
                true
            } else {
                self.log.maybe_commit(index, self.term)
            };
        if advanced {
            self.on_commit_in_term();
            self.maybe_leave_joint();
            self.maybe_step_down_removed();
            // The new commit index travels with the next appends.
            self.bcast_pending = self.role == Role::Leader;
        }
        advanced
    }

    /// Raft §6: "Once C_old,new has been committed ... it is now safe for the leader to create
    /// a log entry describing C_new and replicate it to the cluster."
    pub(crate) fn maybe_leave_joint(&mut self) {
        if self.role != Role::Leader || !self.membership.is_joint() {
            return;
        }
        let Some((index, _)) = self.conf_history.last() else { return };
        if *index > self.log.committed() {
            return;
        }
        let change = crate::membership::ConfChange::LeaveJoint;
        let entry = Entry {
            term: self.term,
            index: self.log.last_index().next(),
            kind: EntryKind::ConfChange,
            data: change.encode(),
        };
        let at = entry.index;
        self.log.append_own(entry);
        if let Err(e) = self.rebuild_membership(at) {
            self.halted = Some(e);
        }
        self.bcast_pending = true;
    }

    /// Raft §6: a leader that is not part of the new configuration "steps down (returns to
    /// follower state) once it has committed the C_new log entry".
    fn maybe_step_down_removed(&mut self) {
        if self.membership.is_voter(self.id) {
            return;
        }
        if let Some((index, _)) = self.conf_history.last() {
            if *index <= self.log.committed() {
                self.become_follower(self.term, None);
            }
        }
    }

    /// Thesis §3.10, leadership transfer: "1. The prior leader stops accepting new client
    /// requests. 2. The prior leader fully updates the target server's log to match its own
    /// ... 3. The prior leader sends a TimeoutNow request to the target server." If the
    /// target does not take over within an election timeout, the transfer is abandoned.
    pub(crate) fn transfer_leader(
        &mut self,
        target: NodeId,
    ) -> Result<(), crate::error::TransferError> {
        use crate::error::TransferError;
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader_hint: self.leader_id });
        }
        if !self.membership.is_voter(target) {
            return Err(TransferError::NotAVoter { id: target });
        }
        if target == self.id || self.lead_transferee == Some(target) {
            return Ok(());
        }
        self.lead_transferee = Some(target);
        self.transfer_elapsed = 0;
        self.maybe_send_timeout_now(target).map_err(TransferError::Halted)
    }

    /// Sends TimeoutNow once the transfer target has everything; until then, replicates to it.
    pub(crate) fn maybe_send_timeout_now(&mut self, target: NodeId) -> Result<(), StorageError> {
        let last = self.log.last_index();
        let caught_up = self.progress.get(&target).is_some_and(|p| p.matched == last);
        if caught_up {
            // The target campaigns at once and its votes ignore leader stickiness: no lease
            // read until its campaign is over, which its election timeout bounds (Thesis
            // §6.4.1's lease assumes no other leader can be elected meanwhile).
            let reach = u64::from(self.config.election_timeout_ticks_max) + 1;
            self.read_only.void_lease_for(reach);
            self.msgs.push(Message {
                from: self.id,
                to: target,
                term: self.term,
                body: MessageBody::TimeoutNow,
            });
        } else {
            self.maybe_send_append(target, true)?;
        }
        Ok(())
    }

    /// The driver made our own log durable through `id`: only now does the leader count its
    /// own copy (Thesis §10.2.1).
    pub(crate) fn on_own_persisted(&mut self, id: EntryId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(pr) = self.progress.get_mut(&self.id) {
            if pr.maybe_update(id.index) {
                self.maybe_commit_leader();
            }
        }
    }
}
