//! Core throughput: a 3-node in-memory cluster in one thread, messages delivered by hand, no
//! IO. Reports committed entries per second for 1, 16 and 256 outstanding proposals with 64 B
//! and 1 KiB payloads. A bench binary rather than criterion: each run commits millions of
//! entries into in-memory logs, and one timed pass per configuration (after a warm-up) is
//! what we want to record.
//!
//! Run: `cargo bench -p flotilla-raft --bench cluster` (add `-- --quick` for a short run).

// The clock ban protects the core; a benchmark times it from outside.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Instant;

use bytes::Bytes;
use flotilla_raft::{Config, LogIndex, MemStorage, Membership, Message, Node, NodeId};

struct Bench {
    nodes: Vec<Node<MemStorage>>,
    queue: Vec<Message>,
    applied: u64,
}

impl Bench {
    fn new() -> Bench {
        let members = Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).expect("3 voters");
        let nodes = (1..=3)
            .map(|i| {
                let cfg = Config { rng_seed: i, ..Config::new(NodeId(i)) };
                Node::new(cfg, MemStorage::new(members.clone())).expect("valid node")
            })
            .collect();
        Bench { nodes, queue: Vec::new(), applied: 0 }
    }

    /// The driver loop of one node: persist, send, apply, advance. Like
    /// `testkit::Cluster::process` without its safety bookkeeping, which would dominate here.
    fn process(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        while node.has_ready() {
            let rd = node.ready().expect("MemStorage does not fail");
            let ack = rd.ack();
            self.queue.extend(rd.messages);
            node.store_mut().append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                node.store_mut().set_hard_state(hs);
            }
            self.queue.extend(rd.persisted_messages);
            self.applied += rd.committed_entries.len() as u64;
            node.advance(ack);
        }
    }

    fn deliver_all(&mut self) {
        while !self.queue.is_empty() {
            let batch = std::mem::take(&mut self.queue);
            for m in batch {
                let to = (m.to.0 - 1) as usize;
                self.nodes[to].step(m).expect("well-formed message");
                self.process(to);
            }
        }
    }

    fn elect(&mut self) {
        self.nodes[0].campaign().expect("campaign");
        self.process(0);
        self.deliver_all();
    }

    /// Keeps `outstanding` proposals in flight until `total` are committed on the leader.
    fn run(&mut self, outstanding: u64, payload: &Bytes, total: u64) -> f64 {
        let base = self.nodes[0].commit_index().0;
        let mut proposed = 0u64;
        let start = Instant::now();
        loop {
            let committed = self.nodes[0].commit_index().0 - base;
            if committed >= total {
                break;
            }
            while proposed < total && proposed - committed.min(proposed) < outstanding {
                self.nodes[0].propose(payload.clone()).expect("leader accepts");
                proposed += 1;
            }
            self.process(0);
            self.deliver_all();
        }
        total as f64 / start.elapsed().as_secs_f64()
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("flotilla-raft core: 3 nodes, one thread, in-memory, messages delivered by hand");
    println!("{:>11} {:>8} {:>12} {:>16}", "outstanding", "payload", "entries", "committed/s");
    for size in [64usize, 1024] {
        let payload = Bytes::from(vec![0xAB; size]);
        for outstanding in [1u64, 16, 256] {
            let total = match (quick, outstanding) {
                (true, _) => 20_000,
                (false, 1) => 200_000,
                (false, 16) => 1_000_000,
                (false, _) => 2_000_000,
            };
            let mut b = Bench::new();
            b.elect();
            b.run(outstanding, &payload, total / 10); // warm-up
            let rate = b.run(outstanding, &payload, total);
            assert!(b.nodes.iter().all(|n| n.commit_index() >= LogIndex(total)));
            println!("{outstanding:>11} {size:>7}B {total:>12} {rate:>16.0}");
        }
    }
}
