//! A simulated disk: what the node wrote is visible to it at once, but survives a crash only
//! once synced. Until the storage issue brings the real WAL over a simulated file system, the
//! durable image is a [`MemStorage`] and a write is a list of entries and a hard state.

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

    /// A crash: unsynced writes are lost; returns the durable image to restart from.
    pub fn crash(&mut self) -> MemStorage {
        self.pending.clear();
        self.durable.clone()
    }
}
