//! `valor predict`: streamed predictions, output formats, and parity of the
//! probabilities with the library forward pass and with HF transformers
//! (the MiniLM parity fixture, `shared/fixtures/hf-parity`).

use std::path::{Path, PathBuf};

use valor_bert::burn::tensor::activation::softmax;
use valor_bert::{BertConfig, BertInput, LoadOptions, load_hf};
use valor_data::{TextTokenizer, read_table};
use valor_testkit::{Tolerance, assert_all_close, shared_dir};

pub const TEXTS: [&str; 8] = [
    "the loan was approved after review",
    "the bank denied the mortgage application",
    "income is stable and savings are high",
    "missed payments and high debt",
    "approved, with a low interest rate",
    "the \"application\" was denied, sadly",
    "stable job, stable income",
    "debt is high and the loan was denied",
];

/// A tiny classifier folder (2 layers, hidden 128, labels `deny`/`approve`)
/// with a WordPiece tokenizer trained on [`TEXTS`].
pub fn tiny_model(dir: &Path) -> PathBuf {
    let tok = TextTokenizer::train_wordpiece(&TEXTS.repeat(4), 200, 64).unwrap();
    let tok_path = dir.join("tokenizer-src.json");
    tok.save(&tok_path).unwrap();
    let mut config = BertConfig::preset("tiny")
        .unwrap()
        .with_labels(vec!["deny".into(), "approve".into()]);
    config.vocab_size = tok.vocab_size();
    config.max_position_embeddings = 64;
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let model = config.init_classifier_seeded(&device, 7);
    let out = dir.join("model");
    valor_bert::save_hf(&model, &config, &out, Some(&tok_path)).unwrap();
    out
}

fn write_input(dir: &Path) -> PathBuf {
    let path = dir.join("in.csv");
    let mut s = String::from("ref,text\n");
    for (i, t) in TEXTS.iter().enumerate() {
        s.push_str(&format!("r{i},\"{}\"\n", t.replace('"', "\"\"")));
    }
    std::fs::write(&path, s).unwrap();
    path
}

/// Probabilities straight from the library, one text at a time.
fn library_probs(model_dir: &Path, texts: &[&str]) -> Vec<Vec<f64>> {
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let (_, model, _) = load_hf(model_dir, &device, LoadOptions::default()).unwrap();
    let tok = TextTokenizer::from_model_dir(model_dir, 128).unwrap();
    texts
        .iter()
        .map(|t| {
            let e = tok.encode(t).unwrap();
            let input = BertInput::from_rows(
                std::slice::from_ref(&e.ids),
                &[vec![1; e.len()]],
                None,
                &device,
            )
            .unwrap();
            softmax(model.forward(input), 1)
                .try_into_vec_as::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect()
}

fn column(path: &Path, name: &str) -> Vec<String> {
    read_table(path)
        .unwrap()
        .strings(name)
        .unwrap()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

fn floats(path: &Path, name: &str) -> Vec<f64> {
    read_table(path)
        .unwrap()
        .floats(name)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

#[test]
fn predict_writes_every_format_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = write_input(dir.path());
    let expected = library_probs(&model, &TEXTS);
    for ext in ["csv", "jsonl", "parquet"] {
        let out = dir.path().join(format!("pred.{ext}"));
        // Small chunks and batches: several chunks, buckets reorder rows.
        let (code, stderr) = predict(
            &model,
            &input,
            &out,
            &["--batch-size", "3", "--chunk-rows", "5", "--id-col", "ref"],
        );
        assert_eq!(code, 0, "{ext}: {stderr}");
        let names = read_table(&out).unwrap().column_names();
        assert_eq!(names, vec!["id", "label", "p_deny", "p_approve"], "{ext}");
        let ids = column(&out, "id");
        assert_eq!(
            ids,
            (0..8).map(|i| format!("r{i}")).collect::<Vec<_>>(),
            "{ext}"
        );
        let p_deny = floats(&out, "p_deny");
        let p_approve = floats(&out, "p_approve");
        let labels = column(&out, "label");
        for i in 0..8 {
            assert_all_close(
                &format!("{ext} row {i}"),
                &[p_deny[i], p_approve[i]],
                &expected[i],
                Tolerance::abs(1e-5),
            );
            let want = if expected[i][1] > expected[i][0] {
                "approve"
            } else {
                "deny"
            };
            assert_eq!(labels[i], want, "{ext} row {i}");
        }
    }
    // Without --id-col the id is the 1-based row number.
    let out = dir.path().join("rows.csv");
    let (code, stderr) = predict(&model, &input, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        column(&out, "id"),
        (1..=8).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    // Predictions are kept: an ordinary file's mode, not a temp file's 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        assert_eq!(mode(&out), mode(&probe), "{:o}", mode(&out));
        assert_eq!(
            mode(&model.join("tokenizer.json")) & 0o044,
            mode(&probe) & 0o044
        );
    }
}

#[test]
fn predict_explain_adds_top_words() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = write_input(dir.path());
    let out = dir.path().join("pred.jsonl");
    let (code, stderr) = predict(&model, &input, &out, &["--explain", "--steps", "8"]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 8);
    for (row, t) in rows.iter().zip(TEXTS) {
        let words: Vec<&str> = row["top_words"].as_str().unwrap().split('|').collect();
        assert_eq!(words.len(), 3, "{row}");
        for w in words {
            assert!(t.to_lowercase().contains(w), "`{w}` is not a word of `{t}`");
        }
    }
}

#[test]
fn predict_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = write_input(dir.path());
    let out = dir.path().join("pred.csv");
    let (code, stderr) = predict(&model, &input, &out, &["--text-col", "body"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("body"), "{stderr}");
    assert!(!out.exists(), "no partial output");
    let (code, stderr) = predict(dir.path(), &input, &out, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("config.json"), "{stderr}");
    let (code, stderr) = predict(&model, &input, &dir.path().join("pred.xlsx"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("xlsx"), "{stderr}");
}

#[valor_testkit::shared_test]
fn predict_on_minilm_matches_transformers() {
    let fixture = shared_dir().join("fixtures/hf-parity");
    let dir = tempfile::tempdir().unwrap();
    let (folder, labels, sentences) = crate::minilm_parity_model(dir.path());
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = sentences
        .iter()
        .map(|s| serde_json::json!({"text": s}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("pred.csv");
    let (code, stderr) = predict(&folder, &input, &out, &["--batch-size", "4"]);
    assert_eq!(code, 0, "{stderr}");

    // Expected: softmax of the fixture's logits (HF transformers).
    let bytes = std::fs::read(fixture.join("reference.safetensors")).unwrap();
    let st = safetensors_logits(&bytes);
    assert_eq!(st.len(), sentences.len());
    for (i, logits) in st.iter().enumerate() {
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
        let want: Vec<f64> = logits.iter().map(|l| (l - m).exp() / z).collect();
        let got: Vec<f64> = labels
            .iter()
            .map(|l| floats(&out, &format!("p_{l}"))[i])
            .collect();
        assert_all_close(&format!("sentence {i}"), &got, &want, Tolerance::abs(1e-4));
    }
}

/// `logits` `[N, 3]` of the fixture, as f64 rows.
fn safetensors_logits(bytes: &[u8]) -> Vec<Vec<f64>> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    let v: Vec<f64> = t
        .data()
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    v.chunks(t.shape()[1]).map(<[f64]>::to_vec).collect()
}

/// A CSV of [`TEXTS`] with a `gender` column (`f`, `m` alternating), or the
/// given group values.
fn write_grouped_input(dir: &Path, groups: &[&str]) -> PathBuf {
    let path = dir.join("grouped.csv");
    let mut s = String::from("ref,text,gender\n");
    for (i, t) in TEXTS.iter().enumerate() {
        let g = groups[i % groups.len()];
        s.push_str(&format!("r{i},\"{}\",{g}\n", t.replace('"', "\"\"")));
    }
    std::fs::write(&path, s).unwrap();
    path
}

fn predict_csv(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--id-col", "ref"];
    args.extend(extra);
    predict(model, input, out, &args)
}

/// [`crate::predict_file`]: exit code, stderr.
fn predict(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let (code, _, stderr) = crate::predict_file(model, input, out, extra);
    (code, stderr)
}

/// Row-major probabilities of an output file, in label order.
fn output_probs(out: &Path) -> Vec<f64> {
    let deny = floats(out, "p_deny");
    let approve = floats(out, "p_approve");
    deny.iter()
        .zip(&approve)
        .flat_map(|(d, a)| [*d, *a])
        .collect()
}

fn argmax_labels(probs: &[f64]) -> Vec<String> {
    probs
        .chunks(2)
        .map(|p| if p[1] > p[0] { "approve" } else { "deny" }.to_string())
        .collect()
}

fn write_thresholds(model: &Path, post: valor_train::PostProcess) -> valor_train::ThresholdsFile {
    let file = valor_train::ThresholdsFile {
        schema: valor_train::THRESHOLDS_SCHEMA.into(),
        group_column: "gender".into(),
        seed: 11,
        post,
    };
    std::fs::write(
        model.join(valor_train::THRESHOLDS_FILE),
        serde_json::to_string_pretty(&file).unwrap(),
    )
    .unwrap();
    file
}

/// Demographic-parity class offsets over labels `deny`, `approve`, one
/// `[deny, approve]` offset pair per group.
fn class_offsets(groups: &[(&str, [f64; 2])]) -> valor_train::PostProcess {
    valor_train::PostProcess::ClassOffsets(valor_fair::ClassOffsets {
        schema: valor_fair::OFFSETS_SCHEMA.into(),
        labels: vec!["deny".into(), "approve".into()],
        constraint: valor_fair::OffsetConstraint::DemographicParity,
        targets: vec![0.5, 0.5],
        offsets: groups
            .iter()
            .map(|(g, o)| (g.to_string(), o.to_vec()))
            .collect(),
        achieved: valor_fair::OrderedMap::new(),
    })
}

#[test]
fn predict_applies_the_thresholds_of_a_remodelled_model() {
    use valor_fair::{
        Constraint, Cut, GroupRule, Objective, OrderedMap, THRESHOLD_SCHEMA, ThresholdOptimizer,
    };
    use valor_train::PostProcess;

    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let groups = ["f", "m", "m", "f", "m"];
    let input = write_grouped_input(dir.path(), &groups);
    let group_of: Vec<&str> = (0..TEXTS.len()).map(|i| groups[i % groups.len()]).collect();

    // Without thresholds.json: argmax labels, no `decision` column.
    let plain = dir.path().join("plain.csv");
    let (code, stderr) = predict_csv(&model, &input, &plain, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        read_table(&plain).unwrap().column_names(),
        ["id", "label", "p_deny", "p_approve"]
    );
    let probs = output_probs(&plain);
    assert_eq!(column(&plain, "label"), argmax_labels(&probs));

    // Randomised thresholds: `f` approves with probability 1/2 (so the
    // seeded draws decide), `m` above a cut between the 4th and 5th of the
    // model's P(approve) (so the rule, not argmax, decides).
    let mut p1: Vec<f64> = probs.chunks(2).map(|p| p[1]).collect();
    p1.sort_by(f64::total_cmp);
    let cut = (p1[3] + p1[4]) / 2.0;
    let rules: OrderedMap<GroupRule> = [
        (
            "f".to_string(),
            GroupRule {
                cuts: vec![],
                constant: 0.5,
            },
        ),
        (
            "m".to_string(),
            GroupRule {
                cuts: vec![Cut {
                    above: Some(cut),
                    weight: 1.0,
                }],
                constant: 0.0,
            },
        ),
    ]
    .into_iter()
    .collect();
    let file = write_thresholds(
        &model,
        PostProcess::Thresholds(ThresholdOptimizer {
            schema: THRESHOLD_SCHEMA.into(),
            constraint: Constraint::DemographicParity,
            objective: Objective::Accuracy,
            grid_size: 10,
            target: [("selection_rate".to_string(), 0.5)].into_iter().collect(),
            objective_value: 0.5,
            groups: rules,
            fit: OrderedMap::new(),
        }),
    );
    // Every format; chunks of 3 rows, so the draws must continue across chunks.
    for ext in ["csv", "jsonl", "parquet"] {
        let out = dir.path().join(format!("thr.{ext}"));
        let (code, stderr) = predict_csv(&model, &input, &out, &["--chunk-rows", "3"]);
        assert_eq!(code, 0, "{ext}: {stderr}");
        assert!(
            stderr.contains("thresholds.json") && stderr.contains("`gender`"),
            "{ext}: says which rule: {stderr}"
        );
        assert_eq!(
            read_table(&out).unwrap().column_names(),
            ["id", "label", "p_deny", "p_approve", "decision"],
            "{ext}"
        );
        let got = output_probs(&out);
        assert_all_close(ext, &got, &probs, Tolerance::abs(0.0));
        let want: Vec<String> = file
            .predict(&got, &group_of)
            .unwrap()
            .into_iter()
            .map(|l| ["deny", "approve"][l as usize].to_string())
            .collect();
        let labels = column(&out, "label");
        assert_eq!(labels, want, "{ext}");
        assert_ne!(labels, argmax_labels(&got), "{ext}: the rule decided");
        // Restarting the draws at each chunk would have given other labels.
        let restarted: Vec<u32> = got
            .chunks(6)
            .zip(group_of.chunks(3))
            .flat_map(|(p, g)| file.predict(p, g).unwrap())
            .collect();
        let want_ids = file.predict(&got, &group_of).unwrap();
        assert_ne!(restarted, want_ids, "the seed exercises the chunking");
        assert!(column(&out, "decision").iter().all(|d| d == "thresholds"));
    }

    // Class offsets, and a group column named on the command line.
    let renamed = dir.path().join("renamed.csv");
    std::fs::write(
        &renamed,
        std::fs::read_to_string(&input)
            .unwrap()
            .replacen("gender", "sex", 1),
    )
    .unwrap();
    let offsets = write_thresholds(
        &model,
        class_offsets(&[("f", [0.0, 2.0]), ("m", [2.0, 0.0])]),
    );
    let out = dir.path().join("offsets.csv");
    let (code, stderr) = predict_csv(&model, &renamed, &out, &["--group-col", "sex"]);
    assert_eq!(code, 0, "{stderr}");
    let want: Vec<String> = offsets
        .predict(&output_probs(&out), &group_of)
        .unwrap()
        .into_iter()
        .map(|l| ["deny", "approve"][l as usize].to_string())
        .collect();
    let by_group: Vec<&str> = group_of
        .iter()
        .map(|g| if *g == "f" { "approve" } else { "deny" })
        .collect();
    assert_eq!(column(&out, "label"), want);
    assert_eq!(column(&out, "label"), by_group);
    assert!(
        column(&out, "decision")
            .iter()
            .all(|d| d == "class_offsets")
    );
}

#[test]
fn predict_with_thresholds_needs_the_group_column() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    write_thresholds(&model, class_offsets(&[("f", [0.0, 0.1])]));
    // The input has no `gender` column.
    let input = write_input(dir.path());
    let out = dir.path().join("pred.csv");
    let (code, stderr) = predict_csv(&model, &input, &out, &[]);
    assert_eq!(code, 2, "{stderr}");
    for want in [
        "thresholds.json",
        "no column `gender`",
        "ref, text",
        "--group-col",
        "--ignore-thresholds",
    ] {
        assert!(stderr.contains(want), "`{want}` in: {stderr}");
    }
    assert!(!out.exists(), "no output");
    let (code, stderr) = predict_csv(&model, &input, &out, &["--group-col", "region"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no column `region`"), "{stderr}");

    // The explicit opt-out: argmax labels, a warning, `decision` = argmax.
    let (code, stderr) = predict_csv(&model, &input, &out, &["--ignore-thresholds"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: --ignore-thresholds") && stderr.contains("NOT"),
        "{stderr}"
    );
    assert_eq!(column(&out, "label"), argmax_labels(&output_probs(&out)));
    assert!(column(&out, "decision").iter().all(|d| d == "argmax"));
}

#[test]
fn predict_with_thresholds_rejects_an_unknown_group() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    write_thresholds(
        &model,
        class_offsets(&[("f", [0.0, 0.1]), ("m", [0.1, 0.0])]),
    );
    // Rows 1..8 are f, m, m, x, f, m, m, x: row 4 (1-based) is the first `x`,
    // in the second chunk of 3.
    let input = write_grouped_input(dir.path(), &["f", "m", "m", "x"]);
    let out = dir.path().join("pred.csv");
    let (code, stderr) = predict_csv(&model, &input, &out, &["--chunk-rows", "3"]);
    assert_eq!(code, 2, "{stderr}");
    for want in [
        "grouped.csv, row 4, column `gender`: `x` is not a group of",
        "thresholds.json",
        "its groups are: f, m",
        "no fallback",
    ] {
        assert!(stderr.contains(want), "`{want}` in: {stderr}");
    }
    assert!(!out.exists(), "no partial output");
}
