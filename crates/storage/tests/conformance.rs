//! One conformance suite for every `LogStore`: `MemStorage` (the reference), and `DiskLog` over
//! the simulated and the real file system, including after reopening.

use flotilla_raft::{
    Entry, HardState, LogIndex, LogStore, MemStorage, Membership, NodeId, StorageError, Term,
};
use flotilla_storage::{DiskLog, FileSystem, RealFs, SimFs, WalOptions};

/// What the suite needs from a store besides reading: writing and, optionally, reopening.
trait Subject: LogStore {
    fn write(&mut self, entries: &[Entry], hs: Option<HardState>);
    /// Reopens from durable state (a no-op for memory).
    fn reopen(self) -> Self;
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
}

struct Disk<F: FileSystem + Clone> {
    fs: F,
    dir: std::path::PathBuf,
    log: DiskLog<F>,
}

impl<F: FileSystem + Clone> LogStore for Disk<F> {
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
