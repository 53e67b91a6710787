//! # flotilla-raft
//!
//! The Raft consensus algorithm (Ongaro & Ousterhout, "In Search of an Understandable
//! Consensus Algorithm", extended version; Ongaro, "Consensus: Bridging Theory and Practice",
//! 2014) as a deterministic, sans-IO state machine.
//!
//! A [`Node`] performs no IO, reads no clock, spawns no thread and draws randomness only from
//! a seeded generator in its own state. The embedding program (the *driver*) feeds it:
//!
//! - [`Node::tick`] at a fixed interval: the only notion of time;
//! - [`Node::step`] for every message from a peer;
//! - [`Node::propose`] for every client command;
//!
//! and collects its output with [`Node::ready`], a [`Ready`] batch whose documentation states
//! the order in which its parts must be persisted, sent and applied, before
//! [`Node::advance`]. The same inputs always produce the same outputs, which is what lets the
//! simulator replay any failure from a seed.
//!
//! ```
//! use flotilla_raft::testkit::Cluster;
//!
//! // Three nodes in one thread; the harness runs each node's Ready loop and delivers messages.
//! let mut cluster = Cluster::new(3, 42);
//! let leader = cluster.elect();
//! let id = cluster.propose(leader, "x = 1").unwrap();
//! cluster.deliver_all();
//! for node in cluster.ids() {
//!     assert!(cluster.applied(node).iter().any(|e| e.id() == id));
//! }
//! ```

#![deny(missing_docs)]

mod config;
mod error;
mod invariants;
mod log;
mod membership;
mod message;
mod node;
mod progress;
pub mod quorum;
mod raft;
mod read_only;
mod ready;
mod rng;
mod role;
mod snapshot;
mod storage;
pub mod testkit;
mod types;

#[cfg(feature = "planted-bugs")]
pub use config::PlantedBug;
pub use config::{Config, ReadMode};
pub use error::{
    ConfChangeError, ConfigError, Malformed, ProposeError, ReadError, SnapshotError, StepError,
    StorageError, TransferError,
};
pub use membership::{ConfChange, Membership};
pub use message::{AppendOutcome, Message, MessageBody, RejectHint};
pub use node::{InitError, Node, PeerProgress, Status};
pub use progress::ProgressState;
pub use read_only::ReadState;
pub use ready::{Ack, Ready, SoftState};
pub use rng::Rng;
pub use snapshot::{PartialSnapshot, SnapshotChunk, SnapshotInfo, SnapshotMeta};
pub use storage::{InitialState, LogStore, MemStorage};
pub use types::{
    Entry, EntryId, EntryKind, HardState, LogIndex, NodeId, Role, Term, ENTRY_OVERHEAD_BYTES,
};
