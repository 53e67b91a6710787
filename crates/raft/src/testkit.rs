//! A small in-memory cluster in one thread, for tests, examples and benchmarks: each node's
//! `Ready` is executed at once in the documented order (persist to its [`MemStorage`], send,
//! apply, advance), and messages wait in one queue until delivered, dropped or duplicated by
//! the test. Deterministic: no clock, no threads, no randomness beyond the nodes' seeds.
//!
//! The simulator (`crates/sim`) drives the production driver instead; this harness is for
//! focused tests where every message matters.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::Config;
use crate::error::{ProposeError, StepError};
use crate::membership::Membership;
use crate::message::Message;
use crate::node::Node;
use crate::storage::{LogStore, MemStorage};
use crate::types::{Entry, EntryId, EntryKind, LogIndex, NodeId, Role, Term};

/// An in-memory cluster with a controllable network.
#[derive(Debug, Clone)]
pub struct Cluster {
    nodes: BTreeMap<NodeId, Node<MemStorage>>,
    configs: BTreeMap<NodeId, Config>,
    queue: VecDeque<Message>,
    /// Directed links that drop every message.
    cut: BTreeSet<(NodeId, NodeId)>,
    down: BTreeSet<NodeId>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    leaders: BTreeMap<Term, NodeId>,
    /// Each current leader's last entry when last seen, for Leader Append-Only.
    leader_last: BTreeMap<NodeId, (Term, EntryId)>,
    /// The sequence of entries applied anywhere, which every node's applied sequence must
    /// follow (State Machine Safety).
    agreed: Vec<EntryId>,
    violations: Vec<String>,
    step_errors: Vec<(NodeId, StepError)>,
    /// Reads each node's Readies confirmed: (context, read index, applied index then).
    reads: BTreeMap<NodeId, Vec<(String, LogIndex, LogIndex)>>,
    aborted_reads: BTreeMap<NodeId, Vec<String>>,
}

impl Cluster {
    /// `n` voters with ids `1..=n` and default configuration; `seed` varies their election
    /// jitter.
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, |id| Config {
            rng_seed: seed.wrapping_mul(1_000_003).wrapping_add(id.0),
            ..Config::new(id)
        })
    }

    /// `n` voters with ids `1..=n`, each configured by `config`.
    ///
    /// # Panics
    /// If a configuration is invalid: a broken test.
    pub fn with_config(n: u64, config: impl Fn(NodeId) -> Config) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let membership =
            Membership::new(ids.iter().copied(), []).expect("1..=n is a valid membership");
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            configs: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            applied: BTreeMap::new(),
            leaders: BTreeMap::new(),
            leader_last: BTreeMap::new(),
            agreed: Vec::new(),
            violations: Vec::new(),
            step_errors: Vec::new(),
            reads: BTreeMap::new(),
            aborted_reads: BTreeMap::new(),
        };
        for id in ids {
            let cfg = config(id);
            let node = Node::new(cfg.clone(), MemStorage::new(membership.clone()))
                .unwrap_or_else(|e| panic!("test cluster node {id}: {e}"));
            c.nodes.insert(id, node);
            c.configs.insert(id, cfg);
            c.applied.insert(id, Vec::new());
        }
        c
    }

    /// Node ids in order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The node `id`.
    ///
    /// # Panics
    /// If there is no such node: a broken test.
    pub fn node(&self, id: NodeId) -> &Node<MemStorage> {
        self.nodes.get(&id).unwrap_or_else(|| panic!("no node {id} in the test cluster"))
    }

    /// The node `id`, mutably (its outputs are collected by [`Cluster::process`]).
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node<MemStorage> {
        self.nodes.get_mut(&id).unwrap_or_else(|| panic!("no node {id} in the test cluster"))
    }

    /// Entries node `id` applied, no-ops included, in order.
    pub fn applied(&self, id: NodeId) -> &[Entry] {
        &self.applied[&id]
    }

    /// The commands node `id` applied, as strings, no-ops left out.
    pub fn applied_data(&self, id: NodeId) -> Vec<String> {
        self.applied[&id]
            .iter()
            .filter(|e| e.kind == EntryKind::Normal)
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }

    /// Messages waiting for delivery.
    pub fn queued(&self) -> &VecDeque<Message> {
        &self.queue
    }

    /// Errors nodes returned from `step`, in order.
    pub fn step_errors(&self) -> &[(NodeId, StepError)] {
        &self.step_errors
    }

    /// Safety violations seen so far (two leaders in one term, diverging applied entries).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Whether `id` is down.
    pub fn is_down(&self, id: NodeId) -> bool {
        self.down.contains(&id)
    }

    /// The leader with the highest term among running nodes, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, n)| !self.down.contains(id) && n.status().role == Role::Leader)
            .max_by_key(|(_, n)| n.status().term)
            .map(|(id, _)| *id)
    }

    /// Runs `id`'s Ready loop until it has nothing more to do: persist, send, apply, advance.
    pub fn process(&mut self, id: NodeId) {
        if self.down.contains(&id) {
            return;
        }
        let node = self.nodes.get_mut(&id).expect("processed node exists");
        while node.has_ready() {
            let rd = node.ready().unwrap_or_else(|e| panic!("MemStorage never fails: {e}"));
            let ack = rd.ack();
            self.queue.extend(rd.messages);
            for chunk in &rd.snapshot_chunks {
                node.store_mut()
                    .write_snapshot_chunk(chunk)
                    .unwrap_or_else(|e| panic!("{id}: snapshot chunk out of order: {e}"));
            }
            if let Some(meta) = &rd.snapshot {
                let data = node
                    .store_mut()
                    .install_snapshot(meta)
                    .unwrap_or_else(|e| panic!("{id}: snapshot install: {e}"));
                let restored = Self::restore(&mut self.violations, id, meta, &data);
                for (pos, e) in restored.iter().enumerate() {
                    match self.agreed.get(pos) {
                        Some(want) if *want != e.id() => self.violations.push(format!(
                            "State Machine Safety: {id} restored {} where {want} was applied",
                            e.id()
                        )),
                        Some(_) => {}
                        None => self.agreed.push(e.id()),
                    }
                }
                self.applied.insert(id, restored);
            }
            node.store_mut().append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                node.store_mut().set_hard_state(hs);
            }
            self.queue.extend(rd.persisted_messages);
            let applied = self.applied.get_mut(&id).expect("applied list exists");
            for e in rd.committed_entries {
                // State Machine Safety (Raft §5.4.3): no two nodes apply different entries at
                // one index; each applies every index once, in order.
                let pos = applied.len();
                if e.index.0 != pos as u64 + 1 {
                    self.violations.push(format!("{id} applied {} after {pos} entries", e.index));
                }
                match self.agreed.get(pos) {
                    Some(want) if *want != e.id() => self.violations.push(format!(
                        "State Machine Safety: {id} applied {} where {want} was applied",
                        e.id()
                    )),
                    Some(_) => {}
                    None => self.agreed.push(e.id()),
                }
                applied.push(e);
            }
            let applied_to = applied.last().map_or(LogIndex::ZERO, |e| e.index);
            for r in rd.read_states {
                let ctx = String::from_utf8_lossy(&r.ctx).into_owned();
                self.reads.entry(id).or_default().push((ctx, r.index, applied_to));
            }
            for ctx in rd.aborted_reads {
                self.aborted_reads
                    .entry(id)
                    .or_default()
                    .push(String::from_utf8_lossy(&ctx).into_owned());
            }
            node.advance(ack);
        }
        self.check_leader(id);
    }

    /// Election Safety, Leader Append-Only and Leader Completeness (Raft Fig. 3) for `id`.
    fn check_leader(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let st = node.status();
        if st.role != Role::Leader {
            self.leader_last.remove(&id);
            return;
        }
        // The harness writes every Ready at once, so the store holds the whole log, except
        // what compaction replaced with a snapshot of committed entries (taken as present).
        let first = node.store().first_index();
        let entry_at = |index: LogIndex| {
            if index < first {
                return Some(None);
            }
            node.store().term(index).ok().map(|t| Some(EntryId::new(t, index)))
        };
        let holds = |id: EntryId| match entry_at(id.index) {
            Some(None) => true,
            Some(Some(have)) => have == id,
            None => false,
        };
        match self.leaders.insert(st.term, id) {
            Some(other) if other != id => self
                .violations
                .push(format!("Election Safety: {other} and {id} both led term {}", st.term)),
            Some(_) => {}
            None => {
                // Newly elected: every entry applied anywhere so far was committed before this
                // election, so it must be in this leader's log (Leader Completeness, §5.4).
                if let Some(want) = self.agreed.iter().find(|w| !holds(**w)) {
                    self.violations.push(format!(
                        "Leader Completeness: leader {id} of term {} lacks committed {want}",
                        st.term
                    ));
                }
            }
        }
        // Leader Append-Only: the last entry seen while leading this term is still there.
        if let Some((term, seen)) = self.leader_last.get(&id) {
            if *term == st.term && !holds(*seen) {
                self.violations.push(format!(
                    "Leader Append-Only: leader {id} of term {term} lost its entry {seen}"
                ));
            }
        }
        if let Some(Some(last)) = entry_at(st.last_index) {
            self.leader_last.insert(id, (st.term, last));
        }
    }

    /// Ticks `id` once and processes its output.
    pub fn tick(&mut self, id: NodeId) {
        if self.down.contains(&id) {
            return;
        }
        self.node_mut(id).tick().unwrap_or_else(|e| panic!("MemStorage never fails: {e}"));
        self.process(id);
    }

    /// Ticks every running node once.
    pub fn tick_all(&mut self) {
        for id in self.ids() {
            self.tick(id);
        }
    }

    /// Makes `id` campaign now and processes its output (messages stay queued).
    pub fn campaign(&mut self, id: NodeId) {
        self.node_mut(id).campaign().unwrap_or_else(|e| panic!("MemStorage never fails: {e}"));
        self.process(id);
    }

    /// Node 1 campaigns and every message is delivered; returns the leader.
    ///
    /// # Panics
    /// If no leader results: the test's setup is broken.
    pub fn elect(&mut self) -> NodeId {
        self.campaign(NodeId(1));
        self.deliver_all();
        self.leader().expect("an election in a healthy cluster elects a leader")
    }

    /// Proposes on `id` and processes its output.
    pub fn propose(&mut self, id: NodeId, data: &str) -> Result<EntryId, ProposeError> {
        let r = self.node_mut(id).propose(data.to_owned());
        self.process(id);
        r
    }

    /// Requests a read index on `id` with context `ctx` and processes its output.
    pub fn read_index(&mut self, id: NodeId, ctx: &str) -> Result<(), crate::error::ReadError> {
        let r = self.node_mut(id).read_index(ctx.to_owned());
        self.process(id);
        r
    }

    /// Reads confirmed on `id`: (context, read index, index applied when it was confirmed).
    pub fn reads(&self, id: NodeId) -> &[(String, LogIndex, LogIndex)] {
        self.reads.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Contexts of reads that failed on `id`.
    pub fn aborted_reads(&self, id: NodeId) -> &[String] {
        self.aborted_reads.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Starts a new, empty node `id` that knows the cluster's initial membership (as a new
    /// server is given it when it joins), so that it can follow the log, including the
    /// change that adds it. It is not a member until such a change is proposed.
    ///
    /// # Panics
    /// If `id` exists already or the node cannot start: a broken test.
    pub fn add_node(&mut self, id: NodeId) {
        assert!(!self.nodes.contains_key(&id), "node {id} exists already");
        let first = self.ids()[0];
        let membership = self.node(first).store().initial_state().expect("MemStorage").membership;
        let mut cfg = self.configs[&first].clone();
        cfg.id = id;
        cfg.rng_seed = cfg.rng_seed.wrapping_add(id.0);
        let node = Node::new(cfg.clone(), MemStorage::new(membership))
            .unwrap_or_else(|e| panic!("new node {id}: {e}"));
        self.nodes.insert(id, node);
        self.configs.insert(id, cfg);
        self.applied.insert(id, Vec::new());
    }

    /// Proposes a membership change on `id` and processes its output.
    pub fn propose_conf_change(
        &mut self,
        id: NodeId,
        change: crate::membership::ConfChange,
    ) -> Result<EntryId, crate::error::ConfChangeError> {
        let r = self.node_mut(id).propose_conf_change(change);
        self.process(id);
        r
    }

    /// Asks leader `id` to transfer leadership to `target`, and processes its output.
    pub fn transfer_leader(
        &mut self,
        id: NodeId,
        target: NodeId,
    ) -> Result<(), crate::error::TransferError> {
        let r = self.node_mut(id).transfer_leader(target);
        self.process(id);
        r
    }

    /// Delivers the oldest queued message (or drops it on a cut link or a down node).
    /// Returns it and whether it was delivered.
    pub fn deliver_one(&mut self) -> Option<(Message, bool)> {
        let m = self.queue.pop_front()?;
        Some(self.deliver(m))
    }

    /// Delivers the queued message at position `i` (out of order), if any.
    pub fn deliver_at(&mut self, i: usize) -> Option<(Message, bool)> {
        let m = self.queue.remove(i)?;
        Some(self.deliver(m))
    }

    /// Drops the queued message at position `i`, if any.
    pub fn drop_at(&mut self, i: usize) -> Option<Message> {
        self.queue.remove(i)
    }

    /// Queues a copy of the message at position `i`.
    pub fn duplicate_at(&mut self, i: usize) {
        if let Some(m) = self.queue.get(i).cloned() {
            self.queue.push_back(m);
        }
    }

    /// Queues a message as if a node had sent it (for hostile-input tests).
    pub fn inject(&mut self, m: Message) {
        self.queue.push_back(m);
    }

    fn deliver(&mut self, m: Message) -> (Message, bool) {
        let (from, to) = (m.from, m.to);
        if self.cut.contains(&(from, to)) || self.down.contains(&to) || self.down.contains(&from) {
            return (m, false);
        }
        let Some(node) = self.nodes.get_mut(&to) else { return (m, false) };
        if let Err(e) = node.step(m.clone()) {
            self.step_errors.push((to, e));
        }
        self.process(to);
        (m, true)
    }

    /// Delivers messages until none is left, up to a bound that catches livelock; returns
    /// them in delivery order with whether each was delivered.
    ///
    /// # Panics
    /// After a million messages: a livelock in the core or the test.
    pub fn deliver_all(&mut self) -> Vec<(Message, bool)> {
        let mut out = Vec::new();
        while let Some(d) = self.deliver_one() {
            out.push(d);
            assert!(out.len() < 1_000_000, "deliver_all did not quiesce");
        }
        out
    }

    /// Cuts both directions between every pair of nodes in different groups.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                for x in a.iter() {
                    for y in b.iter() {
                        self.cut.insert((NodeId(*x), NodeId(*y)));
                        self.cut.insert((NodeId(*y), NodeId(*x)));
                    }
                }
            }
        }
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    /// Cuts the directed link `from -> to`.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Stops `id`: it receives nothing and its volatile state is lost. Everything the harness
    /// persisted (the whole log and hard state: it syncs every Ready) survives.
    pub fn crash(&mut self, id: NodeId) {
        self.down.insert(id);
    }

    /// Takes a snapshot of `id`'s state machine at `index` (applied) and compacts its log
    /// through it (Raft §7). The harness's state machine is the list of applied entries, so
    /// the snapshot is that list encoded.
    pub fn compact(&mut self, id: NodeId, index: LogIndex) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| format!("no node {id}"))?;
        let meta = node.snapshot_meta(index).map_err(|e| e.to_string())?;
        let data = encode_applied(&self.applied[&id][..index.0 as usize]);
        let store = node.store_mut();
        store.save_snapshot(meta.clone(), data).map_err(|e| e.to_string())?;
        store.compact(&meta).map_err(|e| e.to_string())
    }

    /// The harness's state machine as `meta`'s snapshot holds it. Only a forged snapshot
    /// (hostile-input tests: Raft does not defend against forged messages) fails to decode,
    /// installed or, later, restored at restart: that is recorded, and placeholders stand in
    /// for the entries it claims to cover.
    fn restore(
        violations: &mut Vec<String>,
        id: NodeId,
        meta: &crate::SnapshotMeta,
        data: &[u8],
    ) -> Vec<Entry> {
        decode_applied(data).unwrap_or_else(|| {
            violations.push(format!("{id}: snapshot {} does not decode", meta.id()));
            (1..=meta.index.0).map(|i| Entry::new(Term::ZERO, LogIndex(i), "")).collect()
        })
    }

    /// Restarts a crashed node from its storage: the state machine is restored from the
    /// newest snapshot, if any, and re-applies the log after it.
    ///
    /// # Panics
    /// If the stored state cannot be read: a broken test.
    pub fn restart(&mut self, id: NodeId) {
        self.down.remove(&id);
        let store = self.node(id).store().clone();
        let restored = match store.snapshot_data() {
            Some((info, data)) => Self::restore(&mut self.violations, id, &info.meta, data),
            None => Vec::new(),
        };
        let applied = LogIndex(restored.len() as u64);
        let node = Node::restart(self.configs[&id].clone(), store, applied)
            .unwrap_or_else(|e| panic!("restart of {id}: {e}"));
        self.nodes.insert(id, node);
        self.applied.insert(id, restored);
        self.leader_last.remove(&id);
        self.process(id);
    }

    /// The terms of `id`'s log from its first index (1 until compaction).
    pub fn log_terms(&self, id: NodeId) -> Vec<u64> {
        let node = self.node(id);
        let store = node.store();
        let last = node.status().last_index;
        (node.first_index().0..=last.0)
            .map(|i| store.term(LogIndex(i)).map(|t| t.0).unwrap_or(u64::MAX))
            .collect()
    }

    /// Log Matching (Raft §5.3) over all pairs of nodes: wherever two logs hold an entry with
    /// the same index and term, they agree on every entry up to it (compared where both
    /// still hold entries).
    pub fn check_log_matching(&self) -> Result<(), String> {
        let logs: Vec<(NodeId, &[Entry])> =
            self.nodes.iter().map(|(id, n)| (*id, n.store().all_entries())).collect();
        for (i, (a, la)) in logs.iter().enumerate() {
            for (b, lb) in &logs[i + 1..] {
                let start = |l: &[Entry]| l.first().map_or(u64::MAX, |e| e.index.0);
                let from = start(la).max(start(lb));
                let (la, lb) = (
                    &la[la.iter().take_while(|e| e.index.0 < from).count()..],
                    &lb[lb.iter().take_while(|e| e.index.0 < from).count()..],
                );
                let n = la.len().min(lb.len());
                if let Some(k) = (0..n).rev().find(|k| la[*k].term == lb[*k].term) {
                    if la[..=k] != lb[..=k] {
                        return Err(format!(
                            "Log Matching: {a} and {b} share {} but differ before",
                            la[k].id()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The harness's snapshot format: the applied entries, each as term, index, kind, length,
/// data (little-endian).
fn encode_applied(entries: &[Entry]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(8 + entries.len() * 32);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.term.0.to_le_bytes());
        out.extend_from_slice(&e.index.0.to_le_bytes());
        out.push(match e.kind {
            EntryKind::Normal => 0,
            EntryKind::Noop => 1,
            EntryKind::ConfChange => 2,
        });
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    out.into()
}

fn decode_applied(data: &[u8]) -> Option<Vec<Entry>> {
    let mut at = 0;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = data.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let n = u64_of(take(8)?);
    let mut out = Vec::new();
    for _ in 0..n {
        let term = Term(u64_of(take(8)?));
        let index = LogIndex(u64_of(take(8)?));
        let kind = match take(1)?[0] {
            0 => EntryKind::Normal,
            1 => EntryKind::Noop,
            2 => EntryKind::ConfChange,
            _ => return None,
        };
        let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let data = bytes::Bytes::copy_from_slice(take(len)?);
        out.push(Entry { term, index, kind, data });
    }
    Some(out)
}
