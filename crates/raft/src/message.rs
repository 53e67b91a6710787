//! The messages Raft servers exchange: one variant per RPC of Raft Fig. 2 plus the pre-vote
//! round of Thesis §9.6 and the heartbeat used for commit propagation and check-quorum.
//! Later additions (snapshots, leadership transfer, read index) get their own variants;
//! [`MessageBody`] is `#[non_exhaustive]` so that adding them is not a breaking change.

use std::fmt;

use bytes::Bytes;

use crate::snapshot::SnapshotInfo;
use crate::types::{Entry, EntryId, LogIndex, NodeId, Term};

/// One message between two Raft nodes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Addressee.
    pub to: NodeId,
    /// The sender's term, except for a granted pre-vote, which echoes the term asked about.
    pub term: Term,
    /// The RPC.
    pub body: MessageBody,
}

/// The RPC a [`Message`] carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageBody {
    /// RequestVote (Raft §5.2), or its pre-vote probe (Thesis §9.6) when `pre_vote` is set; a
    /// pre-vote names the term the candidate would campaign in and changes no state.
    VoteRequest {
        /// Pre-vote probe rather than a real vote.
        pre_vote: bool,
        /// The candidate's last log entry, for the up-to-date check (Raft §5.4.1).
        last_log: EntryId,
        /// Sent by the target of a leadership transfer (Thesis §3.10): the current leader
        /// asked for this election, so leader stickiness does not apply.
        transfer: bool,
    },
    /// The answer to a [`MessageBody::VoteRequest`].
    VoteResponse {
        /// Answers a pre-vote probe.
        pre_vote: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries (Raft §5.3).
    AppendEntries {
        /// The entry just before `entries`: the consistency check.
        prev_log: EntryId,
        /// New entries (contiguous, terms non-decreasing); empty when probing.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The answer to [`MessageBody::AppendEntries`].
    AppendResponse {
        /// The follower's answer.
        outcome: AppendOutcome,
    },
    /// A leader's periodic heartbeat (Raft §5.2). It carries `commit = min(match, commit)`,
    /// the highest index the follower is known to share with the leader, so it advances the
    /// follower's commit index without a consistency check.
    Heartbeat {
        /// Commit index the follower may adopt.
        commit: LogIndex,
        /// The newest read-index round this heartbeat confirms leadership for (0: none).
        read_seq: u64,
    },
    /// The answer to a [`MessageBody::Heartbeat`]: proof of life for check-quorum, and an
    /// acknowledgement of leadership for read-index rounds up to `read_seq` (Thesis §6.4).
    HeartbeatResponse {
        /// Echoes the heartbeat's `read_seq`.
        read_seq: u64,
    },
    /// Leadership transfer (Thesis §3.10): the leader tells its caught-up target to start an
    /// election at once.
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of a client (Thesis §6.4.1).
    ReadIndexRequest {
        /// Opaque request context, returned with the answer.
        ctx: Bytes,
    },
    /// The leader's answer to a [`MessageBody::ReadIndexRequest`]: `None` if it could not
    /// serve it (it is not, or no longer, the leader).
    ReadIndexResponse {
        /// The request context.
        ctx: Bytes,
        /// The read index: the reader may serve the read once it has applied this index.
        index: Option<LogIndex>,
    },
    /// InstallSnapshot (Raft §7, Fig. 13): one chunk of the leader's snapshot, sent when a
    /// follower needs entries the leader has compacted away. The chunk is the last one when
    /// `offset + data.len() == info.size` (Fig. 13's `done`).
    InstallSnapshot {
        /// The snapshot (last included index and term, configuration) and its size.
        info: SnapshotInfo,
        /// Where `data` starts in the snapshot.
        offset: u64,
        /// Bytes `offset..offset + data.len()`.
        data: Bytes,
    },
    /// A follower's answer to a chunk that did not complete the snapshot: how many bytes of
    /// it are durably stored, so the leader resumes from there after a loss or a restart.
    /// (A completed snapshot, or one not needed, is answered with an `AppendResponse`.)
    SnapshotResponse {
        /// The snapshot's last included entry.
        snapshot: EntryId,
        /// Bytes of it stored, from offset 0.
        received: u64,
        /// The chunk was not taken because it did not start at `received` (a chunk was lost,
        /// or this node restarted): resend from `received`.
        rejected: bool,
    },
}

/// A follower's answer to AppendEntries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's through `match_index` (the last entry of the
    /// request, not the follower's last entry, which may be longer and unverified).
    Success {
        /// Highest index known to match the leader's log.
        match_index: LogIndex,
    },
    /// The consistency check failed at `rejected_prev`.
    Reject {
        /// The `prev_log.index` of the refused request, so the leader can discard stale
        /// rejections.
        rejected_prev: LogIndex,
        /// Fast backtracking hint (Raft §5.3, "the follower can include the term of the
        /// conflicting entry and the first index it stores for that term").
        hint: RejectHint,
    },
    /// The request came from a stale term; the message term tells the sender the new term.
    StaleTerm,
}

/// Where the follower's log and the leader's probe parted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectHint {
    /// The follower's log ends before `prev_log.index`: retry from `last_index + 1`.
    LogTooShort {
        /// The follower's last index.
        last_index: LogIndex,
    },
    /// The follower holds an entry of `conflict_term` at `prev_log.index`, and the first
    /// entry of that term it stores is at `first_index_of_term`.
    ConflictingTerm {
        /// The follower's term at the probed index.
        conflict_term: Term,
        /// The first index of that term in the follower's log.
        first_index_of_term: LogIndex,
    },
}

impl Message {
    /// Whether this message is one a leader sends to its followers (AppendEntries,
    /// Heartbeat, InstallSnapshot): receiving it with a term at least our own means `from` leads that term.
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self.body,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
        )
    }

    /// A short name of the RPC, for logs and golden scripts.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            MessageBody::VoteRequest { pre_vote: true, .. } => "PreVote",
            MessageBody::VoteRequest { pre_vote: false, .. } => "Vote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::VoteResponse { pre_vote: false, .. } => "VoteResp",
            MessageBody::AppendEntries { .. } => "App",
            MessageBody::AppendResponse { .. } => "AppResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndexRequest { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
            MessageBody::InstallSnapshot { .. } => "Snap",
            MessageBody::SnapshotResponse { .. } => "SnapResp",
        }
    }
}

impl fmt::Debug for Message {
    /// One line, stable across versions: golden scripts record it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} {} term={}", self.from.0, self.to.0, self.kind(), self.term.0)?;
        match &self.body {
            MessageBody::VoteRequest { last_log, transfer, .. } => {
                write!(f, " last={last_log}{}", if *transfer { " transfer" } else { "" })
            }
            MessageBody::VoteResponse { granted, .. } => {
                write!(f, " {}", if *granted { "granted" } else { "rejected" })
            }
            MessageBody::AppendEntries { prev_log, entries, leader_commit } => {
                write!(f, " prev={prev_log} commit={} entries={entries:?}", leader_commit.0)
            }
            MessageBody::AppendResponse { outcome } => match outcome {
                AppendOutcome::Success { match_index } => write!(f, " ok match={}", match_index.0),
                AppendOutcome::Reject { rejected_prev, hint } => {
                    write!(f, " reject prev={}", rejected_prev.0)?;
                    match hint {
                        RejectHint::LogTooShort { last_index } => {
                            write!(f, " hint=short(last={})", last_index.0)
                        }
                        RejectHint::ConflictingTerm { conflict_term, first_index_of_term } => {
                            write!(
                                f,
                                " hint=conflict(term={} first={})",
                                conflict_term.0, first_index_of_term.0
                            )
                        }
                    }
                }
                AppendOutcome::StaleTerm => write!(f, " stale-term"),
            },
            MessageBody::Heartbeat { commit, read_seq } => {
                write!(f, " commit={}", commit.0)?;
                if *read_seq > 0 {
                    write!(f, " read={read_seq}")?;
                }
                Ok(())
            }
            MessageBody::HeartbeatResponse { read_seq } if *read_seq > 0 => {
                write!(f, " read={read_seq}")
            }
            MessageBody::HeartbeatResponse { .. } | MessageBody::TimeoutNow => Ok(()),
            MessageBody::ReadIndexRequest { ctx } => write!(f, " ctx={ctx:?}"),
            MessageBody::ReadIndexResponse { ctx, index } => match index {
                Some(i) => write!(f, " ctx={ctx:?} index={}", i.0),
                None => write!(f, " ctx={ctx:?} refused"),
            },
            MessageBody::InstallSnapshot { info, offset, data } => write!(
                f,
                " snap={} offset={offset} len={} size={}{}",
                info.meta.id(),
                data.len(),
                info.size,
                if *offset + data.len() as u64 == info.size { " done" } else { "" }
            ),
            MessageBody::SnapshotResponse { snapshot, received, rejected } => write!(
                f,
                " snap={snapshot} received={received}{}",
                if *rejected { " rejected" } else { "" }
            ),
        }
    }
}
