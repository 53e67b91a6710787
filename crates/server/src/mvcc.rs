//! The replicated state machine: a multi-version key-value store with etcd's semantics.
//!
//! - One global revision, starting at 1 for an empty store; each write request (put, a delete
//!   that deletes something, a txn with writes) takes the next one.
//! - Per key: `create_revision` (of its current generation), `mod_revision`, and `version`
//!   (writes in this generation; a delete ends the generation).
//! - Range over one key, `[key, range_end)`, every key from `key` on (`range_end = "\0"`), or
//!   everything (`key = range_end = "\0"`); with limit, count only, keys only, sort, revision
//!   filters, and at a historical revision until compaction removed it.
//! - Txn: compares on value, version, create and mod revision, then the success or failure
//!   ops, all at one revision.
//!
//! Deterministic: the same commands in the same order give the same store on every server
//! (Raft's State Machine Safety gives the order).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use thiserror::Error;

use crate::pb::{self, KeyValue};

/// The end of the range of every key that starts with `prefix` (etcd's "prefix plus
/// one"): its last byte below 0xff incremented, what follows dropped; `\0` (to the end of
/// the keyspace) when every byte is 0xff.
///
/// ```
/// use flotilla_server::mvcc::prefix_end;
/// assert_eq!(&prefix_end(b"lock/")[..], b"lock0");
/// assert_eq!(&prefix_end(b"a\xff")[..], b"b");
/// assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
/// ```
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    Bytes::from_static(&[0])
}

/// Why a request failed (nothing changed). Messages follow etcd's, which clients match.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MvccError {
    /// The requested revision was compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is in the future.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// `ignore_value` on a missing key.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A txn writes one key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// No lease with this id (never granted, revoked, or expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant asked for an id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A put gave a lease and asked to keep the key's lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A request without an operation, or with an unknown enum value.
    #[error("etcdserver: {0}")]
    Invalid(&'static str),
}

/// One version of a key. The key itself is the map's (one copy for all its versions), and a
/// `KeyValue` is only built for a response.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    mod_revision: i64,
    create_revision: i64,
    version: i64,
    /// The lease the key was attached to by this version (0: none).
    lease: i64,
    /// `None`: a deletion (tombstone).
    value: Option<Bytes>,
}

impl Version {
    /// The version as etcd's `KeyValue`, if it is not a deletion.
    fn kv(&self, key: &Bytes) -> Option<KeyValue> {
        Some(KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.clone()?,
            lease: self.lease,
        })
    }
}

/// The store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mvcc {
    revision: i64,
    compact_revision: i64,
    /// Approximate bytes held (keys and values of every version).
    bytes: u64,
    /// Each key's versions, oldest first, by mod revision. Shared, so that a clone (the view
    /// a background snapshot encodes) costs one reference per key, and a later write copies
    /// only the histories it touches.
    keys: BTreeMap<Bytes, Arc<Vec<Version>>>,
    /// Granted leases by id: replicated state, like the keys. When a lease expires is not
    /// (it depends on each member's clock): the driver tracks that, and the leader proposes
    /// the revocation.
    leases: BTreeMap<i64, Lease>,
    /// The keys a revision wrote, in the order it wrote them, for each revision (above the
    /// compaction revision) that wrote several keys out of key order: a txn's ops apply in
    /// the order given, and etcd's watchers see its events in that order, replayed or live.
    /// Every other revision's changes are in key order, which is how they are stored.
    write_order: BTreeMap<i64, Vec<Bytes>>,
}

/// A granted lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// Its time to live, seconds, as granted.
    pub ttl: i64,
    /// The keys attached to it (deleted when it is revoked or expires).
    pub keys: BTreeSet<Bytes>,
    /// Renewals applied so far: a revocation for expiry names the count it saw, and a
    /// renewal applied in between cancels it.
    pub renewals: u64,
}

/// A read-only view for ranges (the current state or a historical revision).
fn live_at(history: &[Version], rev: i64) -> Option<&Version> {
    let i = history.partition_point(|v| v.mod_revision <= rev);
    history[..i].last().filter(|v| v.value.is_some())
}

impl Mvcc {
    /// An empty store at revision 1.
    pub fn new() -> Mvcc {
        Mvcc {
            revision: 1,
            compact_revision: 0,
            bytes: 0,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            write_order: BTreeMap::new(),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Keys held with some history (a deleted key counts until compaction drops it).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The revision up to which history was compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.keys.values().filter(|h| live_at(h, self.revision).is_some()).count()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self, key: &[u8]) -> Option<&Version> {
        self.keys.get(key).and_then(|h| h.last()).filter(|v| v.value.is_some())
    }

    /// Keys in `[key, range_end)` by etcd's conventions.
    fn span<'a>(
        &'a self,
        key: &'a Bytes,
        range_end: &'a Bytes,
    ) -> Box<dyn Iterator<Item = (&'a Bytes, &'a Arc<Vec<Version>>)> + 'a> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        if range_end.is_empty() {
            return Box::new(self.keys.get_key_value(key).into_iter());
        }
        let all_from = range_end.as_ref() == b"\0";
        let start = if key.as_ref() == b"\0" && all_from { Unbounded } else { Included(key) };
        let end = if all_from { Unbounded } else { Excluded(range_end) };
        if let (Included(s), Excluded(e)) = (&start, &end) {
            if s >= e {
                return Box::new(std::iter::empty());
            }
        }
        Box::new(self.keys.range::<Bytes, _>((start, end)))
    }

    /// Range (a read: no revision change).
    pub fn range(&self, r: &pb::RangeRequest) -> Result<pb::RangeResponse, MvccError> {
        let rev = if r.revision <= 0 { self.revision } else { r.revision };
        if rev > self.revision {
            return Err(MvccError::FutureRevision);
        }
        if rev < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        let in_filters = |v: &Version| {
            (r.min_mod_revision == 0 || v.mod_revision >= r.min_mod_revision)
                && (r.max_mod_revision == 0 || v.mod_revision <= r.max_mod_revision)
                && (r.min_create_revision == 0 || v.create_revision >= r.min_create_revision)
                && (r.max_create_revision == 0 || v.create_revision <= r.max_create_revision)
        };
        let mut kvs: Vec<KeyValue> = self
            .span(&r.key, &r.range_end)
            .filter_map(|(k, h)| live_at(h, rev).filter(|v| in_filters(v)).and_then(|v| v.kv(k)))
            .collect();
        let count = kvs.len() as i64;
        match (r.sort_order, r.sort_target) {
            (0, _) | (1, 0) => {} // already ascending by key
            (o @ (1 | 2), t @ 0..=4) => {
                kvs.sort_by(|a, b| match t {
                    0 => a.key.cmp(&b.key),
                    1 => a.version.cmp(&b.version),
                    2 => a.create_revision.cmp(&b.create_revision),
                    3 => a.mod_revision.cmp(&b.mod_revision),
                    _ => a.value.cmp(&b.value),
                });
                if o == 2 {
                    kvs.reverse();
                }
            }
            _ => return Err(MvccError::Invalid("unknown sort order or target")),
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() as i64 > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.count_only {
            kvs.clear();
        } else if r.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(pb::RangeResponse { header: None, kvs, more, count })
    }

    /// Applies one write request from the log at the next revision.
    pub fn apply(&mut self, req: &pb::internal_request::Request) -> Result<Applied, MvccError> {
        self.apply_tracked(req, &mut Vec::new())
    }

    /// [`Mvcc::apply`], and appends to `changes` each version the request wrote, in the
    /// order it wrote them (for watchers: [`Mvcc::event`] turns one into an event). Nothing
    /// is appended if the request fails or changes nothing.
    pub fn apply_tracked(
        &mut self,
        req: &pb::internal_request::Request,
        changes: &mut Vec<Change>,
    ) -> Result<Applied, MvccError> {
        let before = changes.len();
        let r = self.apply_inner(req, changes);
        if r.is_err() {
            changes.truncate(before);
        }
        let wrote = &changes[before..];
        if wrote.windows(2).any(|w| w[0].key >= w[1].key) {
            let keys = wrote.iter().map(|c| c.key.clone()).collect();
            self.write_order.insert(self.revision, keys);
        }
        r
    }

    fn apply_inner(
        &mut self,
        req: &pb::internal_request::Request,
        changes: &mut Vec<Change>,
    ) -> Result<Applied, MvccError> {
        use pb::internal_request::Request;
        match req {
            Request::Put(p) => {
                self.check_put(p)?;
                let rev = self.revision + 1;
                let prev = self.put_at(p, rev, changes);
                self.revision = rev;
                Ok(Applied::Put(pb::PutResponse {
                    header: None,
                    prev_kv: prev.filter(|_| p.prev_kv),
                }))
            }
            Request::DeleteRange(d) => {
                let rev = self.revision + 1;
                let resp = self.delete_at(d, rev, changes);
                if resp.deleted > 0 {
                    self.revision = rev;
                }
                Ok(Applied::DeleteRange(resp))
            }
            Request::Txn(t) => {
                let rev = self.revision + 1;
                self.check_txn(t, &[])?;
                // A put with ignore_value can still fail half way through (its key deleted by
                // an earlier op of the txn): keep a copy to roll back to, only then.
                let backup = txn_may_fail(t).then(|| self.clone());
                let (resp, wrote) = match self.txn_at(t, rev, changes) {
                    Ok(x) => x,
                    Err(e) => {
                        if let Some(b) = backup {
                            *self = b;
                        }
                        return Err(e);
                    }
                };
                if wrote {
                    self.revision = rev;
                }
                Ok(Applied::Txn(resp))
            }
            Request::Compaction(c) => {
                self.compact(c.revision)?;
                Ok(Applied::Compaction(pb::CompactionResponse { header: None }))
            }
            Request::LeaseGrant(g) => {
                if self.leases.contains_key(&g.id) {
                    return Err(MvccError::LeaseExists);
                }
                self.leases.insert(g.id, Lease { ttl: g.ttl, ..Default::default() });
                let r = pb::LeaseGrantResponse { id: g.id, ttl: g.ttl, ..Default::default() };
                Ok(Applied::LeaseGrant(r))
            }
            Request::LeaseRevoke(r) => {
                self.revoke(r.id, changes)?;
                Ok(Applied::LeaseRevoke(pb::LeaseRevokeResponse { header: None }))
            }
            Request::LeaseExpire(e) => {
                if self.leases.get(&e.id).is_some_and(|l| l.renewals == e.renewals) {
                    self.revoke(e.id, changes)?;
                }
                Ok(Applied::LeaseRevoke(pb::LeaseRevokeResponse { header: None }))
            }
            Request::LeaseKeepAlive(k) => {
                // A lease that is gone gets TTL 0, as etcd answers (the client stops).
                let ttl = match self.leases.get_mut(&k.id) {
                    Some(l) => {
                        l.renewals += 1;
                        l.ttl
                    }
                    None => 0,
                };
                Ok(Applied::LeaseKeepAlive(pb::LeaseKeepAliveResponse {
                    header: None,
                    id: k.id,
                    ttl,
                }))
            }
            Request::MemberAttr(_)
            | Request::MemberChange(_)
            | Request::Alarm(_)
            | Request::Auth(_) => Err(MvccError::Invalid("not a key-value request")),
        }
    }

    /// Revokes a lease: every attached key goes at one revision (as etcd's revoke does).
    fn revoke(&mut self, id: i64, changes: &mut Vec<Change>) -> Result<(), MvccError> {
        let lease = self.leases.remove(&id).ok_or(MvccError::LeaseNotFound)?;
        let rev = self.revision + 1;
        for k in &lease.keys {
            self.delete_key(k, rev, changes);
        }
        if !lease.keys.is_empty() {
            self.revision = rev;
        }
        Ok(())
    }

    fn check_lease(&self, p: &pb::PutRequest) -> Result<(), MvccError> {
        if p.lease != 0 && p.ignore_lease {
            return Err(MvccError::LeaseProvided);
        }
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        Ok(())
    }

    /// A granted lease.
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every granted lease, by id.
    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }

    fn check_put(&self, p: &pb::PutRequest) -> Result<(), MvccError> {
        self.check_lease(p)?;
        if (p.ignore_value || p.ignore_lease) && self.current(&p.key).is_none() {
            return Err(MvccError::KeyNotFound);
        }
        Ok(())
    }

    fn put_at(
        &mut self,
        p: &pb::PutRequest,
        rev: i64,
        changes: &mut Vec<Change>,
    ) -> Option<KeyValue> {
        // One lookup for a key already held (the common case), two for a new one.
        let h = match self.keys.get_mut(&p.key[..]) {
            Some(h) => Arc::make_mut(h),
            None => {
                // Own copies: the request's bytes are slices of a whole log entry or network
                // frame, which a stored key or value would otherwise keep alive.
                let k = Bytes::copy_from_slice(&p.key);
                Arc::make_mut(self.keys.entry(k).or_default())
            }
        };
        changes.push(Change { key: p.key.clone(), revision: rev, at: h.len() });
        let last = h.last().filter(|v| v.value.is_some());
        // The previous version is copied out only when the client asked for it.
        let prev = if p.prev_kv { last.and_then(|v| v.kv(&p.key)) } else { None };
        let value = match (last.and_then(|v| v.value.as_ref()), p.ignore_value) {
            (Some(v), true) => v.clone(),
            _ => Bytes::copy_from_slice(&p.value),
        };
        let (create_revision, version) =
            last.map_or((rev, 1), |v| (v.create_revision, v.version + 1));
        let old_lease = last.map_or(0, |v| v.lease);
        let lease = if p.ignore_lease { old_lease } else { p.lease };
        self.bytes += (p.key.len() + value.len()) as u64;
        h.push(Version { mod_revision: rev, create_revision, version, lease, value: Some(value) });
        if lease != old_lease {
            self.attach(&p.key, old_lease, lease);
        }
        prev
    }

    /// Approximate bytes of keys and values held (all versions), for Status's db size.
    pub fn size_bytes(&self) -> u64 {
        self.bytes
    }

    fn delete_at(
        &mut self,
        d: &pb::DeleteRangeRequest,
        rev: i64,
        changes: &mut Vec<Change>,
    ) -> pb::DeleteRangeResponse {
        let doomed: Vec<(Bytes, KeyValue)> = self
            .span(&d.key, &d.range_end)
            .filter_map(|(k, h)| h.last().and_then(|v| v.kv(k)).map(|kv| (k.clone(), kv)))
            .collect();
        for (k, _) in &doomed {
            self.delete_key(k, rev, changes);
        }
        pb::DeleteRangeResponse {
            header: None,
            deleted: doomed.len() as i64,
            prev_kvs: if d.prev_kv {
                doomed.into_iter().map(|(_, kv)| kv).collect()
            } else {
                vec![]
            },
        }
    }

    /// Deletes a live key at `rev`: a tombstone, and the key leaves its lease.
    fn delete_key(&mut self, k: &Bytes, rev: i64, changes: &mut Vec<Change>) {
        let tombstone =
            Version { mod_revision: rev, create_revision: 0, version: 0, lease: 0, value: None };
        let h = Arc::make_mut(self.keys.get_mut(k).expect("a live key"));
        let lease = h.last().map_or(0, |v| v.lease);
        changes.push(Change { key: k.clone(), revision: rev, at: h.len() });
        h.push(tombstone);
        if lease != 0 {
            self.attach(k, lease, 0);
        }
    }

    /// Moves `key` from lease `from` to lease `to` (0: none).
    fn attach(&mut self, key: &Bytes, from: i64, to: i64) {
        if let Some(l) = self.leases.get_mut(&from) {
            l.keys.remove(key);
        }
        if let Some(l) = self.leases.get_mut(&to) {
            // The store's own copy of the key, shared.
            let k =
                self.keys.get_key_value(&key[..]).map_or_else(|| key.clone(), |(k, _)| k.clone());
            l.keys.insert(k);
        }
    }

    /// Refuses a txn that would write one key twice on the branch it takes (etcd refuses
    /// it on either branch; so do we), or that is malformed.
    fn check_txn(&self, t: &pb::TxnRequest, seen: &[Bytes]) -> Result<(), MvccError> {
        use pb::request_op::Request;
        for branch in [&t.success, &t.failure] {
            let mut keys: Vec<Bytes> = seen.to_vec();
            for op in branch {
                match &op.request {
                    Some(Request::RequestPut(p)) => {
                        if keys.contains(&p.key) {
                            return Err(MvccError::DuplicateKey);
                        }
                        self.check_lease(p)?;
                        keys.push(p.key.clone());
                    }
                    Some(Request::RequestTxn(inner)) => self.check_txn(inner, &keys)?,
                    Some(_) => {}
                    None => return Err(MvccError::Invalid("txn op without a request")),
                }
            }
        }
        Ok(())
    }

    fn compare(&self, c: &pb::Compare) -> Result<bool, MvccError> {
        use pb::compare::TargetUnion;
        let kv = self.current(&c.key);
        let ord = match (&c.target_union, c.target) {
            (Some(TargetUnion::Value(v)), 3) => match kv.and_then(|k| k.value.as_ref()) {
                Some(value) => value.cmp(v),
                None => return Ok(false),
            },
            (Some(TargetUnion::Version(v)), 0) => kv.map_or(0, |k| k.version).cmp(v),
            (Some(TargetUnion::CreateRevision(v)), 1) => kv.map_or(0, |k| k.create_revision).cmp(v),
            (Some(TargetUnion::ModRevision(v)), 2) => kv.map_or(0, |k| k.mod_revision).cmp(v),
            (Some(TargetUnion::Lease(v)), 4) => kv.map_or(0, |k| k.lease).cmp(v),
            (None, 0) => kv.map_or(0, |k| k.version).cmp(&0),
            _ => return Err(MvccError::Invalid("compare target and value disagree")),
        };
        use std::cmp::Ordering::*;
        Ok(match c.result {
            0 => ord == Equal,
            1 => ord == Greater,
            2 => ord == Less,
            3 => ord != Equal,
            _ => return Err(MvccError::Invalid("unknown compare result")),
        })
    }

    fn txn_at(
        &mut self,
        t: &pb::TxnRequest,
        rev: i64,
        changes: &mut Vec<Change>,
    ) -> Result<(pb::TxnResponse, bool), MvccError> {
        use pb::request_op::Request;
        use pb::response_op::Response;
        let mut succeeded = true;
        for c in &t.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        let mut wrote = false;
        for op in ops {
            let resp = match op.request.as_ref().expect("checked by check_txn") {
                Request::RequestRange(r) => {
                    // Reads inside a txn see the txn's earlier writes at this revision.
                    let mut r = r.clone();
                    if r.revision <= 0 {
                        r.revision = 0;
                    }
                    let saved = self.revision;
                    self.revision = self.revision.max(if wrote { rev } else { saved });
                    let out = self.range(&r);
                    self.revision = saved;
                    Response::ResponseRange(out?)
                }
                Request::RequestPut(p) => {
                    if (p.ignore_value || p.ignore_lease) && self.current(&p.key).is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    let prev = self.put_at(p, rev, changes);
                    wrote = true;
                    Response::ResponsePut(pb::PutResponse {
                        header: None,
                        prev_kv: prev.filter(|_| p.prev_kv),
                    })
                }
                Request::RequestDeleteRange(d) => {
                    let resp = self.delete_at(d, rev, changes);
                    wrote |= resp.deleted > 0;
                    Response::ResponseDeleteRange(resp)
                }
                Request::RequestTxn(inner) => {
                    let (resp, w) = self.txn_at(inner, rev, changes)?;
                    wrote |= w;
                    Response::ResponseTxn(resp)
                }
            };
            responses.push(pb::ResponseOp { response: Some(resp) });
        }
        Ok((pb::TxnResponse { header: None, succeeded, responses }, wrote))
    }

    /// Discards history below `rev` (etcd's Compact): ranges at older revisions fail with
    /// [`MvccError::Compacted`] from now on.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if rev > self.revision {
            return Err(MvccError::FutureRevision);
        }
        self.keys.retain(|_, h| {
            // Keep the newest version at or below `rev` (if live) and everything after.
            let i = h.partition_point(|v| v.mod_revision <= rev);
            let keep_from = match h[..i].last() {
                Some(v) if v.value.is_some() => i - 1,
                _ => i,
            };
            if keep_from > 0 {
                Arc::make_mut(h).drain(..keep_from);
            }
            !h.is_empty()
        });
        self.compact_revision = rev;
        self.write_order = self.write_order.split_off(&rev);
        self.bytes = self.recount();
        Ok(())
    }

    fn recount(&self) -> u64 {
        self.keys
            .iter()
            .map(|(k, h)| {
                h.iter().map(|v| v.value.as_ref().map_or(0, |v| v.len() + k.len())).sum::<usize>()
                    as u64
            })
            .sum()
    }

    /// The whole store, for a Raft snapshot (Raft §7): revision, compact revision, then each
    /// key's versions. Deterministic.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        Bytes::from(out)
    }

    /// [`Mvcc::encode`], appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_pieces(|piece| {
            out.extend_from_slice(piece);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|e| match e {});
    }

    /// [`Mvcc::encode`] in pieces of about 64 KiB handed to `emit`, so that a snapshot can be
    /// written without the whole encoding in memory. Stops at `emit`'s first error.
    pub fn encode_pieces<E>(&self, mut emit: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        const PIECE: usize = 64 << 10;
        let mut out = Vec::with_capacity(2 * PIECE);
        // Version 2 while no revision needs its write order, so that members of the
        // previous release still read most snapshots.
        out.put_i64_le(if self.write_order.is_empty() { FORMAT_V2 } else { FORMAT_V3 });
        out.put_i64_le(self.revision);
        out.put_i64_le(self.compact_revision);
        out.put_u64_le(self.keys.len() as u64);
        for (k, h) in &self.keys {
            put_bytes(&mut out, k);
            out.put_u64_le(h.len() as u64);
            for v in h.iter() {
                out.put_i64_le(v.mod_revision);
                match &v.value {
                    None => out.put_u8(0),
                    Some(value) => {
                        if v.lease == 0 {
                            out.put_u8(1);
                        } else {
                            out.put_u8(2);
                            out.put_i64_le(v.lease);
                        }
                        out.put_i64_le(v.create_revision);
                        out.put_i64_le(v.version);
                        put_bytes(&mut out, value);
                    }
                }
                if out.len() >= PIECE {
                    emit(&out)?;
                    out.clear();
                }
            }
        }
        // The leases; which keys each holds follows from the keys' current versions.
        out.put_u64_le(self.leases.len() as u64);
        for (id, l) in &self.leases {
            out.put_i64_le(*id);
            out.put_i64_le(l.ttl);
            out.put_u64_le(l.renewals);
        }
        if !self.write_order.is_empty() {
            out.put_u64_le(self.write_order.len() as u64);
            for (rev, keys) in &self.write_order {
                out.put_i64_le(*rev);
                out.put_u64_le(keys.len() as u64);
                for k in keys {
                    put_bytes(&mut out, k);
                }
            }
        }
        emit(&out)
    }

    /// The length of [`Mvcc::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> u64 {
        let versions = |h: &[Version]| -> u64 {
            h.iter()
                .map(|v| {
                    let lease = if v.lease == 0 { 0 } else { 8 };
                    9 + v.value.as_ref().map_or(0, |x| 20 + lease + x.len() as u64)
                })
                .sum()
        };
        let keys = self.keys.iter().map(|(k, h)| 12 + k.len() as u64 + versions(h)).sum::<u64>();
        let order = match self.write_order.is_empty() {
            true => 0,
            false => {
                let keys = |ks: &[Bytes]| ks.iter().map(|k| 4 + k.len() as u64).sum::<u64>();
                8 + self.write_order.values().map(|ks| 16 + keys(ks)).sum::<u64>()
            }
        };
        32 + keys + 8 + 24 * self.leases.len() as u64 + order
    }

    /// Decodes what [`Mvcc::encode`] wrote; `None` if it is damaged.
    pub fn decode(mut b: &[u8]) -> Option<Mvcc> {
        fn need(b: &[u8], n: usize) -> Option<()> {
            (b.remaining() >= n).then_some(())
        }
        fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
            need(b, 4)?;
            let n = b.get_u32_le() as usize;
            need(b, n)?;
            let v = Bytes::copy_from_slice(&b[..n]);
            b.advance(n);
            Some(v)
        }
        need(b, 8)?;
        // The first format began with the revision, which is positive.
        let format = (&b[..8]).get_i64_le();
        let (v2, v3) = (format == FORMAT_V2 || format == FORMAT_V3, format == FORMAT_V3);
        if v2 {
            b.advance(8);
        }
        need(b, 24)?;
        let revision = b.get_i64_le();
        let compact_revision = b.get_i64_le();
        let n = b.get_u64_le();
        let mut keys = BTreeMap::new();
        for _ in 0..n {
            let key = get_bytes(&mut b)?;
            need(b, 8)?;
            let m = b.get_u64_le();
            let mut h = Vec::new();
            for _ in 0..m {
                need(b, 9)?;
                let rev = b.get_i64_le();
                let tag = b.get_u8();
                let lease = if tag == 2 {
                    need(b, 8)?;
                    b.get_i64_le()
                } else {
                    0
                };
                let v = match tag {
                    0 => Version {
                        mod_revision: rev,
                        create_revision: 0,
                        version: 0,
                        lease: 0,
                        value: None,
                    },
                    1 | 2 => {
                        need(b, 16)?;
                        let create_revision = b.get_i64_le();
                        let version = b.get_i64_le();
                        let value = Some(get_bytes(&mut b)?);
                        Version { mod_revision: rev, create_revision, version, lease, value }
                    }
                    _ => return None,
                };
                h.push(v);
            }
            keys.insert(key, Arc::new(h));
        }
        let mut leases = BTreeMap::new();
        if v2 {
            need(b, 8)?;
            for _ in 0..b.get_u64_le() {
                need(b, 24)?;
                let id = b.get_i64_le();
                let (ttl, renewals) = (b.get_i64_le(), b.get_u64_le());
                leases.insert(id, Lease { ttl, renewals, keys: BTreeSet::new() });
            }
        }
        let mut write_order = BTreeMap::new();
        if v3 {
            need(b, 8)?;
            for _ in 0..b.get_u64_le() {
                need(b, 16)?;
                let rev = b.get_i64_le();
                let n = b.get_u64_le();
                let mut ks = Vec::new();
                for _ in 0..n {
                    ks.push(get_bytes(&mut b)?);
                }
                write_order.insert(rev, ks);
            }
        }
        for (k, h) in &keys {
            let live = h.last().filter(|v| v.value.is_some());
            if let Some(l) = live.and_then(|v| leases.get_mut(&v.lease)) {
                l.keys.insert(k.clone());
            }
        }
        let mut m = Mvcc { revision, compact_revision, bytes: 0, keys, leases, write_order };
        m.bytes = m.recount();
        b.is_empty().then_some(m)
    }
}

/// One version a write made: the key, the revision, and where in the key's history the
/// version is (a txn may delete and put one key at one revision). Valid until the next write
/// or compaction; [`Mvcc::event`] turns it into a watch event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key written.
    pub key: Bytes,
    /// The revision of the write.
    pub revision: i64,
    at: usize,
}

/// Whether `k` is in `[key, range_end)` by etcd's conventions (as [`Mvcc::range`] reads
/// them: an empty `range_end` means `key` alone, `"\0"` every key from `key` on).
pub fn in_span(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

impl Mvcc {
    /// The watch event of a change: a put carries the new version, a delete the key and
    /// its revision only (as etcd's). With `prev`, also the version the change replaced,
    /// if it was live and is still held.
    pub fn event(&self, c: &Change, prev: bool) -> pb::Event {
        let h = self.keys.get(&c.key[..]).map(|h| &h[..]).unwrap_or_default();
        let v = h.get(c.at).filter(|v| v.mod_revision == c.revision);
        let (kind, kv) = match v.and_then(|v| v.kv(&c.key)) {
            Some(kv) => (0, kv),
            None => {
                let kv =
                    KeyValue { key: c.key.clone(), mod_revision: c.revision, ..Default::default() };
                (1, kv)
            }
        };
        let prev_kv =
            if prev && v.is_some() { h[..c.at].last().and_then(|p| p.kv(&c.key)) } else { None };
        pb::Event { r#type: kind, kv: Some(kv), prev_kv }
    }

    /// etcd's HashKV: a CRC-32C of every version the store holds up to revision `rev`
    /// (0: the current one), keys in order, each key's versions oldest first, with their
    /// revisions, version, lease and value (or deletion). Members that applied the same log
    /// hold the same versions (compactions go through the log too), so their hashes at one
    /// revision agree exactly when their stores do: what `etcdctl endpoint hashkv` compares.
    /// Returns the hash and the revision it covers.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64), MvccError> {
        let rev = if rev <= 0 { self.revision } else { rev };
        if rev > self.revision {
            return Err(MvccError::FutureRevision);
        }
        if rev < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        let mut crc = 0;
        for (k, h) in &self.keys {
            let upto = h.partition_point(|v| v.mod_revision <= rev);
            if upto == 0 {
                continue;
            }
            crc = crc32c::crc32c_append(crc, &(k.len() as u32).to_le_bytes());
            crc = crc32c::crc32c_append(crc, k);
            for v in &h[..upto] {
                let mut head = [0u8; 33];
                head[..8].copy_from_slice(&v.mod_revision.to_le_bytes());
                head[8..16].copy_from_slice(&v.create_revision.to_le_bytes());
                head[16..24].copy_from_slice(&v.version.to_le_bytes());
                head[24..32].copy_from_slice(&v.lease.to_le_bytes());
                head[32] = u8::from(v.value.is_some());
                crc = crc32c::crc32c_append(crc, &head);
                if let Some(value) = &v.value {
                    crc = crc32c::crc32c_append(crc, &(value.len() as u32).to_le_bytes());
                    crc = crc32c::crc32c_append(crc, value);
                }
            }
        }
        Ok((crc, rev))
    }

    /// etcd's Hash: [`Mvcc::hash_kv`] at the current revision, extended with the compaction
    /// revision and every lease (id and TTL).
    pub fn hash_all(&self) -> u32 {
        let (mut crc, _) =
            self.hash_kv(0).expect("the current revision is neither compacted nor future");
        crc = crc32c::crc32c_append(crc, &self.compact_revision.to_le_bytes());
        for (id, l) in &self.leases {
            crc = crc32c::crc32c_append(crc, &id.to_le_bytes());
            crc = crc32c::crc32c_append(crc, &l.ttl.to_le_bytes());
        }
        crc
    }

    /// The changes to keys in `[key, range_end)` at revisions `from..=to`, oldest first (at
    /// one revision, in the order written, as etcd's watchers see a txn's ops): what a
    /// watcher that fell behind, or starts in the past, replays. History below the
    /// compaction revision is gone: callers check [`Mvcc::compact_revision`] first.
    pub fn changes_between(
        &self,
        key: &Bytes,
        range_end: &Bytes,
        from: i64,
        to: i64,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for (k, h) in self.span(key, range_end) {
            let start = h.partition_point(|v| v.mod_revision < from);
            for (i, v) in h.iter().enumerate().skip(start) {
                if v.mod_revision > to {
                    break;
                }
                out.push(Change { key: k.clone(), revision: v.mod_revision, at: i });
            }
        }
        // Stable: one key's versions at one revision keep their order.
        out.sort_by_key(|c| c.revision);
        // A revision that wrote out of key order: its changes in the order written.
        let mut at = 0;
        while at < out.len() {
            let rev = out[at].revision;
            let end = at + out[at..].partition_point(|c| c.revision == rev);
            if let Some(order) = self.write_order.get(&rev) {
                let mut left: Vec<Option<Change>> =
                    out[at..end].iter().cloned().map(Some).collect();
                let mut sorted = Vec::with_capacity(left.len());
                for k in order {
                    let found = left.iter_mut().find(|c| c.as_ref().is_some_and(|c| c.key == k));
                    sorted.extend(found.and_then(Option::take));
                }
                sorted.extend(left.into_iter().flatten());
                out.splice(at..end, sorted);
            }
            at = end;
        }
        out
    }
}

/// Whether a txn has an op that can fail after others were applied.
fn txn_may_fail(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request;
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Request::RequestPut(p)) => p.ignore_value || p.ignore_lease,
        Some(Request::RequestTxn(inner)) => txn_may_fail(inner),
        _ => false,
    })
}

/// Begins the encoding with leases (the first began with the revision, always positive).
const FORMAT_V2: i64 = -2;
/// Version 2 followed by the write orders ([`Mvcc::encode`] writes it only when there are any).
const FORMAT_V3: i64 = -3;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

/// The result of one applied write.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// A put.
    Put(pb::PutResponse),
    /// A delete.
    DeleteRange(pb::DeleteRangeResponse),
    /// A txn.
    Txn(pb::TxnResponse),
    /// A compaction.
    Compaction(pb::CompactionResponse),
    /// A lease granted.
    LeaseGrant(pb::LeaseGrantResponse),
    /// A lease revoked (its keys deleted).
    LeaseRevoke(pb::LeaseRevokeResponse),
    /// A lease renewed, or found gone (TTL 0).
    LeaseKeepAlive(pb::LeaseKeepAliveResponse),
    /// An alarm raised or cleared (applied by the driver: alarms are cluster state, not
    /// the store's).
    Alarm(pb::AlarmResponse),
    /// An auth store change (applied by the driver); for `Authenticate`, the token.
    Auth(Option<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::internal_request::Request;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(m: &mut Mvcc, k: &str, v: &str) -> pb::PutResponse {
        let p = pb::PutRequest { key: b(k), value: b(v), prev_kv: true, ..Default::default() };
        match m.apply(&Request::Put(p)).unwrap() {
            Applied::Put(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn del(m: &mut Mvcc, k: &str, end: &str) -> pb::DeleteRangeResponse {
        let d = pb::DeleteRangeRequest { key: b(k), range_end: b(end), prev_kv: true };
        match m.apply(&Request::DeleteRange(d)).unwrap() {
            Applied::DeleteRange(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn get(
        m: &Mvcc,
        k: &str,
        end: &str,
        rev: i64,
    ) -> Result<Vec<(String, String, i64, i64, i64)>, MvccError> {
        let r =
            pb::RangeRequest { key: b(k), range_end: b(end), revision: rev, ..Default::default() };
        Ok(m.range(&r)?
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8(kv.key.to_vec()).unwrap(),
                    String::from_utf8(kv.value.to_vec()).unwrap(),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                )
            })
            .collect())
    }

    #[test]
    fn hash_kv_agrees_for_equal_stores_and_covers_history_up_to_its_revision() {
        let build = || {
            let mut m = Mvcc::new();
            put(&mut m, "a", "1");
            put(&mut m, "b", "2");
            put(&mut m, "a", "3");
            del(&mut m, "b", "");
            m
        };
        let (mut x, y) = (build(), build());
        let (h, rev) = x.hash_kv(0).unwrap();
        assert_eq!((h, rev), y.hash_kv(0).unwrap(), "same writes, same hash");
        assert_eq!(rev, 5);
        let restored = Mvcc::decode(&x.encode()).unwrap();
        assert_eq!(restored.hash_kv(0).unwrap(), (h, rev), "a snapshot restores the same hash");
        assert_eq!(restored.hash_all(), x.hash_all());
        let at3 = x.hash_kv(3).unwrap();
        put(&mut x, "c", "4");
        assert_ne!(x.hash_kv(0).unwrap().0, h, "a new version changes the current hash");
        assert_eq!(x.hash_kv(5).unwrap(), (h, rev), "but not the hash up to an older revision");
        assert_eq!(x.hash_kv(3).unwrap(), at3);
        assert_ne!(at3.0, h);
        // Different values, same shape: different hashes.
        let mut z = Mvcc::new();
        put(&mut z, "a", "1");
        put(&mut z, "b", "2");
        put(&mut z, "a", "X");
        del(&mut z, "b", "");
        assert_ne!(z.hash_kv(0).unwrap().0, h);
        assert_eq!(x.hash_kv(7), Err(MvccError::FutureRevision));
        let c = pb::CompactionRequest { revision: 4, physical: false };
        x.apply(&Request::Compaction(c)).unwrap();
        assert_eq!(x.hash_kv(3), Err(MvccError::Compacted));
        assert!(x.hash_kv(4).is_ok());
    }

    #[test]
    fn revisions_versions_and_generations_follow_etcd() {
        let mut m = Mvcc::new();
        assert_eq!(m.revision(), 1, "an empty store is at revision 1");
        assert_eq!(put(&mut m, "a", "1").prev_kv, None);
        assert_eq!(m.revision(), 2);
        let prev = put(&mut m, "a", "2").prev_kv.unwrap();
        assert_eq!((prev.value, prev.version), (b("1"), 1));
        assert_eq!(get(&m, "a", "", 0).unwrap(), [("a".into(), "2".into(), 2, 3, 2)]);
        // A delete ends the generation; a new put starts one (version 1, new create revision).
        assert_eq!(del(&mut m, "a", "").deleted, 1);
        assert_eq!(m.revision(), 4);
        assert_eq!(del(&mut m, "a", "").deleted, 0);
        assert_eq!(m.revision(), 4, "deleting nothing takes no revision");
        put(&mut m, "a", "3");
        assert_eq!(get(&m, "a", "", 0).unwrap(), [("a".into(), "3".into(), 5, 5, 1)]);
    }

    #[test]
    fn ranges_prefixes_all_limits_counts_and_history() {
        let mut m = Mvcc::new();
        for (k, v) in [("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4")] {
            put(&mut m, k, v);
        }
        let keys = |r: Vec<(String, String, i64, i64, i64)>| -> Vec<String> {
            r.into_iter().map(|x| x.0).collect()
        };
        assert_eq!(keys(get(&m, "a", "b", 0).unwrap()), ["a", "ab", "abc"], "prefix a");
        assert_eq!(keys(get(&m, "ab", "\0", 0).unwrap()), ["ab", "abc", "b"], "from ab");
        assert_eq!(keys(get(&m, "\0", "\0", 0).unwrap()), ["a", "ab", "abc", "b"], "all");
        assert_eq!(keys(get(&m, "b", "a", 0).unwrap()), Vec::<String>::new(), "empty range");
        let r =
            pb::RangeRequest { key: b("a"), range_end: b("\0"), limit: 2, ..Default::default() };
        let resp = m.range(&r).unwrap();
        assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 4));
        let r = pb::RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            count_only: true,
            ..Default::default()
        };
        let resp = m.range(&r).unwrap();
        assert_eq!((resp.kvs.len(), resp.count), (0, 4));
        let r = pb::RangeRequest { key: b("a"), keys_only: true, ..Default::default() };
        assert_eq!(m.range(&r).unwrap().kvs[0].value, Bytes::new());
        let r = pb::RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            sort_order: 2,
            sort_target: 3,
            ..Default::default()
        };
        assert_eq!(m.range(&r).unwrap().kvs[0].key, b("b"), "descending by mod revision");
        // History: at revision 3 only a and ab existed.
        assert_eq!(keys(get(&m, "\0", "\0", 3).unwrap()), ["a", "ab"]);
        assert_eq!(get(&m, "a", "", 99), Err(MvccError::FutureRevision));
    }

    #[test]
    fn compaction_keeps_the_newest_version_and_refuses_older_reads() {
        let mut m = Mvcc::new();
        put(&mut m, "a", "1"); // 2
        put(&mut m, "a", "2"); // 3
        put(&mut m, "b", "1"); // 4
        del(&mut m, "b", ""); // 5
        m.compact(4).unwrap();
        assert_eq!(get(&m, "a", "", 3), Err(MvccError::Compacted));
        assert_eq!(get(&m, "a", "", 4).unwrap()[0].1, "2");
        assert_eq!(get(&m, "b", "", 4).unwrap().len(), 1, "b still lived at 4");
        assert_eq!(get(&m, "b", "", 5).unwrap().len(), 0);
        assert_eq!(m.compact(4), Err(MvccError::Compacted));
        assert_eq!(m.compact(9), Err(MvccError::FutureRevision));
        m.compact(5).unwrap();
        assert!(!m.keys.contains_key(&b("b")), "a deleted key's history goes at compaction");
    }

    #[test]
    fn txn_compares_and_applies_one_branch_at_one_revision() {
        use pb::compare::TargetUnion;
        let mut m = Mvcc::new();
        put(&mut m, "k", "v1"); // 2
        let txn = |value: &str| pb::TxnRequest {
            compare: vec![pb::Compare {
                result: 0,
                target: 3,
                key: b("k"),
                target_union: Some(TargetUnion::Value(b(value))),
                range_end: Bytes::new(),
            }],
            success: vec![
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: b("k"),
                        value: b("v2"),
                        ..Default::default()
                    })),
                },
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: b("other"),
                        value: b("x"),
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: b("k"),
                    ..Default::default()
                })),
            }],
        };
        let Applied::Txn(r) = m.apply(&Request::Txn(txn("nope"))).unwrap() else { panic!() };
        assert!(!r.succeeded);
        assert_eq!(m.revision(), 2, "a read-only branch takes no revision");
        let Applied::Txn(r) = m.apply(&Request::Txn(txn("v1"))).unwrap() else { panic!() };
        assert!(r.succeeded);
        assert_eq!(m.revision(), 3, "both puts share one revision");
        assert_eq!(get(&m, "other", "", 0).unwrap()[0].3, 3);
        // Version compare: a missing key has version 0.
        let c = pb::Compare {
            result: 0,
            target: 0,
            key: b("missing"),
            target_union: Some(TargetUnion::Version(0)),
            range_end: Bytes::new(),
        };
        assert!(m.compare(&c).unwrap());
        let mut dup = txn("v2");
        dup.success.push(dup.success[0].clone());
        assert_eq!(m.apply(&Request::Txn(dup)), Err(MvccError::DuplicateKey));
        assert_eq!(m.revision(), 3, "a refused txn changes nothing");
    }

    #[test]
    fn snapshots_round_trip() {
        let mut m = Mvcc::new();
        put(&mut m, "a", "1");
        put(&mut m, "a", "2");
        put(&mut m, "b", "3");
        del(&mut m, "b", "");
        m.compact(3).unwrap();
        let back = Mvcc::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.encoded_len(), m.encode().len() as u64);
        let mut pieces = Vec::new();
        m.encode_pieces(|p| {
            pieces.extend_from_slice(p);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(pieces, m.encode().to_vec());
        // A store larger than one piece comes out the same in pieces.
        let mut big = Mvcc::new();
        for i in 0..3000 {
            put(&mut big, &format!("key{}", i % 700), &"v".repeat(i % 97));
        }
        let mut pieces = Vec::new();
        let mut count = 0;
        big.encode_pieces(|p| {
            pieces.extend_from_slice(p);
            count += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(count > 2, "{count} pieces");
        assert_eq!(pieces, big.encode().to_vec());
        assert_eq!(big.encoded_len(), pieces.len() as u64);
        let mut fresh = Mvcc::new();
        put(&mut fresh, "x", "12345");
        del(&mut fresh, "x", "");
        assert_eq!(Mvcc::decode(&fresh.encode()).unwrap(), fresh, "size accounting agrees");
        let enc = m.encode();
        assert_eq!(Mvcc::decode(&enc[..enc.len() - 1]), None);
        assert_eq!(enc[..8], FORMAT_V2.to_le_bytes(), "no write order to keep: version 2");
        // A txn written out of key order: version 3, with its order, in and out of pieces.
        use pb::request_op::Request as Op;
        let op = |k: &str| pb::RequestOp {
            request: Some(Op::RequestPut(pb::PutRequest { key: b(k), ..Default::default() })),
        };
        let t = pb::TxnRequest { success: vec![op("z"), op("y")], ..Default::default() };
        m.apply(&Request::Txn(t)).unwrap();
        let enc = m.encode();
        assert_eq!(enc[..8], FORMAT_V3.to_le_bytes());
        assert_eq!(m.encoded_len(), enc.len() as u64);
        assert_eq!(Mvcc::decode(&enc).unwrap(), m);
        assert_eq!(Mvcc::decode(&enc[..enc.len() - 1]), None);
    }

    /// The first encoding (no format marker, no leases) is what older snapshots hold.
    #[test]
    fn snapshots_of_the_first_format_still_decode() {
        let mut m = Mvcc::new();
        put(&mut m, "a", "1");
        put(&mut m, "a", "2");
        del(&mut m, "a", "");
        put(&mut m, "b", "3");
        let mut old = Vec::new();
        old.put_i64_le(m.revision);
        old.put_i64_le(m.compact_revision);
        old.put_u64_le(m.keys.len() as u64);
        for (k, h) in &m.keys {
            put_bytes(&mut old, k);
            old.put_u64_le(h.len() as u64);
            for v in h.iter() {
                old.put_i64_le(v.mod_revision);
                match &v.value {
                    None => old.put_u8(0),
                    Some(value) => {
                        old.put_u8(1);
                        old.put_i64_le(v.create_revision);
                        old.put_i64_le(v.version);
                        put_bytes(&mut old, value);
                    }
                }
            }
        }
        assert_eq!(Mvcc::decode(&old), Some(m));
    }

    fn lease_op(m: &mut Mvcc, r: Request) -> Result<Applied, MvccError> {
        m.apply(&r)
    }

    #[test]
    fn leases_attach_keys_and_revoking_deletes_them_at_one_revision() {
        let mut m = Mvcc::new();
        let grant = |id, ttl| Request::LeaseGrant(pb::LeaseGrantRequest { id, ttl });
        lease_op(&mut m, grant(7, 10)).unwrap();
        assert_eq!(lease_op(&mut m, grant(7, 10)), Err(MvccError::LeaseExists));
        lease_op(&mut m, grant(8, 20)).unwrap();
        let leased = |k: &str, lease| {
            Request::Put(pb::PutRequest { key: b(k), value: b("v"), lease, ..Default::default() })
        };
        assert_eq!(lease_op(&mut m, leased("x", 99)), Err(MvccError::LeaseNotFound));
        lease_op(&mut m, leased("a", 7)).unwrap();
        lease_op(&mut m, leased("b", 7)).unwrap();
        lease_op(&mut m, leased("c", 7)).unwrap();
        // Moved to another lease, detached by a plain put, kept with ignore_lease, deleted.
        lease_op(&mut m, leased("b", 8)).unwrap();
        put(&mut m, "c", "plain");
        let keep =
            pb::PutRequest { key: b("a"), value: b("w"), ignore_lease: true, ..Default::default() };
        lease_op(&mut m, Request::Put(keep)).unwrap();
        let both =
            pb::PutRequest { key: b("a"), lease: 7, ignore_lease: true, ..Default::default() };
        assert_eq!(lease_op(&mut m, Request::Put(both)), Err(MvccError::LeaseProvided));
        let lease_of = |m: &Mvcc, k: &str| {
            let r = pb::RangeRequest { key: b(k), ..Default::default() };
            m.range(&r).unwrap().kvs.first().map(|kv| kv.lease)
        };
        assert_eq!(lease_of(&m, "a"), Some(7));
        let keys = |m: &Mvcc, id| {
            m.lease(id).map(|l| l.keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>())
        };
        assert_eq!(keys(&m, 7), Some(vec![b"a".to_vec()]));
        assert_eq!(keys(&m, 8), Some(vec![b"b".to_vec()]));
        // A lease compare sees the key's lease.
        let cmp = pb::Compare {
            result: 0,
            target: 4,
            key: b("a"),
            target_union: Some(pb::compare::TargetUnion::Lease(7)),
            ..Default::default()
        };
        assert_eq!(m.compare(&cmp), Ok(true));
        // The store, leases included, survives a snapshot.
        assert_eq!(Mvcc::decode(&m.encode()).as_ref(), Some(&m));
        assert_eq!(m.encoded_len(), m.encode().len() as u64);
        // Revoking deletes the attached keys at one new revision, with events.
        lease_op(&mut m, leased("d", 7)).unwrap();
        let before = m.revision();
        let mut changes = Vec::new();
        let revoke = Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 7 });
        m.apply_tracked(&revoke, &mut changes).unwrap();
        assert_eq!(m.revision(), before + 1);
        let deleted: Vec<_> = changes.iter().map(|c| (c.key.to_vec(), c.revision)).collect();
        assert_eq!(deleted, [(b"a".to_vec(), before + 1), (b"d".to_vec(), before + 1)]);
        assert_eq!(lease_of(&m, "a"), None);
        assert_eq!(m.lease(7), None);
        assert_eq!(lease_op(&mut m, revoke), Err(MvccError::LeaseNotFound));
        let alive = |id| Request::LeaseKeepAlive(pb::LeaseKeepAliveRequest { id });
        match lease_op(&mut m, alive(8)).unwrap() {
            Applied::LeaseKeepAlive(r) => assert_eq!(r.ttl, 20),
            other => panic!("{other:?}"),
        }
        match lease_op(&mut m, alive(7)).unwrap() {
            Applied::LeaseKeepAlive(r) => assert_eq!(r.ttl, 0, "a revoked lease"),
            other => panic!("{other:?}"),
        }
        // An expiry proposed before a renewal was applied loses to it; a later one wins.
        lease_op(&mut m, leased("e", 8)).unwrap();
        let seen = m.lease(8).unwrap().renewals;
        lease_op(&mut m, alive(8)).unwrap();
        let expire = |renewals| Request::LeaseExpire(pb::LeaseExpire { id: 8, renewals });
        lease_op(&mut m, expire(seen)).unwrap();
        assert!(m.lease(8).is_some() && lease_of(&m, "e") == Some(8), "renewed: kept");
        lease_op(&mut m, expire(seen + 1)).unwrap();
        assert_eq!((m.lease(8), lease_of(&m, "e")), (None, None), "expired: revoked");
    }
}
