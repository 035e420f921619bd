//! Checkpoint files on a real run: atomic (no partial or temporary files
//! left), keep-last-N plus the best, and a run folder that is refused
//! unless resumed or overwritten.

use std::path::Path;

use valor_train::checkpoint::{checkpoint_name, list_checkpoints, read_checkpoint};
use valor_train::{Error, RunDir, SelectMetric, Silent, resume, train};

use crate::common::{builtin_csv, small_config, temp_files};

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
