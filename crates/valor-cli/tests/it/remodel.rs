//! `valor remodel`: a bad values.toml is a clear error (exit 2) naming the
//! file and the key, before any run folder is read or model trained.

use std::path::Path;

use crate::valor;

/// Writes `text` as `dir/values.toml` and runs `valor remodel` on a run
/// folder that does not exist; returns (exit code, stderr).
fn remodel_with(dir: &Path, text: &str) -> (i32, String) {
    let values = dir.join("values.toml");
    std::fs::write(&values, text).unwrap();
    let run = dir.join("no-run");
    let (code, stdout, stderr) = valor(&[
        "remodel",
        "--run",
        run.to_str().unwrap(),
        "--values",
        values.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(stdout.is_empty(), "{stdout}");
    (code, stderr)
}

#[track_caller]
fn check_error(text: &str, expected: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stderr) = remodel_with(tmp.path(), text);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("values.toml"), "names the file: {stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected `{e}` in: {stderr}");
    }
    assert!(!tmp.path().join("no-run").exists(), "nothing written");
}

#[test]
fn unknown_key_is_an_error() {
    check_error(
        "[target]\nfairness = 0.9\n[search]\nalpah = 0.5\n",
        &["alpah"],
    );
}

#[test]
fn target_outside_the_unit_interval_is_an_error() {
    check_error(
        "[target]\nfairness = 1.5\n",
        &["`fairness`", "1.5", "[0, 1]"],
    );
}

#[test]
fn unknown_dimension_is_an_error() {
    check_error(
        "[target]\nfairnes = 0.9\n",
        &["unknown dimension `fairnes`", "did you mean `fairness`?"],
    );
}

#[test]
fn dimension_remodel_cannot_measure_is_an_error() {
    check_error(
        "[target]\nefficiency = 0.5\n[measure]\nefficiency = \"latency\"\n[efficiency]\nbudget_latency_ms = 10.0\n",
        &["`efficiency`", "`latency`", "cannot compute"],
    );
    check_error(
        "[dimensions.calibration]\ndescription = \"1 - ECE\"\n[target]\ncalibration = 0.9\n[measure]\ncalibration = \"1-extra.ece\"\n",
        &["`calibration`", "1-extra.ece"],
    );
}

#[test]
fn transparency_without_explanations_follows_the_unmeasured_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let values = tmp.path().join("values.toml");
    std::fs::write(
        &values,
        "unmeasured = \"error\"\n[target]\ntransparency = 0.7\naccuracy = 0.8\n",
    )
    .unwrap();
    let (code, _, stderr) = valor(&[
        "remodel",
        "--run",
        tmp.path().join("no-run").to_str().unwrap(),
        "--values",
        values.to_str().unwrap(),
        "--faithfulness-examples",
        "0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("dimension `transparency` cannot be measured"),
        "{stderr}"
    );
}

#[test]
fn missing_run_folder_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stderr) = remodel_with(tmp.path(), "[target]\nfairness = 0.9\naccuracy = 0.8\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-run"), "{stderr}");
}

#[test]
fn print_values_shows_the_documented_default() {
    let (code, stdout, stderr) = valor(&["remodel", "--print-values"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, valor_values::default_values_toml());
}
