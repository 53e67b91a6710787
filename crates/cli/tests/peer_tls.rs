//! TLS between members (etcd's `--peer-cert-file`, `--peer-key-file`,
//! `--peer-trusted-ca-file`, `--peer-client-cert-auth`) with real `flotilla serve`
//! processes: a cluster with `https://` peer URLs elects, replicates (a value far larger than
//! one TLS record included) and serves linearizable reads at every member; a member whose
//! certificate another CA signed is refused by the others (and refuses them) and gets
//! nothing, then catches up once restarted with the right one; bad settings stop a member
//! before any port is bound.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{certificates, cluster_unstarted, eventually, get_at, kv, put, Server, BIN};
use flotilla_server::pb;

/// The peer TLS flags: the certificate and key whose files start with `prefix`, the CA
/// whose file starts with `ca_prefix`.
fn peer_tls(d: &std::path::Path, prefix: &str, ca_prefix: &str) -> Vec<String> {
    let file = |p: &str, n: &str| d.join(format!("{p}{n}")).display().to_string();
    vec![
        "--peer-cert-file".into(),
        file(prefix, "server.pem"),
        "--peer-key-file".into(),
        file(prefix, "server-key.pem"),
        "--peer-trusted-ca-file".into(),
        file(ca_prefix, "ca.pem"),
        "--peer-client-cert-auth".into(),
    ]
}

/// `args` with its peer URLs (listen and initial cluster) made `https://`.
fn https_peers(args: &[String]) -> Vec<String> {
    let mut out = args.to_vec();
    for flag in ["--listen-peer-urls", "--initial-cluster"] {
        let i = out.iter().position(|a| a == flag).expect("the flag") + 1;
        out[i] = out[i].replace("http://", "https://");
    }
    out
}

/// The value of `key` at `ep`, read linearizably or not.
async fn read(ep: &str, key: &str, serializable: bool) -> Result<Option<Vec<u8>>, String> {
    let mut c = kv(ep).await.ok_or("no connection")?;
    let req = pb::RangeRequest { key: key.to_string().into(), serializable, ..Default::default() };
    let r = c.range(req).await.map_err(|e| e.to_string())?.into_inner();
    Ok(r.kvs.into_iter().next().map(|kv| kv.value.to_vec()))
}

/// A member's counter of refused peer connections, from `/metrics` on its client port.
fn refused_peer_connections(s: &Server) -> u64 {
    let port: u16 = s.client.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let m = get_at(port, "/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix("flotilla_peer_bad_connections_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the counter is exported")
}

#[test]
fn members_talk_over_tls_and_refuse_a_certificate_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d, "");
    certificates(d, "rogue-");
    let mut servers = cluster_unstarted(d, 10_000);

    // Bad settings: a clear message and exit status 2, before any port is bound.
    let refused = |args: Vec<String>, want: &str| {
        let out = Command::new(BIN).arg("serve").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
    };
    let base = servers[0].args.clone();
    let tls = peer_tls(d, "", "");
    refused(https_peers(&base), "https:// peer URLs need --peer-cert-file");
    refused([base.clone(), tls.clone()].concat(), "need https:// peer URLs");
    let mut listen_only = base.clone();
    let i = listen_only.iter().position(|a| a == "--listen-peer-urls").unwrap() + 1;
    listen_only[i] = listen_only[i].replace("http://", "https://");
    refused([listen_only, tls.clone()].concat(), "both http:// or both https://");
    let mut junk = tls.clone();
    std::fs::write(d.join("junk.pem"), "not a key").unwrap();
    junk[3] = d.join("junk.pem").display().to_string();
    refused([https_peers(&base), junk].concat(), "--peer-key-file");
    let mut missing = tls.clone();
    missing[5] = d.join("missing.pem").display().to_string();
    refused([https_peers(&base), missing].concat(), "--peer-trusted-ca-file");

    for s in &mut servers {
        s.args = [https_peers(&s.args), tls.clone()].concat();
        s.start();
    }
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = common::runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Linearizable reads at every member: a follower's read asks the leader over TLS.
    let big = "x".repeat(1_000_000); // many TLS records: more than rustls takes at once
    rt.block_on(async {
        let all: Vec<&str> = eps.iter().map(String::as_str).collect();
        put(&all, "k", "v1", deadline).await;
        put(&all, "big", &big, deadline).await;
        for ep in &eps {
            for (key, want) in [("k", "v1"), ("big", big.as_str())] {
                loop {
                    match read(ep, key, false).await {
                        Ok(Some(v)) if v == want.as_bytes() => break,
                        other => {
                            let got = other.map(|v| v.map(|v| v.len()));
                            assert!(Instant::now() < deadline, "{ep} {key}: {got:?}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }
    });
    assert_eq!(refused_peer_connections(&servers[0]), 0, "no refused peer connection yet");

    // Member 2 with a certificate of another CA (trusting the cluster's): the others refuse
    // it as a client (--peer-client-cert-auth) and as a server (its certificate does not
    // check against their CA), so it gets nothing of what is written meanwhile.
    servers[2].kill();
    let plain_args = servers[2].args.clone();
    let n = plain_args.len() - tls.len();
    servers[2].args = [plain_args[..n].to_vec(), peer_tls(d, "rogue-", "")].concat();
    servers[2].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[&eps[0], &eps[1]], "k", "v2", deadline));
    eventually(deadline, "members 0 and 1 refuse member 2", Duration::from_millis(100), || {
        let n = refused_peer_connections(&servers[0]) + refused_peer_connections(&servers[1]);
        if n > 0 {
            Ok(())
        } else {
            Err(n)
        }
    });
    // The leader (0 or 1; a follower does not dial the other followers) refuses member
    // 2's certificate when it dials it.
    let refused_by = |s: &Server| {
        let log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
        log.contains("TLS handshake with a peer failed")
    };
    eventually(
        deadline,
        "the leader refuses member 2's certificate",
        Duration::from_millis(100),
        || {
            if refused_by(&servers[0]) || refused_by(&servers[1]) {
                Ok(())
            } else {
                Err("not logged yet")
            }
        },
    );
    rt.block_on(async {
        // What it serves from its own state (it may not know yet, after a restart, that v1
        // is committed: the leader tells it the commit index) is never v2.
        let stale = read(&eps[2], "k", true).await.expect("a serializable read");
        assert_ne!(stale, Some(b"v2".to_vec()), "member 2 got nothing new");
    });

    // Back with its own certificate, it catches up.
    servers[2].kill();
    servers[2].args = plain_args;
    servers[2].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        loop {
            if let Ok(Some(v)) = read(&eps[2], "k", false).await {
                if v == b"v2" {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "member 2 catches up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// etcd's `--peer-cert-allowed-cn`: a member accepts dialing members only if their
/// certificate (signed by the CA) has that common name. One set to a name the others'
/// certificates lack refuses every connection to it and gets nothing; restarted with their
/// name ("server"), it catches up. Without `--peer-client-cert-auth` the flag is refused.
#[test]
fn peer_cert_allowed_cn_refuses_members_with_another_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d, "");
    let mut servers = cluster_unstarted(d, 10_000);
    let tls = peer_tls(d, "", "");
    let cn = |name: &str| vec!["--peer-cert-allowed-cn".to_string(), name.to_string()];

    let no_client_auth = [https_peers(&servers[0].args), tls[..6].to_vec(), cn("server")].concat();
    let out = Command::new(BIN).arg("serve").args(no_client_auth).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--peer-cert-allowed-cn needs --peer-client-cert-auth"), "{err}");

    for (i, s) in servers.iter_mut().enumerate() {
        let name = if i == 2 { "someone-else" } else { "server" };
        s.args = [https_peers(&s.args), tls.clone(), cn(name)].concat();
        s.start();
    }
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let rt = common::runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[&eps[0], &eps[1]], "k", "v1", deadline));
    eventually(deadline, "member 2 refuses the others", Duration::from_millis(100), || {
        let log = std::fs::read_to_string(servers[2].log_path()).unwrap_or_default();
        match log.contains("is not the allowed \"someone-else\"") {
            true => Ok(()),
            false => Err(refused_peer_connections(&servers[2])),
        }
    });
    rt.block_on(async {
        let stale = read(&eps[2], "k", true).await.expect("a serializable read");
        assert_eq!(stale, None, "member 2 got nothing");
    });

    servers[2].kill();
    let n = servers[2].args.len();
    servers[2].args[n - 1] = "server".into();
    servers[2].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    eventually(deadline, "member 2 catches up", Duration::from_millis(100), || {
        match rt.block_on(read(&eps[2], "k", false)) {
            Ok(Some(v)) if v == b"v1" => Ok(()),
            other => Err(other),
        }
    });
}
