//! The simulated network between nodes: latency with a long tail (which reorders messages),
//! loss, duplication, and partitions expressed as cut directed links.

use std::collections::BTreeSet;

use flotilla_raft::{NodeId, Rng};

/// Network behaviour for one run, drawn from the seed.
#[derive(Clone, Debug)]
pub struct Net {
    /// Per-million probability that a message is lost.
    pub drop_ppm: u32,
    /// Per-million probability that a message is delivered twice.
    pub dup_ppm: u32,
    /// Minimum one-way latency, microseconds.
    pub latency_min_us: u32,
    /// Typical extra latency, microseconds.
    pub latency_jitter_us: u32,
    /// Directed links that drop everything.
    pub cut: BTreeSet<(NodeId, NodeId)>,
}

impl Net {
    /// Whether `from -> to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// A delivery delay: mostly short, sometimes ten times longer (so later messages
    /// overtake earlier ones).
    pub fn latency_us(&self, rng: &mut Rng) -> u64 {
        let base = u64::from(self.latency_min_us);
        let jitter = u64::from(rng.in_range(0, self.latency_jitter_us.max(1)));
        if rng.in_range(0, 100) < 2 {
            base + jitter * 10
        } else {
            base + jitter
        }
    }

    /// Whether this message is lost.
    pub fn drops(&self, rng: &mut Rng) -> bool {
        rng.in_range(0, 1_000_000) < self.drop_ppm
    }

    /// Whether this message is duplicated.
    pub fn duplicates(&self, rng: &mut Rng) -> bool {
        rng.in_range(0, 1_000_000) < self.dup_ppm
    }

    /// Cuts both directions between the two groups.
    pub fn split(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
                self.cut.insert((*y, *x));
            }
        }
    }
}
