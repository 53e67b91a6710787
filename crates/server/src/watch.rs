//! etcd's Watch service, on the driver's side: which client streams watch which keys, and
//! what each watcher has been sent.
//!
//! A watcher is *synced* while it has seen every revision up to the store's: the driver
//! hands it each write's events as it applies them. A watcher that starts in the past, or
//! whose client reads slower than the store changes, is *unsynced*: it replays the store's
//! history (kept until compacted) in batches, as its stream drains, and is synced again once
//! it reaches the store's revision. This is etcd's design (`watchableStore`): a slow client
//! holds back neither the driver nor other clients, and costs a bounded queue, not a copy of
//! every event it has yet to read. Every member serves watches from its own applied state,
//! which is the same on every member at every revision.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::driver::Header;
use crate::mvcc::{in_span, Change, Mvcc};
use crate::pb;

/// Responses a stream may have queued, not yet taken by its client, before its watchers stop
/// receiving events as they happen and replay them from history instead.
pub const QUEUE_LIMIT: usize = 64;

/// At most this many revisions in one replayed response...
const REPLAY_REVISIONS: i64 = 1000;
/// ... and, past the first revision, at most about this many bytes of keys and values.
const REPLAY_BYTES: usize = 1 << 20;

/// The `watch_id` of a response to a progress request (etcd's `InvalidWatchID`): it concerns
/// the stream, not one watcher.
pub const STREAM_PROGRESS_ID: i64 = -1;

/// What a stream's client reads: a response and the header fields the driver knows.
pub type Outbox = tokio::sync::mpsc::UnboundedSender<(pb::WatchResponse, Header)>;

/// A client stream's requests, as the driver receives them.
#[derive(Debug)]
pub enum WatchInput {
    /// A new stream: its responses go to `tx`; `queued` counts those not yet taken (the
    /// stream's reader decrements it).
    Open {
        /// The stream's id (unique in this process).
        stream: u64,
        /// Where its responses go.
        tx: Outbox,
        /// Responses sent and not yet taken.
        queued: Arc<AtomicUsize>,
    },
    /// Create a watcher.
    Create {
        /// The stream.
        stream: u64,
        /// The request.
        req: pb::WatchCreateRequest,
    },
    /// Cancel a watcher.
    Cancel {
        /// The stream.
        stream: u64,
        /// The watcher.
        watch_id: i64,
    },
    /// Report the revision every watcher of the stream has reached.
    Progress {
        /// The stream.
        stream: u64,
    },
    /// The stream's queue drained below half its limit: replay more history.
    Drained {
        /// The stream.
        stream: u64,
    },
    /// The client went away.
    Close {
        /// The stream.
        stream: u64,
    },
}

#[derive(Debug)]
struct Watcher {
    key: Bytes,
    range_end: Bytes,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// Every event before this revision was sent; this one and later were not.
    next: i64,
    /// Whether `next` is the store's next revision (events go out as they are applied).
    synced: bool,
    /// When something was last sent to it, for progress notifications.
    last_sent: Instant,
}

impl Watcher {
    fn wants(&self, c: &Change, is_put: bool) -> bool {
        let filtered = if is_put { self.no_put } else { self.no_delete };
        !filtered && in_span(&c.key, &self.key, &self.range_end)
    }
}

#[derive(Debug)]
struct Stream {
    tx: Outbox,
    queued: Arc<AtomicUsize>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// A progress request waits for every watcher to be synced.
    progress_wanted: bool,
}

impl Stream {
    fn full(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= QUEUE_LIMIT
    }

    fn send(&self, r: pb::WatchResponse, h: Header) -> bool {
        send(&self.tx, &self.queued, r, h)
    }
}

/// Queues a response on a stream; `false` if its client is gone.
fn send(tx: &Outbox, queued: &AtomicUsize, r: pb::WatchResponse, h: Header) -> bool {
    queued.fetch_add(1, Ordering::Relaxed);
    tx.send((r, h)).is_ok()
}

/// Every watch stream of this member.
#[derive(Debug)]
pub struct WatchHub {
    streams: HashMap<u64, Stream>,
    /// How often a quiet watcher that asked for it gets an empty response (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes by default).
    progress_interval: Duration,
    /// Whether some watcher is unsynced (or a progress request waits): catch-up has work.
    behind: bool,
}

fn response(watch_id: i64) -> pb::WatchResponse {
    pb::WatchResponse { watch_id, ..Default::default() }
}

impl WatchHub {
    /// No streams yet.
    pub fn new(progress_interval: Duration) -> WatchHub {
        WatchHub { streams: HashMap::new(), progress_interval, behind: false }
    }

    /// Whether any watcher exists (if not, applied writes need no events).
    pub fn is_empty(&self) -> bool {
        self.streams.values().all(|s| s.watchers.is_empty())
    }

    /// Number of watchers, for `/metrics`.
    pub fn watchers(&self) -> usize {
        self.streams.values().map(|s| s.watchers.len()).sum()
    }

    /// Handles a stream's request against the store as it is now.
    pub fn handle(&mut self, input: WatchInput, store: &Mvcc, h: Header) {
        match input {
            WatchInput::Open { stream, tx, queued } => {
                let s = Stream {
                    tx,
                    queued,
                    watchers: BTreeMap::new(),
                    next_id: 0,
                    progress_wanted: false,
                };
                self.streams.insert(stream, s);
            }
            WatchInput::Create { stream, req } => self.create(stream, req, store, h),
            WatchInput::Cancel { stream, watch_id } => {
                let Some(s) = self.streams.get_mut(&stream) else { return };
                if s.watchers.remove(&watch_id).is_some() {
                    let r = pb::WatchResponse { canceled: true, ..response(watch_id) };
                    if !s.send(r, h) {
                        self.streams.remove(&stream);
                    }
                }
            }
            WatchInput::Progress { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.progress_wanted = true;
                    self.behind = true;
                }
                self.catch_up(store, h);
            }
            WatchInput::Drained { .. } => self.catch_up(store, h),
            WatchInput::Close { stream } => {
                self.streams.remove(&stream);
            }
        }
    }

    fn create(&mut self, stream: u64, req: pb::WatchCreateRequest, store: &Mvcc, h: Header) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        let id = if req.watch_id != 0 {
            req.watch_id
        } else {
            while s.watchers.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id
        };
        let refuse = |reason: &str| pb::WatchResponse {
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..response(id)
        };
        let bad = if req.watch_id < 0 {
            Some("etcdserver: watch id must not be negative")
        } else if s.watchers.contains_key(&id) {
            Some("mvcc: duplicate watch ID provided on the WatchStream")
        } else if req.key.is_empty() {
            Some("etcdserver: key is not provided")
        } else if req.filters.iter().any(|f| !(0..=1).contains(f)) {
            Some("etcdserver: unknown watch filter")
        } else {
            None
        };
        if let Some(reason) = bad {
            if !s.send(refuse(reason), h) {
                self.streams.remove(&stream);
            }
            return;
        }
        if req.watch_id == 0 {
            s.next_id += 1;
        }
        let now_next = store.revision() + 1;
        let next = if req.start_revision <= 0 { now_next } else { req.start_revision };
        let sent = s.send(pb::WatchResponse { created: true, ..response(id) }, h);
        if !sent {
            self.streams.remove(&stream);
            return;
        }
        let w = Watcher {
            key: req.key,
            range_end: req.range_end,
            prev_kv: req.prev_kv,
            no_put: req.filters.contains(&0),
            no_delete: req.filters.contains(&1),
            progress_notify: req.progress_notify,
            next,
            // A future start revision waits like a synced watcher: events before it are
            // skipped as they are applied.
            synced: next >= now_next,
            last_sent: Instant::now(),
        };
        if !w.synced {
            self.behind = true;
        }
        s.watchers.insert(id, w);
        self.catch_up(store, h);
    }

    /// A write was applied at `revision` with these changes (in the order written): each
    /// synced watcher gets its events, or falls behind if its stream is full.
    pub fn applied(&mut self, store: &Mvcc, changes: &[Change], h: Header) {
        let Some(revision) = changes.first().map(|c| c.revision) else { return };
        let events: Vec<(pb::Event, bool)> = changes
            .iter()
            .map(|c| {
                let e = store.event(c, false);
                let is_put = e.r#type == 0;
                (e, is_put)
            })
            .collect();
        let mut gone = Vec::new();
        for (&sid, s) in &mut self.streams {
            let full = s.full();
            let Stream { tx, queued, watchers, .. } = s;
            for (&id, w) in watchers {
                if !w.synced || w.next > revision {
                    continue;
                }
                let mine: Vec<pb::Event> = changes
                    .iter()
                    .zip(&events)
                    .filter(|(c, (_, is_put))| w.wants(c, *is_put))
                    .map(|(c, (e, _))| if w.prev_kv { store.event(c, true) } else { e.clone() })
                    .collect();
                if mine.is_empty() {
                    w.next = revision + 1;
                    continue;
                }
                if full {
                    // Its client reads slower than the store changes: it replays from
                    // history when the stream drains (`next` is still this revision).
                    w.synced = false;
                    self.behind = true;
                    continue;
                }
                w.next = revision + 1;
                w.last_sent = Instant::now();
                if !send(tx, queued, pb::WatchResponse { events: mine, ..response(id) }, h) {
                    gone.push(sid);
                    break;
                }
            }
        }
        for sid in gone {
            self.streams.remove(&sid);
        }
    }

    /// The store was replaced by a snapshot from the leader: no watcher has seen the writes
    /// the snapshot covers, so all replay them from its history.
    pub fn store_replaced(&mut self) {
        for s in self.streams.values_mut() {
            for w in s.watchers.values_mut() {
                w.synced = false;
            }
        }
        self.behind = true;
    }

    /// Moves unsynced watchers forward through the store's history, one batch each while
    /// their streams have room; answers progress requests once a stream's watchers are all
    /// synced.
    pub fn catch_up(&mut self, store: &Mvcc, h: Header) {
        if !self.behind {
            return;
        }
        let mut behind = false;
        let mut gone = Vec::new();
        for (&sid, s) in &mut self.streams {
            let mut canceled = Vec::new();
            let mut alive = true;
            let Stream { tx, queued, watchers, .. } = &mut *s;
            for (&id, w) in watchers.iter_mut() {
                if w.synced || !alive {
                    continue;
                }
                if queued.load(Ordering::Relaxed) >= QUEUE_LIMIT {
                    behind = true;
                    continue;
                }
                if w.next < store.compact_revision() {
                    // Its history is gone (etcd: "required revision has been compacted").
                    let r = pb::WatchResponse {
                        canceled: true,
                        compact_revision: store.compact_revision(),
                        cancel_reason: "mvcc: required revision has been compacted".into(),
                        ..response(id)
                    };
                    alive = send(tx, queued, r, h);
                    canceled.push(id);
                    continue;
                }
                let (events, to) = replay(store, w);
                w.next = to + 1;
                if !events.is_empty() {
                    w.last_sent = Instant::now();
                    alive = send(tx, queued, pb::WatchResponse { events, ..response(id) }, h);
                }
                if w.next > store.revision() {
                    w.synced = true;
                } else {
                    behind = true;
                }
            }
            for id in canceled {
                s.watchers.remove(&id);
            }
            if alive && s.progress_wanted {
                if s.watchers.values().all(|w| w.synced) {
                    s.progress_wanted = false;
                    alive = s.send(response(STREAM_PROGRESS_ID), h);
                } else {
                    behind = true;
                }
            }
            if !alive {
                gone.push(sid);
            }
        }
        for sid in gone {
            self.streams.remove(&sid);
        }
        self.behind = behind;
    }

    /// Sends an empty response to each synced watcher that asked for progress
    /// notifications and was sent nothing for the interval: the revision in its header
    /// tells the client it has seen everything until then.
    pub fn notify_progress(&mut self, now: Instant, h: Header) {
        let interval = self.progress_interval;
        let mut gone = Vec::new();
        for (&sid, s) in &mut self.streams {
            if s.full() {
                continue;
            }
            let Stream { tx, queued, watchers, .. } = s;
            for (&id, w) in watchers {
                if w.progress_notify && w.synced && now.duration_since(w.last_sent) >= interval {
                    w.last_sent = now;
                    if !send(tx, queued, response(id), h) {
                        gone.push(sid);
                        break;
                    }
                }
            }
        }
        for sid in gone {
            self.streams.remove(&sid);
        }
    }
}

/// A watcher's next batch of history: events from `w.next` on, whole revisions, up to the
/// store's revision or the batch's limits. Returns the events and the last revision covered.
fn replay(store: &Mvcc, w: &Watcher) -> (Vec<pb::Event>, i64) {
    let last = store.revision().min(w.next.saturating_add(REPLAY_REVISIONS - 1));
    if last < w.next {
        return (Vec::new(), w.next - 1);
    }
    let changes = store.changes_between(&w.key, &w.range_end, w.next, last);
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut covered = last;
    for (i, c) in changes.iter().enumerate() {
        if bytes >= REPLAY_BYTES && i > 0 && changes[i - 1].revision != c.revision {
            // Stop between revisions: the next batch starts with this one.
            covered = c.revision - 1;
            break;
        }
        let e = store.event(c, w.prev_kv);
        if (e.r#type == 0 && w.no_put) || (e.r#type == 1 && w.no_delete) {
            continue;
        }
        bytes += e.kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len());
        events.push(e);
    }
    (events, covered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::internal_request::Request;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(m: &mut Mvcc, hub: &mut WatchHub, k: &str, v: &str) {
        let p = pb::PutRequest { key: b(k), value: b(v), ..Default::default() };
        write(m, hub, Request::Put(p));
    }

    fn write(m: &mut Mvcc, hub: &mut WatchHub, r: Request) {
        let mut changes = Vec::new();
        m.apply_tracked(&r, &mut changes).unwrap();
        hub.applied(m, &changes, header(m));
        hub.catch_up(m, header(m));
    }

    fn header(m: &Mvcc) -> Header {
        Header { revision: m.revision(), term: 1 }
    }

    type Rx = tokio::sync::mpsc::UnboundedReceiver<(pb::WatchResponse, Header)>;

    fn open(hub: &mut WatchHub, m: &Mvcc, stream: u64) -> (Rx, Arc<AtomicUsize>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        hub.handle(WatchInput::Open { stream, tx, queued: queued.clone() }, m, header(m));
        (rx, queued)
    }

    fn create(hub: &mut WatchHub, m: &Mvcc, stream: u64, req: pb::WatchCreateRequest) {
        hub.handle(WatchInput::Create { stream, req }, m, header(m));
    }

    /// Takes what the stream's client would read, as its reader does.
    fn drain(rx: &mut Rx, queued: &AtomicUsize) -> Vec<pb::WatchResponse> {
        let mut out = Vec::new();
        while let Ok((r, _)) = rx.try_recv() {
            queued.fetch_sub(1, Ordering::Relaxed);
            out.push(r);
        }
        out
    }

    /// (type, key, value, mod revision, prev value) of each event, in order.
    fn flat(rs: &[pb::WatchResponse]) -> Vec<(i32, String, String, i64, Option<String>)> {
        let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        rs.iter()
            .flat_map(|r| &r.events)
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    e.r#type,
                    s(&kv.key),
                    s(&kv.value),
                    kv.mod_revision,
                    e.prev_kv.as_ref().map(|p| s(&p.value)),
                )
            })
            .collect()
    }

    fn prefix(p: &str) -> pb::WatchCreateRequest {
        let mut end = p.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        pb::WatchCreateRequest { key: b(p), range_end: Bytes::from(end), ..Default::default() }
    }

    #[test]
    fn a_watcher_sees_each_write_in_its_range_as_applied_with_prev_kv_and_filters() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::new(Duration::from_secs(600));
        put(&mut m, &mut hub, "a/0", "old");
        let (mut rx, q) = open(&mut hub, &m, 1);
        create(&mut hub, &m, 1, pb::WatchCreateRequest { prev_kv: true, ..prefix("a/") });
        create(&mut hub, &m, 1, pb::WatchCreateRequest { filters: vec![0], ..prefix("a/") });
        let created = drain(&mut rx, &q);
        assert_eq!(
            created.iter().map(|r| (r.watch_id, r.created)).collect::<Vec<_>>(),
            [(0, true), (1, true)]
        );
        put(&mut m, &mut hub, "a/0", "new");
        put(&mut m, &mut hub, "b/0", "elsewhere");
        let d = pb::DeleteRangeRequest { key: b("a/"), range_end: b("a0"), prev_kv: false };
        write(&mut m, &mut hub, Request::DeleteRange(d));
        let rs = drain(&mut rx, &q);
        let w0: Vec<_> = rs.iter().filter(|r| r.watch_id == 0).cloned().collect();
        let w1: Vec<_> = rs.iter().filter(|r| r.watch_id == 1).cloned().collect();
        assert_eq!(
            flat(&w0),
            [
                (0, "a/0".into(), "new".into(), 3, Some("old".into())),
                (1, "a/0".into(), "".into(), 5, Some("new".into())),
            ]
        );
        // NOPUT: the delete only, without previous values.
        assert_eq!(flat(&w1), [(1, "a/0".into(), "".into(), 5, None)]);
    }

    #[test]
    fn a_watcher_from_a_past_revision_replays_history_then_follows_live() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::new(Duration::from_secs(600));
        for i in 0..5 {
            put(&mut m, &mut hub, "k", &format!("v{i}"));
        }
        let (mut rx, q) = open(&mut hub, &m, 1);
        create(
            &mut hub,
            &m,
            1,
            pb::WatchCreateRequest { key: b("k"), start_revision: 4, ..Default::default() },
        );
        put(&mut m, &mut hub, "k", "v5");
        let got: Vec<_> = flat(&drain(&mut rx, &q)).into_iter().map(|e| (e.2, e.3)).collect();
        assert_eq!(got, [("v2".into(), 4), ("v3".into(), 5), ("v4".into(), 6), ("v5".into(), 7)]);
    }

    /// etcd orders a revision's events as its txn's ops were given; a watcher replaying
    /// history must see the same order as one that watched live.
    #[test]
    fn a_txn_written_out_of_key_order_replays_in_write_order() {
        use pb::request_op::Request as Op;
        let mut m = Mvcc::new();
        let mut hub = WatchHub::new(Duration::from_secs(600));
        let (mut rx, q) = open(&mut hub, &m, 1);
        create(&mut hub, &m, 1, prefix("t/"));
        let op = |k: &str, v: &str| pb::RequestOp {
            request: Some(Op::RequestPut(pb::PutRequest {
                key: b(k),
                value: b(v),
                ..Default::default()
            })),
        };
        let delete = |k: &str| pb::RequestOp {
            request: Some(Op::RequestDeleteRange(pb::DeleteRangeRequest {
                key: b(k),
                ..Default::default()
            })),
        };
        put(&mut m, &mut hub, "t/a", "0");
        put(&mut m, &mut hub, "t/b", "0");
        let ops = vec![op("t/c", "1"), delete("t/b"), op("t/a", "1")];
        write(
            &mut m,
            &mut hub,
            Request::Txn(pb::TxnRequest { success: ops, ..Default::default() }),
        );
        put(&mut m, &mut hub, "t/b", "2");
        let order = |rs: &[pb::WatchResponse]| -> Vec<(String, i64)> {
            flat(rs).into_iter().map(|e| (e.1, e.3)).collect()
        };
        let live = order(&drain(&mut rx, &q));
        let want: Vec<(String, i64)> =
            [("t/a", 2), ("t/b", 3), ("t/c", 4), ("t/b", 4), ("t/a", 4), ("t/b", 5)]
                .iter()
                .map(|(k, r)| (k.to_string(), *r))
                .collect();
        assert_eq!(live, want, "live");
        // Replayed from revision 2, from the store and from a snapshot of it.
        let restored = Mvcc::decode(&m.encode()).expect("decodes");
        for store in [&m, &restored] {
            let (mut rx, q) = open(&mut hub, store, 2);
            let from = pb::WatchCreateRequest { start_revision: 2, ..prefix("t/") };
            create(&mut hub, store, 2, from);
            assert_eq!(order(&drain(&mut rx, &q)), want, "replayed");
        }
        // Compaction drops the order of revisions it removes, and keeps the rest.
        m.compact(3).expect("compacts");
        let (mut rx, q) = open(&mut hub, &m, 3);
        create(&mut hub, &m, 3, pb::WatchCreateRequest { start_revision: 4, ..prefix("t/") });
        assert_eq!(order(&drain(&mut rx, &q)), want[2..], "after compaction");
        let restored = Mvcc::decode(&m.encode()).expect("decodes");
        assert_eq!(restored, m);
    }

    #[test]
    fn a_slow_client_falls_behind_and_catches_up_without_losing_or_repeating_an_event() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::new(Duration::from_secs(600));
        let (mut rx, q) = open(&mut hub, &m, 1);
        create(&mut hub, &m, 1, prefix("k"));
        let mut got = Vec::new();
        let n = 5000;
        for i in 0..n {
            // A txn of two puts at one revision.
            let op = |k: String| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: Bytes::from(k),
                    value: b("v"),
                    ..Default::default()
                })),
            };
            let t = pb::TxnRequest {
                success: vec![op(format!("k{i}b")), op(format!("k{i}a"))],
                ..Default::default()
            };
            write(&mut m, &mut hub, Request::Txn(t));
            // The client reads only now and then, a few responses at a time.
            if i % 97 == 0 {
                for _ in 0..10 {
                    if let Ok((r, _)) = rx.try_recv() {
                        q.fetch_sub(1, Ordering::Relaxed);
                        got.push(r);
                    }
                }
                hub.handle(WatchInput::Drained { stream: 1 }, &m, header(&m));
            }
        }
        assert!(q.load(Ordering::Relaxed) <= QUEUE_LIMIT + 1);
        for _ in 0..10_000 {
            let rs = drain(&mut rx, &q);
            if rs.is_empty() {
                break;
            }
            got.extend(rs);
            hub.handle(WatchInput::Drained { stream: 1 }, &m, header(&m));
        }
        let revs: Vec<i64> = flat(&got).iter().map(|e| e.3).collect();
        let want: Vec<i64> = (2..2 + n as i64).flat_map(|r| [r, r]).collect();
        assert_eq!(revs, want, "every revision's two events, once each, in order");
        // Within one revision, the order written, whether live or replayed.
        assert!(got.iter().all(|r| r.events.len() % 2 == 0));
        let keys: Vec<String> = flat(&got).into_iter().map(|e| e.1).collect();
        let want: Vec<String> = (0..n).flat_map(|i| [format!("k{i}b"), format!("k{i}a")]).collect();
        assert_eq!(keys, want, "b before a in every revision");
    }

    #[test]
    fn a_compacted_start_revision_cancels_the_watcher_with_the_compaction_revision() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::new(Duration::from_secs(600));
        for i in 0..5 {
            put(&mut m, &mut hub, "k", &format!("v{i}"));
        }
        m.compact(4).unwrap();
        let (mut rx, q) = open(&mut hub, &m, 1);
        create(
            &mut hub,
            &m,
            1,
            pb::WatchCreateRequest { key: b("k"), start_revision: 2, ..Default::default() },
        );
        let rs = drain(&mut rx, &q);
        assert_eq!(rs.len(), 2);
        assert!(rs[0].created);
        assert!(rs[1].canceled);
        assert_eq!(rs[1].compact_revision, 4);
        put(&mut m, &mut hub, "k", "after");
        assert!(drain(&mut rx, &q).is_empty(), "a canceled watcher gets nothing more");
    }

    #[test]
    fn cancel_progress_and_duplicate_ids_answer_as_etcd_does() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::new(Duration::from_millis(0));
        let (mut rx, q) = open(&mut hub, &m, 1);
        create(
            &mut hub,
            &m,
            1,
            pb::WatchCreateRequest {
                key: b("k"),
                watch_id: 7,
                progress_notify: true,
                ..Default::default()
            },
        );
        create(
            &mut hub,
            &m,
            1,
            pb::WatchCreateRequest { key: b("k"), watch_id: 7, ..Default::default() },
        );
        let rs = drain(&mut rx, &q);
        assert!(rs[0].created && !rs[0].canceled && rs[0].watch_id == 7);
        assert!(rs[1].created && rs[1].canceled && rs[1].cancel_reason.contains("duplicate"));
        hub.handle(WatchInput::Progress { stream: 1 }, &m, header(&m));
        let rs = drain(&mut rx, &q);
        assert_eq!(rs.iter().map(|r| r.watch_id).collect::<Vec<_>>(), [STREAM_PROGRESS_ID]);
        hub.notify_progress(Instant::now(), header(&m));
        let rs = drain(&mut rx, &q);
        assert_eq!(rs.len(), 1);
        assert!(rs[0].watch_id == 7 && rs[0].events.is_empty() && !rs[0].canceled);
        hub.handle(WatchInput::Cancel { stream: 1, watch_id: 7 }, &m, header(&m));
        let rs = drain(&mut rx, &q);
        assert!(rs.len() == 1 && rs[0].canceled && rs[0].watch_id == 7);
        put(&mut m, &mut hub, "k", "v");
        assert!(drain(&mut rx, &q).is_empty());
        assert!(hub.is_empty());
    }
}
