//! Helpers shared by the process-level tests: `flotilla serve` processes on loopback ports
//! and gRPC clients for them.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_server::rpc::k_v_client::KVClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// A port to listen on: below Linux's ephemeral range (32768-60999), so that no outgoing
/// connection (of this test or another running beside it) can take it between this check
/// and the server's bind, as happened with ports the kernel picked; never the same twice in
/// one test binary, and from a different stretch for each (they run one after another).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 1_000 * 12;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (start + n) % 12_700) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub args: Vec<String>,
    pub client: String,
}

impl Server {
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("a log file beside the data directory");
        let child = Command::new(BIN)
            .arg("serve")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("flotilla serve starts");
        self.child = Some(child);
    }

    /// Where its log goes (every start appends): beside its data directory.
    pub fn log_path(&self) -> std::path::PathBuf {
        let i = self.args.iter().position(|a| a == "--data-dir").expect("a data directory");
        std::path::PathBuf::from(format!("{}.log", self.args[i + 1]))
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what each server said last (the test harness prints it).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- last lines of {}", self.log_path().display());
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

pub fn cluster(dir: &std::path::Path, snapshot_count: u64) -> Vec<Server> {
    let mut servers = cluster_unstarted(dir, snapshot_count);
    for s in &mut servers {
        s.start();
    }
    servers
}

/// The three members [`cluster`] starts, not started yet (data directories `dir/m0`..`m2`).
pub fn cluster_unstarted(dir: &std::path::Path, snapshot_count: u64) -> Vec<Server> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
    let initial = initial.join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            Server {
                child: None,
                args: vec![
                    "--name".into(),
                    format!("m{i}"),
                    "--data-dir".into(),
                    dir.join(format!("m{i}")).display().to_string(),
                    "--listen-client-urls".into(),
                    format!("http://127.0.0.1:{c}"),
                    "--listen-peer-urls".into(),
                    format!("http://127.0.0.1:{p}"),
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--snapshot-count".into(),
                    snapshot_count.to_string(),
                    "--tick-ms".into(),
                    "20".into(),
                    // Test clusters run side by side: one whose member dies frees ports that
                    // another's server may take, so each has its own cluster id.
                    "--initial-cluster-token".into(),
                    format!("test-{}", ports[0].0),
                ],
                client: format!("http://127.0.0.1:{c}"),
            }
        })
        .collect()
}

pub async fn kv(ep: &str) -> Option<KVClient<tonic::transport::Channel>> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    Some(KVClient::new(ch))
}

/// The members a server lists (Cluster.MemberList).
pub async fn members(ep: &str) -> Result<Vec<flotilla_server::pb::Member>, String> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut c = flotilla_server::rpc::cluster_client::ClusterClient::new(ch);
    let r = c.member_list(flotilla_server::pb::MemberListRequest::default()).await;
    Ok(r.map_err(|e| e.to_string())?.into_inner().members)
}

/// Puts through any server that accepts, retrying until `deadline`; the revision it wrote.
/// A retry after an unknown outcome may write a second time.
pub async fn put(servers: &[&str], key: &str, value: &str, deadline: Instant) -> i64 {
    loop {
        for ep in servers {
            if let Some(mut c) = kv(ep).await {
                let req = flotilla_server::pb::PutRequest {
                    key: key.to_string().into(),
                    value: value.to_string().into(),
                    ..Default::default()
                };
                if let Ok(r) = c.put(req).await {
                    return r.into_inner().header.unwrap().revision;
                }
            }
        }
        assert!(Instant::now() < deadline, "no server accepted the put of {key}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Server {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A one-member cluster in `dir`, started with `extra` flags; its metrics on `metrics_port`
/// if given.
pub fn solo(dir: &std::path::Path, metrics_port: Option<u16>, extra: &[&str]) -> Server {
    let (c, p) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "--name".into(),
        "solo".into(),
        "--data-dir".into(),
        dir.join("solo").display().to_string(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{c}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{p}"),
        "--initial-cluster".into(),
        format!("solo=http://127.0.0.1:{p}"),
        "--initial-cluster-token".into(),
        format!("solo-{c}-{p}"),
    ];
    if let Some(m) = metrics_port {
        args.push("--listen-metrics-urls".into());
        args.push(format!("http://127.0.0.1:{m}"));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut s = Server { child: None, args, client: format!("http://127.0.0.1:{c}") };
    s.start();
    s
}

/// The peer port a server listens on.
pub fn peer_port(s: &Server) -> u16 {
    let i = s.args.iter().position(|a| a == "--listen-peer-urls").expect("a peer URL");
    s.args[i + 1].rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

/// Calls `probe` every `every` until it returns `Ok`; fails the test with `what` and the last
/// `Err` once `deadline` passes. The tests' one way of waiting: generous deadlines, no sleeps
/// that race.
pub fn eventually<T, E: std::fmt::Debug>(
    deadline: Instant,
    what: &str,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e:?}"),
        }
        std::thread::sleep(every);
    }
}

/// A member's Maintenance client.
pub async fn maintenance(
    ep: &str,
) -> Result<
    flotilla_server::rpc::maintenance_client::MaintenanceClient<tonic::transport::Channel>,
    String,
> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(flotilla_server::rpc::maintenance_client::MaintenanceClient::new(ch))
}

/// A member's HashKV at `rev`: the hash and the revision it covers.
pub async fn hash_kv(ep: &str, rev: i64) -> Result<(u32, i64), String> {
    let r = maintenance(ep)
        .await?
        .hash_kv(flotilla_server::pb::HashKvRequest { revision: rev })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok((r.hash, r.hash_revision))
}

/// HashKV at `rev` on every member of `eps` (retried while one has not applied `rev` yet, or
/// is down) until `deadline`: the hashes, which must all be equal for the members' stores to
/// be the same.
pub fn hashes_at(
    rt: &tokio::runtime::Runtime,
    eps: &[String],
    rev: i64,
    deadline: Instant,
) -> Vec<u32> {
    eps.iter()
        .map(|ep| {
            eventually(
                deadline,
                &format!("HashKV at {rev} from {ep}"),
                Duration::from_millis(100),
                || match rt.block_on(hash_kv(ep, rev)) {
                    Ok((h, r)) if r == rev => Ok(h),
                    other => Err(other),
                },
            )
        })
        .collect()
}

/// A single-threaded runtime for a test's clients.
/// An HTTP/1.1 GET of `path` on a local port: the whole response, headers included.
pub fn get_at(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    t.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    out
}

/// A CA, and a server and a client certificate it signed, written as PEM files in `dir`,
/// each name starting with `prefix`: `ca.pem`; `server.pem` and `server-key.pem` (for
/// localhost and 127.0.0.1, CN "server"); `client.pem` and `client-key.pem` (CN "client").
pub fn certificates(dir: &std::path::Path, prefix: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("flotilla test CA {prefix}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join(format!("{prefix}ca.pem")), ca_cert.pem()).unwrap();
    for (name, sans) in [("server", vec!["localhost", "127.0.0.1"]), ("client", vec!["client"])] {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.into_iter().map(String::from).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{prefix}{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{prefix}{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
