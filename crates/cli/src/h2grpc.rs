//! Unary gRPC calls straight over an `h2` connection: the load generator's path to plaintext
//! endpoints.
//!
//! Why not tonic here: a tonic `Channel` hands each request to a buffer task and hyper's
//! dispatcher before h2 sees it, a few task wake-ups and allocations per call. On a
//! two-core machine the generator shares the cores with the cluster it measures, so what it
//! spends is taken from the system under test: at 256 clients tonic's client used 17.5-17.9
//! µs of CPU per put, this one 10.9-11.8 (docs/benchmarks.md, "Newest run"). A unary call
//! needs little of that machinery: one HEADERS frame, one DATA
//! frame holding the 5-byte gRPC prefix and the message, and the answer's DATA and trailers.
//! The rest of the CLI, and the bench over TLS, use tonic.

use bytes::{Buf, Bytes, BytesMut};
use http::uri::{Authority, Scheme};

/// One HTTP/2 connection; cloned per client (clones share the connection).
#[derive(Clone)]
pub struct Conn {
    send: h2::client::SendRequest<Bytes>,
    authority: Authority,
}

/// A call's failure: the gRPC status code (2, UNKNOWN, when the transport failed) and why.
#[derive(Debug)]
pub struct CallError {
    /// The gRPC status code.
    pub code: u32,
    /// The message.
    pub message: String,
}

impl CallError {
    fn transport(e: impl std::fmt::Display) -> CallError {
        CallError { code: 2, message: e.to_string() }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gRPC status {}: {}", self.code, self.message)
    }
}

/// Connects to `ep` (`http://host:port`) and starts the connection's task on the current
/// runtime.
pub async fn connect(ep: &str) -> Result<Conn, String> {
    let uri: http::Uri = ep.parse().map_err(|e| format!("{ep}: {e}"))?;
    if uri.scheme() != Some(&Scheme::HTTP) {
        return Err(format!("{ep}: only http:// endpoints are served here"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("{ep}: no host:port"))?;
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("{ep}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("{ep}: {e}"))?;
    let (send, connection) = h2::client::Builder::new()
        // Windows large enough that flow control never holds a small call back.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| format!("{ep}: HTTP/2 handshake: {e}"))?;
    tokio::spawn(async move {
        // Ends when every clone of `send` is dropped or the server closes the connection;
        // the calls in flight then fail and are counted as errors.
        let _ = connection.await;
    });
    Ok(Conn { send, authority })
}

impl Conn {
    /// Calls `path` (`/package.Service/Method`) with `msg`, adding etcd's `token` metadata
    /// when given; decodes the answer as `R`.
    pub async fn unary<R: prost::Message + Default>(
        &self,
        path: &'static str,
        msg: &impl prost::Message,
        token: Option<&str>,
    ) -> Result<R, CallError> {
        let uri = http::Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(CallError::transport)?;
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        if let Some(t) = token {
            request = request.header("token", t);
        }
        let request = request.body(()).map_err(CallError::transport)?;
        let body = flotilla_server::h2c::framed(msg);

        let mut send = self.send.clone().ready().await.map_err(CallError::transport)?;
        let (response, mut stream) =
            send.send_request(request, false).map_err(CallError::transport)?;
        stream.send_data(body, true).map_err(CallError::transport)?;
        let response = response.await.map_err(CallError::transport)?;
        // A refusal may come as headers alone ("trailers-only").
        status(response.headers())?;
        let mut body = response.into_body();
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(CallError::transport)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        match body.trailers().await.map_err(CallError::transport)? {
            Some(trailers) => status(&trailers)?,
            None => return Err(CallError::transport("the answer has no gRPC status")),
        }
        decode(data.freeze())
    }
}

/// The call's outcome from its `grpc-status` (absent: not decided here, for headers).
fn status(h: &http::HeaderMap) -> Result<(), CallError> {
    let Some(code) = h.get("grpc-status") else { return Ok(()) };
    let code: u32 = code.to_str().ok().and_then(|c| c.parse().ok()).unwrap_or(2);
    if code == 0 {
        return Ok(());
    }
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decoded)
        .unwrap_or_default();
    Err(CallError { code, message })
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decoded(m: &str) -> String {
    let b = m.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One length-prefixed message (the gRPC framing) decoded as `R`.
fn decode<R: prost::Message + Default>(mut data: Bytes) -> Result<R, CallError> {
    if data.len() < 5 {
        return Err(CallError::transport("the answer holds no message"));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 || data.len() != len {
        return Err(CallError::transport(format!(
            "the answer's framing: compressed {compressed}, {len} bytes announced, {} sent",
            data.len()
        )));
    }
    R::decode(data).map_err(CallError::transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_percent_decoded_and_framing_is_checked() {
        assert_eq!(percent_decoded("etcdserver%3A no leader%"), "etcdserver: no leader%");
        let ok = Bytes::from_static(&[0, 0, 0, 0, 0]);
        let r: flotilla_server::pb::PutResponse = decode(ok).expect("one (empty) message");
        assert_eq!(r, flotilla_server::pb::PutResponse::default());
        for bad in [&[0, 0, 0, 0, 3, 0x08][..], &[1, 0, 0, 0, 0][..], &[0, 0][..]] {
            assert!(
                decode::<flotilla_server::pb::PutResponse>(Bytes::copy_from_slice(bad)).is_err()
            );
        }
    }
}
