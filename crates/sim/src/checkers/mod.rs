//! Safety checkers, one file per property, each citing where the property is stated. The
//! simulation feeds them after every event; the first violation ends the run.

pub mod commit_rule;
pub mod durability;
pub mod election_safety;
pub mod leader_append_only;
pub mod leader_completeness;
pub mod linearizability;
pub mod log_matching;
pub mod monotonic;
pub mod state_hash;
pub mod state_machine_safety;

use std::fmt;

/// A broken property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property's name.
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

pub(crate) fn violation(property: &'static str, detail: String) -> Violation {
    Violation { property, detail }
}
