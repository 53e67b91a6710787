//! etcd's Auth API against real `flotilla serve` processes: users, roles and permissions
//! are replicated, a token from one member works at every member, requests are refused
//! with etcd's codes and messages, a revoked role stops writes at every member, and the
//! auth store survives a restart of the whole cluster from snapshots (tokens do not).

mod common;

use std::time::{Duration, Instant};

use common::{cluster, eventually, peer_port, put, runtime};

use flotilla_raft::NodeId;
use flotilla_server::pb;
use flotilla_server::rpc::auth_client::AuthClient;
use flotilla_server::rpc::k_v_client::KVClient;
use flotilla_server::rpc::maintenance_client::MaintenanceClient;
use flotilla_server::transport::PeerFrame;
use flotilla_server::wire;
use tonic::transport::Channel;
use tonic::Code;

async fn connect(ep: &str) -> Result<Channel, tonic::Status> {
    tonic::transport::Endpoint::from_shared(ep.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))
}

async fn channel(ep: &str) -> Channel {
    connect(ep).await.unwrap()
}

/// `msg` with `token` (if any) as etcd's clients send it.
fn req<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.parse().unwrap());
    }
    r
}

async fn login(ep: &str, name: &str, password: &str) -> Result<String, tonic::Status> {
    let r = pb::AuthenticateRequest { name: name.into(), password: password.into() };
    Ok(AuthClient::new(connect(ep).await?).authenticate(r).await?.into_inner().token)
}

async fn put_as(ep: &str, token: Option<&str>, key: &str) -> Result<(), tonic::Status> {
    let p = pb::PutRequest { key: key.to_string().into(), value: "v".into(), ..Default::default() };
    KVClient::new(connect(ep).await?).put(req(p, token)).await.map(|_| ())
}

async fn get_as(ep: &str, token: Option<&str>, key: &str) -> Result<usize, tonic::Status> {
    let r = pb::RangeRequest { key: key.to_string().into(), ..Default::default() };
    Ok(KVClient::new(connect(ep).await?).range(req(r, token)).await?.into_inner().kvs.len())
}

fn code_and_message(r: Result<impl std::fmt::Debug, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("refused");
    (e.code(), e.message().to_string())
}

#[test]
fn auth_is_replicated_enforced_at_every_member_and_survives_a_cluster_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path(), 1_000_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&refs, "before", "auth", deadline));

    // Set up as etcd's documentation does, with auth disabled: root (with the root role),
    // a role for the prefix app/, a user with it; then enable.
    rt.block_on(async {
        let mut a = AuthClient::new(channel(&eps[0]).await);
        let add = |name: &str, pw: &str| pb::AuthUserAddRequest {
            name: name.into(),
            password: pw.into(),
            ..Default::default()
        };
        a.user_add(add("root", "rootpw")).await.unwrap();
        let e = a.auth_enable(pb::AuthEnableRequest {}).await.unwrap_err();
        assert_eq!(e.message(), "etcdserver: root user does not have root role");
        let grant = |user: &str, role: &str| pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        a.user_grant_role(grant("root", "root")).await.unwrap();
        a.role_add(pb::AuthRoleAddRequest { name: "app".into() }).await.unwrap();
        let perm = pb::Permission {
            perm_type: pb::perm_type::READWRITE,
            key: "app/".into(),
            range_end: "app0".into(),
        };
        let g = pb::AuthRoleGrantPermissionRequest { name: "app".into(), perm: Some(perm) };
        a.role_grant_permission(g).await.unwrap();
        a.user_add(add("alice", "alicepw")).await.unwrap();
        a.user_grant_role(grant("alice", "app")).await.unwrap();
        a.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    });

    // Every member refuses a request without a token once it applied the enable.
    for ep in &eps {
        let (code, msg) =
            eventually(deadline, "auth enabled everywhere", Duration::from_millis(50), || match rt
                .block_on(put_as(ep, None, "app/anon"))
            {
                Err(e) => Ok((e.code(), e.message().to_string())),
                Ok(()) => Err("accepted"),
            });
        assert_eq!((code, msg.as_str()), (Code::InvalidArgument, "etcdserver: user name is empty"));
    }
    rt.block_on(async {
        let (code, msg) = code_and_message(login(&eps[0], "alice", "wrong").await);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "etcdserver: authentication failed, invalid user ID or password");
        let (code, _) = code_and_message(put_as(&eps[1], Some("not-a-token"), "app/x").await);
        assert_eq!(code, Code::Unauthenticated);

        // A token from member 0 works at the others (it is replicated with the log).
        let alice = login(&eps[0], "alice", "alicepw").await.unwrap();
        for ep in &eps {
            put_as(ep, Some(&alice), "app/x").await.unwrap();
            assert_eq!(get_as(ep, Some(&alice), "app/x").await.unwrap(), 1);
            let (code, msg) = code_and_message(put_as(ep, Some(&alice), "other").await);
            assert_eq!(
                (code, msg.as_str()),
                (Code::PermissionDenied, "etcdserver: permission denied")
            );
            let (code, _) = code_and_message(get_as(ep, Some(&alice), "before").await);
            assert_eq!(code, Code::PermissionDenied);
        }
        // Admin operations are root's.
        let mut a = AuthClient::new(channel(&eps[1]).await);
        let (code, _) =
            code_and_message(a.user_list(req(pb::AuthUserListRequest {}, Some(&alice))).await);
        assert_eq!(code, Code::PermissionDenied);
        let root = login(&eps[1], "root", "rootpw").await.unwrap();
        let users = a.user_list(req(pb::AuthUserListRequest {}, Some(&root))).await.unwrap();
        assert_eq!(users.into_inner().users, vec!["alice".to_string(), "root".to_string()]);
        assert_eq!(get_as(&eps[2], Some(&root), "before").await.unwrap(), 1);

        // The CLI authenticates with --user, as etcdctl does.
        let cli = |user: Option<&str>| {
            let mut c = std::process::Command::new(common::BIN);
            c.args(["put", "app/cli", "v", "--endpoints", &eps[1]]);
            if let Some(u) = user {
                c.args(["--user", u]);
            }
            c.output().unwrap()
        };
        let out = cli(Some("alice:alicepw"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = cli(None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("user name is empty"));
        let out = cli(Some("alice:wrong"));
        assert!(String::from_utf8_lossy(&out.stderr).contains("authentication failed"));

        // So does the load generator.
        let out = std::process::Command::new(common::BIN)
            .args(["bench", "--total", "20", "--clients", "2", "--conns", "2", "--json", "--quiet"])
            .args(["--endpoints", &eps.join(","), "--user", "root:rootpw"])
            .output()
            .unwrap();
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(json.contains("\"errors\":0"), "{json} {}", String::from_utf8_lossy(&out.stderr));
        // Without credentials every request is refused (and counted), and the run ends.
        let out = std::process::Command::new(common::BIN)
            .args(["bench", "--total", "20", "--clients", "2", "--conns", "2", "--json", "--quiet"])
            .args(["--endpoints", &eps.join(",")])
            .output()
            .unwrap();
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(json.contains("\"ops\":0") && !json.contains("\"errors\":0"), "{json}");

        // Every write is checked again where it is applied, with the user it carries: writes
        // forged as forwarded by a member (on a peer connection, past every gRPC check)
        // reach the log, and are refused at apply unless their user may make them. The
        // last one, allowed, shows when the others were applied (they come first in the
        // log). Sent to every member: only the leader proposes what is forwarded.
        let users = a.user_list(req(pb::AuthUserListRequest {}, Some(&root))).await.unwrap();
        let cluster_id = users.into_inner().header.unwrap().cluster_id;
        let forged = |id: u64, user: &str, key: &str| {
            let put = pb::PutRequest {
                key: key.to_string().into(),
                value: "forged".into(),
                ..Default::default()
            };
            let r = pb::InternalRequest {
                id,
                user: user.into(),
                anonymous: user.is_empty(),
                request: Some(pb::internal_request::Request::Put(put)),
                member: 0,
            };
            PeerFrame::Forward(prost::Message::encode_to_vec(&r).into()).encode()
        };
        for (i, s) in servers.iter().enumerate() {
            let to = NodeId(i as u64 + 1);
            let hs = wire::Handshake { cluster_id, from: NodeId((i as u64 + 1) % 3 + 1), to };
            let mut out = Vec::new();
            wire::put_frame(&mut out, &hs.encode());
            let base = 7_000_000 + 10 * i as u64;
            wire::put_frame(&mut out, &forged(base, "alice", "other/forged"));
            wire::put_frame(&mut out, &forged(base + 1, "", "anon/forged"));
            wire::put_frame(&mut out, &forged(base + 2, "alice", "app/forged"));
            let mut t = std::net::TcpStream::connect(("127.0.0.1", peer_port(s))).unwrap();
            std::io::Write::write_all(&mut t, &out).unwrap();
        }
        loop {
            if get_as(&eps[0], Some(&root), "app/forged").await.unwrap() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the allowed forged write is applied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for ep in &eps {
            assert_eq!(get_as(ep, Some(&root), "other/forged").await.unwrap(), 0, "{ep}");
            assert_eq!(get_as(ep, Some(&root), "anon/forged").await.unwrap(), 0, "{ep}");
        }

        // Revoking alice's role stops her writes at every member.
        let revoke = pb::AuthUserRevokeRoleRequest { name: "alice".into(), role: "app".into() };
        a.user_revoke_role(req(revoke, Some(&root))).await.unwrap();
    });
    for ep in &eps {
        eventually(
            deadline,
            "the revocation applied everywhere",
            Duration::from_millis(50),
            || match rt.block_on(put_as(
                ep,
                Some(&rt.block_on(login(ep, "alice", "alicepw")).unwrap()),
                "app/y",
            )) {
                Err(e) if e.code() == Code::PermissionDenied => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }

    // Snapshots on every member (Defragment: a snapshot, the log compacted up to it), then
    // the whole cluster restarts: users, roles and the enable come back from them; the
    // tokens given out before do not.
    let root = rt.block_on(login(&eps[0], "root", "rootpw")).unwrap();
    rt.block_on(async {
        for ep in &eps {
            let mut m = MaintenanceClient::new(channel(ep).await);
            m.defragment(req(pb::DefragmentRequest {}, Some(&root))).await.unwrap();
        }
    });
    for s in &mut servers {
        s.kill();
    }
    for s in &mut servers {
        s.start();
    }
    let root_again =
        eventually(deadline, "root logs in after the restart", Duration::from_millis(100), || {
            rt.block_on(login(&eps[2], "root", "rootpw")).map_err(|e| e.to_string())
        });
    rt.block_on(async {
        let (code, _) = code_and_message(put_as(&eps[2], Some(&root), "app/z").await);
        assert_eq!(code, Code::Unauthenticated, "a token from before the restart");
        let mut a = AuthClient::new(channel(&eps[2]).await);
        let alice = a
            .user_get(req(pb::AuthUserGetRequest { name: "alice".into() }, Some(&root_again)))
            .await
            .unwrap();
        assert!(alice.into_inner().roles.is_empty(), "the revocation came back too");
        let perms = a
            .role_get(req(pb::AuthRoleGetRequest { role: "app".into() }, Some(&root_again)))
            .await
            .unwrap();
        assert_eq!(perms.into_inner().perm.len(), 1);
        let status = a.auth_status(pb::AuthStatusRequest {}).await.unwrap().into_inner();
        assert!(status.enabled);
        let (code, _) = code_and_message(put_as(&eps[2], None, "app/z").await);
        assert_eq!(code, Code::InvalidArgument);
        put_as(&eps[2], Some(&root_again), "app/z").await.unwrap();
    });
    let logs: String =
        servers.iter().map(|s| std::fs::read_to_string(s.log_path()).unwrap_or_default()).collect();
    assert!(!logs.contains("rootpw") && !logs.contains("alicepw"), "no password in the logs");
}

/// etcd's `--auth-token jwt,...`: a token signed by one member (ES256) is accepted at once
/// by every member, including one configured to verify only (no private key, so it makes
/// none); another key's token is refused; a change of the auth store makes earlier tokens
/// old ("revision of auth store is old") until the client authenticates again; and the
/// tokens outlive a restart of the members, which simple tokens do not.
#[test]
fn jwt_tokens_work_at_every_member_until_the_auth_store_changes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |name: &str| {
        let k = rcgen::KeyPair::generate().unwrap();
        let (private, public) =
            (dir.path().join(format!("{name}.key")), dir.path().join(format!("{name}.pub")));
        std::fs::write(&private, k.serialize_pem()).unwrap();
        std::fs::write(&public, k.public_key_pem()).unwrap();
        (private.display().to_string(), public.display().to_string())
    };
    let (private, public) = keys("cluster");
    let signs = format!("jwt,pub-key={public},priv-key={private},sign-method=ES256,ttl=10m");
    let verifies = format!("jwt,pub-key={public},sign-method=ES256");
    let mut servers = common::cluster_unstarted(dir.path(), 1_000_000);
    for (i, s) in servers.iter_mut().enumerate() {
        s.args.push("--auth-token".into());
        s.args.push(if i == 2 { verifies.clone() } else { signs.clone() });
        s.start();
    }
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&refs, "before", "auth", deadline));
    rt.block_on(async {
        let mut a = AuthClient::new(channel(&eps[0]).await);
        let add = |name: &str| pb::AuthUserAddRequest {
            name: name.into(),
            password: format!("{name}pw"),
            ..Default::default()
        };
        a.user_add(add("root")).await.unwrap();
        let grant = pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
        a.user_grant_role(grant).await.unwrap();
        a.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    });
    for ep in &eps {
        eventually(deadline, "auth enabled everywhere", Duration::from_millis(50), || {
            match rt.block_on(put_as(ep, None, "anon")) {
                Err(e) if e.code() == Code::InvalidArgument => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    let token = rt.block_on(async {
        let token = login(&eps[1], "root", "rootpw").await.unwrap();
        assert_eq!(token.split('.').count(), 3, "a JSON Web Token: {token}");
        for ep in &eps {
            put_as(ep, Some(&token), "k").await.unwrap();
        }
        // The member without the private key verifies but does not sign.
        let (code, msg) = code_and_message(login(&eps[2], "root", "rootpw").await);
        assert_eq!(code, Code::FailedPrecondition);
        assert_eq!(msg, "etcdserver: this member has no key to sign tokens with");
        // Signed with another key: refused everywhere.
        let (other_private, other_public) = keys("other");
        let spec = format!("jwt,pub-key={other_public},priv-key={other_private},sign-method=ES256");
        let forged = flotilla_server::auth::Jwt::from_spec(&spec).unwrap().unwrap();
        let forged = forged.sign("root", 1_000).unwrap();
        for ep in &eps {
            let (code, msg) = code_and_message(put_as(ep, Some(&forged), "k").await);
            assert_eq!(
                (code, msg.as_str()),
                (Code::Unauthenticated, "etcdserver: invalid auth token")
            );
        }
        // A change of the store (a new user) makes the token old.
        let mut a = AuthClient::new(channel(&eps[0]).await);
        let bob = pb::AuthUserAddRequest {
            name: "bob".into(),
            password: "bobpw".into(),
            ..Default::default()
        };
        a.user_add(req(bob, Some(&token))).await.unwrap();
        token
    });
    // At every member once it applied the change.
    for ep in &eps {
        let (code, msg) = eventually(deadline, "old everywhere", Duration::from_millis(50), || {
            match rt.block_on(put_as(ep, Some(&token), "k")) {
                Err(e) => Ok((e.code(), e.message().to_string())),
                Ok(()) => Err("accepted"),
            }
        });
        let old = "etcdserver: revision of auth store is old";
        assert_eq!((code, msg.as_str()), (Code::InvalidArgument, old));
    }
    rt.block_on(async {
        let fresh = login(&eps[0], "root", "rootpw").await.unwrap();
        for ep in &eps {
            put_as(ep, Some(&fresh), "k").await.unwrap();
        }
    });
    // Nothing about a JSON Web Token is kept by the members: it works after they restart.
    let fresh = rt.block_on(login(&eps[1], "root", "rootpw")).unwrap();
    for s in &mut servers {
        s.kill();
        s.start();
    }
    for ep in &eps {
        eventually(
            deadline + Duration::from_secs(60),
            "the token after a restart",
            Duration::from_millis(100),
            || rt.block_on(put_as(ep, Some(&fresh), "after")).map_err(|e| e.to_string()),
        );
    }
}

/// `--auth-token-ttl`: a simple token unused for longer than it is refused, one in use
/// lives on.
#[test]
fn simple_tokens_expire_after_auth_token_ttl_unused() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::solo(dir.path(), None, &["--auth-token-ttl", "3"]);
    let ep = server.client.clone();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&[ep.as_str()], "before", "auth", deadline));
    rt.block_on(async {
        let mut a = AuthClient::new(channel(&ep).await);
        let root = pb::AuthUserAddRequest {
            name: "root".into(),
            password: "pw".into(),
            ..Default::default()
        };
        a.user_add(root).await.unwrap();
        let grant = pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
        a.user_grant_role(grant).await.unwrap();
        a.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
        let token = login(&ep, "root", "pw").await.unwrap();
        // Used every 200 ms for 4 s, longer than the TTL: renewed each time.
        for _ in 0..20 {
            put_as(&ep, Some(&token), "k").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Then left alone for 7 s (the TTL is 3 s).
        tokio::time::sleep(Duration::from_secs(7)).await;
        let (code, msg) = code_and_message(put_as(&ep, Some(&token), "k").await);
        assert_eq!((code, msg.as_str()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
    });
}
