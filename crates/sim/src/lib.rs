//! # flotilla-sim
//!
//! A deterministic simulation of a Flotilla cluster, in the manner of FoundationDB's
//! simulation and TigerBeetle's VOPR: the real Raft core on 3, 5 or 7 simulated servers with
//! simulated time, network, disks and clients, every choice drawn from one `u64` seed. Faults
//! (message loss, duplication, reordering, partitions of every shape, crashes that lose
//! unsynced writes) run first while every safety property is checked after every event; then
//! the faults stop and the cluster must elect a leader and commit new operations within a
//! bound. The clients' history is checked for linearizability. A seed replays exactly.
//!
//! ```
//! let report = flotilla_sim::run(flotilla_sim::SimConfig { fault_us: 2_000_000, ..flotilla_sim::SimConfig::from_seed(7) });
//! assert!(report.violation.is_none(), "{:?}", report.violation);
//! assert!(report.stats.ops_ok > 0);
//! ```

#![deny(missing_docs)]

pub mod checkers;
mod client;
mod config;
mod disk;
mod host;
mod kv;
mod net;
mod sim;

pub use checkers::Violation;
pub use config::SimConfig;
pub use net::Net;
pub use sim::{run, Report, Stats};

/// The command that replays `seed` with a full trace.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p flotilla-sim --release -- --seed {seed} --trace")
}
