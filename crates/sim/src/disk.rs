//! The checkers' record of what each server has made durable: every write, and the point of
//! every sync. The server itself stores its log in the real WAL (`flotilla-storage`) over a
//! simulated file system; this record is the independent account the commit-rule checker
//! counts durable copies in, reset to what the WAL recovered after each restart.

use flotilla_raft::{Entry, EntryId, HardState, LogStore, MemStorage, SnapshotMeta};

#[derive(Clone, Debug)]
enum Write {
    Log(Vec<Entry>, Option<HardState>),
    Install(SnapshotMeta),
}

/// One node's disk.
#[derive(Clone, Debug)]
pub struct Disk {
    /// What survives a crash.
    durable: MemStorage,
    /// Written since the last sync, lost on crash, each with its number.
    pending: std::collections::VecDeque<(u64, Write)>,
    /// Writes recorded so far.
    writes: u64,
}

impl Disk {
    /// A disk holding `initial` durably.
    pub fn new(initial: MemStorage) -> Disk {
        Disk { durable: initial, pending: Default::default(), writes: 0 }
    }

    /// Records a write (the node's own storage is updated by the caller).
    pub fn write(&mut self, entries: Vec<Entry>, hard_state: Option<HardState>) {
        if !entries.is_empty() || hard_state.is_some() {
            self.writes += 1;
            self.pending.push_back((self.writes, Write::Log(entries, hard_state)));
        }
    }

    /// The number of the latest write, for [`Disk::sync_through`].
    pub fn mark(&self) -> u64 {
        self.writes
    }

    /// Records a snapshot installed from the leader (durable at the next sync).
    pub fn install(&mut self, meta: SnapshotMeta) {
        self.writes += 1;
        self.pending.push_back((self.writes, Write::Install(meta)));
    }

    /// Records a compaction, durable at once (the WAL syncs its mark before deleting).
    pub fn compact(&mut self, at: &SnapshotMeta) {
        let _ = self.durable.discard_through(at);
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) {
        self.sync_through(u64::MAX);
    }

    /// Makes the writes through number `mark` durable (a sync started after them).
    pub fn sync_through(&mut self, mark: u64) {
        while self.pending.front().is_some_and(|(n, _)| *n <= mark) {
            let (_, w) = self.pending.pop_front().expect("checked: a front");
            match w {
                Write::Log(entries, hs) => {
                    self.durable.append(&entries);
                    if let Some(hs) = hs {
                        self.durable.set_hard_state(hs);
                    }
                }
                Write::Install(meta) => {
                    self.durable.apply_snapshot(&meta);
                }
            }
        }
    }

    /// Whether `e` is durable: in the durable log, or covered by a durable snapshot (whose
    /// last entry the snapshot checks hold to the committed sequence).
    pub fn durably_holds(&self, e: EntryId) -> bool {
        if e.index < self.durable.first_index() {
            return true;
        }
        self.durable.term(e.index).ok() == Some(e.term)
    }

    /// A restart: the durable state is what the WAL recovered (a torn crash may have kept
    /// some writes that were never synced).
    pub fn reset(&mut self, recovered: MemStorage) {
        self.pending.clear();
        self.durable = recovered;
    }
}
