//! The file system seen by storage: a small trait with the real implementation ([`RealFs`])
//! and a simulated one ([`crate::SimFs`]) that loses unsynced data on crash and injects faults.
//! Storage code never touches `std::fs` directly, so the simulator can run it.

use std::io;
use std::path::{Path, PathBuf};

/// An open file: appends or writes at an offset, syncs.
pub trait FsFile: Send {
    /// Appends `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Writes `buf` at `offset`, extending the file if needed.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Extends the file with zeros to `len` bytes, allocating the space, so that later writes
    /// inside it change no file size and `fdatasync` has no metadata to journal.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A handle that syncs this file's data from another thread, so that the writer need not
    /// wait for the disk; `None` if this file system has none (the simulated one: its syncs
    /// must happen in the simulation's order), and then callers sync with `sync_data`.
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        Ok(None)
    }
}

/// A handle that makes a file's written data durable from another thread: for a real file,
/// a second descriptor of it.
///
/// `fdatasync` makes durable every write made to the file before it was called, through any
/// descriptor, so a thread that syncs after the writer has written covers those writes.
#[derive(Clone, Debug)]
pub struct DetachedSync(std::sync::Arc<dyn SyncData>);

/// What a [`DetachedSync`] holds.
pub trait SyncData: Send + Sync + std::fmt::Debug {
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

impl SyncData for std::fs::File {
    fn sync_data(&self) -> io::Result<()> {
        std::fs::File::sync_data(self)
    }
}

impl DetachedSync {
    /// A handle syncing through `f`.
    pub fn new(f: impl SyncData + 'static) -> DetachedSync {
        DetachedSync(std::sync::Arc::new(f))
    }

    /// Makes the file's data durable (`fdatasync`).
    pub fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// The operations storage needs.
pub trait FileSystem: Clone + Send + Sync + 'static {
    /// The file type.
    type File: FsFile;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates (or empties) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for writing.
    fn open_append(&self, path: &Path) -> io::Result<Self::File>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads `len` bytes at `offset` (fewer only at the end of the file).
    fn read_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>>;
    /// The file names (not paths) in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// A real file opened for writing.
#[derive(Debug)]
pub struct RealFile {
    file: std::fs::File,
}

impl FsFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.len()?;
        self.write_at(end, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, offset)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        // fallocate(2) reserves the blocks at once (as etcd's WAL does); writing 64 MiB of
        // zeros instead took the driver 200 ms per segment and loaded the next fsync.
        let at = self.len()?;
        if at >= len {
            return Ok(());
        }
        let fd = self.file.as_raw_fd();
        let flags = nix::fcntl::FallocateFlags::empty();
        match nix::fcntl::fallocate(fd, flags, at as i64, (len - at) as i64) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => {} // e.g. tmpfs of old kernels: zeros below
            Err(e) => return Err(e.into()),
        }
        let zeros = vec![0u8; 1 << 20];
        let mut at = at;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        Ok(Some(DetachedSync::new(self.file.try_clone()?)))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

impl FileSystem for RealFs {
    type File = RealFile;

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<RealFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(RealFile { file })
    }

    fn open_append(&self, path: &Path) -> io::Result<RealFile> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        Ok(RealFile { file })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let len = len.min(size.saturating_sub(offset));
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

/// `dir/name`.
pub(crate) fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
