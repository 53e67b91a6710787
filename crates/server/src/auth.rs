//! etcd's authentication and role-based access control: users with bcrypt-hashed passwords,
//! roles holding read and write permissions on keys and ranges, and tokens.
//!
//! The [`AuthStore`] (users, roles, whether auth is enabled) is replicated: every change goes
//! through the log as a [`pb::AuthChange`] and is applied in order on every member, and a
//! snapshot carries it. Tokens are etcd's "simple tokens": `Authenticate` checks the password
//! on the member that took it, then replicates the token it made, so that every member
//! accepts it; each member expires a token [`TOKEN_TTL`] (or `--auth-token-ttl`) after its
//! last use (tokens are not
//! persisted: after a restart a client authenticates again, as with etcd). With
//! `--auth-token jwt,...` tokens are etcd's JSON Web Tokens instead ([`Jwt`]): signed by the
//! member that checked the password, verified by any member with the public key, nothing
//! replicated; each carries the auth revision it was made at and is refused once the store
//! has changed since ("revision of auth store is old": clients authenticate again).
//!
//! A request is checked twice: by the member that takes it (to refuse early), and when it
//! is applied, with the user it was made for and the auth store as it is then, so a
//! permission revoked while a write is in flight is never bypassed.
//!
//! ```
//! use flotilla_server::auth::AuthStore;
//! use flotilla_server::pb::{self, auth_change::Op};
//!
//! let mut store = AuthStore::default();
//! let add = |name: &str| pb::AuthUserAddRequest { name: name.into(), ..Default::default() };
//! store.apply(&Op::UserAdd(add("root"))).unwrap();
//! store.apply(&Op::UserAdd(add("alice"))).unwrap();
//! let grant = |user: &str, role: &str| {
//!     Op::UserGrantRole(pb::AuthUserGrantRoleRequest { user: user.into(), role: role.into() })
//! };
//! store.apply(&grant("root", "root")).unwrap();
//! store.apply(&Op::RoleAdd(pb::AuthRoleAddRequest { name: "app".into() })).unwrap();
//! let perm = pb::Permission {
//!     perm_type: pb::perm_type::READWRITE,
//!     key: "app/".into(),
//!     range_end: "app0".into(), // the prefix "app/"
//! };
//! store
//!     .apply(&Op::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
//!         name: "app".into(),
//!         perm: Some(perm),
//!     }))
//!     .unwrap();
//! store.apply(&grant("alice", "app")).unwrap();
//! store.apply(&Op::Enable(pb::AuthEnableRequest {})).unwrap();
//! assert!(store.permitted("alice", b"app/x", b"", true));
//! assert!(!store.permitted("alice", b"other", b"", false));
//! assert!(store.permitted("root", b"other", b"", true));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::pb::{self, auth_change::Op, internal_request::Request};

/// The user that may do anything, and the role that makes a user so (etcd's names).
pub const ROOT: &str = "root";
/// How long a simple token stays valid after its last use by default (etcd's
/// `--auth-token-ttl`, 300 seconds).
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// bcrypt's cost for password hashes (etcd's default `--bcrypt-cost`).
pub const BCRYPT_COST: u32 = 10;

/// Why an auth request, or a request under auth, was refused. Messages are etcd's, which
/// clients match on.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AuthError {
    /// A token was asked for, or auth disabled, while auth is off.
    #[error("etcdserver: authentication is not enabled")]
    NotEnabled,
    /// Auth is on and the request carries no token (or names no user).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// `UserAdd` of a user that exists.
    #[error("etcdserver: user name already exists")]
    UserExists,
    /// No such user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// A role name is empty.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// `RoleAdd` of a role that exists.
    #[error("etcdserver: role name already exists")]
    RoleExists,
    /// No such role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// Revoking a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// Revoking a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Enabling auth with no `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserMissing,
    /// Enabling auth while `root` lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleMissing,
    /// A wrong name or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    Failed,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// The token is unknown here, or expired.
    #[error("etcdserver: invalid auth token")]
    InvalidToken,
    /// A JSON Web Token made before the latest change of the auth store.
    #[error("etcdserver: revision of auth store is old")]
    OldRevision,
    /// This member cannot sign tokens (`--auth-token jwt` without `priv-key`).
    #[error("etcdserver: this member has no key to sign tokens with")]
    CannotSign,
    /// Deleting `root`, or taking its role, while auth is enabled.
    #[error("etcdserver: invalid auth management")]
    InvalidManagement,
    /// A user added with neither a password nor the no-password option.
    #[error("etcdserver: password is empty")]
    PasswordEmpty,
    /// A permission without a key, or whose range ends before it starts.
    #[error("etcdserver: invalid permission: {0}")]
    InvalidPermission(&'static str),
}

impl AuthError {
    /// The gRPC status etcd answers with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::Failed
            | AuthError::InvalidManagement
            | AuthError::PasswordEmpty
            | AuthError::OldRevision
            | AuthError::InvalidPermission(_) => Code::InvalidArgument,
            AuthError::PermissionDenied => Code::PermissionDenied,
            AuthError::InvalidToken => Code::Unauthenticated,
            _ => Code::FailedPrecondition,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct User {
    /// bcrypt hash (empty with `no_password`).
    hash: String,
    no_password: bool,
    roles: BTreeSet<String>,
}

/// The replicated auth state: whether auth is enabled, the users and the roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthStore {
    enabled: bool,
    /// Counts changes (etcd's auth revision).
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Vec<pb::Permission>>,
}

impl AuthStore {
    /// Whether requests must carry a token.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The number of changes applied (etcd's auth revision).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies a change from the log. Deterministic: every member gets the same answer.
    /// `Token` only checks that the user can still log in (the caller records the token).
    pub fn apply(&mut self, op: &Op) -> Result<(), AuthError> {
        match op {
            Op::Enable(_) => {
                if self.enabled {
                    return Ok(());
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserMissing)?;
                if !root.roles.contains(ROOT) {
                    return Err(AuthError::RootRoleMissing);
                }
                self.enabled = true;
            }
            Op::Disable(_) => self.enabled = false,
            Op::Token(t) => {
                if !self.enabled {
                    return Err(AuthError::NotEnabled);
                }
                self.users.get(&t.name).ok_or(AuthError::Failed)?;
                return Ok(()); // not a change of the store
            }
            Op::UserAdd(u) => {
                if u.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(&u.name) {
                    return Err(AuthError::UserExists);
                }
                let no_password = u.options.as_ref().is_some_and(|o| o.no_password);
                let user =
                    User { hash: u.hashed_password.clone(), no_password, roles: BTreeSet::new() };
                self.users.insert(u.name.clone(), user);
            }
            Op::UserDelete(u) => {
                if self.enabled && u.name == ROOT {
                    return Err(AuthError::InvalidManagement);
                }
                self.users.remove(&u.name).ok_or(AuthError::UserNotFound)?;
            }
            Op::UserChangePassword(u) => {
                let user = self.users.get_mut(&u.name).ok_or(AuthError::UserNotFound)?;
                user.hash = u.hashed_password.clone();
                user.no_password = false;
            }
            Op::UserGrantRole(g) => {
                // The root role need not be added first (as etcd).
                if g.role != ROOT && !self.roles.contains_key(&g.role) {
                    return Err(AuthError::RoleNotFound);
                }
                let user = self.users.get_mut(&g.user).ok_or(AuthError::UserNotFound)?;
                if !user.roles.insert(g.role.clone()) {
                    return Ok(()); // granted already: nothing changes
                }
            }
            Op::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(AuthError::InvalidManagement);
                }
                let user = self.users.get_mut(&r.name).ok_or(AuthError::UserNotFound)?;
                if !user.roles.remove(&r.role) {
                    return Err(AuthError::RoleNotGranted);
                }
            }
            Op::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(AuthError::RoleExists);
                }
                self.roles.insert(r.name.clone(), Vec::new());
            }
            Op::RoleDelete(r) => {
                if self.enabled && r.role == ROOT {
                    return Err(AuthError::InvalidManagement);
                }
                self.roles.remove(&r.role).ok_or(AuthError::RoleNotFound)?;
                // As etcd: the role is taken from every user that had it.
                for u in self.users.values_mut() {
                    u.roles.remove(&r.role);
                }
            }
            Op::RoleGrantPermission(g) => {
                let perm = g.perm.clone().ok_or(AuthError::InvalidPermission("none given"))?;
                if perm.key.is_empty() {
                    return Err(AuthError::InvalidPermission("the key is empty"));
                }
                if !perm.range_end.is_empty()
                    && &perm.range_end[..] != b"\0"
                    && perm.range_end <= perm.key
                {
                    return Err(AuthError::InvalidPermission("the range ends before its key"));
                }
                if !(pb::perm_type::READ..=pb::perm_type::READWRITE).contains(&perm.perm_type) {
                    return Err(AuthError::InvalidPermission("unknown type"));
                }
                let perms = self.roles.get_mut(&g.name).ok_or(AuthError::RoleNotFound)?;
                // The same key and range again replaces its type (as etcd).
                match perms.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(p) => p.perm_type = perm.perm_type,
                    None => {
                        perms.push(perm);
                        perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                    }
                }
            }
            Op::RoleRevokePermission(r) => {
                let perms = self.roles.get_mut(&r.role).ok_or(AuthError::RoleNotFound)?;
                let at = perms
                    .iter()
                    .position(|p| p.key == r.key && p.range_end == r.range_end)
                    .ok_or(AuthError::PermissionNotGranted)?;
                perms.remove(at);
            }
        }
        self.revision += 1;
        Ok(())
    }

    /// A user's bcrypt hash, or `None` if it cannot log in with a password (no such user,
    /// or added with no password).
    pub fn password_hash(&self, name: &str) -> Option<&str> {
        self.users.get(name).filter(|u| !u.no_password).map(|u| u.hash.as_str())
    }

    /// Whether `name` exists.
    pub fn has_user(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The users, by name.
    pub fn users(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// The roles, by name.
    pub fn roles(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// A user's roles.
    pub fn user_roles(&self, name: &str) -> Result<Vec<String>, AuthError> {
        let u = self.users.get(name).ok_or(AuthError::UserNotFound)?;
        Ok(u.roles.iter().cloned().collect())
    }

    /// A role's permissions.
    pub fn role_permissions(&self, role: &str) -> Result<Vec<pb::Permission>, AuthError> {
        self.roles.get(role).cloned().ok_or(AuthError::RoleNotFound)
    }

    /// Whether `user` holds the root role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Whether `user` may read (or, with `write`, write) every key of `[key, range_end)`
    /// (`range_end` as in a Range: empty for `key` alone, `\0` for every key from `key`):
    /// the union of its roles' permissions of that kind must cover the whole range.
    pub fn permitted(&self, user: &str, key: &[u8], range_end: &[u8], write: bool) -> bool {
        let Some(u) = self.users.get(user) else { return false };
        if u.roles.contains(ROOT) {
            return true;
        }
        let wanted = if write { pb::perm_type::WRITE } else { pb::perm_type::READ };
        let mut have: Vec<Interval> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .filter(|p| p.perm_type == wanted || p.perm_type == pb::perm_type::READWRITE)
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        have.sort_by(|a, b| a.0.cmp(&b.0));
        covers(&have, &interval(key, range_end))
    }

    fn require(&self, user: &str, key: &[u8], end: &[u8], write: bool) -> Result<(), AuthError> {
        if self.permitted(user, key, end, write) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Checks a Range for `user`.
    pub fn check_range(&self, user: &str, r: &pb::RangeRequest) -> Result<(), AuthError> {
        self.require(user, &r.key, &r.range_end, false)
    }

    /// Checks a request for `user` (auth enabled). Lease revocations are checked by the
    /// caller, which knows the keys attached to the lease; requests the members make
    /// themselves carry no user and are not checked.
    pub fn check(&self, user: &str, req: &Request) -> Result<(), AuthError> {
        if !self.has_user(user) {
            return Err(AuthError::UserNotFound);
        }
        match req {
            Request::Put(p) => {
                self.require(user, &p.key, b"", true)?;
                if p.prev_kv {
                    self.require(user, &p.key, b"", false)?;
                }
                Ok(())
            }
            Request::DeleteRange(d) => {
                self.require(user, &d.key, &d.range_end, true)?;
                if d.prev_kv {
                    self.require(user, &d.key, &d.range_end, false)?;
                }
                Ok(())
            }
            Request::Txn(t) => self.check_txn(user, t),
            Request::Auth(_)
            | Request::MemberChange(_)
            | Request::MemberAttr(_)
            | Request::Alarm(_) => {
                if self.is_root(user) {
                    Ok(())
                } else {
                    Err(AuthError::PermissionDenied)
                }
            }
            Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
            | Request::LeaseKeepAlive(_)
            | Request::LeaseExpire(_) => Ok(()),
        }
    }

    /// Whether a client's `op`, made for `user` (or `anonymous`ly, while auth was
    /// disabled), may be applied, as this store is now: always while auth is disabled. A
    /// lease revocation deletes the lease's keys (`lease_keys`), so the user must be allowed
    /// to write each one (as etcd). Deterministic: every member decides the same.
    pub fn authorize_applied<'a>(
        &self,
        user: &str,
        anonymous: bool,
        op: &Request,
        lease_keys: impl Fn(i64) -> Option<&'a BTreeSet<bytes::Bytes>>,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if anonymous {
            // Asking for a token needs none (its password was checked); nothing else may
            // go without a user once auth is on.
            return match op {
                Request::Auth(pb::AuthChange { op: Some(Op::Token(_)) }) => Ok(()),
                _ => Err(AuthError::UserEmpty),
            };
        }
        self.check(user, op)?;
        if let Request::LeaseRevoke(r) = op {
            if let Some(keys) = lease_keys(r.id) {
                if !keys.iter().all(|k| self.permitted(user, k, b"", true)) {
                    return Err(AuthError::PermissionDenied);
                }
            }
        }
        Ok(())
    }

    fn check_txn(&self, user: &str, t: &pb::TxnRequest) -> Result<(), AuthError> {
        for c in &t.compare {
            self.require(user, &c.key, &c.range_end, false)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            use pb::request_op::Request as R;
            match &op.request {
                Some(R::RequestRange(r)) => self.check_range(user, r)?,
                Some(R::RequestPut(p)) => self.check(user, &Request::Put(p.clone()))?,
                Some(R::RequestDeleteRange(d)) => {
                    self.check(user, &Request::DeleteRange(d.clone()))?
                }
                Some(R::RequestTxn(t)) => self.check_txn(user, t)?,
                None => {}
            }
        }
        Ok(())
    }

    /// The store as a snapshot holds it.
    pub fn to_state(&self) -> pb::AuthState {
        pb::AuthState {
            enabled: self.enabled,
            revision: self.revision,
            users: self
                .users
                .iter()
                .map(|(name, u)| pb::AuthUserState {
                    name: name.clone(),
                    hashed_password: u.hash.clone(),
                    no_password: u.no_password,
                    roles: u.roles.iter().cloned().collect(),
                })
                .collect(),
            roles: self
                .roles
                .iter()
                .map(|(name, perms)| pb::AuthRoleState { name: name.clone(), perms: perms.clone() })
                .collect(),
        }
    }

    /// The store a snapshot holds.
    pub fn from_state(s: pb::AuthState) -> AuthStore {
        AuthStore {
            enabled: s.enabled,
            revision: s.revision,
            users: s
                .users
                .into_iter()
                .map(|u| {
                    let roles = u.roles.into_iter().collect();
                    (u.name, User { hash: u.hashed_password, no_password: u.no_password, roles })
                })
                .collect(),
            roles: s.roles.into_iter().map(|r| (r.name, r.perms)).collect(),
        }
    }
}

/// A half-open key interval; `None` as its end: no end.
type Interval = (Vec<u8>, Option<Vec<u8>>);

fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    match range_end {
        [] => {
            let mut end = key.to_vec();
            end.push(0); // the smallest key after `key`
            (key.to_vec(), Some(end))
        }
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

/// Whether the union of `have` (sorted by start) covers `want`.
fn covers(have: &[Interval], want: &Interval) -> bool {
    let (start, end) = want;
    if let Some(e) = end {
        if e <= start {
            return true; // an empty range: it reads or writes nothing
        }
    }
    let mut reached = start.clone(); // everything in [start, reached) is covered
    for (s, e) in have {
        if *s > reached {
            break; // a gap
        }
        match e {
            None => return true,
            Some(e) if *e > reached => reached = e.clone(),
            Some(_) => {}
        }
        if end.as_ref().is_some_and(|end| reached >= *end) {
            return true;
        }
    }
    false
}

/// The tokens this member accepts, each with its user and when it expires unless used.
#[derive(Debug)]
pub struct Tokens {
    map: HashMap<String, (String, Instant)>,
    ttl: Duration,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens { map: HashMap::new(), ttl: TOKEN_TTL }
    }
}

impl Tokens {
    /// Tokens that expire `ttl` after their last use (`--auth-token-ttl`).
    pub fn with_ttl(ttl: Duration) -> Tokens {
        Tokens { map: HashMap::new(), ttl }
    }

    /// Records a token for `user`, valid for the TTL from `now`.
    pub fn insert(&mut self, token: String, user: String, now: Instant) {
        if self.map.len() >= 1024 {
            self.map.retain(|_, (_, exp)| *exp > now);
        }
        self.map.insert(token, (user, now + self.ttl));
    }

    /// The user of a valid token, whose life starts again (as etcd's simple tokens).
    pub fn resolve(&mut self, token: &str, now: Instant) -> Option<String> {
        match self.map.get_mut(token) {
            Some((user, exp)) if *exp > now => {
                *exp = now + self.ttl;
                Some(user.clone())
            }
            Some(_) => {
                self.map.remove(token);
                None
            }
            None => None,
        }
    }

    /// Drops every token of `user` (deleted, or its password changed).
    pub fn forget_user(&mut self, user: &str) {
        self.map.retain(|_, (u, _)| u != user);
    }
}

/// The auth store and tokens, shared by the driver (which applies changes) and the gRPC
/// services (which check requests). All on the driver's thread: the lock is never contended.
#[derive(Debug, Default)]
pub struct Auth {
    /// The replicated store.
    pub store: AuthStore,
    /// This member's tokens.
    pub tokens: Tokens,
    /// Set with `--auth-token jwt,...`: tokens are JSON Web Tokens (and `tokens` unused).
    pub jwt: Option<Arc<Jwt>>,
}

/// [`Auth`] behind a lock.
#[derive(Clone, Debug, Default)]
pub struct SharedAuth(Arc<Mutex<Auth>>);

impl SharedAuth {
    /// Locks it (a panic while it was held leaves a usable state: every change to it is
    /// one assignment or insertion).
    pub fn lock(&self) -> MutexGuard<'_, Auth> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who a request with `token` (or, without one, a verified client certificate whose
    /// common name `cert_name` gives) is made by: `Ok(None)` while auth is disabled.
    pub fn caller(
        &self,
        token: Option<&str>,
        cert_name: impl FnOnce() -> Option<String>,
    ) -> Result<Option<String>, AuthError> {
        let mut a = self.lock();
        if !a.store.enabled() {
            return Ok(None);
        }
        if token.is_none() {
            if let Some(name) = cert_name() {
                // The certificate names a user (etcd's identity from TLS): it must exist.
                return match a.store.has_user(&name) {
                    true => Ok(Some(name)),
                    false => Err(AuthError::PermissionDenied),
                };
            }
        }
        let token = token.ok_or(AuthError::UserEmpty)?;
        let user = match &a.jwt {
            Some(jwt) => {
                let (user, revision) = jwt.verify(token)?;
                // etcd's rule: a token made before a change of the store (a password, a
                // role, a permission) is refused; the client authenticates again.
                if revision < a.store.revision() {
                    return Err(AuthError::OldRevision);
                }
                user
            }
            None => a.tokens.resolve(token, Instant::now()).ok_or(AuthError::InvalidToken)?,
        };
        if !a.store.has_user(&user) {
            return Err(AuthError::InvalidToken);
        }
        Ok(Some(user))
    }
}

/// etcd's JWT tokens (`--auth-token jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DUR`):
/// claims `username`, `revision` (the auth store's) and `exp`, signed with the private key
/// (or, for the `HS*` methods, the secret in `priv-key`).
///
/// ```
/// use flotilla_server::auth::Jwt;
/// // HMAC: the "private key" file holds the shared secret.
/// let dir = std::env::temp_dir().join(format!("jwt-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("secret"), "a long shared secret").unwrap();
/// let spec = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", dir.join("secret").display());
/// let jwt = Jwt::from_spec(&spec).unwrap().expect("jwt, not simple");
/// let token = jwt.sign("alice", 7).unwrap();
/// assert_eq!(jwt.verify(&token).unwrap(), ("alice".to_string(), 7));
/// assert!(Jwt::from_spec("simple").unwrap().is_none());
/// ```
pub struct Jwt {
    alg: jsonwebtoken::Algorithm,
    encoding: Option<jsonwebtoken::EncodingKey>,
    decoding: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("alg", &self.alg)
            .field("signs", &self.encoding.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Jwt {
    /// Reads `--auth-token`: `simple` (the default) gives `None`; `jwt,...` its keys, read
    /// from their files now. Errors name the option and the file.
    pub fn from_spec(spec: &str) -> Result<Option<Jwt>, String> {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
        let mut parts = spec.split(',').map(str::trim);
        match parts.next() {
            Some("simple" | "") => {
                return match parts.next() {
                    None => Ok(None),
                    Some(p) => Err(format!("--auth-token simple takes no options (got {p:?})")),
                }
            }
            Some("jwt") => {}
            Some(other) => {
                return Err(format!("--auth-token: {other:?} is not simple or jwt"));
            }
            None => return Ok(None),
        }
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, "5m".to_string());
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                format!("--auth-token jwt: {p:?} is not key=value (pub-key, priv-key, sign-method, ttl)")
            })?;
            match k {
                "pub-key" => public = Some(v.to_string()),
                "priv-key" => private = Some(v.to_string()),
                "sign-method" => method = Some(v.to_string()),
                "ttl" => ttl = v.to_string(),
                _ => return Err(format!("--auth-token jwt: unknown option {k:?}")),
            }
        }
        let method =
            method.ok_or("--auth-token jwt needs sign-method (RS256, ES256, HS256 ...)")?;
        let alg: Algorithm = method
            .parse()
            .map_err(|_| format!("--auth-token jwt: unknown sign-method {method:?}"))?;
        // A bare number is in seconds; `5m`, `1h`, `30s` as etcd's flags.
        let ttl = crate::config::parse_duration(&ttl, Duration::from_secs(1))
            .ok_or_else(|| format!("--auth-token jwt: ttl {ttl:?} is not a duration (5m, 30s)"))?;
        if ttl.is_zero() {
            return Err("--auth-token jwt: ttl must be more than 0".into());
        }
        let read = |what: &str, path: &str| {
            std::fs::read(path).map_err(|e| format!("--auth-token jwt: {what} {path}: {e}"))
        };
        let bad = |what: &str, path: &str, e: jsonwebtoken::errors::Error| {
            format!("--auth-token jwt: {what} {path} is not a {method} key: {e}")
        };
        let (encoding, decoding) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let path =
                    private.ok_or("--auth-token jwt: HS* methods need priv-key (the secret)")?;
                let secret = read("priv-key", &path)?;
                if secret.is_empty() {
                    return Err(format!("--auth-token jwt: priv-key {path} is empty"));
                }
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            _ => {
                let path = public.ok_or("--auth-token jwt: pub-key is needed to verify tokens")?;
                let pem = read("pub-key", &path)?;
                let decoding = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .map_err(|e| bad("pub-key", &path, e))?;
                let encoding = match private {
                    // A member without the private key verifies tokens but makes none.
                    None => None,
                    Some(path) => {
                        let pem = read("priv-key", &path)?;
                        let key = match alg {
                            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
                            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
                            _ => EncodingKey::from_rsa_pem(&pem),
                        };
                        Some(key.map_err(|e| bad("priv-key", &path, e))?)
                    }
                };
                (encoding, decoding)
            }
        };
        let jwt = Jwt { alg, encoding, decoding, ttl };
        // The pair must match: a token this member signs must verify here.
        if jwt.encoding.is_some() {
            let t = jwt.sign("check", 0).map_err(|e| format!("--auth-token jwt: {e}"))?;
            jwt.verify(&t)
                .map_err(|_| "--auth-token jwt: priv-key and pub-key are not a pair".to_string())?;
        }
        Ok(Some(jwt))
    }

    /// A token for `user` at auth revision `revision`, valid for the configured TTL.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotSign)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| AuthError::Failed)?;
        let claims = serde_json::json!({
            "username": user,
            "revision": revision,
            "exp": (now + self.ttl).as_secs(),
        });
        jsonwebtoken::encode(&jsonwebtoken::Header::new(self.alg), &claims, key)
            .map_err(|_| AuthError::Failed)
    }

    /// The user and auth revision of a valid token (signature and expiry checked).
    pub fn verify(&self, token: &str) -> Result<(String, u64), AuthError> {
        let mut v = jsonwebtoken::Validation::new(self.alg);
        v.leeway = 0;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &v)
            .map_err(|_| AuthError::InvalidToken)?;
        let user = data.claims["username"].as_str().ok_or(AuthError::InvalidToken)?;
        let revision = data.claims["revision"].as_u64().ok_or(AuthError::InvalidToken)?;
        Ok((user.to_string(), revision))
    }
}

/// A bcrypt hash of `password` (slow by design: run it off the driver's thread).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|_| AuthError::Failed)
}

/// Whether `password` matches `hash` (slow by design: run it off the driver's thread).
pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// A new token: 128 random bits, in hex.
pub fn new_token() -> Result<String, AuthError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| AuthError::Failed)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(perms: &[(i32, &str, &str)]) -> AuthStore {
        let mut s = AuthStore::default();
        for name in ["root", "u"] {
            let add = pb::AuthUserAddRequest { name: name.into(), ..Default::default() };
            s.apply(&Op::UserAdd(add)).unwrap();
        }
        let grant = |u: &str, r: &str| {
            Op::UserGrantRole(pb::AuthUserGrantRoleRequest { user: u.into(), role: r.into() })
        };
        s.apply(&grant("root", ROOT)).unwrap();
        s.apply(&Op::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() })).unwrap();
        for (t, k, e) in perms {
            let perm = pb::Permission {
                perm_type: *t,
                key: k.as_bytes().to_vec().into(),
                range_end: e.as_bytes().to_vec().into(),
            };
            let g = pb::AuthRoleGrantPermissionRequest { name: "r".into(), perm: Some(perm) };
            s.apply(&Op::RoleGrantPermission(g)).unwrap();
        }
        s.apply(&grant("u", "r")).unwrap();
        s.apply(&Op::Enable(pb::AuthEnableRequest {})).unwrap();
        s
    }

    /// A range is permitted only if the union of the user's permissions covers all of it:
    /// adjacent and overlapping grants join; a gap or an end beyond them refuses.
    #[test]
    fn permissions_cover_a_range_only_as_a_union_without_gaps() {
        use pb::perm_type::{READ, READWRITE, WRITE};
        let s = store_with(&[(READ, "a", "c"), (READWRITE, "c", "e"), (WRITE, "x", "")]);
        assert!(s.permitted("u", b"a", b"e", false)); // joined at "c"
        assert!(s.permitted("u", b"b", b"", false));
        assert!(!s.permitted("u", b"a", b"e", true)); // [a, c) is read only
        assert!(s.permitted("u", b"c", b"e", true));
        assert!(!s.permitted("u", b"a", b"f", false)); // beyond the grants
        assert!(!s.permitted("u", b"a", b"\0", false)); // every key from "a"
        assert!(s.permitted("u", b"x", b"", true));
        assert!(!s.permitted("u", b"x", b"", false)); // write only
        assert!(!s.permitted("u", b"xa", b"", true)); // one key, not a prefix
        assert!(s.permitted("root", b"\0", b"\0", true));
        assert!(!s.permitted("nobody", b"a", b"", false));
        let all = store_with(&[(READ, "k", "\0")]);
        assert!(all.permitted("u", b"k", b"\0", false));
        assert!(all.permitted("u", b"zzz", b"", false));
        assert!(!all.permitted("u", b"j", b"", false));
    }

    /// Auth can only be enabled with a root user holding the root role, and while it is,
    /// root can be neither deleted nor stripped of its role.
    #[test]
    fn auth_needs_root_and_keeps_it() {
        let mut s = AuthStore::default();
        assert_eq!(s.apply(&Op::Enable(pb::AuthEnableRequest {})), Err(AuthError::RootUserMissing));
        let add = pb::AuthUserAddRequest { name: ROOT.into(), ..Default::default() };
        s.apply(&Op::UserAdd(add.clone())).unwrap();
        assert_eq!(s.apply(&Op::UserAdd(add)), Err(AuthError::UserExists));
        assert_eq!(s.apply(&Op::Enable(pb::AuthEnableRequest {})), Err(AuthError::RootRoleMissing));
        let g = pb::AuthUserGrantRoleRequest { user: ROOT.into(), role: ROOT.into() };
        s.apply(&Op::UserGrantRole(g)).unwrap();
        s.apply(&Op::Enable(pb::AuthEnableRequest {})).unwrap();
        assert!(s.enabled());
        let del = pb::AuthUserDeleteRequest { name: ROOT.into() };
        assert_eq!(s.apply(&Op::UserDelete(del.clone())), Err(AuthError::InvalidManagement));
        let revoke = pb::AuthUserRevokeRoleRequest { name: ROOT.into(), role: ROOT.into() };
        assert_eq!(s.apply(&Op::UserRevokeRole(revoke)), Err(AuthError::InvalidManagement));
        s.apply(&Op::Disable(pb::AuthDisableRequest {})).unwrap();
        s.apply(&Op::UserDelete(del)).unwrap();
        assert!(!s.has_user(ROOT));
    }

    /// Deleting a role takes it from its users; revoking what was never granted is an
    /// error; the store survives its snapshot form unchanged.
    #[test]
    fn role_changes_reach_users_and_the_store_round_trips() {
        let mut s = store_with(&[(pb::perm_type::READ, "a", "b")]);
        assert_eq!(s.user_roles("u").unwrap(), vec!["r".to_string()]);
        let back = AuthStore::from_state(s.to_state());
        assert_eq!(back, s);
        let rr = pb::AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: "zz".into(),
            range_end: "".into(),
        };
        assert_eq!(s.apply(&Op::RoleRevokePermission(rr)), Err(AuthError::PermissionNotGranted));
        s.apply(&Op::RoleDelete(pb::AuthRoleDeleteRequest { role: "r".into() })).unwrap();
        assert!(s.user_roles("u").unwrap().is_empty());
        assert!(!s.permitted("u", b"a", b"", false));
    }

    /// A txn is checked op by op, compares included, and nested txns too.
    #[test]
    fn a_txn_needs_permission_for_every_compare_and_op() {
        use pb::request_op::Request as R;
        let s = store_with(&[(pb::perm_type::READWRITE, "a", "b")]);
        let put = |k: &str| pb::RequestOp {
            request: Some(R::RequestPut(pb::PutRequest {
                key: k.to_string().into(),
                ..Default::default()
            })),
        };
        let cmp = |k: &str| pb::Compare { key: k.to_string().into(), ..Default::default() };
        let ok =
            pb::TxnRequest { compare: vec![cmp("a1")], success: vec![put("a2")], failure: vec![] };
        assert_eq!(s.check("u", &Request::Txn(ok.clone())), Ok(()));
        let bad_cmp = pb::TxnRequest { compare: vec![cmp("z")], ..ok.clone() };
        assert_eq!(s.check("u", &Request::Txn(bad_cmp)), Err(AuthError::PermissionDenied));
        let nested = pb::TxnRequest {
            failure: vec![pb::RequestOp {
                request: Some(R::RequestTxn(pb::TxnRequest {
                    success: vec![put("z")],
                    ..Default::default()
                })),
            }],
            ..ok
        };
        assert_eq!(s.check("u", &Request::Txn(nested)), Err(AuthError::PermissionDenied));
    }

    /// What is checked where a request is applied: a request made without a user while auth
    /// was off is refused once it is on (but for asking a token), a revoked permission
    /// refuses a request that passed the check where it was taken, and revoking a lease
    /// needs write permission on each of its keys.
    #[test]
    fn requests_are_checked_again_against_the_store_where_they_are_applied() {
        let put = |k: &str| {
            Request::Put(pb::PutRequest { key: k.to_string().into(), ..Default::default() })
        };
        let no_leases = |_| None;
        let mut s = store_with(&[(pb::perm_type::READWRITE, "a", "b")]);
        assert_eq!(s.authorize_applied("", true, &put("a1"), no_leases), Err(AuthError::UserEmpty));
        let token = pb::AuthToken { name: "u".into(), token: "t".into() };
        let login = Request::Auth(pb::AuthChange { op: Some(Op::Token(token)) });
        assert_eq!(s.authorize_applied("", true, &login, no_leases), Ok(()));
        assert_eq!(s.authorize_applied("u", false, &put("a1"), no_leases), Ok(()));
        let revoke = pb::AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: "a".into(),
            range_end: "b".into(),
        };
        s.apply(&Op::RoleRevokePermission(revoke)).unwrap();
        let denied = s.authorize_applied("u", false, &put("a1"), no_leases);
        assert_eq!(denied, Err(AuthError::PermissionDenied));

        let s = store_with(&[(pb::perm_type::WRITE, "a", "b")]);
        let keys: BTreeSet<bytes::Bytes> =
            ["a1", "z"].into_iter().map(bytes::Bytes::from).collect();
        let lease_keys = |id: i64| (id == 7).then_some(&keys);
        let revoke = |id| Request::LeaseRevoke(pb::LeaseRevokeRequest { id });
        assert_eq!(
            s.authorize_applied("u", false, &revoke(7), lease_keys),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(s.authorize_applied("root", false, &revoke(7), lease_keys), Ok(()));
        assert_eq!(s.authorize_applied("u", false, &revoke(8), lease_keys), Ok(()));
        let mut off = s.clone();
        off.apply(&Op::Disable(pb::AuthDisableRequest {})).unwrap();
        assert_eq!(off.authorize_applied("", true, &put("z"), no_leases), Ok(()));
    }

    /// Tokens expire unless used, and a user's tokens go with it.
    #[test]
    fn tokens_expire_unless_used_and_go_with_their_user() {
        let mut t = Tokens::default();
        let now = Instant::now();
        t.insert("a".into(), "u".into(), now);
        t.insert("b".into(), "v".into(), now);
        assert_eq!(t.resolve("a", now + TOKEN_TTL / 2).as_deref(), Some("u"));
        assert_eq!(t.resolve("a", now + TOKEN_TTL).as_deref(), Some("u")); // renewed
        assert_eq!(t.resolve("b", now + TOKEN_TTL), None);
        t.forget_user("u");
        assert_eq!(t.resolve("a", now), None);
        assert_eq!(new_token().unwrap().len(), 32);
        // --auth-token-ttl 10
        let mut t = Tokens::with_ttl(Duration::from_secs(10));
        t.insert("c".into(), "u".into(), now);
        assert_eq!(t.resolve("c", now + Duration::from_secs(9)).as_deref(), Some("u"));
        assert_eq!(t.resolve("c", now + Duration::from_secs(20)), None);
    }

    /// An ES256 key pair's files in `dir` (`NAME.key`, `NAME.pub`), and `--auth-token`'s
    /// value for them.
    fn es256(dir: &std::path::Path, name: &str, priv_key: bool) -> String {
        let k = rcgen::KeyPair::generate().unwrap();
        let (private, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
        std::fs::write(&private, k.serialize_pem()).unwrap();
        std::fs::write(&public, k.public_key_pem()).unwrap();
        let p = public.display();
        match priv_key {
            true => {
                format!("jwt,pub-key={p},priv-key={},sign-method=ES256,ttl=5m", private.display())
            }
            false => format!("jwt,pub-key={p},sign-method=ES256"),
        }
    }

    /// etcd's JWT tokens: what one member signs another verifies with the public key alone;
    /// a token of another key, an altered one and an expired one are refused; a member
    /// without the private key makes none.
    #[test]
    fn jwt_tokens_verify_with_the_public_key_and_refuse_forgeries_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Jwt::from_spec(&es256(dir.path(), "a", true)).unwrap().unwrap();
        let spec = es256(dir.path(), "a", true);
        let signer2 = Jwt::from_spec(&spec).unwrap().unwrap(); // new files, another pair
        let verifier_spec =
            spec.split(",priv-key").next().unwrap().to_string() + ",sign-method=ES256";
        let verifier = Jwt::from_spec(&verifier_spec).unwrap().unwrap();
        let t = signer2.sign("alice", 4).unwrap();
        assert_eq!(verifier.verify(&t).unwrap(), ("alice".to_string(), 4));
        assert_eq!(verifier.sign("alice", 4), Err(AuthError::CannotSign));
        // Signed with the first pair: not this key.
        let other = signer.sign("alice", 4).unwrap();
        assert_eq!(verifier.verify(&other), Err(AuthError::InvalidToken));
        // The claims changed (root for alice), signature kept.
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
        let forged = b64.encode(claims.replace("alice", "root"));
        let forged = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verifier.verify(&forged), Err(AuthError::InvalidToken));
        // Expired a second ago.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let claims =
            serde_json::json!({"username": "alice", "revision": 4, "exp": now.as_secs() - 1});
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        let old =
            jsonwebtoken::encode(&header, &claims, signer2.encoding.as_ref().unwrap()).unwrap();
        assert_eq!(verifier.verify(&old), Err(AuthError::InvalidToken));
        assert_eq!(verifier.verify("not.a.token"), Err(AuthError::InvalidToken));
    }

    /// etcd's rule for JWT: a token made before the latest change of the auth store is
    /// refused as old (the client authenticates again); a deleted user's token is invalid.
    #[test]
    fn jwt_tokens_made_before_a_change_of_the_store_are_old() {
        let dir = tempfile::tempdir().unwrap();
        let jwt = Arc::new(Jwt::from_spec(&es256(dir.path(), "k", true)).unwrap().unwrap());
        let auth = SharedAuth::default();
        auth.lock().store = store_with(&[]);
        auth.lock().jwt = Some(jwt.clone());
        let rev = auth.lock().store.revision();
        let t = jwt.sign("u", rev).unwrap();
        assert_eq!(auth.caller(Some(&t), || None), Ok(Some("u".to_string())));
        // A simple token means nothing here.
        auth.lock().tokens.insert("simple".into(), "u".into(), Instant::now());
        assert_eq!(auth.caller(Some("simple"), || None), Err(AuthError::InvalidToken));
        let add = pb::AuthUserAddRequest { name: "v".into(), ..Default::default() };
        auth.lock().store.apply(&Op::UserAdd(add)).unwrap();
        assert_eq!(auth.caller(Some(&t), || None), Err(AuthError::OldRevision));
        let fresh = jwt.sign("u", auth.lock().store.revision()).unwrap();
        assert_eq!(auth.caller(Some(&fresh), || None), Ok(Some("u".to_string())));
        let del = pb::AuthUserDeleteRequest { name: "u".into() };
        auth.lock().store.apply(&Op::UserDelete(del)).unwrap();
        let gone = jwt.sign("u", auth.lock().store.revision()).unwrap();
        assert_eq!(auth.caller(Some(&gone), || None), Err(AuthError::InvalidToken));
    }

    /// `--auth-token` errors name what is wrong before any port is bound.
    #[test]
    fn auth_token_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = es256(dir.path(), "k", true);
        let err = |spec: &str| Jwt::from_spec(spec).unwrap_err();
        assert!(Jwt::from_spec("simple").unwrap().is_none());
        assert!(err("simple,ttl=5m").contains("takes no options"));
        assert!(err("oauth").contains("is not simple or jwt"));
        assert!(err("jwt,pub-key=x").contains("needs sign-method"));
        assert!(err(&good.replace("ES256", "XS999")).contains("unknown sign-method"));
        assert!(err(&format!("{good},color=red")).contains("unknown option"));
        assert!(err(&good.replace("ttl=5m", "ttl=soon")).contains("is not a duration"));
        assert!(err(&good.replace("k.pub", "missing.pub")).contains("missing.pub"));
        // Keys of two different pairs.
        let other = es256(dir.path(), "o", true);
        let mixed = good.split(",priv-key").next().unwrap().to_string()
            + ",priv-key="
            + other.split("priv-key=").nth(1).unwrap();
        assert!(err(&mixed).contains("not a pair"), "{}", err(&mixed));
        // An RSA method with an EC key.
        assert!(err(&good.replace("ES256", "RS256")).contains("is not a RS256 key"));
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "").unwrap();
        let hs = format!("jwt,priv-key={},sign-method=HS256", secret.display());
        assert!(err(&hs).contains("is empty"));
    }
}
