//! One conformance suite for every `LogStore`: `MemStorage` (the reference), and `DiskLog` over
//! the simulated and the real file system, including after reopening.

use bytes::Bytes;
use flotilla_raft::{
    Entry, HardState, LogIndex, LogStore, MemStorage, Membership, NodeId, SnapshotChunk,
    SnapshotMeta, StorageError, Term,
};
use flotilla_storage::{DiskLog, FileSystem, RealFs, SimFs, WalOptions};

/// What the suite needs from a store besides reading: writing and, optionally, reopening.
trait Subject: LogStore {
    fn write(&mut self, entries: &[Entry], hs: Option<HardState>);
    /// Reopens from durable state (a no-op for memory).
    fn reopen(self) -> Self;
    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String>;
    fn compact(&mut self, at: &SnapshotMeta) -> Result<(), String>;
    fn write_chunk(&mut self, chunk: &SnapshotChunk);
    fn install(&mut self, meta: &SnapshotMeta) -> Result<Bytes, String>;
    /// The newest snapshot's state-machine data.
    fn snapshot_data(&self) -> Option<Bytes>;
}

impl Subject for MemStorage {
    fn write(&mut self, entries: &[Entry], hs: Option<HardState>) {
        self.append(entries);
        if let Some(hs) = hs {
            self.set_hard_state(hs);
        }
    }
    fn reopen(self) -> Self {
        self
    }
    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
        MemStorage::save_snapshot(self, meta.clone(), Bytes::copy_from_slice(data))
            .map_err(|e| e.to_string())
    }
    fn compact(&mut self, at: &SnapshotMeta) -> Result<(), String> {
        MemStorage::compact(self, at).map_err(|e| e.to_string())
    }
    fn write_chunk(&mut self, chunk: &SnapshotChunk) {
        self.write_snapshot_chunk(chunk).unwrap();
    }
    fn install(&mut self, meta: &SnapshotMeta) -> Result<Bytes, String> {
        self.install_snapshot(meta).map_err(|e| e.to_string())
    }
    fn snapshot_data(&self) -> Option<Bytes> {
        MemStorage::snapshot_data(self).map(|(_, d)| d.clone())
    }
}

struct Disk<F: FileSystem + Clone> {
    fs: F,
    dir: std::path::PathBuf,
    log: DiskLog<F>,
}

impl<F: FileSystem + Clone> LogStore for Disk<F> {
    fn snapshot(&self) -> Option<flotilla_raft::SnapshotInfo> {
        self.log.snapshot()
    }
    fn snapshot_chunk(
        &self,
        id: flotilla_raft::EntryId,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        self.log.snapshot_chunk(id, offset, len)
    }
    fn initial_state(&self) -> Result<flotilla_raft::InitialState, StorageError> {
        self.log.initial_state()
    }
    fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }
    fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    fn term(&self, i: LogIndex) -> Result<Term, StorageError> {
        self.log.term(i)
    }
    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        self.log.entries(lo, hi, max, out)
    }
}

impl<F: FileSystem + Clone> Subject for Disk<F> {
    fn write(&mut self, entries: &[Entry], hs: Option<HardState>) {
        self.log.write(entries, hs);
        self.log.sync().expect("sync");
    }
    fn reopen(self) -> Self {
        drop(self.log);
        let (log, _) =
            DiskLog::open(self.fs.clone(), &self.dir, WalOptions::default()).expect("reopen");
        Disk { fs: self.fs, dir: self.dir, log }
    }
    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
        self.log.save_snapshot(meta, data).map_err(|e| e.to_string())
    }
    fn compact(&mut self, at: &SnapshotMeta) -> Result<(), String> {
        self.log.compact(at).map_err(|e| e.to_string())
    }
    fn write_chunk(&mut self, chunk: &SnapshotChunk) {
        self.log.write_snapshot_chunk(chunk).unwrap();
        self.log.sync().unwrap();
    }
    fn install(&mut self, meta: &SnapshotMeta) -> Result<Bytes, String> {
        let data = self.log.install_snapshot(meta).map_err(|e| e.to_string())?;
        self.log.sync().map_err(|e| e.to_string())?;
        Ok(data)
    }
    fn snapshot_data(&self) -> Option<Bytes> {
        self.log.load_snapshot().unwrap().map(|(_, d)| d)
    }
}

fn members() -> Membership {
    Membership::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(4)]).unwrap()
}

fn ents(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Entry::new(Term(*t), LogIndex(first + i as u64), format!("d{}", first + i as u64))
        })
        .collect()
}

fn meta(index: u64, term: u64, voters: &[u64]) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        membership: Membership::new(voters.iter().map(|v| NodeId(*v)), []).unwrap(),
    }
}

/// Streams `from`'s newest snapshot into `to` in chunks of `chunk` bytes, reopening `to` after
/// the first chunk (the transfer must resume), then installs it; returns the reopened store
/// and the data installed.
fn transfer<S: Subject>(name: &str, from: &S, mut to: S, chunk: u64) -> (S, Bytes) {
    let info = from.snapshot().expect("the sender holds a snapshot");
    let mut offset = 0;
    while offset < info.size {
        let len = chunk.min(info.size - offset);
        let data = from.snapshot_chunk(info.meta.id(), offset, len).unwrap();
        assert_eq!(data.len() as u64, len, "{name}: chunk at {offset}");
        to.write_chunk(&SnapshotChunk { info: info.clone(), offset, data });
        offset += len;
        if offset == len && offset < info.size {
            to = to.reopen();
            let p = to.initial_state().unwrap().partial_snapshot.expect("partial kept");
            assert_eq!((p.info, p.received), (info.clone(), len), "{name}: partial after reopen");
        }
    }
    let data = to.install(&info.meta).unwrap();
    (to.reopen(), data)
}

fn terms<S: LogStore>(s: &S) -> Vec<u64> {
    (s.first_index().0..=s.last_index().0).map(|i| s.term(LogIndex(i)).unwrap().0).collect()
}

/// The suite. `fresh` makes an empty store.
fn conformance<S: Subject>(name: &str, fresh: impl Fn() -> S) {
    // Empty log.
    let s = fresh();
    assert_eq!((s.first_index(), s.last_index()), (LogIndex(1), LogIndex(0)), "{name}: empty");
    assert_eq!(s.term(LogIndex(0)), Ok(Term(0)), "{name}: term of the empty prefix");
    assert_eq!(s.term(LogIndex(1)), Err(StorageError::Unavailable(LogIndex(1))), "{name}");
    assert_eq!(s.initial_state().unwrap().membership, members(), "{name}: membership");

    // Append, overwrite a suffix, hard state; all of it survives a reopen.
    let mut s = fresh();
    s.write(&ents(1, &[1, 1, 1, 1, 1]), None);
    s.write(
        &ents(3, &[2, 2]),
        Some(HardState { term: Term(2), vote: Some(NodeId(3)), commit: LogIndex(2) }),
    );
    s.write(&ents(5, &[3]), None);
    let s = s.reopen();
    assert_eq!(terms(&s), [1, 1, 2, 2, 3], "{name}: suffix from 3 replaced, then 5 replaced");
    let hs = s.initial_state().unwrap().hard_state;
    assert_eq!(
        (hs.term, hs.vote, hs.commit),
        (Term(2), Some(NodeId(3)), LogIndex(2)),
        "{name}: hard state"
    );

    // Entries: bounds and byte limit (always at least one).
    let per = ents(1, &[1])[0].size_bytes();
    let cases = [
        (1, 6, u64::MAX, 5),
        (2, 4, u64::MAX, 2),
        (1, 6, per * 2, 2),
        (1, 6, 1, 1),
        (5, 6, u64::MAX, 1),
    ];
    for (lo, hi, max, want) in cases {
        let mut out = Vec::new();
        s.entries(LogIndex(lo), LogIndex(hi), max, &mut out).unwrap();
        assert_eq!(out.len(), want, "{name}: entries [{lo},{hi}) max {max}");
        assert_eq!(out[0].index, LogIndex(lo), "{name}");
        assert_eq!(out[0].data, format!("d{lo}").as_bytes(), "{name}");
    }
    let mut out = Vec::new();
    assert_eq!(
        s.entries(LogIndex(4), LogIndex(7), u64::MAX, &mut out),
        Err(StorageError::Unavailable(LogIndex(6))),
        "{name}"
    );
    assert_eq!(s.term(LogIndex(9)), Err(StorageError::Unavailable(LogIndex(9))), "{name}");

    // Overwrite everything from the first index.
    let mut s = s.reopen();
    s.write(&ents(1, &[4]), None);
    let s = s.reopen();
    assert_eq!(terms(&s), [4], "{name}: whole log replaced");

    // Compaction (Raft §7): only what a snapshot covers; the prefix and its configuration
    // survive a reopen, the entries after it stay readable.
    let mut s = fresh();
    let hs = HardState { term: Term(1), vote: None, commit: LogIndex(10) };
    s.write(&ents(1, &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), Some(hs));
    assert!(s.compact(&meta(5, 1, &[1, 2, 3])).is_err(), "{name}: no snapshot covers it");
    s.save_snapshot(&meta(7, 1, &[1, 2, 3]), b"state at 7").unwrap();
    s.compact(&meta(5, 1, &[1, 2])).unwrap();
    let s = s.reopen();
    assert_eq!((s.first_index(), s.last_index()), (LogIndex(6), LogIndex(10)), "{name}");
    assert_eq!(s.term(LogIndex(5)), Ok(Term(1)), "{name}: term of the compacted prefix");
    assert_eq!(s.term(LogIndex(4)), Err(StorageError::Compacted(LogIndex(4))), "{name}");
    let mut out = Vec::new();
    assert_eq!(
        s.entries(LogIndex(3), LogIndex(8), u64::MAX, &mut out),
        Err(StorageError::Compacted(LogIndex(3))),
        "{name}"
    );
    assert_eq!(s.initial_state().unwrap().membership, meta(5, 1, &[1, 2]).membership, "{name}");
    assert_eq!(s.snapshot().unwrap().meta, meta(7, 1, &[1, 2, 3]), "{name}: newest snapshot");
    assert_eq!(s.snapshot_data().unwrap(), &b"state at 7"[..], "{name}");
    assert_eq!(
        s.snapshot_chunk(meta(3, 1, &[1]).id(), 0, 1),
        Err(StorageError::Unavailable(LogIndex(3))),
        "{name}: a snapshot not held"
    );

    // InstallSnapshot into a log that lacks the snapshot's last entry (Raft Fig. 13, step 7):
    // the whole log goes; chunks survive a reopen half way.
    let mut leader = fresh();
    leader.write(&ents(1, &[1, 1, 1, 2, 2, 2, 2, 2, 2, 2]), None);
    leader.save_snapshot(&meta(8, 2, &[1, 2, 3, 4]), b"the leader's state at 8").unwrap();
    let mut follower = fresh();
    follower.write(&ents(1, &[1, 1, 1, 3, 3]), None);
    let (follower, data) = transfer(name, &leader, follower, 7);
    assert_eq!(data, &b"the leader's state at 8"[..], "{name}");
    assert_eq!((follower.first_index(), follower.last_index()), (LogIndex(9), LogIndex(8)));
    assert_eq!(follower.term(LogIndex(8)), Ok(Term(2)), "{name}");
    let init = follower.initial_state().unwrap();
    assert_eq!(init.membership, meta(8, 2, &[1, 2, 3, 4]).membership, "{name}");
    assert_eq!(init.hard_state.commit, LogIndex(8), "{name}: commit covers the snapshot");
    assert_eq!(init.partial_snapshot, None, "{name}");
    assert_eq!(follower.snapshot_data().unwrap(), &b"the leader's state at 8"[..], "{name}");

    // ... and into one that holds it (step 6): the entries after it stay.
    let mut follower = fresh();
    follower.write(&ents(1, &[1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2]), None);
    let (follower, _) = transfer(name, &leader, follower, 1000);
    assert_eq!(terms(&follower), [2, 2, 2, 2], "{name}: 9 through 12 kept");
    assert_eq!(follower.first_index(), LogIndex(9), "{name}");
}

#[test]
fn mem_storage_conforms() {
    conformance("MemStorage", || MemStorage::new(members()));
}

#[test]
fn disk_log_on_simulated_fs_conforms() {
    conformance("DiskLog/SimFs", || {
        let fs = SimFs::new();
        let dir = std::path::PathBuf::from("/wal");
        let log = DiskLog::create(fs.clone(), &dir, members(), WalOptions::default()).unwrap();
        Disk { fs, dir, log }
    });
}

#[test]
fn disk_log_on_real_fs_conforms() {
    let root = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0);
    conformance("DiskLog/RealFs", || {
        counter.set(counter.get() + 1);
        let dir = root.path().join(format!("wal{}", counter.get()));
        let log = DiskLog::create(RealFs, &dir, members(), WalOptions::default()).unwrap();
        Disk { fs: RealFs, dir, log }
    });
}
