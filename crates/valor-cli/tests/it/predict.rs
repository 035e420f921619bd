//! `valor predict`: streamed predictions, output formats, and parity of the
//! probabilities with the library forward pass and with HF transformers
//! (the MiniLM parity fixture, `shared/fixtures/hf-parity`).

use std::path::{Path, PathBuf};

use valor_bert::burn::tensor::activation::softmax;
use valor_bert::{BertConfig, BertInput, LoadOptions, load_hf};
use valor_data::{TextTokenizer, read_table};
use valor_testkit::{Tolerance, assert_all_close, shared_dir};

use crate::valor;

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
        let (code, _, stderr) = valor(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--batch-size",
            "3",
            "--chunk-rows",
            "5",
            "--id-col",
            "ref",
        ]);
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
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        column(&out, "id"),
        (1..=8).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn predict_explain_adds_top_words() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = write_input(dir.path());
    let out = dir.path().join("pred.jsonl");
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--explain",
        "--steps",
        "8",
    ]);
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
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--text-col",
        "body",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("body"), "{stderr}");
    assert!(!out.exists(), "no partial output");
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        dir.path().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("config.json"), "{stderr}");
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("pred.xlsx").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("xlsx"), "{stderr}");
}

#[test]
fn predict_on_minilm_matches_transformers() {
    let Some(shared) = shared_dir("predict_on_minilm_matches_transformers") else {
        return;
    };
    let fixture = shared.join("fixtures/hf-parity");
    let dir = tempfile::tempdir().unwrap();
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let minilm = shared.join("models/all-MiniLM-L6-v2");
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture.join("head.safetensors")),
        ..LoadOptions::default()
    };
    let (config, model, _) = load_hf(&minilm, &device, options).unwrap();
    let folder = dir.path().join("clf");
    valor_bert::save_hf(&model, &config, &folder, Some(&minilm)).unwrap();

    let sentences = std::fs::read_to_string(fixture.join("sentences.txt")).unwrap();
    let sentences: Vec<&str> = sentences.lines().filter(|l| !l.trim().is_empty()).collect();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = sentences
        .iter()
        .map(|s| serde_json::json!({"text": s}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("pred.csv");
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        folder.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--batch-size",
        "4",
    ]);
    assert_eq!(code, 0, "{stderr}");

    // Expected: softmax of the fixture's logits (HF transformers).
    let bytes = std::fs::read(fixture.join("reference.safetensors")).unwrap();
    let st = safetensors_logits(&bytes);
    assert_eq!(st.len(), sentences.len());
    let labels: Vec<String> = config.id2label.clone();
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
