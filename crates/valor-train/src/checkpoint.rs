//! Checkpoints: model + optimizer + schedule position + epoch/step + RNG
//! state + data position, in one file written atomically.
//!
//! A checkpoint file `step-NNNNNNNN.ckpt` holds, in order: the magic
//! `VALORCKPT`, a format version (u32 LE), then three length-prefixed (u64
//! LE) sections — the [`TrainState`] as JSON, the model as a burn
//! `ModuleRecord` (burnpack bytes; parameter ids are kept, so the
//! optimizer state that is keyed by them applies after loading), the
//! optimizer as a burn `OptimizerRecord` (burnpack bytes; AdamW moments and
//! step counts) — and finally the SHA-256 of everything before it. A file
//! that does not verify is never loaded.
//!
//! Writing goes to a temporary file in the same folder, which is flushed
//! and fsynced and then renamed over the final name, and the folder is
//! fsynced: a crash leaves either the previous state or the new one, never
//! a partial checkpoint. Temporary files a crash left behind (`.tmp-*`) are
//! removed by [`clean_temp_files`] when a run starts or resumes.
//!
//! Retention ([`prune`]) keeps the newest `keep_last` checkpoints and the
//! best one, whatever its age.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::metrics::EvalMetrics;

const MAGIC: &[u8; 9] = b"VALORCKPT";
const VERSION: u32 = 1;
/// Prefix of the temporary files Valor writes before renaming them.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The best model so far, by the selection metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// 0-based epoch it was evaluated in.
    pub epoch: usize,
    pub value: f64,
    /// File name of its checkpoint (written at the end of that epoch, or at
    /// its evaluation within the epoch).
    pub checkpoint: String,
    /// Constrained training: the largest excess of a validation margin
    /// over its bound (0 when every constraint holds). An epoch that meets
    /// every constraint beats one that does not; among those that do not,
    /// the smaller excess wins.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub violation: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One evaluation's line of `metrics.jsonl`: `"event": "epoch"` at an
/// epoch's end, `"eval"` within it (`eval_every`; the training means are
/// then the epoch's so far).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub event: String,
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps done at the evaluation.
    pub step: u64,
    pub lr: f64,
    /// Mean objective per example (weighted cross-entropy + λ · penalty).
    pub train_loss: f64,
    /// Mean weighted cross-entropy per example.
    pub train_cross_entropy: f64,
    /// Mean fairness penalty of the training batches (computed even when λ = 0).
    pub train_penalty: Option<f64>,
    /// The validation metrics (absent without a validation split).
    pub valid: Option<EvalMetrics>,
    /// Whether this evaluation's model is the best so far.
    pub best: bool,
    /// Seconds of the epoch so far.
    pub epoch_seconds: f64,
    /// Constrained training: each constraint on each fairness group column
    /// on validation, with its selection margin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintCheck>,
}

/// A constraint measured on one group column of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstraintCheck {
    /// `demographic_parity <= 0.05`.
    pub constraint: String,
    pub bound: f64,
    /// The group column.
    pub group: String,
    /// The gap on the split (`null` when fewer than two groups have the
    /// rows it needs), with its bootstrap quantiles; on validation `upper`
    /// is the selection margin instead, the largest one-sided quantile of
    /// the gap's signed rate differences
    /// ([`crate::constraint::bootstrap_margin`]), and `lower` is `null`
    /// (the margin is one-sided).
    pub gap: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The level of `lower`/`upper`: one-sided (`upper` only) for the
    /// validation margin, two-sided for the test interval.
    pub level: f64,
    /// Validation: `upper <= bound` (the selection margin); test: `gap <=
    /// bound` (the point estimate).
    pub holds: bool,
    /// How often a model that treats the groups alike would pass this
    /// check on the split's rows (its margin at `level` on validation, its
    /// point gap on test): the share of 1,000 simulated predictions
    /// ([`crate::constraint::null_margin_pass_rate`]). Near 1, a miss is
    /// the model's; well under 1, the rows cannot tell the bound from
    /// noise. `null` where the gap is, and in reports before it existed.
    #[serde(default)]
    pub alike_pass_rate: Option<f64>,
}

/// Random-number state. Dropout masks are drawn from the device generator
/// reseeded before every micro-batch with `mix(dropout_seed,
/// micro_step)`, and batch order is a function of `(batch_seed, epoch)`,
/// so these counters are the whole RNG state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub dropout_seed: u64,
    pub batch_seed: u64,
    /// Micro-batches run so far (the dropout stream position).
    pub micro_step: u64,
}

/// Everything besides the tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epoch in progress (0-based); equals the number of epochs when done.
    pub epoch: usize,
    /// Micro-batches of `epoch` already trained (the data position: the
    /// epoch's batch plan is a function of the seed and the epoch).
    pub batches_done: usize,
    /// Optimizer steps done (the schedule position).
    pub step: u64,
    pub rng: RngState,
    /// Running sums of the epoch in progress.
    pub epoch_objective_sum: f64,
    pub epoch_cross_entropy_sum: f64,
    pub epoch_penalty_sum: f64,
    pub epoch_penalty_rows: u64,
    pub epoch_examples: u64,
    pub epoch_seconds: f64,
    pub best: Option<Best>,
    /// Epochs in a row without improvement.
    pub bad_epochs: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
    /// Length in bytes of `metrics.jsonl` when the checkpoint was written
    /// (a resumed run truncates it there).
    pub metrics_len: u64,
    /// Training seconds so far (over every process of the run).
    pub train_seconds: f64,
    /// Constrained training: the multiplier of each (constraint, fairness
    /// group column), constraint-major; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multipliers: Vec<f64>,
    /// Constrained training: the decayed confusion counts of the
    /// constraint batches, per fairness column, per group (row-major true ×
    /// predicted cells).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraint_counts: Vec<Vec<Vec<f64>>>,
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub state: TrainState,
    /// burnpack bytes of the model record.
    pub model: Vec<u8>,
    /// burnpack bytes of the optimizer record.
    pub optimizer: Vec<u8>,
}

/// The file name of the checkpoint after `step` optimizer steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}.ckpt")
}

/// Whether `name` is a checkpoint file's name ([`checkpoint_name`]).
pub(crate) fn is_checkpoint_name(name: &str) -> bool {
    step_of(name).is_some()
}

fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".ckpt")?
        .parse()
        .ok()
}

/// Writes a checkpoint atomically into `dir`; returns its path.
pub fn write_checkpoint(
    dir: &Path,
    state: &TrainState,
    model: &[u8],
    optimizer: &[u8],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(checkpoint_name(state.step));
    let json = serde_json::to_vec(state).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let mut bytes =
        Vec::with_capacity(MAGIC.len() + 4 + 24 + json.len() + model.len() + optimizer.len() + 32);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    for section in [json.as_slice(), model, optimizer] {
        bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
        bytes.extend_from_slice(section);
    }
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Writes `bytes` to `path` atomically ([`valor_fsio`]), with temporary
/// files named `TEMP_PREFIX…` so that a crashed run's leftovers are known.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    valor_fsio::write_atomic_with_prefix(path, TEMP_PREFIX, |f| f.write_all(bytes))
        .map_err(|e| Error::io(e.path, e.source))
}

/// Reads and verifies a checkpoint.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let min = MAGIC.len() + 4 + 24 + 32;
    if bytes.len() < min || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(
            "missing the VALORCKPT header (not a checkpoint, or truncated)".into(),
        ));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(bad("checksum mismatch (corrupt or truncated)".into()));
    }
    let version = u32::from_le_bytes(
        body[MAGIC.len()..MAGIC.len() + 4]
            .try_into()
            .expect("4 bytes"),
    );
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads version {VERSION}"
        )));
    }
    let mut at = MAGIC.len() + 4;
    let mut sections = Vec::with_capacity(3);
    for name in ["state", "model", "optimizer"] {
        let len_bytes = body
            .get(at..at + 8)
            .ok_or_else(|| bad(format!("the {name} section is cut short")))?;
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        at += 8;
        let section = body
            .get(at..at.saturating_add(len))
            .ok_or_else(|| bad(format!("the {name} section is cut short")))?;
        sections.push(section.to_vec());
        at += len;
    }
    if at != body.len() {
        return Err(bad(format!(
            "{} unexpected bytes after the sections",
            body.len() - at
        )));
    }
    let optimizer = sections.pop().expect("three sections");
    let model = sections.pop().expect("three sections");
    let state = serde_json::from_slice(&sections[0]).map_err(|e| bad(format!("state: {e}")))?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        state,
        model,
        optimizer,
    })
}

/// The checkpoints in `dir`, oldest first (by step).
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(step_of) {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint that verifies, and the paths of newer ones that
/// did not (with why).
pub fn latest_checkpoint(dir: &Path) -> Result<(Option<Checkpoint>, Vec<String>)> {
    let mut skipped = Vec::new();
    for (_, path) in list_checkpoints(dir)?.into_iter().rev() {
        match read_checkpoint(&path) {
            Ok(c) => return Ok((Some(c), skipped)),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Ok((None, skipped))
}

/// Deletes all but the newest `keep_last` checkpoints, never deleting
/// `protect` (the best one). Returns the deleted paths.
pub fn prune(dir: &Path, keep_last: usize, protect: Option<&str>) -> Result<Vec<PathBuf>> {
    let all = list_checkpoints(dir)?;
    let cut = all.len().saturating_sub(keep_last.max(1));
    let mut deleted = Vec::new();
    for (_, path) in &all[..cut] {
        let name = path.file_name().and_then(|n| n.to_str());
        if name.is_some() && name == protect {
            continue;
        }
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        deleted.push(path.clone());
    }
    Ok(deleted)
}

/// Removes temporary files a crash left in `dir` (never a finished file).
pub fn clean_temp_files(dir: &Path) -> Result<usize> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|s| s.starts_with(TEMP_PREFIX))
            && entry.path().is_file()
        {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainState {
        TrainState {
            epoch: 1,
            batches_done: 3,
            step,
            rng: RngState {
                dropout_seed: 1,
                batch_seed: 2,
                micro_step: 9,
            },
            epoch_objective_sum: 1.5,
            epoch_cross_entropy_sum: 1.25,
            epoch_penalty_sum: 0.0,
            epoch_penalty_rows: 0,
            epoch_examples: 48,
            epoch_seconds: 0.5,
            best: None,
            bad_epochs: 0,
            stopped_early: false,
            history: Vec::new(),
            metrics_len: 0,
            train_seconds: 1.0,
            multipliers: Vec::new(),
            constraint_counts: Vec::new(),
        }
    }

    #[test]
    fn roundtrip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_checkpoint(dir.path(), &state(7), b"model bytes", b"optim").unwrap();
        assert_eq!(path.file_name().unwrap(), "step-00000007.ckpt");
        let c = read_checkpoint(&path).unwrap();
        assert_eq!(c.state, state(7));
        assert_eq!(c.model, b"model bytes");
        assert_eq!(c.optimizer, b"optim");

        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = read_checkpoint(&path).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        std::fs::write(&path, &bytes[..20]).unwrap();
        let e = read_checkpoint(&path).unwrap_err().to_string();
        assert!(e.contains("not a usable checkpoint"), "{e}");
    }

    #[test]
    fn latest_skips_corrupt_and_prune_keeps_best() {
        let dir = tempfile::tempdir().unwrap();
        for s in [1, 2, 3, 4, 5] {
            write_checkpoint(dir.path(), &state(s), b"m", b"o").unwrap();
        }
        std::fs::write(dir.path().join(checkpoint_name(6)), b"garbage").unwrap();
        let (c, skipped) = latest_checkpoint(dir.path()).unwrap();
        assert_eq!(c.unwrap().state.step, 5);
        assert_eq!(skipped.len(), 1);
        std::fs::remove_file(dir.path().join(checkpoint_name(6))).unwrap();

        let deleted = prune(dir.path(), 2, Some(&checkpoint_name(2))).unwrap();
        assert_eq!(deleted.len(), 2);
        let left: Vec<u64> = list_checkpoints(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, vec![2, 4, 5]);
    }

    #[test]
    fn temp_files_are_cleaned_and_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-abc"), b"partial").unwrap();
        write_checkpoint(dir.path(), &state(1), b"m", b"o").unwrap();
        assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 1);
        assert_eq!(clean_temp_files(dir.path()).unwrap(), 1);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![checkpoint_name(1)]);
    }
}
