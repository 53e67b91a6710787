//! `flotilla-sim`: runs seeds, prints one line per failure and a closing
//! `N passed, N failed` line.
//!
//! ```text
//! cargo run -p flotilla-sim --release -- --seeds 1..500
//! cargo run -p flotilla-sim --release -- --seed 42 --trace
//! ```

// The clock here only reports how fast the simulation ran; simulated time is separate.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use flotilla_sim::{replay_command, run, Report, SimConfig};

#[derive(Parser, Debug)]
#[command(name = "flotilla-sim", version, about = "Deterministic simulation of a Flotilla cluster")]
struct Args {
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<String>,
    /// One seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print every event of the run (one seed only).
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Write the run's client history (JSON lines) to this file (one seed only).
    #[arg(long, requires = "seed")]
    history: Option<std::path::PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Simulated seconds of faults per run.
    #[arg(long, default_value_t = 30)]
    fault_secs: u64,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("--seeds takes A..B, got {s:?}"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad seed {a:?}"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad seed {b:?}"))?;
    if b <= a {
        return Err(format!("empty seed range {s}"));
    }
    Ok((a, b))
}

/// Runs one seed, turning a panic into a failure report.
fn run_seed(cfg: SimConfig) -> Result<Report, String> {
    catch_unwind(AssertUnwindSafe(|| run(cfg))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (lo, hi) = match (&args.seeds, args.seed) {
        (Some(r), _) => match parse_range(r) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("flotilla-sim: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(s)) => (s, s + 1),
        (None, None) => (1, 101),
    };
    let config = |seed| SimConfig {
        trace: args.trace,
        fault_us: args.fault_secs * 1_000_000,
        ..SimConfig::from_seed(seed)
    };
    if args.seed.is_some() {
        let seed = lo;
        return match run_seed(config(seed)) {
            Ok(r) => {
                for line in &r.trace {
                    println!("{line}");
                }
                if let Some(path) = &args.history {
                    let mut out = Vec::new();
                    flotilla_lincheck::write(&mut out, &r.history).expect("writing to memory");
                    if let Err(e) = std::fs::write(path, out) {
                        eprintln!("flotilla-sim: cannot write {}: {e}", path.display());
                    }
                }
                print_summary(&r);
                let ok = r.violation.is_none();
                println!("{} passed, {} failed", u8::from(ok), u8::from(!ok));
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(p) => {
                println!("seed {seed}: FAILED: panic: {p}\n  replay: {}", replay_command(seed));
                println!("0 passed, 1 failed");
                ExitCode::from(1)
            }
        };
    }
    let next = AtomicU64::new(lo);
    let passed = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let ops = AtomicU64::new(0);
    let snapshots = AtomicU64::new(0);
    let installs = AtomicU64::new(0);
    let detached = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= hi {
                    break;
                }
                match run_seed(config(seed)) {
                    Ok(r) if r.violation.is_none() => {
                        passed.fetch_add(1, Ordering::Relaxed);
                        ops.fetch_add(r.stats.ops_ok, Ordering::Relaxed);
                        snapshots.fetch_add(r.stats.snapshots, Ordering::Relaxed);
                        installs.fetch_add(r.stats.installs, Ordering::Relaxed);
                        detached.fetch_add(r.stats.detached_syncs, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let v = r.violation.expect("checked above");
                        println!(
                            "seed {seed}: FAILED {}: {}\n  replay: {}",
                            v.property,
                            v.detail,
                            replay_command(seed)
                        );
                        failed.lock().expect("no panics while holding it").push(seed);
                    }
                    Err(p) => {
                        println!(
                            "seed {seed}: FAILED panic: {p}\n  replay: {}",
                            replay_command(seed)
                        );
                        failed.lock().expect("no panics while holding it").push(seed);
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let failed = failed.into_inner().expect("threads joined");
    let ops = ops.load(Ordering::Relaxed);
    eprintln!(
        "{} seeds in {secs:.1} s ({} threads); {ops} client operations committed, {:.0} per second of wall time; \
         {} snapshots taken, {} installed from a leader; {} log writes synced in the background",
        hi - lo,
        args.threads,
        ops as f64 / secs,
        snapshots.load(Ordering::Relaxed),
        installs.load(Ordering::Relaxed),
        detached.load(Ordering::Relaxed),
    );
    println!("{} passed, {} failed", passed.load(Ordering::Relaxed), failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_summary(r: &Report) {
    let c = &r.config;
    let s = &r.stats;
    println!(
        "seed {}: {} nodes, {} clients, pre_vote={} check_quorum={}, drop={}ppm dup={}ppm; \
         {} events, {:.1} s simulated, {} ops ok, {} unknown, max term {}, {} crashes, {} partitions, {} disk faults, \
         {} snapshots taken, {} installed, {} background syncs (detach at {} entries)",
        c.seed, c.nodes, c.clients, c.pre_vote, c.check_quorum, c.net.drop_ppm, c.net.dup_ppm,
        s.events, s.sim_us as f64 / 1e6, s.ops_ok, s.ops_unknown, s.max_term, s.crashes, s.partitions, s.disk_faults,
        s.snapshots, s.installs, s.detached_syncs, c.detach_min_entries
    );
    match &r.violation {
        None => println!("all properties held"),
        Some(v) => {
            println!("FAILED {}: {}\n  replay: {}", v.property, v.detail, replay_command(c.seed))
        }
    }
}
