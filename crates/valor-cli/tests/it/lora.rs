//! LoRA through the binary: `--adapter` on predict against the PEFT fixture
//! (`shared/fixtures/peft-lora`, made by its `make_fixture.py` with
//! transformers + PEFT; logits within its `meta.json` tolerances), `valor
//! merge` (a plain folder whose predictions equal the unmerged ones), and
//! `valor train --lora` on MiniLM: PEFT's files with exactly 73,728 adapter
//! weights for r=8 on query/value, loaded back by Valor and by PEFT itself
//! (the peers' Python from `shared/bench/setup.sh`, or `VALOR_PEERS_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;

use valor_testkit::{Tolerance, assert_all_close, shared_dir};

use crate::valor;

fn minilm() -> PathBuf {
    shared_dir().join("models/all-MiniLM-L6-v2")
}

fn fixture() -> PathBuf {
    shared_dir().join("fixtures/peft-lora")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The fixture's sentences as a JSONL input file.
fn fixture_input(dir: &Path) -> (PathBuf, Vec<String>) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("meta.json")).unwrap())
            .unwrap();
    let sentences: Vec<String> = meta["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (write_texts(dir, &sentences), sentences)
}

fn write_texts(dir: &Path, texts: &[String]) -> PathBuf {
    let input = dir.join("in.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .map(|s| serde_json::json!({ "text": s }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    input
}

/// Probabilities of `valor predict` with `args`, row by row, for `labels`.
fn predict(args: &[&str], input: &Path, out: &Path, labels: &[String]) -> Vec<Vec<f64>> {
    let mut all = vec!["predict", "--input", path(input), "--output", path(out)];
    all.extend_from_slice(args);
    let (code, _, stderr) = valor(&all);
    assert_eq!(code, 0, "{stderr}");
    let table = valor_data::read_table(out).unwrap();
    let cols: Vec<Vec<f64>> = labels
        .iter()
        .map(|l| {
            table
                .floats(&format!("p_{l}"))
                .unwrap_or_else(|e| panic!("p_{l}: {e}"))
                .into_iter()
                .map(Option::unwrap)
                .collect()
        })
        .collect();
    (0..cols[0].len())
        .map(|i| cols.iter().map(|c| c[i]).collect())
        .collect()
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f64::MIN, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    logits.iter().map(|l| (l - m).exp() / z).collect()
}

fn fixture_logits(name: &str) -> Vec<Vec<f64>> {
    let bytes = std::fs::read(fixture().join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v: Vec<f64> = t
        .data()
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    v.chunks(t.shape()[1]).map(<[f64]>::to_vec).collect()
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("LABEL_{i}")).collect()
}

#[valor_testkit::shared_test]
fn predict_with_a_peft_adapter_matches_peft_and_merge_equals_unmerged() {
    let dir = tempfile::tempdir().unwrap();
    let (input, sentences) = fixture_input(dir.path());
    let adapter = fixture().join("adapter");
    // The fixture's adapter has no label names; MiniLM's config none for 3 labels.
    let labels = labels(3);
    let unmerged = predict(
        &["--model", path(&minilm()), "--adapter", path(&adapter)],
        &input,
        &dir.path().join("unmerged.csv"),
        &labels,
    );
    assert_eq!(unmerged.len(), sentences.len());
    for (i, logits) in fixture_logits("logits_unmerged").iter().enumerate() {
        assert_all_close(
            &format!("sentence {i} (PEFT, unmerged)"),
            &unmerged[i],
            &softmax(logits),
            Tolerance::abs(1e-4),
        );
    }

    let merged_dir = dir.path().join("merged");
    let base = minilm();
    let merge = |extra: &[&str]| {
        let mut args = vec![
            "merge",
            "--model",
            path(&base),
            "--adapter",
            path(&adapter),
            "--out",
            path(&merged_dir),
        ];
        args.extend_from_slice(extra);
        valor(&args)
    };
    let (code, _, stderr) = merge(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("merged 12 LoRA adapters"), "{stderr}");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(merged_dir.join(f).is_file(), "{f}");
    }
    let merged = predict(
        &["--model", path(&merged_dir)],
        &input,
        &dir.path().join("merged.csv"),
        &labels,
    );
    for i in 0..sentences.len() {
        assert_all_close(
            &format!("sentence {i} (merged vs unmerged)"),
            &merged[i],
            &unmerged[i],
            Tolerance::abs(1e-5),
        );
    }

    // An existing output is refused without --overwrite, and untouched.
    let before = std::fs::read(merged_dir.join("model.safetensors")).unwrap();
    let (code, _, stderr) = merge(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read(merged_dir.join("model.safetensors")).unwrap(),
        before
    );
    std::fs::write(merged_dir.join("notes.txt"), "mine").unwrap();
    let (code, _, stderr) = merge(&["--overwrite"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(merged_dir.join("notes.txt")).unwrap(),
        "mine"
    );
    // Never into the adapter or a folder that holds no model.
    let (code, _, stderr) = valor(&[
        "merge",
        "--model",
        path(&minilm()),
        "--adapter",
        path(&adapter),
        "--out",
        path(&adapter),
        "--overwrite",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is the adapter folder"), "{stderr}");
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("data.csv"), "x").unwrap();
    let (code, _, stderr) = valor(&[
        "merge",
        "--model",
        path(&minilm()),
        "--adapter",
        path(&adapter),
        "--out",
        path(&foreign),
        "--overwrite",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("holds no model"), "{stderr}");
    // A folder that is not an adapter names the file it lacks.
    let (code, _, stderr) = valor(&[
        "predict",
        "--model",
        path(&minilm()),
        "--adapter",
        path(&foreign),
        "--input",
        path(&input),
        "--output",
        path(&dir.path().join("x.csv")),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("adapter_config.json"), "{stderr}");
}

/// Every `step`-th line of Financial PhraseBank (all-agree), as a file the
/// `phrasebank` preset reads.
fn phrasebank_sample(dir: &Path, step: usize) -> PathBuf {
    let src = shared_dir().join("datasets/financial-phrasebank/Sentences_AllAgree.txt");
    let bytes = std::fs::read(src).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .step_by(step)
        .collect();
    let out = dir.join("phrasebank.txt");
    std::fs::write(&out, lines.join(&b'\n')).unwrap();
    out
}

/// The peers' Python (transformers + PEFT): `VALOR_PEERS_PYTHON`, else the
/// environment `shared/bench/setup.sh` makes.
fn peers_python() -> PathBuf {
    if let Some(p) = std::env::var_os("VALOR_PEERS_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let p = PathBuf::from(home).join(".cache/valor-peers-venv/bin/python");
    assert!(
        p.is_file(),
        "{}: missing; run `bash ../shared/bench/setup.sh` (CI does) or set VALOR_PEERS_PYTHON",
        p.display()
    );
    p
}

#[valor_testkit::shared_test(slow)]
fn train_lora_writes_an_adapter_that_valor_and_peft_load_to_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let data = phrasebank_sample(dir.path(), 10);
    let run = dir.path().join("run");
    let (code, _, stderr) = valor(&[
        "train",
        "--data",
        path(&data),
        "--preset",
        "phrasebank",
        "--model",
        path(&minilm()),
        "--lora",
        "r=8,alpha=16,targets=query,value",
        "--epochs",
        "1",
        "--max-len",
        "48",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--out",
        path(&run),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("LoRA r=8 alpha=16"), "{stderr}");
    let adapter = run.join("adapter");

    // PEFT's files: the config, and exactly 73,728 adapter weights (6 layers
    // × query, value × (8×384 + 384×8)) plus the head (3 × 384 + 3).
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["r"], 8);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["query", "value"])
    );
    let bytes = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let count = |pred: &dyn Fn(&str) -> bool| -> usize {
        st.tensors()
            .iter()
            .filter(|(n, _)| pred(n))
            .map(|(_, t)| t.shape().iter().product::<usize>())
            .sum()
    };
    assert_eq!(count(&|n: &str| n.contains(".lora_")), 73_728);
    assert_eq!(count(&|n: &str| n.contains("classifier")), 3 * 384 + 3);
    assert_eq!(st.len(), 6 * 2 * 2 + 2);
    assert!(
        st.names()
            .contains(&"base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight")
    );
    // The adapter learned something: B moved from PEFT's zero init.
    let b = st
        .tensor("base_model.model.bert.encoder.layer.5.attention.self.value.lora_B.weight")
        .unwrap();
    assert!(
        b.data()
            .chunks_exact(4)
            .any(|c| f32::from_le_bytes(c.try_into().unwrap()) != 0.0)
    );

    // Valor: base + adapter (unmerged) equals the run's merged model.
    let texts: Vec<String> = [
        "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
        "The company said it would cut 300 jobs in Finland.",
        "Net sales were flat.",
        "Shares of the bank fell sharply after the profit warning.",
    ]
    .map(String::from)
    .into();
    let input = write_texts(dir.path(), &texts);
    let labels: Vec<String> = ["negative", "neutral", "positive"].map(String::from).into();
    let unmerged = predict(
        &[
            "--model",
            path(&minilm()),
            "--adapter",
            path(&adapter),
            "--max-len",
            "48",
        ],
        &input,
        &dir.path().join("unmerged.csv"),
        &labels,
    );
    let merged = predict(
        &["--model", path(&run.join("model")), "--max-len", "48"],
        &input,
        &dir.path().join("merged.csv"),
        &labels,
    );
    for i in 0..texts.len() {
        assert_all_close(
            &format!("text {i}: merged run model vs base + adapter"),
            &merged[i],
            &unmerged[i],
            Tolerance::abs(1e-5),
        );
    }

    // PEFT: the same adapter, loaded by transformers + PEFT.
    let texts_json = dir.path().join("texts.json");
    std::fs::write(&texts_json, serde_json::to_string(&texts).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/peft_logits.py");
    let out = Command::new(peers_python())
        .args([
            script,
            path(&minilm()),
            path(&adapter),
            path(&texts_json),
            "48",
        ])
        .output()
        .expect("the peers' python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peft: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let logits = peft["logits"].as_array().unwrap();
    assert_eq!(logits.len(), texts.len());
    for (i, row) in logits.iter().enumerate() {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        // The PEFT fixture's tolerance on logits (1e-4), on probabilities.
        assert_all_close(
            &format!("text {i}: PEFT vs Valor"),
            &unmerged[i],
            &softmax(&row),
            Tolerance::abs(1e-4),
        );
    }
}
