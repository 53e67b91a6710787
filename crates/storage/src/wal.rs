//! The segmented write-ahead log: entries, hard state, membership and compaction marks as
//! checksummed records in numbered segment files (format: `docs/wal-format.md`).
//!
//! Writes are buffered by [`Wal::append_entries`] and friends and made durable by
//! [`Wal::sync`]: one write and one `fdatasync` for everything buffered. Recovery
//! ([`Wal::open`]) replays every segment; a torn record at the very end of the last segment
//! (never acknowledged: it was being written when the machine stopped) is cut off and
//! reported; any other damage stops the open with the file and offset.
//!
//! After any IO error the log refuses further writes (fail-stop): after a failed `fsync` the
//! kernel may have dropped the dirty pages, so nothing written since the last good sync can be
//! trusted, and continuing could acknowledge lost data.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_raft::{Entry, HardState, LogIndex, Membership, Term};

use crate::codec::{self, RecordType};
use crate::error::WalError;
use crate::fs::{join, FileSystem, FsFile};

/// The first bytes of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"FLOTWAL1";

/// What to do with a damaged record at the end of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Cut off a torn record at the very end of the last segment (it was never synced, so
    /// never acknowledged) and carry on. Damage anywhere else is an error.
    #[default]
    TolerateTornTail,
    /// Any damaged record is an error.
    AbsoluteConsistency,
}

/// WAL options.
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// A new segment is started once the current one reaches this size. Default 64 MiB.
    pub segment_bytes: u64,
    /// Recovery policy.
    pub recovery: RecoveryMode,
    /// Allocate each segment's full size when it is created (as etcd does), so that appends
    /// change no file size and each `fdatasync` has no metadata to journal. Default true.
    pub preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes: 64 << 20,
            recovery: RecoveryMode::TolerateTornTail,
            preallocate: true,
        }
    }
}

/// The state a WAL replays to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The last membership written.
    pub membership: Membership,
    /// Index and term of the last entry covered by a snapshot (0/0 if none).
    pub compacted: (LogIndex, Term),
    /// The entries after `compacted`, contiguous.
    pub entries: Vec<Entry>,
    /// Where a torn tail was cut off, if one was.
    pub torn_tail: Option<(PathBuf, u64)>,
}

#[derive(Clone, Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written into this segment (0: none).
    max_index: LogIndex,
}

/// A segmented write-ahead log over a [`FileSystem`].
pub struct Wal<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    opts: WalOptions,
    segments: Vec<Segment>,
    file: F::File,
    file_len: u64,
    buf: Vec<u8>,
    /// Highest entry index in `buf`.
    buf_max_index: LogIndex,
    /// The latest state, including buffered records.
    hard_state: HardState,
    membership: Membership,
    compacted: (LogIndex, Term),
    /// The state as of everything written to the files, repeated at the head of each new
    /// segment so that older segments can be purged.
    written: (HardState, Membership, (LogIndex, Term)),
    failed: Option<String>,
    /// Whether the active segment holds writes not synced by this `Wal` itself (handles from
    /// [`Wal::write_unsynced`] may have synced them since).
    unsynced: bool,
    /// The active segment's handle for syncing from another thread, once asked for.
    detached: Option<crate::fs::DetachedSync>,
}

impl<F: FileSystem> std::fmt::Debug for Wal<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("file_len", &self.file_len)
            .field("buffered", &self.buf.len())
            .field("failed", &self.failed)
            .finish()
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    (stem.len() == 20).then(|| stem.parse().ok())?
}

impl<F: FileSystem> Wal<F> {
    /// Creates a new, empty log in `dir` for a cluster starting with `membership`.
    pub fn create(
        fs: F,
        dir: &Path,
        membership: Membership,
        opts: WalOptions,
    ) -> Result<Wal<F>, WalError> {
        fs.create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        let existing = fs.list(dir).map_err(|e| WalError::io("list", dir, e))?;
        if existing.iter().any(|n| parse_segment_name(n).is_some()) {
            return Err(WalError::AlreadyExists(dir.to_path_buf()));
        }
        // The first segment is made under a temporary name and renamed once its records are
        // durable (as etcd makes its WAL in a temporary directory): a process stopped half
        // way leaves no segment, so the next start creates the log again, rather than a
        // segment without its membership record that no open accepts.
        let path = join(dir, &segment_name(0));
        let tmp = join(dir, &format!("{}.tmp", segment_name(0)));
        let mut file = fs.create(&tmp).map_err(|e| WalError::io("create", &tmp, e))?;
        if opts.preallocate {
            file.allocate(opts.segment_bytes).map_err(|e| WalError::io("allocate", &tmp, e))?;
        }
        let mut wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            segments: vec![Segment { seq: 0, path: path.clone(), max_index: LogIndex::ZERO }],
            file,
            file_len: 0,
            buf: Vec::new(),
            buf_max_index: LogIndex::ZERO,
            hard_state: HardState::default(),
            membership: membership.clone(),
            compacted: (LogIndex::ZERO, Term::ZERO),
            written: (HardState::default(), membership, (LogIndex::ZERO, Term::ZERO)),
            failed: None,
            unsynced: false,
            detached: None,
        };
        wal.buf.extend_from_slice(SEGMENT_MAGIC);
        wal.put_state_records();
        wal.sync()?;
        wal.fs.rename(&tmp, &path).map_err(|e| WalError::io("rename", &tmp, e))?;
        wal.fs.sync_dir(dir).map_err(|e| WalError::io("sync directory", dir, e))?;
        Ok(wal)
    }

    /// Opens the log in `dir` and replays it.
    pub fn open(fs: F, dir: &Path, opts: WalOptions) -> Result<(Wal<F>, Recovered), WalError> {
        let names = match fs.list(dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalError::NotFound(dir.to_path_buf()))
            }
            Err(e) => return Err(WalError::io("list", dir, e)),
        };
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        seqs.sort_unstable();
        if seqs.is_empty() {
            return Err(WalError::NotFound(dir.to_path_buf()));
        }
        for w in seqs.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(WalError::MissingSegment {
                    dir: dir.to_path_buf(),
                    missing: join(dir, &segment_name(w[0] + 1)),
                });
            }
        }
        // Pass 1: read and verify every record of every segment.
        let mut parsed: Vec<(
            u64,
            PathBuf,
            Bytes,
            Vec<(RecordType, std::ops::Range<usize>, usize)>,
        )> = Vec::new();
        let mut torn_tail = None;
        // Where each segment's records end (the logical length: preallocated zeros follow).
        let mut ends: Vec<usize> = Vec::new();
        // End of the non-zero bytes of a torn tail, which are zeroed before writing resumes.
        let mut torn_end = 0;
        let last_seq = *seqs.last().expect("non-empty");
        for seq in &seqs {
            let path = join(dir, &segment_name(*seq));
            let data = Bytes::from(fs.read(&path).map_err(|e| WalError::io("read", &path, e))?);
            let tolerant = *seq == last_seq && opts.recovery == RecoveryMode::TolerateTornTail;
            let mut records = Vec::new();
            if data.len() < SEGMENT_MAGIC.len() || &data[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
                let k = data.iter().zip(SEGMENT_MAGIC).take_while(|(a, b)| a == b).count();
                if tolerant && data[k..].iter().all(|b| *b == 0) {
                    // A segment whose creation was interrupted: nothing in it was synced.
                    torn_tail = Some((path.clone(), 0));
                    torn_end = data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
                    ends.push(0);
                    parsed.push((*seq, path, data, records));
                    continue;
                }
                return Err(WalError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: "bad segment magic".into(),
                });
            }
            let mut at = SEGMENT_MAGIC.len();
            while at < data.len() {
                match codec::get_record(&data, at) {
                    Ok((kind, range, next)) => {
                        records.push((kind, range, at));
                        at = next;
                    }
                    Err(_) if data[at..].iter().all(|b| *b == 0) => {
                        // Preallocated space never written: the clean end of the segment.
                        break;
                    }
                    Err(bad) => {
                        let valid_after =
                            (at + 1..data.len()).any(|o| codec::get_record(&data, o).is_ok());
                        if tolerant && !valid_after {
                            tracing::warn!(
                                file = %path.display(),
                                offset = at,
                                bytes = data.len() - at,
                                problem = ?bad,
                                "cutting off a torn record at the end of the log (it was never synced)"
                            );
                            torn_tail = Some((path.clone(), at as u64));
                            torn_end = data.iter().rposition(|b| *b != 0).map_or(at, |p| p + 1);
                            break;
                        }
                        return Err(WalError::Corrupt {
                            file: path.clone(),
                            offset: at as u64,
                            reason: format!(
                                "{bad:?}{}",
                                if valid_after { " before valid records" } else { "" }
                            ),
                        });
                    }
                }
            }
            ends.push(at.min(data.len()));
            parsed.push((*seq, path, data, records));
        }
        // The newest compaction mark anywhere tells where the log starts: older segments may
        // have been purged, so the first remaining one may begin with compacted entries.
        let mut compacted = (LogIndex::ZERO, Term::ZERO);
        for (_, path, data, records) in &parsed {
            for (kind, range, at) in records {
                if matches!(*kind, RecordType::Compacted | RecordType::Restore) {
                    let c = codec::decode_compacted(&data[range.clone()]).map_err(|m| {
                        WalError::Corrupt {
                            file: path.clone(),
                            offset: *at as u64,
                            reason: m.0.to_string(),
                        }
                    })?;
                    compacted = compacted.max((c.0, c.1));
                }
            }
        }
        // Pass 2: replay in order.
        let mut hard_state = HardState::default();
        let mut membership: Option<Membership> = None;
        let mut entries: Vec<Entry> = Vec::new();
        let mut segments = Vec::new();
        for (seq, path, data, records) in parsed {
            let mut max_index = LogIndex::ZERO;
            for (kind, range, at) in records {
                let corrupt = |reason: String| WalError::Corrupt {
                    file: path.clone(),
                    offset: at as u64,
                    reason,
                };
                match kind {
                    RecordType::Entries => {
                        let batch = codec::decode_entries(&data, range)
                            .map_err(|m| corrupt(m.0.to_string()))?;
                        if let Some(last) = batch.last() {
                            max_index = max_index.max(last.index);
                        }
                        replay_entries(&mut entries, compacted, batch).map_err(corrupt)?;
                    }
                    RecordType::HardState => {
                        hard_state = codec::decode_hard_state(&data[range])
                            .map_err(|m| corrupt(m.0.to_string()))?;
                    }
                    RecordType::Membership => {
                        membership = Some(
                            codec::decode_membership(&data[range])
                                .map_err(|m| corrupt(m.0.to_string()))?,
                        );
                    }
                    RecordType::Compacted => {}
                    RecordType::Restore => entries.clear(),
                }
            }
            segments.push(Segment { seq, path, max_index });
        }
        let membership = membership.ok_or_else(|| WalError::Corrupt {
            file: segments[0].path.clone(),
            offset: 0,
            reason: "no membership record".into(),
        })?;
        let active = segments.last().expect("at least one segment").clone();
        let mut file =
            fs.open_append(&active.path).map_err(|e| WalError::io("open", &active.path, e))?;
        let mut file_len = *ends.last().expect("one end per segment") as u64;
        let mut buf = Vec::new();
        if let Some((p, offset)) = &torn_tail {
            // Zero the torn bytes (rather than truncate, which would give back preallocated
            // space), so that no remnant of them can ever parse as a record.
            let zeros = vec![0u8; torn_end.saturating_sub(*offset as usize)];
            file.write_at(*offset, &zeros).map_err(|e| WalError::io("write", p, e))?;
            file.sync_data().map_err(|e| WalError::io("fsync", p, e))?;
            file_len = *offset;
            if *offset == 0 {
                buf.extend_from_slice(SEGMENT_MAGIC);
            }
        }
        let wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            segments,
            file,
            file_len,
            buf,
            buf_max_index: LogIndex::ZERO,
            hard_state,
            membership: membership.clone(),
            compacted,
            written: (hard_state, membership.clone(), compacted),
            failed: None,
            unsynced: false,
            detached: None,
        };
        Ok((wal, Recovered { hard_state, membership, compacted, entries, torn_tail }))
    }

    fn check_failed(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(e) => Err(WalError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    /// Buffers the state as of everything already written to the files (not the latest,
    /// buffered state: a torn write could keep a segment's head and lose the buffered records
    /// after it, and a hard state whose commit index names entries that never reached the disk
    /// would be a lie).
    fn put_state_records(&mut self) {
        let (hs, membership, compacted) = &self.written;
        let mut p = Vec::new();
        codec::encode_membership(&mut p, membership);
        codec::put_record(&mut self.buf, RecordType::Membership, &p);
        p.clear();
        codec::encode_hard_state(&mut p, hs);
        codec::put_record(&mut self.buf, RecordType::HardState, &p);
        if compacted.0 > LogIndex::ZERO {
            p.clear();
            codec::encode_compacted(&mut p, compacted.0, compacted.1);
            codec::put_record(&mut self.buf, RecordType::Compacted, &p);
        }
    }

    /// Buffers entries. Replay discards any entry at or after `entries[0].index` first, which
    /// makes the truncation of a conflicting suffix (Raft §5.3) durable with the new entries.
    pub fn append_entries(&mut self, entries: &[Entry]) {
        if let Some(last) = entries.last() {
            let mut p =
                Vec::with_capacity(16 + entries.iter().map(|e| 21 + e.data.len()).sum::<usize>());
            codec::encode_entries(&mut p, entries);
            codec::put_record(&mut self.buf, RecordType::Entries, &p);
            self.buf_max_index = self.buf_max_index.max(last.index);
        }
    }

    /// Buffers a hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        let mut p = Vec::with_capacity(24);
        codec::encode_hard_state(&mut p, &hs);
        codec::put_record(&mut self.buf, RecordType::HardState, &p);
        self.hard_state = hs;
    }

    /// Buffers a membership.
    pub fn set_membership(&mut self, m: Membership) {
        let mut p = Vec::new();
        codec::encode_membership(&mut p, &m);
        codec::put_record(&mut self.buf, RecordType::Membership, &p);
        self.membership = m;
    }

    /// Buffers a compaction mark: entries through `index` are covered by a snapshot.
    pub fn mark_compacted(&mut self, index: LogIndex, term: Term) {
        let mut p = Vec::with_capacity(16);
        codec::encode_compacted(&mut p, index, term);
        codec::put_record(&mut self.buf, RecordType::Compacted, &p);
        self.compacted = self.compacted.max((index, term));
    }

    /// Buffers a restore mark: the log is replaced by a snapshot through `index` whose last
    /// entry it did not hold, so every entry written before is discarded (Raft Fig. 13).
    pub fn mark_restored(&mut self, index: LogIndex, term: Term) {
        let mut p = Vec::with_capacity(16);
        codec::encode_compacted(&mut p, index, term);
        codec::put_record(&mut self.buf, RecordType::Restore, &p);
        self.compacted = self.compacted.max((index, term));
    }

    /// Bytes buffered and not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything buffered in one write and makes it durable with one `fdatasync`,
    /// starting a new segment first if the current one is full.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.write_out()?;
        if self.unsynced {
            self.sync_active()?;
        }
        Ok(())
    }

    /// Writes everything buffered in one write, as [`Wal::sync`] does, but leaves the
    /// `fdatasync` to the caller: returns a handle that makes every write so far durable from
    /// another thread, so that the writer goes on while the disk works (Thesis §10.2.1 lets
    /// a leader's own write overlap replication; etcd's raft and TiKV write asynchronously
    /// too). Nothing written is durable, and nothing may be acknowledged, until that sync has
    /// returned. `None` means everything written is already durable: nothing was pending, or
    /// the file system has no such handle and this call synced.
    pub fn write_unsynced(&mut self) -> Result<Option<crate::fs::DetachedSync>, WalError> {
        self.write_out()?;
        if !self.unsynced {
            return Ok(None);
        }
        if self.detached.is_none() {
            let path = self.segments.last().expect("an active segment").path.clone();
            match self.file.detached_sync() {
                Ok(d) => self.detached = d,
                Err(e) => {
                    let e = WalError::io("open for sync", &path, e);
                    self.failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        match &self.detached {
            // `unsynced` stays set: `sync` still syncs here, since it cannot know whether
            // the handle's sync has run.
            Some(d) => Ok(Some(d.clone())),
            None => self.sync_active().map(|_| None),
        }
    }

    /// Writes the buffer at the end of the active segment, rolling first if it is full.
    fn write_out(&mut self) -> Result<(), WalError> {
        self.check_failed()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file_len > 0 && self.file_len + self.buf.len() as u64 > self.opts.segment_bytes {
            self.roll()?;
        }
        let path = self.segments.last().expect("an active segment").path.clone();
        if let Err(e) = self.file.write_at(self.file_len, &self.buf) {
            let e = WalError::io("write", &path, e);
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.unsynced = true;
        self.file_len += self.buf.len() as u64;
        self.written = (self.hard_state, self.membership.clone(), self.compacted);
        let seg = self.segments.last_mut().expect("an active segment");
        seg.max_index = seg.max_index.max(self.buf_max_index);
        self.buf.clear();
        self.buf_max_index = LogIndex::ZERO;
        Ok(())
    }

    /// `fdatasync`s the active segment.
    fn sync_active(&mut self) -> Result<(), WalError> {
        if let Err(e) = self.file.sync_data() {
            let path = self.segments.last().expect("an active segment").path.clone();
            let e = WalError::io("fsync", &path, e);
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.unsynced = false;
        Ok(())
    }

    /// Seals the active segment and starts the next, which begins with the current state.
    fn roll(&mut self) -> Result<(), WalError> {
        // Every write to the sealed segment must be durable before anything in the next one
        // is (recovery reads the segments in order and stops at the first gap), whatever
        // detached syncs of it are still running.
        self.sync_active()?;
        let seq = self.segments.last().expect("an active segment").seq + 1;
        let path = join(&self.dir, &segment_name(seq));
        let preallocate = self.opts.preallocate;
        let segment_bytes = self.opts.segment_bytes;
        let r = self.fs.create(&path).map_err(|e| WalError::io("create", &path, e)).and_then(
            |mut f| {
                if preallocate {
                    f.allocate(segment_bytes).map_err(|e| WalError::io("allocate", &path, e))?;
                }
                Ok(f)
            },
        );
        let file = match r {
            Ok(f) => f,
            Err(e) => {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        };
        // The new segment starts with the state as of what is already written (so that older
        // segments can be purged), then the buffered records.
        let pending = std::mem::take(&mut self.buf);
        self.buf.extend_from_slice(SEGMENT_MAGIC);
        self.put_state_records();
        self.buf.extend_from_slice(&pending);
        self.file = file;
        self.file_len = 0;
        self.detached = None;
        self.segments.push(Segment { seq, path, max_index: LogIndex::ZERO });
        // The new file's name must be durable before anything in it is acknowledged.
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            let e = WalError::io("sync directory", &self.dir, e);
            self.failed = Some(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Removes sealed segments whose entries are all at or below `index` (already covered by
    /// a snapshot, and marked so with [`Wal::mark_compacted`] and synced). Returns how many
    /// were removed. The active segment is never removed.
    pub fn purge(&mut self, index: LogIndex) -> Result<usize, WalError> {
        // The compaction mark must be durable before the entries it covers disappear.
        self.sync()?;
        let mut removed = 0;
        while self.segments.len() > 1
            && self.segments[0].max_index <= index
            && self.compacted.0 >= index
        {
            let seg = self.segments.remove(0);
            self.fs.remove(&seg.path).map_err(|e| WalError::io("remove", &seg.path, e))?;
            removed += 1;
        }
        if removed > 0 {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("sync directory", &self.dir, e))?;
        }
        Ok(removed)
    }

    /// Segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }
}

/// Replays one Entries record onto `entries` (which start after `compacted`).
fn replay_entries(
    entries: &mut Vec<Entry>,
    compacted: (LogIndex, Term),
    batch: Vec<Entry>,
) -> Result<(), String> {
    let Some(first) = batch.first() else { return Ok(()) };
    let next = entries.last().map_or(compacted.0.next(), |e| e.index.next());
    if first.index > next {
        return Err(format!(
            "entries start at {} but the log ends at {}",
            first.index,
            next.prev()
        ));
    }
    let skip = batch.iter().take_while(|e| e.index <= compacted.0).count();
    let batch = &batch[skip..];
    let Some(first) = batch.first() else {
        // The record lies wholly at or below the compaction mark, but it still ended the log
        // at its last entry when written: whatever an earlier record put after that (a
        // conflicting suffix this record replaced) is gone, not revived after the snapshot.
        entries.clear();
        return Ok(());
    };
    let keep = (first.index.0 - compacted.0 .0 - 1) as usize;
    entries.truncate(keep);
    entries.extend_from_slice(batch);
    Ok(())
}
