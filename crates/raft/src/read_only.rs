//! Linearizable reads without writing to the log (Thesis §6.4): ReadIndex on the leader and,
//! forwarded, on followers (§6.4.1); lease reads as an option.
//!
//! ReadIndex, in the thesis's words: "1. If the leader has not yet marked an entry from its
//! current term committed, it waits until it has. 2. The leader saves its current commit index
//! in a local variable readIndex. 3. The leader needs to make sure it hasn't been superseded
//! by a newer leader of which it is unaware. It issues a new round of heartbeats and waits for
//! their acknowledgments from a majority of the cluster. 4. The leader waits for its state
//! machine to advance at least as far as the readIndex". Step 4 is the application's: a
//! [`ReadState`] tells it which index to wait for.
//!
//! Rounds are numbered: a heartbeat carries the newest round number, and an acknowledgement of
//! round `s` confirms every round up to `s`, so many reads share one heartbeat round.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::config::ReadMode;
use crate::error::ReadError;
use crate::message::{Message, MessageBody};
use crate::raft::Raft;
use crate::storage::LogStore;
use crate::types::{LogIndex, NodeId, Role};

/// A read the application may serve once it has applied `index`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReadState {
    /// The context given to [`crate::Node::read_index`].
    pub ctx: Bytes,
    /// Serve the read once the state machine has applied this index.
    pub index: LogIndex,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingRead {
    seq: u64,
    ctx: Bytes,
    index: LogIndex,
    /// `None`: this node's own client; else the follower that forwarded it.
    from: Option<NodeId>,
}

/// Leader-side read state. Invariant: empty unless leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ReadOnly {
    next_seq: u64,
    pending: VecDeque<PendingRead>,
    /// Highest round each voter acknowledged.
    acked: BTreeMap<NodeId, u64>,
    /// Reads that arrived before the leader committed an entry of its term.
    waiting_for_commit: Vec<(Bytes, Option<NodeId>)>,
    /// Lease mode: ticks since this node became leader, and when each heartbeat round was
    /// sent (rounds no voter can still acknowledge first are pruned).
    now: u64,
    rounds: VecDeque<(u64, u64)>,
    /// Lease mode: only rounds sent at or after this tick confirm a lease. Set past a
    /// leadership transfer's reach: the target campaigns at once, and voters grant a
    /// transfer's votes without leader stickiness, which is what the lease rests on.
    lease_fence: u64,
}

impl ReadOnly {
    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.waiting_for_commit.len()
    }

    /// The newest round number issued (0: none).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq
    }

    /// Forgets everything: returns the contexts of this node's own reads, which failed.
    fn abort(&mut self) -> Vec<Bytes> {
        let mut failed: Vec<Bytes> =
            self.pending.drain(..).filter(|r| r.from.is_none()).map(|r| r.ctx).collect();
        failed
            .extend(self.waiting_for_commit.drain(..).filter(|(_, f)| f.is_none()).map(|(c, _)| c));
        self.acked.clear();
        self.rounds.clear();
        self.now = 0;
        self.lease_fence = 0;
        failed
    }

    /// Lease mode: no lease from rounds sent before `ticks` from now.
    pub(crate) fn void_lease_for(&mut self, ticks: u64) {
        self.lease_fence = self.lease_fence.max(self.now + ticks);
    }

    /// Lease mode: one tick passed.
    pub(crate) fn tick(&mut self) {
        self.now += 1;
    }

    /// Lease mode: a heartbeat round starts now; returns its number.
    pub(crate) fn start_round(&mut self) -> u64 {
        self.next_seq += 1;
        self.rounds.push_back((self.next_seq, self.now));
        if self.rounds.len() > 1024 {
            self.rounds.pop_front();
        }
        self.next_seq
    }
}

impl<S: LogStore> Raft<S> {
    /// Requests a read index for `ctx` (see the module documentation).
    pub(crate) fn read_index(&mut self, ctx: Bytes) -> Result<(), ReadError> {
        if self.read_only.len() >= self.config.pending_reads_max {
            return Err(ReadError::TooManyPending { limit: self.config.pending_reads_max });
        }
        match self.role {
            Role::Leader => {
                self.leader_read(ctx, None);
                Ok(())
            }
            _ => match self.leader_id {
                // Thesis §6.4.1: a follower asks the leader for the read index.
                Some(leader) => {
                    self.send_after_persist(
                        leader,
                        self.term,
                        MessageBody::ReadIndexRequest { ctx },
                    );
                    Ok(())
                }
                None => Err(ReadError::NoLeader),
            },
        }
    }

    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed()).ok() == Some(self.term)
    }

    fn leader_read(&mut self, ctx: Bytes, from: Option<NodeId>) {
        if !self.committed_in_term() {
            // Step 1: until the no-op of this term commits, the commit index may lag entries
            // that earlier leaders committed.
            self.read_only.waiting_for_commit.push((ctx, from));
            return;
        }
        let index = self.log.committed();
        if self.lease_valid() || self.config.has_bug("ReadIndexWithoutQuorum") {
            self.release_read(ctx, index, from);
            return;
        }
        self.read_only.next_seq += 1;
        let seq = self.read_only.next_seq;
        self.read_only.pending.push_back(PendingRead { seq, ctx, index, from });
        let me = self.id;
        self.read_only.acked.insert(me, seq);
        if !self.release_confirmed_reads() {
            // Step 3: a heartbeat round now, rather than at the next heartbeat tick.
            self.bcast_heartbeat();
        }
    }

    fn release_read(&mut self, ctx: Bytes, index: LogIndex, from: Option<NodeId>) {
        match from {
            None => self.read_states.push(ReadState { ctx, index }),
            Some(f) => self.msgs.push(Message {
                from: self.id,
                to: f,
                term: self.term,
                body: MessageBody::ReadIndexResponse { ctx, index: Some(index) },
            }),
        }
    }

    /// Releases every read whose round a quorum acknowledged; returns whether any was.
    fn release_confirmed_reads(&mut self) -> bool {
        let acked = &self.read_only.acked;
        let confirmed = self.quorum.committed_index(|id| acked.get(&id).map(|s| LogIndex(*s))).0;
        let mut released = false;
        while self.read_only.pending.front().is_some_and(|r| r.seq <= confirmed) {
            let r = self.read_only.pending.pop_front().expect("front checked");
            self.release_read(r.ctx, r.index, r.from);
            released = true;
        }
        released
    }

    /// A voter acknowledged rounds up to `seq`.
    pub(crate) fn on_read_ack(&mut self, from: NodeId, seq: u64) {
        if seq == 0 {
            return;
        }
        let e = self.read_only.acked.entry(from).or_default();
        *e = (*e).max(seq);
        if !self.read_only.pending.is_empty() {
            self.release_confirmed_reads();
        }
    }

    /// Thesis §6.4.1, the leader lease: a quorum acknowledged a heartbeat round sent at tick
    /// `t`, so each of them reset its election timer at or after `t` and, with check-quorum's
    /// leader stickiness, will not help elect another leader before `t` plus the minimum
    /// election timeout. Until then (less a tick of margin) no other leader can exist, provided
    /// clocks tick at the same rate: the assumption the thesis names for leases.
    fn lease_valid(&self) -> bool {
        if self.config.read_mode != ReadMode::LeaseBased {
            return false;
        }
        let ro = &self.read_only;
        let me = self.id;
        let acked = |id: NodeId| {
            if id == me {
                Some(LogIndex(ro.next_seq))
            } else {
                ro.acked.get(&id).map(|s| LogIndex(*s))
            }
        };
        let confirmed = self.quorum.committed_index(acked).0;
        let Some(&(_, sent_at)) = ro.rounds.iter().rev().find(|(seq, _)| *seq <= confirmed) else {
            return false;
        };
        if sent_at < ro.lease_fence {
            return false;
        }
        let lease = u64::from(self.config.election_timeout_ticks_min).saturating_sub(1);
        ro.now < sent_at + lease
    }

    /// The leader committed an entry of its term: serve the reads that waited for it.
    pub(crate) fn on_commit_in_term(&mut self) {
        if self.read_only.waiting_for_commit.is_empty() || !self.committed_in_term() {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.read_only.waiting_for_commit) {
            self.leader_read(ctx, from);
        }
    }

    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, ctx: Bytes) {
        if self.role == Role::Leader && self.read_only.len() < self.config.pending_reads_max {
            self.leader_read(ctx, Some(from));
        } else {
            let body = MessageBody::ReadIndexResponse { ctx, index: None };
            self.send_after_persist(from, self.term, body);
        }
    }

    pub(crate) fn handle_read_index_response(&mut self, ctx: Bytes, index: Option<LogIndex>) {
        match index {
            Some(index) => self.read_states.push(ReadState { ctx, index }),
            None => self.aborted_reads.push(ctx),
        }
    }

    /// Leadership is lost: this node's pending reads fail (the application retries them).
    pub(crate) fn abort_reads(&mut self) {
        let failed = self.read_only.abort();
        self.aborted_reads.extend(failed);
    }
}
