//! The bad-input corpus: every kind of broken input a user can hand `valor`
//! (broken, empty, binary, wrong-format, non-UTF-8, duplicate headers,
//! ragged rows, missing or empty columns, unknown labels and groups,
//! NaN/inf/out-of-range numbers, zero or absurd sizes, unreadable or folder
//! paths, mismatched model parts, truncated weights, bad TOML), across every
//! subcommand. Each must be answered with exit 2 and a message that names the
//! file (and the row and column where there is one), never a panic, and must
//! leave every file the user had byte for byte as it was, with no new file
//! beside them.
//!
//! The cases run in one test so that one run lists every failing case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::predict::tiny_model;
use crate::valor;

/// One bad input: the command line, and what its error must mention.
struct Case {
    name: &'static str,
    args: Vec<String>,
    expect: Vec<String>,
}

/// The user's files: a good dataset, a good predictions file, a tiny
/// model, and the broken variants the cases point at.
struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
    /// A copy of the tiny model folder with `edit` applied to it.
    fn model_variant(&self, name: &str, edit: impl FnOnce(&Path)) -> String {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(self.path("model")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        edit(&dir);
        dir.display().to_string()
    }
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.insert(p, bytes);
            }
        }
    }
    out
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn strs(list: &[&str]) -> Vec<String> {
    args(list)
}

/// `valor data inspect FILE` with the text and label columns, then `extra`.
fn inspect(file: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "data",
        "inspect",
        file,
        "--text-col",
        "text",
        "--label-col",
        "label",
    ]);
    a.extend(args(extra));
    a
}

/// `valor audit` of a predictions FILE (y_true, y_pred, group sex), then `extra`.
fn audit(file: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["audit", "--predictions", file, "--label-col", "y_true"]);
    a.extend(args(&["--pred-col", "y_pred", "--group", "sex"]));
    a.extend(args(extra));
    a
}

/// `valor predict --model M --input I --output O`, then `extra`.
fn predict(model: &str, input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "predict", "--model", model, "--input", input, "--output", output,
    ]);
    a.extend(args(extra));
    a
}

/// `valor train --data D --out R`, then `extra`.
fn train(data: &str, run: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["train", "--data", data, "--out", run]);
    a.extend(args(extra));
    a
}

/// A CSV of `rows` data rows for `valor audit`: y_true, y_pred, score, sex.
fn predictions(rows: usize) -> String {
    let mut s = String::from("y_true,y_pred,score,sex\n");
    for i in 0..rows {
        let sex = if i % 3 == 0 { "F" } else { "M" };
        s.push_str(&format!("{},{},0.{},{sex}\n", i % 2, (i / 2) % 2, i % 10));
    }
    s
}

fn cases(c: &Corpus) -> Vec<Case> {
    let good = c.s("data.csv");
    let preds = c.s("preds.csv");
    let model = c.s("model");
    let out = c.s("out/never.csv");
    let run = c.s("runs/never");
    let mut v = Vec::new();
    let mut add = |name: &'static str, a: Vec<String>, expect: Vec<String>| {
        v.push(Case {
            name,
            args: a,
            expect,
        })
    };

    // --- `valor data inspect`: the file itself is broken --------------------
    let f = c.write("empty.csv", "");
    add(
        "empty file",
        inspect(&f, &[]),
        strs(&["empty.csv", "no data rows"]),
    );
    let f = c.write("header_only.csv", "text,label,gender\n");
    add(
        "header only",
        inspect(&f, &[]),
        strs(&["header_only.csv", "no data rows"]),
    );
    let f = c.write(
        "binary.csv",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00binary",
    );
    add(
        "binary file",
        inspect(&f, &[]),
        strs(&["binary.csv", "binary"]),
    );
    let f = c.write("parquet_named.csv", b"PAR1\x15\x04\x15\x10PAR1");
    add(
        "parquet bytes named .csv",
        inspect(&f, &[]),
        strs(&["parquet_named.csv", "Parquet"]),
    );
    let f = c.write("gzip.csv", [0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]);
    add(
        "gzip named .csv",
        inspect(&f, &[]),
        strs(&["gzip.csv", "compressed"]),
    );
    let f = c.write(
        "latin1.csv",
        b"text,label\nfine,a\nalso fine,b\ncaf\xe9 cr\xe8me,a\n",
    );
    add(
        "non-UTF-8 bytes",
        inspect(&f, &[]),
        strs(&["latin1.csv", "row 3", "UTF-8"]),
    );
    let f = c.write("dup_header.csv", "text,label,label\nhello,a,b\nbye,b,a\n");
    add(
        "duplicate header",
        inspect(&f, &[]),
        strs(&["dup_header.csv", "label"]),
    );
    let f = c.write(
        "ragged.csv",
        "text,label\nhello,a\nbye,b,extra,fields\nok,a\n",
    );
    add(
        "ragged rows",
        inspect(&f, &[]),
        strs(&["ragged.csv", "row 2"]),
    );
    let f = c.write(
        "quote.csv",
        "text,label\nhello,a\n\"never closed,b\nok,a\nfine,b\n",
    );
    add(
        "unterminated quote",
        inspect(&f, &[]),
        strs(&["quote.csv", "row 2", "quote"]),
    );
    add(
        "missing text column",
        args(&[
            "data",
            "inspect",
            &good,
            "--text-col",
            "note",
            "--label-col",
            "label",
        ]),
        strs(&["data.csv", "`note` not found", "text"]),
    );
    let f = c.write("empty_text.csv", "text,label\nhello,a\n,b\nok,a\n");
    add(
        "empty text value",
        inspect(&f, &[]),
        strs(&["empty_text.csv", "row 2", "`text`"]),
    );
    let f = c.write("unknown_label.csv", "text,label\nhello,a\nbye,c\nok,b\n");
    add(
        "unknown label",
        inspect(&f, &["--labels", "a, b"]),
        strs(&["unknown_label.csv", "row 2", "`label`", "`c`"]),
    );
    let f = c.write(
        "bad.jsonl",
        "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \n",
    );
    add(
        "broken JSON Lines",
        inspect(&f, &[]),
        strs(&["bad.jsonl", "row 2"]),
    );
    let f = c.write("truncated.parquet", b"PAR1\x00\x00\x00");
    add(
        "truncated Parquet",
        inspect(&f, &[]),
        strs(&["truncated.parquet"]),
    );
    let f = c.write("sheet.xlsx", "not a sheet");
    add(
        "unknown format",
        inspect(&f, &[]),
        strs(&["sheet.xlsx", "xlsx"]),
    );
    add(
        "file does not exist",
        inspect(&c.s("nope.csv"), &[]),
        strs(&["nope.csv"]),
    );
    std::fs::create_dir_all(c.path("folder.csv")).unwrap();
    add(
        "folder as file",
        inspect(&c.s("folder.csv"), &[]),
        strs(&["folder.csv"]),
    );
    add(
        "path through a file",
        inspect(&format!("{good}/x.csv"), &[]),
        strs(&["data.csv/x.csv"]),
    );
    let f = c.write(
        "spec.toml",
        "path = \"data.csv\"\n[columns\ntext = \"text\"\n",
    );
    add(
        "bad spec TOML",
        args(&["data", "inspect", "--spec", &f]),
        strs(&["spec.toml"]),
    );

    // --- `valor data gen`: absurd sizes -------------------------------------
    add(
        "gen zero rows",
        args(&["data", "gen", "--rows", "0", "--out", &out]),
        strs(&["--rows"]),
    );
    add(
        "gen absurd rows",
        args(&["data", "gen", "--rows", "1000000000000", "--out", &out]),
        strs(&["--rows"]),
    );
    add(
        "gen NaN bias",
        args(&["data", "gen", "--bias", "NaN", "--out", &out]),
        strs(&["--bias"]),
    );
    add(
        "gen over existing file",
        args(&["data", "gen", "--rows", "10", "--out", &good]),
        strs(&["data.csv", "--overwrite"]),
    );

    // --- `valor audit` -------------------------------------------------------
    let f = c.write("nan_score.csv", predictions(5).replacen("0.2,", "NaN,", 1));
    add(
        "NaN score",
        args(&[
            "audit",
            "--predictions",
            &f,
            "--label-col",
            "y_true",
            "--pred-col",
            "y_pred",
            "--score-col",
            "score",
            "--group",
            "sex",
        ]),
        strs(&["nan_score.csv", "row 3", "column `score`", "NaN"]),
    );
    let f = c.write("inf_score.csv", predictions(5).replacen("0.3,", "inf,", 1));
    add(
        "infinite score",
        args(&[
            "audit",
            "--predictions",
            &f,
            "--label-col",
            "y_true",
            "--pred-col",
            "y_pred",
            "--score-col",
            "score",
            "--group",
            "sex",
        ]),
        strs(&["inf_score.csv", "row 4", "column `score`", "inf"]),
    );
    let f = c.write(
        "text_score.csv",
        predictions(5).replacen("0.1,", "high,", 1),
    );
    add(
        "score that is not a number",
        args(&[
            "audit",
            "--predictions",
            &f,
            "--label-col",
            "y_true",
            "--pred-col",
            "y_pred",
            "--score-col",
            "score",
            "--group",
            "sex",
        ]),
        strs(&["text_score.csv", "row 2", "`score`"]),
    );
    let f = c.write("empty_pred.csv", "y_true,y_pred,sex\n1,1,F\n0,,M\n1,0,M\n");
    add(
        "empty prediction",
        audit(&f, &[]),
        strs(&["empty_pred.csv", "row 2", "`y_pred`"]),
    );
    add(
        "missing prediction column",
        args(&[
            "audit",
            "--predictions",
            &preds,
            "--label-col",
            "y_true",
            "--pred-col",
            "prediction",
            "--group",
            "sex",
        ]),
        strs(&["preds.csv", "`prediction` not found"]),
    );
    add(
        "missing group column",
        args(&[
            "audit",
            "--predictions",
            &preds,
            "--label-col",
            "y_true",
            "--pred-col",
            "y_pred",
            "--group",
            "race",
        ]),
        strs(&["preds.csv", "`race` not found"]),
    );
    add(
        "label outside --labels",
        audit(&preds, &["--labels", "0, 2"]),
        strs(&["preds.csv", "row 2", "column `y_true`", "`1`"]),
    );
    let f = c.write("one_label.csv", "y_true,y_pred,sex\n1,1,F\n1,1,M\n");
    add(
        "a single label",
        audit(&f, &[]),
        strs(&["one_label.csv", "at least two labels"]),
    );
    let mut ids = String::from("y_true,y_pred,sex\n");
    for i in 0..3000 {
        ids.push_str(&format!("{i},{},F\n", i + 1));
    }
    let f = c.write("id_as_label.csv", ids);
    add(
        "an id column as labels",
        audit(&f, &[]),
        strs(&["id_as_label.csv", "more than 1024 distinct labels"]),
    );
    let mut many = String::from("y_true,y_pred,customer\n");
    for i in 0..5000 {
        many.push_str(&format!("{},{},c{i}\n", i % 64, (i / 64) % 64));
    }
    let f = c.write("id_as_group.csv", many);
    add(
        "an id column as group",
        args(&[
            "audit",
            "--predictions",
            &f,
            "--label-col",
            "y_true",
            "--pred-col",
            "y_pred",
            "--group",
            "customer",
        ]),
        strs(&["id_as_group.csv", "`customer`", "distinct values"]),
    );
    add(
        "bad threshold rule",
        audit(&preds, &["--threshold", "dp_difference ~ 0.1"]),
        strs(&["dp_difference ~ 0.1"]),
    );
    add(
        "NaN threshold",
        audit(&preds, &["--max-dp-difference", "NaN"]),
        strs(&["NaN"]),
    );
    add(
        "monitor window zero",
        args(&[
            "audit",
            "--monitor",
            "--predictions",
            &preds,
            "--label-col",
            "y_true",
            "--pred-col",
            "y_pred",
            "--group",
            "sex",
            "--labels",
            "0,1",
            "--window",
            "0",
        ]),
        strs(&["window", "at least one"]),
    );
    add(
        "absurd bootstrap",
        audit(&preds, &["--bootstrap", "1000000000000"]),
        strs(&["bootstrap", "1000000000000"]),
    );
    add(
        "audit report over its input",
        audit(&preds, &["--out", &preds]),
        strs(&["preds.csv", "input"]),
    );

    // --- `valor train` ------------------------------------------------------
    add(
        "train on a missing file",
        train(&c.s("nope.csv"), &run, &[]),
        strs(&["nope.csv"]),
    );
    add(
        "train zero epochs",
        train(&good, &run, &["--epochs", "0"]),
        strs(&["epochs"]),
    );
    add(
        "train zero batch",
        train(&good, &run, &["--batch-size", "0"]),
        strs(&["batch"]),
    );
    add(
        "train NaN learning rate",
        train(&good, &run, &["--lr", "NaN"]),
        strs(&["lr"]),
    );
    add(
        "train absurd max-len",
        train(&good, &run, &["--max-len", "100000000"]),
        strs(&["max"]),
    );
    let f = c.write("values_bad.toml", "[target]\naccuracy = 0.8\nfairness = \n");
    add(
        "train bad values TOML",
        train(&good, &run, &["--values", &f]),
        strs(&["values_bad.toml", "line"]),
    );
    let f = c.write("values_range.toml", "[target]\naccuracy = 1.8\n");
    add(
        "values target out of range",
        train(&good, &run, &["--values", &f]),
        strs(&["values_range.toml", "accuracy"]),
    );
    let truncated = c.model_variant("model_truncated", |d| {
        let w = d.join("model.safetensors");
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    });
    add(
        "fine-tune truncated weights",
        train(&good, &run, &["--model", &truncated, "--max-len", "32"]),
        strs(&["model_truncated", "model.safetensors"]),
    );

    // --- `valor predict` ----------------------------------------------------
    let input = c.write(
        "in.csv",
        "text,sex\nthe loan was approved,F\nthe bank denied it,M\n",
    );
    add(
        "predict with a missing model",
        predict(&c.s("no_model"), &input, &out, &[]),
        strs(&["no_model"]),
    );
    add(
        "predict truncated weights",
        predict(&truncated, &input, &out, &[]),
        strs(&["model_truncated", "model.safetensors"]),
    );
    let no_config = c.model_variant("model_no_config", |d| {
        std::fs::remove_file(d.join("config.json")).unwrap()
    });
    add(
        "model without config.json",
        predict(&no_config, &input, &out, &[]),
        strs(&["model_no_config", "config.json"]),
    );
    let bad_config = c.model_variant("model_bad_config", |d| {
        std::fs::write(d.join("config.json"), "{\"hidden_size\": ").unwrap()
    });
    add(
        "broken config.json",
        predict(&bad_config, &input, &out, &[]),
        strs(&["model_bad_config", "config.json"]),
    );
    let zero_config = c.model_variant("model_zero_config", |d| {
        let p = d.join("config.json");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["num_attention_heads"] = 0.into();
        std::fs::write(&p, v.to_string()).unwrap();
    });
    add(
        "zero attention heads",
        predict(&zero_config, &input, &out, &[]),
        strs(&["model_zero_config", "num_attention_heads"]),
    );
    let big_tok = c.model_variant("model_big_tokenizer", |d| {
        // A tokenizer with more words than the model's embedding table.
        let words: Vec<String> = (0..400)
            .map(|i| format!("word{i} token{i} piece{i}"))
            .collect();
        let tok = valor_data::TextTokenizer::train_wordpiece(&words, 2000, 64).unwrap();
        tok.save(&d.join("tokenizer.json")).unwrap();
    });
    add(
        "tokenizer larger than the model",
        predict(&big_tok, &input, &out, &[]),
        strs(&["model_big_tokenizer", "vocab"]),
    );
    let no_tok = c.model_variant("model_no_tokenizer", |d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap()
    });
    add(
        "model without tokenizer",
        predict(&no_tok, &input, &out, &[]),
        strs(&["model_no_tokenizer", "tokenizer"]),
    );
    let bad_thr = c.model_variant("model_bad_thresholds", |d| {
        std::fs::write(d.join("thresholds.json"), "{\"schema\": 3").unwrap()
    });
    add(
        "broken thresholds.json",
        predict(&bad_thr, &input, &out, &[]),
        strs(&["thresholds.json"]),
    );
    add(
        "predict input missing text column",
        predict(&model, &input, &out, &["--text-col", "note"]),
        strs(&["in.csv", "`note` not found"]),
    );
    add(
        "predict zero batch",
        predict(&model, &input, &out, &["--batch-size", "0"]),
        strs(&["--batch-size"]),
    );
    add(
        "predict output is the input",
        predict(&model, &input, &input, &[]),
        strs(&["in.csv", "input"]),
    );
    let link = c.path("link.csv");
    #[cfg(unix)]
    std::os::unix::fs::symlink(c.path("in.csv"), &link).unwrap();
    #[cfg(unix)]
    add(
        "predict output is the input through a link",
        predict(&model, &input, &link.display().to_string(), &[]),
        strs(&["link.csv", "input"]),
    );
    add(
        "predict over an existing file",
        predict(&model, &input, &good, &[]),
        strs(&["data.csv", "--overwrite"]),
    );
    add(
        "predict output is a folder",
        predict(&model, &input, &c.s("folder.csv"), &["--overwrite"]),
        strs(&["folder.csv", "folder"]),
    );

    // --- `valor explain` ----------------------------------------------------
    add(
        "explain zero steps",
        args(&[
            "explain", "--model", &model, "--text", "the loan", "--steps", "0",
        ]),
        strs(&["--steps"]),
    );
    add(
        "explain truncated weights",
        args(&["explain", "--model", &truncated, "--text", "the loan"]),
        strs(&["model_truncated", "model.safetensors"]),
    );
    add(
        "explain tokenizer larger than the model",
        args(&["explain", "--model", &big_tok, "--text", "the loan"]),
        strs(&["model_big_tokenizer", "vocab"]),
    );

    // --- `valor remodel` ----------------------------------------------------
    add(
        "remodel a folder that is no run",
        args(&["remodel", "--run", &c.s("folder.csv")]),
        strs(&["folder.csv", "config.json"]),
    );
    let f = c.write(
        "values_unknown.toml",
        "[target]\naccuracy = 0.8\n[nonsense]\nx = 1\n",
    );
    add(
        "remodel values with an unknown table",
        args(&["remodel", "--run", &c.s("folder.csv"), "--values", &f]),
        strs(&["values_unknown.toml", "nonsense"]),
    );

    // --- `valor quantize` ---------------------------------------------------
    let quantize = |m: &str, out: &str, extra: &[&str]| {
        let mut a = args(&["quantize", "--model", m, "--out", out]);
        a.extend(strs(extra));
        a
    };
    let q_out = c.s("out/int8");
    add(
        "quantize truncated weights",
        quantize(&truncated, &q_out, &[]),
        strs(&["model_truncated", "model.safetensors"]),
    );
    add(
        "quantize over the model folder",
        quantize(&model, &model, &["--overwrite"]),
        strs(&["model", "model folder"]),
    );
    add(
        "quantize over a folder it did not write",
        quantize(&model, &truncated, &["--overwrite"]),
        strs(&["model_truncated", "quantization.json"]),
    );
    add(
        "quantize eval label the model lacks",
        quantize(&model, &q_out, &["--eval", &good, "--group-col", "gender"]),
        strs(&["data.csv", "row 1, column `label`"]),
    );
    add(
        "quantize eval without a group column",
        quantize(&model, &q_out, &["--eval", &good]),
        strs(&["--group-col"]),
    );
    v
}

#[test]
fn every_bad_input_is_a_clear_error_that_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus {
        root: tmp.path().to_path_buf(),
    };
    // The user's good files.
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "60", "--out", &c.s("data.csv")]);
    assert_eq!(code, 0, "{stderr}");
    c.write("preds.csv", predictions(40));
    let model_tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(model_tmp.path());
    std::fs::create_dir_all(c.path("model")).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), c.path("model").join(entry.file_name())).unwrap();
    }

    let cases = cases(&c);
    assert!(cases.len() >= 40, "the corpus has {} kinds", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let before = snapshot(&c.root);
        let a: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = valor(&a);
        let mut why = Vec::new();
        if code != 2 {
            why.push(format!("exit {code}, not 2"));
        }
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            why.push("panicked".to_string());
        }
        for want in &case.expect {
            if !stderr.contains(want.as_str()) {
                why.push(format!("message lacks `{want}`"));
            }
        }
        // Each cause once: no part of the message repeated.
        for line in stderr.lines().filter(|l| l.starts_with("error: ")) {
            let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 12).collect();
            if let Some(dup) = parts
                .iter()
                .enumerate()
                .find(|(i, p)| parts[i + 1..].contains(p))
            {
                why.push(format!("`{}` is said twice", dup.1));
            }
        }
        let after = snapshot(&c.root);
        for (path, bytes) in &before {
            match after.get(path) {
                None => why.push(format!("{} was deleted", path.display())),
                Some(b) if b != bytes => why.push(format!("{} was changed", path.display())),
                Some(_) => {}
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            why.push(format!("{} was left behind", path.display()));
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}\n    stdout: {}",
                case.name,
                why.join("; "),
                stderr.trim(),
                stdout.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not answered as they must be:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
