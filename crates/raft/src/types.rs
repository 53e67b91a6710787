//! Newtypes for the numbers Raft juggles, so that an index can never be passed where a term
//! is expected (ARCHITECTURE.md, design rule 4), and the log entry itself.

use std::fmt;

use bytes::Bytes;

macro_rules! number_newtype {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The zero value.
            pub const ZERO: $name = $name(0);

            /// The raw number.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            #[inline]
            fn from(v: u64) -> Self {
                $name(v)
            }
        }
    };
}

number_newtype!(
    /// The identity of a server in the cluster. `NodeId(0)` is reserved for "none" on the
    /// wire and is never a valid member.
    NodeId,
    "n"
);
number_newtype!(
    /// A Raft term (Raft §5.1): a logical clock that only grows. Term 0 precedes any election.
    Term,
    "t"
);
number_newtype!(
    /// A position in the replicated log. Index 0 is the empty prefix; the first entry is 1.
    LogIndex,
    "i"
);

impl Term {
    /// The next term.
    #[inline]
    pub const fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The following index.
    #[inline]
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The preceding index, saturating at zero.
    #[inline]
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// `self + n`.
    #[inline]
    pub const fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

/// The identity of a log entry: its index and the term of the leader that created it.
/// By the Log Matching property (Raft §5.3) two logs that share an `EntryId` agree on every
/// entry up to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position in the log.
    pub index: LogIndex,
}

impl EntryId {
    /// Builds an id from a term and an index.
    pub const fn new(term: Term, index: LogIndex) -> EntryId {
        EntryId { term, index }
    }

    /// Raft §5.4.1: "If the logs have last entries with different terms, then the log with the
    /// later term is more up-to-date. If the logs end with the same term, then whichever log is
    /// longer is more up-to-date." Deriving `Ord` with `term` first gives exactly that order.
    pub fn is_at_least_as_up_to_date_as(self, other: EntryId) -> bool {
        self >= other
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index.0, self.term.0)
    }
}

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An opaque command for the application's state machine.
    Normal,
    /// The empty entry a new leader appends at the start of its term (Raft §8: "each leader
    /// commit a blank no-op entry into the log at the start of its term"). Applications skip it.
    Noop,
    /// A membership change ([`crate::ConfChange`], encoded): it takes effect on every server as
    /// soon as it is in the log (Thesis §4.1). Applications skip it.
    ConfChange,
}

/// One log entry (Raft Fig. 2): index, term and command.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position in the log.
    pub index: LogIndex,
    /// What the entry is.
    pub kind: EntryKind,
    /// The command, opaque to Raft. Cheap to clone (reference counted).
    pub data: Bytes,
}

impl Entry {
    /// A normal entry.
    pub fn new(term: Term, index: LogIndex, data: impl Into<Bytes>) -> Entry {
        Entry { term, index, kind: EntryKind::Normal, data: data.into() }
    }

    /// The entry's id.
    #[inline]
    pub fn id(&self) -> EntryId {
        EntryId { term: self.term, index: self.index }
    }

    /// The size this entry counts for in byte limits (batching, inflight, uncommitted):
    /// its payload plus a fixed per-entry overhead, so that empty entries are not free.
    #[inline]
    pub fn size_bytes(&self) -> u64 {
        ENTRY_OVERHEAD_BYTES + self.data.len() as u64
    }
}

/// Fixed per-entry cost used in byte accounting: term, index, kind and framing.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EntryKind::Noop => write!(f, "{}/{} noop", self.index.0, self.term.0),
            EntryKind::ConfChange => match crate::membership::ConfChange::decode(&self.data) {
                Some(cc) => write!(f, "{}/{} {cc:?}", self.index.0, self.term.0),
                None => write!(f, "{}/{} conf?", self.index.0, self.term.0),
            },
            EntryKind::Normal => {
                write!(f, "{}/{} ", self.index.0, self.term.0)?;
                match std::str::from_utf8(&self.data) {
                    Ok(s) if s.len() <= 32 => write!(f, "{s:?}"),
                    _ => write!(f, "<{} bytes>", self.data.len()),
                }
            }
        }
    }
}

/// The state that must be durable before the server answers any message that depends on it
/// (Raft Fig. 2, "Persistent state on all servers"). `commit` is a hint that speeds up restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Latest term this server has seen.
    pub term: Term,
    /// The candidate this server voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// Highest index known committed (a hint: never required for safety).
    pub commit: LogIndex,
}

/// The role a server plays (Raft §5.1, Thesis §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Answers leaders and candidates; never sends on its own.
    Follower,
    /// Runs a pre-vote round (Thesis §9.6) without raising its term.
    PreCandidate,
    /// Runs an election for `term + 1`.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(s)
    }
}
