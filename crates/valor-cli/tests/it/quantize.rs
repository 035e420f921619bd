//! `valor quantize`: the int8 folder that predict and explain load (predict
//! on the int8 kernels by default), its size, what it refuses to overwrite,
//! and the audited compression's two exit paths (a gap within
//! `--max-fairness-shift`: 0; beyond it: 1).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use valor_data::read_table;
use valor_testkit::shared_dir;

use crate::predict::{TEXTS, tiny_model};
use crate::{quick_remodel, valor};

fn quantize(model: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "quantize",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    valor(&args)
}

/// The tiny model (`dir/…`) and its int8 folder `dir/int8`, written by
/// `valor quantize` with no other flag (asserted to exit 0); returns both
/// folders and the command's stdout.
fn quantized_tiny(dir: &Path) -> (PathBuf, PathBuf, String) {
    let model = tiny_model(dir);
    let out = dir.join("int8");
    let (code, stdout, stderr) = quantize(&model, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    (model, out, stdout)
}

/// `dir/in.csv`: the predict tests' [`TEXTS`] as a `text` column.
fn texts_csv(dir: &Path) -> PathBuf {
    let input = dir.join("in.csv");
    let rows: Vec<String> = TEXTS
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    write_csv(&input, "text", &rows);
    input
}

fn column(path: &Path, name: &str) -> Vec<String> {
    read_table(path)
        .unwrap()
        .strings(name)
        .unwrap()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

fn predict(model: &Path, input: &Path, out: &Path) -> Vec<(String, Vec<f64>)> {
    let (code, _, stderr) = crate::predict_file(model, input, out, &[]);
    assert_eq!(code, 0, "{stderr}");
    let labels = column(out, "label");
    let table = read_table(out).unwrap();
    let p_cols: Vec<String> = table
        .column_names()
        .into_iter()
        .filter(|c| c.starts_with("p_"))
        .collect();
    let probs: Vec<Vec<f64>> = p_cols
        .iter()
        .map(|c| column(out, c).iter().map(|v| v.parse().unwrap()).collect())
        .collect();
    labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, probs.iter().map(|p: &Vec<f64>| p[i]).collect()))
        .collect()
}

fn write_csv(path: &Path, header: &str, rows: &[String]) {
    std::fs::write(path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
}

#[test]
fn quantized_folder_is_int8_and_predicts_like_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let (model, out, stdout) = quantized_tiny(dir.path());
    assert!(stdout.contains("int8-per-channel"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("quantization.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema"], "valor.quantize/1");
    let ratio = report["quantized_ratio"].as_f64().unwrap();
    assert!(
        ratio <= 0.35,
        "Linear weights are {ratio} of their fp32 bytes"
    );
    // Every Linear weight of the encoder and pooler, not the head.
    let quantized: Vec<&str> = report["quantized"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(quantized.len(), 2 * 6 + 1, "{quantized:?}");
    assert!(!quantized.iter().any(|n| n.starts_with("classifier")));

    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dtypes: HashMap<String, Dtype> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.dtype()))
        .collect();
    for name in &quantized {
        assert_eq!(dtypes[*name], Dtype::I8, "{name}");
        assert_eq!(dtypes[&format!("{name}_scale")], Dtype::F32, "{name}");
    }
    assert_eq!(dtypes["bert.embeddings.word_embeddings.weight"], Dtype::F32);
    assert!(out.join("tokenizer.json").is_file());

    let input = texts_csv(dir.path());
    let fp32 = predict(&model, &input, &dir.path().join("fp32.csv"));
    let int8 = predict(&out, &input, &dir.path().join("int8.csv"));
    for (i, ((l32, p32), (l8, p8))) in fp32.iter().zip(&int8).enumerate() {
        for (a, b) in p32.iter().zip(p8) {
            assert!((a - b).abs() < 0.02, "row {i}: {p32:?} vs {p8:?}");
        }
        let margin = (p32[0] - p32[1]).abs();
        if margin > 0.04 {
            assert_eq!(l32, l8, "row {i}: {p32:?} vs {p8:?}");
        }
    }

    // explain loads the quantised folder too.
    let (code, stdout, stderr) = valor(&[
        "explain",
        "--model",
        out.to_str().unwrap(),
        "--text",
        TEXTS[0],
        "--method",
        "ig",
        "--steps",
        "8",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
}

/// `valor predict` runs a quantised folder on the int8 kernels by default,
/// with its stored int8 weights and scales (valor-bert's
/// `quant::tests::int8_packs_the_stored_integers_not_a_requantisation`
/// checks the integers themselves): the probabilities of `--precision int8`
/// on an f32 folder holding the same weights dequantised (the kernels'
/// quantisation gives back the same integers; a scale may differ in its
/// last bit), and not those of `--precision fp32`, which computes with the
/// dequantised weights in f32.
#[test]
fn quantized_folder_predicts_on_the_int8_kernels_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out, _) = quantized_tiny(dir.path());
    // The reference: the same weights, dequantised, in a plain f32 folder.
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let (config, dequantized, _) =
        valor_bert::load_hf(&out, &device, valor_bert::LoadOptions::default()).unwrap();
    let reference = dir.path().join("dequantized");
    valor_bert::save_hf(&dequantized, &config, &reference, Some(&out)).unwrap();

    let input = texts_csv(dir.path());
    let run = |model: &Path, name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let (code, _, stderr) = crate::predict_file(model, &input, &path, extra);
        assert_eq!(code, 0, "{stderr}");
        let probs: Vec<f64> = ["p_deny", "p_approve"]
            .iter()
            .flat_map(|c| column(&path, c))
            .map(|v| v.parse().unwrap())
            .collect();
        (probs, stderr)
    };
    let (default, stderr) = run(&out, "default.csv", &[]);
    assert!(
        stderr.contains("precision int8 (the default for a folder `valor quantize` wrote"),
        "{stderr}"
    );
    let (want, _) = run(&reference, "reference.csv", &["--precision", "int8"]);
    let (explicit, _) = run(&out, "explicit.csv", &["--precision", "int8"]);
    assert_eq!(default, explicit, "the default is --precision int8");
    let (fp32, stderr) = run(&out, "fp32.csv", &["--precision", "fp32"]);
    assert!(!stderr.contains("precision int8"), "{stderr}");
    let worst = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    assert!(
        worst(&default, &want) <= 1e-6,
        "quantised folder vs --precision int8 on its dequantised weights: {}",
        worst(&default, &want)
    );
    assert!(
        worst(&default, &fp32) > 1e-5,
        "int8 and fp32 on the quantised folder agree to {}: the kernels did not run",
        worst(&default, &fp32)
    );
}

#[test]
fn quantize_refuses_to_overwrite_what_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    // Not without --overwrite.
    let (model, out, _) = quantized_tiny(dir.path());
    let (code, _, stderr) = quantize(&model, &out, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--overwrite"), "{stderr}");
    // Its own folder with --overwrite: replaced, the user's notes kept.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (code, _, stderr) = quantize(&model, &out, &["--overwrite"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    // Never the model folder, nor a folder it did not write.
    let before = std::fs::read(model.join("model.safetensors")).unwrap();
    let (code, _, stderr) = quantize(&model, &model, &["--overwrite"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("model folder"), "{stderr}");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("data.csv"), "x").unwrap();
    let (code, _, stderr) = quantize(&model, &other, &["--overwrite"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("quantization.json"), "{stderr}");
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(other.join("data.csv")).unwrap(),
        "x"
    );
    // A bad scheme is a usage error.
    let (code, _, stderr) = quantize(&model, &dir.path().join("x"), &["--scheme", "int3"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("int8-per-channel"), "{stderr}");
}

/// A tiny model trained on `valor data gen` rows, then given a dead input
/// channel with large weights: every LayerNorm's channel 0 is zeroed
/// (weight and bias), and every Linear that reads a LayerNorm's output
/// (query, key, value, intermediate) gets weight 10 on that channel. In
/// fp32 the channel is always 0, so those weights change nothing; per-channel
/// int8 scales each row by its largest weight, 10, which rounds the row's
/// real weights (about 0.02) to 0, so decisions change (the outlier-feature
/// weakness of absmax scaling, Dettmers et al. 2022). Returns the model
/// folder and the data file.
fn outlier_model(dir: &Path) -> (PathBuf, String) {
    let data = dir.join("data.csv");
    let data_s = data.to_str().unwrap().to_string();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "400", "--out", &data_s]);
    assert_eq!(code, 0, "{stderr}");
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let (code, _, stderr) = valor(&[
        "train",
        "--data",
        &data_s,
        "--out",
        run_s,
        "--epochs",
        "6",
        "--max-len",
        "32",
        "--vocab-size",
        "300",
        "--batch-size",
        "16",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let model = run.join("model");
    let path = model.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if name.contains("LayerNorm") {
            data[..4].copy_from_slice(&0f32.to_le_bytes());
        }
        let reads_layer_norm = [
            "query.weight",
            "key.weight",
            "value.weight",
            "intermediate.dense.weight",
        ]
        .iter()
        .any(|s| name.ends_with(s));
        if reads_layer_norm {
            for r in 0..shape[0] {
                let at = 4 * (r * shape[1]);
                data[at..at + 4].copy_from_slice(&10f32.to_le_bytes());
            }
        }
        tensors.push((name, shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, out).unwrap();
    (model, data_s)
}

#[test]
fn audited_compression_exits_1_when_a_gap_moves_too_far() {
    let dir = tempfile::tempdir().unwrap();
    let (model, eval) = outlier_model(dir.path());
    let eval = eval.as_str();
    let report = dir.path().join("shift.json");
    let html = dir.path().join("shift.html");
    let common = [
        "--eval",
        eval,
        "--group-col",
        "gender",
        "--bootstrap",
        "200",
        "--seed",
        "3",
    ];

    // Any shift allowed: exit 0, with both audits in the report.
    let mut args = common.to_vec();
    args.extend([
        "--max-fairness-shift",
        "1",
        "--report",
        report.to_str().unwrap(),
    ]);
    args.extend(["--html", html.to_str().unwrap()]);
    let (code, stdout, stderr) = quantize(&model, &dir.path().join("q1"), &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let eval_report = &json["eval"];
    assert_eq!(eval_report["rows"], 400);
    let comparison = &eval_report["comparison"];
    let gaps = comparison["gaps"].as_array().unwrap();
    assert!(
        gaps.iter()
            .any(|g| g["metric"] == "multiclass.selection_rate_gap"),
        "{comparison}"
    );
    assert!(gaps.iter().all(|g| g["exceeds"] == false));
    assert!(gaps.iter().any(|g| !g["before_interval"].is_null()));
    let moved = gaps
        .iter()
        .filter_map(|g| g["shift"].as_f64())
        .fold(0f64, |m, d| m.max(d.abs()));
    assert!(moved > 0.01, "the outliers should move a gap: {comparison}");
    assert!(comparison["accuracy"]["before"].is_f64());
    assert_eq!(eval_report["audit_before"]["schema"], "valor.fair.audit/1");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("passed"), "{page}");
    assert!(page.contains("argmax agreement"), "{page}");

    // The default shift (0.01): exit 1, naming the gap; the model is still written.
    let out = dir.path().join("q2");
    let (code, stdout, stderr) = quantize(&model, &out, &common);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("fairness shift: gender:"), "{stderr}");
    assert!(stdout.contains("EXCEEDS"), "{stdout}");
    assert!(out.join("quantization.json").is_file());

    // Bad eval input: a label the model does not know, named by row and column.
    let bad = dir.path().join("bad.csv");
    write_csv(
        &bad,
        "text,label,grp",
        &["\"a loan\",maybe,a".into(), "\"b\",deny,b".into()],
    );
    let (code, _, stderr) = quantize(
        &model,
        &dir.path().join("q3"),
        &["--eval", bad.to_str().unwrap(), "--group-col", "grp"],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("row 1, column `label`"), "{stderr}");
    assert!(!dir.path().join("q3").exists(), "checked before writing");
    // Without a group column, --eval is refused before any work.
    let (code, _, stderr) = quantize(&model, &dir.path().join("q4"), &["--eval", eval]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--group-col"), "{stderr}");
    assert!(!dir.path().join("q4").exists());
}

/// MiniLM with the parity fixture's head, quantised: at most 0.35 of the
/// Linear weights' fp32 bytes, and the same decisions on PhraseBank rows.
#[valor_testkit::shared_test]
fn quantized_minilm_agrees_with_fp32_on_phrasebank_rows() {
    let shared = shared_dir();
    let fixture = shared.join("fixtures/hf-parity");
    let minilm = shared.join("models/all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().unwrap();
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    let options = valor_bert::LoadOptions {
        num_labels: Some(3),
        head: Some(fixture.join("head.safetensors")),
        ..valor_bert::LoadOptions::default()
    };
    let (config, model, _) = valor_bert::load_hf(&minilm, &device, options).unwrap();
    let folder = dir.path().join("clf");
    valor_bert::save_hf(&model, &config, &folder, Some(&minilm)).unwrap();
    let out = dir.path().join("int8");
    let (code, _, stderr) = quantize(&folder, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("quantization.json")).unwrap())
            .unwrap();
    assert!(
        report["quantized_ratio"].as_f64().unwrap() <= 0.35,
        "{report}"
    );
    let size = |p: &Path| {
        std::fs::metadata(p.join("model.safetensors"))
            .unwrap()
            .len()
    };
    assert!(
        size(&out) < size(&folder) * 7 / 10,
        "{} vs {}",
        size(&out),
        size(&folder)
    );

    let text = std::fs::read_to_string(
        shared.join("datasets/financial-phrasebank/Sentences_AllAgree.txt"),
    )
    .unwrap();
    let rows: Vec<String> = text
        .lines()
        .step_by(37)
        .take(60)
        .map(|l| format!("\"{}\"", l.rsplit_once('@').unwrap().0.replace('"', "\"\"")))
        .collect();
    let input = dir.path().join("in.csv");
    write_csv(&input, "text", &rows);
    let fp32 = predict(&folder, &input, &dir.path().join("fp32.csv"));
    let int8 = predict(&out, &input, &dir.path().join("int8.csv"));
    let same = fp32.iter().zip(&int8).filter(|(a, b)| a.0 == b.0).count();
    assert!(
        same * 100 >= 95 * rows.len(),
        "{same} of {} agree",
        rows.len()
    );
    for (i, ((_, p32), (_, p8))) in fp32.iter().zip(&int8).enumerate() {
        for (a, b) in p32.iter().zip(p8) {
            assert!((a - b).abs() < 0.05, "row {i}: {p32:?} vs {p8:?}");
        }
    }
}

/// The efficiency dimension remodel measures is counted (`cost`: FLOPs and
/// weight bytes per prediction), not timed: two remodelings of one run give
/// the same efficiency value for the baseline and every candidate, even
/// with a single timing pass each.
#[test]
fn remodel_efficiency_is_the_same_on_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    let data = data.to_str().unwrap();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "200", "--out", data]);
    assert_eq!(code, 0, "{stderr}");
    let run = dir.path().join("run");
    let (code, _, stderr) = crate::tiny_train(data, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let values = dir.path().join("values.toml");
    std::fs::write(
        &values,
        "[target]\naccuracy = 0.9\nefficiency = 0.9\n[efficiency]\n\
         budget_gflops_per_example = 0.001\nbudget_weight_mb = 0.5\n",
    )
    .unwrap();
    let efficiency = |name: &str| -> Vec<f64> {
        let out = dir.path().join(name);
        let json = quick_remodel(&run, &values, &out, "1");
        let text = json.to_string();
        let mut v = vec![
            json["v0"]["efficiency"]
                .as_f64()
                .unwrap_or_else(|| panic!("{text}")),
        ];
        for c in json["candidates"].as_array().unwrap() {
            v.push(c["profile"]["efficiency"].as_f64().unwrap());
        }
        v
    };
    let first = efficiency("r1");
    let second = efficiency("r2");
    assert!(first.len() >= 2, "{first:?}");
    assert_eq!(
        first, second,
        "the efficiency values must not depend on timings"
    );
    assert!(first.iter().all(|v| *v > 0.0 && *v < 1.0), "{first:?}");
}
