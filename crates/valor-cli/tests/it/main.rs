//! End-to-end tests of the `valor` binary: one test binary, modules by
//! subcommand.

mod audit;
mod bad_inputs;
mod data;
mod explain;
mod log;
mod lora;
mod model_folder;
mod monitor;
mod overwrite;
mod precision;
mod predict;
mod quantize;
mod remodel;
mod serve;
mod serve_quantized;
// `valor audit --engine spark`: built with the `spark` feature only.
#[cfg(feature = "spark")]
mod spark;
mod train;

use std::process::{Command, Output};

/// Runs `valor` with `args`; returns (exit code, stdout, stderr).
pub fn valor(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_valor"))
        .args(args)
        .output()
        .expect("valor runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The audit flags of the adult fixture's tests (audit.rs, spark.rs):
/// predictions `preds`, groups sex and race and their intersection, Male
/// privileged, a 50-resample bootstrap and a demographic-parity limit the
/// fixture breaches.
pub fn adult_flags(preds: &str) -> Vec<String> {
    [
        "--predictions",
        preds,
        "--group",
        "sex",
        "--group",
        "race",
        "--intersect",
        "--privileged",
        "sex=Male",
        "--bootstrap",
        "50",
        "--max-dp-difference",
        "0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `valor predict --model MODEL --input INPUT --output OUT EXTRA…`;
/// returns what [`valor`] does.
pub fn predict_file(
    model: &std::path::Path,
    input: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_string();
    let mut args = vec![
        "predict".to_string(),
        "--model".into(),
        path(model),
        "--input".into(),
        path(input),
        "--output".into(),
        path(out),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    valor(&args)
}

/// `valor train` of a tiny model (one epoch, `max_len` 32, a 300-piece
/// vocabulary, batches of 16, quiet) on `data` into `out`, with `extra`
/// flags; returns what [`valor`] does.
pub fn tiny_train(data: &str, out: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    tiny_train_from(&["--data", data], out, extra)
}

/// [`tiny_train`] with the data given by the flags `source` (`--data
/// FILE`, or `--train A --valid B --test C`).
pub fn tiny_train_from(
    source: &[&str],
    out: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    let out = out.to_str().expect("a UTF-8 path");
    let mut args = vec!["train"];
    args.extend_from_slice(source);
    args.extend_from_slice(&[
        "--out",
        out,
        "--epochs",
        "1",
        "--max-len",
        "32",
        "--vocab-size",
        "300",
        "--batch-size",
        "16",
        "--quiet",
    ]);
    args.extend_from_slice(extra);
    valor(&args)
}

/// `valor remodel` of `run` towards `values` into `out` with the quick
/// settings the tests share (at most `max_retrainings`, no faithfulness
/// examples, one timing pass, quiet); asserts it exits 0 or 1 (target met or
/// not) and returns its `remodel.json`.
pub fn quick_remodel(
    run: &std::path::Path,
    values: &std::path::Path,
    out: &std::path::Path,
    max_retrainings: &str,
) -> serde_json::Value {
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_string();
    let (run, values, dir) = (path(run), path(values), path(out));
    let (code, _, stderr) = valor(&[
        "remodel",
        "--run",
        &run,
        "--values",
        &values,
        "--out",
        &dir,
        "--max-retrainings",
        max_retrainings,
        "--faithfulness-examples",
        "0",
        "--timing-passes",
        "1",
        "--quiet",
    ]);
    assert!(code == 0 || code == 1, "{stderr}");
    serde_json::from_str(&std::fs::read_to_string(out.join("remodel.json")).unwrap()).unwrap()
}

/// The transformers-parity model: the shared MiniLM with the `hf-parity`
/// fixture's 3-class head, saved as an HF folder `dir/clf`. Returns the
/// folder, its labels in id order and the fixture's sentences.
pub fn minilm_parity_model(
    dir: &std::path::Path,
) -> (std::path::PathBuf, Vec<String>, Vec<String>) {
    let shared = valor_testkit::shared_dir();
    let fixture = shared.join("fixtures/hf-parity");
    let minilm = shared.join("models/all-MiniLM-L6-v2");
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let options = valor_bert::LoadOptions {
        num_labels: Some(3),
        head: Some(fixture.join("head.safetensors")),
        ..valor_bert::LoadOptions::default()
    };
    let (config, model, _) = valor_bert::load_hf(&minilm, &device, options).unwrap();
    let folder = dir.join("clf");
    valor_bert::save_hf(&model, &config, &folder, Some(&minilm)).unwrap();
    let sentences = std::fs::read_to_string(fixture.join("sentences.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (folder, config.id2label.clone(), sentences)
}
