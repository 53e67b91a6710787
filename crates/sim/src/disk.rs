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
    /// Written since the last sync, lost on crash.
    pending: Vec<Write>,
}

impl Disk {
    /// A disk holding `initial` durably.
    pub fn new(initial: MemStorage) -> Disk {
        Disk { durable: initial, pending: Vec::new() }
    }

    /// Records a write (the node's own storage is updated by the caller).
    pub fn write(&mut self, entries: Vec<Entry>, hard_state: Option<HardState>) {
        if !entries.is_empty() || hard_state.is_some() {
            self.pending.push(Write::Log(entries, hard_state));
        }
    }

    /// Records a snapshot installed from the leader (durable at the next sync).
    pub fn install(&mut self, meta: SnapshotMeta) {
        self.pending.push(Write::Install(meta));
    }

    /// Records a compaction, durable at once (the WAL syncs its mark before deleting).
    pub fn compact(&mut self, at: &SnapshotMeta) {
        let _ = self.durable.discard_through(at);
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) {
        for w in self.pending.drain(..) {
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
