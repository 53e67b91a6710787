//! Storage errors: each names the file (and offset, for corruption) so that an operator knows
//! where to look.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A WAL or snapshot failure.
#[derive(Debug, Error)]
pub enum WalError {
    /// An IO operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record or file failed its checks.
    #[error("corrupt {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment between two present ones is missing.
    #[error("missing WAL segment {} in {}", missing.display(), dir.display())]
    MissingSegment {
        /// The WAL directory.
        dir: PathBuf,
        /// The expected file.
        missing: PathBuf,
    },
    /// No WAL in the directory.
    #[error("no WAL in {}", .0.display())]
    NotFound(PathBuf),
    /// A WAL already exists where a new one was to be created.
    #[error("a WAL already exists in {}", .0.display())]
    AlreadyExists(PathBuf),
    /// A request the log cannot honour (a broken driver: compaction beyond the snapshot,
    /// installing a snapshot other than the one received).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An earlier IO error stopped the log; nothing more is written (fail-stop).
    #[error("the log stopped after an earlier error: {0}")]
    Failed(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> WalError {
        WalError::Io { op, path: path.to_path_buf(), source }
    }

    /// Whether the disk is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
    }
}
