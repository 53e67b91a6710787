//! The whole-state check (ARCHITECTURE.md, design rule 6). [`crate::Node`] runs it after every
//! call in debug builds, and the simulator after every step: a broken invariant is a bug found
//! at the step that caused it, not thousands of steps later.

use crate::raft::Raft;
use crate::storage::LogStore;
use crate::types::Role;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

impl<S: LogStore> Raft<S> {
    /// Checks every invariant of the node's state; `Err` says which failed, with the values.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let log = &self.log;
        let last = log.last_index();
        ensure!(
            log.applied() <= log.apply_handed() && log.apply_handed() <= log.committed(),
            "applied {} <= handed out {} <= committed {}",
            log.applied(),
            log.apply_handed(),
            log.committed()
        );
        ensure!(log.committed() <= last, "committed {} <= last index {last}", log.committed());
        ensure!(
            log.persisted_index() <= last,
            "persisted {} <= last {last}",
            log.persisted_index()
        );
        let last_term = log.term(last).map_err(|e| format!("term of last index {last}: {e}"))?;
        ensure!(
            last_term <= self.term,
            "last entry term {last_term} <= current term {}",
            self.term
        );

        ensure!(
            log.first_index().prev() <= log.applied(),
            "compacted only applied entries: first index {} <= applied {} + 1",
            log.first_index(),
            log.applied()
        );
        if let Some(p) = &self.incoming {
            ensure!(
                p.received < p.info.size,
                "a partial snapshot is partial: {} < {}",
                p.received,
                p.info.size
            );
        }
        let mut prev: Option<&crate::types::Entry> = None;
        for e in log.unstable().entries() {
            if let Some(p) = prev {
                ensure!(e.index == p.index.next(), "unstable indices contiguous at {}", e.index);
                ensure!(e.term >= p.term, "unstable terms non-decreasing at {}", e.index);
            }
            prev = Some(e);
        }

        match self.role {
            Role::Leader => {
                ensure!(self.leader_id == Some(self.id), "a leader leads: {:?}", self.leader_id);
                ensure!(self.vote == Some(self.id), "a leader voted for itself: {:?}", self.vote);
                ensure!(!self.progress.is_empty(), "a leader tracks progress");
                ensure!(self.votes.is_empty(), "a leader holds no tally");
            }
            Role::Candidate => {
                ensure!(
                    self.vote == Some(self.id),
                    "a candidate voted for itself: {:?}",
                    self.vote
                );
                ensure!(self.leader_id.is_none(), "a candidate knows no leader");
            }
            Role::PreCandidate => {
                ensure!(self.leader_id.is_none(), "a pre-candidate knows no leader")
            }
            Role::Follower => {
                ensure!(self.leader_id != Some(self.id), "a follower does not lead");
                ensure!(self.votes.is_empty(), "a follower holds no tally");
            }
        }
        if self.role != Role::Leader {
            ensure!(self.read_only.len() == 0, "only a leader holds read-index rounds");
            ensure!(self.lead_transferee.is_none(), "only a leader transfers leadership");
            ensure!(self.progress.is_empty(), "only a leader tracks progress");
            ensure!(!self.bcast_pending, "only a leader broadcasts");
        }
        for (id, pr) in &self.progress {
            ensure!(pr.matched < pr.next, "{id}: match {} < next {}", pr.matched, pr.next);
            ensure!(pr.matched <= last, "{id}: match {} <= last {last}", pr.matched);
            ensure!(pr.next <= last.next(), "{id}: next {} <= last + 1 ({last})", pr.next);
            ensure!(
                (pr.state == crate::progress::ProgressState::Snapshot) == pr.snapshot.is_some(),
                "{id}: a transfer exactly in snapshot state"
            );
            if let Some(s) = &pr.snapshot {
                ensure!(
                    s.acked <= s.sent && s.sent <= s.info.size,
                    "{id}: snapshot acked {} <= sent {} <= size {}",
                    s.acked,
                    s.sent,
                    s.info.size
                );
            }
            ensure!(
                pr.inflights.count() <= self.config.inflight_msgs_max,
                "{id}: {} inflight messages within the window",
                pr.inflights.count()
            );
        }
        if let Some(me) = self.progress.get(&self.id) {
            ensure!(
                me.matched <= log.persisted_index(),
                "the leader counts only its durable entries: match {} <= persisted {}",
                me.matched,
                log.persisted_index()
            );
        }
        let (lo, hi) =
            (self.config.election_timeout_ticks_min, self.config.election_timeout_ticks_max);
        ensure!(
            (lo..hi).contains(&self.randomized_election_timeout),
            "election timeout {} in [{lo}, {hi})",
            self.randomized_election_timeout
        );
        Ok(())
    }
}
