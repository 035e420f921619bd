//! `valor explain`: JSON, HTML and terminal output for each method, and the
//! faithfulness score.

use crate::predict::{TEXTS, tiny_model};
use crate::valor;

fn explain_json(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = valor(args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn ig_json_has_words_probabilities_and_completeness() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let m = model.to_str().unwrap();
    let v = explain_json(&[
        "explain",
        "--model",
        m,
        "--text",
        "the bank denied the mortgage application",
        "--format",
        "json",
        "--steps",
        "100",
        "--all-classes",
    ]);
    assert_eq!(v["schema"], "valor.explain/1");
    assert_eq!(v["method"], "integrated_gradients");
    let item = &v["items"][0];
    let p = item["probabilities"].as_object().unwrap();
    assert_eq!(p.keys().collect::<Vec<_>>(), vec!["deny", "approve"]);
    let total: f64 = p.values().map(|x| x.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-6);
    let exps = item["explanations"].as_array().unwrap();
    assert_eq!(exps.len(), 2, "--all-classes");
    assert_eq!(exps[0]["label"], item["label"], "predicted class first");
    let words: Vec<&str> = exps[0]["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        words,
        vec!["the", "bank", "denied", "the", "mortgage", "application"]
    );
    for e in exps {
        let c = &e["completeness"];
        assert!(c["relative_delta"].as_f64().unwrap() < 0.02, "{c}");
        let sum: f64 = e["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["score"].as_f64().unwrap())
            .sum();
        let gap = c["logit"].as_f64().unwrap() - c["baseline_logit"].as_f64().unwrap();
        assert!(
            (sum - gap - c["delta"].as_f64().unwrap()).abs() < 1e-5,
            "words sum the tokens"
        );
    }
}

#[test]
fn every_method_and_format_runs_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let m = model.to_str().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = TEXTS[..3]
        .iter()
        .map(|t| serde_json::json!({"body": t}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let i = input.to_str().unwrap();
    for method in ["ig", "rollout", "occlusion"] {
        let v = explain_json(&[
            "explain",
            "--model",
            m,
            "--input",
            i,
            "--text-col",
            "body",
            "--method",
            method,
            "--granularity",
            "token",
            "--format",
            "json",
            "--steps",
            "10",
        ]);
        assert_eq!(v["items"].as_array().unwrap().len(), 3, "{method}");
        assert_eq!(v["items"][2]["id"], "3");
    }
    let html = dir.path().join("e.html");
    let (code, _, stderr) = valor(&[
        "explain",
        "--model",
        m,
        "--input",
        i,
        "--text-col",
        "body",
        "--out",
        html.to_str().unwrap(),
        "--steps",
        "10",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!doctype html>") && page.contains("<span"),
        "{page}"
    );
    // A pipe is not a terminal: no ANSI escapes.
    let (code, stdout, stderr) = valor(&[
        "explain",
        "--model",
        m,
        "--text",
        "stable job, stable income",
        "--steps",
        "10",
        "--format",
        "terminal",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert!(stdout.contains("stable["), "{stdout}");
}

#[test]
fn faithfulness_report_is_in_the_unit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = dir.path().join("in.csv");
    let mut s = String::from("text\n");
    for t in TEXTS {
        s.push_str(&valor_base::csv::record([t], b','));
    }
    std::fs::write(&input, s).unwrap();
    let v = explain_json(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--method",
        "occlusion",
        "--faithfulness",
        "--format",
        "json",
    ]);
    let f = &v["faithfulness"];
    assert_eq!(f["n_examples"], 8);
    assert_eq!(f["per_fraction"].as_array().unwrap().len(), 5);
    let score = f["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{f}");
}

#[test]
fn explain_needs_a_text_or_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = valor(&["explain", "--model", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--text") || stderr.contains("--input"),
        "{stderr}"
    );
}
