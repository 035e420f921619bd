//! A loss that becomes NaN or infinite stops the run with a clear message
//! and keeps the last good checkpoint.

use valor_train::checkpoint::{list_checkpoints, read_checkpoint};
use valor_train::{Error, RunDir, Silent, resume, train};

use crate::common::{builtin_csv, small_config, temp_files};

#[test]
fn exploding_learning_rate_stops_with_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let mut config = small_config(&data);
    // No warmup, so the first step already uses lr 1e30: the weights blow
    // up to ~1e30 and the next forward pass overflows f32.
    config.lr = 1e30;
    config.warmup_ratio = 0.0;
    config.max_grad_norm = None;
    config.checkpoint_every = Some(1);
    let out = dir.path().join("run");
    let err = train(&config, &out, false, &mut Silent).unwrap_err();
    let Error::NonFinite {
        what,
        epoch,
        step,
        last_checkpoint,
        ..
    } = &err
    else {
        panic!("expected a non-finite stop, got {err}");
    };
    assert_eq!((*what, *epoch), ("loss", 1));
    let last = last_checkpoint
        .clone()
        .expect("a checkpoint was written before the loss broke");
    let message = err.to_string();
    assert!(
        message.contains("became NaN") || message.contains("became inf"),
        "{message}"
    );
    assert!(
        message.contains(&last.display().to_string()) && message.contains("--lr"),
        "{message}"
    );

    // The checkpoint is intact, from the step before, and nothing newer exists.
    let ckpt = read_checkpoint(&last).unwrap();
    assert_eq!(ckpt.state.step, step - 1);
    let all = list_checkpoints(&RunDir::new(&out).checkpoints()).unwrap();
    assert_eq!(all.last().unwrap().1, last);
    assert!(temp_files(&out).is_empty());
    // Resuming runs into the same wall again rather than pretending.
    assert!(matches!(
        resume(&out, &mut Silent),
        Err(Error::NonFinite { .. })
    ));
}
