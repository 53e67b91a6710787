//! The pipelining window of one follower (Thesis §10.2.2): AppendEntries sent and not yet
//! acknowledged, bounded both in messages and in entry bytes.

use std::collections::VecDeque;

use crate::types::LogIndex;

/// AppendEntries in flight to one follower, oldest first.
///
/// Invariant: the recorded last indices strictly increase, and `bytes` is their byte sum.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Inflights {
    /// (last index of the message, entry bytes it carried).
    queue: VecDeque<(LogIndex, u64)>,
    bytes: u64,
    msgs_max: usize,
    bytes_max: u64,
}

impl Inflights {
    /// An empty window with the given limits.
    pub fn new(msgs_max: usize, bytes_max: u64) -> Inflights {
        Inflights { queue: VecDeque::new(), bytes: 0, msgs_max, bytes_max }
    }

    /// Records a message whose last entry is `last` and which carried `bytes` entry bytes.
    pub fn add(&mut self, last: LogIndex, bytes: u64) {
        debug_assert!(
            self.queue.back().is_none_or(|(l, _)| *l < last),
            "inflights must grow: {last} after {:?}",
            self.queue.back()
        );
        self.queue.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every message whose last index is at or below `acked`.
    pub fn free_to(&mut self, acked: LogIndex) {
        while let Some(&(last, bytes)) = self.queue.front() {
            if last > acked {
                break;
            }
            self.queue.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Frees the oldest message: a heartbeat answer proves the follower alive although an
    /// AppendEntries may have been lost, and without this a full window would stall forever.
    pub fn free_first_one(&mut self) {
        if let Some((_, bytes)) = self.queue.pop_front() {
            self.bytes -= bytes;
        }
    }

    /// Whether no more messages may be sent.
    pub fn full(&self) -> bool {
        self.queue.len() >= self.msgs_max || self.bytes >= self.bytes_max
    }

    /// Messages in flight.
    pub fn count(&self) -> usize {
        self.queue.len()
    }

    /// Entry bytes in flight.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Forgets everything (on a state change).
    pub fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_by_count_and_by_bytes_and_frees_by_ack() {
        let mut w = Inflights::new(3, 100);
        w.add(LogIndex(1), 10);
        w.add(LogIndex(3), 10);
        assert!(!w.full());
        w.add(LogIndex(5), 10);
        assert!(w.full(), "three messages fill a window of three");
        w.free_to(LogIndex(3));
        assert_eq!((w.count(), w.bytes()), (1, 10));
        w.add(LogIndex(9), 90);
        assert!(w.full(), "100 bytes fill a window of 100 bytes");
        w.free_first_one();
        assert_eq!((w.count(), w.bytes()), (1, 90));
        w.free_to(LogIndex(100));
        assert_eq!((w.count(), w.bytes()), (0, 0));
    }
}
