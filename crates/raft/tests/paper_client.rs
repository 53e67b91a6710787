//! Paper tests, client interaction and leadership transfer: ReadIndex on the leader and from
//! followers, lease reads (Thesis §6.4, §6.4.1), and leadership transfer (Thesis §3.10).

mod common;

use common::*;
use flotilla_raft::testkit::Cluster;
use flotilla_raft::{
    Config, ConfigError, LogIndex, MessageBody, NodeId, ProposeError, ReadError, ReadMode, Role,
    TransferError,
};

/// Thesis §6.4 step 3: the leader "issues a new round of heartbeats and waits for their
/// acknowledgments from a majority of the cluster" before a read is served, and the read index
/// is the commit index when the read arrived (step 2).
#[test]
fn read_index_waits_for_a_quorum_heartbeat_round() {
    let mut c = Cluster::new(3, 21);
    let l = c.elect();
    c.propose(l, "x").unwrap();
    c.deliver_all();
    let commit = c.node(l).status().commit;
    c.read_index(l, "r1").unwrap();
    assert!(c.reads(l).is_empty(), "not served before a quorum confirms leadership");
    let sent: Vec<String> = c.queued().iter().map(|m| format!("{m:?}")).collect();
    assert!(sent.iter().all(|m| m.contains("Heartbeat") && m.contains("read=1")), "{sent:?}");
    // Both heartbeats arrive; no answer is back yet.
    c.deliver_one();
    c.deliver_one();
    assert!(c.reads(l).is_empty());
    // One acknowledgement (plus the leader itself) is a quorum of three.
    c.deliver_one();
    assert_eq!(c.reads(l).len(), 1);
    assert_eq!((c.reads(l)[0].0.as_str(), c.reads(l)[0].1), ("r1", commit));
}

/// Several reads share one heartbeat round: an acknowledgement of round s confirms every
/// round up to s.
#[test]
fn reads_share_heartbeat_rounds() {
    let mut c = Cluster::new(3, 22);
    let l = c.elect();
    for i in 0..5 {
        c.read_index(l, &format!("r{i}")).unwrap();
    }
    c.deliver_all();
    let ctxs: Vec<&str> = c.reads(l).iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ctxs, ["r0", "r1", "r2", "r3", "r4"], "served in order");
}

/// Thesis §6.4 step 1: "If the leader has not yet marked an entry from its current term
/// committed, it waits until it has."
#[test]
fn read_index_waits_for_a_commit_in_the_leaders_term() {
    let mut n = node(1, &[1, 2, 3]);
    make_leader(&mut n, &[1, 2, 3]);
    n.read_index("early").unwrap();
    let out = drain(&mut n);
    assert!(out
        .early
        .iter()
        .all(|m| !matches!(m.body, MessageBody::Heartbeat { read_seq: 1.., .. })));
    // The no-op commits; the read proceeds to its heartbeat round.
    n.step(ack(2, 1, 1, 1)).unwrap();
    let out = drain(&mut n);
    let beats = out
        .early
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat { read_seq: 1, .. }))
        .count();
    assert_eq!(beats, 2, "a read round to both followers");
    n.step(msg(3, 1, 1, MessageBody::HeartbeatResponse { read_seq: 1 })).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.read_states.len(), 1);
    assert_eq!(rd.read_states[0].index, LogIndex(1));
}

/// A leader cut off from its quorum cannot confirm its leadership, so it serves no read: the
/// stale read a deposed leader would otherwise serve never happens. Its reads fail when it
/// steps down.
#[test]
fn a_partitioned_leader_serves_no_reads() {
    let mut c = Cluster::new(3, 23);
    let l = c.elect();
    c.isolate(l);
    c.read_index(l, "stale?").unwrap();
    for _ in 0..40 {
        c.tick_all();
        c.deliver_all();
    }
    assert!(c.reads(l).is_empty(), "no quorum, no read");
    assert_ne!(c.node(l).status().role, Role::Leader, "check-quorum deposed it");
    assert_eq!(c.aborted_reads(l), ["stale?"], "the read failed, so the client can retry");
}

/// Thesis §6.4.1: "followers could also help offload the processing of read-only queries ...
/// the follower issues a request to the leader" for the read index, then waits to apply it.
#[test]
fn followers_serve_reads_through_the_leaders_read_index() {
    let mut c = Cluster::new(3, 24);
    let l = c.elect();
    c.propose(l, "a").unwrap();
    c.deliver_all();
    let f = c.ids().into_iter().find(|i| *i != l).unwrap();
    c.read_index(f, "fr").unwrap();
    c.deliver_all();
    let reads = c.reads(f);
    assert_eq!(reads.len(), 1);
    let (ctx, index, applied) = &reads[0];
    assert_eq!(ctx, "fr");
    assert_eq!(*index, c.node(l).status().commit);
    assert!(applied <= index, "the follower must wait for its state machine: applied {applied}");
    // A node that knows no leader refuses at once.
    let mut lonely = node(2, &[1, 2, 3]);
    assert_eq!(lonely.read_index("x"), Err(ReadError::NoLeader));
}

/// Three nodes serving reads from the leader lease (check-quorum is on by default).
fn lease_cluster() -> Cluster {
    Cluster::with_config(3, |id| Config {
        read_mode: ReadMode::LeaseBased,
        rng_seed: id.0,
        ..Config::new(id)
    })
}

/// Thesis §6.4.1, lease reads: the leader answers without a heartbeat round, which is only
/// safe with check-quorum (configuration refuses it otherwise).
#[test]
fn lease_reads_answer_at_once_and_require_check_quorum() {
    let bad =
        Config { read_mode: ReadMode::LeaseBased, check_quorum: false, ..Config::new(NodeId(1)) };
    assert_eq!(bad.validate(), Err(ConfigError::LeaseReadWithoutCheckQuorum));
    let mut c = lease_cluster();
    let l = c.elect();
    // No round acknowledged yet: no lease, so the read takes the ReadIndex path.
    c.read_index(l, "first").unwrap();
    assert!(c.reads(l).is_empty());
    c.deliver_all();
    assert_eq!(c.reads(l).len(), 1);
    // With a round just acknowledged, the lease answers at once, without any message.
    c.read_index(l, "lease").unwrap();
    assert_eq!(c.reads(l).len(), 2, "no heartbeat round needed");
    assert!(c.queued().is_empty());
    // Cut off, the lease runs out before a new leader could be elected elsewhere (the
    // minimum election timeout after the last acknowledged round): then no quick answer.
    c.isolate(l);
    for _ in 0..9 {
        c.tick(l);
    }
    c.read_index(l, "expired").unwrap();
    assert_eq!(c.reads(l).len(), 2, "the lease expired: the read waits for a quorum round");
}

/// Thesis §6.4.1 with §3.10: a leader that sent TimeoutNow holds no lease. The target
/// campaigns at once and its votes ignore leader stickiness, so a new leader can exist
/// before the lease would run out; a lease read then could miss its writes (the
/// simulator's seeds 49103 and 59417 of a sweep: a stale read from an old leader whose
/// inbound link was cut after it started a transfer). Such reads take a quorum round
/// instead, until the target's campaign is over.
#[test]
fn a_leader_that_started_a_transfer_serves_no_lease_read() {
    let mut c = lease_cluster();
    let l = c.elect();
    c.read_index(l, "first").unwrap();
    c.deliver_all();
    c.read_index(l, "lease").unwrap();
    assert_eq!(c.reads(l).len(), 2, "the lease answers at once");
    let target = c.ids().into_iter().find(|i| *i != l).unwrap();
    c.transfer_leader(l, target).unwrap();
    // The TimeoutNow is on its way (not delivered): the old leader must not answer from
    // its lease, though the last round was just acknowledged.
    c.read_index(l, "after-transfer").unwrap();
    assert_eq!(c.reads(l).len(), 2, "no lease read once TimeoutNow was sent");
}

/// Reads are bounded: beyond the limit a typed error, nothing queued.
#[test]
fn pending_reads_are_bounded() {
    let mut n = node_with(Config { pending_reads_max: 2, ..cfg(1) }, &[1, 2, 3], 0, &[]);
    make_leader(&mut n, &[1, 2, 3]);
    n.read_index("a").unwrap();
    n.read_index("b").unwrap();
    assert_eq!(n.read_index("c"), Err(ReadError::TooManyPending { limit: 2 }));
}

/// Thesis §3.10: the leader brings the target up to date, then sends TimeoutNow; the target
/// campaigns at once and wins, even though followers would otherwise ignore votes while they
/// hear from a leader (leader stickiness).
#[test]
fn leadership_transfer_to_an_up_to_date_follower() {
    let mut c = Cluster::new(3, 25);
    let l = c.elect();
    c.propose(l, "x").unwrap();
    c.deliver_all();
    let target = c.ids().into_iter().find(|i| *i != l).unwrap();
    let term = c.node(l).status().term;
    c.transfer_leader(l, target).unwrap();
    c.deliver_all();
    assert_eq!(c.leader(), Some(target));
    assert_eq!(c.node(target).status().term, term.next());
    assert_eq!(c.node(l).status().role, Role::Follower);
}

/// Thesis §3.10: a lagging target is first brought up to date; meanwhile the leader refuses
/// proposals ("stops accepting new client requests").
#[test]
fn leadership_transfer_catches_a_lagging_target_up_first() {
    let mut c = Cluster::new(3, 26);
    let l = c.elect();
    let target = c.ids().into_iter().find(|i| *i != l).unwrap();
    c.isolate(target);
    for i in 0..5 {
        c.propose(l, &format!("p{i}")).unwrap();
    }
    c.deliver_all();
    let last = c.node(l).status().last_index;
    c.heal();
    c.transfer_leader(l, target).unwrap();
    assert_eq!(c.propose(l, "during"), Err(ProposeError::TransferInProgress { to: target }));
    for _ in 0..10 {
        c.tick_all();
        c.deliver_all();
        if c.leader() == Some(target) {
            break;
        }
    }
    assert_eq!(c.leader(), Some(target));
    assert!(
        c.node(target).status().last_index > last,
        "the target had every entry, then its no-op"
    );
}

/// Thesis §3.10: "if the transfer does not complete within an election timeout, the prior
/// leader aborts the transfer and resumes accepting client requests".
#[test]
fn leadership_transfer_is_abandoned_after_an_election_timeout() {
    let mut c = Cluster::new(3, 27);
    let l = c.elect();
    let target = c.ids().into_iter().find(|i| *i != l).unwrap();
    c.crash(target);
    c.transfer_leader(l, target).unwrap();
    assert!(c.propose(l, "refused").is_err());
    for _ in 0..10 {
        c.tick(l);
        c.deliver_all();
    }
    assert_eq!(c.node(l).status().role, Role::Leader);
    assert_eq!(c.node(l).status().transferee, None);
    assert!(c.propose(l, "accepted again").is_ok());
}

/// Transfers are refused with typed errors when they cannot work.
#[test]
fn leadership_transfer_refusals_are_typed() {
    let mut c = Cluster::new(3, 28);
    let l = c.elect();
    let f = c.ids().into_iter().find(|i| *i != l).unwrap();
    assert_eq!(c.transfer_leader(f, l), Err(TransferError::NotLeader { leader_hint: Some(l) }));
    assert_eq!(c.transfer_leader(l, NodeId(9)), Err(TransferError::NotAVoter { id: NodeId(9) }));
    assert_eq!(c.transfer_leader(l, l), Ok(()), "to itself: nothing to do");
    assert_eq!(c.node(l).status().transferee, None);
}
