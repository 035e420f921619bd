//! The decision log end to end: write, rotate, reopen, read back, verify,
//! and find every kind of tampering.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use valor_ledger::{
    Decision, Entry, Error, FailureKind, Feedback, InputStats, Ledger, LedgerConfig, LedgerReader,
    Probabilities, Timestamp, text_sha256, verify,
};

fn decision(i: u64) -> Decision {
    let text = format!("application number {i}");
    let labels = vec!["deny".to_string(), "approve".to_string()];
    let p = (i % 10) as f64 / 10.0 + 0.05;
    Decision {
        time: Timestamp::from_unix_micros(1_780_000_000_000_000 + i as i64 * 1000),
        request_id: format!("req-{i}"),
        decision_id: Some(format!("d-{i}")),
        key_id: Some("k1".into()),
        route: "/decide".into(),
        status: 200,
        model_sha256: "ab".repeat(32),
        input_sha256: Some(text_sha256(&text)),
        text: None,
        input: Some(InputStats {
            chars: text.chars().count() as u64,
            tokens: 6,
            unknown_tokens: i % 2,
        }),
        groups: BTreeMap::from([(
            "gender".to_string(),
            if i.is_multiple_of(2) {
                "female"
            } else {
                "male"
            }
            .to_string(),
        )]),
        probabilities: Some(Probabilities::new(&labels, &[1.0 - p, p])),
        label: Some(if p > 0.5 { "approve" } else { "deny" }.into()),
        rule: Some("argmax".into()),
        latency_ms: 1.0 / 3.0 + i as f64,
        error: None,
    }
}

fn small() -> LedgerConfig {
    LedgerConfig {
        max_file_bytes: 4096,
        max_batch: 16,
        queue_capacity: 64,
        fsync: false,
    }
}

/// Writes `n` decisions (and a feedback for every fifth) and closes.
fn write_log(dir: &Path, n: u64) {
    let ledger = Ledger::open(dir, small()).unwrap();
    for i in 0..n {
        ledger.append(decision(i)).unwrap();
        if i % 5 == 0 {
            ledger
                .append(Feedback {
                    time: Timestamp::now(),
                    request_id: format!("fb-{i}"),
                    key_id: None,
                    status: 200,
                    decision_id: format!("d-{i}"),
                    outcome: "approve".into(),
                    error: None,
                })
                .unwrap();
        }
    }
    ledger.close().unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    v
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

#[test]
fn writes_rotates_reads_back_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 100);
    let fs = files(dir.path());
    assert!(fs.len() >= 3, "rotation by size made {} files", fs.len());
    for f in &fs {
        assert!(std::fs::metadata(f).unwrap().len() <= 4096 + 1024);
    }
    let report = verify(dir.path()).unwrap();
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.decisions, 100);
    assert_eq!(report.feedback, 20);
    // + one open record, + one segment record per file
    assert_eq!(report.records, 100 + 20 + 1 + fs.len() as u64);
    assert!(report.torn_tail.is_none());
    // The reader returns exactly what was written, in order.
    let decisions: Vec<Decision> = LedgerReader::open(dir.path())
        .unwrap()
        .map(|r| r.unwrap())
        .filter_map(|r| match r.entry {
            Entry::Decision(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(decisions.len(), 100);
    for (i, d) in decisions.iter().enumerate() {
        assert_eq!(d, &decision(i as u64), "decision {i} reads back unchanged");
    }
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 10);
    let before = verify(dir.path()).unwrap();
    write_log(dir.path(), 10);
    let after = verify(dir.path()).unwrap();
    assert!(after.ok(), "{:?}", after.failure);
    assert_eq!(after.decisions, 20);
    assert!(after.head.unwrap().seq > before.head.unwrap().seq);
    let opens = LedgerReader::open(dir.path())
        .unwrap()
        .filter(|r| matches!(r.as_ref().unwrap().entry, Entry::Open(_)))
        .count();
    assert_eq!(opens, 2);
}

#[test]
fn flush_returns_the_head_and_the_data_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
    for i in 0..5 {
        ledger.append(decision(i)).unwrap();
    }
    let head = ledger.flush().unwrap();
    // segment + open + 5 decisions
    assert_eq!(head.seq, 6);
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.head.unwrap(), head);
    ledger.close().unwrap();
    assert!(matches!(ledger.append(decision(9)), Err(Error::Closed)));
}

#[test]
fn many_threads_append_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = std::sync::Arc::new(Ledger::open(dir.path(), small()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let l = ledger.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    l.append(decision(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    ledger.close().unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.decisions, 200);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Ledger::open(dir.path(), small()).unwrap();
    let err = Ledger::open(dir.path(), small()).unwrap_err();
    assert!(err.to_string().contains("another writer"), "{err}");
}

#[test]
fn non_finite_numbers_are_refused_before_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), small()).unwrap();
    let mut d = decision(1);
    d.probabilities = Some(Probabilities(vec![("a".into(), f64::NAN)]));
    let err = ledger.append(d).unwrap_err();
    assert!(matches!(err, Error::InvalidEntry { .. }), "{err}");
    assert!(err.to_string().contains("`a`"), "{err}");
}

/// The middle record of the first file (a decision), as (file, line).
fn target(dir: &Path) -> (PathBuf, usize) {
    let f = files(dir)[0].clone();
    let n = lines(&f).len();
    (f, n / 2)
}

#[test]
fn a_changed_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 40);
    let (f, i) = target(dir.path());
    let mut ls = lines(&f);
    // change one digit inside the record (the latency), keeping valid JSON
    let pos = ls[i].find("\"latency_ms\":").unwrap() + 13;
    let mut bytes = ls[i].clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'7' { b'8' } else { b'7' };
    ls[i] = String::from_utf8(bytes).unwrap();
    write_lines(&f, &ls);
    let fail = verify(dir.path()).unwrap().failure.expect("detected");
    assert_eq!(fail.kind, FailureKind::Changed);
    assert_eq!((fail.file.clone(), fail.line), (f, i as u64 + 1));
    assert_eq!(fail.record, i as u64);
}

#[test]
fn a_rehashed_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 40);
    let (f, i) = target(dir.path());
    let mut ls = lines(&f);
    // An attacker who changes a record and recomputes its own hash.
    let changed = ls[i].replace("\"status\":200", "\"status\":201");
    let cut = changed.len() - 75;
    let body = format!("{}}}", &changed[..cut]);
    let hash = text_sha256(&body);
    ls[i] = format!("{},\"hash\":\"{hash}\"}}", &changed[..cut]);
    write_lines(&f, &ls);
    let fail = verify(dir.path()).unwrap().failure.expect("detected");
    assert_eq!(fail.kind, FailureKind::Rehashed);
    assert_eq!((fail.file.clone(), fail.line), (f, i as u64 + 1));
}

#[test]
fn a_removed_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 40);
    let (f, i) = target(dir.path());
    let mut ls = lines(&f);
    ls.remove(i);
    write_lines(&f, &ls);
    let fail = verify(dir.path()).unwrap().failure.expect("detected");
    assert_eq!(fail.kind, FailureKind::Removed);
    assert_eq!(
        (fail.file.clone(), fail.line, fail.record),
        (f, i as u64 + 1, i as u64)
    );
}

#[test]
fn swapped_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 40);
    let (f, i) = target(dir.path());
    let mut ls = lines(&f);
    ls.swap(i, i + 1);
    write_lines(&f, &ls);
    let fail = verify(dir.path()).unwrap().failure.expect("detected");
    assert_eq!(fail.kind, FailureKind::Reordered);
    assert_eq!(
        (fail.file.clone(), fail.line, fail.record),
        (f, i as u64 + 1, i as u64)
    );
}

#[test]
fn a_removed_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 100);
    let fs = files(dir.path());
    std::fs::remove_file(&fs[1]).unwrap();
    let fail = verify(dir.path()).unwrap().failure.expect("detected");
    assert_eq!(fail.kind, FailureKind::FileMissing);
    assert_eq!(fail.file, fs[1]);
}

#[test]
fn removed_first_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 100);
    let fs = files(dir.path());
    std::fs::remove_file(&fs[0]).unwrap();
    let fail = verify(dir.path()).unwrap().failure.expect("detected");
    assert_eq!(fail.kind, FailureKind::FileMissing);
    assert_eq!(fail.file, fs[0]);
}

#[test]
fn a_torn_tail_is_reported_then_cut_and_logged_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let before = verify(dir.path()).unwrap();
    let last = files(dir.path()).last().unwrap().clone();
    let n_lines = lines(&last).len() as u64;
    // A crash in the middle of a write: half a record, no newline.
    let half = &lines(&last)[1][..80];
    let mut content = std::fs::read(&last).unwrap();
    content.extend_from_slice(half.as_bytes());
    std::fs::write(&last, &content).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(
        report.ok(),
        "a torn tail is not a break: {:?}",
        report.failure
    );
    assert_eq!(report.records, before.records);
    let torn = report.torn_tail.expect("reported");
    assert_eq!(
        (torn.file.clone(), torn.line, torn.bytes),
        (last.clone(), n_lines + 1, 80)
    );
    // The reader ends with it as an error after the complete records.
    let items: Vec<_> = LedgerReader::open(dir.path()).unwrap().collect();
    assert!(matches!(items.last(), Some(Err(Error::TornTail(_)))));
    assert_eq!(items.len() as u64, before.records + 1);
    // Reopening cuts it off, says so, and the chain goes on.
    let ledger = Ledger::open(dir.path(), small()).unwrap();
    let rec = ledger.recovered().cloned().expect("recovered");
    assert_eq!(rec.bytes, 80);
    assert_eq!(rec.sha256, text_sha256(half));
    ledger.append(decision(99)).unwrap();
    ledger.close().unwrap();
    let after = verify(dir.path()).unwrap();
    assert!(after.ok() && after.torn_tail.is_none(), "{after:?}");
    assert_eq!(after.decisions, before.decisions + 1);
    let open = LedgerReader::open(dir.path())
        .unwrap()
        .filter_map(|r| match r.unwrap().entry {
            Entry::Open(o) => o.recovered,
            _ => None,
        })
        .last()
        .expect("the open record logs the recovery");
    assert_eq!(open, rec);
}

#[test]
fn a_missing_folder_is_an_error_not_a_failure() {
    let err = verify(Path::new("/nonexistent/valor-ledger")).unwrap_err();
    assert!(matches!(err, Error::NoLog { .. }), "{err}");
}
