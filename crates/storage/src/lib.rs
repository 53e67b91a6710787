//! # flotilla-storage
//!
//! Durable storage for Flotilla: a [`FileSystem`] trait with the real implementation and a
//! simulated one that loses unsynced data and injects faults; a segmented, checksummed
//! write-ahead log ([`Wal`]) with crash-safe recovery; group commit for concurrent appenders
//! ([`GroupWal`]); snapshot files ([`SnapshotStore`]); and [`DiskLog`], the Raft log kept in the
//! WAL and implementing `flotilla_raft::LogStore`.
//!
//! ```
//! use flotilla_raft::{Entry, LogIndex, LogStore, Membership, NodeId, Term};
//! use flotilla_storage::{DiskLog, SimFs, WalOptions};
//!
//! let fs = SimFs::new();
//! let dir = std::path::Path::new("/data/wal");
//! let members = Membership::new([NodeId(1)], []).unwrap();
//! let mut log = DiskLog::create(fs.clone(), dir, members, WalOptions::default()).unwrap();
//! log.write(&[Entry::new(Term(1), LogIndex(1), "x")], None);
//! log.sync().unwrap();
//! fs.crash(None); // power loss: only synced data survives
//! let (log, _) = DiskLog::open(fs, dir, WalOptions::default()).unwrap();
//! assert_eq!(log.last_index(), LogIndex(1));
//! ```

#![deny(missing_docs)]

pub mod codec;
mod error;
mod fs;
mod group;
mod log_store;
mod sim_fs;
mod snapshot;
mod wal;

pub use error::WalError;
pub use flotilla_raft::SnapshotMeta;
pub use fs::{DetachedSync, FileSystem, FsFile, RealFile, RealFs, SyncData, DIRECT_ALIGN};
pub use group::GroupWal;
pub use log_store::DiskLog;
pub use sim_fs::{SimFile, SimFs};
pub use snapshot::{decode_snapshot, encode_snapshot, Partial, SnapshotSink, SnapshotStore};
pub use wal::{Recovered, RecoveryMode, Wal, WalOptions, SEGMENT_MAGIC};
