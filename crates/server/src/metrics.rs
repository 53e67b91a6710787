//! Prometheus `/metrics`, `/health` and `/version`, served as etcd serves them: on the client
//! port (HTTP/1.1 beside gRPC, see [`routes`]) and, if `--listen-metrics-urls` is given, on a
//! port of their own (a minimal HTTP/1.1 responder, [`serve`]). Counters, gauges and latency
//! histograms the driver and transport update with relaxed atomics, rendered in the text
//! exposition format, with the process's memory and file descriptors as Prometheus's
//! standard `process_*` metrics (which `etcdctl check datascale` reads).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counters and gauges, shared by the driver, the transport and the HTTP responder.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Proposals made on this member (its clients' writes).
    pub proposals: AtomicU64,
    /// Proposals that failed (no leader, leader changed, timeout, storage).
    pub proposals_failed: AtomicU64,
    /// Writes whose entry was applied here.
    pub commits: AtomicU64,
    /// Latency from proposal to apply of the writes proposed here.
    pub commit_latency: Histogram,
    /// WAL fsync durations.
    pub fsync: Histogram,
    /// WAL syncs run by the sync thread while the driver went on.
    pub background_syncs: AtomicU64,
    /// Commit index minus applied index at the last Ready.
    pub apply_lag: AtomicU64,
    /// Times this member saw the leader change.
    pub leader_changes: AtomicU64,
    /// Whether a leader is known (1) or not (0).
    pub has_leader: AtomicU64,
    /// Snapshots taken here.
    pub snapshots: AtomicU64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: AtomicU64,
    /// Set once writes stopped after a storage error.
    pub storage_failed: AtomicU64,
    /// Peer frames dropped because a queue was full.
    pub peer_dropped: AtomicU64,
    /// Peer connections dropped for a bad frame or handshake.
    pub peer_bad_frames: AtomicU64,
    /// Watchers of this member's clients.
    pub watchers: AtomicU64,
}

impl Metrics {
    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
        };

        metric(
            "flotilla_proposals_total",
            "counter",
            "Client writes proposed on this member.",
            g(&self.proposals),
        );
        metric(
            "flotilla_proposals_failed_total",
            "counter",
            "Client writes that failed.",
            g(&self.proposals_failed),
        );
        metric(
            "flotilla_commits_total",
            "counter",
            "Client writes applied after being proposed here.",
            g(&self.commits),
        );
        metric(
            "flotilla_apply_lag_entries",
            "gauge",
            "Committed entries not yet applied.",
            g(&self.apply_lag),
        );
        metric(
            "flotilla_leader_changes_total",
            "counter",
            "Leader changes seen.",
            g(&self.leader_changes),
        );
        metric("flotilla_has_leader", "gauge", "Whether a leader is known.", g(&self.has_leader));
        metric("flotilla_snapshots_total", "counter", "Snapshots taken.", g(&self.snapshots));
        metric(
            "flotilla_snapshots_installed_total",
            "counter",
            "Snapshots installed from a leader.",
            g(&self.snapshots_installed),
        );
        metric(
            "flotilla_storage_failed",
            "gauge",
            "Writes stopped after a storage error.",
            g(&self.storage_failed),
        );
        metric(
            "flotilla_peer_frames_dropped_total",
            "counter",
            "Peer frames dropped on a full queue.",
            g(&self.peer_dropped),
        );
        metric(
            "flotilla_peer_bad_connections_total",
            "counter",
            "Peer connections dropped for bad input.",
            g(&self.peer_bad_frames),
        );
        metric(
            "flotilla_wal_background_syncs_total",
            "counter",
            "WAL syncs made by the sync thread while the driver went on.",
            g(&self.background_syncs),
        );
        metric(
            "flotilla_watchers",
            "gauge",
            "Watchers of this member's clients.",
            g(&self.watchers),
        );
        self.commit_latency.render(
            &mut out,
            "flotilla_proposal_commit_duration_seconds",
            "Latency from proposal to apply of writes proposed on this member.",
        );
        self.fsync.render(&mut out, "flotilla_wal_fsync_duration_seconds", "WAL fsync durations.");
        render_process(&mut out);
        out
    }

    /// Healthy: a leader is known and writes have not stopped.
    pub fn healthy(&self) -> bool {
        self.has_leader.load(Ordering::Relaxed) == 1
            && self.storage_failed.load(Ordering::Relaxed) == 0
    }
}

/// Upper bounds of the latency buckets, microseconds: 50 µs to 10 s, about three per decade
/// (a local fsync takes 0.1-1 ms, a commit 0.3 ms to tens of ms under load).
const BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A Prometheus histogram of durations with fixed buckets, updated without locks.
///
/// ```
/// use flotilla_server::metrics::Histogram;
/// let h = Histogram::default();
/// h.observe(std::time::Duration::from_micros(300));
/// let mut out = String::new();
/// h.render(&mut out, "demo_seconds", "A demo.");
/// assert!(out.contains("demo_seconds_bucket{le=\"0.0005\"} 1"));
/// assert!(out.contains("demo_seconds_bucket{le=\"0.00025\"} 0"));
/// assert!(out.contains("demo_seconds_count 1"));
/// ```
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the histogram in the text exposition format (cumulative buckets, seconds).
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut acc = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            let le =
                BUCKETS_US.get(i).map_or("+Inf".to_string(), |us| (*us as f64 / 1e6).to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {acc}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", self.count());
    }
}

/// Prometheus's standard process metrics, from `/proc/self` (left out where it is absent).
fn render_process(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(field)?.trim().strip_suffix("kB")?;
            v.trim().parse::<u64>().ok()
        })
    };
    let mut gauge = |name: &str, help: &str, v: Option<u64>| {
        if let Some(v) = v {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"));
        }
    };
    gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        kib("VmRSS:").map(|k| k * 1024),
    );
    gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        kib("VmSize:").map(|k| k * 1024),
    );
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    gauge("process_open_fds", "Number of open file descriptors.", fds);
}

/// An HTTP answer: status code, content type, body.
pub type HttpAnswer = (u16, &'static str, String);

/// The answer to a GET of `path`: `/metrics` (Prometheus text), `/health` (etcd's JSON, 503
/// while no leader is known or writes have stopped), `/version` (etcd's JSON); else 404.
pub fn answer(metrics: &Metrics, path: &str) -> HttpAnswer {
    const JSON: &str = "application/json";
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
        "/health" if metrics.healthy() => (200, JSON, "{\"health\":\"true\"}\n".into()),
        "/health" => (503, JSON, "{\"health\":\"false\"}\n".into()),
        "/version" => {
            (200, JSON, format!("{{\"etcdserver\":\"{VERSION}\",\"etcdcluster\":\"{VERSION}\"}}\n"))
        }
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// The version `/version` and Maintenance.Status report.
pub const VERSION: &str = concat!("flotilla-", env!("CARGO_PKG_VERSION"));

/// `/metrics`, `/health` and `/version` as routes to serve beside the gRPC services on the
/// client port, as etcd does (tools such as `etcdctl check datascale` and most monitoring
/// set-ups read them there).
pub fn routes(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let route = |path: &'static str| {
        let metrics = metrics.clone();
        axum::routing::get(move || async move {
            let (code, kind, body) = answer(&metrics, path);
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, [(header::CONTENT_TYPE, kind)], body).into_response()
        })
    };
    axum::Router::new()
        .route("/metrics", route("/metrics"))
        .route("/health", route("/health"))
        .route("/version", route("/version"))
}

/// What the client port answers a request no route takes: a gRPC call of a method it does
/// not serve gets gRPC's Unimplemented (as tonic's own fallback answers), any other request
/// HTTP 404, as etcd answers an unknown path.
pub async fn fallback(req: axum::extract::Request) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let headers = [("grpc-status", "12"), ("content-type", "application/grpc")];
        (StatusCode::OK, headers).into_response()
    } else {
        (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "not found\n")
            .into_response()
    }
}

/// Serves `/metrics`, `/health` and `/version` on their own port until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match s.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (code, kind, body) = answer(&metrics, path);
            let reason = match code {
                200 => "OK",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let resp = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
