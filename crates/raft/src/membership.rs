//! Cluster membership: who votes and who only learns (Raft §6, Thesis §4.2.1).
//! Changing it at run time arrives with the membership issue; here it is fixed at start.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::error::{ConfChangeError, ConfigError};
use crate::quorum::JointConfig;
use crate::types::NodeId;

/// The members of the cluster: voters count in majorities, learners only receive the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    /// In a joint configuration (Raft §6), the old voters, whose majority is needed too.
    /// Empty otherwise.
    outgoing: BTreeSet<NodeId>,
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
        Ok(Membership { voters, outgoing: BTreeSet::new(), learners })
    }

    /// A joint configuration (Thesis §4.3) as recorded in storage: `voters` (incoming),
    /// `outgoing` (empty for a simple configuration) and `learners`.
    pub fn joint(
        voters: impl IntoIterator<Item = NodeId>,
        outgoing: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Result<Membership, ConfigError> {
        let mut m = Membership::new(voters, learners)?;
        m.outgoing = outgoing.into_iter().collect();
        if m.outgoing.contains(&NodeId::ZERO) {
            return Err(ConfigError::Membership("node id 0 is reserved"));
        }
        if m.outgoing.intersection(&m.learners).next().is_some() {
            return Err(ConfigError::Membership("a node is both outgoing voter and learner"));
        }
        Ok(m)
    }

    /// Voting members (of the new configuration, when joint).
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// Non-voting members.
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// In a joint configuration: the old voters.
    pub fn outgoing_voters(&self) -> &BTreeSet<NodeId> {
        &self.outgoing
    }

    /// Whether this is a joint configuration C_old,new (Raft §6).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` is a member at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member, voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let all: BTreeSet<NodeId> =
            self.voters.iter().chain(&self.outgoing).chain(&self.learners).copied().collect();
        all.into_iter()
    }

    /// The membership after `change`, or why the change does not apply. Never mutates.
    ///
    /// ```
    /// use flotilla_raft::{ConfChange, Membership, NodeId};
    /// let m = Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap();
    /// let m = m.apply(&ConfChange::AddLearner(NodeId(4))).unwrap();
    /// let m = m.apply(&ConfChange::PromoteLearner(NodeId(4))).unwrap();
    /// assert!(m.is_voter(NodeId(4)));
    /// assert!(m.apply(&ConfChange::AddVoter(NodeId(4))).is_err());
    /// ```
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, ConfChangeError> {
        let mut m = self.clone();
        match change {
            ConfChange::EnterJoint { voters, learners } => {
                if self.is_joint() {
                    return Err(ConfChangeError::InJoint);
                }
                if voters.is_empty() {
                    return Err(ConfChangeError::LastVoter { id: NodeId::ZERO });
                }
                if voters.contains(&NodeId::ZERO) || learners.contains(&NodeId::ZERO) {
                    return Err(ConfChangeError::ZeroId);
                }
                if let Some(id) = voters.intersection(learners).next() {
                    return Err(ConfChangeError::AlreadyMember { id: *id });
                }
                return Ok(Membership {
                    voters: voters.clone(),
                    outgoing: self.voters.clone(),
                    learners: learners.clone(),
                });
            }
            ConfChange::LeaveJoint => {
                if !self.is_joint() {
                    return Err(ConfChangeError::NotJoint);
                }
                m.outgoing.clear();
                return Ok(m);
            }
            _ if self.is_joint() => return Err(ConfChangeError::InJoint),
            _ => {}
        }
        match *change {
            ConfChange::AddVoter(id) | ConfChange::AddLearner(id)
                if id == crate::types::NodeId::ZERO =>
            {
                return Err(ConfChangeError::ZeroId);
            }
            ConfChange::AddVoter(id) | ConfChange::AddLearner(id) if self.contains(id) => {
                return Err(ConfChangeError::AlreadyMember { id });
            }
            ConfChange::AddVoter(id) => {
                m.voters.insert(id);
            }
            ConfChange::AddLearner(id) => {
                m.learners.insert(id);
            }
            ConfChange::PromoteLearner(id) => {
                if !m.learners.remove(&id) {
                    return Err(ConfChangeError::NotALearner { id });
                }
                m.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                if !self.contains(id) {
                    return Err(ConfChangeError::NotAMember { id });
                }
                m.learners.remove(&id);
                if m.voters.remove(&id) && m.voters.is_empty() {
                    return Err(ConfChangeError::LastVoter { id });
                }
            }
            ConfChange::EnterJoint { .. } | ConfChange::LeaveJoint => {
                unreachable!("joint changes are handled above")
            }
        }
        Ok(m)
    }

    /// The quorum rule of this membership.
    pub(crate) fn quorum(&self) -> JointConfig {
        JointConfig::new(self.voters.clone(), self.outgoing.clone())
    }
}

/// A membership change: single-server changes (Thesis §4.1–4.3: one voter added or removed
/// at a time, learners added and promoted, Thesis §4.2.1), or an arbitrary change through
/// joint consensus (Raft §6), which the leader leaves automatically once it commits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Add a voter at once (prefer a learner, then promote it, so that the new voter does not
    /// stall commitment while it catches up: Thesis §4.2.1).
    AddVoter(NodeId),
    /// Add a non-voting member that receives the log.
    AddLearner(NodeId),
    /// Make a learner a voter.
    PromoteLearner(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
    /// Raft §6: move to any configuration through the joint configuration C_old,new, in which
    /// both the old and the new voters' majorities are needed.
    EnterJoint {
        /// The new voters.
        voters: BTreeSet<NodeId>,
        /// The new learners.
        learners: BTreeSet<NodeId>,
    },
    /// Leave the joint configuration for C_new (appended by the leader itself once the joint
    /// configuration is committed).
    LeaveJoint,
}

impl ConfChange {
    /// Encodes as one byte of operation and eight of node id.
    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(9);
        let (op, id) = match self {
            ConfChange::AddVoter(id) => (1u8, id),
            ConfChange::AddLearner(id) => (2, id),
            ConfChange::PromoteLearner(id) => (3, id),
            ConfChange::Remove(id) => (4, id),
            ConfChange::EnterJoint { voters, learners } => {
                b.push(5);
                for set in [voters, learners] {
                    b.extend_from_slice(&(set.len() as u32).to_le_bytes());
                    for id in set {
                        b.extend_from_slice(&id.0.to_le_bytes());
                    }
                }
                return Bytes::from(b);
            }
            ConfChange::LeaveJoint => return Bytes::from_static(&[6]),
        };
        b.push(op);
        b.extend_from_slice(&id.0.to_le_bytes());
        Bytes::from(b)
    }

    /// Decodes [`ConfChange::encode`]; `None` for anything else.
    pub fn decode(data: &[u8]) -> Option<ConfChange> {
        match data.first()? {
            6 if data.len() == 1 => return Some(ConfChange::LeaveJoint),
            5 => {
                let mut at = 1;
                let mut sets = [BTreeSet::new(), BTreeSet::new()];
                for set in &mut sets {
                    let n = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
                    at += 4;
                    for _ in 0..n {
                        set.insert(NodeId(u64::from_le_bytes(
                            data.get(at..at + 8)?.try_into().ok()?,
                        )));
                        at += 8;
                    }
                }
                let [voters, learners] = sets;
                return (at == data.len()).then_some(ConfChange::EnterJoint { voters, learners });
            }
            _ => {}
        }
        if data.len() != 9 {
            return None;
        }
        let id = NodeId(u64::from_le_bytes(data[1..].try_into().ok()?));
        Some(match data[0] {
            1 => ConfChange::AddVoter(id),
            2 => ConfChange::AddLearner(id),
            3 => ConfChange::PromoteLearner(id),
            4 => ConfChange::Remove(id),
            _ => return None,
        })
    }
}
