//! etcd's Watch and Lease APIs against real `flotilla serve` processes. Watch: every member streams the same
//! events, in revision order, once each, through a leader's death; a client that does not
//! read falls behind and still gets everything; history replays; `flotilla watch` prints
//! events and reports a compacted start revision.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster, eventually, kv, put, runtime, solo, BIN};

use flotilla_server::api::Received;
use flotilla_server::pb;
use flotilla_server::rpc::maintenance_client::MaintenanceClient;
use flotilla_server::rpc::watch_client::WatchClient;

/// An event as compared here: type, key, value, mod revision, replaced value.
type Ev = (i32, String, String, i64, Option<String>);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn flat(r: &pb::WatchResponse) -> Vec<Ev> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap_or_default();
            (
                e.r#type,
                text(&kv.key),
                text(&kv.value),
                kv.mod_revision,
                e.prev_kv.as_ref().map(|p| text(&p.value)),
            )
        })
        .collect()
}

/// Every key, from `start` on, with replaced values.
fn everything_from(start: i64) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: vec![0].into(),
        range_end: vec![0].into(),
        start_revision: start,
        prev_kv: true,
        ..Default::default()
    }
}

type Stream =
    (tokio::sync::mpsc::UnboundedSender<pb::WatchRequest>, tonic::Streaming<pb::WatchResponse>);

async fn open(ep: &str, create: pb::WatchCreateRequest) -> Stream {
    open_with_window(ep, create, None).await
}

/// A watch stream whose HTTP/2 flow-control window is `window` bytes, if given (the
/// default, 2 MiB, holds many responses before the server must wait for the client).
async fn open_with_window(ep: &str, create: pb::WatchCreateRequest, window: Option<u32>) -> Stream {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .unwrap()
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = pb::watch_request::RequestUnion::CreateRequest(create);
    tx.send(pb::WatchRequest { request_union: Some(req) }).unwrap();
    let mut s = WatchClient::new(ch).watch(Received(rx)).await.unwrap().into_inner();
    let first = s.message().await.unwrap().unwrap();
    assert!(first.created && !first.canceled, "{first:?}");
    (tx, s)
}

/// Reads a stream's events into a shared list until the stream ends.
fn collect(rt: &tokio::runtime::Runtime, (tx, mut s): Stream) -> Arc<Mutex<Vec<Ev>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    rt.spawn(async move {
        let _keep_open = tx;
        while let Ok(Some(r)) = s.message().await {
            assert!(!r.canceled, "canceled: {r:?}");
            o.lock().unwrap().extend(flat(&r));
        }
    });
    out
}

/// Runs the collectors (spawned on `rt`, which runs them only inside `block_on`) until
/// `evs` holds an event at `end` or later.
fn reach(
    rt: &tokio::runtime::Runtime,
    evs: &Mutex<Vec<Ev>>,
    end: i64,
    deadline: Instant,
    what: &str,
) {
    eventually(deadline, what, Duration::from_millis(1), || {
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        let got = evs.lock().unwrap().last().map_or(0, |e| e.3);
        if got >= end {
            Ok(())
        } else {
            Err(got)
        }
    });
}

async fn leader_index(eps: &[String]) -> Option<usize> {
    for ep in eps {
        let Ok(ch) = tonic::transport::Endpoint::from_shared(ep.clone()).unwrap().connect().await
        else {
            continue;
        };
        let Ok(st) = MaintenanceClient::new(ch).status(pb::StatusRequest {}).await else {
            continue;
        };
        let st = st.into_inner();
        if st.leader != 0 && st.header.as_ref().is_some_and(|h| h.member_id == st.leader) {
            return eps.iter().position(|e| e == ep);
        }
    }
    None
}

#[test]
fn every_member_streams_the_same_events_in_order_once_each_through_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 100_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let all: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(90);
    let r0 = rt.block_on(put(&all, "start", "0", deadline));
    let leader = eventually(deadline, "no leader", Duration::from_millis(100), || {
        rt.block_on(leader_index(&eps)).ok_or("none yet")
    });
    // One watcher per member, all from the next revision; and one on a follower whose client
    // does not read until the end: its responses (1 KiB values and as much replaced) overflow
    // a 64 KiB HTTP/2 window and then the member's queue, so it must replay history to catch
    // up.
    let live: Vec<_> =
        eps.iter().map(|ep| collect(&rt, rt.block_on(open(ep, everything_from(r0 + 1))))).collect();
    let follower = (leader + 1) % 3;
    let slow =
        rt.block_on(open_with_window(&eps[follower], everything_from(r0 + 1), Some(64 << 10)));
    let value = "x".repeat(1024);
    let mut acked = Vec::new();
    for i in 0..300 {
        if i == 150 {
            servers[leader].kill();
        }
        let up: Vec<&str> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| i < 150 || *j != leader)
            .map(|(_, e)| *e)
            .collect();
        let key = format!("w/{}", i % 20);
        let v = format!("{i}{value}");
        acked.push((key.clone(), rt.block_on(put(&up, &key, &v, deadline)), v));
    }
    let end = rt.block_on(put(&[&eps[follower]], "end", "1", deadline));
    let survivors: Vec<usize> = (0..3).filter(|j| *j != leader).collect();
    for &j in &survivors {
        reach(&rt, &live[j], end, deadline, "a watcher missed the end");
    }
    let reference = live[survivors[0]].lock().unwrap().clone();
    let revs: Vec<i64> = reference.iter().map(|e| e.3).collect();
    assert_eq!(revs, (r0 + 1..=end).collect::<Vec<_>>(), "each revision once, in order");
    for (key, rev, v) in &acked {
        let e = &reference[(rev - r0 - 1) as usize];
        assert_eq!((&e.1, &e.2), (key, v), "the acknowledged put at revision {rev}");
    }
    assert_eq!(*live[survivors[1]].lock().unwrap(), reference, "members agree");
    // The dead leader's watcher saw a prefix of the same stream.
    let dead = live[leader].lock().unwrap().clone();
    assert_eq!(dead[..], reference[..dead.len()]);
    // The slow client reads now and gets everything, once each.
    let slow = collect(&rt, slow);
    reach(&rt, &slow, end, deadline, "the slow watcher did not catch up");
    assert_eq!(*slow.lock().unwrap(), reference, "the slow watcher's events");
    // A new watcher replays the history from the same revision.
    let replay = collect(&rt, rt.block_on(open(&eps[survivors[1]], everything_from(r0 + 1))));
    reach(&rt, &replay, end, deadline, "the replay did not reach the end");
    assert_eq!(*replay.lock().unwrap(), reference, "history replays as it streamed");
}

#[test]
fn flotilla_watch_prints_events_and_a_compacted_start_revision_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = solo(dir.path(), None, &["--watch-progress-notify-interval", "200ms"]);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    let r0 = rt.block_on(put(&[&s.client], "a/0", "zero", deadline));
    let child = Command::new(BIN)
        .args(["watch", "a/", "--prefix", "--prev-kv", "--count", "3", "--json", "--rev"])
        .arg((r0 + 1).to_string())
        .args(["--endpoints", &s.client])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    rt.block_on(put(&[&s.client], "a/0", "one", deadline));
    rt.block_on(put(&[&s.client], "b/0", "elsewhere", deadline));
    rt.block_on(async {
        let d = pb::DeleteRangeRequest { key: "a/0".into(), ..Default::default() };
        kv(&s.client).await.unwrap().delete_range(d).await.unwrap();
    });
    let last = rt.block_on(put(&[&s.client], "a/1", "two", deadline));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            format!(
                r#"{{"type":"PUT","key":"a/0","value":"one","mod_revision":{},"prev_value":"zero"}}"#,
                r0 + 1
            ),
            format!(
                r#"{{"type":"DELETE","key":"a/0","value":"","mod_revision":{},"prev_value":"one"}}"#,
                r0 + 3
            ),
            format!(
                r#"{{"type":"PUT","key":"a/1","value":"two","mod_revision":{last},"prev_value":null}}"#
            ),
        ]
    );
    // A quiet watcher that asked for progress notifications gets empty responses carrying
    // the current revision.
    rt.block_on(async {
        let create =
            pb::WatchCreateRequest { key: "q".into(), progress_notify: true, ..Default::default() };
        let (_tx, mut st) = open(&s.client, create).await;
        let r = st.message().await.unwrap().unwrap();
        assert!(r.events.is_empty() && !r.canceled, "{r:?}");
        assert_eq!(r.header.unwrap().revision, last);
    });
    // History below a compaction is gone: the watch is canceled with the compaction revision.
    rt.block_on(async {
        let c = pb::CompactionRequest { revision: last, physical: false };
        kv(&s.client).await.unwrap().compact(c).await.unwrap();
    });
    let out = Command::new(BIN)
        .args(["watch", "a/", "--prefix", "--rev", "1", "--endpoints", &s.client])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("compacted revision {last}")), "{err}");
}

/// Leases end to end: a lease nobody renews expires (the leader revokes it through the log)
/// even though the leader dies meanwhile, and its key's deletion reaches watchers; a lease
/// kept alive through a follower outlives its TTL several times over; revoking deletes the
/// keys at once.
#[test]
fn leases_expire_across_a_leader_change_keepalives_hold_them_and_revoke_deletes_keys() {
    use flotilla_server::rpc::lease_client::LeaseClient;
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 100_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let all: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&all, "start", "0", deadline));
    let leader = eventually(deadline, "no leader", Duration::from_millis(100), || {
        rt.block_on(leader_index(&eps)).ok_or("none yet")
    });
    let follower = (leader + 1) % 3;
    let lease = |ep: &str| {
        let ep = ep.to_string();
        async move {
            let ch = tonic::transport::Endpoint::from_shared(ep).unwrap().connect().await.unwrap();
            LeaseClient::new(ch)
        }
    };
    let grant = |ttl| {
        rt.block_on(async {
            let mut c = lease(&eps[follower]).await;
            c.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await.unwrap().into_inner()
        })
    };
    let (short, held) = (grant(2), grant(4));
    assert!(short.id > 0 && short.id != held.id && short.ttl == 2);
    let put_leased = |key: &str, id: i64| {
        rt.block_on(async {
            let p = pb::PutRequest {
                key: key.to_string().into(),
                value: "v".into(),
                lease: id,
                ..Default::default()
            };
            kv(&eps[follower]).await.unwrap().put(p).await.unwrap().into_inner()
        })
    };
    let r0 = put_leased("k/short", short.id).header.unwrap().revision;
    put_leased("k/held", held.id);
    let bad = rt.block_on(async {
        let p = pb::PutRequest { key: "k/x".into(), lease: 12345, ..Default::default() };
        kv(&eps[follower]).await.unwrap().put(p).await.unwrap_err()
    });
    assert_eq!(bad.code(), tonic::Code::NotFound, "{bad:?}");
    let watch = collect(
        &rt,
        rt.block_on(open(
            &eps[follower],
            pb::WatchCreateRequest {
                key: "k/".into(),
                range_end: "k0".into(),
                start_revision: r0 + 1,
                ..Default::default()
            },
        )),
    );
    // Keep `held` alive through the follower, once a second, on this runtime.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(pb::LeaseKeepAliveRequest { id: held.id }).unwrap();
    let mut alive = rt.block_on(async {
        lease(&eps[follower]).await.lease_keep_alive(Received(rx)).await.unwrap().into_inner()
    });
    let ttls = Arc::new(Mutex::new(Vec::new()));
    let seen = ttls.clone();
    rt.spawn(async move {
        while let Ok(Some(r)) = alive.message().await {
            seen.lock().unwrap().push(r.ttl);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.send(pb::LeaseKeepAliveRequest { id: held.id }).is_err() {
                return;
            }
        }
    });
    servers[leader].kill();
    let start = Instant::now();
    let ttl_of = |id: i64| {
        rt.block_on(async {
            let req = pb::LeaseTimeToLiveRequest { id, keys: true };
            match lease(&eps[follower]).await.lease_time_to_live(req).await {
                Ok(r) => Ok(r.into_inner()),
                Err(e) => Err(e.message().to_string()),
            }
        })
    };
    // The new leader revokes the unrenewed lease; its key's deletion is an event.
    eventually(deadline, "the short lease did not expire", Duration::from_millis(100), || {
        match ttl_of(short.id) {
            Ok(r) if r.ttl == -1 => Ok(()),
            other => Err(other),
        }
    });
    // `held` outlives its 4 s TTL while renewed.
    while start.elapsed() < Duration::from_secs(9) {
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    }
    let r = ttl_of(held.id).expect("a linearizable read through the follower");
    assert!(r.ttl > 0 && r.ttl <= 4, "{r:?}");
    assert_eq!((r.granted_ttl, r.keys), (4, vec![bytes::Bytes::from("k/held")]), "held is alive");
    assert!(ttls.lock().unwrap().iter().all(|t| *t == 4) && ttls.lock().unwrap().len() >= 5);
    rt.block_on(async {
        let req = pb::LeaseRevokeRequest { id: held.id };
        lease(&eps[follower]).await.lease_revoke(req).await.unwrap();
    });
    let end = rt.block_on(put(&[&eps[follower]], "k/end", "1", deadline));
    reach(&rt, &watch, end, deadline, "the watcher did not see the end");
    let events: Vec<(i32, String)> =
        watch.lock().unwrap().iter().map(|e| (e.0, e.1.clone())).collect();
    assert_eq!(
        events,
        [(0, "k/held".into()), (1, "k/short".into()), (1, "k/held".into()), (0, "k/end".into())],
        "expiry and revocation delete the keys"
    );
    let leases = rt.block_on(async {
        let mut c = lease(&eps[follower]).await;
        c.lease_leases(pb::LeaseLeasesRequest {}).await.unwrap().into_inner().leases
    });
    assert!(leases.is_empty(), "{leases:?}");
}
