//! Snapshot descriptions shared by the core, storage and the driver (Raft §7, Thesis §5).
//!
//! The core never sees a state machine: a snapshot is opaque bytes that a [`crate::LogStore`]
//! can read back in chunks (to send) and that the driver writes chunk by chunk (to receive).
//! What the core needs to know is in [`SnapshotMeta`]: the last entry the snapshot covers and
//! the configuration as of that entry ("the snapshot also includes the latest configuration
//! as of lastIncludedIndex", Raft §7).

use bytes::Bytes;

use crate::membership::Membership;
use crate::types::{EntryId, LogIndex, Term};

/// What a snapshot covers (Raft Fig. 12 and §7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The last entry the snapshot replaces (Raft's `lastIncludedIndex`).
    pub index: LogIndex,
    /// Its term (`lastIncludedTerm`), for the consistency check of the next AppendEntries.
    pub term: Term,
    /// The configuration as of `index`.
    pub membership: Membership,
}

impl SnapshotMeta {
    /// The last included entry.
    pub fn id(&self) -> EntryId {
        EntryId::new(self.term, self.index)
    }
}

/// A snapshot a store holds and can send: its meta and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotInfo {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// Its size in bytes (never zero: every snapshot format has a header).
    pub size: u64,
}

/// A snapshot partly received and durably stored, reported by a store at start so that the
/// transfer resumes where it stopped (Raft Fig. 13 sends chunks "at offset").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartialSnapshot {
    /// The snapshot being received.
    pub info: SnapshotInfo,
    /// Bytes durably stored, from offset 0.
    pub received: u64,
}

/// One chunk of a snapshot being received, for the driver to write
/// ([`crate::Ready::snapshot_chunks`]). Chunks arrive in order: `offset` is always the number
/// of bytes already written for this snapshot, 0 starting a new one (and discarding any other
/// partial snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotChunk {
    /// The snapshot and its total size.
    pub info: SnapshotInfo,
    /// Where `data` goes.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
}

impl SnapshotChunk {
    /// Whether this chunk completes the snapshot.
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 == self.info.size
    }
}
