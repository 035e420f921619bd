//! Saving a model as an HF folder that `transformers` loads with
//! `BertForSequenceClassification.from_pretrained(dir)`: `config.json`
//! (with `architectures`, `model_type`, `id2label`, `label2id`),
//! `model.safetensors` under HF names (`bert.…`, `classifier.…`, Linear
//! weights transposed back to `[out, in]`, metadata `format: pt` as
//! transformers requires) and the tokenizer files.
//!
//! The folder is written atomically: everything goes into a temporary
//! folder next to `dir`, each file fsynced, then renamed into place; a
//! previous folder at `dir` is replaced only after the new one is complete.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::classifier::BertForSequenceClassification;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::loader::{Layout, table, transpose};

/// Tokenizer files copied from a tokenizer folder, when present.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Whether `name` is a file of a model folder Valor writes or reads: the
/// weights, `config.json`, the tokenizer files, the `thresholds.json`
/// of a remodelled model (a decision rule for these weights), and the
/// `quantization.json` of a quantised one. Any other
/// file in a model folder is the user's: a re-save keeps it, and
/// `--overwrite` leaves it.
pub fn is_model_file(name: &str) -> bool {
    matches!(
        name,
        "model.safetensors" | "config.json" | "thresholds.json" | crate::quant::QUANTIZATION_FILE
    ) || TOKENIZER_FILES.contains(&name)
}

/// One parameter in HF layout, under its HF name.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every parameter under its HF name, in HF layout and name-table order.
pub fn hf_tensors(model: &BertForSequenceClassification) -> Result<Vec<HfTensor>> {
    let entries = table(model.bert.encoder.layers.len());
    let mut collect = Collect {
        path: Vec::new(),
        values: HashMap::new(),
        error: None,
    };
    model.visit(&mut collect);
    if let Some(e) = collect.error {
        return Err(e);
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut used = HashSet::new();
    for e in &entries {
        let (shape, values) = collect
            .values
            .remove(&e.module)
            .ok_or_else(|| Error::Unmapped {
                path: e.module.clone(),
            })?;
        used.insert(e.module.clone());
        let (shape, values) = match e.layout {
            Layout::AsIs => (shape, values),
            Layout::Transposed => {
                let t = transpose(&values, shape[0], shape[1]);
                (vec![shape[1], shape[0]], t)
            }
        };
        out.push(HfTensor {
            name: e.hf.clone(),
            shape,
            values,
        });
    }
    if let Some(path) = collect.values.into_keys().next() {
        return Err(Error::Unmapped { path });
    }
    Ok(out)
}

struct Collect {
    path: Vec<String>,
    values: HashMap<String, (Vec<usize>, Vec<f32>)>,
    error: Option<Error>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        match tensor.try_into_vec_as::<f32>() {
            Ok(v) => {
                self.values.insert(name, (shape, v));
            }
            Err(e) => {
                self.error.get_or_insert(Error::TensorRead {
                    name,
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Writes `model` and `config` as an HF `BertForSequenceClassification`
/// folder at `dir`, copying the tokenizer from `tokenizer_src` (a folder:
/// the files of [`TOKENIZER_FILES`] it has; or a `tokenizer.json` file).
/// The folder is made beside `dir` and renamed into place; the files of an
/// earlier folder there that are not model files ([`is_model_file`]: a
/// user's notes, say) are moved into the new one.
pub fn save_hf(
    model: &BertForSequenceClassification,
    config: &BertConfig,
    dir: &Path,
    tokenizer_src: Option<&Path>,
) -> Result<()> {
    config.validate()?;
    let layers = model.bert.encoder.layers.len();
    if layers != config.num_hidden_layers || model.num_labels() != config.num_labels {
        return Err(Error::Config {
            path: None,
            message: format!(
                "the model has {layers} layers and {} labels but the config says {} and {}",
                model.num_labels(),
                config.num_hidden_layers,
                config.num_labels
            ),
        });
    }
    let tensors = hf_tensors(model)?;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, data) in tensors.iter().zip(&bytes) {
        let view =
            TensorView::new(Dtype::F32, t.shape.clone(), data).map_err(|e| Error::Safetensors {
                path: dir.join("model.safetensors"),
                message: format!("tensor `{}`: {e}", t.name),
            })?;
        views.push((t.name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Safetensors {
            path: dir.join("model.safetensors"),
            message: e.to_string(),
        })?;
    write_folder(config, dir, &weights, tokenizer_src, &[])
}

/// Writes a model folder at `dir` as [`save_hf`] does: `weights` as
/// `model.safetensors`, `config.json`, the tokenizer from `tokenizer_src`
/// and `extra` files (name, bytes), staged beside `dir` and renamed into
/// place.
pub(crate) fn write_folder(
    config: &BertConfig,
    dir: &Path,
    weights: &[u8],
    tokenizer_src: Option<&Path>,
    extra: &[(&str, Vec<u8>)],
) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The folder is renamed into place and kept: an ordinary folder's
        // mode (0777 less the umask), not a temporary directory's 0700.
        builder.permissions(std::fs::Permissions::from_mode(0o777));
    }
    let tmp = builder
        .prefix(".valor-save-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    write_synced(&tmp.path().join("model.safetensors"), weights)?;
    for (name, bytes) in extra {
        write_synced(&tmp.path().join(name), bytes)?;
    }
    write_synced(
        &tmp.path().join("config.json"),
        format!("{}\n", config.to_json_string()).as_bytes(),
    )?;
    if let Some(src) = tokenizer_src {
        copy_tokenizer(src, tmp.path())?;
    }
    sync_dir(tmp.path())?;
    let staged = tmp.keep();
    replace_dir(&staged, dir).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staged);
    })?;
    sync_dir(&parent)?;
    Ok(())
}

fn copy_tokenizer(src: &Path, to: &Path) -> Result<()> {
    if src.is_file() {
        let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
        return write_synced(&to.join("tokenizer.json"), &bytes);
    }
    if !src.is_dir() {
        return Err(Error::MissingFile {
            dir: src.to_path_buf(),
            what: "tokenizer (neither a folder nor a tokenizer.json file)".into(),
        });
    }
    let mut copied = 0;
    for name in TOKENIZER_FILES {
        let from = src.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
            write_synced(&to.join(name), &bytes)?;
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(Error::MissingFile {
            dir: src.to_path_buf(),
            what: "tokenizer.json or vocab.txt".into(),
        });
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    valor_fsio::sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Moves the complete folder `staged` to `dir`, replacing an existing one
/// only after `staged` is in place next to it.
fn replace_dir(staged: &Path, dir: &Path) -> Result<()> {
    if !dir.exists() {
        return std::fs::rename(staged, dir).map_err(|e| Error::io(dir, e));
    }
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a folder",
            ),
        ));
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let old = tempfile::Builder::new()
        .prefix(".valor-old-")
        .tempdir_in(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .map_err(|e| Error::io(parent, e))?;
    let old_path = old.path().join("previous");
    std::fs::rename(dir, &old_path).map_err(|e| Error::io(dir, e))?;
    if let Err(e) = std::fs::rename(staged, dir) {
        // Put the previous folder back.
        let _ = std::fs::rename(&old_path, dir);
        return Err(Error::io(dir, e));
    }
    if let Err(e) = carry_user_files(&old_path, dir) {
        // Keep the previous folder (and what was not moved) where it is.
        let kept = old.keep();
        return Err(Error::io(
            dir,
            std::io::Error::other(format!(
                "the new model is in place, but moving the previous folder's other files failed ({e}); they are in {}",
                kept.join("previous").display()
            )),
        ));
    }
    drop(old);
    Ok(())
}

/// Moves the entries of `old` that are not model files into `new`.
fn carry_user_files(old: &Path, new: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(old)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(is_model_file) {
            continue;
        }
        std::fs::rename(entry.path(), new.join(&name))?;
    }
    Ok(())
}
