//! The peer protocol: Raft messages as checksummed frames over TCP.
//!
//! A connection starts with a handshake frame from the dialer (`FLOTPEER`, protocol version,
//! cluster id, sender id, addressee id); the acceptor refuses a peer of another cluster or a
//! message for another member by closing the connection. Then every frame is one
//! [`Message`]: `length u32 | crc32c u32 | payload`, little-endian, the CRC over the payload.
//! A frame larger than [`FRAME_BYTES_MAX`], a bad checksum or a payload that does not decode
//! is a [`WireError`]: the connection is dropped and the error counted; the node carries on.

use bytes::{Buf, BufMut, Bytes};
use flotilla_raft::{
    AppendOutcome, EntryId, LogIndex, Message, MessageBody, NodeId, RejectHint, SnapshotInfo,
    SnapshotMeta, Term,
};
use flotilla_storage::codec;
use thiserror::Error;

/// The version of this encoding, carried in the handshake.
pub const PROTOCOL_VERSION: u8 = 1;
/// No frame is larger (an AppendEntries or a snapshot chunk is bounded well below it).
pub const FRAME_BYTES_MAX: usize = 64 << 20;
const HANDSHAKE_MAGIC: &[u8; 8] = b"FLOTPEER";

/// Why bytes from a peer were refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// The frame announces more than [`FRAME_BYTES_MAX`].
    #[error("frame of {0} bytes exceeds the maximum")]
    TooLarge(usize),
    /// The payload does not match its checksum.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The payload does not decode.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The handshake names another cluster, member, or protocol version.
    #[error("handshake refused: {0}")]
    Refused(String),
}

/// The first frame of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The cluster the dialer belongs to.
    pub cluster_id: u64,
    /// The dialer.
    pub from: NodeId,
    /// The member it means to reach.
    pub to: NodeId,
}

impl Handshake {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        out.extend_from_slice(HANDSHAKE_MAGIC);
        out.put_u8(PROTOCOL_VERSION);
        out.put_u64_le(self.cluster_id);
        out.put_u64_le(self.from.0);
        out.put_u64_le(self.to.0);
        out
    }

    /// Decodes and checks a handshake against this member.
    pub fn check(payload: &[u8], cluster_id: u64, me: NodeId) -> Result<Handshake, WireError> {
        let mut b = payload;
        if b.len() != 33 || &b[..8] != HANDSHAKE_MAGIC {
            return Err(WireError::Malformed("not a Flotilla peer handshake"));
        }
        b.advance(8);
        let version = b.get_u8();
        if version != PROTOCOL_VERSION {
            return Err(WireError::Refused(format!("protocol version {version}")));
        }
        let h = Handshake {
            cluster_id: b.get_u64_le(),
            from: NodeId(b.get_u64_le()),
            to: NodeId(b.get_u64_le()),
        };
        if h.cluster_id != cluster_id {
            return Err(WireError::Refused(format!(
                "cluster id {:x} is not this cluster's ({cluster_id:x})",
                h.cluster_id
            )));
        }
        if h.to != me {
            return Err(WireError::Refused(format!("addressed to member {}, this is {me}", h.to)));
        }
        Ok(h)
    }
}

/// Appends a frame holding `payload` to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    put_frame_with(out, |o| o.extend_from_slice(payload));
}

/// Appends a frame whose payload `write` appends, without a copy of the payload: the header
/// is filled in once the payload's length and checksum are known.
pub fn put_frame_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    write(out);
    let len = (out.len() - at - 8) as u32;
    let crc = crc32c::crc32c(&out[at + 8..]);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Splits one frame off the front of `buf`, if a whole one is there.
pub fn take_frame(buf: &mut bytes::BytesMut) -> Result<Option<Bytes>, WireError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(len));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    buf.advance(8);
    let payload = buf.split_to(len).freeze();
    if crc32c::crc32c(&payload) != crc {
        return Err(WireError::Checksum);
    }
    Ok(Some(payload))
}

fn put_id(out: &mut Vec<u8>, id: EntryId) {
    out.put_u64_le(id.term.0);
    out.put_u64_le(id.index.0);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

/// Encodes one message.
pub fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(m, &mut out);
    out
}

/// Encodes one message at the end of `out`.
pub fn encode_into(m: &Message, out: &mut Vec<u8>) {
    out.put_u64_le(m.from.0);
    out.put_u64_le(m.to.0);
    out.put_u64_le(m.term.0);
    match &m.body {
        MessageBody::VoteRequest { pre_vote, last_log, transfer } => {
            out.put_u8(1);
            out.put_u8(u8::from(*pre_vote));
            put_id(out, *last_log);
            out.put_u8(u8::from(*transfer));
        }
        MessageBody::VoteResponse { pre_vote, granted } => {
            out.put_u8(2);
            out.put_u8(u8::from(*pre_vote));
            out.put_u8(u8::from(*granted));
        }
        MessageBody::AppendEntries { prev_log, entries, leader_commit } => {
            out.put_u8(3);
            put_id(out, *prev_log);
            out.put_u64_le(leader_commit.0);
            codec::encode_entries(out, entries);
        }
        MessageBody::AppendResponse { outcome } => {
            out.put_u8(4);
            match outcome {
                AppendOutcome::Success { match_index } => {
                    out.put_u8(0);
                    out.put_u64_le(match_index.0);
                }
                AppendOutcome::Reject { rejected_prev, hint } => {
                    out.put_u8(1);
                    out.put_u64_le(rejected_prev.0);
                    match hint {
                        RejectHint::LogTooShort { last_index } => {
                            out.put_u8(0);
                            out.put_u64_le(last_index.0);
                        }
                        RejectHint::ConflictingTerm { conflict_term, first_index_of_term } => {
                            out.put_u8(1);
                            out.put_u64_le(conflict_term.0);
                            out.put_u64_le(first_index_of_term.0);
                        }
                    }
                }
                AppendOutcome::StaleTerm => out.put_u8(2),
            }
        }
        MessageBody::Heartbeat { commit, read_seq } => {
            out.put_u8(5);
            out.put_u64_le(commit.0);
            out.put_u64_le(*read_seq);
        }
        MessageBody::HeartbeatResponse { read_seq } => {
            out.put_u8(6);
            out.put_u64_le(*read_seq);
        }
        MessageBody::TimeoutNow => out.put_u8(7),
        MessageBody::ReadIndexRequest { ctx } => {
            out.put_u8(8);
            put_bytes(out, ctx);
        }
        MessageBody::ReadIndexResponse { ctx, index } => {
            out.put_u8(9);
            put_bytes(out, ctx);
            out.put_u8(u8::from(index.is_some()));
            out.put_u64_le(index.map_or(0, |i| i.0));
        }
        MessageBody::InstallSnapshot { info, offset, data } => {
            out.put_u8(10);
            put_id(out, info.meta.id());
            let mut m = Vec::new();
            codec::encode_membership(&mut m, &info.meta.membership);
            put_bytes(out, &m);
            out.put_u64_le(info.size);
            out.put_u64_le(*offset);
            put_bytes(out, data);
        }
        MessageBody::SnapshotResponse { snapshot, received, rejected } => {
            out.put_u8(11);
            put_id(out, *snapshot);
            out.put_u64_le(*received);
            out.put_u8(u8::from(*rejected));
        }
        // A variant added to the core without a wire encoding is a build-time gap, caught by
        // the round-trip test of every variant.
        _ => out.put_u8(0),
    }
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            return Err(WireError::Malformed("truncated"));
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Malformed("bad boolean")),
        }
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }
    fn id(&mut self) -> Result<EntryId, WireError> {
        let term = Term(self.u64()?);
        Ok(EntryId::new(term, LogIndex(self.u64()?)))
    }
    fn bytes(&mut self) -> Result<Bytes, WireError> {
        self.need(4)?;
        let n = self.buf.get_u32_le() as usize;
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
}

/// Decodes one message (zero-copy for entry payloads and snapshot chunks).
pub fn decode(payload: Bytes) -> Result<Message, WireError> {
    let mut r = Reader { buf: payload };
    let from = NodeId(r.u64()?);
    let to = NodeId(r.u64()?);
    let term = Term(r.u64()?);
    let body = match r.u8()? {
        1 => {
            MessageBody::VoteRequest { pre_vote: r.bool()?, last_log: r.id()?, transfer: r.bool()? }
        }
        2 => MessageBody::VoteResponse { pre_vote: r.bool()?, granted: r.bool()? },
        3 => {
            let prev_log = r.id()?;
            let leader_commit = LogIndex(r.u64()?);
            let rest = r.buf.clone();
            let entries = codec::decode_entries(&rest, 0..rest.len())
                .map_err(|e| WireError::Malformed(e.0))?;
            r.buf.advance(rest.len());
            MessageBody::AppendEntries { prev_log, entries, leader_commit }
        }
        4 => {
            let outcome = match r.u8()? {
                0 => AppendOutcome::Success { match_index: LogIndex(r.u64()?) },
                1 => {
                    let rejected_prev = LogIndex(r.u64()?);
                    let hint = match r.u8()? {
                        0 => RejectHint::LogTooShort { last_index: LogIndex(r.u64()?) },
                        1 => RejectHint::ConflictingTerm {
                            conflict_term: Term(r.u64()?),
                            first_index_of_term: LogIndex(r.u64()?),
                        },
                        _ => return Err(WireError::Malformed("unknown reject hint")),
                    };
                    AppendOutcome::Reject { rejected_prev, hint }
                }
                2 => AppendOutcome::StaleTerm,
                _ => return Err(WireError::Malformed("unknown append outcome")),
            };
            MessageBody::AppendResponse { outcome }
        }
        5 => MessageBody::Heartbeat { commit: LogIndex(r.u64()?), read_seq: r.u64()? },
        6 => MessageBody::HeartbeatResponse { read_seq: r.u64()? },
        7 => MessageBody::TimeoutNow,
        8 => MessageBody::ReadIndexRequest { ctx: r.bytes()? },
        9 => {
            let ctx = r.bytes()?;
            let has = r.bool()?;
            let index = LogIndex(r.u64()?);
            MessageBody::ReadIndexResponse { ctx, index: has.then_some(index) }
        }
        10 => {
            let id = r.id()?;
            let m = r.bytes()?;
            let membership = codec::decode_membership(&m).map_err(|e| WireError::Malformed(e.0))?;
            let size = r.u64()?;
            let offset = r.u64()?;
            let data = r.bytes()?;
            let meta = SnapshotMeta { index: id.index, term: id.term, membership };
            MessageBody::InstallSnapshot { info: SnapshotInfo { meta, size }, offset, data }
        }
        11 => MessageBody::SnapshotResponse {
            snapshot: r.id()?,
            received: r.u64()?,
            rejected: r.bool()?,
        },
        _ => return Err(WireError::Malformed("unknown message kind")),
    };
    if r.buf.has_remaining() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok(Message { from, to, term, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{Entry, Membership};

    fn all_kinds() -> Vec<MessageBody> {
        let id = EntryId::new(Term(3), LogIndex(7));
        let members = Membership::joint([NodeId(1), NodeId(2)], [NodeId(3)], [NodeId(4)]).unwrap();
        vec![
            MessageBody::VoteRequest { pre_vote: true, last_log: id, transfer: false },
            MessageBody::VoteResponse { pre_vote: false, granted: true },
            MessageBody::AppendEntries {
                prev_log: id,
                entries: vec![
                    Entry::new(Term(3), LogIndex(8), "a"),
                    Entry::new(Term(3), LogIndex(9), ""),
                ],
                leader_commit: LogIndex(6),
            },
            MessageBody::AppendResponse {
                outcome: AppendOutcome::Success { match_index: LogIndex(9) },
            },
            MessageBody::AppendResponse {
                outcome: AppendOutcome::Reject {
                    rejected_prev: LogIndex(5),
                    hint: RejectHint::ConflictingTerm {
                        conflict_term: Term(2),
                        first_index_of_term: LogIndex(3),
                    },
                },
            },
            MessageBody::AppendResponse {
                outcome: AppendOutcome::Reject {
                    rejected_prev: LogIndex(5),
                    hint: RejectHint::LogTooShort { last_index: LogIndex(1) },
                },
            },
            MessageBody::AppendResponse { outcome: AppendOutcome::StaleTerm },
            MessageBody::Heartbeat { commit: LogIndex(4), read_seq: 9 },
            MessageBody::HeartbeatResponse { read_seq: 9 },
            MessageBody::TimeoutNow,
            MessageBody::ReadIndexRequest { ctx: Bytes::from_static(b"ctx") },
            MessageBody::ReadIndexResponse {
                ctx: Bytes::from_static(b"c"),
                index: Some(LogIndex(4)),
            },
            MessageBody::ReadIndexResponse { ctx: Bytes::new(), index: None },
            MessageBody::InstallSnapshot {
                info: SnapshotInfo {
                    meta: SnapshotMeta { index: LogIndex(7), term: Term(3), membership: members },
                    size: 100,
                },
                offset: 40,
                data: Bytes::from_static(b"chunk"),
            },
            MessageBody::SnapshotResponse { snapshot: id, received: 45, rejected: true },
        ]
    }

    #[test]
    fn every_message_kind_round_trips() {
        for body in all_kinds() {
            let m = Message { from: NodeId(1), to: NodeId(2), term: Term(3), body };
            let mut framed = Vec::new();
            put_frame(&mut framed, &encode(&m));
            let mut buf = bytes::BytesMut::from(&framed[..]);
            let payload = take_frame(&mut buf).unwrap().unwrap();
            assert_eq!(decode(payload).unwrap(), m);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn damaged_frames_are_refused_with_a_reason() {
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::TimeoutNow,
        };
        let mut framed = Vec::new();
        put_frame(&mut framed, &encode(&m));
        let mut flipped = framed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(take_frame(&mut bytes::BytesMut::from(&flipped[..])), Err(WireError::Checksum));
        let mut huge = bytes::BytesMut::from(&(u32::MAX).to_le_bytes()[..]);
        huge.extend_from_slice(&[0; 8]);
        assert!(matches!(take_frame(&mut huge), Err(WireError::TooLarge(_))));
        assert_eq!(take_frame(&mut bytes::BytesMut::from(&framed[..5])), Ok(None), "partial");
        // Every truncation of a valid payload fails to decode, never panics.
        for body in all_kinds() {
            let p = encode(&Message { from: NodeId(1), to: NodeId(2), term: Term(1), body });
            for n in 0..p.len() {
                assert!(decode(Bytes::copy_from_slice(&p[..n])).is_err(), "prefix {n}");
            }
        }
    }

    #[test]
    fn handshakes_refuse_other_clusters_and_members() {
        let h = Handshake { cluster_id: 7, from: NodeId(1), to: NodeId(2) };
        assert_eq!(Handshake::check(&h.encode(), 7, NodeId(2)), Ok(h));
        assert!(matches!(Handshake::check(&h.encode(), 8, NodeId(2)), Err(WireError::Refused(_))));
        assert!(matches!(Handshake::check(&h.encode(), 7, NodeId(3)), Err(WireError::Refused(_))));
        assert!(matches!(
            Handshake::check(b"GET / HTTP/1.1", 7, NodeId(2)),
            Err(WireError::Malformed(_))
        ));
    }
}
