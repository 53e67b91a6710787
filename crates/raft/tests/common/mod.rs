//! Helpers shared by the paper tests: nodes with a prepared log, messages by hand, and a way
//! to run a node's Ready loop and look at everything it emitted.
#![allow(dead_code)]

use flotilla_raft::{
    Config, Entry, EntryId, HardState, LogIndex, MemStorage, Membership, Message, MessageBody,
    Node, NodeId, Ready, Role, Term,
};

/// A plain configuration: no pre-vote, no check-quorum, election timeout [10, 20), heartbeat 2.
/// Tests of those features turn them on.
pub fn cfg(id: u64) -> Config {
    Config { pre_vote: false, check_quorum: false, ..Config::new(NodeId(id)) }
}

pub fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Entry::new(Term(*t), LogIndex(first + i as u64), format!("e{}", first + i as u64))
        })
        .collect()
}

/// A node whose stored log has the given terms (index 1 first) and whose term is `term`.
pub fn node_with(config: Config, voters: &[u64], term: u64, log_terms: &[u64]) -> Node<MemStorage> {
    let membership = Membership::new(voters.iter().map(|v| NodeId(*v)), []).unwrap();
    let mut store = MemStorage::new(membership);
    store.append(&entries(1, log_terms));
    store.set_hard_state(HardState { term: Term(term), vote: None, commit: LogIndex(0) });
    Node::new(config, store).unwrap()
}

pub fn node(id: u64, voters: &[u64]) -> Node<MemStorage> {
    node_with(cfg(id), voters, 0, &[])
}

/// Everything a node emitted over one or more Readies, after persisting as the contract says.
#[derive(Default, Debug)]
pub struct Out {
    /// Sendable at once (leader's appends and heartbeats).
    pub early: Vec<Message>,
    /// Sendable only after persisting.
    pub after_persist: Vec<Message>,
    pub committed: Vec<Entry>,
    pub readies: Vec<ReadySummary>,
    /// Snapshot chunks written: (offset, length).
    pub chunks: Vec<(u64, usize)>,
    /// Snapshots installed, with their bytes.
    pub installed: Vec<(flotilla_raft::SnapshotMeta, bytes::Bytes)>,
}

#[derive(Debug)]
pub struct ReadySummary {
    pub hard_state: Option<HardState>,
    pub entries: Vec<EntryId>,
    pub must_sync: bool,
    pub after_persist: usize,
}

impl Out {
    pub fn all(&self) -> Vec<Message> {
        self.early.iter().chain(&self.after_persist).cloned().collect()
    }
}

/// Runs the Ready loop until nothing is left, persisting everything, and returns the output.
pub fn drain(n: &mut Node<MemStorage>) -> Out {
    let mut out = Out::default();
    while n.has_ready() {
        let rd: Ready = n.ready().unwrap();
        let ack = rd.ack();
        out.readies.push(ReadySummary {
            hard_state: rd.hard_state,
            entries: rd.entries.iter().map(Entry::id).collect(),
            must_sync: rd.must_sync,
            after_persist: rd.persisted_messages.len(),
        });
        out.early.extend(rd.messages);
        for c in &rd.snapshot_chunks {
            n.store_mut().write_snapshot_chunk(c).unwrap();
            out.chunks.push((c.offset, c.data.len()));
        }
        if let Some(meta) = &rd.snapshot {
            let data = n.store_mut().install_snapshot(meta).unwrap();
            out.installed.push((meta.clone(), data));
        }
        n.store_mut().append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            n.store_mut().set_hard_state(hs);
        }
        out.after_persist.extend(rd.persisted_messages);
        out.committed.extend(rd.committed_entries);
        n.advance(ack);
    }
    out
}

pub fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message { from: NodeId(from), to: NodeId(to), term: Term(term), body }
}

pub fn eid(index: u64, term: u64) -> EntryId {
    EntryId::new(Term(term), LogIndex(index))
}

/// An AppendEntries from `from` to `to` in `term`, after `prev`, carrying entries of the given
/// terms, with `commit`.
pub fn append(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    terms: &[u64],
    commit: u64,
) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::AppendEntries {
            prev_log: eid(prev.0, prev.1),
            entries: entries(prev.0 + 1, terms),
            leader_commit: LogIndex(commit),
        },
    )
}

pub fn vote_req(from: u64, to: u64, term: u64, last: (u64, u64)) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::VoteRequest {
            pre_vote: false,
            last_log: eid(last.0, last.1),
            transfer: false,
        },
    )
}

pub fn pre_vote_req(from: u64, to: u64, term: u64, last: (u64, u64)) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::VoteRequest { pre_vote: true, last_log: eid(last.0, last.1), transfer: false },
    )
}

pub fn vote_resp(from: u64, to: u64, term: u64, granted: bool) -> Message {
    msg(from, to, term, MessageBody::VoteResponse { pre_vote: false, granted })
}

pub fn tick_n(n: &mut Node<MemStorage>, ticks: u32) {
    for _ in 0..ticks {
        n.tick().unwrap();
    }
}

/// Makes `n` (pre-vote off) leader of a cluster of `voters` by campaigning and granting it
/// every vote by hand; returns its output from the election on.
pub fn make_leader(n: &mut Node<MemStorage>, voters: &[u64]) -> Out {
    n.campaign().unwrap();
    let mut out = drain(n);
    let term = n.status().term.0;
    let me = n.id().0;
    for v in voters.iter().filter(|v| **v != me) {
        if n.status().role == Role::Leader {
            break;
        }
        n.step(vote_resp(*v, me, term, true)).unwrap();
        let o = drain(n);
        out.early.extend(o.early);
        out.after_persist.extend(o.after_persist);
        out.committed.extend(o.committed);
        out.readies.extend(o.readies);
    }
    assert_eq!(n.status().role, Role::Leader, "make_leader: node {me} did not win");
    out
}

pub fn kinds(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| format!("{}->{} {}", m.from.0, m.to.0, m.kind())).collect()
}

pub fn ack(from: u64, to: u64, term: u64, match_index: u64) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::AppendResponse {
            outcome: flotilla_raft::AppendOutcome::Success { match_index: LogIndex(match_index) },
        },
    )
}

/// A hand-built network of nodes: deliver every message until none is left, dropping the
/// ones `drop` selects. Returns the delivered messages in order.
pub fn run(
    nodes: &mut std::collections::BTreeMap<u64, Node<MemStorage>>,
    mut queue: std::collections::VecDeque<Message>,
    drop: impl Fn(&Message) -> bool,
) -> Vec<Message> {
    let mut delivered = Vec::new();
    while let Some(m) = queue.pop_front() {
        if drop(&m) {
            continue;
        }
        let Some(n) = nodes.get_mut(&m.to.0) else { continue };
        let _ = n.step(m.clone());
        delivered.push(m);
        queue.extend(drain(n).all());
        assert!(delivered.len() < 100_000, "network did not quiesce");
    }
    delivered
}

pub fn log_terms(n: &Node<MemStorage>) -> Vec<u64> {
    n.store().all_entries().iter().map(|e| e.term.0).collect()
}

/// A follower's rejection of a probe at `rejected_prev`, its log ending at `last_index`.
pub fn reject_short(from: u64, to: u64, term: u64, rejected_prev: u64, last_index: u64) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::AppendResponse {
            outcome: flotilla_raft::AppendOutcome::Reject {
                rejected_prev: LogIndex(rejected_prev),
                hint: flotilla_raft::RejectHint::LogTooShort { last_index: LogIndex(last_index) },
            },
        },
    )
}
