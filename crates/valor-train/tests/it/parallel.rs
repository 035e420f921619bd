//! Data-parallel training (`TrainConfig::devices`) on the CPU: the one
//! flex device listed twice takes the data-parallel path (a replica forked
//! per shard, one thread each, gradients moved to the main device and
//! summed there, one AdamW step), so it can be held to what it must equal:
//!
//! - two shards of a 16-row batch = two accumulated 8-row micro-batches,
//!   with dropout, reweighing and the fairness penalty on (the penalty is
//!   per shard as it is per micro-batch, both normalised by the step's 16
//!   examples, and the shards draw the micro-batches' dropout seeds);
//! - without penalty and dropout, two shards = the undivided batch, up to
//!   float reassociation;
//! - a data-parallel run stopped and resumed = the uninterrupted one;
//! - asking for more devices than the backend has is an error that says
//!   how many there are.
//!
//! For the first comparison the two runs must see the same rows in the
//! same order: every text is longer than `max_len` (checked), so the
//! length sort keeps the shuffled order, and with one batch per length
//! window a 16-row batch is exactly two consecutive 8-row batches.

use std::path::Path;
use std::process::Command;

use valor_data::{TextTokenizer, builtin_spec, load_dataset};
use valor_train::{
    Devices, Error, ModelSource, Outcome, RunDir, Silent, StopAfter, TrainConfig, resume, train,
};

use crate::common::{builtin_csv, latest_weights, max_weight_diff, metrics_lines, small_config};

/// `small_config` with every example truncated to the same length and
/// one batch per length window (so batch plans nest), two epochs of 12
/// optimizer steps of 16 examples.
fn nested_config(data: &Path) -> TrainConfig {
    let mut c = small_config(data);
    c.max_len = 12;
    c.length_window_batches = 1;
    let ModelSource::Scratch(m) = &c.model else {
        unreachable!()
    };
    let tokenizer =
        TextTokenizer::from_file(m.tokenizer.as_ref().unwrap(), c.max_len, true).unwrap();
    let (d, _) = load_dataset(&builtin_spec(data)).unwrap();
    let enc = tokenizer.encode_batch(&d.texts.as_strs()).unwrap();
    assert!(
        enc.iter().all(|e| e.len() == c.max_len),
        "the test needs every text truncated to max_len"
    );
    c
}

/// Largest difference of the per-epoch training and validation numbers,
/// and of the test metrics, between two runs.
fn max_metric_diff(a: &Path, b: &Path) -> f64 {
    let (ma, mb) = (metrics_lines(a), metrics_lines(b));
    assert_eq!(ma.len(), mb.len(), "metrics.jsonl line counts");
    let mut worst = 0f64;
    for (la, lb) in ma.iter().zip(&mb) {
        assert_eq!(la["event"], lb["event"]);
        let (va, vb) = if la["event"] == "test" {
            (la, lb)
        } else {
            for key in ["train_loss", "train_cross_entropy", "train_penalty"] {
                if let (Some(x), Some(y)) = (la[key].as_f64(), lb[key].as_f64()) {
                    worst = worst.max((x - y).abs());
                }
            }
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
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

fn compare(what: &str, a: &Path, b: &Path, weight_tol: f64, metric_tol: f64) {
    let weights = max_weight_diff(&latest_weights(a), &latest_weights(b));
    let metrics = max_metric_diff(a, b);
    eprintln!(
        "{what}: largest weight difference {weights:e}, largest metric difference {metrics:e}"
    );
    assert!(weights <= weight_tol, "{what}: weights differ by {weights}");
    assert!(metrics <= metric_tol, "{what}: metrics differ by {metrics}");
}

#[test]
fn two_shards_equal_two_accumulated_micro_batches_and_resume() {
    // The comparisons run in a child process of this test binary whose
    // global rayon pool has one thread, with nothing else in the process.
    // The shards run on threads of their own, so their burn-flex
    // reductions and products go to the global pool, never to a pool this
    // thread installs, beside whatever the other tests run there. In CI,
    // in-process, the runs once differed by 3e-4 (before the shards'
    // caller had a one-thread pool) and once by 1e-3 (with it) after 24
    // AdamW steps; neither reproduced alone, so the cause is not pinned
    // down. Here every sum adds in one order and the runs agree to the
    // last bits.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "parallel::two_shards_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{text}");
    assert!(
        output.status.success(),
        "the child failed: {}",
        output.status
    );
    // The child must have run the comparisons, not skipped them.
    assert!(
        text.contains("data-parallel resumed vs uninterrupted: largest weight difference"),
        "the child did not compare the runs"
    );
}

/// Set in the child process that `two_shards_child` runs in.
const CHILD: &str = "VALOR_TRAIN_PARALLEL_CHILD";

/// The child half of `two_shards_equal_two_accumulated_micro_batches_and_resume`;
/// runs only when that test starts it.
#[test]
#[ignore = "child process of the two-shards comparison"]
fn two_shards_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert_eq!(rayon::current_num_threads(), 1, "RAYON_NUM_THREADS=1");
    two_shards_and_resume();
}

fn two_shards_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let accumulated = nested_config(&data);
    assert_eq!((accumulated.batch_size, accumulated.grad_accum), (8, 2));
    assert!(accumulated.fairness.lambda > 0.0 && accumulated.dropout.unwrap() > 0.0);
    let mut parallel = accumulated.clone();
    parallel.batch_size = 16;
    parallel.grad_accum = 1;
    parallel.devices = Devices::List(vec![0, 0]);

    let (a, b, c) = (
        dir.path().join("accumulated"),
        dir.path().join("parallel"),
        dir.path().join("resumed"),
    );
    let ra = train(&accumulated, &a, false, &mut Silent).unwrap();
    let rb = train(&parallel, &b, false, &mut Silent).unwrap();
    assert_eq!(ra.report().unwrap().steps, 24);
    assert_eq!(rb.report().unwrap().steps, 24);
    // The same rows, seeds and sums in the same order: no tolerance is
    // needed in practice; 1e-6 leaves room for threaded kernels.
    compare("2 shards vs 2 micro-batches", &a, &b, 1e-6, 1e-6);
    assert!(metrics_lines(&b)[0]["train_penalty"].as_f64().unwrap() > 0.0);

    // Stop after step 17 (epoch 2, past the checkpoint at step 15), resume.
    let stopped = train(&parallel, &c, false, &mut StopAfter { step: 17 }).unwrap();
    assert!(
        matches!(stopped, Outcome::Stopped { step: 17 }),
        "{stopped:?}"
    );
    resume(&c, &mut Silent).unwrap();
    compare("data-parallel resumed vs uninterrupted", &b, &c, 1e-6, 1e-6);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(RunDir::new(&c).config()).unwrap()).unwrap();
    assert_eq!(config["config"]["devices"], serde_json::json!([0, 0]));
}

#[test]
fn without_penalty_two_shards_equal_the_undivided_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    let mut whole = nested_config(&data);
    whole.batch_size = 16;
    whole.grad_accum = 1;
    whole.fairness.lambda = 0.0;
    whole.dropout = Some(0.0);
    let mut parallel = whole.clone();
    parallel.devices = Devices::List(vec![0, 0]);
    let (a, b) = (dir.path().join("whole"), dir.path().join("parallel"));
    train(&whole, &a, false, &mut Silent).unwrap();
    train(&parallel, &b, false, &mut Silent).unwrap();
    // Gradients summed from two halves differ from one batch's by float
    // reassociation; 24 AdamW steps carry that into the weights.
    compare("2 shards vs the undivided batch", &a, &b, 1e-4, 1e-4);
}

#[test]
fn more_devices_than_the_cpu_has_is_an_error_naming_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), 240);
    for (devices, want) in [
        (
            Devices::Count(2),
            "asks for 2 devices but the cpu backend has 1 device (index 0)",
        ),
        (Devices::List(vec![0, 1]), "device index 1 was asked for"),
    ] {
        let mut c = small_config(&data);
        c.devices = devices;
        let out = dir.path().join("run");
        let e = train(&c, &out, false, &mut Silent).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Config { .. }), "{msg}");
        assert!(
            msg.contains(want) && msg.contains("1 device (index 0)"),
            "{msg}"
        );
        assert!(!out.exists(), "a refused run must not create its folder");
    }
}
