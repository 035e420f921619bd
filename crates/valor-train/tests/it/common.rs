//! Shared helpers: small built-in datasets, a small model configuration,
//! reading a run's weights and metrics.

use std::path::{Path, PathBuf};

use valor_bert::burn::module::Module;
use valor_bert::burn::store::ModuleRecord;
use valor_bert::burn::tensor::Bytes;
use valor_bert::{BertConfig, hf_tensors};
use valor_data::{SynthConfig, builtin_spec, generate};
use valor_train::checkpoint::{list_checkpoints, read_checkpoint};
use valor_train::{ModelSource, RunDir, ScratchModel, TrainConfig, Weighting};

/// Writes `rows` rows of the built-in dataset to `dir/finance.csv`.
pub fn builtin_csv(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join("finance.csv");
    generate(&SynthConfig {
        rows,
        ..SynthConfig::default()
    })
    .write(&path)
    .unwrap();
    path
}

/// A WordPiece tokenizer of at most `vocab` pieces trained on `data`'s
/// texts, saved once next to it and reused by every later call, so runs
/// compared with each other read the same file (training is deterministic,
/// `valor_data::tokenize`, so this only saves retraining).
pub fn shared_tokenizer(data: &Path, vocab: usize) -> PathBuf {
    let path = data.with_file_name(format!("tokenizer-{vocab}.json"));
    if !path.exists() {
        let (d, _) = valor_data::load_dataset(&builtin_spec(data)).unwrap();
        let t = valor_data::TextTokenizer::train_wordpiece(&d.texts.as_strs(), vocab, 128).unwrap();
        t.save(&path).unwrap();
    }
    path
}

/// A one-layer, 32-wide BERT on 240 built-in rows (192 for training): 24
/// micro-batches per epoch, accumulated in pairs (12 optimizer steps), two
/// epochs, dropout on,
/// reweighing and a demographic-parity penalty, a checkpoint every 3 steps.
/// Exercises every moving part of the loop in about a second.
pub fn small_config(data: &Path) -> TrainConfig {
    let mut c = TrainConfig::scratch(builtin_spec(data), "tiny");
    c.model = ModelSource::Scratch(ScratchModel {
        preset: "tiny".into(),
        vocab_size: 400,
        tokenizer: Some(shared_tokenizer(data, 400)),
        hidden_size: Some(32),
        num_layers: Some(1),
        num_heads: Some(2),
        intermediate_size: Some(64),
    });
    c.max_len = 48;
    c.epochs = 2;
    c.batch_size = 8;
    c.grad_accum = 2;
    c.eval_batch_size = 32;
    c.lr = 2e-3;
    c.checkpoint_every = Some(3);
    c.keep_last = 2;
    c.weighting = Weighting::Reweighing;
    c.fairness.lambda = 0.5;
    c.length_window_batches = 4;
    c
}

/// Every parameter of the model in the newest checkpoint, by HF name.
pub fn latest_weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    let dir = RunDir::new(run);
    let (_, path) = list_checkpoints(&dir.checkpoints())
        .unwrap()
        .pop()
        .expect("a checkpoint");
    checkpoint_weights(run, &path)
}

/// Every parameter of the model in the checkpoint `path` of the run
/// `run`, by HF name.
pub fn checkpoint_weights(run: &Path, path: &Path) -> Vec<(String, Vec<f32>)> {
    let dir = RunDir::new(run);
    let ckpt = read_checkpoint(path).unwrap();
    let config = BertConfig::from_file(&dir.model_config()).unwrap();
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let model = valor_bert::with_device_rng(|| config.init_classifier(&device));
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(ckpt.model)).unwrap();
    let model = model.load_record(record);
    hf_tensors(&model)
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.values))
        .collect()
}

/// Every parameter of the model a run exported (`model/`), by HF name.
pub fn exported_weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let (_, model, _) = valor_bert::load_hf(
        &RunDir::new(run).model(),
        &device,
        valor_bert::LoadOptions {
            num_labels: None,
            head: None,
            dropout: None,
            init_seed: 0,
        },
    )
    .unwrap();
    hf_tensors(&model)
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.values))
        .collect()
}

/// The lines of `metrics.jsonl` without the wall-clock fields.
pub fn metrics_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(RunDir::new(run).metrics())
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("epoch_seconds");
            }
            v
        })
        .collect()
}

/// Largest absolute difference between two runs' weights (names must match).
pub fn max_weight_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((f64::from(*x) - f64::from(*y)).abs());
        }
    }
    worst
}

/// Files whose name marks an unfinished write, anywhere under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().starts_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}
