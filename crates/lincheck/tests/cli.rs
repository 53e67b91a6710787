//! The `flotilla-lincheck FILE` command: verdicts, the counterexample, exit codes.

use std::process::Command;

fn run(history: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("lincheck-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("h{}.jsonl", history.len()));
    std::fs::write(&path, history).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-lincheck")).arg(&path).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn linearizable_history_exits_zero() {
    let (code, out) = run(concat!(
        r#"{"client":1,"op":"put","key":"a","value":"1","invoke":0,"complete":10,"outcome":"ok"}"#,
        "\n",
        r#"{"client":2,"op":"get","key":"a","invoke":11,"complete":12,"outcome":"ok","read":"1"}"#,
        "\n"
    ));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("linearizable: 2 operations over 1 keys"), "{out}");
}

#[test]
fn stale_read_exits_one_and_prints_the_key_and_sub_history() {
    let (code, out) = run(concat!(
        r#"{"client":1,"op":"put","key":"a","value":"1","invoke":0,"complete":10,"outcome":"ok"}"#,
        "\n",
        r#"{"client":3,"op":"put","key":"b","value":"1","invoke":0,"complete":10,"outcome":"ok"}"#,
        "\n",
        r#"{"client":2,"op":"get","key":"a","invoke":11,"complete":12,"outcome":"ok"}"#,
        "\n"
    ));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT linearizable: key \"a\""), "{out}");
    assert!(out.contains(r#""op":"get""#) && !out.contains(r#""key":"b""#), "{out}");
}

#[test]
fn malformed_file_exits_two_with_the_line() {
    let (code, _) = run("{\"client\":1}\n");
    assert_eq!(code, 2);
}
