//! Peer connections. They live on the driver's own thread (a current-thread tokio runtime
//! that the driver runs on), so that a Raft message costs no hand-off between threads: the
//! driver appends frames to a peer's outgoing buffer and writes them to the socket itself,
//! without blocking, at the points of the `Ready` contract where they must leave
//! ([`Peers::flush`]); only what the socket does not take at once is left to that peer's
//! task, which waits until the socket is writable. Inbound connections are read by tasks on
//! the same thread, which hand decoded frames to the driver.
//!
//! One persistent outbound TCP connection per peer, reconnecting with jittered backoff and
//! opening with a handshake (protocol version, cluster id, both member ids); a bounded
//! outgoing buffer (frames beyond it are dropped and counted; Raft resends); an inbound
//! listener that checks each connection's handshake. A malformed frame drops that connection
//! and is counted; the node keeps running.
//!
//! With `https://` peer URLs the connections are TLS (rustls): the dialing task makes the TLS
//! handshake, then hands the session to the link, where the driver encrypts into it and
//! writes its records to the socket without blocking, as it writes plain frames; listeners
//! accept through `tokio-rustls`. A failed TLS handshake is counted with the refused
//! handshakes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_raft::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::rustls;

pub use crate::config::PeerAddr;
use crate::wire::{self, Handshake};

/// How long a TLS handshake with a peer may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that broke sooner than this after it was made is retried after a backoff
/// (a peer that refuses this member must not be redialed at once, again and again).
const SHORT_LIVED: Duration = Duration::from_secs(1);

/// What travels between peers: a Raft message, a write a follower forwards to the leader, or
/// a refusal of what was forwarded.
#[derive(Clone, Debug)]
pub enum PeerFrame {
    /// A Raft message.
    Raft(flotilla_raft::Message),
    /// A client write received by a follower, for the leader to propose (an encoded
    /// `pb::InternalRequest`).
    Forward(Bytes),
    /// Why a forwarded write or membership change was not proposed (an encoded
    /// `pb::ForwardRefusal`), sent back to the member that forwarded it.
    Refused(Bytes),
}

impl PeerFrame {
    /// The frame payload: a kind byte, then the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`PeerFrame::encode`], appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            PeerFrame::Raft(m) => {
                out.push(0);
                wire::encode_into(m, out);
            }
            PeerFrame::Forward(data) => {
                out.push(1);
                out.extend_from_slice(data);
            }
            PeerFrame::Refused(data) => {
                out.push(2);
                out.extend_from_slice(data);
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
            2 => Ok(PeerFrame::Refused(payload)),
            _ => Err(wire::WireError::Malformed("unknown frame kind")),
        }
    }
}

pub use crate::metrics::Metrics as TransportStats;

/// Bytes buffered for one peer before new frames are dropped (Raft retries what is lost).
/// Large enough for several maximal appends (1 MiB each by default) and snapshot chunks.
const BACKLOG_MAX: usize = 32 << 20;

/// One peer's outgoing side, shared by the driver and the peer's connection task (both on
/// the driver's thread).
#[derive(Debug, Default)]
struct Link {
    state: RefCell<LinkState>,
    /// Wakes the connection task: bytes are waiting, the connection broke, or the link closed.
    wake: Notify,
}

#[derive(Debug, Default)]
struct LinkState {
    /// The connection, once established and handshaken.
    stream: Option<Rc<TcpStream>>,
    /// Its TLS session, if the peer's URL is `https://`: frames are encrypted into it and
    /// its records written to `stream`.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Bytes not yet written, from `sent` on: whole frames, except that the first may have
    /// been written in part.
    buf: Vec<u8>,
    sent: usize,
    /// The refusals in `buf` not yet written (each frame's end in `buf`, and its bytes),
    /// kept when a connection breaks: Raft resends its own messages, but nothing resends a
    /// refusal, and a lost one leaves the forwarding member's client waiting for its timeout.
    /// Once written to the socket (or, over TLS, into the session) a refusal is let go.
    kept: Vec<(usize, Vec<u8>)>,
    /// The peer was removed or replaced: the task ends.
    closed: bool,
}

impl LinkState {
    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Nothing left to write: no frame bytes, and no TLS record the socket did not take.
    fn idle(&self) -> bool {
        self.pending().is_empty() && !self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes what the socket takes now, without blocking. `false` if the connection broke
    /// (the buffer is then dropped, but for the refusals not yet written: what it held may
    /// have been cut mid-frame).
    fn write_now(&mut self) -> bool {
        let Some(s) = self.stream.clone() else { return true };
        let ok = match self.tls.as_mut() {
            None => loop {
                if self.sent == self.buf.len() {
                    break true;
                }
                match s.try_write(&self.buf[self.sent..]) {
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            },
            Some(tls) => write_tls_now(&s, tls, &self.buf, &mut self.sent),
        };
        if !ok {
            self.reset();
            return false;
        }
        self.written();
        true
    }

    /// After `sent` moved on: lets the written refusals go, and drops the written bytes
    /// once they are all or most of the buffer.
    fn written(&mut self) {
        let sent = self.sent;
        self.kept.retain(|(end, _)| *end > sent);
        if self.sent == self.buf.len() {
            self.buf.clear();
        } else if self.sent > self.buf.len() / 2 {
            self.buf.drain(..self.sent);
        } else {
            return;
        }
        self.kept.iter_mut().for_each(|(end, _)| *end -= sent);
        self.sent = 0;
    }

    /// Queues one frame.
    fn queue(&mut self, frame: &PeerFrame) {
        let start = self.buf.len();
        wire::put_frame_with(&mut self.buf, |out| frame.encode_into(out));
        if let PeerFrame::Refused(_) = frame {
            self.kept.push((self.buf.len(), self.buf[start..].to_vec()));
        }
    }

    /// Drops the connection and what was queued for it, except the refusals not yet
    /// written.
    fn reset(&mut self) {
        let sent = self.sent;
        self.kept.retain(|(end, _)| *end > sent);
        self.stream = None;
        self.tls = None;
        self.buf.clear();
        self.sent = 0;
        for (end, frame) in &mut self.kept {
            self.buf.extend_from_slice(frame);
            *end = self.buf.len();
        }
    }

    /// Queues the refusals `old` has not wholly written, and takes them from it.
    fn take_refusals(&mut self, old: &mut LinkState) {
        let sent = old.sent;
        for (end, frame) in old.kept.drain(..) {
            if end > sent {
                self.buf.extend_from_slice(&frame);
                self.kept.push((self.buf.len(), frame));
            }
        }
    }

    /// Starts a new connection's bytes with `first` (its handshake), then what is pending.
    fn restart_with(&mut self, first: &[u8]) {
        let mut buf = Vec::with_capacity(first.len() + self.pending().len());
        buf.extend_from_slice(first);
        buf.extend_from_slice(self.pending());
        // Every kept refusal ends past `sent` (`write_now` lets the written ones go).
        let shift = first.len();
        let sent = self.sent;
        self.kept.iter_mut().for_each(|(end, _)| *end = *end - sent + shift);
        self.buf = buf;
        self.sent = 0;
    }
}

/// Encrypts `buf[*sent..]` into the TLS session and writes its records while the socket
/// takes them. `false` if the connection broke.
fn write_tls_now(
    s: &TcpStream,
    tls: &mut rustls::ClientConnection,
    buf: &[u8],
    sent: &mut usize,
) -> bool {
    /// The socket as `io::Write`, never blocking (rustls keeps what it does not take).
    struct TryWrite<'a>(&'a TcpStream);
    impl std::io::Write for TryWrite<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.try_write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    loop {
        if *sent < buf.len() {
            // Takes up to rustls's buffer limit (64 KiB by default), encrypted at once.
            match tls.writer().write(&buf[*sent..]) {
                // Nothing taken and nothing to write: the session no longer sends.
                Ok(0) if !tls.wants_write() => return false,
                Ok(n) => *sent += n,
                Err(_) => return false,
            }
        }
        if !tls.wants_write() {
            return true; // everything taken and written
        }
        match tls.write_tls(&mut TryWrite(s)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// The sending side: one link per peer. Lives on the driver's thread.
#[derive(Debug)]
pub struct Peers {
    links: BTreeMap<NodeId, Rc<Link>>,
    stats: Arc<TransportStats>,
    me: NodeId,
    cluster_id: u64,
    /// For `https://` peers.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Peers {
    /// Starts one connection task per peer (`id -> address`), over TLS with `tls` to the
    /// peers whose URL is `https://`. Must run inside a [`tokio::task::LocalSet`] on the
    /// driver's thread.
    pub fn start(
        me: NodeId,
        cluster_id: u64,
        peers: BTreeMap<NodeId, PeerAddr>,
        stats: Arc<TransportStats>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Peers {
        let mut p = Peers { links: BTreeMap::new(), stats, me, cluster_id, tls };
        for (id, addr) in peers {
            p.add(id, addr);
        }
        p
    }

    /// Starts a connection to a member added later (or moved: the old one is closed).
    pub fn add(&mut self, id: NodeId, addr: PeerAddr) {
        if id == self.me {
            return;
        }
        let link = Rc::new(Link::default());
        if let Some(old) = self.links.get(&id) {
            // A new address for a known peer: the refusals not yet written to the old one
            // go to the new (nothing else would resend them).
            link.state.borrow_mut().take_refusals(&mut old.state.borrow_mut());
        }
        let hs = Handshake { cluster_id: self.cluster_id, from: self.me, to: id };
        let tls = if addr.tls { Some(self.tls.clone()) } else { None };
        tokio::task::spawn_local(connection(addr.addr, tls, hs, link.clone()));
        if let Some(old) = self.links.insert(id, link) {
            old.state.borrow_mut().closed = true;
            old.wake.notify_one();
        }
    }

    /// Whether a connection to `id` exists.
    pub fn knows(&self, id: NodeId) -> bool {
        self.links.contains_key(&id)
    }

    /// Queues a frame for `to` (it leaves at the next [`Peers::flush`]); drops it if the
    /// peer's buffer is full or the peer unknown.
    pub fn send(&self, to: NodeId, frame: &PeerFrame) {
        let Some(link) = self.links.get(&to) else { return };
        let mut st = link.state.borrow_mut();
        if st.buf.len() - st.sent > BACKLOG_MAX {
            self.stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        st.queue(frame);
    }

    /// Writes every peer's queued frames as far as its socket takes them now; the rest is
    /// left to the peer's task. One write per peer per call, whatever the number of frames.
    pub fn flush(&self) {
        for link in self.links.values() {
            let mut st = link.state.borrow_mut();
            if st.pending().is_empty() {
                continue;
            }
            st.write_now();
            if !st.idle() || st.stream.is_none() {
                link.wake.notify_one();
            }
        }
    }
}

/// One peer's connection task: connect (and make the TLS handshake if `tls` is given: the
/// peer's URL is `https://`; `Some(None)` if this member has no peer TLS settings), then
/// the link handshake; then write whatever the driver could not write at once, whenever
/// the socket is writable; on any error start over, after a backoff if the connection
/// was short-lived.
async fn connection(
    addr: std::net::SocketAddr,
    tls: Option<Option<Arc<rustls::ClientConfig>>>,
    hs: Handshake,
    link: Rc<Link>,
) {
    let mut backoff = Duration::from_millis(20);
    let mut wait = false;
    loop {
        if wait {
            // Jitter from the clock's nanoseconds: enough to keep peers out of step.
            let jitter = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
                    % 50,
            );
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            // Frames queued while the peer is down are stale: Raft resends (refusals are
            // kept).
            link.state.borrow_mut().reset();
        }
        wait = true;
        if link.state.borrow().closed {
            return;
        }
        let Ok(stream) = TcpStream::connect(addr).await else { continue };
        let _ = stream.set_nodelay(true);
        let (stream, session) = match &tls {
            None => (stream, None),
            Some(None) => {
                tracing::warn!(%addr, "peer URL is https:// but this member has no peer TLS settings (--peer-cert-file ...)");
                continue;
            }
            Some(Some(config)) => {
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let connect =
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream);
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connect).await {
                    Ok(Ok(s)) => {
                        let (stream, session) = s.into_inner();
                        (stream, Some(Box::new(session)))
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%addr, error = %e, "TLS handshake with a peer failed");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(%addr, "TLS handshake with a peer timed out");
                        continue;
                    }
                }
            }
        };
        let connected = tokio::time::Instant::now();
        let stream = Rc::new(stream);
        {
            // The handshake goes first, then whatever was queued while connecting (whole
            // frames only: the buffer is reset whenever a connection breaks).
            let mut st = link.state.borrow_mut();
            let mut first = Vec::with_capacity(64);
            wire::put_frame(&mut first, &hs.encode());
            st.restart_with(&first);
            st.stream = Some(stream.clone());
            st.tls = session;
        }
        loop {
            let (closed, broken, idle) = {
                let st = link.state.borrow();
                (st.closed, st.stream.is_none(), st.idle())
            };
            if closed {
                return;
            }
            if broken {
                break; // the driver's write failed
            }
            if idle {
                link.wake.notified().await;
                continue;
            }
            if stream.writable().await.is_err() {
                link.state.borrow_mut().reset();
                break;
            }
            if !link.state.borrow_mut().write_now() {
                break;
            }
        }
        if connected.elapsed() >= SHORT_LIVED {
            backoff = Duration::from_millis(20);
            wait = false;
        }
    }
}

/// Accepts peer connections (over TLS with `tls`) and delivers their frames to `deliver`,
/// with the member each connection's handshake named.
/// Runs inside a [`tokio::task::LocalSet`]: each connection is read by a task on the same
/// thread.
pub async fn listen(
    listener: TcpListener,
    cluster_id: u64,
    me: NodeId,
    stats: Arc<TransportStats>,
    tls: Option<crate::config::PeerTls>,
    deliver: impl Fn(NodeId, PeerFrame) + Clone + 'static,
) {
    let allowed_cn: Option<Arc<str>> =
        tls.as_ref().and_then(|t| t.allowed_cn.as_deref()).map(Arc::from);
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server));
    loop {
        let Ok((stream, remote)) = listener.accept().await else { continue };
        let stats = stats.clone();
        let deliver = deliver.clone();
        let acceptor = acceptor.clone();
        let allowed_cn = allowed_cn.clone();
        tokio::task::spawn_local(async move {
            let served = match acceptor {
                None => serve_peer(stream, cluster_id, me, &deliver).await,
                Some(a) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, a.accept(stream)).await {
                        Ok(Ok(s)) => match allowed(&s, allowed_cn.as_deref()) {
                            Ok(()) => serve_peer(s, cluster_id, me, &deliver).await,
                            Err(e) => Err(e),
                        },
                        Ok(Err(e)) => Err(wire::WireError::Refused(format!("TLS: {e}"))),
                        Err(_) => Err(wire::WireError::Refused("TLS handshake timed out".into())),
                    }
                }
            };
            if let Err(e) = served {
                stats.peer_bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%remote, error = %e, "dropping peer connection");
            }
        });
    }
}

/// `--peer-cert-allowed-cn`: the dialer's certificate (verified against the CA in the
/// handshake) must carry this common name.
fn allowed(
    s: &tokio_rustls::server::TlsStream<TcpStream>,
    cn: Option<&str>,
) -> Result<(), wire::WireError> {
    let Some(cn) = cn else { return Ok(()) };
    let presented =
        s.get_ref().1.peer_certificates().and_then(|c| crate::config::common_name(c.first()?));
    if presented.as_deref() == Some(cn) {
        Ok(())
    } else {
        Err(wire::WireError::Refused(format!(
            "peer certificate common name {presented:?} is not the allowed {cn:?}"
        )))
    }
}

async fn serve_peer(
    mut stream: impl AsyncRead + Unpin,
    cluster_id: u64,
    me: NodeId,
    deliver: &impl Fn(NodeId, PeerFrame),
) -> Result<(), wire::WireError> {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut from = None;
    loop {
        while let Some(payload) = wire::take_frame(&mut buf)? {
            match from {
                None => from = Some(Handshake::check(&payload, cluster_id, me)?.from),
                Some(f) => deliver(f, PeerFrame::decode(payload)?),
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(addr: std::net::SocketAddr) -> PeerAddr {
        PeerAddr { addr, tls: false }
    }

    fn local_runtime() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        (rt, tokio::task::LocalSet::new())
    }

    /// Peer TLS settings with a certificate for 127.0.0.1 signed by a fresh CA.
    fn peer_tls() -> crate::config::PeerTls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("a key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).expect("a CA");
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("parameters")
            .signed_by(&key, &ca, &ca_key)
            .expect("a certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("the CA is a root");
        let private_key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        crate::config::PeerTls::from_der(vec![cert.der().clone()], private_key.into(), roots, true)
            .expect("valid settings")
    }

    /// Each kind of frame decodes to what was encoded; an empty frame or an unknown kind is
    /// refused (the connection carrying it is dropped).
    #[test]
    fn frame_kinds_round_trip_and_unknown_kinds_are_refused() {
        let body = Bytes::from_static(b"\x08\x07");
        for frame in [PeerFrame::Forward(body.clone()), PeerFrame::Refused(body.clone())] {
            let back = PeerFrame::decode(Bytes::from(frame.encode())).expect("a frame");
            assert_eq!(format!("{back:?}"), format!("{frame:?}"));
        }
        assert!(PeerFrame::decode(Bytes::new()).is_err());
        assert!(PeerFrame::decode(Bytes::from_static(b"\x09body")).is_err());
    }

    /// Frames arrive whole and in order, including when the socket does not take them at
    /// once (many large frames: the rest waits in the link's buffer for its task).
    #[test]
    fn frames_arrive_in_order_through_partial_writes() {
        frames_arrive_in_order(None);
    }

    /// The same over TLS: frames are encrypted into the session as the socket takes its
    /// records (rustls holds at most 64 KiB at a time), by the driver and by the link's task.
    #[test]
    fn frames_arrive_in_order_through_partial_writes_over_tls() {
        frames_arrive_in_order(Some(peer_tls()));
    }

    fn frames_arrive_in_order(tls: Option<crate::config::PeerTls>) {
        let (rt, local) = local_runtime();
        local.block_on(&rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let stats = Arc::new(TransportStats::default());
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let server = tls.clone();
            tokio::task::spawn_local(listen(
                listener,
                7,
                NodeId(2),
                stats.clone(),
                server,
                move |_, f| {
                    let _ = tx.send(f);
                },
            ));
            let to = PeerAddr { addr, tls: tls.is_some() };
            let client = tls.as_ref().map(|t| t.client.clone());
            let peers = Peers::start(NodeId(1), 7, [(NodeId(2), to)].into(), stats.clone(), client);
            let n = 200u32;
            for i in 0..n {
                // 256 KiB each: 50 MiB in all, far more than a socket buffer holds.
                let body = vec![(i % 251) as u8; 256 << 10];
                let mut data = i.to_le_bytes().to_vec();
                data.extend_from_slice(&body);
                peers.send(NodeId(2), &PeerFrame::Forward(Bytes::from(data)));
                if i % 16 == 15 {
                    peers.flush();
                    tokio::task::yield_now().await;
                }
            }
            peers.flush();
            // Frames beyond the link's bound (32 MiB, reached while the connection is being
            // made) are dropped whole and counted; every other one arrives, in order.
            let dropped = stats.peer_dropped.load(Ordering::Relaxed) as u32;
            assert!(dropped < n / 2, "{dropped} dropped");
            let mut next = 0;
            for _ in 0..n - dropped {
                let f = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("frames keep arriving")
                    .expect("the listener runs");
                let PeerFrame::Forward(d) = f else { panic!("a forward frame") };
                let i = u32::from_le_bytes(d[..4].try_into().unwrap());
                assert!(i >= next, "frame {i} after frame {}", next - 1);
                next = i + 1;
                assert_eq!(d.len(), 4 + (256 << 10));
                assert!(d[4..].iter().all(|b| *b == (i % 251) as u8));
            }
            assert_eq!(stats.peer_bad_frames.load(Ordering::Relaxed), 0);
        });
    }

    /// Member 1's links to member 2 of cluster 7 at a reserved port where nothing listens
    /// yet (bound, then freed).
    fn unreachable_peer() -> (std::net::SocketAddr, Arc<TransportStats>, Peers) {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let stats = Arc::new(TransportStats::default());
        let peers =
            Peers::start(NodeId(1), 7, [(NodeId(2), plain(addr))].into(), stats.clone(), None);
        (addr, stats, peers)
    }

    /// Listens on `addr` (a reserved port) as member 2 of cluster 7, over plain TCP: the
    /// frames received.
    async fn receiver(
        addr: std::net::SocketAddr,
        stats: &Arc<TransportStats>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<PeerFrame> {
        let listener = TcpListener::bind(addr).await.expect("bind the reserved port");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let deliver = move |_, f| {
            let _ = tx.send(f);
        };
        tokio::task::spawn_local(listen(listener, 7, NodeId(2), stats.clone(), None, deliver));
        rx
    }

    /// Wherever a connection breaks, the refusals not yet wholly written are queued again,
    /// whole, for the next connection (after its handshake), and nothing else is.
    #[test]
    fn a_broken_connection_keeps_exactly_the_refusals_not_yet_written() {
        let frames = [
            PeerFrame::Forward(Bytes::from_static(b"a")),
            PeerFrame::Refused(Bytes::from_static(b"first")),
            PeerFrame::Forward(Bytes::from_static(b"bb")),
            PeerFrame::Refused(Bytes::from_static(b"second")),
            PeerFrame::Refused(Bytes::from_static(b"third")),
        ];
        let encoded: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut b = Vec::new();
                wire::put_frame_with(&mut b, |out| f.encode_into(out));
                b
            })
            .collect();
        let total: usize = encoded.iter().map(Vec::len).sum();
        // Written in two steps (`first`, then `then` more bytes), then broken.
        for first in 0..=total {
            for then in [0, 1, 7, total] {
                let mut st = LinkState::default();
                frames.iter().for_each(|f| st.queue(f));
                st.sent = first;
                st.written();
                st.sent = (st.sent + then).min(st.buf.len());
                st.written();
                let written = first + then.min(total - first);
                st.reset();
                let mut want = Vec::new();
                let mut end = 0;
                for (f, e) in frames.iter().zip(&encoded) {
                    end += e.len();
                    if matches!(f, PeerFrame::Refused(_)) && end > written {
                        want.push(e.clone());
                    }
                }
                assert_eq!(st.pending(), want.concat(), "broken after {written} bytes");
                // The next connection writes its handshake and all but the last byte of the
                // first kept refusal, then breaks: every kept refusal is queued again.
                st.restart_with(b"handshake");
                st.queue(&PeerFrame::Forward(Bytes::from_static(b"new")));
                let Some(head) = want.first() else { continue };
                st.sent = b"handshake".len() + head.len() - 1;
                st.written();
                st.reset();
                assert_eq!(st.pending(), want.concat());
                // And once the first is written whole, it is let go.
                st.restart_with(b"handshake");
                st.sent = b"handshake".len() + head.len();
                st.written();
                st.reset();
                assert_eq!(st.pending(), want[1..].concat());
            }
        }
    }

    /// A refusal queued while the peer cannot be reached is kept through the link's resets
    /// and sent once the peer listens (nothing else would resend it, and the forwarding
    /// member's client would wait for its timeout), while the Raft traffic queued with it is
    /// dropped as stale. Once written, it is let go.
    #[test]
    fn a_refusal_queued_while_the_peer_is_down_is_sent_once_it_listens() {
        let (rt, local) = local_runtime();
        local.block_on(&rt, async {
            let (addr, stats, peers) = unreachable_peer();
            let refusal = PeerFrame::Refused(Bytes::from_static(b"refused"));
            peers.send(NodeId(2), &PeerFrame::Forward(Bytes::from_static(b"stale")));
            peers.send(NodeId(2), &refusal);
            peers.send(NodeId(2), &PeerFrame::Forward(Bytes::from_static(b"stale")));
            peers.flush();
            let link = peers.links[&NodeId(2)].clone();
            let queued = link.state.borrow().pending().len();
            // The link fails to connect, backs off and resets its buffer.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while link.state.borrow().pending().len() == queued {
                assert!(tokio::time::Instant::now() < deadline, "the link resets its buffer");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut only_refusal = Vec::new();
            wire::put_frame_with(&mut only_refusal, |out| refusal.encode_into(out));
            assert_eq!(link.state.borrow().pending(), only_refusal, "the refusal is kept");

            expect_refusal(&mut receiver(addr, &stats).await).await;
            assert!(link.state.borrow().kept.is_empty(), "a written refusal is let go");
        });
    }

    /// A peer given a new address (its link replaced) still gets the refusals queued for
    /// its old one and not yet written; the Raft traffic queued with them is dropped.
    #[test]
    fn a_replaced_link_takes_over_the_refusals_not_yet_written() {
        let (rt, local) = local_runtime();
        local.block_on(&rt, async {
            let (_, stats, mut peers) = unreachable_peer();
            peers.send(NodeId(2), &PeerFrame::Forward(Bytes::from_static(b"stale")));
            peers.send(NodeId(2), &PeerFrame::Refused(Bytes::from_static(b"refused")));
            let old = peers.links[&NodeId(2)].clone();
            let moved = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            peers.add(NodeId(2), plain(moved));
            assert!(old.state.borrow().kept.is_empty(), "the old link gives its refusals up");
            peers.flush();
            expect_refusal(&mut receiver(moved, &stats).await).await;
        });
    }

    /// The first frame `rx` receives (within 30 s) is the refusal "refused".
    async fn expect_refusal(rx: &mut tokio::sync::mpsc::UnboundedReceiver<PeerFrame>) {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a frame arrives")
            .expect("the listener runs");
        assert!(matches!(&got, PeerFrame::Refused(d) if d.as_ref() == b"refused"), "{got:?}");
    }

    /// Frames queued before the peer listens are sent once it does (the link connects with
    /// backoff); a handshake for another cluster is refused and counted.
    #[test]
    fn link_reconnects_and_foreign_clusters_are_refused() {
        let (rt, local) = local_runtime();
        local.block_on(&rt, async {
            let (addr, stats, peers) = unreachable_peer();
            // The buffer is bounded: past it, frames are dropped and counted.
            let big = Bytes::from(vec![0u8; 1 << 20]);
            for _ in 0..40 {
                peers.send(NodeId(2), &PeerFrame::Forward(big.clone()));
            }
            assert!(stats.peer_dropped.load(Ordering::Relaxed) >= 7, "dropped past 32 MiB");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut rx = receiver(addr, &stats).await;
            // Until the link is up, frames may be dropped with the stale buffer: resend until
            // one arrives, as Raft would.
            let got = loop {
                peers.send(NodeId(2), &PeerFrame::Forward(Bytes::from_static(b"hello")));
                peers.flush();
                match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                    Ok(Some(f)) => break f,
                    _ => continue,
                }
            };
            assert!(matches!(got, PeerFrame::Forward(d) if d.as_ref() == b"hello"));
            // A member of cluster 8 is refused by this cluster's listener.
            let foreign =
                Peers::start(NodeId(3), 8, [(NodeId(2), plain(addr))].into(), stats.clone(), None);
            foreign.send(NodeId(2), &PeerFrame::Forward(Bytes::from_static(b"intruder")));
            foreign.flush();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while stats.peer_bad_frames.load(Ordering::Relaxed) == 0 {
                assert!(tokio::time::Instant::now() < deadline, "the foreign handshake is counted");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while let Ok(f) = rx.try_recv() {
                assert!(matches!(f, PeerFrame::Forward(d) if d.as_ref() == b"hello"));
            }
        });
    }
}
