//! `flotilla-lincheck FILE`: checks a JSON-lines history (see `flotilla_lincheck::history`)
//! and prints the verdict; on failure, the key and a small sub-history that cannot be
//! linearized. Exit status: 0 linearizable, 1 not linearizable, 2 inconclusive or unreadable.

use std::io::BufReader;
use std::process::ExitCode;

use clap::Parser;
use flotilla_lincheck::{check_with, read, Budget, Verdict};

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-lincheck",
    version,
    about = "Check a key-value history for linearizability"
)]
struct Args {
    /// The history: one JSON operation per line.
    file: std::path::PathBuf,
    /// Search budget: states explored per key before the verdict is "inconclusive".
    #[arg(long, default_value_t = 5_000_000)]
    max_states_per_key: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let file = match std::fs::File::open(&args.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("flotilla-lincheck: cannot open {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let ops = match read(BufReader::new(file)) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("flotilla-lincheck: {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let keys: std::collections::BTreeSet<&str> = ops.iter().map(|o| o.call.key()).collect();
    match check_with(&ops, Budget { max_states_per_key: args.max_states_per_key }) {
        Verdict::Linearizable => {
            println!("linearizable: {} operations over {} keys", ops.len(), keys.len());
            ExitCode::SUCCESS
        }
        Verdict::NotLinearizable { key, ops: sub } => {
            println!("NOT linearizable: key {key:?}; this sub-history of {} operations cannot be linearized:", sub.len());
            for op in &sub {
                println!("  {}", serde_json::to_string(op).unwrap_or_else(|e| format!("<{e}>")));
            }
            ExitCode::from(1)
        }
        Verdict::Inconclusive { key, states } => {
            println!("inconclusive: key {key:?} exceeded the search budget ({states} states)");
            ExitCode::from(2)
        }
    }
}
