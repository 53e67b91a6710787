//! A simulated file system with the failure semantics storage must survive: data written but
//! not synced is lost on crash (or torn: a random prefix of it survives), directory changes
//! are lost unless the directory was synced, and faults can be injected (fsync errors, a full
//! disk, bit flips, truncation). Deterministic: crashes take their randomness from a seed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{FileSystem, FsFile};

#[derive(Debug, Default)]
struct FileData {
    data: Vec<u8>,
    /// The bytes that survive a crash.
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync.
    dirty_from: usize,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<u64, FileData>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: Vec<PathBuf>,
    next_id: u64,
    failing_syncs: u32,
    space_left: Option<u64>,
    sync_delay: Option<std::time::Duration>,
}

/// A simulated file system; clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

/// A file of a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    state: Arc<Mutex<State>>,
    id: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock can only come from a test assertion; the state is
    // plain data and still usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Syncs file `id`: what was written becomes what survives a crash. A file removed since
/// is an error unless `removed_ok` (a detached handle, like a real descriptor, outlives the
/// name: there is nothing left to make durable).
fn sync_file(state: &Mutex<State>, id: u64, removed_ok: bool) -> io::Result<()> {
    let mut s = lock(state);
    if s.failing_syncs > 0 {
        s.failing_syncs -= 1;
        return Err(io::Error::other("fsync failed (simulated)"));
    }
    let Some(f) = s.files.get_mut(&id) else {
        return if removed_ok { Ok(()) } else { Err(io::Error::other("file removed")) };
    };
    let from = f.dirty_from.min(f.durable.len());
    f.durable.truncate(from);
    let tail = f.data[from..].to_vec();
    f.durable.extend_from_slice(&tail);
    f.dirty_from = f.data.len();
    let delay = s.sync_delay;
    drop(s);
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    Ok(())
}

/// A [`SimFile`]'s handle for syncing from elsewhere (see [`FsFile::detached_sync`]).
#[derive(Debug)]
struct SimSyncer {
    state: Arc<Mutex<State>>,
    id: u64,
}

impl crate::fs::SyncData for SimSyncer {
    fn sync_data(&self) -> io::Result<()> {
        sync_file(&self.state, self.id, true)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Simulates a crash and restart: every file loses what was not synced, and directory
    /// entries not synced are gone. With `torn_seed`, each file keeps a pseudo-random prefix
    /// of its unsynced bytes instead of none (a torn write).
    pub fn crash(&self, torn_seed: Option<u64>) {
        let mut s = lock(&self.state);
        let mut rng = flotilla_raft::Rng::new(torn_seed.unwrap_or(0));
        for f in s.files.values_mut() {
            let mut survived = f.durable.clone();
            if torn_seed.is_some() && f.data.len() > f.dirty_from {
                let tail = &f.data[f.dirty_from..];
                let keep = rng.in_range(0, tail.len() as u32 + 1) as usize;
                survived.truncate(f.dirty_from);
                survived.extend_from_slice(&tail[..keep]);
            }
            f.data = survived;
            f.durable = f.data.clone();
            f.dirty_from = f.data.len();
        }
        s.names = s.durable_names.clone();
        let live: Vec<u64> = s.names.values().copied().collect();
        s.files.retain(|id, _| live.contains(id));
        s.failing_syncs = 0;
    }

    /// The next `n` calls to `sync_data` fail.
    pub fn fail_next_syncs(&self, n: u32) {
        lock(&self.state).failing_syncs = n;
    }

    /// Removes every injected fault (as an operator replacing a disk or freeing space would).
    pub fn clear_faults(&self) {
        let mut s = lock(&self.state);
        s.failing_syncs = 0;
        s.space_left = None;
    }

    /// Appends fail with `StorageFull` once `bytes` more have been written (`None`: no limit).
    pub fn set_space_left(&self, bytes: Option<u64>) {
        lock(&self.state).space_left = bytes;
    }

    /// Makes every `sync_data` block its caller this long (after the data is durable), as a
    /// real disk's flush does: for tests of threads around storage, where instant syncs
    /// would let a busy machine run them one by one. The simulator never sets it.
    pub fn set_sync_delay(&self, delay: Option<std::time::Duration>) {
        lock(&self.state).sync_delay = delay;
    }

    /// Flips one bit of a file, durably (as a disk error would).
    pub fn flip_bit(&self, path: &Path, byte: usize, bit: u8) -> io::Result<()> {
        let mut s = lock(&self.state);
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let f = s.files.get_mut(&id).expect("named files exist");
        if byte >= f.data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "flip beyond the end"));
        }
        f.data[byte] ^= 1 << (bit % 8);
        if byte < f.durable.len() {
            f.durable[byte] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Cuts a file to `len` bytes, durably (as a torn write found after a crash would).
    pub fn truncate_durably(&self, path: &Path, len: usize) -> io::Result<()> {
        let mut s = lock(&self.state);
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let f = s.files.get_mut(&id).expect("named files exist");
        f.data.truncate(len);
        f.durable.truncate(len);
        f.dirty_from = f.dirty_from.min(len);
        Ok(())
    }

    /// A file's current length, if it exists.
    pub fn file_len(&self, path: &Path) -> Option<usize> {
        let s = lock(&self.state);
        s.names.get(path).map(|id| s.files[id].data.len())
    }
}

impl FsFile for SimFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.len()?;
        self.write_at(end, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = lock(&self.state);
        let offset = offset as usize;
        let len = s.files.get(&self.id).map_or(0, |f| f.data.len());
        let grow = (offset + buf.len()).saturating_sub(len);
        if let Some(left) = s.space_left {
            if grow as u64 > left {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (simulated)",
                ));
            }
            s.space_left = Some(left - grow as u64);
        }
        let f = s.files.get_mut(&self.id).ok_or_else(|| io::Error::other("file removed"))?;
        if f.data.len() < offset + buf.len() {
            f.data.resize(offset + buf.len(), 0);
        }
        f.data[offset..offset + buf.len()].copy_from_slice(buf);
        f.dirty_from = f.dirty_from.min(offset);
        Ok(())
    }

    fn allocate(&mut self, _len: u64) -> io::Result<()> {
        // Preallocated space reads as zeros, which storage treats exactly like the end of the
        // file; not storing the zeros keeps simulated disks small.
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        sync_file(&self.state, self.id, false)
    }

    fn detached_sync(&self) -> io::Result<Option<crate::fs::DetachedSync>> {
        let syncer = SimSyncer { state: self.state.clone(), id: self.id };
        Ok(Some(crate::fs::DetachedSync::new(syncer)))
    }

    fn len(&self) -> io::Result<u64> {
        let s = lock(&self.state);
        Ok(s.files.get(&self.id).map_or(0, |f| f.data.len() as u64))
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut s = lock(&self.state);
        let f = s.files.get_mut(&self.id).ok_or_else(|| io::Error::other("file removed"))?;
        f.data.truncate(len as usize);
        f.dirty_from = f.dirty_from.min(len as usize);
        Ok(())
    }
}

impl FileSystem for SimFs {
    type File = SimFile;

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        if !s.dirs.iter().any(|d| d == path) {
            s.dirs.push(path.to_path_buf());
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut s = lock(&self.state);
        let id = s.next_id;
        s.next_id += 1;
        s.files.insert(id, FileData::default());
        s.names.insert(path.to_path_buf(), id);
        Ok(SimFile { state: self.state.clone(), id })
    }

    fn open_append(&self, path: &Path) -> io::Result<SimFile> {
        let s = lock(&self.state);
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(SimFile { state: self.state.clone(), id })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = lock(&self.state);
        let id = s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(s.files[id].data.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let s = lock(&self.state);
        let id = s.names.get(path).ok_or_else(|| not_found(path))?;
        let data = &s.files[id].data;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = lock(&self.state);
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        let visible: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        s.durable_names.extend(visible);
        Ok(())
    }
}
