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

/// MiniLM-L6 with the fixture's 3-label head, as the fixture's script
/// loads it.
fn minilm_with_fixture_head(
    shared: &std::path::Path,
    device: &valor_bert::burn::tensor::Device,
) -> (
    valor_bert::BertConfig,
    valor_bert::BertForSequenceClassification,
    valor_bert::LoadReport,
) {
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(shared).join("head.safetensors")),
        ..LoadOptions::default()
    };
    load_hf(&minilm(shared), device, options).unwrap()
}

#[valor_testkit::shared_test]
fn minilm_forward_matches_transformers() {
    let shared = shared_dir();
    let meta = meta(&shared);
    let device = common::device();
    let (config, model, report) = minilm_with_fixture_head(&shared, &device);
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

/// Inference with the encoder's Linear weights packed in f32
/// (`lowp::apply` at fp32, what `valor predict` and `valor serve` run on
/// CPUs with AVX-512: its own kernel instead of the `gemm` crate's) against
/// the same fixture and tolerances, padded (`forward`) and packed rows
/// (`forward_packed`); on other CPUs and devices nothing is packed, and
/// the test says so. The packed kernel is the CPU's: not run on wgpu.
#[valor_testkit::shared_test(not_wgpu)]
#[allow(clippy::print_stderr)]
fn packed_fp32_inference_matches_transformers() {
    let shared = shared_dir();
    let meta = meta(&shared);
    let device = common::device();
    let (config, model, _) = minilm_with_fixture_head(&shared, &device);
    let packed = valor_bert::lowp::apply(model.clone(), valor_bert::Precision::Fp32).unwrap();
    let count = valor_bert::lowp::packed_count(&packed);
    if valor_kernels::Isa::detect_f32() == valor_kernels::Isa::Scalar {
        assert_eq!(count, 0, "no AVX-512: the gemm crate's product stays");
        eprintln!("packed fp32: this CPU has no AVX-512F; nothing packed, the f32 model checked");
    } else {
        assert_eq!(count, 36, "6 Linear layers × 6 encoder layers");
    }
    let (input, _, _) = reference_input(&shared, &device);
    let (_, expected) = read_tensor(&fixture(&shared).join("reference.safetensors"), "logits");
    let logits = common::to_f64(packed.forward(input.clone()));
    let tol = tolerance(&meta, "logits_max_abs");
    assert_all_close("packed fp32 logits", &logits, &expected, tol);
    // The same sums in another order than the unpacked model's.
    let plain = common::to_f64(model.forward(input));
    assert_all_close(
        "packed vs unpacked fp32",
        &logits,
        &plain,
        Tolerance::abs(1e-5),
    );

    // Packed rows (`valor predict`'s forward): the fixture's sentences
    // without their padding.
    let reference = fixture(&shared).join("reference.safetensors");
    let (shape, ids) = read_tensor(&reference, "input_ids");
    let (_, mask) = read_tensor(&reference, "attention_mask");
    let ids: Vec<Vec<u32>> = ids
        .chunks_exact(shape[1])
        .zip(mask.chunks_exact(shape[1]))
        .map(|(ids, mask)| {
            let len = mask.iter().filter(|&&m| m == 1.0).count();
            ids[..len].iter().map(|&x| x as u32).collect()
        })
        .collect();
    let seqs: Vec<(&[u32], Option<&[u32]>)> = ids.iter().map(|s| (&s[..], None)).collect();
    let rows = valor_bert::PackedInput::new(&seqs, &config, &device).unwrap();
    let logits = common::to_f64(packed.forward_packed(&rows));
    assert_all_close("packed fp32 logits, packed rows", &logits, &expected, tol);
}
