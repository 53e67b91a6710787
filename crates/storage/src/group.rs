//! Group commit: many concurrent appenders, one write and one `fdatasync` per batch.
//!
//! An appender queues its entry and waits. Whoever finds no flush in progress becomes the
//! flusher: it takes everything queued, releases the queue lock, writes and syncs, then
//! publishes the new durable index and wakes everyone whose entry it covered. While it works,
//! new appenders queue up for the next batch, so the batch size grows with the load and the
//! disk sees one sync per batch. No lock is held across IO except the one owned by the single
//! flusher, which guards only the file.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::path::Path;

use bytes::Bytes;
use flotilla_raft::{Entry, LogIndex, Membership, Term};

use crate::error::WalError;
use crate::fs::FileSystem;
use crate::wal::{Recovered, Wal, WalOptions};

#[derive(Debug)]
struct Queue {
    pending: Vec<Entry>,
    next_index: LogIndex,
    durable: LogIndex,
    flushing: bool,
    failed: Option<String>,
    /// Generation of the batch now queueing; waiters sleep on `durable_changed[gen % 2]`, so
    /// that finishing one batch does not wake the appenders queued for the next.
    gen: u64,
    /// Batches written (syncs), for measurements.
    batches: u64,
}

/// A WAL shared by concurrent appenders.
#[derive(Debug)]
pub struct GroupWal<F: FileSystem> {
    queue: Mutex<Queue>,
    wal: Mutex<Wal<F>>,
    durable_changed: [Condvar; 2],
    term: Term,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl<F: FileSystem> GroupWal<F> {
    /// A new log in `dir`; appended entries get `term`.
    pub fn create(
        fs: F,
        dir: &Path,
        membership: Membership,
        term: Term,
        opts: WalOptions,
    ) -> Result<GroupWal<F>, WalError> {
        let wal = Wal::create(fs, dir, membership, opts)?;
        Ok(GroupWal::from_wal(wal, LogIndex::ZERO, term))
    }

    /// Opens the log in `dir`; appends continue after its last entry.
    pub fn open(
        fs: F,
        dir: &Path,
        term: Term,
        opts: WalOptions,
    ) -> Result<(GroupWal<F>, Recovered), WalError> {
        let (wal, rec) = Wal::open(fs, dir, opts)?;
        let last = rec.entries.last().map_or(rec.compacted.0, |e| e.index);
        Ok((GroupWal::from_wal(wal, last, term), rec))
    }

    fn from_wal(wal: Wal<F>, last: LogIndex, term: Term) -> GroupWal<F> {
        GroupWal {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                next_index: last.next(),
                durable: last,
                flushing: false,
                failed: None,
                gen: 0,
                batches: 0,
            }),
            wal: Mutex::new(wal),
            durable_changed: [Condvar::new(), Condvar::new()],
            term,
        }
    }

    /// Appends one entry and returns its index once it is durable.
    pub fn append(&self, data: Bytes) -> Result<LogIndex, WalError> {
        let mut q = lock(&self.queue);
        let index = q.next_index;
        q.next_index = index.next();
        q.pending.push(Entry::new(self.term, index, data));
        let my_gen = q.gen;
        loop {
            if let Some(e) = &q.failed {
                return Err(WalError::Failed(e.clone()));
            }
            if q.durable >= index {
                return Ok(index);
            }
            if q.flushing {
                let cv = &self.durable_changed[(my_gen % 2) as usize];
                cv.wait(&mut q);
                continue;
            }
            // Become the flusher. Keep flushing while appenders queue more: the ones just
            // woken re-append during the next sync, so batches grow with the load instead of
            // handing the flusher role (and a wake-up) to another thread after every sync.
            q.flushing = true;
            while !q.pending.is_empty() && q.failed.is_none() {
                let batch = std::mem::take(&mut q.pending);
                let batch_gen = q.gen;
                q.gen += 1;
                drop(q);
                let result = {
                    let mut wal = lock(&self.wal);
                    wal.append_entries(&batch);
                    wal.sync()
                };
                q = lock(&self.queue);
                q.batches += 1;
                match result {
                    Ok(()) => q.durable = batch.last().map_or(q.durable, |e| e.index),
                    Err(e) => q.failed = Some(e.to_string()),
                }
                self.durable_changed[(batch_gen % 2) as usize].notify_all();
            }
            if q.failed.is_some() {
                // Everyone still waiting learns of the failure.
                for cv in &self.durable_changed {
                    cv.notify_all();
                }
            }
            q.flushing = false;
        }
    }

    /// The highest index known durable: acknowledge nothing above it.
    pub fn durable_index(&self) -> LogIndex {
        lock(&self.queue).durable
    }

    /// How many write-and-sync batches ran.
    pub fn batches(&self) -> u64 {
        lock(&self.queue).batches
    }
}
