//! One run's parameters, every one drawn from the seed unless set by hand.

use flotilla_raft::Rng;

use crate::net::Net;

/// The parameters of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed every choice is drawn from.
    pub seed: u64,
    /// Cluster size: 3, 5 or 7.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Simulated time with faults, microseconds.
    pub fault_us: u64,
    /// After the faults stop: time allowed to elect a leader and commit a new operation.
    pub heal_limit_us: u64,
    /// Raft tick, microseconds.
    pub tick_us: u64,
    /// Pre-vote on.
    pub pre_vote: bool,
    /// Check-quorum on.
    pub check_quorum: bool,
    /// Per-message byte limit of AppendEntries (small values exercise batching limits).
    pub append_bytes_max: u64,
    /// Network behaviour during the fault phase.
    pub net: Net,
    /// Minimum fsync latency, microseconds.
    pub fsync_min_us: u32,
    /// Extra fsync latency, microseconds.
    pub fsync_jitter_us: u32,
    /// Mean time between injected faults, microseconds (0: none).
    pub fault_interval_us: u32,
    /// Crash points at durability boundaries (in the manner of FoundationDB's BUGGIFY): the
    /// per-million chance that a node which has just voted crashes before its vote is synced,
    /// and restarts soon after.
    pub crash_after_vote_ppm: u32,
    /// Leader churn: the per-million chance that a newly elected leader is cut off from
    /// everyone a few milliseconds later, leaving divergent uncommitted suffixes behind (the
    /// situations of Raft Fig. 7 and Fig. 8).
    pub leader_churn_ppm: u32,
    /// Reads through ReadIndex use the leader lease (Thesis §6.4.1; needs check-quorum).
    pub lease_reads: bool,
    /// Per-million share of reads served through ReadIndex (Thesis §6.4) instead of the log.
    pub read_index_ppm: u32,
    /// Per-million chance, per injected fault, of a leadership transfer (Thesis §3.10).
    pub transfer_ppm: u32,
    /// Servers beyond the initial members, which membership changes may add.
    pub spare_nodes: usize,
    /// Per-million chance, per injected fault, of a membership change (Thesis §4, Raft §6).
    pub conf_change_ppm: u32,
    /// A client gives up on an operation after this long (its outcome becomes unknown).
    pub client_timeout_us: u64,
    /// Log compaction (Raft §7): each server snapshots its state machine once this many
    /// entries were applied since its last snapshot (0: never).
    pub snapshot_every: u64,
    /// Entries kept in the log below each snapshot, for followers slightly behind.
    pub snapshot_keep: u64,
    /// InstallSnapshot chunk size, bytes (small, so transfers take several chunks).
    pub snapshot_chunk_bytes: u64,
    /// How long the background snapshot write takes, microseconds: applies continue meanwhile.
    pub snapshot_write_us: u32,
    /// Asynchronous log writes, as the server's driver makes them: a `Ready` with at least
    /// this many entries (or any, while an earlier one's sync runs) is written and its sync
    /// left running while the server goes on stepping, applying what is committed (the
    /// followers' copies can commit it first, Thesis §10.2.1); its answers and its report of
    /// durability wait for the sync. 0: every sync is waited for before the next `Ready`.
    pub detach_min_entries: usize,
    /// Record a trace of every event.
    pub trace: bool,
    /// Test only: the leader answers reads from its state machine without going through the
    /// log or confirming its leadership, so a deposed leader serves stale reads. Used to show
    /// that the linearizability check catches what the per-node checkers cannot.
    pub unsafe_local_reads: bool,
    /// Test only: a snapshot restored (at restart, or installed from the leader) comes back
    /// with one more write than it was taken with, as from a state machine whose snapshots
    /// are not faithful. Used to show that the state hash check catches it.
    pub lossy_snapshots: bool,
    /// Test only: a `Ready` whose sync is left running sends its answers at once, before
    /// its write is durable. Used to show that the checkers cover background syncs.
    pub early_answers: bool,
    /// Test only: a bug planted into every node.
    #[cfg(feature = "planted-bugs")]
    pub bug: Option<flotilla_raft::PlantedBug>,
}

impl SimConfig {
    /// The configuration of run `seed`.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut rng = Rng::new(seed ^ 0x5EED_F10A_u64);
        let nodes = match rng.in_range(0, 20) {
            0..=9 => 3,
            10..=16 => 5,
            _ => 7,
        };
        let check_quorum = rng.in_range(0, 4) != 0;
        SimConfig {
            seed,
            nodes,
            clients: rng.in_range(2, 7) as usize,
            fault_us: 30_000_000,
            heal_limit_us: 10_000_000,
            tick_us: 10_000,
            pre_vote: rng.in_range(0, 4) != 0,
            check_quorum,
            append_bytes_max: if rng.in_range(0, 3) == 0 { 200 } else { 1 << 20 },
            net: Net {
                drop_ppm: [0, 10_000, 50_000, 150_000][rng.in_range(0, 4) as usize],
                dup_ppm: [0, 10_000, 50_000][rng.in_range(0, 3) as usize],
                latency_min_us: rng.in_range(100, 1_000),
                latency_jitter_us: rng.in_range(100, 5_000),
                cut: Default::default(),
            },
            fsync_min_us: rng.in_range(200, 2_000),
            fsync_jitter_us: rng.in_range(100, 8_000),
            fault_interval_us: [300_000, 700_000, 1_500_000][rng.in_range(0, 3) as usize],
            crash_after_vote_ppm: [0, 200_000][rng.in_range(0, 2) as usize],
            leader_churn_ppm: [0, 0, 700_000][rng.in_range(0, 3) as usize],
            read_index_ppm: [0, 500_000, 1_000_000][rng.in_range(0, 3) as usize],
            lease_reads: check_quorum && rng.in_range(0, 3) == 0,
            transfer_ppm: [0, 100_000][rng.in_range(0, 2) as usize],
            spare_nodes: rng.in_range(0, 3) as usize,
            conf_change_ppm: [0, 300_000][rng.in_range(0, 2) as usize],
            client_timeout_us: 1_000_000,
            snapshot_every: [0, 20, 50, 150][rng.in_range(0, 4) as usize],
            snapshot_keep: [0, 5, 20][rng.in_range(0, 3) as usize],
            snapshot_chunk_bytes: [64, 512, 4096][rng.in_range(0, 3) as usize],
            snapshot_write_us: rng.in_range(0, 50_000),
            // Drawn last, so that the draws above give what they gave before it existed.
            detach_min_entries: [0, 0, 1, 2][rng.in_range(0, 4) as usize],
            trace: false,
            unsafe_local_reads: false,
            lossy_snapshots: false,
            early_answers: false,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }
}
