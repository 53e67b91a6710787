//! Peer connections: one persistent outbound TCP connection per peer with a bounded queue,
//! reconnecting with jittered backoff; an inbound listener that checks each connection's
//! handshake and hands decoded frames to the driver. A malformed frame drops that connection
//! and is counted; the node keeps running.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_raft::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::wire::{self, Handshake};

/// What travels between peers: a Raft message, or a write a follower forwards to the leader.
#[derive(Clone, Debug)]
pub enum PeerFrame {
    /// A Raft message.
    Raft(flotilla_raft::Message),
    /// A client write received by a follower, for the leader to propose (an encoded
    /// `pb::InternalRequest`).
    Forward(Bytes),
}

impl PeerFrame {
    /// The frame payload: a kind byte, then the body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PeerFrame::Raft(m) => {
                let mut out = vec![0u8];
                out.extend_from_slice(&wire::encode(m));
                out
            }
            PeerFrame::Forward(data) => {
                let mut out = Vec::with_capacity(1 + data.len());
                out.push(1);
                out.extend_from_slice(data);
                out
            }
        }
    }

    /// Decodes a frame payload.
    pub fn decode(mut payload: Bytes) -> Result<PeerFrame, wire::WireError> {
        if payload.is_empty() {
            return Err(wire::WireError::Malformed("empty frame"));
        }
        let kind = payload[0];
        payload = payload.slice(1..);
        match kind {
            0 => Ok(PeerFrame::Raft(wire::decode(payload)?)),
            1 => Ok(PeerFrame::Forward(payload)),
            _ => Err(wire::WireError::Malformed("unknown frame kind")),
        }
    }
}

pub use crate::metrics::Metrics as TransportStats;

/// The sending side: one queue per peer.
#[derive(Clone, Debug)]
pub struct Peers {
    queues: BTreeMap<NodeId, mpsc::Sender<Bytes>>,
    stats: Arc<TransportStats>,
    rt: tokio::runtime::Handle,
    me: NodeId,
    cluster_id: u64,
}

/// Frames queued per peer before new ones are dropped (Raft retries what is lost).
const QUEUE: usize = 4096;

impl Peers {
    /// Starts one connection task per peer (`id -> address`).
    pub fn start(
        rt: &tokio::runtime::Handle,
        me: NodeId,
        cluster_id: u64,
        peers: BTreeMap<NodeId, std::net::SocketAddr>,
        stats: Arc<TransportStats>,
    ) -> Peers {
        let mut p = Peers { queues: BTreeMap::new(), stats, rt: rt.clone(), me, cluster_id };
        for (id, addr) in peers {
            p.add(id, addr);
        }
        p
    }

    /// Starts a connection to a member added later (or moved: the old one is dropped).
    pub fn add(&mut self, id: NodeId, addr: std::net::SocketAddr) {
        if id == self.me {
            return;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let hs = Handshake { cluster_id: self.cluster_id, from: self.me, to: id };
        self.rt.spawn(connection(addr, hs, rx));
        self.queues.insert(id, tx);
    }

    /// Whether a connection to `id` exists.
    pub fn knows(&self, id: NodeId) -> bool {
        self.queues.contains_key(&id)
    }

    /// Queues a frame for `to`; drops it if the queue is full or the peer unknown.
    pub fn send(&self, to: NodeId, frame: &PeerFrame) {
        if let Some(q) = self.queues.get(&to) {
            if q.try_send(Bytes::from(frame.encode())).is_err() {
                self.stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn connection(addr: std::net::SocketAddr, hs: Handshake, mut rx: mpsc::Receiver<Bytes>) {
    let mut backoff = Duration::from_millis(20);
    let mut pending: Option<Bytes> = None;
    loop {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                // Jitter from the clock's nanoseconds: enough to keep peers out of step.
                let jitter = u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos())
                        % 50,
                );
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Messages queued while the peer is down are stale: Raft resends.
                while rx.try_recv().is_ok() {}
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        let _ = stream.set_nodelay(true);
        let mut w = BufWriter::with_capacity(256 << 10, stream);
        let mut buf = Vec::new();
        wire::put_frame(&mut buf, &hs.encode());
        if w.write_all(&buf).await.is_err() {
            continue;
        }
        loop {
            let frame = match pending.take() {
                Some(f) => f,
                None => match rx.recv().await {
                    Some(f) => f,
                    None => return,
                },
            };
            buf.clear();
            wire::put_frame(&mut buf, &frame);
            // Batch: everything already queued goes in the same write.
            while let Ok(more) = rx.try_recv() {
                wire::put_frame(&mut buf, &more);
                if buf.len() > 4 << 20 {
                    break;
                }
            }
            if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
    }
}

/// Accepts peer connections and delivers their frames to `deliver`.
pub async fn listen(
    listener: TcpListener,
    cluster_id: u64,
    me: NodeId,
    stats: Arc<TransportStats>,
    deliver: impl Fn(PeerFrame) + Clone + Send + Sync + 'static,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else { continue };
        let stats = stats.clone();
        let deliver = deliver.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_peer(stream, cluster_id, me, &deliver).await {
                stats.peer_bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%remote, error = %e, "dropping peer connection");
            }
        });
    }
}

async fn serve_peer(
    mut stream: TcpStream,
    cluster_id: u64,
    me: NodeId,
    deliver: &impl Fn(PeerFrame),
) -> Result<(), wire::WireError> {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut shaken = false;
    loop {
        while let Some(payload) = wire::take_frame(&mut buf)? {
            if !shaken {
                Handshake::check(&payload, cluster_id, me)?;
                shaken = true;
                continue;
            }
            deliver(PeerFrame::decode(payload)?);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}
