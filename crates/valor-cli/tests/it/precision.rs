//! `valor predict --precision fp32|bf16|int8`: the low-precision encoder
//! Linear layers (`valor_bert::lowp`, kernels in `valor-kernels`) end to
//! end, on the detected instruction set and on the scalar fallback
//! (`VALOR_KERNELS=scalar`); `valor train` and `valor explain` at
//! `--precision bf16` (autocast, `valor_bert::lowp::autocast`).

use std::path::Path;
use std::process::Command;

use valor_data::read_table;

use crate::predict::tiny_model;

/// Largest |probability − fp32 probability| accepted for bf16 and int8
/// (MiniLM-L6 with the hf-parity head, the ten parity sentences; measured
/// 0.0006 and 0.014; README "Low precision").
const BF16_PROB_MAX_ABS: f64 = 0.003;
const INT8_PROB_MAX_ABS: f64 = 0.03;
/// Largest |bf16 − fp32| word attribution of integrated gradients
/// accepted, as a fraction of the largest fp32 attribution (MiniLM with
/// the parity head, three parity sentences; measured 0.0024–0.0045).
const IG_BF16_REL_MAX: f64 = 0.02;

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
    // int8 kernels do not have (bf16 runs as autocast: below).
    let (code, _, stderr) = crate::valor(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "the loan was approved",
        "--precision",
        "int8",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--precision int8") && stderr.contains("explanations"),
        "{stderr}"
    );
    // Training on the CPU is fp32 or bf16; the message says what int8 is.
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
        "int8",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("training on the CPU runs in fp32 or bf16")
            && stderr.contains("valor predict --precision int8"),
        "{stderr}"
    );
    assert!(!dir.path().join("run").exists());
    // The tiny model runs in int8 too (hidden 128: ragged for the kernels'
    // 64-column panels only in the head, which stays f32).
    let (code, _, stderr) = crate::predict_file(&model, &input, &out, &["--precision", "int8"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_table(&out).unwrap().strings("label").unwrap().len(), 1);
}

/// `valor train --precision bf16` on the CPU: autocast, recorded in the
/// run's `config.json`; the saved model differs from the fp32 run's with
/// the same seed (the bf16 products ran) while training stays close to it.
#[test]
fn train_precision_bf16_is_autocast_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    let (code, _, stderr) = crate::valor(&[
        "data",
        "gen",
        "--rows",
        "400",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let train = |precision: &str| {
        let out = dir.path().join(precision);
        let (code, _, stderr) = crate::tiny_train(
            data.to_str().unwrap(),
            &out,
            &["--precision", precision, "--seed", "5"],
        );
        assert_eq!(code, 0, "{precision}: {stderr}");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        let weights = std::fs::read(out.join("model").join("model.safetensors")).unwrap();
        (config, first["train_loss"].as_f64().unwrap(), weights)
    };
    let (config32, loss32, weights32) = train("fp32");
    let (config16, loss16, weights16) = train("bf16");
    assert_eq!(config16["config"]["precision"], "bf16", "{config16}");
    assert!(
        config32["config"].get("precision").is_none(),
        "fp32 is the default: {config32}"
    );
    assert_ne!(weights16, weights32, "bf16 changed nothing");
    assert!(
        (loss16 - loss32).abs() <= 0.01 * loss32,
        "first epoch's training loss {loss16} (bf16) vs {loss32} (fp32)"
    );
}

/// `valor explain --precision bf16` on the CPU: integrated gradients under
/// autocast, the word attributions within a few percent of fp32's largest
/// and the same most important word, on MiniLM with the parity head.
#[valor_testkit::shared_test]
fn explain_bf16_integrated_gradients_stay_close_to_fp32_on_minilm() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _, sentences) = crate::minilm_parity_model(dir.path());
    let folder = folder.to_str().unwrap();
    let explain = |text: &str, precision: &str| {
        let (code, stdout, stderr) = crate::valor(&[
            "explain",
            "--model",
            folder,
            "--text",
            text,
            "--format",
            "json",
            "--precision",
            precision,
        ]);
        assert_eq!(code, 0, "{stderr}");
        if precision == "bf16" {
            assert!(stderr.contains("precision bf16: autocast"), "{stderr}");
        }
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v["items"][0]["explanations"][0]["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["text"].as_str().unwrap().to_string(),
                    a["score"].as_f64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    for text in sentences.iter().take(3) {
        let (full, half) = (explain(text, "fp32"), explain(text, "bf16"));
        assert_eq!(
            full.iter().map(|w| &w.0).collect::<Vec<_>>(),
            half.iter().map(|w| &w.0).collect::<Vec<_>>()
        );
        let scale = full.iter().fold(0f64, |a, w| a.max(w.1.abs()));
        let worst = full
            .iter()
            .zip(&half)
            .fold(0f64, |a, (f, h)| a.max((f.1 - h.1).abs()));
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{text:?}: worst {worst:.4} of {scale:.4}");
        }
        assert!(worst > 0.0, "bf16 changed nothing");
        assert!(
            worst <= IG_BF16_REL_MAX * scale,
            "{text:?}: {worst} of {scale}"
        );
        let top = |w: &[(String, f64)]| {
            w.iter()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|w| w.0.clone())
        };
        assert_eq!(top(&full), top(&half), "{text:?}");
    }
}
