//! Node configuration, in ticks (ARCHITECTURE.md, design rule 8): milliseconds exist only in the
//! server, which converts them once.

use crate::error::ConfigError;
use crate::types::NodeId;

/// The configuration of one Raft node. Build it with struct update syntax over
/// [`Config::new`] and check it with [`Config::validate`], which returns it unchanged or says
/// which rule it breaks.
///
/// ```
/// use flotilla_raft::{Config, NodeId};
/// let config = Config {
///     election_timeout_ticks_min: 20,
///     election_timeout_ticks_max: 40,
///     ..Config::new(NodeId(1))
/// }
/// .validate()
/// .expect("a valid configuration");
/// assert_eq!(config.heartbeat_interval_ticks, 2);
///
/// // An election timeout range that is empty is refused, with the values that broke it.
/// let bad = Config { election_timeout_ticks_min: 20, ..Config::new(NodeId(1)) }.validate();
/// assert!(bad.is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// This node's id; non-zero.
    pub id: NodeId,
    /// Lower bound (inclusive) of the randomized election timeout (Raft §5.2). Default 10.
    pub election_timeout_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout. Must exceed the minimum.
    /// Default 20 ("randomized ... from a fixed interval (e.g., 150–300ms)", Raft §5.2).
    pub election_timeout_ticks_max: u32,
    /// Ticks between heartbeats; must be below the minimum election timeout. Default 2.
    pub heartbeat_interval_ticks: u32,
    /// Upper bound on the entry bytes in one AppendEntries (batching, Thesis §10.2); at least
    /// one entry is always sent. Default 1 MiB.
    pub append_bytes_max: u64,
    /// Pipelining window: AppendEntries in flight per follower (Thesis §10.2.2). Default 256.
    pub inflight_msgs_max: usize,
    /// Pipelining window in entry bytes per follower. Default 64 MiB.
    pub inflight_bytes_max: u64,
    /// Backpressure: proposals are refused while this many entry bytes are appended but not
    /// yet committed (always at least one proposal is admitted). Default 256 MiB.
    pub uncommitted_bytes_max: u64,
    /// Upper bound on the bytes of committed entries handed out in one `Ready`. Default 64 MiB.
    pub apply_bytes_max: u64,
    /// Run a pre-vote round before raising the term (Thesis §9.6). Default true.
    pub pre_vote: bool,
    /// Leader steps down when it has not heard from a quorum for an election timeout, and
    /// followers ignore votes while they hear from a leader (Thesis §6.2, §9.6). Default true.
    pub check_quorum: bool,
    /// A learner is promoted only once it is at most this many entries behind the leader.
    /// Default 1000.
    pub promotion_lag_max: u64,
    /// How [`crate::Node::read_index`] confirms leadership. Default [`ReadMode::Safe`].
    pub read_mode: ReadMode,
    /// Read-index requests waiting at once, at most. Default 4096.
    pub pending_reads_max: usize,
    /// Snapshots are streamed to followers in chunks of at most this many bytes (Raft §7,
    /// Fig. 13). Default 1 MiB.
    pub snapshot_chunk_bytes: u64,
    /// Snapshot chunks in flight per follower. Default 4.
    pub snapshot_chunks_inflight: u64,
    /// A snapshot transfer that makes no progress for this many ticks resends from the last
    /// chunk the follower acknowledged. It measures lack of progress, not total time, so a
    /// large snapshot over a slow link completes. Default 30.
    pub snapshot_retry_ticks: u32,
    /// Seed of the node's private RNG: the only source of election jitter.
    pub rng_seed: u64,
    /// Test only (feature `planted-bugs`): a known bug to plant, so that tests can prove the
    /// simulator finds it.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// How a leader confirms it is still the leader before serving a read (Thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// ReadIndex: a round of heartbeats acknowledged by a quorum confirms leadership. Safe
    /// whatever the clocks do.
    Safe,
    /// Lease: the leader answers at once, relying on check-quorum to have deposed it within
    /// an election timeout if it lost its quorum, and on clocks drifting less than the margin
    /// between that timeout and the followers' (Thesis §6.4.1). Faster; requires
    /// `check_quorum`, and must be set on every node: a node restarting with it refuses
    /// votes for one minimum election timeout, so that a lease counting on it still holds.
    LeaseBased,
}

/// Known bugs the simulator must be able to find (feature `planted-bugs`, test only).
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// Votes are granted without the up-to-date check of Raft §5.4.1.
    VoteWithoutLogCheck,
    /// The leader commits entries of earlier terms by counting replicas (Raft Fig. 8).
    CommitPriorTermByCounting,
    /// A follower truncates its log after the entries of every AppendEntries, even a stale
    /// one whose entries all match.
    TruncateOnStaleAppend,
    /// Vote answers are sent before the vote is durable.
    VoteBeforeDurable,
    /// Some committed entries are handed out for application twice.
    ApplyTwice,
    /// ReadIndex answers without confirming leadership with a quorum (Thesis §6.4 step 3).
    ReadIndexWithoutQuorum,
}

#[cfg(feature = "planted-bugs")]
impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 6] = [
        PlantedBug::VoteWithoutLogCheck,
        PlantedBug::CommitPriorTermByCounting,
        PlantedBug::TruncateOnStaleAppend,
        PlantedBug::VoteBeforeDurable,
        PlantedBug::ApplyTwice,
        PlantedBug::ReadIndexWithoutQuorum,
    ];

    /// The variant's name.
    pub const fn name(self) -> &'static str {
        match self {
            PlantedBug::VoteWithoutLogCheck => "VoteWithoutLogCheck",
            PlantedBug::CommitPriorTermByCounting => "CommitPriorTermByCounting",
            PlantedBug::TruncateOnStaleAppend => "TruncateOnStaleAppend",
            PlantedBug::VoteBeforeDurable => "VoteBeforeDurable",
            PlantedBug::ApplyTwice => "ApplyTwice",
            PlantedBug::ReadIndexWithoutQuorum => "ReadIndexWithoutQuorum",
        }
    }
}

impl Config {
    /// Whether `bug` is planted (always false without the `planted-bugs` feature).
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn has_bug(&self, bug: &'static str) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_bug.is_some_and(|b| b.name() == bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }
}

impl Config {
    /// The default configuration for node `id`.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            append_bytes_max: 1 << 20,
            inflight_msgs_max: 256,
            inflight_bytes_max: 64 << 20,
            uncommitted_bytes_max: 256 << 20,
            apply_bytes_max: 64 << 20,
            pre_vote: true,
            check_quorum: true,
            promotion_lag_max: 1000,
            read_mode: ReadMode::Safe,
            pending_reads_max: 4096,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_chunks_inflight: 4,
            snapshot_retry_ticks: 30,
            rng_seed: id.0,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Checks every rule and returns the configuration unchanged, or the first rule broken.
    /// It never adjusts a value: a surprising configuration is an error, not a guess.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.id == NodeId::ZERO {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeatInterval);
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return Err(ConfigError::ElectionTimeoutNotAboveHeartbeat {
                election_timeout_ticks_min: self.election_timeout_ticks_min,
                heartbeat_interval_ticks: self.heartbeat_interval_ticks,
            });
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return Err(ConfigError::EmptyElectionTimeoutRange {
                min: self.election_timeout_ticks_min,
                max: self.election_timeout_ticks_max,
            });
        }
        if self.inflight_msgs_max == 0 {
            return Err(ConfigError::ZeroLimit { field: "inflight_msgs_max" });
        }
        for (field, value) in [
            ("append_bytes_max", self.append_bytes_max),
            ("inflight_bytes_max", self.inflight_bytes_max),
            ("uncommitted_bytes_max", self.uncommitted_bytes_max),
            ("apply_bytes_max", self.apply_bytes_max),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("snapshot_chunks_inflight", self.snapshot_chunks_inflight),
            ("snapshot_retry_ticks", u64::from(self.snapshot_retry_ticks)),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { field });
            }
        }
        if self.pending_reads_max == 0 {
            return Err(ConfigError::ZeroLimit { field: "pending_reads_max" });
        }
        if self.read_mode == ReadMode::LeaseBased && !self.check_quorum {
            return Err(ConfigError::LeaseReadWithoutCheckQuorum);
        }
        if self.inflight_bytes_max < self.append_bytes_max {
            return Err(ConfigError::InflightBytesBelowMessage {
                inflight_bytes_max: self.inflight_bytes_max,
                append_bytes_max: self.append_bytes_max,
            });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert!(Config::new(NodeId(1)).validate().is_ok());
    }

    #[test]
    fn validate_reports_each_rule_with_its_values() {
        let base = Config::new(NodeId(1));
        let cases: Vec<(Config, ConfigError)> = vec![
            (Config { id: NodeId(0), ..base.clone() }, ConfigError::ZeroId),
            (
                Config { heartbeat_interval_ticks: 0, ..base.clone() },
                ConfigError::ZeroHeartbeatInterval,
            ),
            (
                Config { heartbeat_interval_ticks: 10, ..base.clone() },
                ConfigError::ElectionTimeoutNotAboveHeartbeat {
                    election_timeout_ticks_min: 10,
                    heartbeat_interval_ticks: 10,
                },
            ),
            (
                Config { election_timeout_ticks_max: 10, ..base.clone() },
                ConfigError::EmptyElectionTimeoutRange { min: 10, max: 10 },
            ),
            (
                Config { inflight_msgs_max: 0, ..base.clone() },
                ConfigError::ZeroLimit { field: "inflight_msgs_max" },
            ),
            (
                Config { uncommitted_bytes_max: 0, ..base.clone() },
                ConfigError::ZeroLimit { field: "uncommitted_bytes_max" },
            ),
            (
                Config { snapshot_chunk_bytes: 0, ..base.clone() },
                ConfigError::ZeroLimit { field: "snapshot_chunk_bytes" },
            ),
            (
                Config { snapshot_retry_ticks: 0, ..base.clone() },
                ConfigError::ZeroLimit { field: "snapshot_retry_ticks" },
            ),
            (
                Config { inflight_bytes_max: 10, append_bytes_max: 11, ..base.clone() },
                ConfigError::InflightBytesBelowMessage {
                    inflight_bytes_max: 10,
                    append_bytes_max: 11,
                },
            ),
        ];
        for (config, want) in cases {
            assert_eq!(config.clone().validate(), Err(want), "config {config:?}");
        }
    }
}
