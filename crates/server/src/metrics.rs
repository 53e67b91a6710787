//! Prometheus `/metrics` and `/health` on their own port (`--listen-metrics-urls`), served by
//! a minimal HTTP/1.1 responder: counters the driver and transport update with relaxed
//! atomics, rendered in the text exposition format.

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
    /// Writes whose entry was applied here, and their total latency from proposal to apply.
    pub commits: AtomicU64,
    /// Sum of commit latencies, microseconds.
    pub commit_latency_us_sum: AtomicU64,
    /// fsyncs and their total duration, microseconds.
    pub fsyncs: AtomicU64,
    /// Sum of fsync durations, microseconds.
    pub fsync_us_sum: AtomicU64,
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
            "flotilla_commit_latency_microseconds_sum",
            "counter",
            "Sum of proposal-to-apply latencies.",
            g(&self.commit_latency_us_sum),
        );
        metric("flotilla_fsyncs_total", "counter", "WAL fsyncs.", g(&self.fsyncs));
        metric(
            "flotilla_fsync_duration_microseconds_sum",
            "counter",
            "Sum of fsync durations.",
            g(&self.fsync_us_sum),
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
        out
    }

    /// Healthy: a leader is known and writes have not stopped.
    pub fn healthy(&self) -> bool {
        self.has_leader.load(Ordering::Relaxed) == 1
            && self.storage_failed.load(Ordering::Relaxed) == 0
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
