//! etcd's v3 gRPC services over the driver: each call becomes one [`Request`] and waits for
//! its answer. Errors carry etcd's messages and status codes, which clients match on.

// `tonic::Status` is the error type of every gRPC handler; boxing it here would only be undone.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::{Request as GrpcRequest, Response, Status};

use crate::auth::{AuthError, SharedAuth};
use crate::config::ServerConfig;
use crate::driver::{ApiError, Header, Inbox, Input, MemberEntry, Request, StatusInfo};
use crate::mvcc::{Applied, MvccError};
use crate::pb;
use crate::watch::WatchInput;

/// The shared state of the services.
#[derive(Clone, Debug)]
pub struct Api {
    tx: Inbox,
    cluster_id: u64,
    member_id: u64,
    config: Arc<ServerConfig>,
    /// The last watch stream id given out.
    watch_streams: Arc<std::sync::atomic::AtomicU64>,
    /// Users, roles and tokens (the driver applies changes to them).
    pub(crate) auth: SharedAuth,
}

pub(crate) fn auth_status(e: AuthError) -> Status {
    Status::new(e.code(), e.to_string())
}

/// How long an unknown token waits for this member to catch up before it is refused.
const TOKEN_CATCH_UP: Duration = Duration::from_secs(2);

/// Who a request says it is made by: its token, or the common name of its verified client
/// certificate (read only when auth is on and there is no token).
#[derive(Debug)]
pub(crate) struct Credentials {
    token: Option<String>,
    cert_name: Option<String>,
}

/// The token a request carries (etcd's clients send it as `token` metadata; etcd also reads
/// `authorization`, which its gateway's clients use).
fn token_of<T>(r: &GrpcRequest<T>) -> Option<&str> {
    let m = r.metadata();
    m.get("token").or_else(|| m.get("authorization")).and_then(|v| v.to_str().ok())
}

/// The common name of the certificate the client presented, if the TLS handshake verified
/// one (`--client-cert-auth`): etcd's identity for requests without a token.
fn certificate_name<T>(r: &GrpcRequest<T>) -> Option<String> {
    crate::config::common_name(r.peer_certs()?.first()?.as_ref())
}

fn status_of(e: ApiError) -> Status {
    match e {
        ApiError::Mvcc(MvccError::Compacted | MvccError::FutureRevision) => {
            Status::out_of_range(format!("etcdserver: {e}"))
        }
        ApiError::Mvcc(
            MvccError::KeyNotFound
            | MvccError::DuplicateKey
            | MvccError::LeaseProvided
            | MvccError::Invalid(_),
        ) => Status::invalid_argument(e.to_string()),
        ApiError::Mvcc(MvccError::LeaseExists) => Status::failed_precondition(e.to_string()),
        ApiError::LeaseTtlTooLarge => Status::out_of_range(e.to_string()),
        ApiError::Mvcc(MvccError::LeaseNotFound) => Status::not_found(e.to_string()),
        ApiError::NoLeader | ApiError::LeaderChanged | ApiError::Timeout | ApiError::Stopped => {
            Status::unavailable(e.to_string())
        }
        ApiError::Storage(_) => Status::internal(e.to_string()),
        ApiError::Transfer(_) => Status::failed_precondition(e.to_string()),
        ApiError::MemberNotFound => Status::not_found(e.to_string()),
        ApiError::Auth(a) => Status::new(a.code(), a.to_string()),
    }
}

impl Api {
    /// Services for `config`, sending to the driver through `tx`.
    pub fn new(config: Arc<ServerConfig>, tx: Inbox, auth: SharedAuth) -> Api {
        Api {
            tx,
            cluster_id: config.cluster_id,
            member_id: config.id().0,
            config,
            watch_streams: Arc::default(),
            auth,
        }
    }

    /// What request `r` carries to say who makes it, taken out of it (so that a handler
    /// may wait on [`Api::resolve`] without holding the request).
    fn credentials<T>(&self, r: &GrpcRequest<T>) -> Credentials {
        let token = token_of(r).map(str::to_string);
        // The certificate is parsed only when auth is on and there is no token.
        let cert_name = match token.is_none() && self.auth.lock().store.enabled() {
            true => certificate_name(r),
            false => None,
        };
        Credentials { token, cert_name }
    }

    /// Who makes a request: `None` while auth is disabled; with auth enabled, the user of
    /// its token, else the common name of its verified client certificate (as etcd), or an
    /// error if it has neither or an invalid token. A token another member gave out
    /// (Authenticate goes through the log) is known here once this member applied it: an
    /// unknown token makes this member catch up first (a linearizable read, ReadIndex,
    /// Thesis §6.4) and look again, so that a client may use a token at any member as soon
    /// as it has it.
    async fn resolve(&self, c: Credentials) -> Result<Option<String>, Status> {
        let Credentials { token, cert_name } = c;
        match self.auth.caller(token.as_deref(), || cert_name) {
            // A simple token may have been made by an entry not applied here yet; a JSON
            // Web Token is checked by its signature alone, so waiting would not change it.
            Err(AuthError::InvalidToken) if self.auth.lock().jwt.is_none() => {}
            other => return other.map_err(auth_status),
        }
        // Bounded: without a leader the answer is the same, only later.
        let _ = tokio::time::timeout(TOKEN_CATCH_UP, self.call(Request::LeaseLeases)).await;
        self.auth.caller(token.as_deref(), || None).map_err(auth_status)
    }

    /// [`Api::resolve`] for `r` (whose message must be `Sync`: streams take
    /// [`Api::credentials`] first).
    pub(crate) async fn caller<T: Sync>(
        &self,
        r: &GrpcRequest<T>,
    ) -> Result<Option<String>, Status> {
        let c = self.credentials(r);
        self.resolve(c).await
    }

    /// Refuses `r` unless auth is disabled or it is made by a user with the root role
    /// (etcd's admin-only operations).
    async fn require_root<T: Sync>(&self, r: &GrpcRequest<T>) -> Result<(), Status> {
        match self.caller(r).await? {
            Some(u) if !self.auth.lock().store.is_root(&u) => {
                Err(auth_status(AuthError::PermissionDenied))
            }
            _ => Ok(()),
        }
    }

    fn send(&self, input: Input) -> Result<(), Status> {
        self.tx.send(input).map_err(|_| status_of(ApiError::Stopped))
    }

    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(T, Header), ApiError>>) -> Request,
    ) -> Result<(T, pb::ResponseHeader), Status> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::Client(make(tx)))?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(Ok((v, h)))) => Ok((v, self.header(h))),
            Ok(Ok(Err(e))) => Err(status_of(e)),
            Ok(Err(_)) => Err(status_of(ApiError::Stopped)),
            Err(_) => Err(status_of(ApiError::Timeout)),
        }
    }

    fn header(&self, h: Header) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: h.revision,
            raft_term: h.term,
        }
    }

    /// A range read as `user` (checked against its permissions first): linearizable unless
    /// it asks to be serializable.
    pub(crate) async fn range_as(
        &self,
        user: &Option<String>,
        r: pb::RangeRequest,
    ) -> Result<pb::RangeResponse, Status> {
        if let Some(u) = user {
            self.auth.lock().store.check_range(u, &r).map_err(auth_status)?;
        }
        let (mut out, header) = self.call(|tx| Request::Range(r, tx)).await?;
        out.header = Some(header);
        Ok(out)
    }

    /// A write through the log, made for `user` (`None`: auth disabled). Checked here
    /// against this member's auth store, and again where it is applied.
    pub(crate) async fn write(
        &self,
        w: pb::internal_request::Request,
        user: Option<String>,
    ) -> Result<(Applied, pb::ResponseHeader), Status> {
        if let Some(u) = &user {
            self.auth.lock().store.check(u, &w).map_err(auth_status)?;
        }
        self.call(|tx| Request::Write(w, user, tx)).await
    }

    /// The node's state.
    pub async fn status_info(&self) -> Result<StatusInfo, Status> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::Client(Request::Status(tx)))?;
        rx.await.map_err(|_| status_of(ApiError::Stopped))
    }
}

pub(crate) fn unexpected() -> Status {
    Status::internal("driver answered with another kind of result")
}

/// A write through the log (`$variant` of both the request and the result) for `$user`,
/// answered with its response and header.
macro_rules! written {
    ($api:expr, $variant:ident, $req:expr, $user:expr) => {
        match $api.write(pb::internal_request::Request::$variant($req), $user).await? {
            (Applied::$variant(mut out), h) => {
                out.header = Some(h);
                Ok::<_, Status>(out)
            }
            _ => Err(unexpected()),
        }
    };
}

#[tonic::async_trait]
impl crate::rpc::k_v_server::KV for Api {
    async fn range(
        &self,
        r: GrpcRequest<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let user = self.caller(&r).await?;
        Ok(Response::new(self.range_as(&user, r.into_inner()).await?))
    }

    async fn put(
        &self,
        r: GrpcRequest<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let user = self.caller(&r).await?;
        Ok(Response::new(written!(self, Put, r.into_inner(), user)?))
    }

    async fn delete_range(
        &self,
        r: GrpcRequest<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let user = self.caller(&r).await?;
        Ok(Response::new(written!(self, DeleteRange, r.into_inner(), user)?))
    }

    async fn txn(
        &self,
        r: GrpcRequest<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let user = self.caller(&r).await?;
        let mut out = written!(self, Txn, r.into_inner(), user)?;
        if let Some(h) = out.header.clone() {
            fill_headers(&mut out, &h);
        }
        Ok(Response::new(out))
    }

    async fn compact(
        &self,
        r: GrpcRequest<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let user = self.caller(&r).await?;
        Ok(Response::new(written!(self, Compaction, r.into_inner(), user)?))
    }
}

/// etcd fills the header of every response inside a txn.
fn fill_headers(t: &mut pb::TxnResponse, h: &pb::ResponseHeader) {
    use pb::response_op::Response as R;
    for r in &mut t.responses {
        match &mut r.response {
            Some(R::ResponseRange(x)) => x.header = Some(h.clone()),
            Some(R::ResponsePut(x)) => x.header = Some(h.clone()),
            Some(R::ResponseDeleteRange(x)) => x.header = Some(h.clone()),
            Some(R::ResponseTxn(x)) => {
                fill_headers(x, h);
                x.header = Some(h.clone());
            }
            None => {}
        }
    }
}

impl Api {
    async fn member_op(
        &self,
        change: pb::MemberChange,
    ) -> Result<(Vec<pb::Member>, pb::ResponseHeader), Status> {
        let (entries, header) = self.call(|tx| Request::Member(change, tx)).await?;
        Ok((entries.into_iter().map(|e| self.member(e)).collect(), header))
    }

    fn member(&self, e: MemberEntry) -> pb::Member {
        let client_urls = if e.id == self.member_id {
            self.config.advertise_client_urls.clone()
        } else if e.client_url.is_empty() {
            vec![]
        } else {
            e.client_url.split(',').map(str::to_string).collect()
        };
        pb::Member {
            id: e.id,
            name: e.name,
            peer_urls: vec![e.peer_url],
            client_urls,
            is_learner: e.is_learner,
        }
    }
}

#[tonic::async_trait]
impl crate::rpc::cluster_server::Cluster for Api {
    async fn member_add(
        &self,
        r: GrpcRequest<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.require_root(&r).await?;
        let r = r.into_inner();
        let [url] = r.peer_urls.as_slice() else {
            return Err(Status::invalid_argument("etcdserver: give exactly one peer URL"));
        };
        let change = pb::MemberChange {
            kind: if r.is_learner { 2 } else { 1 },
            id: 0,
            peer_url: url.clone(),
            ..Default::default()
        };
        let (members, header) = self.member_op(change).await?;
        let member = members.iter().find(|m| m.peer_urls.first() == Some(url)).cloned();
        Ok(Response::new(pb::MemberAddResponse { header: Some(header), member, members }))
    }

    async fn member_remove(
        &self,
        r: GrpcRequest<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.require_root(&r).await?;
        let change = pb::MemberChange { kind: 4, id: r.into_inner().id, ..Default::default() };
        let (members, header) = self.member_op(change).await?;
        Ok(Response::new(pb::MemberRemoveResponse { header: Some(header), members }))
    }

    async fn member_promote(
        &self,
        r: GrpcRequest<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.require_root(&r).await?;
        let change = pb::MemberChange { kind: 3, id: r.into_inner().id, ..Default::default() };
        let (members, header) = self.member_op(change).await?;
        Ok(Response::new(pb::MemberPromoteResponse { header: Some(header), members }))
    }

    async fn member_update(
        &self,
        r: GrpcRequest<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.require_root(&r).await?;
        let r = r.into_inner();
        let [url] = r.peer_urls.as_slice() else {
            return Err(Status::invalid_argument("etcdserver: give exactly one peer URL"));
        };
        let change =
            pb::MemberChange { kind: 5, id: r.id, peer_url: url.clone(), ..Default::default() };
        let (members, header) = self.member_op(change).await?;
        Ok(Response::new(pb::MemberUpdateResponse { header: Some(header), members }))
    }

    async fn member_list(
        &self,
        _r: GrpcRequest<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let st = self.status_info().await?;
        let members = st.members.into_iter().map(|e| self.member(e)).collect();
        let header = self.header(Header { revision: st.revision, term: st.term });
        Ok(Response::new(pb::MemberListResponse { header: Some(header), members }))
    }
}

/// A finished list of responses as the stream tonic sends.
#[derive(Debug)]
pub struct Chunks(std::collections::VecDeque<pb::SnapshotResponse>);

impl futures_core::Stream for Chunks {
    type Item = Result<pb::SnapshotResponse, Status>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tonic::async_trait]
impl crate::rpc::maintenance_server::Maintenance for Api {
    type SnapshotStream = Chunks;

    /// The member's whole state, streamed in 1 MiB chunks: its length (u64), the state,
    /// zeros to a multiple of 512 bytes, then the SHA-256 of all that (etcd's Snapshot
    /// stream shape; the state is Flotilla's encoding, not a bbolt file).
    async fn snapshot(
        &self,
        r: GrpcRequest<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.require_root(&r).await?;
        let (state, header) = self.call(Request::Snapshot).await?;
        // As etcd does, the stream ends with the SHA-256 of what precedes it, which clients
        // (etcdctl snapshot save) check.
        let data = bytes::Bytes::from(crate::driver::snapshot_stream(&state));
        let mut out = std::collections::VecDeque::new();
        let mut at = 0;
        loop {
            let end = (at + (1 << 20)).min(data.len());
            out.push_back(pb::SnapshotResponse {
                header: Some(header.clone()),
                remaining_bytes: (data.len() - end) as u64,
                blob: data.slice(at..end),
            });
            at = end;
            if at >= data.len() {
                break;
            }
        }
        Ok(Response::new(Chunks(out)))
    }

    /// This member's hash of its store up to a revision: members that applied the same
    /// log agree (`etcdctl endpoint hashkv` compares them).
    async fn hash_kv(
        &self,
        r: GrpcRequest<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.require_root(&r).await?;
        let rev = r.into_inner().revision;
        let ((hash, hash_revision, compact_revision), h) =
            self.call(|tx| Request::HashKv(rev, tx)).await?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(h),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    /// etcd's alarms. GET lists them as this member knows them (those recorded through the
    /// log, and its own storage failure), of one kind or (NONE) all; ACTIVATE and
    /// DEACTIVATE change them through the log, from any member (`etcdctl alarm disarm`).
    /// Unlike etcd, a NOSPACE alarm does not stop the cluster's writes: a member whose disk
    /// is full refuses writes by itself, and the others go on while they are a quorum.
    async fn alarm(
        &self,
        r: GrpcRequest<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::{alarm_action, alarm_type};
        self.require_root(&r).await?;
        let user = self.caller(&r).await?;
        let req = r.into_inner();
        let known = [alarm_type::NOSPACE, alarm_type::CORRUPT];
        match req.action {
            alarm_action::GET => {
                let (alarms, h) = self.call(Request::Alarms).await?;
                let alarms = alarms
                    .into_iter()
                    .filter(|a| req.alarm == alarm_type::NONE || a.alarm == req.alarm)
                    .collect();
                Ok(Response::new(pb::AlarmResponse { header: Some(h), alarms }))
            }
            alarm_action::ACTIVATE | alarm_action::DEACTIVATE if known.contains(&req.alarm) => {
                if req.member_id == 0 {
                    return Err(Status::invalid_argument("etcdserver: an alarm names a member"));
                }
                Ok(Response::new(written!(self, Alarm, req, user)?))
            }
            alarm_action::ACTIVATE | alarm_action::DEACTIVATE => {
                Err(Status::invalid_argument(format!("etcdserver: unknown alarm {}", req.alarm)))
            }
            other => {
                Err(Status::invalid_argument(format!("etcdserver: unknown alarm action {other}")))
            }
        }
    }

    /// This member's hash of its whole state (store and leases).
    async fn hash(
        &self,
        r: GrpcRequest<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.require_root(&r).await?;
        let (hash, h) = self.call(Request::Hash).await?;
        Ok(Response::new(pb::HashResponse { header: Some(h), hash }))
    }

    /// There is no database file to defragment: the store lives in memory and the WAL is
    /// append-only. What takes space on disk is the log since the last snapshot, so this
    /// member snapshots its applied state now and compacts its log up to it (deleting the
    /// WAL segments it covered), as etcd's defragment gives back a member's free pages. A
    /// follower that still lacked those entries is then sent the snapshot.
    async fn defragment(
        &self,
        r: GrpcRequest<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.require_root(&r).await?;
        let ((), h) = self.call(Request::Defragment).await?;
        Ok(Response::new(pb::DefragmentResponse { header: Some(h) }))
    }

    async fn status(
        &self,
        _r: GrpcRequest<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let st = self.status_info().await?;
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.header(Header { revision: st.revision, term: st.term })),
            version: crate::metrics::VERSION.to_string(),
            db_size: st.db_size,
            leader: st.leader,
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: st.applied,
            errors: st.error.into_iter().collect(),
            db_size_in_use: st.db_size,
            is_learner: st.is_learner,
        }))
    }

    async fn move_leader(
        &self,
        r: GrpcRequest<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.require_root(&r).await?;
        let target = flotilla_raft::NodeId(r.into_inner().target_id);
        let (tx, rx) = oneshot::channel();
        self.send(Input::Client(Request::MoveLeader(target, tx)))?;
        rx.await.map_err(|_| status_of(ApiError::Stopped))?.map_err(status_of)?;
        let st = self.status_info().await?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.header(Header { revision: st.revision, term: st.term })),
        }))
    }
}

/// A watch stream's responses as tonic sends them: what the driver queued, with this
/// member's header. Dropped when the client goes away, which closes the stream's watchers.
#[derive(Debug)]
pub struct WatchOut {
    rx: tokio::sync::mpsc::UnboundedReceiver<(pb::WatchResponse, Header)>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    api: Api,
    stream: u64,
}

impl futures_core::Stream for WatchOut {
    type Item = Result<pb::WatchResponse, Status>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::sync::atomic::Ordering;
        use std::task::Poll;
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((mut r, h))) => {
                let before = self.queued.fetch_sub(1, Ordering::Relaxed);
                if before == crate::watch::QUEUE_LIMIT / 2 + 1 {
                    // Room again: watchers that fell behind replay more history.
                    let _ =
                        self.api.send(Input::Watch(WatchInput::Drained { stream: self.stream }));
                }
                r.header = Some(self.api.header(h));
                Poll::Ready(Some(Ok(r)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for WatchOut {
    fn drop(&mut self) {
        let _ = self.api.send(Input::Watch(WatchInput::Close { stream: self.stream }));
    }
}

#[tonic::async_trait]
impl crate::rpc::watch_server::Watch for Api {
    type WatchStream = WatchOut;

    /// etcd's Watch: one stream carries many watchers. Requests go to the driver as they
    /// arrive. As in etcd, a client that closes its side keeps receiving; the watchers end
    /// when the client goes away (the response stream is dropped) or the request stream
    /// fails.
    async fn watch(
        &self,
        r: GrpcRequest<tonic::Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let credentials = self.credentials(&r);
        let user = self.resolve(credentials).await?;
        Ok(Response::new(self.open_watch(user, WatchRequests::Grpc(Box::new(r.into_inner())))?))
    }
}

/// The requests of a watch stream: a gRPC client's, or those of a gateway call (its body).
pub(crate) enum WatchRequests {
    /// A gRPC stream.
    Grpc(Box<tonic::Streaming<pb::WatchRequest>>),
    /// Requests known at once, in order.
    Given(std::collections::VecDeque<pb::WatchRequest>),
}

impl WatchRequests {
    /// The next request; `Err` if the stream failed.
    async fn message(&mut self) -> Result<Option<pb::WatchRequest>, Status> {
        match self {
            WatchRequests::Grpc(s) => s.message().await,
            WatchRequests::Given(q) => Ok(q.pop_front()),
        }
    }
}

impl Api {
    /// One lease renewal for `user`, proposed again while the answer is that there is no
    /// leader (see `lease_keep_alive`).
    pub(crate) async fn renew(
        &self,
        req: pb::LeaseKeepAliveRequest,
        user: Option<String>,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let give_up = tokio::time::Instant::now() + RENEW_BUDGET;
        loop {
            let attempt = async { written!(self, LeaseKeepAlive, req.clone(), user.clone()) };
            let out = match tokio::time::timeout(RENEW_ATTEMPT, attempt).await {
                Ok(out) => out,
                Err(_) => Err(status_of(ApiError::Timeout)),
            };
            let retry = matches!(&out, Err(e) if e.code() == tonic::Code::Unavailable);
            if !retry || tokio::time::Instant::now() >= give_up {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The user a gateway call is made by (`token` is its Authorization header).
    pub(crate) async fn gateway_caller(
        &self,
        token: Option<&str>,
    ) -> Result<Option<String>, Status> {
        let token = token.map(str::to_string);
        self.resolve(Credentials { token, cert_name: None }).await
    }

    /// A watch stream for `user`, fed by `inbound`.
    pub(crate) fn open_watch(
        &self,
        user: Option<String>,
        mut inbound: WatchRequests,
    ) -> Result<WatchOut, Status> {
        use pb::watch_request::RequestUnion;
        use std::sync::atomic::Ordering;
        let stream = self.watch_streams.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (refusals, counted) = (tx.clone(), queued.clone());
        self.send(Input::Watch(WatchInput::Open { stream, tx, queued: queued.clone() }))?;
        let api = self.clone();
        tokio::spawn(async move {
            let mut failed = false;
            loop {
                let req = match inbound.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                };
                let input = match req.request_union {
                    Some(RequestUnion::CreateRequest(req)) => {
                        // A watcher on keys the user may not read is created and canceled at
                        // once, with the reason (as etcd).
                        let denied = user.as_ref().is_some_and(|u| {
                            let a = api.auth.lock();
                            a.store.enabled()
                                && !a.store.permitted(u, &req.key, &req.range_end, false)
                        });
                        if denied {
                            let refusal = pb::WatchResponse {
                                watch_id: req.watch_id,
                                created: true,
                                canceled: true,
                                cancel_reason: AuthError::PermissionDenied.to_string(),
                                ..Default::default()
                            };
                            counted.fetch_add(1, Ordering::Relaxed);
                            let _ = refusals.send((refusal, Header::default()));
                            continue;
                        }
                        WatchInput::Create { stream, req }
                    }
                    Some(RequestUnion::CancelRequest(c)) => {
                        WatchInput::Cancel { stream, watch_id: c.watch_id }
                    }
                    Some(RequestUnion::ProgressRequest(_)) => WatchInput::Progress { stream },
                    None => continue,
                };
                if api.send(Input::Watch(input)).is_err() {
                    return;
                }
            }
            if failed {
                let _ = api.send(Input::Watch(WatchInput::Close { stream }));
            }
        });
        Ok(WatchOut { rx, queued, api: self.clone(), stream })
    }
}

/// How long one lease renewal may wait for its answer before it is proposed again...
const RENEW_ATTEMPT: Duration = Duration::from_secs(1);
/// ... and for how long in all.
const RENEW_BUDGET: Duration = Duration::from_secs(7);

/// A stream of what a channel receives, for tonic: the responses of a streaming call, or
/// the requests a client sends on one, from a channel it keeps open for as long as it
/// streams.
///
/// ```no_run
/// # async fn demo(ch: tonic::transport::Channel) -> Result<(), tonic::Status> {
/// use flotilla_server::{api::Received, pb, rpc::watch_client::WatchClient};
/// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
/// let create = pb::WatchCreateRequest { key: "k".into(), ..Default::default() };
/// let req = pb::watch_request::RequestUnion::CreateRequest(create);
/// tx.send(pb::WatchRequest { request_union: Some(req) }).unwrap();
/// let mut responses = WatchClient::new(ch).watch(Received(rx)).await?.into_inner();
/// while let Some(r) = responses.message().await? {
///     println!("{} events", r.events.len());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Received<T>(pub tokio::sync::mpsc::UnboundedReceiver<T>);

impl<T> futures_core::Stream for Received<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tonic::async_trait]
impl crate::rpc::lease_server::Lease for Api {
    type LeaseKeepAliveStream = Received<Result<pb::LeaseKeepAliveResponse, Status>>;

    /// A lease, through the log. TTLs below 1.5 election timeouts are raised to that (as
    /// etcd does); an id of 0 lets the server choose.
    async fn lease_grant(
        &self,
        r: GrpcRequest<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let user = self.caller(&r).await?;
        Ok(Response::new(written!(self, LeaseGrant, r.into_inner(), user)?))
    }

    /// Revokes a lease and deletes its keys at one revision, through the log.
    async fn lease_revoke(
        &self,
        r: GrpcRequest<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let user = self.caller(&r).await?;
        Ok(Response::new(written!(self, LeaseRevoke, r.into_inner(), user)?))
    }

    /// Each renewal goes through the log, so that it reaches the leader (which alone
    /// revokes expired leases) from any member, and is ordered with revocations: a renewal
    /// answered with a TTL was applied before any revocation of that lease. A lease that is
    /// gone gets TTL 0. A renewal is idempotent, so one that gets no answer within a second
    /// (its leader died, say, and took the forwarded request with it) is proposed again, for
    /// up to the usual request timeout, as etcd retries a forwarded renewal with the new
    /// leader.
    async fn lease_keep_alive(
        &self,
        r: GrpcRequest<tonic::Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let credentials = self.credentials(&r);
        let user = self.resolve(credentials).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut inbound = r.into_inner();
        let api = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let out = api.renew(req, user.clone()).await;
                let failed = out.is_err();
                if tx.send(out).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Received(rx)))
    }

    async fn lease_time_to_live(
        &self,
        r: GrpcRequest<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.caller(&r).await?;
        let (mut out, header) =
            self.call(|tx| Request::LeaseTimeToLive(r.into_inner(), tx)).await?;
        out.header = Some(header);
        Ok(Response::new(out))
    }

    async fn lease_leases(
        &self,
        r: GrpcRequest<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.caller(&r).await?;
        let (mut out, header) = self.call(Request::LeaseLeases).await?;
        out.header = Some(header);
        Ok(Response::new(out))
    }
}

impl Api {
    /// A change of the auth store through the log, made for the caller of `r` (the member
    /// that applies it refuses it unless auth is disabled or the caller has the root role).
    async fn auth_change<T: Sync>(
        &self,
        r: &GrpcRequest<T>,
        op: pb::auth_change::Op,
    ) -> Result<(Option<String>, pb::ResponseHeader), Status> {
        let user = self.caller(r).await?;
        let change = pb::internal_request::Request::Auth(pb::AuthChange { op: Some(op) });
        match self.write(change, user).await? {
            (Applied::Auth(token), h) => Ok((token, h)),
            _ => Err(unexpected()),
        }
    }

    /// A header once this member has caught up with the cluster (a linearizable read, as
    /// etcd answers auth reads through its log): what it reads after this is current, so a
    /// user or role just changed at another member is seen.
    async fn caught_up_header(&self) -> Result<pb::ResponseHeader, Status> {
        Ok(self.call(Request::LeaseLeases).await?.1)
    }

    /// `password`'s bcrypt hash, made on the blocking pool (it takes tens of milliseconds
    /// by design, which the driver's thread must not spend).
    async fn hashed(password: String) -> Result<String, Status> {
        tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
            .await
            .map_err(|_| status_of(ApiError::Stopped))?
            .map_err(auth_status)
    }
}

/// An auth response with only a header.
macro_rules! auth_done {
    ($api:expr, $r:expr, $op:expr, $resp:ident) => {{
        let (_, h) = $api.auth_change(&$r, $op).await?;
        Ok(Response::new(pb::$resp { header: Some(h) }))
    }};
}

#[tonic::async_trait]
impl crate::rpc::auth_server::Auth for Api {
    /// Enables auth: refused unless user `root` exists with the `root` role.
    async fn auth_enable(
        &self,
        r: GrpcRequest<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        use pb::auth_change::Op;
        auth_done!(self, r, Op::Enable(pb::AuthEnableRequest {}), AuthEnableResponse)
    }

    async fn auth_disable(
        &self,
        r: GrpcRequest<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        use pb::auth_change::Op;
        auth_done!(self, r, Op::Disable(pb::AuthDisableRequest {}), AuthDisableResponse)
    }

    async fn auth_status(
        &self,
        _r: GrpcRequest<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let header = Some(self.caught_up_header().await?);
        let (enabled, auth_revision) = {
            let a = self.auth.lock();
            (a.store.enabled(), a.store.revision())
        };
        Ok(Response::new(pb::AuthStatusResponse { header, enabled, auth_revision }))
    }

    /// Checks the password here (off the driver's thread) once caught up with the cluster,
    /// then either replicates a new simple token so that every member accepts it, and
    /// answers with it once applied here, or (`--auth-token jwt`) signs a JSON Web Token.
    async fn authenticate(
        &self,
        r: GrpcRequest<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let req = r.get_ref().clone();
        let jwt = self.auth.lock().jwt.clone();
        // As etcd: this member first catches up with the cluster (a linearizable read), so
        // that it checks the password against the current store (a password just changed
        // at another member works at once) and a JSON Web Token, which carries the auth
        // revision it is made at, is not refused elsewhere as old.
        let (_, header) = self.call(Request::LeaseLeases).await?;
        let (hash, revision) = {
            let a = self.auth.lock();
            if !a.store.enabled() {
                return Err(auth_status(AuthError::NotEnabled));
            }
            (a.store.password_hash(&req.name).map(str::to_string), a.store.revision())
        };
        let hash = hash.ok_or_else(|| auth_status(AuthError::Failed))?;
        let password = req.password.clone();
        let ok =
            tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &hash))
                .await
                .map_err(|_| status_of(ApiError::Stopped))?;
        if !ok {
            return Err(auth_status(AuthError::Failed));
        }
        if let Some(jwt) = jwt {
            // Signed here, verified by any member: nothing to replicate.
            let token = jwt.sign(&req.name, revision).map_err(auth_status)?;
            return Ok(Response::new(pb::AuthenticateResponse { header: Some(header), token }));
        }
        let token = crate::auth::new_token().map_err(auth_status)?;
        let op = pb::auth_change::Op::Token(pb::AuthToken { name: req.name, token });
        // The caller has no token yet: the change is made for no user.
        let change = pb::internal_request::Request::Auth(pb::AuthChange { op: Some(op) });
        match self.write(change, None).await? {
            (Applied::Auth(Some(token)), h) => {
                Ok(Response::new(pb::AuthenticateResponse { header: Some(h), token }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn user_add(
        &self,
        r: GrpcRequest<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        self.require_root(&r).await?;
        let mut req = r.get_ref().clone();
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        if req.name.is_empty() {
            return Err(auth_status(AuthError::UserEmpty));
        }
        if no_password {
            req.hashed_password.clear();
        } else if req.hashed_password.is_empty() {
            if req.password.is_empty() {
                return Err(auth_status(AuthError::PasswordEmpty));
            }
            req.hashed_password = Self::hashed(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear(); // never in the log
        auth_done!(self, r, pb::auth_change::Op::UserAdd(req), AuthUserAddResponse)
    }

    /// A user's roles: for root, or for the user itself.
    async fn user_get(
        &self,
        r: GrpcRequest<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let caller = self.caller(&r).await?;
        let header = Some(self.caught_up_header().await?);
        let name = &r.get_ref().name;
        let roles = {
            let a = self.auth.lock();
            if caller.as_ref().is_some_and(|c| c != name && !a.store.is_root(c)) {
                return Err(auth_status(AuthError::PermissionDenied));
            }
            a.store.user_roles(name).map_err(auth_status)?
        };
        Ok(Response::new(pb::AuthUserGetResponse { header, roles }))
    }

    async fn user_list(
        &self,
        r: GrpcRequest<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        self.require_root(&r).await?;
        let header = Some(self.caught_up_header().await?);
        let users = self.auth.lock().store.users();
        Ok(Response::new(pb::AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        r: GrpcRequest<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let op = pb::auth_change::Op::UserDelete(r.get_ref().clone());
        auth_done!(self, r, op, AuthUserDeleteResponse)
    }

    async fn user_change_password(
        &self,
        r: GrpcRequest<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        self.require_root(&r).await?;
        let mut req = r.get_ref().clone();
        if req.hashed_password.is_empty() {
            if req.password.is_empty() {
                return Err(auth_status(AuthError::PasswordEmpty));
            }
            req.hashed_password = Self::hashed(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        let op = pb::auth_change::Op::UserChangePassword(req);
        auth_done!(self, r, op, AuthUserChangePasswordResponse)
    }

    async fn user_grant_role(
        &self,
        r: GrpcRequest<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let op = pb::auth_change::Op::UserGrantRole(r.get_ref().clone());
        auth_done!(self, r, op, AuthUserGrantRoleResponse)
    }

    async fn user_revoke_role(
        &self,
        r: GrpcRequest<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let op = pb::auth_change::Op::UserRevokeRole(r.get_ref().clone());
        auth_done!(self, r, op, AuthUserRevokeRoleResponse)
    }

    async fn role_add(
        &self,
        r: GrpcRequest<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let op = pb::auth_change::Op::RoleAdd(r.get_ref().clone());
        auth_done!(self, r, op, AuthRoleAddResponse)
    }

    /// A role's permissions: for root, or for a user that has the role.
    async fn role_get(
        &self,
        r: GrpcRequest<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let caller = self.caller(&r).await?;
        let header = Some(self.caught_up_header().await?);
        let role = &r.get_ref().role;
        let perm = {
            let a = self.auth.lock();
            if let Some(c) = &caller {
                let has = a.store.user_roles(c).is_ok_and(|rs| rs.contains(role));
                if !has && !a.store.is_root(c) {
                    return Err(auth_status(AuthError::PermissionDenied));
                }
            }
            a.store.role_permissions(role).map_err(auth_status)?
        };
        Ok(Response::new(pb::AuthRoleGetResponse { header, perm }))
    }

    async fn role_list(
        &self,
        r: GrpcRequest<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        self.require_root(&r).await?;
        let header = Some(self.caught_up_header().await?);
        let roles = self.auth.lock().store.roles();
        Ok(Response::new(pb::AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        r: GrpcRequest<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let op = pb::auth_change::Op::RoleDelete(r.get_ref().clone());
        auth_done!(self, r, op, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        r: GrpcRequest<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let op = pb::auth_change::Op::RoleGrantPermission(r.get_ref().clone());
        auth_done!(self, r, op, AuthRoleGrantPermissionResponse)
    }

    async fn role_revoke_permission(
        &self,
        r: GrpcRequest<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let op = pb::auth_change::Op::RoleRevokePermission(r.get_ref().clone());
        auth_done!(self, r, op, AuthRoleRevokePermissionResponse)
    }
}
