//! The Raft state machine: term handling (Raft §5.1), role changes, timers and the dispatch of
//! each message to its handler. Role-specific handlers live in `role/`.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::{Malformed, StepError, StorageError};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{AppendOutcome, Message, MessageBody};
use crate::progress::Progress;
use crate::quorum::JointConfig;
use crate::rng::Rng;
use crate::storage::LogStore;
use crate::types::{HardState, LogIndex, NodeId, Role, Term};

/// The whole state of one Raft node, durable and volatile. Plain data: `Clone + Eq + Hash`
/// when the store is, so that a model checker can copy and compare it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Raft<S> {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    /// Raft Fig. 2 `currentTerm` (durable).
    pub(crate) term: Term,
    /// Raft Fig. 2 `votedFor` (durable). Invariant: a candidate or leader voted for itself.
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    /// The leader of `term`, once known. Invariant: `Some(id)` exactly when leader.
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) log: RaftLog<S>,
    /// The latest configuration in the log (Thesis §4.1: "a server always uses the latest
    /// configuration in its log, regardless of whether the entry is committed").
    pub(crate) membership: Membership,
    pub(crate) quorum: JointConfig,
    /// The configuration before any change in the log (from storage).
    pub(crate) base_membership: Membership,
    /// Every configuration change in the log: its index and the membership it results in.
    pub(crate) conf_history: Vec<(LogIndex, Membership)>,
    /// Leader only: one entry per member, this node included (its `matched` is its own durable
    /// index, Thesis §10.2.1). Empty in other roles.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate and pre-candidate only: the answers received in this election.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Ticks since the last reset of the election timer (leader: since the last quorum check).
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    /// Drawn from `[min, max)` at every reset (Raft §5.2).
    pub(crate) randomized_election_timeout: u32,
    pub(crate) rng: Rng,
    /// Leader only: bytes of entries proposed in this term and not yet handed out as committed.
    pub(crate) uncommitted_bytes: u64,
    /// Leader only: new entries or a new commit index wait to be sent; done in one pass when
    /// the driver collects a `Ready`, so that many proposals travel in one message (batching).
    pub(crate) bcast_pending: bool,
    /// Messages that may be sent before this step's state is durable (leader's AppendEntries
    /// and heartbeats, Thesis §10.2.1).
    pub(crate) msgs: Vec<Message>,
    /// Messages that may be sent only once this step's state is durable (every answer, every
    /// vote request: Raft Fig. 2, "respond to RPCs only after updating stable storage").
    pub(crate) msgs_after_persist: Vec<Message>,
    /// Set after a storage failure; every later call fails with it.
    pub(crate) halted: Option<StorageError>,
    /// Leader only: read-index rounds in progress (Thesis §6.4).
    pub(crate) read_only: crate::read_only::ReadOnly,
    /// Reads ready to serve, for the next `Ready`.
    pub(crate) read_states: Vec<crate::read_only::ReadState>,
    /// Reads that failed (leadership lost, or refused by the leader), for the next `Ready`.
    pub(crate) aborted_reads: Vec<bytes::Bytes>,
    /// Leader only: the target of a leadership transfer in progress (Thesis §3.10).
    pub(crate) lead_transferee: Option<NodeId>,
    /// Ticks since the transfer started; it is abandoned after an election timeout.
    pub(crate) transfer_elapsed: u32,
    /// Lease reads only: after a restart this node refuses votes for one minimum election
    /// timeout, as if it had just heard from a leader, because a lease a leader holds may
    /// count on the stickiness this node had before it crashed.
    pub(crate) boot_lease: bool,
    /// A snapshot being received from the leader: the bytes handed to the driver so far.
    pub(crate) incoming: Option<crate::snapshot::PartialSnapshot>,
    /// Snapshot chunks received, for the next `Ready`.
    pub(crate) snapshot_chunks: Vec<crate::snapshot::SnapshotChunk>,
    /// A snapshot received whole and installed in the core, for the next `Ready`.
    pub(crate) snapshot_to_install: Option<crate::snapshot::SnapshotMeta>,
}

impl<S: LogStore> Raft<S> {
    pub(crate) fn new(
        config: Config,
        store: S,
        applied: LogIndex,
    ) -> Result<Raft<S>, StorageError> {
        let init = store.initial_state()?;
        let hs = init.hard_state;
        let mut rng = Rng::new(config.rng_seed);
        let timeout =
            rng.in_range(config.election_timeout_ticks_min, config.election_timeout_ticks_max);
        let last = store.last_index();
        if hs.commit > last {
            return Err(StorageError::Other(format!(
                "hard state commit {} beyond the last stored index {last}",
                hs.commit
            )));
        }
        // The state machine's applied index is the driver's: a state machine restored from a
        // snapshot may be ahead of a lazily persisted commit index, and what it applied is
        // committed. Clipping it would apply entries twice.
        let applied = applied.max(store.first_index().prev());
        if applied > last {
            return Err(StorageError::Other(format!(
                "the state machine applied {applied}, beyond the last stored index {last}"
            )));
        }
        let mut raft = Raft {
            id: config.id,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader_id: None,
            log: RaftLog::new(store, hs.commit.max(applied), applied),
            quorum: init.membership.quorum(),
            base_membership: init.membership.clone(),
            conf_history: Vec::new(),
            membership: init.membership,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: timeout,
            rng,
            uncommitted_bytes: 0,
            bcast_pending: false,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            halted: None,
            read_only: Default::default(),
            read_states: Vec::new(),
            aborted_reads: Vec::new(),
            lead_transferee: None,
            transfer_elapsed: 0,
            boot_lease: config.read_mode == crate::config::ReadMode::LeaseBased
                && hs.term > Term::ZERO,
            incoming: init.partial_snapshot,
            snapshot_chunks: Vec::new(),
            snapshot_to_install: None,
            config,
        };
        // Thesis §4.1: the configuration is the latest one in the log, committed or not.
        raft.rebuild_membership(LogIndex::ZERO)?;
        Ok(raft)
    }

    /// Recomputes the membership after the log changed from `from` on: changes at or after it
    /// are forgotten, and those now in the log replayed (Thesis §4.1).
    pub(crate) fn rebuild_membership(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.conf_history.retain(|(i, _)| *i < from);
        let last = self.log.last_index();
        let mut at = from.max(self.log.first_index());
        while at <= last {
            let mut batch = Vec::new();
            self.log.entries(at, last.next(), u64::MAX, &mut batch)?;
            for e in &batch {
                if e.kind == crate::types::EntryKind::ConfChange {
                    let current =
                        self.conf_history.last().map_or(&self.base_membership, |(_, m)| m);
                    // A change the leader validated applies to the same configuration here; one
                    // that does not decode or apply (a corrupt or hostile entry) changes nothing.
                    let next = crate::membership::ConfChange::decode(&e.data)
                        .and_then(|cc| current.apply(&cc).ok())
                        .unwrap_or_else(|| current.clone());
                    self.conf_history.push((e.index, next));
                }
            }
            at = batch.last().map_or(last.next(), |e| e.index.next());
        }
        self.membership =
            self.conf_history.last().map_or(&self.base_membership, |(_, m)| m).clone();
        self.quorum = self.membership.quorum();
        if self.role == Role::Leader {
            let next = self.log.last_index().next();
            let (msgs_max, bytes_max) =
                (self.config.inflight_msgs_max, self.config.inflight_bytes_max);
            let members: Vec<NodeId> = self.membership.members().collect();
            for id in &members {
                self.progress.entry(*id).or_insert_with(|| {
                    let mut pr = Progress::new(next, msgs_max, bytes_max);
                    pr.recent_active = true;
                    pr
                });
            }
            let me = self.id;
            self.progress.retain(|id, _| *id == me || members.contains(id));
        }
        Ok(())
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed() }
    }

    /// Whether this node may campaign: only voters (Thesis §4.2.1, learners never do).
    pub(crate) fn promotable(&self) -> bool {
        self.membership.is_voter(self.id)
    }

    /// Queues a message to be sent once this step's state is durable.
    pub(crate) fn send_after_persist(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.msgs_after_persist.push(Message { from: self.id, to, term, body });
    }

    // ---- timers -------------------------------------------------------------------------

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_election_timeout = self.rng.in_range(
            self.config.election_timeout_ticks_min,
            self.config.election_timeout_ticks_max,
        );
    }

    pub(crate) fn tick(&mut self) -> Result<(), StorageError> {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.config.election_timeout_ticks_min {
                    self.boot_lease = false;
                }
                if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
                    // Raft §5.2: "If a follower receives no communication over a period of
                    // time called the election timeout, then it ... begins an election."
                    self.campaign()?;
                }
                Ok(())
            }
        }
    }

    /// Thesis §6.2 / §9.6, leader stickiness: while a follower hears from a leader it ignores
    /// votes, so a server that was partitioned away (or removed) cannot depose a live leader.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader_id.is_some() || self.boot_lease)
            && self.election_elapsed < self.config.election_timeout_ticks_min
    }

    // ---- role changes -------------------------------------------------------------------

    /// Becomes a follower in `term`. A higher term clears the vote (Raft Fig. 2, "Rules for
    /// Servers": "If RPC request or response contains term T > currentTerm: set currentTerm =
    /// T, convert to follower").
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        debug_assert!(term >= self.term, "terms never go back");
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader_id = leader;
        self.reset_role_state();
    }

    pub(crate) fn reset_role_state(&mut self) {
        self.abort_reads();
        self.lead_transferee = None;
        self.transfer_elapsed = 0;
        self.progress.clear();
        self.votes.clear();
        self.uncommitted_bytes = 0;
        self.bcast_pending = false;
        self.heartbeat_elapsed = 0;
        self.reset_election_timer();
    }

    // ---- dispatch ----------------------------------------------------------------------

    /// Validates and processes one message.
    pub(crate) fn step(&mut self, m: Message) -> Result<(), StepError> {
        self.validate(&m)?;
        if m.term > self.term {
            if let MessageBody::VoteRequest { transfer: false, .. } = m.body {
                if self.in_leader_lease() {
                    // Leader stickiness: neither the term nor the vote changes.
                    return Ok(());
                }
            }
            match m.body {
                // A pre-vote asks about a future term: answering changes nothing here.
                MessageBody::VoteRequest { pre_vote: true, .. } => {}
                // A granted pre-vote echoes the term the pre-candidate asked about.
                MessageBody::VoteResponse { pre_vote: true, granted: true } => {}
                _ => {
                    let leader = m.is_from_leader().then_some(m.from);
                    self.become_follower(m.term, leader);
                }
            }
        } else if m.term < self.term {
            return self.handle_stale_term(m).map_err(StepError::Halted);
        }
        self.dispatch(m).map_err(|e| match e {
            Dispatch::Storage(e) => {
                self.halted = Some(e.clone());
                StepError::Halted(e)
            }
            Dispatch::Malformed(from, reason) => StepError::Malformed { from, reason },
        })
    }

    /// Raft Fig. 2: a request with a stale term is refused. A stale leader is told the new
    /// term so it steps down (needed with check-quorum and pre-vote, which otherwise leave it
    /// unaware); a stale pre-candidate is told so it stops asking. Anything else is dropped.
    fn handle_stale_term(&mut self, m: Message) -> Result<(), StorageError> {
        match m.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                let body = MessageBody::AppendResponse { outcome: AppendOutcome::StaleTerm };
                self.send_after_persist(m.from, self.term, body);
            }
            MessageBody::VoteRequest { pre_vote, .. } => {
                let body = MessageBody::VoteResponse { pre_vote, granted: false };
                self.send_after_persist(m.from, self.term, body);
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, m: Message) -> Result<(), Dispatch> {
        match m.body {
            MessageBody::VoteRequest { pre_vote, last_log, .. } => {
                self.handle_vote_request(m.from, m.term, pre_vote, last_log)?
            }
            MessageBody::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(m.from, m.term, pre_vote, granted)?
            }
            MessageBody::AppendEntries { prev_log, entries, leader_commit } => {
                self.handle_append_entries(m.from, prev_log, &entries, leader_commit)?
            }
            MessageBody::Heartbeat { commit, read_seq } => {
                self.handle_heartbeat(m.from, commit, read_seq)?
            }
            MessageBody::AppendResponse { outcome } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, outcome)?
                }
            }
            MessageBody::HeartbeatResponse { read_seq } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(m.from)?;
                    self.on_read_ack(m.from, read_seq);
                }
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(m.from)?,
            MessageBody::ReadIndexRequest { ctx } => self.handle_read_index_request(m.from, ctx),
            MessageBody::ReadIndexResponse { ctx, index } => {
                self.handle_read_index_response(ctx, index)
            }
            MessageBody::InstallSnapshot { info, offset, data } => {
                self.handle_install_snapshot(m.from, info, offset, data)?
            }
            MessageBody::SnapshotResponse { snapshot, received, rejected } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(m.from, snapshot, received, rejected)?
                }
            }
        }
        Ok(())
    }

    /// Whether a member hears a sender its configuration does not name. Its configuration
    /// may be stale: one of the servers added since may lead, or need its vote, and the
    /// newer configuration may not make progress without it (seen in the simulator: a
    /// joint configuration whose new half were members that had missed the entries adding
    /// the old half's leader). Thesis §4.1: "a server accepts AppendEntries requests from a
    /// leader that is not part of the server's latest configuration", and "grants its vote
    /// to a candidate that is not part of the server's latest configuration (if the
    /// candidate has a sufficiently up-to-date log and a current term)". A removed server
    /// that missed its removal has an older log than the members, so its votes are still
    /// refused, and it leads no term the members are in.
    fn hears_stranger(&self, m: &Message) -> bool {
        match &m.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => m.term >= self.term,
            MessageBody::VoteRequest { last_log, .. } => {
                m.term > self.term && self.log.is_up_to_date(*last_log).unwrap_or(false)
            }
            _ => false,
        }
    }

    /// Structural checks, before any state changes (ARCHITECTURE.md, design rule 4).
    fn validate(&self, m: &Message) -> Result<(), StepError> {
        let bad = |reason| Err(StepError::Malformed { from: m.from, reason });
        if m.to != self.id {
            return Err(StepError::WrongRecipient { to: m.to, me: self.id });
        }
        if m.from == self.id {
            return bad(Malformed::FromSelf);
        }
        // A member refuses strangers: that keeps removed servers from disrupting the cluster.
        // A server outside its own configuration (joining, or removed) listens to anyone, so
        // that a leader added after it started can bring it the log that makes it a member;
        // terms, not membership, are what make Raft safe.
        if !self.membership.contains(m.from)
            && self.membership.contains(self.id)
            && !self.hears_stranger(m)
        {
            return Err(StepError::UnknownSender { from: m.from });
        }
        let is_request = matches!(
            m.body,
            MessageBody::VoteRequest { .. }
                | MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
        );
        if is_request && m.term == Term::ZERO {
            return bad(Malformed::ZeroTerm);
        }
        if let MessageBody::InstallSnapshot { info, offset, data } = &m.body {
            let reason = if info.meta.index == LogIndex::ZERO || info.meta.term == Term::ZERO {
                Some("last included index and term must be non-zero")
            } else if info.meta.term > m.term {
                Some("last included term above the message's term")
            } else if info.size == 0 {
                Some("empty snapshot")
            } else if data.is_empty() {
                Some("empty chunk")
            } else if offset.checked_add(data.len() as u64).is_none_or(|end| end > info.size) {
                Some("chunk extends past the snapshot's size")
            } else {
                None
            };
            if let Some(r) = reason {
                return bad(Malformed::BadSnapshotChunk(r));
            }
        }
        if let MessageBody::AppendEntries { prev_log, entries, .. } = &m.body {
            let mut previous = prev_log.term;
            let mut expected = prev_log.index.next();
            if previous > m.term {
                return bad(Malformed::EntryTermOutOfOrder {
                    previous,
                    found: previous,
                    message_term: m.term,
                });
            }
            for e in entries {
                if e.index != expected {
                    return bad(Malformed::NonContiguousEntries { expected, found: e.index });
                }
                if e.term < previous || e.term > m.term {
                    return bad(Malformed::EntryTermOutOfOrder {
                        previous,
                        found: e.term,
                        message_term: m.term,
                    });
                }
                previous = e.term;
                expected = expected.next();
            }
        }
        Ok(())
    }
}

/// Internal failure of a handler: a storage error (halts the node) or a malformed message.
#[derive(Debug)]
pub(crate) enum Dispatch {
    Storage(StorageError),
    Malformed(NodeId, Malformed),
}

impl From<StorageError> for Dispatch {
    fn from(e: StorageError) -> Self {
        Dispatch::Storage(e)
    }
}
