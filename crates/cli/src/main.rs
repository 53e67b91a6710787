//! The `flotilla` command.
//!
//! Today `flotilla dev` runs a local 3-node cluster of the Raft core in one process, with a
//! real-time tick and an in-memory network, proposing entries and printing each node's role,
//! term, commit and applied index. The networked server with etcd's v3 API replaces its
//! internals when it lands (issue 7); the command stays.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use flotilla_raft::testkit::Cluster;
use flotilla_raft::{Config, NodeId};

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "Flotilla: Raft consensus and a replicated key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local 3-node cluster (in one process, in memory, for now) until Ctrl-C.
    Dev {
        /// Milliseconds per Raft tick.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
        tick_ms: u64,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        duration_secs: Option<u64>,
        /// Proposals per second the demo client sends to the leader.
        #[arg(long, default_value_t = 100)]
        proposals_per_sec: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev { tick_ms, duration_secs, proposals_per_sec } => {
            dev(tick_ms, duration_secs, proposals_per_sec)
        }
    }
}

fn dev(tick_ms: u64, duration_secs: Option<u64>, proposals_per_sec: u64) -> ExitCode {
    // Election jitter differs from run to run; the core itself stays deterministic per seed.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut cluster =
        Cluster::with_config(3, |id| Config { rng_seed: seed ^ id.0, ..Config::new(id) });
    println!("flotilla dev: 3 nodes in one process (in-memory network), tick {tick_ms} ms");
    println!("Ctrl-C to stop.");
    let tick = Duration::from_millis(tick_ms);
    let start = Instant::now();
    let mut next_tick = start;
    let mut next_report = start;
    let mut proposed: u64 = 0;
    loop {
        let now = Instant::now();
        if duration_secs.is_some_and(|d| now.duration_since(start) >= Duration::from_secs(d)) {
            report(&cluster, proposed);
            return ExitCode::SUCCESS;
        }
        if now >= next_tick {
            cluster.tick_all();
            next_tick += tick;
        }
        let due = (now.duration_since(start).as_secs_f64() * proposals_per_sec as f64) as u64;
        if let Some(leader) = cluster.leader() {
            while proposed < due {
                if cluster.propose(leader, &format!("demo-{proposed}")).is_err() {
                    break;
                }
                proposed += 1;
            }
        }
        cluster.deliver_all();
        if now >= next_report {
            report(&cluster, proposed);
            next_report += Duration::from_secs(1);
        }
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()).min(tick));
    }
}

fn report(cluster: &Cluster, proposed: u64) {
    let mut line = format!("proposed={proposed:<7}");
    for id in cluster.ids() {
        let st = cluster.node(id).status();
        line.push_str(&format!(
            " | {} {:<13} term={} commit={} applied={}",
            NodeId::from(id.0),
            st.role.to_string(),
            st.term.0,
            st.commit.0,
            st.applied.0
        ));
    }
    println!("{line}");
}
