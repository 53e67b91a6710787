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
    /// Asks that later writes bypass the page cache (`O_DIRECT`); returns whether they do.
    /// While they do, every write's offset and length must be multiples of
    /// [`DIRECT_ALIGN`] and its buffer must start at such an address. For large writes read
    /// back rarely (snapshots): they then cost no copy into the page cache, and no fresh
    /// page-cache pages, which are slow to touch on a VM that gives freed memory back to
    /// its host. `Ok(false)` where the file system has no such mode (the simulated one, or
    /// one refusing `O_DIRECT`); writes are then buffered as before.
    fn set_direct(&mut self, _on: bool) -> io::Result<bool> {
        Ok(false)
    }
    /// A handle that syncs this file's data from another thread, so that the writer need not
    /// wait for the disk; `None` if this file system has none (the simulated one: its syncs
    /// must happen in the simulation's order), and then callers sync with `sync_data`.
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        Ok(None)
    }
}

/// The alignment of offsets, lengths and buffers of writes made while
/// [`FsFile::set_direct`] is on: the largest logical block size of common disks.
pub const DIRECT_ALIGN: usize = 4096;

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

    fn set_direct(&mut self, on: bool) -> io::Result<bool> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        let want = if on { flags | OFlag::O_DIRECT } else { flags - OFlag::O_DIRECT };
        match fcntl(fd, FcntlArg::F_SETFL(want)) {
            Ok(_) => Ok(on),
            // A file system without direct I/O (tmpfs before Linux 6.6, some FUSE ones).
            Err(nix::errno::Errno::EINVAL) if on => Ok(false),
            Err(e) => Err(e.into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct mode really reaches the kernel where the file system has it: an unaligned
    /// write is then refused, an aligned one from an aligned buffer lands, and turning the
    /// mode off makes any write work again.
    #[test]
    fn direct_mode_is_set_on_the_descriptor_and_can_be_turned_off() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let path = tmp.path().join("f");
        let mut f = RealFs.create(&path).expect("create");
        if !f.set_direct(true).expect("set O_DIRECT") {
            eprintln!("this file system has no direct I/O: nothing to check");
            return;
        }
        let buf = vec![7u8; 3 * DIRECT_ALIGN];
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = &buf[at..at + DIRECT_ALIGN];
        assert!(f.write_at(1, aligned).is_err(), "an unaligned offset is refused");
        f.write_at(DIRECT_ALIGN as u64, aligned).expect("an aligned write");
        assert!(!f.set_direct(false).expect("clear O_DIRECT"));
        f.write_at(1, b"x").expect("a buffered write");
        let got = std::fs::read(&path).expect("read");
        assert_eq!(got.len(), 2 * DIRECT_ALIGN);
        assert_eq!(got[1], b'x');
        assert!(got[DIRECT_ALIGN..].iter().all(|b| *b == 7));
    }
}
