//! Receiving a snapshot through crashes (Raft §7): chunks survive a crash once synced, a torn
//! write never makes the follower claim bytes it does not hold, a damaged transfer is refused
//! whole, and a snapshot installed just before a crash is recorded when the log reopens.

use std::path::Path;

use bytes::Bytes;
use flotilla_raft::{
    Entry, HardState, LogIndex, LogStore, Membership, NodeId, SnapshotChunk, SnapshotMeta, Term,
};
use flotilla_storage::{DiskLog, SimFs, WalError, WalOptions};

fn members() -> Membership {
    Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap()
}

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta { index: LogIndex(index), term: Term(2), membership: members() }
}

/// A leader's log with a snapshot at 8 of `size` bytes of state; returns the snapshot file's
/// chunks of `chunk` bytes.
fn leader_chunks(chunk: u64) -> Vec<SnapshotChunk> {
    let fs = SimFs::new();
    let dir = Path::new("/leader");
    let mut log = DiskLog::create(fs, dir, members(), WalOptions::default()).unwrap();
    let entries: Vec<Entry> =
        (1..=10).map(|i| Entry::new(Term(2), LogIndex(i), format!("e{i}"))).collect();
    log.write(&entries, Some(HardState { term: Term(2), vote: None, commit: LogIndex(10) }));
    log.sync().unwrap();
    let state: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    log.save_snapshot(&meta(8), &state).unwrap();
    let info = log.snapshot().unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < info.size {
        let len = chunk.min(info.size - offset);
        let data = log.snapshot_chunk(info.meta.id(), offset, len).unwrap();
        out.push(SnapshotChunk { info: info.clone(), offset, data });
        offset += len;
    }
    out
}

fn follower(fs: &SimFs) -> DiskLog<SimFs> {
    let dir = Path::new("/follower");
    let mut log = DiskLog::create(fs.clone(), dir, members(), WalOptions::default()).unwrap();
    let entries: Vec<Entry> =
        (1..=3).map(|i| Entry::new(Term(1), LogIndex(i), format!("old{i}"))).collect();
    log.write(&entries, Some(HardState { term: Term(2), vote: None, commit: LogIndex(1) }));
    log.sync().unwrap();
    log
}

fn reopen(fs: &SimFs) -> DiskLog<SimFs> {
    DiskLog::open(fs.clone(), Path::new("/follower"), WalOptions::default()).unwrap().0
}

#[test]
fn a_crash_keeps_synced_chunks_and_never_claims_unsynced_ones() {
    let chunks = leader_chunks(500);
    assert!(chunks.len() >= 6, "{} chunks", chunks.len());
    for seed in 0..40u64 {
        let fs = SimFs::new();
        let mut log = follower(&fs);
        let synced = 1 + (seed as usize % (chunks.len() - 2));
        for c in &chunks[..synced] {
            log.write_snapshot_chunk(c).unwrap();
        }
        log.sync().unwrap();
        // One more chunk written but not synced, then power loss (torn half the time).
        log.write_snapshot_chunk(&chunks[synced]).unwrap();
        fs.crash((seed % 2 == 0).then_some(seed));
        let mut log = reopen(&fs);
        let p = log.initial_state().unwrap().partial_snapshot.expect("the partial survives");
        let synced_bytes = chunks[synced].offset;
        let next_end = synced_bytes + chunks[synced].data.len() as u64;
        assert!(
            p.received >= synced_bytes && p.received <= next_end,
            "seed {seed}: received {} outside [{synced_bytes}, {next_end}]",
            p.received
        );
        // The leader resumes from what the follower reports: the rest of the chunk it was
        // writing, then the others.
        let at = p.received;
        let c = &chunks[synced];
        let rest = c.data.slice((at - c.offset) as usize..);
        if !rest.is_empty() {
            let resumed = SnapshotChunk { info: c.info.clone(), offset: at, data: rest };
            log.write_snapshot_chunk(&resumed).unwrap();
        }
        for c in &chunks[synced + 1..] {
            log.write_snapshot_chunk(c).unwrap();
        }
        let data = log.install_snapshot(&meta(8)).unwrap();
        log.sync().unwrap();
        assert_eq!(data.len(), 3000, "seed {seed}");
        let log = reopen(&fs);
        assert_eq!((log.first_index(), log.last_index()), (LogIndex(9), LogIndex(8)));
        assert_eq!(log.load_snapshot().unwrap().unwrap().1, data);
    }
}

#[test]
fn a_damaged_transfer_is_refused_and_starts_over() {
    let chunks = leader_chunks(700);
    let fs = SimFs::new();
    let mut log = follower(&fs);
    for (i, c) in chunks.iter().enumerate() {
        let mut c = c.clone();
        if i == 1 {
            let mut bad = c.data.to_vec();
            bad[3] ^= 0x10;
            c.data = Bytes::from(bad);
        }
        log.write_snapshot_chunk(&c).unwrap();
    }
    match log.install_snapshot(&meta(8)) {
        Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert_eq!(log.initial_state().unwrap().partial_snapshot, None, "the damaged copy is gone");
    assert_eq!(log.last_index(), LogIndex(3), "the log is untouched");
    let log = reopen(&fs);
    assert_eq!(log.initial_state().unwrap().partial_snapshot, None);
    assert_eq!(log.load_snapshot().unwrap(), None);
}

#[test]
fn a_snapshot_installed_just_before_a_crash_is_recorded_on_reopen() {
    let chunks = leader_chunks(1000);
    let fs = SimFs::new();
    let mut log = follower(&fs);
    for c in &chunks {
        log.write_snapshot_chunk(c).unwrap();
    }
    // The snapshot file is renamed into place durably; the WAL's records of it are not synced.
    log.install_snapshot(&meta(8)).unwrap();
    fs.crash(None);
    let log = reopen(&fs);
    assert_eq!((log.first_index(), log.last_index()), (LogIndex(9), LogIndex(8)));
    assert_eq!(log.term(LogIndex(8)), Ok(Term(2)));
    assert_eq!(log.hard_state().commit, LogIndex(8));
    assert_eq!(log.load_snapshot().unwrap().unwrap().0, meta(8));
}
