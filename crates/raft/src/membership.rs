//! Cluster membership: who votes and who only learns (Raft §6, Thesis §4.2.1).
//! Changing it at run time arrives with the membership issue; here it is fixed at start.

use std::collections::BTreeSet;

use crate::error::ConfigError;
use crate::quorum::JointConfig;
use crate::types::NodeId;

/// The members of the cluster: voters count in majorities, learners only receive the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A membership with the given voters and learners. A node may not be both, node 0 is not
    /// a valid member, and there must be at least one voter.
    ///
    /// ```
    /// use flotilla_raft::{Membership, NodeId};
    /// let m = Membership::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(4)]).unwrap();
    /// assert!(m.is_voter(NodeId(2)) && !m.is_voter(NodeId(4)) && m.contains(NodeId(4)));
    /// assert!(Membership::new([], []).is_err());
    /// ```
    pub fn new(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Result<Membership, ConfigError> {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        let learners: BTreeSet<NodeId> = learners.into_iter().collect();
        if voters.is_empty() {
            return Err(ConfigError::Membership("no voter"));
        }
        if voters.contains(&NodeId::ZERO) || learners.contains(&NodeId::ZERO) {
            return Err(ConfigError::Membership("node id 0 is reserved"));
        }
        if voters.intersection(&learners).next().is_some() {
            return Err(ConfigError::Membership("a node is both voter and learner"));
        }
        Ok(Membership { voters, learners })
    }

    /// Voting members.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// Non-voting members.
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` is a member at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member, voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.union(&self.learners).copied()
    }

    /// The quorum rule of this membership.
    pub(crate) fn quorum(&self) -> JointConfig {
        JointConfig::new(self.voters.clone(), BTreeSet::new())
    }
}
