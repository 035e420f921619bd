//! Loading and saving HF folders: the names and config keys transformers
//! expects, round trips, and clear errors for missing, misshapen, corrupt
//! and truncated files.

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use serde_json::Value;
use valor_bert::{Error, LoadOptions, load_head, save_hf};
use valor_testkit::{Tolerance, assert_all_close, max_abs_diff, shared_dir};

use crate::common::{
    self, fixture, load_hf, minilm, small_batch, small_config, small_model, to_f64,
};

/// The tensors of HF `BertForSequenceClassification` with `layers` layers,
/// written out by hand from transformers' module tree (independently of
/// the crate's name table), with their shapes.
fn hf_names(
    layers: usize,
    h: usize,
    inter: usize,
    vocab: usize,
    pos: usize,
    types: usize,
    labels: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        (
            "bert.embeddings.word_embeddings.weight".to_string(),
            vec![vocab, h],
        ),
        (
            "bert.embeddings.position_embeddings.weight".into(),
            vec![pos, h],
        ),
        (
            "bert.embeddings.token_type_embeddings.weight".into(),
            vec![types, h],
        ),
        ("bert.embeddings.LayerNorm.weight".into(), vec![h]),
        ("bert.embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for i in 0..layers {
        let p = format!("bert.encoder.layer.{i}");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            v.push((format!("{p}.{m}.weight"), vec![h, h]));
            v.push((format!("{p}.{m}.bias"), vec![h]));
        }
        v.push((format!("{p}.attention.output.LayerNorm.weight"), vec![h]));
        v.push((format!("{p}.attention.output.LayerNorm.bias"), vec![h]));
        v.push((format!("{p}.intermediate.dense.weight"), vec![inter, h]));
        v.push((format!("{p}.intermediate.dense.bias"), vec![inter]));
        v.push((format!("{p}.output.dense.weight"), vec![h, inter]));
        v.push((format!("{p}.output.dense.bias"), vec![h]));
        v.push((format!("{p}.output.LayerNorm.weight"), vec![h]));
        v.push((format!("{p}.output.LayerNorm.bias"), vec![h]));
    }
    v.push(("bert.pooler.dense.weight".into(), vec![h, h]));
    v.push(("bert.pooler.dense.bias".into(), vec![h]));
    v.push(("classifier.weight".into(), vec![labels, h]));
    v.push(("classifier.bias".into(), vec![labels]));
    v.sort();
    v
}

fn names_and_shapes(path: &Path) -> Vec<(String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .iter()
        .map(|(n, t)| (n.to_string(), t.shape().to_vec()))
        .collect();
    v.sort();
    v
}

/// Rewrites a safetensors file through `edit`, which gets every tensor as
/// (name, dtype, shape, bytes) and returns the new list.
type Raw = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

fn rewrite(path: &Path, edit: impl FnOnce(Vec<Raw>) -> Vec<Raw>) {
    let bytes = std::fs::read(path).unwrap();
    let raw: Vec<Raw> = {
        let st = SafeTensors::deserialize(&bytes).unwrap();
        st.iter()
            .map(|(n, t)| {
                (
                    n.to_string(),
                    t.dtype(),
                    t.shape().to_vec(),
                    t.data().to_vec(),
                )
            })
            .collect()
    };
    let raw = edit(raw);
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

/// A saved small model and the logits it gives on `small_batch`.
fn saved_small(dir: &Path) -> Vec<f64> {
    let device = common::device();
    let config = small_config().with_labels(vec!["deny".into(), "review".into(), "approve".into()]);
    let model = small_model(&config, &device, 21);
    let tok = dir.join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::write(tok.join("tokenizer.json"), "{\"version\": \"1.0\"}").unwrap();
    std::fs::write(tok.join("vocab.txt"), "[PAD]\n[CLS]\n").unwrap();
    save_hf(&model, &config, &dir.join("model"), Some(&tok)).unwrap();
    let (input, _, _) = small_batch(&device);
    to_f64(model.forward(input))
}

#[test]
fn saved_folder_has_hf_names_shapes_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    saved_small(tmp.path());
    let dir = tmp.path().join("model");
    let c = small_config();
    #[cfg(unix)]
    {
        // A kept folder, not a temporary directory's owner-only 0700.
        use std::os::unix::fs::PermissionsExt;
        let probe = tmp.path().join("probe");
        std::fs::create_dir(&probe).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), mode(&probe));
    }
    assert_eq!(
        names_and_shapes(&dir.join("model.safetensors")),
        hf_names(2, 32, 64, 97, 40, 2, 3)
    );
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");

    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"])
    );
    assert_eq!(config["model_type"], "bert");
    assert_eq!(
        config["id2label"],
        serde_json::json!({"0": "deny", "1": "review", "2": "approve"})
    );
    assert_eq!(
        config["label2id"],
        serde_json::json!({"deny": 0, "review": 1, "approve": 2})
    );
    for key in [
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "initializer_range",
        "pad_token_id",
    ] {
        assert!(config.get(key).is_some(), "config.json lacks `{key}`");
    }
    assert_eq!(config["hidden_size"], c.hidden_size);
    assert_eq!(config["hidden_act"], "gelu");
    assert_eq!(
        std::fs::read_to_string(dir.join("tokenizer.json")).unwrap(),
        "{\"version\": \"1.0\"}"
    );
    assert!(dir.join("vocab.txt").is_file());
    // Nothing left behind next to the folder.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".valor"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn save_then_load_round_trips_and_consumes_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let before = saved_small(tmp.path());
    let device = common::device();
    let (config, model, report) =
        load_hf(&tmp.path().join("model"), &device, LoadOptions::default()).unwrap();
    assert!(report.prefixed);
    assert!(report.is_complete(), "{report:#?}");
    assert!(report.ignored_buffers.is_empty());
    assert_eq!(report.loaded.len(), valor_bert::name_table(2).len());
    assert_eq!(config.id2label, vec!["deny", "review", "approve"]);
    let (input, _, _) = small_batch(&device);
    assert_eq!(max_abs_diff(&to_f64(model.forward(input)), &before), 0.0);

    // Saving over an existing folder replaces it.
    save_hf(
        &model,
        &config
            .clone()
            .with_labels(vec!["a".into(), "b".into(), "c".into()]),
        &tmp.path().join("model"),
        None,
    )
    .unwrap();
    let (config, _, _) =
        load_hf(&tmp.path().join("model"), &device, LoadOptions::default()).unwrap();
    assert_eq!(config.id2label, vec!["a", "b", "c"]);
    assert!(!tmp.path().join("model/tokenizer.json").exists());
}

#[test]
fn bare_bert_model_names_load_and_the_head_is_drawn_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    saved_small(tmp.path());
    let dir = tmp.path().join("model");
    rewrite(&dir.join("model.safetensors"), |raw| {
        let mut out: Vec<Raw> = raw
            .into_iter()
            .filter(|r| !r.0.starts_with("classifier."))
            .map(|(n, d, s, b)| (n.strip_prefix("bert.").unwrap().to_string(), d, s, b))
            .collect();
        out.push((
            "embeddings.position_ids".into(),
            safetensors::Dtype::I64,
            vec![1, 40],
            vec![0; 320],
        ));
        out.push((
            "cls.predictions.bias".into(),
            safetensors::Dtype::F32,
            vec![97],
            vec![0; 388],
        ));
        out
    });
    let device = common::device();
    let (_, model, report) = load_hf(
        &dir,
        &device,
        LoadOptions {
            init_seed: 3,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(!report.prefixed);
    assert_eq!(
        report.initialized,
        vec!["classifier.weight", "classifier.bias"]
    );
    assert_eq!(report.ignored_buffers, vec!["embeddings.position_ids"]);
    assert_eq!(report.unused, vec!["cls.predictions.bias"]);
    assert_eq!(
        report.loaded["bert.pooler.dense.weight"],
        "pooler.dense.weight"
    );
    assert!(!report.is_complete());
    let (input, _, _) = small_batch(&device);
    let logits = to_f64(model.forward(input));
    assert!(logits.iter().all(|x| x.is_finite()));
}

fn load_err(dir: &Path) -> String {
    let err =
        load_hf(dir, &common::device(), LoadOptions::default()).expect_err("loading should fail");
    err.to_string()
}

#[test]
fn missing_tensor_is_an_error_naming_it_and_its_shape() {
    let tmp = tempfile::tempdir().unwrap();
    saved_small(tmp.path());
    let dir = tmp.path().join("model");
    rewrite(&dir.join("model.safetensors"), |raw| {
        raw.into_iter()
            .filter(|r| r.0 != "bert.encoder.layer.1.output.dense.weight")
            .collect()
    });
    let err = load_hf(&dir, &common::device(), LoadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::MissingTensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("bert.encoder.layer.1.output.dense.weight") && msg.contains("[32, 64]"),
        "{msg}"
    );
}

#[test]
fn misshapen_tensor_is_an_error_naming_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    saved_small(tmp.path());
    let dir = tmp.path().join("model");
    rewrite(&dir.join("model.safetensors"), |raw| {
        raw.into_iter()
            .map(|(n, d, s, b)| {
                if n == "bert.encoder.layer.0.attention.self.key.weight" {
                    (n, d, vec![16, 64], b)
                } else {
                    (n, d, s, b)
                }
            })
            .collect()
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("bert.encoder.layer.0.attention.self.key.weight")
            && msg.contains("[16, 64]")
            && msg.contains("[32, 32]"),
        "{msg}"
    );
}

#[test]
fn head_with_other_label_count_says_how_to_fix_it() {
    let tmp = tempfile::tempdir().unwrap();
    saved_small(tmp.path());
    let dir = tmp.path().join("model");
    let err = load_hf(
        &dir,
        &common::device(),
        LoadOptions {
            num_labels: Some(5),
            ..LoadOptions::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("classifier.weight") && err.contains("[3, 32]") && err.contains("[5, 32]"),
        "{err}"
    );
    assert!(err.contains("num_labels"), "{err}");
}

#[test]
fn corrupt_truncated_and_missing_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    saved_small(tmp.path());
    let dir = tmp.path().join("model");
    let weights = dir.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();

    std::fs::write(&weights, &good[..good.len() / 2]).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );

    std::fs::write(&weights, b"this is not a safetensors file").unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("corrupt"),
        "{msg}"
    );

    std::fs::write(&weights, &good).unwrap();
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, &text[..text.len() / 2]).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("config.json"), "{msg}");

    std::fs::write(
        &config,
        text.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("num_attention_heads"),
        "{msg}"
    );

    std::fs::write(&config, &text).unwrap();
    std::fs::remove_file(&weights).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("missing model.safetensors"), "{msg}");
    std::fs::write(dir.join("pytorch_model.bin"), b"PK").unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("pytorch_model.bin") && msg.contains("safe_serialization"),
        "{msg}"
    );

    let msg = load_err(&tmp.path().join("nowhere"));
    assert!(msg.contains("config.json"), "{msg}");
}

#[valor_testkit::shared_test]
fn minilm_checkpoint_is_consumed_entirely() {
    let shared = shared_dir();
    let device = common::device();
    let (config, model, report) =
        load_hf(&minilm(&shared), &device, LoadOptions::default()).unwrap();
    // A bare BertModel checkpoint: every tensor used but the position_ids
    // buffer, every parameter loaded but the (absent) head.
    assert!(!report.prefixed);
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    assert_eq!(report.ignored_buffers, vec!["embeddings.position_ids"]);
    assert_eq!(
        report.initialized,
        vec!["classifier.weight", "classifier.bias"]
    );
    let checkpoint = names_and_shapes(&minilm(&shared).join("model.safetensors"));
    assert_eq!(
        report.loaded.len() + report.ignored_buffers.len(),
        checkpoint.len()
    );

    let (model, head) = load_head(model, &fixture(&shared).join("head.safetensors")).unwrap();
    assert_eq!(head.loaded.len(), 2);
    assert!(head.unused.is_empty());
    assert_eq!(config.num_labels, model.num_labels());
}

#[valor_testkit::shared_test]
fn minilm_saved_by_valor_has_transformers_names_and_reloads() {
    let shared = shared_dir();
    let device = common::device();
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(&shared).join("head.safetensors")),
        ..LoadOptions::default()
    };
    let (config, model, _) = load_hf(&minilm(&shared), &device, options).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm-cls");
    save_hf(&model, &config, &out, Some(&minilm(&shared))).unwrap();

    // Same tensors as the checkpoint, under BertForSequenceClassification names.
    let mut expected: Vec<(String, Vec<usize>)> =
        names_and_shapes(&minilm(&shared).join("model.safetensors"))
            .into_iter()
            .filter(|(n, _)| n != "embeddings.position_ids")
            .map(|(n, s)| (format!("bert.{n}"), s))
            .collect();
    expected.push(("classifier.weight".into(), vec![3, 384]));
    expected.push(("classifier.bias".into(), vec![3]));
    expected.sort();
    assert_eq!(names_and_shapes(&out.join("model.safetensors")), expected);
    for f in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(out.join(f).is_file(), "{f} copied");
    }

    let (_, again, report) = load_hf(&out, &device, LoadOptions::default()).unwrap();
    assert!(
        report.is_complete() && report.ignored_buffers.is_empty(),
        "{report:#?}"
    );
    let (input, _, _) = common::reference_input(&shared, &device);
    assert_all_close(
        "logits after save/load",
        &to_f64(again.forward(input.clone())),
        &to_f64(model.forward(input)),
        Tolerance::abs(0.0),
    );
}
