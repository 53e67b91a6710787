//! What a leader knows of each follower (Raft Fig. 2, "Volatile state on leaders"), and the
//! flow control of Thesis §10.2: probe one message at a time after a rejection, pipeline in
//! replicate state after a success.

mod inflights;

pub use inflights::Inflights;

use crate::types::LogIndex;

/// The flow-control state of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches: one AppendEntries at a time
    /// until one succeeds (entered at election and after a rejection).
    Probe,
    /// The logs match through `matched`: AppendEntries are pipelined and `next` advances
    /// optimistically as they are sent.
    Replicate,
    /// The follower needs entries the leader has compacted: the leader streams its snapshot
    /// in chunks (Raft §7) and sends no AppendEntries until the follower has installed it.
    Snapshot,
}

/// A snapshot being streamed to one follower.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SnapshotSend {
    pub(crate) info: crate::snapshot::SnapshotInfo,
    /// Bytes the follower reported durably stored.
    pub(crate) acked: u64,
    /// Bytes sent (`acked..sent` are in flight).
    pub(crate) sent: u64,
    /// The latest `received` the follower reported (below `acked` if it lost its copy).
    pub(crate) reported: u64,
    /// Ticks since `acked` last advanced: the retry timer is on lack of progress, not on the
    /// transfer's total time, so a large snapshot over a slow link completes.
    pub(crate) idle_ticks: u32,
    /// Already went back to `acked` on a rejection at this acknowledgement level, so further
    /// rejections of chunks sent before that do not trigger more resends.
    pub(crate) rewound: bool,
}

/// The leader's view of one member.
///
/// Invariant: `matched < next`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Highest index known to be durably replicated on the member (Raft Fig. 2 `matchIndex`).
    pub(crate) matched: LogIndex,
    /// Index of the next entry to send (Raft Fig. 2 `nextIndex`).
    pub(crate) next: LogIndex,
    pub(crate) state: ProgressState,
    /// In probe state: a probe is outstanding, so no other is sent until an answer or the next
    /// heartbeat answer.
    pub(crate) probe_sent: bool,
    /// Highest commit index sent to the member, so that commit advances reach it once.
    pub(crate) commit_sent: LogIndex,
    /// Heard from the member since the last check-quorum round (Thesis §6.2).
    pub(crate) recent_active: bool,
    pub(crate) inflights: Inflights,
    /// In snapshot state: the transfer.
    pub(crate) snapshot: Option<SnapshotSend>,
}

impl Progress {
    /// A member about which nothing is known: probe from `next`.
    pub(crate) fn new(next: LogIndex, msgs_max: usize, bytes_max: u64) -> Progress {
        Progress {
            matched: LogIndex::ZERO,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            commit_sent: LogIndex::ZERO,
            recent_active: false,
            inflights: Inflights::new(msgs_max, bytes_max),
            snapshot: None,
        }
    }

    /// Index the leader believes durably replicated on this member.
    pub fn matched(&self) -> LogIndex {
        self.matched
    }

    /// Next index to send.
    pub fn next(&self) -> LogIndex {
        self.next
    }

    /// Flow-control state.
    pub fn state(&self) -> ProgressState {
        self.state
    }

    /// Messages in flight.
    pub fn inflight_msgs(&self) -> usize {
        self.inflights.count()
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.snapshot = None;
        self.inflights.reset();
        self.next = self.next.max(self.matched.next());
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.snapshot = None;
        self.inflights.reset();
        self.next = self.matched.next();
    }

    /// Starts streaming `info` from its first byte.
    pub(crate) fn become_snapshot(&mut self, info: crate::snapshot::SnapshotInfo) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.reset();
        self.snapshot = Some(SnapshotSend {
            info,
            acked: 0,
            sent: 0,
            reported: 0,
            idle_ticks: 0,
            rewound: false,
        });
    }

    /// Whether sending must wait: a probe is outstanding, or the window is full.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Records a successful acknowledgement of `index`. Returns whether it taught anything new
    /// (acknowledgements may arrive duplicated or out of order).
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index.next());
        updated
    }

    /// Records that entries `[next, last]` carrying `bytes` were sent.
    pub(crate) fn sent_entries(&mut self, last: LogIndex, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                self.next = last.next();
                self.inflights.add(last, bytes);
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// Moves `next` back after a rejection of `rejected_prev`, to `hinted` (clamped so that it
    /// stays above `matched` and below the rejected probe). Returns false for a stale rejection,
    /// which is ignored.
    pub(crate) fn maybe_decr_to(&mut self, rejected_prev: LogIndex, hinted: LogIndex) -> bool {
        match self.state {
            // In replicate state `next` ran ahead; only a rejection above `matched` is news.
            ProgressState::Replicate => {
                if rejected_prev <= self.matched {
                    return false;
                }
                self.next = self.matched.next();
                self.become_probe();
                self.next = hinted.min(rejected_prev).max(self.matched.next());
                true
            }
            // A snapshot is on its way; its installation answers for the log.
            ProgressState::Snapshot => false,
            // In probe state only the answer to the outstanding probe counts.
            ProgressState::Probe => {
                if rejected_prev != self.next.prev() {
                    return false;
                }
                self.next = hinted.min(rejected_prev).max(self.matched.next());
                self.probe_sent = false;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(matched: u64, next: u64, state: ProgressState) -> Progress {
        let mut p = Progress::new(LogIndex(next), 4, 1 << 20);
        p.matched = LogIndex(matched);
        p.state = state;
        p
    }

    #[test]
    fn maybe_decr_to_ignores_stale_rejections() {
        // (state, matched, next, rejected_prev, hinted) -> (accepted, next after)
        let cases = [
            (ProgressState::Replicate, 5, 10, 5, 3, false, 10),
            (ProgressState::Replicate, 5, 10, 4, 3, false, 10),
            (ProgressState::Replicate, 5, 10, 9, 7, true, 7),
            (ProgressState::Replicate, 5, 10, 9, 2, true, 6),
            (ProgressState::Probe, 0, 10, 8, 3, false, 10),
            (ProgressState::Probe, 0, 10, 9, 3, true, 3),
            (ProgressState::Probe, 0, 10, 9, 0, true, 1),
            (ProgressState::Probe, 0, 10, 9, 15, true, 9),
        ];
        for (state, matched, next, rej, hint, ok, want_next) in cases {
            let mut p = pr(matched, next, state);
            assert_eq!(
                p.maybe_decr_to(LogIndex(rej), LogIndex(hint)),
                ok,
                "{state:?} {rej} {hint}"
            );
            assert_eq!(p.next, LogIndex(want_next), "{state:?} {rej} {hint}");
            if ok {
                assert_eq!(p.state, ProgressState::Probe);
            }
        }
    }

    #[test]
    fn maybe_update_is_monotonic() {
        let mut p = pr(3, 4, ProgressState::Probe);
        assert!(p.maybe_update(LogIndex(5)));
        assert!(!p.maybe_update(LogIndex(4)), "a reordered older ack teaches nothing");
        assert_eq!((p.matched, p.next), (LogIndex(5), LogIndex(6)));
    }
}
