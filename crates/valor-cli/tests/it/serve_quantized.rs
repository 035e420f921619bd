//! `valor serve` on a folder `valor quantize` wrote: decisions on the int8
//! kernels with the folder's stored int8 weights, as `valor predict` runs
//! the same folder.

use serde_json::json;
use valor_testkit::{Tolerance, assert_all_close};

use crate::predict::{TEXTS, tiny_model};
use crate::serve::{Served, explains_then_stops, json_of, predict_probs, predict_scores};
use crate::valor;

/// `valor serve --model QFOLDER` (no `--precision`) answers `/predict` with
/// the probabilities `valor predict --model QFOLDER` writes (both int8 by
/// default for a quantised folder), `/info` says int8, and explanations
/// (fp32, on the dequantised weights) still work.
#[test]
fn serve_on_a_quantized_folder_answers_as_predict_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let quantized = dir.path().join("int8");
    let (code, _, stderr) = valor(&[
        "quantize",
        "--model",
        model.to_str().unwrap(),
        "--out",
        quantized.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let want = predict_probs(dir.path(), &quantized);
    let f32_dir = dir.path().join("f32");
    std::fs::create_dir(&f32_dir).unwrap();
    assert_ne!(
        want,
        predict_probs(&f32_dir, &model),
        "the quantised folder predicts as the f32 original"
    );

    let s = Served::start(&quantized, &[], &dir.path().join("serve.err"));
    let (code, _, body) = s.get("/info", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["model_dtype"], "int8", "{body}");
    let (code, _, body) = s.post("/predict", None, &json!({ "inputs": TEXTS }).to_string());
    assert_eq!(code, 200, "{body}");
    assert_all_close(
        "/predict on the quantised folder vs valor predict on it",
        &predict_scores(&body),
        &want,
        Tolerance::abs(1e-6),
    );
    explains_then_stops(s);

    // --precision fp32 serves the dequantised weights in f32: other numbers.
    let s = Served::start(
        &quantized,
        &["--precision", "fp32"],
        &dir.path().join("serve-fp32.err"),
    );
    let (code, _, body) = s.post("/predict", None, &json!({ "inputs": TEXTS }).to_string());
    assert_eq!(code, 200, "{body}");
    assert_ne!(predict_scores(&body), want);
    assert_eq!(s.stop(), 0);
}
