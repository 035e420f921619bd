//! Forward parity with HF transformers: `shared/fixtures/hf-parity`, made by
//! its `make_fixture.py` (transformers `BertForSequenceClassification`,
//! fp32, CPU), tolerances from its `meta.json`.

use valor_bert::{ForwardOptions, LoadOptions};
use valor_testkit::{Tolerance, assert_all_close, shared_dir};

use crate::common::{self, fixture, load_hf, meta, minilm, read_tensor, reference_input};

fn tolerance(meta: &serde_json::Value, key: &str) -> Tolerance {
    Tolerance::abs(
        meta["tolerances"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("meta.json has no tolerances.{key}")),
    )
}

#[valor_testkit::shared_test]
fn minilm_forward_matches_transformers() {
    let shared = shared_dir();
    let meta = meta(&shared);
    let device = common::device();
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(&shared).join("head.safetensors")),
        ..LoadOptions::default()
    };
    let (config, model, report) = load_hf(&minilm(&shared), &device, options).unwrap();
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(config.num_labels, 3);

    let (input, [batch, seq_len], mask) = reference_input(&shared, &device);
    let out = model.forward_full(input.clone(), ForwardOptions::default());
    let reference = fixture(&shared).join("reference.safetensors");

    // last_hidden_state only where attention_mask is 1 (padding rows are
    // computed by both but carry no meaning).
    let h = config.hidden_size;
    let (shape, expected) = read_tensor(&reference, "last_hidden_state");
    assert_eq!(shape, vec![batch, seq_len, h]);
    let actual: Vec<f64> = out
        .last_hidden_state
        .clone()
        .try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let keep = |v: &[f64]| -> Vec<f64> {
        v.chunks_exact(h)
            .zip(&mask)
            .filter(|(_, m)| **m == 1)
            .flat_map(|(row, _)| row.iter().copied())
            .collect()
    };
    assert_all_close(
        "last_hidden_state[mask==1]",
        &keep(&actual),
        &keep(&expected),
        tolerance(&meta, "last_hidden_state_max_abs"),
    );

    for (name, actual, key) in [
        ("pooler_output", out.pooled.clone(), "pooler_output_max_abs"),
        (
            "sentence_embedding",
            out.sentence_embedding.clone(),
            "sentence_embedding_max_abs",
        ),
        ("logits", out.logits.clone(), "logits_max_abs"),
    ] {
        let (shape, expected) = read_tensor(&reference, name);
        assert_eq!(shape, actual.dims().to_vec(), "{name} shape");
        assert_all_close(
            name,
            &common::to_f64(actual),
            &expected,
            tolerance(&meta, key),
        );
    }

    // `forward` (logits only) is the same computation.
    let logits = common::to_f64(model.forward(input));
    let (_, expected) = read_tensor(&reference, "logits");
    assert_all_close(
        "forward logits",
        &logits,
        &expected,
        tolerance(&meta, "logits_max_abs"),
    );
}
