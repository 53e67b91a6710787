//! Simulated clients: each runs one operation at a time, sends it to the node it believes
//! leads, follows redirects, retries refusals that certainly had no effect, and gives up after
//! a timeout (the operation's outcome is then unknown). Everything is recorded as a history.

use flotilla_lincheck::{Call, Operation, Outcome};
use flotilla_raft::Rng;

use crate::kv::Command;

/// One client.
#[derive(Debug)]
pub struct Client {
    /// Its id.
    pub id: usize,
    /// The node it sends to next.
    pub target: usize,
    /// Increases with every request sent; answers to older attempts are ignored.
    pub attempt: u64,
    /// The operation in progress: its position in the history and its command.
    pub current: Option<(usize, Command)>,
    /// Operations issued.
    pub seq: u64,
}

/// Keys the clients share: few, so that operations conflict.
/// Eight keys: enough conflicts, and per-key histories small enough for the checker even when
/// many writes end with an unknown outcome (each one may take effect at any later point).
pub const KEYS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

impl Client {
    /// A new client starting at node `target`.
    pub fn new(id: usize, target: usize) -> Client {
        Client { id, target, attempt: 0, current: None, seq: 0 }
    }

    /// Draws the next command and its history record.
    pub fn next_op(&mut self, rng: &mut Rng, now: u64) -> (Command, Operation) {
        self.seq += 1;
        let key = KEYS[rng.in_range(0, KEYS.len() as u32) as usize].to_string();
        let value = format!("c{}s{}", self.id, self.seq);
        let (cmd, call) = match rng.in_range(0, 10) {
            0..=3 => (Command::Get(key.clone()), Call::Get { key }),
            4..=6 => (Command::Put(key.clone(), value.clone()), Call::Put { key, value }),
            7 => (Command::Delete(key.clone()), Call::Delete { key }),
            _ => {
                // Expect a value some client may have written, or absence.
                let expected = (rng.in_range(0, 3) != 0).then(|| {
                    format!("c{}s{}", rng.in_range(0, 8), rng.in_range(1, self.seq.max(2) as u32))
                });
                let cmd = Command::Cas(key.clone(), expected.clone(), value.clone());
                (cmd, Call::Cas { key, expected, value })
            }
        };
        let op = Operation {
            client: self.id as u64,
            call,
            invoke: now,
            complete: None,
            outcome: Outcome::Unknown,
            read: None,
            succeeded: None,
        };
        (cmd, op)
    }
}
