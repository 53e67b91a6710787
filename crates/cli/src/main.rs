//! The `flotilla` command: `serve` one member, `dev` a local 3-member cluster of real server
//! processes, and client commands speaking etcd's v3 API (so they work against etcd too).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flotilla_server::config::ServerConfig;
use flotilla_server::pb;
use flotilla_server::rpc::auth_client::AuthClient;
use flotilla_server::rpc::cluster_client::ClusterClient;
use flotilla_server::rpc::k_v_client::KVClient as KvClient;
use flotilla_server::rpc::maintenance_client::MaintenanceClient;

/// `println!` for command output that ends quietly when the reader has gone (`| head`):
/// a closed pipe is not an error of the command.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod bench;
mod dev;
mod h2grpc;

/// mimalloc rather than the system allocator: a request through tonic, hyper and h2 makes a
/// few dozen small allocations, and with glibc's malloc they were about 12% of the leader's
/// CPU at 256 clients.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "Flotilla: Raft consensus and a replicated key-value store speaking etcd's v3 API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local 3-member cluster as three server processes on loopback, until Ctrl-C.
    Dev {
        /// Where the members keep their data (one directory each); reused on the next run.
        #[arg(long, default_value = "./flotilla-data")]
        data_dir: std::path::PathBuf,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        duration_secs: Option<u64>,
    },
    /// Run one member (flags named after etcd's; also FLOTILLA_* environment variables).
    Serve(Box<ServeArgs>),
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Attach the key to this lease (hex id, as `lease grant` prints it).
        #[arg(long)]
        lease: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Read a key, or a prefix or range of keys.
    Get {
        #[command(flatten)]
        keys: Keys,
        /// Read at this revision.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Serve from the member's local state, possibly stale.
        #[arg(long)]
        serializable: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a key, or a prefix of keys.
    Del {
        /// The key.
        key: String,
        /// Delete every key with this prefix.
        #[arg(long)]
        prefix: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print each change to a key, or a prefix or range of keys, as it happens (or from a
    /// past revision on), until interrupted or until `--count` events.
    Watch {
        #[command(flatten)]
        keys: Keys,
        /// Start at this revision (default: changes from now on).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Also print the value each change replaced.
        #[arg(long)]
        prev_kv: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Each endpoint's status: leader, term, commit and applied index.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Each endpoint's hash of its store up to a revision (etcd's HashKV): members that
    /// applied the same log print the same hash.
    Hashkv {
        /// The revision to hash up to (0: each member's current one).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Each endpoint snapshots its applied state and compacts its log up to it (etcd's
    /// Defragment: the disk space of the log comes back).
    Defrag {
        #[command(flatten)]
        conn: Conn,
    },
    /// A transaction: compares, then the success or the failure operations, atomically.
    /// Compares: `value(KEY) = V`, `version(KEY) > N`, `create(KEY) < N`, `mod(KEY) != N`;
    /// operations: `put KEY VALUE`, `get KEY`, `del KEY`.
    Txn {
        /// A comparison (repeatable; all must hold).
        #[arg(long = "compare")]
        compares: Vec<String>,
        /// An operation run if every comparison holds (repeatable).
        #[arg(long = "success")]
        success: Vec<String>,
        /// An operation run otherwise (repeatable).
        #[arg(long = "failure")]
        failure: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Snapshots of a member's state.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Leadership.
    Leader {
        #[command(subcommand)]
        command: LeaderCommand,
    },
    /// A load generator over etcd's v3 API (runs against etcd too).
    Bench(bench::BenchArgs),
    /// Cluster membership.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Leases: keys that live only while their lease is kept alive.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
    /// etcd's alarms (NOSPACE: a member's disk is full; CORRUPT: its storage failed).
    Alarm {
        #[command(subcommand)]
        command: AlarmCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AlarmCommand {
    /// Every active alarm.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Clear every active alarm (after the member's problem is fixed and it restarted).
    Disarm {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand, Debug)]
enum LeaseCommand {
    /// Grant a lease of TTL seconds (raised to the cluster's minimum if lower).
    Grant {
        /// Time to live, seconds.
        ttl: i64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a lease: its keys are deleted.
    Revoke {
        /// The lease id (hex, as `grant` prints it).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// A lease's granted and remaining time, and with --keys its keys.
    Timetolive {
        /// The lease id (hex).
        id: String,
        /// List the keys attached to it.
        #[arg(long)]
        keys: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Every lease.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Renew a lease every third of its TTL until interrupted, or once with --once.
    KeepAlive {
        /// The lease id (hex).
        id: String,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Save the state of the first reachable endpoint to FILE.
    Save {
        /// Where to write it.
        file: std::path::PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Build a member's data directory from a saved snapshot, for a new cluster (as
    /// `etcdctl snapshot restore` does): run it for every member with the same
    /// --initial-cluster, then start each with `flotilla serve` and the same flags.
    Restore {
        /// The snapshot file (from `flotilla snapshot save`).
        file: std::path::PathBuf,
        /// This member's name, one of --initial-cluster.
        #[arg(long)]
        name: String,
        /// Where to create its data; must not hold a member's data already.
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// The new cluster: name=http://IP:PORT for each member, comma-separated.
        #[arg(long)]
        initial_cluster: String,
    },
}

#[derive(Subcommand, Debug)]
enum LeaderCommand {
    /// Hand leadership to member TARGET (its id, as `member list` shows it, in hex).
    Transfer {
        /// The member id (hex).
        target: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// List the members.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a member (start it afterwards with --initial-cluster-state existing).
    Add {
        /// Its name (for the printed configuration).
        name: String,
        /// Its peer URL.
        #[arg(long)]
        peer_urls: String,
        /// Add it as a learner (a non-voting member that catches up first).
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a member (its id, in hex).
    Remove {
        /// The member id (hex).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Promote a learner to a voter (its id, in hex).
    Promote {
        /// The member id (hex).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a member's peer URL (then restart it listening there).
    Update {
        /// The member id (hex).
        id: String,
        /// Its new peer URL.
        #[arg(long)]
        peer_urls: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A lease id as etcdctl prints and takes it: hex.
fn lease_id(s: &str) -> Result<i64, String> {
    i64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("lease id {s:?}: {e}"))
}

fn hex_id(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("member id {s:?}: {e}"))
}

#[derive(clap::Args, Debug, Clone)]
struct Conn {
    /// Client endpoints, comma-separated.
    #[arg(long, default_value = "http://127.0.0.1:2379", env = "FLOTILLA_ENDPOINTS")]
    endpoints: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// `name:password` to authenticate as, when the cluster has auth enabled (etcdctl's
    /// `--user`).
    #[arg(long, env = "FLOTILLA_USER")]
    user: Option<String>,
    #[command(flatten)]
    tls: TlsFiles,
}

/// The client side of TLS, as etcdctl's flags.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA (PEM) that https:// endpoints' certificates are checked against (etcdctl's
    /// `--cacert`).
    #[arg(long, env = "FLOTILLA_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for https:// endpoints that ask for one (`--cert`).
    #[arg(long = "cert", env = "FLOTILLA_CERT", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM) (`--key`).
    #[arg(long = "key", env = "FLOTILLA_KEY", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
}

/// How to reach `ep`: over TLS, checked against `--cacert` (and with `--cert` and `--key`
/// if given), when it is an https:// URL.
pub(crate) fn endpoint(conn: &TlsFiles, ep: &str) -> Result<tonic::transport::Endpoint, String> {
    let e = tonic::transport::Endpoint::from_shared(ep.to_string())
        .map_err(|e| format!("{ep}: {e}"))?;
    if !ep.starts_with("https://") {
        return Ok(e);
    }
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut tls = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = &conn.cacert {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&conn.client_cert, &conn.client_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
    }
    e.tls_config(tls).map_err(|e| format!("{ep}: {e}"))
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A TOML file of settings, keyed by flag name (`name = "n1"`, `data-dir = "..."`);
    /// flags and FLOTILLA_* environment variables take precedence over it.
    #[arg(long, env = "FLOTILLA_CONFIG_FILE")]
    config_file: Option<std::path::PathBuf>,
    /// This member's name.
    #[arg(long, env = "FLOTILLA_NAME", default_value = "default")]
    name: String,
    /// Data directory.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./default.flotilla")]
    data_dir: std::path::PathBuf,
    /// Client URLs to listen on, comma-separated (http://IP:PORT each).
    #[arg(long, env = "FLOTILLA_LISTEN_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    listen_client_urls: String,
    /// Client URLs to tell the other members and clients (MemberList), comma-separated;
    /// default: the first listen URL.
    #[arg(long, env = "FLOTILLA_ADVERTISE_CLIENT_URLS", default_value = "")]
    advertise_client_urls: String,
    /// Peer URL to listen on.
    #[arg(long, env = "FLOTILLA_LISTEN_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    listen_peer_urls: String,
    /// Initial members: name=peer-url,...
    #[arg(long, env = "FLOTILLA_INITIAL_CLUSTER", default_value = "default=http://127.0.0.1:2380")]
    initial_cluster: String,
    /// Separates clusters started from the same member list.
    #[arg(long, env = "FLOTILLA_INITIAL_CLUSTER_TOKEN", default_value = "flotilla-cluster")]
    initial_cluster_token: String,
    /// Milliseconds per Raft tick (heartbeat every 2 ticks, election after 10 to 20).
    #[arg(long, env = "FLOTILLA_TICK_MS", default_value_t = 50)]
    tick_ms: u64,
    /// Largest client request, bytes (etcd's default).
    #[arg(long, env = "FLOTILLA_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    max_request_bytes: usize,
    /// Applied entries between snapshots (the log is then compacted, keeping up to 5000).
    /// A snapshot is also deferred until the entries since the last one hold a quarter of
    /// its size, so that snapshotting a large store does not dominate the work.
    #[arg(long, env = "FLOTILLA_SNAPSHOT_COUNT", default_value_t = 10_000)]
    snapshot_count: u64,
    /// Where to serve Prometheus /metrics and /health (http://IP:PORT; none by default).
    #[arg(long, env = "FLOTILLA_LISTEN_METRICS_URLS", default_value = "")]
    listen_metrics_urls: String,
    /// `new` to bootstrap a cluster, `existing` to join one (after `member add`).
    #[arg(long, env = "FLOTILLA_INITIAL_CLUSTER_STATE", default_value = "new")]
    initial_cluster_state: String,
    /// `periodic` (keep a period of history) or `revision` (keep a number of revisions).
    #[arg(long, env = "FLOTILLA_AUTO_COMPACTION_MODE", default_value = "periodic")]
    auto_compaction_mode: String,
    /// History to keep: a duration for periodic mode (`1h`, `30m`; a bare number is hours)
    /// or a count for revision mode; `0` keeps everything until an explicit compaction.
    #[arg(long, env = "FLOTILLA_AUTO_COMPACTION_RETENTION", default_value = "0")]
    auto_compaction_retention: String,
    /// How often a quiet watch that asked for progress notifications gets one (`10m`,
    /// `5s`, `500ms`; etcd's --experimental-watch-progress-notify-interval).
    #[arg(long, env = "FLOTILLA_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m")]
    watch_progress_notify_interval: String,
    /// The client port's TLS certificate (PEM), for https:// client URLs.
    #[arg(long, env = "FLOTILLA_CERT_FILE", default_value = "")]
    cert_file: String,
    /// The client port's TLS private key (PEM).
    #[arg(long, env = "FLOTILLA_KEY_FILE", default_value = "")]
    key_file: String,
    /// The CA (PEM) that client certificates must be signed by, with --client-cert-auth.
    #[arg(long, env = "FLOTILLA_TRUSTED_CA_FILE", default_value = "")]
    trusted_ca_file: String,
    /// Refuse TLS clients without a certificate signed by --trusted-ca-file.
    #[arg(long, env = "FLOTILLA_CLIENT_CERT_AUTH")]
    client_cert_auth: bool,
    /// This member's peer TLS certificate (PEM), for https:// peer URLs: presented to the
    /// members that dial it and to those it dials; it must name its peer URL's IP address.
    #[arg(long, env = "FLOTILLA_PEER_CERT_FILE", default_value = "")]
    peer_cert_file: String,
    /// The peer certificate's private key (PEM).
    #[arg(long, env = "FLOTILLA_PEER_KEY_FILE", default_value = "")]
    peer_key_file: String,
    /// The CA (PEM) that the other members' peer certificates must be signed by.
    #[arg(long, env = "FLOTILLA_PEER_TRUSTED_CA_FILE", default_value = "")]
    peer_trusted_ca_file: String,
    /// Refuse peer connections without a certificate signed by --peer-trusted-ca-file (as
    /// etcd, off by default; without it anyone who reaches the peer port can dial it).
    #[arg(long, env = "FLOTILLA_PEER_CLIENT_CERT_AUTH")]
    peer_client_cert_auth: bool,
    /// Accept only dialing members whose certificate has this common name (CN), with
    /// --peer-client-cert-auth (etcd's flag).
    #[arg(long, env = "FLOTILLA_PEER_CERT_ALLOWED_CN", default_value = "")]
    peer_cert_allowed_cn: String,
    /// Auth tokens: `simple` (random, replicated to every member, expiring 5 minutes after
    /// their last use), or etcd's JSON Web Tokens,
    /// `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256|EdDSA|HS256...,ttl=5m`
    /// (for HS* the priv-key file holds the secret; a member without priv-key only
    /// verifies).
    #[arg(long, env = "FLOTILLA_AUTH_TOKEN", default_value = "simple")]
    auth_token: String,
    /// Seconds a simple token stays valid after its last use (etcd's default).
    #[arg(long, env = "FLOTILLA_AUTH_TOKEN_TTL", default_value_t = 300)]
    auth_token_ttl: u64,
}

fn endpoints(conn: &Conn) -> Vec<String> {
    parse_endpoints(&conn.endpoints)
}

/// Comma-separated endpoints; like etcdctl, `host:port` means `http://host:port`.
pub(crate) fn parse_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| if s.contains("://") { s.to_string() } else { format!("http://{s}") })
        .collect()
}

/// A key, or a prefix or range of keys, as etcdctl takes them.
#[derive(clap::Args, Debug)]
struct Keys {
    /// The key (or the start of the range).
    key: String,
    /// The end of the range (exclusive).
    range_end: Option<String>,
    /// Every key with this prefix.
    #[arg(long)]
    prefix: bool,
}

impl Keys {
    /// The key and range end of etcd's requests.
    fn span(self) -> (bytes::Bytes, bytes::Bytes) {
        let end = match (self.prefix, self.range_end) {
            (true, _) => prefix_end(self.key.as_bytes()),
            (false, Some(e)) => e.into_bytes(),
            (false, None) => Vec::new(),
        };
        (self.key.into(), end.into())
    }
}

fn prefix_end(key: &[u8]) -> Vec<u8> {
    flotilla_server::mvcc::prefix_end(key).to_vec()
}

fn parse_compare(s: &str) -> Result<pb::Compare, String> {
    use pb::compare::TargetUnion;
    let bad = || format!("compare {s:?}: expected e.g. value(key) = v, version(key) > 1");
    let (lhs, rest) = s.split_once(')').ok_or_else(bad)?;
    let (target, key) = lhs.split_once('(').ok_or_else(bad)?;
    let rest = rest.trim();
    let (op, value) = ["!=", "=", ">", "<"]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
        .ok_or_else(bad)?;
    let result = match op {
        "=" => 0,
        ">" => 1,
        "<" => 2,
        _ => 3,
    };
    let value = value.trim_matches('"');
    let num = || value.parse::<i64>().map_err(|_| bad());
    let (target, union) = match target.trim() {
        "value" => (3, TargetUnion::Value(value.to_string().into())),
        "version" => (0, TargetUnion::Version(num()?)),
        "create" => (1, TargetUnion::CreateRevision(num()?)),
        "mod" => (2, TargetUnion::ModRevision(num()?)),
        _ => return Err(bad()),
    };
    Ok(pb::Compare {
        result,
        target,
        key: key.trim_matches('"').to_string().into(),
        target_union: Some(union),
        range_end: Default::default(),
    })
}

fn parse_op(s: &str) -> Result<pb::RequestOp, String> {
    use pb::request_op::Request;
    let w: Vec<&str> = s.split_whitespace().collect();
    let req = match w.as_slice() {
        ["put", k, v] => Request::RequestPut(pb::PutRequest {
            key: k.to_string().into(),
            value: v.to_string().into(),
            ..Default::default()
        }),
        ["get", k] => Request::RequestRange(pb::RangeRequest {
            key: k.to_string().into(),
            ..Default::default()
        }),
        ["del", k] => Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: k.to_string().into(),
            ..Default::default()
        }),
        _ => return Err(format!("operation {s:?}: expected put KEY VALUE, get KEY or del KEY")),
    };
    Ok(pb::RequestOp { request: Some(req) })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `s` as a JSON string, quoted and escaped (Rust's `{:?}` is not JSON: it writes a control
/// character as `\u{1}`).
fn js(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `v` as a JSON array of strings.
fn js_list(v: &[String]) -> String {
    serde_json::Value::from(v).to_string()
}

/// Adds the auth token, if any, to every request (etcd's `token` metadata).
#[derive(Clone, Debug)]
pub(crate) struct Token(pub(crate) Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut().insert("token", t.clone());
        }
        Ok(r)
    }
}

/// A connection to one endpoint, carrying the token of `--user` if given.
pub(crate) type Chan =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Token>;

/// Authenticates as `user` (`name:password`) on `ch`: the token for its requests.
pub(crate) async fn authenticate(
    ch: tonic::transport::Channel,
    user: &str,
) -> Result<Token, tonic::Status> {
    let (name, password) = user.split_once(':').unwrap_or((user, ""));
    let req = pb::AuthenticateRequest { name: name.into(), password: password.into() };
    let token = match AuthClient::new(ch).authenticate(req).await {
        Ok(r) => r.into_inner().token,
        // As etcd's clients: credentials for a cluster without auth are not an error.
        Err(s) if s.message().contains("authentication is not enabled") => return Ok(Token(None)),
        Err(s) => return Err(s),
    };
    let value = token.parse().map_err(|_| tonic::Status::internal("a token that is not ASCII"))?;
    Ok(Token(Some(value)))
}

/// Tries each endpoint in turn until one answers.
async fn with_endpoint<T, F, Fut>(conn: &Conn, mut f: F) -> Result<T, String>
where
    F: FnMut(Chan) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut last = String::from("no endpoint given");
    for ep in endpoints(conn) {
        let ch =
            match endpoint(&conn.tls, &ep)?.connect_timeout(Duration::from_secs(2)).connect().await
            {
                Ok(ch) => ch,
                Err(e) => {
                    // tonic's own message ("transport error") hides the cause, such as a
                    // certificate that does not check out.
                    let mut why = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        why = format!("{why}: {s}");
                        source = s.source();
                    }
                    last = format!("{ep}: {why}");
                    continue;
                }
            };
        let token = match &conn.user {
            Some(u) => {
                authenticate(ch.clone(), u).await.map_err(|s| format!("{ep}: {}", s.message()))?
            }
            None => Token(None),
        };
        match f(tonic::service::interceptor::InterceptedService::new(ch, token)).await {
            Ok(v) => return Ok(v),
            // Only errors that prove the request took no effect are retried elsewhere (no
            // leader, or its entry was replaced by a new leader's): a write whose outcome is
            // unknown (timed out) is never sent twice.
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && (s.message().contains("no leader")
                        || s.message().contains("leader changed")) =>
            {
                last = format!("{ep}: {}", s.message())
            }
            Err(s) => return Err(format!("{ep}: {}", s.message())),
        }
    }
    Err(last)
}

/// The `alarm` commands; output as etcdctl's.
async fn alarm(command: AlarmCommand) -> Result<(), String> {
    let (conn, disarm) = match command {
        AlarmCommand::List { conn } => (conn, false),
        AlarmCommand::Disarm { conn } => (conn, true),
    };
    let call = |req: pb::AlarmRequest| {
        with_endpoint(&conn, move |ch| {
            let req = req.clone();
            async move { MaintenanceClient::new(ch).alarm(req).await.map(|r| r.into_inner()) }
        })
    };
    let get = pb::AlarmRequest { action: pb::alarm_action::GET, ..Default::default() };
    let mut alarms = call(get).await?.alarms;
    if disarm {
        let mut cleared = Vec::new();
        for a in alarms {
            let req = pb::AlarmRequest {
                action: pb::alarm_action::DEACTIVATE,
                member_id: a.member_id,
                alarm: a.alarm,
            };
            cleared.extend(call(req).await?.alarms);
        }
        alarms = cleared;
    }
    let name = |t: i32| match t {
        pb::alarm_type::NOSPACE => "NOSPACE",
        pb::alarm_type::CORRUPT => "CORRUPT",
        _ => "NONE",
    };
    for a in alarms {
        if conn.json {
            say!("{{\"member\":{},\"alarm\":{}}}", a.member_id, js(name(a.alarm)));
        } else {
            say!("memberID:{} alarm:{}", a.member_id, name(a.alarm));
        }
    }
    Ok(())
}

/// The `lease` commands; output as etcdctl's.
async fn lease(command: LeaseCommand) -> Result<(), String> {
    use flotilla_server::rpc::lease_client::LeaseClient;
    match command {
        LeaseCommand::Grant { ttl, conn } => {
            let r = with_endpoint(&conn, |ch| async move {
                let req = pb::LeaseGrantRequest { ttl, id: 0 };
                LeaseClient::new(ch).lease_grant(req).await.map(|r| r.into_inner())
            })
            .await?;
            if conn.json {
                say!("{{\"id\":{},\"ttl\":{}}}", r.id, r.ttl);
            } else {
                say!("lease {:016x} granted with TTL({}s)", r.id, r.ttl);
            }
        }
        LeaseCommand::Revoke { id, conn } => {
            let id = lease_id(&id)?;
            with_endpoint(&conn, |ch| async move {
                LeaseClient::new(ch).lease_revoke(pb::LeaseRevokeRequest { id }).await
            })
            .await?;
            say!("lease {id:016x} revoked");
        }
        LeaseCommand::Timetolive { id, keys, conn } => {
            let id = lease_id(&id)?;
            let r = with_endpoint(&conn, |ch| async move {
                let req = pb::LeaseTimeToLiveRequest { id, keys };
                LeaseClient::new(ch).lease_time_to_live(req).await.map(|r| r.into_inner())
            })
            .await?;
            let names: Vec<String> = r.keys.iter().map(|k| text(k)).collect();
            if conn.json {
                let keys: Vec<String> = names.iter().map(|k| js(k)).collect();
                say!(
                    "{{\"id\":{id},\"ttl\":{},\"granted_ttl\":{},\"keys\":[{}]}}",
                    r.ttl,
                    r.granted_ttl,
                    keys.join(",")
                );
            } else if r.ttl == -1 {
                say!("lease {id:016x} already expired");
            } else if keys {
                say!(
                    "lease {id:016x} granted with TTL({}s), remaining({}s), attached keys({:?})",
                    r.granted_ttl,
                    r.ttl,
                    names
                );
            } else {
                say!("lease {id:016x} granted with TTL({}s), remaining({}s)", r.granted_ttl, r.ttl);
            }
        }
        LeaseCommand::List { conn } => {
            let r = with_endpoint(&conn, |ch| async move {
                LeaseClient::new(ch)
                    .lease_leases(pb::LeaseLeasesRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
            if conn.json {
                let ids: Vec<String> = r.leases.iter().map(|l| l.id.to_string()).collect();
                say!("{{\"leases\":[{}]}}", ids.join(","));
            } else {
                say!("found {} leases", r.leases.len());
                for l in r.leases {
                    say!("{:016x}", l.id);
                }
            }
        }
        LeaseCommand::KeepAlive { id, once, conn } => {
            let id = lease_id(&id)?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = tx.send(pb::LeaseKeepAliveRequest { id });
            let mut rx = Some(rx);
            let mut stream = with_endpoint(&conn, |ch| {
                let requests = rx.take();
                async move {
                    let requests = requests.ok_or_else(|| tonic::Status::unavailable("retry"))?;
                    LeaseClient::new(ch)
                        .lease_keep_alive(flotilla_server::api::Received(requests))
                        .await
                }
            })
            .await?
            .into_inner();
            while let Some(r) = stream.message().await.map_err(|e| e.message().to_string())? {
                if r.ttl <= 0 {
                    return Err(format!("lease {id:016x} expired or revoked."));
                }
                if conn.json {
                    say!("{{\"id\":{id},\"ttl\":{}}}", r.ttl);
                } else {
                    say!("lease {id:016x} keepalived with TTL({})", r.ttl);
                }
                if once {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500))).await;
                if tx.send(pb::LeaseKeepAliveRequest { id }).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Runs one watcher on the first endpoint that answers, printing its events (as etcdctl:
/// type, key, value; with the replaced value first when asked for) until `count` events, the
/// end of the stream, or a cancellation (a compacted start revision, say), which is an error.
async fn watch(
    conn: &Conn,
    create: pb::WatchCreateRequest,
    count: Option<u64>,
) -> Result<(), String> {
    use flotilla_server::rpc::watch_client::WatchClient;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = pb::watch_request::RequestUnion::CreateRequest(create);
    let _ = tx.send(pb::WatchRequest { request_union: Some(req) });
    let mut rx = Some(rx);
    let mut stream = with_endpoint(conn, |ch| {
        let requests = rx.take();
        async move {
            let requests = requests.ok_or_else(|| tonic::Status::unavailable("retry"))?;
            WatchClient::new(ch).watch(flotilla_server::api::Received(requests)).await
        }
    })
    .await?
    .into_inner();
    let mut seen = 0u64;
    while let Some(r) = stream.message().await.map_err(|e| e.message().to_string())? {
        if r.canceled {
            return Err(if r.compact_revision > 0 {
                format!("watch canceled: compacted revision {}", r.compact_revision)
            } else {
                format!("watch canceled: {}", r.cancel_reason)
            });
        }
        for e in &r.events {
            let kind = if e.r#type == 0 { "PUT" } else { "DELETE" };
            let kv = e.kv.clone().unwrap_or_default();
            if conn.json {
                let prev = e.prev_kv.as_ref().map_or("null".to_string(), |p| js(&text(&p.value)));
                say!(
                    "{{\"type\":\"{kind}\",\"key\":{},\"value\":{},\"mod_revision\":{},\"prev_value\":{prev}}}",
                    js(&text(&kv.key)), js(&text(&kv.value)), kv.mod_revision
                );
            } else {
                say!("{kind}");
                if let Some(p) = &e.prev_kv {
                    say!("{}\n{}", text(&p.key), text(&p.value));
                }
                say!("{}\n{}", text(&kv.key), text(&kv.value));
            }
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                drop(tx);
                return Ok(());
            }
        }
    }
    drop(tx);
    Ok(())
}

async fn client(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Put { key, value, lease, conn } => {
            let lease = lease.as_deref().map(lease_id).transpose()?.unwrap_or(0);
            let req = pb::PutRequest {
                key: key.into(),
                value: value.into(),
                lease,
                ..Default::default()
            };
            let r = with_endpoint(&conn, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).put(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            let rev = r.header.map_or(0, |h| h.revision);
            if conn.json {
                say!("{{\"revision\":{rev}}}");
            } else {
                say!("OK (revision {rev})");
            }
        }
        Command::Get { keys, rev, serializable, conn } => {
            let (key, range_end) = keys.span();
            let req = pb::RangeRequest {
                key,
                range_end,
                revision: rev,
                serializable,
                ..Default::default()
            };
            let r = with_endpoint(&conn, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).range(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            if conn.json {
                let kvs: Vec<String> = r
                    .kvs
                    .iter()
                    .map(|kv| {
                        format!(
                            "{{\"key\":{},\"value\":{},\"create_revision\":{},\"mod_revision\":{},\"version\":{}}}",
                            js(&text(&kv.key)), js(&text(&kv.value)), kv.create_revision, kv.mod_revision, kv.version
                        )
                    })
                    .collect();
                let rev = r.header.map_or(0, |h| h.revision);
                say!("{{\"revision\":{rev},\"count\":{},\"kvs\":[{}]}}", r.count, kvs.join(","));
            } else {
                for kv in r.kvs {
                    say!("{}\n{}", text(&kv.key), text(&kv.value));
                }
            }
        }
        Command::Watch { keys, rev, prev_kv, count, conn } => {
            let (key, range_end) = keys.span();
            let create = pb::WatchCreateRequest {
                key,
                range_end,
                start_revision: rev,
                prev_kv,
                ..Default::default()
            };
            watch(&conn, create, count).await?;
        }
        Command::Del { key, prefix, conn } => {
            let end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
            let req =
                pb::DeleteRangeRequest { key: key.into(), range_end: end.into(), prev_kv: false };
            let r = with_endpoint(&conn, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).delete_range(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            if conn.json {
                say!("{{\"deleted\":{}}}", r.deleted);
            } else {
                say!("{}", r.deleted);
            }
        }
        Command::Status { conn } => {
            for ep in endpoints(&conn) {
                let one = Conn { endpoints: ep.clone(), ..conn.clone() };
                let r = with_endpoint(&one, |ch| async move {
                    MaintenanceClient::new(ch)
                        .status(pb::StatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await;
                match r {
                    Ok(s) => {
                        let id = s.header.as_ref().map_or(0, |h| h.member_id);
                        if conn.json {
                            say!(
                                "{{\"endpoint\":{},\"member\":{id},\"leader\":{},\"term\":{},\"commit\":{},\"applied\":{},\"version\":{}}}",
                                js(&ep), s.leader, s.raft_term, s.raft_index, s.raft_applied_index, js(&s.version)
                            );
                        } else {
                            say!(
                                "{ep}: member {id}{} term {} commit {} applied {} (leader {})",
                                if s.leader == id { " (leader)" } else { "" },
                                s.raft_term,
                                s.raft_index,
                                s.raft_applied_index,
                                s.leader
                            );
                        }
                    }
                    Err(e) => say!("{ep}: unreachable: {e}"),
                }
            }
        }
        Command::Hashkv { rev, conn } => {
            for ep in endpoints(&conn) {
                let one = Conn { endpoints: ep.clone(), ..conn.clone() };
                let r = with_endpoint(&one, |ch| async move {
                    MaintenanceClient::new(ch)
                        .hash_kv(pb::HashKvRequest { revision: rev })
                        .await
                        .map(|r| r.into_inner())
                })
                .await;
                match r {
                    Ok(h) if conn.json => say!(
                        "{{\"endpoint\":{},\"hash\":{},\"hash_revision\":{},\"compact_revision\":{}}}",
                        js(&ep),
                        h.hash,
                        h.hash_revision,
                        h.compact_revision
                    ),
                    Ok(h) => say!(
                        "{ep}: hash {} at revision {} (compacted at {})",
                        h.hash,
                        h.hash_revision,
                        h.compact_revision
                    ),
                    Err(e) => say!("{ep}: {e}"),
                }
            }
        }
        Command::Defrag { conn } => {
            let mut failed = None;
            for ep in endpoints(&conn) {
                let one = Conn { endpoints: ep.clone(), ..conn.clone() };
                let r = with_endpoint(&one, |ch| async move {
                    MaintenanceClient::new(ch).defragment(pb::DefragmentRequest {}).await
                })
                .await;
                match r {
                    Ok(_) => say!("{ep}: snapshot saved, log compacted"),
                    Err(e) => {
                        say!("{ep}: {e}");
                        failed = Some(format!("defragment failed at {ep}"));
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Command::Member { command: MemberCommand::Add { name, peer_urls, learner, conn } } => {
            let req =
                pb::MemberAddRequest { peer_urls: vec![peer_urls.clone()], is_learner: learner };
            let r = with_endpoint(&conn, |ch| {
                let req = req.clone();
                async move { ClusterClient::new(ch).member_add(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            let id = r.member.as_ref().map_or(0, |m| m.id);
            let mut initial: Vec<String> = r
                .members
                .iter()
                .map(|m| {
                    let n = if m.id == id { name.clone() } else { m.name.clone() };
                    format!("{n}={}", m.peer_urls.join(","))
                })
                .collect();
            initial.sort();
            if conn.json {
                say!("{{\"id\":{id},\"initial_cluster\":{}}}", js(&initial.join(",")));
            } else {
                say!("Member {id:x} added{}", if learner { " as a learner" } else { "" });
                say!("start it with: flotilla serve --name {name} --listen-peer-urls {peer_urls} --initial-cluster-state existing --initial-cluster <the members, in id order>");
            }
        }
        Command::Member { command: MemberCommand::Remove { id, conn } } => {
            let id = hex_id(&id)?;
            with_endpoint(&conn, |ch| async move {
                ClusterClient::new(ch)
                    .member_remove(pb::MemberRemoveRequest { id })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
            say!("Member {id:x} removed");
        }
        Command::Member { command: MemberCommand::Promote { id, conn } } => {
            let id = hex_id(&id)?;
            with_endpoint(&conn, |ch| async move {
                ClusterClient::new(ch)
                    .member_promote(pb::MemberPromoteRequest { id })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
            say!("Member {id:x} promoted");
        }
        Command::Member { command: MemberCommand::Update { id, peer_urls, conn } } => {
            let id = hex_id(&id)?;
            with_endpoint(&conn, |ch| {
                let req = pb::MemberUpdateRequest { id, peer_urls: vec![peer_urls.clone()] };
                async move { ClusterClient::new(ch).member_update(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            say!("Member {id:x} updated");
        }
        Command::Lease { command } => lease(command).await?,
        Command::Alarm { command } => alarm(command).await?,
        Command::Member { command: MemberCommand::List { conn } } => {
            let r = with_endpoint(&conn, |ch| async move {
                ClusterClient::new(ch)
                    .member_list(pb::MemberListRequest { linearizable: false })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
            for m in r.members {
                if conn.json {
                    say!(
                        "{{\"id\":{},\"name\":{},\"peer_urls\":{},\"client_urls\":{},\"is_learner\":{}}}",
                        m.id, js(&m.name), js_list(&m.peer_urls), js_list(&m.client_urls), m.is_learner
                    );
                } else {
                    say!(
                        "{:x}, {}, {}, {}, {}",
                        m.id,
                        m.name,
                        m.peer_urls.join(","),
                        m.client_urls.join(","),
                        if m.is_learner { "learner" } else { "voter" }
                    );
                }
            }
        }
        Command::Bench(a) => bench::run(a).await?,
        Command::Txn { compares, success, failure, conn } => {
            let req = pb::TxnRequest {
                compare: compares.iter().map(|c| parse_compare(c)).collect::<Result<_, _>>()?,
                success: success.iter().map(|o| parse_op(o)).collect::<Result<_, _>>()?,
                failure: failure.iter().map(|o| parse_op(o)).collect::<Result<_, _>>()?,
            };
            let r = with_endpoint(&conn, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).txn(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            let rev = r.header.map_or(0, |h| h.revision);
            if conn.json {
                say!("{{\"succeeded\":{},\"revision\":{rev}}}", r.succeeded);
            } else {
                say!("{} (revision {rev})", if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for resp in r.responses {
                    if let Some(pb::response_op::Response::ResponseRange(rr)) = resp.response {
                        for kv in rr.kvs {
                            say!("{}\n{}", text(&kv.key), text(&kv.value));
                        }
                    }
                }
            }
        }
        Command::Snapshot { command: SnapshotCommand::Save { file, conn } } => {
            let data = with_endpoint(&conn, |ch| async move {
                let mut stream =
                    MaintenanceClient::new(ch).snapshot(pb::SnapshotRequest {}).await?.into_inner();
                let mut data = Vec::new();
                let mut rev = 0;
                while let Some(chunk) = stream.message().await? {
                    rev = chunk.header.as_ref().map_or(rev, |h| h.revision);
                    data.extend_from_slice(&chunk.blob);
                }
                Ok((data, rev))
            })
            .await?;
            // The stream ends with the SHA-256 of what precedes it: checked here, and kept
            // in the file (as etcdctl keeps it) so that `snapshot restore` checks it again.
            flotilla_server::driver::snapshot_state(&data.0)
                .map_err(|e| format!("snapshot stream: {e}"))?;
            let tmp = file.with_extension("part");
            std::fs::write(&tmp, &data.0).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &file).map_err(|e| format!("{}: {e}", file.display()))?;
            say!(
                "Snapshot saved at {} ({} bytes, revision {})",
                file.display(),
                data.0.len(),
                data.1
            );
        }
        Command::Snapshot {
            command: SnapshotCommand::Restore { file, name, data_dir, initial_cluster },
        } => {
            let members = flotilla_server::config::parse_initial_cluster(&initial_cluster)
                .map_err(|e| e.to_string())?;
            if !members.iter().any(|m| m.name == name) {
                return Err(format!("--name {name:?} is not in --initial-cluster"));
            }
            let saved = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let members: Vec<_> = members.into_iter().map(|m| (m.id, m.name, m.peer_url)).collect();
            let r = flotilla_server::driver::restore(&data_dir, &saved, &members)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            say!(
                "Restored {} into {} (revision {}, {} keys) for a cluster of {} members",
                file.display(),
                data_dir.display(),
                r.revision,
                r.keys,
                r.members
            );
        }
        Command::Leader { command: LeaderCommand::Transfer { target, conn } } => {
            let target = u64::from_str_radix(target.trim_start_matches("0x"), 16)
                .map_err(|e| format!("member id {target:?}: {e}"))?;
            // MoveLeader must reach the leader: find it first.
            let mut moved = false;
            for ep in endpoints(&conn) {
                let one = Conn { endpoints: ep.clone(), ..conn.clone() };
                let st = with_endpoint(&one, |ch| async move {
                    MaintenanceClient::new(ch)
                        .status(pb::StatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await;
                let Ok(st) = st else { continue };
                if st.header.as_ref().map(|h| h.member_id) != Some(st.leader) {
                    continue;
                }
                with_endpoint(&one, |ch| async move {
                    MaintenanceClient::new(ch)
                        .move_leader(pb::MoveLeaderRequest { target_id: target })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
                moved = true;
                break;
            }
            if !moved {
                return Err("no endpoint is the leader; give the leader's endpoint".into());
            }
            say!("leadership transfer to {target:x} started");
        }
        Command::Dev { .. } | Command::Serve(_) => unreachable!("handled by main"),
    }
    Ok(())
}

/// The settings `serve` reads from a file, by flag name.
const FILE_KEYS: &[&str] = &[
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-cluster",
    "initial-cluster-token",
    "initial-cluster-state",
    "tick-ms",
    "max-request-bytes",
    "snapshot-count",
    "listen-metrics-urls",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "watch-progress-notify-interval",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "client-cert-auth",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "peer-client-cert-auth",
    "peer-cert-allowed-cn",
    "auth-token",
    "auth-token-ttl",
];

/// Reads `--config-file` (before the flags are parsed) and turns each setting into its
/// FLOTILLA_* environment variable unless that is set already, so that flags override
/// environment variables, which override the file.
fn load_config_file() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .iter()
        .position(|a| a == "--config-file")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--config-file=").map(str::to_string)))
        .or_else(|| std::env::var("FLOTILLA_CONFIG_FILE").ok());
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{path}: {e}"))?;
    for (key, value) in table {
        if !FILE_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{path}: unknown setting {key:?} (known: {})",
                FILE_KEYS.join(", ")
            ));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{path}: {key} must be a string, an integer or a boolean, not {other}"
                ))
            }
        };
        let var = format!("FLOTILLA_{}", key.to_uppercase().replace('-', "_"));
        if std::env::var_os(&var).is_none() {
            std::env::set_var(var, value);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // No transparent huge pages for this process (mimalloc is built not to ask for them, and
    // this covers kernels that give them unasked): the kernel zeroes 2 MiB at a time at first
    // touch, much of it never used. At equal data (200,000 puts) a member held 87 MiB
    // resident without them against 98-106 MiB with them; in a 256-client profile the page
    // zeroing fell from 11.5% to 3.7% of the members' samples. Refused (an older kernel):
    // only more memory.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    if std::env::args().nth(1).as_deref() == Some("serve") {
        if let Err(e) = load_config_file() {
            eprintln!("flotilla serve: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let flags = flotilla_server::config::Flags {
                name: a.name,
                data_dir: a.data_dir,
                listen_client_urls: a.listen_client_urls,
                advertise_client_urls: a.advertise_client_urls,
                listen_peer_urls: a.listen_peer_urls,
                initial_cluster: a.initial_cluster,
                initial_cluster_token: a.initial_cluster_token,
                tick_ms: a.tick_ms,
                max_request_bytes: a.max_request_bytes,
                snapshot_count: a.snapshot_count,
                listen_metrics_urls: a.listen_metrics_urls,
                initial_cluster_state: a.initial_cluster_state,
                auto_compaction_mode: a.auto_compaction_mode,
                auto_compaction_retention: a.auto_compaction_retention,
                watch_progress_notify_interval: a.watch_progress_notify_interval,
                cert_file: a.cert_file,
                key_file: a.key_file,
                trusted_ca_file: a.trusted_ca_file,
                client_cert_auth: a.client_cert_auth,
                peer_cert_file: a.peer_cert_file,
                peer_key_file: a.peer_key_file,
                peer_trusted_ca_file: a.peer_trusted_ca_file,
                peer_client_cert_auth: a.peer_client_cert_auth,
                peer_cert_allowed_cn: a.peer_cert_allowed_cn,
                auth_token: a.auth_token,
                auth_token_ttl: a.auth_token_ttl,
            };
            let config = match ServerConfig::from_flags(&flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("flotilla serve: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            match flotilla_server::server::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("flotilla serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dev { data_dir, duration_secs } => dev::run(&data_dir, duration_secs),
        cmd => {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("flotilla: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(client(cmd)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("flotilla: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
