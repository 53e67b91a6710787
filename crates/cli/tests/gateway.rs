//! etcd's JSON gateway (`POST /v3/...`, as `curl` uses it in etcd's documentation) against
//! real `flotilla serve` processes: KV, transactions, leases, members, status and auth,
//! answered as etcd's grpc-gateway answers, at any member.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, put, runtime};
use serde_json::{json, Value};

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

    // With auth on, a request needs the token Authenticate gives, in Authorization.
    rt.block_on(async {
        use flotilla_server::pb;
        use flotilla_server::rpc::auth_client::AuthClient;
        let ch = tonic::transport::Endpoint::from_shared(a.clone()).unwrap().connect().await;
        let mut auth = AuthClient::new(ch.unwrap());
        let root = pb::AuthUserAddRequest {
            name: "root".into(),
            password: "rootpw".into(),
            ..Default::default()
        };
        auth.user_add(root).await.unwrap();
        let grant = pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
        auth.user_grant_role(grant).await.unwrap();
        auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    });
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
    // At once at another member too: one that does not know the token yet catches up
    // before it answers (before, this was "invalid auth token" until it had applied it).
    ok(c, "/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"}), Some(&token));
    let r = ok(a, "/v3/kv/range", json!({"key": "Zm9v"}), Some(&token));
    assert_eq!(r["kvs"][0]["value"], "YmFy");
    let (code, v) = post(c, "/v3/kv/range", r#"{"key": "Zm9v"}"#, Some("not-a-token"));
    assert_eq!((code, &v["code"]), (401, &json!(16)), "{v}");
}
