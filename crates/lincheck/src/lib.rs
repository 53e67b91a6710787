//! # flotilla-lincheck
//!
//! A history format for key-value clients ([`history`]) and a linearizability checker for it
//! ([`check`]): Wing–Gong search with Lowe's memoization, split per key, with correct
//! handling of operations whose outcome is unknown (timeouts). The simulator records every
//! run's client history in this format and checks it; `flotilla-lincheck FILE` checks a file.

#![deny(missing_docs)]

mod checker;
pub mod history;

pub use checker::{check, check_with, Budget, Verdict};
pub use history::{read, write, Call, HistoryError, Operation, Outcome};
