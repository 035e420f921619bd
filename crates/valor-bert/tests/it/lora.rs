//! LoRA adapters against HF PEFT: `shared/fixtures/peft-lora`, made by its
//! `make_fixture.py` (transformers + PEFT 0.21, fp32, CPU: a LoRA adapter
//! r=8, alpha=16 on query/value of the shared MiniLM with the head saved as
//! a module to save); tolerances from its `meta.json` (`logits_abs`,
//! `merged_vs_unmerged_abs`).

use std::path::{Path, PathBuf};

use valor_bert::burn::module::Module;
use valor_bert::burn::tensor::Device;
use valor_bert::lora::{self, LoraConfig};
use valor_bert::{BertForSequenceClassification, BertInput, LoadOptions, cross_entropy};
use valor_testkit::{Tolerance, assert_all_close, shared_dir};

use crate::common::{self, minilm, read_tensor, to_f64};

fn peft_fixture(shared: &Path) -> PathBuf {
    shared.join("fixtures/peft-lora")
}

fn peft_meta(shared: &Path) -> serde_json::Value {
    let path = peft_fixture(shared).join("meta.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn tolerance(meta: &serde_json::Value, key: &str) -> Tolerance {
    Tolerance::abs(
        meta["tolerances"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("meta.json has no tolerances.{key}")),
    )
}

/// The fixture's padded batch (the HF tokenizer's ids and mask; token types 0).
fn fixture_input(shared: &Path, device: &Device) -> BertInput {
    let reference = peft_fixture(shared).join("reference.safetensors");
    let (shape, ids) = read_tensor(&reference, "input_ids");
    let (_, mask) = read_tensor(&reference, "attention_mask");
    let rows = |v: Vec<f64>| -> Vec<Vec<u32>> {
        v.chunks_exact(shape[1])
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect()
    };
    BertInput::from_rows(&rows(ids), &rows(mask), None, device).unwrap()
}

fn load_with_adapter(
    shared: &Path,
    device: &Device,
) -> (valor_bert::BertConfig, BertForSequenceClassification) {
    let (config, model, report, adapter) = valor_bert::with_device_rng(|| {
        lora::load_hf_with_adapter(
            &minilm(shared),
            &peft_fixture(shared).join("adapter"),
            device,
            LoadOptions::default(),
        )
    })
    .unwrap();
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(adapter.config.r, 8);
    assert_eq!(adapter.config.alpha, 16.0);
    assert_eq!(config.num_labels, 3);
    (config, model)
}

#[valor_testkit::shared_test]
fn peft_adapter_logits_match_peft_unmerged_and_merged() {
    let shared = shared_dir();
    let meta = peft_meta(&shared);
    let device = common::device();
    let (config, model) = load_with_adapter(&shared, &device);
    assert!(lora::has_adapters(&model));
    assert_eq!(lora::adapter_parameters(&model), 73_728);
    let input = fixture_input(&shared, &device);
    let reference = peft_fixture(&shared).join("reference.safetensors");
    let (_, unmerged) = read_tensor(&reference, "logits_unmerged");
    let (_, merged_ref) = read_tensor(&reference, "logits_merged");
    let (_, base_ref) = read_tensor(&reference, "logits_base");

    let ours = to_f64(model.forward(input.clone()));
    assert_all_close(
        "logits (unmerged) vs PEFT",
        &ours,
        &unmerged,
        tolerance(&meta, "logits_abs"),
    );
    // The adapter matters: the base's logits are far from these.
    let moved = ours
        .iter()
        .zip(&base_ref)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(moved > 0.05, "adapter changed the logits by only {moved}");

    let merged = lora::merge(model);
    assert!(!lora::has_adapters(&merged));
    let merged_logits = to_f64(merged.forward(input.clone()));
    assert_all_close(
        "merged vs unmerged",
        &merged_logits,
        &ours,
        tolerance(&meta, "merged_vs_unmerged_abs"),
    );
    assert_all_close(
        "merged vs PEFT merge_and_unload",
        &merged_logits,
        &merged_ref,
        tolerance(&meta, "logits_abs"),
    );

    // The merged model saves as a plain HF folder that loads back to the same logits.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    valor_bert::save_hf(&merged, &config, &out, Some(&minilm(&shared))).unwrap();
    let (loaded_config, loaded, report) =
        common::load_hf(&out, &device, LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(loaded_config.num_labels, 3);
    assert_all_close(
        "saved merged folder vs unmerged",
        &to_f64(loaded.forward(input)),
        &ours,
        tolerance(&meta, "merged_vs_unmerged_abs"),
    );
}

#[valor_testkit::shared_test]
fn saved_adapter_reads_back_to_the_same_logits() {
    let shared = shared_dir();
    let device = common::device();
    let (_, model) = load_with_adapter(&shared, &device);
    let input = fixture_input(&shared, &device);
    let before = to_f64(model.forward(input.clone()));
    let cfg = LoraConfig::new(8, 16.0, vec!["query".into(), "value".into()]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    let labels: Vec<String> = ["negative", "neutral", "positive"].map(String::from).into();
    lora::save_peft(&model, &cfg, &dir, "all-MiniLM-L6-v2", &labels).unwrap();
    // PEFT's names and layout, as the fixture's file has them.
    let ours = dir.join(lora::ADAPTER_WEIGHTS);
    let theirs = peft_fixture(&shared)
        .join("adapter")
        .join(lora::ADAPTER_WEIGHTS);
    for name in [
        "base_model.model.bert.encoder.layer.3.attention.self.value.lora_A.weight",
        "base_model.model.bert.encoder.layer.5.attention.self.query.lora_B.weight",
        "base_model.model.classifier.weight",
    ] {
        assert_eq!(
            read_tensor(&ours, name),
            read_tensor(&theirs, name),
            "{name}"
        );
    }
    let (config, reloaded, _, adapter) = valor_bert::with_device_rng(|| {
        lora::load_hf_with_adapter(&minilm(&shared), &dir, &device, LoadOptions::default())
    })
    .unwrap();
    assert_eq!(adapter.labels.as_deref(), Some(&labels[..]));
    assert_eq!(config.id2label, labels);
    assert_eq!(to_f64(reloaded.forward(input)), before);
}

#[valor_testkit::shared_test]
fn minilm_r8_query_value_trains_73728_adapter_weights_and_the_head() {
    let shared = shared_dir();
    let device = common::device().autodiff();
    // No dropout, so two forward passes compute the same function.
    let options = LoadOptions {
        num_labels: Some(3),
        dropout: Some(0.0),
        ..LoadOptions::default()
    };
    let (_, model, _) = common::load_hf(&minilm(&shared), &device, options).unwrap();
    let input = fixture_input(&shared, &device.clone());
    let before = to_f64(model.forward(input.clone()).inner());
    let cfg = LoraConfig::parse("r=8,alpha=16,targets=query,value").unwrap();
    let model = lora::attach(model, &cfg, 7).unwrap();
    assert_eq!(lora::adapter_parameters(&model), 73_728);
    // Head: 384 × 3 weights + 3 biases.
    assert_eq!(lora::trainable_parameters(&model), 73_728 + 384 * 3 + 3);
    // PEFT's init (B = 0): the model still computes the base's logits.
    let logits = model.forward(input.clone());
    assert_eq!(to_f64(logits.clone().inner()), before);
    // Gradients reach exactly the adapters and the head.
    let labels = valor_bert::burn::Tensor::<1, valor_bert::burn::tensor::Int>::from_data(
        [0i64, 1, 2, 0, 1, 2, 0, 1, 2, 0],
        &device,
    );
    let grads = cross_entropy(logits, labels).mean().backward();
    let grads = valor_bert::burn::optim::GradientsParams::from_grads(grads, &model);
    let mut with_grad = 0;
    struct Count<'a>(&'a valor_bert::burn::optim::GradientsParams, &'a mut usize);
    impl valor_bert::burn::module::ModuleVisitor for Count<'_> {
        fn visit_float<const D: usize>(
            &mut self,
            param: &valor_bert::burn::module::Param<valor_bert::burn::Tensor<D>>,
        ) {
            if self.0.get::<D>(param.id).is_some() {
                *self.1 += param.lazy_shape().num_elements();
            }
        }
    }
    model.visit(&mut Count(&grads, &mut with_grad));
    assert_eq!(with_grad, 73_728 + 384 * 3 + 3);
}

#[test]
fn adapter_folders_missing_or_foreign_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = lora::read_peft(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json"), "{err}");
    std::fs::write(
        tmp.path().join(lora::ADAPTER_CONFIG),
        r#"{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":"query|value"}"#,
    )
    .unwrap();
    std::fs::write(tmp.path().join(lora::ADAPTER_WEIGHTS), b"not safetensors").unwrap();
    let err = lora::read_peft(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("regular expression"), "{err}");
    std::fs::write(
        tmp.path().join(lora::ADAPTER_CONFIG),
        r#"{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["query"],"use_dora":true}"#,
    )
    .unwrap();
    let err = lora::read_peft(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("DoRA"), "{err}");
    std::fs::write(
        tmp.path().join(lora::ADAPTER_CONFIG),
        r#"{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["query"]}"#,
    )
    .unwrap();
    let err = lora::read_peft(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("adapter_model.safetensors"), "{err}");
}
