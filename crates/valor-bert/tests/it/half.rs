//! Half precision on a GPU device (`valor_bert::configure_precision`,
//! `--precision f16|bf16` on `wgpu`/`cuda`): MiniLM-L6 with the hf-parity
//! fixture head (`make_fixture.py`) on the ten parity sentences, the whole
//! model in the device's half dtype, against the fixture's fp32 logits
//! (transformers, fp32).
//!
//! burn sets a device's float dtype once per process, and the other tests
//! of this binary use the device in f32, so on a GPU backend each precision
//! runs in a child process: this test binary again, this test alone
//! (`--exact`), with [`CHILD_ENV`] naming the precision. A device without
//! the dtype (`supports_dtype`) must refuse it with an error naming the
//! device and the dtype; the child prints which happened.
//!
//! On the CPU backend the GPU precisions are refused with an error that
//! points to the CPU's own `--precision` (the packed Linear kernels).
//!
//! The measured error is printed (`[half] …`, with `--nocapture`), as is a
//! child's output: the GPU check's results quote it.
#![allow(clippy::print_stderr)]

use std::process::Command;

use valor_bert::{
    Backend, Error, GpuPrecision, LoadOptions, Precision, configure_precision, prepare_precision,
};
use valor_testkit::shared_dir;

use crate::common::{self, fixture, minilm, read_tensor, reference_input};

/// Set in the child process: the precision it runs.
const CHILD_ENV: &str = "VALOR_TEST_HALF_PRECISION";
/// This test's name as the harness filters it.
const NAME: &str = "half::half_precision_logits_stay_close_to_the_fp32_fixture";

/// Largest |logit − fp32 fixture logit| accepted in f16 (10-bit
/// significand, everything in f16 including layer norm and softmax).
/// Measured 0.0014 on lavapipe (Mesa llvmpipe 15, the CI's Vulkan), every
/// prediction kept (the logits span ±0.7).
const F16_LOGITS_MAX_ABS: f64 = 0.01;
/// The same for bf16 (7-bit significand, 8× f16's rounding step). Not
/// measured yet: lavapipe has no bf16 arithmetic (the test checks its
/// refusal there); set from the rounding step, to be confirmed on a GPU.
const BF16_LOGITS_MAX_ABS: f64 = 0.08;

fn argmax(row: &[f64]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap()
}

#[valor_testkit::shared_test]
fn half_precision_logits_stay_close_to_the_fp32_fixture() {
    let backend = Backend::from_env().unwrap();
    if backend == Backend::Cpu {
        let device = common::device();
        for p in [GpuPrecision::F16, GpuPrecision::Bf16] {
            let e = configure_precision(&device, p).unwrap_err();
            assert!(matches!(e, Error::PrecisionBackend { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(p.name()) && msg.contains("GPU backends") && msg.contains("int8"),
                "{msg}"
            );
        }
        configure_precision(&device, GpuPrecision::Fp32).unwrap();
        // The CLI's entry (`--precision`): f16 is refused on the CPU; bf16
        // and int8 are the CPU's packed kernels, applied after loading.
        let e =
            prepare_precision(backend, std::slice::from_ref(&device), Precision::F16).unwrap_err();
        assert!(matches!(e, Error::PrecisionBackend { .. }), "{e}");
        for p in [Precision::Fp32, Precision::Bf16, Precision::Int8] {
            prepare_precision(backend, std::slice::from_ref(&device), p).unwrap();
        }
        return;
    }
    if let Ok(p) = std::env::var(CHILD_ENV) {
        child(p.parse().unwrap());
        return;
    }
    // int8 is the CPU's kernels: a GPU backend refuses it, naming both,
    // without touching the device's dtype.
    let e = prepare_precision(backend, &[common::device()], Precision::Int8).unwrap_err();
    assert!(matches!(e, Error::PrecisionCpuOnly { .. }), "{e}");
    assert!(
        e.to_string().contains("int8") && e.to_string().contains(backend.name()),
        "{e}"
    );
    for p in [GpuPrecision::F16, GpuPrecision::Bf16] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, p.name())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("--- {p} child ---\n{text}");
        assert!(out.status.success(), "the {p} child failed:\n{text}");
        assert!(
            text.contains("1 passed"),
            "the {p} child ran no test:\n{text}"
        );
    }
}

/// One precision, in a process of its own.
fn child(precision: GpuPrecision) {
    let shared = shared_dir();
    let device = common::device();
    let name = valor_bert::device_name(&device);
    // Through the CLI's entry: `--precision f16|bf16` on a GPU backend.
    let cli_precision = match precision {
        GpuPrecision::F16 => Precision::F16,
        GpuPrecision::Bf16 => Precision::Bf16,
        GpuPrecision::Fp32 => Precision::Fp32,
    };
    let backend = Backend::from_env().unwrap();
    match prepare_precision(backend, std::slice::from_ref(&device), cli_precision) {
        Ok(()) => {}
        Err(e @ Error::PrecisionUnsupported { .. }) => {
            // A refusal must say which device and which dtype.
            let msg = e.to_string();
            assert!(
                msg.contains(&name) && msg.contains(precision.name()),
                "{msg}"
            );
            eprintln!("[half] {precision} refused on `{name}`: {msg}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(device.settings().float_dtype, precision.dtype());
    let tol = match precision {
        GpuPrecision::F16 => F16_LOGITS_MAX_ABS,
        GpuPrecision::Bf16 => BF16_LOGITS_MAX_ABS,
        GpuPrecision::Fp32 => unreachable!("the parent asks for half precisions only"),
    };
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(&shared).join("head.safetensors")),
        ..LoadOptions::default()
    };
    let (_, model, _) = common::load_hf(&minilm(&shared), &device, options).unwrap();
    assert_eq!(
        model.classifier.weight.val().dtype(),
        precision.dtype().into(),
        "parameters in the device's dtype"
    );
    let (input, [batch, _], _) = reference_input(&shared, &device);
    let logits = common::to_f64(model.forward(input));
    let (_, fp32) = read_tensor(&fixture(&shared).join("reference.safetensors"), "logits");
    let labels = fp32.len() / batch;
    let worst = logits
        .iter()
        .zip(&fp32)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let kept = (0..batch)
        .filter(|&i| {
            argmax(&logits[i * labels..(i + 1) * labels])
                == argmax(&fp32[i * labels..(i + 1) * labels])
        })
        .count();
    eprintln!(
        "[half] {precision} on `{name}`: max |logit - fp32 fixture| = {worst:.5}, predictions kept {kept}/{batch}"
    );
    assert!(
        logits.iter().all(|x| x.is_finite()),
        "{precision} logits not finite: {logits:?}"
    );
    assert!(
        worst <= tol,
        "{precision}: max |logit - fp32| = {worst} > {tol}"
    );
    assert_eq!(kept, batch, "{precision} changed a prediction");
    // The dtype is set for the process: asking for another is an error that
    // names the device and both dtypes.
    let e = configure_precision(&device, GpuPrecision::Fp32).unwrap_err();
    assert!(matches!(e, Error::PrecisionLocked { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&name)
            && msg.contains("fp32")
            && msg.contains(&format!("{:?}", precision.dtype())),
        "{msg}"
    );
    configure_precision(&device.clone().autodiff(), precision).unwrap();
}
