//! The public face of the core: a [`Node`] takes ticks, messages and proposals, and hands out
//! [`Ready`] batches.

use bytes::Bytes;
use thiserror::Error;

use crate::config::Config;
use crate::error::{ConfigError, ProposeError, StepError, StorageError};
use crate::message::Message;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::ready::{Ack, Ready, SoftState};
use crate::storage::LogStore;
use crate::types::{EntryId, HardState, LogIndex, NodeId, Role, Term};

/// Why a node could not be built.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InitError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The stored state could not be read, or is inconsistent.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// One Raft node: a deterministic state machine over a [`LogStore`]. It performs no IO and
/// reads no clock; time passes only through [`Node::tick`].
///
/// ```
/// use flotilla_raft::{Config, MemStorage, Membership, Node, NodeId, Role};
///
/// let members = Membership::new([NodeId(1)], []).unwrap();
/// let mut node = Node::new(Config::new(NodeId(1)), MemStorage::new(members)).unwrap();
/// // Tick until the election timeout fires; a single voter elects itself.
/// while node.status().role != Role::Leader {
///     node.tick().unwrap();
/// }
/// let id = node.propose("hello").unwrap();
/// let mut applied = Vec::new();
/// while node.has_ready() {
///     let rd = node.ready().unwrap();
///     let ack = rd.ack();
///     // 1. send rd.messages; 2. persist; 3. send rd.persisted_messages (none here).
///     node.store_mut().append(&rd.entries);
///     if let Some(hs) = rd.hard_state {
///         node.store_mut().set_hard_state(hs);
///     }
///     // 4. apply.
///     applied.extend(rd.committed_entries.iter().filter(|e| !e.data.is_empty()).cloned());
///     node.advance(ack);
/// }
/// assert_eq!(applied.last().map(|e| e.id()), Some(id));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node<S> {
    raft: Raft<S>,
    prev_hard: HardState,
    prev_soft: SoftState,
}

/// A snapshot of a node's state, for observers and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Its vote in `term`.
    pub vote: Option<NodeId>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: LogIndex,
    /// Applied index, as reported by the driver.
    pub applied: LogIndex,
    /// Last log index (durable or not).
    pub last_index: LogIndex,
    /// Last index reported durable.
    pub persisted: LogIndex,
    /// Leader only: what it knows of each member, itself included.
    pub progress: Vec<PeerProgress>,
    /// Leader only: the target of a leadership transfer in progress.
    pub transferee: Option<NodeId>,
}

/// What a leader knows of one member (Raft Fig. 2, "Volatile state on leaders").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The member.
    pub id: NodeId,
    /// Highest index known durably replicated there.
    pub matched: LogIndex,
    /// Next index to send.
    pub next: LogIndex,
    /// Flow-control state.
    pub state: ProgressState,
    /// AppendEntries in flight.
    pub inflight_msgs: usize,
    /// In snapshot state: the snapshot's last included index, bytes acknowledged, its size.
    pub snapshot: Option<(LogIndex, u64, u64)>,
}

impl<S: LogStore> Node<S> {
    /// A node over `store`, which holds the state to recover (an empty log for a new cluster).
    /// The state machine is taken to have applied nothing.
    pub fn new(config: Config, store: S) -> Result<Node<S>, InitError> {
        Node::restart(config, store, LogIndex::ZERO)
    }

    /// A node over `store` whose state machine has already applied entries through
    /// `applied` (so they are not handed out again).
    pub fn restart(config: Config, store: S, applied: LogIndex) -> Result<Node<S>, InitError> {
        let config = config.validate()?;
        let raft = Raft::new(config, store, applied)?;
        let prev_hard = raft.hard_state();
        let prev_soft = SoftState { role: raft.role, leader: raft.leader_id };
        let node = Node { raft, prev_hard, prev_soft };
        node.debug_check("restart");
        Ok(node)
    }

    /// Advances logical time by one tick: election and heartbeat timers (Raft §5.2).
    pub fn tick(&mut self) -> Result<(), StorageError> {
        self.halted()?;
        let r = self.raft.tick();
        self.after("tick", r)
    }

    /// Starts an election now, as an expired election timer would (pre-vote first if
    /// configured). Does nothing on a leader or a learner.
    pub fn campaign(&mut self) -> Result<(), StorageError> {
        self.halted()?;
        if self.raft.role == Role::Leader || !self.raft.promotable() {
            return Ok(());
        }
        let r = self.raft.campaign();
        self.after("campaign", r)
    }

    /// Processes one message from a peer. Malformed messages and messages from unknown nodes
    /// are refused with a typed reason and change nothing.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        if let Some(e) = &self.raft.halted {
            return Err(StepError::Halted(e.clone()));
        }
        let r = self.raft.step(m);
        self.debug_check("step");
        r
    }

    /// Proposes a command. On the leader, returns the id the entry will have; it is committed
    /// once it appears in [`Ready::committed_entries`] (under that id: a new leader may have
    /// replaced it, in which case a different entry arrives at that index).
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<EntryId, ProposeError> {
        if let Some(e) = &self.raft.halted {
            return Err(ProposeError::Halted(e.clone()));
        }
        let r = self.raft.propose(data.into());
        self.debug_check("propose");
        r
    }

    /// Proposes a membership change (Thesis §4.1–4.3): one voter added or removed at a time,
    /// learners added and promoted (a learner only once within
    /// [`Config::promotion_lag_max`] of the leader). It takes effect as soon as it is appended;
    /// the next change is refused until this one commits. Removing the leader itself works:
    /// it steps down once the change commits.
    pub fn propose_conf_change(
        &mut self,
        change: crate::membership::ConfChange,
    ) -> Result<EntryId, crate::error::ConfChangeError> {
        if let Some(e) = &self.raft.halted {
            return Err(crate::error::ConfChangeError::Halted(e.clone()));
        }
        let r = self.raft.propose_conf_change(change);
        self.debug_check("propose_conf_change");
        r
    }

    /// The current configuration (the latest in the log, committed or not).
    pub fn membership(&self) -> &crate::membership::Membership {
        &self.raft.membership
    }

    /// Asks for a linearizable read without writing to the log (Thesis §6.4). On the leader,
    /// once a heartbeat round confirms its leadership, a [`crate::ReadState`] with `ctx`
    /// appears in a [`Ready`]; on a follower the request is forwarded to the leader (Thesis
    /// §6.4.1) and the answer appears the same way. Serve the read once the state machine has
    /// applied the returned index. With [`crate::ReadMode::LeaseBased`] the leader answers
    /// without the heartbeat round. If leadership is lost first, `ctx` appears in
    /// [`Ready::aborted_reads`].
    ///
    /// Serializable reads (possibly stale, never waiting) need no call: read the local state
    /// machine.
    pub fn read_index(&mut self, ctx: impl Into<Bytes>) -> Result<(), crate::error::ReadError> {
        if let Some(e) = &self.raft.halted {
            return Err(crate::error::ReadError::Halted(e.clone()));
        }
        let r = self.raft.read_index(ctx.into());
        self.debug_check("read_index");
        r
    }

    /// Transfers leadership to `target` (Thesis §3.10): proposals are refused while the
    /// target is brought up to date, then it is told to campaign at once. Abandoned if the
    /// target has not taken over within an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), crate::error::TransferError> {
        if let Some(e) = &self.raft.halted {
            return Err(crate::error::TransferError::Halted(e.clone()));
        }
        let r = self.raft.transfer_leader(target);
        self.debug_check("transfer_leader");
        r
    }

    /// Whether [`Node::ready`] has work.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.halted.is_none()
            && (r.bcast_pending
                || !r.msgs.is_empty()
                || !r.msgs_after_persist.is_empty()
                || !r.log.unstable().to_persist().is_empty()
                || !r.snapshot_chunks.is_empty()
                || r.snapshot_to_install.is_some()
                || r.hard_state() != self.prev_hard
                || SoftState { role: r.role, leader: r.leader_id } != self.prev_soft
                || r.log.has_next_committed()
                || !r.read_states.is_empty()
                || !r.aborted_reads.is_empty())
    }

    /// Collects the work to do; see [`Ready`] for the order it must be done in.
    pub fn ready(&mut self) -> Result<Ready, StorageError> {
        self.halted()?;
        if let Err(e) = self.raft.flush_appends() {
            return Err(self.halt(e));
        }
        let r = &mut self.raft;
        let mut rd = Ready::default();
        let soft = SoftState { role: r.role, leader: r.leader_id };
        if soft != self.prev_soft {
            rd.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hard = r.hard_state();
        if hard != self.prev_hard {
            rd.must_sync = hard.term != self.prev_hard.term || hard.vote != self.prev_hard.vote;
            rd.hard_state = Some(hard);
            self.prev_hard = hard;
        }
        rd.entries = r.log.unstable().to_persist().to_vec();
        if let Some(last) = rd.entries.last() {
            rd.must_sync = true;
            rd.ack.persisted = Some(last.id());
            r.log.unstable_mut().handed_out_to(last.index);
        }
        rd.snapshot_chunks = std::mem::take(&mut r.snapshot_chunks);
        if !rd.snapshot_chunks.is_empty() {
            rd.must_sync = true;
        }
        if let Some(meta) = r.snapshot_to_install.take() {
            rd.must_sync = true;
            rd.ack.installed = Some(meta.id());
            rd.snapshot = Some(meta);
        }
        rd.read_states = std::mem::take(&mut r.read_states);
        rd.aborted_reads = std::mem::take(&mut r.aborted_reads);
        rd.messages = std::mem::take(&mut r.msgs);
        rd.persisted_messages = std::mem::take(&mut r.msgs_after_persist);
        match r.log.next_committed(r.config.apply_bytes_max) {
            Ok(entries) => rd.committed_entries = entries,
            Err(e) => return Err(self.halt(e)),
        }
        if let Some(last) = self.raft.on_committed_handed_out(&rd) {
            rd.ack.applied = Some(last);
            if self.raft.config.has_bug("ApplyTwice") && last.0 % 7 == 0 {
                // Planted bug: the last committed entry is handed out twice.
                let again = rd.committed_entries.last().cloned();
                rd.committed_entries.extend(again);
            }
        }
        self.debug_check("ready");
        Ok(rd)
    }

    /// Reports a [`Ready`] done (or part of it, see [`Ack`]).
    pub fn advance(&mut self, ack: Ack) {
        if self.raft.halted.is_some() {
            return;
        }
        if let Some(id) = ack.installed {
            self.raft.log.snapshot_installed(id);
        }
        if let Some(id) = ack.persisted {
            if self.raft.log.stable_to(id) {
                self.raft.on_own_persisted(id);
            }
        }
        if let Some(index) = ack.applied {
            self.raft.log.applied_to(index);
        }
        self.debug_check("advance");
    }

    /// The node's state, for observers.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id,
            role: r.role,
            term: r.term,
            vote: r.vote,
            leader: r.leader_id,
            commit: r.log.committed(),
            applied: r.log.applied(),
            last_index: r.log.last_index(),
            persisted: r.log.persisted_index(),
            progress: r
                .progress
                .iter()
                .map(|(id, p)| PeerProgress {
                    id: *id,
                    matched: p.matched(),
                    next: p.next(),
                    state: p.state(),
                    inflight_msgs: p.inflight_msgs(),
                    snapshot: p
                        .snapshot
                        .as_ref()
                        .map(|s| (s.info.meta.index, s.acked, s.info.size)),
                })
                .collect(),
            transferee: r.lead_transferee,
        }
    }

    /// Describes a snapshot of the state machine at `index` (applied, not yet compacted):
    /// its last included entry and the configuration as of that entry (Raft §7). The driver
    /// takes the snapshot, stores it, and may then compact the log up to it, or to an earlier
    /// index described the same way (keeping some entries for followers slightly behind).
    ///
    /// ```
    /// use flotilla_raft::testkit::Cluster;
    /// let mut c = Cluster::new(3, 1);
    /// let leader = c.elect();
    /// c.propose(leader, "x").unwrap();
    /// c.deliver_all();
    /// let meta = c.node(leader).snapshot_meta(c.node(leader).status().applied).unwrap();
    /// assert_eq!(meta.membership.voters().len(), 3);
    /// ```
    pub fn snapshot_meta(
        &self,
        index: LogIndex,
    ) -> Result<crate::snapshot::SnapshotMeta, crate::error::SnapshotError> {
        use crate::error::SnapshotError;
        let r = &self.raft;
        if let Some(e) = &r.halted {
            return Err(SnapshotError::Halted(e.clone()));
        }
        let applied = r.log.applied();
        if index > applied {
            return Err(SnapshotError::NotApplied { index, applied });
        }
        let term = match r.log.term(index) {
            Ok(t) => t,
            Err(StorageError::Compacted(_)) => {
                return Err(SnapshotError::Compacted { index, first_index: r.log.first_index() })
            }
            Err(e) => return Err(SnapshotError::Halted(e)),
        };
        let membership = r
            .conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&r.base_membership, |(_, m)| m)
            .clone();
        Ok(crate::snapshot::SnapshotMeta { index, term, membership })
    }

    /// The first index still in the log (1 until compaction).
    pub fn first_index(&self) -> LogIndex {
        self.raft.log.first_index()
    }

    /// The current term: cheaper than [`Node::status`] on a hot path.
    pub fn term(&self) -> Term {
        self.raft.term
    }

    /// The current role: cheaper than [`Node::status`] on a hot path.
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// The commit index: cheaper than [`Node::status`] on a hot path.
    pub fn commit_index(&self) -> LogIndex {
        self.raft.log.committed()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// The store the core reads from.
    pub fn store(&self) -> &S {
        &self.raft.log.store
    }

    /// The store, for the driver's writes (step 2 of the [`Ready`] contract).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.log.store
    }

    /// Checks every internal invariant (`invariants.rs`); `Err` names the one broken.
    /// Runs automatically after every call in debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.raft.check_invariants()
    }

    fn halted(&self) -> Result<(), StorageError> {
        match &self.raft.halted {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn halt(&mut self, e: StorageError) -> StorageError {
        self.raft.halted = Some(e.clone());
        e
    }

    fn after(&mut self, what: &str, r: Result<(), StorageError>) -> Result<(), StorageError> {
        let r = r.map_err(|e| self.halt(e));
        self.debug_check(what);
        r
    }

    #[inline]
    fn debug_check(&self, what: &str) {
        if cfg!(debug_assertions) {
            if let Err(e) = self.raft.check_invariants() {
                panic!(
                    "invariant broken after {what} on node {} (term {}, role {}): {e}",
                    self.raft.id, self.raft.term, self.raft.role
                );
            }
        }
    }
}

impl<S: LogStore> Raft<S> {
    /// Bookkeeping when committed entries are handed out: they leave the uncommitted budget.
    fn on_committed_handed_out(&mut self, rd: &Ready) -> Option<LogIndex> {
        let last = rd.committed_entries.last()?.index;
        if self.role == Role::Leader {
            let bytes: u64 = rd
                .committed_entries
                .iter()
                .filter(|e| e.term == self.term && e.kind == crate::types::EntryKind::Normal)
                .map(crate::types::Entry::size_bytes)
                .sum();
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(bytes);
        }
        Some(last)
    }
}
