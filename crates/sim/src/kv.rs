//! The simulated hosts' state machine is the server's own: `flotilla_server::mvcc::Mvcc`, the
//! store with etcd's MVCC semantics that `flotilla serve` applies its log to. Client commands
//! become the log entries the server proposes (`pb::InternalRequest`, protobuf-encoded), and
//! snapshots are the store's own encoding, so the simulator's faults exercise the real apply,
//! compaction and snapshot code.
//!
//! The clients' vocabulary stays small (get, put, delete, compare-and-swap) so that histories
//! can be checked for linearizability against a plain register model.

use bytes::Bytes;
use flotilla_server::mvcc::{Applied, Mvcc};
use flotilla_server::pb;
use prost::Message as _;

/// One client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read a key.
    Get(String),
    /// Write a key.
    Put(String, String),
    /// Remove a key.
    Delete(String),
    /// Swap in the value if the key holds `expected` (`None`: absent).
    Cas(String, Option<String>, String),
}

/// What applying a command returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A get's value.
    Read(Option<String>),
    /// A put or delete took effect.
    Done,
    /// Whether a cas swapped.
    Swapped(bool),
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn range(key: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: bytes(key), ..Default::default() }
}

impl Command {
    /// The request the server would propose for it: a get through the log is a read-only
    /// txn, a compare-and-swap a txn comparing the value (or, for absence, the version 0).
    pub fn request(&self) -> pb::internal_request::Request {
        use pb::internal_request::Request;
        use pb::request_op::Request as Op;
        match self {
            Command::Get(k) => Request::Txn(pb::TxnRequest {
                success: vec![pb::RequestOp { request: Some(Op::RequestRange(range(k))) }],
                ..Default::default()
            }),
            Command::Put(k, v) => Request::Put(pb::PutRequest {
                key: bytes(k),
                value: bytes(v),
                ..Default::default()
            }),
            Command::Delete(k) => {
                Request::DeleteRange(pb::DeleteRangeRequest { key: bytes(k), ..Default::default() })
            }
            Command::Cas(k, expected, v) => {
                use pb::compare::TargetUnion;
                let (target, union) = match expected {
                    Some(e) => (3, TargetUnion::Value(bytes(e))),
                    None => (0, TargetUnion::Version(0)),
                };
                let put = pb::PutRequest { key: bytes(k), value: bytes(v), ..Default::default() };
                Request::Txn(pb::TxnRequest {
                    compare: vec![pb::Compare {
                        result: 0,
                        target,
                        key: bytes(k),
                        target_union: Some(union),
                        range_end: Bytes::new(),
                    }],
                    success: vec![pb::RequestOp { request: Some(Op::RequestPut(put)) }],
                    failure: vec![],
                })
            }
        }
    }

    /// Encodes as the log entry the server proposes.
    pub fn encode(&self) -> Bytes {
        pb::InternalRequest::internal(self.request()).encode_to_vec().into()
    }
}

/// A compaction at `revision`, as the server's automatic compaction proposes it.
pub fn compaction(revision: i64) -> Bytes {
    let c = pb::CompactionRequest { revision, physical: false };
    pb::InternalRequest::internal(pb::internal_request::Request::Compaction(c))
        .encode_to_vec()
        .into()
}

/// The `step`-th step of the leaders' lease traffic (a step per tick led), if it makes an
/// operation: grants, puts of
/// keys attached to the lease, renewals and revocations over four lease ids and their own
/// keys (`lease/N`, never the clients' keys, whose histories are checked against a register
/// model a revocation's deletions would break). Some fail by design (a grant of an id in
/// use, a renewal of a revoked lease); either way the state hash check covers how every
/// member applied them and how snapshots carry the leases.
pub fn lease_op(step: u64) -> Option<Bytes> {
    use pb::internal_request::Request;
    // One operation every 10 steps; each lease id's cycle takes 40.
    let (phase, cycle) = (step % 40, step / 40);
    let id = (cycle % 4 + 1) as i64;
    let request = match phase {
        0 => Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 30, id }),
        10 => Request::Put(pb::PutRequest {
            key: Bytes::from(format!("lease/{id}")),
            value: bytes(&step.to_string()),
            lease: id,
            ..Default::default()
        }),
        20 => Request::LeaseKeepAlive(pb::LeaseKeepAliveRequest { id }),
        30 if cycle % 3 != 0 => Request::LeaseRevoke(pb::LeaseRevokeRequest { id }),
        _ => return None,
    };
    Some(pb::InternalRequest::internal(request).encode_to_vec().into())
}

/// The state machine: the server's MVCC store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    store: Mvcc,
}

impl Kv {
    /// Applies one committed entry's data, as the server's driver does. `Err` if it does not
    /// decode (no correct proposer writes such an entry). Requests the store refuses (a
    /// compaction at a revision already compacted) change nothing and answer `Done`.
    pub fn apply_entry(&mut self, data: &[u8]) -> Result<Output, String> {
        let req = pb::InternalRequest::decode(data).map_err(|e| e.to_string())?;
        let req = req.request.ok_or("an entry without a request")?;
        // A txn with a compare is a compare-and-swap; one without, a get through the log.
        let cas = matches!(&req, pb::internal_request::Request::Txn(t) if !t.compare.is_empty());
        Ok(match self.store.apply(&req) {
            Ok(Applied::Txn(t)) if cas => Output::Swapped(t.succeeded),
            Ok(Applied::Txn(t)) => match t.responses.first().and_then(|r| r.response.as_ref()) {
                Some(pb::response_op::Response::ResponseRange(r)) => Output::Read(
                    r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                ),
                _ => Output::Done,
            },
            Ok(_) | Err(_) => Output::Done,
        })
    }

    /// A command applied directly (a read served after ReadIndex, or a test).
    pub fn apply(&mut self, c: &Command) -> Output {
        if let Command::Get(k) = c {
            return Output::Read(self.get(k));
        }
        self.apply_entry(&c.encode()).expect("a command's own encoding decodes")
    }

    fn get(&self, key: &str) -> Option<String> {
        let r = self.store.range(&range(key)).ok()?;
        r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        self.store.revision()
    }

    /// The store's compaction revision.
    pub fn compact_revision(&self) -> i64 {
        self.store.compact_revision()
    }

    /// etcd's Hash of the whole store: members that applied the same entries agree.
    pub fn hash(&self) -> u32 {
        self.store.hash_all()
    }

    /// The whole store as a snapshot (Raft §7), in the server's encoding.
    pub fn encode(&self) -> Bytes {
        self.store.encode()
    }

    /// Decodes what [`Kv::encode`] wrote; `None` for anything else.
    pub fn decode(data: &[u8]) -> Option<Kv> {
        Mvcc::decode(data).map(|store| Kv { store })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_with_etcd_semantics() {
        let mut kv = Kv::default();
        let put = |k: &str, v: &str| Command::Put(k.into(), v.into());
        let cas =
            |k: &str, e: Option<&str>, v: &str| Command::Cas(k.into(), e.map(Into::into), v.into());
        assert_eq!(kv.apply_entry(&Command::Get("k".into()).encode()), Ok(Output::Read(None)));
        assert_eq!(kv.apply(&cas("k", Some("x"), "a")), Output::Swapped(false));
        assert_eq!(kv.apply(&cas("k", None, "a")), Output::Swapped(true));
        assert_eq!(kv.apply(&cas("k", None, "b")), Output::Swapped(false));
        assert_eq!(kv.apply(&cas("k", Some("a"), "b")), Output::Swapped(true));
        assert_eq!(
            kv.apply_entry(&Command::Get("k".into()).encode()),
            Ok(Output::Read(Some("b".into())))
        );
        assert_eq!(kv.apply(&put("j", "")), Output::Done);
        assert_eq!(kv.apply(&Command::Get("j".into())), Output::Read(Some(String::new())));
        assert_eq!(kv.apply(&Command::Delete("k".into())), Output::Done);
        assert_eq!(kv.apply(&Command::Get("k".into())), Output::Read(None));
        assert_eq!(kv.revision(), 4);
        assert!(kv.apply_entry(b"\xff\xff").is_err());
    }

    #[test]
    fn lease_traffic_grants_attaches_renews_and_revokes() {
        let mut kv = Kv::default();
        let mut hashes = Vec::new();
        for step in 1..=400 {
            if let Some(data) = lease_op(step) {
                kv.apply_entry(&data).expect("decodes");
                hashes.push(kv.hash());
            }
        }
        assert_eq!(hashes.len(), 36, "one operation every 10 steps, 4 of 10 revocations skipped");
        hashes.dedup();
        assert!(hashes.len() > 20, "the operations change the state: {}", hashes.len());
        // Some leases are live with their keys; the clients' keys are untouched.
        assert_eq!(kv.get("a"), None);
        let live = (1..=4).filter(|id| kv.get(&format!("lease/{id}")).is_some()).count();
        assert!(live > 0, "some lease keeps its key");
        let back = Kv::decode(&kv.encode()).expect("decodes");
        assert_eq!(back.hash(), kv.hash());
    }

    #[test]
    fn snapshots_round_trip_with_compaction() {
        let mut kv = Kv::default();
        assert_eq!(Kv::decode(&kv.encode()), Some(kv.clone()));
        for i in 0..10 {
            kv.apply(&Command::Put("a".into(), i.to_string()));
        }
        assert_eq!(kv.apply_entry(&compaction(5)), Ok(Output::Done));
        assert_eq!(kv.compact_revision(), 5);
        assert_eq!(kv.apply_entry(&compaction(3)), Ok(Output::Done), "refused: no change");
        let back = Kv::decode(&kv.encode()).expect("decodes");
        assert_eq!(back.hash(), kv.hash());
        assert_eq!(back, kv);
        let enc = kv.encode();
        assert_eq!(Kv::decode(&enc[..enc.len() - 1]), None);
    }
}
