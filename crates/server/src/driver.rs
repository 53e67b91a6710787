//! The driver: one thread that owns the Raft node, its log and the MVCC store, and executes
//! the core's output in the order of the `Ready` contract (send the leader's messages;
//! persist and sync; send the answers; apply; advance). Client requests and peer messages
//! reach it through one channel; everything queued is taken before the next `Ready`, so many
//! proposals share one write and one fsync (group commit). A batch's fsync runs on the
//! `wal-sync` thread while the driver goes on (its answers wait for it; see `sync_thread`).
//! The tokio shell around it holds no protocol logic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_raft::{Config, EntryKind, LogIndex, LogStore, Node, NodeId, Role};
use flotilla_storage::{DiskLog, RealFs};
use prost::Message as _;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::auth::{AuthStore, SharedAuth};
use crate::mvcc::{Applied, Mvcc, MvccError};
use crate::pb;
use crate::transport::{PeerFrame, Peers};

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApiError {
    /// The store refused it (nothing changed).
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// No leader is known: retry.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The entry was replaced after a leader change: it did not take effect.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// No answer in time: the outcome is unknown.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The node stopped after a storage error; writes fail, reads keep working.
    #[error("etcdserver: storage failure, writes are refused: {0}")]
    Storage(String),
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A leadership transfer or a membership change was refused.
    #[error("etcdserver: {0}")]
    Transfer(String),
    /// A membership change named a member the cluster does not have (etcd's NotFound).
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A lease grant asked for more than etcd's largest TTL.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// Refused by authentication or access control.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// What a response header needs from the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The store revision.
    pub revision: i64,
    /// The Raft term.
    pub term: u64,
}

type Reply<T> = oneshot::Sender<Result<(T, Header), ApiError>>;

/// A proposal the core refused: "leader changed" (nothing proposed, retry at the next leader)
/// when this member no longer leads or hands leadership over.
fn proposal_refused(e: flotilla_raft::ProposeError) -> ApiError {
    use flotilla_raft::ProposeError as E;
    match e {
        E::NotLeader { .. } | E::TransferInProgress { .. } => ApiError::LeaderChanged,
        other => ApiError::Transfer(other.to_string()),
    }
}

/// A membership change the core refused, in etcd's words where etcd has them (etcdctl
/// users and scripts match on them).
fn membership_refused(e: flotilla_raft::ConfChangeError) -> ApiError {
    use flotilla_raft::ConfChangeError as E;
    match e {
        // Nothing was proposed: the client may retry at the (next) leader.
        E::NotLeader { .. } | E::TransferInProgress => ApiError::LeaderChanged,
        E::NotAMember { .. } => ApiError::MemberNotFound,
        E::NotALearner { .. } => ApiError::Transfer("can only promote a learner member".into()),
        E::LearnerLagging { .. } => ApiError::Transfer(
            "can only promote a learner member which is in sync with leader".into(),
        ),
        E::AlreadyMember { .. } => ApiError::Transfer("member ID already exist".into()),
        other => ApiError::Transfer(other.to_string()),
    }
}

/// A node's state, for Status and `flotilla dev`.
#[derive(Clone, Debug, Default)]
pub struct StatusInfo {
    /// Leader known (0: none).
    pub leader: u64,
    /// Term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Store revision.
    pub revision: i64,
    /// Approximate store size in bytes.
    pub db_size: i64,
    /// Whether this node is a learner.
    pub is_learner: bool,
    /// Current voters and learners.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// A storage error that stopped writes, if any.
    pub error: Option<String>,
    /// The members with their names and addresses.
    pub members: Vec<MemberEntry>,
}

/// A client request for the driver.
#[derive(Debug)]
pub enum Request {
    /// A write, through the log, made by a client for a user (`None`: auth was disabled).
    Write(pb::internal_request::Request, Option<String>, Reply<Applied>),
    /// A read: linearizable (ReadIndex, Thesis §6.4) unless `serializable`.
    Range(pb::RangeRequest, Reply<pb::RangeResponse>),
    /// A lease's remaining time and keys (a linearizable read; the remaining time is this
    /// member's estimate, from when it applied the grant or last renewal).
    LeaseTimeToLive(pb::LeaseTimeToLiveRequest, Reply<pb::LeaseTimeToLiveResponse>),
    /// Every lease (a linearizable read).
    LeaseLeases(Reply<pb::LeaseLeasesResponse>),
    /// The node's state.
    Status(oneshot::Sender<StatusInfo>),
    /// Leadership transfer (Thesis §3.10).
    MoveLeader(NodeId, oneshot::Sender<Result<(), ApiError>>),
    /// A membership change (Thesis §4): answered with the members once it is applied here.
    Member(pb::MemberChange, Reply<Vec<MemberEntry>>),
    /// The whole state (members and store) as a snapshot's bytes, at the applied index.
    Snapshot(Reply<Bytes>),
    /// etcd's HashKV: the store's hash up to a revision (0: the current one), with the
    /// revision it covers and the compaction revision.
    HashKv(i64, Reply<(u32, i64, i64)>),
    /// etcd's Hash: the whole state's hash (the store and the leases).
    Hash(Reply<u32>),
    /// etcd's alarms, as this member knows them (the replicated ones, and its own storage
    /// failure even before the cluster recorded it).
    Alarms(Reply<Vec<pb::AlarmMember>>),
    /// etcd's Defragment, as space is reclaimed here: a snapshot of the applied state now,
    /// then the log compacted up to it (its WAL segments deleted). Answered once saved.
    Defragment(Reply<()>),
}

/// What the cluster knows of a member: replicated through the log (`MemberAttr`) and kept
/// in snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRecord {
    /// Its name (empty until it has started and published it).
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
    /// The client URLs it advertises, comma-separated (empty until it has published them).
    pub client_url: String,
}

/// A member as the Cluster API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    /// Its id.
    pub id: u64,
    /// Its name (empty until it has started and published it).
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
    /// Its advertised client URLs, comma-separated (empty if not known yet).
    pub client_url: String,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// What a pending membership request waits for.
#[derive(Debug)]
enum MemberWait {
    Added(String),
    Promoted(u64),
    Removed(u64),
    Updated(u64, String),
}

/// A membership request waiting for its change to take effect here.
#[derive(Debug)]
struct MemberWaiter {
    wait: MemberWait,
    reply: Reply<Vec<MemberEntry>>,
    deadline: Instant,
    /// The request number sent with a change forwarded to the leader (0: not forwarded),
    /// which the leader's refusal names.
    request: u64,
}

/// The driver's input.
#[derive(Debug)]
pub enum Input {
    /// From a peer.
    Peer(NodeId, PeerFrame),
    /// From a client.
    Client(Request),
    /// A background snapshot write finished.
    SnapshotSaved(Result<flotilla_raft::SnapshotInfo, String>),
    /// The sync thread made durable every write of the WAL sync jobs through this number
    /// (or failed to).
    Synced(Result<u64, String>),
    /// From a client's watch stream.
    Watch(crate::watch::WatchInput),
    /// Stop after the current batch.
    Stop,
}

/// The driver's input channel. The gRPC services and the peer connections, which run on the
/// driver's own thread, and the background snapshot writer send to it.
pub type Inbox = tokio::sync::mpsc::UnboundedSender<Input>;

/// When the driver snapshots the store and compacts the log (Raft §7).
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Snapshot once this many entries were applied since the last one (etcd's
    /// `--snapshot-count`).
    pub every: u64,
    /// Entries kept in the log below the snapshot, so that followers slightly behind catch
    /// up from the log rather than a snapshot (etcd keeps 5000).
    pub keep: u64,
    /// And once the entries applied since the last snapshot hold at least this share of that
    /// snapshot's size. A snapshot copies the whole store (every version until compacted), so
    /// counting entries alone makes its cost grow with the store while the work it saves does
    /// not; with this rule the bytes snapshotted stay within `1 / ratio` times the bytes
    /// logged, and the log kept (in memory and on disk) within about `ratio` times the
    /// store. The default, 0.25, favours memory (the log is held in memory) over CPU.
    pub min_log_ratio: f64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy { every: 10_000, keep: 5_000, min_log_ratio: 0.25 }
    }
}

/// The fewest entries in a `Ready` whose sync is left to the sync thread (when none is
/// running). Measured on 2 vCPUs, alternating against syncing every write here: with
/// 16 and 64 clients, 23% and 12% more puts/s; with one client the p50 was unchanged at 2
/// (0.635 ms both) but 10% worse when lone entries were handed off too.
const DETACH_MIN_ENTRIES: usize = 2;

/// A step of the driver slower than this is logged (it delays every request behind it).
const SLOW: Duration = Duration::from_millis(100);

/// How long a client request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

struct PendingWrite {
    reply: Reply<Applied>,
    deadline: Instant,
    proposed_at: Instant,
}

struct PendingRead {
    kind: ReadKind,
    index: Option<u64>,
    deadline: Instant,
}

/// What a linearizable read reads, once its read index is applied.
enum ReadKind {
    Range(pb::RangeRequest, Reply<pb::RangeResponse>),
    LeaseTimeToLive(pb::LeaseTimeToLiveRequest, Reply<pb::LeaseTimeToLiveResponse>),
    LeaseLeases(Reply<pb::LeaseLeasesResponse>),
}

impl ReadKind {
    fn fail(self, e: ApiError) {
        match self {
            ReadKind::Range(_, reply) => drop(reply.send(Err(e))),
            ReadKind::LeaseTimeToLive(_, reply) => drop(reply.send(Err(e))),
            ReadKind::LeaseLeases(reply) => drop(reply.send(Err(e))),
        }
    }
}

/// etcd's largest lease TTL, seconds.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The driver's state.
pub struct Driver {
    node: Node<DiskLog<RealFs>>,
    mvcc: Mvcc,
    peers: Peers,
    tick: Duration,
    writes: HashMap<u64, PendingWrite>,
    /// Our proposals by log index, to fail the waiter if another entry lands there.
    proposed: BTreeMap<u64, u64>,
    reads: HashMap<u64, PendingRead>,
    next_id: u64,
    applied: u64,
    halted: Option<String>,
    policy: SnapshotPolicy,
    /// Index of the newest snapshot, and whether one is being written.
    snapshot_index: u64,
    snapshotting: bool,
    /// Defragment requests waiting for a snapshot to start (the next check starts one at
    /// once), and those waiting for the one being written.
    defrag_waiting: Vec<Reply<()>>,
    defrag_writing: Vec<Reply<()>>,
    /// Size of the newest snapshot, and the bytes of entries applied since it was taken.
    snapshot_bytes: u64,
    applied_bytes: u64,
    /// The driver's own input, for the background snapshot writer's report.
    self_tx: Inbox,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    leader: Option<NodeId>,
    /// Every member's name and URLs (replicated through the log and in snapshots).
    registry: BTreeMap<u64, MemberRecord>,
    /// etcd's alarms (member, `pb::alarm_type`): cluster state, changed through the log and
    /// kept in snapshots.
    alarms: BTreeSet<(u64, i32)>,
    /// When a member whose storage failed next asks the leader to raise its alarm.
    next_alarm_raise: Instant,
    me: MemberRecord,
    published: bool,
    member_waits: Vec<MemberWaiter>,
    /// Automatic compaction of the store's history, and when to look next.
    auto_compaction: Option<crate::config::AutoCompaction>,
    next_compaction_check: Instant,
    /// For periodic compaction: the revision at each check, oldest first.
    revision_samples: std::collections::VecDeque<(Instant, i64)>,
    /// The watchers of this member's clients.
    watch: crate::watch::WatchHub,
    /// The versions the entry being applied wrote (reused, for the watchers).
    changes: Vec<crate::mvcc::Change>,
    /// When each lease expires, by this member's clock: from when it applied the grant or
    /// the last renewal, and reset to a whole TTL when it becomes leader (as etcd's lessor
    /// promotes), so that a leader change never shortens a lease. The leader revokes what
    /// expires, through the log.
    lease_expiry: HashMap<i64, Instant>,
    /// `process` released answers to clients: `run` lets them be written before it writes
    /// the peers' messages.
    answered: bool,
    /// Revocations proposed and not yet applied, and when (proposed again after a while,
    /// in case the proposal was lost).
    revoking: HashMap<i64, Instant>,
    /// The shortest TTL granted (etcd: 1.5 election timeouts, rounded up to seconds), so that
    /// a lease outlives a leader election.
    min_lease_ttl: i64,
    /// The WAL sync thread's job queue (`None`: sync on this thread), the number of the
    /// last job sent, and what waits for the jobs still running, oldest first.
    sync_jobs: Option<std::sync::mpsc::Sender<SyncJob>>,
    sync_seq: u64,
    /// The auth store (applied here) and tokens, shared with the gRPC services.
    auth: SharedAuth,
    unsynced: std::collections::VecDeque<Unsynced>,
}

/// A WAL sync for the sync thread: everything written before it was sent.
struct SyncJob {
    seq: u64,
    file: flotilla_storage::DetachedSync,
}

/// What waits for the sync job `seq`: the answers the `Ready` contract holds until the
/// write is durable (step 3), and the entry whose durability the core is to be told of.
struct Unsynced {
    seq: u64,
    persisted: Option<flotilla_raft::EntryId>,
    messages: Vec<flotilla_raft::Message>,
}

/// The WAL sync thread: syncs what the driver wrote, as the driver goes on (Thesis §10.2.1:
/// a leader's own write may overlap replication, and it commits with the followers' acks
/// if they come first). Jobs queued meanwhile share one `fdatasync`: every write before the
/// newest job is in its file, or in an older segment synced when the WAL moved on.
fn sync_thread(
    jobs: std::sync::mpsc::Receiver<SyncJob>,
    inbox: Inbox,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    while let Ok(mut job) = jobs.recv() {
        while let Ok(newer) = jobs.try_recv() {
            job = newer;
        }
        let t0 = Instant::now();
        let r = job.file.sync_data();
        let took = t0.elapsed();
        metrics.fsync.observe(took);
        metrics.background_syncs.fetch_add(1, Ordering::Relaxed);
        if took > SLOW {
            // As etcd's "slow fdatasync": the disk, not the protocol, is the bound.
            tracing::warn!(took_ms = took.as_millis() as u64, "slow WAL fsync");
        }
        let failed = r.is_err();
        let r = r.map(|_| job.seq).map_err(|e| format!("WAL fsync: {e}"));
        // After a failed fsync the kernel may have dropped the pages it could not write, so a
        // later fsync that succeeds proves nothing about them: no more syncs, no more reports.
        if inbox.send(Input::Synced(r)).is_err() || failed {
            return;
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.node.id())
            .field("applied", &self.applied)
            .finish()
    }
}

/// What the driver is connected to.
#[derive(Debug)]
pub struct Wiring {
    /// The peer transport.
    pub peers: Peers,
    /// One Raft tick.
    pub tick: Duration,
    /// When to snapshot.
    pub policy: SnapshotPolicy,
    /// The driver's own input channel (the background snapshot writer reports there).
    pub self_tx: Inbox,
    /// Counters for `/metrics`.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The initial members' names and URLs, by id (client URLs: this member's only).
    pub registry: BTreeMap<u64, MemberRecord>,
    /// This member's name, peer URL and client URL, published to the others once it runs.
    pub me: MemberRecord,
    /// Automatic compaction of the store's history, if any.
    pub auto_compaction: Option<crate::config::AutoCompaction>,
    /// How often quiet watchers that asked for it get a progress notification.
    pub watch_progress_notify_interval: Duration,
    /// The auth store and tokens, shared with the gRPC services.
    pub auth: SharedAuth,
}

/// Why the driver could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data directory could not be read or created.
    #[error("data directory: {0}")]
    Storage(#[from] flotilla_storage::WalError),
    /// The stored state is inconsistent.
    #[error("raft: {0}")]
    Raft(String),
}

impl Driver {
    /// Opens (or creates) the node's data in `dir` and rebuilds the store from the newest
    /// snapshot and the log after it.
    pub fn open(
        config: Config,
        dir: &std::path::Path,
        membership: flotilla_raft::Membership,
        w: Wiring,
    ) -> Result<Driver, StartError> {
        let Wiring {
            peers,
            tick,
            policy,
            self_tx,
            metrics,
            registry,
            me,
            auto_compaction,
            watch_progress_notify_interval,
            auth,
        } = w;
        let wal_dir = dir.join("wal");
        let opts = flotilla_storage::WalOptions::default();
        let log = match DiskLog::open(RealFs, &wal_dir, opts) {
            Ok((log, rec)) => {
                if let Some((path, at)) = rec.torn_tail {
                    tracing::warn!(file = %path.display(), offset = at, "cut off a torn WAL tail");
                }
                log
            }
            Err(flotilla_storage::WalError::NotFound(_)) => {
                DiskLog::create(RealFs, &wal_dir, membership, opts)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut registry = registry;
        let mut alarms = BTreeSet::new();
        let (mvcc, applied, snapshot_bytes) = match log.load_snapshot()? {
            Some((meta, data)) => {
                let (r, a, auth_store, m) = decode_state(&data).ok_or_else(|| {
                    StartError::Raft(format!("snapshot {} does not decode", meta.id()))
                })?;
                registry.extend(r);
                alarms = a;
                auth.lock().store = auth_store;
                (m, meta.index, data.len() as u64)
            }
            None => (Mvcc::new(), LogIndex::ZERO, 0),
        };
        let node =
            Node::restart(config, log, applied).map_err(|e| StartError::Raft(e.to_string()))?;
        let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
        let (inbox, m) = (self_tx.clone(), metrics.clone());
        let sync_jobs = match std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || sync_thread(jobs_rx, inbox, m))
        {
            Ok(_) => Some(jobs_tx),
            Err(e) => {
                tracing::warn!(error = %e, "no WAL sync thread: the driver syncs itself");
                None
            }
        };
        // FLOTILLA_TEST_REQUEST_ID_SEED: for tests only, to make members' ids collide.
        let seed = std::env::var("FLOTILLA_TEST_REQUEST_ID_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        Ok(Driver {
            node,
            mvcc,
            peers,
            tick,
            writes: HashMap::new(),
            proposed: BTreeMap::new(),
            reads: HashMap::new(),
            // Request ids must not repeat across restarts (an old entry could be mistaken for
            // a new request): start from the clock.
            next_id: seed,
            applied: applied.0,
            halted: None,
            policy,
            snapshot_index: applied.0,
            snapshotting: false,
            defrag_waiting: Vec::new(),
            defrag_writing: Vec::new(),
            snapshot_bytes,
            applied_bytes: 0,
            self_tx,
            metrics,
            leader: None,
            registry,
            alarms,
            next_alarm_raise: Instant::now(),
            me,
            published: false,
            member_waits: Vec::new(),
            auto_compaction,
            next_compaction_check: Instant::now(),
            revision_samples: std::collections::VecDeque::new(),
            watch: crate::watch::WatchHub::new(watch_progress_notify_interval),
            changes: Vec::new(),
            lease_expiry: HashMap::new(),
            answered: false,
            revoking: HashMap::new(),
            // Elections start after 10 to 20 ticks without a leader.
            min_lease_ttl: ((tick * 15).as_millis() as u64).div_ceil(1000).max(1) as i64,
            sync_jobs,
            sync_seq: 0,
            auth,
            unsynced: std::collections::VecDeque::new(),
        })
    }

    /// Runs until `Stop` or until every sender is gone. Runs on the driver's thread, inside
    /// the [`tokio::task::LocalSet`] that also holds the peer connections, and yields only to
    /// wait for input. It blocks that thread while it syncs a lone entry (nothing else waits)
    /// and leaves a batch's sync to the sync thread.
    pub async fn run(mut self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Input>) {
        let mut next_tick = Instant::now() + self.tick;
        // One timer for the whole run, moved only when a tick passes: a new timer per wait
        // (`timeout_at` around each `recv`) registered itself with tokio's timer each time,
        // and each registration woke the runtime's own thread through its eventfd, a
        // `write` and an extra `epoll_wait` for every wait of the loop (one per put at one
        // client).
        let tick = tokio::time::sleep_until(next_tick.into());
        tokio::pin!(tick);
        loop {
            let next = std::future::poll_fn(|cx| match rx.poll_recv(cx) {
                std::task::Poll::Ready(input) => std::task::Poll::Ready(Ok(input)),
                std::task::Poll::Pending => std::future::Future::poll(tick.as_mut(), cx).map(Err),
            });
            match next.await {
                Ok(None | Some(Input::Stop)) => break,
                Ok(Some(input)) => {
                    self.handle(input);
                    // Group commit: take everything already queued before the next Ready.
                    let mut stop = false;
                    for _ in 0..4096 {
                        match rx.try_recv() {
                            Ok(Input::Stop) => {
                                stop = true;
                                break;
                            }
                            Ok(i) => self.handle(i),
                            Err(_) => break,
                        }
                    }
                    if stop {
                        break;
                    }
                }
                Err(()) => {}
            }
            if Instant::now() >= next_tick {
                next_tick += self.tick;
                tick.as_mut().reset(next_tick.into());
                if self.halted.is_none() {
                    if let Err(e) = self.node.tick() {
                        self.halt(e.to_string());
                    }
                }
                self.expire();
                self.raise_storage_alarm();
                self.maybe_auto_compact();
                self.expire_leases();
                let h = self.header();
                self.watch.notify_progress(Instant::now(), h);
                self.metrics.watchers.store(self.watch.watchers() as u64, Ordering::Relaxed);
            }
            self.process();
            if std::mem::take(&mut self.answered) {
                // Let the gRPC tasks on this thread write the answers first (see `process`).
                tokio::task::yield_now().await;
            }
            self.peers.flush();
        }
        let _ = self.node.store_mut().sync();
        tracing::info!(applied = self.applied, "driver stopped");
    }

    fn header(&self) -> Header {
        Header { revision: self.mvcc.revision(), term: self.node.term().0 }
    }

    fn halt(&mut self, e: String) {
        tracing::error!(error = %e, "storage failure: the node stops writing");
        self.metrics.storage_failed.store(1, Ordering::Relaxed);
        for (_, w) in self.writes.drain() {
            let _ = w.reply.send(Err(ApiError::Storage(e.clone())));
        }
        for w in self.defrag_waiting.drain(..).chain(self.defrag_writing.drain(..)) {
            let _ = w.send(Err(ApiError::Storage(e.clone())));
        }
        self.halted = Some(e);
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Peer(_, PeerFrame::Raft(m)) => {
                if self.halted.is_none() {
                    if let Err(e) = self.node.step(m) {
                        tracing::debug!(error = %e, "message refused");
                    }
                }
            }
            Input::Peer(from, PeerFrame::Forward(data)) => {
                // A follower's client request: a membership change to make, or a write to
                // propose, if we lead. What is not proposed is refused back to the follower
                // (a request numbered 0 has nobody waiting: it is dropped).
                match pb::InternalRequest::decode(data.clone()) {
                    Ok(pb::InternalRequest {
                        request: Some(pb::internal_request::Request::MemberChange(c)),
                        ..
                    }) => {
                        if let Err(e) = self.member_change(&c) {
                            self.refuse_forwarded(NodeId(c.from), c.request, e);
                        }
                    }
                    // A failed member asks again until restarted (id 0: nobody waits for
                    // an answer): once its alarm is recorded, asking costs no log entry.
                    Ok(pb::InternalRequest {
                        id: 0,
                        request: Some(pb::internal_request::Request::Alarm(a)),
                        ..
                    }) if a.action == pb::alarm_action::ACTIVATE
                        && self.alarms.contains(&(a.member_id, a.alarm)) => {}
                    Ok(req) => {
                        if let Err(e) = self.node.propose(data) {
                            self.refuse_forwarded(from, req.id, proposal_refused(e));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "malformed forwarded request dropped"),
                }
            }
            Input::Peer(_, PeerFrame::Refused(data)) => match pb::ForwardRefusal::decode(data) {
                Ok(r) => {
                    let e = if r.not_found {
                        ApiError::MemberNotFound
                    } else if r.leader_changed {
                        ApiError::LeaderChanged
                    } else {
                        ApiError::Transfer(r.message)
                    };
                    if let Some(i) = self.member_waits.iter().position(|w| w.request == r.request) {
                        let _ = self.member_waits.swap_remove(i).reply.send(Err(e));
                    } else {
                        self.fail_write(r.request, e);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "malformed refusal dropped"),
            },
            Input::Client(req) => self.client(req),
            Input::SnapshotSaved(r) => self.snapshot_saved(r),
            Input::Synced(Ok(seq)) => self.release_synced(seq),
            Input::Synced(Err(e)) => self.halt(e),
            Input::Watch(w) => {
                let h = self.header();
                self.watch.handle(w, &self.mvcc, h);
            }
            Input::Stop => {}
        }
    }

    fn client(&mut self, req: Request) {
        match req {
            Request::Write(mut w, user, reply) => {
                if let Some(e) = &self.halted {
                    let _ = reply.send(Err(ApiError::Storage(e.clone())));
                    return;
                }
                self.next_id += 1;
                let id = self.next_id;
                if let pb::internal_request::Request::LeaseGrant(g) = &mut w {
                    if g.ttl > MAX_LEASE_TTL {
                        let _ = reply.send(Err(ApiError::LeaseTtlTooLarge));
                        return;
                    }
                    g.ttl = g.ttl.max(self.min_lease_ttl);
                    if g.id == 0 {
                        // Unique across members and restarts: this member's id above a
                        // clock-seeded counter, positive.
                        g.id = (((self.node.id().0 & 0xffff) << 47) | (id & ((1 << 47) - 1))).max(1)
                            as i64;
                    }
                }
                self.metrics.proposals.fetch_add(1, Ordering::Relaxed);
                let data = Bytes::from(
                    pb::InternalRequest {
                        anonymous: user.is_none(),
                        user: user.unwrap_or_default(),
                        id,
                        request: Some(w),
                        member: self.node.id().0,
                    }
                    .encode_to_vec(),
                );
                match self.node.propose(data.clone()) {
                    Ok(entry) => {
                        self.proposed.insert(entry.index.0, id);
                    }
                    Err(flotilla_raft::ProposeError::NotLeader { leader_hint: Some(l) }) => {
                        // A client may talk to any member: the leader proposes it, and we
                        // answer when we apply it here.
                        self.peers.send(l, &PeerFrame::Forward(data));
                    }
                    Err(flotilla_raft::ProposeError::NotLeader { leader_hint: None }) => {
                        let _ = reply.send(Err(ApiError::NoLeader));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ApiError::Transfer(e.to_string())));
                        return;
                    }
                }
                let now = Instant::now();
                let deadline = now + REQUEST_TIMEOUT;
                self.writes.insert(id, PendingWrite { reply, deadline, proposed_at: now });
            }
            Request::Range(r, reply) => {
                if r.serializable {
                    let out = self.mvcc.range(&r).map_err(ApiError::from);
                    let _ = reply.send(out.map(|o| (o, self.header())));
                    return;
                }
                self.read(ReadKind::Range(r, reply));
            }
            Request::LeaseTimeToLive(r, reply) => self.read(ReadKind::LeaseTimeToLive(r, reply)),
            Request::LeaseLeases(reply) => self.read(ReadKind::LeaseLeases(reply)),
            Request::Status(reply) => {
                let st = self.node.status();
                let m = self.node.membership();
                let _ = reply.send(StatusInfo {
                    leader: st.leader.map_or(0, |l| l.0),
                    term: st.term.0,
                    commit: st.commit.0,
                    applied: self.applied,
                    revision: self.mvcc.revision(),
                    db_size: self.mvcc.size_bytes() as i64,
                    is_learner: m.learners().contains(&self.node.id()),
                    voters: m.voters().iter().chain(m.outgoing_voters()).map(|v| v.0).collect(),
                    learners: m.learners().iter().map(|v| v.0).collect(),
                    error: self.halted.clone(),
                    members: self.members(),
                });
            }
            Request::Member(change, reply) => {
                let wait = match change.kind {
                    1 | 2 => MemberWait::Added(change.peer_url.clone()),
                    3 => MemberWait::Promoted(change.id),
                    5 => MemberWait::Updated(change.id, change.peer_url.clone()),
                    _ => MemberWait::Removed(change.id),
                };
                let mut request = 0;
                let r = if self.is_leader() {
                    self.member_change(&change)
                } else if let Some(l) = self.leader {
                    // What this member can tell from its own view of the members is refused
                    // here; the leader answers a refusal of the rest with `Refused`.
                    self.member_precheck(&change).map(|()| {
                        self.next_id += 1;
                        request = self.next_id;
                        let req = pb::InternalRequest::internal(
                            pb::internal_request::Request::MemberChange(pb::MemberChange {
                                from: self.node.id().0,
                                request,
                                ..change
                            }),
                        );
                        self.peers.send(l, &PeerFrame::Forward(Bytes::from(req.encode_to_vec())));
                    })
                } else {
                    Err(ApiError::NoLeader)
                };
                match r {
                    Ok(()) => self.member_waits.push(MemberWaiter {
                        wait,
                        reply,
                        deadline: Instant::now() + REQUEST_TIMEOUT,
                        request,
                    }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Request::Snapshot(reply) => {
                let auth = self.auth.lock().store.clone();
                let data =
                    Bytes::from(encode_state(&self.registry, &self.alarms, &auth, &self.mvcc));
                let _ = reply.send(Ok((data, self.header())));
            }
            Request::HashKv(rev, reply) => {
                let compacted = self.mvcc.compact_revision();
                let r = self
                    .mvcc
                    .hash_kv(rev)
                    .map(|(hash, rev)| ((hash, rev, compacted), self.header()));
                let _ = reply.send(r.map_err(ApiError::from));
            }
            Request::Alarms(reply) => {
                let _ = reply.send(Ok((self.alarm_list(), self.header())));
            }
            Request::Hash(reply) => {
                let _ = reply.send(Ok((self.mvcc.hash_all(), self.header())));
            }
            Request::Defragment(reply) => {
                if let Some(e) = &self.halted {
                    let _ = reply.send(Err(ApiError::Storage(e.clone())));
                } else {
                    // Answered by `maybe_snapshot` (at once if the newest snapshot already
                    // holds everything applied), or when the snapshot it starts is saved.
                    self.defrag_waiting.push(reply);
                }
            }
            Request::MoveLeader(target, reply) => {
                let r = self
                    .node
                    .transfer_leader(target)
                    .map_err(|e| ApiError::Transfer(e.to_string()));
                let _ = reply.send(r);
            }
        }
    }

    /// Starts a linearizable read (Thesis §6.4): answered once this member has applied the
    /// leader's commit index as of now.
    fn read(&mut self, kind: ReadKind) {
        if let Some(e) = &self.halted {
            // A stopped node cannot confirm leadership; local reads still work.
            return kind.fail(ApiError::Storage(format!("{e}; serializable reads still work")));
        }
        self.next_id += 1;
        let id = self.next_id;
        match self.node.read_index(Bytes::copy_from_slice(&id.to_le_bytes())) {
            Ok(()) => {
                let deadline = Instant::now() + REQUEST_TIMEOUT;
                self.reads.insert(id, PendingRead { kind, index: None, deadline });
            }
            Err(flotilla_raft::ReadError::NoLeader) => kind.fail(ApiError::NoLeader),
            Err(e) => kind.fail(ApiError::Transfer(e.to_string())),
        }
    }

    /// The leader revokes expired leases through the log; every member keeps its estimate
    /// of when each lease expires.
    fn expire_leases(&mut self) {
        let now = Instant::now();
        let leases = self.mvcc.leases();
        self.lease_expiry.retain(|id, _| leases.contains_key(id));
        self.revoking.retain(|id, _| leases.contains_key(id));
        let mut expired = Vec::new();
        for (id, l) in leases {
            let ttl = Duration::from_secs(l.ttl.max(0) as u64);
            // A lease known from a snapshot or a restart: a whole TTL from now.
            let at = *self.lease_expiry.entry(*id).or_insert(now + ttl);
            let retry = self.revoking.get(id).is_none_or(|t| now >= *t + REQUEST_TIMEOUT);
            if at <= now && retry {
                expired.push(*id);
            }
        }
        if !self.is_leader() || self.halted.is_some() {
            return;
        }
        for id in expired.into_iter().take(1000) {
            // Conditional: a renewal ordered before this in the log cancels it.
            let renewals = self.mvcc.lease(id).map_or(0, |l| l.renewals);
            let req = pb::InternalRequest::internal(pb::internal_request::Request::LeaseExpire(
                pb::LeaseExpire { id, renewals },
            ));
            if self.node.propose(Bytes::from(req.encode_to_vec())).is_ok() {
                tracing::info!(lease = id, "lease expired: revocation proposed");
                self.revoking.insert(id, now);
            }
        }
    }

    /// Fails requests past their deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> =
            self.writes.iter().filter(|(_, w)| w.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(w) = self.writes.remove(&id) {
                self.metrics.proposals_failed.fetch_add(1, Ordering::Relaxed);
                let _ = w.reply.send(Err(ApiError::Timeout));
            }
        }
        let late: Vec<u64> =
            self.reads.iter().filter(|(_, r)| r.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(r) = self.reads.remove(&id) {
                r.kind.fail(ApiError::Timeout);
            }
        }
    }

    /// Executes every `Ready` the node has, in the documented order.
    fn process(&mut self) {
        while self.halted.is_none() && self.node.has_ready() {
            let rd = match self.node.ready() {
                Ok(rd) => rd,
                Err(e) => return self.halt(e.to_string()),
            };
            let ack = rd.ack();
            if let Some(soft) = rd.soft_state {
                tracing::info!(
                    role = ?soft.role,
                    leader = ?soft.leader.map(|l| l.0),
                    term = self.node.term().0,
                    "raft state"
                );
                if soft.leader != self.leader {
                    self.leader = soft.leader;
                    if soft.leader == Some(self.node.id()) {
                        // etcd's lessor promotion: a new leader gives every lease a whole
                        // TTL, since it cannot know how long its holder went without a
                        // leader to renew it with.
                        let now = Instant::now();
                        for (id, l) in self.mvcc.leases() {
                            let ttl = Duration::from_secs(l.ttl.max(0) as u64);
                            self.lease_expiry.insert(*id, now + ttl);
                        }
                        self.revoking.clear();
                    }
                    self.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .has_leader
                        .store(u64::from(soft.leader.is_some()), Ordering::Relaxed);
                }
            }
            // 1. The leader's appends and heartbeats go out before its own write. When
            // nothing is to be written they are most often the commit index for the
            // followers: those wait until the answers this Ready releases are written
            // (`run` flushes them after the gRPC tasks have run), as a client waits on
            // them and a follower does not.
            let writes = !rd.entries.is_empty() || rd.must_sync || rd.snapshot.is_some();
            for m in rd.messages {
                self.peers.send(m.to, &PeerFrame::Raft(m));
            }
            if writes {
                self.peers.flush();
            }
            // 2. Persist (snapshot chunks, a completed snapshot, entries, hard state) and sync.
            let store = self.node.store_mut();
            let mut r = Ok(());
            for c in &rd.snapshot_chunks {
                r = r.and_then(|_| store.write_snapshot_chunk(c));
            }
            if let (Ok(()), Some(meta)) = (&r, &rd.snapshot) {
                match store.install_snapshot(meta) {
                    Ok(data) => match decode_state(&data) {
                        Some((r, a, auth, m)) => {
                            self.mvcc = m;
                            self.alarms = a;
                            self.auth.lock().store = auth;
                            self.watch.store_replaced();
                            for (id, record) in r {
                                self.learn_member(id, record);
                            }
                            self.applied = meta.index.0;
                            self.snapshot_index = meta.index.0;
                            self.snapshot_bytes = data.len() as u64;
                            self.applied_bytes = 0;
                            self.metrics.snapshots_installed.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            return self.halt(format!("snapshot {} does not decode", meta.id()))
                        }
                    },
                    Err(e) => r = Err(e),
                }
            }
            let store = self.node.store_mut();
            store.write(&rd.entries, rd.hard_state);
            // A batch of entries (or any write while a sync runs) is synced by the sync
            // thread while this one goes on: it takes the next requests, and commits with
            // the followers' acknowledgements if they come before its own sync. A lone entry
            // is synced here: nothing else waits, and the hand-off would cost two thread
            // wake-ups on its path. Snapshots are written and installed here.
            let detach = rd.must_sync
                && r.is_ok()
                && rd.snapshot.is_none()
                && rd.snapshot_chunks.is_empty()
                && self.sync_jobs.is_some()
                && (rd.entries.len() >= DETACH_MIN_ENTRIES || !self.unsynced.is_empty());
            let mut ack = ack;
            let mut waits = !self.unsynced.is_empty();
            if detach {
                match store.write_unsynced() {
                    Ok(Some(file)) => {
                        self.sync_seq += 1;
                        let job = SyncJob { seq: self.sync_seq, file };
                        if self.sync_jobs.as_ref().is_some_and(|j| j.send(job).is_ok()) {
                            waits = true;
                        } else {
                            // The sync thread is gone (it only returns when the driver is).
                            return self.halt("the WAL sync thread stopped".into());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return self.halt(e.to_string()),
                }
            } else {
                let t0 = Instant::now();
                if let Err(e) = r.and_then(|_| if rd.must_sync { store.sync() } else { Ok(()) }) {
                    return self.halt(e.to_string());
                }
                if rd.must_sync {
                    let took = t0.elapsed();
                    self.metrics.fsync.observe(took);
                    if took > SLOW {
                        tracing::warn!(
                            took_ms = took.as_millis() as u64,
                            "slow WAL write and fsync"
                        );
                    }
                    // Everything written is durable: so is what earlier jobs wait for.
                    self.release_synced(u64::MAX);
                    waits = false;
                }
            }
            // 3. Answers, once what they promise is durable: now, or when the sync job
            // (and every one before it) is done, in order.
            if waits {
                let (persisted, rest) = ack.split_persisted();
                ack = rest;
                let messages = rd.persisted_messages;
                self.unsynced.push_back(Unsynced { seq: self.sync_seq, persisted, messages });
            } else if !rd.persisted_messages.is_empty() {
                for m in rd.persisted_messages {
                    self.peers.send(m.to, &PeerFrame::Raft(m));
                }
                self.peers.flush();
            }
            // 4. Apply.
            let t1 = Instant::now();
            let n = rd.committed_entries.len();
            self.answered |= n > 0 || !rd.read_states.is_empty();
            for e in rd.committed_entries {
                self.apply(e);
            }
            if t1.elapsed() > SLOW {
                tracing::warn!(
                    took_ms = t1.elapsed().as_millis() as u64,
                    entries = n,
                    "slow apply"
                );
            }
            for rs in rd.read_states {
                let id = u64::from_le_bytes(rs.ctx[..].try_into().unwrap_or([0; 8]));
                if let Some(r) = self.reads.get_mut(&id) {
                    r.index = Some(rs.index.0);
                }
            }
            for ctx in rd.aborted_reads {
                let id = u64::from_le_bytes(ctx[..].try_into().unwrap_or([0; 8]));
                if let Some(r) = self.reads.remove(&id) {
                    r.kind.fail(ApiError::LeaderChanged);
                }
            }
            // 5. Advance.
            self.node.advance(ack);
            let lag = self.node.commit_index().0.saturating_sub(self.applied);
            self.metrics.apply_lag.store(lag, Ordering::Relaxed);
        }
        self.serve_reads();
        self.check_members();
        self.maybe_snapshot();
        let h = self.header();
        self.watch.catch_up(&self.mvcc, h);
    }

    /// The sync jobs through `seq` are done: sends the answers that waited for them and
    /// tells the core which entries are durable, oldest first.
    fn release_synced(&mut self, seq: u64) {
        if self.halted.is_some() {
            return; // a failed sync: what waited for it is never released
        }
        let mut sent = false;
        while self.unsynced.front().is_some_and(|u| u.seq <= seq) {
            let u = self.unsynced.pop_front().expect("checked: a front");
            for m in u.messages {
                self.peers.send(m.to, &PeerFrame::Raft(m));
                sent = true;
            }
            if let Some(id) = u.persisted {
                self.node.advance(flotilla_raft::Ack::persisted(id));
            }
        }
        if sent {
            self.peers.flush();
        }
    }

    /// etcd's automatic compaction: the leader proposes a Compaction through the log, so
    /// every member compacts at the same revision. Every member samples its revision, so
    /// that a new leader knows what was current a period ago.
    fn maybe_auto_compact(&mut self) {
        use crate::config::AutoCompaction;
        let Some(ac) = self.auto_compaction else { return };
        let now = Instant::now();
        if now < self.next_compaction_check {
            return;
        }
        let revision = self.mvcc.revision();
        let (interval, target) = match ac {
            AutoCompaction::Revisions(n) => (Duration::from_secs(5), revision - n),
            AutoCompaction::Periodic(period) => {
                self.revision_samples.push_back((now, revision));
                // The newest sample at least a period old is where history may start.
                let mut target = 0;
                while let Some(&(at, rev)) = self.revision_samples.front() {
                    if now.duration_since(at) < period {
                        break;
                    }
                    target = rev;
                    self.revision_samples.pop_front();
                }
                ((period / 10).max(Duration::from_secs(1)), target)
            }
        };
        self.next_compaction_check = now + interval;
        if !self.is_leader() || self.halted.is_some() || target <= self.mvcc.compact_revision() {
            return;
        }
        let req = pb::InternalRequest::internal(pb::internal_request::Request::Compaction(
            pb::CompactionRequest { revision: target, physical: false },
        ));
        match self.node.propose(Bytes::from(req.encode_to_vec())) {
            Ok(_) => tracing::info!(revision = target, "automatic compaction proposed"),
            Err(e) => tracing::debug!(error = %e, "automatic compaction not proposed"),
        }
    }

    /// Raft §7: once `policy.every` entries were applied since the last snapshot, take the
    /// store's state at the applied index (a copy made here, so applies go on) and write it
    /// on another thread; the log is compacted when the write reports back.
    fn maybe_snapshot(&mut self) {
        if !self.snapshotting
            && self.halted.is_none()
            && !self.defrag_waiting.is_empty()
            && self.applied <= self.snapshot_index
        {
            // A defragment with nothing applied since the newest snapshot: only the log
            // before it is left to reclaim.
            self.compact_log(self.snapshot_index, 0);
            let h = self.header();
            for w in self.defrag_waiting.drain(..) {
                let _ = w.send(Ok(((), h)));
            }
        }
        let forced = !self.defrag_waiting.is_empty() && self.applied > self.snapshot_index;
        if self.snapshotting
            || self.halted.is_some()
            || !forced
                && (self.applied < self.snapshot_index + self.policy.every
                    || (self.applied_bytes as f64)
                        < self.snapshot_bytes as f64 * self.policy.min_log_ratio)
        {
            return;
        }
        // A snapshot must not get ahead of the log it replaces: with syncs running, not every
        // applied entry need be durable here yet (a leader applies what its followers made
        // durable), and a restart would find the log ending before the snapshot.
        if !self.unsynced.is_empty() {
            if let Err(e) = self.node.store_mut().sync() {
                return self.halt(e.to_string());
            }
            self.release_synced(u64::MAX);
        }
        let meta = match self.node.snapshot_meta(LogIndex(self.applied)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot describe a snapshot yet");
                return;
            }
        };
        let writer = match self.node.store().snapshot_writer() {
            Ok(w) => w,
            Err(e) => return self.halt(e.to_string()),
        };
        // A clone shares every key and value (reference-counted bytes), so the copy taken here
        // is cheap; the encoding and the write happen on the writer thread.
        let view = self.mvcc.clone();
        let registry = self.registry.clone();
        let alarms = self.alarms.clone();
        let auth = self.auth.lock().store.clone();
        let tx = self.self_tx.clone();
        self.snapshotting = true;
        self.applied_bytes = 0;
        self.defrag_writing.append(&mut self.defrag_waiting);
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let r = save_state(&writer, &meta, &registry, &alarms, &auth, &view)
                .map_err(|e| e.to_string());
            let _ = tx.send(Input::SnapshotSaved(r));
        });
        if let Err(e) = spawned {
            self.snapshotting = false;
            tracing::warn!(error = %e, "cannot start the snapshot writer");
        }
    }

    fn snapshot_saved(&mut self, r: Result<flotilla_raft::SnapshotInfo, String>) {
        self.snapshotting = false;
        let info = match r {
            Ok(i) => i,
            Err(e) => {
                let e = format!("snapshot write: {e}");
                for w in self.defrag_writing.drain(..) {
                    let _ = w.send(Err(ApiError::Storage(e.clone())));
                }
                return self.halt(e);
            }
        };
        let index = info.meta.index.0;
        self.snapshot_bytes = info.size;
        self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        self.node.store_mut().snapshot_saved(info);
        self.snapshot_index = self.snapshot_index.max(index);
        // A defragment asked for the space back: the log goes up to the snapshot (a follower
        // that still lacks some of it gets the snapshot instead). Otherwise some entries stay
        // for followers slightly behind.
        let keep = if self.defrag_writing.is_empty() { self.policy.keep } else { 0 };
        self.compact_log(index, keep);
        if self.halted.is_none() {
            let h = self.header();
            for w in self.defrag_writing.drain(..) {
                let _ = w.send(Ok(((), h)));
            }
        }
    }

    /// Compacts the log up to `keep` entries before `index`, which a saved snapshot covers.
    fn compact_log(&mut self, index: u64, keep: u64) {
        let first = self.node.store().first_index().prev().0;
        let at = LogIndex(index.saturating_sub(keep).max(first));
        if at.0 <= first {
            return;
        }
        if let Ok(at) = self.node.snapshot_meta(at) {
            if let Err(e) = self.node.store_mut().compact(&at) {
                return self.halt(e.to_string());
            }
            tracing::info!(
                snapshot = index,
                compacted_through = at.index.0,
                "snapshot saved, log compacted"
            );
        }
    }

    /// The leader's half of a membership change (Thesis §4): a new member's address goes
    /// into the log first, so that everyone can reach it once the change makes it a member.
    fn member_change(&mut self, c: &pb::MemberChange) -> Result<(), ApiError> {
        use flotilla_raft::ConfChange;
        if c.kind == 5 {
            return self.update_member(c);
        }
        let change = match c.kind {
            1 | 2 => {
                if crate::config::parse_peer_url("peer URL", &c.peer_url).is_err() {
                    return Err(ApiError::Transfer(format!("bad peer URL {:?}", c.peer_url)));
                }
                if self.registry.values().any(|r| r.peer_url == c.peer_url)
                    && self
                        .node
                        .membership()
                        .members()
                        .any(|m| self.registry.get(&m.0).is_some_and(|r| r.peer_url == c.peer_url))
                {
                    return Err(ApiError::Transfer("Peer URLs already exists".into()));
                }
                let id = self
                    .registry
                    .keys()
                    .copied()
                    .chain(self.node.membership().members().map(|m| m.0))
                    .max()
                    .unwrap_or(0)
                    + 1;
                let attr = pb::InternalRequest::internal(
                    pb::internal_request::Request::MemberAttr(pb::MemberAttr {
                        id,
                        name: String::new(),
                        peer_url: c.peer_url.clone(),
                        client_url: String::new(),
                    }),
                );
                self.node.propose(Bytes::from(attr.encode_to_vec())).map_err(proposal_refused)?;
                if c.kind == 1 {
                    ConfChange::AddVoter(NodeId(id))
                } else {
                    ConfChange::AddLearner(NodeId(id))
                }
            }
            _ if !self.node.membership().contains(NodeId(c.id)) => {
                return Err(ApiError::MemberNotFound)
            }
            3 => ConfChange::PromoteLearner(NodeId(c.id)),
            _ => ConfChange::Remove(NodeId(c.id)),
        };
        self.node.propose_conf_change(change).map(|_| ()).map_err(membership_refused)
    }

    /// Tells the member that forwarded request number `request` why it was not proposed, so
    /// that its client hears at once (a request numbered 0 has nobody waiting for it). Here
    /// no longer the leader, or handing leadership over, it says "leader changed": nothing
    /// was proposed and the client may retry.
    fn refuse_forwarded(&self, to: NodeId, request: u64, e: ApiError) {
        if to.0 == 0 || request == 0 {
            return;
        }
        let leader_changed = e == ApiError::LeaderChanged;
        let refusal = pb::ForwardRefusal {
            request,
            not_found: e == ApiError::MemberNotFound,
            // The follower adds etcd's "etcdserver: " prefix again (`ApiError::Transfer`).
            message: e.to_string().trim_start_matches("etcdserver: ").to_string(),
            leader_changed,
        };
        self.peers.send(to, &PeerFrame::Refused(Bytes::from(refusal.encode_to_vec())));
    }

    /// What a follower refuses of a membership change before forwarding it: a removal,
    /// promotion or update of a member it does not know, a promotion of a voter.
    fn member_precheck(&self, c: &pb::MemberChange) -> Result<(), ApiError> {
        use flotilla_raft::ConfChange;
        if matches!(c.kind, 3..=5) && !self.node.membership().contains(NodeId(c.id)) {
            return Err(ApiError::MemberNotFound);
        }
        let change = match c.kind {
            3 => ConfChange::PromoteLearner(NodeId(c.id)),
            4 => ConfChange::Remove(NodeId(c.id)),
            _ => return Ok(()),
        };
        match self.node.membership().apply(&change) {
            Err(
                e @ (flotilla_raft::ConfChangeError::NotAMember { .. }
                | flotilla_raft::ConfChangeError::NotALearner { .. }),
            ) => Err(membership_refused(e)),
            _ => Ok(()),
        }
    }

    /// etcd's MemberUpdate: a member's new peer URL goes through the log (as `MemberAttr`),
    /// and every member reconnects to it there once applied. The member itself must then
    /// listen on it (restarted with the new `--listen-peer-urls`).
    fn update_member(&mut self, c: &pb::MemberChange) -> Result<(), ApiError> {
        if crate::config::parse_peer_url("peer URL", &c.peer_url).is_err() {
            return Err(ApiError::Transfer(format!("bad peer URL {:?}", c.peer_url)));
        }
        if !self.node.membership().contains(NodeId(c.id)) {
            return Err(ApiError::MemberNotFound);
        }
        let taken = self.node.membership().members().any(|m| {
            m.0 != c.id && self.registry.get(&m.0).is_some_and(|r| r.peer_url == c.peer_url)
        });
        if taken {
            return Err(ApiError::Transfer("Peer URLs already exists".into()));
        }
        let attr = pb::InternalRequest::internal(pb::internal_request::Request::MemberAttr(
            pb::MemberAttr {
                id: c.id,
                name: String::new(),
                peer_url: c.peer_url.clone(),
                client_url: String::new(),
            },
        ));
        self.node.propose(Bytes::from(attr.encode_to_vec())).map(|_| ()).map_err(proposal_refused)
    }

    /// Records what a member published (empty fields keep what is known), and connects to
    /// it.
    fn learn_member(&mut self, id: u64, update: MemberRecord) {
        let known = self.registry.get(&id).cloned().unwrap_or_default();
        let keep = |new: String, old: String| if new.is_empty() { old } else { new };
        let record = MemberRecord {
            name: keep(update.name, known.name),
            peer_url: keep(update.peer_url, known.peer_url.clone()),
            client_url: keep(update.client_url, known.client_url),
        };
        if known.peer_url != record.peer_url || !self.peers.knows(NodeId(id)) {
            if let Ok(addr) = crate::config::parse_peer_url("peer URL", &record.peer_url) {
                self.peers.add(NodeId(id), addr);
            }
        }
        self.registry.insert(id, record);
    }

    /// The members, for the Cluster API.
    pub fn members(&self) -> Vec<MemberEntry> {
        let m = self.node.membership();
        m.members()
            .map(|id| {
                let r = self.registry.get(&id.0).cloned().unwrap_or_default();
                MemberEntry {
                    id: id.0,
                    name: r.name,
                    peer_url: r.peer_url,
                    client_url: r.client_url,
                    is_learner: m.learners().contains(&id),
                }
            })
            .collect()
    }

    /// Answers membership requests whose change is now in effect here; publishes this
    /// member's name once it is a member and a leader is known.
    fn check_members(&mut self) {
        let m = self.node.membership().clone();
        let waits = std::mem::take(&mut self.member_waits);
        let now = Instant::now();
        for w in waits {
            let done = match &w.wait {
                MemberWait::Added(url) => m
                    .members()
                    .any(|id| self.registry.get(&id.0).is_some_and(|r| r.peer_url == *url)),
                MemberWait::Promoted(id) => m.voters().contains(&NodeId(*id)),
                MemberWait::Removed(id) => !m.contains(NodeId(*id)),
                MemberWait::Updated(id, url) => {
                    self.registry.get(id).is_some_and(|r| r.peer_url == *url)
                }
            };
            if done {
                let _ = w.reply.send(Ok((self.members(), self.header())));
            } else if w.deadline <= now {
                let _ = w.reply.send(Err(ApiError::Timeout));
            } else {
                self.member_waits.push(w);
            }
        }
        let me = self.node.id();
        if !self.published && m.contains(me) && self.leader.is_some() && self.halted.is_none() {
            // Always once per start: the local registry was seeded from this member's own
            // flags, the others' may still lack its name.
            let MemberRecord { name, peer_url, client_url } = self.me.clone();
            let attr = pb::InternalRequest::internal(pb::internal_request::Request::MemberAttr(
                pb::MemberAttr { id: me.0, name, peer_url, client_url },
            ));
            let data = Bytes::from(attr.encode_to_vec());
            if self.node.propose(data.clone()).is_err() {
                if let Some(l) = self.leader {
                    self.peers.send(l, &PeerFrame::Forward(data));
                }
            }
            self.published = true;
        }
    }

    fn apply(&mut self, e: flotilla_raft::Entry) {
        self.applied = e.index.0;
        self.applied_bytes += e.data.len() as u64;
        let mine = self.proposed.remove(&e.index.0);
        if e.kind != EntryKind::Normal || e.data.is_empty() {
            if let Some(id) = mine {
                self.fail_write(id, ApiError::LeaderChanged);
            }
            return;
        }
        let Ok(req) = pb::InternalRequest::decode(e.data.clone()) else {
            tracing::error!(index = e.index.0, "an entry in the log does not decode; skipped");
            return;
        };
        // Request ids are unique per member: an entry answers a request here only if this
        // member proposed or forwarded it (entries from before `member` was recorded: by id).
        let me = self.node.id().0;
        let here = req.member == 0 || req.member == me;
        if let Some(id) = mine.filter(|id| *id != req.id || !here) {
            self.fail_write(id, ApiError::LeaderChanged);
        }
        let waiter = if here { req.id } else { 0 };
        let Some(op) = req.request else { return };
        // Checked again here, against the auth store as it is at this point of the log: a
        // permission revoked while the request was in flight is not bypassed.
        if req.anonymous || !req.user.is_empty() {
            let leases = self.mvcc.leases();
            let lease_keys = |id: i64| leases.get(&id).map(|l| &l.keys);
            let allowed =
                self.auth.lock().store.authorize_applied(&req.user, req.anonymous, &op, lease_keys);
            if let Err(e) = allowed {
                return self.answer_write(waiter, Err(e.into()));
            }
        }
        if let pb::internal_request::Request::Auth(c) = op {
            let r = self.apply_auth(c);
            return self.answer_write(waiter, r.map(Applied::Auth).map_err(ApiError::from));
        }
        if let pb::internal_request::Request::MemberAttr(a) = op {
            let update =
                MemberRecord { name: a.name, peer_url: a.peer_url, client_url: a.client_url };
            self.learn_member(a.id, update);
            return;
        }
        if let pb::internal_request::Request::Alarm(a) = &op {
            let changed = self.apply_alarm(a);
            let out = pb::AlarmResponse { header: None, alarms: changed };
            return self.answer_write(waiter, Ok(Applied::Alarm(out)));
        }
        let result = self.mvcc.apply_tracked(&op, &mut self.changes).map_err(ApiError::from);
        self.track_lease(&op, &result);
        if !self.changes.is_empty() {
            if !self.watch.is_empty() {
                let h = self.header();
                self.watch.applied(&self.mvcc, &self.changes, h);
            }
            self.changes.clear();
        }
        self.answer_write(waiter, result);
    }

    /// Applies a change of the auth store. An `Authenticate`'s token is recorded here, on
    /// every member, and answered to its client; a user deleted or given a new password
    /// loses its tokens.
    fn apply_auth(&mut self, c: pb::AuthChange) -> Result<Option<String>, crate::auth::AuthError> {
        use pb::auth_change::Op;
        let op = c.op.ok_or(crate::auth::AuthError::InvalidPermission("no change"))?;
        let mut a = self.auth.lock();
        a.store.apply(&op)?;
        match op {
            Op::Token(t) => {
                a.tokens.insert(t.token.clone(), t.name, Instant::now());
                return Ok(Some(t.token));
            }
            Op::UserDelete(u) => a.tokens.forget_user(&u.name),
            Op::UserChangePassword(u) => a.tokens.forget_user(&u.name),
            _ => {}
        }
        Ok(None)
    }

    /// Answers the client of this member's write `id`, if it waits here.
    fn answer_write(&mut self, id: u64, result: Result<Applied, ApiError>) {
        if let Some(w) = self.writes.remove(&id) {
            let header = self.header();
            self.metrics.commits.fetch_add(1, Ordering::Relaxed);
            self.metrics.commit_latency.observe(w.proposed_at.elapsed());
            let _ = w.reply.send(result.map(|a| (a, header)));
        }
    }

    /// etcd's alarm store: ACTIVATE answers with the alarm (raised now or before),
    /// DEACTIVATE with the one it cleared, if it was raised.
    fn apply_alarm(&mut self, a: &pb::AlarmRequest) -> Vec<pb::AlarmMember> {
        let key = (a.member_id, a.alarm);
        let member = pb::AlarmMember { member_id: a.member_id, alarm: a.alarm };
        match a.action {
            pb::alarm_action::ACTIVATE => {
                if self.alarms.insert(key) {
                    tracing::warn!(member = a.member_id, alarm = a.alarm, "alarm raised");
                }
                vec![member]
            }
            pb::alarm_action::DEACTIVATE if self.alarms.remove(&key) => {
                tracing::info!(member = a.member_id, alarm = a.alarm, "alarm cleared");
                vec![member]
            }
            _ => Vec::new(),
        }
    }

    /// The alarm this member's storage failure raises: NOSPACE for a full disk, CORRUPT
    /// for any other failure (etcd has no closer kind; either way the member refuses
    /// writes until it is restarted).
    fn storage_alarm(&self) -> Option<i32> {
        let e = self.halted.as_ref()?;
        let full = e.contains("No space left") || e.contains("os error 28");
        Some(if full { pb::alarm_type::NOSPACE } else { pb::alarm_type::CORRUPT })
    }

    /// Every alarm: the replicated ones, and this member's own storage failure, which it
    /// reports before (or without, if it cannot reach a leader) the cluster recording it.
    fn alarm_list(&self) -> Vec<pb::AlarmMember> {
        let mut all = self.alarms.clone();
        if let Some(kind) = self.storage_alarm() {
            all.insert((self.node.id().0, kind));
        }
        all.into_iter().map(|(member_id, alarm)| pb::AlarmMember { member_id, alarm }).collect()
    }

    /// A member whose storage failed cannot write its own log, but can still ask the leader
    /// to record its alarm for the whole cluster, as etcd's member raises NOSPACE: every
    /// 2 s while the alarm is not known to be recorded (it no longer applies the log, so
    /// it asks again until restarted; recording an alarm twice changes nothing).
    fn raise_storage_alarm(&mut self) {
        let Some(kind) = self.storage_alarm() else { return };
        let now = Instant::now();
        if now < self.next_alarm_raise || self.alarms.contains(&(self.node.id().0, kind)) {
            return;
        }
        self.next_alarm_raise = now + Duration::from_secs(2);
        let req =
            pb::InternalRequest::internal(pb::internal_request::Request::Alarm(pb::AlarmRequest {
                action: pb::alarm_action::ACTIVATE,
                member_id: self.node.id().0,
                alarm: kind,
            }));
        // To every other member: it no longer steps messages, so it may not know who leads
        // now (it may have led itself); a member that does not lead drops the request.
        let frame = PeerFrame::Forward(Bytes::from(req.encode_to_vec()));
        let me = self.node.id();
        let others: Vec<NodeId> = self.node.membership().members().filter(|m| *m != me).collect();
        for m in others {
            self.peers.send(m, &frame);
        }
        self.peers.flush();
    }

    /// Keeps this member's estimate of when leases expire, as grants, renewals and
    /// revocations apply.
    fn track_lease(
        &mut self,
        op: &pb::internal_request::Request,
        result: &Result<Applied, ApiError>,
    ) {
        use pb::internal_request::Request;
        let now = Instant::now();
        let secs = |ttl: i64| Duration::from_secs(ttl.max(0) as u64);
        match (op, result) {
            (Request::LeaseGrant(g), Ok(_)) => {
                self.lease_expiry.insert(g.id, now + secs(g.ttl));
            }
            (Request::LeaseKeepAlive(k), Ok(Applied::LeaseKeepAlive(r))) if r.ttl > 0 => {
                self.lease_expiry.insert(k.id, now + secs(r.ttl));
            }
            (Request::LeaseRevoke(pb::LeaseRevokeRequest { id }), _)
            | (Request::LeaseExpire(pb::LeaseExpire { id, .. }), _) => {
                // Gone, or (an expiry that lost to a renewal) to be looked at afresh.
                self.revoking.remove(id);
                if self.mvcc.lease(*id).is_none() {
                    self.lease_expiry.remove(id);
                }
            }
            _ => {}
        }
    }

    fn fail_write(&mut self, id: u64, e: ApiError) {
        if let Some(w) = self.writes.remove(&id) {
            self.metrics.proposals_failed.fetch_add(1, Ordering::Relaxed);
            let _ = w.reply.send(Err(e));
        }
    }

    /// Thesis §6.4 step 4: serve a read once the store has applied its read index.
    fn serve_reads(&mut self) {
        let applied = self.applied;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(id, _)| *id)
            .collect();
        let now = Instant::now();
        for id in ready {
            let r = self.reads.remove(&id).expect("listed above");
            let h = self.header();
            match r.kind {
                ReadKind::Range(req, reply) => {
                    let out = self.mvcc.range(&req).map_err(ApiError::from);
                    let _ = reply.send(out.map(|o| (o, h)));
                }
                ReadKind::LeaseTimeToLive(req, reply) => {
                    let out = match self.mvcc.lease(req.id) {
                        // etcd answers -1 for a lease that is gone.
                        None => pb::LeaseTimeToLiveResponse {
                            id: req.id,
                            ttl: -1,
                            ..Default::default()
                        },
                        Some(l) => {
                            let left = self.lease_expiry.get(&req.id).map_or(l.ttl, |at| {
                                at.saturating_duration_since(now).as_secs_f64().ceil() as i64
                            });
                            pb::LeaseTimeToLiveResponse {
                                header: None,
                                id: req.id,
                                ttl: left,
                                granted_ttl: l.ttl,
                                keys: if req.keys {
                                    l.keys.iter().cloned().collect()
                                } else {
                                    vec![]
                                },
                            }
                        }
                    };
                    let _ = reply.send(Ok((out, h)));
                }
                ReadKind::LeaseLeases(reply) => {
                    let leases =
                        self.mvcc.leases().keys().map(|id| pb::LeaseStatus { id: *id }).collect();
                    let _ = reply.send(Ok((pb::LeaseLeasesResponse { header: None, leases }, h)));
                }
            }
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.node.role() == Role::Leader
    }

    /// The store.
    pub fn store(&self) -> &DiskLog<RealFs> {
        self.node.store()
    }

    /// The first index of the log.
    pub fn first_index(&self) -> LogIndex {
        self.node.store().first_index()
    }
}

/// What [`restore`] built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The store's revision, as the snapshot holds it.
    pub revision: i64,
    /// Keys held (at their newest version, deleted ones included).
    pub keys: usize,
    /// The new cluster's members.
    pub members: usize,
}

/// Why [`restore`] refused.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The directory already holds a member's data: nothing is overwritten.
    #[error("{0} already holds a member's data; restore into a new directory")]
    Exists(std::path::PathBuf),
    /// The file is not a snapshot this version can read.
    #[error("not a Flotilla snapshot (or a damaged one): its state does not decode")]
    NotASnapshot,
    /// The file's SHA-256 does not match its contents.
    #[error("snapshot checksum mismatch: the file was damaged")]
    Damaged,
    /// Writing the new data directory failed.
    #[error(transparent)]
    Storage(#[from] flotilla_storage::WalError),
}

/// A snapshot as Maintenance.Snapshot streams it, and as `flotilla snapshot save` and
/// `etcdctl snapshot save` store it: the state's length (8 bytes, little-endian), the state,
/// zeros to a whole 512-byte page (etcdctl expects whole pages, as a bbolt file has), then
/// the SHA-256 of all that (which etcd's clients check, as for etcd's own snapshots).
pub fn snapshot_stream(state: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut data = Vec::with_capacity(state.len() + 8 + 512 + 32);
    data.extend_from_slice(&(state.len() as u64).to_le_bytes());
    data.extend_from_slice(state);
    data.resize(data.len().div_ceil(512) * 512, 0);
    let sum = sha2::Sha256::digest(&data);
    data.extend_from_slice(&sum);
    data
}

/// The state inside a [`snapshot_stream`], once its SHA-256 is checked.
///
/// ```
/// use flotilla_server::driver::{snapshot_state, snapshot_stream};
/// let mut s = snapshot_stream(b"state");
/// assert_eq!(snapshot_state(&s).unwrap(), b"state");
/// s[9] ^= 1;
/// assert!(snapshot_state(&s).is_err());
/// ```
pub fn snapshot_state(stream: &[u8]) -> Result<&[u8], RestoreError> {
    use sha2::Digest;
    let split = stream.len().checked_sub(32).ok_or(RestoreError::NotASnapshot)?;
    let (body, sum) = stream.split_at(split);
    if sha2::Sha256::digest(body).as_slice() != sum {
        return Err(RestoreError::Damaged);
    }
    let len = body
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| n.checked_add(8).is_some_and(|end| end <= body.len()))
        .ok_or(RestoreError::NotASnapshot)?;
    Ok(&body[8..8 + len])
}

/// Builds a member's data directory in `dir` from a snapshot file (a [`snapshot_stream`]:
/// `flotilla snapshot save`, or `etcdctl snapshot save` against a Flotilla member, checked
/// by its SHA-256) for a *new* cluster of `members`, as
/// `etcdctl snapshot restore` does: the store, its revision, history and leases, and the
/// alarms come from the snapshot; the membership does not (the old members' names and
/// addresses are dropped). Every member of the new cluster restores the same file with the
/// same members, so all start from the same state, installed as the snapshot at index 1 of
/// term 1, with nothing after it; `flotilla serve` with the same flags then starts the
/// member.
pub fn restore(
    dir: &std::path::Path,
    file: &[u8],
    members: &[(NodeId, String, String)],
) -> Result<Restored, RestoreError> {
    let wal_dir = dir.join("wal");
    if std::fs::read_dir(&wal_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(RestoreError::Exists(dir.to_path_buf()));
    }
    let state = snapshot_state(file)?;
    let (_, alarms, auth, mvcc) = decode_state(state).ok_or(RestoreError::NotASnapshot)?;
    let registry: BTreeMap<u64, MemberRecord> = members
        .iter()
        .map(|(id, name, peer_url)| {
            let record = MemberRecord {
                name: name.clone(),
                peer_url: peer_url.clone(),
                client_url: String::new(),
            };
            (id.0, record)
        })
        .collect();
    let data = Bytes::from(encode_state(&registry, &alarms, &auth, &mvcc));
    let voters = members.iter().map(|(id, _, _)| *id);
    let membership = flotilla_raft::Membership::new(voters, [])
        .map_err(|e| flotilla_storage::WalError::Invalid(e.to_string()))?;
    let opts = flotilla_storage::WalOptions::default();
    let mut log = DiskLog::create(RealFs, &wal_dir, membership.clone(), opts)?;
    // The way a follower installs a snapshot from its leader (Raft Fig. 13), in one chunk:
    // verified, renamed into place durably, then recorded in the log.
    let term = flotilla_raft::Term(1);
    let meta = flotilla_raft::SnapshotMeta { index: LogIndex(1), term, membership };
    let file = Bytes::from(flotilla_storage::encode_snapshot(&meta, &data));
    let info = flotilla_raft::SnapshotInfo { meta: meta.clone(), size: file.len() as u64 };
    log.write_snapshot_chunk(&flotilla_raft::SnapshotChunk { info, offset: 0, data: file })?;
    log.sync()?;
    log.install_snapshot(&meta)?;
    let hs = flotilla_raft::HardState { term, vote: None, commit: LogIndex(1) };
    log.write(&[], Some(hs));
    log.sync()?;
    Ok(Restored { revision: mvcc.revision(), keys: mvcc.key_count(), members: members.len() })
}

/// The state a snapshot holds: the member registry, then the MVCC store.
fn encode_state(
    registry: &BTreeMap<u64, MemberRecord>,
    alarms: &BTreeSet<(u64, i32)>,
    auth: &AuthStore,
    mvcc: &Mvcc,
) -> Vec<u8> {
    let mut out = encode_registry(registry, alarms, auth);
    mvcc.encode_into(&mut out);
    out
}

/// [`encode_state`] written straight into a snapshot file, piece by piece: the state is
/// never held whole in memory a second time.
fn save_state(
    writer: &flotilla_storage::SnapshotStore<RealFs>,
    meta: &flotilla_raft::SnapshotMeta,
    registry: &BTreeMap<u64, MemberRecord>,
    alarms: &BTreeSet<(u64, i32)>,
    auth: &AuthStore,
    mvcc: &Mvcc,
) -> Result<flotilla_raft::SnapshotInfo, flotilla_storage::WalError> {
    let head = encode_registry(registry, alarms, auth);
    let len = head.len() as u64 + mvcc.encoded_len();
    writer.save_streamed(meta, len, |sink| {
        sink.write(&head)?;
        mvcc.encode_pieces(|piece| sink.write(piece))
    })
}

/// Marks the registry format with client URLs (the first, without them, began with the
/// member count, which is never this).
const REGISTRY_V2: u32 = u32::MAX;
/// Marks the registry format followed by the alarms.
const REGISTRY_V3: u32 = u32::MAX - 1;
/// Marks the registry format followed by the alarms and the auth store.
const REGISTRY_V4: u32 = u32::MAX - 2;

fn encode_registry(
    registry: &BTreeMap<u64, MemberRecord>,
    alarms: &BTreeSet<(u64, i32)>,
    auth: &AuthStore,
) -> Vec<u8> {
    use bytes::BufMut;
    let mut out = Vec::new();
    out.put_u32_le(REGISTRY_V4);
    out.put_u32_le(registry.len() as u32);
    for (id, r) in registry {
        out.put_u64_le(*id);
        for s in [&r.name, &r.peer_url, &r.client_url] {
            out.put_u32_le(s.len() as u32);
            out.put_slice(s.as_bytes());
        }
    }
    out.put_u32_le(alarms.len() as u32);
    for (member, alarm) in alarms {
        out.put_u64_le(*member);
        out.put_i32_le(*alarm);
    }
    let auth = auth.to_state().encode_to_vec();
    out.put_u32_le(auth.len() as u32);
    out.put_slice(&auth);
    out
}

/// What a snapshot holds: the member registry, the alarms, the auth store and the key-value
/// store. Reads every format written so far: the first (no client URLs), V2 (client URLs),
/// V3 (then alarms), V4 (then the auth store).
type State = (BTreeMap<u64, MemberRecord>, BTreeSet<(u64, i32)>, AuthStore, Mvcc);

fn decode_state(mut b: &[u8]) -> Option<State> {
    use bytes::Buf;
    let take_str = |b: &mut &[u8]| -> Option<String> {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32_le() as usize;
        if b.remaining() < n {
            return None;
        }
        let s = String::from_utf8(b[..n].to_vec()).ok()?;
        b.advance(n);
        Some(s)
    };
    if b.remaining() < 4 {
        return None;
    }
    let mut n = b.get_u32_le();
    let with_auth = n == REGISTRY_V4;
    let with_alarms = n == REGISTRY_V3 || with_auth;
    let with_client_urls = n == REGISTRY_V2 || with_alarms;
    if with_client_urls {
        if b.remaining() < 4 {
            return None;
        }
        n = b.get_u32_le();
    }
    let mut registry = BTreeMap::new();
    for _ in 0..n {
        if b.remaining() < 8 {
            return None;
        }
        let id = b.get_u64_le();
        let name = take_str(&mut b)?;
        let peer_url = take_str(&mut b)?;
        let client_url = if with_client_urls { take_str(&mut b)? } else { String::new() };
        registry.insert(id, MemberRecord { name, peer_url, client_url });
    }
    let mut alarms = BTreeSet::new();
    if with_alarms {
        if b.remaining() < 4 {
            return None;
        }
        for _ in 0..b.get_u32_le() {
            if b.remaining() < 12 {
                return None;
            }
            alarms.insert((b.get_u64_le(), b.get_i32_le()));
        }
    }
    let mut auth = AuthStore::default();
    if with_auth {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32_le() as usize;
        if b.remaining() < n {
            return None;
        }
        auth = AuthStore::from_state(pb::AuthState::decode(&b[..n]).ok()?);
        b.advance(n);
    }
    Some((registry, alarms, auth, Mvcc::decode(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot's member registry round-trips with client URLs, and snapshots written
    /// before client URLs were kept still decode (with none).
    #[test]
    fn snapshot_state_round_trips_and_reads_the_older_registry_format() {
        let mut registry = BTreeMap::new();
        registry.insert(
            1,
            MemberRecord {
                name: "n1".into(),
                peer_url: "http://127.0.0.1:2380".into(),
                client_url: "http://127.0.0.1:2379".into(),
            },
        );
        registry.insert(
            2,
            MemberRecord { peer_url: "http://127.0.0.1:22380".into(), ..Default::default() },
        );
        let mut mvcc = Mvcc::new();
        let put = pb::PutRequest { key: "k".into(), value: "v".into(), ..Default::default() };
        mvcc.apply(&pb::internal_request::Request::Put(put)).unwrap();
        let alarms = BTreeSet::from([(2, pb::alarm_type::NOSPACE), (1, pb::alarm_type::CORRUPT)]);
        let mut auth = AuthStore::default();
        let add = pb::AuthUserAddRequest { name: "u".into(), ..Default::default() };
        auth.apply(&pb::auth_change::Op::UserAdd(add)).unwrap();
        let full = encode_state(&registry, &alarms, &auth, &mvcc);
        let state = decode_state(&full).expect("decodes");
        assert_eq!(state, (registry.clone(), alarms.clone(), auth, mvcc.clone()));
        for cut in [4, 40, full.len() - 1] {
            assert_eq!(decode_state(&full[..cut]), None, "cut at {cut} is refused");
        }

        use bytes::BufMut;
        let mut old = Vec::new();
        old.put_u32_le(1);
        old.put_u64_le(7);
        for s in ["n7", "http://10.0.0.7:2380"] {
            old.put_u32_le(s.len() as u32);
            old.put_slice(s.as_bytes());
        }
        mvcc.encode_into(&mut old);
        let (r, a, auth, m) = decode_state(&old).expect("the first format decodes");
        assert_eq!((m, a, auth), (mvcc.clone(), BTreeSet::new(), AuthStore::default()));
        let want = MemberRecord {
            name: "n7".into(),
            peer_url: "http://10.0.0.7:2380".into(),
            client_url: String::new(),
        };
        assert_eq!(r.get(&7), Some(&want));
        assert_eq!(decode_state(&old[..old.len() - 1]), None, "a cut snapshot is refused");

        // The second format: client URLs, no alarms.
        let mut v2 = Vec::new();
        v2.put_u32_le(REGISTRY_V2);
        v2.put_u32_le(1);
        v2.put_u64_le(7);
        for s in ["n7", "http://10.0.0.7:2380", "http://10.0.0.7:2379"] {
            v2.put_u32_le(s.len() as u32);
            v2.put_slice(s.as_bytes());
        }
        mvcc.encode_into(&mut v2);
        let (r, a, _, m) = decode_state(&v2).expect("the second format decodes");
        assert_eq!((m, a), (mvcc, BTreeSet::new()));
        assert_eq!(r.get(&7).map(|m| m.client_url.as_str()), Some("http://10.0.0.7:2379"));
    }
}
