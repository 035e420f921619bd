//! `valor log verify` on logs written through valor-ledger: passes on an
//! intact log, names the record after one byte is changed, a record is
//! deleted or two are swapped, and reports a torn tail (a write cut short by
//! a kill) as a warning that the next writer removes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use valor_ledger::{Decision, InputStats, Ledger, LedgerConfig, Probabilities, Timestamp};

use super::valor;

pub fn decision(i: u64, unfair: bool) -> Decision {
    let gender = if i.is_multiple_of(2) {
        "female"
    } else {
        "male"
    };
    let h = (i.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
    let p = match (unfair, gender) {
        (true, "male") => 0.6 + 0.4 * h,
        (true, _) => 0.4 * h,
        _ => h,
    };
    let labels = vec!["deny".to_string(), "approve".to_string()];
    Decision {
        time: Timestamp::from_unix_micros(1_780_000_000_000_000 + i as i64 * 250_000),
        request_id: format!("r{i}"),
        decision_id: Some(format!("d{i}")),
        key_id: Some("k1".into()),
        route: "/decide".into(),
        status: 200,
        model_sha256: "0f".repeat(32),
        input_sha256: Some(valor_ledger::text_sha256(&format!("text {i}"))),
        text: None,
        input: Some(InputStats {
            chars: 20 + i % 17,
            tokens: 10,
            unknown_tokens: i % 3,
        }),
        groups: BTreeMap::from([("gender".to_string(), gender.to_string())]),
        probabilities: Some(Probabilities::new(&labels, &[1.0 - p, p])),
        label: Some(if p > 0.5 { "approve" } else { "deny" }.into()),
        rule: Some("argmax".into()),
        latency_ms: 2.5,
        error: None,
    }
}

fn config() -> LedgerConfig {
    LedgerConfig {
        max_file_bytes: 8 << 10,
        fsync: false,
        ..LedgerConfig::default()
    }
}

fn write_log(dir: &Path, n: u64) {
    let ledger = Ledger::open(dir, config()).unwrap();
    for i in 0..n {
        ledger.append(decision(i, false)).unwrap();
    }
    ledger.close().unwrap();
}

fn first_file(dir: &Path) -> PathBuf {
    dir.join("ledger-000001.jsonl")
}

fn edit_lines(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    f(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn verify(dir: &Path) -> (i32, String, String) {
    valor(&["log", "verify", dir.to_str().unwrap()])
}

#[test]
fn an_intact_log_verifies_with_its_count() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 60);
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jsonl")
        })
        .count() as u64;
    assert!(files >= 2, "the test log rotates");
    // 60 decisions + 1 open record + one segment record per file
    let records = 60 + 1 + files;
    assert!(
        out.contains(&format!(
            "verified {records} records (60 decisions, 0 feedback)"
        )),
        "{out}"
    );
    let (code, json, _) = valor(&["log", "verify", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["records"], records);
    assert!(v["failure"].is_null());
}

#[test]
fn one_changed_byte_fails_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let file = first_file(dir.path());
    edit_lines(&file, |l| {
        // line 6 is record 5: turn one letter of its route
        l[5] = l[5].replacen("/decide", "/decidf", 1);
    });
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "record 5 ({}, line 6) was changed",
            file.display()
        )),
        "{out}"
    );
    assert!(out.contains("5 records before it verified"), "{out}");
}

#[test]
fn a_deleted_record_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let file = first_file(dir.path());
    edit_lines(&file, |l| {
        l.remove(7);
    });
    let (code, out, _) = verify(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "record 7 ({}, line 8) is missing (removed)",
            file.display()
        )),
        "{out}"
    );
}

#[test]
fn swapped_records_fail_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let file = first_file(dir.path());
    edit_lines(&file, |l| l.swap(4, 5));
    let (code, out, _) = verify(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "record 4 ({}, line 5) is out of order",
            file.display()
        )),
        "{out}"
    );
}

#[test]
fn a_torn_tail_is_a_warning_until_the_writer_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 20);
    let (_, before, _) = verify(dir.path());
    let last = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        v.sort();
        v.pop().unwrap()
    };
    // What a kill in the middle of a write leaves: part of a record.
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(b"{\"seq\":999,\"prev\":\"00");
    std::fs::write(&last, &bytes).unwrap();
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, 0, "a torn tail is not tampering: {out}{err}");
    assert!(
        err.contains("warning") && err.contains("cut short"),
        "{err}"
    );
    assert_eq!(
        out.split(';').next(),
        before.split(';').next(),
        "the same records verify"
    );
    // The next writer (a restarted server) cuts it off and logs that.
    let ledger = Ledger::open(dir.path(), config()).unwrap();
    assert_eq!(ledger.recovered().unwrap().bytes, 21);
    ledger.close().unwrap();
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn a_missing_folder_is_an_error() {
    let (code, _, err) = verify(Path::new("/nonexistent/valor-log"));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/valor-log"), "{err}");
}
