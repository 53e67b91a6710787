//! Paper tests, log replication: one test per rule of RAFT.md's "Log replication" section,
//! including the situations of Raft Fig. 7 and Fig. 8.

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::*;
use flotilla_raft::{
    AppendOutcome, Config, LogIndex, MessageBody, NodeId, ProgressState, ProposeError, RejectHint,
    Role, Term,
};

fn outcome(m: &flotilla_raft::Message) -> AppendOutcome {
    match m.body {
        MessageBody::AppendResponse { outcome } => outcome,
        ref b => panic!("expected an AppendResponse, got {b:?}"),
    }
}

/// Raft §5.3: "The leader appends the command to its log as a new entry, then issues
/// AppendEntries RPCs in parallel to each of the other servers". Each carries prevLogIndex,
/// prevLogTerm and leaderCommit (Raft Fig. 2).
#[test]
fn leader_appends_proposal_and_sends_append_entries_with_prev_and_commit() {
    let mut n = node(1, &[1, 2, 3]);
    make_leader(&mut n, &[1, 2, 3]);
    for f in [2, 3] {
        n.step(ack(f, 1, 1, 1)).unwrap();
    }
    drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(1), "the no-op committed");
    let id = n.propose("x").unwrap();
    assert_eq!(id, eid(2, 1));
    let out = drain(&mut n);
    assert_eq!(out.readies[0].entries, [eid(2, 1)], "appended to its own log");
    assert_eq!(kinds(&out.early), ["1->2 App", "1->3 App"]);
    for m in &out.early {
        match &m.body {
            MessageBody::AppendEntries { prev_log, entries, leader_commit } => {
                assert_eq!(*prev_log, eid(1, 1));
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0].data, "x");
                assert_eq!(*leader_commit, LogIndex(1));
            }
            b => panic!("{b:?}"),
        }
    }
}

/// Raft Fig. 2, AppendEntries receiver: "Reply false if log doesn't contain an entry at
/// prevLogIndex whose term matches prevLogTerm". The rejection carries the fast-backtracking
/// hint of Raft §5.3.
#[test]
fn follower_rejects_append_whose_prev_is_missing_or_of_another_term() {
    // follower log [1, 1, 2, 2]; (prev index, prev term) -> hint, or None for success
    let cases = [
        ((4, 2), None),
        ((2, 1), None),
        ((5, 2), Some(RejectHint::LogTooShort { last_index: LogIndex(4) })),
        (
            (4, 3),
            Some(RejectHint::ConflictingTerm {
                conflict_term: Term(2),
                first_index_of_term: LogIndex(3),
            }),
        ),
        (
            (2, 2),
            Some(RejectHint::ConflictingTerm {
                conflict_term: Term(1),
                first_index_of_term: LogIndex(1),
            }),
        ),
    ];
    for ((pi, pt), want) in cases {
        let mut n = node_with(cfg(2), &[1, 2, 3], 3, &[1, 1, 2, 2]);
        n.step(append(1, 2, 3, (pi, pt), &[], 0)).unwrap();
        let out = drain(&mut n);
        let got = outcome(&out.after_persist[0]);
        match want {
            None => {
                assert!(matches!(got, AppendOutcome::Success { .. }), "prev {pi}/{pt}: {got:?}")
            }
            Some(hint) => assert_eq!(
                got,
                AppendOutcome::Reject { rejected_prev: LogIndex(pi), hint },
                "prev {pi}/{pt}"
            ),
        }
        assert_eq!(log_terms(&n), [1, 1, 2, 2], "a rejection changes nothing");
    }
}

/// Raft Fig. 2: "If an existing entry conflicts with a new one (same index but different
/// terms), delete the existing entry and all that follow it. Append any new entries not
/// already in the log."
///
/// ```text
/// idx        1 2 3 4 5
/// follower   1 1 2 2 2
/// ```
#[test]
fn follower_truncates_only_the_conflicting_suffix() {
    // (prev, entry terms) -> follower log after
    let cases: &[((u64, u64), &[u64], &[u64])] = &[
        ((2, 1), &[2, 2, 2], &[1, 1, 2, 2, 2]),
        ((2, 1), &[2, 3], &[1, 1, 2, 3]),
        ((3, 2), &[3], &[1, 1, 2, 3]),
        ((5, 2), &[3, 3], &[1, 1, 2, 2, 2, 3, 3]),
        ((1, 1), &[1, 3, 3, 3, 3], &[1, 1, 3, 3, 3, 3]),
    ];
    for (prev, terms, want) in cases {
        let mut n = node_with(cfg(2), &[1, 2, 3], 3, &[1, 1, 2, 2, 2]);
        n.step(append(1, 2, 3, *prev, terms, 0)).unwrap();
        let out = drain(&mut n);
        assert!(matches!(outcome(&out.after_persist[0]), AppendOutcome::Success { .. }));
        assert_eq!(&log_terms(&n), want, "prev {prev:?} entries {terms:?}");
    }
}

/// RAFT.md, Log replication: "an AppendEntries that is stale or reordered must never truncate
/// entries it does not conflict with". Raft Fig. 2 truncates only on conflict.
#[test]
fn stale_or_reordered_append_never_truncates() {
    let mut n = node_with(cfg(2), &[1, 2, 3], 1, &[]);
    let first = append(1, 2, 1, (0, 0), &[1, 1], 0);
    let second = append(1, 2, 1, (2, 1), &[1, 1], 0);
    n.step(second.clone()).unwrap();
    n.step(first.clone()).unwrap();
    n.step(second).unwrap();
    // The first message arrives again, late, after entries 3 and 4 are in.
    n.step(first).unwrap();
    let out = drain(&mut n);
    assert_eq!(log_terms(&n), [1, 1, 1, 1], "entries 3 and 4 survive the stale message");
    let acks: Vec<AppendOutcome> = out.after_persist.iter().map(outcome).collect();
    assert_eq!(
        acks[3],
        AppendOutcome::Success { match_index: LogIndex(2) },
        "a stale message acknowledges only what it carried"
    );
}

/// Raft Fig. 2: "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of
/// last new entry)".
#[test]
fn follower_commit_is_min_of_leader_commit_and_last_new_entry() {
    // follower log [1, 1, 1, 1]; (prev, entries, leader commit) -> commit
    let cases: &[((u64, u64), &[u64], u64, u64)] =
        &[((1, 1), &[1], 4, 2), ((1, 1), &[], 4, 1), ((2, 1), &[1, 1], 3, 3), ((0, 0), &[1], 0, 0)];
    for (prev, terms, commit, want) in cases {
        let mut n = node_with(cfg(2), &[1, 2, 3], 1, &[1, 1, 1, 1]);
        n.step(append(1, 2, 1, *prev, terms, *commit)).unwrap();
        drain(&mut n);
        assert_eq!(n.status().commit, LogIndex(*want), "prev {prev:?} {terms:?} commit {commit}");
    }
}

/// Raft §5.3: "After a rejection, the leader decrements nextIndex and retries the
/// AppendEntries RPC. Eventually nextIndex will reach a point where the leader and follower
/// logs match."
#[test]
fn leader_backs_off_next_index_on_rejection_and_retries() {
    let mut n = node_with(cfg(1), &[1, 2, 3], 1, &[1, 1, 1, 1]);
    make_leader(&mut n, &[1, 2, 3]);
    // Follower 2 holds only entry 1.
    let reject = reject_short(2, 1, 2, 4, 1);
    n.step(reject).unwrap();
    let out = drain(&mut n);
    let retry = out.early.iter().find(|m| m.to == NodeId(2)).expect("a retry");
    match &retry.body {
        MessageBody::AppendEntries { prev_log, entries, .. } => {
            assert_eq!(*prev_log, eid(1, 1));
            assert_eq!(entries.first().map(|e| e.index), Some(LogIndex(2)));
        }
        b => panic!("{b:?}"),
    }
    let p = n.status().progress.into_iter().find(|p| p.id == NodeId(2)).unwrap();
    assert_eq!(p.state, ProgressState::Probe);
}

/// Raft §5.3: "the follower can include the term of the conflicting entry and the first index
/// it stores for that term. With this information, the leader can decrement nextIndex to
/// bypass all of the conflicting entries in that term".
///
/// ```text
/// idx      1 2 3 4 5 6 7
/// leader   1 1 4 4 4 4 5(noop)
/// follower 1 1 2 2 2 2        <- rejects prev=6/4 with conflict(term 2, first 3)
/// ```
#[test]
fn conflict_hint_skips_a_whole_term() {
    let mut leader = node_with(cfg(1), &[1, 2, 3], 4, &[1, 1, 4, 4, 4, 4]);
    let mut follower = node_with(cfg(2), &[1, 2, 3], 4, &[1, 1, 2, 2, 2, 2]);
    make_leader(&mut leader, &[1, 2, 3]);
    let mut nodes = BTreeMap::from([(1, leader), (2, follower.clone())]);
    // Only the leader's traffic with node 2; node 3 is absent.
    let mut q = VecDeque::new();
    q.extend(drain(nodes.get_mut(&1).unwrap()).all());
    // Start from a heartbeat round so that the leader probes node 2.
    nodes.get_mut(&1).unwrap().tick().unwrap();
    nodes.get_mut(&1).unwrap().tick().unwrap();
    q.extend(drain(nodes.get_mut(&1).unwrap()).all());
    let delivered = run(&mut nodes, q, |m| m.to == NodeId(3));
    let probes: Vec<_> = delivered
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries { prev_log, .. } if m.to == NodeId(2) => {
                Some(prev_log.index.0)
            }
            _ => None,
        })
        .collect();
    // The first probe fails at 6; the hint jumps straight to prev 2: no probe at 5, 4 or 3.
    assert!(probes.contains(&6) && probes.contains(&2), "probes {probes:?}");
    assert!(!probes.iter().any(|p| (3..=5).contains(p)), "probes {probes:?}");
    follower = nodes.remove(&2).unwrap();
    assert_eq!(log_terms(&follower), [1, 1, 4, 4, 4, 4, 5]);
}

/// Raft §5.4.2 and Fig. 8: "Raft never commits log entries from previous terms by counting
/// replicas. Only log entries from the leader's current term are committed by counting
/// replicas; once an entry from the current term has been committed in this way, then all
/// prior entries are committed indirectly because of the Log Matching Property."
///
/// Fig. 8 (c): S1 leads term 4 with entry 2 of term 2 on S1, S2, S3 (a majority of five).
/// S5 could still be elected (its last entry is of term 3) and overwrite it, so S1 must not
/// commit it by counting; once its own term-4 entry is on a majority, both commit.
#[test]
fn leader_commits_only_entries_of_its_current_term_by_counting() {
    let voters = [1, 2, 3, 4, 5];
    let mut s1 = node_with(cfg(1), &voters, 3, &[1, 2]);
    make_leader(&mut s1, &voters);
    assert_eq!(s1.status().term, Term(4));
    assert_eq!(s1.status().last_index, LogIndex(3), "the no-op of term 4 is entry 3");
    s1.step(ack(2, 1, 4, 2)).unwrap();
    s1.step(ack(3, 1, 4, 2)).unwrap();
    drain(&mut s1);
    assert_eq!(s1.status().commit, LogIndex(0), "entry 2 (term 2) is on a majority, not committed");
    s1.step(ack(2, 1, 4, 3)).unwrap();
    drain(&mut s1);
    assert_eq!(s1.status().commit, LogIndex(0), "entry 3 is on two of five");
    s1.step(ack(3, 1, 4, 3)).unwrap();
    let out = drain(&mut s1);
    assert_eq!(s1.status().commit, LogIndex(3), "entry 3 (term 4) commits, and entry 2 with it");
    let applied: Vec<u64> = out.committed.iter().map(|e| e.index.0).collect();
    assert_eq!(applied, [1, 2, 3], "earlier entries are committed indirectly and applied in order");
}

/// Raft Fig. 8, whole: the same history run through real nodes. Entry 2 of term 2 reaches a
/// majority while S1 leads term 4, but S1 crashes before its term-4 entry spreads; S5 is then
/// elected and overwrites entry 2. This is safe only because entry 2 was never committed.
#[test]
fn figure_8_uncommitted_entry_of_an_old_term_may_be_overwritten() {
    let voters = [1, 2, 3, 4, 5];
    let mut nodes: BTreeMap<u64, _> = BTreeMap::new();
    // After (a) and (b): S1, S2 hold 2/2; S5 holds 2/3; S3, S4 hold only entry 1.
    nodes.insert(1, node_with(cfg(1), &voters, 3, &[1, 2]));
    nodes.insert(2, node_with(cfg(2), &voters, 3, &[1, 2]));
    nodes.insert(3, node_with(cfg(3), &voters, 3, &[1]));
    nodes.insert(4, node_with(cfg(4), &voters, 3, &[1]));
    nodes.insert(5, node_with(cfg(5), &voters, 3, &[1, 3]));
    // (c) S1 is elected in term 4 by S1, S2, S3 and replicates entry 2 to S3, but every
    // message carrying its term-4 entry is lost, and so is all traffic with S4 and S5.
    let s1 = nodes.get_mut(&1).unwrap();
    s1.campaign().unwrap();
    let q: VecDeque<_> = drain(s1).all().into();
    run(&mut nodes, q, |m| {
        [4, 5].contains(&m.to.0)
            || [4, 5].contains(&m.from.0)
            || matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.iter().any(|e| e.term == Term(4)))
    });
    assert_eq!(nodes[&1].status().role, Role::Leader);
    // The leader re-sends entry 2 alone once it learns where S3 stands.
    let s1 = nodes.get_mut(&1).unwrap();
    let reject = reject_short(3, 1, 4, 2, 1);
    let _ = s1.step(reject);
    drain(s1);
    s1.step(ack(3, 1, 4, 2)).unwrap();
    s1.step(ack(2, 1, 4, 2)).unwrap();
    drain(s1);
    assert_eq!(nodes[&1].status().commit, LogIndex(0), "2/2 on a majority is not committed");
    // (d) S1 crashes; S5 campaigns with last entry 2/3 and wins S2, S3, S4 (all in term 4).
    nodes.remove(&1);
    let s5 = nodes.get_mut(&5).unwrap();
    s5.campaign().unwrap();
    s5.campaign().unwrap(); // term 5: above S1's term 4, which S2 and S3 adopted
    let q: VecDeque<_> = drain(s5).all().into();
    run(&mut nodes, q, |_| false);
    assert_eq!(nodes[&5].status().role, Role::Leader);
    for id in [2, 3, 4, 5] {
        assert_eq!(log_terms(&nodes[&id])[..2], [1, 3], "S{id}: entry 2 now holds term 3");
    }
}

/// Raft §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log
/// entries) to all followers in order to maintain their authority."
#[test]
fn leader_sends_heartbeats_every_interval() {
    let mut n = node(1, &[1, 2, 3]);
    make_leader(&mut n, &[1, 2, 3]);
    let mut beats = Vec::new();
    for t in 1..=10 {
        n.tick().unwrap();
        let out = drain(&mut n);
        let hb = out.early.iter().filter(|m| m.kind() == "Heartbeat").count();
        if hb > 0 {
            assert_eq!(hb, 2, "one heartbeat to each follower");
            beats.push(t);
        }
    }
    assert_eq!(beats, [2, 4, 6, 8, 10], "every heartbeat_interval_ticks (2)");
}

/// Leader 1 of {1, 2} whose no-op is acknowledged, after ten 100-byte proposals; returns it and
/// what it emitted for them.
fn leader_after_ten_proposals(
    config: Config,
) -> (flotilla_raft::Node<flotilla_raft::MemStorage>, Out) {
    let mut n = node_with(config, &[1, 2], 0, &[]);
    make_leader(&mut n, &[1, 2]);
    n.step(ack(2, 1, 1, 1)).unwrap();
    drain(&mut n);
    for _ in 0..10 {
        n.propose(vec![7u8; 100]).unwrap();
    }
    let out = drain(&mut n);
    (n, out)
}

/// Thesis §10.2: batching. Entries are sent up to `append_bytes_max` per message (always at
/// least one entry).
#[test]
fn append_entries_batch_up_to_the_byte_limit() {
    let config = Config { append_bytes_max: 4 * (24 + 100), ..cfg(1) };
    let (_, out) = leader_after_ten_proposals(config);
    let sizes: Vec<usize> = out
        .early
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [4, 4, 2], "ten proposals in messages of at most four entries");
}

/// Thesis §10.2.2: pipelining, bounded by a window in messages and in bytes.
#[test]
fn pipelining_is_bounded_by_inflight_messages_and_bytes() {
    for (msgs_max, bytes_max, want) in [(3, 1 << 20, 3), (100, 2 * (24 + 100), 2)] {
        let config = Config {
            append_bytes_max: 24 + 100,
            inflight_msgs_max: msgs_max,
            inflight_bytes_max: bytes_max,
            ..cfg(1)
        };
        let (mut n, out) = leader_after_ten_proposals(config);
        let sent = out.early.iter().filter(|m| m.kind() == "App").count();
        assert_eq!(sent, want, "window of {msgs_max} messages / {bytes_max} bytes");
        // An acknowledgement opens the window again.
        n.step(ack(2, 1, 1, 2)).unwrap();
        let out = drain(&mut n);
        assert_eq!(out.early.iter().filter(|m| m.kind() == "App").count(), 1);
    }
}

/// Thesis §10.2.1: "the leader can write to its disk in parallel with replicating to the
/// followers" but it counts itself toward commitment only once its own write is durable.
#[test]
fn leader_sends_before_its_own_write_but_counts_itself_only_when_durable() {
    let mut n = node(1, &[1, 2, 3]);
    make_leader(&mut n, &[1, 2, 3]);
    n.step(ack(2, 1, 1, 1)).unwrap();
    n.step(ack(3, 1, 1, 1)).unwrap();
    drain(&mut n);
    n.propose("x").unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(kinds(&rd.messages), ["1->2 App", "1->3 App"], "sendable before the write");
    // One follower acknowledges before the leader's own write is done: 2 of 3 hold the entry,
    // but the leader's copy is not durable, so it must not count itself yet.
    n.step(ack(2, 1, 1, 2)).unwrap();
    assert_eq!(n.status().commit, LogIndex(1), "only follower 2's copy is durable: 1 of 3");
    n.store_mut().append(&rd.entries);
    n.advance(rd.ack());
    assert_eq!(n.status().commit, LogIndex(2), "the leader's copy is durable now: 2 of 3");
}

/// Thesis §10.2: flow control. A follower is probed one message at a time after a rejection
/// and pipelined after a success.
#[test]
fn probe_after_rejection_replicate_after_success() {
    let mut n = node_with(cfg(1), &[1, 2], 1, &[1, 1, 1]);
    make_leader(&mut n, &[1, 2]);
    let state = |n: &flotilla_raft::Node<_>| {
        n.status().progress.iter().find(|p| p.id == NodeId(2)).unwrap().state
    };
    assert_eq!(state(&n), ProgressState::Probe, "after election");
    // In probe state, proposals do not stream: the outstanding probe must be answered first.
    n.propose("a").unwrap();
    n.propose("b").unwrap();
    let out = drain(&mut n);
    assert_eq!(out.early.iter().filter(|m| m.kind() == "App").count(), 0, "probe outstanding");
    n.step(ack(2, 1, 2, 4)).unwrap();
    assert_eq!(state(&n), ProgressState::Replicate, "after a success");
    drain(&mut n);
    n.propose("c").unwrap();
    n.propose("d").unwrap();
    drain(&mut n);
    n.propose("e").unwrap();
    let out = drain(&mut n);
    assert_eq!(
        out.early.iter().filter(|m| m.kind() == "App").count(),
        1,
        "pipelined without waiting"
    );
    let reject = reject_short(2, 1, 2, 6, 5);
    n.step(reject).unwrap();
    assert_eq!(state(&n), ProgressState::Probe, "after a rejection");
}

/// Backpressure: proposals are refused with a typed error while too many bytes are
/// uncommitted, and admitted again once they commit.
#[test]
fn proposals_are_refused_beyond_the_uncommitted_byte_limit() {
    let config = Config { uncommitted_bytes_max: 3 * (24 + 10), ..cfg(1) };
    let mut n = node_with(config, &[1, 2], 0, &[]);
    make_leader(&mut n, &[1, 2]);
    for _ in 0..3 {
        n.propose(vec![0u8; 10]).unwrap();
    }
    assert_eq!(
        n.propose(vec![0u8; 10]),
        Err(ProposeError::Backpressure { uncommitted_bytes: 3 * 34, limit_bytes: 3 * 34 })
    );
    drain(&mut n);
    n.step(ack(2, 1, 1, 4)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(4));
    assert!(n.propose(vec![0u8; 10]).is_ok(), "committed bytes free the budget");
    // One proposal is always admitted, however large, or it could never commit.
    let config = Config { uncommitted_bytes_max: 10, ..cfg(1) };
    let mut n = node_with(config, &[1], 0, &[]);
    make_leader(&mut n, &[1]);
    assert!(n.propose(vec![0u8; 1000]).is_ok());
}

/// Raft §8: "If a client contacts a follower, the follower rejects its request and supplies
/// information about the most recent leader it has heard from".
#[test]
fn propose_on_a_non_leader_returns_not_leader_with_a_hint() {
    let mut n = node(2, &[1, 2, 3]);
    assert_eq!(n.propose("x"), Err(ProposeError::NotLeader { leader_hint: None }));
    n.step(append(1, 2, 1, (0, 0), &[], 0)).unwrap();
    assert_eq!(n.propose("x"), Err(ProposeError::NotLeader { leader_hint: Some(NodeId(1)) }));
    assert_eq!(n.status().last_index, LogIndex(0), "nothing appended");
}

/// Raft Fig. 7: a leader of term 8 meets followers (a)-(f), each missing entries, holding
/// extra ones, or both. Raft §5.3: "the leader handles inconsistencies by forcing the
/// followers' logs to duplicate its own". Every follower ends with the leader's log.
#[test]
fn figure_7_new_leader_brings_every_follower_into_agreement() {
    let leader_log: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: &[(&str, &[u64], u64)] = &[
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6], 6),
        ("b", &[1, 1, 1, 4], 4),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 6),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 7),
        ("e", &[1, 1, 1, 4, 4, 4, 4], 4),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 3),
    ];
    for (name, log, term) in followers {
        let voters = [1, 2, 3];
        let mut nodes = BTreeMap::new();
        nodes.insert(1, node_with(cfg(1), &voters, 7, leader_log));
        nodes.insert(2, node_with(cfg(2), &voters, *term, log));
        // A third server with the leader's log makes the election winnable whatever (a)-(f)
        // holds, as in the figure.
        nodes.insert(3, node_with(cfg(3), &voters, 7, leader_log));
        let leader = nodes.get_mut(&1).unwrap();
        leader.campaign().unwrap();
        let q: VecDeque<_> = drain(leader).all().into();
        run(&mut nodes, q, |_| false);
        assert_eq!(nodes[&1].status().role, Role::Leader, "({name})");
        assert_eq!(nodes[&1].status().term, Term(8), "({name})");
        let mut want = leader_log.to_vec();
        want.push(8);
        assert_eq!(log_terms(&nodes[&2]), want, "follower ({name}) duplicates the leader's log");
        assert_eq!(nodes[&2].status().commit, LogIndex(11), "({name}) commits the term-8 no-op");
    }
}

/// A lost AppendEntries is repaired: the next heartbeat answer makes the leader send an
/// append whose consistency check reveals the gap.
#[test]
fn lost_append_entries_is_repaired_after_a_heartbeat() {
    let mut nodes = BTreeMap::new();
    for id in [1, 2] {
        nodes.insert(id, node_with(cfg(id), &[1, 2], 0, &[]));
    }
    let leader = nodes.get_mut(&1).unwrap();
    let q: VecDeque<_> = make_leader(leader, &[1, 2]).early.into();
    run(&mut nodes, q, |_| false);
    // The append carrying "x" is lost.
    let leader = nodes.get_mut(&1).unwrap();
    leader.propose("x").unwrap();
    drain(leader);
    assert_eq!(nodes[&2].status().last_index, LogIndex(1));
    let leader = nodes.get_mut(&1).unwrap();
    tick_n(leader, 2);
    let q: VecDeque<_> = drain(leader).all().into();
    run(&mut nodes, q, |_| false);
    assert_eq!(nodes[&2].status().last_index, LogIndex(2), "the entry arrived after all");
    assert_eq!(nodes[&1].status().commit, LogIndex(2));
}

/// Raft Fig. 2: the follower's answer to AppendEntries leaves only after the entries are
/// durable ("Updated on stable storage before responding to RPCs").
#[test]
fn follower_answers_append_only_after_persisting() {
    let mut n = node(2, &[1, 2, 3]);
    n.step(append(1, 2, 1, (0, 0), &[1, 1], 0)).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.entries.len(), 2);
    assert!(rd.must_sync);
    assert!(rd.messages.is_empty(), "nothing may leave before the write");
    assert_eq!(kinds(&rd.persisted_messages), ["2->1 AppResp"]);
}
