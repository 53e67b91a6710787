//! The checkers' record of what each server has made durable: every write, and the point of
//! every sync. The server itself stores its log in the real WAL (`flotilla-storage`) over a
//! simulated file system; this record is the independent account the commit-rule checker
//! counts durable copies in, reset to what the WAL recovered after each restart.

use flotilla_raft::{Entry, HardState, MemStorage};

/// One node's disk.
#[derive(Clone, Debug)]
pub struct Disk {
    /// What survives a crash.
    durable: MemStorage,
    /// Written since the last sync, lost on crash.
    pending: Vec<(Vec<Entry>, Option<HardState>)>,
}

impl Disk {
    /// A disk holding `initial` durably.
    pub fn new(initial: MemStorage) -> Disk {
        Disk { durable: initial, pending: Vec::new() }
    }

    /// Records a write (the node's own storage is updated by the caller).
    pub fn write(&mut self, entries: Vec<Entry>, hard_state: Option<HardState>) {
        if !entries.is_empty() || hard_state.is_some() {
            self.pending.push((entries, hard_state));
        }
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) {
        for (entries, hs) in self.pending.drain(..) {
            self.durable.append(&entries);
            if let Some(hs) = hs {
                self.durable.set_hard_state(hs);
            }
        }
    }

    /// The entry at `index` in the durable log, if any.
    pub fn durable_entry(&self, index: u64) -> Option<flotilla_raft::EntryId> {
        use flotilla_raft::{LogIndex, LogStore};
        let t = self.durable.term(LogIndex(index)).ok()?;
        Some(flotilla_raft::EntryId::new(t, LogIndex(index)))
    }

    /// A restart: the durable state is what the WAL recovered (a torn crash may have kept
    /// some writes that were never synced).
    pub fn reset(&mut self, recovered: MemStorage) {
        self.pending.clear();
        self.durable = recovered;
    }
}
