//! Starting a server: bind both ports (after the configuration was checked), start the peer
//! transport, the driver thread and the gRPC services; stop cleanly on SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_raft::{Config, Membership, NodeId};
use thiserror::Error;

use crate::api::Api;
use crate::config::{parse_peer_url, ServerConfig};
use crate::driver::{Driver, Input};
use crate::h2c;
use crate::transport::{self, Peers, TransportStats};

/// Why the server stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error(transparent)]
    Start(#[from] crate::driver::StartError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs a server until SIGTERM or Ctrl-C.
pub fn serve(config: ServerConfig) -> Result<(), ServeError> {
    // This thread only binds, waits for a signal and serves /metrics; the work happens on
    // the driver's thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let config = Arc::new(config);
    let me = config.id();
    rt.block_on(async move {
        // The peer port is bound here, so that a port in use is reported before anything
        // starts; the driver's thread serves it.
        let peer_listener = std::net::TcpListener::bind(config.peer_addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ServeError::Bind { addr: config.peer_addr, source })?;
        let mut client_listeners = Vec::new();
        for &addr in &config.client_addrs {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ServeError::Bind { addr, source })?;
            client_listeners.push(l);
        }
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| ServeError::Bind { addr, source })?,
            ),
            None => None,
        };
        let stats = Arc::new(TransportStats::default());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Input>();
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Closed when the driver's thread ends, however it ends (a panic included), so that
        // the process does not outlive it waiting for a signal.
        let (ended_tx, mut ended_rx) = tokio::sync::oneshot::channel::<()>();
        let driver_thread = {
            let (config, stats, tx) = (config.clone(), stats.clone(), tx.clone());
            let listeners = (peer_listener, client_listeners);
            std::thread::Builder::new()
                .name(format!("driver-{}", config.name))
                .spawn(move || {
                    let _ended = ended_tx;
                    driver_thread(config, stats, listeners, (tx, rx), opened_tx, stop_rx)
                })
                .map_err(ServeError::Runtime)?
        };
        match opened_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = driver_thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = driver_thread.join();
                return Err(ServeError::Runtime(std::io::Error::other("the driver thread ended")));
            }
        }
        if let (Some(l), Some(addr)) = (metrics_listener, config.metrics_addr) {
            let l = tokio::net::TcpListener::from_std(l)
                .map_err(|source| ServeError::Bind { addr, source })?;
            tokio::spawn(crate::metrics::serve(l, stats));
        }
        tracing::info!(name = %config.name, id = me.0, client = ?config.client_addrs, peer = %config.peer_addr, "serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
            _ = term.recv() => tracing::info!("shutting down"),
            _ = &mut ended_rx => tracing::error!("the driver stopped on its own"),
        }
        let _ = stop_tx.send(());
        let r = tokio::task::spawn_blocking(move || driver_thread.join()).await;
        match r {
            Ok(Ok(r)) => r,
            _ => Err(ServeError::Runtime(std::io::Error::other("the driver thread panicked"))),
        }
    })
}

/// How long a stopping server waits for its clients' requests in flight and connections.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The driver's thread: a current-thread runtime holding the driver and the peer connections
/// (see [`crate::transport`]). Reports through `opened` whether the data directory opened.
fn driver_thread(
    config: Arc<ServerConfig>,
    stats: Arc<TransportStats>,
    (peer_listener, client_listeners): (std::net::TcpListener, Vec<std::net::TcpListener>),
    (tx, rx): (crate::driver::Inbox, tokio::sync::mpsc::UnboundedReceiver<Input>),
    opened: tokio::sync::oneshot::Sender<Result<(), ServeError>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ServeError> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = opened.send(Err(ServeError::Runtime(e)));
            return Ok(());
        }
    };
    let me = config.id();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let config = &config;
        let listeners = tokio::net::TcpListener::from_std(peer_listener).and_then(|p| {
            let clients = client_listeners.into_iter().map(tokio::net::TcpListener::from_std);
            Ok((p, clients.collect::<Result<Vec<_>, _>>()?))
        });
        let (listener, client_listeners) = match listeners {
            Ok(l) => l,
            Err(source) => {
                let _ = opened.send(Err(ServeError::Bind { addr: config.peer_addr, source }));
                return Ok(());
            }
        };
        let peer_addrs: BTreeMap<NodeId, transport::PeerAddr> = config
            .members
            .iter()
            .filter(|m| m.id != me)
            .map(|m| (m.id, parse_peer_url("--initial-cluster", &m.peer_url).expect("checked")))
            .collect();
        let peer_tls = config.peer_tls.as_ref();
        let peers = Peers::start(
            me,
            config.cluster_id,
            peer_addrs,
            stats.clone(),
            peer_tls.map(|t| t.client.clone()),
        );
        // A member joining a running cluster bootstraps from the others; the log brings the
        // change that adds it (Thesis §4.2: it catches up as a learner first if so added).
        let voters: Vec<NodeId> = config
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| !config.join_existing || *id != me)
            .collect();
        let membership = Membership::new(voters, []).expect("ids from 1, at least one member");
        let raft_config = Config { rng_seed: election_seed(me), ..Config::new(me) };
        let auth = crate::auth::SharedAuth::default();
        auth.lock().jwt = config.jwt.clone();
        auth.lock().tokens = crate::auth::Tokens::with_ttl(config.auth_token_ttl);
        let wiring = crate::driver::Wiring {
            peers,
            tick: config.tick,
            policy: config.snapshot,
            self_tx: tx.clone(),
            metrics: stats.clone(),
            registry: config
                .members
                .iter()
                .map(|m| {
                    let client_url = if m.id == me {
                        config.advertise_client_urls.join(",")
                    } else {
                        String::new()
                    };
                    let record = crate::driver::MemberRecord {
                        name: m.name.clone(),
                        peer_url: m.peer_url.clone(),
                        client_url,
                    };
                    (m.id.0, record)
                })
                .collect(),
            me: crate::driver::MemberRecord {
                name: config.name.clone(),
                peer_url: config
                    .members
                    .iter()
                    .find(|m| m.id == me)
                    .map(|m| m.peer_url.clone())
                    .unwrap_or_default(),
                client_url: config.advertise_client_urls.join(","),
            },
            auto_compaction: config.auto_compaction,
            watch_progress_notify_interval: config.watch_progress_notify_interval,
            auth: auth.clone(),
        };
        let driver = match Driver::open(raft_config, &config.data_dir, membership, wiring) {
            Ok(d) => d,
            Err(e) => {
                let _ = opened.send(Err(e.into()));
                return Ok(());
            }
        };
        let stop_driver = tx.clone();
        let deliver = move |from, f| {
            let _ = tx.send(Input::Peer(from, f));
        };
        // TLS on the listener when this member's peer URL is https:// (then the settings
        // exist: checked with the configuration).
        let listener_tls = peer_tls.filter(|_| {
            config.members.iter().any(|m| m.id == me && m.peer_url.starts_with("https://"))
        });
        tokio::task::spawn_local(transport::listen(
            listener,
            config.cluster_id,
            me,
            stats.clone(),
            listener_tls.cloned(),
            deliver,
        ));
        // The gRPC services run on this thread too: a request reaches the driver, and its
        // answer the client's connection, without a hand-off between threads.
        let api = Api::new(config.clone(), stop_driver.clone(), auth);
        let max = config.max_request_bytes;
        let services = tonic::service::Routes::new(
            crate::rpc::k_v_server::KVServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::cluster_server::ClusterServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::maintenance_server::MaintenanceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::watch_server::WatchServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::lease_server::LeaseServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::auth_server::AuthServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::lock_server::LockServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            crate::rpc::election_server::ElectionServer::new(api.clone())
                .max_decoding_message_size(max),
        );
        // etcd serves /metrics, /health and /version on its client port too (HTTP/1.1 beside
        // gRPC's HTTP/2): monitoring and `etcdctl check datascale` read them there.
        let h2c_api = api.clone();
        let routes = services
            .into_axum_router()
            .merge(crate::metrics::routes(stats.clone()))
            // etcd's JSON gateway (HTTP/1.1 or HTTP/2, `POST /v3/...`), beside gRPC.
            .merge(crate::gateway::routes(api, max))
            .fallback(crate::metrics::fallback);
        // Plaintext HTTP/2 connections are served on h2 directly (crate::h2c); the rest
        // (HTTP/1.1, and every connection when the port has TLS) by tonic's server.
        let h2c = match config.client_tls {
            Some(_) => None,
            None => Some(h2c::Services { api: h2c_api, router: routes.clone(), max_message: max }),
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.client_tls {
            // Checked when the configuration was read: this cannot fail here.
            builder = builder
                .tls_config(tls.server_config())
                .expect("TLS settings checked by ServerConfig::from_flags");
        }
        let (grpc_stop_tx, grpc_stop_rx) = tokio::sync::watch::channel(false);
        let (to_tonic, for_tonic) = tokio::sync::mpsc::unbounded_channel();
        // Closed once the accept loop and every h2c connection have ended.
        let (h2c_open, mut h2c_closed) = tokio::sync::mpsc::channel::<()>(1);
        let listeners = Accept { listeners: client_listeners, next: 0 };
        let stop_accepting = grpc_stop_rx.clone();
        tokio::task::spawn_local(accept(listeners, h2c, to_tonic, stop_accepting, h2c_open));
        let mut tonic_stop = grpc_stop_rx;
        let grpc = builder
            .accept_http1(true)
            .add_routes(routes.into())
            .serve_with_incoming_shutdown(Handed(for_tonic), async move {
                let _ = tonic_stop.wait_for(|stop| *stop).await;
            });
        // On the signal: stop accepting and let requests in flight finish, then stop the
        // driver, once every connection closed or after SHUTDOWN_GRACE, whichever is first
        // (a client may keep an idle connection open for as long as it likes).
        let stop_after_grace = stop_driver.clone();
        tokio::task::spawn_local(async move {
            let _ = stop.await;
            let _ = grpc_stop_tx.send(true);
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            let _ = stop_after_grace.send(Input::Stop);
        });
        let grpc = tokio::task::spawn_local(async move {
            let r = grpc.await;
            if r.is_ok() {
                let _ = h2c_closed.recv().await;
            }
            let _ = stop_driver.send(Input::Stop);
            r
        });
        let _ = opened.send(Ok(()));
        driver.run(rx).await;
        if !grpc.is_finished() {
            grpc.abort();
            return Ok(());
        }
        match grpc.await {
            Ok(r) => r.map_err(ServeError::from),
            Err(e) => Err(ServeError::Runtime(std::io::Error::other(e.to_string()))),
        }
    })
}

/// Accepts client connections until `stop` turns true. With `h2c` (a plaintext port), a
/// connection that opens with HTTP/2's preface is served by [`h2c::serve`], and any other
/// goes to tonic; without (TLS), every connection goes to tonic. `open` is held by the loop
/// and by every connection it serves, so that its receiver learns when all have ended.
async fn accept(
    mut listeners: Accept,
    h2c: Option<h2c::Services>,
    to_tonic: tokio::sync::mpsc::UnboundedSender<tokio::net::TcpStream>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    open: tokio::sync::mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            s = std::future::poll_fn(|cx| listeners.poll_accept(cx)) => s,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, for one: wait a little rather than spin on it.
                tracing::warn!(error = %e, "accepting a client connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(services) = &h2c else {
            let _ = to_tonic.send(stream);
            continue;
        };
        let (services, to_tonic) = (services.clone(), to_tonic.clone());
        let (stop, open) = (stop.clone(), open.clone());
        tokio::task::spawn_local(async move {
            let _open = open;
            match h2c::protocol(&stream).await {
                h2c::Protocol::H2c => h2c::serve(stream, services, stop).await,
                h2c::Protocol::Other => {
                    let _ = to_tonic.send(stream);
                }
            }
        });
    }
}

/// The client listeners, polled in turn.
struct Accept {
    listeners: Vec<tokio::net::TcpListener>,
    /// Where the next poll starts, so that a busy listener does not starve the others.
    next: usize,
}

impl Accept {
    fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<tokio::net::TcpStream>> {
        let n = self.listeners.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let std::task::Poll::Ready(r) = self.listeners[i].poll_accept(cx) {
                self.next = (i + 1) % n;
                return std::task::Poll::Ready(r.map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    s
                }));
            }
        }
        std::task::Poll::Pending
    }
}

/// The connections handed to tonic, as the stream its server takes; it ends when the
/// accept loop does.
struct Handed(tokio::sync::mpsc::UnboundedReceiver<tokio::net::TcpStream>);

impl futures_core::Stream for Handed {
    type Item = Result<tokio::net::TcpStream, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|s| s.map(Ok))
    }
}

/// The seed of a member's election timeouts. Members must not time out in step: two that
/// draw the same timeouts and last heard from the leader in the same tick campaign at the
/// same time, split the vote, and do so again round after round (Raft §5.2 relies on the
/// timeouts differing). So the seed comes from the OS's randomness (the keys of std's
/// `RandomState`), not from anything members may share. The seed this replaced, member id
/// XOR process id, collided for members started one after another (`1 ^ p == 3 ^ (p + 2)`
/// for every even `p`): a test cluster whose third member lost its leader that way had no
/// leader for the 50 seconds the test waited.
fn election_seed(me: NodeId) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(me.0);
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_seeds_differ_where_the_old_formula_collided() {
        let p = 1000u64;
        assert_eq!(1 ^ p, 3 ^ (p + 2), "the collision the old seed had");
        let seeds: std::collections::BTreeSet<u64> =
            (0..64).map(|i| election_seed(NodeId(1 + i % 3))).collect();
        assert_eq!(seeds.len(), 64, "every draw differs");
    }
}
