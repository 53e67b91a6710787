//! [`DiskLog`]: the Raft log kept durably in a [`Wal`] and served from memory, with its
//! snapshots ([`SnapshotStore`], in `snap/` under the WAL directory). Like etcd's pairing of
//! its WAL with an in-memory raft log, log reads never touch the disk; memory is bounded by
//! compaction (Raft §7).

use std::path::Path;

use bytes::Bytes;
use flotilla_raft::{
    Entry, EntryId, HardState, InitialState, LogIndex, LogStore, MemStorage, Membership,
    PartialSnapshot, SnapshotChunk, SnapshotInfo, SnapshotMeta, StorageError, Term,
};

use crate::error::WalError;
use crate::fs::FileSystem;
use crate::snapshot::{Partial, SnapshotStore};
use crate::wal::{Recovered, Wal, WalOptions};

/// Snapshots kept on disk: the newest, and one more so that a transfer of the previous one
/// in progress can finish.
const SNAPSHOTS_KEPT: usize = 2;

/// A durable Raft log implementing [`LogStore`].
///
/// The driver writes each `Ready` with [`DiskLog::write`] and makes it durable with
/// [`DiskLog::sync`] before sending the messages that depend on it.
#[derive(Debug)]
pub struct DiskLog<F: FileSystem> {
    wal: Wal<F>,
    mem: MemStorage,
    snaps: SnapshotStore<F>,
    latest: Option<SnapshotInfo>,
    partial: Option<Partial<F>>,
}

impl<F: FileSystem> DiskLog<F> {
    /// A new, empty log for a cluster starting with `membership`.
    pub fn create(
        fs: F,
        dir: &Path,
        membership: Membership,
        opts: WalOptions,
    ) -> Result<DiskLog<F>, WalError> {
        let wal = Wal::create(fs.clone(), dir, membership.clone(), opts)?;
        let snaps = SnapshotStore::new(fs, &dir.join("snap"), SNAPSHOTS_KEPT)?;
        Ok(DiskLog { wal, mem: MemStorage::new(membership), snaps, latest: None, partial: None })
    }

    /// Opens and recovers the log in `dir`, with its snapshots. A snapshot made durable but
    /// not yet recorded in the WAL (a crash in between) is recorded now, and a partly received
    /// one is reported through [`LogStore::initial_state`] so its transfer resumes.
    pub fn open(fs: F, dir: &Path, opts: WalOptions) -> Result<(DiskLog<F>, Recovered), WalError> {
        let (wal, rec) = Wal::open(fs.clone(), dir, opts)?;
        let prefix = EntryId::new(rec.compacted.1, rec.compacted.0);
        let mem = MemStorage::from_parts(
            rec.hard_state,
            rec.membership.clone(),
            prefix,
            rec.entries.clone(),
        )
        .map_err(|e| WalError::Corrupt {
            file: dir.to_path_buf(),
            offset: 0,
            reason: e.to_string(),
        })?;
        let snaps = SnapshotStore::new(fs, &dir.join("snap"), SNAPSHOTS_KEPT)?;
        let partial = snaps.open_partial()?;
        let mut log = DiskLog { wal, mem, snaps, latest: None, partial };
        if log.partial.as_ref().is_some_and(|p| p.progress().1 == p.progress().0.size) {
            // Received whole but not installed before the crash: install it now.
            let (info, _) = log.snaps.finish_partial(&mut log.partial)?;
            log.latest = Some(info);
        }
        log.latest = log.snaps.latest_info()?;
        if let Some(info) = log.latest.clone() {
            // Only a snapshot beyond both the log's start and its commit index can be one that
            // was installed from a leader without being recorded (a locally taken snapshot
            // is at or below the commit index, with the compaction point possibly lower).
            let known = log.mem.first_index().prev().max(log.mem.hard_state().commit);
            if info.meta.index > known {
                log.apply_installed(&info.meta);
                log.wal.sync()?;
            }
        }
        Ok((log, rec))
    }

    /// Stores a snapshot of the state machine taken at `meta.index` (from
    /// `Node::snapshot_meta`), durably. One older than the newest held is not stored.
    pub fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), WalError> {
        if self.latest.as_ref().is_some_and(|l| l.meta.index >= meta.index) {
            return Ok(());
        }
        self.latest = Some(self.snaps.save(meta, data)?);
        Ok(())
    }

    /// A separate handle on the snapshot directory, for writing a snapshot on another
    /// thread while the log goes on ([`DiskLog::snapshot_saved`] then registers it).
    pub fn snapshot_writer(&self) -> Result<SnapshotStore<F>, WalError> {
        self.snaps.reopen()
    }

    /// Registers a snapshot written through [`DiskLog::snapshot_writer`].
    pub fn snapshot_saved(&mut self, info: SnapshotInfo) {
        if self.latest.as_ref().is_none_or(|l| l.meta.index < info.meta.index) {
            self.latest = Some(info);
        }
    }

    /// Compacts the log through `at.index` (from `Node::snapshot_meta`), which a stored
    /// snapshot must cover: the compaction mark is made durable, then WAL segments holding
    /// only compacted entries are deleted.
    pub fn compact(&mut self, at: &SnapshotMeta) -> Result<(), WalError> {
        if at.index <= self.mem.first_index().prev() {
            return Ok(());
        }
        let invalid = |reason: String| WalError::Invalid(reason);
        if self.latest.as_ref().is_none_or(|l| l.meta.index < at.index) {
            return Err(invalid(format!(
                "compaction to {} is not covered by a snapshot",
                at.index
            )));
        }
        self.mem.discard_through(at).map_err(|e| invalid(e.to_string()))?;
        self.wal.set_membership(at.membership.clone());
        self.wal.mark_compacted(at.index, at.term);
        self.wal.sync()?;
        self.wal.purge(at.index)?;
        Ok(())
    }

    /// Stores one received snapshot chunk (`Ready::snapshot_chunks`); durable after
    /// [`DiskLog::sync`].
    pub fn write_snapshot_chunk(&mut self, chunk: &SnapshotChunk) -> Result<(), WalError> {
        self.snaps.write_chunk(&mut self.partial, chunk)
    }

    /// Installs the snapshot received whole (`Ready::snapshot`): verifies its checksum,
    /// renames it into place (durably), and applies it to the log (Raft Fig. 13, steps 5–7).
    /// Returns its data for the state machine. The log change is durable after
    /// [`DiskLog::sync`]; the snapshot file is durable before it, so a crash between leaves a
    /// snapshot that [`DiskLog::open`] records.
    pub fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<Bytes, WalError> {
        let (info, data) = self.snaps.finish_partial(&mut self.partial)?;
        if info.meta != *meta {
            return Err(WalError::Invalid(format!(
                "installing {} but {} was received",
                meta.id(),
                info.meta.id()
            )));
        }
        self.latest = Some(info);
        self.apply_installed(meta);
        Ok(data)
    }

    /// Records an installed snapshot in the log: entries after it are kept only if the log
    /// holds its last entry.
    fn apply_installed(&mut self, meta: &SnapshotMeta) {
        let keep = self.mem.apply_snapshot(meta);
        self.wal.set_membership(meta.membership.clone());
        if keep {
            self.wal.mark_compacted(meta.index, meta.term);
        } else {
            self.wal.mark_restored(meta.index, meta.term);
        }
        self.wal.set_hard_state(self.mem.hard_state());
    }

    /// The newest snapshot and its data, verified: what a restarting state machine restores.
    pub fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Bytes)>, WalError> {
        self.snaps.load_latest()
    }

    /// Writes entries (discarding any stored entry at or after the first one's index) and a
    /// hard state: step 2 of the `Ready` contract. Visible to reads at once; durable after
    /// [`DiskLog::sync`].
    ///
    /// Record order makes every prefix of the write consistent, because a crash may keep any
    /// prefix of what was not yet synced (a torn write): a new term and vote are recorded
    /// *before* the entries (so no entry of a term is ever durable without that term), and a
    /// new commit index *after* them (so it never names entries that did not survive).
    pub fn write(&mut self, entries: &[Entry], hard_state: Option<HardState>) {
        let old = self.mem.hard_state();
        if let Some(hs) = hard_state {
            if !entries.is_empty() && (hs.term, hs.vote) != (old.term, old.vote) {
                self.wal.set_hard_state(HardState { commit: old.commit, ..hs });
            }
        }
        if !entries.is_empty() {
            self.wal.append_entries(entries);
            self.mem.append(entries);
        }
        if let Some(hs) = hard_state {
            self.wal.set_hard_state(hs);
            self.mem.set_hard_state(hs);
        }
    }

    /// Makes everything written durable: snapshot chunks, then the WAL (one write, one
    /// `fdatasync`).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.snaps.sync_partial(&mut self.partial)?;
        self.wal.sync()
    }

    /// Writes the WAL's buffered records without syncing them, and returns a handle that
    /// makes them durable from another thread (`None`: all is durable already); see
    /// [`crate::Wal::write_unsynced`]. Snapshot chunks are not covered: sync those with
    /// [`DiskLog::sync`].
    pub fn write_unsynced(&mut self) -> Result<Option<crate::DetachedSync>, WalError> {
        self.wal.write_unsynced()
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.mem.hard_state()
    }

    /// The entries held, after the compacted prefix.
    pub fn entries_in_memory(&self) -> &[Entry] {
        self.mem.all_entries()
    }

    /// The underlying WAL.
    pub fn wal(&self) -> &Wal<F> {
        &self.wal
    }
}

impl<F: FileSystem> LogStore for DiskLog<F> {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        let mut init = self.mem.initial_state()?;
        init.partial_snapshot = self.partial.as_ref().map(|p| {
            let (info, received) = p.progress();
            PartialSnapshot { info: info.clone(), received }
        });
        Ok(init)
    }

    fn first_index(&self) -> LogIndex {
        self.mem.first_index()
    }

    fn last_index(&self) -> LogIndex {
        self.mem.last_index()
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        self.mem.term(index)
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        self.mem.entries(low, high, bytes_max, out)
    }

    fn snapshot(&self) -> Option<SnapshotInfo> {
        self.latest.clone()
    }

    fn snapshot_chunk(
        &self,
        snapshot: EntryId,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        match self.snaps.read_chunk(snapshot.index, snapshot.term, offset, len) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(StorageError::Unavailable(snapshot.index)),
            Err(e) => Err(StorageError::Other(e.to_string())),
        }
    }
}
