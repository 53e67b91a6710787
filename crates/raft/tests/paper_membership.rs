//! Paper tests, membership changes: learners (Thesis §4.2.1), single-server changes (Thesis
//! §4.1–4.3), removing the leader (Raft §6), joint consensus (Raft §6), and how members
//! treat servers their configuration does not name (Thesis §4.1).

mod common;

use common::*;
use flotilla_raft::testkit::Cluster;
use flotilla_raft::{ConfChange, ConfChangeError, Config, EntryKind, LogIndex, NodeId, Role};

fn settle(c: &mut Cluster, rounds: usize) {
    for _ in 0..rounds {
        c.tick_all();
        c.deliver_all();
    }
}

/// Thesis §4.2.1: "the new server joins the cluster as a non-voting member. The leader
/// replicates log entries to it, but it is not yet counted towards majorities".
#[test]
fn a_learner_receives_the_log_but_does_not_count_in_majorities() {
    let mut c = Cluster::new(3, 31);
    let l = c.elect();
    c.propose(l, "before").unwrap();
    c.deliver_all();
    c.add_node(NodeId(4));
    c.propose_conf_change(l, ConfChange::AddLearner(NodeId(4))).unwrap();
    c.deliver_all();
    assert!(c.node(l).membership().learners().contains(&NodeId(4)));
    assert_eq!(c.applied_data(NodeId(4)), ["before"], "the learner caught up");
    // With both other voters gone, the learner's copy does not make a majority.
    let others: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != l && *i != NodeId(4)).collect();
    c.crash(others[0]);
    c.crash(others[1]);
    let id = c.propose(l, "needs-a-voter").unwrap();
    c.deliver_all();
    assert!(c.node(l).status().commit < id.index, "a learner never counts toward commitment");
    assert_eq!(c.node(NodeId(4)).status().last_index, id.index, "but it has the entry");
    // And it never campaigns.
    settle(&mut c, 60);
    assert_ne!(c.node(NodeId(4)).status().role, Role::Candidate);
    assert_ne!(c.node(NodeId(4)).status().role, Role::Leader);
}

/// Heals the network, lets the learner catch up, and promotes it: now accepted everywhere.
fn heal_and_promote(c: &mut Cluster, l: NodeId, learner: NodeId) {
    c.heal();
    settle(c, 5);
    c.propose_conf_change(l, ConfChange::PromoteLearner(learner)).unwrap();
    c.deliver_all();
    assert!(c.node(l).membership().is_voter(learner));
    assert!(c.node(learner).membership().is_voter(learner), "the entry reached it too");
}

/// Promotion is refused while the learner lags, with a clear error, and succeeds once it has
/// caught up; the promoted node then counts.
#[test]
fn promoting_a_learner_waits_until_it_has_caught_up() {
    let mut c = Cluster::with_config(3, |id| Config {
        promotion_lag_max: 5,
        rng_seed: id.0,
        ..Config::new(id)
    });
    let l = c.elect();
    c.add_node(NodeId(4));
    c.propose_conf_change(l, ConfChange::AddLearner(NodeId(4))).unwrap();
    c.deliver_all();
    c.isolate(NodeId(4));
    for i in 0..10 {
        c.propose(l, &format!("p{i}")).unwrap();
    }
    c.deliver_all();
    match c.propose_conf_change(l, ConfChange::PromoteLearner(NodeId(4))) {
        Err(ConfChangeError::LearnerLagging { id, lag, max }) => {
            assert_eq!((id, max), (NodeId(4), 5));
            assert!(lag >= 10, "lag {lag}");
        }
        other => panic!("{other:?}"),
    }
    heal_and_promote(&mut c, l, NodeId(4));
}

/// A learner the leader has never heard from is not promoted, however short the log: the lag
/// alone would let an unreachable node become a voter that every quorum then needs.
#[test]
fn promoting_a_learner_never_heard_from_is_refused() {
    let mut c = Cluster::new(3, 7);
    let l = c.elect();
    c.add_node(NodeId(4));
    c.isolate(NodeId(4));
    c.propose_conf_change(l, ConfChange::AddLearner(NodeId(4))).unwrap();
    c.deliver_all();
    match c.propose_conf_change(l, ConfChange::PromoteLearner(NodeId(4))) {
        Err(ConfChangeError::LearnerLagging { id, lag, .. }) => {
            assert_eq!(id, NodeId(4));
            assert_eq!(lag, c.node(l).status().last_index.0, "nothing acknowledged");
        }
        other => panic!("{other:?}"),
    }
    heal_and_promote(&mut c, l, NodeId(4));
}

/// Thesis §4.1: "The new configuration takes effect on each server as soon as it is added to
/// that server's log": a follower uses it before it is committed.
#[test]
fn a_configuration_takes_effect_when_appended_not_when_committed() {
    let mut n = node(2, &[1, 2, 3]);
    let cc = ConfChange::AddVoter(NodeId(4)).encode();
    let entry = flotilla_raft::Entry {
        term: flotilla_raft::Term(1),
        index: LogIndex(1),
        kind: EntryKind::ConfChange,
        data: cc,
    };
    n.step(msg(
        1,
        2,
        1,
        flotilla_raft::MessageBody::AppendEntries {
            prev_log: eid(0, 0),
            entries: vec![entry],
            leader_commit: LogIndex(0),
        },
    ))
    .unwrap();
    assert!(n.membership().is_voter(NodeId(4)), "in effect while uncommitted");
    assert_eq!(n.status().commit, LogIndex(0));
    // A new leader of term 2 replaces that uncommitted entry: the configuration reverts.
    n.step(append(3, 2, 2, (0, 0), &[2], 0)).unwrap();
    assert!(!n.membership().contains(NodeId(4)), "reverted with the entry that held it");
}

/// Thesis §4.1: single-server changes, one at a time: the next is refused until the previous
/// is committed; and (Thesis §4.3) not before the leader committed an entry of its term.
#[test]
fn one_change_at_a_time_and_only_after_a_commit_in_the_leaders_term() {
    let mut n = node(1, &[1, 2, 3]);
    make_leader(&mut n, &[1, 2, 3]);
    assert_eq!(
        n.propose_conf_change(ConfChange::AddVoter(NodeId(4))),
        Err(ConfChangeError::LeaderNotReady)
    );
    n.step(ack(2, 1, 1, 1)).unwrap();
    drain(&mut n);
    let first = n.propose_conf_change(ConfChange::AddVoter(NodeId(4))).unwrap();
    assert_eq!(
        n.propose_conf_change(ConfChange::AddLearner(NodeId(5))),
        Err(ConfChangeError::InProgress { pending: first.index })
    );
    drain(&mut n);
    // Four voters now: committing needs three.
    n.step(ack(2, 1, 1, first.index.0)).unwrap();
    drain(&mut n);
    assert!(
        n.status().commit < first.index,
        "the new configuration is in effect: 2 of 4 is not enough"
    );
    n.step(ack(3, 1, 1, first.index.0)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, first.index);
    assert!(
        n.propose_conf_change(ConfChange::AddLearner(NodeId(5))).is_ok(),
        "free once committed"
    );
}

/// Invalid changes are refused with typed errors and append nothing.
#[test]
fn invalid_changes_are_refused() {
    let mut n = node(1, &[1]);
    make_leader(&mut n, &[1]);
    let last = n.status().last_index;
    let cases = [
        (ConfChange::AddVoter(NodeId(1)), ConfChangeError::AlreadyMember { id: NodeId(1) }),
        (ConfChange::PromoteLearner(NodeId(7)), ConfChangeError::NotALearner { id: NodeId(7) }),
        (ConfChange::Remove(NodeId(7)), ConfChangeError::NotAMember { id: NodeId(7) }),
        (ConfChange::Remove(NodeId(1)), ConfChangeError::LastVoter { id: NodeId(1) }),
        (ConfChange::AddLearner(NodeId(0)), ConfChangeError::ZeroId),
    ];
    for (cc, want) in cases {
        assert_eq!(n.propose_conf_change(cc.clone()), Err(want), "{cc:?}");
    }
    assert_eq!(n.status().last_index, last);
    let mut f = node(2, &[1, 2]);
    assert_eq!(
        f.propose_conf_change(ConfChange::AddVoter(NodeId(3))),
        Err(ConfChangeError::NotLeader { leader_hint: None })
    );
}

/// Raft §6: a leader removed from the configuration keeps leading until the change commits
/// (without counting itself), then steps down; the rest elect a new leader.
#[test]
fn removing_the_leader_it_steps_down_once_the_change_commits() {
    let mut c = Cluster::new(3, 33);
    let l = c.elect();
    c.propose_conf_change(l, ConfChange::Remove(l)).unwrap();
    c.deliver_all();
    assert_ne!(c.node(l).status().role, Role::Leader, "stepped down after the commit");
    settle(&mut c, 60);
    let new = c.leader().expect("the remaining two elect a leader");
    assert_ne!(new, l);
    c.propose(new, "after-removal").unwrap();
    c.deliver_all();
    let others: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != l).collect();
    for id in others {
        assert!(c.applied_data(id).contains(&"after-removal".to_string()));
    }
    assert!(!c.node(new).membership().contains(l));
}

/// Removed servers must not disrupt the cluster (RAFT.md): their messages are refused as
/// coming from an unknown node, and they never campaign.
#[test]
fn a_removed_server_does_not_disrupt_the_cluster() {
    let mut c = Cluster::new(3, 34);
    let l = c.elect();
    let victim = c.ids().into_iter().find(|i| *i != l).unwrap();
    c.propose_conf_change(l, ConfChange::Remove(victim)).unwrap();
    c.deliver_all();
    let term = c.node(l).status().term;
    settle(&mut c, 100);
    assert_eq!(c.leader(), Some(l));
    assert_eq!(c.node(l).status().term, term, "no election was forced");
}

/// Thesis §4.1: "a server accepts AppendEntries requests from a leader that is not part of
/// the server's latest configuration", and "grants its vote to a candidate that is not part
/// of the server's latest configuration (if the candidate has a sufficiently up-to-date log
/// and a current term)". A member whose configuration is stale must hear the servers added
/// since, or a newer configuration that needs it may never elect a leader (the simulator
/// found such a joint configuration, seeds 6326 and 7871 of the sweep). A stranger whose
/// log is behind (a removed server that missed its removal) or whose term is past is still
/// refused.
#[test]
fn a_member_with_a_stale_configuration_hears_a_newer_leader_and_up_to_date_candidates() {
    use flotilla_raft::{MessageBody, StepError};
    let stranger = Err(StepError::UnknownSender { from: NodeId(9) });
    // Node 1 knows voters {1, 2, 3}, term 3, log terms [1, 2, 3].
    let mut n = node_with(cfg(1), &[1, 2, 3], 3, &[1, 2, 3]);
    assert_eq!(n.step(vote_req(9, 1, 4, (2, 2))), stranger, "a candidate with an older log");
    assert_eq!(n.step(vote_req(9, 1, 3, (3, 3))), stranger, "a vote in a term not past ours");
    assert_eq!(n.step(append(9, 1, 2, (3, 3), &[], 0)), stranger, "a leader of a past term");
    // An up-to-date candidate in a later term gets the vote.
    n.step(vote_req(9, 1, 4, (3, 3))).unwrap();
    let out = drain(&mut n);
    let granted = out.all().iter().any(|m| {
        m.to == NodeId(9) && matches!(m.body, MessageBody::VoteResponse { granted: true, .. })
    });
    assert!(granted, "{:?}", out.all());
    // The leader of term 4 it does not know: its entries are accepted and acknowledged.
    n.step(append(9, 1, 4, (3, 3), &[4], 0)).unwrap();
    let out = drain(&mut n);
    assert_eq!(n.status().last_index, LogIndex(4));
    assert_eq!(n.status().leader, Some(NodeId(9)));
    assert!(out.all().iter().any(|m| m.to == NodeId(9)), "{:?}", out.all());
}

/// A restarted node recovers its configuration from the log (the latest change in it).
#[test]
fn a_restarted_node_recovers_its_configuration_from_the_log() {
    let mut c = Cluster::new(3, 35);
    let l = c.elect();
    c.add_node(NodeId(4));
    c.propose_conf_change(l, ConfChange::AddLearner(NodeId(4))).unwrap();
    c.deliver_all();
    let f = c.ids().into_iter().find(|i| *i != l && *i != NodeId(4)).unwrap();
    c.crash(f);
    c.restart(f);
    assert!(c.node(f).membership().learners().contains(&NodeId(4)));
}

fn set(ids: &[u64]) -> std::collections::BTreeSet<NodeId> {
    ids.iter().map(|i| NodeId(*i)).collect()
}

/// Raft §6, joint consensus: two voters replaced at once. In C_old,new "agreement (for
/// elections and entry commitment) requires separate majorities from both the old and new
/// configurations"; once it commits, the leader moves on to C_new by itself.
#[test]
fn joint_consensus_replaces_two_voters_at_once_and_leaves_automatically() {
    let mut c = Cluster::new(3, 36);
    let l = c.elect();
    let keep = if l == NodeId(1) { 1 } else { l.0 };
    for id in [4, 5] {
        c.add_node(NodeId(id));
    }
    let change = ConfChange::EnterJoint { voters: set(&[keep, 4, 5]), learners: set(&[]) };
    let at = c.propose_conf_change(l, change).unwrap();
    assert!(c.node(l).membership().is_joint(), "in effect when appended");
    // While joint, the old majority is needed too: cut both other old voters off.
    let old_others: Vec<NodeId> =
        [1, 2, 3].iter().map(|i| NodeId(*i)).filter(|i| *i != l).collect();
    c.isolate(old_others[0]);
    c.isolate(old_others[1]);
    c.deliver_all();
    assert!(c.node(l).status().commit < at.index, "C_old's majority is missing: no commit");
    c.heal();
    settle(&mut c, 10);
    let m = c.node(l).membership().clone();
    assert!(!m.is_joint(), "left the joint configuration by itself");
    assert_eq!(m.voters(), &set(&[keep, 4, 5]));
    let leader = c.leader().expect("a leader in C_new");
    assert!(m.is_voter(leader));
    c.propose(leader, "in-c-new").unwrap();
    c.deliver_all();
    for id in [keep, 4, 5] {
        assert!(c.applied_data(NodeId(id)).contains(&"in-c-new".to_string()), "{id}");
    }
}

/// Raft §6: a leader that is not in C_new keeps managing the cluster through the joint
/// configuration, then steps down once C_new is committed.
#[test]
fn joint_consensus_can_remove_the_leader() {
    let mut c = Cluster::new(3, 37);
    let l = c.elect();
    c.add_node(NodeId(4));
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != l.0).collect();
    let change = ConfChange::EnterJoint { voters: set(&[rest[0], rest[1], 4]), learners: set(&[]) };
    c.propose_conf_change(l, change).unwrap();
    c.deliver_all();
    assert_ne!(c.node(l).status().role, Role::Leader, "stepped down once C_new committed");
    settle(&mut c, 60);
    let new = c.leader().expect("C_new elects a leader");
    assert_ne!(new, l);
    assert!(!c.node(new).membership().contains(l));
    // Single-server changes wait while joint; joint changes are refused when not joint.
    assert!(matches!(
        c.node_mut(new).propose_conf_change(ConfChange::LeaveJoint),
        Err(ConfChangeError::NotJoint)
    ));
}

#[test]
fn conf_changes_round_trip_through_their_encoding() {
    for cc in [
        ConfChange::AddVoter(NodeId(3)),
        ConfChange::AddLearner(NodeId(4)),
        ConfChange::PromoteLearner(NodeId(5)),
        ConfChange::Remove(NodeId(6)),
        ConfChange::EnterJoint { voters: set(&[1, 2, 9]), learners: set(&[7]) },
        ConfChange::LeaveJoint,
    ] {
        assert_eq!(ConfChange::decode(&cc.encode()), Some(cc.clone()));
    }
    assert_eq!(ConfChange::decode(&[9, 9]), None);
}
