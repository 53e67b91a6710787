//! Log Matching (Raft §5.3, Fig. 3): "if two logs contain an entry with the same index and
//! term, then the logs are identical in all entries up through the given index".

use flotilla_raft::{Entry, NodeId};

use super::{violation, Violation};

/// Checks every pair of logs.
pub fn check(logs: &[(NodeId, &[Entry])]) -> Result<(), Violation> {
    for (i, (a, la)) in logs.iter().enumerate() {
        for (b, lb) in &logs[i + 1..] {
            // Compare where both still hold entries (compaction removes prefixes).
            let start = |l: &[Entry]| l.first().map_or(u64::MAX, |e| e.index.0);
            let from = start(la).max(start(lb));
            let la = &la[la.iter().take_while(|e| e.index.0 < from).count()..];
            let lb = &lb[lb.iter().take_while(|e| e.index.0 < from).count()..];
            let n = la.len().min(lb.len());
            // The highest index where both hold the same term: everything below must agree.
            if let Some(k) = (0..n).rev().find(|k| la[*k].term == lb[*k].term) {
                if let Some(d) = (0..=k).find(|j| la[*j] != lb[*j]) {
                    return Err(violation(
                        "Log Matching",
                        format!(
                            "{a} and {b} share {} but differ at index {}: {:?} vs {:?}",
                            la[k].id(),
                            la[d].index,
                            la[d],
                            lb[d]
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
