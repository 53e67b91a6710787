//! Snapshot files and group commit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use flotilla_raft::{LogIndex, Membership, NodeId, Term};
use flotilla_storage::{
    FileSystem, GroupWal, SimFs, SnapshotMeta, SnapshotStore, WalError, WalOptions,
};

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(2),
        membership: Membership::new([NodeId(1), NodeId(2)], []).unwrap(),
    }
}

#[test]
fn snapshots_round_trip_and_only_the_newest_are_kept() {
    let fs = SimFs::new();
    let dir = Path::new("/snap");
    let store = SnapshotStore::new(fs.clone(), dir, 2).unwrap();
    assert_eq!(store.load_latest().unwrap(), None);
    for i in [10u64, 20, 30] {
        store.save(&meta(i), format!("state at {i}").as_bytes()).unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 2, "the newest two are kept");
    let (m, data) = store.load_latest().unwrap().unwrap();
    assert_eq!((m, &data[..]), (meta(30), &b"state at 30"[..]));
    // Everything is durable: a crash right after keeps it.
    fs.crash(None);
    let store = SnapshotStore::new(fs, dir, 2).unwrap();
    assert_eq!(store.load_latest().unwrap().unwrap().0, meta(30));
}

/// The file of a pruned snapshot is kept as the spare and written over by the next save
/// (the same inode), cut to the new snapshot's length when the spare was longer: each saved
/// file has the bytes a fresh directory's save writes, and the newest survives a crash.
#[test]
fn pruned_snapshot_files_are_written_over_by_the_next_save() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let store = SnapshotStore::new(flotilla_storage::RealFs, &dir, 1).unwrap();
    let spare = dir.join("spare.snap.recycle");
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let mut spare_ino = None;
    for (i, n) in [5000usize, 100, 7000, 10, 10, 3000].into_iter().enumerate() {
        let index = 10 * (i as u64 + 1);
        let data = vec![i as u8 + 1; n];
        store.save(&meta(index), &data).unwrap();
        let path = store.path_of(LogIndex(index), Term(2));
        if let Some(s) = spare_ino {
            assert_eq!(ino(&path), s, "save {i} wrote over the spare");
        }
        let fresh = tempfile::tempdir().unwrap();
        let other = SnapshotStore::new(flotilla_storage::RealFs, fresh.path(), 1).unwrap();
        other.save(&meta(index), &data).unwrap();
        let want = std::fs::read(other.path_of(LogIndex(index), Term(2))).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want, "save {i}: the file a fresh save makes");
        let (m, got) = store.load_latest().unwrap().unwrap();
        assert_eq!((m, &got[..]), (meta(index), &data[..]));
        assert_eq!(store.list().unwrap().len(), 1, "only the newest is a snapshot");
        spare_ino = spare.exists().then(|| ino(&spare));
    }
    // The same in the simulated file system, crashed after the last save.
    let fs = SimFs::new();
    let sim = SnapshotStore::new(fs.clone(), Path::new("/snap"), 1).unwrap();
    for (i, n) in [5000usize, 100, 7000].into_iter().enumerate() {
        sim.save(&meta(10 * (i as u64 + 1)), &vec![1; n]).unwrap();
    }
    fs.crash(None);
    let sim = SnapshotStore::new(fs, Path::new("/snap"), 1).unwrap();
    assert_eq!(sim.load_latest().unwrap().unwrap(), (meta(30), vec![1u8; 7000].into()));
}

/// A snapshot written in pieces (larger than the sink's buffer, and than the interval
/// between its fsyncs) is the same file as one written whole; a writer that produces other
/// than the announced length fails and leaves no snapshot.
#[test]
fn streamed_snapshots_equal_whole_ones_and_check_their_length() {
    let data: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
    let (fs1, fs2) = (SimFs::new(), SimFs::new());
    let dir = Path::new("/snap");
    let whole = SnapshotStore::new(fs1.clone(), dir, 2).unwrap().save(&meta(10), &data).unwrap();
    let store = SnapshotStore::new(fs2.clone(), dir, 2).unwrap();
    let streamed = store
        .save_streamed(&meta(10), data.len() as u64, |sink| {
            for piece in data.chunks(70_001) {
                sink.write(piece)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(whole, streamed);
    let path = store.path_of(LogIndex(10), Term(2));
    assert_eq!(fs1.read(&path).unwrap(), fs2.read(&path).unwrap());
    let short = store.save_streamed(&meta(20), 100, |sink| sink.write(&[1; 99]));
    assert!(matches!(short, Err(WalError::Invalid(_))), "{short:?}");
    assert_eq!(store.load_latest().unwrap().unwrap().0, meta(10));
    assert_eq!(fs2.file_len(&dir.join("00000000000000000020-00000000000000000002.snap.tmp")), None);
}

#[test]
fn a_damaged_snapshot_is_an_error_naming_the_file() {
    let fs = SimFs::new();
    let dir = Path::new("/snap");
    let store = SnapshotStore::new(fs.clone(), dir, 3).unwrap();
    let info = store.save(&meta(10), &[7u8; 1000]).unwrap();
    let len = fs.file_len(&store.path_of(info.meta.index, info.meta.term)).unwrap();
    assert_eq!(len as u64, info.size);
    for byte in (0..len).step_by(37) {
        let fs2 = SimFs::new();
        let store2 = SnapshotStore::new(fs2.clone(), dir, 3).unwrap();
        store2.save(&meta(10), &[7u8; 1000]).unwrap();
        let p = store2.path_of(LogIndex(10), Term(2));
        fs2.flip_bit(&p, byte, 1).unwrap();
        match store2.load_latest() {
            Err(WalError::Corrupt { file, .. }) => assert_eq!(file, p),
            other => panic!("flip at {byte}: {other:?}"),
        }
    }
}

#[test]
fn an_interrupted_save_leaves_the_previous_snapshot() {
    let fs = SimFs::new();
    let dir = Path::new("/snap");
    let store = SnapshotStore::new(fs.clone(), dir, 3).unwrap();
    store.save(&meta(10), b"old").unwrap();
    // A save that dies after writing its temporary file, before the rename.
    let tmp = dir.join("00000000000000000020-00000000000000000002.snap.tmp");
    let mut f = fs.create(&tmp).unwrap();
    use flotilla_storage::FsFile;
    f.append(b"half a snapshot").unwrap();
    fs.crash(Some(3));
    let store = SnapshotStore::new(fs.clone(), dir, 3).unwrap();
    assert_eq!(&store.load_latest().unwrap().unwrap().1[..], b"old");
    // The next save cleans the leftover up.
    store.save(&meta(30), b"new").unwrap();
    assert!(!fs.list(dir).unwrap().iter().any(|n| n.ends_with(".tmp")));
}

/// Concurrent appenders each get a distinct index, every index is durable when returned, and
/// appends share syncs (group commit). Each sync blocks for 200 µs, as a disk's would: with
/// instant syncs a busy machine could run the appenders one by one (a CI run once saw 1600
/// syncs for 1600 appends).
#[test]
fn group_commit_batches_concurrent_appends() {
    let fs = SimFs::new();
    fs.set_sync_delay(Some(std::time::Duration::from_micros(200)));
    let dir = Path::new("/wal");
    let members = Membership::new([NodeId(1)], []).unwrap();
    let wal = GroupWal::create(fs.clone(), dir, members, Term(1), WalOptions::default()).unwrap();
    let per_thread = 200;
    let threads = 8;
    let indices = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (wal, indices) = (&wal, &indices);
            s.spawn(move || {
                for i in 0..per_thread {
                    let idx = wal.append(format!("t{t}i{i}").into()).unwrap();
                    assert!(wal.durable_index() >= idx, "returned only once durable");
                    indices.lock().unwrap().push(idx.0);
                }
            });
        }
    });
    let mut got = indices.into_inner().unwrap();
    got.sort_unstable();
    assert_eq!(got, (1..=(threads * per_thread) as u64).collect::<Vec<_>>());
    let batches = wal.batches();
    assert!(
        batches < (threads * per_thread) as u64,
        "{batches} syncs for {} appends",
        threads * per_thread
    );
    fs.crash(None);
    let (_, rec) = GroupWal::open(fs, dir, Term(1), WalOptions::default()).unwrap();
    assert_eq!(rec.entries.len(), threads * per_thread);
}

/// A sync failure reaches every waiting appender as an error, and later appends fail too.
#[test]
fn group_commit_reports_fsync_failure_to_everyone() {
    let fs = SimFs::new();
    let dir = Path::new("/wal");
    let members = Membership::new([NodeId(1)], []).unwrap();
    let wal = GroupWal::create(fs.clone(), dir, members, Term(1), WalOptions::default()).unwrap();
    wal.append("ok".into()).unwrap();
    fs.fail_next_syncs(1);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                if wal.append("x".into()).is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            });
        }
    });
    assert!(failed.load(Ordering::Relaxed));
    assert!(wal.append("after".into()).is_err(), "fail-stop");
    assert_eq!(wal.durable_index(), LogIndex(1));
}

/// Snapshots are written in whole blocks from an aligned buffer (with `O_DIRECT` where the
/// file system has it), the last one padded and the file then cut: whatever the length,
/// around block and buffer boundaries, the file holds exactly the encoded snapshot, as
/// read back through the page cache.
#[test]
fn snapshots_written_in_aligned_blocks_hold_exactly_the_encoded_snapshot() {
    use flotilla_storage::{encode_snapshot, DIRECT_ALIGN};
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::new(flotilla_storage::RealFs, tmp.path(), 1).unwrap();
    let framing = encode_snapshot(&meta(1), &[]).len(); // head and checksum
    let block = DIRECT_ALIGN;
    let buffer = 1 << 20;
    let mut lens = vec![0, 1, 4095, 4097, 3 * buffer + 12_345];
    for total in [block, 2 * block, buffer, 2 * buffer] {
        lens.extend([total - framing - 1, total - framing, total - framing + 1]);
    }
    for (i, n) in lens.into_iter().enumerate() {
        let index = i as u64 + 1;
        let data: Vec<u8> = (0..n).map(|b| (b % 253) as u8 ^ i as u8).collect();
        store
            .save_streamed(&meta(index), n as u64, |sink| {
                for piece in data.chunks(7_919) {
                    sink.write(piece)?;
                }
                Ok(())
            })
            .unwrap();
        let got = std::fs::read(store.path_of(LogIndex(index), Term(2))).unwrap();
        assert_eq!(got.len(), framing + n, "{n} bytes of data: the file's length");
        assert!(got == encode_snapshot(&meta(index), &data), "{n} bytes of data: the bytes");
        assert_eq!(store.load_latest().unwrap().unwrap().1.len(), n);
    }
}

/// A file system whose direct writes need 8 KiB blocks (a device with larger blocks than
/// the sink aligns to): the write it refuses, and every later one, goes through the page
/// cache, and the snapshot is whole.
#[derive(Clone)]
struct LargeBlocks {
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

struct LargeBlockFile {
    inner: flotilla_storage::RealFile,
    direct: bool,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl flotilla_storage::FsFile for LargeBlockFile {
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.append(buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if self.direct && (offset % 8192 != 0 || buf.len() % 8192 != 0) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(22)); // EINVAL
        }
        self.inner.write_at(offset, buf)
    }
    fn allocate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.allocate(len)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)
    }
    fn set_direct(&mut self, on: bool) -> std::io::Result<bool> {
        self.direct = on;
        Ok(on)
    }
}

impl FileSystem for LargeBlocks {
    type File = LargeBlockFile;
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        flotilla_storage::RealFs.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> std::io::Result<LargeBlockFile> {
        let inner = flotilla_storage::RealFs.create(path)?;
        Ok(LargeBlockFile { inner, direct: false, refused: self.refused.clone() })
    }
    fn open_append(&self, path: &Path) -> std::io::Result<LargeBlockFile> {
        let inner = flotilla_storage::RealFs.open_append(path)?;
        Ok(LargeBlockFile { inner, direct: false, refused: self.refused.clone() })
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        flotilla_storage::RealFs.read(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        flotilla_storage::RealFs.read_range(path, offset, len)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        flotilla_storage::RealFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        flotilla_storage::RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        flotilla_storage::RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        flotilla_storage::RealFs.sync_dir(dir)
    }
}

#[test]
fn a_direct_write_the_device_refuses_is_made_through_the_page_cache() {
    use flotilla_storage::encode_snapshot;
    let tmp = tempfile::tempdir().unwrap();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fs = LargeBlocks { refused: refused.clone() };
    let store = SnapshotStore::new(fs, tmp.path(), 1).unwrap();
    // Whole 1 MiB windows are 8 KiB multiples and go direct; the padded last block is not.
    let data: Vec<u8> = (0..(2 << 20) + 100).map(|b| (b % 241) as u8).collect();
    store.save(&meta(7), &data).unwrap();
    assert_eq!(refused.load(Ordering::SeqCst), 1, "one refusal, then buffered writes");
    let got = std::fs::read(store.path_of(LogIndex(7), Term(2))).unwrap();
    assert!(got == encode_snapshot(&meta(7), &data), "the file is the encoded snapshot");
}
