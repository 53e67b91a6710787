//! Linearizability of the clients' history (Herlihy & Wing; Thesis §6: "each operation
//! appears to execute instantaneously, exactly once, at some point between its invocation
//! and its response"), checked by `flotilla-lincheck`.

use flotilla_lincheck::{check_with, Budget, Operation, Verdict};

use super::{violation, Violation};

/// Checks the whole history; an inconclusive search is reported as a failure too, so that a
/// run is never passed unchecked.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    match check_with(history, Budget { max_states_per_key: 2_000_000 }) {
        Verdict::Linearizable => Ok(()),
        Verdict::NotLinearizable { key, ops } => {
            let lines: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
            Err(violation(
                "Linearizability",
                format!("key {key:?} cannot be linearized:\n    {}", lines.join("\n    ")),
            ))
        }
        Verdict::Inconclusive { key, states } => Err(violation(
            "Linearizability",
            format!("inconclusive for key {key:?} after {states} states"),
        )),
    }
}
