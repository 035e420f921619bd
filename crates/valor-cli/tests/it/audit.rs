//! `valor audit` end to end: parity with fairlearn and AIF360 through the
//! CLI's JSON (the same fixtures as valor-fair's library tests:
//! `shared/fixtures/fairness`, made by `ref_fairlearn.py` and `ref_aif360.py`;
//! tolerance 1e-9 absolute, from the fixture README), exit codes, formats and
//! the monitor.

use serde_json::Value;
use valor_testkit::{Tolerance, assert_close};

use crate::{adult_flags, valor};

const TOL: Tolerance = Tolerance::abs(1e-9);

fn check(what: &str, actual: &Value, expected: &Value) {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(e)) => assert_close(what, a, e, TOL),
        (None, None) => {}
        _ => panic!("{what}: actual {actual} vs expected {expected}"),
    }
}

fn spec<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["specs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no spec {name}"))
}

#[valor_testkit::shared_test]
fn adult_through_the_cli_matches_fairlearn_and_aif360() {
    let shared = valor_testkit::shared_dir();
    let dir = shared.join("fixtures/fairness");
    let preds = dir.join("adult_predictions.csv");
    let (code, stdout, stderr) = valor(&[
        "audit",
        "--predictions",
        preds.to_str().unwrap(),
        "--label-col",
        "y_true",
        "--pred-col",
        "y_pred",
        "--score-col",
        "y_score",
        "--group",
        "sex",
        "--group",
        "race",
        "--group",
        "age_band",
        "--threshold",
        "fairlearn.demographic_parity_difference<=1",
        "--privileged",
        "sex=Male",
        "--privileged",
        "race=White",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adult_fairlearn.json")).unwrap())
            .unwrap();
    let mut n = 0;
    for name in ["sex", "race", "age_band"] {
        let ours = spec(&report, name);
        let theirs = &fx["specs"][name];
        for (frame, metrics) in [
            ("metric_frame", &ours["metrics"]),
            ("roc_auc", &ours["metrics"]),
        ] {
            let f = &theirs[frame];
            for (metric, overall) in f["overall"].as_object().unwrap() {
                let m = &metrics[metric];
                check(&format!("{name}/{metric}/overall"), &m["overall"], overall);
                for (g, v) in f["by_group"][metric].as_object().unwrap() {
                    check(&format!("{name}/{metric}/{g}"), &m["by_group"][g], v);
                    n += 1;
                }
                for part in [
                    "difference_between_groups",
                    "ratio_between_groups",
                    "difference_to_overall",
                    "ratio_to_overall",
                    "group_min",
                    "group_max",
                ] {
                    check(
                        &format!("{name}/{metric}/{part}"),
                        &m[part],
                        &f[part][metric],
                    );
                    n += 1;
                }
            }
        }
        for (k, v) in theirs["scalars"].as_object().unwrap() {
            check(&format!("{name}/{k}"), &ours["fairlearn"][k], v);
            n += 1;
        }
    }
    assert!(n > 300, "compared {n} numbers");

    let aif: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adult_aif360.json")).unwrap())
            .unwrap();
    let mut m = 0;
    for attr in ["sex", "race"] {
        let ours = &spec(&report, attr)["aif360"];
        for (k, v) in aif["attributes"][attr].as_object().unwrap() {
            match v {
                Value::Number(_) if ours.get(k).is_some() => {
                    check(&format!("aif360/{attr}/{k}"), &ours[k], v);
                    m += 1;
                }
                Value::Object(cells) if k == "reweighing_weights_true_labels" => {
                    for (cell, w) in cells {
                        check(&format!("aif360/{attr}/{k}/{cell}"), &ours[k][cell], w);
                        m += 1;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(m >= 20, "compared {m} AIF360 numbers");
}

#[valor_testkit::shared_test]
fn thresholds_gate_with_exit_code_1_and_reports_are_written() {
    let shared = valor_testkit::shared_dir();
    let preds = shared.join("fixtures/fairness/adult_predictions.csv");
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("audit.html");
    let (code, stdout, stderr) = valor(&[
        "audit",
        "--predictions",
        preds.to_str().unwrap(),
        "--score-col",
        "y_score",
        "--group",
        "sex",
        "--max-dp-difference",
        "0.05",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "a breached threshold exits 1: {stderr}");
    assert!(stderr.contains("breach"), "{stderr}");
    assert!(stdout.contains("sex"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("</html>"));

    let json = out.path().join("audit.json");
    let (code, _, stderr) = valor(&[
        "audit",
        "--predictions",
        preds.to_str().unwrap(),
        "--group",
        "sex",
        "--max-dp-difference",
        "0.5",
        "--out",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["rows"], 16281);
    assert!(v["provenance"]["source_sha256"].as_str().unwrap().len() == 64);
    // Built from a git checkout (as tests are): the commit is recorded.
    let commit = v["provenance"]["git_commit"].as_str().unwrap_or_default();
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "git_commit: {}",
        v["provenance"]["git_commit"]
    );
    // The report is not replaced without --overwrite.
    let (code, _, stderr) = valor(&[
        "audit",
        "--predictions",
        preds.to_str().unwrap(),
        "--group",
        "sex",
        "--out",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--overwrite"), "{stderr}");
}

#[test]
fn bad_audit_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.csv");
    std::fs::write(&p, "y_true,y_pred,sex\n1,0,f\n0,,m\n").unwrap();
    let (code, _, stderr) = valor(&[
        "audit",
        "--predictions",
        p.to_str().unwrap(),
        "--group",
        "sex",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("row 2, column `y_pred`"), "{stderr}");
    let (code, _, stderr) = valor(&[
        "audit",
        "--predictions",
        p.to_str().unwrap(),
        "--group",
        "race",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("column `race` not found"), "{stderr}");
}

#[test]
fn monitor_flags_a_breach_as_it_happens() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("stream.csv");
    // 300 fair rows, then 300 rows where group b is never selected.
    let mut s = String::from("y_true,y_pred,g\n");
    for i in 0..300 {
        s += &format!(
            "{},{},{}\n",
            i % 2,
            i % 2,
            if i % 4 < 2 { "a" } else { "b" }
        );
    }
    for i in 0..300 {
        let g = if i % 2 == 0 { "a" } else { "b" };
        s += &format!("1,{},{g}\n", if g == "a" { 1 } else { 0 });
    }
    std::fs::write(&p, s).unwrap();
    let (code, stdout, stderr) = valor(&[
        "audit",
        "--monitor",
        "--predictions",
        p.to_str().unwrap(),
        "--group",
        "g",
        "--labels",
        "0,1",
        "--window",
        "100",
        "--check-every",
        "20",
        "--max-dp-difference",
        "0.2",
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let first = stdout
        .lines()
        .find(|l| l.contains("Breached"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let row: u64 = first
        .trim_start_matches("row ")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        row > 300 && row <= 400,
        "breach flagged at row {row}: {stdout}"
    );
    assert!(stdout.contains("monitored 600 rows"), "{stdout}");

    // The README's form: follow a growing file from its first line (header
    // included), here one that grows while it is read; the same breach.
    let follow = dir.path().join("follow.csv");
    let text = std::fs::read_to_string(&p).unwrap();
    let cut = text.match_indices('\n').nth(400).unwrap().0 + 1;
    std::fs::write(&follow, &text[..cut]).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_valor"))
        .args(["audit", "--monitor", "--predictions"])
        .arg(&follow)
        .args([
            "--follow", "3", "--group", "g", "--labels", "0,1", "--window", "100",
        ])
        .args(["--check-every", "20", "--max-dp-difference", "0.2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&follow)
        .unwrap();
    std::io::Write::write_all(&mut f, &text.as_bytes()[cut..]).unwrap();
    drop(f);
    let out = child.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{followed}");
    assert!(followed.contains("monitored 600 rows"), "{followed}");
    assert!(
        followed.contains(&format!("row {row}:")),
        "same first breach at row {row}: {followed}"
    );
}

/// The adult predictions audited in memory, with `extra` flags; the JSON.
fn audit_json(args: &[&str]) -> Value {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, stdout, stderr) = valor(&all);
    assert!(code == 0 || code == 1, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// The report without its provenance (the source differs between forms of
/// the same rows) and, for audits of counts, without the `scores_binned`
/// warning; returns that warning's message.
fn without_source(mut v: Value) -> (Value, Option<String>) {
    v.as_object_mut().unwrap().remove("provenance");
    let warnings = v["warnings"].as_array_mut().unwrap();
    let binned = warnings
        .iter()
        .position(|w| w["kind"] == "scores_binned")
        .map(|i| warnings.remove(i)["message"].as_str().unwrap().to_owned());
    (v, binned)
}

/// The score-based parts of a report, by name: ROC AUC, ROC curves,
/// calibration and ECE of every spec; removed from `v`.
fn take_scores(v: &mut Value) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for s in v["specs"].as_array_mut().unwrap() {
        let o = s.as_object_mut().unwrap();
        out.push(("roc", o.remove("roc").unwrap_or_default()));
        out.push(("calibration", o.remove("calibration").unwrap_or_default()));
        let m = o["metrics"].as_object_mut().unwrap();
        out.push(("roc_auc", m.remove("roc_auc").unwrap_or_default()));
        let ece = m.remove("expected_calibration_error").unwrap_or_default();
        out.push(("expected_calibration_error", ece));
    }
    out
}

/// Every number in `v`, in order.
fn numbers(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => out.push(n.as_f64().unwrap()),
        Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
        Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
        _ => {}
    }
}

/// ROC AUC summaries within `bound` (differences and ratios between groups
/// within twice and four times that, loosely), calibration and ECE within
/// 1e-12 relative; ROC curves (a point per bin against one per distinct
/// score) are not compared.
fn compare_scores(e: &[(&str, Value)], b: &[(&str, Value)], bound: f64) {
    assert_eq!(e.len(), b.len());
    for ((name, x), (_, y)) in e.iter().zip(b) {
        let tol = match *name {
            "roc" => continue,
            "roc_auc" => bound,
            _ => 1e-12,
        };
        if *name == "roc_auc" {
            let at = |v: &Value, g: &str| v["by_group"][g].as_f64();
            assert!(
                (x["overall"].as_f64().unwrap() - y["overall"].as_f64().unwrap()).abs()
                    <= tol + 1e-15
            );
            for g in x["by_group"].as_object().unwrap().keys() {
                if let (Some(p), Some(q)) = (at(x, g), at(y, g)) {
                    assert!((p - q).abs() <= tol + 1e-15, "roc_auc {g}: {p} vs {q}");
                }
            }
            continue;
        }
        let (mut nx, mut ny) = (Vec::new(), Vec::new());
        numbers(x, &mut nx);
        numbers(y, &mut ny);
        assert_eq!(nx.len(), ny.len(), "{name}");
        for (p, q) in nx.iter().zip(&ny) {
            assert!(
                (p - q).abs() <= tol * p.abs().max(1.0),
                "{name}: {p} vs {q}"
            );
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[valor_testkit::shared_test]
fn streamed_and_counted_audits_equal_the_in_memory_audit() {
    let shared = valor_testkit::shared_dir();
    let preds = shared.join("fixtures/fairness/adult_predictions.csv");
    let preds = preds.to_str().unwrap();
    let flags = adult_flags(preds);
    let (memory, _) = without_source(audit_json(&strs(&flags)));
    assert_eq!(memory["rows"], 16281);
    assert!(memory["bootstrap"].is_object() && !memory["breaches"].as_array().unwrap().is_empty());

    // CSV in chunks of 1,000 rows: the same report, to the bit.
    let mut streamed = flags.clone();
    streamed.extend(["--stream", "--chunk-rows", "1000"].map(String::from));
    let (stream, binned) = without_source(audit_json(&strs(&streamed)));
    assert!(binned.is_none());
    assert_eq!(memory, stream);

    // A folder of Parquet parts (the same rows in three files) and a glob.
    let dir = tempfile::tempdir().unwrap();
    let table = valor_data::read_table(std::path::Path::new(preds)).unwrap();
    let names = table.column_names();
    for (i, range) in [(0, 0..5000), (1, 5000..11000), (2, 11000..16281)] {
        let columns = names
            .iter()
            .map(|c| {
                let v: Vec<String> = table.strings(c).unwrap()[range.clone()]
                    .iter()
                    .map(|s| s.clone().unwrap())
                    .collect();
                let data = if c == "y_score" {
                    valor_data::ColumnData::Float(v.iter().map(|s| s.parse().unwrap()).collect())
                } else {
                    valor_data::ColumnData::Text(v)
                };
                (c.clone(), data)
            })
            .collect();
        let part = dir.path().join(format!("part-{i}.parquet"));
        valor_data::write_table(&part, columns).unwrap();
    }
    for source in [
        dir.path().to_str().unwrap().to_owned(),
        dir.path()
            .join("part-*.parquet")
            .to_str()
            .unwrap()
            .to_owned(),
    ] {
        let mut f = adult_flags(&source);
        f.extend(["--chunk-rows", "4096"].map(String::from));
        let (parts, _) = without_source(audit_json(&strs(&f)));
        assert_eq!(memory, parts, "{source}");
    }

    // With scores: count-based numbers identical; calibration equal up to
    // the rounding of score sums; ROC AUC within the bound the report states.
    let mut scored = flags.clone();
    scored.extend(["--score-col", "y_score"].map(String::from));
    let (mut exact, _) = without_source(audit_json(&strs(&scored)));
    let mut scored_stream = scored.clone();
    scored_stream.extend(["--stream", "--chunk-rows", "3000"].map(String::from));
    let (mut binned, message) = without_source(audit_json(&strs(&scored_stream)));
    let message = message.expect("a scores_binned warning");
    let bound: f64 = message
        .split("ROC AUC is within ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(bound > 0.0 && bound < 1e-3, "{message}");
    let (e, b) = (take_scores(&mut exact), take_scores(&mut binned));
    assert_eq!(exact, binned);
    compare_scores(&e, &b, bound);
}

#[valor_testkit::shared_test]
fn counts_written_read_back_and_counted_by_the_emitted_sql_give_the_same_report() {
    let shared = valor_testkit::shared_dir();
    let preds = shared.join("fixtures/fairness/adult_predictions.csv");
    let preds = preds.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.csv");
    let counts = counts.to_str().unwrap();
    let mut flags = adult_flags(preds);
    flags.extend(["--score-col", "y_score", "--write-counts", counts].map(String::from));
    // In memory, writing counts: the report is the exact one.
    let (memory, binned) = without_source(audit_json(&strs(&flags)));
    assert!(binned.is_none());
    let text = std::fs::read_to_string(counts).unwrap();
    assert!(
        text.starts_with("sex,race,y_true,y_pred,calibration_bin,score_bin,n,score_sum\n"),
        "{}",
        &text[..80]
    );
    // Counts are written like any output: not over an existing file.
    let (code, _, stderr) = valor(&strs(&[&["audit".to_string()][..], &flags[..]].concat()));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--overwrite"), "{stderr}");

    let counted_flags = |file: &str| -> Vec<String> {
        let mut f = adult_flags(preds);
        f.drain(0..2);
        f.extend(["--counts", file, "--score-col", "y_score"].map(String::from));
        f
    };
    let (from_counts, message) = without_source(audit_json(&strs(&counted_flags(counts))));
    assert!(message.is_some());
    let mut streamed = adult_flags(preds);
    streamed.extend(["--score-col", "y_score", "--stream"].map(String::from));
    let (stream, _) = without_source(audit_json(&strs(&streamed)));
    assert_eq!(
        from_counts, stream,
        "counts read back give the streamed report"
    );
    assert_eq!(
        memory["specs"][0]["confusion_matrix"],
        stream["specs"][0]["confusion_matrix"]
    );

    // The emitted SQL, run by SQLite over the same rows, gives the same
    // counts (score sums as SQLite prints them: 15 digits).
    let (code, sql, stderr) = valor(&[
        "audit",
        "--emit-sql",
        "sqlite",
        "--table",
        "preds",
        "--group",
        "sex",
        "--group",
        "race",
        "--score-col",
        "y_score",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(sql.contains("GROUP BY"), "{sql}");
    let db = dir.path().join("preds.db");
    let script = format!(
        "CREATE TABLE preds(y_true TEXT, y_pred TEXT, y_score REAL, sex TEXT, race TEXT, age_band TEXT);\n\
         .import --csv --skip 1 {preds} preds\n.headers on\n.mode csv\n.output {}\n{sql}",
        dir.path().join("sql_counts.csv").display()
    );
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sqlite3 runs (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql_counts = dir.path().join("sql_counts.csv");
    let (mut from_sql, _) = without_source(audit_json(&strs(&counted_flags(
        sql_counts.to_str().unwrap(),
    ))));
    let mut stream = stream;
    let (s, q) = (take_scores(&mut stream), take_scores(&mut from_sql));
    assert_eq!(stream, from_sql, "counts by SQLite give the same report");
    compare_scores(&s, &q, 0.0);
}

#[test]
fn bad_counts_and_stream_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.csv");
    std::fs::write(&c, "sex,y_true,y_pred,n\nf,1,0,3\nm,0,0,x\n").unwrap();
    let (code, _, stderr) = valor(&["audit", "--counts", c.to_str().unwrap(), "--group", "sex"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("row 2, column `n`"), "{stderr}");
    std::fs::write(&c, "sex,y_true,y_pred,n\nf,1,0,3\n").unwrap();
    let (code, _, stderr) = valor(&["audit", "--counts", c.to_str().unwrap(), "--group", "race"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("column `race` not found"), "{stderr}");

    let p = dir.path().join("p.csv");
    std::fs::write(&p, "y_true,y_pred,s,sex\n1,0,0.5,f\n0,1,1.5,m\n0,0,0.1,\n").unwrap();
    let base = [
        "audit",
        "--stream",
        "--predictions",
        p.to_str().unwrap(),
        "--group",
        "sex",
    ];
    let (code, _, stderr) = valor(&base);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("row 3, column `sex`: empty value"),
        "{stderr}"
    );
    let mut scored = base.to_vec();
    scored.extend(["--score-col", "s"]);
    let (code, _, stderr) = valor(&scored);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("row 2, column `s`") && stderr.contains("outside [0, 1]"),
        "{stderr}"
    );
}
