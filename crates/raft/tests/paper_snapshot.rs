//! Paper tests, log compaction (Raft §7, Fig. 12 and 13; Thesis §5): one test per rule of
//! RAFT.md's "Log compaction" section and of the chunked InstallSnapshot.

mod common;

use bytes::Bytes;
use common::*;
use flotilla_raft::{
    AppendOutcome, Config, EntryId, HardState, LogIndex, LogStore, MemStorage, Membership, Message,
    MessageBody, Node, NodeId, ProgressState, Role, SnapshotError, SnapshotInfo, SnapshotMeta,
    StepError, Term,
};

const SNAP: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxy"; // 35 bytes

fn members(ids: &[u64]) -> Membership {
    Membership::new(ids.iter().map(|i| NodeId(*i)), []).unwrap()
}

fn meta(index: u64, term: u64, ids: &[u64]) -> SnapshotMeta {
    SnapshotMeta { index: LogIndex(index), term: Term(term), membership: members(ids) }
}

fn snap_cfg(id: u64) -> Config {
    Config {
        snapshot_chunk_bytes: 10,
        snapshot_chunks_inflight: 2,
        snapshot_retry_ticks: 8,
        ..cfg(id)
    }
}

/// Node 1 with log 1..=5 of term 1, all committed and applied, a snapshot of 35 bytes at 4 and
/// the log compacted through 4; then elected leader of {1, 2, 3} in term 2.
fn compacted_leader() -> Node<MemStorage> {
    let mut store = MemStorage::new(members(&[1, 2, 3]));
    store.append(&entries(1, &[1, 1, 1, 1, 1]));
    store.set_hard_state(HardState { term: Term(1), vote: None, commit: LogIndex(5) });
    store.save_snapshot(meta(4, 1, &[1, 2, 3]), Bytes::from_static(SNAP)).unwrap();
    store.compact(&meta(4, 1, &[1, 2, 3])).unwrap();
    let mut n = Node::restart(snap_cfg(1), store, LogIndex(5)).unwrap();
    make_leader(&mut n, &[1, 2, 3]);
    assert_eq!(n.first_index(), LogIndex(5));
    n
}

/// Node 2's rejection of the leader's first probe: its log is empty.
fn too_short(to_term: u64, prev: u64) -> Message {
    msg(
        2,
        1,
        to_term,
        MessageBody::AppendResponse {
            outcome: AppendOutcome::Reject {
                rejected_prev: LogIndex(prev),
                hint: flotilla_raft::RejectHint::LogTooShort { last_index: LogIndex(0) },
            },
        },
    )
}

fn snap_resp(from: u64, term: u64, received: u64, rejected: bool) -> Message {
    msg(from, 1, term, MessageBody::SnapshotResponse { snapshot: eid(4, 1), received, rejected })
}

/// The (offset, length) of every InstallSnapshot in `ms`.
fn chunks(ms: &[Message]) -> Vec<(u64, usize)> {
    ms.iter()
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshot { offset, data, .. } => Some((*offset, data.len())),
            _ => None,
        })
        .collect()
}

fn chunk(from: u64, to: u64, term: u64, m: &SnapshotMeta, offset: usize, len: usize) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::InstallSnapshot {
            info: SnapshotInfo { meta: m.clone(), size: SNAP.len() as u64 },
            offset: offset as u64,
            data: Bytes::from_static(&SNAP[offset..offset + len]),
        },
    )
}

/// Leader with node 2 switched to snapshot state; returns the chunks it sent first.
fn leader_sending_to_2() -> (Node<MemStorage>, Vec<(u64, usize)>) {
    let mut n = compacted_leader();
    drain(&mut n);
    n.step(too_short(2, 5)).unwrap();
    let out = drain(&mut n);
    (n, chunks(&out.early))
}

fn progress_of(n: &Node<MemStorage>, id: u64) -> flotilla_raft::PeerProgress {
    n.status().progress.into_iter().find(|p| p.id == NodeId(id)).unwrap()
}

/// Raft §7: "the leader must occasionally send snapshots to followers that lag behind. This
/// happens when the leader has already discarded the next log entry that it needs to send to
/// a follower." Chunks are bounded by `snapshot_chunk_bytes` and at most
/// `snapshot_chunks_inflight` are outstanding.
#[test]
fn leader_sends_snapshot_when_follower_needs_compacted_entries() {
    let (n, sent) = leader_sending_to_2();
    assert_eq!(sent, [(0, 10), (10, 10)], "two chunks of 10 bytes in flight");
    let p = progress_of(&n, 2);
    assert_eq!(p.state, ProgressState::Snapshot);
    assert_eq!(p.snapshot, Some((LogIndex(4), 0, 35)));
}

/// Raft Fig. 13: chunks at increasing offsets; each acknowledgement opens the window for the
/// next; the last chunk is the one reaching the size (`done`).
#[test]
fn leader_streams_chunks_in_order_as_acknowledgements_arrive() {
    let (mut n, _) = leader_sending_to_2();
    n.step(snap_resp(2, 2, 10, false)).unwrap();
    assert_eq!(chunks(&drain(&mut n).early), [(20, 10)]);
    n.step(snap_resp(2, 2, 20, false)).unwrap();
    assert_eq!(chunks(&drain(&mut n).early), [(30, 5)]);
    n.step(snap_resp(2, 2, 30, false)).unwrap();
    assert!(chunks(&drain(&mut n).early).is_empty(), "everything is sent");
    assert_eq!(progress_of(&n, 2).snapshot, Some((LogIndex(4), 30, 35)));
}

/// After the follower installs the snapshot (answering with its last included index), the
/// leader goes back to probing from just after it and then to replication (Thesis §5.3).
#[test]
fn leader_returns_to_replication_after_the_follower_installs() {
    let (mut n, _) = leader_sending_to_2();
    n.step(ack(2, 1, 2, 4)).unwrap();
    let out = drain(&mut n);
    let p = progress_of(&n, 2);
    assert_eq!((p.state, p.matched, p.snapshot), (ProgressState::Probe, LogIndex(4), None));
    let apps: Vec<_> = out
        .early
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries { prev_log, .. } if m.to == NodeId(2) => Some(*prev_log),
            _ => None,
        })
        .collect();
    assert_eq!(apps, [eid(4, 1)], "probes right after the snapshot");
    n.step(ack(2, 1, 2, 6)).unwrap();
    drain(&mut n);
    assert_eq!(progress_of(&n, 2).state, ProgressState::Replicate);
}

/// A lost chunk: the follower refuses the next one (it does not continue what it holds) and
/// says how much it holds; the leader resumes from there, once, not from the start.
#[test]
fn leader_resumes_from_last_acknowledged_chunk_after_a_loss() {
    let (mut n, _) = leader_sending_to_2();
    n.step(snap_resp(2, 2, 10, false)).unwrap();
    drain(&mut n); // (20, 10) is sent and lost; (10, 10) was lost too.
    n.step(snap_resp(2, 2, 10, true)).unwrap();
    assert_eq!(chunks(&drain(&mut n).early), [(10, 10), (20, 10)], "resent from 10");
    n.step(snap_resp(2, 2, 10, true)).unwrap();
    assert!(chunks(&drain(&mut n).early).is_empty(), "a second refusal of old chunks waits");
}

/// The retry timer measures lack of progress, not total time: a slow transfer whose
/// acknowledgements keep coming is never restarted; a stalled one resends from the last
/// acknowledged byte.
#[test]
fn snapshot_retry_is_on_lack_of_progress_not_total_time() {
    let (mut n, _) = leader_sending_to_2();
    // 7 ticks (one short of the retry interval) between acknowledgements, three times over:
    // 21 ticks in all, far beyond the interval, and nothing is resent.
    for received in [10, 20, 30] {
        tick_n(&mut n, 7);
        assert!(chunks(&drain(&mut n).early).is_empty(), "no resend while progressing");
        n.step(snap_resp(2, 2, received, false)).unwrap();
        drain(&mut n);
    }
    // Now it stalls with 30 of 35 acknowledged and the last chunk lost.
    tick_n(&mut n, 8);
    assert_eq!(chunks(&drain(&mut n).early), [(30, 5)], "resend from the last acknowledged");
}

/// Leader-side check of answers: one acknowledging more bytes than the snapshot has is
/// refused as malformed and changes nothing.
#[test]
fn leader_refuses_acknowledgement_beyond_snapshot_size() {
    let (mut n, _) = leader_sending_to_2();
    let r = n.step(snap_resp(2, 2, 36, false));
    assert!(matches!(r, Err(StepError::Malformed { .. })), "{r:?}");
    assert_eq!(progress_of(&n, 2).snapshot, Some((LogIndex(4), 0, 35)));
}

/// A follower (node 2) with log terms `log` and commit `commit`, in term 1, of {1, 2, 3}.
fn follower(log: &[u64], commit: u64) -> Node<MemStorage> {
    let mut store = MemStorage::new(members(&[1, 2, 3]));
    store.append(&entries(1, log));
    store.set_hard_state(HardState { term: Term(1), vote: None, commit: LogIndex(commit) });
    let mut n = Node::restart(snap_cfg(2), store, LogIndex(commit)).unwrap();
    drain(&mut n);
    n
}

fn send_all(n: &mut Node<MemStorage>, m: &SnapshotMeta, term: u64) -> common::Out {
    for (off, len) in [(0, 10), (10, 10), (20, 10), (30, 5)] {
        n.step(chunk(1, 2, term, m, off, len)).unwrap();
    }
    drain(n)
}

/// Raft Fig. 13, receiver steps 2–5 and 7–8: chunks are written at their offsets, each
/// answered with the bytes held; on the last, the snapshot is saved, a log that does not hold
/// its last entry is discarded entirely, and the state machine is reset from it.
#[test]
fn follower_installs_snapshot_and_discards_a_log_that_lacks_its_last_entry() {
    let mut n = follower(&[1, 1, 1, 1], 1);
    let m = meta(5, 3, &[1, 2, 3]);
    let out = send_all(&mut n, &m, 3);
    assert_eq!(out.chunks, [(0, 10), (10, 10), (20, 10), (30, 5)]);
    assert_eq!(out.installed.len(), 1);
    assert_eq!(out.installed[0], (m.clone(), Bytes::from_static(SNAP)));
    let answers: Vec<String> = out.after_persist.iter().map(|m| format!("{m:?}")).collect();
    assert_eq!(
        answers,
        [
            "2->1 SnapResp term=3 snap=5/3 received=10",
            "2->1 SnapResp term=3 snap=5/3 received=20",
            "2->1 SnapResp term=3 snap=5/3 received=30",
            "2->1 AppResp term=3 ok match=5",
        ]
    );
    let st = n.status();
    assert_eq!((st.commit, st.applied, st.last_index), (LogIndex(5), LogIndex(5), LogIndex(5)));
    assert_eq!((n.first_index(), n.store().all_entries().len()), (LogIndex(6), 0));
    assert_eq!(n.store().term(LogIndex(5)), Ok(Term(3)));
    assert!(out.committed.is_empty(), "nothing below the snapshot is applied again");
}

/// Raft Fig. 13, step 6: "If existing log entry has same index and term as snapshot's last
/// included entry, retain log entries following it and reply". Here the log comes to hold the
/// snapshot's last entry while the snapshot is in transfer.
#[test]
fn follower_keeps_entries_after_the_snapshot_that_match() {
    let mut n = follower(&[1], 1);
    let m = meta(3, 1, &[1, 2, 3]);
    n.step(chunk(1, 2, 1, &m, 0, 10)).unwrap();
    n.step(append(1, 2, 1, (1, 1), &[1, 1, 1, 1], 1)).unwrap();
    drain(&mut n);
    for (off, len) in [(10, 10), (20, 10), (30, 5)] {
        n.step(chunk(1, 2, 1, &m, off, len)).unwrap();
    }
    let out = drain(&mut n);
    assert_eq!(out.installed.len(), 1);
    assert_eq!(n.first_index(), LogIndex(4));
    let kept: Vec<EntryId> = n.store().all_entries().iter().map(|e| e.id()).collect();
    assert_eq!(kept, [eid(4, 1), eid(5, 1)]);
    assert_eq!((n.status().commit, n.status().last_index), (LogIndex(3), LogIndex(5)));
}

/// A follower whose log already holds the snapshot's last entry needs none of its bytes:
/// it commits through it and answers at once (as etcd's raft does).
#[test]
fn follower_holding_the_snapshot_entry_commits_without_transfer() {
    let mut n = follower(&[1, 1, 1, 1], 1);
    n.step(chunk(1, 2, 1, &meta(3, 1, &[1, 2, 3]), 0, 10)).unwrap();
    let out = drain(&mut n);
    assert!(out.chunks.is_empty() && out.installed.is_empty());
    assert_eq!(kinds_and(&out.after_persist), ["2->1 AppResp term=1 ok match=3"]);
    assert_eq!(n.status().commit, LogIndex(3));
}

fn kinds_and(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| format!("{m:?}")).collect()
}

/// A snapshot at or below the follower's commit index teaches nothing: it answers with its
/// commit index (which matches the leader) and installs nothing.
#[test]
fn follower_ignores_snapshot_not_beyond_its_commit() {
    let mut n = follower(&[1, 1, 1, 1], 4);
    n.step(chunk(1, 2, 1, &meta(3, 1, &[1, 2, 3]), 0, 10)).unwrap();
    let out = drain(&mut n);
    assert!(out.chunks.is_empty() && out.installed.is_empty());
    assert_eq!(kinds_and(&out.after_persist), ["2->1 AppResp term=1 ok match=4"]);
}

/// Raft Fig. 13, step 1: "Reply immediately if term < currentTerm".
#[test]
fn follower_rejects_snapshot_from_stale_term() {
    let mut n = follower(&[1], 1);
    n.step(append(3, 2, 4, (1, 1), &[], 1)).unwrap();
    drain(&mut n);
    n.step(chunk(1, 2, 3, &meta(5, 3, &[1, 2, 3]), 0, 10)).unwrap();
    let out = drain(&mut n);
    assert!(out.chunks.is_empty());
    assert_eq!(kinds_and(&out.after_persist), ["2->1 AppResp term=4 stale-term"]);
}

/// Chunks that do not continue what the follower holds are refused with the count it holds;
/// duplicates of chunks it holds are answered without the refusal flag.
#[test]
fn follower_refuses_out_of_order_chunks_and_reports_what_it_holds() {
    let mut n = follower(&[1], 1);
    let m = meta(5, 1, &[1, 2, 3]);
    n.step(chunk(1, 2, 1, &m, 0, 10)).unwrap();
    n.step(chunk(1, 2, 1, &m, 20, 10)).unwrap();
    n.step(chunk(1, 2, 1, &m, 0, 10)).unwrap();
    let out = drain(&mut n);
    assert_eq!(out.chunks, [(0, 10)], "only the first is written");
    assert_eq!(
        kinds_and(&out.after_persist),
        [
            "2->1 SnapResp term=1 snap=5/1 received=10",
            "2->1 SnapResp term=1 snap=5/1 received=10 rejected",
            "2->1 SnapResp term=1 snap=5/1 received=10",
        ]
    );
}

/// A follower that restarts half way keeps the chunks it stored and answers the leader's
/// next chunk accordingly, so the transfer resumes instead of starting over.
#[test]
fn follower_restart_resumes_partial_snapshot() {
    let mut n = follower(&[1], 1);
    let m = meta(5, 1, &[1, 2, 3]);
    n.step(chunk(1, 2, 1, &m, 0, 10)).unwrap();
    n.step(chunk(1, 2, 1, &m, 10, 10)).unwrap();
    drain(&mut n);
    let store = n.store().clone();
    let mut n = Node::restart(snap_cfg(2), store, LogIndex(1)).unwrap();
    n.step(chunk(1, 2, 2, &m, 30, 5)).unwrap();
    let out = drain(&mut n);
    assert_eq!(
        kinds_and(&out.after_persist),
        ["2->1 SnapResp term=2 snap=5/1 received=20 rejected"]
    );
    n.step(chunk(1, 2, 2, &m, 20, 10)).unwrap();
    n.step(chunk(1, 2, 2, &m, 30, 5)).unwrap();
    let out = drain(&mut n);
    assert_eq!(out.installed.len(), 1);
    assert_eq!(out.installed[0].1, Bytes::from_static(SNAP), "the bytes survived the restart");
}

/// Raft §7: "the snapshot also includes the latest configuration as of lastIncludedIndex";
/// a follower installing it adopts that configuration.
#[test]
fn installed_snapshot_carries_the_configuration() {
    let mut n = follower(&[1], 1);
    send_all(&mut n, &meta(5, 1, &[1, 2, 3, 4]), 1);
    let voters: Vec<NodeId> = n.membership().voters().iter().copied().collect();
    assert_eq!(voters, [NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
    assert_eq!(n.store().initial_state().unwrap().membership, members(&[1, 2, 3, 4]));
}

/// Hostile chunks are refused as malformed and change nothing.
#[test]
fn malformed_snapshot_chunks_are_refused() {
    let mut n = follower(&[1], 1);
    let info = SnapshotInfo { meta: meta(5, 1, &[1, 2, 3]), size: 35 };
    let bad = [
        (info.clone(), 30, Bytes::from_static(&SNAP[..10])),
        (info.clone(), 0, Bytes::new()),
        (SnapshotInfo { meta: meta(5, 9, &[1, 2, 3]), size: 35 }, 0, Bytes::from_static(SNAP)),
        (SnapshotInfo { meta: meta(0, 1, &[1, 2, 3]), size: 35 }, 0, Bytes::from_static(SNAP)),
        (SnapshotInfo { size: 0, ..info.clone() }, 0, Bytes::new()),
        (info, u64::MAX, Bytes::from_static(SNAP)),
    ];
    for (info, offset, data) in bad {
        let m = msg(1, 2, 1, MessageBody::InstallSnapshot { info, offset, data });
        let r = n.step(m.clone());
        assert!(matches!(r, Err(StepError::Malformed { .. })), "{m:?}: {r:?}");
    }
    assert!(!n.has_ready(), "nothing changed");
}

/// The application asks for a snapshot description only at applied, uncompacted indices.
#[test]
fn snapshot_meta_refuses_unapplied_or_compacted_indices() {
    let n = compacted_leader();
    assert_eq!(
        n.snapshot_meta(LogIndex(9)),
        Err(SnapshotError::NotApplied { index: LogIndex(9), applied: LogIndex(5) })
    );
    assert_eq!(
        n.snapshot_meta(LogIndex(3)),
        Err(SnapshotError::Compacted { index: LogIndex(3), first_index: LogIndex(5) })
    );
    assert_eq!(n.snapshot_meta(LogIndex(5)).unwrap(), meta(5, 1, &[1, 2, 3]));
}

/// A far-behind follower catches up through a snapshot in a running cluster, and every
/// node then applies the same entries (State Machine Safety across a snapshot).
#[test]
fn far_behind_follower_catches_up_through_snapshot() {
    let mut c = flotilla_raft::testkit::Cluster::with_config(3, |id| Config {
        snapshot_chunk_bytes: 64,
        ..Config::new(id)
    });
    let leader = c.elect();
    let lagging = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.crash(lagging);
    for i in 0..20 {
        c.propose(leader, &format!("v{i}")).unwrap();
        c.deliver_all();
    }
    let applied = c.node(leader).status().applied;
    c.compact(leader, applied).unwrap();
    c.restart(lagging);
    for _ in 0..30 {
        c.tick_all();
        c.deliver_all();
    }
    c.propose(leader, "after").unwrap();
    c.deliver_all();
    assert!(c.violations().is_empty(), "{:?}", c.violations());
    assert_eq!(c.applied_data(lagging), c.applied_data(leader));
    assert_eq!(c.node(lagging).first_index(), applied.next(), "it installed the snapshot");
    assert_eq!(c.node(leader).status().role, Role::Leader);
}

/// A node restarts from its snapshot plus the log after it (Raft §7): the state machine is
/// restored from the snapshot and only later entries are applied again.
#[test]
fn node_restarts_from_snapshot_plus_log_tail() {
    let mut c = flotilla_raft::testkit::Cluster::new(3, 7);
    let leader = c.elect();
    for i in 0..6 {
        c.propose(leader, &format!("v{i}")).unwrap();
    }
    c.deliver_all();
    let other = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.compact(other, LogIndex(4)).unwrap();
    let before = c.applied_data(other);
    c.crash(other);
    c.restart(other);
    assert_eq!(c.node(other).first_index(), LogIndex(5));
    assert_eq!(c.applied_data(other), before, "snapshot + tail rebuild the same state");
    c.propose(leader, "more").unwrap();
    c.deliver_all();
    assert_eq!(c.applied_data(other), c.applied_data(leader));
    assert!(c.violations().is_empty(), "{:?}", c.violations());
}
