//! Typed errors (ARCHITECTURE.md, design rule 5). Operating conditions are values the caller
//! can act on; a failed call leaves the node's state unchanged.

use thiserror::Error;

use crate::types::{LogIndex, NodeId, Term};

/// A configuration rule that [`crate::Config::validate`] found broken.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Node id 0 is reserved for "no node".
    #[error("node id must be non-zero")]
    ZeroId,
    /// Heartbeats would never be sent.
    #[error("heartbeat_interval_ticks must be at least 1")]
    ZeroHeartbeatInterval,
    /// Followers would time out between two heartbeats of a healthy leader (Raft §5.6:
    /// broadcastTime ≪ electionTimeout).
    #[error(
        "election_timeout_ticks_min ({election_timeout_ticks_min}) must exceed \
         heartbeat_interval_ticks ({heartbeat_interval_ticks})"
    )]
    ElectionTimeoutNotAboveHeartbeat {
        /// The configured minimum election timeout.
        election_timeout_ticks_min: u32,
        /// The configured heartbeat interval.
        heartbeat_interval_ticks: u32,
    },
    /// The randomized timeout range `[min, max)` is empty, so split votes would repeat forever.
    #[error("election timeout range [{min}, {max}) is empty: max must exceed min")]
    EmptyElectionTimeoutRange {
        /// Inclusive lower bound.
        min: u32,
        /// Exclusive upper bound.
        max: u32,
    },
    /// A limit of zero would stop all progress.
    #[error("{field} must be non-zero")]
    ZeroLimit {
        /// The field at fault.
        field: &'static str,
    },
    /// One full AppendEntries would never fit in the inflight byte window.
    #[error(
        "inflight_bytes_max ({inflight_bytes_max}) must be at least append_bytes_max \
         ({append_bytes_max})"
    )]
    InflightBytesBelowMessage {
        /// The configured window.
        inflight_bytes_max: u64,
        /// The configured message size.
        append_bytes_max: u64,
    },
    /// Lease reads rely on check-quorum to step a partitioned leader down (Thesis §6.4.1).
    #[error("read_mode LeaseBased requires check_quorum")]
    LeaseReadWithoutCheckQuorum,
    /// The initial membership has no voter, or names node 0.
    #[error("invalid membership: {0}")]
    Membership(&'static str),
}

/// Why a proposal was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// Only the leader appends (Raft §5.3); clients should retry at `leader_hint`.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard from in its current term, if any.
        leader_hint: Option<NodeId>,
    },
    /// Backpressure: too many bytes appended but not yet committed.
    #[error("too many uncommitted bytes ({uncommitted_bytes} of {limit_bytes}); retry later")]
    Backpressure {
        /// Bytes appended and not yet committed.
        uncommitted_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// A leadership transfer is under way (Thesis §3.10: the leader "stops accepting new
    /// client requests"); retry at the new leader.
    #[error("leadership is being transferred to {to}")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// The node stopped after a storage failure.
    #[error("node halted after a storage error: {0}")]
    Halted(StorageError),
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfChangeError {
    /// Only the leader changes the membership.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// Thesis §4.1: the next change may start only once the previous one is committed.
    #[error("the change at index {pending} is not committed yet")]
    InProgress {
        /// Index of the uncommitted change.
        pending: LogIndex,
    },
    /// Thesis §4.3 (the single-server change bug): a new leader changes the membership only
    /// after it has committed an entry of its own term.
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// Node 0 is not a valid member.
    #[error("node id 0 is reserved")]
    ZeroId,
    /// The cluster is in a joint configuration; it leaves it on its own once committed.
    #[error("a joint configuration is in effect")]
    InJoint,
    /// There is no joint configuration to leave.
    #[error("no joint configuration to leave")]
    NotJoint,
    /// Already a member (to make a learner a voter, promote it).
    #[error("{id} is already a member")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// Not a member.
    #[error("{id} is not a member")]
    NotAMember {
        /// The node.
        id: NodeId,
    },
    /// Only learners are promoted.
    #[error("{id} is not a learner")]
    NotALearner {
        /// The node.
        id: NodeId,
    },
    /// The cluster would have no voter left.
    #[error("removing {id} would leave no voter")]
    LastVoter {
        /// The node.
        id: NodeId,
    },
    /// The learner is too far behind to be promoted safely (it would stall commitment).
    #[error("learner {id} is {lag} entries behind (at most {max} allowed)")]
    LearnerLagging {
        /// The learner.
        id: NodeId,
        /// Entries it lacks.
        lag: u64,
        /// The configured limit.
        max: u64,
    },
    /// A leadership transfer is under way.
    #[error("leadership is being transferred")]
    TransferInProgress,
    /// The node stopped after a storage failure.
    #[error("node halted after a storage error: {0}")]
    Halted(StorageError),
}

/// Why a read-index request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReadError {
    /// No leader is known to forward the request to.
    #[error("no leader known")]
    NoLeader,
    /// Too many reads are waiting already.
    #[error("too many pending reads ({limit})")]
    TooManyPending {
        /// The configured limit.
        limit: usize,
    },
    /// The node stopped after a storage failure.
    #[error("node halted after a storage error: {0}")]
    Halted(StorageError),
}

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TransferError {
    /// Only the leader transfers leadership.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// The target is not a voter of the cluster.
    #[error("{id} is not a voter")]
    NotAVoter {
        /// The requested target.
        id: NodeId,
    },
    /// The node stopped after a storage failure.
    #[error("node halted after a storage error: {0}")]
    Halted(StorageError),
}

/// Why a message was not processed. Messages that are merely stale are not errors: Raft answers
/// or ignores them as part of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StepError {
    /// The sender is not a member this node knows of.
    #[error("message from unknown node {from}")]
    UnknownSender {
        /// Claimed sender.
        from: NodeId,
    },
    /// The message is addressed to another node.
    #[error("message for {to} delivered to {me}")]
    WrongRecipient {
        /// Addressee.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The message breaks a structural rule no correct peer breaks.
    #[error("malformed message from {from}: {reason}")]
    Malformed {
        /// Sender.
        from: NodeId,
        /// What is wrong.
        reason: Malformed,
    },
    /// The node stopped after a storage error.
    #[error("node halted after a storage error: {0}")]
    Halted(StorageError),
}

/// The structural rules a well-formed message obeys.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Malformed {
    /// Entry indices must follow `prev_log_index` one by one.
    #[error("entry index {found} where {expected} was expected")]
    NonContiguousEntries {
        /// What continuity requires.
        expected: LogIndex,
        /// What the message carried.
        found: LogIndex,
    },
    /// Terms never decrease along a log, and never exceed the sender's term.
    #[error("entry term {found} out of order (previous {previous}, message term {message_term})")]
    EntryTermOutOfOrder {
        /// The term before it (prev_log_term or the previous entry's).
        previous: Term,
        /// The entry's term.
        found: Term,
        /// The term of the message.
        message_term: Term,
    },
    /// A leader cannot know of commits beyond what it sends or what the receiver acknowledged.
    #[error("commit index {commit} beyond the receiver's log ({last})")]
    CommitBeyondLog {
        /// The commit carried.
        commit: LogIndex,
        /// The highest index it may name.
        last: LogIndex,
    },
    /// An AppendEntries would overwrite an entry this node knows is committed: only a broken
    /// or forged leader sends it (Raft §5.4, Leader Completeness).
    #[error("conflicting entry at {index}, at or below commit index {commit}")]
    ConflictBelowCommit {
        /// The index that conflicts.
        index: LogIndex,
        /// This node's commit index.
        commit: LogIndex,
    },
    /// A leader heard from another leader of its own term: Election Safety (Raft §5.2) says
    /// only a broken or forged peer sends this.
    #[error("a second leader claims term {term}")]
    SecondLeader {
        /// The term claimed twice.
        term: Term,
    },
    /// A message from this node to itself.
    #[error("message from self")]
    FromSelf,
    /// Term 0 precedes every election: no RPC carries it.
    #[error("term 0 on an RPC")]
    ZeroTerm,
    /// A snapshot chunk that does not fit in the snapshot it claims to be part of, or that
    /// describes an impossible snapshot (index or term 0, term above the message's).
    #[error("bad snapshot chunk: {0}")]
    BadSnapshotChunk(&'static str),
    /// An acknowledgement of snapshot bytes beyond the snapshot's size.
    #[error("acknowledges {received} bytes of a {size}-byte snapshot")]
    SnapshotAckBeyondSize {
        /// Bytes acknowledged.
        received: u64,
        /// The snapshot's size.
        size: u64,
    },
    /// An acknowledgement of an index the leader never sent.
    #[error("acknowledges index {index} beyond the leader's last index {last}")]
    AckBeyondLog {
        /// Index acknowledged.
        index: LogIndex,
        /// Leader's last index.
        last: LogIndex,
    },
    /// A rejection of an AppendEntries whose previous index the leader never sent: taken at
    /// its word it would move the follower's next index past the leader's log.
    #[error("rejects previous index {index} beyond the leader's last index {last}")]
    RejectBeyondLog {
        /// The previous index the rejection names.
        index: LogIndex,
        /// Leader's last index.
        last: LogIndex,
    },
}

/// An error reading the log through [`crate::LogStore`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
pub enum StorageError {
    /// The index was discarded by compaction (Raft §7).
    #[error("index {0} is compacted")]
    Compacted(LogIndex),
    /// The index is past the end of the log.
    #[error("index {0} is unavailable")]
    Unavailable(LogIndex),
    /// Any other failure: the node halts rather than risk safety.
    #[error("storage failure: {0}")]
    Other(String),
}

/// Why [`crate::Node::snapshot_meta`] cannot describe a snapshot at an index.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// A snapshot covers applied state only (Raft §7: "each server takes snapshots
    /// independently, covering just the committed entries in its log").
    #[error("index {index} is not applied yet (applied: {applied})")]
    NotApplied {
        /// The index asked for.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// The entry was compacted already, so its term is unknown; an older snapshot covers it.
    #[error("index {index} is below the log's start ({first_index})")]
    Compacted {
        /// The index asked for.
        index: LogIndex,
        /// The first index still in the log.
        first_index: LogIndex,
    },
    /// The node halted after a storage failure.
    #[error("node halted: {0}")]
    Halted(StorageError),
}
