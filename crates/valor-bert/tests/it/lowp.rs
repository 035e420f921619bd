//! Low-precision inference (`valor_bert::lowp`): int8 and bf16 encoder
//! Linear layers against the f32 model on MiniLM-L6 with the hf-parity
//! fixture head (`make_fixture.py`), the ten parity sentences.
//!
//! Tolerances (documented in `lowp`'s module doc and the README), measured
//! on the flex device (Xeon with AVX512-VNNI/BF16): see the constants; the
//! PyTorch numbers are from `torch.autocast("cpu", torch.bfloat16)` and
//! `quantize_dynamic(model, {nn.Linear}, qint8)` on the fixture's batch
//! (torch 2.x in the peers' environment). The measured error per kernel
//! is printed (`[lowp] …`, with `--nocapture`).
#![allow(clippy::print_stderr)]

use valor_bert::lowp::{self, Precision};
use valor_bert::{BertForSequenceClassification, LoadOptions};
use valor_testkit::shared_dir;

use crate::common::{self, fixture, minilm, read_tensor, reference_input};

/// Largest |logit − f32 logit| accepted for bf16. Measured 0.0018 on the
/// AVX-512 FMA kernel, 0.0023 on AMX, 0.0021 on `vdpbf16ps` (AMD EPYC);
/// PyTorch's bf16 autocast on the same inputs: 0.0044.
const BF16_LOGITS_MAX_ABS: f64 = 0.01;
/// Largest |logit − f32 logit| accepted for int8. Measured 0.066 (the
/// logits span ±0.7); PyTorch's `quantize_dynamic` on the same inputs:
/// 0.185, with 8 of 10 argmaxes kept.
const INT8_LOGITS_MAX_ABS: f64 = 0.1;

fn minilm_with_head(device: &valor_bert::burn::tensor::Device) -> BertForSequenceClassification {
    let shared = shared_dir();
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(&shared).join("head.safetensors")),
        ..LoadOptions::default()
    };
    common::load_hf(&minilm(&shared), device, options)
        .unwrap()
        .1
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap()
}

#[valor_testkit::shared_test(not_wgpu)]
fn int8_and_bf16_logits_stay_close_to_fp32_on_the_parity_sentences() {
    let shared = shared_dir();
    let device = common::device();
    let (input, [batch, _], _) = reference_input(&shared, &device);
    let model = minilm_with_head(&device);
    let fp32 = common::to_f64(model.forward(input.clone()));
    let (_, torch) = read_tensor(&fixture(&shared).join("reference.safetensors"), "logits");
    let labels = fp32.len() / batch;
    for (precision, tol) in [
        (Precision::Bf16, BF16_LOGITS_MAX_ABS),
        (Precision::Int8, INT8_LOGITS_MAX_ABS),
    ] {
        let low = lowp::apply(model.clone(), precision).unwrap();
        assert_eq!(
            lowp::packed_count(&low),
            36,
            "6 Linear layers × 6 encoder layers"
        );
        let logits = common::to_f64(low.forward(input.clone()));
        let worst = logits
            .iter()
            .zip(&fp32)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let worst_torch = logits
            .iter()
            .zip(&torch)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let agree = (0..batch)
            .filter(|&i| {
                argmax(&logits[i * labels..(i + 1) * labels])
                    == argmax(&fp32[i * labels..(i + 1) * labels])
            })
            .count();
        // Seen with `--nocapture`: the figures the README's table quotes
        // per kernel.
        eprintln!(
            "[lowp] {precision} ({}): max |logit - fp32| {worst:.4} (tolerance {tol}), \
             vs PyTorch fp32 {worst_torch:.4}, argmax {agree}/{batch}",
            precision.kernel()
        );
        assert!(
            worst <= tol,
            "{precision} ({}): max |logit - fp32| {worst} > {tol} (vs PyTorch fp32 {worst_torch})",
            precision.kernel()
        );
        assert!(worst > 0.0, "{precision}: the packed kernels did not run");
        assert!(
            agree * 100 >= batch * 99,
            "{precision}: argmax {agree}/{batch}"
        );
    }
}

#[valor_testkit::shared_test(not_wgpu)]
fn packed_weights_change_nothing_under_autodiff() {
    // Explanations and training differentiate the f32 model: on an
    // autodiff device the packed weights are ignored.
    let device = common::device().autodiff();
    let shared = shared_dir();
    let (input, _, _) = reference_input(&shared, &device);
    let model = minilm_with_head(&device);
    let low = lowp::apply(model.clone(), Precision::Int8).unwrap();
    // The same dropout masks for both: seed the device before each pass.
    let run = |m: &BertForSequenceClassification| {
        valor_bert::with_device_rng(|| {
            device.seed(7);
            common::to_f64(m.forward(input.clone()))
        })
    };
    assert_eq!(run(&low), run(&model));
}

#[test]
fn precision_names_parse_and_unknown_ones_are_refused() {
    for p in [
        Precision::Fp32,
        Precision::Bf16,
        Precision::F16,
        Precision::Int8,
    ] {
        assert_eq!(p.name().parse::<Precision>().unwrap(), p);
    }
    assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
    assert_eq!(Precision::Int8.gpu(), None);
    assert_eq!(Precision::F16.gpu(), Some(valor_bert::GpuPrecision::F16));
    let err = "fp8".parse::<Precision>().unwrap_err();
    assert!(
        err.contains("fp32, bf16, f16 (GPU backends) or int8"),
        "{err}"
    );
}
