//! Log compaction's half of replication (Raft §7, Fig. 13; Thesis §5.3): the leader streams
//! its snapshot in chunks to a follower that needs compacted entries, and the follower stores
//! the chunks and installs the snapshot.
//!
//! Chunks go in order, a few in flight ([`crate::Config::snapshot_chunks_inflight`]). The
//! follower answers each with the bytes it holds durably; a chunk that does not continue what
//! it holds (one was lost, or it restarted) is refused with that count, and the leader resends
//! from there. A transfer that makes no progress for
//! [`crate::Config::snapshot_retry_ticks`] resends from the last acknowledged byte.

use crate::error::StorageError;
use crate::message::{AppendOutcome, MessageBody};
use crate::raft::{Dispatch, Raft};
use crate::snapshot::{PartialSnapshot, SnapshotChunk, SnapshotInfo};
use crate::storage::LogStore;
use crate::types::{EntryId, NodeId};

impl<S: LogStore> Raft<S> {
    // ---- leader ----------------------------------------------------------------------------

    /// Switches `to` to snapshot state with the store's newest snapshot, if it covers what the
    /// follower lacks (Raft §7: "the leader must occasionally send snapshots to followers that
    /// lag behind"). Returns false if no usable snapshot is held yet (the driver is still
    /// installing one): the follower stays in probe and is retried at the next heartbeat.
    pub(crate) fn start_snapshot(&mut self, to: NodeId) -> bool {
        let needed = self.log.first_index().prev();
        let Some(info) = self.log.store.snapshot() else { return false };
        if info.meta.index < needed {
            return false;
        }
        let pr = self.progress.get_mut(&to).expect("caller checked the progress exists");
        pr.become_snapshot(info);
        true
    }

    /// Sends chunks to `to` while the window allows. Returns whether it sent any.
    pub(crate) fn maybe_send_snapshot(&mut self, to: NodeId) -> Result<bool, StorageError> {
        let (chunk_max, window) = (
            self.config.snapshot_chunk_bytes,
            self.config.snapshot_chunk_bytes.saturating_mul(self.config.snapshot_chunks_inflight),
        );
        let mut sent_any = false;
        loop {
            let Some(pr) = self.progress.get_mut(&to) else { return Ok(sent_any) };
            let Some(s) = pr.snapshot.as_ref() else { return Ok(sent_any) };
            if s.sent >= s.info.size || s.sent - s.acked >= window {
                return Ok(sent_any);
            }
            let (info, offset) = (s.info.clone(), s.sent);
            let len = chunk_max.min(info.size - offset);
            let data = match self.log.store.snapshot_chunk(info.meta.id(), offset, len) {
                Ok(d) => d,
                Err(StorageError::Unavailable(_)) => {
                    // A newer snapshot replaced this one: start over with it.
                    pr.become_probe();
                    if self.start_snapshot(to) {
                        continue;
                    }
                    return Ok(sent_any);
                }
                Err(e) => return Err(e),
            };
            if data.len() as u64 != len {
                return Err(StorageError::Other(format!(
                    "snapshot {} returned {} bytes at offset {offset} where {len} were asked",
                    info.meta.id(),
                    data.len()
                )));
            }
            let s = pr.snapshot.as_mut().expect("checked above");
            s.sent += len;
            let body = MessageBody::InstallSnapshot { info, offset, data };
            self.msgs.push(crate::message::Message { from: self.id, to, term: self.term, body });
            sent_any = true;
        }
    }

    /// A follower reports how much of the snapshot it holds.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        snapshot: EntryId,
        received: u64,
        rejected: bool,
    ) -> Result<(), Dispatch> {
        let Some(pr) = self.progress.get_mut(&from) else { return Ok(()) };
        pr.recent_active = true;
        let Some(s) = pr.snapshot.as_mut() else { return Ok(()) };
        if s.info.meta.id() != snapshot {
            return Ok(());
        }
        if received > s.info.size {
            return Err(Dispatch::Malformed(
                from,
                crate::error::Malformed::SnapshotAckBeyondSize { received, size: s.info.size },
            ));
        }
        s.reported = received;
        if received > s.acked {
            s.acked = received;
            s.sent = s.sent.max(received);
            s.idle_ticks = 0;
            s.rewound = false;
        }
        if rejected && !s.rewound && s.sent > received {
            // The follower holds less than we sent (a chunk was lost, or it restarted):
            // resume from what it holds rather than from the start.
            s.acked = s.acked.min(received);
            s.sent = received;
            s.rewound = true;
        }
        self.maybe_send_snapshot(from)?;
        Ok(())
    }

    /// Per tick: transfers that made no progress for the retry interval resend from the last
    /// acknowledged byte.
    pub(crate) fn tick_snapshots(&mut self) -> Result<(), StorageError> {
        let retry = self.config.snapshot_retry_ticks;
        let mut stalled = Vec::new();
        for (id, pr) in self.progress.iter_mut() {
            if let Some(s) = pr.snapshot.as_mut() {
                s.idle_ticks += 1;
                if s.idle_ticks >= retry {
                    s.acked = s.acked.min(s.reported);
                    s.sent = s.acked;
                    s.idle_ticks = 0;
                    s.rewound = false;
                    stalled.push(*id);
                }
            }
        }
        for id in stalled {
            self.maybe_send_snapshot(id)?;
        }
        Ok(())
    }

    // ---- follower --------------------------------------------------------------------------

    /// Raft Fig. 13, receiver implementation, with chunks stored by the driver.
    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        info: SnapshotInfo,
        offset: u64,
        data: bytes::Bytes,
    ) -> Result<(), Dispatch> {
        self.follow(from)?;
        let term = self.term;
        let id = info.meta.id();
        let committed = self.log.committed();
        let ok = |match_index| MessageBody::AppendResponse {
            outcome: AppendOutcome::Success { match_index },
        };
        if id.index <= committed {
            // We have all of it already (it is committed here, so it matches the leader):
            // the leader resumes with entries after our commit index.
            self.send_after_persist(from, term, ok(committed));
            return Ok(());
        }
        if offset == 0 && self.log.match_term(id)? {
            // The log already holds the snapshot's last entry, so by Log Matching everything
            // before it: no need for the bytes. Commit through it and carry on with entries.
            self.log.commit_to(id.index);
            self.send_after_persist(from, term, ok(id.index));
            return Ok(());
        }
        let held = match &self.incoming {
            Some(p) if p.info == info => p.received,
            _ => 0,
        };
        let fresh = offset == 0 && held == 0;
        if offset != held && !fresh {
            // A duplicate (offset below what we hold) or a gap (above): say what we hold.
            let body = MessageBody::SnapshotResponse {
                snapshot: id,
                received: held,
                rejected: offset > held,
            };
            self.send_after_persist(from, term, body);
            return Ok(());
        }
        let received = offset + data.len() as u64;
        self.snapshot_chunks.push(SnapshotChunk { info: info.clone(), offset, data });
        if received < info.size {
            self.incoming = Some(PartialSnapshot { info, received });
            let body = MessageBody::SnapshotResponse { snapshot: id, received, rejected: false };
            self.send_after_persist(from, term, body);
            return Ok(());
        }
        // Complete: install it (steps 5–8).
        self.incoming = None;
        self.log.restore(id);
        self.base_membership = info.meta.membership.clone();
        self.conf_history.clear();
        self.rebuild_membership(id.index.next())?;
        self.snapshot_to_install = Some(info.meta);
        self.send_after_persist(from, term, ok(id.index));
        Ok(())
    }
}
