//! The tail of the log not yet durable: entries the core has accepted (appended as leader or
//! received as follower) that the driver has not yet confirmed written and synced.

use crate::types::{Entry, EntryId, LogIndex, Term};

/// Entries `offset..` awaiting persistence.
///
/// Invariants: `entries[i].index == offset + i`; `handed_out + 1 >= offset`; entries up to
/// `handed_out` were given to the driver in a `Ready` and are being written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Unstable {
    offset: LogIndex,
    entries: Vec<Entry>,
    handed_out: LogIndex,
}

impl Unstable {
    /// An empty tail that starts after `last_stable`.
    pub(crate) fn new(last_stable: LogIndex) -> Unstable {
        Unstable { offset: last_stable.next(), entries: Vec::new(), handed_out: last_stable }
    }

    pub(crate) fn offset(&self) -> LogIndex {
        self.offset
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn last_index(&self) -> Option<LogIndex> {
        self.entries.last().map(|e| e.index)
    }

    pub(crate) fn maybe_term(&self, index: LogIndex) -> Option<Term> {
        if index < self.offset {
            return None;
        }
        self.entries.get((index.0 - self.offset.0) as usize).map(|e| e.term)
    }

    /// Entries not yet handed to the driver.
    pub(crate) fn to_persist(&self) -> &[Entry] {
        let start = (self.handed_out.0 + 1).saturating_sub(self.offset.0) as usize;
        &self.entries[start.min(self.entries.len())..]
    }

    /// Records that everything up to `index` was handed to the driver.
    pub(crate) fn handed_out_to(&mut self, index: LogIndex) {
        self.handed_out = self.handed_out.max(index);
    }

    /// Appends `entries`, first discarding every unstable entry at or after `entries[0].index`.
    /// When that index is at or below `offset`, the new entries replace part of the stable log
    /// too: the driver's write of them truncates storage (see `Ready::entries`).
    pub(crate) fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let after = self.offset.plus(self.entries.len() as u64);
        if first.index == after {
            // The common case: a plain append.
        } else if first.index <= self.offset {
            self.offset = first.index;
            self.entries.clear();
        } else {
            debug_assert!(first.index < after, "unstable append leaves a gap at {}", first.index);
            self.entries.truncate((first.index.0 - self.offset.0) as usize);
        }
        self.handed_out = self.handed_out.min(first.index.prev());
        self.entries.extend_from_slice(entries);
    }

    /// Appends one entry at the end; the leader's hot path.
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.offset.plus(self.entries.len() as u64));
        self.entries.push(entry);
    }

    /// Forgets entries through `index`, which a snapshot now covers.
    pub(crate) fn drop_through(&mut self, index: LogIndex) {
        if index < self.offset {
            return;
        }
        let n = ((index.0 + 1 - self.offset.0) as usize).min(self.entries.len());
        self.entries.drain(..n);
        self.offset = index.next();
        self.handed_out = self.handed_out.max(index);
    }

    /// The driver reports `id` durable: forget entries up to it, unless the log changed since
    /// (then `id` names an entry that is no longer ours, and the report is stale).
    pub(crate) fn stable_to(&mut self, id: EntryId) -> bool {
        if self.maybe_term(id.index) != Some(id.term) {
            return false;
        }
        let n = (id.index.0 + 1 - self.offset.0) as usize;
        self.entries.drain(..n);
        self.offset = id.index.next();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::new(Term(*t), LogIndex(first + i as u64), ""))
            .collect()
    }

    #[test]
    fn truncate_and_append_table() {
        // (offset, existing terms, append at, new terms) -> (offset, terms after)
        let cases: &[(u64, &[u64], u64, &[u64], u64, &[u64])] = &[
            (5, &[1, 1], 7, &[2], 5, &[1, 1, 2]),
            (5, &[1, 1], 6, &[2, 2], 5, &[1, 2, 2]),
            (5, &[1, 1], 5, &[3], 5, &[3]),
            (5, &[1, 1], 3, &[3, 3], 3, &[3, 3]),
            (5, &[], 5, &[1], 5, &[1]),
        ];
        for (offset, have, at, new, want_offset, want) in cases {
            let mut u = Unstable::new(LogIndex(offset - 1));
            u.truncate_and_append(&ents(*offset, have));
            u.truncate_and_append(&ents(*at, new));
            assert_eq!(u.offset(), LogIndex(*want_offset));
            let terms: Vec<u64> = u.entries().iter().map(|e| e.term.0).collect();
            assert_eq!(&terms, want);
        }
    }

    #[test]
    fn stable_to_ignores_reports_about_replaced_entries() {
        let mut u = Unstable::new(LogIndex(0));
        u.truncate_and_append(&ents(1, &[1, 1, 1]));
        u.handed_out_to(LogIndex(3));
        // The log is rewritten from 2 in term 2 before the driver reports 3/1 durable.
        u.truncate_and_append(&ents(2, &[2]));
        assert_eq!(u.to_persist().len(), 1, "the replacement must be handed out again");
        assert!(!u.stable_to(EntryId::new(Term(1), LogIndex(3))), "3/1 is gone");
        assert!(u.stable_to(EntryId::new(Term(1), LogIndex(1))));
        assert_eq!(u.offset(), LogIndex(2));
        assert!(u.stable_to(EntryId::new(Term(2), LogIndex(2))));
        assert!(u.is_empty());
    }
}
