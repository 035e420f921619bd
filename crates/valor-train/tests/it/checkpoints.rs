//! Checkpoint files on a real run: atomic (no partial or temporary files
//! left), keep-last-N plus the best, a run folder that is refused unless
//! resumed or overwritten, and evaluations within epochs (`eval_every`)
//! whose best model is the one checkpointed, exported and tested.

use std::path::Path;

use valor_train::checkpoint::{checkpoint_name, list_checkpoints, read_checkpoint};
use valor_train::{Error, RunDir, SelectMetric, Silent, resume, train};

use crate::common::{
    builtin_csv, checkpoint_weights, exported_weights, max_weight_diff, metrics_lines,
    small_config, temp_files,
};

#[test]
fn retention_keeps_last_n_and_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let mut config = small_config(&data);
    config.epochs = 3;
    config.keep_last = 1;
    // No later epoch can beat the first by more than 10: the best epoch is
    // the first, and its checkpoint must survive keep-last-1.
    config.select_metric = SelectMetric::MacroF1;
    config.early_stopping_min_delta = 10.0;
    let out = dir.path().join("run");
    let report = train(&config, &out, false, &mut Silent)
        .unwrap()
        .report()
        .cloned()
        .unwrap();
    let run = RunDir::new(&out);
    let left: Vec<String> = list_checkpoints(&run.checkpoints())
        .unwrap()
        .into_iter()
        .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(report.best_epoch, Some(1));
    assert_eq!(
        left,
        vec![checkpoint_name(12), checkpoint_name(36)],
        "keep-last-1 plus the best"
    );
    for name in &left {
        read_checkpoint(&run.checkpoints().join(name)).unwrap();
    }
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
    for f in [
        run.config(),
        run.metrics(),
        run.tokenizer(),
        run.report(),
        run.model().join("model.safetensors"),
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    assert!(
        run.model().join("config.json").is_file() && run.model().join("tokenizer.json").is_file()
    );
}

#[test]
fn existing_run_needs_resume_or_overwrite_and_stale_temp_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let mut config = small_config(&data);
    config.epochs = 1;
    let out = dir.path().join("run");
    train(&config, &out, false, &mut Silent).unwrap();
    let err = train(&config, &out, false, &mut Silent).unwrap_err();
    assert!(matches!(err, Error::RunExists { .. }), "{err}");
    assert!(err.to_string().contains("--resume"), "{err}");

    // A temporary file left by a crash mid-write is removed on resume and
    // never taken for a checkpoint.
    let stale = RunDir::new(&out).checkpoints().join(".tmp-crashed");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    resume(&out, &mut Silent).unwrap();
    assert!(!stale.exists());
    train(&config, &out, true, &mut Silent).unwrap();
    assert!(temp_files(&out).is_empty());
    assert!(Path::new(&RunDir::new(&out).report()).is_file());
}

#[test]
fn nothing_to_resume_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = resume(dir.path(), &mut Silent).unwrap_err();
    assert!(err.to_string().contains("nothing to resume"), "{err}");
}

#[test]
fn evaluations_within_epochs_are_candidates_for_the_tested_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let mut config = small_config(&data);
    config.checkpoint_every = None;
    config.keep_last = 1;
    config.eval_every = Some(5);
    let out = dir.path().join("run");
    let report = train(&config, &out, false, &mut Silent)
        .unwrap()
        .report()
        .cloned()
        .unwrap();
    // 12 optimizer steps an epoch: evaluations at steps 5, 10 and 15, 20
    // within the epochs, none at an epoch's end (12, 24), which has its own.
    let lines = metrics_lines(&out);
    let evals: Vec<(String, u64, u64)> = lines
        .iter()
        .filter(|l| l["event"] == "eval" || l["event"] == "epoch")
        .map(|l| {
            (
                l["event"].as_str().unwrap().to_string(),
                l["epoch"].as_u64().unwrap(),
                l["step"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = [
        ("eval", 1, 5),
        ("eval", 1, 10),
        ("epoch", 1, 12),
        ("eval", 2, 15),
        ("eval", 2, 20),
        ("epoch", 2, 24),
    ]
    .iter()
    .map(|&(e, ep, st)| (e.to_string(), ep, st))
    .collect();
    assert_eq!(evals, expected);
    assert_eq!(report.epochs_run, 2);
    // The best is the first evaluation with the highest validation
    // macro-F1, wherever it fell, and the lines mark it.
    let mut best: Option<(f64, u64, u64)> = None;
    for l in lines.iter().filter(|l| l["valid"].is_object()) {
        let v = l["valid"]["macro_f1"].as_f64().unwrap();
        let improved = best.is_none_or(|(b, _, _)| v > b);
        assert_eq!(l["best"].as_bool(), Some(improved), "{l}");
        if improved {
            best = Some((v, l["epoch"].as_u64().unwrap(), l["step"].as_u64().unwrap()));
        }
    }
    let (_, best_epoch, best_step) = best.unwrap();
    assert_eq!(report.best_step, Some(best_step));
    assert_eq!(report.best_epoch, Some(best_epoch as usize));
    // Its checkpoint outlives keep-last-1, and it is the model exported.
    let run = RunDir::new(&out);
    let best_ckpt = run.checkpoints().join(checkpoint_name(best_step));
    assert!(best_ckpt.is_file(), "{} missing", best_ckpt.display());
    let diff = max_weight_diff(
        &checkpoint_weights(&out, &best_ckpt),
        &exported_weights(&out),
    );
    assert!(
        diff <= 1e-6,
        "the exported model differs from the best checkpoint by {diff}"
    );
    // Only improving evaluations within an epoch write a checkpoint.
    for (_, path) in list_checkpoints(&run.checkpoints()).unwrap() {
        let state = read_checkpoint(&path).unwrap().state;
        let at_epoch_end = state.batches_done == 0;
        assert!(
            at_epoch_end || state.step == best_step,
            "checkpoint at step {}",
            state.step
        );
    }
}
