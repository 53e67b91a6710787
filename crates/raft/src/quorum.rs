//! Pure quorum arithmetic: vote tallies and the committed index, for a single majority and for
//! the joint configurations of Raft §6. No state, no IO: property-tested against a naive oracle.

use std::collections::BTreeSet;

use crate::types::{LogIndex, NodeId};

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoteResult {
    /// Neither a win nor a loss is certain yet.
    Pending,
    /// A quorum granted the vote.
    Won,
    /// A quorum can no longer be reached.
    Lost,
}

/// A set of voters decided by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MajorityConfig {
    voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// A majority configuration over `voters`.
    pub fn new(voters: BTreeSet<NodeId>) -> MajorityConfig {
        MajorityConfig { voters }
    }

    /// The voters.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The number of voters that make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest index acknowledged by a majority (Raft §5.3: "a log entry is committed once
    /// the leader that created the entry has replicated it on a majority of the servers").
    /// `acked` gives each voter's durable match index; a voter it does not know counts as 0.
    /// An empty configuration returns `LogIndex(u64::MAX)`, so that it never limits a joint
    /// configuration.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<LogIndex>) -> LogIndex {
        let n = self.voters.len();
        if n == 0 {
            return LogIndex(u64::MAX);
        }
        // Small clusters are the norm: sort on the stack.
        let mut stack = [0u64; 9];
        let mut heap;
        let matched: &mut [u64] = if n <= stack.len() {
            &mut stack[..n]
        } else {
            heap = vec![0u64; n];
            &mut heap[..]
        };
        for (slot, id) in matched.iter_mut().zip(&self.voters) {
            *slot = acked(*id).map_or(0, LogIndex::get);
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        // The quorum-th largest value is held by at least a quorum of voters.
        LogIndex(matched[self.quorum() - 1])
    }

    /// Tallies votes: `vote` says what each voter answered, `None` for no answer yet.
    /// An empty configuration wins, the identity for joint tallies.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for id in &self.voters {
            match vote(*id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let q = self.quorum();
        if granted >= q {
            VoteResult::Won
        } else if granted + missing >= q {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// Two majority configurations that must both agree: C_old,new of Raft §6. Outside a change the
/// outgoing half is empty and this behaves as the incoming majority alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct JointConfig {
    incoming: MajorityConfig,
    outgoing: MajorityConfig,
}

impl JointConfig {
    /// A joint configuration; pass an empty `outgoing` for a simple one.
    pub fn new(incoming: BTreeSet<NodeId>, outgoing: BTreeSet<NodeId>) -> JointConfig {
        JointConfig {
            incoming: MajorityConfig::new(incoming),
            outgoing: MajorityConfig::new(outgoing),
        }
    }

    /// Whether `id` votes in either half.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.voters.contains(&id) || self.outgoing.voters.contains(&id)
    }

    /// Every voter of either half, once each, in order.
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.incoming.voters.union(&self.outgoing.voters).copied().collect()
    }

    /// Raft §6: "Agreement (for elections and entry commitment) requires separate majorities
    /// from both the old and new configurations."
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<LogIndex>) -> LogIndex {
        let a = self.incoming.committed_index(&acked);
        let b = self.outgoing.committed_index(&acked);
        a.min(b)
    }

    /// Joint tally: won only if both halves won, lost if either lost.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let a = self.incoming.vote_result(&vote);
        let b = self.outgoing.vote_result(&vote);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    /// The oracle: the largest index `i` such that a majority acked at least `i`, found by
    /// trying every candidate value.
    fn naive_committed(voters: &BTreeSet<NodeId>, acked: &BTreeMap<NodeId, u64>) -> u64 {
        if voters.is_empty() {
            return u64::MAX;
        }
        let mut best = 0;
        for candidate in acked.values().copied().chain([0]) {
            let n =
                voters.iter().filter(|v| acked.get(v).copied().unwrap_or(0) >= candidate).count();
            if n > voters.len() / 2 {
                best = best.max(candidate);
            }
        }
        best
    }

    fn naive_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        if voters.is_empty() {
            return VoteResult::Won;
        }
        let yes = voters.iter().filter(|v| votes.get(v) == Some(&true)).count();
        let no = voters.iter().filter(|v| votes.get(v) == Some(&false)).count();
        if yes * 2 > voters.len() {
            VoteResult::Won
        } else if no * 2 >= voters.len() {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    #[test]
    fn committed_index_table() {
        let cases: &[(&[u64], &[(u64, u64)], u64)] = &[
            (&[1], &[(1, 5)], 5),
            (&[1, 2, 3], &[(1, 5), (2, 3), (3, 1)], 3),
            (&[1, 2, 3], &[(1, 5)], 0),
            (&[1, 2, 3, 4], &[(1, 5), (2, 5), (3, 4), (4, 1)], 4),
            (&[1, 2, 3, 4], &[(1, 5), (2, 4), (3, 3), (4, 2)], 3),
            (&[1, 2, 3, 4, 5], &[(1, 9), (2, 9), (3, 2), (4, 2), (5, 1)], 2),
        ];
        for (voters, acks, want) in cases {
            let cfg = MajorityConfig::new(ids(voters));
            let acks: BTreeMap<NodeId, LogIndex> =
                acks.iter().map(|(i, m)| (NodeId(*i), LogIndex(*m))).collect();
            assert_eq!(cfg.committed_index(|id| acks.get(&id).copied()), LogIndex(*want));
        }
    }

    #[test]
    fn joint_requires_both_majorities() {
        let cfg = JointConfig::new(ids(&[1, 2, 3]), ids(&[3, 4, 5]));
        let acks: BTreeMap<NodeId, LogIndex> =
            [(1, 9), (2, 9), (3, 1), (4, 1), (5, 1)].map(|(i, m)| (NodeId(i), LogIndex(m))).into();
        // Incoming {1,2,3} has 9 on a majority; outgoing {3,4,5} only 1.
        assert_eq!(cfg.committed_index(|id| acks.get(&id).copied()), LogIndex(1));
        let votes: BTreeMap<NodeId, bool> =
            [(1, true), (2, true), (3, false), (4, false)].map(|(i, v)| (NodeId(i), v)).into();
        assert_eq!(cfg.vote_result(|id| votes.get(&id).copied()), VoteResult::Lost);
    }

    proptest! {
        #[test]
        fn committed_index_matches_oracle(
            voters in proptest::collection::btree_set(1u64..12, 0..11),
            acks in proptest::collection::btree_map(1u64..12, 0u64..20, 0..12),
        ) {
            let voters = ids(&voters.into_iter().collect::<Vec<_>>());
            let acks: BTreeMap<NodeId, u64> = acks.into_iter().map(|(k, v)| (NodeId(k), v)).collect();
            let got = MajorityConfig::new(voters.clone())
                .committed_index(|id| acks.get(&id).map(|v| LogIndex(*v)));
            prop_assert_eq!(got.get(), naive_committed(&voters, &acks));
        }

        #[test]
        fn vote_result_matches_oracle(
            voters in proptest::collection::btree_set(1u64..12, 0..11),
            votes in proptest::collection::btree_map(1u64..12, any::<bool>(), 0..12),
        ) {
            let voters = ids(&voters.into_iter().collect::<Vec<_>>());
            let votes: BTreeMap<NodeId, bool> = votes.into_iter().map(|(k, v)| (NodeId(k), v)).collect();
            let got = MajorityConfig::new(voters.clone()).vote_result(|id| votes.get(&id).copied());
            prop_assert_eq!(got, naive_vote(&voters, &votes));
        }

        #[test]
        fn joint_committed_is_min_of_halves(
            a in proptest::collection::btree_set(1u64..8, 1..6),
            b in proptest::collection::btree_set(1u64..8, 0..6),
            acks in proptest::collection::btree_map(1u64..8, 0u64..20, 0..8),
        ) {
            let (a, b) = (ids(&a.into_iter().collect::<Vec<_>>()), ids(&b.into_iter().collect::<Vec<_>>()));
            let acks: BTreeMap<NodeId, u64> = acks.into_iter().map(|(k, v)| (NodeId(k), v)).collect();
            let got = JointConfig::new(a.clone(), b.clone())
                .committed_index(|id| acks.get(&id).map(|v| LogIndex(*v)));
            prop_assert_eq!(got.get(), naive_committed(&a, &acks).min(naive_committed(&b, &acks)));
        }
    }
}
