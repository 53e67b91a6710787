//! etcd's Lock service (`v3lockpb.Lock`, what etcd's gRPC clients and its gateway's
//! `/v3/lock/lock` call): a distributed mutex made of keys, as etcd's server makes it.
//!
//! `Lock(name, lease)` puts the key `name/<lease in hex>` (attached to the lease, created
//! once: a second Lock with the same lease finds it), then waits until no key under
//! `name/` was created before it: the holder is the key with the lowest create revision,
//! and each waiter watches only the key just before its own, so a release wakes one waiter.
//! The answer is the key; `Unlock(key)` deletes it, and so does the lease's end (a holder
//! that dies releases the lock when its lease expires). Without a lease, one of 60 seconds
//! is granted (etcd's session default), which nobody renews.
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
use crate::mvcc::Applied;
use crate::pb;

/// etcd's session TTL, for a Lock without a lease.
const DEFAULT_TTL: i64 = 60;

/// The end of the range of every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    Bytes::from_static(&[0]) // every byte 0xff: to the end of the keyspace
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
        if let Some(key) = self.key.take() {
            let (api, user) = (self.api.clone(), self.user.take());
            tokio::spawn(async move {
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
    /// Waits until the key `key` is deleted, watching from `after` + 1.
    async fn deleted(&self, user: &Option<String>, key: Bytes, after: i64) -> Result<(), Status> {
        use pb::watch_request::RequestUnion;
        let create =
            pb::WatchCreateRequest { key, start_revision: after + 1, ..Default::default() };
        let req = pb::WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        let mut out = self.open_watch(user.clone(), WatchRequests::Given(VecDeque::from([req])))?;
        loop {
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut out), cx)
            });
            match next.await {
                Some(Ok(r)) if r.canceled => {
                    // Refused (permission) or compacted past `after`: look again from now.
                    if r.compact_revision > 0 {
                        return Ok(());
                    }
                    return Err(Status::permission_denied(r.cancel_reason));
                }
                Some(Ok(r)) if r.events.iter().any(|e| e.r#type == 1) => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(Status::unavailable("etcdserver: server stopped")),
            }
        }
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
        let lease = match lease {
            0 => {
                let grant = pb::LeaseGrantRequest { ttl: DEFAULT_TTL, id: 0 };
                match self
                    .write(pb::internal_request::Request::LeaseGrant(grant), user.clone())
                    .await?
                {
                    (Applied::LeaseGrant(g), _) => g.id,
                    _ => return Err(unexpected()),
                }
            }
            l => l,
        };
        let prefix: Bytes = [&name[..], b"/"].concat().into();
        let key: Bytes = [&prefix[..], format!("{lease:x}").as_bytes()].concat().into();
        let end = prefix_end(&prefix);
        // The holder: the key under the prefix created first.
        let first = pb::RangeRequest {
            key: prefix.clone(),
            range_end: end.clone(),
            limit: 1,
            sort_order: 1,  // ascending
            sort_target: 2, // create revision
            ..Default::default()
        };
        let put = pb::PutRequest { key: key.clone(), lease, ..Default::default() };
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: 0, // equal
                target: 1, // create revision
                key: key.clone(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                range_end: Bytes::new(),
            }],
            success: vec![
                pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) },
                range_op(first.clone()),
            ],
            failure: vec![
                range_op(pb::RangeRequest { key: key.clone(), ..Default::default() }),
                range_op(first),
            ],
        };
        let (out, header) =
            match self.write(pb::internal_request::Request::Txn(txn), user.clone()).await? {
                (Applied::Txn(out), h) => (out, h),
                _ => return Err(unexpected()),
            };
        let mine = match out.succeeded {
            true => header.revision,
            false => range_response(out.responses.first())
                .and_then(|r| r.kvs.first())
                .map(|kv| kv.create_revision)
                .ok_or_else(unexpected)?,
        };
        // From here the key is ours: if the client goes away before we answer, it goes.
        let mut queued = Queued { api: self.clone(), key: Some(key.clone()), user: user.clone() };
        let holder = range_response(out.responses.get(1)).and_then(|r| r.kvs.first());
        let mut header = header;
        if holder.is_none_or(|kv| kv.create_revision != mine) {
            // Wait for every key created before ours to go, newest first (etcd's
            // waitDeletes): each is watched until deleted, then the next is looked for.
            loop {
                let before = pb::RangeRequest {
                    key: prefix.clone(),
                    range_end: end.clone(),
                    limit: 1,
                    sort_order: 2,  // descending
                    sort_target: 2, // create revision
                    max_create_revision: mine - 1,
                    ..Default::default()
                };
                let r = self.range_as(&user, before).await?;
                let h = r.header.clone().unwrap_or_default();
                match r.kvs.first() {
                    None => {
                        header = h;
                        break;
                    }
                    Some(kv) => self.deleted(&user, kv.key.clone(), h.revision).await?,
                }
            }
        }
        queued.key = None;
        Ok(Response::new(pb::LockResponse { header: Some(header), key }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(&prefix_end(b"lock/")[..], b"lock0");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
    }
}
