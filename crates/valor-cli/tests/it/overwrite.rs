//! `--overwrite` deletes only what Valor wrote: a user's own files inside a
//! run folder (in `model/` and `checkpoints/` too) survive `valor train
//! --overwrite`, and a folder whose `config.json` Valor did not write is
//! refused (exit 2) and left as it was; `valor remodel --overwrite` refuses
//! an output folder it did not make.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::{tiny_train, valor};

/// Every file below `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// [`tiny_train`]'s exit code and stderr.
fn train(data: &str, out: &Path, extra: &[&str]) -> (i32, String) {
    let (code, _, stderr) = tiny_train(data, out, extra);
    (code, stderr)
}

fn gen_data(dir: &Path) -> String {
    let data = dir.join("data.csv").display().to_string();
    let (code, _, stderr) = valor(&["data", "gen", "--rows", "200", "--out", &data]);
    assert_eq!(code, 0, "{stderr}");
    data
}

#[test]
fn overwrite_keeps_the_users_files_in_model_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let run = tmp.path().join("run");
    let (code, stderr) = train(&data, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["schema"], "valor.train.run/1", "{config}");

    let mine = [
        ("notes.txt", "my notes"),
        ("model/README.md", "my model card"),
        ("checkpoints/keep.txt", "my checkpoint notes"),
    ];
    for (rel, text) in mine {
        std::fs::write(run.join(rel), text).unwrap();
    }
    let (code, stderr) = train(&data, &run, &["--overwrite", "--seed", "7"]);
    assert_eq!(code, 0, "{stderr}");
    for (rel, text) in mine {
        assert_eq!(
            std::fs::read_to_string(run.join(rel)).unwrap(),
            text,
            "{rel} was not kept"
        );
    }
    // The new run is complete beside them.
    for rel in [
        "config.json",
        "report.json",
        "model/model.safetensors",
        "model/config.json",
    ] {
        assert!(run.join(rel).is_file(), "{rel} missing after --overwrite");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["seed"], 7, "{config}");
}

#[test]
fn a_folder_whose_config_json_valor_did_not_write_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let dir = tmp.path().join("someone-elses-model");
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures": ["BertForSequenceClassification"], "hidden_size": 384}"#,
    )
    .unwrap();
    std::fs::write(dir.join("model").join("model.safetensors"), b"not ours").unwrap();
    std::fs::write(
        dir.join("checkpoints").join("step-00000001.ckpt"),
        b"not ours",
    )
    .unwrap();
    std::fs::write(dir.join("metrics.jsonl"), b"{}\n").unwrap();
    let before = snapshot(&dir);
    for extra in [&["--overwrite"][..], &[]] {
        let (code, stderr) = train(&data, &dir, extra);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(
            stderr.contains("config.json") && stderr.contains("not written by Valor"),
            "{extra:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(snapshot(&dir), before, "{extra:?} changed the folder");
    }
}

#[test]
fn remodel_overwrite_refuses_an_output_folder_valor_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gen_data(tmp.path());
    let run = tmp.path().join("run");
    let (code, stderr) = train(&data, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("model")).unwrap();
    std::fs::write(out.join("remodel.json"), r#"{"mine": true}"#).unwrap();
    std::fs::write(out.join("model").join("weights.bin"), b"mine").unwrap();
    let before = snapshot(&out);
    let (code, _, stderr) = valor(&[
        "remodel",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not made by `valor remodel`"), "{stderr}");
    assert_eq!(snapshot(&out), before);
}
