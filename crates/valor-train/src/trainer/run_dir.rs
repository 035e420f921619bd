//! The run folder: the names of its files, `config.json`, and the
//! JSON writes and appends every other step makes into it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::report::Provenance;

/// The files of a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The configuration used, with provenance.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// One JSON line per epoch, then one for the test set.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// The tokenizer the run trained or loaded.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// The model architecture (HF config.json schema) the checkpoints hold.
    pub fn model_config(&self) -> PathBuf {
        self.checkpoints().join("model_config.json")
    }
    /// The best model, as an HF `BertForSequenceClassification` folder.
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }
    /// Whether a run was started here.
    pub fn holds_run(&self) -> bool {
        self.config().exists() || self.checkpoints().exists()
    }
}

/// `config.json` of a run folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfigFile {
    pub config: TrainConfig,
    pub provenance: Provenance,
}

/// Reads the configuration a run folder was started with.
pub fn read_run_config(run_dir: &Path) -> Result<RunConfigFile> {
    let path = RunDir::new(run_dir).config();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NothingToResume {
                dir: run_dir.to_path_buf(),
                message: "no config.json (was a run started here?)".into(),
            }
        } else {
            Error::io(&path, e)
        }
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
}

pub(super) fn remove_run_files(run: &RunDir) -> Result<()> {
    for f in [run.config(), run.metrics(), run.tokenizer(), run.report()] {
        if f.exists() {
            std::fs::remove_file(&f).map_err(|e| Error::io(&f, e))?;
        }
    }
    for d in [run.checkpoints(), run.model()] {
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
    }
    Ok(())
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub(super) fn truncate_metrics(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(len).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Appends one JSON line, synced; returns the file's new length.
pub(super) fn append_line<T: Serialize>(path: &Path, value: &T) -> Result<u64> {
    let mut line = serde_json::to_string(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(line.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))?;
    f.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::io(path, e))
}

