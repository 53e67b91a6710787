//! Plaintext HTTP/2 client connections ("h2c", prior knowledge, as every gRPC client speaks
//! it) served on `h2` directly, with a short path for the unary KV calls.
//!
//! Why not hyper and tonic for these: between h2 and the service, hyper's dispatcher, tower's
//! layers, axum's router and tonic's codec cost a member a few microseconds of CPU per
//! request it serves, and on a two-core machine that holds the whole cluster and its
//! clients, CPU is what bounds throughput. A unary KV call needs little of that machinery:
//! decode one length-prefixed message, call the service, answer with headers, one DATA frame
//! and the `grpc-status` trailers. Measured against tonic's server, alternating fresh
//! clusters at 256 clients: 3-7% less member CPU per put (44.1-44.5 µs against 44.9-50.0);
//! throughput and single-client latency unchanged within the machine's noise
//! (docs/benchmarks.md, the 08:30 run of 2026-12-01).
//!
//! Everything else on such a connection (the other gRPC methods, streams such as Watch and
//! Snapshot, the JSON gateway spoken over HTTP/2) goes to the same axum router tonic serves,
//! called here as a service; HTTP/1.1 connections and TLS go to tonic's server untouched.

// Refusals are tonic's `Status`, large, as the services' own are (see api.rs).
#![allow(clippy::result_large_err)]

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue};
use tonic::{Response, Status};

use crate::api::Api;
use crate::pb;
use crate::rpc::k_v_server::KV;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the services of a member's client port need on its h2c connections.
#[derive(Clone)]
pub(crate) struct Services {
    /// The services the short path calls.
    pub api: Api,
    /// Every route, as tonic's server has them.
    pub router: axum::Router,
    /// The largest request message accepted, in bytes (`--max-request-bytes`).
    pub max_message: usize,
}

/// What a new connection speaks, told from its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/2 with prior knowledge: served here.
    H2c,
    /// Anything else (HTTP/1.1, or a peer that closed or sent nothing recognisable): for
    /// tonic's server, which answers it as before.
    Other,
}

/// Reads, without consuming them, the first bytes of `s` to tell an HTTP/2 client from an
/// HTTP/1.1 one. "PRI" starts no HTTP/1.1 request (the method is reserved for this, RFC 9113
/// §3.4), so three bytes decide; a client that sent fewer is waited for a little, polled
/// every millisecond (clients send the whole preface in one write, so this is rare), and
/// given to tonic after a second of that.
pub(crate) async fn protocol(s: &tokio::net::TcpStream) -> Protocol {
    let mut buf = [0u8; 3];
    for _ in 0..1000 {
        let n = match s.peek(&mut buf).await {
            Ok(0) | Err(_) => return Protocol::Other,
            Ok(n) => n,
        };
        if buf[..n] != PREFACE[..n] {
            return Protocol::Other;
        }
        if n == buf.len() {
            return Protocol::H2c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    Protocol::Other
}

/// Serves one h2c connection until the client closes it, or until `stop` turns true; then
/// it is shut down gracefully (GOAWAY: requests in flight finish, no new ones are taken).
/// Requests run as tasks of the current `LocalSet`.
pub(crate) async fn serve(
    stream: tokio::net::TcpStream,
    services: Services,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Settings as hyper's server has them under tonic, so that clients see no difference:
    // 1 MiB windows, 16 KiB frames and header lists, no limit on concurrent streams (as
    // etcd: its clients multiplex every call onto one connection).
    let handshake = h2::server::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_frame_size(16 << 10)
        .max_header_list_size(16 << 10)
        .max_send_buffer_size(400 << 10)
        .max_local_error_reset_streams(Some(1024))
        .handshake::<_, Bytes>(stream)
        .await;
    let mut conn = match handshake {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "h2c handshake failed");
            return;
        }
    };
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow() {
            stopping = true;
            conn.graceful_shutdown();
        }
        let next = tokio::select! {
            next = conn.accept() => next,
            // An error: the server is gone, which is a stop too.
            r = stop.changed(), if !stopping => {
                if r.is_err() {
                    stopping = true;
                    conn.graceful_shutdown();
                }
                continue;
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                tokio::task::spawn_local(handle(services.clone(), request, respond));
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "h2c connection failed");
                return;
            }
            None => return,
        }
    }
}

/// A unary KV call, as the generated trait has it.
type Unary<Q, R> =
    for<'a> fn(
        &'a Api,
        tonic::Request<Q>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<R>, Status>> + Send + 'a>>;

async fn handle(
    services: Services,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    if !plain_grpc(&request) {
        return forward(services.router, request, respond).await;
    }
    let s = &services;
    match request.uri().path() {
        "/etcdserverpb.KV/Put" => {
            unary::<_, pb::PutResponse>(s, request, respond, |a, r| KV::put(a, r)).await
        }
        "/etcdserverpb.KV/Range" => {
            unary::<_, pb::RangeResponse>(s, request, respond, |a, r| KV::range(a, r)).await
        }
        "/etcdserverpb.KV/DeleteRange" => {
            unary::<_, pb::DeleteRangeResponse>(s, request, respond, |a, r| KV::delete_range(a, r))
                .await
        }
        "/etcdserverpb.KV/Txn" => {
            unary::<_, pb::TxnResponse>(s, request, respond, |a, r| KV::txn(a, r)).await
        }
        _ => forward(services.router, request, respond).await,
    }
}

/// Whether `r` is a gRPC call whose messages are not compressed: what the short path reads.
fn plain_grpc(r: &http::Request<RecvStream>) -> bool {
    let h = r.headers();
    let grpc = h
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+proto"));
    let identity = h.get("grpc-encoding").is_none_or(|e| e == "identity");
    r.method() == http::Method::POST && grpc && identity
}

/// Reads the one message of a unary call, calls `call`, and answers.
async fn unary<Q: prost::Message + Default, R: prost::Message>(
    services: &Services,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    call: Unary<Q, R>,
) {
    let (parts, mut body) = request.into_parts();
    let answer = match read_message::<Q>(&mut body, services.max_message).await {
        Ok(message) => {
            let mut r = tonic::Request::new(message);
            // `token` and the rest of the caller's metadata, as tonic passes them.
            *r.metadata_mut() = tonic::metadata::MetadataMap::from_headers(parts.headers);
            match unless_reset(&mut respond, call(&services.api, r)).await {
                Some(answer) => answer.map(|out| framed(out.get_ref())),
                None => return,
            }
        }
        Err(status) => Err(status),
    };
    // Whatever the client still sends is not read: dropping the body says so (h2 resets
    // the stream's receiving side once the answer is out).
    drop(body);
    let sent = match answer {
        Ok(data) => respond.send_response(grpc_head(), false).and_then(|mut send| {
            send.send_data(data, false)?;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            send.send_trailers(trailers)
        }),
        Err(status) => {
            // A "trailers-only" answer: the status in the headers, which end the stream.
            let mut head = grpc_head();
            if status.add_header(head.headers_mut()).is_err() {
                let fallback = Status::internal("the status could not be encoded");
                let _ = fallback.add_header(head.headers_mut());
            }
            respond.send_response(head, true).map(drop)
        }
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "an answer could not be sent");
    }
}

fn grpc_head() -> http::Response<()> {
    let mut head = http::Response::new(());
    head.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    head
}

/// `m` with gRPC's framing: a byte saying "not compressed", the length, the message.
pub fn framed(m: &impl prost::Message) -> Bytes {
    let len = m.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).expect("a message encodes in under 4 GiB"));
    m.encode(&mut out).expect("the buffer was sized by encoded_len");
    out.freeze()
}

/// Reads the request body of a unary call: exactly one message of at most `max` bytes, not
/// compressed. Refused as tonic refuses them, so that both paths answer alike.
async fn read_message<Q: prost::Message + Default>(
    body: &mut RecvStream,
    max: usize,
) -> Result<Q, Status> {
    // Usually the message comes in one DATA frame, taken as it is; copied only if split.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| Status::cancelled(format!("reading the request: {e}")))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            earlier => {
                if let Some(f) = earlier {
                    joined.extend_from_slice(&f);
                }
                joined.extend_from_slice(&chunk);
            }
        }
        let head = first.as_deref().unwrap_or(&joined);
        if head.len() >= 5 {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > max {
                return Err(Status::out_of_range(format!(
                    "Error, decoded message length too large: found {len} bytes, the limit is: \
                     {max} bytes"
                )));
            }
        }
    }
    unframed(first.unwrap_or_else(|| joined.freeze()))
}

/// The one message `data` holds with gRPC's framing.
fn unframed<Q: prost::Message + Default>(mut data: Bytes) -> Result<Q, Status> {
    if data.len() < 5 {
        return Err(Status::internal("Missing request message."));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented("compressed messages are not accepted here"));
    }
    if data.len() != len {
        return Err(Status::internal(format!(
            "a unary call carries one message: {len} bytes announced, {} sent",
            data.len()
        )));
    }
    Q::decode(data).map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))
}

/// Hands `request` to the router and streams its answer back, with HTTP/2's flow control
/// (nothing is buffered beyond what the client's window takes) and stopping as soon as the
/// client resets the stream (a cancelled Watch drops its stream at once).
async fn forward(
    mut router: axum::Router,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    use http_body::Body as _;
    use tower_service::Service as _;
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, IncomingBody { recv: body, data_done: false });
    let ready = poll_fn(|cx| {
        <axum::Router as tower_service::Service<http::Request<IncomingBody>>>::poll_ready(
            &mut router,
            cx,
        )
    });
    let Ok(()) = ready.await;
    let response = match unless_reset(&mut respond, router.call(request)).await {
        Some(Ok(r)) => r,
        None => return,
    };
    let (parts, mut body) = response.into_parts();
    let end = body.is_end_stream();
    let mut send = match respond.send_response(http::Response::from_parts(parts, ()), end) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "an answer could not be sent");
            return;
        }
    };
    if end {
        return;
    }
    loop {
        let frame = poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(|f| Some(f.transpose()))
        })
        .await;
        let frame = match frame {
            // The client reset the stream: the body is dropped, and with it what feeds it.
            None => return,
            Some(Ok(Some(f))) => f,
            Some(Ok(None)) => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "an answer's body failed");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        };
        let sent = match frame.into_data() {
            Ok(data) => send_flow_controlled(&mut send, data).await,
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    let _ = send.send_trailers(trailers);
                    return;
                }
                Err(_) => Ok(()),
            },
        };
        if sent.is_err() {
            return;
        }
    }
}

/// `f`'s output, or `None` as soon as the client resets the stream: then `f` is dropped, as
/// hyper drops a call whose client went away (a Lock waiting in line gives its place up).
async fn unless_reset<T>(
    respond: &mut SendResponse<Bytes>,
    f: impl Future<Output = T>,
) -> Option<T> {
    let mut f = std::pin::pin!(f);
    poll_fn(|cx| {
        if respond.poll_reset(cx).is_ready() {
            return Poll::Ready(None);
        }
        f.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Sends `data` as the client's window allows, waiting for it to open.
async fn send_flow_controlled(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), ()> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(0)) => {}
            Some(Ok(n)) => {
                let part = data.split_to(n.min(data.len()));
                send.send_data(part, false).map_err(drop)?;
            }
            // Reset by the client, or the connection is gone.
            Some(Err(_)) | None => return Err(()),
        }
    }
    Ok(())
}

/// A request body read from h2, as the router takes it. Read capacity is handed back as the
/// service consumes the data, so a client streaming faster than it is served is held back
/// by flow control.
struct IncomingBody {
    recv: RecvStream,
    data_done: bool,
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(http_body::Frame::trailers(t)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::driver::{ApiError, Header, Input, Request};
    use crate::mvcc::Applied;
    use crate::rpc::k_v_client::KVClient;

    /// Answers the requests a KV call makes as a driver would: a range counts the bytes of
    /// its key, a put is applied at revision 8, the key "fail" has no leader.
    async fn driver(mut rx: tokio::sync::mpsc::UnboundedReceiver<Input>) {
        let header = |revision| Header { revision, term: 2 };
        while let Some(input) = rx.recv().await {
            match input {
                Input::Client(Request::Range(r, reply)) if r.key.as_ref() == b"fail" => {
                    let _ = reply.send(Err(ApiError::NoLeader));
                }
                Input::Client(Request::Range(r, reply)) => {
                    let out = pb::RangeResponse { count: r.key.len() as i64, ..Default::default() };
                    let _ = reply.send(Ok((out, header(7))));
                }
                Input::Client(Request::Write(pb::internal_request::Request::Put(_), _, reply)) => {
                    let _ = reply.send(Ok((Applied::Put(pb::PutResponse::default()), header(8))));
                }
                _ => {}
            }
        }
    }

    /// Serves connections at a loopback port on the current `LocalSet` with `router`;
    /// returns the port, the stop switch, and a task that ends when the stop has closed them all.
    async fn server(
        router: axum::Router,
    ) -> (u16, tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let flags =
            crate::config::test_flags("a", "a=http://127.0.0.1:2380", "http://127.0.0.1:2379");
        let config = Arc::new(crate::config::ServerConfig::from_flags(&flags).unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(driver(rx));
        let api = Api::new(config, tx, crate::auth::SharedAuth::default());
        let services = Services { api, router, max_message: 1 << 20 };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        // Serves every connection until the stop, then ends when they all have.
        let task = tokio::task::spawn_local(async move {
            let mut connections = Vec::new();
            let mut stopped = stop.clone();
            loop {
                let (s, _) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = stopped.wait_for(|s| *s) => break,
                };
                assert_eq!(protocol(&s).await, Protocol::H2c);
                connections.push(tokio::task::spawn_local(serve(
                    s,
                    services.clone(),
                    stop.clone(),
                )));
            }
            for c in connections {
                c.await.unwrap();
            }
        });
        (port, stop_tx, task)
    }

    async fn h2_client(port: u16) -> h2::client::SendRequest<Bytes> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (send, conn) = h2::client::handshake(s).await.unwrap();
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        send
    }

    /// A raw gRPC call with `body` as the request's bytes: the answer's status code.
    async fn raw_call(send: &mut h2::client::SendRequest<Bytes>, path: &str, body: &[u8]) -> u32 {
        let request = http::Request::post(format!("http://x{path}"))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (response, mut stream) = send.send_request(request, false).unwrap();
        stream.send_data(Bytes::copy_from_slice(body), true).unwrap();
        let response = response.await.unwrap();
        let code = |h: &HeaderMap| h.get("grpc-status").map(|c| c.to_str().unwrap().parse());
        if let Some(c) = code(response.headers()) {
            return c.unwrap();
        }
        let mut body = response.into_body();
        while let Some(d) = body.data().await {
            let _ = d.unwrap();
        }
        code(&body.trailers().await.unwrap().unwrap()).unwrap().unwrap()
    }

    fn local(f: impl Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    #[test]
    fn unary_kv_calls_are_answered_on_the_short_path_with_header_and_status() {
        local(async {
            let (port, _stop, _task) = server(axum::Router::new()).await;
            let mut kv = KVClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
            let put = pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: b"v".to_vec().into(),
                ..Default::default()
            };
            let out = kv.put(put).await.unwrap().into_inner();
            let h = out.header.unwrap();
            assert_eq!((h.revision, h.raft_term, h.member_id), (8, 2, 1), "{h:?}");
            let range = pb::RangeRequest { key: Bytes::from_static(b"four"), ..Default::default() };
            let out = kv.range(range).await.unwrap().into_inner();
            assert_eq!((out.count, out.header.unwrap().revision), (4, 7));
            // A refusal: status and message come back as the driver gave them.
            let fail = pb::RangeRequest { key: Bytes::from_static(b"fail"), ..Default::default() };
            let e = kv.range(fail).await.unwrap_err();
            assert_eq!(
                (e.code(), e.message()),
                (tonic::Code::Unavailable, "etcdserver: no leader")
            );
        });
    }

    #[test]
    fn oversize_and_malformed_unary_requests_are_refused_and_the_connection_serves_on() {
        local(async {
            let (port, _stop, _task) = server(axum::Router::new()).await;
            let mut kv = KVClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
            let big = pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: vec![7; 2 << 20].into(),
                ..Default::default()
            };
            let e = kv.put(big).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
            assert!(e.message().contains("the limit is: 1048576 bytes"), "{e:?}");
            let small = pb::PutRequest { key: Bytes::from_static(b"k"), ..Default::default() };
            kv.put(small).await.expect("the same connection serves on");

            let mut send = h2_client(port).await;
            let range = "/etcdserverpb.KV/Range";
            assert_eq!(raw_call(&mut send, range, &[1, 0, 0, 0, 0]).await, 12, "compressed");
            assert_eq!(raw_call(&mut send, range, &[0, 0, 0, 0, 3, 8]).await, 13, "cut short");
            assert_eq!(raw_call(&mut send, range, &[0, 0, 0]).await, 13, "no message");
            // A field of the wrong wire type: not protobuf for a RangeRequest.
            assert_eq!(raw_call(&mut send, range, &[0, 0, 0, 0, 2, 0x0a, 0x05]).await, 13);
            let ok =
                framed(&pb::RangeRequest { key: Bytes::from_static(b"xy"), ..Default::default() });
            assert_eq!(raw_call(&mut send, range, &ok).await, 0);
        });
    }

    /// A stream body whose one chunk is followed by nothing, ever, and that records being
    /// dropped.
    struct Endless {
        sent: bool,
        _dropped: Guard,
    }

    impl futures_core::Stream for Endless {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if std::mem::replace(&mut self.sent, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Bytes::from_static(b"first"))))
            }
        }
    }

    /// Records being dropped.
    struct Guard(Arc<AtomicBool>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    async fn until_set(flag: &AtomicBool, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !flag.load(Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A call the client resets is dropped at once, whether it had answered nothing yet (a
    /// Lock waiting in line) or is streaming its answer (a Watch).
    #[test]
    fn a_call_the_client_resets_is_dropped_before_or_while_it_answers() {
        local(async {
            let waiting = Arc::new(AtomicBool::new(false));
            let streaming = Arc::new(AtomicBool::new(false));
            let (w, s) = (waiting.clone(), streaming.clone());
            let router = axum::Router::new()
                .route(
                    "/wait",
                    axum::routing::post(move || {
                        let guard = Guard(w.clone());
                        async move {
                            std::future::pending::<()>().await;
                            drop(guard);
                        }
                    }),
                )
                .route(
                    "/stream",
                    axum::routing::post(move || {
                        let body = Endless { sent: false, _dropped: Guard(s.clone()) };
                        async move { axum::body::Body::from_stream(body) }
                    }),
                );
            let (port, _stop, _task) = server(router).await;
            let mut send = h2_client(port).await;
            let request = http::Request::post("http://x/wait").body(()).unwrap();
            let (_response, mut waiter) = send.send_request(request, true).unwrap();
            let request = http::Request::post("http://x/stream").body(()).unwrap();
            let (response, mut streamer) = send.send_request(request, true).unwrap();
            let mut body = response.await.unwrap().into_body();
            assert_eq!(body.data().await.unwrap().unwrap(), "first");
            let dropped = || (waiting.load(Ordering::SeqCst), streaming.load(Ordering::SeqCst));
            assert_eq!(dropped(), (false, false), "both calls are still wanted");
            waiter.send_reset(h2::Reason::CANCEL);
            until_set(&waiting, "the waiting call is dropped").await;
            assert_eq!(dropped(), (true, false), "the other call is still wanted");
            streamer.send_reset(h2::Reason::CANCEL);
            until_set(&streaming, "the streaming call is dropped").await;
        });
    }

    #[test]
    fn a_stop_lets_calls_in_flight_finish_and_then_closes_the_connection() {
        local(async {
            let release = Arc::new(tokio::sync::Notify::new());
            let r = release.clone();
            let router = axum::Router::new().route(
                "/slow",
                axum::routing::post(move || {
                    let r = r.clone();
                    async move {
                        r.notified().await;
                        "done"
                    }
                }),
            );
            let (port, stop, task) = server(router).await;
            let mut send = h2_client(port).await;
            let request = http::Request::post("http://x/slow").body(()).unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            let response = tokio::task::spawn_local(response);
            // The call is in the server's hands before the stop.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.send(true).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!task.is_finished(), "a call in flight holds the connection open");
            release.notify_one();
            let mut body = response.await.unwrap().unwrap().into_body();
            assert_eq!(body.data().await.unwrap().unwrap(), "done");
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the connection closes once its calls are done")
                .unwrap();
        });
    }

    #[test]
    fn http1_and_http2_are_told_apart_by_their_first_bytes() {
        local(async {
            use tokio::io::AsyncWriteExt;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            for (sent, expected) in [
                (&b"GET /health HTTP/1.1\r\n"[..], Protocol::Other),
                (&b"POST /v3/kv/put HTTP/1.1\r\n"[..], Protocol::Other),
                (PREFACE, Protocol::H2c),
                (&b"P"[..], Protocol::H2c),  // the rest comes later
                (&b""[..], Protocol::Other), // closed at once
            ] {
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (s, _) = listener.accept().await.unwrap();
                c.write_all(sent).await.unwrap();
                let told = tokio::task::spawn_local(async move { protocol(&s).await });
                tokio::time::sleep(Duration::from_millis(20)).await;
                match sent {
                    b"P" => c.write_all(&PREFACE[1..]).await.unwrap(),
                    b"" => drop(c),
                    _ => {}
                }
                assert_eq!(told.await.unwrap(), expected, "{:?}", String::from_utf8_lossy(sent));
            }
        });
    }
}
