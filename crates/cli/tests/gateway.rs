//! etcd's JSON gateway (`POST /v3/...`, as `curl` uses it in etcd's documentation) against
//! real `flotilla serve` processes: KV, transactions, leases, watches, membership,
//! maintenance (alarms, hashes, defragment, snapshot, leader transfer) and auth
//! administration, answered as etcd's grpc-gateway answers, at any member.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, put, runtime};
use serde_json::{json, Value};
use sha2::Digest as _;

/// An HTTP/1.1 POST of `body` to `path` at `ep` (`http://IP:PORT`), with `token` as the
/// `Authorization` header if given: the status code and the JSON answer.
fn post(ep: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = ep.trim_start_matches("http://");
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: {t}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    t.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

/// Reads from `t` into `seen` until it holds `needle` (or fails the test after 20 s).
fn read_until(t: &mut std::net::TcpStream, seen: &mut String, needle: &str) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        assert!(Instant::now() < deadline, "{needle} not in {seen}");
        match t.read(&mut buf) {
            Ok(0) => panic!("the stream ended before {needle}: {seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// The body of a chunked HTTP/1.1 answer (`transfer-encoding: chunked`, as a streamed
/// answer comes).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// A streamed answer's lines (`{"result": ...}` each), read to its end.
fn post_lines(ep: &str, path: &str, token: Option<&str>) -> Vec<Value> {
    use std::io::{Read, Write};
    let addr = ep.trim_start_matches("http://");
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: {t}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 2\r\n\
         Connection: close\r\n\r\n{{}}"
    );
    t.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A JSON string field holding a number (as protobuf's mapping writes 64-bit integers).
fn num(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a number: {v}"))
}

/// The member id of the member at `ep`, as its status answers it.
fn status_id(ep: &str) -> String {
    let r = ok(ep, "/v3/maintenance/status", json!({}), None);
    r["header"]["member_id"].as_str().expect("a member id").to_string()
}

/// `post`, expecting 200.
fn ok(ep: &str, path: &str, body: Value, token: Option<&str>) -> Value {
    let (code, v) = post(ep, path, &body.to_string(), token);
    assert_eq!(code, 200, "{path} {body}: {v}");
    v
}

#[test]
fn the_json_gateway_answers_as_etcds() {
    let dir = tempfile::tempdir().unwrap();
    let servers = cluster(dir.path(), 10_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    rt.block_on(put(&refs, "ready", "yes", Instant::now() + Duration::from_secs(60)));
    let (a, b, c) = (&eps[0], &eps[1], &eps[2]);

    // The example of etcd's documentation: foo = bar, in base64, at one member; read at
    // another (linearizable by default).
    let r = ok(a, "/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"}), None);
    let rev: i64 = r["header"]["revision"].as_str().expect("a string").parse().unwrap();
    assert!(r["header"]["cluster_id"].is_string() && r["header"]["raft_term"].is_string());
    let r = ok(b, "/v3/kv/range", json!({"key": "Zm9v"}), None);
    assert_eq!(r["count"], "1");
    assert_eq!(r["kvs"][0]["value"], "YmFy");
    assert_eq!(r["kvs"][0]["mod_revision"], rev.to_string());
    assert_eq!(r["kvs"][0]["version"], "1");
    assert!(r["kvs"][0].get("lease").is_none(), "defaults are left out: {r}");
    // etcd 3.3's prefix, and a prefix range with camelCase names and a number for limit.
    let r = ok(c, "/v3beta/kv/range", json!({"key": "Zm9v", "rangeEnd": "Zm9w", "limit": 5}), None);
    assert_eq!(r["kvs"][0]["key"], "Zm9v");

    // A transaction whose compare holds, then the same one failing.
    let txn = json!({
        "compare": [{"key": "Zm9v", "result": "EQUAL", "target": "VALUE", "value": "YmFy"}],
        "success": [{"request_put": {"key": "Zm9v", "value": "YmF6", "prev_kv": true}}],
        "failure": [{"request_range": {"key": "Zm9v"}}]
    });
    let r = ok(c, "/v3/kv/txn", txn.clone(), None);
    assert_eq!(r["succeeded"], true);
    assert_eq!(r["responses"][0]["response_put"]["prev_kv"]["value"], "YmFy");
    let r = ok(a, "/v3/kv/txn", txn, None);
    assert!(r.get("succeeded").is_none(), "false is left out: {r}");
    assert_eq!(r["responses"][0]["response_range"]["kvs"][0]["value"], "YmF6");

    // Leases: grant, attach, time to live with keys, revoke (the key goes with it).
    let r = ok(b, "/v3/lease/grant", json!({"TTL": 60}), None);
    let id = r["ID"].as_str().expect("an ID").to_string();
    assert_eq!(r["TTL"], "60");
    ok(a, "/v3/kv/put", json!({"key": "bGVhc2Vk", "value": "eA==", "lease": id}), None);
    let r = ok(c, "/v3/kv/lease/timetolive", json!({"ID": id, "keys": true}), None);
    assert_eq!(r["keys"], json!(["bGVhc2Vk"]));
    assert_eq!(r["grantedTTL"], "60");
    let r = ok(c, "/v3/lease/keepalive", json!({"ID": id}), None);
    assert_eq!((&r["result"]["ID"], &r["result"]["TTL"]), (&json!(id), &json!("60")), "{r}");
    let r = ok(a, "/v3/lease/leases", json!({}), None);
    assert_eq!(r["leases"], json!([{"ID": id}]));
    ok(a, "/v3/lease/revoke", json!({"ID": id}), None);
    let r = ok(b, "/v3/kv/range", json!({"key": "bGVhc2Vk"}), None);
    assert!(r.get("kvs").is_none(), "{r}");

    // Watch: the answer streams one {"result": ...} per line while the client stays.
    let mut w = std::net::TcpStream::connect(c.trim_start_matches("http://")).unwrap();
    w.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let body = r#"{"create_request": {"key": "d2F0Y2hlZA==", "prev_kv": true}}"#;
    let req = format!(
        "POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut w, req.as_bytes()).unwrap();
    let mut seen = String::new();
    read_until(&mut w, &mut seen, r#"{"result":{"header":"#);
    read_until(&mut w, &mut seen, r#""created":true"#);
    ok(a, "/v3/kv/put", json!({"key": "d2F0Y2hlZA==", "value": "eQ=="}), None);
    read_until(&mut w, &mut seen, r#""events":[{"kv":{"key":"d2F0Y2hlZA==""#);
    read_until(&mut w, &mut seen, r#""value":"eQ==""#);
    ok(b, "/v3/kv/deleterange", json!({"key": "d2F0Y2hlZA=="}), None);
    read_until(&mut w, &mut seen, r#""events":[{"type":"DELETE","kv":{"key":"d2F0Y2hlZA==""#);
    read_until(&mut w, &mut seen, r#""prev_kv":{"key":"d2F0Y2hlZA==""#);
    drop(w);
    let (code, v) = post(a, "/v3/watch", r#"{"nothing": {}}"#, None);
    assert_eq!(code, 400, "{v}");

    let r = ok(b, "/v3/kv/deleterange", json!({"key": "Zm9v", "prev_kv": true}), None);
    assert_eq!(r["deleted"], "1");
    assert_eq!(r["prev_kvs"][0]["value"], "YmF6");
    let r = ok(a, "/v3/kv/compaction", json!({"revision": rev}), None);
    assert!(r["header"].is_object());
    let r = ok(b, "/v3/cluster/member/list", json!({}), None);
    assert_eq!(r["members"].as_array().map(Vec::len), Some(3), "{r}");
    assert!(r["members"][0]["peerURLs"][0].as_str().unwrap().starts_with("http://"));
    let r = ok(c, "/v3/maintenance/status", json!({}), None);
    assert!(r["leader"].is_string() && r["raftIndex"].is_string(), "{r}");

    // Bad input: gRPC's InvalidArgument as HTTP 400, with etcd's gateway error body.
    let (code, v) = post(a, "/v3/kv/range", "{not json", None);
    assert_eq!((code, &v["code"]), (400, &json!(3)), "{v}");
    let (code, v) = post(a, "/v3/kv/range", r#"{"key": "!!"}"#, None);
    assert_eq!(code, 400);
    assert!(v["message"].as_str().unwrap().starts_with("key: not base64"), "{v}");
    let (code, v) = post(a, "/v3/kv/range", r#"{"key": "Zm9v", "revision": "1"}"#, None);
    assert_eq!(
        (code, &v["error"]),
        (400, &json!("etcdserver: mvcc: required revision has been compacted"))
    );

    // An oversize request: gRPC's ResourceExhausted as HTTP 429, nothing written.
    let big = "A".repeat(2_200_000); // base64 of 1.65 MB, over the 1.5 MiB default
    let (code, v) = post(a, "/v3/kv/put", &format!(r#"{{"key": "Ymln", "value": "{big}"}}"#), None);
    assert_eq!((code, &v["code"]), (429, &json!(8)), "{v}");
    let r = ok(b, "/v3/kv/range", json!({"key": "Ymln"}), None);
    assert!(r.get("kvs").is_none(), "{r}");

    // Membership: a learner added, its peer URL updated, refused promotion to an unknown
    // ID, then removed.
    let r = ok(
        a,
        "/v3/cluster/member/add",
        json!({"peerURLs": ["http://127.0.0.1:9"], "isLearner": true}),
        None,
    );
    assert_eq!(r["member"]["isLearner"], true, "{r}");
    assert_eq!(r["members"].as_array().map(Vec::len), Some(4), "{r}");
    let learner = r["member"]["ID"].clone();
    let r = ok(
        b,
        "/v3/cluster/member/update",
        json!({"ID": learner, "peerURLs": ["http://127.0.0.1:10"]}),
        None,
    );
    let updated = r["members"].as_array().unwrap().iter().find(|m| m["ID"] == learner).cloned();
    assert_eq!(updated.expect("the learner")["peerURLs"], json!(["http://127.0.0.1:10"]));
    // Refusals in etcd's words, at every member (a follower too, which forwards changes
    // to the leader): an unknown member is NotFound (404), a voter is not promoted (412).
    for ep in &eps {
        for path in ["/v3/cluster/member/promote", "/v3/cluster/member/remove"] {
            let (code, v) = post(ep, path, r#"{"ID": "12345"}"#, None);
            assert_eq!((code, &v["error"]), (404, &json!("etcdserver: member not found")), "{v}");
        }
        let id = status_id(ep);
        let (code, v) =
            post(ep, "/v3/cluster/member/promote", &json!({"ID": id}).to_string(), None);
        let refused = json!("etcdserver: can only promote a learner member");
        assert_eq!((code, &v["error"]), (412, &refused), "{v}");
        // Only the leader can tell that the learner (nothing listens at its URL) lags: at a
        // follower too the leader's refusal comes back (before, the client timed out).
        let (code, v) =
            post(ep, "/v3/cluster/member/promote", &json!({"ID": learner}).to_string(), None);
        let refused =
            json!("etcdserver: can only promote a learner member which is in sync with leader");
        assert_eq!((code, &v["error"]), (412, &refused), "{v}");
    }
    let r = ok(c, "/v3/cluster/member/remove", json!({"ID": learner}), None);
    assert_eq!(r["members"].as_array().map(Vec::len), Some(3), "{r}");

    // Maintenance: no alarms; the members' hashes of the store agree at one revision;
    // defragment; the leader moved to another member.
    let r = ok(b, "/v3/maintenance/alarm", json!({"action": "GET"}), None);
    assert!(r.get("alarms").is_none(), "{r}");
    assert!(ok(a, "/v3/maintenance/hash", json!({}), None)["hash"].is_u64());
    let at = num(&ok(a, "/v3/kv/put", json!({"key": "aGFzaA==", "value": "eA=="}), None)["header"]
        ["revision"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hashes: Vec<Value> = eps
            .iter()
            .map(|ep| {
                ok(ep, "/v3/maintenance/hashkv", json!({"revision": at}), None)["hash"].clone()
            })
            .collect();
        if hashes.iter().all(|h| h.is_u64() && *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "hashes at {at} differ: {hashes:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok(c, "/v3/maintenance/defragment", json!({}), None)["header"].is_object());
    let status = |ep: &str| ok(ep, "/v3/maintenance/status", json!({}), None);
    let leader = num(&status(a)["leader"]);
    let (lead_ep, target) =
        eps.iter().map(|ep| (ep, num(&status(ep)["header"]["member_id"]))).fold(
            (None, None),
            |(l, t), (ep, id)| {
                if id == leader {
                    (Some(ep.clone()), t)
                } else {
                    (l, t.or(Some(id)))
                }
            },
        );
    let (lead_ep, target) = (lead_ep.expect("the leader's endpoint"), target.expect("a follower"));
    ok(
        &lead_ep,
        "/v3/maintenance/transfer-leadership",
        json!({"targetID": target.to_string()}),
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    // While there is no leader the field is left out (0).
    while status(a)["leader"].as_str() != Some(&target.to_string()) {
        assert!(Instant::now() < deadline, "leadership not moved to {target}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // etcd's Lock service through the gateway: the key returned (name/lease in hex) holds
    // the lock until unlocked.
    let id = ok(a, "/v3/lease/grant", json!({"TTL": 60}), None)["ID"].clone();
    let r = ok(b, "/v3/lock/lock", json!({"name": "Z3c=", "lease": id}), None);
    let key = base64_decode(r["key"].as_str().expect("a key"));
    let hex = format!("{:x}", id.as_str().unwrap().parse::<i64>().unwrap());
    assert_eq!(key, [b"gw/", hex.as_bytes()].concat());
    let k = r["key"].clone();
    assert_eq!(ok(c, "/v3/kv/range", json!({"key": k}), None)["count"], "1");
    ok(c, "/v3/lock/unlock", json!({"key": k}), None);
    assert!(ok(a, "/v3/kv/range", json!({"key": k}), None).get("count").is_none());

    // Election: campaign, leader, observe (streamed), proclaim, resign.
    let id = ok(a, "/v3/lease/grant", json!({"TTL": 60}), None)["ID"].clone();
    let camp = json!({"name": "ZWw=", "lease": id, "value": "b25l"}); // "el", "one"
    let leader = ok(c, "/v3/election/campaign", camp, None)["leader"].clone();
    assert_eq!(leader["name"], "ZWw=");
    let r = ok(a, "/v3/election/leader", json!({"name": "ZWw="}), None);
    assert_eq!(r["kv"]["value"], "b25l");
    let mut w = std::net::TcpStream::connect(b.trim_start_matches("http://")).unwrap();
    w.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let body = r#"{"name": "ZWw="}"#;
    let req = format!(
        "POST /v3/election/observe HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut w, req.as_bytes()).unwrap();
    let mut seen = String::new();
    read_until(&mut w, &mut seen, r#""value":"b25l""#);
    ok(b, "/v3/election/proclaim", json!({"leader": leader, "value": "dHdv"}), None);
    read_until(&mut w, &mut seen, r#""value":"dHdv""#);
    drop(w);
    ok(a, "/v3/election/resign", json!({"leader": leader}), None);
    let (code, v) = post(a, "/v3/election/leader", r#"{"name": "ZWw="}"#, None);
    assert_eq!((code, &v["error"]), (500, &json!("election: no leader")), "{v}");

    // Snapshot: base64 chunks, one per line; the stream ends with the SHA-256 of what
    // precedes it, which etcdctl checks.
    let lines = post_lines(b, "/v3/maintenance/snapshot", None);
    let mut stream = Vec::new();
    for l in &lines {
        let blob = l["result"]["blob"].as_str().expect("a blob");
        stream.extend(base64_decode(blob));
    }
    assert!(lines.last().unwrap()["result"].get("remaining_bytes").is_none(), "{:?}", lines.last());
    let (data, sum) = stream.split_at(stream.len() - 32);
    assert_eq!(sha2::Sha256::digest(data)[..], *sum, "the stream's SHA-256");

    // Auth, administered through the gateway: root and a reader, then enabled.
    ok(a, "/v3/auth/user/add", json!({"name": "root", "password": "rootpw"}), None);
    ok(b, "/v3/auth/user/grant", json!({"user": "root", "role": "root"}), None);
    ok(c, "/v3/auth/role/add", json!({"name": "reader"}), None);
    let perm = json!({"permType": "READ", "key": "Zm9v", "range_end": "Zm9w"});
    ok(a, "/v3/auth/role/grant", json!({"name": "reader", "perm": perm}), None);
    ok(a, "/v3/auth/user/add", json!({"name": "alice", "password": "alicepw"}), None);
    ok(b, "/v3/auth/user/grant", json!({"user": "alice", "role": "reader"}), None);
    ok(c, "/v3/auth/enable", json!({}), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = post(c, "/v3/kv/range", r#"{"key": "Zm9v"}"#, None);
        if code == 400 {
            assert_eq!(v["message"], "etcdserver: user name is empty");
            break;
        }
        assert!(Instant::now() < deadline, "auth enabled at member 2: {code} {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, v) = post(b, "/v3/auth/authenticate", r#"{"name": "root", "password": "no"}"#, None);
    assert_eq!(code, 400, "{v}");
    let r = ok(b, "/v3/auth/authenticate", json!({"name": "root", "password": "rootpw"}), None);
    let token = r["token"].as_str().expect("a token").to_string();
    let root = Some(token.as_str());
    // At once at another member too: one that does not know the token yet catches up
    // before it answers (before, this was "invalid auth token" until it had applied it).
    ok(c, "/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"}), root);
    let r = ok(a, "/v3/kv/range", json!({"key": "Zm9v"}), root);
    assert_eq!(r["kvs"][0]["value"], "YmFy");
    let (code, v) = post(c, "/v3/kv/range", r#"{"key": "Zm9v"}"#, Some("not-a-token"));
    assert_eq!((code, &v["code"]), (401, &json!(16)), "{v}");
    let r = ok(a, "/v3/auth/status", json!({}), root);
    assert!(r["enabled"] == true && r["authRevision"].is_string(), "{r}");
    assert_eq!(ok(b, "/v3/auth/user/list", json!({}), root)["users"], json!(["alice", "root"]));
    assert_eq!(
        ok(b, "/v3/auth/user/get", json!({"name": "alice"}), root)["roles"],
        json!(["reader"])
    );
    assert_eq!(ok(c, "/v3/auth/role/list", json!({}), root)["roles"], json!(["reader"]));
    let r = ok(c, "/v3/auth/role/get", json!({"role": "reader"}), root);
    // READ is the enum's default, so it is left out.
    assert_eq!(r["perm"], json!([{"key": "Zm9v", "range_end": "Zm9w"}]), "{r}");
    // Admin calls need root; alice may read her range and not write it.
    let (code, v) = post(a, "/v3/auth/user/list", "{}", None);
    assert_eq!(code, 400, "{v}");
    let r = ok(a, "/v3/auth/authenticate", json!({"name": "alice", "password": "alicepw"}), None);
    let alice = r["token"].as_str().expect("a token").to_string();
    let (code, v) = post(b, "/v3/auth/user/list", "{}", Some(&alice));
    assert_eq!((code, &v["error"]), (403, &json!("etcdserver: permission denied")), "{v}");
    assert_eq!(ok(b, "/v3/kv/range", json!({"key": "Zm9v"}), Some(&alice))["count"], "1");
    let (code, _) = post(c, "/v3/kv/put", r#"{"key": "Zm9v", "value": "eA=="}"#, Some(&alice));
    assert_eq!(code, 403);
    ok(a, "/v3/auth/user/changepw", json!({"name": "alice", "password": "new"}), root);
    ok(b, "/v3/auth/authenticate", json!({"name": "alice", "password": "new"}), None);
    ok(
        c,
        "/v3/auth/role/revoke",
        json!({"role": "reader", "key": "Zm9v", "range_end": "Zm9w"}),
        root,
    );
    assert!(ok(c, "/v3/auth/role/get", json!({"role": "reader"}), root).get("perm").is_none());
    ok(a, "/v3/auth/user/revoke", json!({"name": "alice", "role": "reader"}), root);
    ok(a, "/v3/auth/user/delete", json!({"name": "alice"}), root);
    ok(b, "/v3/auth/role/delete", json!({"role": "reader"}), root);
    assert_eq!(ok(b, "/v3/auth/user/list", json!({}), root)["users"], json!(["root"]));
    ok(c, "/v3/auth/disable", json!({}), root);
    let deadline = Instant::now() + Duration::from_secs(30);
    while post(a, "/v3/kv/range", r#"{"key": "Zm9v"}"#, None).0 != 200 {
        assert!(Instant::now() < deadline, "auth disabled at member 0");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64")
}
