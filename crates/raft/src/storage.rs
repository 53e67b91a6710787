//! The read side of the log that the core needs ([`LogStore`]), and [`MemStorage`], an
//! in-memory implementation for tests, benchmarks and the simulator. Writing is the driver's
//! job: it applies each [`crate::Ready`] to its storage, then calls [`crate::Node::advance`].

use bytes::Bytes;

use crate::error::StorageError;
use crate::membership::Membership;
use crate::snapshot::{PartialSnapshot, SnapshotChunk, SnapshotInfo, SnapshotMeta};
use crate::types::{Entry, EntryId, HardState, LogIndex, Term};

/// What a node recovers from storage when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InitialState {
    /// Term, vote and commit hint.
    pub hard_state: HardState,
    /// Membership as of the entry before [`LogStore::first_index`] (the configuration the
    /// changes still in the log apply to).
    pub membership: Membership,
    /// A snapshot partly received before a restart: the transfer resumes from there.
    pub partial_snapshot: Option<PartialSnapshot>,
}

/// Read access to the durable log.
///
/// Indices `first_index()..=last_index()` hold entries; `term(first_index() - 1)` must also
/// answer (it is the term of the entry compaction last discarded, or 0 for an empty prefix).
/// Reads below that return [`StorageError::Compacted`]; reads above `last_index()`
/// [`StorageError::Unavailable`]. Any other error halts the node.
pub trait LogStore {
    /// The durable hard state and membership, read once at start.
    fn initial_state(&self) -> Result<InitialState, StorageError>;

    /// Index of the first entry still available (1 on a log never compacted).
    fn first_index(&self) -> LogIndex;

    /// Index of the last entry (0 for an empty log).
    fn last_index(&self) -> LogIndex;

    /// Term of the entry at `index`.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// Appends to `out` the entries in `[low, high)`, stopping before the total of
    /// [`Entry::size_bytes`] exceeds `bytes_max` but always returning at least one entry.
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError>;

    /// The newest complete snapshot held, if any.
    fn snapshot(&self) -> Option<SnapshotInfo>;

    /// Bytes `offset..offset + len` of the snapshot whose last included entry is `snapshot`
    /// (within its size). [`StorageError::Unavailable`] if it is no longer held (a newer one
    /// replaced it): the leader then starts over with the newest.
    fn snapshot_chunk(
        &self,
        snapshot: EntryId,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError>;
}

/// An in-memory [`LogStore`] that also accepts the driver's writes. Plain data: `Clone + Eq +
/// Hash`, so a node over it can be copied and compared whole.
///
/// ```
/// use flotilla_raft::{Entry, LogIndex, LogStore, MemStorage, Membership, NodeId, Term};
/// let mut s = MemStorage::new(Membership::new([NodeId(1)], []).unwrap());
/// s.append(&[Entry::new(Term(1), LogIndex(1), "a"), Entry::new(Term(1), LogIndex(2), "b")]);
/// // Appending at index 2 replaces the suffix from 2 on (Raft §5.3).
/// s.append(&[Entry::new(Term(2), LogIndex(2), "c")]);
/// assert_eq!((s.last_index(), s.term(LogIndex(2)).unwrap()), (LogIndex(2), Term(2)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemStorage {
    hard_state: crate::types::HardState,
    membership: Membership,
    /// Index and term just before `entries[0]` (0/0 until compaction exists).
    prefix_index: LogIndex,
    prefix_term: Term,
    /// Invariant: `entries[i].index == prefix_index + 1 + i`.
    entries: Vec<Entry>,
    /// The newest snapshot, covering at least `prefix_index`.
    snapshot: Option<(SnapshotInfo, Bytes)>,
    /// A snapshot being received: its description and the bytes so far.
    receiving: Option<(SnapshotInfo, Vec<u8>)>,
}

impl MemStorage {
    /// An empty log for a cluster starting with `membership`.
    pub fn new(membership: Membership) -> MemStorage {
        MemStorage {
            hard_state: HardState::default(),
            membership,
            prefix_index: LogIndex::ZERO,
            prefix_term: Term::ZERO,
            entries: Vec::new(),
            snapshot: None,
            receiving: None,
        }
    }

    /// A store recovered from elsewhere (a WAL): `prefix` is the last entry compacted away
    /// (0/0 if none) and `entries` follow it contiguously.
    pub fn from_parts(
        hard_state: HardState,
        membership: Membership,
        prefix: crate::types::EntryId,
        entries: Vec<Entry>,
    ) -> Result<MemStorage, StorageError> {
        for (i, e) in entries.iter().enumerate() {
            if e.index != prefix.index.plus(i as u64 + 1) {
                return Err(StorageError::Other(format!(
                    "recovered entries not contiguous: {} at position {i} after {}",
                    e.index, prefix.index
                )));
            }
        }
        Ok(MemStorage {
            hard_state,
            membership,
            prefix_index: prefix.index,
            prefix_term: prefix.term,
            entries,
            snapshot: None,
            receiving: None,
        })
    }

    /// Keeps `data` as the newest snapshot, described by `meta` (from
    /// [`crate::Node::snapshot_meta`]). It must not be older than the one held, nor empty.
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: Bytes) -> Result<(), StorageError> {
        if data.is_empty() {
            return Err(StorageError::Other("a snapshot cannot be empty".into()));
        }
        if let Some((held, _)) = &self.snapshot {
            if held.meta.index > meta.index {
                return Err(StorageError::Other(format!(
                    "snapshot at {} is older than the one held at {}",
                    meta.index, held.meta.index
                )));
            }
        }
        let size = data.len() as u64;
        self.snapshot = Some((SnapshotInfo { meta, size }, data));
        Ok(())
    }

    /// The newest snapshot and its bytes: what a restarting state machine restores.
    pub fn snapshot_data(&self) -> Option<(&SnapshotInfo, &Bytes)> {
        self.snapshot.as_ref().map(|(i, d)| (i, d))
    }

    /// Discards the entries through `at.index` (Raft §7); `at` (from
    /// [`crate::Node::snapshot_meta`]) becomes the log's prefix. A snapshot must cover it.
    pub fn compact(&mut self, at: &SnapshotMeta) -> Result<(), StorageError> {
        if at.index > self.prefix_index
            && self.snapshot.as_ref().is_none_or(|(s, _)| s.meta.index < at.index)
        {
            return Err(StorageError::Other(format!(
                "compaction to {} is not covered by a snapshot",
                at.index
            )));
        }
        self.discard_through(at)
    }

    /// The log side of [`MemStorage::compact`], for stores that keep snapshots elsewhere:
    /// discards the entries through `at.index`, which must be in the log.
    pub fn discard_through(&mut self, at: &SnapshotMeta) -> Result<(), StorageError> {
        if at.index <= self.prefix_index {
            return Ok(());
        }
        if self.term(at.index)? != at.term {
            return Err(StorageError::Other(format!(
                "compaction point {} does not match the log",
                at.id()
            )));
        }
        self.entries.drain(..(at.index.0 - self.prefix_index.0) as usize);
        self.prefix_index = at.index;
        self.prefix_term = at.term;
        self.membership = at.membership.clone();
        Ok(())
    }

    /// Stores one received chunk ([`crate::Ready::snapshot_chunks`]).
    pub fn write_snapshot_chunk(&mut self, chunk: &SnapshotChunk) -> Result<(), StorageError> {
        if chunk.offset == 0 {
            self.receiving = Some((chunk.info.clone(), Vec::new()));
        }
        match &mut self.receiving {
            Some((info, buf)) if *info == chunk.info && buf.len() as u64 == chunk.offset => {
                buf.extend_from_slice(&chunk.data);
                Ok(())
            }
            _ => Err(StorageError::Other(format!(
                "snapshot chunk at offset {} of {} does not continue the one being received",
                chunk.offset,
                chunk.info.meta.id()
            ))),
        }
    }

    /// Installs the snapshot received whole ([`crate::Ready::snapshot`]) and returns its
    /// bytes for the state machine. The log keeps the entries after it only if it holds the
    /// snapshot's last included entry (Raft Fig. 13, steps 6 and 7).
    pub fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<Bytes, StorageError> {
        let (info, buf) = match self.receiving.take() {
            Some((info, buf)) if info.meta == *meta && buf.len() as u64 == info.size => (info, buf),
            other => {
                self.receiving = other;
                return Err(StorageError::Other(format!(
                    "snapshot {} is not completely received",
                    meta.id()
                )));
            }
        };
        let data = Bytes::from(buf);
        self.apply_snapshot(meta);
        self.snapshot = Some((info, data.clone()));
        Ok(data)
    }

    /// The log side of an installed snapshot, for stores that keep snapshots elsewhere:
    /// Raft Fig. 13, "6. If existing log entry has same index and term as snapshot's last
    /// included entry, retain log entries following it and reply. 7. Discard the entire log."
    /// Returns whether the entries after it were kept.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMeta) -> bool {
        if meta.index < self.prefix_index {
            // Older than what the log already covers: nothing to do.
            return true;
        }
        let keep = self.term(meta.index) == Ok(meta.term);
        if keep {
            self.entries.drain(..(meta.index.0 - self.prefix_index.0) as usize);
        } else {
            self.entries.clear();
        }
        self.prefix_index = meta.index;
        self.prefix_term = meta.term;
        self.membership = meta.membership.clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        keep
    }

    /// Writes `entries`, first discarding every entry at or after `entries[0].index`: the
    /// semantics of [`crate::Ready::entries`].
    ///
    /// # Panics
    /// If `entries` would leave a gap after the current last index: the core never asks for
    /// that, so it would be a broken driver.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.prefix_index && first.index <= self.last_index().next(),
            "append at {} leaves a gap or rewrites compacted entries (log {}..={})",
            first.index,
            self.first_index(),
            self.last_index()
        );
        let keep = (first.index.0 - self.prefix_index.0 - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Records the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// All stored entries.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn slot(&self, index: LogIndex) -> Result<usize, StorageError> {
        if index <= self.prefix_index {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        Ok((index.0 - self.prefix_index.0 - 1) as usize)
    }
}

impl LogStore for MemStorage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
            partial_snapshot: self.receiving.as_ref().map(|(info, buf)| PartialSnapshot {
                info: info.clone(),
                received: buf.len() as u64,
            }),
        })
    }

    fn first_index(&self) -> LogIndex {
        self.prefix_index.next()
    }

    fn last_index(&self) -> LogIndex {
        self.prefix_index.plus(self.entries.len() as u64)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == self.prefix_index {
            return Ok(self.prefix_term);
        }
        Ok(self.entries[self.slot(index)?].term)
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        if low >= high {
            return Ok(());
        }
        let (lo, hi) = (self.slot(low)?, self.slot(high.prev())? + 1);
        let mut bytes = 0;
        for e in &self.entries[lo..hi] {
            bytes += e.size_bytes();
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(e.clone());
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<SnapshotInfo> {
        self.snapshot.as_ref().map(|(i, _)| i.clone())
    }

    fn snapshot_chunk(
        &self,
        snapshot: EntryId,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        match &self.snapshot {
            Some((info, data)) if info.meta.id() == snapshot => {
                let end = offset.saturating_add(len).min(data.len() as u64);
                Ok(data.slice(offset.min(end) as usize..end as usize))
            }
            _ => Err(StorageError::Unavailable(snapshot.index)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn store(terms: &[u64]) -> MemStorage {
        let mut s = MemStorage::new(Membership::new([NodeId(1)], []).unwrap());
        let es: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::new(Term(*t), LogIndex(i as u64 + 1), vec![0u8; 10]))
            .collect();
        s.append(&es);
        s
    }

    #[test]
    fn entries_respects_bounds_and_byte_limit() {
        let s = store(&[1, 1, 2, 3]);
        let per = Entry::new(Term(1), LogIndex(1), vec![0u8; 10]).size_bytes();
        let cases = [(1, 5, u64::MAX, 4), (2, 4, u64::MAX, 2), (1, 5, per * 2, 2), (1, 5, 1, 1)];
        for (lo, hi, max, want) in cases {
            let mut out = Vec::new();
            s.entries(LogIndex(lo), LogIndex(hi), max, &mut out).unwrap();
            assert_eq!(out.len(), want, "[{lo},{hi}) max {max}");
            assert_eq!(out[0].index, LogIndex(lo));
        }
        let mut out = Vec::new();
        assert_eq!(
            s.entries(LogIndex(3), LogIndex(6), u64::MAX, &mut out),
            Err(StorageError::Unavailable(LogIndex(5)))
        );
    }

    #[test]
    fn term_of_zero_and_out_of_range() {
        let s = store(&[1, 2]);
        assert_eq!(s.term(LogIndex(0)), Ok(Term(0)));
        assert_eq!(s.term(LogIndex(2)), Ok(Term(2)));
        assert_eq!(s.term(LogIndex(3)), Err(StorageError::Unavailable(LogIndex(3))));
    }
}
