//! A run interrupted mid-epoch and resumed ends with the same weights and
//! metrics as an uninterrupted run with the same seed: once with the
//! library's stop hook (deterministic), once with a real SIGKILL of a child
//! process (this test binary, re-run as the child).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use valor_train::checkpoint::{latest_checkpoint, list_checkpoints};
use valor_train::{Control, Event, Observer, Outcome, RunDir, Silent, StopAfter, resume, train};

use crate::common::{
    builtin_csv, latest_weights, max_weight_diff, metrics_lines, small_config, temp_files,
};

/// Weights may differ by float reassociation only (the CPU backend's
/// threaded kernels); in practice they are bit-identical.
const WEIGHT_TOL: f64 = 1e-5;

fn assert_same_run(a: &Path, b: &Path) {
    let diff = max_weight_diff(&latest_weights(a), &latest_weights(b));
    eprintln!("largest weight difference between the runs: {diff:e}");
    assert!(diff <= WEIGHT_TOL, "final weights differ by {diff}");
    let (ma, mb) = (metrics_lines(a), metrics_lines(b));
    assert_eq!(ma.len(), mb.len(), "metrics.jsonl line counts");
    for (la, lb) in ma.iter().zip(&mb) {
        assert_eq!(la["event"], lb["event"]);
        for key in ["train_loss", "train_cross_entropy", "train_penalty"] {
            if let (Some(x), Some(y)) = (la[key].as_f64(), lb[key].as_f64()) {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "{key}: {x} vs {y}"
                );
            }
        }
        let (va, vb) = if la["event"] == "test" {
            (la, lb)
        } else {
            (&la["valid"], &lb["valid"])
        };
        for key in [
            "loss",
            "accuracy",
            "macro_f1",
            "selection_rate_gap",
            "equalized_odds_gap",
        ] {
            let (x, y) = (va[key].as_f64().unwrap(), vb[key].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6, "{key}: {x} vs {y}");
        }
    }
    let ra: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(RunDir::new(a).report()).unwrap()).unwrap();
    let rb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(RunDir::new(b).report()).unwrap()).unwrap();
    assert_eq!(ra["summary"], rb["summary"]);
    assert_eq!(ra["best_epoch"], rb["best_epoch"]);
    assert_eq!(ra["best_step"], rb["best_step"]);
    assert!(
        temp_files(b).is_empty(),
        "temporary files left: {:?}",
        temp_files(b)
    );
}

#[test]
fn stopped_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let config = small_config(&data);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&config, &a, false, &mut Silent).unwrap();

    // Stop after step 17 of 24: epoch 2, past the checkpoint at step 15.
    let stopped = train(&config, &b, false, &mut StopAfter { step: 17 }).unwrap();
    assert!(
        matches!(stopped, Outcome::Stopped { step: 17 }),
        "{stopped:?}"
    );
    let (ckpt, _) = latest_checkpoint(&RunDir::new(&b).checkpoints()).unwrap();
    let state = ckpt.unwrap().state;
    assert_eq!(
        (state.epoch, state.step, state.batches_done),
        (1, 15, 6),
        "resumes mid-epoch"
    );
    assert!(!RunDir::new(&b).report().exists());
    let resumed = resume(&b, &mut Silent).unwrap();
    assert!(resumed.report().is_some());
    assert_same_run(&a, &b);
}

#[test]
fn stopped_and_resumed_with_evaluations_within_epochs_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let mut config = small_config(&data);
    config.eval_every = Some(4);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&config, &a, false, &mut Silent).unwrap();
    // Stop after step 17: past the evaluation at step 16 and the
    // checkpoint at step 15, so the resumed run evaluates again at 20.
    let stopped = train(&config, &b, false, &mut StopAfter { step: 17 }).unwrap();
    assert!(
        matches!(stopped, Outcome::Stopped { step: 17 }),
        "{stopped:?}"
    );
    resume(&b, &mut Silent).unwrap();
    let events: Vec<String> = metrics_lines(&b)
        .iter()
        .filter(|l| l["event"] == "eval")
        .map(|l| l["step"].to_string())
        .collect();
    assert_eq!(events, ["4", "8", "16", "20"]);
    assert_same_run(&a, &b);
}

/// Writes each finished step to a file and slows down after the first
/// checkpoint, so that the parent can kill it between checkpoints.
struct ChildProgress {
    file: std::path::PathBuf,
}

impl Observer for ChildProgress {
    fn on_event(&mut self, event: &Event<'_>) -> Control {
        if let Event::Step { step, .. } = event {
            std::fs::write(&self.file, step.to_string()).unwrap();
            if *step >= 3 {
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        Control::Continue
    }
}

/// The child half of `sigkill_mid_epoch_then_resume_equals_uninterrupted`;
/// runs only when that test starts it.
#[test]
#[ignore = "child process of the SIGKILL resume test"]
fn sigkill_child() {
    let (Ok(data), Ok(out)) = (
        std::env::var("VALOR_TRAIN_CHILD_DATA"),
        std::env::var("VALOR_TRAIN_CHILD_OUT"),
    ) else {
        return;
    };
    let config = small_config(Path::new(&data));
    let file = Path::new(&out).with_extension("progress");
    train(&config, Path::new(&out), false, &mut ChildProgress { file }).unwrap();
}

#[test]
fn sigkill_mid_epoch_then_resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let progress = b.with_extension("progress");
    let config = small_config(&data); // before the child starts: it shares the tokenizer file

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "resume::sigkill_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VALOR_TRAIN_CHILD_DATA", &data)
        .env("VALOR_TRAIN_CHILD_OUT", &b)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let step: u64 = std::fs::read_to_string(&progress)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if step >= 4 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended before it could be killed: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the child made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    train(&config, &a, false, &mut Silent).unwrap();

    assert!(
        !RunDir::new(&b).report().exists(),
        "the child was killed before finishing"
    );
    let checkpoints = list_checkpoints(&RunDir::new(&b).checkpoints()).unwrap();
    let (ckpt, _) = latest_checkpoint(&RunDir::new(&b).checkpoints()).unwrap();
    let state = ckpt.unwrap().state;
    assert!(
        state.epoch == 0 && state.batches_done > 0,
        "killed mid-epoch 1, got {state:?} ({checkpoints:?})"
    );
    resume(&b, &mut Silent).unwrap();
    assert_same_run(&a, &b);
}
