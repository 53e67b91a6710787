//! The byte format of WAL records and their payloads (documented in `docs/wal-format.md`).
//! Every multi-byte integer is little-endian. Bytes from the disk become typed values here and
//! nowhere else (ARCHITECTURE.md, design rule 4).

use bytes::Bytes;
use flotilla_raft::{Entry, EntryKind, HardState, LogIndex, Membership, NodeId, Term};

/// Record header: length (u32) of the payload, type (u8), CRC32C (u32) of type and payload.
pub const HEADER_BYTES: usize = 9;
/// A record larger than this is corrupt (the length field cannot be trusted).
pub const RECORD_BYTES_MAX: usize = 256 << 20;

/// Record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// Entries; replaying them first discards any entry at or after the first one's index.
    Entries = 1,
    /// A hard state.
    HardState = 2,
    /// The membership (written at creation and at the start of every segment).
    Membership = 3,
    /// Everything at or below this index was compacted into a snapshot (Raft §7).
    Compacted = 4,
    /// The log was replaced by a snapshot received from the leader whose last entry it did not
    /// hold (Raft Fig. 13, step 7): every entry before this record is discarded. Payload as
    /// `Compacted`, which it also is.
    Restore = 5,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Entries,
            2 => RecordType::HardState,
            3 => RecordType::Membership,
            4 => RecordType::Compacted,
            5 => RecordType::Restore,
            _ => return None,
        })
    }
}

fn crc(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// Appends a framed record to `out`.
pub fn put_record(out: &mut Vec<u8>, kind: RecordType, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&crc(kind as u8, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why bytes at an offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bad {
    /// The header or payload runs past the end of the data.
    Truncated,
    /// The length is impossible.
    Length(usize),
    /// The type byte is unknown.
    Type(u8),
    /// The checksum does not match.
    Checksum,
}

/// Parses the record at `buf[at..]`: its type, payload range, and the offset after it.
pub fn get_record(
    buf: &[u8],
    at: usize,
) -> Result<(RecordType, std::ops::Range<usize>, usize), Bad> {
    let header = buf.get(at..at + HEADER_BYTES).ok_or(Bad::Truncated)?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    if len > RECORD_BYTES_MAX {
        return Err(Bad::Length(len));
    }
    let kind_byte = header[4];
    let want = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes"));
    let start = at + HEADER_BYTES;
    let payload = buf.get(start..start + len).ok_or(Bad::Truncated)?;
    if crc(kind_byte, payload) != want {
        return Err(Bad::Checksum);
    }
    let kind = RecordType::from_u8(kind_byte).ok_or(Bad::Type(kind_byte))?;
    Ok((kind, start..start + len, start + len))
}

// ---- payloads ---------------------------------------------------------------------------

/// Encodes entries: count (u32), then per entry term (u64), index (u64), kind (u8: 0 normal,
/// 1 no-op, 2 membership change),
/// data length (u32), data.
pub fn encode_entries(out: &mut Vec<u8>, entries: &[Entry]) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.term.0.to_le_bytes());
        out.extend_from_slice(&e.index.0.to_le_bytes());
        out.push(match e.kind {
            EntryKind::Normal => 0,
            EntryKind::Noop => 1,
            EntryKind::ConfChange => 2,
        });
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
}

/// A payload that does not decode although its checksum matched: a bug or an incompatible
/// writer, never a torn write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let s = self.buf.get(self.at..self.at + n).ok_or(Malformed("payload too short"))?;
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn done(&self) -> Result<(), Malformed> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes in payload"))
        }
    }
}

/// Decodes [`encode_entries`]; entry data shares `owner`'s memory (no copy).
pub fn decode_entries(
    owner: &Bytes,
    range: std::ops::Range<usize>,
) -> Result<Vec<Entry>, Malformed> {
    let buf = &owner[range.clone()];
    let mut r = Reader { buf, at: 0 };
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let term = Term(r.u64()?);
        let index = LogIndex(r.u64()?);
        let kind = match r.u8()? {
            0 => EntryKind::Normal,
            1 => EntryKind::Noop,
            2 => EntryKind::ConfChange,
            _ => return Err(Malformed("unknown entry kind")),
        };
        let len = r.u32()? as usize;
        let start = range.start + r.at;
        r.take(len)?;
        out.push(Entry { term, index, kind, data: owner.slice(start..start + len) });
    }
    for w in out.windows(2) {
        if w[1].index != w[0].index.next() {
            return Err(Malformed("entries in a record are not contiguous"));
        }
    }
    r.done()?;
    Ok(out)
}

/// Encodes a hard state: term (u64), vote (u64, 0 for none), commit (u64).
pub fn encode_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    out.extend_from_slice(&hs.term.0.to_le_bytes());
    out.extend_from_slice(&hs.vote.map_or(0, |v| v.0).to_le_bytes());
    out.extend_from_slice(&hs.commit.0.to_le_bytes());
}

/// Decodes [`encode_hard_state`].
pub fn decode_hard_state(buf: &[u8]) -> Result<HardState, Malformed> {
    let mut r = Reader { buf, at: 0 };
    let term = Term(r.u64()?);
    let vote = r.u64()?;
    let commit = LogIndex(r.u64()?);
    r.done()?;
    Ok(HardState { term, vote: (vote != 0).then_some(NodeId(vote)), commit })
}

/// Encodes a membership: voter count (u32), voters (u64 each), learner count, learners.
///
/// A joint configuration appends its outgoing voters as a third set; a simple one omits it,
/// which keeps records written before joint configurations were stored readable.
pub fn encode_membership(out: &mut Vec<u8>, m: &Membership) {
    let sets: &[&std::collections::BTreeSet<NodeId>] = if m.is_joint() {
        &[m.voters(), m.learners(), m.outgoing_voters()]
    } else {
        &[m.voters(), m.learners()]
    };
    for set in sets {
        out.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for id in *set {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }
}

/// Decodes [`encode_membership`].
pub fn decode_membership(buf: &[u8]) -> Result<Membership, Malformed> {
    let mut r = Reader { buf, at: 0 };
    let mut sets = [Vec::new(), Vec::new(), Vec::new()];
    for (i, set) in sets.iter_mut().enumerate() {
        if i == 2 && r.at == r.buf.len() {
            break; // not joint
        }
        let n = r.u32()? as usize;
        if n > 1 << 16 {
            return Err(Malformed("membership too large"));
        }
        for _ in 0..n {
            set.push(NodeId(r.u64()?));
        }
    }
    r.done()?;
    let [voters, learners, outgoing] = sets;
    Membership::joint(voters, outgoing, learners).map_err(|_| Malformed("invalid membership"))
}

/// Encodes a compaction mark: index (u64), term (u64).
pub fn encode_compacted(out: &mut Vec<u8>, index: LogIndex, term: Term) {
    out.extend_from_slice(&index.0.to_le_bytes());
    out.extend_from_slice(&term.0.to_le_bytes());
}

/// Decodes [`encode_compacted`].
pub fn decode_compacted(buf: &[u8]) -> Result<(LogIndex, Term), Malformed> {
    let mut r = Reader { buf, at: 0 };
    let index = LogIndex(r.u64()?);
    let term = Term(r.u64()?);
    r.done()?;
    Ok((index, term))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Regression: memberships were stored without their outgoing voters, so a compaction
    /// point or snapshot taken in a joint configuration lost half of it.
    #[test]
    fn joint_memberships_round_trip() {
        let ids = |v: &[u64]| v.iter().map(|i| NodeId(*i)).collect::<Vec<_>>();
        for m in [
            Membership::new(ids(&[1, 2, 3]), ids(&[4])).unwrap(),
            Membership::joint(ids(&[1, 2, 5]), ids(&[1, 2, 3]), ids(&[4])).unwrap(),
        ] {
            let mut out = Vec::new();
            encode_membership(&mut out, &m);
            assert_eq!(decode_membership(&out).unwrap(), m);
        }
    }

    proptest! {
        #[test]
        fn entries_round_trip(first in 1u64..1000, items in proptest::collection::vec((1u64..50, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
            let entries: Vec<Entry> = items.iter().enumerate().map(|(i, (t, noop, d))| Entry {
                term: Term(*t), index: LogIndex(first + i as u64),
                kind: if *noop { EntryKind::Noop } else { EntryKind::Normal }, data: Bytes::from(d.clone()),
            }).collect();
            let mut payload = Vec::new();
            encode_entries(&mut payload, &entries);
            let mut rec = Vec::new();
            put_record(&mut rec, RecordType::Entries, &payload);
            let owner = Bytes::from(rec);
            let (kind, range, end) = get_record(&owner, 0).unwrap();
            prop_assert_eq!(kind, RecordType::Entries);
            prop_assert_eq!(end, owner.len());
            prop_assert_eq!(decode_entries(&owner, range).unwrap(), entries);
        }

        #[test]
        fn any_single_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..200), bit in any::<usize>()) {
            let mut rec = Vec::new();
            put_record(&mut rec, RecordType::HardState, &payload);
            let bit = bit % (rec.len() * 8);
            rec[bit / 8] ^= 1 << (bit % 8);
            // A flip in the length may make the record look truncated or too long, in the type
            // or payload the checksum fails: never a valid record with other contents.
            if let Ok((_, range, _)) = get_record(&rec, 0) {
                prop_assert!(false, "flip at bit {} accepted: {:?}", bit, &rec[range]);
            }
        }

        #[test]
        fn every_truncation_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..200), cut in any::<usize>()) {
            let mut rec = Vec::new();
            put_record(&mut rec, RecordType::Entries, &payload);
            let cut = cut % rec.len();
            prop_assert_eq!(get_record(&rec[..cut], 0), Err(Bad::Truncated));
        }
    }

    #[test]
    fn hard_state_and_membership_round_trip() {
        let hs = HardState { term: Term(7), vote: Some(NodeId(3)), commit: LogIndex(99) };
        let mut b = Vec::new();
        encode_hard_state(&mut b, &hs);
        assert_eq!(decode_hard_state(&b), Ok(hs));
        let m = Membership::new([NodeId(1), NodeId(2)], [NodeId(5)]).unwrap();
        let mut b = Vec::new();
        encode_membership(&mut b, &m);
        assert_eq!(decode_membership(&b), Ok(m));
        assert!(decode_hard_state(&b[..3]).is_err());
    }
}
