//! etcd's JSON gateway on the client port: `POST /v3/<service>/<method>` with the request
//! message as JSON, answered with the response message as JSON, as etcd's grpc-gateway does
//! (also under `/v3beta/`, the prefix etcd 3.3's clients use), so that
//! `curl -L http://127.0.0.1:2379/v3/kv/put -X POST -d '{"key": "Zm9v", "value": "YmFy"}'`
//! from etcd's documentation works unchanged.
//!
//! The JSON is protobuf's canonical mapping with the `.proto` field names, as etcd's gateway
//! writes it: bytes in base64, 64-bit integers as strings, enums by name, fields at their
//! default value left out. Requests may also use the lowerCamelCase names, numbers for
//! 64-bit integers and for enums. A token goes in the `Authorization` header (the value
//! `Authenticate` returned). Errors: the gRPC code mapped to an HTTP status, and
//! `{"error": ..., "code": ..., "message": ...}`.
//!
//! Served: every call of etcd 3.4's gateway. KV (range, put, deleterange, txn,
//! compaction), Lease (grant, revoke, timetolive, leases; also under `/v3/kv/lease/`),
//! Cluster (member add, remove, update, list, promote), Maintenance (alarm, status,
//! defragment, hash, hashkv, transfer-leadership), Auth (enable, disable, status,
//! authenticate, user and role add, get, list, delete, grant, revoke; user changepw), Lock
//! (lock, unlock), Election (campaign, proclaim, leader, resign; observe streamed).
//! Watch answers one `{"result": ...}` object per line for as long as the client stays,
//! LeaseKeepAlive one such line per request in the body, and Snapshot one per chunk of
//! the member's state.
//!
//! ```
//! use flotilla_server::gateway::{request_json, response_json};
//! use flotilla_server::pb;
//! let v = serde_json::json!({"key": "Zm9v", "range_end": "Zm9w", "limit": "10", "sort_order": "DESCEND"});
//! let r: pb::RangeRequest = request_json(&v).unwrap();
//! assert_eq!((&r.key[..], r.limit, r.sort_order), (&b"foo"[..], 10, 2));
//! let out = response_json(&pb::PutResponse { header: None, prev_kv: None });
//! assert_eq!(out, serde_json::json!({}));
//! ```

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use tonic::{Code, Status};

use crate::api::Api;
use crate::pb;

/// A request field that is not what the message says (the gateway's 400).
type FieldError = String;

/// The fields of a JSON request object, read by their `.proto` or lowerCamelCase names.
#[derive(Debug)]
pub struct In<'a>(&'a Map<String, Value>);

fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl<'a> In<'a> {
    fn new(v: &'a Value) -> Result<In<'a>, FieldError> {
        match v {
            Value::Object(m) => Ok(In(m)),
            other => Err(format!("expected a JSON object, not {other}")),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).or_else(|| self.0.get(&camel(name))).filter(|v| !v.is_null())
    }

    fn bytes(&self, name: &str) -> Result<Bytes, FieldError> {
        let Some(v) = self.get(name) else { return Ok(Bytes::new()) };
        let s = v.as_str().ok_or_else(|| format!("{name}: expected a base64 string"))?;
        // Standard or URL-safe alphabet, padded or not, as protobuf's JSON mapping reads.
        let s = s.trim_end_matches('=').replace('-', "+").replace('_', "/");
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("{name}: not base64: {e}"))
    }

    fn int<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, FieldError> {
        let text = match self.get(name) {
            None => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => return Err(format!("{name}: expected an integer, not {other}")),
        };
        text.parse().map(Some).map_err(|_| format!("{name}: {text:?} is not an integer"))
    }

    fn i64(&self, name: &str) -> Result<i64, FieldError> {
        Ok(self.int(name)?.unwrap_or(0))
    }

    fn bool(&self, name: &str) -> Result<bool, FieldError> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("{name}: expected true or false, not {other}")),
        }
    }

    fn string(&self, name: &str) -> Result<String, FieldError> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{name}: expected a string, not {other}")),
        }
    }

    /// An enum, by name (`names[i]` is value `i`) or by number.
    fn enumeration(&self, name: &str, names: &[&str]) -> Result<i32, FieldError> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::String(s)) => names
                .iter()
                .position(|n| n == s)
                .map(|i| i as i32)
                .ok_or_else(|| format!("{name}: {s:?} is not one of {}", names.join(", "))),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| format!("{name}: {n} is not an enum value")),
            Some(other) => Err(format!("{name}: expected an enum name, not {other}")),
        }
    }

    /// A list of enums, each by name or by number.
    fn enumerations(&self, name: &str, names: &[&str]) -> Result<Vec<i32>, FieldError> {
        let items = match self.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(format!("{name}: expected a list, not {other}")),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let one = Map::from_iter([(name.to_string(), item.clone())]);
            out.push(In(&one).enumeration(name, names)?);
        }
        Ok(out)
    }

    fn u64(&self, name: &str) -> Result<u64, FieldError> {
        Ok(self.int(name)?.unwrap_or(0))
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, FieldError> {
        let items = match self.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(format!("{name}: expected a list, not {other}")),
        };
        let text = |v: &Value| v.as_str().map(str::to_string);
        items
            .iter()
            .map(|v| text(v).ok_or_else(|| format!("{name}: {v} is not a string")))
            .collect()
    }

    fn list(&self, name: &str) -> Result<Vec<In<'a>>, FieldError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(In::new).collect(),
            Some(other) => Err(format!("{name}: expected a list, not {other}")),
        }
    }

    fn object(&self, name: &str) -> Result<Option<In<'a>>, FieldError> {
        self.get(name).map(In::new).transpose()
    }
}

fn base64_value(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// A JSON response object, leaving out fields at their default value.
#[derive(Default)]
struct Out(Map<String, Value>);

impl Out {
    fn put(mut self, name: &str, v: Value) -> Out {
        self.0.insert(name.to_string(), v);
        self
    }

    fn bytes(self, name: &str, b: &[u8]) -> Out {
        if b.is_empty() {
            return self;
        }
        self.put(name, base64_value(b))
    }

    fn int(self, name: &str, v: impl Into<i128>) -> Out {
        match v.into() {
            0 => self,
            v => self.put(name, Value::String(v.to_string())),
        }
    }

    /// A 32-bit integer: a JSON number (only 64-bit ones are strings).
    fn number(self, name: &str, v: u32) -> Out {
        match v {
            0 => self,
            v => self.put(name, Value::from(v)),
        }
    }

    /// An enum by name (`names[i]` is value `i`), by number if it has none.
    fn enumeration(self, name: &str, v: i32, names: &[&str]) -> Out {
        match usize::try_from(v).ok().and_then(|i| names.get(i)) {
            _ if v == 0 => self,
            Some(text) => self.string(name, text),
            None => self.put(name, Value::from(v)),
        }
    }

    fn bool(self, name: &str, b: bool) -> Out {
        if !b {
            return self;
        }
        self.put(name, Value::Bool(true))
    }

    fn string(self, name: &str, s: &str) -> Out {
        if s.is_empty() {
            return self;
        }
        self.put(name, Value::String(s.to_string()))
    }

    fn strings(self, name: &str, s: &[String]) -> Out {
        if s.is_empty() {
            return self;
        }
        self.put(name, Value::from(s.to_vec()))
    }

    fn object(self, name: &str, v: Option<Value>) -> Out {
        match v {
            Some(v) => self.put(name, v),
            None => self,
        }
    }

    fn list(self, name: &str, items: Vec<Value>) -> Out {
        if items.is_empty() {
            return self;
        }
        self.put(name, Value::Array(items))
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

const SORT_ORDER: &[&str] = &["NONE", "ASCEND", "DESCEND"];
const SORT_TARGET: &[&str] = &["KEY", "VERSION", "CREATE", "MOD", "VALUE"];
const COMPARE_RESULT: &[&str] = &["EQUAL", "GREATER", "LESS", "NOT_EQUAL"];
const COMPARE_TARGET: &[&str] = &["VERSION", "CREATE", "MOD", "VALUE", "LEASE"];
const WATCH_FILTER: &[&str] = &["NOPUT", "NODELETE"];
const EVENT_TYPE: &[&str] = &["PUT", "DELETE"];
const ALARM_ACTION: &[&str] = &["GET", "ACTIVATE", "DEACTIVATE"];
const ALARM_TYPE: &[&str] = &["NONE", "NOSPACE", "CORRUPT"];
const PERMISSION_TYPE: &[&str] = &["READ", "WRITE", "READWRITE"];

/// A request message read from its JSON form.
pub trait FromJson: Sized {
    /// Reads it from `v`'s fields.
    fn read(v: &In<'_>) -> Result<Self, FieldError>;
}

/// A response message in its JSON form.
pub trait ToJson {
    /// Writes it as a JSON value.
    fn json(&self) -> Value;
}

/// Reads a request message from JSON (see the module's documentation for the mapping).
pub fn request_json<T: FromJson>(v: &Value) -> Result<T, String> {
    T::read(&In::new(v)?)
}

/// Writes a response message as JSON (see the module's documentation for the mapping).
pub fn response_json<T: ToJson>(m: &T) -> Value {
    m.json()
}

impl FromJson for pb::RangeRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::RangeRequest {
            key: v.bytes("key")?,
            range_end: v.bytes("range_end")?,
            limit: v.i64("limit")?,
            revision: v.i64("revision")?,
            sort_order: v.enumeration("sort_order", SORT_ORDER)?,
            sort_target: v.enumeration("sort_target", SORT_TARGET)?,
            serializable: v.bool("serializable")?,
            keys_only: v.bool("keys_only")?,
            count_only: v.bool("count_only")?,
            min_mod_revision: v.i64("min_mod_revision")?,
            max_mod_revision: v.i64("max_mod_revision")?,
            min_create_revision: v.i64("min_create_revision")?,
            max_create_revision: v.i64("max_create_revision")?,
        })
    }
}

impl FromJson for pb::PutRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::PutRequest {
            key: v.bytes("key")?,
            value: v.bytes("value")?,
            lease: v.i64("lease")?,
            prev_kv: v.bool("prev_kv")?,
            ignore_value: v.bool("ignore_value")?,
            ignore_lease: v.bool("ignore_lease")?,
        })
    }
}

impl FromJson for pb::DeleteRangeRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::DeleteRangeRequest {
            key: v.bytes("key")?,
            range_end: v.bytes("range_end")?,
            prev_kv: v.bool("prev_kv")?,
        })
    }
}

impl FromJson for pb::Compare {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        use pb::compare::TargetUnion;
        let target = v.enumeration("target", COMPARE_TARGET)?;
        // The value compared with is the field the target names.
        let target_union = match target {
            0 => TargetUnion::Version(v.i64("version")?),
            1 => TargetUnion::CreateRevision(v.i64("create_revision")?),
            2 => TargetUnion::ModRevision(v.i64("mod_revision")?),
            3 => TargetUnion::Value(v.bytes("value")?),
            4 => TargetUnion::Lease(v.i64("lease")?),
            t => return Err(format!("target: {t} is not a compare target")),
        };
        Ok(pb::Compare {
            result: v.enumeration("result", COMPARE_RESULT)?,
            target,
            key: v.bytes("key")?,
            target_union: Some(target_union),
            range_end: v.bytes("range_end")?,
        })
    }
}

impl FromJson for pb::RequestOp {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        use pb::request_op::Request;
        let request = if let Some(r) = v.object("request_range")? {
            Request::RequestRange(FromJson::read(&r)?)
        } else if let Some(r) = v.object("request_put")? {
            Request::RequestPut(FromJson::read(&r)?)
        } else if let Some(r) = v.object("request_delete_range")? {
            Request::RequestDeleteRange(FromJson::read(&r)?)
        } else if let Some(r) = v.object("request_txn")? {
            Request::RequestTxn(FromJson::read(&r)?)
        } else {
            return Err("an operation needs request_range, request_put, request_delete_range \
                        or request_txn"
                .into());
        };
        Ok(pb::RequestOp { request: Some(request) })
    }
}

impl FromJson for pb::TxnRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        fn all<T: FromJson>(v: &In<'_>, name: &str) -> Result<Vec<T>, FieldError> {
            v.list(name)?.iter().map(T::read).collect()
        }
        Ok(pb::TxnRequest {
            compare: all(v, "compare")?,
            success: all(v, "success")?,
            failure: all(v, "failure")?,
        })
    }
}

impl FromJson for pb::CompactionRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::CompactionRequest { revision: v.i64("revision")?, physical: v.bool("physical")? })
    }
}

impl FromJson for pb::LeaseGrantRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaseGrantRequest { ttl: v.i64("TTL")?, id: v.i64("ID")? })
    }
}

impl FromJson for pb::LeaseRevokeRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaseRevokeRequest { id: v.i64("ID")? })
    }
}

impl FromJson for pb::LeaseTimeToLiveRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaseTimeToLiveRequest { id: v.i64("ID")?, keys: v.bool("keys")? })
    }
}

impl FromJson for pb::LeaseKeepAliveRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaseKeepAliveRequest { id: v.i64("ID")? })
    }
}

impl FromJson for pb::LeaseLeasesRequest {
    fn read(_: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaseLeasesRequest {})
    }
}

impl FromJson for pb::MemberListRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::MemberListRequest { linearizable: v.bool("linearizable")? })
    }
}

impl FromJson for pb::StatusRequest {
    fn read(_: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::StatusRequest {})
    }
}

impl FromJson for pb::WatchRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        use pb::watch_request::RequestUnion;
        let request = if let Some(c) = v.object("create_request")? {
            RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: c.bytes("key")?,
                range_end: c.bytes("range_end")?,
                start_revision: c.i64("start_revision")?,
                progress_notify: c.bool("progress_notify")?,
                filters: c.enumerations("filters", WATCH_FILTER)?,
                prev_kv: c.bool("prev_kv")?,
                watch_id: c.i64("watch_id")?,
                fragment: c.bool("fragment")?,
            })
        } else if let Some(c) = v.object("cancel_request")? {
            RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id: c.i64("watch_id")? })
        } else if v.object("progress_request")?.is_some() {
            RequestUnion::ProgressRequest(pb::WatchProgressRequest {})
        } else {
            return Err(
                "a watch request needs create_request, cancel_request or progress_request".into()
            );
        };
        Ok(pb::WatchRequest { request_union: Some(request) })
    }
}

impl FromJson for pb::AuthenticateRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthenticateRequest { name: v.string("name")?, password: v.string("password")? })
    }
}

/// Requests without fields: any JSON object (or an empty body) reads as one.
macro_rules! empty_requests {
    ($($t:ident),*) => {$(
        impl FromJson for pb::$t {
            fn read(_: &In<'_>) -> Result<Self, FieldError> {
                Ok(pb::$t {})
            }
        }
    )*};
}

empty_requests!(
    DefragmentRequest,
    HashRequest,
    SnapshotRequest,
    AuthEnableRequest,
    AuthDisableRequest,
    AuthStatusRequest,
    AuthUserListRequest,
    AuthRoleListRequest
);

impl FromJson for pb::MemberAddRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::MemberAddRequest {
            peer_urls: v.strings("peerURLs")?,
            is_learner: v.bool("isLearner")?,
        })
    }
}

impl FromJson for pb::MemberRemoveRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::MemberRemoveRequest { id: v.u64("ID")? })
    }
}

impl FromJson for pb::MemberUpdateRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::MemberUpdateRequest { id: v.u64("ID")?, peer_urls: v.strings("peerURLs")? })
    }
}

impl FromJson for pb::MemberPromoteRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::MemberPromoteRequest { id: v.u64("ID")? })
    }
}

impl FromJson for pb::AlarmRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AlarmRequest {
            action: v.enumeration("action", ALARM_ACTION)?,
            member_id: v.u64("memberID")?,
            alarm: v.enumeration("alarm", ALARM_TYPE)?,
        })
    }
}

impl FromJson for pb::HashKvRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::HashKvRequest { revision: v.i64("revision")? })
    }
}

impl FromJson for pb::MoveLeaderRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::MoveLeaderRequest { target_id: v.u64("targetID")? })
    }
}

impl FromJson for pb::AuthUserAddRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        let options = v.object("options")?;
        let options = options
            .map(|o| o.bool("no_password").map(|no_password| pb::UserAddOptions { no_password }))
            .transpose()?;
        Ok(pb::AuthUserAddRequest {
            name: v.string("name")?,
            password: v.string("password")?,
            options,
            hashed_password: v.string("hashedPassword")?,
        })
    }
}

impl FromJson for pb::AuthUserGetRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthUserGetRequest { name: v.string("name")? })
    }
}

impl FromJson for pb::AuthUserDeleteRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthUserDeleteRequest { name: v.string("name")? })
    }
}

impl FromJson for pb::AuthUserChangePasswordRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthUserChangePasswordRequest {
            name: v.string("name")?,
            password: v.string("password")?,
            hashed_password: v.string("hashedPassword")?,
        })
    }
}

impl FromJson for pb::AuthUserGrantRoleRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthUserGrantRoleRequest { user: v.string("user")?, role: v.string("role")? })
    }
}

impl FromJson for pb::AuthUserRevokeRoleRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthUserRevokeRoleRequest { name: v.string("name")?, role: v.string("role")? })
    }
}

impl FromJson for pb::AuthRoleAddRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthRoleAddRequest { name: v.string("name")? })
    }
}

impl FromJson for pb::AuthRoleGetRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthRoleGetRequest { role: v.string("role")? })
    }
}

impl FromJson for pb::AuthRoleDeleteRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthRoleDeleteRequest { role: v.string("role")? })
    }
}

impl FromJson for pb::Permission {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::Permission {
            perm_type: v.enumeration("permType", PERMISSION_TYPE)?,
            key: v.bytes("key")?,
            range_end: v.bytes("range_end")?,
        })
    }
}

impl FromJson for pb::AuthRoleGrantPermissionRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        let perm = v.object("perm")?.map(|p| FromJson::read(&p)).transpose()?;
        Ok(pb::AuthRoleGrantPermissionRequest { name: v.string("name")?, perm })
    }
}

impl FromJson for pb::LockRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LockRequest { name: v.bytes("name")?, lease: v.i64("lease")? })
    }
}

impl FromJson for pb::LeaderKey {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaderKey {
            name: v.bytes("name")?,
            key: v.bytes("key")?,
            rev: v.i64("rev")?,
            lease: v.i64("lease")?,
        })
    }
}

impl FromJson for pb::CampaignRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::CampaignRequest {
            name: v.bytes("name")?,
            lease: v.i64("lease")?,
            value: v.bytes("value")?,
        })
    }
}

impl FromJson for pb::ProclaimRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        let leader = v.object("leader")?.map(|l| FromJson::read(&l)).transpose()?;
        Ok(pb::ProclaimRequest { leader, value: v.bytes("value")? })
    }
}

impl FromJson for pb::ResignRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::ResignRequest {
            leader: v.object("leader")?.map(|l| FromJson::read(&l)).transpose()?,
        })
    }
}

impl FromJson for pb::LeaderRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::LeaderRequest { name: v.bytes("name")? })
    }
}

impl FromJson for pb::UnlockRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::UnlockRequest { key: v.bytes("key")? })
    }
}

impl FromJson for pb::AuthRoleRevokePermissionRequest {
    fn read(v: &In<'_>) -> Result<Self, FieldError> {
        Ok(pb::AuthRoleRevokePermissionRequest {
            role: v.string("role")?,
            key: v.bytes("key")?,
            range_end: v.bytes("range_end")?,
        })
    }
}

fn header(h: &Option<pb::ResponseHeader>) -> Option<Value> {
    h.as_ref().map(|h| {
        Out::default()
            .int("cluster_id", h.cluster_id)
            .int("member_id", h.member_id)
            .int("revision", h.revision)
            .int("raft_term", h.raft_term)
            .done()
    })
}

impl ToJson for pb::KeyValue {
    fn json(&self) -> Value {
        Out::default()
            .bytes("key", &self.key)
            .int("create_revision", self.create_revision)
            .int("mod_revision", self.mod_revision)
            .int("version", self.version)
            .bytes("value", &self.value)
            .int("lease", self.lease)
            .done()
    }
}

fn kvs(kvs: &[pb::KeyValue]) -> Vec<Value> {
    kvs.iter().map(ToJson::json).collect()
}

impl ToJson for pb::RangeResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .list("kvs", kvs(&self.kvs))
            .bool("more", self.more)
            .int("count", self.count)
            .done()
    }
}

impl ToJson for pb::PutResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .object("prev_kv", self.prev_kv.as_ref().map(ToJson::json))
            .done()
    }
}

impl ToJson for pb::DeleteRangeResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .int("deleted", self.deleted)
            .list("prev_kvs", kvs(&self.prev_kvs))
            .done()
    }
}

impl ToJson for pb::ResponseOp {
    fn json(&self) -> Value {
        use pb::response_op::Response;
        let out = Out::default();
        match &self.response {
            Some(Response::ResponseRange(r)) => out.put("response_range", r.json()),
            Some(Response::ResponsePut(r)) => out.put("response_put", r.json()),
            Some(Response::ResponseDeleteRange(r)) => out.put("response_delete_range", r.json()),
            Some(Response::ResponseTxn(r)) => out.put("response_txn", r.json()),
            None => out,
        }
        .done()
    }
}

impl ToJson for pb::TxnResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .bool("succeeded", self.succeeded)
            .list("responses", self.responses.iter().map(ToJson::json).collect())
            .done()
    }
}

impl ToJson for pb::LeaseGrantResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .int("ID", self.id)
            .int("TTL", self.ttl)
            .string("error", &self.error)
            .done()
    }
}

impl ToJson for pb::LeaseKeepAliveResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .int("ID", self.id)
            .int("TTL", self.ttl)
            .done()
    }
}

impl ToJson for pb::LeaseTimeToLiveResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .int("ID", self.id)
            .int("TTL", self.ttl)
            .int("grantedTTL", self.granted_ttl)
            .list("keys", self.keys.iter().map(|k| base64_value(k)).collect())
            .done()
    }
}

impl ToJson for pb::LeaseLeasesResponse {
    fn json(&self) -> Value {
        let leases = self.leases.iter().map(|l| Out::default().int("ID", l.id).done());
        Out::default()
            .object("header", header(&self.header))
            .list("leases", leases.collect())
            .done()
    }
}

impl ToJson for pb::Member {
    fn json(&self) -> Value {
        Out::default()
            .int("ID", self.id)
            .string("name", &self.name)
            .strings("peerURLs", &self.peer_urls)
            .strings("clientURLs", &self.client_urls)
            .bool("isLearner", self.is_learner)
            .done()
    }
}

/// Responses that hold a header and the members after the change.
macro_rules! members_responses {
    ($($t:ident),*) => {$(
        impl ToJson for pb::$t {
            fn json(&self) -> Value {
                Out::default()
                    .object("header", header(&self.header))
                    .list("members", self.members.iter().map(ToJson::json).collect())
                    .done()
            }
        }
    )*};
}

members_responses!(
    MemberListResponse,
    MemberRemoveResponse,
    MemberUpdateResponse,
    MemberPromoteResponse
);

impl ToJson for pb::MemberAddResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .object("member", self.member.as_ref().map(ToJson::json))
            .list("members", self.members.iter().map(ToJson::json).collect())
            .done()
    }
}

/// Responses that hold a header only.
macro_rules! header_responses {
    ($($t:ident),*) => {$(
        impl ToJson for pb::$t {
            fn json(&self) -> Value {
                Out::default().object("header", header(&self.header)).done()
            }
        }
    )*};
}

header_responses!(
    CompactionResponse,
    UnlockResponse,
    ProclaimResponse,
    ResignResponse,
    LeaseRevokeResponse,
    DefragmentResponse,
    MoveLeaderResponse,
    AuthEnableResponse,
    AuthDisableResponse,
    AuthUserAddResponse,
    AuthUserDeleteResponse,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse
);

impl ToJson for pb::AlarmResponse {
    fn json(&self) -> Value {
        let alarms = self.alarms.iter().map(|a| {
            Out::default()
                .int("memberID", a.member_id)
                .enumeration("alarm", a.alarm, ALARM_TYPE)
                .done()
        });
        Out::default()
            .object("header", header(&self.header))
            .list("alarms", alarms.collect())
            .done()
    }
}

impl ToJson for pb::LeaderKey {
    fn json(&self) -> Value {
        Out::default()
            .bytes("name", &self.name)
            .bytes("key", &self.key)
            .int("rev", self.rev)
            .int("lease", self.lease)
            .done()
    }
}

impl ToJson for pb::CampaignResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .object("leader", self.leader.as_ref().map(ToJson::json))
            .done()
    }
}

impl ToJson for pb::LeaderResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .object("kv", self.kv.as_ref().map(ToJson::json))
            .done()
    }
}

impl ToJson for pb::LockResponse {
    fn json(&self) -> Value {
        Out::default().object("header", header(&self.header)).bytes("key", &self.key).done()
    }
}

impl ToJson for pb::HashResponse {
    fn json(&self) -> Value {
        Out::default().object("header", header(&self.header)).number("hash", self.hash).done()
    }
}

impl ToJson for pb::HashKvResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .number("hash", self.hash)
            .int("compact_revision", self.compact_revision)
            .int("hash_revision", self.hash_revision)
            .done()
    }
}

impl ToJson for pb::SnapshotResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .int("remaining_bytes", self.remaining_bytes)
            .bytes("blob", &self.blob)
            .done()
    }
}

impl ToJson for pb::AuthStatusResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .bool("enabled", self.enabled)
            .int("authRevision", self.auth_revision)
            .done()
    }
}

impl ToJson for pb::AuthUserGetResponse {
    fn json(&self) -> Value {
        Out::default().object("header", header(&self.header)).strings("roles", &self.roles).done()
    }
}

impl ToJson for pb::AuthUserListResponse {
    fn json(&self) -> Value {
        Out::default().object("header", header(&self.header)).strings("users", &self.users).done()
    }
}

impl ToJson for pb::AuthRoleListResponse {
    fn json(&self) -> Value {
        Out::default().object("header", header(&self.header)).strings("roles", &self.roles).done()
    }
}

impl ToJson for pb::AuthRoleGetResponse {
    fn json(&self) -> Value {
        let perms = self.perm.iter().map(|p| {
            Out::default()
                .enumeration("permType", p.perm_type, PERMISSION_TYPE)
                .bytes("key", &p.key)
                .bytes("range_end", &p.range_end)
                .done()
        });
        Out::default().object("header", header(&self.header)).list("perm", perms.collect()).done()
    }
}

impl ToJson for pb::StatusResponse {
    fn json(&self) -> Value {
        Out::default()
            .object("header", header(&self.header))
            .string("version", &self.version)
            .int("dbSize", self.db_size)
            .int("leader", self.leader)
            .int("raftIndex", self.raft_index)
            .int("raftTerm", self.raft_term)
            .int("raftAppliedIndex", self.raft_applied_index)
            .strings("errors", &self.errors)
            .int("dbSizeInUse", self.db_size_in_use)
            .bool("isLearner", self.is_learner)
            .done()
    }
}

impl ToJson for pb::WatchResponse {
    fn json(&self) -> Value {
        let events = self.events.iter().map(|e| {
            Out::default()
                .enumeration("type", e.r#type, EVENT_TYPE)
                .object("kv", e.kv.as_ref().map(ToJson::json))
                .object("prev_kv", e.prev_kv.as_ref().map(ToJson::json))
                .done()
        });
        Out::default()
            .object("header", header(&self.header))
            .int("watch_id", self.watch_id)
            .bool("created", self.created)
            .bool("canceled", self.canceled)
            .int("compact_revision", self.compact_revision)
            .string("cancel_reason", &self.cancel_reason)
            .bool("fragment", self.fragment)
            .list("events", events.collect())
            .done()
    }
}

impl ToJson for pb::AuthenticateResponse {
    fn json(&self) -> Value {
        Out::default().object("header", header(&self.header)).string("token", &self.token).done()
    }
}

/// grpc-gateway's HTTP status for a gRPC code (its v1 mapping, which etcd 3.4 serves).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(s: &Status) -> Response {
    let body = serde_json::json!({
        "error": s.message(),
        "code": s.code() as i32,
        "message": s.message(),
    });
    json_response(http_status(s.code()), &body)
}

/// The token a call carries: its `Authorization` header (or `token`).
fn token(headers: &HeaderMap) -> Option<&str> {
    let t = headers.get("authorization").or_else(|| headers.get("token"));
    t.and_then(|t| t.to_str().ok())
}

/// A gRPC request of `msg`, with the token of the `Authorization` header (or `token`) as
/// its metadata, as the gRPC services read it.
fn with_token<T>(msg: T, headers: &HeaderMap) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token(headers).and_then(|t| tonic::metadata::MetadataValue::try_from(t).ok()) {
        req.metadata_mut().insert("token", t);
    }
    req
}

/// A stream of responses (a watch's, a snapshot's) as the gateway streams them: one
/// `{"result": ...}` per line (an `{"error": ...}` line if the stream fails).
struct Lines<S>(S);

impl<S, T> futures_core::Stream for Lines<S>
where
    S: futures_core::Stream<Item = Result<T, Status>> + Unpin,
    T: ToJson,
{
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.0).poll_next(cx) {
            Poll::Ready(Some(r)) => Poll::Ready(Some(Ok(stream_line(r.map(|r| r.json()))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A streaming call's requests (the JSON objects of its body, one after the other) and
/// the user it is made by; or the error answer.
async fn stream_call<T: FromJson>(
    api: &Api,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(std::collections::VecDeque<T>, Option<String>), Response> {
    let mut out = std::collections::VecDeque::new();
    for v in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let r = v.map_err(|e| format!("bad JSON: {e}")).and_then(|v| request_json::<T>(&v));
        out.push_back(r.map_err(|e| error_response(&Status::invalid_argument(e)))?);
    }
    let user = api.gateway_caller(token(headers)).await.map_err(|s| error_response(&s))?;
    Ok((out, user))
}

/// A line of a streamed answer: `{"result": ...}` or, once the stream failed,
/// `{"error": ...}` (grpc-gateway's form).
fn stream_line(r: Result<Value, Status>) -> Bytes {
    let line = match r {
        Ok(v) => serde_json::json!({ "result": v }),
        Err(s) => serde_json::json!({ "error": {
            "grpc_code": s.code() as i32,
            "http_code": http_status(s.code()).as_u16(),
            "message": s.message(),
            "http_status": http_status(s.code()).canonical_reason().unwrap_or(""),
        }}),
    };
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// etcd's gateway LeaseKeepAlive: each request of the body renews its lease, in order;
/// the answer holds one line per renewal, and ends with the body's requests (or at the
/// first failure).
async fn keep_alive(api: Api, headers: HeaderMap, body: Bytes) -> Response {
    let (requests, user) =
        match stream_call::<pb::LeaseKeepAliveRequest>(&api, &headers, &body).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
    let mut out = Vec::new();
    for req in requests {
        let r = api.renew(req, user.clone()).await;
        let failed = r.is_err();
        out.extend_from_slice(&stream_line(r.map(|r| r.json())));
        if failed {
            break;
        }
    }
    let kind = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (StatusCode::OK, kind, out).into_response()
}

/// etcd's gateway Watch: the body holds the stream's requests (JSON objects one after the
/// other, most often one `create_request`); the answer streams the responses, one per
/// line, until the client goes away (which closes the watchers).
async fn watch(api: Api, headers: HeaderMap, body: Bytes) -> Response {
    let (requests, user) = match stream_call::<pb::WatchRequest>(&api, &headers, &body).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    match api.open_watch(user, crate::api::WatchRequests::Given(requests)) {
        Ok(out) => streamed(out),
        Err(s) => error_response(&s),
    }
}

/// A streamed answer: one line per response of `out`.
fn streamed<S, T>(out: S) -> Response
where
    S: futures_core::Stream<Item = Result<T, Status>> + Unpin + Send + 'static,
    T: ToJson + 'static,
{
    let body = axum::body::Body::from_stream(Lines(out));
    let kind = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (StatusCode::OK, kind, body).into_response()
}

/// etcd's gateway Observe: the election's leader streamed as `{"result": ...}` lines, one
/// each time it or its value changes, while the client stays.
async fn observe(api: Api, headers: HeaderMap, body: Bytes) -> Response {
    use crate::rpc::election_server::Election;
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(&Status::invalid_argument(format!("bad JSON: {e}"))),
    };
    let req = match request_json::<pb::LeaderRequest>(&value) {
        Ok(r) => r,
        Err(e) => return error_response(&Status::invalid_argument(e)),
    };
    match Election::observe(&api, with_token(req, &headers)).await {
        Ok(out) => streamed(out.into_inner()),
        Err(s) => error_response(&s),
    }
}

/// etcd's gateway Snapshot: the member's state streamed as `{"result": {"blob": ...}}`
/// lines (base64 chunks; the last ends with the SHA-256 of the stream, as over gRPC).
async fn snapshot(api: Api, headers: HeaderMap) -> Response {
    use crate::rpc::maintenance_server::Maintenance;
    match Maintenance::snapshot(&api, with_token(pb::SnapshotRequest {}, &headers)).await {
        Ok(out) => streamed(out.into_inner()),
        Err(s) => error_response(&s),
    }
}

/// Decodes the body as `Req` (refused if larger than `max` bytes as protobuf, the limit of
/// the gRPC services), makes the call with the token of the `Authorization` header (or
/// `token`) as gRPC metadata, and answers the response as JSON.
async fn call<Req, Resp, F, Fut>(max: usize, headers: HeaderMap, body: Bytes, f: F) -> Response
where
    Req: FromJson + prost::Message,
    Resp: ToJson,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error_response(&Status::invalid_argument(format!("bad JSON: {e}"))),
        }
    };
    let msg = match request_json::<Req>(&value) {
        Ok(m) => m,
        Err(e) => return error_response(&Status::invalid_argument(e)),
    };
    let size = msg.encoded_len();
    if size > max {
        let e = format!("request of {size} bytes exceeds the limit of {max} (--max-request-bytes)");
        return error_response(&Status::resource_exhausted(e));
    }
    match f(with_token(msg, &headers)).await {
        Ok(r) => json_response(StatusCode::OK, &r.into_inner().json()),
        Err(s) => error_response(&s),
    }
}

/// The gateway's routes, under `/v3/` and `/v3beta/`, for `api`; requests larger than
/// `max_request_bytes` (as protobuf) are refused.
pub fn routes(api: Api, max_request_bytes: usize) -> axum::Router {
    use crate::rpc::auth_server::Auth;
    use crate::rpc::cluster_server::Cluster;
    use crate::rpc::election_server::Election;
    use crate::rpc::k_v_server::KV;
    use crate::rpc::lease_server::Lease;
    use crate::rpc::lock_server::Lock;
    use crate::rpc::maintenance_server::Maintenance;
    use axum::routing::post;
    macro_rules! route {
        ($router:expr, $path:expr, $trait:ident :: $method:ident) => {{
            let api = api.clone();
            let handler = move |headers: HeaderMap, body: Bytes| async move {
                let max = max_request_bytes;
                call(max, headers, body, |r| async move { $trait::$method(&api, r).await }).await
            };
            $router
                .route(concat!("/v3/", $path), post(handler.clone()))
                .route(concat!("/v3beta/", $path), post(handler))
        }};
    }
    let r = axum::Router::new();
    let r = route!(r, "kv/range", KV::range);
    let r = route!(r, "kv/put", KV::put);
    let r = route!(r, "kv/deleterange", KV::delete_range);
    let r = route!(r, "kv/txn", KV::txn);
    let r = route!(r, "kv/compaction", KV::compact);
    let r = route!(r, "lease/grant", Lease::lease_grant);
    let r = route!(r, "lease/revoke", Lease::lease_revoke);
    let r = route!(r, "kv/lease/revoke", Lease::lease_revoke);
    let r = route!(r, "lease/timetolive", Lease::lease_time_to_live);
    let r = route!(r, "kv/lease/timetolive", Lease::lease_time_to_live);
    let r = route!(r, "lease/leases", Lease::lease_leases);
    let r = route!(r, "kv/lease/leases", Lease::lease_leases);
    let r = route!(r, "cluster/member/add", Cluster::member_add);
    let r = route!(r, "cluster/member/remove", Cluster::member_remove);
    let r = route!(r, "cluster/member/update", Cluster::member_update);
    let r = route!(r, "cluster/member/list", Cluster::member_list);
    let r = route!(r, "cluster/member/promote", Cluster::member_promote);
    let r = route!(r, "maintenance/alarm", Maintenance::alarm);
    let r = route!(r, "maintenance/status", Maintenance::status);
    let r = route!(r, "maintenance/defragment", Maintenance::defragment);
    let r = route!(r, "maintenance/hash", Maintenance::hash);
    let r = route!(r, "maintenance/hashkv", Maintenance::hash_kv);
    let r = route!(r, "maintenance/transfer-leadership", Maintenance::move_leader);
    let r = route!(r, "auth/enable", Auth::auth_enable);
    let r = route!(r, "auth/disable", Auth::auth_disable);
    let r = route!(r, "auth/status", Auth::auth_status);
    let r = route!(r, "auth/authenticate", Auth::authenticate);
    let r = route!(r, "auth/user/add", Auth::user_add);
    let r = route!(r, "auth/user/get", Auth::user_get);
    let r = route!(r, "auth/user/list", Auth::user_list);
    let r = route!(r, "auth/user/delete", Auth::user_delete);
    let r = route!(r, "auth/user/changepw", Auth::user_change_password);
    let r = route!(r, "auth/user/grant", Auth::user_grant_role);
    let r = route!(r, "auth/user/revoke", Auth::user_revoke_role);
    let r = route!(r, "auth/role/add", Auth::role_add);
    let r = route!(r, "auth/role/get", Auth::role_get);
    let r = route!(r, "auth/role/list", Auth::role_list);
    let r = route!(r, "auth/role/delete", Auth::role_delete);
    let r = route!(r, "auth/role/grant", Auth::role_grant_permission);
    let r = route!(r, "auth/role/revoke", Auth::role_revoke_permission);
    let r = route!(r, "lock/lock", Lock::lock);
    let r = route!(r, "lock/unlock", Lock::unlock);
    let r = route!(r, "election/campaign", Election::campaign);
    let r = route!(r, "election/proclaim", Election::proclaim);
    let r = route!(r, "election/leader", Election::leader);
    let r = route!(r, "election/resign", Election::resign);
    let observe_api = api.clone();
    let observe_handler =
        move |headers: HeaderMap, body: Bytes| observe(observe_api.clone(), headers, body);
    let r = r
        .route("/v3/election/observe", post(observe_handler.clone()))
        .route("/v3beta/election/observe", post(observe_handler));
    let snapshot_api = api.clone();
    let snapshot_handler = move |headers: HeaderMap| snapshot(snapshot_api.clone(), headers);
    let r = r
        .route("/v3/maintenance/snapshot", post(snapshot_handler.clone()))
        .route("/v3beta/maintenance/snapshot", post(snapshot_handler));
    let watch_api = api.clone();
    let watch_handler =
        move |headers: HeaderMap, body: Bytes| watch(watch_api.clone(), headers, body);
    let keep_alive_handler =
        move |headers: HeaderMap, body: Bytes| keep_alive(api.clone(), headers, body);
    let r = r
        .route("/v3/watch", post(watch_handler.clone()))
        .route("/v3beta/watch", post(watch_handler))
        .route("/v3/lease/keepalive", post(keep_alive_handler.clone()))
        .route("/v3beta/lease/keepalive", post(keep_alive_handler));
    // Room for the base64 (4/3) and JSON around a request of the largest size: the size
    // that counts is checked once decoded.
    r.layer(axum::extract::DefaultBodyLimit::max(max_request_bytes.saturating_mul(2) + 4096))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_proto_and_camel_names_strings_and_numbers() {
        let txn: pb::TxnRequest = request_json(&json!({
            "compare": [{"key": "Zm9v", "result": "EQUAL", "target": "VALUE", "value": "YmFy"},
                        {"key": "Zm9v", "result": 2, "target": "MOD", "modRevision": 7}],
            "success": [{"request_put": {"key": "Zm9v", "value": "YmF6", "prevKv": true}}],
            "failure": [{"requestRange": {"key": "Zm9v", "limit": 3}}]
        }))
        .unwrap();
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(
            txn.compare[0].target_union,
            Some(pb::compare::TargetUnion::Value(Bytes::from_static(b"bar")))
        );
        assert_eq!((txn.compare[1].result, txn.compare[1].target), (2, 2));
        assert_eq!(txn.compare[1].target_union, Some(pb::compare::TargetUnion::ModRevision(7)));
        let Some(pb::request_op::Request::RequestPut(p)) = &txn.success[0].request else {
            panic!("a put")
        };
        assert!(p.prev_kv && &p.value[..] == b"baz");
        let Some(pb::request_op::Request::RequestRange(r)) = &txn.failure[0].request else {
            panic!("a range")
        };
        assert_eq!(r.limit, 3);
        // URL-safe base64, without padding, is read too.
        let put: pb::PutRequest = request_json(&json!({"key": "-_-_"})).unwrap();
        assert_eq!(&put.key[..], &[0xfb, 0xff, 0xbf][..]);
        let lease: pb::LeaseGrantRequest = request_json(&json!({"TTL": 60})).unwrap();
        assert_eq!(lease.ttl, 60);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = request_json::<pb::RangeRequest>(&json!({"key": "!!"})).unwrap_err();
        assert!(e.starts_with("key: not base64"), "{e}");
        let e = request_json::<pb::RangeRequest>(&json!({"limit": "ten"})).unwrap_err();
        assert_eq!(e, "limit: \"ten\" is not an integer");
        let e = request_json::<pb::RangeRequest>(&json!({"sort_order": "UP"})).unwrap_err();
        assert_eq!(e, "sort_order: \"UP\" is not one of NONE, ASCEND, DESCEND");
        let e = request_json::<pb::TxnRequest>(&json!({"success": [{}]})).unwrap_err();
        assert!(e.starts_with("an operation needs"), "{e}");
        let e = request_json::<pb::PutRequest>(&json!([1])).unwrap_err();
        assert!(e.starts_with("expected a JSON object"), "{e}");
    }

    #[test]
    fn responses_are_written_as_etcd_gateway_writes_them() {
        let r = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 14841639068965178418,
                member_id: 10276657743932975437,
                revision: 3,
                raft_term: 2,
            }),
            kvs: vec![pb::KeyValue {
                key: "foo".into(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: "bar".into(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        // As etcd 3.4's gateway answered a range, byte for byte (fields in .proto order).
        let etcd = String::from(
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"3","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmFy"}],"count":"1"}"#,
        );
        assert_eq!(serde_json::to_string(&r.json()).unwrap(), etcd);
        let t = pb::TxnResponse {
            header: None,
            succeeded: true,
            responses: vec![pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponsePut(pb::PutResponse::default())),
            }],
        };
        assert_eq!(t.json(), json!({"succeeded": true, "responses": [{"response_put": {}}]}));
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
    }
}
