//! Crash and damage on the simulated file system: what was synced survives, a torn tail is cut
//! off and reported, damage anywhere else stops the open with the file and offset, and fsync
//! errors and a full disk come back as errors without losing anything acknowledged.

use std::path::{Path, PathBuf};

use flotilla_raft::{Entry, HardState, LogIndex, Membership, NodeId, Term};
use flotilla_storage::{RecoveryMode, SimFs, Wal, WalError, WalOptions};

fn members() -> Membership {
    Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap()
}

fn ents(first: u64, n: u64, term: u64) -> Vec<Entry> {
    (first..first + n).map(|i| Entry::new(Term(term), LogIndex(i), format!("entry-{i}"))).collect()
}

fn dir() -> PathBuf {
    PathBuf::from("/node/wal")
}

fn opts(recovery: RecoveryMode) -> WalOptions {
    WalOptions { recovery, ..WalOptions::default() }
}

/// A WAL with options `o` and `n` entries, one record and one sync each.
fn synced_wal(o: WalOptions, n: u64) -> (SimFs, Wal<SimFs>) {
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), o).unwrap();
    for i in 1..=n {
        wal.append_entries(&ents(i, 1, 1));
        wal.sync().unwrap();
    }
    (fs, wal)
}

/// A WAL with `n` entries in one record each, synced. Returns the fs and the segment path.
fn wal_with(n: u64) -> (SimFs, PathBuf) {
    let (fs, wal) = synced_wal(WalOptions::default(), n);
    let seg = wal.segment_paths()[0].clone();
    (fs, seg)
}

fn indices(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.index.0).collect()
}

#[test]
fn synced_data_survives_a_crash_and_unsynced_data_does_not() {
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), WalOptions::default()).unwrap();
    wal.append_entries(&ents(1, 3, 1));
    wal.set_hard_state(HardState { term: Term(1), vote: Some(NodeId(2)), commit: LogIndex(2) });
    wal.sync().unwrap();
    wal.append_entries(&ents(4, 2, 1));
    // Buffered, never synced: lost.
    drop(wal);
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2, 3]);
    assert_eq!(rec.hard_state.vote, Some(NodeId(2)));
    assert_eq!(rec.membership, members());
    assert_eq!(rec.torn_tail, None);
}

#[test]
fn truncation_of_a_conflicting_suffix_is_durable() {
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), WalOptions::default()).unwrap();
    wal.append_entries(&ents(1, 5, 1));
    wal.sync().unwrap();
    wal.append_entries(&ents(3, 1, 2));
    wal.sync().unwrap();
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    let terms: Vec<u64> = rec.entries.iter().map(|e| e.term.0).collect();
    assert_eq!(terms, [1, 1, 2], "entries 4 and 5 of term 1 stay deleted after a restart");
}

/// Every cut of the last record, at every byte, is a torn tail: cut off, reported, and
/// everything before it intact. With absolute consistency each is an error instead.
#[test]
fn truncation_at_every_byte_of_the_last_record() {
    let (fs, seg) = wal_with(4);
    let full = fs.file_len(&seg).unwrap();
    let (fs3, _) = wal_with(3);
    let before_last = fs3.file_len(&seg).unwrap();
    for cut in before_last..full {
        let (fs, seg) = wal_with(4);
        fs.truncate_durably(&seg, cut).unwrap();
        fs.crash(None);
        let (mut wal, rec) = Wal::open(fs.clone(), &dir(), opts(RecoveryMode::TolerateTornTail))
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(indices(&rec.entries), [1, 2, 3], "cut at {cut}");
        let want = (cut > before_last).then(|| (seg.clone(), before_last as u64));
        assert_eq!(rec.torn_tail, want, "cut at {cut}");
        // The log is usable: new appends after the cut survive the next restart.
        wal.append_entries(&ents(4, 1, 2));
        wal.sync().unwrap();
        fs.crash(None);
        let (_, rec) = Wal::open(fs.clone(), &dir(), WalOptions::default()).unwrap();
        assert_eq!(indices(&rec.entries), [1, 2, 3, 4], "cut at {cut}, after appending");
        assert_eq!(rec.entries[3].term, Term(2));

        if cut > before_last {
            let (fs, seg) = wal_with(4);
            fs.truncate_durably(&seg, cut).unwrap();
            match Wal::open(fs, &dir(), opts(RecoveryMode::AbsoluteConsistency)) {
                Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, before_last as u64),
                other => panic!("cut at {cut} under absolute consistency: {other:?}"),
            }
        }
    }
}

/// A bit flip anywhere is detected: before the last record it stops the open with the file
/// and offset; in the last record it is indistinguishable from a torn write and is reported
/// as one (absolute consistency refuses it). Never are altered contents accepted.
#[test]
fn bit_flips_anywhere_are_detected() {
    let (fs, seg) = wal_with(4);
    let len = fs.file_len(&seg).unwrap();
    let (fs3, _) = wal_with(3);
    let last_record = fs3.file_len(&seg).unwrap();
    let pristine = Wal::open(fs, &dir(), WalOptions::default()).unwrap().1.entries;
    for byte in 0..len {
        for bit in [0u8, 3, 7] {
            for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::AbsoluteConsistency] {
                let (fs, seg) = wal_with(4);
                fs.flip_bit(&seg, byte, bit).unwrap();
                match Wal::open(fs, &dir(), opts(mode)) {
                    Err(WalError::Corrupt { file, .. }) => assert_eq!(file, seg),
                    Err(e) => panic!("flip {byte}.{bit}: unexpected error {e}"),
                    Ok((_, rec)) => {
                        assert_eq!(
                            mode,
                            RecoveryMode::TolerateTornTail,
                            "flip {byte}.{bit} accepted under absolute consistency"
                        );
                        assert!(
                            byte >= last_record,
                            "flip {byte}.{bit} before the last record was not an error"
                        );
                        assert_eq!(
                            rec.torn_tail,
                            Some((seg.clone(), last_record as u64)),
                            "flip {byte}.{bit}"
                        );
                        assert_eq!(rec.entries, pristine[..3], "flip {byte}.{bit}");
                    }
                }
            }
        }
    }
}

#[test]
fn fsync_failure_is_an_error_and_the_log_stops() {
    let (fs, _) = wal_with(3);
    let (mut wal, _) = Wal::open(fs.clone(), &dir(), WalOptions::default()).unwrap();
    fs.fail_next_syncs(1);
    wal.append_entries(&ents(4, 1, 1));
    assert!(matches!(wal.sync(), Err(WalError::Io { op: "fsync", .. })));
    // Fail-stop: nothing more is written, even though the disk would work again.
    wal.append_entries(&ents(5, 1, 1));
    assert!(matches!(wal.sync(), Err(WalError::Failed(_))));
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    assert_eq!(&indices(&rec.entries)[..3], [1, 2, 3], "everything acknowledged survives");
}

#[test]
fn full_disk_is_an_error_and_nothing_acknowledged_is_lost() {
    let (fs, _) = wal_with(3);
    let (mut wal, _) = Wal::open(fs.clone(), &dir(), WalOptions::default()).unwrap();
    fs.set_space_left(Some(10));
    wal.append_entries(&ents(4, 1, 1));
    let err = wal.sync().unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    fs.set_space_left(None);
    fs.crash(Some(1));
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2, 3]);
}

/// Torn crashes at random points of a long run: every synced entry survives every crash.
#[test]
fn torn_crashes_never_lose_synced_entries() {
    for seed in 0..200u64 {
        let fs = SimFs::new();
        let o = WalOptions { segment_bytes: 2_000, ..WalOptions::default() };
        let mut wal = Wal::create(fs.clone(), &dir(), members(), o).unwrap();
        let mut synced = 0;
        let mut rng = flotilla_raft::Rng::new(seed);
        let mut next = 1;
        for _ in 0..rng.in_range(1, 60) {
            let n = u64::from(rng.in_range(1, 5));
            wal.append_entries(&ents(next, n, 1));
            next += n;
            if rng.in_range(0, 3) > 0 {
                wal.sync().unwrap();
                synced = next - 1;
            }
        }
        drop(wal);
        fs.crash(Some(seed));
        let (_, rec) = Wal::open(fs, &dir(), o).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let got = indices(&rec.entries);
        assert!(
            got.len() as u64 >= synced,
            "seed {seed}: {} entries recovered, {synced} synced",
            got.len()
        );
        assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "seed {seed}: contiguous");
    }
}

#[test]
fn segments_roll_over_and_replay_in_order() {
    let fs = SimFs::new();
    let o = WalOptions { segment_bytes: 1_000, ..WalOptions::default() };
    let mut wal = Wal::create(fs.clone(), &dir(), members(), o).unwrap();
    for i in 1..=200 {
        wal.append_entries(&ents(i, 1, 1 + i / 50));
        if i % 10 == 0 {
            wal.set_hard_state(HardState {
                term: Term(1 + i / 50),
                vote: None,
                commit: LogIndex(i - 5),
            });
        }
        wal.sync().unwrap();
    }
    let segments = wal.segment_paths().len();
    assert!(segments > 5, "rolled over: {segments} segments");
    drop(wal);
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), o).unwrap();
    assert_eq!(indices(&rec.entries), (1..=200).collect::<Vec<_>>());
    assert_eq!(rec.hard_state.commit, LogIndex(195));
}

#[test]
fn a_missing_segment_stops_the_open_and_names_it() {
    let o = WalOptions { segment_bytes: 500, ..WalOptions::default() };
    let (fs, wal) = synced_wal(o, 100);
    let paths = wal.segment_paths();
    drop(wal);
    use flotilla_storage::FileSystem;
    fs.remove(&paths[2]).unwrap();
    match Wal::open(fs, &dir(), o) {
        Err(WalError::MissingSegment { missing, .. }) => assert_eq!(missing, paths[2]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn purge_removes_segments_below_the_compaction_index() {
    let o = WalOptions { segment_bytes: 500, ..WalOptions::default() };
    let (fs, mut wal) = synced_wal(o, 100);
    let before = wal.segment_paths().len();
    wal.mark_compacted(LogIndex(60), Term(1));
    wal.sync().unwrap();
    let removed = wal.purge(LogIndex(60)).unwrap();
    assert!(removed > 0 && removed < before, "removed {removed} of {before}");
    drop(wal);
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), o).unwrap();
    assert_eq!(rec.compacted, (LogIndex(60), Term(1)));
    assert_eq!(indices(&rec.entries), (61..=100).collect::<Vec<_>>());
    assert_eq!(
        rec.membership,
        members(),
        "state records at the head of each segment survive the purge"
    );
}

#[test]
fn an_interrupted_segment_creation_is_a_torn_tail() {
    let o = WalOptions { segment_bytes: 300, ..WalOptions::default() };
    let (fs, wal) = synced_wal(o, 20);
    let last = wal.segment_paths().last().cloned().unwrap();
    drop(wal);
    fs.truncate_durably(&last, 5).unwrap();
    let (mut wal, rec) = Wal::open(fs.clone(), &dir(), o).unwrap();
    assert_eq!(rec.torn_tail, Some((last.clone(), 0)));
    let n = rec.entries.len() as u64;
    wal.append_entries(&ents(n + 1, 1, 1));
    wal.sync().unwrap();
    let (_, rec) = Wal::open(fs, &dir(), o).unwrap();
    assert_eq!(rec.entries.len() as u64, n + 1);
}

#[test]
fn create_refuses_an_existing_wal_and_open_refuses_none() {
    let (fs, _) = wal_with(1);
    assert!(matches!(
        Wal::create(fs.clone(), &dir(), members(), WalOptions::default()),
        Err(WalError::AlreadyExists(_))
    ));
    assert!(matches!(
        Wal::open(fs, Path::new("/elsewhere"), WalOptions::default()),
        Err(WalError::NotFound(_))
    ));
}

/// Preallocated space (zeros after the last record) is the clean end of a segment, and a torn
/// record followed by zeros is a torn tail whose bytes are zeroed before writing resumes.
#[test]
fn zeros_after_the_records_are_the_clean_end() {
    use flotilla_storage::{FileSystem, FsFile};
    let (fs, seg) = wal_with(3);
    let len = fs.file_len(&seg).unwrap();
    let mut f = fs.open_append(&seg).unwrap();
    f.write_at(len as u64, &[0u8; 4096]).unwrap();
    f.sync_data().unwrap();
    let (_, rec) = Wal::open(fs.clone(), &dir(), opts(RecoveryMode::AbsoluteConsistency)).unwrap();
    assert_eq!((indices(&rec.entries), rec.torn_tail), (vec![1, 2, 3], None));

    // A torn record, then zeros: cut at the record, and its bytes zeroed.
    let (fs, seg) = wal_with(4);
    let (fs3, _) = wal_with(3);
    let before_last = fs3.file_len(&seg).unwrap();
    let full = fs.file_len(&seg).unwrap();
    fs.truncate_durably(&seg, full - 3).unwrap();
    let mut f = fs.open_append(&seg).unwrap();
    f.write_at((full - 3) as u64, &[0u8; 1000]).unwrap();
    f.sync_data().unwrap();
    let (mut wal, rec) = Wal::open(fs.clone(), &dir(), WalOptions::default()).unwrap();
    assert_eq!(rec.torn_tail, Some((seg.clone(), before_last as u64)));
    assert!(fs.read(&seg).unwrap()[before_last..].iter().all(|b| *b == 0), "torn bytes zeroed");
    wal.append_entries(&ents(4, 2, 2));
    wal.sync().unwrap();
    let (_, rec) = Wal::open(fs, &dir(), opts(RecoveryMode::AbsoluteConsistency)).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2, 3, 4, 5]);
}

/// Found by the simulator (seed 164): a new segment used to start with the *latest* hard
/// state, whose commit index named entries still in the buffer behind it; a torn write that
/// kept the segment's head but not those entries recovered a commit index beyond the log. The
/// head now carries the state as of what was already written.
#[test]
fn a_new_segment_never_claims_a_commit_beyond_the_entries_before_it() {
    for seed in 0..200u64 {
        let fs = SimFs::new();
        let o = WalOptions { segment_bytes: 400, ..WalOptions::default() };
        let mut wal = Wal::create(fs.clone(), &dir(), members(), o).unwrap();
        wal.append_entries(&ents(1, 5, 1));
        wal.set_hard_state(HardState { term: Term(1), vote: None, commit: LogIndex(5) });
        wal.sync().unwrap();
        // A batch big enough to start a new segment, with a commit index covering it.
        wal.append_entries(&ents(6, 25, 1));
        wal.set_hard_state(HardState { term: Term(1), vote: None, commit: LogIndex(30) });
        fs.fail_next_syncs(1);
        assert!(wal.sync().is_err());
        drop(wal);
        fs.crash(Some(seed));
        let (_, rec) = Wal::open(fs, &dir(), o).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let last = rec.entries.last().map_or(0, |e| e.index.0);
        assert!(
            rec.hard_state.commit.0 <= last,
            "seed {seed}: commit {} beyond last {last}",
            rec.hard_state.commit
        );
    }
}

/// Found by the simulator (seeds 679, 2577, 3047): a torn write kept entries of a new term but
/// not the hard state recording that term, and the node restarted with entries from a term it
/// had never durably entered. `DiskLog::write` now records a new term and vote before the
/// entries, and a new commit index after them, so every prefix is consistent.
#[test]
fn every_torn_prefix_of_a_write_is_consistent() {
    use flotilla_raft::LogStore;
    use flotilla_storage::DiskLog;
    for seed in 0..300u64 {
        let fs = SimFs::new();
        let mut log =
            DiskLog::create(fs.clone(), &dir(), members(), WalOptions::default()).unwrap();
        log.write(
            &ents(1, 3, 1),
            Some(HardState { term: Term(1), vote: Some(NodeId(1)), commit: LogIndex(0) }),
        );
        log.sync().unwrap();
        // One Ready: a new term, a new vote, entries of that term, and a commit covering them.
        let hs = HardState { term: Term(2), vote: Some(NodeId(2)), commit: LogIndex(5) };
        log.write(&ents(4, 2, 2), Some(hs));
        fs.fail_next_syncs(1);
        assert!(log.sync().is_err());
        drop(log);
        fs.crash(Some(seed));
        let (log, rec) = DiskLog::open(fs, &dir(), WalOptions::default()).unwrap();
        let last = log.last_index();
        let last_term = log.term(last).unwrap();
        assert!(
            last_term <= rec.hard_state.term,
            "seed {seed}: entry of {last_term} with durable term {}",
            rec.hard_state.term
        );
        assert!(
            rec.hard_state.commit <= last,
            "seed {seed}: commit {} beyond {last}",
            rec.hard_state.commit
        );
    }
}

/// A follower's conflicting suffix, overwritten and then compacted away entirely, stays
/// gone after a restart. The overwrite (entries 3-4 of term 2 over 3-5 of term 1) writes
/// only indices at or below the later compaction mark (4); replay skipped that record
/// whole and so kept entry 5 of term 1 from the earlier record: a truncated entry came
/// back after the snapshot (the simulator's seed 30988 of the sweep, where a member then
/// voted for a candidate lacking a committed entry).
#[test]
fn a_truncated_suffix_stays_truncated_when_its_replacement_is_compacted() {
    let o = WalOptions::default();
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), o).unwrap();
    wal.append_entries(&ents(1, 5, 1));
    wal.sync().unwrap();
    // A new leader's entries conflict from index 3: the log becomes 1-2 (term 1), 3-4 (term 2).
    wal.append_entries(&ents(3, 2, 2));
    wal.sync().unwrap();
    // A snapshot at 4 covers the whole log.
    wal.mark_compacted(LogIndex(4), Term(2));
    wal.sync().unwrap();
    drop(wal);
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), o).unwrap();
    assert_eq!(rec.compacted, (LogIndex(4), Term(2)));
    assert_eq!(indices(&rec.entries), Vec::<u64>::new(), "entry 5 of term 1 was truncated");
}

#[test]
fn a_detached_write_survives_a_crash_once_its_handle_has_synced() {
    // Written, its handle never synced: lost, as any unsynced write.
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), WalOptions::default()).unwrap();
    wal.append_entries(&ents(1, 3, 1));
    let handle = wal.write_unsynced().unwrap().expect("a write is pending");
    assert_eq!(wal.buffered_bytes(), 0, "written out, not buffered");
    drop((wal, handle));
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    assert_eq!(indices(&rec.entries), [] as [u64; 0]);

    // Synced through the handle (as the server's sync thread does, after the writer moved
    // on): durable, and so is what was written after the handle was taken but before it
    // synced (fdatasync covers every earlier write to the file).
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), WalOptions::default()).unwrap();
    wal.append_entries(&ents(1, 3, 1));
    let handle = wal.write_unsynced().unwrap().expect("a write is pending");
    wal.append_entries(&ents(4, 1, 1));
    let again = wal.write_unsynced().unwrap().expect("a write is pending");
    handle.sync_data().unwrap();
    drop((wal, again));
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2, 3, 4]);
}

#[test]
fn a_sealed_segment_is_synced_before_the_next_one_is_written() {
    // Small segments; every write detached and no handle ever synced: each roll syncs the
    // segment it seals, so a crash keeps every sealed segment whole and loses only the
    // active one's writes, leaving no gap in the log.
    let o = WalOptions { segment_bytes: 1 << 10, ..WalOptions::default() };
    let fs = SimFs::new();
    let mut wal = Wal::create(fs.clone(), &dir(), members(), o).unwrap();
    let mut handles = Vec::new();
    for i in 1..=60 {
        wal.append_entries(&ents(i, 1, 1));
        handles.push(wal.write_unsynced().unwrap().expect("a write is pending"));
    }
    let segments = wal.segment_paths().len();
    assert!(segments >= 3, "the writes rolled over ({segments} segments)");
    drop((wal, handles));
    fs.crash(None);
    let (_, rec) = Wal::open(fs, &dir(), o).unwrap();
    let got = indices(&rec.entries);
    assert!(!got.is_empty() && got.len() < 60, "the sealed segments survived, not all: {got:?}");
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "a prefix, without gaps");
}

#[test]
fn a_real_file_gives_a_detached_handle_and_a_durable_write_reopens() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    let fs = flotilla_storage::RealFs;
    let mut wal = Wal::create(fs, &dir, members(), WalOptions::default()).unwrap();
    assert!(wal.write_unsynced().unwrap().is_none(), "nothing pending: nothing to sync");
    wal.append_entries(&ents(1, 2, 1));
    let handle = wal.write_unsynced().unwrap().expect("a real file has a detached handle");
    std::thread::spawn(move || handle.sync_data()).join().unwrap().unwrap();
    drop(wal);
    let (_, rec) = Wal::open(fs, &dir, WalOptions::default()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2]);
}

#[test]
fn a_creation_stopped_half_way_leaves_no_log_and_is_made_again() {
    // Stopped after the first segment's file exists but before its records are in it (here
    // a full disk stops it; a kill at that moment did the same to a starting member): no
    // segment is left behind, so the next start creates the log again instead of refusing
    // a segment without its membership record.
    let fs = SimFs::new();
    fs.set_space_left(Some(0));
    assert!(Wal::create(fs.clone(), &dir(), members(), WalOptions::default()).is_err());
    fs.set_space_left(None);
    // No crash: a stopped process keeps every file it made.
    let e = Wal::open(fs.clone(), &dir(), WalOptions::default()).unwrap_err();
    assert!(matches!(e, WalError::NotFound(_)), "{e}");
    let mut wal = Wal::create(fs.clone(), &dir(), members(), WalOptions::default()).unwrap();
    wal.append_entries(&ents(1, 1, 1));
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = Wal::open(fs, &dir(), WalOptions::default()).unwrap();
    assert_eq!(indices(&rec.entries), [1]);
}
