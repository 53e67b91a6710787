//! Election Safety (Raft §5.2, Fig. 3): "at most one leader can be elected in a given term".

use std::collections::BTreeMap;

use flotilla_raft::{NodeId, Term};

use super::{violation, Violation};

/// Remembers the leader of every term seen.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// `id` is leader of `term` now. Returns whether it is newly so.
    pub fn observe_leader(&mut self, id: NodeId, term: Term) -> Result<bool, Violation> {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => Err(violation(
                "Election Safety",
                format!("{other} and {id} both led term {}", term.0),
            )),
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }
}
