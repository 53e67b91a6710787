//! A simulated server: the Raft node over the real WAL-backed log (`flotilla_storage::DiskLog`)
//! on its own simulated file system, its state machine, and the driver loop that executes each
//! `Ready` in the documented order (send early messages; write; sync; send the rest; apply;
//! advance). The state machine is the server's MVCC store (`crate::kv`); this loop stands in
//! for the server's Driver, which executes the same contract over tokio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flotilla_raft::{
    Ack, Config, Entry, EntryId, LogIndex, LogStore, MemStorage, Membership, Message, Node, NodeId,
    SnapshotMeta,
};
use flotilla_storage::{DiskLog, SimFs, WalError, WalOptions};

use crate::disk::Disk;
use crate::kv::Kv;

/// The part of a `Ready` that waits for its sync.
#[derive(Debug)]
pub struct InFlight {
    /// Answers, sent once durable.
    pub persisted_messages: Vec<Message>,
    /// Entries to apply.
    pub committed: Vec<Entry>,
    /// For `advance`.
    pub ack: Ack,
}

/// A detached sync (see `SimConfig::detach_min_entries`) and what waits for it; or, with no
/// `file`, answers of a later `Ready` queued behind the sync `seq`.
#[derive(Debug)]
pub struct Job {
    /// Its number; jobs finish in order.
    pub seq: u64,
    /// The log's handle to sync.
    pub file: Option<flotilla_storage::DetachedSync>,
    /// The checkers' disk is durable through this write once it is done.
    pub mark: u64,
    /// Answers, sent once durable.
    pub persisted_messages: Vec<Message>,
    /// The last entry it makes durable, for `advance`.
    pub persisted: Option<EntryId>,
}

/// A pending client proposal: which client attempt waits for the entry at this index.
#[derive(Clone, Copy, Debug)]
pub struct Proposal {
    /// The entry the proposal became.
    pub entry: EntryId,
    /// The client.
    pub client: usize,
    /// Its attempt number.
    pub attempt: u64,
}

/// Small segments, so that runs cross segment boundaries and crash during rollover.
const WAL_OPTIONS: WalOptions = WalOptions {
    segment_bytes: 64 << 10,
    recovery: flotilla_storage::RecoveryMode::TolerateTornTail,
    preallocate: true,
};

fn wal_dir() -> PathBuf {
    Path::new("/flotilla/wal").to_path_buf()
}

/// One simulated server.
#[derive(Debug)]
pub struct Host {
    /// Its id.
    pub id: NodeId,
    /// Its configuration.
    pub config: Config,
    /// The running node; `None` while crashed.
    pub node: Option<Node<DiskLog<SimFs>>>,
    /// Its file system.
    pub fs: SimFs,
    /// The checkers' account of what it made durable.
    pub disk: Disk,
    /// A `Ready` waiting for its sync.
    pub inflight: Option<InFlight>,
    /// Detached syncs running, oldest first, and the number of the last one started.
    pub jobs: std::collections::VecDeque<Job>,
    pub job_seq: u64,
    /// Bumped at every crash, so that events of a previous life are ignored.
    pub incarnation: u64,
    /// The state machine (volatile: rebuilt from the log after a restart).
    pub kv: Kv,
    /// Client proposals made here, by log index.
    pub proposals: BTreeMap<u64, Proposal>,
    /// Reads waiting for their read index, then for the state machine to reach it:
    /// read id -> (client, attempt, key, read index once known).
    pub reads: BTreeMap<u64, (usize, u64, String, Option<u64>)>,
    /// Index of the last entry applied to `kv`.
    pub applied: u64,
    /// The last vote this host wrote, to notice new votes.
    pub last_vote: Option<(flotilla_raft::Term, NodeId)>,
    /// A snapshot being written in the background: its description and the state machine's
    /// view at its index (taken when it started; applies continue meanwhile).
    pub snapshot_job: Option<(SnapshotMeta, bytes::Bytes)>,
    /// Index of the newest snapshot this host holds (taken or installed).
    pub snapshot_index: u64,
    /// The revision of the newest compaction this host proposed while leading.
    pub compaction_proposed: i64,
    /// Ticks this host led, which pace its lease traffic.
    pub lease_steps: u64,
}

impl Host {
    /// A running host over a fresh disk.
    ///
    /// # Panics
    /// If the new WAL or node cannot be created: the simulation is misconfigured.
    pub fn new(config: Config, membership: Membership) -> Host {
        let fs = SimFs::new();
        let log = DiskLog::create(fs.clone(), &wal_dir(), membership.clone(), WAL_OPTIONS)
            .unwrap_or_else(|e| panic!("simulated node {}: cannot create its WAL: {e}", config.id));
        let node = Node::new(config.clone(), log)
            .unwrap_or_else(|e| panic!("simulated node {} cannot start: {e}", config.id));
        Host {
            id: config.id,
            config,
            node: Some(node),
            fs,
            disk: Disk::new(MemStorage::new(membership)),
            inflight: None,
            jobs: Default::default(),
            job_seq: 0,
            incarnation: 0,
            kv: Kv::default(),
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            applied: 0,
            last_vote: None,
            snapshot_job: None,
            snapshot_index: 0,
            compaction_proposed: 0,
            lease_steps: 0,
        }
    }

    /// Crash: everything volatile is lost, and the disk keeps only what was synced, plus, with
    /// `torn_seed`, a torn prefix of what was being written.
    pub fn crash(&mut self, torn_seed: Option<u64>) {
        self.node = None;
        self.inflight = None;
        self.jobs.clear();
        self.incarnation += 1;
        self.kv = Kv::default();
        self.proposals.clear();
        self.reads.clear();
        self.applied = 0;
        self.snapshot_job = None;
        self.fs.crash(torn_seed);
    }

    /// Restart: recover the WAL and the newest snapshot; the state machine is restored from
    /// the snapshot and re-applies the log after it (Raft §7). Returns the snapshot's last
    /// entry, if there was one.
    pub fn restart(&mut self) -> Result<Option<EntryId>, WalError> {
        if self.node.is_some() {
            return Ok(None);
        }
        let (log, _) = DiskLog::open(self.fs.clone(), &wal_dir(), WAL_OPTIONS)?;
        let failed = |e: String| WalError::Failed(e);
        let snapshot = log.load_snapshot()?;
        let (kv, applied) = match &snapshot {
            Some((meta, data)) => {
                let kv = Kv::decode(data)
                    .ok_or_else(|| failed(format!("snapshot {} does not decode", meta.id())))?;
                (kv, meta.index)
            }
            None => (Kv::default(), LogIndex::ZERO),
        };
        let prefix = log.first_index().prev();
        let prefix = EntryId::new(log.term(prefix).map_err(|e| failed(e.to_string()))?, prefix);
        let init = log.initial_state().map_err(|e| failed(e.to_string()))?;
        let recovered = MemStorage::from_parts(
            log.hard_state(),
            init.membership,
            prefix,
            log.entries_in_memory().to_vec(),
        )
        .map_err(|e| failed(e.to_string()))?;
        self.disk.reset(recovered);
        let node =
            Node::restart(self.config.clone(), log, applied).map_err(|e| failed(e.to_string()))?;
        self.kv = kv;
        self.applied = applied.0;
        self.snapshot_index = applied.0;
        self.node = Some(node);
        Ok(snapshot.map(|(m, _)| m.id()))
    }

    /// Whether this host's log holds `e`, or a snapshot covering it replaced it.
    pub fn holds(&self, e: EntryId) -> bool {
        let Some(node) = self.node.as_ref() else { return false };
        e.index < node.first_index() || self.entry_at(e.index.0) == Some(e)
    }

    /// The entry at `index` in this host's log (written, synced or not).
    pub fn entry_at(&self, index: u64) -> Option<EntryId> {
        let node = self.node.as_ref()?;
        let t = node.store().term(flotilla_raft::LogIndex(index)).ok()?;
        Some(EntryId::new(t, flotilla_raft::LogIndex(index)))
    }
}
