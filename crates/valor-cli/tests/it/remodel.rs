//! `valor remodel`: a bad values.toml is a clear error (exit 2) naming the
//! file and the key, before any run folder is read or model trained; and a
//! tiny run remodelled end to end, its fitting and selection rows disjoint
//! and its constraint bounds recorded in `remodel.json`.

use std::path::Path;

use crate::{quick_remodel, valor};

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

/// Data rows listed under `provenance.rows.<part>.rows` of a remodel.json.
fn rows_of(json: &serde_json::Value, part: &str) -> Vec<u64> {
    json["provenance"]["rows"][part]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("provenance.rows.{part}.rows: {json}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Remodel end to end through the binary on a tiny run: post-processing is
/// fitted and the retrainings choose their epoch on validation rows that
/// are disjoint from the rows every candidate is measured and `V_T` chosen
/// on, both disjoint from the test rows (read back from `remodel.json`);
/// the search retrains under constraint bounds translated from V_D's
/// fairness target, each bound recorded with its reason, never under the
/// target's gap, and the report says why `V_T` won.
#[test]
fn remodel_fits_and_selects_on_disjoint_rows_and_searches_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.csv");
    let data = data.to_str().unwrap();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "300", "--out", data]);
    assert_eq!(code, 0, "{stderr}");
    let run = tmp.path().join("run");
    let (code, _, stderr) = crate::tiny_train(data, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let values = tmp.path().join("values.toml");
    std::fs::write(
        &values,
        "[target]\nfairness = 0.95\naccuracy = 0.9\n[search]\nreweighing = false\n",
    )
    .unwrap();
    let out = tmp.path().join("remodel");
    let json = quick_remodel(&run, &values, &out, "2");

    // Fitting, selection and test rows: disjoint, and together the run's
    // validation and test rows (30 + 30 of 300).
    let fit = rows_of(&json, "fit");
    let select = rows_of(&json, "select");
    let test = rows_of(&json, "confirm");
    assert!(!fit.is_empty() && !select.is_empty(), "{json}");
    assert!(fit.iter().all(|r| !select.contains(r)), "fit ∩ select");
    assert!(
        test.iter().all(|r| !fit.contains(r) && !select.contains(r)),
        "test ∩ validation"
    );
    let rows = &json["provenance"]["rows"];
    assert_eq!(rows["validation"], fit.len() + select.len());
    assert_eq!(rows["test"], test.len());
    assert_eq!((fit.len() + select.len(), test.len()), (30, 30));
    for part in ["fit", "select", "confirm"] {
        assert_eq!(
            rows[part]["count"],
            rows[part]["rows"].as_array().unwrap().len()
        );
        assert!(rows[part]["used_for"].is_string(), "{part}");
    }
    assert!(rows["division"].as_str().unwrap().contains("splitmix64"));
    // The ids are the data file's id column, row for row.
    let text = std::fs::read_to_string(data).unwrap();
    let id_of = |row: u64| {
        text.lines()
            .nth(row as usize + 1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
    };
    for (part, rows_of_part) in [("fit", &fit), ("select", &select)] {
        for (k, &r) in rows_of_part.iter().enumerate().take(5) {
            assert_eq!(rows[part]["ids"][k], id_of(r), "{part} row {r}");
        }
    }

    // The bound search: V_D's fairness 0.95 (the default measure,
    // 1-equalized_odds_difference) is an equalized-odds gap of 0.05; every
    // bound tried is a constraint at or above it, with a reason.
    let search = &json["provenance"]["bound_search"];
    assert_eq!(search["gap"], "equalized_odds", "{search}");
    let target_gap = search["target_gap"].as_f64().unwrap();
    assert!((target_gap - 0.05).abs() < 1e-9, "{search}");
    let tried = search["tried"].as_array().unwrap();
    assert!(!tried.is_empty(), "{search}");
    let mut bounds = Vec::new();
    for t in tried {
        let bound = t["bound"].as_f64().unwrap();
        assert!(bound >= target_gap - 1e-9 && bound <= 1.0, "{t}");
        assert_eq!(t["constraint"], format!("equalized_odds <= {bound}"));
        assert!(t["why"].as_str().unwrap().contains("search point"), "{t}");
        assert!(t["met_on_fitting_rows"].is_boolean(), "{t}");
        bounds.push(bound);
    }
    bounds.dedup();
    assert_eq!(
        bounds.len(),
        tried.len(),
        "a bound was tried twice: {search}"
    );
    assert!(search["chosen"]["why"].as_str().unwrap().contains("V_D"));
    let labels: Vec<&str> = json["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels
            .iter()
            .filter(|l| l.starts_with("equalized_odds<=") && !l.contains('+'))
            .count(),
        tried.len(),
        "{labels:?}"
    );
    assert_eq!(search["chosen"]["candidate"], json["chosen"]["label"]);

    // Each retraining left the selection rows out of its own splits, so it
    // chose its epoch on the fitting rows (int8 copies are model folders,
    // not runs).
    for entry in std::fs::read_dir(out.join("candidates")).unwrap() {
        let entry = entry.unwrap().path();
        if entry.join("quantization.json").is_file() {
            continue;
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.join("config.json")).unwrap())
                .unwrap();
        let held: Vec<u64> = config["config"]["held_out_rows"]
            .as_array()
            .unwrap_or_else(|| panic!("held_out_rows: {config}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert!(select.iter().all(|r| held.contains(r)), "{held:?}");
        assert_eq!(config["provenance"]["rows"]["valid"], fit.len());
        // Constrained retrainings; the LoRA one keeps its anchor's setting.
        assert!(
            config["config"]["fairness"]["constraints"].is_array()
                || config["config"]["lora"].is_object(),
            "{config}"
        );
    }
}

/// Compression as remodel candidates, through the binary: with V_D weighting
/// efficiency heavily (its weight-MB budget at the size of the baseline's
/// int8 copy), remodel weighs a LoRA retraining and int8 copies of the
/// baseline and of the provisional V_T, lists each with its lever,
/// precision, model folder and measured profile, and chooses an int8 copy;
/// its accuracy is that of the int8 predictions `valor predict` makes from
/// the copy on the selection rows, `model/` is a quantised folder, and
/// `valor predict --model OUT/model` runs it at int8. With `--compression
/// none` no such candidate is made.
#[test]
fn remodel_weighs_int8_and_lora_and_chooses_int8_when_efficiency_weighs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let data = tmp.path().join("data.csv");
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "300", "--out", &path(&data)]);
    assert_eq!(code, 0, "{stderr}");
    let run = tmp.path().join("run");
    let (code, _, stderr) = crate::tiny_train(&path(&data), &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    // The int8 copy's weight files, as `valor quantize` writes them.
    let q = tmp.path().join("q");
    let (code, _, stderr) = valor(&[
        "quantize",
        "--model",
        &path(&run.join("model")),
        "--out",
        &path(&q),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mb = |dir: &Path| valor_bert::cost::weight_bytes(dir).unwrap() as f64 / 1e6;
    let (fp32_mb, int8_mb) = (mb(&run.join("model")), mb(&q));
    assert!(int8_mb < 0.6 * fp32_mb, "{int8_mb} vs {fp32_mb}");
    let values = tmp.path().join("values.toml");
    std::fs::write(
        &values,
        format!(
            "[target]\naccuracy = 0.5\nefficiency = 1.0\n[weights]\naccuracy = 0.1\n\
             efficiency = 10.0\n[measure]\naccuracy = \"accuracy\"\n[efficiency]\n\
             budget_gflops_per_example = 1.0\nbudget_weight_mb = {int8_mb}\n\
             [search]\nreweighing = false\n"
        ),
    )
    .unwrap();
    let out = tmp.path().join("remodel");
    // One retraining: no fairness target, so no bound search; it goes to LoRA.
    let json = quick_remodel(&run, &values, &out, "1");
    let candidates = json["candidates"].as_array().unwrap();
    let by_label = |label: &str| {
        candidates
            .iter()
            .find(|c| c["label"] == label)
            .unwrap_or_else(|| panic!("no candidate {label}: {json}"))
    };
    let v0 = &json["v0"];
    let int8 = by_label("baseline+int8");
    let s = &int8["settings"];
    assert_eq!(s["compression"], "int8", "{s}");
    assert_eq!(s["precision"], "int8", "{s}");
    let int8_dir = Path::new(s["model"].as_str().unwrap()).to_path_buf();
    assert!(int8_dir.join("quantization.json").is_file(), "{s}");
    assert_eq!(mb(&int8_dir), int8_mb);
    let efficiency = |c: &serde_json::Value| c["efficiency"].as_f64().unwrap();
    assert_eq!(efficiency(&int8["profile"]), 1.0, "{int8}");
    assert!(efficiency(v0) < 0.9, "{v0}");
    let lora = by_label("baseline+lora");
    let s = &lora["settings"];
    assert_eq!(s["compression"], "lora", "{s}");
    assert_eq!(s["precision"], "fp32", "{s}");
    assert_eq!(s["lora"]["r"], 8, "{s}");
    let lora_model = Path::new(s["model"].as_str().unwrap());
    assert!(lora_model.join("model.safetensors").is_file(), "{s}");
    assert!(
        lora_model
            .parent()
            .unwrap()
            .join("adapter/adapter_config.json")
            .is_file(),
        "{s}"
    );
    // The merged LoRA model costs what the baseline does.
    assert_eq!(efficiency(&lora["profile"]), efficiency(v0), "{lora}");

    // The int8 copy's accuracy on the selection rows is that of the
    // predictions `valor predict` makes from its folder (at int8).
    let preds = tmp.path().join("int8-preds.csv");
    let (code, _, stderr) = crate::predict_file(
        &int8_dir,
        &data,
        &preds,
        &["--id-col", "id", "--max-len", "32"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("int8"), "{stderr}");
    let predicted = csv_column_by_id(&preds, "label");
    let truth = csv_column_by_id(&data, "label");
    let select = json["provenance"]["rows"]["select"]["ids"]
        .as_array()
        .unwrap();
    let right = select
        .iter()
        .map(|id| id.as_str().unwrap())
        .filter(|id| predicted[*id] == truth[*id])
        .count();
    let accuracy = int8["profile"]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - right as f64 / select.len() as f64).abs() < 1e-9,
        "{accuracy} vs {right} of {}",
        select.len()
    );

    // Chosen: an int8 copy; model/ is a quantised folder predict runs at int8.
    let chosen = json["chosen"]["label"].as_str().unwrap();
    assert!(chosen.contains("+int8"), "{chosen}: {json}");
    assert!(out.join("model/quantization.json").is_file());
    let (code, _, stderr) = crate::predict_file(
        &out.join("model"),
        &data,
        &tmp.path().join("chosen.csv"),
        &["--max-len", "32"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("int8"), "{stderr}");

    // Opted out: neither lever.
    let none = tmp.path().join("none");
    let (code, _, stderr) = valor(&[
        "remodel",
        "--run",
        &path(&run),
        "--values",
        &path(&values),
        "--out",
        &path(&none),
        "--max-retrainings",
        "1",
        "--faithfulness-examples",
        "0",
        "--timing-passes",
        "1",
        "--compression",
        "none",
        "--quiet",
    ]);
    assert!(code == 0 || code == 1, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(none.join("remodel.json")).unwrap()).unwrap();
    for c in json["candidates"].as_array().unwrap() {
        assert!(c["settings"]["compression"].is_null(), "{c}");
    }
}

/// `column` of the CSV at `path`, by its `id` column.
fn csv_column_by_id(path: &Path, column: &str) -> std::collections::HashMap<String, String> {
    let table = valor_data::read_table(path).unwrap();
    let strings = |name: &str| table.strings(name).unwrap().into_iter().map(Option::unwrap);
    strings("id").zip(strings(column)).collect()
}
