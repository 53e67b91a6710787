//! Snapshot files (Raft §7): written under a temporary name, synced, renamed into place, the
//! directory synced; checksummed whole; the newest `keep` kept, and the file of the last one
//! pruned kept aside for the next save to write over.
//!
//! Layout: magic `FLOTSNP1`, metadata length (u32), metadata (last included index u64, term
//! u64, membership), data length (u64), data, CRC32C (u32) of everything before it.
//!
//! The file is also the unit of transfer: a leader streams it as is in chunks, and a follower
//! writes the chunks to `INDEX-TERM-SIZE.partial` (synced before each acknowledgement), with
//! its description in `.partial.info`, so that after a restart it knows what it holds; the
//! finished file is verified and renamed into place.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_raft::{LogIndex, SnapshotChunk, SnapshotInfo, SnapshotMeta, Term};

use crate::codec;
use crate::error::WalError;
use crate::fs::{join, FileSystem, FsFile, DIRECT_ALIGN};

const MAGIC: &[u8; 8] = b"FLOTSNP1";

/// Where the oldest pruned snapshot file is kept (not a `.snap`, so never read as a snapshot)
/// for the next save to write over, rather than deleted and a new file filled. Writing over
/// a file's cached pages costs a fraction of filling fresh ones: on this project's 2-vCPU VM,
/// 16-22 ms per 100 MiB against 28-105 ms (`scripts/fresh-vs-cached-writes.py`, in
/// docs/benchmarks.md), and a member writes a snapshot of its whole store every few seconds
/// under load. The price: one more snapshot's size on disk.
const SPARE: &str = "spare.snap.recycle";
/// Bytes before the metadata: magic and metadata length.
const HEAD: usize = 12;

/// The snapshot directory.
#[derive(Debug)]
pub struct SnapshotStore<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    keep: usize,
}

/// A snapshot being received.
pub struct Partial<F: FileSystem> {
    info: SnapshotInfo,
    path: PathBuf,
    file: F::File,
    received: u64,
    dirty: bool,
}

impl<F: FileSystem> std::fmt::Debug for Partial<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial")
            .field("snapshot", &self.info.meta.id())
            .field("size", &self.info.size)
            .field("received", &self.received)
            .finish()
    }
}

impl<F: FileSystem> Partial<F> {
    /// The snapshot and the bytes received so far.
    pub fn progress(&self) -> (&SnapshotInfo, u64) {
        (&self.info, self.received)
    }
}

fn info_path(partial: &Path) -> PathBuf {
    let mut p = partial.as_os_str().to_owned();
    p.push(".info");
    PathBuf::from(p)
}

fn name(index: LogIndex, term: Term) -> String {
    format!("{:020}-{:020}.snap", index.0, term.0)
}

fn partial_name(info: &SnapshotInfo) -> String {
    format!("{:020}-{:020}-{:020}.partial", info.meta.index.0, info.meta.term.0, info.size)
}

/// The description of a partial snapshot, kept next to it (`.partial.info`) so that a
/// restart knows what it is receiving before its head has arrived: index u64, term u64, size
/// u64, membership, CRC32C u32 of what precedes it.
fn encode_info(info: &SnapshotInfo) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&info.meta.index.0.to_le_bytes());
    out.extend_from_slice(&info.meta.term.0.to_le_bytes());
    out.extend_from_slice(&info.size.to_le_bytes());
    codec::encode_membership(&mut out, &info.meta.membership);
    out.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
    out
}

fn decode_info(buf: &[u8]) -> Option<SnapshotInfo> {
    let body = buf.len().checked_sub(4)?;
    if body < 24 || crc32c::crc32c(&buf[..body]).to_le_bytes() != buf[body..] {
        return None;
    }
    let u = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
    let membership = codec::decode_membership(&buf[24..body]).ok()?;
    let meta = SnapshotMeta { index: LogIndex(u(0)), term: Term(u(8)), membership };
    Some(SnapshotInfo { meta, size: u(16) })
}

/// Bytes of a snapshot written between two fsyncs while saving it: the disk never holds
/// much of it unwritten, since a single flush of a large file at the end would stall the
/// WAL's fsyncs behind it.
const SAVE_SYNC_BYTES: u64 = 4 << 20;

/// Bytes a [`SnapshotSink`] gathers before it writes them to the file (a multiple of
/// [`DIRECT_ALIGN`]).
const SINK_BUFFER: usize = 1 << 20;

/// Where [`SnapshotStore::save_streamed`] takes a snapshot's data: buffered, checksummed,
/// written and synced every few MiB.
///
/// The file is written whole blocks at a time from offset 0 (the head included), from a
/// buffer aligned to [`DIRECT_ALIGN`], so that it can bypass the page cache
/// ([`FsFile::set_direct`]): a snapshot holds the whole store and is read back only to
/// restart or to catch a follower up, and copying it into the page cache was most of what
/// saving one cost (docs/benchmarks.md).
#[derive(Debug)]
pub struct SnapshotSink<'a, F: FileSystem> {
    file: &'a mut F::File,
    path: &'a Path,
    /// `SINK_BUFFER + DIRECT_ALIGN` bytes, of which the window `base..base + SINK_BUFFER` is
    /// aligned.
    buf: Vec<u8>,
    base: usize,
    /// Bytes held in the window.
    held: usize,
    /// The file offset of the window's first byte (a multiple of the block size).
    at: u64,
    /// Whether writes bypass the page cache.
    direct: bool,
    crc: u32,
    /// Data bytes taken (the head and the checksum not counted).
    written: u64,
    unsynced: u64,
}

impl<'a, F: FileSystem> SnapshotSink<'a, F> {
    fn new(file: &'a mut F::File, path: &'a Path, direct: bool) -> Self {
        let buf = vec![0u8; SINK_BUFFER + DIRECT_ALIGN];
        let base = buf.as_ptr().align_offset(DIRECT_ALIGN);
        assert!(base < DIRECT_ALIGN, "a byte buffer can be aligned within one block");
        SnapshotSink {
            file,
            path,
            buf,
            base,
            held: 0,
            at: 0,
            direct,
            crc: 0,
            written: 0,
            unsynced: 0,
        }
    }

    /// Appends data.
    pub fn write(&mut self, data: &[u8]) -> Result<(), WalError> {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.written += data.len() as u64;
        self.hold(data)
    }

    /// Appends bytes to the file: the window is written out each time it fills.
    fn hold(&mut self, mut data: &[u8]) -> Result<(), WalError> {
        while !data.is_empty() {
            let n = data.len().min(SINK_BUFFER - self.held);
            let at = self.base + self.held;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.held += n;
            data = &data[n..];
            if self.held == SINK_BUFFER {
                self.put()?;
            }
        }
        Ok(())
    }

    /// Writes what the window holds (a multiple of the block size) and empties it.
    fn put(&mut self) -> Result<(), WalError> {
        let len = self.held;
        let window = &self.buf[self.base..self.base + len];
        let mut wrote = self.file.write_at(self.at, window);
        if self.direct
            && wrote
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32))
        {
            // A device whose blocks are larger than DIRECT_ALIGN refuses these writes:
            // the rest of the file goes through the page cache.
            self.direct = false;
            self.file
                .set_direct(false)
                .map_err(|e| WalError::io("clear O_DIRECT on", self.path, e))?;
            wrote = self.file.write_at(self.at, window);
        }
        wrote.map_err(|e| WalError::io("write", self.path, e))?;
        self.held = 0;
        self.at += len as u64;
        self.unsynced += len as u64;
        if self.unsynced >= SAVE_SYNC_BYTES {
            self.file.sync_data().map_err(|e| WalError::io("fsync", self.path, e))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Writes what is held, the last block padded with zeros (the caller cuts the file to
    /// its length); returns the file's length.
    fn finish(&mut self) -> Result<u64, WalError> {
        let size = self.at + self.held as u64;
        let padded = self.held.next_multiple_of(DIRECT_ALIGN);
        self.buf[self.base + self.held..self.base + padded].fill(0);
        self.held = padded;
        self.put()?;
        Ok(size)
    }
}

/// Encodes a snapshot file.
pub fn encode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let mut out = encode_head(meta, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
    out
}

/// A snapshot file's bytes before the data: magic, metadata, data length. The file is this,
/// the data, then the CRC32C of both.
fn encode_head(meta: &SnapshotMeta, data_len: usize) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&meta.index.0.to_le_bytes());
    m.extend_from_slice(&meta.term.0.to_le_bytes());
    codec::encode_membership(&mut m, &meta.membership);
    let mut out = Vec::with_capacity(32 + m.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&(data_len as u64).to_le_bytes());
    out
}

/// The metadata in a file's head, if `head` holds all of it: (meta, bytes of head used).
fn parse_meta(head: &[u8]) -> Result<Option<(SnapshotMeta, usize)>, (usize, &'static str)> {
    if head.len() < HEAD {
        return Ok(None);
    }
    if &head[..8] != MAGIC {
        return Err((0, "bad snapshot header"));
    }
    let mlen = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    if mlen > codec::RECORD_BYTES_MAX {
        return Err((8, "metadata length"));
    }
    let Some(m) = head.get(HEAD..HEAD + mlen) else { return Ok(None) };
    if m.len() < 16 {
        return Err((HEAD, "metadata too short"));
    }
    let index = LogIndex(u64::from_le_bytes(m[0..8].try_into().expect("8 bytes")));
    let term = Term(u64::from_le_bytes(m[8..16].try_into().expect("8 bytes")));
    let membership = codec::decode_membership(&m[16..]).map_err(|e| (HEAD, e.0))?;
    Ok(Some((SnapshotMeta { index, term, membership }, HEAD + mlen)))
}

/// Verifies a whole snapshot file and splits it into its metadata and data.
pub fn decode_snapshot(buf: &Bytes) -> Result<(SnapshotMeta, Bytes), (usize, &'static str)> {
    if buf.len() < HEAD + 8 + 4 {
        return Err((0, "bad snapshot header"));
    }
    let body = buf.len() - 4;
    let want = u32::from_le_bytes(buf[body..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[..body]) != want {
        return Err((body, "snapshot checksum mismatch"));
    }
    let (meta, at) = parse_meta(buf)?.ok_or((8, "metadata length"))?;
    let dlen = buf.get(at..at + 8).ok_or((at, "data length"))?;
    let dlen = u64::from_le_bytes(dlen.try_into().expect("8 bytes")) as usize;
    if at + 8 + dlen != body {
        return Err((at, "data length does not match the file"));
    }
    Ok((meta, buf.slice(at + 8..body)))
}

impl<F: FileSystem> SnapshotStore<F> {
    /// Snapshots live in `dir`; the newest `keep` (at least 1) are kept.
    pub fn new(fs: F, dir: &Path, keep: usize) -> Result<SnapshotStore<F>, WalError> {
        fs.create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        Ok(SnapshotStore { fs, dir: dir.to_path_buf(), keep: keep.max(1) })
    }

    fn corrupt(path: &Path, (offset, reason): (usize, &str)) -> WalError {
        WalError::Corrupt { file: path.to_path_buf(), offset: offset as u64, reason: reason.into() }
    }

    /// Writes a snapshot durably and prunes old ones. Returns its description.
    pub fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<SnapshotInfo, WalError> {
        self.save_streamed(meta, data.len() as u64, |sink| sink.write(data))
    }

    /// Writes a snapshot of `len` data bytes that `fill` produces piece by piece into the
    /// [`SnapshotSink`], so that the state is never held whole in one buffer; durably, then
    /// prunes old ones. Fails if `fill` writes other than `len` bytes.
    pub fn save_streamed(
        &self,
        meta: &SnapshotMeta,
        len: u64,
        fill: impl FnOnce(&mut SnapshotSink<'_, F>) -> Result<(), WalError>,
    ) -> Result<SnapshotInfo, WalError> {
        let head = encode_head(meta, len as usize);
        let final_path = join(&self.dir, &name(meta.index, meta.term));
        let tmp = join(&self.dir, &format!("{}.tmp", name(meta.index, meta.term)));
        // Written over from the start and cut to length at the end: what the spare held
        // beyond is never read (and a save cut short leaves a `.snap.tmp`, which is removed).
        let mut file = match self.fs.rename(&join(&self.dir, SPARE), &tmp) {
            Ok(()) => self.fs.open_append(&tmp).map_err(|e| WalError::io("open", &tmp, e))?,
            Err(_) => self.fs.create(&tmp).map_err(|e| WalError::io("create", &tmp, e))?,
        };
        // Without direct I/O (the simulated file system, or one refusing O_DIRECT) the same
        // blocks are written through the page cache.
        let direct = file.set_direct(true).map_err(|e| WalError::io("set O_DIRECT on", &tmp, e))?;
        let mut sink = SnapshotSink::<F>::new(&mut file, &tmp, direct);
        sink.crc = crc32c::crc32c(&head);
        let filled = sink
            .hold(&head)
            .and_then(|()| fill(&mut sink))
            .and_then(|()| {
                if sink.written == len {
                    return Ok(());
                }
                Err(WalError::Invalid(format!(
                    "snapshot {}: {} bytes written, {len} announced",
                    meta.id(),
                    sink.written
                )))
            })
            .and_then(|()| {
                let crc = sink.crc.to_le_bytes();
                sink.hold(&crc)?;
                sink.finish()
            });
        let size = match filled {
            Ok(size) => size,
            Err(e) => {
                // An unfinished temporary file is never read; do not leave it taking space.
                drop(file);
                let _ = self.fs.remove(&tmp);
                return Err(e);
            }
        };
        debug_assert_eq!(size, head.len() as u64 + len + 4, "head, data and checksum");
        // Written over a spare, or padded to a whole block: cut to length.
        file.truncate(size).map_err(|e| WalError::io("truncate", &tmp, e))?;
        file.sync_data().map_err(|e| WalError::io("fsync", &tmp, e))?;
        self.fs.rename(&tmp, &final_path).map_err(|e| WalError::io("rename", &tmp, e))?;
        self.fs.sync_dir(&self.dir).map_err(|e| WalError::io("sync directory", &self.dir, e))?;
        self.prune()?;
        Ok(SnapshotInfo { meta: meta.clone(), size })
    }

    /// Another handle on the same directory.
    pub fn reopen(&self) -> Result<SnapshotStore<F>, WalError> {
        SnapshotStore::new(self.fs.clone(), &self.dir, self.keep)
    }

    /// The file of snapshot `(index, term)`.
    pub fn path_of(&self, index: LogIndex, term: Term) -> PathBuf {
        join(&self.dir, &name(index, term))
    }

    /// Snapshot file names, oldest first.
    pub fn list(&self) -> Result<Vec<String>, WalError> {
        let mut names: Vec<String> = self
            .fs
            .list(&self.dir)
            .map_err(|e| WalError::io("list", &self.dir, e))?
            .into_iter()
            .filter(|n| n.ends_with(".snap"))
            .collect();
        names.sort();
        Ok(names)
    }

    fn prune(&self) -> Result<(), WalError> {
        let names = self.list()?;
        let mut removed = false;
        for (i, n) in names.iter().take(names.len().saturating_sub(self.keep)).enumerate() {
            let p = join(&self.dir, n);
            // The oldest is kept as the spare (replacing an older spare); another handle may
            // have pruned it already.
            let gone = if i == 0 {
                self.fs.rename(&p, &join(&self.dir, SPARE))
            } else {
                self.fs.remove(&p)
            };
            match gone {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(WalError::io(if i == 0 { "rename" } else { "remove" }, &p, e))
                }
            }
        }
        // Leftovers of interrupted saves.
        for n in self.fs.list(&self.dir).map_err(|e| WalError::io("list", &self.dir, e))? {
            if n.ends_with(".snap.tmp") {
                let p = join(&self.dir, &n);
                self.fs.remove(&p).map_err(|e| WalError::io("remove", &p, e))?;
                removed = true;
            }
        }
        if removed {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("sync directory", &self.dir, e))?;
        }
        Ok(())
    }

    /// The newest snapshot, verified; `None` if there is none. A damaged newest snapshot is an
    /// error naming the file, never silently skipped.
    pub fn load_latest(&self) -> Result<Option<(SnapshotMeta, Bytes)>, WalError> {
        let Some(n) = self.list()?.pop() else { return Ok(None) };
        let path = join(&self.dir, &n);
        let buf = Bytes::from(self.fs.read(&path).map_err(|e| WalError::io("read", &path, e))?);
        decode_snapshot(&buf).map(Some).map_err(|e| Self::corrupt(&path, e))
    }

    /// The newest snapshot's description, read from its head (the checksum is verified when
    /// it is loaded or received, not here).
    pub fn latest_info(&self) -> Result<Option<SnapshotInfo>, WalError> {
        let Some(n) = self.list()?.pop() else { return Ok(None) };
        let path = join(&self.dir, &n);
        let head =
            self.fs.read_range(&path, 0, 64 << 10).map_err(|e| WalError::io("read", &path, e))?;
        let (meta, at) = parse_meta(&head)
            .map_err(|e| Self::corrupt(&path, e))?
            .ok_or_else(|| Self::corrupt(&path, (0, "truncated metadata")))?;
        let dlen =
            self.fs.read_range(&path, at as u64, 8).map_err(|e| WalError::io("read", &path, e))?;
        let dlen: [u8; 8] =
            dlen.try_into().map_err(|_| Self::corrupt(&path, (at, "data length")))?;
        let size = (at + 8 + 4) as u64 + u64::from_le_bytes(dlen);
        Ok(Some(SnapshotInfo { meta, size }))
    }

    /// Bytes `offset..offset + len` of the snapshot `(index, term)`; `None` if it is gone.
    pub fn read_chunk(
        &self,
        index: LogIndex,
        term: Term,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, WalError> {
        let path = join(&self.dir, &name(index, term));
        match self.fs.read_range(&path, offset, len) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(WalError::io("read", &path, e)),
        }
    }

    /// The partly received snapshot left by a restart, if its description is intact; any
    /// other partial file is removed.
    pub fn open_partial(&self) -> Result<Option<Partial<F>>, WalError> {
        let names = self.fs.list(&self.dir).map_err(|e| WalError::io("list", &self.dir, e))?;
        let mut found = None;
        for n in &names {
            let Some(stem) = n.strip_suffix(".partial") else { continue };
            let path = join(&self.dir, n);
            let info_path = join(&self.dir, &format!("{stem}.partial.info"));
            let info = match self.fs.read(&info_path) {
                Ok(b) => decode_info(&b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(WalError::io("read", &info_path, e)),
            };
            let received = self.fs.read(&path).map_err(|e| WalError::io("read", &path, e))?.len();
            match info {
                Some(info) if found.is_none() && received as u64 <= info.size => {
                    let file =
                        self.fs.open_append(&path).map_err(|e| WalError::io("open", &path, e))?;
                    found =
                        Some(Partial { info, path, file, received: received as u64, dirty: false });
                }
                _ => self.fs.remove(&path).map_err(|e| WalError::io("remove", &path, e))?,
            }
        }
        // Descriptions whose data file is gone.
        for n in &names {
            if let Some(stem) = n.strip_suffix(".partial.info") {
                if found.as_ref().is_none_or(|p: &Partial<F>| {
                    p.path != join(&self.dir, &format!("{stem}.partial"))
                }) {
                    let p = join(&self.dir, n);
                    self.fs.remove(&p).map_err(|e| WalError::io("remove", &p, e))?;
                }
            }
        }
        Ok(found)
    }

    /// Writes one received chunk; a chunk at offset 0 starts a new partial file (replacing
    /// `partial`). Durable after [`SnapshotStore::sync_partial`].
    pub fn write_chunk(
        &self,
        partial: &mut Option<Partial<F>>,
        chunk: &SnapshotChunk,
    ) -> Result<(), WalError> {
        if chunk.offset == 0 {
            if let Some(old) = partial.take() {
                self.remove_partial(&old)?;
            }
            let path = join(&self.dir, &partial_name(&chunk.info));
            let info_path = info_path(&path);
            let mut f =
                self.fs.create(&info_path).map_err(|e| WalError::io("create", &info_path, e))?;
            f.append(&encode_info(&chunk.info))
                .map_err(|e| WalError::io("write", &info_path, e))?;
            f.sync_data().map_err(|e| WalError::io("fsync", &info_path, e))?;
            let file = self.fs.create(&path).map_err(|e| WalError::io("create", &path, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("sync directory", &self.dir, e))?;
            *partial =
                Some(Partial { info: chunk.info.clone(), path, file, received: 0, dirty: false });
        }
        let p = match partial {
            Some(p) if p.info == chunk.info && p.received == chunk.offset => p,
            _ => {
                return Err(WalError::Corrupt {
                    file: self.dir.clone(),
                    offset: chunk.offset,
                    reason: format!(
                        "snapshot chunk for {} does not continue the partial snapshot",
                        chunk.info.meta.id()
                    ),
                })
            }
        };
        p.file.write_at(p.received, &chunk.data).map_err(|e| WalError::io("write", &p.path, e))?;
        p.received += chunk.data.len() as u64;
        p.dirty = true;
        Ok(())
    }

    fn remove_partial(&self, p: &Partial<F>) -> Result<(), WalError> {
        for path in [p.path.clone(), info_path(&p.path)] {
            self.fs.remove(&path).map_err(|e| WalError::io("remove", &path, e))?;
        }
        Ok(())
    }

    /// Makes the chunks written durable.
    pub fn sync_partial(&self, partial: &mut Option<Partial<F>>) -> Result<(), WalError> {
        if let Some(p) = partial {
            if p.dirty {
                p.file.sync_data().map_err(|e| WalError::io("fsync", &p.path, e))?;
                p.dirty = false;
            }
        }
        Ok(())
    }

    /// Verifies the complete partial snapshot, renames it into place (durably) and returns
    /// its data. A damaged one is removed and reported, so the transfer restarts from zero.
    pub fn finish_partial(
        &self,
        partial: &mut Option<Partial<F>>,
    ) -> Result<(SnapshotInfo, Bytes), WalError> {
        let Some(mut p) = partial.take() else {
            return Err(WalError::Corrupt {
                file: self.dir.clone(),
                offset: 0,
                reason: "no snapshot is being received".into(),
            });
        };
        p.file.sync_data().map_err(|e| WalError::io("fsync", &p.path, e))?;
        let buf = Bytes::from(self.fs.read(&p.path).map_err(|e| WalError::io("read", &p.path, e))?);
        let checked = match decode_snapshot(&buf) {
            Ok((meta, data)) if meta == p.info.meta && buf.len() as u64 == p.info.size => Ok(data),
            Ok(_) => Err((0, "snapshot metadata does not match what the leader announced")),
            Err(e) => Err(e),
        };
        let data = match checked {
            Ok(d) => d,
            Err(e) => {
                let err = Self::corrupt(&p.path, e);
                self.remove_partial(&p)?;
                return Err(err);
            }
        };
        let final_path = join(&self.dir, &name(p.info.meta.index, p.info.meta.term));
        self.fs.rename(&p.path, &final_path).map_err(|e| WalError::io("rename", &p.path, e))?;
        let ip = info_path(&p.path);
        self.fs.remove(&ip).map_err(|e| WalError::io("remove", &ip, e))?;
        self.fs.sync_dir(&self.dir).map_err(|e| WalError::io("sync directory", &self.dir, e))?;
        self.prune()?;
        Ok((p.info, data))
    }
}
