//! Paper tests, leader election: one test per rule of RAFT.md's "Leader election" and "Rules
//! for all servers", named after the rule and citing where it lives.

mod common;

use common::*;
use flotilla_raft::testkit::Cluster;
use flotilla_raft::{Config, LogIndex, Message, MessageBody, NodeId, Role, Term};

/// Raft §5.2: "If a follower receives no communication over a period of time called the
/// election timeout, then it assumes there is no viable leader and begins an election."
#[test]
fn follower_starts_election_after_election_timeout() {
    let mut n = node(1, &[1, 2, 3]);
    // Below the minimum timeout nothing happens.
    tick_n(&mut n, 9);
    assert_eq!(n.status().role, Role::Follower);
    assert!(drain(&mut n).all().is_empty());
    // By the maximum it has campaigned.
    tick_n(&mut n, 11);
    assert_eq!(n.status().role, Role::Candidate);
}

/// Raft §5.2: "a follower increments its current term and transitions to candidate state. It
/// then votes for itself and issues RequestVote RPCs in parallel to each of the other
/// servers". Raft Fig. 2: the term and vote are durable before the requests go out.
#[test]
fn candidate_increments_term_votes_for_itself_persists_then_requests_votes() {
    let mut n = node_with(cfg(1), &[1, 2, 3], 4, &[1, 2]);
    n.campaign().unwrap();
    let out = drain(&mut n);
    let st = n.status();
    assert_eq!((st.role, st.term, st.vote), (Role::Candidate, Term(5), Some(NodeId(1))));
    let first = &out.readies[0];
    let hs = first.hard_state.expect("the new term and vote are persisted");
    assert_eq!((hs.term, hs.vote), (Term(5), Some(NodeId(1))));
    assert!(first.must_sync, "term and vote are synced before the requests are sent");
    assert!(out.early.is_empty(), "no vote request may leave before the vote is durable");
    assert_eq!(kinds(&out.after_persist), ["1->2 Vote", "1->3 Vote"]);
    for m in &out.after_persist {
        assert_eq!(m.term, Term(5));
        assert_eq!(
            m.body,
            MessageBody::VoteRequest { pre_vote: false, last_log: eid(2, 2), transfer: false }
        );
    }
}

/// Raft §5.2: "A candidate wins an election if it receives votes from a majority of the
/// servers in the full cluster for the same term."
#[test]
fn candidate_wins_with_votes_from_a_majority() {
    // (cluster size, granted votes besides its own, rejections) -> role after
    let cases = [
        (1, 0, 0, Role::Leader),
        (3, 1, 0, Role::Leader),
        (3, 0, 1, Role::Candidate),
        (3, 0, 2, Role::Follower),
        (5, 1, 0, Role::Candidate),
        (5, 2, 0, Role::Leader),
        (5, 1, 3, Role::Follower),
        (5, 2, 2, Role::Leader),
    ];
    for (size, yes, no, want) in cases {
        let voters: Vec<u64> = (1..=size).collect();
        let mut n = node(1, &voters);
        n.campaign().unwrap();
        drain(&mut n);
        let mut others = voters[1..].iter();
        for _ in 0..yes {
            let _ = n.step(vote_resp(*others.next().unwrap(), 1, 1, true));
        }
        for _ in 0..no {
            let _ = n.step(vote_resp(*others.next().unwrap(), 1, 1, false));
        }
        assert_eq!(n.status().role, want, "size {size}, {yes} granted, {no} rejected");
    }
}

/// Raft §5.2: "If the leader's term (included in its RPC) is at least as large as the
/// candidate's current term, then the candidate recognizes the leader as legitimate and
/// returns to follower state."
#[test]
fn candidate_steps_down_on_append_entries_from_leader_of_at_least_its_term() {
    // (candidate's term, leader's term) -> (role, term, leader) after the AppendEntries
    let cases = [
        (1, 1, Role::Follower, 1, Some(NodeId(2))),
        (1, 2, Role::Follower, 2, Some(NodeId(2))),
        (2, 1, Role::Candidate, 2, None),
    ];
    for (cand_term, leader_term, want_role, want_term, want_leader) in cases {
        let mut n = node(1, &[1, 2, 3]);
        for _ in 0..cand_term {
            n.campaign().unwrap();
        }
        drain(&mut n);
        n.step(append(2, 1, leader_term, (0, 0), &[], 0)).unwrap();
        let st = n.status();
        assert_eq!(
            (st.role, st.term.0, st.leader),
            (want_role, want_term, want_leader),
            "candidate of term {cand_term}, leader of term {leader_term}"
        );
    }
}

/// Raft §5.2: "If many followers become candidates at the same time, votes could be split so
/// that no candidate obtains a majority. When this happens, each candidate will time out and
/// start a new election by incrementing its term".
#[test]
fn candidate_starts_new_election_after_timeout() {
    let mut n = node(1, &[1, 2, 3]);
    n.campaign().unwrap();
    drain(&mut n);
    assert_eq!(n.status().term, Term(1));
    tick_n(&mut n, 20);
    let st = n.status();
    assert_eq!((st.role, st.term), (Role::Candidate, Term(2)));
    let out = drain(&mut n);
    assert_eq!(kinds(&out.after_persist), ["1->2 Vote", "1->3 Vote"]);
}

/// Raft §5.2: "Raft uses randomized election timeouts ... chosen randomly from a fixed
/// interval". The jitter comes from the node's seeded RNG only.
#[test]
fn election_timeouts_are_randomized_within_range() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let mut n = node_with(Config { rng_seed: seed, ..cfg(1) }, &[1, 2, 3], 0, &[]);
        let mut ticks = 0;
        while n.status().role == Role::Follower {
            n.tick().unwrap();
            ticks += 1;
        }
        assert!((10..20).contains(&ticks), "seed {seed}: campaigned after {ticks} ticks");
        seen.insert(ticks);
    }
    assert!(seen.len() >= 8, "timeouts spread over the range: {seen:?}");
}

/// Raft §5.2: "Each server will vote for at most one candidate in a given term, on a
/// first-come-first-served basis". Raft Fig. 2: "If votedFor is null or candidateId".
#[test]
fn one_vote_per_term_first_come_first_served() {
    let mut n = node(1, &[1, 2, 3]);
    n.step(vote_req(2, 1, 1, (0, 0))).unwrap();
    n.step(vote_req(3, 1, 1, (0, 0))).unwrap();
    // A repeated request from the candidate we voted for is granted again (it may have lost
    // our first answer).
    n.step(vote_req(2, 1, 1, (0, 0))).unwrap();
    let out = drain(&mut n);
    let answers: Vec<(u64, bool)> = out
        .after_persist
        .iter()
        .map(|m| match m.body {
            MessageBody::VoteResponse { granted, .. } => (m.to.0, granted),
            _ => panic!("unexpected {m:?}"),
        })
        .collect();
    assert_eq!(answers, [(2, true), (3, false), (2, true)]);
    assert_eq!(n.status().vote, Some(NodeId(2)));
    // Raft Fig. 2: the vote is durable before the answer is sent.
    assert!(out.early.is_empty());
    assert_eq!(n.store().hard_state().vote, Some(NodeId(2)));
}

/// Raft §5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
/// candidate ... If the logs have last entries with different terms, then the log with the
/// later term is more up-to-date. If the logs end with the same term, then whichever log is
/// longer is more up-to-date."
#[test]
fn vote_granted_only_to_candidate_with_up_to_date_log() {
    // voter's log is [1, 1, 2] (last 3/2). (candidate last index, last term) -> granted
    let cases = [
        ((3, 2), true),
        ((4, 2), true),
        ((2, 2), false),
        ((1, 3), true),
        ((9, 1), false),
        ((0, 0), false),
    ];
    for ((index, term), want) in cases {
        let mut n = node_with(cfg(1), &[1, 2, 3], 2, &[1, 1, 2]);
        n.step(vote_req(2, 1, 3, (index, term))).unwrap();
        let out = drain(&mut n);
        assert_eq!(
            out.after_persist[0].body,
            MessageBody::VoteResponse { pre_vote: false, granted: want },
            "candidate last {index}/{term}"
        );
    }
}

/// Raft Fig. 2, Rules for all servers: "If RPC request or response contains term T >
/// currentTerm: set currentTerm = T, convert to follower". The vote of the old term is gone.
#[test]
fn higher_term_converts_to_follower_and_clears_vote() {
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut n = node(1, &[1, 2, 3]);
        match role {
            Role::Candidate => {
                n.campaign().unwrap();
            }
            Role::Leader => {
                make_leader(&mut n, &[1, 2, 3]);
            }
            _ => {}
        }
        drain(&mut n);
        // A response from a later term (here a heartbeat answer) carries the news.
        n.step(msg(2, 1, 7, MessageBody::HeartbeatResponse { read_seq: 0 })).unwrap();
        let st = n.status();
        assert_eq!((st.role, st.term, st.vote), (Role::Follower, Term(7), None), "from {role}");
        let hs = drain(&mut n).readies[0].hard_state.unwrap();
        assert_eq!((hs.term, hs.vote), (Term(7), None), "from {role}: persisted");
    }
}

/// Raft Fig. 2: "Reply false if term < currentTerm" (AppendEntries and RequestVote). A stale
/// request changes nothing; the sender learns the newer term.
#[test]
fn stale_term_requests_are_rejected_and_change_nothing() {
    let mut n = node_with(cfg(1), &[1, 2, 3], 5, &[1, 5]);
    let before = n.status();
    for m in [
        vote_req(2, 1, 4, (9, 9)),
        append(2, 1, 4, (1, 1), &[4], 2),
        msg(2, 1, 4, MessageBody::Heartbeat { commit: LogIndex(1), read_seq: 0 }),
    ] {
        n.step(m).unwrap();
    }
    let out = drain(&mut n);
    assert_eq!(n.status(), before);
    assert!(out.readies.iter().all(|r| r.entries.is_empty() && r.hard_state.is_none()));
    for m in &out.after_persist {
        assert_eq!(m.term, Term(5), "the answer tells the stale sender the current term");
        match m.body {
            MessageBody::VoteResponse { granted, .. } => assert!(!granted),
            MessageBody::AppendResponse { outcome } => {
                assert_eq!(outcome, flotilla_raft::AppendOutcome::StaleTerm)
            }
            ref b => panic!("unexpected answer {b:?}"),
        }
    }
    assert_eq!(out.after_persist.len(), 3);
    // A stale response is simply dropped.
    n.step(vote_resp(2, 1, 4, true)).unwrap();
    assert!(drain(&mut n).all().is_empty());
}

/// Thesis §9.6: pre-vote. "a candidate would first ask other servers whether its log was
/// up-to-date enough to get their vote". The pre-candidate keeps its term; the servers asked
/// change nothing.
#[test]
fn pre_vote_changes_no_state_on_either_side() {
    let pv = |id| Config { pre_vote: true, ..cfg(id) };
    let mut a = node_with(pv(1), &[1, 2, 3], 3, &[1, 3]);
    a.campaign().unwrap();
    let out = drain(&mut a);
    let st = a.status();
    assert_eq!((st.role, st.term, st.vote), (Role::PreCandidate, Term(3), None));
    assert_eq!(kinds(&out.after_persist), ["1->2 PreVote", "1->3 PreVote"]);
    assert_eq!(out.after_persist[0].term, Term(4), "a pre-vote names the term it would use");

    let mut b = node_with(pv(2), &[1, 2, 3], 3, &[1, 3]);
    let before = b.status();
    b.step(out.after_persist[0].clone()).unwrap();
    let answer = drain(&mut b);
    assert_eq!(b.status(), before, "answering a pre-vote changes nothing");
    assert!(answer.readies.iter().all(|r| r.hard_state.is_none()));
    let reply = &answer.after_persist[0];
    assert_eq!(reply.body, MessageBody::VoteResponse { pre_vote: true, granted: true });
    assert_eq!(reply.term, Term(4));

    // With a majority of pre-votes the real election starts in term 4.
    a.step(reply.clone()).unwrap();
    let st = a.status();
    assert_eq!((st.role, st.term, st.vote), (Role::Candidate, Term(4), Some(NodeId(1))));
}

/// Thesis §9.6: a server that was partitioned away and rejoins does not disrupt a healthy
/// leader: its pre-votes fail, so its term never rises.
#[test]
fn rejoining_partitioned_server_does_not_disrupt_leader() {
    let mut c = Cluster::new(3, 1);
    let leader = c.elect();
    let term = c.node(leader).status().term;
    let outcast = c.ids().into_iter().find(|id| *id != leader).unwrap();
    c.isolate(outcast);
    for _ in 0..200 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(c.node(outcast).status().term, term, "pre-vote kept the outcast's term");
    c.heal();
    for _ in 0..100 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(c.leader(), Some(leader));
    assert_eq!(c.node(leader).status().term, term, "the leader was not disrupted");
}

/// Thesis §6.2: "a leader steps down if an election timeout elapses without a successful
/// round of heartbeats to a majority of its cluster".
#[test]
fn check_quorum_leader_steps_down_without_majority() {
    let mut c = Cluster::new(3, 2);
    let leader = c.elect();
    for _ in 0..30 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(c.leader(), Some(leader), "a leader hearing from its quorum stays");
    c.isolate(leader);
    let mut stepped_down_after = None;
    for t in 1..=40 {
        c.tick(leader);
        c.deliver_all();
        if c.node(leader).status().role != Role::Leader {
            stepped_down_after = Some(t);
            break;
        }
    }
    let t = stepped_down_after.expect("an isolated leader steps down");
    assert!(t <= 2 * 10, "within two election timeouts (took {t} ticks)");
}

/// Thesis §6.2 / §9.6, leader stickiness: "if a server receives a RequestVote request within
/// the minimum election timeout of hearing from a current leader, it does not update its term
/// or grant its vote".
#[test]
fn leader_stickiness_ignores_votes_while_hearing_from_leader() {
    let sticky = |id| Config { check_quorum: true, ..cfg(id) };
    let mut n = node_with(sticky(1), &[1, 2, 3], 1, &[1]);
    n.step(msg(2, 1, 1, MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 })).unwrap();
    drain(&mut n);
    n.step(vote_req(3, 1, 2, (5, 5))).unwrap();
    let out = drain(&mut n);
    assert!(out.all().is_empty(), "no answer within the lease");
    assert_eq!(n.status().term, Term(1), "no term change within the lease");
    // Once the leader is silent for an election timeout, votes are considered again.
    tick_n(&mut n, 10);
    drain(&mut n);
    n.step(vote_req(3, 1, 5, (5, 5))).unwrap();
    let out = drain(&mut n);
    assert_eq!(
        out.after_persist.last().unwrap().body,
        MessageBody::VoteResponse { pre_vote: false, granted: true }
    );
}

/// Raft §8: "each leader commit a blank no-op entry into the log at the start of its term".
#[test]
fn new_leader_appends_a_noop_entry() {
    let mut n = node_with(cfg(1), &[1, 2, 3], 1, &[1, 1]);
    let out = make_leader(&mut n, &[1, 2, 3]);
    let st = n.status();
    assert_eq!(st.last_index, LogIndex(3));
    let appended: Vec<_> = out.readies.iter().flat_map(|r| r.entries.clone()).collect();
    assert_eq!(appended, [eid(3, 2)]);
    let noop = &n.store().all_entries()[2];
    assert_eq!((noop.kind, noop.data.len()), (flotilla_raft::EntryKind::Noop, 0));
}

/// Raft Fig. 2, "Volatile state on leaders (reinitialized after election)": nextIndex = last
/// log index + 1, matchIndex = 0.
#[test]
fn leader_reinitializes_next_and_match_on_election() {
    let mut n = node_with(cfg(1), &[1, 2, 3], 1, &[1, 1, 1]);
    n.campaign().unwrap();
    drain(&mut n);
    n.step(vote_resp(2, 1, 2, true)).unwrap();
    // Before anything is acknowledged (the Ready is not yet collected): next = 4, match = 0.
    for p in n.status().progress.iter().filter(|p| p.id != NodeId(1)) {
        assert_eq!((p.matched, p.next), (LogIndex(0), LogIndex(4)), "peer {}", p.id);
    }
}

/// Learners never campaign (Thesis §4.2.1): only voters start elections.
#[test]
fn learner_never_campaigns() {
    let membership = flotilla_raft::Membership::new([NodeId(1), NodeId(2)], [NodeId(3)]).unwrap();
    let mut n =
        flotilla_raft::Node::new(cfg(3), flotilla_raft::MemStorage::new(membership)).unwrap();
    tick_n(&mut n, 500);
    assert_eq!(n.status().role, Role::Follower);
    assert!(drain(&mut n).all().is_empty());
}

/// A follower that hears from its leader never starts an election (Raft §5.2: "A server
/// remains in follower state as long as it receives valid RPCs from a leader").
#[test]
fn heartbeats_keep_followers_from_campaigning() {
    let mut c = Cluster::new(5, 3);
    let leader = c.elect();
    let term = c.node(leader).status().term;
    for _ in 0..500 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(c.leader(), Some(leader));
    for id in c.ids() {
        assert_eq!(c.node(id).status().term, term, "{id} stayed in the leader's term");
    }
}

/// Keep the helper used: messages are printed in one line each.
#[test]
fn messages_print_on_one_line() {
    let m: Message = append(1, 2, 3, (4, 2), &[3], 4);
    assert_eq!(format!("{m:?}"), "1->2 App term=3 prev=4/2 commit=4 entries=[5/3 \"e5\"]");
}
