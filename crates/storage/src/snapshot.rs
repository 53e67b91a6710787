//! Snapshot files (Raft §7): written under a temporary name, synced, renamed into place, the
//! directory synced; checksummed whole; the newest `keep` kept.
//!
//! Layout: magic `FLOTSNP1`, metadata length (u32), metadata (last included index u64, term
//! u64, membership), data length (u64), data, CRC32C (u32) of everything before it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_raft::{LogIndex, Membership, Term};

use crate::codec;
use crate::error::WalError;
use crate::fs::{join, FileSystem, FsFile};

const MAGIC: &[u8; 8] = b"FLOTSNP1";

/// What a snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Last included index.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// The membership as of that index.
    pub membership: Membership,
}

/// The snapshot directory.
#[derive(Debug)]
pub struct SnapshotStore<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    keep: usize,
}

fn name(index: LogIndex, term: Term) -> String {
    format!("{:020}-{:020}.snap", index.0, term.0)
}

impl<F: FileSystem> SnapshotStore<F> {
    /// Snapshots live in `dir`; the newest `keep` (at least 1) are kept.
    pub fn new(fs: F, dir: &Path, keep: usize) -> Result<SnapshotStore<F>, WalError> {
        fs.create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        Ok(SnapshotStore { fs, dir: dir.to_path_buf(), keep: keep.max(1) })
    }

    /// Writes a snapshot durably and prunes old ones. Returns its path.
    pub fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<PathBuf, WalError> {
        let mut m = Vec::new();
        m.extend_from_slice(&meta.index.0.to_le_bytes());
        m.extend_from_slice(&meta.term.0.to_le_bytes());
        codec::encode_membership(&mut m, &meta.membership);
        let mut out = Vec::with_capacity(32 + m.len() + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
        out.extend_from_slice(&m);
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
        let final_path = join(&self.dir, &name(meta.index, meta.term));
        let tmp = join(&self.dir, &format!("{}.tmp", name(meta.index, meta.term)));
        let mut f = self.fs.create(&tmp).map_err(|e| WalError::io("create", &tmp, e))?;
        f.append(&out).map_err(|e| WalError::io("write", &tmp, e))?;
        f.sync_data().map_err(|e| WalError::io("fsync", &tmp, e))?;
        self.fs.rename(&tmp, &final_path).map_err(|e| WalError::io("rename", &tmp, e))?;
        self.fs.sync_dir(&self.dir).map_err(|e| WalError::io("sync directory", &self.dir, e))?;
        self.prune()?;
        Ok(final_path)
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
        for n in names.iter().take(names.len().saturating_sub(self.keep)) {
            let p = join(&self.dir, n);
            self.fs.remove(&p).map_err(|e| WalError::io("remove", &p, e))?;
            removed = true;
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
        let buf = self.fs.read(&path).map_err(|e| WalError::io("read", &path, e))?;
        let corrupt = |offset: usize, reason: &str| WalError::Corrupt {
            file: path.clone(),
            offset: offset as u64,
            reason: reason.to_string(),
        };
        if buf.len() < MAGIC.len() + 4 + 8 + 4 || &buf[..8] != MAGIC {
            return Err(corrupt(0, "bad snapshot header"));
        }
        let body = buf.len() - 4;
        let want = u32::from_le_bytes(buf[body..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&buf[..body]) != want {
            return Err(corrupt(body, "snapshot checksum mismatch"));
        }
        let mlen = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
        let m = buf.get(12..12 + mlen).ok_or_else(|| corrupt(8, "metadata length"))?;
        if m.len() < 16 {
            return Err(corrupt(12, "metadata too short"));
        }
        let index = LogIndex(u64::from_le_bytes(m[0..8].try_into().expect("8 bytes")));
        let term = Term(u64::from_le_bytes(m[8..16].try_into().expect("8 bytes")));
        let membership = codec::decode_membership(&m[16..]).map_err(|e| corrupt(12, e.0))?;
        let at = 12 + mlen;
        let dlen = buf.get(at..at + 8).ok_or_else(|| corrupt(at, "data length"))?;
        let dlen = u64::from_le_bytes(dlen.try_into().expect("8 bytes")) as usize;
        if at + 8 + dlen != body {
            return Err(corrupt(at, "data length does not match the file"));
        }
        let data = Bytes::copy_from_slice(&buf[at + 8..body]);
        Ok(Some((SnapshotMeta { index, term, membership }, data)))
    }
}
