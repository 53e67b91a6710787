//! The history format: one JSON object per line, one line per client operation.
//!
//! ```text
//! {"client":1,"op":"put","key":"a","value":"1","invoke":10,"complete":15,"outcome":"ok"}
//! {"client":2,"op":"get","key":"a","invoke":11,"complete":14,"outcome":"ok","read":"1"}
//! {"client":3,"op":"cas","key":"a","expected":"1","value":"2","invoke":12,"complete":20,"outcome":"ok","succeeded":true}
//! {"client":4,"op":"delete","key":"a","invoke":21,"complete":null,"outcome":"unknown"}
//! ```
//!
//! Fields:
//! - `client`: who issued it. A client has at most one operation outstanding.
//! - `op`: `get`, `put`, `delete` or `cas` (compare-and-swap), with `key` and, for `put` and
//!   `cas`, the new `value`; for `cas`, `expected` is the value required (`null`: the key must
//!   be absent).
//! - `invoke`, `complete`: times in any unit, from one clock. `complete` is ignored unless the
//!   outcome is `ok`.
//! - `outcome`: `ok` (took effect exactly once, between invoke and complete, and returned the
//!   recorded output), `failed` (certainly never took effect: refused before it could), or
//!   `unknown` (may or may not have taken effect, at any time after `invoke`, even after the
//!   client gave up: a timeout).
//! - outputs, for `ok`: `read` for `get` (`null` or absent: the key was absent), `succeeded`
//!   for `cas`.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Call {
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value written.
        value: String,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Write `value` if the key currently holds `expected` (`None`: is absent).
    Cas {
        /// The key.
        key: String,
        /// The value required.
        expected: Option<String>,
        /// The value written on success.
        value: String,
    },
}

impl Call {
    /// The key the call touches.
    pub fn key(&self) -> &str {
        match self {
            Call::Get { key }
            | Call::Put { key, .. }
            | Call::Delete { key }
            | Call::Cas { key, .. } => key,
        }
    }
}

/// How the operation ended, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Took effect; the output is known.
    Ok,
    /// Certainly did not take effect.
    Failed,
    /// May or may not have taken effect, at any time after invocation.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// The client that issued it.
    pub client: u64,
    /// What was asked.
    #[serde(flatten)]
    pub call: Call,
    /// When the client sent it.
    pub invoke: u64,
    /// When the client got the answer (`ok` operations only).
    #[serde(default)]
    pub complete: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// For an `ok` get: the value read (`None`: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// For an `ok` cas: whether it swapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
}

/// A history that cannot be read.
#[derive(Debug, Error)]
pub enum HistoryError {
    /// The file could not be read.
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a valid operation.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Operation {
    /// Checks the fields that the format requires together.
    pub fn validate(&self) -> Result<(), String> {
        if self.outcome == Outcome::Ok {
            let Some(complete) = self.complete else {
                return Err("an ok operation needs `complete`".into());
            };
            if complete < self.invoke {
                return Err(format!(
                    "completes ({complete}) before it is invoked ({})",
                    self.invoke
                ));
            }
            if matches!(self.call, Call::Cas { .. }) && self.succeeded.is_none() {
                return Err("an ok cas needs `succeeded`".into());
            }
        }
        Ok(())
    }
}

/// Reads a history, one operation per line; blank lines are skipped.
pub fn read(r: impl BufRead) -> Result<Vec<Operation>, HistoryError> {
    let mut ops = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Operation = serde_json::from_str(&line)
            .map_err(|e| HistoryError::Parse { line: i + 1, message: e.to_string() })?;
        op.validate().map_err(|message| HistoryError::Parse { line: i + 1, message })?;
        ops.push(op);
    }
    Ok(ops)
}

/// Writes a history, one operation per line.
pub fn write(w: &mut impl Write, ops: &[Operation]) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut *w, op)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_documented_examples_parse() {
        let text = r#"{"client":1,"op":"put","key":"a","value":"1","invoke":10,"complete":15,"outcome":"ok"}
{"client":2,"op":"get","key":"a","invoke":11,"complete":14,"outcome":"ok","read":"1"}
{"client":3,"op":"cas","key":"a","expected":"1","value":"2","invoke":12,"complete":20,"outcome":"ok","succeeded":true}
{"client":4,"op":"delete","key":"a","invoke":21,"complete":null,"outcome":"unknown"}
"#;
        let ops = read(text.as_bytes()).unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(
            ops[2].call,
            Call::Cas { key: "a".into(), expected: Some("1".into()), value: "2".into() }
        );
        let mut out = Vec::new();
        write(&mut out, &ops).unwrap();
        assert_eq!(read(&out[..]).unwrap(), ops);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let text = "{\"client\":1,\"op\":\"get\",\"key\":\"a\",\"invoke\":1,\"outcome\":\"ok\"}\n";
        match read(text.as_bytes()) {
            Err(HistoryError::Parse { line: 1, message }) => assert!(message.contains("complete")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(read("{not json".as_bytes()), Err(HistoryError::Parse { line: 1, .. })));
    }
}
