//! `valor audit` end to end: parity with fairlearn and AIF360 through the
//! CLI's JSON (the same fixtures as valor-fair's library tests:
//! `shared/fixtures/fairness`, made by `ref_fairlearn.py` and `ref_aif360.py`;
//! tolerance 1e-9 absolute, from the fixture README), exit codes, formats and
//! the monitor.

use serde_json::Value;
use valor_testkit::{Tolerance, assert_close};

use crate::valor;

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
