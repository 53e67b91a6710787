//! [`DiskLog`]: the Raft log kept durably in a [`Wal`] and served from memory. Like etcd's
//! pairing of its WAL with an in-memory raft log, reads never touch the disk; memory is
//! bounded by compaction (snapshots, Raft §7).

use std::path::Path;

use flotilla_raft::{
    Entry, EntryId, HardState, InitialState, LogIndex, LogStore, MemStorage, Membership,
    StorageError, Term,
};

use crate::error::WalError;
use crate::fs::FileSystem;
use crate::wal::{Recovered, Wal, WalOptions};

/// A durable Raft log implementing [`LogStore`].
///
/// The driver writes each `Ready` with [`DiskLog::write`] and makes it durable with
/// [`DiskLog::sync`] before sending the messages that depend on it.
#[derive(Debug)]
pub struct DiskLog<F: FileSystem> {
    wal: Wal<F>,
    mem: MemStorage,
}

impl<F: FileSystem> DiskLog<F> {
    /// A new, empty log for a cluster starting with `membership`.
    pub fn create(
        fs: F,
        dir: &Path,
        membership: Membership,
        opts: WalOptions,
    ) -> Result<DiskLog<F>, WalError> {
        let wal = Wal::create(fs, dir, membership.clone(), opts)?;
        Ok(DiskLog { wal, mem: MemStorage::new(membership) })
    }

    /// Opens and recovers the log in `dir`.
    pub fn open(fs: F, dir: &Path, opts: WalOptions) -> Result<(DiskLog<F>, Recovered), WalError> {
        let (wal, rec) = Wal::open(fs, dir, opts)?;
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
        Ok((DiskLog { wal, mem }, rec))
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

    /// Makes everything written durable (one write, one `fdatasync`).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.wal.sync()
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
        self.mem.initial_state()
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
}
