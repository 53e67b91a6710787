//! The stand-in state machine: a key-value map with get, put, delete and compare-and-swap,
//! its commands encoded as log entries. Reads go through the log, so they are linearizable
//! without ReadIndex (which arrives with issue 6). The real MVCC store (issue 7) replaces it.

use std::collections::BTreeMap;

use bytes::Bytes;

/// One client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read a key.
    Get(String),
    /// Write a key.
    Put(String, String),
    /// Remove a key.
    Delete(String),
    /// Swap in the value if the key holds `expected` (`None`: absent).
    Cas(String, Option<String>, String),
}

/// What applying a command returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A get's value.
    Read(Option<String>),
    /// A put or delete took effect.
    Done,
    /// Whether a cas swapped.
    Swapped(bool),
}

const ABSENT: &str = "\u{0}";

impl Command {
    /// Encodes as tab-separated text (keys and values never contain tabs or NULs).
    pub fn encode(&self) -> Bytes {
        let s = match self {
            Command::Get(k) => format!("get\t{k}"),
            Command::Put(k, v) => format!("put\t{k}\t{v}"),
            Command::Delete(k) => format!("del\t{k}"),
            Command::Cas(k, e, v) => format!("cas\t{k}\t{}\t{v}", e.as_deref().unwrap_or(ABSENT)),
        };
        Bytes::from(s)
    }

    /// Decodes what [`Command::encode`] wrote; `None` for anything else.
    pub fn decode(data: &[u8]) -> Option<Command> {
        let s = std::str::from_utf8(data).ok()?;
        let w: Vec<&str> = s.split('\t').collect();
        let owned = |i: usize| w.get(i).map(|x| x.to_string());
        Some(match (w.first()?, w.len()) {
            (&"get", 2) => Command::Get(owned(1)?),
            (&"put", 3) => Command::Put(owned(1)?, owned(2)?),
            (&"del", 2) => Command::Delete(owned(1)?),
            (&"cas", 4) => {
                let e = (w[2] != ABSENT).then(|| w[2].to_string());
                Command::Cas(owned(1)?, e, owned(3)?)
            }
            _ => return None,
        })
    }
}

/// The key-value map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<String, String>,
}

impl Kv {
    /// Applies one command.
    pub fn apply(&mut self, c: &Command) -> Output {
        match c {
            Command::Get(k) => Output::Read(self.map.get(k).cloned()),
            Command::Put(k, v) => {
                self.map.insert(k.clone(), v.clone());
                Output::Done
            }
            Command::Delete(k) => {
                self.map.remove(k);
                Output::Done
            }
            Command::Cas(k, e, v) => {
                let swaps = self.map.get(k) == e.as_ref();
                if swaps {
                    self.map.insert(k.clone(), v.clone());
                }
                Output::Swapped(swaps)
            }
        }
    }
}

impl Kv {
    /// The whole map as a snapshot (Raft §7): count u64, then per pair key length u32, key,
    /// value length u32, value. Never empty.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(8 + self.map.len() * 16);
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (k, v) in &self.map {
            for s in [k, v] {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        Bytes::from(out)
    }

    /// Decodes what [`Kv::encode`] wrote; `None` for anything else.
    pub fn decode(data: &[u8]) -> Option<Kv> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = data.get(at..at.checked_add(n)?)?;
            at += n;
            Some(s)
        };
        let n = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let mut pair = [String::new(), String::new()];
            for s in &mut pair {
                let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                *s = String::from_utf8(take(len)?.to_vec()).ok()?;
            }
            let [k, v] = pair;
            map.insert(k, v);
        }
        (at == data.len()).then_some(Kv { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::Get("k".into()),
            Command::Put("k".into(), "v".into()),
            Command::Delete("k".into()),
            Command::Cas("k".into(), None, "v".into()),
            Command::Cas("k".into(), Some("a".into()), "b".into()),
        ] {
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        assert_eq!(Command::decode(b"bogus"), None);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut kv = Kv::default();
        assert_eq!(Kv::decode(&kv.encode()), Some(kv.clone()));
        kv.apply(&Command::Put("a".into(), "1".into()));
        kv.apply(&Command::Put("b".into(), "".into()));
        assert_eq!(Kv::decode(&kv.encode()), Some(kv.clone()));
        let enc = kv.encode();
        assert_eq!(Kv::decode(&enc[..enc.len() - 1]), None);
    }
}
