//! etcd's concurrency services, as etcd's server makes them from keys: Lock
//! (`v3lockpb.Lock`) and Election (`v3electionpb.Election`), for etcd's gRPC clients and
//! its gateway (`/v3/lock/...`, `/v3/election/...`).
//!
//! Both queue under `name/`: `Lock(name, lease)` and `Campaign(name, lease, value)` put the
//! key `name/<lease in hex>` (attached to the lease, created once: a second call with the
//! same lease finds it), then wait until no key under `name/` was created before it. The
//! head of the queue (the key with the lowest create revision) holds the lock or leads;
//! each waiter watches only the key just before its own, so a release wakes one waiter.
//! `Unlock(key)` and `Resign(leader)` delete the key, and so does the lease's end (a holder
//! that dies lets go when its lease expires). Without a lease, one of 60 seconds is granted
//! (etcd's session default), which nobody renews. A leader changes its value with
//! `Proclaim` (refused once it no longer leads); `Leader` reads the head of the queue and
//! `Observe` streams it each time it or its value changes.
//!
//! A client that goes away while waiting takes its key with it, as etcd's does: the key is
//! deleted, so the waiters behind it are not stuck behind a lock nobody will take.
//!
//! Each step is an ordinary request made as the caller (its token or certificate), so the
//! same permissions apply as if the client had made them itself.

use std::collections::VecDeque;

use bytes::Bytes;
use tonic::{Request as GrpcRequest, Response, Status};

use crate::api::{unexpected, Api, WatchRequests};
use crate::mvcc::{prefix_end, Applied};
use crate::pb;

/// etcd's session TTL, for a Lock or Campaign without a lease.
const DEFAULT_TTL: i64 = 60;

/// The read of the head of a queue: the key under `prefix` created first.
fn first_created(prefix: &Bytes) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: 1,  // ascending
        sort_target: 2, // create revision
        ..Default::default()
    }
}

fn range_op(r: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(r)) }
}

fn range_response(r: Option<&pb::ResponseOp>) -> Option<&pb::RangeResponse> {
    match r.and_then(|r| r.response.as_ref()) {
        Some(pb::response_op::Response::ResponseRange(r)) => Some(r),
        _ => None,
    }
}

/// Deletes a waiter's key unless disarmed: dropped with the call of a client that went
/// away, it releases the place in the queue.
struct Queued {
    api: Api,
    key: Option<Bytes>,
    user: Option<String>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        // Outside a runtime (the server is going away) there is nobody to ask: the key
        // goes with its lease.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if let Some(key) = self.key.take() {
            let (api, user) = (self.api.clone(), self.user.take());
            runtime.spawn(async move {
                let del = pb::DeleteRangeRequest { key, ..Default::default() };
                let del = pb::internal_request::Request::DeleteRange(del);
                if let Err(e) = api.write(del, user).await {
                    tracing::warn!(error = %e, "could not delete an abandoned lock key");
                }
            });
        }
    }
}

impl Api {
    /// Waits for the first event on `key` (up to `range_end`, if a range) after revision
    /// `after` that `wanted` accepts. A watch cancelled because `after` was compacted ends
    /// the wait too: the caller looks at the store again.
    async fn watch_for(
        &self,
        user: &Option<String>,
        key: Bytes,
        range_end: Bytes,
        after: i64,
        wanted: impl Fn(&pb::Event) -> bool,
    ) -> Result<(), Status> {
        use pb::watch_request::RequestUnion;
        let start_revision = after + 1;
        let create =
            pb::WatchCreateRequest { key, range_end, start_revision, ..Default::default() };
        let req = pb::WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        let mut out = self.open_watch(user.clone(), WatchRequests::Given(VecDeque::from([req])))?;
        loop {
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut out), cx)
            });
            match next.await {
                Some(Ok(r)) if r.canceled => {
                    if r.compact_revision > 0 {
                        return Ok(());
                    }
                    return Err(Status::permission_denied(r.cancel_reason));
                }
                Some(Ok(r)) if r.events.iter().any(&wanted) => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(Status::unavailable("etcdserver: server stopped")),
            }
        }
    }

    /// Waits until `key` is deleted after revision `after`.
    async fn deleted(&self, user: &Option<String>, key: Bytes, after: i64) -> Result<(), Status> {
        self.watch_for(user, key, Bytes::new(), after, |e| e.r#type == 1).await
    }

    /// Waits until anything under `prefix` changes after revision `after`.
    async fn changed(
        &self,
        user: &Option<String>,
        prefix: Bytes,
        after: i64,
    ) -> Result<(), Status> {
        let end = prefix_end(&prefix);
        self.watch_for(user, prefix, end, after, |_| true).await
    }
}

/// A place in the queue of `name/`: the key, its create revision, and the header of the
/// read that found it at the head.
struct Held {
    key: Bytes,
    rev: i64,
    header: pb::ResponseHeader,
}

impl Api {
    /// Grants etcd's session lease (60 s, renewed by nobody) when `lease` is 0.
    async fn session_lease(&self, user: &Option<String>, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = pb::LeaseGrantRequest { ttl: DEFAULT_TTL, id: 0 };
        match self.write(pb::internal_request::Request::LeaseGrant(grant), user.clone()).await? {
            (Applied::LeaseGrant(g), _) => Ok(g.id),
            _ => Err(unexpected()),
        }
    }

    /// Joins the queue under `name/` with the key `name/<lease hex>` holding `value`
    /// (the existing key of that lease if any, its value set to `value`), and waits until it
    /// heads the queue: every key created before it is gone. If the wait ends otherwise
    /// (an error, or the client went away and the call was dropped), the key is deleted.
    async fn head_of_queue(
        &self,
        user: &Option<String>,
        name: &[u8],
        lease: i64,
        value: Bytes,
    ) -> Result<Held, Status> {
        let prefix: Bytes = [name, b"/"].concat().into();
        let key: Bytes = [&prefix[..], format!("{lease:x}").as_bytes()].concat().into();
        let end = prefix_end(&prefix);
        let first = first_created(&prefix);
        let put =
            pb::PutRequest { key: key.clone(), value: value.clone(), lease, ..Default::default() };
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: 0, // equal
                target: 1, // create revision
                key: key.clone(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                range_end: Bytes::new(),
            }],
            success: vec![
                pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put.clone())) },
                range_op(first.clone()),
            ],
            failure: vec![
                range_op(pb::RangeRequest { key: key.clone(), ..Default::default() }),
                range_op(first),
            ],
        };
        let txn = pb::internal_request::Request::Txn(txn);
        let (out, mut header) = match self.write(txn, user.clone()).await? {
            (Applied::Txn(out), h) => (out, h),
            _ => return Err(unexpected()),
        };
        let rev = match out.succeeded {
            true => header.revision,
            false => {
                let kv = range_response(out.responses.first()).and_then(|r| r.kvs.first());
                let kv = kv.ok_or_else(unexpected)?;
                if kv.value != value {
                    // etcd's Campaign again with a new value proclaims it.
                    self.write(pb::internal_request::Request::Put(put), user.clone()).await?;
                }
                kv.create_revision
            }
        };
        // From here the key is ours: if the client goes away before we answer, it goes.
        let mut queued = Queued { api: self.clone(), key: Some(key.clone()), user: user.clone() };
        let head = range_response(out.responses.get(1)).and_then(|r| r.kvs.first());
        if head.is_none_or(|kv| kv.create_revision != rev) {
            // Wait for every key created before ours to go, newest first (etcd's
            // waitDeletes): each is watched until deleted, then the next is looked for.
            loop {
                let before = pb::RangeRequest {
                    key: prefix.clone(),
                    range_end: end.clone(),
                    limit: 1,
                    sort_order: 2,  // descending
                    sort_target: 2, // create revision
                    max_create_revision: rev - 1,
                    ..Default::default()
                };
                let r = self.range_as(user, before).await?;
                let h = r.header.clone().unwrap_or_default();
                match r.kvs.first() {
                    None => {
                        header = h;
                        break;
                    }
                    Some(kv) => self.deleted(user, kv.key.clone(), h.revision).await?,
                }
            }
        }
        queued.key = None;
        Ok(Held { key, rev, header })
    }
}

#[tonic::async_trait]
impl crate::rpc::lock_server::Lock for Api {
    async fn lock(
        &self,
        r: GrpcRequest<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let user = self.caller(&r).await?;
        let pb::LockRequest { name, lease } = r.into_inner();
        let lease = self.session_lease(&user, lease).await?;
        let held = self.head_of_queue(&user, &name, lease, Bytes::new()).await?;
        Ok(Response::new(pb::LockResponse { header: Some(held.header), key: held.key }))
    }

    async fn unlock(
        &self,
        r: GrpcRequest<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let user = self.caller(&r).await?;
        let del = pb::DeleteRangeRequest { key: r.into_inner().key, ..Default::default() };
        match self.write(pb::internal_request::Request::DeleteRange(del), user).await? {
            (Applied::DeleteRange(_), h) => {
                Ok(Response::new(pb::UnlockResponse { header: Some(h) }))
            }
            _ => Err(unexpected()),
        }
    }
}

/// etcd's election errors (plain errors in etcd's server, so gRPC's Unknown code).
fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn missing_leader() -> Status {
    Status::invalid_argument("\"leader\" field must be provided")
}

impl Api {
    /// A txn that does `then` if `leader` still holds its key (same create revision).
    async fn as_leader(
        &self,
        user: &Option<String>,
        leader: &pb::LeaderKey,
        then: pb::request_op::Request,
    ) -> Result<pb::ResponseHeader, Status> {
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: 0, // equal
                target: 1, // create revision
                key: leader.key.clone(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(leader.rev)),
                range_end: Bytes::new(),
            }],
            success: vec![pb::RequestOp { request: Some(then) }],
            failure: vec![],
        };
        match self.write(pb::internal_request::Request::Txn(txn), user.clone()).await? {
            (Applied::Txn(out), h) if out.succeeded => Ok(h),
            (Applied::Txn(_), _) => Err(not_leader()),
            _ => Err(unexpected()),
        }
    }

    /// The leader of election `name`: its key created first under `name/`.
    async fn election_leader(
        &self,
        user: &Option<String>,
        name: &[u8],
    ) -> Result<(Option<pb::KeyValue>, pb::ResponseHeader), Status> {
        let prefix: Bytes = [name, b"/"].concat().into();
        let mut r = self.range_as(user, first_created(&prefix)).await?;
        Ok((r.kvs.pop(), r.header.unwrap_or_default()))
    }
}

/// The answers of an Observe call, made by a task that ends when the client goes away.
#[derive(Debug)]
pub struct Observed(tokio::sync::mpsc::Receiver<Result<pb::LeaderResponse, Status>>);

impl futures_core::Stream for Observed {
    type Item = Result<pb::LeaderResponse, Status>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tonic::async_trait]
impl crate::rpc::election_server::Election for Api {
    type ObserveStream = Observed;

    /// Waits to lead election `name` (etcd's Campaign): the answer comes once this
    /// candidate's key heads the queue under `name/`.
    async fn campaign(
        &self,
        r: GrpcRequest<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let user = self.caller(&r).await?;
        let pb::CampaignRequest { name, lease, value } = r.into_inner();
        let lease = self.session_lease(&user, lease).await?;
        let held = self.head_of_queue(&user, &name, lease, value).await?;
        let leader = pb::LeaderKey { name, key: held.key, rev: held.rev, lease };
        Ok(Response::new(pb::CampaignResponse { header: Some(held.header), leader: Some(leader) }))
    }

    /// A new value from the leader, refused unless it still leads.
    async fn proclaim(
        &self,
        r: GrpcRequest<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let user = self.caller(&r).await?;
        let pb::ProclaimRequest { leader, value } = r.into_inner();
        let leader = leader.ok_or_else(missing_leader)?;
        let put = pb::PutRequest {
            key: leader.key.clone(),
            value,
            lease: leader.lease,
            ..Default::default()
        };
        let h = self.as_leader(&user, &leader, pb::request_op::Request::RequestPut(put)).await?;
        Ok(Response::new(pb::ProclaimResponse { header: Some(h) }))
    }

    /// The current leader's key and value.
    async fn leader(
        &self,
        r: GrpcRequest<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        let user = self.caller(&r).await?;
        match self.election_leader(&user, &r.into_inner().name).await? {
            (Some(kv), h) => {
                Ok(Response::new(pb::LeaderResponse { header: Some(h), kv: Some(kv) }))
            }
            (None, _) => Err(Status::unknown("election: no leader")),
        }
    }

    /// Streams the leader's key and value each time either changes, for as long as the
    /// client stays (nothing while there is no leader).
    async fn observe(
        &self,
        r: GrpcRequest<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let user = self.caller(&r).await?;
        let name = r.into_inner().name;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(async move {
            let prefix: Bytes = [&name[..], b"/"].concat().into();
            let mut last: Option<(Bytes, i64)> = None;
            loop {
                let (kv, h) = match api.election_leader(&user, &name).await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if let Some(kv) = kv {
                    let now = Some((kv.key.clone(), kv.mod_revision));
                    if now != last {
                        last = now;
                        let out = pb::LeaderResponse { header: Some(h.clone()), kv: Some(kv) };
                        if tx.send(Ok(out)).await.is_err() {
                            return; // the client went away
                        }
                    }
                }
                // Any change under the prefix may change the leader or its value.
                let changed = tokio::select! {
                    c = api.changed(&user, prefix.clone(), h.revision) => c,
                    () = tx.closed() => return,
                };
                if let Err(e) = changed {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Observed(rx)))
    }

    /// Gives up leading (or the place in the queue): deletes the key if it is still the
    /// one the leader key names.
    async fn resign(
        &self,
        r: GrpcRequest<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let user = self.caller(&r).await?;
        let leader = r.into_inner().leader.ok_or_else(missing_leader)?;
        let del = pb::DeleteRangeRequest { key: leader.key.clone(), ..Default::default() };
        let del = pb::request_op::Request::RequestDeleteRange(del);
        // etcd answers a resign of a key already gone without an error.
        let h = match self.as_leader(&user, &leader, del).await {
            Err(e) if e.message() == not_leader().message() => {
                self.election_leader(&user, &leader.name).await?.1
            }
            other => other?,
        };
        Ok(Response::new(pb::ResignResponse { header: Some(h) }))
    }
}
