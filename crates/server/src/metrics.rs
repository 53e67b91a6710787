//! Prometheus `/metrics` and `/health` on their own port (`--listen-metrics-urls`), served by
//! a minimal HTTP/1.1 responder: counters, gauges and latency histograms the driver and
//! transport update with relaxed atomics, rendered in the text exposition format.

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

/// Serves `/metrics` and `/health` until the runtime stops.
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
            let (status, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/health" if metrics.healthy() => ("200 OK", "{\"health\":\"true\"}\n".to_string()),
                "/health" => ("503 Service Unavailable", "{\"health\":\"false\"}\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
