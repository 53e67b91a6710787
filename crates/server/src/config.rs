//! Server configuration: etcd's flag names where the meaning is the same, checked before any
//! port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_raft::NodeId;
use thiserror::Error;

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its Raft id (its position in `--initial-cluster`, from 1).
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
}

/// A server's configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This member's name (`--name`).
    pub name: String,
    /// Where the WAL and snapshots live (`--data-dir`).
    pub data_dir: PathBuf,
    /// The client (gRPC) addresses (`--listen-client-urls`, comma-separated): all serve the
    /// same API.
    pub client_addrs: Vec<SocketAddr>,
    /// The client URLs given to the other members and listed by MemberList
    /// (`--advertise-client-urls`, comma-separated; by default the first listen URL).
    pub advertise_client_urls: Vec<String>,
    /// The peer address (`--listen-peer-urls`).
    pub peer_addr: SocketAddr,
    /// The initial members (`--initial-cluster`), this one included.
    pub members: Vec<MemberInfo>,
    /// Derived from `--initial-cluster` and `--initial-cluster-token`: peers of another
    /// cluster are refused.
    pub cluster_id: u64,
    /// One Raft tick. Heartbeats every 2 ticks, elections after 10 to 20.
    pub tick: Duration,
    /// Largest client request accepted (`--max-request-bytes`, etcd's default 1.5 MiB).
    pub max_request_bytes: usize,
    /// When to snapshot and compact (`--snapshot-count`).
    pub snapshot: crate::driver::SnapshotPolicy,
    /// Where `/metrics` and `/health` are served (`--listen-metrics-urls`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Joining a running cluster (`--initial-cluster-state existing`): this member starts
    /// outside the configuration and waits for the change that adds it.
    pub join_existing: bool,
    /// Automatic compaction of the key-value history, if any.
    pub auto_compaction: Option<AutoCompaction>,
    /// How often a quiet watcher that asked for progress notifications gets one
    /// (`--watch-progress-notify-interval`; etcd's default, 10 minutes).
    pub watch_progress_notify_interval: Duration,
    /// TLS on the client port (`https://` client URLs), if any.
    pub client_tls: Option<ClientTls>,
    /// TLS between members (`https://` peer URLs), if any.
    pub peer_tls: Option<PeerTls>,
    /// JSON Web Tokens (`--auth-token jwt,...`) rather than simple tokens, if set.
    pub jwt: Option<std::sync::Arc<crate::auth::Jwt>>,
    /// How long a simple token lives after its last use (`--auth-token-ttl`).
    pub auth_token_ttl: Duration,
}

/// A member's peer address, and whether it is reached over TLS (an `https://` peer URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether its URL is `https://`.
    pub tls: bool,
}

/// TLS between members (etcd's `--peer-cert-file`, `--peer-key-file`,
/// `--peer-trusted-ca-file`, `--peer-client-cert-auth`): a member presents its certificate
/// both when it listens and when it dials, and checks the other side's against the CA.
/// Built from the files when the configuration is read, so a bad file stops the server
/// before any port is bound.
#[derive(Clone)]
pub struct PeerTls {
    /// For the peer listener: this member's certificate; with `--peer-client-cert-auth`,
    /// dialers must present one signed by the CA.
    pub server: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    /// For connections to the other members: their certificates are checked against the
    /// CA and must name the IP address of their peer URL; this member's is presented.
    pub client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    /// `--peer-cert-allowed-cn`: the common name a dialing member's certificate must have
    /// (beyond being signed by the CA), or any.
    pub allowed_cn: Option<String>,
}

/// The common name (CN) in the subject of a DER certificate, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(name)
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Reads and checks the files the flags name: `None` unless some peer URL (this
    /// member's or another's) is `https://`.
    fn from_flags(f: &Flags, https: bool) -> Result<Option<PeerTls>, ConfigError> {
        use tokio_rustls::rustls;
        let (cert, key, ca) =
            (f.peer_cert_file.trim(), f.peer_key_file.trim(), f.peer_trusted_ca_file.trim());
        let allowed_cn = f.peer_cert_allowed_cn.trim();
        if !https {
            if !cert.is_empty()
                || !key.is_empty()
                || !ca.is_empty()
                || f.peer_client_cert_auth
                || !allowed_cn.is_empty()
            {
                return Err(ConfigError::Invalid(
                    "--peer-cert-file, --peer-key-file, --peer-trusted-ca-file, \
                     --peer-client-cert-auth and --peer-cert-allowed-cn need https:// peer URLs"
                        .into(),
                ));
            }
            return Ok(None);
        }
        if !allowed_cn.is_empty() && !f.peer_client_cert_auth {
            return Err(ConfigError::Invalid(
                "--peer-cert-allowed-cn needs --peer-client-cert-auth (without it a dialing \
                 member presents no certificate to check)"
                    .into(),
            ));
        }
        if cert.is_empty() || key.is_empty() || ca.is_empty() {
            return Err(ConfigError::Invalid(
                "https:// peer URLs need --peer-cert-file, --peer-key-file and \
                 --peer-trusted-ca-file (members check each other's certificates against it)"
                    .into(),
            ));
        }
        let read = |flag: &str, path: &str| {
            std::fs::read(path).map_err(|e| ConfigError::Invalid(format!("{flag} {path:?}: {e}")))
        };
        let bad = |flag: &str, path: &str, why: String| {
            ConfigError::Invalid(format!("{flag} {path:?}: {why}"))
        };
        let certs = |flag: &str, path: &str| {
            let pem = read(flag, path)?;
            let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(flag, path, e.to_string()))?;
            if certs.is_empty() {
                return Err(bad(flag, path, "no PEM certificate in it".into()));
            }
            Ok(certs)
        };
        let chain = certs("--peer-cert-file", cert)?;
        let private_key =
            rustls_pemfile::private_key(&mut read("--peer-key-file", key)?.as_slice())
                .map_err(|e| bad("--peer-key-file", key, e.to_string()))?
                .ok_or_else(|| bad("--peer-key-file", key, "no PEM private key in it".into()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs("--peer-trusted-ca-file", ca)? {
            roots.add(c).map_err(|e| bad("--peer-trusted-ca-file", ca, e.to_string()))?;
        }
        PeerTls::from_der(chain, private_key, roots, f.peer_client_cert_auth)
            .map(|t| {
                Some(PeerTls {
                    allowed_cn: Some(allowed_cn.to_string()).filter(|c| !c.is_empty()),
                    ..t
                })
            })
            .map_err(|e| ConfigError::Invalid(format!("peer TLS files: {e}")))
    }

    /// The settings from a certificate chain, its key and the CA's roots (already parsed).
    pub fn from_der(
        chain: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
        private_key: tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
        roots: tokio_rustls::rustls::RootCertStore,
        client_cert_auth: bool,
    ) -> Result<PeerTls, String> {
        use tokio_rustls::rustls;
        let roots = std::sync::Arc::new(roots);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), private_key.clone_key())
            .map_err(|e| e.to_string())?;
        let verifier = if client_cert_auth {
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("the CA: {e}"))?
        } else {
            rustls::server::WebPkiClientVerifier::no_client_auth()
        };
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, private_key)
            .map_err(|e| e.to_string())?;
        // Dialers never read from their connection (frames flow one way): no session
        // tickets to leave unread in their socket.
        server.send_tls13_tickets = 0;
        Ok(PeerTls {
            server: std::sync::Arc::new(server),
            client: std::sync::Arc::new(client),
            allowed_cn: None,
        })
    }
}

/// TLS for clients (etcd's `--cert-file`, `--key-file`, `--client-cert-auth`,
/// `--trusted-ca-file`): the files' contents, read and checked before any port is bound.
#[derive(Clone)]
pub struct ClientTls {
    /// The server's certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
    /// With `--client-cert-auth`: the CA (PEM) a client's certificate must be signed by;
    /// clients without one are refused.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientTls")
            .field("client_cert_auth", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// tonic's server TLS settings for it.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let c = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => c.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => c,
        }
    }

    /// Reads and checks the files the flags name: `None` unless the client URLs are
    /// `https://`.
    fn from_flags(f: &Flags, https: bool) -> Result<Option<ClientTls>, ConfigError> {
        let read = |flag: &str, path: &str| {
            std::fs::read(path).map_err(|e| ConfigError::Invalid(format!("{flag} {path:?}: {e}")))
        };
        let (cert, key, ca) = (f.cert_file.trim(), f.key_file.trim(), f.trusted_ca_file.trim());
        if !https {
            if !cert.is_empty() || !key.is_empty() || f.client_cert_auth {
                return Err(ConfigError::Invalid(
                    "--cert-file, --key-file and --client-cert-auth need https:// client URLs"
                        .into(),
                ));
            }
            return Ok(None);
        }
        if cert.is_empty() || key.is_empty() {
            return Err(ConfigError::Invalid(
                "https:// client URLs need --cert-file and --key-file".into(),
            ));
        }
        let client_ca_pem = match (f.client_cert_auth, ca) {
            (false, _) => None,
            (true, "") => {
                return Err(ConfigError::Invalid(
                    "--client-cert-auth needs --trusted-ca-file".into(),
                ))
            }
            (true, ca) => Some(read("--trusted-ca-file", ca)?),
        };
        let tls = ClientTls {
            cert_pem: read("--cert-file", cert)?,
            key_pem: read("--key-file", key)?,
            client_ca_pem,
        };
        // Parsed now (not when the server starts), so a bad file stops it before any port
        // is bound.
        tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .map_err(|e| ConfigError::Invalid(format!("TLS files: {e}")))?;
        Ok(Some(tls))
    }
}

/// Parses a duration as etcd's flags write short ones: a number and a unit (`h`, `m`, `s`,
/// `ms`); a bare number is in `bare_unit`.
///
/// ```
/// use flotilla_server::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("30m", Duration::from_secs(3600)), Some(Duration::from_secs(1800)));
/// assert_eq!(parse_duration("2", Duration::from_secs(3600)), Some(Duration::from_secs(7200)));
/// assert_eq!(parse_duration("2 days", Duration::from_secs(1)), None);
/// ```
pub fn parse_duration(s: &str, bare_unit: Duration) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u32 = n.parse().ok()?;
    match unit {
        "" => bare_unit.checked_mul(n),
        "h" => Some(Duration::from_secs(u64::from(n) * 3600)),
        "m" => Some(Duration::from_secs(u64::from(n) * 60)),
        "s" => Some(Duration::from_secs(u64::from(n))),
        "ms" => Some(Duration::from_millis(u64::from(n))),
        _ => None,
    }
}

/// etcd's automatic compaction of the key-value history (`--auto-compaction-mode`,
/// `--auto-compaction-retention`). The leader proposes the compaction, so every member
/// compacts at the same revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep the history of the last period: every tenth of it (at least every second),
    /// compact to the revision that was current one period ago.
    Periodic(Duration),
    /// Keep the last N revisions: checked every 5 seconds.
    Revisions(i64),
}

impl AutoCompaction {
    /// Parses etcd's mode and retention: `periodic` with a duration (`1h`, `30m`, `10s`,
    /// `500ms`; a bare number is hours, as in etcd) or `revision` with a count; a retention
    /// of `0` turns it off.
    ///
    /// ```
    /// use flotilla_server::config::AutoCompaction;
    /// use std::time::Duration;
    /// assert_eq!(AutoCompaction::parse("periodic", "0"), Ok(None));
    /// assert_eq!(
    ///     AutoCompaction::parse("periodic", "30m"),
    ///     Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800))))
    /// );
    /// assert_eq!(
    ///     AutoCompaction::parse("periodic", "2"),
    ///     Ok(Some(AutoCompaction::Periodic(Duration::from_secs(7200))))
    /// );
    /// assert_eq!(AutoCompaction::parse("revision", "1000"), Ok(Some(AutoCompaction::Revisions(1000))));
    /// assert!(AutoCompaction::parse("revision", "1h").is_err());
    /// assert!(AutoCompaction::parse("weekly", "1").is_err());
    /// ```
    pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, ConfigError> {
        let bad = |why: &str| {
            ConfigError::Invalid(format!(
                "--auto-compaction-retention {retention:?} for mode {mode:?}: {why}"
            ))
        };
        let retention = retention.trim();
        match mode {
            "periodic" => {
                let d = parse_duration(retention, Duration::from_secs(3600))
                    .ok_or_else(|| bad("not a duration such as 1h, 30m, 10s, 500ms"))?;
                Ok((!d.is_zero()).then_some(AutoCompaction::Periodic(d)))
            }
            "revision" => {
                let n: i64 = retention.parse().map_err(|_| bad("not a number of revisions"))?;
                if n < 0 {
                    return Err(bad("negative"));
                }
                Ok((n > 0).then_some(AutoCompaction::Revisions(n)))
            }
            _ => Err(ConfigError::Invalid(format!(
                "--auto-compaction-mode {mode:?} must be periodic or revision"
            ))),
        }
    }
}

/// The flags of `flotilla serve`, as given (named after etcd's).
#[derive(Clone, Debug)]
pub struct Flags {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`.
    pub listen_client_urls: String,
    /// `--advertise-client-urls`, comma-separated (empty: the first listen URL).
    pub advertise_client_urls: String,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--tick-ms`.
    pub tick_ms: u64,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--listen-metrics-urls` (empty: none).
    pub listen_metrics_urls: String,
    /// `--initial-cluster-state`: `new` or `existing`.
    pub initial_cluster_state: String,
    /// `--auto-compaction-mode`: `periodic` or `revision`.
    pub auto_compaction_mode: String,
    /// `--auto-compaction-retention` (`0`: off).
    pub auto_compaction_retention: String,
    /// `--watch-progress-notify-interval` (`10m`, `5s`, ...).
    pub watch_progress_notify_interval: String,
    /// `--cert-file` (empty: none).
    pub cert_file: String,
    /// `--key-file` (empty: none).
    pub key_file: String,
    /// `--trusted-ca-file` (empty: none).
    pub trusted_ca_file: String,
    /// `--client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--peer-cert-file` (empty: none).
    pub peer_cert_file: String,
    /// `--peer-key-file` (empty: none).
    pub peer_key_file: String,
    /// `--peer-trusted-ca-file` (empty: none).
    pub peer_trusted_ca_file: String,
    /// `--peer-client-cert-auth`.
    pub peer_client_cert_auth: bool,
    /// `--peer-cert-allowed-cn` (empty: any common name).
    pub peer_cert_allowed_cn: String,
    /// `--auth-token`: `simple`, or `jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DUR`.
    pub auth_token: String,
    /// `--auth-token-ttl`: seconds a simple token lives after its last use (etcd's 300).
    pub auth_token_ttl: u64,
}

/// A configuration that cannot run.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A URL is not `http://HOST:PORT` with an IP address.
    #[error("{flag}: {url:?} is not http://IP:PORT")]
    BadUrl {
        /// The flag.
        flag: &'static str,
        /// The value.
        url: String,
    },
    /// `--initial-cluster` is not `name=url,...`.
    #[error("--initial-cluster: {0}")]
    BadCluster(String),
    /// `--name` is not among the initial members.
    #[error("--name {0:?} is not in --initial-cluster")]
    NotAMember(String),
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Parses one peer URL: `http://IP:PORT`, or `https://IP:PORT` for a member reached over
/// TLS.
///
/// ```
/// use flotilla_server::config::parse_peer_url;
/// let p = parse_peer_url("--initial-cluster", "https://10.0.0.1:2380").unwrap();
/// assert!(p.tls);
/// assert_eq!(p.addr.port(), 2380);
/// assert!(!parse_peer_url("--initial-cluster", "http://10.0.0.1:2380/").unwrap().tls);
/// assert!(parse_peer_url("--initial-cluster", "https://node-a:2380").is_err());
/// ```
pub fn parse_peer_url(flag: &'static str, url: &str) -> Result<PeerAddr, ConfigError> {
    match url.strip_prefix("https://") {
        Some(rest) => match parse_url(flag, &format!("http://{rest}")) {
            Ok(addr) => Ok(PeerAddr { addr, tls: true }),
            Err(_) => Err(ConfigError::BadUrl { flag, url: url.to_string() }),
        },
        None => Ok(PeerAddr { addr: parse_url(flag, url)?, tls: false }),
    }
}

/// Parses one `http://IP:PORT` URL (lists, where a flag takes them, are split by the caller).
pub fn parse_url(flag: &'static str, url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = || ConfigError::BadUrl { flag, url: url.to_string() };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    rest.trim_end_matches('/').parse().map_err(|_| bad())
}

/// Checks an advertised URL: `http://HOST:PORT`, where HOST may be a name (it is only
/// handed to clients).
fn check_advertised_url(flag: &'static str, url: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadUrl { flag, url: url.to_string() };
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let rest = rest.ok_or_else(bad)?.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// The members `--initial-cluster` names (`name=http://IP:PORT`, comma-separated), with
/// their ids: their positions in the list, from 1.
pub fn parse_initial_cluster(initial_cluster: &str) -> Result<Vec<MemberInfo>, ConfigError> {
    let mut members = Vec::new();
    for (i, part) in initial_cluster.split(',').enumerate() {
        let (n, url) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::BadCluster(format!("{part:?} is not name=url")))?;
        parse_peer_url("--initial-cluster", url)?;
        if members.iter().any(|m: &MemberInfo| m.name == n) {
            return Err(ConfigError::BadCluster(format!("name {n:?} appears twice")));
        }
        members.push(MemberInfo {
            id: NodeId(i as u64 + 1),
            name: n.to_string(),
            peer_url: url.to_string(),
        });
    }
    Ok(members)
}

/// FNV-1a, for a stable cluster id from the initial configuration.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl ServerConfig {
    /// Builds and checks a configuration from etcd-style flag values.
    pub fn from_flags(f: &Flags) -> Result<ServerConfig, ConfigError> {
        let (name, initial_cluster, tick_ms, max_request_bytes) =
            (f.name.as_str(), f.initial_cluster.as_str(), f.tick_ms, f.max_request_bytes);
        let (listen_client_urls, listen_peer_urls) = (&f.listen_client_urls, &f.listen_peer_urls);
        let initial_cluster_token = &f.initial_cluster_token;
        let data_dir = f.data_dir.clone();
        let mut client_addrs = Vec::new();
        let urls: Vec<&str> = listen_client_urls.split(',').map(str::trim).collect();
        let https = urls.iter().any(|u| u.starts_with("https://"));
        if https && !urls.iter().all(|u| u.starts_with("https://")) {
            return Err(ConfigError::Invalid(
                "--listen-client-urls: all http:// or all https://, not both".into(),
            ));
        }
        let client_tls = ClientTls::from_flags(f, https)?;
        for url in urls {
            let plain = url.replacen("https://", "http://", 1);
            let addr = parse_url("--listen-client-urls", &plain)?;
            if client_addrs.contains(&addr) {
                return Err(ConfigError::Invalid(format!(
                    "--listen-client-urls: {url:?} appears twice"
                )));
            }
            client_addrs.push(addr);
        }
        let advertise_client_urls = match f.advertise_client_urls.trim() {
            // The first listen URL, as etcd advertises the first of its list.
            "" => vec![format!("{}://{}", if https { "https" } else { "http" }, client_addrs[0])],
            list => {
                let mut urls: Vec<String> = Vec::new();
                for u in list.split(',').map(str::trim) {
                    check_advertised_url("--advertise-client-urls", u)?;
                    let u = u.trim_end_matches('/').to_string();
                    if urls.contains(&u) {
                        return Err(ConfigError::Invalid(format!(
                            "--advertise-client-urls: {u:?} appears twice"
                        )));
                    }
                    urls.push(u);
                }
                urls
            }
        };
        let metrics_addr = match f.listen_metrics_urls.as_str() {
            "" => None,
            u => Some(parse_url("--listen-metrics-urls", u)?),
        };
        let peer = parse_peer_url("--listen-peer-urls", listen_peer_urls)?;
        let peer_addr = peer.addr;
        let members = parse_initial_cluster(initial_cluster)?;
        let Some(own) = members.iter().find(|m| m.name == name) else {
            return Err(ConfigError::NotAMember(name.to_string()));
        };
        if parse_peer_url("--initial-cluster", &own.peer_url)?.tls != peer.tls {
            return Err(ConfigError::Invalid(format!(
                "--listen-peer-urls {listen_peer_urls:?} and this member's URL in \
                 --initial-cluster {:?}: both http:// or both https://",
                own.peer_url
            )));
        }
        let peer_https = members.iter().any(|m| m.peer_url.starts_with("https://"));
        let peer_tls = PeerTls::from_flags(f, peer_https)?;
        if f.auth_token_ttl == 0 {
            return Err(ConfigError::Invalid("--auth-token-ttl must be positive".into()));
        }
        let jwt = crate::auth::Jwt::from_spec(&f.auth_token)
            .map_err(ConfigError::Invalid)?
            .map(std::sync::Arc::new);
        if !(1..=60_000).contains(&tick_ms) {
            return Err(ConfigError::Invalid(format!("--tick-ms {tick_ms} must be in 1..=60000")));
        }
        if f.snapshot_count == 0 {
            return Err(ConfigError::Invalid("--snapshot-count must be positive".into()));
        }
        if max_request_bytes == 0 {
            return Err(ConfigError::Invalid("--max-request-bytes must be positive".into()));
        }
        // As in etcd, the token tells clusters apart; it cannot depend on the member list,
        // which changes as members are added.
        let cluster_id = fnv1a(format!("flotilla/{initial_cluster_token}").as_bytes());
        let join_existing = match f.initial_cluster_state.as_str() {
            "new" => false,
            "existing" => true,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "--initial-cluster-state {other:?} must be new or existing"
                )))
            }
        };
        let auto_compaction =
            AutoCompaction::parse(&f.auto_compaction_mode, &f.auto_compaction_retention)?;
        let interval = &f.watch_progress_notify_interval;
        let watch_progress_notify_interval = match parse_duration(interval, Duration::from_secs(1))
        {
            Some(d) if !d.is_zero() => d,
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "--watch-progress-notify-interval {interval:?} is not a positive \
                         duration such as 10m, 5s, 500ms"
                )))
            }
        };
        Ok(ServerConfig {
            name: name.to_string(),
            data_dir,
            client_addrs,
            advertise_client_urls,
            peer_addr,
            members,
            cluster_id,
            tick: Duration::from_millis(tick_ms),
            max_request_bytes,
            snapshot: crate::driver::SnapshotPolicy {
                every: f.snapshot_count,
                keep: (f.snapshot_count / 2).min(5_000),
                ..Default::default()
            },
            metrics_addr,
            join_existing,
            auto_compaction,
            watch_progress_notify_interval,
            client_tls,
            peer_tls,
            jwt,
            auth_token_ttl: Duration::from_secs(f.auth_token_ttl),
        })
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.members.iter().find(|m| m.name == self.name).expect("checked at construction").id
    }
}

/// Flags for tests: a member `name` of `cluster` serving clients at `client`.
#[cfg(test)]
pub(crate) fn test_flags(name: &str, cluster: &str, client: &str) -> Flags {
    Flags {
        name: name.into(),
        data_dir: "/tmp/x".into(),
        listen_client_urls: client.into(),
        advertise_client_urls: String::new(),
        listen_peer_urls: "http://127.0.0.1:2380".into(),
        initial_cluster: cluster.into(),
        initial_cluster_token: "t".into(),
        tick_ms: 50,
        max_request_bytes: 1 << 20,
        snapshot_count: 10_000,
        listen_metrics_urls: String::new(),
        initial_cluster_state: "new".into(),
        auto_compaction_mode: "periodic".into(),
        auto_compaction_retention: "0".into(),
        watch_progress_notify_interval: "10m".into(),
        cert_file: String::new(),
        key_file: String::new(),
        trusted_ca_file: String::new(),
        client_cert_auth: false,
        peer_cert_file: String::new(),
        peer_key_file: String::new(),
        peer_trusted_ca_file: String::new(),
        peer_client_cert_auth: false,
        peer_cert_allowed_cn: String::new(),
        auth_token: "simple".into(),
        auth_token_ttl: 300,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_flags as flags;

    fn cfg(name: &str, cluster: &str, client: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_flags(&flags(name, cluster, client))
    }

    #[test]
    fn flags_are_checked_with_clear_messages() {
        let c = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381";
        let ok = cfg("b", c, "http://127.0.0.1:2379").unwrap();
        assert_eq!(ok.id(), NodeId(2));
        assert_eq!(ok.members.len(), 2);
        assert_eq!(
            cfg("z", c, "http://127.0.0.1:2379").unwrap_err().to_string(),
            "--name \"z\" is not in --initial-cluster"
        );
        assert!(matches!(cfg("a", c, "localhost:2379"), Err(ConfigError::BadUrl { .. })));
        assert!(matches!(cfg("a", "a", "http://127.0.0.1:2379"), Err(ConfigError::BadCluster(_))));
        let other = ServerConfig::from_flags(&Flags {
            initial_cluster_token: "other-token".into(),
            ..flags("a", c, "http://127.0.0.1:2379")
        })
        .unwrap();
        assert_ne!(other.cluster_id, ok.cluster_id, "the token separates clusters");
        assert_eq!(
            ok.advertise_client_urls,
            ["http://127.0.0.1:2379"],
            "the listen URL by default"
        );
        let two = cfg("a", c, "http://127.0.0.1:2379, http://10.0.0.1:2379").unwrap();
        assert_eq!(two.client_addrs.len(), 2);
        assert_eq!(two.advertise_client_urls, ["http://127.0.0.1:2379"], "the first by default");
        let twice = cfg("a", c, "http://127.0.0.1:2379,http://127.0.0.1:2379").unwrap_err();
        assert!(twice.to_string().contains("appears twice"), "{twice}");
        assert!(matches!(
            cfg("a", c, "http://127.0.0.1:2379,localhost:1"),
            Err(ConfigError::BadUrl { .. })
        ));
        let adv = |u: &str| {
            ServerConfig::from_flags(&Flags {
                advertise_client_urls: u.into(),
                ..flags("a", c, "http://0.0.0.0:2379")
            })
        };
        assert_eq!(
            adv("http://node-a.example:2379/").unwrap().advertise_client_urls,
            ["http://node-a.example:2379"]
        );
        assert_eq!(
            adv("http://node-a.example:2379, http://10.0.0.1:2379").unwrap().advertise_client_urls,
            ["http://node-a.example:2379", "http://10.0.0.1:2379"],
            "several, in order, as etcd lists them"
        );
        let twice = adv("http://a:2379,http://a:2379/").unwrap_err();
        assert!(twice.to_string().contains("appears twice"), "{twice}");
        for bad in ["node-a:2379", "http://node-a", "http://:2379", "http://a:99999", "http://a:1,"]
        {
            assert!(matches!(adv(bad), Err(ConfigError::BadUrl { .. })), "{bad}");
        }
        let auth = |token: &str, ttl: u64| {
            ServerConfig::from_flags(&Flags {
                auth_token: token.into(),
                auth_token_ttl: ttl,
                ..flags("a", c, "http://127.0.0.1:2379")
            })
        };
        assert_eq!(auth("simple", 30).unwrap().auth_token_ttl, Duration::from_secs(30));
        assert!(auth("simple", 30).unwrap().jwt.is_none());
        let e = auth("simple", 0).unwrap_err().to_string();
        assert_eq!(e, "--auth-token-ttl must be positive");
        let e = auth("jwt,sign-method=RS256", 300).unwrap_err().to_string();
        assert!(e.contains("pub-key is needed"), "{e}");
    }
}
