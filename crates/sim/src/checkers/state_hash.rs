//! State Machine Safety for the state itself (Raft §5.4.3 and §7): servers that applied the
//! same entries hold the same state, however they got there: by applying each entry, or by
//! restoring a snapshot (taken, or installed from the leader) and applying the rest. This is
//! what makes the state machine deterministic and its snapshots faithful, and it is checked
//! with the hash etcd's Maintenance.Hash reports.

use std::collections::BTreeMap;

use flotilla_raft::NodeId;

use super::{violation, Violation};

/// The state hash first seen after each checked index.
#[derive(Debug, Default)]
pub struct StateHash {
    seen: BTreeMap<u64, (NodeId, u32)>,
}

impl StateHash {
    /// `id`'s state, having applied everything through `index`, hashes to `hash`.
    pub fn observe(
        &mut self,
        id: NodeId,
        index: u64,
        hash: u32,
        how: &str,
    ) -> Result<(), Violation> {
        match self.seen.get(&index) {
            Some(&(first, want)) if want != hash => Err(violation(
                "State Machine Safety (state)",
                format!(
                    "{id}'s state {how} through index {index} hashes to {hash:#010x}; {first}'s \
                     hashed to {want:#010x}"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.seen.insert(index, (id, hash));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_hash_at_an_index_binds_the_others() {
        let mut c = StateHash::default();
        assert!(c.observe(NodeId(1), 16, 7, "applied").is_ok());
        assert!(c.observe(NodeId(2), 16, 7, "installed from the leader").is_ok());
        assert!(c.observe(NodeId(2), 32, 9, "applied").is_ok());
        let v = c.observe(NodeId(3), 16, 8, "restored at restart").expect_err("differs");
        assert_eq!(v.property, "State Machine Safety (state)");
        assert!(v.detail.contains("n3") || v.detail.contains('3'), "{}", v.detail);
    }
}
