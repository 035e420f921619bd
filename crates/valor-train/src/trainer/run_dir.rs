//! The run folder: the names of its files, `config.json` (whose `schema`
//! marks the folder as Valor's), the JSON writes and appends every other
//! step makes into it, and `--overwrite`'s removal of what Valor wrote there
//! and nothing else.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{TEMP_PREFIX, clean_temp_files, is_checkpoint_name, write_atomic};
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
    /// The LoRA adapter in PEFT's format (runs with `lora`).
    pub fn adapter(&self) -> PathBuf {
        self.root.join("adapter")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }
    /// The drift reference: the exported model's validation predictions.
    pub fn reference(&self) -> PathBuf {
        self.root.join("reference.json")
    }
    /// Whether a run was started here.
    pub fn holds_run(&self) -> bool {
        self.config().exists() || self.checkpoints().exists()
    }
}

/// Schema tag of a run folder's `config.json`: it marks the folder as one
/// `valor train` made, the only kind `--overwrite` clears.
pub const RUN_SCHEMA: &str = "valor.train.run/1";

/// `config.json` of a run folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfigFile {
    /// [`RUN_SCHEMA`]; empty in folders written before the tag existed.
    #[serde(default)]
    pub schema: String,
    pub config: TrainConfig,
    pub provenance: Provenance,
}

impl RunConfigFile {
    /// The file a run started with `config` writes.
    pub fn new(config: TrainConfig, provenance: Provenance) -> Self {
        Self {
            schema: RUN_SCHEMA.to_owned(),
            config,
            provenance,
        }
    }
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

/// Refuses a folder whose `config.json` Valor did not write: one that is
/// not a run configuration (an HF model's `config.json`, say) or carries
/// another schema. A run configuration without a schema is Valor's from
/// before the tag. No `config.json` is fine (nothing claims the folder).
pub(crate) fn check_valor_run(run: &RunDir) -> Result<()> {
    let path = run.config();
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let why = match serde_json::from_str::<RunConfigFile>(&text) {
        Ok(f) if f.schema.is_empty() || f.schema == RUN_SCHEMA => return Ok(()),
        Ok(f) => format!("its schema is `{}`, not `{RUN_SCHEMA}`", f.schema),
        Err(e) => format!("it is no run configuration ({e})"),
    };
    Err(Error::NotValorsFolder {
        dir: run.root.clone(),
        why: format!(
            "holds a config.json not written by Valor ({why}); Valor neither trains into nor deletes anything in such a folder: choose another --out"
        ),
    })
}

/// Removes what a run wrote into its folder, by name, so `--overwrite` can
/// start a new run there: `config.json`, `metrics.jsonl`, `tokenizer.json`,
/// `report.json`, `reference.json` and temporary files; in `checkpoints/` the checkpoints,
/// `model_config.json` and temporary files; in `model/` the files of a
/// model folder ([`valor_bert::is_model_file`]), in `adapter/` those of a
/// LoRA adapter ([`valor_bert::lora::is_adapter_file`]). Anything else (a user's
/// notes, in `model/` or `checkpoints/` too) stays, and so does a folder
/// that still holds it. A `config.json` Valor did not write stops it first.
pub(crate) fn remove_run_files(run: &RunDir) -> Result<()> {
    check_valor_run(run)?;
    for f in [
        run.config(),
        run.metrics(),
        run.tokenizer(),
        run.report(),
        run.reference(),
    ] {
        if f.is_file() {
            std::fs::remove_file(&f).map_err(|e| Error::io(&f, e))?;
        }
    }
    clean_temp_files(&run.root)?;
    remove_named(&run.checkpoints(), |name| {
        name == "model_config.json" || is_checkpoint_name(name) || name.starts_with(TEMP_PREFIX)
    })?;
    remove_named(&run.adapter(), valor_bert::lora::is_adapter_file)?;
    remove_named(&run.model(), valor_bert::is_model_file)
}

/// Removes the files of `dir` whose names `valor_wrote` accepts, then `dir`
/// itself if that left it empty.
pub(crate) fn remove_named(dir: &Path, valor_wrote: impl Fn(&str) -> bool) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if path.is_file() && entry.file_name().to_str().is_some_and(&valor_wrote) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .next()
        .is_none();
    if empty {
        std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
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
