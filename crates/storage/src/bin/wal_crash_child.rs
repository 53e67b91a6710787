//! Helper for the crash test (`tests/crash.rs`): appends to a WAL from several threads and
//! prints `INDEX DATA` for every append once it is acknowledged durable, until killed.
//!
//! Usage: `wal-crash-child DIR`

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use flotilla_raft::{Membership, NodeId, Term};
use flotilla_storage::{GroupWal, RealFs, WalError, WalOptions};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: wal-crash-child DIR"));
    // Small segments so that the crashes also land during segment rollover.
    let opts = WalOptions { segment_bytes: 64 << 10, ..WalOptions::default() };
    let wal = match GroupWal::open(RealFs, &dir, Term(1), opts) {
        Ok((w, _)) => w,
        Err(WalError::NotFound(_)) => {
            let members = Membership::new([NodeId(1)], []).expect("one voter");
            GroupWal::create(RealFs, &dir, members, Term(1), opts).expect("create the WAL")
        }
        Err(e) => {
            eprintln!("wal-crash-child: open failed: {e}");
            std::process::exit(3);
        }
    };
    let out = Mutex::new(std::io::stdout());
    let pid = std::process::id();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (wal, out) = (&wal, &out);
            s.spawn(move || {
                for i in 0u64.. {
                    let data = format!("p{pid}t{t}i{i}");
                    match wal.append(data.clone().into()) {
                        Ok(index) => {
                            let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                            let _ = writeln!(o, "{} {data}", index.0);
                            let _ = o.flush();
                        }
                        Err(e) => {
                            eprintln!("wal-crash-child: append failed: {e}");
                            std::process::exit(4);
                        }
                    }
                }
            });
        }
    });
}
