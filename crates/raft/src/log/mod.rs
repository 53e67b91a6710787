//! The Raft log as the core sees it: durable entries read through [`LogStore`], the unstable
//! tail awaiting persistence, and the commit and apply pointers.
//!
//! Invariant: `applied <= apply_handed <= committed <= last_index()`.

mod unstable;

use crate::error::{Malformed, StorageError};
use crate::storage::LogStore;
use crate::types::{Entry, EntryId, LogIndex, Term};

pub(crate) use unstable::Unstable;

/// Why an append from the leader could not be taken.
#[derive(Debug)]
pub(crate) enum AppendRefusal {
    /// The consistency check failed (Raft §5.3): the normal case, answered with a hint.
    Mismatch,
    /// The message would overwrite a committed entry.
    Malformed(Malformed),
    /// Storage failed.
    Storage(StorageError),
}

impl From<StorageError> for AppendRefusal {
    fn from(e: StorageError) -> Self {
        AppendRefusal::Storage(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RaftLog<S> {
    pub(crate) store: S,
    unstable: Unstable,
    /// Highest index known committed (Raft Fig. 2 `commitIndex`).
    committed: LogIndex,
    /// Highest index the application reported applied (Raft Fig. 2 `lastApplied`).
    applied: LogIndex,
    /// Highest index handed out for application, possibly not yet reported applied.
    apply_handed: LogIndex,
    /// A snapshot installed in the core and handed to the driver, which has not yet reported
    /// it applied to the store: until then the store still shows the old log, and reads go
    /// through this overlay.
    pending_snapshot: Option<PendingSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingSnapshot {
    id: EntryId,
    /// The store keeps its entries after `id` (it holds `id`); otherwise it drops them all.
    keep_suffix: bool,
}

impl<S: LogStore> RaftLog<S> {
    pub(crate) fn new(store: S, committed: LogIndex, applied: LogIndex) -> RaftLog<S> {
        let last = store.last_index();
        RaftLog {
            store,
            unstable: Unstable::new(last),
            committed,
            applied,
            apply_handed: applied,
            pending_snapshot: None,
        }
    }

    pub(crate) fn committed(&self) -> LogIndex {
        self.committed
    }

    pub(crate) fn applied(&self) -> LogIndex {
        self.applied
    }

    pub(crate) fn apply_handed(&self) -> LogIndex {
        self.apply_handed
    }

    pub(crate) fn unstable(&self) -> &Unstable {
        &self.unstable
    }

    pub(crate) fn unstable_mut(&mut self) -> &mut Unstable {
        &mut self.unstable
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        match &self.pending_snapshot {
            Some(p) => p.id.index.next(),
            None => self.store.first_index(),
        }
    }

    /// The last index of the stored log, as it will be once a pending snapshot is applied.
    fn stored_last_index(&self) -> LogIndex {
        match &self.pending_snapshot {
            Some(p) if p.keep_suffix => self.store.last_index().max(p.id.index),
            Some(p) => p.id.index,
            None => self.store.last_index(),
        }
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.unstable.last_index().unwrap_or_else(|| self.stored_last_index())
    }

    /// The highest index the driver has reported durable (a pending snapshot counts: it
    /// covers only entries committed cluster-wide).
    pub(crate) fn persisted_index(&self) -> LogIndex {
        if self.unstable.is_empty() {
            self.stored_last_index()
        } else {
            self.unstable.offset().prev()
        }
    }

    pub(crate) fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if let Some(t) = self.unstable.maybe_term(index) {
            return Ok(t);
        }
        if index >= self.unstable.offset() {
            return Err(StorageError::Unavailable(index));
        }
        if let Some(p) = &self.pending_snapshot {
            if index == p.id.index {
                return Ok(p.id.term);
            }
            if index < p.id.index {
                return Err(StorageError::Compacted(index));
            }
        }
        self.store.term(index)
    }

    /// Installs a snapshot received from the leader (Raft Fig. 13, steps 6–8): the log keeps
    /// the entries after the snapshot only if it holds the snapshot's last entry; the state
    /// machine is replaced, so everything through it counts as committed and applied.
    /// The store catches up when the driver installs it and acknowledges.
    pub(crate) fn restore(&mut self, id: EntryId) {
        debug_assert!(id.index > self.committed, "only snapshots beyond commit are installed");
        let keep_suffix = self.match_term(id).unwrap_or(false);
        if keep_suffix {
            self.unstable.drop_through(id.index);
        } else {
            self.unstable = Unstable::new(id.index);
        }
        self.pending_snapshot = Some(PendingSnapshot { id, keep_suffix });
        self.committed = id.index;
        self.apply_handed = id.index;
        self.applied = id.index;
    }

    /// The driver reports snapshot `id` applied to the store: the overlay goes.
    pub(crate) fn snapshot_installed(&mut self, id: EntryId) {
        if self.pending_snapshot.as_ref().is_some_and(|p| p.id == id) {
            self.pending_snapshot = None;
        }
    }

    pub(crate) fn last_entry_id(&self) -> Result<EntryId, StorageError> {
        let index = self.last_index();
        Ok(EntryId::new(self.term(index)?, index))
    }

    /// Whether the log holds `id`. Compacted and missing indices do not match.
    pub(crate) fn match_term(&self, id: EntryId) -> Result<bool, StorageError> {
        match self.term(id.index) {
            Ok(t) => Ok(t == id.term),
            Err(StorageError::Compacted(_) | StorageError::Unavailable(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Raft §5.4.1, the election restriction: grant a vote only to a candidate whose log is at
    /// least as up-to-date as ours.
    pub(crate) fn is_up_to_date(&self, candidate_last: EntryId) -> Result<bool, StorageError> {
        Ok(candidate_last.is_at_least_as_up_to_date_as(self.last_entry_id()?))
    }

    /// The leader's own append: entries continue the log.
    pub(crate) fn append_own(&mut self, entry: Entry) {
        self.unstable.push(entry);
    }

    /// Raft §5.3, receiver implementation of AppendEntries, steps 2 to 5:
    /// "2. Reply false if log doesn't contain an entry at prevLogIndex whose term matches
    /// prevLogTerm. 3. If an existing entry conflicts with a new one (same index but different
    /// terms), delete the existing entry and all that follow it. 4. Append any new entries not
    /// already in the log. 5. If leaderCommit > commitIndex, set commitIndex =
    /// min(leaderCommit, index of last new entry)."
    ///
    /// Only a conflicting suffix is removed: a stale or duplicated message whose entries all
    /// match changes nothing, even if our log is longer.
    ///
    /// ```text
    /// idx        1 2 3 4 5
    /// ours       1 1 2 2 2
    /// stale msg  prev=1/1, entries 2/1 3/2   -> all match: keep 4 and 5
    /// new msg    prev=2/1, entries 3/2 4/3   -> conflict at 4: drop 4.., append 4/3
    /// ```
    ///
    /// Returns the index of the last entry the message carried, now known to match the leader,
    /// and the index from which the log was rewritten, if it was.
    pub(crate) fn maybe_append(
        &mut self,
        prev: EntryId,
        leader_commit: LogIndex,
        entries: &[Entry],
    ) -> Result<(LogIndex, Option<LogIndex>), AppendRefusal> {
        if !self.match_term(prev)? {
            return Err(AppendRefusal::Mismatch);
        }
        let last_new = prev.index.plus(entries.len() as u64);
        let mut first_new = entries.len();
        for (i, e) in entries.iter().enumerate() {
            if !self.match_term(e.id())? {
                first_new = i;
                break;
            }
        }
        if let Some(e) = entries.get(first_new) {
            if e.index <= self.last_index() && e.index <= self.committed {
                return Err(AppendRefusal::Malformed(Malformed::ConflictBelowCommit {
                    index: e.index,
                    commit: self.committed,
                }));
            }
            self.unstable.truncate_and_append(&entries[first_new..]);
        }
        self.commit_to(leader_commit.min(last_new));
        Ok((last_new, entries.get(first_new).map(|e| e.index)))
    }

    /// The follower's rejection hint for a failed probe at `prev_index`.
    pub(crate) fn reject_hint(
        &self,
        prev_index: LogIndex,
    ) -> Result<crate::message::RejectHint, StorageError> {
        use crate::message::RejectHint;
        let last = self.last_index();
        if prev_index > last {
            return Ok(RejectHint::LogTooShort { last_index: last });
        }
        let conflict_term = self.term(prev_index)?;
        // Walk back to the first index of that term; entries at or below commit match the
        // leader anyway, so the walk stops there.
        let floor = self.committed.next().max(self.first_index());
        let mut first = prev_index;
        while first > floor && self.term(first.prev())? == conflict_term {
            first = first.prev();
        }
        Ok(RejectHint::ConflictingTerm { conflict_term, first_index_of_term: first })
    }

    /// The leader's half of fast backtracking: the largest index at or below `index` whose
    /// term is at most `term`, with that term. Stops at compaction.
    pub(crate) fn find_conflict_by_term(
        &self,
        index: LogIndex,
        term: Term,
    ) -> Result<(LogIndex, Term), StorageError> {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > LogIndex::ZERO => i = i.prev(),
                Ok(t) => return Ok((i, t)),
                Err(StorageError::Compacted(_)) => return Ok((i, Term::ZERO)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the commit index forward; never backward.
    pub(crate) fn commit_to(&mut self, index: LogIndex) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit_to({index}) beyond last index {}: a caller skipped a check",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Raft §5.4.2: commit `index` only if its entry is of `term` (the leader's current term).
    pub(crate) fn maybe_commit(&mut self, index: LogIndex, term: Term) -> bool {
        if index > self.committed && self.term(index).ok() == Some(term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    pub(crate) fn stable_to(&mut self, id: EntryId) -> bool {
        self.unstable.stable_to(id)
    }

    pub(crate) fn applied_to(&mut self, index: LogIndex) {
        assert!(
            index <= self.apply_handed,
            "applied_to({index}) beyond what was handed out ({})",
            self.apply_handed
        );
        self.applied = self.applied.max(index);
    }

    /// Appends entries `[low, high)` to `out`, at most `bytes_max` of them (at least one).
    pub(crate) fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        let offset = self.unstable.offset();
        let start_len = out.len();
        if low < offset {
            if low < self.first_index() {
                return Err(StorageError::Compacted(low));
            }
            self.store.entries(low, high.min(offset), bytes_max, out)?;
            let got = (out.len() - start_len) as u64;
            if high <= offset || low.plus(got) < offset {
                return Ok(());
            }
        }
        let mut bytes: u64 = out[start_len..].iter().map(Entry::size_bytes).sum();
        let from = (low.max(offset).0 - offset.0) as usize;
        let to = (high.0 - offset.0) as usize;
        for e in &self.unstable.entries()[from..to.min(self.unstable.entries().len())] {
            bytes += e.size_bytes();
            if bytes > bytes_max && out.len() > start_len {
                break;
            }
            out.push(e.clone());
        }
        Ok(())
    }

    /// Whether committed entries wait to be handed out.
    pub(crate) fn has_next_committed(&self) -> bool {
        self.committed > self.apply_handed
    }

    /// Hands out the next committed entries for application, in order, up to `bytes_max`.
    /// Some may still be unstable here: they are committed, so durable on a majority, and a
    /// driver that syncs in the background applies them before its own copy is durable (see
    /// [`crate::Ready`]).
    pub(crate) fn next_committed(&mut self, bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        let high = self.committed;
        let mut out = Vec::new();
        if high > self.apply_handed {
            self.entries(self.apply_handed.next(), high.next(), bytes_max, &mut out)?;
            if let Some(last) = out.last() {
                self.apply_handed = last.index;
            }
        }
        Ok(out)
    }
}
