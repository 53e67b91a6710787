//! The core's output: what to persist, what to send, what to apply, and the order the driver
//! must do it in.

use crate::message::Message;
use crate::types::{Entry, EntryId, HardState, LogIndex, NodeId, Role};

/// Volatile facts about the node, reported when they change. Never persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SoftState {
    /// The role now.
    pub role: Role,
    /// The leader this node knows of in its current term.
    pub leader: Option<NodeId>,
}

/// One batch of work for the driver. **The contract**, step by step:
///
/// 1. `messages` may be sent at once, even before step 2 completes. They are the leader's
///    AppendEntries and heartbeats: Thesis §10.2.1 lets the leader write its own log in
///    parallel with replication, because it counts itself toward commitment only once
///    [`crate::Node::advance`] reports its write durable.
/// 2. Write `snapshot_chunks` in order to the snapshot being received. If `snapshot` is set,
///    the last chunk completed it: verify it, install it atomically, restore the state
///    machine from it (after every committed entry of earlier `Ready`s, before this one's),
///    and apply it to the log store, which drops the entries it covers and keeps those after
///    it only if it holds its last entry (Raft Fig. 13, steps 5–8). Then write `entries` to
///    the log, first discarding any stored entry at or after `entries[0].index` (a
///    follower's conflicting suffix, Raft §5.3), and write `hard_state` if present. If
///    `must_sync` is set, make all of it durable (fsync) before step 3.
/// 3. Send `persisted_messages`: every answer to an RPC and every vote request. Raft Fig. 2:
///    persistent state is "updated on stable storage before responding to RPCs".
/// 4. Apply `committed_entries` to the state machine in order, each exactly once. They are
///    committed, and durable here once step 2 has completed.
/// 5. Call [`crate::Node::advance`] with [`Ready::ack`].
///
/// A driver may start collecting the next `Ready` before it finishes this one, as long as it
/// performs the steps of successive `Ready`s in order (writes in order, applies in order).
///
/// **Syncing in the background.** A driver may also leave step 2's sync running (on another
/// thread) and go on: apply this `Ready`'s committed entries, advance with the rest of the
/// acknowledgement ([`Ack::split_persisted`]), and collect later `Ready`s. Committed entries
/// are durable on a majority already (the core counts this node's own copy only once told
/// it is durable), so applying them before this node's own copy is durable is safe (Thesis
/// §10.2.1). What must wait for the sync: `persisted_messages`, of this `Ready` and of every
/// later one (answers go out in order), and [`Ack::persisted`] with the split-off entry.
/// The server's driver and the simulator (`detach_min_entries`) work this way.
#[derive(Debug, Default)]
pub struct Ready {
    /// Role or leader changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Term, vote or commit changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// Entries to append (step 2).
    pub entries: Vec<Entry>,
    /// Whether step 2 must be synced before step 3: set when entries, term, vote or snapshot
    /// bytes change. A change of the commit hint alone need not be synced.
    pub must_sync: bool,
    /// Chunks of a snapshot being received, to store in order (step 2).
    pub snapshot_chunks: Vec<crate::snapshot::SnapshotChunk>,
    /// A snapshot received whole, to install (step 2).
    pub snapshot: Option<crate::snapshot::SnapshotMeta>,
    /// Messages that may be sent before persisting (step 1).
    pub messages: Vec<Message>,
    /// Messages to send only after persisting (step 3).
    pub persisted_messages: Vec<Message>,
    /// Entries to apply (step 4).
    pub committed_entries: Vec<Entry>,
    /// Reads confirmed by ReadIndex (Thesis §6.4): serve each once the state machine has
    /// applied its index (after step 4 of this or a later `Ready`).
    pub read_states: Vec<crate::read_only::ReadState>,
    /// Contexts of reads that failed (this node lost leadership, or the leader refused a
    /// forwarded read): tell the clients to retry.
    pub aborted_reads: Vec<bytes::Bytes>,
    pub(crate) ack: Ack,
}

impl Ready {
    /// The acknowledgement to pass to [`crate::Node::advance`] once the `Ready` is done.
    /// Take it before moving the fields out.
    pub fn ack(&self) -> Ack {
        self.ack
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.entries.is_empty()
            && self.snapshot_chunks.is_empty()
            && self.snapshot.is_none()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.aborted_reads.is_empty()
    }
}

/// What a completed [`Ready`] made true: its entries are durable, its committed entries
/// applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ack {
    pub(crate) persisted: Option<EntryId>,
    pub(crate) applied: Option<LogIndex>,
    pub(crate) installed: Option<EntryId>,
}

impl Ack {
    /// An acknowledgement of durability alone, for drivers that persist and apply on
    /// different threads: `id` is the last entry now durable.
    pub fn persisted(id: EntryId) -> Ack {
        Ack { persisted: Some(id), applied: None, installed: None }
    }

    /// An acknowledgement of application alone: entries through `index` are applied.
    pub fn applied(index: LogIndex) -> Ack {
        Ack { persisted: None, applied: Some(index), installed: None }
    }

    /// Splits off the report of durability: the last entry this acknowledgement reports
    /// durable (to pass to [`Ack::persisted`] once the sync has returned), and the rest, for
    /// a driver that syncs on another thread and applies before the sync returns.
    ///
    /// ```
    /// use flotilla_raft::{Ack, EntryId, LogIndex, Term};
    /// let id = EntryId::new(Term(2), LogIndex(7));
    /// let (persisted, rest) = Ack::persisted(id).split_persisted();
    /// assert_eq!(persisted, Some(id));
    /// assert_eq!(rest, Ack::default());
    /// ```
    pub fn split_persisted(self) -> (Option<EntryId>, Ack) {
        (self.persisted, Ack { persisted: None, ..self })
    }
}
