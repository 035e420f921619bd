//! `valor predict --precision fp32|bf16|int8`: the low-precision encoder
//! Linear layers (`valor_bert::lowp`, kernels in `valor-kernels`) end to
//! end, on the detected instruction set and on the scalar fallback
//! (`VALOR_KERNELS=scalar`).

use std::path::Path;
use std::process::Command;

use valor_data::read_table;

use crate::predict::tiny_model;

/// Largest |probability − fp32 probability| accepted for bf16 and int8
/// (MiniLM-L6 with the hf-parity head, the ten parity sentences; measured
/// 0.0006 and 0.014; README "Low precision").
const BF16_PROB_MAX_ABS: f64 = 0.003;
const INT8_PROB_MAX_ABS: f64 = 0.03;

/// Runs `valor predict` with `extra` flags and the environment `env`.
fn predict(model: &Path, input: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_valor"));
    cmd.args(["predict", "--model"])
        .arg(model)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(extra)
        .env_remove("VALOR_KERNELS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("valor runs");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{extra:?} {env:?}: {stderr}");
    stderr
}

/// Per row: the label and the probabilities, in `labels` order.
fn rows(path: &Path, labels: &[String]) -> Vec<(String, Vec<f64>)> {
    let t = read_table(path).unwrap();
    let names = t.strings("label").unwrap();
    let probs: Vec<Vec<f64>> = labels
        .iter()
        .map(|l| {
            t.floats(&format!("p_{l}"))
                .unwrap()
                .into_iter()
                .map(Option::unwrap)
                .collect()
        })
        .collect();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.unwrap(), probs.iter().map(|p| p[i]).collect()))
        .collect()
}

#[valor_testkit::shared_test]
fn predict_precision_bf16_and_int8_agree_with_fp32_on_minilm() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, labels, sentences) = crate::minilm_parity_model(dir.path());
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = sentences
        .iter()
        .map(|s| serde_json::json!({"text": s}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let run = |name: &str, extra: &[&str], env: &[(&str, &str)]| {
        let out = dir.path().join(format!("{name}.csv"));
        let stderr = predict(&folder, &input, &out, extra, env);
        (out, stderr)
    };
    let (fp32, _) = run("fp32", &[], &[]);
    let want = rows(&fp32, &labels);
    assert_eq!(want.len(), sentences.len());
    let mut int8_files = Vec::new();
    for (name, precision, env) in [
        ("bf16", "bf16", &[][..]),
        ("bf16-scalar", "bf16", &[("VALOR_KERNELS", "scalar")][..]),
        ("int8", "int8", &[][..]),
        ("int8-scalar", "int8", &[("VALOR_KERNELS", "scalar")][..]),
    ] {
        let (out, stderr) = run(name, &["--precision", precision], env);
        assert!(
            stderr.contains(&format!("precision {precision}")),
            "{stderr}"
        );
        if !env.is_empty() {
            assert!(stderr.contains("on scalar kernels"), "{stderr}");
        }
        let got = rows(&out, &labels);
        let mut worst = 0f64;
        let mut agree = 0;
        for ((gl, gp), (wl, wp)) in got.iter().zip(&want) {
            agree += usize::from(gl == wl);
            for (g, w) in gp.iter().zip(wp) {
                worst = worst.max((g - w).abs());
            }
        }
        let tol = if precision == "int8" {
            INT8_PROB_MAX_ABS
        } else {
            BF16_PROB_MAX_ABS
        };
        assert!(worst <= tol, "{name}: {worst} > {tol}");
        assert!(
            worst > 0.0,
            "{name}: identical to fp32, so the kernels did not run"
        );
        assert!(
            agree * 100 >= want.len() * 99,
            "{name}: labels {agree}/{}",
            want.len()
        );
        if precision == "int8" {
            int8_files.push(std::fs::read(&out).unwrap());
        }
    }
    // Integer products are exact: the fallback writes the same bytes.
    assert_eq!(
        int8_files[0], int8_files[1],
        "int8 fallback differs from the SIMD kernel"
    );
}

#[test]
fn predict_precision_is_refused_with_explain_and_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "text\nthe loan was approved\n").unwrap();
    let out = dir.path().join("pred.csv");
    let (code, _, stderr) =
        crate::predict_file(&model, &input, &out, &["--precision", "int8", "--explain"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--precision int8"), "{stderr}");
    assert!(!out.exists());
    let (code, _, stderr) = crate::predict_file(&model, &input, &out, &["--precision", "fp8"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("fp32, bf16, f16"), "{stderr}");
    // f16 is a GPU precision (the device's float dtype): the CPU refuses it
    // and says what its own precisions are.
    for p in ["f16", "fp16"] {
        let (code, _, stderr) = crate::predict_file(&model, &input, &out, &["--precision", p]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("--precision f16") && stderr.contains("GPU backends"),
            "{stderr}"
        );
        assert!(!out.exists());
    }
    // Explanations by integrated gradients need gradients, which the CPU's
    // low-precision kernels do not have.
    let (code, _, stderr) = crate::valor(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "the loan was approved",
        "--precision",
        "bf16",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--precision bf16") && stderr.contains("explanations"),
        "{stderr}"
    );
    // Training on the CPU is fp32; the message names what bf16 is there.
    let data = dir.path().join("data.csv");
    let (code, _, stderr) = crate::valor(&[
        "data",
        "gen",
        "--rows",
        "200",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = crate::valor(&[
        "train",
        "--quiet",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
        "--precision",
        "bf16",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("training on the CPU runs in fp32") && stderr.contains("wgpu and cuda"),
        "{stderr}"
    );
    assert!(!dir.path().join("run").exists());
    // The tiny model runs in int8 too (hidden 128: ragged for the kernels'
    // 64-column panels only in the head, which stays f32).
    let (code, _, stderr) = crate::predict_file(&model, &input, &out, &["--precision", "int8"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_table(&out).unwrap().strings("label").unwrap().len(), 1);
}
