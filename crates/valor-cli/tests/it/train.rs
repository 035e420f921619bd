//! `valor train`: its help lists every flag; `--devices` takes a count or
//! a list and refuses what the backend lacks, naming what it has;
//! `--values FILE` takes λ and the penalty from the file's `[train]`
//! table, flags override it, and config.json records where each came from.

use std::path::Path;

use serde_json::{Value, json};

use crate::valor;

#[test]
fn help_lists_the_flags() {
    let (code, stdout, stderr) = valor(&["train", "--help"]);
    assert_eq!(code, 0, "{stderr}");
    for flag in [
        "--data",
        "--out",
        "--resume",
        "--overwrite",
        "--model",
        "--arch",
        "--max-len",
        "--epochs",
        "--batch-size",
        "--grad-accum",
        "--lr",
        "--schedule",
        "--max-grad-norm",
        "--seed",
        "--values",
        "--fairness-lambda",
        "--fairness-penalty",
        "--fairness-group",
        "--constraint",
        "--constraint-confidence",
        "--multiplier-lr",
        "--multiplier-gain",
        "--train-bound-ratio",
        "--constraint-batch-size",
        "--constraint-holdout",
        "--split-col",
        "--train",
        "--valid",
        "--test",
        "--reweigh",
        "--weighting",
        "--select-metric",
        "--patience",
        "--checkpoint-every",
        "--eval-every",
        "--keep-last",
        "--backend",
        "--devices",
        "--json",
        "--quiet",
    ] {
        assert!(
            stdout.contains(&format!("{flag} ")) || stdout.contains(&format!("{flag}\n")),
            "`valor train --help` does not list {flag}:\n{stdout}"
        );
    }
}

#[test]
fn invalid_devices_are_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out = out.to_str().unwrap();
    for (value, want) in [
        ("0", "which names no device"),
        ("two", "neither a count nor a list"),
        ("0,x", "`x` is not a device index"),
        (",", "which names no device"),
    ] {
        let (code, stdout, stderr) = valor(&["train", "--out", out, "--devices", value]);
        assert_eq!(code, 2, "--devices {value}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        for w in ["--devices", want, "0,1"] {
            assert!(
                stderr.contains(w),
                "--devices {value}: expected `{w}` in {stderr}"
            );
        }
    }
    // Well-formed, but more than the CPU backend has: names what there is.
    let data = gen_data(tmp.path());
    for (value, want) in [
        (
            "2",
            "asks for 2 devices but the cpu backend has 1 device (index 0)",
        ),
        ("0,1", "device index 1 was asked for"),
    ] {
        let (code, _, stderr) = valor(&[
            "train",
            "--data",
            &data,
            "--out",
            out,
            "--devices",
            value,
            "--quiet",
        ]);
        assert_eq!(code, 2, "--devices {value}: {stderr}");
        assert!(stderr.contains(want), "--devices {value}: {stderr}");
        assert!(stderr.contains("1 device (index 0)"), "{stderr}");
        assert!(!Path::new(out).exists(), "no run folder for a refused run");
    }
    let (_, _, stderr) = valor(&[
        "train",
        "--data",
        &data,
        "--out",
        out,
        "--devices",
        "2",
        "--quiet",
    ]);
    assert!(
        stderr.contains("--devices 0,0"),
        "says how to use the CPU: {stderr}"
    );
}

/// `valor data gen` of 200 rows into `dir`; the path as a string.
fn gen_data(dir: &Path) -> String {
    let data = dir.join("data.csv");
    let data = data.to_str().unwrap().to_string();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "200", "--out", &data]);
    assert_eq!(code, 0, "{stderr}");
    data
}

/// One epoch of a tiny run into `dir/name` with `extra` flags; its
/// config.json's `config`.
fn train_config(dir: &Path, data: &str, name: &str, extra: &[&str]) -> Value {
    let out = dir.join(name);
    let (code, stdout, stderr) = crate::tiny_train(data, &out, extra);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("test set"), "{stdout}");
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["config"].clone()
}

#[test]
fn values_file_sets_lambda_and_penalty_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let values = tmp.path().join("values.toml");
    std::fs::write(
        &values,
        "[target]\nfairness = 0.9\n[train]\nfairness_lambda = 0.7\nfairness_penalty = \"equalized_odds\"\n",
    )
    .unwrap();
    let values_abs = std::path::absolute(&values).unwrap();
    let v = values.to_str().unwrap();
    let from_file = json!({"from": "values", "path": values_abs});

    // Both from the file.
    let c = train_config(tmp.path(), &data, "file", &["--values", v]);
    assert_eq!(c["fairness"]["lambda"], json!(0.7));
    assert_eq!(c["fairness"]["penalty"], json!("equalized_odds"));
    assert_eq!(c["fairness"]["lambda_from"], from_file);
    assert_eq!(c["fairness"]["penalty_from"], from_file);

    // --fairness-lambda wins over the file; the penalty still comes from it.
    // Two devices: the data-parallel path runs end to end from the CLI.
    let c = train_config(
        tmp.path(),
        &data,
        "flag",
        &[
            "--values",
            v,
            "--fairness-lambda",
            "0.2",
            "--devices",
            "0,0",
        ],
    );
    assert_eq!(c["fairness"]["lambda"], json!(0.2));
    assert_eq!(c["fairness"]["lambda_from"], json!({"from": "flag"}));
    assert_eq!(c["fairness"]["penalty"], json!("equalized_odds"));
    assert_eq!(c["fairness"]["penalty_from"], from_file);
    assert_eq!(c["devices"], json!([0, 0]));

    // Without --values nothing is recorded: λ is the configuration's own.
    let c = train_config(tmp.path(), &data, "plain", &[]);
    assert_eq!(c["fairness"]["lambda"], json!(0.0));
    assert!(c["fairness"].get("lambda_from").is_none(), "{c}");
    assert!(c.get("devices").is_none(), "{c}");

    // A file without a [train] table changes nothing: an error, not a no-op.
    let empty = tmp.path().join("targets-only.toml");
    std::fs::write(&empty, "[target]\nfairness = 0.9\n").unwrap();
    let out = tmp.path().join("refused");
    let (code, _, stderr) = valor(&[
        "train",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--values",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("targets-only.toml") && stderr.contains("[train]"),
        "{stderr}"
    );
    // A bad value in [train] names the file and the key.
    std::fs::write(
        &empty,
        "[target]\nfairness = 0.9\n[train]\nfairness_lambda = -1.0\n",
    )
    .unwrap();
    let (code, _, stderr) = valor(&[
        "train",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--values",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("train.fairness_lambda"), "{stderr}");
    assert!(!out.exists());

    // --resume keeps the run's settings: --devices and --values are refused.
    let run = tmp.path().join("file");
    let (code, _, stderr) = valor(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--devices",
        "2",
        "--values",
        v,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--devices") && stderr.contains("--values"),
        "{stderr}"
    );
}

/// The run's final model weights and the test line of its report.
fn finished_model(run: &Path) -> (Vec<u8>, Value) {
    let weights = std::fs::read(run.join("model").join("model.safetensors")).unwrap();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    (weights, report["summary"].clone())
}

/// SIGKILL in the middle of `valor train`, then `valor train --resume`:
/// the finished model equals the uninterrupted run's bit for bit (the
/// library test checks the same through `valor_train::resume`; this one goes
/// through the binary, its signals and its files).
#[cfg(unix)]
#[test]
fn kill_9_then_resume_equals_the_uninterrupted_run() {
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.csv");
    let data = data.to_str().unwrap();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "900", "--out", data]);
    assert_eq!(code, 0, "{stderr}");
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "2",
            "--max-len",
            "32",
            "--vocab-size",
            "300",
            "--batch-size",
            "16",
            "--checkpoint-every",
            "3",
            "--keep-last",
            "2",
            "--seed",
            "11",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let full = tmp.path().join("full");
    let a = args(&full);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, _, stderr) = valor(&a);
    assert_eq!(code, 0, "{stderr}");

    let killed = tmp.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_valor"))
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once its second checkpoint is on disk, mid-epoch.
    let deadline = Instant::now() + Duration::from_secs(300);
    let checkpoints = killed.join("checkpoints");
    loop {
        let n = std::fs::read_dir(&checkpoints)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ckpt"))
                    .count()
            })
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint within 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before the kill: {status:?}"
    );
    assert!(
        !killed.join("report.json").exists(),
        "the run finished before the kill"
    );

    let (code, _, stderr) = valor(&["train", "--resume", killed.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    let (w_full, s_full) = finished_model(&full);
    let (w_killed, s_killed) = finished_model(&killed);
    assert!(
        w_full == w_killed,
        "the resumed model differs from the uninterrupted one"
    );
    assert_eq!(s_full, s_killed);
}

/// `valor data gen` of `rows` rows into `dir`; the path as a string.
fn gen_rows(dir: &Path, rows: usize) -> String {
    let data = dir.join(format!("data-{rows}.csv"));
    let data = data.to_str().unwrap().to_string();
    let rows = rows.to_string();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", &rows, "--out", &data]);
    assert_eq!(code, 0, "{stderr}");
    data
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `--constraint 'demographic_parity <= 0.05'` on the built-in data (3,000
/// rows, 3 labels; unconstrained, this `tiny` model's gender gap is about
/// 0.45): a multiplier rises and moves some rows' targets, every step's
/// line in metrics.jsonl records the gap, each multiplier and its
/// difference, and the tested epoch meets the
/// bound on validation with the selection margin (its bootstrap upper
/// bound) while still predicting more than one class; the report gives
/// the test gap with its 95% interval.
#[test]
fn constrained_training_meets_the_demographic_parity_bound_on_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_rows(tmp.path(), 3000);
    let run = tmp.path().join("constrained");
    let (code, stdout, stderr) = valor(&[
        "train",
        "--data",
        &data,
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "3",
        "--max-len",
        "48",
        "--vocab-size",
        "500",
        "--batch-size",
        "16",
        "--split",
        "0.6,0.3,0.1",
        "--seed",
        "3",
        "--quiet",
        "--constraint",
        "demographic_parity <= 0.05",
        // `tiny` from scratch at lr 1e-3 changes its gap within tens of
        // steps; the default multiplier step (0.02, set for fine-tuning a
        // pretrained model) follows it too slowly on this small run: on
        // seeds 5–7 it met the margin in 2 of 3 runs without the
        // proportional term and 1 of 3 with it; 0.1 met it on seeds 3–7.
        "--multiplier-lr",
        "0.1",
        // About 90 steps an epoch: validation also at steps 40, 80, 120,
        // … within the epochs, each a candidate for the tested model.
        "--eval-every",
        "40",
    ]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("demographic_parity <= 0.05 (gender)"),
        "{stdout}"
    );
    // 450 validation rows a group resolve a bound of 0.05 for each
    // difference alone (the margin lies about 0.027 above it): no warning
    // of that. But the largest of three labels' noisy differences exceeds
    // the bound often: a model that treats the groups alike would meet
    // this margin in well under half of the evaluations, which is said.
    assert!(!stderr.contains("validation margin lies"), "{stderr}");
    let chance = stderr
        .split("would meet the 80% margin on these 900 validation rows in about ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|p| p.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no chance of a fair model in {stderr}"));
    assert!((5.0..50.0).contains(&chance), "{chance}% in {stderr}");
    assert!(
        stderr.contains("(the largest of 6 signed rate differences"),
        "{stderr}"
    );

    let config = read_json(&run.join("config.json"))["config"].clone();
    assert_eq!(
        config["fairness"]["constraints"],
        json!([{"kind": "demographic_parity", "bound": 0.05}])
    );
    assert_eq!(
        config["fairness"]["constraints_from"],
        json!({"from": "flag"})
    );
    assert_eq!(config["fairness"]["lambda"], json!(0.0));

    // One line per optimizer step: the multiplier and both gaps.
    let lines: Vec<Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "constraints")
        .collect();
    assert_eq!(steps.len() as u64, report_steps(&run));
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], json!(i + 1));
        assert_eq!(s["names"], json!(["demographic_parity <= 0.05 @ gender"]));
        let terms = s["terms"].as_array().unwrap();
        assert_eq!(terms.len(), s["multipliers"].as_array().unwrap().len());
        assert!(!terms.is_empty());
        assert!(
            terms.iter().all(|t| t
                .as_str()
                .unwrap()
                .starts_with("demographic_parity <= 0.05 @ gender: P(ŷ=")),
            "{s}"
        );
        let gap = s["measured_gap"][0].as_f64().unwrap();
        let largest_term = s["term_gap"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .fold(f64::MIN, f64::max);
        assert!((gap - largest_term).abs() < 1e-12, "{s}");
        assert!(
            s["multipliers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m.as_f64().unwrap() >= 0.0),
            "{s}"
        );
        assert_eq!(s["constraint_rows"], json!(32));
    }
    let peak = steps
        .iter()
        .flat_map(|s| s["multipliers"].as_array().unwrap().clone())
        .map(|m| m.as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(peak > 0.05, "no multiplier rose: {peak}");
    assert!(
        steps
            .iter()
            .any(|s| s["relabelled_rows"].as_u64().unwrap() > 0),
        "no row's target moved"
    );

    let report = read_json(&run.join("report.json"));
    let c = &report["constraints"];
    assert_eq!(c["met_on_validation"], json!(true), "{c}");
    // A fifth of the 1,800 training rows (per gender × label cell, each
    // rounded) is held out for the constraint batches and never enters a
    // gradient batch: 3 epochs of batches of 16 over the rest.
    let held = c["holdout_rows"].as_u64().unwrap();
    assert!((355..=365).contains(&held), "{held} rows held out");
    let train_rows = report["rows"]["train"].as_u64().unwrap();
    assert_eq!(train_rows, 1800);
    assert_eq!(report_steps(&run), 3 * (train_rows - held).div_ceil(16));
    assert_eq!(c["groups"], json!(["gender"]));
    let valid = &c["validation"][0];
    assert_eq!(valid["group"], json!("gender"));
    let (gap, upper) = (
        valid["gap"].as_f64().unwrap(),
        valid["upper"].as_f64().unwrap(),
    );
    assert!(gap <= upper && upper <= 0.05, "{valid}");
    assert_eq!(valid["level"], json!(0.8));
    // The margin is one-sided: no lower end is reported beside it.
    assert_eq!(valid["lower"], json!(null), "{valid}");
    // A model treating the groups alike meets this margin on these rows
    // in well under half of its draws (the warning's figure: the same
    // simulation), and holds on the 300 test rows' point gap more often
    // than that but far from always: the summary says so.
    let alike = valid["alike_pass_rate"].as_f64().unwrap();
    assert_eq!(format!("{:.0}", 100.0 * alike), format!("{chance:.0}"));
    let alike_test = c["test"][0]["alike_pass_rate"].as_f64().unwrap();
    assert!(alike < alike_test && alike_test < 0.9, "{alike_test}");
    assert!(
        stdout.contains(&format!(
            "on these test rows a model that treats the groups alike holds in about {:.0}% of draws",
            100.0 * alike_test
        )),
        "{stdout}"
    );
    // Evaluations within the epochs, between their ends.
    let evaluated: Vec<(&str, u64)> = lines
        .iter()
        .filter(|v| v["event"] == "eval" || v["event"] == "epoch")
        .map(|v| (v["event"].as_str().unwrap(), v["step"].as_u64().unwrap()))
        .collect();
    let per_epoch = report_steps(&run) / 3;
    let expected: Vec<(&str, u64)> = (1..=3 * per_epoch)
        .filter_map(|step| {
            if step % per_epoch == 0 {
                Some(("epoch", step))
            } else {
                (step % 40 == 0).then_some(("eval", step))
            }
        })
        .collect();
    assert_eq!(evaluated, expected);
    // The tested model's validation numbers are its metrics line's (the
    // line of its step, an epoch's end or not), and it is not a constant
    // classifier (which meets any parity bound).
    let best = report["best_epoch"].as_u64().unwrap();
    let best_step = report["best_step"].as_u64().unwrap();
    let epoch = lines
        .iter()
        .find(|v| (v["event"] == "epoch" || v["event"] == "eval") && v["step"] == json!(best_step))
        .unwrap();
    assert_eq!(epoch["epoch"], json!(best));
    assert_eq!(epoch["best"], json!(true));
    assert_eq!(&epoch["constraints"][0], valid);
    assert!((epoch["valid"]["selection_rate_gap"].as_f64().unwrap() - gap).abs() < 1e-12);
    let f1 = epoch["valid"]["macro_f1"].as_f64().unwrap();
    assert!(f1 > 0.3, "validation macro-F1 {f1}");

    let test = &c["test"][0];
    let (gap, lower, upper) = (
        test["gap"].as_f64().unwrap(),
        test["lower"].as_f64().unwrap(),
        test["upper"].as_f64().unwrap(),
    );
    assert!(lower <= upper && gap <= upper, "{test}");
    assert_eq!(test["level"], json!(0.95));
    assert_eq!(test["holds"], json!(gap <= 0.05));
    assert!(
        (report["summary"]["selection_rate_gap"].as_f64().unwrap() - gap).abs() < 1e-12,
        "the test gap is the summary's"
    );
}

fn report_steps(run: &Path) -> u64 {
    read_json(&run.join("report.json"))["steps"]
        .as_u64()
        .unwrap()
}

/// Constraints that cannot be checked (no validation split) or that no
/// epoch meets: the report says so and `valor train` exits 1; bad
/// constraints are refused with exit 2 before anything runs.
#[test]
fn unmet_or_malformed_constraints_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let run = tmp.path().join("no-valid");
    let (code, stdout, stderr) = crate::tiny_train(
        &data,
        &run,
        &[
            "--split",
            "0.9,0,0.1",
            "--constraint",
            "equalized_odds <= 0.1",
            "--constraint",
            "equal_opportunity <= 0.2",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("constraints not met"), "{stderr}");
    assert!(
        stdout.contains("equal_opportunity <= 0.2 (gender)"),
        "{stdout}"
    );
    let report = read_json(&run.join("report.json"));
    let c = &report["constraints"];
    assert_eq!(c["met_on_validation"], json!(false));
    assert_eq!(c["test"].as_array().unwrap().len(), 2);
    // One multiplier per signed rate difference between two groups: for
    // each of the 3 labels, equal opportunity bounds its true-positive
    // rate, equalized odds its true- and false-positive rates.
    let names: Vec<&String> = c["multipliers"].as_object().unwrap().keys().collect();
    let groups = report["provenance"]["fairness_groups"].clone();
    assert_eq!(groups, json!(["gender"]));
    let count = |prefix: &str| names.iter().filter(|n| n.starts_with(prefix)).count();
    let pairs = count("equal_opportunity <= 0.2 @ gender: P(ŷ=") / 3;
    assert!(pairs >= 2, "{names:?}");
    assert_eq!(count("equalized_odds <= 0.1 @ gender: P(ŷ="), 6 * pairs);
    assert_eq!(names.len(), 9 * pairs);

    // 60 validation rows cannot resolve a parity bound of 0.05 (about
    // 0.09 at 80% for groups of ~30), nor a true-positive-rate difference
    // on a label's ~10 rows a group: said at the start, naming the
    // constraint, the column, the rows and the way out.
    let run = tmp.path().join("unresolved");
    let (_, _, stderr) = crate::tiny_train(
        &data,
        &run,
        &[
            "--split",
            "0.6,0.3,0.1",
            "--constraint",
            "demographic_parity <= 0.05",
            "--constraint",
            "equal_opportunity <= 0.2",
        ],
    );
    for want in [
        "warning: demographic_parity <= 0.05 on gender: with ",
        "validation rows, the 80% validation margin lies about 0.",
        "give more validation rows or a lower --constraint-confidence",
        "warning: equal_opportunity <= 0.2 on gender: with ",
        "(true-positive rates; at a rate of 0.5, the widest)",
        "(a model that treats the groups alike would meet the 80% margin on these 60 validation rows in about ",
    ] {
        assert!(stderr.contains(want), "expected `{want}` in {stderr}");
    }

    for (extra, want) in [
        (
            vec!["--constraint", "demographic_parity < 0.05"],
            "has no `<=`",
        ),
        (vec!["--constraint", "parity <= 0.05"], "names no known gap"),
        (
            vec!["--constraint", "demographic_parity <= 0"],
            "must lie in (0, 1]",
        ),
        (
            vec![
                "--constraint",
                "demographic_parity <= 0.05",
                "--fairness-lambda",
                "0.5",
            ],
            "give either a fixed weight or constraints",
        ),
        (
            vec![
                "--constraint",
                "demographic_parity <= 0.05",
                "--constraint-confidence",
                "0.3",
            ],
            "[0.5, 1)",
        ),
        (
            vec![
                "--constraint",
                "demographic_parity <= 0.05",
                "--constraint-holdout",
                "0.7",
            ],
            "constraint_holdout` is 0.7; it must lie in [0, 0.5]",
        ),
    ] {
        let out = tmp.path().join("refused");
        let (code, _, stderr) = crate::tiny_train(&data, &out, &extra);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(!out.exists());
    }
}

/// `--split-col split`: every row trains, validates or tests as its
/// `split` value says, row for row (report.json's provenance lists the
/// validation and test ids, the row counts match), `--resume` keeps it, and
/// an unknown value names the row and the column.
#[test]
fn split_column_is_honoured_row_for_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let text = std::fs::read_to_string(&data).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{},split\n", lines.next().unwrap());
    let (mut valid, mut test) = (Vec::new(), Vec::new());
    for (i, line) in lines.enumerate() {
        let id = line.split(',').next().unwrap().to_string();
        // An irregular pattern no stratified draw would produce.
        let split = match (i * 7) % 10 {
            0 | 3 => {
                valid.push(id);
                if i % 2 == 0 { "valid" } else { "Validation" }
            }
            1 => {
                test.push(id);
                "test"
            }
            _ => "train",
        };
        out.push_str(&format!("{line},{split}\n"));
    }
    let split_csv = tmp.path().join("split.csv");
    std::fs::write(&split_csv, out.as_bytes()).unwrap();
    let split_csv = split_csv.to_str().unwrap();

    let run = tmp.path().join("run");
    let (code, _, stderr) = crate::tiny_train(split_csv, &run, &["--split-col", "split"]);
    assert_eq!(code, 0, "{stderr}");
    let report = read_json(&run.join("report.json"));
    let ids = &report["provenance"]["split_ids"];
    assert_eq!(ids["column"], json!("split"));
    assert_eq!(ids["valid"], json!(valid));
    assert_eq!(ids["test"], json!(test));
    assert_eq!(
        report["rows"],
        json!({"train": 200 - valid.len() - test.len(), "valid": valid.len(), "test": test.len()})
    );
    assert_eq!(report["test"]["rows"], json!(test.len()));
    let config = read_json(&run.join("config.json"))["config"].clone();
    assert_eq!(config["split_column"], json!("split"));

    // --split and --split-col exclude each other; a bad value is named.
    let (code, _, stderr) = crate::tiny_train(
        split_csv,
        &tmp.path().join("both"),
        &["--split-col", "split", "--split", "0.8,0.1,0.1"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--split"), "{stderr}");
    let bad = tmp.path().join("bad.csv");
    let bad_text: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l},split"),
            5 => format!("{l},holdout"),
            _ => format!("{l},train"),
        })
        .collect();
    std::fs::write(&bad, bad_text.join("\n")).unwrap();
    let out = tmp.path().join("bad-run");
    let (code, _, stderr) =
        crate::tiny_train(bad.to_str().unwrap(), &out, &["--split-col", "split"]);
    assert_eq!(code, 2, "{stderr}");
    for want in ["bad.csv", "row 5", "column `split`", "`holdout`"] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    assert!(!out.exists());
}

/// `[train] constraints` in a values file: read into the run's
/// configuration (recorded as from the file), and a bad one names the file
/// and the key.
#[test]
fn values_file_sets_constraints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let values = tmp.path().join("values.toml");
    std::fs::write(
        &values,
        "[target]\nfairness = 0.9\n[train]\nconstraints = [\"equal_opportunity <= 0.2\"]\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let (code, _, stderr) = crate::tiny_train(
        &data,
        &out,
        &[
            "--values",
            values.to_str().unwrap(),
            "--split",
            "0.6,0.3,0.1",
        ],
    );
    assert!(code == 0 || code == 1, "{stderr}");
    let c = read_json(&out.join("config.json"))["config"].clone();
    assert_eq!(
        c["fairness"]["constraints"],
        json!([{"kind": "equal_opportunity", "bound": 0.2}])
    );
    assert_eq!(c["fairness"]["constraints_from"]["from"], json!("values"));

    std::fs::write(
        &values,
        "[target]\nfairness = 0.9\n[train]\nconstraints = [\"equal_opportunity <= 2\"]\n",
    )
    .unwrap();
    let refused = tmp.path().join("refused");
    let (code, _, stderr) =
        crate::tiny_train(&data, &refused, &["--values", values.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    for want in ["values.toml", "train.constraints[0]", "(0, 1]"] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    assert!(!refused.exists());
}

/// `valor train --train A --valid B --test C` with `tiny_train`'s quick
/// settings into `out`, and `extra` flags.
fn train_on_files(files: [&Path; 3], out: &Path, extra: &[&str]) -> (i32, String, String) {
    let [train, valid, test] = files.map(|p| p.to_str().unwrap().to_string());
    crate::tiny_train_from(
        &["--train", &train, "--valid", &valid, "--test", &test],
        out,
        extra,
    )
}

/// `--train/--valid/--test`: each file's rows are exactly its split, row
/// for row (report.json's provenance lists the validation and test ids and
/// each split's file, with its rows and SHA-256; the test file's columns
/// may come in another order), config.json records the files and
/// `--resume` reads them again, a changed file stops the resume naming it;
/// a missing file flag, `--data` beside them and a column one file lacks
/// are clear errors.
#[test]
fn split_files_are_honoured_row_for_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let text = std::fs::read_to_string(&data).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let columns: Vec<&str> = header.split(',').collect();
    assert_eq!(columns[0], "id", "{header}");
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    let mut ids: [Vec<String>; 3] = Default::default();
    for (i, line) in lines.enumerate() {
        let id = line.split(',').next().unwrap().to_string();
        // An irregular pattern no stratified draw would produce.
        let which = match (i * 7) % 10 {
            0 | 3 => 1,
            1 => 2,
            _ => 0,
        };
        [&mut train, &mut valid, &mut test][which].push(line.to_string());
        ids[which].push(id);
    }
    // The test file puts the id column last: same columns, another order.
    let rotate = |line: &str| -> String {
        let (first, rest) = line.split_once(',').unwrap();
        format!("{rest},{first}")
    };
    let write = |name: &str, head: &str, rows: &[String]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, format!("{head}\n{}\n", rows.join("\n"))).unwrap();
        path
    };
    let train_csv = write("train.csv", &header, &train);
    let valid_csv = write("valid.csv", &header, &valid);
    let test_rows: Vec<String> = test.iter().map(|l| rotate(l)).collect();
    let test_csv = write("test.csv", &rotate(&header), &test_rows);
    let files = [train_csv.as_path(), valid_csv.as_path(), test_csv.as_path()];

    let run = tmp.path().join("run");
    let (code, stdout, stderr) = train_on_files(files, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    for want in ["splits from files:", "train.csv", "valid.csv", "test.csv"] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    let report = read_json(&run.join("report.json"));
    let p = &report["provenance"];
    assert_eq!(p["split_ids"]["valid"], json!(ids[1]));
    assert_eq!(p["split_ids"]["test"], json!(ids[2]));
    assert!(p["split_ids"].get("column").is_none(), "{p}");
    let counts = ids.clone().map(|v| v.len());
    assert_eq!(
        report["rows"],
        json!({"train": counts[0], "valid": counts[1], "test": counts[2]})
    );
    assert_eq!(report["test"]["rows"], json!(counts[2]));
    for ((split, path), rows) in ["train", "valid", "test"].iter().zip(files).zip(counts) {
        let f = &p["split_files"][split];
        assert_eq!(f["path"], json!(path.to_str().unwrap()), "{split}");
        assert_eq!(f["rows"], json!(rows), "{split}");
        assert_eq!(f["sha256"].as_str().unwrap().len(), 64, "{split}");
    }
    let config = read_json(&run.join("config.json"))["config"].clone();
    assert_eq!(
        config["split_files"],
        json!({
            "train": train_csv.to_str().unwrap(),
            "valid": valid_csv.to_str().unwrap(),
            "test": test_csv.to_str().unwrap(),
        })
    );

    // --resume reads the same files and tests on the same rows.
    let (code, _, stderr) = valor(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    let again = read_json(&run.join("report.json"));
    assert_eq!(again["provenance"]["split_ids"], p["split_ids"]);
    assert_eq!(again["provenance"]["split_files"], p["split_files"]);
    // ... and stops, naming the file, when one changed.
    let mut changed = valid.clone();
    changed.pop();
    std::fs::write(&valid_csv, format!("{header}\n{}\n", changed.join("\n"))).unwrap();
    let (code, _, stderr) = valor(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("valid.csv") && stderr.contains("changed since the run started"),
        "{stderr}"
    );
    std::fs::write(&valid_csv, format!("{header}\n{}\n", valid.join("\n"))).unwrap();

    // Three files or none; never with --data or another split.
    for (extra, want) in [
        (vec!["--data", data.as_str()], "drop --data"),
        (vec!["--split-col", "label"], "drop --split-col"),
        (vec!["--split", "0.8,0.1,0.1"], "drop --split"),
    ] {
        let out = tmp.path().join("refused");
        let (code, _, stderr) = train_on_files(files, &out, &extra);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(!out.exists());
    }
    let out = tmp.path().join("two-files");
    let (code, _, stderr) = valor(&[
        "train",
        "--train",
        train_csv.to_str().unwrap(),
        "--test",
        test_csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--valid missing"), "{stderr}");
    assert!(!out.exists());

    // A column the test file lacks: the error names the file and the column.
    // (The last column: quoted texts with commas come before it.)
    let last = *columns.last().unwrap();
    let drop_last = |line: &str| -> String { line.rsplit_once(',').unwrap().0.to_string() };
    let short: Vec<String> = test.iter().map(|l| drop_last(l)).collect();
    let short_csv = write("short-test.csv", &drop_last(&header), &short);
    let out = tmp.path().join("short");
    let (code, _, stderr) = train_on_files(
        [
            train_csv.as_path(),
            valid_csv.as_path(),
            short_csv.as_path(),
        ],
        &out,
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    let missing = format!("no column `{last}`");
    for want in ["short-test.csv", missing.as_str(), "train.csv"] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    assert!(!out.exists());
}
