//! The server as a user runs it: `flotilla serve` processes on loopback, driven through the
//! etcd v3 gRPC API. Generous deadlines with retries, never fixed sleeps that race.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    cluster, cluster_unstarted, eventually, free_port, get_at, hash_kv, hashes_at, kv, maintenance,
    members, peer_port, put, runtime, solo, BIN,
};

use flotilla_server::pb;
use flotilla_server::rpc::maintenance_client::MaintenanceClient;

async fn get(ep: &str, key: &str, serializable: bool) -> Option<String> {
    let mut c = kv(ep).await?;
    let req = pb::RangeRequest { key: key.to_string().into(), serializable, ..Default::default() };
    let r = c.range(req).await.ok()?.into_inner();
    r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Raft §7 through the whole server: a member down while the others write past several
/// snapshots catches up by InstallSnapshot when it returns, and restarts of every member
/// rebuild the store from snapshot plus log.
#[test]
fn a_member_down_for_long_catches_up_by_snapshot_and_restarts_keep_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 40);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[&eps[0], &eps[1], &eps[2]], "first", "1", deadline));
    servers[2].kill();
    for i in 0..150 {
        rt.block_on(put(&[&eps[0], &eps[1]], &format!("k{}", i % 10), &format!("v{i}"), deadline));
    }
    servers[2].start();
    // It catches up: its local (serializable) read sees the last write.
    eventually(deadline, "member 3 did not catch up", Duration::from_millis(100), || {
        let got = rt.block_on(get(&eps[2], "k9", true));
        if got.as_deref() == Some("v149") {
            Ok(())
        } else {
            Err(got)
        }
    });
    // Every member, the one rebuilt from a snapshot too, holds the same store: their
    // HashKV at the last write's revision agree (a member that has not applied it yet
    // answers "future revision": retried).
    let last = rt.block_on(put(&[&eps[0], &eps[1]], "last", "x", deadline));
    let hashes = hashes_at(&rt, &eps, last, deadline);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "members' stores differ: {hashes:?}");
    let snaps = dir.path().join("m2/wal/snap");
    let names: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The leader compacted far past where member 3 stopped, so only a snapshot could have
    // brought it back.
    assert!(names.iter().any(|n| n.ends_with(".snap")), "it holds a snapshot: {names:?}");
    // Restart everyone: the data is rebuilt from snapshot plus log.
    for s in &mut servers {
        s.kill();
    }
    for s in &mut servers {
        s.start();
    }
    eventually(deadline, "no linearizable read after restart", Duration::from_millis(100), || {
        let got = rt.block_on(get(&eps[1], "k3", false));
        if got.as_deref() == Some("v143") {
            Ok(())
        } else {
            Err(got)
        }
    });
    assert_eq!(rt.block_on(get(&eps[0], "first", false)).as_deref(), Some("1"));
}

/// etcd's automatic compaction in revision mode: the history older than the last N
/// revisions goes (reads there get etcd's "compacted" error), the newer stays readable.
#[test]
fn auto_compaction_keeps_the_last_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = solo(
        dir.path(),
        None,
        &["--auto-compaction-mode", "revision", "--auto-compaction-retention", "3"],
    );
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = rt.block_on(put(&[&s.client], "k", "v0", deadline));
    let mut last = first;
    for i in 1..10 {
        last = rt.block_on(put(&[&s.client], "k", &format!("v{i}"), deadline));
    }
    // The outcome as (value read, or the error's code and message).
    let at = |rev: i64| -> Result<Vec<u8>, (tonic::Code, String)> {
        rt.block_on(async {
            let req = pb::RangeRequest { key: "k".into(), revision: rev, ..Default::default() };
            match kv(&s.client).await.unwrap().range(req).await {
                Ok(r) => {
                    Ok(r.into_inner().kvs.first().map(|kv| kv.value.to_vec()).unwrap_or_default())
                }
                Err(e) => Err((e.code(), e.message().to_string())),
            }
        })
    };
    // Checked every 5 s: wait for the compaction to happen.
    let message = eventually(deadline, "not compacted in time", Duration::from_millis(200), || {
        match at(first) {
            Err((tonic::Code::OutOfRange, message)) => Ok(message),
            other => Err(other),
        }
    });
    assert!(message.contains("compacted"), "{message}");
    assert_eq!(at(last - 3).unwrap(), b"v6", "the last 3 revisions stay readable");
    assert!(at(last - 4).is_err(), "older ones are gone");
}

/// MemberList answers with every member's client URL, which each member publishes through
/// the log when it starts (etcd clients sync their endpoints from it).
#[test]
fn member_list_shows_every_members_client_url() {
    let dir = tempfile::tempdir().unwrap();
    let servers = cluster(dir.path(), 10_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(put(&[&eps[0], &eps[1], &eps[2]], "k", "v", deadline));
    let mut want = eps.clone();
    want.sort();
    eventually(deadline, "member list", Duration::from_millis(100), || {
        let listed = rt.block_on(members(&eps[0])).ok().map(|m| {
            let mut urls: Vec<String> = m.into_iter().flat_map(|m| m.client_urls).collect();
            urls.sort();
            urls
        });
        if listed.as_ref() == Some(&want) {
            Ok(())
        } else {
            Err((listed, &want))
        }
    });
}

/// etcd's MemberUpdate: a member given a new peer URL, and restarted listening there, is
/// reached there by the others. With another member down, the cluster can only make
/// progress if it is.
#[test]
fn a_member_moved_to_a_new_peer_url_is_reached_there() {
    use flotilla_server::rpc::cluster_client::ClusterClient;
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 10_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[&eps[0], &eps[1], &eps[2]], "before", "1", deadline));
    let old = format!("http://127.0.0.1:{}", peer_port(&servers[2]));
    let new = format!("http://127.0.0.1:{}", free_port());
    let members = rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(eps[0].clone()).unwrap().connect().await;
        let req = pb::MemberUpdateRequest { id: 3, peer_urls: vec![new.clone()] };
        ClusterClient::new(ch.unwrap()).member_update(req).await.unwrap().into_inner().members
    });
    let m3 = members.iter().find(|m| m.id == 3).expect("member 3 listed");
    assert_eq!(m3.peer_urls, vec![new.clone()]);
    servers[2].kill();
    for a in &mut servers[2].args {
        *a = a.replace(&old, &new);
    }
    servers[2].start();
    servers[0].kill();
    rt.block_on(put(&[&eps[1], &eps[2]], "after", "2", deadline));
    eventually(deadline, "member 3 did not apply the write", Duration::from_millis(100), || {
        let got = rt.block_on(get(&eps[2], "after", true));
        if got.as_deref() == Some("2") {
            Ok(())
        } else {
            Err(got)
        }
    });
    // A URL another member uses is refused.
    let taken = rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(eps[1].clone()).unwrap().connect().await;
        let req = pb::MemberUpdateRequest { id: 2, peer_urls: vec![new.clone()] };
        ClusterClient::new(ch.unwrap()).member_update(req).await.unwrap_err()
    });
    assert!(taken.message().contains("already exists"), "{taken:?}");
}

/// `--listen-client-urls` with two URLs: both serve the API, and the first is advertised.
#[test]
fn every_listen_client_url_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let mut s = solo(dir.path(), None, &[]);
    s.kill();
    let i = s.args.iter().position(|x| x == "--listen-client-urls").unwrap();
    s.args[i + 1] = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    s.start();
    let (ea, eb) = (format!("http://127.0.0.1:{a}"), format!("http://127.0.0.1:{b}"));
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(put(&[&ea], "k", "through a", deadline));
    assert_eq!(rt.block_on(get(&eb, "k", false)).as_deref(), Some("through a"));
    let listed = rt.block_on(members(&eb)).unwrap();
    assert_eq!(listed[0].client_urls, vec![ea]);
}

/// `--advertise-client-urls` with two URLs: every member lists both, in order, for the
/// member that advertises them (published through the log), as etcd's MemberList does.
#[test]
fn a_member_advertises_every_client_url_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 200);
    let elsewhere = "http://node-a.example:2379";
    servers[0].kill();
    let urls = format!("{},{elsewhere}", servers[0].client);
    servers[0].args.extend(["--advertise-client-urls".to_string(), urls]);
    servers[0].start();
    let want = vec![servers[0].client.clone(), elsewhere.to_string()];
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in &servers {
        eventually(deadline, "m0's URLs not listed", Duration::from_millis(200), || {
            let m0 = rt.block_on(members(&s.client))?.into_iter().find(|m| m.name == "m0");
            let listed = m0.map(|m| m.client_urls).unwrap_or_default();
            if listed == want {
                Ok(())
            } else {
                Err(format!("{} lists {listed:?}", s.client))
            }
        });
    }
}

/// `flotilla snapshot restore`: a snapshot saved from one cluster seeds a new one (other
/// names, ports and members), which serves the same keys at the same revision with their
/// history, lists its own members, and takes new writes after it. Restoring over a
/// member's data, from a damaged file or from one that is not a snapshot, is refused.
#[test]
fn a_saved_snapshot_restores_into_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["old", "new"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let old = cluster(&dir.path().join("old"), 200);
    let eps: Vec<&str> = old.iter().map(|s| s.client.as_str()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = rt.block_on(put(&eps, "r/a", "1", deadline));
    rt.block_on(put(&eps, "r/a", "2", deadline));
    let last = rt.block_on(put(&eps, "r/b", "3", deadline));
    let file = dir.path().join("snap.db");
    let saved = Command::new(BIN)
        .args(["snapshot", "save"])
        .arg(&file)
        .args(["--endpoints", &eps.join(",")])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    drop(old);

    let mut new = cluster_unstarted(&dir.path().join("new"), 200);
    let arg = |s: &common::Server, flag: &str| {
        let i = s.args.iter().position(|a| a == flag).unwrap();
        s.args[i + 1].clone()
    };
    let restore = |s: &common::Server, file: &std::path::Path| {
        Command::new(BIN)
            .args(["snapshot", "restore"])
            .arg(file)
            .args(["--name", &arg(s, "--name")])
            .args(["--data-dir", &arg(s, "--data-dir")])
            .args(["--initial-cluster", &arg(s, "--initial-cluster")])
            .output()
            .unwrap()
    };
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a snapshot").unwrap();
    let refused = restore(&new[0], &junk);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a Flotilla snapshot"));
    let mut damaged = std::fs::read(&file).unwrap();
    damaged[20] ^= 1;
    std::fs::write(&junk, damaged).unwrap();
    let refused = restore(&new[0], &junk);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("checksum mismatch"));
    for s in &new {
        let out = restore(s, &file);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("revision {last}")), "{said}");
    }
    let again = restore(&new[0], &file);
    assert!(!again.status.success(), "a member's data is never overwritten");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
    for s in &mut new {
        s.start();
    }
    let eps: Vec<&str> = new.iter().map(|s| s.client.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let b = eventually(deadline, "the new cluster serves r/b", Duration::from_millis(100), || {
        rt.block_on(get(eps[1], "r/b", false)).ok_or("no answer")
    });
    assert_eq!(b, "3");
    assert_eq!(rt.block_on(get(eps[2], "r/a", false)).as_deref(), Some("2"));
    let at_first = rt.block_on(async {
        let req = pb::RangeRequest { key: "r/a".into(), revision: first, ..Default::default() };
        kv(eps[0]).await.unwrap().range(req).await.unwrap().into_inner()
    });
    assert_eq!(&at_first.kvs[0].value[..], b"1", "history comes along");
    let next = rt.block_on(put(&eps, "r/c", "4", deadline));
    assert_eq!(next, last + 1, "the revision goes on from the snapshot's");
    let listed: Vec<String> = rt
        .block_on(members(eps[0]))
        .unwrap()
        .into_iter()
        .map(|m| format!("{}={}", m.name, m.peer_urls[0]))
        .collect();
    assert_eq!(listed.join(","), arg(&new[0], "--initial-cluster"), "the new members only");
    let hashes =
        hashes_at(&rt, &new.iter().map(|s| s.client.clone()).collect::<Vec<_>>(), next, deadline);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

/// Periodic mode: history older than the retention period goes.
#[test]
fn auto_compaction_keeps_a_period_of_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = solo(dir.path(), None, &["--auto-compaction-retention", "2s"]);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(40);
    let old = rt.block_on(put(&[&s.client], "p", "old", deadline));
    let at_old = rt.block_on(async {
        let req = pb::RangeRequest { key: "p".into(), revision: old, ..Default::default() };
        kv(&s.client).await.unwrap().range(req).await.map(|r| r.into_inner().count)
    });
    assert_eq!(at_old.map_err(|e| e.code()), Ok(1), "recent history is kept");
    // Writes keep coming; after the period (checked every second), the revision current a
    // period ago becomes the compaction point, so `old`'s revision is compacted away.
    eventually(deadline, "not compacted in time", Duration::from_millis(200), || {
        rt.block_on(put(&[&s.client], "p", "new", deadline));
        let r = rt.block_on(async {
            let req = pb::RangeRequest { key: "p".into(), revision: old, ..Default::default() };
            kv(&s.client).await.unwrap().range(req).await.map(|_| ()).map_err(|e| e.code())
        });
        if r == Err(tonic::Code::OutOfRange) {
            Ok(())
        } else {
            Err(r)
        }
    });
    assert_eq!(rt.block_on(get(&s.client, "p", false)).as_deref(), Some("new"));
}

/// SIGTERM stops a member promptly, even while a client keeps a connection open (requests
/// in flight get a grace period, idle connections do not hold it up), and nothing
/// acknowledged is lost across the restart.
#[test]
fn sigterm_stops_a_member_promptly_with_a_client_connected_and_it_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = solo(dir.path(), None, &[]);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(put(&[&s.client], "kept", "yes", deadline));
    // A connection that stays open across the signal.
    let mut idle = rt.block_on(kv(&s.client)).expect("connected");
    rt.block_on(idle.put(pb::PutRequest {
        key: "k".into(),
        value: "v".into(),
        ..Default::default()
    }))
    .unwrap();
    let child = s.child.as_mut().expect("running");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(sent.elapsed() < Duration::from_secs(8), "still running 8 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "a clean exit: {status:?}");
    s.child = None;
    drop(idle);
    s.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    eventually(deadline, "the data is back after the restart", Duration::from_millis(50), || {
        let got = rt.block_on(get(&s.client, "kept", false));
        if got.as_deref() == Some("yes") {
            Ok(())
        } else {
            Err(got)
        }
    });
    assert_eq!(rt.block_on(get(&s.client, "k", false)).as_deref(), Some("v"));
}

/// Bad input: an oversize request gets a gRPC error and the server keeps serving; a peer
/// that sends garbage to the peer port is dropped and the server keeps serving.
#[test]
fn oversize_requests_and_garbage_peer_frames_are_refused_and_the_server_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let m = free_port();
    let s = solo(dir.path(), Some(m), &[]);
    let p = peer_port(&s);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(put(&[&s.client], "k", "v", deadline));
    let big = pb::PutRequest {
        key: "big".into(),
        value: vec![7u8; 2 << 20].into(),
        ..Default::default()
    };
    let err = rt.block_on(async { kv(&s.client).await.unwrap().put(big).await }).unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    {
        use std::io::Write;
        let mut peer = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
        let _ = peer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\xff\xff\xff");
    }
    rt.block_on(put(&[&s.client], "k", "v2", deadline));
    assert_eq!(rt.block_on(get(&s.client, "k", false)).as_deref(), Some("v2"));
    let ch = rt.block_on(async {
        tonic::transport::Endpoint::from_shared(s.client.clone()).unwrap().connect().await.unwrap()
    });
    let st = rt.block_on(async {
        let status = MaintenanceClient::new(ch.clone()).status(pb::StatusRequest {}).await;
        status.unwrap().into_inner()
    });
    assert_eq!(st.leader, 1, "a single member leads itself");
    // Operations: /health is up, and /metrics counts the bad peer connection and the writes.
    let http = |path: &str| get_at(m, path);
    assert!(http("/health").starts_with("HTTP/1.1 200"), "{}", http("/health"));
    // The same on the client port, beside gRPC, as etcd serves them.
    let c: u16 = s.client.rsplit(':').next().unwrap().parse().unwrap();
    let health = get_at(c, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("{\"health\":\"true\"}\n"),
        "{health}"
    );
    let unknown = get_at(c, "/no/such/path");
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    // A gRPC method not served (etcd 3.5's Maintenance.Downgrade) is gRPC's Unimplemented,
    // not an HTTP 404.
    let code = rt.block_on(async {
        let mut g = tonic::client::Grpc::new(ch);
        g.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/etcdserverpb.Maintenance/Downgrade",
        );
        let req = tonic::Request::new(pb::StatusRequest {});
        let codec = tonic::codec::ProstCodec::<pb::StatusRequest, pb::StatusResponse>::default();
        g.unary(req, path, codec).await.unwrap_err().code()
    });
    assert_eq!(code, tonic::Code::Unimplemented);
    let version = get_at(c, "/version");
    assert!(version.contains("\"etcdserver\":\"flotilla-"), "{version}");
    let on_client_port = get_at(c, "/metrics");
    assert!(on_client_port.contains("flotilla_has_leader 1"), "{on_client_port}");
    assert!(on_client_port.contains("process_resident_memory_bytes "), "{on_client_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics = http("/metrics");
    while !metrics.contains("flotilla_peer_bad_connections_total 1") {
        assert!(Instant::now() < deadline, "the bad peer connection is counted: {metrics}");
        std::thread::sleep(Duration::from_millis(50));
        metrics = http("/metrics");
    }
    assert!(metrics.contains("flotilla_commits_total 2"), "{metrics}");
    assert!(metrics.contains("flotilla_proposal_commit_duration_seconds_count 2"), "{metrics}");
    assert!(
        metrics.contains("flotilla_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("flotilla_has_leader 1"), "{metrics}");
}

/// An invalid configuration gives a clear message and a non-zero exit before any port is
/// bound.
#[test]
fn invalid_configuration_exits_non_zero_before_binding() {
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--name",
            "nobody",
            "--listen-client-urls",
            &format!("http://127.0.0.1:{port}"),
            "--initial-cluster",
            "a=http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--name \"nobody\" is not in --initial-cluster"), "{err}");
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "nothing was bound");
}

/// `serve` reads a TOML file of settings keyed by flag name; flags override it; a mistake in
/// it is a clear error before anything starts.
#[test]
fn a_toml_config_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flotilla.toml");
    std::fs::write(&file, "name = \"ghost\"\ninitial-cluster = \"a=http://127.0.0.1:1\"\n")
        .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config-file", file.to_str().unwrap()])
        .env_remove("FLOTILLA_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--name \"ghost\" is not in --initial-cluster"),
        "the file was read: {err}"
    );
    // A flag overrides the file: now the name is a member, and the next mistake is reported.
    let out = Command::new(BIN)
        .args(["serve", "--config-file", file.to_str().unwrap(), "--name", "a", "--tick-ms", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tick-ms 0 must be in 1..=60000"), "{err}");
    std::fs::write(&file, "nmae = \"typo\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting \"nmae\""));
}

/// etcd's Defragment, as space is reclaimed here: the member snapshots what it applied and
/// compacts its log behind it (the WAL segments before the snapshot go), answering once the
/// snapshot is saved; the data is unchanged, and after a restart too (restored from that
/// snapshot). HashKV is unchanged throughout.
#[test]
fn defragment_snapshots_and_compacts_the_log_and_the_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots would otherwise wait for a million entries.
    let mut s = solo(dir.path(), None, &["--snapshot-count", "1000000"]);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    // 300 KiB of log, all of it behind the snapshot the defragment takes.
    let value = "v".repeat(1024);
    let mut last = 0;
    for i in 0..300 {
        last = rt.block_on(put(&[&s.client], &format!("k{}", i % 50), &value, deadline));
    }
    let snaps = dir.path().join("solo/wal/snap");
    let count_snaps = || {
        std::fs::read_dir(&snaps)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(count_snaps(), 0, "no snapshot before the defragment");
    let before = rt.block_on(hash_kv(&s.client, last)).unwrap();
    let mut m = rt.block_on(maintenance(&s.client)).unwrap();
    let r = rt.block_on(m.defragment(pb::DefragmentRequest {})).unwrap().into_inner();
    assert!(r.header.is_some());
    assert_eq!(count_snaps(), 1, "the defragment saved a snapshot before answering");
    // Nothing new applied since: a second one has nothing to do, and answers at once.
    rt.block_on(m.defragment(pb::DefragmentRequest {})).unwrap();
    assert_eq!(count_snaps(), 1);
    assert_eq!(rt.block_on(hash_kv(&s.client, last)).unwrap(), before);
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    // The log went up to the snapshot: "snapshot=N compacted_through=N" (colours removed).
    let line = log.lines().find(|l| l.contains("log compacted")).expect("a compaction");
    let plain = strip_ansi(line);
    let field = |name: &str| {
        let at = plain.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {plain}"));
        plain[at + name.len() + 1..].split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(field("compacted_through"), field("snapshot"), "{plain}");
    s.kill();
    s.start();
    eventually(deadline, "HashKV after the restart", Duration::from_millis(100), || {
        match rt.block_on(hash_kv(&s.client, last)) {
            Ok(h) if h == before => Ok(()),
            other => Err(other),
        }
    });
    // A linearizable read waits for the member to lead again.
    eventually(
        deadline,
        "a linearizable read after the restart",
        Duration::from_millis(100),
        || {
            let got = rt.block_on(get(&s.client, "k49", false));
            if got.as_deref() == Some(value.as_str()) {
                Ok(())
            } else {
                Err(got.map(|v| v.len()))
            }
        },
    );
}

/// `s` without its terminal colour sequences (ESC [ ... m).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// etcd's alarms are cluster state: one raised through any member is listed by every
/// member (a GET of another kind lists nothing), survives restarts, and a DEACTIVATE
/// through a third member clears it everywhere. Unknown kinds and actions are refused.
#[test]
fn alarms_raised_through_one_member_are_listed_by_all_and_cleared_through_another() {
    use pb::{alarm_action, alarm_type};
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 1000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[&eps[0], &eps[1], &eps[2]], "k", "v", deadline));
    let alarm = |ep: &str, action: i32, member_id: u64, alarm: i32| {
        rt.block_on(async {
            maintenance(ep)
                .await
                .map_err(|_| tonic::Code::Unavailable)?
                .alarm(pb::AlarmRequest { action, member_id, alarm })
                .await
                .map(|r| {
                    r.into_inner().alarms.iter().map(|a| (a.member_id, a.alarm)).collect::<Vec<_>>()
                })
                .map_err(|e| e.code())
        })
    };
    let list = |ep: &str| alarm(ep, alarm_action::GET, 0, alarm_type::NONE);
    let every_member_lists = |want: Vec<(u64, i32)>| {
        for ep in &eps {
            eventually(deadline, &format!("alarms at {ep}"), Duration::from_millis(50), || {
                match list(ep) {
                    Ok(got) if got == want => Ok(()),
                    other => Err(other),
                }
            });
        }
    };
    every_member_lists(vec![]);
    let raised = eventually(deadline, "ACTIVATE", Duration::from_millis(100), || {
        alarm(&eps[0], alarm_action::ACTIVATE, 7, alarm_type::NOSPACE)
    });
    assert_eq!(raised, [(7, alarm_type::NOSPACE)]);
    every_member_lists(vec![(7, alarm_type::NOSPACE)]);
    assert_eq!(alarm(&eps[1], alarm_action::GET, 0, alarm_type::CORRUPT).unwrap(), []);
    for (action, kind) in [(alarm_action::ACTIVATE, 9), (5, alarm_type::NOSPACE)] {
        assert_eq!(alarm(&eps[1], action, 7, kind), Err(tonic::Code::InvalidArgument));
    }
    // Recorded in the log: every member still lists it after a restart of all.
    for s in &mut servers {
        s.kill();
    }
    for s in &mut servers {
        s.start();
    }
    every_member_lists(vec![(7, alarm_type::NOSPACE)]);
    let cleared = eventually(deadline, "DEACTIVATE", Duration::from_millis(100), || {
        alarm(&eps[2], alarm_action::DEACTIVATE, 7, alarm_type::NOSPACE)
    });
    assert_eq!(cleared, [(7, alarm_type::NOSPACE)]);
    every_member_lists(vec![]);
}

/// Unmounts a tmpfs when dropped (also when the test fails).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// A tmpfs of `mib` MiB at `dir`, if this process may mount one (root on Linux).
    fn mount(dir: &std::path::Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A member whose disk fills stops writing (NOSPACE) but asks the leader to record its
/// alarm, so every member lists it while the other two go on serving writes; here the
/// member led when its disk filled, so the others elected another leader meanwhile.
#[test]
fn a_member_whose_disk_fills_has_its_nospace_alarm_recorded_by_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    // Member m2's data on a 70 MiB tmpfs: its first WAL segment (64 MiB, allocated up
    // front) fits, a second does not once the rest is filled.
    let Some(_tfs) = Tmpfs::mount(&dir.path().join("m2"), 70) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let servers = cluster(dir.path(), 1_000_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(120);
    rt.block_on(put(&[&eps[0], &eps[1], &eps[2]], "k", "v", deadline));
    let m2 = rt.block_on(async {
        let mut m = maintenance(&eps[2]).await.unwrap();
        m.status(pb::StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id
    });
    // The harder case: m2 leads when its disk fills, so it must reach the new leader
    // without knowing who that is (a halted member steps no messages).
    eventually(deadline, "m2 leading", Duration::from_millis(200), || {
        rt.block_on(async {
            for ep in &eps {
                if let Ok(mut m) = maintenance(ep).await {
                    let _ = m.move_leader(pb::MoveLeaderRequest { target_id: m2 }).await;
                }
            }
            let mut m = maintenance(&eps[2]).await?;
            let st = m.status(pb::StatusRequest {}).await.map_err(|e| e.to_string())?;
            let leader = st.into_inner().leader;
            if leader == m2 {
                Ok(())
            } else {
                Err(format!("leader {leader}"))
            }
        })
    });
    let free_kib = || {
        let out = Command::new("df")
            .args(["-k", "--output=avail"])
            .arg(dir.path().join("m2"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    let filler = vec![0u8; (free_kib().saturating_sub(200) * 1024) as usize];
    std::fs::write(dir.path().join("m2/filler"), filler).unwrap();
    // 600 KiB values through the healthy members until m2's first segment is full and it
    // fails to allocate the next (about 110 puts).
    let value = "x".repeat(600 << 10);
    let alarms = |ep: &str| {
        rt.block_on(async {
            let mut m = maintenance(ep).await.ok()?;
            let get = pb::AlarmRequest { action: pb::alarm_action::GET, ..Default::default() };
            let r = m.alarm(get).await.ok()?.into_inner();
            Some(r.alarms.iter().map(|a| (a.member_id, a.alarm)).collect::<Vec<_>>())
        })
    };
    let want = vec![(m2, pb::alarm_type::NOSPACE)];
    let mut i = 0;
    while alarms(&eps[0]) != Some(want.clone()) {
        assert!(i < 400, "no NOSPACE alarm recorded after {i} puts of 600 KiB");
        rt.block_on(put(&[&eps[0], &eps[1]], &format!("big{}", i % 4), &value, deadline));
        i += 1;
    }
    // Every member lists it: the two healthy ones from the log, m2 from its own state.
    for ep in &eps {
        eventually(deadline, &format!("the alarm at {ep}"), Duration::from_millis(100), || {
            match alarms(ep) {
                Some(got) if got == want => Ok(()),
                other => Err(other),
            }
        });
    }
    // m2 keeps asking every 2 s (it no longer applies the log): once recorded, the asking
    // adds no entries. Two of its askings later, the healthy members' commit index has
    // not moved.
    let commit = |ep: &str| {
        rt.block_on(async {
            let mut m = maintenance(ep).await.ok()?;
            Some(m.status(pb::StatusRequest {}).await.ok()?.into_inner().raft_index)
        })
    };
    let before = commit(&eps[0]);
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(commit(&eps[0]), before, "the recorded alarm was proposed again");
    // The others still take writes.
    rt.block_on(put(&[&eps[0], &eps[1]], "after", "ok", deadline));
}

/// Concurrent writes arrive in batches, whose WAL syncs the sync thread makes while the
/// driver goes on (`flotilla_wal_background_syncs_total` counts them); a SIGKILL in the
/// middle of the load loses none of the writes acknowledged before it. (A killed process
/// keeps what it wrote, synced or not: that a write is acknowledged only once synced is
/// shown by the simulator, whose crashes lose unsynced data.)
#[test]
fn writes_synced_in_the_background_survive_a_kill_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let m = free_port();
    let mut s = solo(dir.path(), Some(m), &[]);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[&s.client], "warm", "up", deadline));
    let acked: Vec<(String, String)> = rt.block_on(async {
        let mut writers = Vec::new();
        for c in 0..32 {
            let ep = s.client.clone();
            writers.push(tokio::spawn(async move {
                let mut kv = kv(&ep).await.expect("connected");
                let mut acked = Vec::new();
                for i in 0.. {
                    let (k, v) = (format!("c{c}/{i}"), format!("v{i}"));
                    let req = pb::PutRequest {
                        key: k.clone().into(),
                        value: v.clone().into(),
                        ..Default::default()
                    };
                    match kv.put(req).await {
                        Ok(_) => acked.push((k, v)),
                        Err(_) => break, // the server was killed
                    }
                }
                acked
            }));
        }
        // Under load, the syncs go to the sync thread; then kill the server mid-load.
        let metrics_deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = tokio::task::spawn_blocking(move || get_at(m, "/metrics")).await.unwrap();
            let n: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("flotilla_wal_background_syncs_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if n >= 20 {
                break;
            }
            assert!(Instant::now() < metrics_deadline, "background syncs under load: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.kill();
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        all
    });
    assert!(acked.len() >= 20, "writes were acknowledged before the kill: {}", acked.len());
    s.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    eventually(deadline, "the server is back", Duration::from_millis(50), || {
        match rt.block_on(get(&s.client, "warm", false)) {
            Some(v) if v == "up" => Ok(()),
            other => Err(other),
        }
    });
    for (k, v) in &acked {
        assert_eq!(rt.block_on(get(&s.client, k, false)).as_deref(), Some(v.as_str()), "{k}");
    }
}

/// `--json` output is JSON whatever the keys and values hold: quotes, backslashes, control
/// characters and non-ASCII text come back unchanged through a JSON parser (the output was
/// once written with Rust's `{:?}`, which is not JSON for control characters).
#[test]
fn json_output_parses_for_keys_and_values_with_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let s = solo(dir.path(), None, &[]);
    let (key, value) = ("k\"\\\u{1}é", "line\nbreak\ttab\u{7f}\u{0}end");
    let rt = runtime();
    rt.block_on(put(&[&s.client], key, value, Instant::now() + Duration::from_secs(30)));
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).args(["--endpoints", &s.client]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let parse = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let got = parse(run(&["get", key, "--json"]).trim_end());
    assert_eq!(got["kvs"][0]["key"], key);
    assert_eq!(got["kvs"][0]["value"], value);
    let got = parse(run(&["watch", key, "--json", "--rev", "1", "--count", "1"]).trim_end());
    assert_eq!((&got["key"], &got["value"]), (&key.into(), &value.into()));
    for line in run(&["member", "list", "--json"]).lines() {
        assert_eq!(parse(line)["name"], "solo");
    }
    for line in run(&["status", "--json"]).lines() {
        assert_eq!(parse(line)["endpoint"], s.client.as_str());
    }
}

/// Request ids are unique per member only (each member counts from its start time): a
/// member must answer its client from its own request's entry, never from another member's
/// entry with the same id. Here every member counts from the same seed, so concurrent
/// writes at two members share ids; each put's answered revision must be where its own key
/// was written, with its own value.
#[test]
fn a_member_answers_its_own_requests_when_another_members_request_ids_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = common::cluster_unstarted(dir.path(), 10_000);
    for s in &mut servers {
        let log = std::fs::File::create(s.log_path()).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .args(&s.args)
            .env("FLOTILLA_TEST_REQUEST_ID_SEED", "1000")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        s.child = Some(child);
    }
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(put(&[&eps[0], &eps[1], &eps[2]], "ready", "yes", deadline));
    let answered = rt.block_on(async {
        let (a, b) = tokio::join!(writes_at(&eps[0], "m0"), writes_at(&eps[1], "m1"));
        [a, b].concat()
    });
    assert!(answered.len() >= 300, "only {} puts answered", answered.len());
    rt.block_on(async {
        let mut c = kv(&eps[2]).await.expect("a connection");
        for (key, value, revision) in &answered {
            let req = pb::RangeRequest { key: key.clone().into(), ..Default::default() };
            let r = c.range(req).await.expect("a read").into_inner();
            let kv = r.kvs.first().unwrap_or_else(|| panic!("{key} answered but absent"));
            assert_eq!(
                (kv.mod_revision, String::from_utf8_lossy(&kv.value)),
                (*revision, value.into()),
                "{key}: answered with revision {revision}"
            );
        }
    });
}

/// 200 puts of keys and values named after `name` at `ep`, one after another: what was
/// answered, with the revision each answer gave.
async fn writes_at(ep: &str, name: &str) -> Vec<(String, String, i64)> {
    let mut c = kv(ep).await.expect("a connection");
    let mut out = Vec::new();
    for i in 0..200 {
        let (key, value) = (format!("{name}/{i}"), format!("v-{name}-{i}"));
        let req = pb::PutRequest {
            key: key.clone().into(),
            value: value.clone().into(),
            ..Default::default()
        };
        // Only what was answered is checked.
        if let Ok(r) = c.put(req).await {
            out.push((key, value, r.into_inner().header.expect("a header").revision));
        }
    }
    out
}

/// A write forwarded to a member that does not lead is refused back to the member that
/// forwarded it, as "leader changed" (nothing was proposed, the client may retry), rather
/// than dropped with that member's client left to time out. The test stands in for the third
/// member: it listens on that member's peer port from the start (the two real members keep
/// their connections to it), forwards a write in its name to the follower, and reads the
/// refusal that comes back.
#[test]
fn a_write_forwarded_to_a_member_that_does_not_lead_is_refused_back_as_leader_changed() {
    use flotilla_raft::NodeId;
    use flotilla_server::transport::PeerFrame;
    use flotilla_server::wire;
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster_unstarted(dir.path(), 10_000);
    // Members m0..m2 are ids 1..3; m2 is the test.
    let m_id = NodeId(3);
    let listener = std::net::TcpListener::bind(("127.0.0.1", peer_port(&servers[2]))).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Every connection is read, and refusals in it are passed on (the handshake's cluster id
    // is taken as it comes: the test learns it from the members' answers only later).
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = bytes::BytesMut::new();
                let mut from = None;
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = std::io::Read::read(&mut conn, &mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Some(frame)) = wire::take_frame(&mut buf) {
                        match from {
                            None => from = Some(frame),
                            Some(ref hs) => {
                                if let Ok(PeerFrame::Refused(data)) = PeerFrame::decode(frame) {
                                    let _ = tx.send((hs.clone(), pb::ForwardRefusal::decode(data)));
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    for s in &mut servers[..2] {
        s.start();
    }
    let eps: Vec<String> = servers[..2].iter().map(|s| s.client.clone()).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(put(&[&eps[0], &eps[1]], "ready", "yes", deadline));
    let (leader, cluster_id) = rt.block_on(async {
        let mut m = maintenance(&eps[0]).await.expect("a connection");
        let s = m.status(pb::StatusRequest {}).await.expect("a status").into_inner();
        (s.leader, s.header.expect("a header").cluster_id)
    });
    let f = if leader == 1 { 1 } else { 0 };
    let f_id = NodeId(f as u64 + 1);

    let put = pb::PutRequest { key: "forwarded".into(), value: "x".into(), ..Default::default() };
    let req = pb::InternalRequest {
        id: 4242,
        member: m_id.0,
        request: Some(pb::internal_request::Request::Put(put)),
        ..Default::default()
    };
    let mut out = Vec::new();
    wire::put_frame(&mut out, &wire::Handshake { cluster_id, from: m_id, to: f_id }.encode());
    wire::put_frame(&mut out, &PeerFrame::Forward(req.encode_to_vec().into()).encode());
    let mut to_f = std::net::TcpStream::connect(("127.0.0.1", peer_port(&servers[f]))).unwrap();
    std::io::Write::write_all(&mut to_f, &out).unwrap();

    let (from, refusal) = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(servers[f].log_path()).unwrap_or_default();
        panic!("no refusal in time ({e}); member {f}'s log:\n{log}")
    });
    let refusal = refusal.expect("a well-formed refusal");
    let from = wire::Handshake::check(&from, cluster_id, m_id).expect("a handshake").from;
    assert_eq!(from, f_id, "the refusal comes from the follower the write was forwarded to");
    assert_eq!((refusal.request, refusal.leader_changed), (4242, true), "{refusal:?}");
    // And nothing was proposed.
    let got = rt.block_on(async {
        let mut c = kv(&eps[f]).await.expect("a connection");
        let req = pb::RangeRequest { key: "forwarded".into(), ..Default::default() };
        c.range(req).await.expect("a read").into_inner().kvs.len()
    });
    assert_eq!(got, 0);
}
