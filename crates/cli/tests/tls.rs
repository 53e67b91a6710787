//! TLS on the client port (etcd's `--cert-file`, `--key-file`, `--client-cert-auth`,
//! `--trusted-ca-file`) with a real `flotilla serve`: clients that trust the CA and present
//! a certificate it signed are served; a client without a certificate, one that does not
//! trust the server's, and plain HTTP are refused; bad TLS settings stop the server before
//! any port is bound.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{certificates, eventually, free_port, Server, BIN};

/// `flotilla serve` args for one member with `client_url`, and `extra`.
fn args(dir: &std::path::Path, client_url: &str, extra: &[String]) -> Vec<String> {
    let p = free_port();
    let mut a: Vec<String> = [
        "--name",
        "solo",
        "--data-dir",
        &dir.join("solo").display().to_string(),
        "--listen-client-urls",
        client_url,
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{p}"),
        "--initial-cluster",
        &format!("solo=http://127.0.0.1:{p}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().cloned());
    a
}

/// Runs `flotilla` with `a`: whether it succeeded, and stdout then stderr.
fn flotilla(a: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(a).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn tls_on_the_client_port_serves_trusted_clients_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d, "");
    let file = |n: &str| d.join(n).display().to_string();
    let c = free_port();
    let url = format!("https://127.0.0.1:{c}");
    let tls: Vec<String> = [
        "--cert-file",
        &file("server.pem"),
        "--key-file",
        &file("server-key.pem"),
        "--client-cert-auth",
        "--trusted-ca-file",
        &file("ca.pem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // Bad settings: a clear message and exit status 2, and the port never bound.
    let refused = |extra: &[String], url: &str, want: &str| {
        let out = Command::new(BIN).arg("serve").args(args(d, url, extra)).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(std::net::TcpListener::bind(("127.0.0.1", c)).is_ok(), "the port stays free");
    };
    refused(&[], &url, "https:// client URLs need --cert-file and --key-file");
    refused(&tls, &format!("http://127.0.0.1:{c}"), "need https:// client URLs");
    let mut garbage = tls.clone();
    garbage[1] = file("ca.pem.missing");
    refused(&garbage, &url, "--cert-file");
    std::fs::write(d.join("junk.pem"), "not a certificate").unwrap();
    let mut junk = tls.clone();
    junk[1] = file("junk.pem");
    refused(&junk, &url, "TLS files");
    refused(&tls[..5], &url, "--client-cert-auth needs --trusted-ca-file");
    // The same settings from a config file (a boolean included).
    let toml = format!("cert-file = {:?}\nclient-cert-auth = true\n", file("server.pem"));
    std::fs::write(d.join("tls.toml"), toml).unwrap();
    let from_file = ["--config-file".to_string(), file("tls.toml")];
    refused(&from_file, &format!("http://127.0.0.1:{c}"), "need https:// client URLs");

    let mut s = Server { child: None, args: args(d, &url, &tls), client: url.clone() };
    s.start();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client-key.pem"));
    let trusted = ["--endpoints", &url, "--cacert", &ca, "--cert", &cert, "--key", &key];
    let deadline = Instant::now() + Duration::from_secs(30);
    eventually(deadline, "a put over TLS", Duration::from_millis(100), || {
        match flotilla(&[&["put", "k", "over tls"][..], &trusted[..]].concat()) {
            (true, _) => Ok(()),
            (false, e) => Err(e),
        }
    });
    let (ok, out) = flotilla(&[&["get", "k"][..], &trusted[..]].concat());
    assert!(ok && out.contains("over tls"), "{out}");
    let members = flotilla(&[&["member", "list"][..], &trusted[..]].concat()).1;
    assert!(members.contains(&url), "the advertised client URL is https: {members}");

    // No client certificate: the handshake is refused.
    let (ok, out) = flotilla(&["get", "k", "--endpoints", &url, "--cacert", &ca]);
    assert!(!ok, "{out}");
    // A client that does not trust the server's CA refuses it.
    let (ok, out) = flotilla(&["get", "k", "--endpoints", &url, "--cert", &cert, "--key", &key]);
    assert!(!ok && out.contains("certificate"), "{out}");
    // Plain HTTP/2 to the TLS port gets nothing.
    let plain = format!("http://127.0.0.1:{c}");
    let (ok, out) = flotilla(&["get", "k", "--endpoints", &plain]);
    assert!(!ok, "{out}");
    // And the server carries on.
    let (ok, out) = flotilla(&[&["get", "k"][..], &trusted[..]].concat());
    assert!(ok && out.contains("over tls"), "{out}");

    // The load generator over TLS, with the same flags.
    let (ok, out) = flotilla(
        &[
            &["bench", "--total", "20", "--clients", "2", "--conns", "2", "--json", "--quiet"][..],
            &trusted[..],
        ]
        .concat(),
    );
    assert!(ok && out.contains("\"errors\":0"), "{out}");

    // With auth on, a request without a token is made by the user its certificate names
    // (the CN, as etcd): "client", who may read k and nothing else.
    let rt = common::runtime();
    rt.block_on(async {
        use flotilla_server::pb;
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |p: &str| std::fs::read(p).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&ca)))
            .identity(Identity::from_pem(read(&cert), read(&key)));
        let ch = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut a = flotilla_server::rpc::auth_client::AuthClient::new(ch);
        let user = |name: &str, password: &str| pb::AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            options: Some(pb::UserAddOptions { no_password: password.is_empty() }),
            ..Default::default()
        };
        let grant =
            |u: &str, r: &str| pb::AuthUserGrantRoleRequest { user: u.into(), role: r.into() };
        a.user_add(user("root", "rootpw")).await.unwrap();
        a.user_grant_role(grant("root", "root")).await.unwrap();
        a.role_add(pb::AuthRoleAddRequest { name: "reader".into() }).await.unwrap();
        let perm = pb::Permission {
            perm_type: pb::perm_type::READ,
            key: "k".into(),
            ..Default::default()
        };
        let g = pb::AuthRoleGrantPermissionRequest { name: "reader".into(), perm: Some(perm) };
        a.role_grant_permission(g).await.unwrap();
        a.user_add(user("client", "")).await.unwrap();
        a.user_grant_role(grant("client", "reader")).await.unwrap();
        a.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    });
    let (ok, out) = flotilla(&[&["get", "k"][..], &trusted[..]].concat());
    assert!(ok && out.contains("over tls"), "read as the certificate's user: {out}");
    let (ok, out) = flotilla(&[&["put", "k", "no"][..], &trusted[..]].concat());
    assert!(!ok && out.contains("permission denied"), "{out}");
    let (ok, out) =
        flotilla(&[&["put", "k", "yes", "--user", "root:rootpw"][..], &trusted[..]].concat());
    assert!(ok, "a token takes precedence over the certificate: {out}");
}
