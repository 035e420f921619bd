//! Loading HuggingFace BERT checkpoints, through one declarative name table.
//!
//! [`NAME_TABLE`] lists, once, how every parameter of
//! [`BertForSequenceClassification`] is named in an HF
//! `BertForSequenceClassification` checkpoint and whether it is stored
//! transposed (HF's `nn.Linear` keeps `[out, in]`, burn's `Linear` `[in, out]`;
//! HF's `LayerNorm.weight/bias` are burn's `gamma/beta`). [`table`] expands it
//! for a number of layers; loading and [saving](crate::save_hf) both read it.
//!
//! Accepted names, as `from_pretrained` accepts them: bare `BertModel` names
//! (`embeddings.…`, `encoder.layer.N.…`, `pooler.…`) and
//! `BertForSequenceClassification` names (`bert.` prefix, plus
//! `classifier.weight/bias`); legacy `LayerNorm.gamma/beta`. The
//! `embeddings.position_ids` buffer is recognised and skipped (HF does not
//! load it either). Tensors of other heads (e.g. `cls.predictions.*` of a
//! pre-training checkpoint) are reported as unused, like HF's warning.
//!
//! Every parameter of the model must come from the checkpoint, except a
//! classifier head missing as a whole: that is drawn fresh (HF's "newly
//! initialized" case) and listed in [`LoadReport::initialized`]. A missing or
//! misshapen tensor is an error naming the tensor and both shapes. An `I8`
//! tensor is a quantised weight ([`crate::quant`]): it is dequantised with
//! the `<name>_scale` tensor beside it, and a Linear weight keeps its stored
//! integers and scales attached ([`crate::quant::StoredInt8`]) for the int8
//! kernels.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::classifier::BertForSequenceClassification;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::init;

/// How a checkpoint tensor relates to the burn parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    AsIs,
    /// HF `nn.Linear.weight` `[out, in]`, burn `Linear.weight` `[in, out]`.
    Transposed,
}

/// One row of the name table: the HF name (of a
/// `BertForSequenceClassification` checkpoint) and the burn module path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub hf: String,
    pub module: String,
    pub layout: Layout,
}

use Layout::{AsIs, Transposed};

/// The declarative table: `(HF name, burn path, layout)`. In the layer rows
/// `{i}` stands for the layer index (`bert.encoder.layer.{i}` in HF,
/// `bert.encoder.layers.{i}` in burn).
pub const NAME_TABLE: &[(&str, &str, Layout)] = &[
    // Embeddings (HF `BertEmbeddings`).
    (
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.word_embeddings.weight",
        AsIs,
    ),
    (
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        AsIs,
    ),
    (
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        AsIs,
    ),
    (
        "bert.embeddings.LayerNorm.weight",
        "bert.embeddings.layer_norm.gamma",
        AsIs,
    ),
    (
        "bert.embeddings.LayerNorm.bias",
        "bert.embeddings.layer_norm.beta",
        AsIs,
    ),
    // Encoder layer {i} (HF `BertLayer`).
    (
        "bert.encoder.layer.{i}.attention.self.query.weight",
        "bert.encoder.layers.{i}.attention.query.weight",
        Transposed,
    ),
    (
        "bert.encoder.layer.{i}.attention.self.query.bias",
        "bert.encoder.layers.{i}.attention.query.bias",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.attention.self.key.weight",
        "bert.encoder.layers.{i}.attention.key.weight",
        Transposed,
    ),
    (
        "bert.encoder.layer.{i}.attention.self.key.bias",
        "bert.encoder.layers.{i}.attention.key.bias",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.attention.self.value.weight",
        "bert.encoder.layers.{i}.attention.value.weight",
        Transposed,
    ),
    (
        "bert.encoder.layer.{i}.attention.self.value.bias",
        "bert.encoder.layers.{i}.attention.value.bias",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.attention.output.dense.weight",
        "bert.encoder.layers.{i}.attention.output.weight",
        Transposed,
    ),
    (
        "bert.encoder.layer.{i}.attention.output.dense.bias",
        "bert.encoder.layers.{i}.attention.output.bias",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.attention.output.LayerNorm.weight",
        "bert.encoder.layers.{i}.attention.layer_norm.gamma",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.attention.output.LayerNorm.bias",
        "bert.encoder.layers.{i}.attention.layer_norm.beta",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.intermediate.dense.weight",
        "bert.encoder.layers.{i}.intermediate.weight",
        Transposed,
    ),
    (
        "bert.encoder.layer.{i}.intermediate.dense.bias",
        "bert.encoder.layers.{i}.intermediate.bias",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.output.dense.weight",
        "bert.encoder.layers.{i}.output.weight",
        Transposed,
    ),
    (
        "bert.encoder.layer.{i}.output.dense.bias",
        "bert.encoder.layers.{i}.output.bias",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.output.LayerNorm.weight",
        "bert.encoder.layers.{i}.layer_norm.gamma",
        AsIs,
    ),
    (
        "bert.encoder.layer.{i}.output.LayerNorm.bias",
        "bert.encoder.layers.{i}.layer_norm.beta",
        AsIs,
    ),
    // Pooler (HF `BertPooler`).
    (
        "bert.pooler.dense.weight",
        "bert.pooler.dense.weight",
        Transposed,
    ),
    ("bert.pooler.dense.bias", "bert.pooler.dense.bias", AsIs),
    // Classification head.
    ("classifier.weight", "classifier.weight", Transposed),
    ("classifier.bias", "classifier.bias", AsIs),
];

/// Prefix of the head's HF names.
const HEAD_PREFIX: &str = "classifier.";

/// Buffers HF keeps in some checkpoints and does not load.
const IGNORED_BUFFERS: &[&str] = &[
    "bert.embeddings.position_ids",
    "bert.embeddings.token_type_ids",
];

/// [`NAME_TABLE`] expanded for `num_layers` encoder layers: embeddings,
/// layer 0 complete, layer 1, ..., pooler, head.
pub fn table(num_layers: usize) -> Vec<NameEntry> {
    let entry = |hf: &str, module: &str, layout| NameEntry {
        hf: hf.to_string(),
        module: module.to_string(),
        layout,
    };
    let is_layer_row = |hf: &str| hf.contains("{i}");
    let first_layer_row = NAME_TABLE
        .iter()
        .position(|r| is_layer_row(r.0))
        .unwrap_or(0);
    let mut out: Vec<NameEntry> = NAME_TABLE[..first_layer_row]
        .iter()
        .map(|&(hf, module, layout)| entry(hf, module, layout))
        .collect();
    for i in 0..num_layers {
        let i = i.to_string();
        for &(hf, module, layout) in NAME_TABLE.iter().filter(|r| is_layer_row(r.0)) {
            out.push(entry(
                &hf.replace("{i}", &i),
                &module.replace("{i}", &i),
                layout,
            ));
        }
    }
    out.extend(
        NAME_TABLE[first_layer_row..]
            .iter()
            .filter(|r| !is_layer_row(r.0))
            .map(|&(hf, module, layout)| entry(hf, module, layout)),
    );
    out
}

/// The canonical (`BertForSequenceClassification`) name of a checkpoint
/// tensor: `bert.` added to bare `BertModel` names, legacy
/// `LayerNorm.gamma/beta` renamed.
pub fn canonical_name(name: &str) -> String {
    let mut n = if name.starts_with("embeddings.")
        || name.starts_with("encoder.")
        || name.starts_with("pooler.")
    {
        format!("bert.{name}")
    } else {
        name.to_string()
    };
    for (old, new) in [
        ("LayerNorm.gamma", "LayerNorm.weight"),
        ("LayerNorm.beta", "LayerNorm.bias"),
    ] {
        if let Some(stem) = n.strip_suffix(old) {
            n = format!("{stem}{new}");
        }
    }
    n
}

/// Options for [`load_hf`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Size of the classifier head; overrides `id2label` of `config.json`
    /// (labels become `LABEL_i`).
    pub num_labels: Option<usize>,
    /// A safetensors file with `classifier.weight`/`classifier.bias` applied
    /// over the checkpoint's head (e.g. the parity fixture's `head.safetensors`).
    pub head: Option<PathBuf>,
    /// Overrides every dropout probability (hidden, attention, classifier).
    pub dropout: Option<f64>,
    /// Seed for a classifier head drawn fresh when the checkpoint has none.
    pub init_seed: u64,
}

/// What a load did, tensor by tensor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Weight files read, in order.
    pub files: Vec<PathBuf>,
    /// Whether the checkpoint used `BertForSequenceClassification` names (`bert.` prefix).
    pub prefixed: bool,
    /// Parameters set from a file: HF name → checkpoint name as found.
    pub loaded: BTreeMap<String, String>,
    /// Parameters drawn fresh because the checkpoint has no head (HF names).
    pub initialized: Vec<String>,
    /// Checkpoint buffers recognised and skipped (e.g. `embeddings.position_ids`).
    pub ignored_buffers: Vec<String>,
    /// Checkpoint tensors that match no parameter (names as found).
    pub unused: Vec<String>,
}

impl LoadReport {
    /// Every checkpoint tensor was consumed and every parameter loaded.
    pub fn is_complete(&self) -> bool {
        self.unused.is_empty() && self.initialized.is_empty()
    }
}

/// Loads an HF BERT folder: `config.json` and `model.safetensors` (or
/// sharded `model.safetensors.index.json`). The model is created on
/// `device` (use an autodiff device to fine-tune it).
///
/// `pytorch_model.bin` is recognised and refused with a conversion hint:
/// burn-store's PyTorch reader (the `pytorch-reader` crate) is not part of
/// this build.
pub fn load_hf(
    dir: &Path,
    device: &Device,
    options: LoadOptions,
) -> Result<(BertConfig, BertForSequenceClassification, LoadReport)> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            what: "config.json (an HF model folder holds config.json and model.safetensors)".into(),
        });
    }
    let mut config = BertConfig::from_file(&config_path)?;
    if let Some(n) = options.num_labels {
        config = config.with_num_labels(n);
    }
    if let Some(p) = options.dropout {
        config = config.with_dropout(p);
    }
    config.validate().map_err(|e| match e {
        Error::Config { message, .. } => Error::Config {
            path: Some(config_path.clone()),
            message,
        },
        other => other,
    })?;

    let files = weight_files(dir)?;
    let blobs = files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| Error::io(f, e)))
        .collect::<Result<Vec<_>>>()?;
    let mut sources = Vec::with_capacity(files.len());
    for (path, bytes) in files.iter().zip(&blobs) {
        sources.push(Source::parse(path, bytes)?);
    }

    let model = BertForSequenceClassification::init_lazy(&config, device);
    let (model, mut report) =
        apply_with_layers(model, config.num_hidden_layers, &sources, Part::All)?;
    report.files = files;

    let model = match &options.head {
        Some(head) => {
            let (model, head_report) = load_head(model, head)?;
            report.files.extend(head_report.files);
            for name in head_report.loaded.keys() {
                report.initialized.retain(|n| n != name);
            }
            report.loaded.extend(head_report.loaded);
            model
        }
        None => model,
    };
    if !report.initialized.is_empty() {
        // Draw the fresh head now, reproducibly, rather than at first use.
        device.seed(options.init_seed);
        init::materialize(&model);
    }
    Ok((config, model, report))
}

/// Applies a head file (`classifier.weight` `[num_labels, hidden]`,
/// `classifier.bias` `[num_labels]`) to `model`. Other tensors in the file
/// are reported as unused.
pub fn load_head(
    model: BertForSequenceClassification,
    path: &Path,
) -> Result<(BertForSequenceClassification, LoadReport)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let source = Source::parse(path, &bytes)?;
    let layers = model.bert.encoder.layers.len();
    let (model, mut report) =
        apply_with_layers(model, layers, std::slice::from_ref(&source), Part::Head)?;
    if !report.initialized.is_empty() {
        return Err(Error::MissingTensor {
            path: path.to_path_buf(),
            name: "classifier.weight".into(),
            expected: vec![
                model.num_labels(),
                model.classifier.weight.lazy_shape().dims::<2>()[0],
            ],
        });
    }
    report.files = vec![path.to_path_buf()];
    Ok((model, report))
}

/// The weight files of a folder.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: index.clone(),
                source,
            })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::UnsupportedFormat {
                path: index.clone(),
                message: "no `weight_map` object".into(),
            })?;
        let mut shards: Vec<PathBuf> = Vec::new();
        for file in map.values().filter_map(|v| v.as_str()) {
            let p = dir.join(file);
            if !shards.contains(&p) {
                shards.push(p);
            }
        }
        return Ok(shards);
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Err(Error::UnsupportedFormat {
            path: bin,
            message: "PyTorch pickle checkpoints are not read by this build; convert the folder \
                      with transformers (`model.save_pretrained(dir, safe_serialization=True)`) \
                      to get model.safetensors"
                .into(),
        });
    }
    Err(Error::MissingFile {
        dir: dir.to_path_buf(),
        what: "model.safetensors (or model.safetensors.index.json)".into(),
    })
}

/// One parsed safetensors file.
struct Source<'a> {
    path: &'a Path,
    tensors: SafeTensors<'a>,
}

impl<'a> Source<'a> {
    fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<Self> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self { path, tensors })
    }
}

/// A checkpoint tensor found under a canonical name.
struct Found<'a> {
    path: &'a Path,
    original: String,
    view: safetensors::tensor::TensorView<'a>,
}

impl Found<'_> {
    /// The values as f32, in `layout` order for a burn parameter.
    fn to_f32(&self, hf_name: &str, layout: Layout) -> Result<Vec<f32>> {
        let shape = self.view.shape().to_vec();
        let dtype = match self.view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            other => {
                return Err(Error::DType {
                    path: self.path.to_path_buf(),
                    name: hf_name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let data = TensorData::from_bytes_vec(self.view.data().to_vec(), shape.clone(), dtype);
        let values = data
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Safetensors {
                path: self.path.to_path_buf(),
                message: format!("tensor `{}`: {e}", self.original),
            })?;
        Ok(match layout {
            AsIs => values,
            Transposed => transpose(&values, shape[0], shape[1]),
        })
    }
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    Head,
}

fn apply_with_layers(
    model: BertForSequenceClassification,
    num_layers: usize,
    sources: &[Source<'_>],
    part: Part,
) -> Result<(BertForSequenceClassification, LoadReport)> {
    let mut found: HashMap<String, Found<'_>> = HashMap::new();
    let mut prefixed = false;
    for source in sources {
        for (name, view) in source.tensors.iter() {
            prefixed |= name.starts_with("bert.");
            found.insert(
                canonical_name(name),
                Found {
                    path: source.path,
                    original: name.to_string(),
                    view,
                },
            );
        }
    }
    let entries = table(num_layers);
    let wanted = |e: &NameEntry| part == Part::All || e.hf.starts_with(HEAD_PREFIX);
    let by_module: HashMap<&str, &NameEntry> =
        entries.iter().map(|e| (e.module.as_str(), e)).collect();
    let mut mapper = Apply {
        path: Vec::new(),
        by_module,
        wanted: &wanted,
        found: &mut found,
        loaded: BTreeMap::new(),
        missing: Vec::new(),
        errors: Vec::new(),
        unmapped: Vec::new(),
        stored: HashMap::new(),
    };
    let model = model.map(&mut mapper);
    let Apply {
        loaded,
        missing,
        mut errors,
        unmapped,
        stored,
        ..
    } = mapper;
    if !errors.is_empty() {
        return Err(errors.swap_remove(0));
    }
    let model = if stored.is_empty() {
        model
    } else {
        model.apply_reparameterization(&mut crate::quant::AttachStored(stored))
    };
    if let Some(path) = unmapped.into_iter().next() {
        return Err(Error::Unmapped { path });
    }
    let head_names: Vec<&str> = entries
        .iter()
        .filter(|e| e.hf.starts_with(HEAD_PREFIX))
        .map(|e| e.hf.as_str())
        .collect();
    let whole_head_missing = head_names
        .iter()
        .all(|h| missing.iter().any(|(name, _)| name == h));
    let mut initialized = Vec::new();
    for (name, expected) in missing {
        if whole_head_missing && name.starts_with(HEAD_PREFIX) {
            initialized.push(name);
        } else {
            return Err(Error::MissingTensor {
                path: sources
                    .first()
                    .map_or_else(PathBuf::new, |s| s.path.to_path_buf()),
                name,
                expected,
            });
        }
    }
    let mut ignored_buffers = Vec::new();
    let mut unused = Vec::new();
    let mut rest: Vec<(String, String)> = found.into_iter().map(|(k, f)| (k, f.original)).collect();
    rest.sort();
    for (canonical, original) in rest {
        if IGNORED_BUFFERS.contains(&canonical.as_str()) {
            ignored_buffers.push(original);
        } else {
            unused.push(original);
        }
    }
    Ok((
        model,
        LoadReport {
            files: Vec::new(),
            prefixed,
            loaded,
            initialized,
            ignored_buffers,
            unused,
        },
    ))
}

/// Walks the module, replacing each parameter with its checkpoint tensor.
struct Apply<'a, 'b, W: Fn(&NameEntry) -> bool> {
    path: Vec<String>,
    by_module: HashMap<&'a str, &'a NameEntry>,
    wanted: &'a W,
    found: &'a mut HashMap<String, Found<'b>>,
    loaded: BTreeMap<String, String>,
    missing: Vec<(String, Vec<usize>)>,
    errors: Vec<Error>,
    unmapped: Vec<String>,
    /// The stored int8 form of quantised Linear weights, by module path.
    stored: HashMap<String, std::sync::Arc<crate::quant::Int8Weight>>,
}

impl<W: Fn(&NameEntry) -> bool> ModuleMapper for Apply<'_, '_, W> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let Some(&entry) = self.by_module.get(path.as_str()) else {
            self.unmapped.push(path);
            return param;
        };
        if !(self.wanted)(entry) {
            return param;
        }
        let ours: [usize; D] = param.lazy_shape().dims();
        let mut expected = ours.to_vec();
        if entry.layout == Transposed {
            expected.reverse();
        }
        let Some(found) = self.found.remove(&entry.hf) else {
            self.missing.push((entry.hf.clone(), expected));
            return param;
        };
        if found.view.shape() != expected.as_slice() {
            let hint = if entry.hf.starts_with(HEAD_PREFIX) {
                "; the head has a different number of labels: set `num_labels` to match".to_string()
            } else {
                "; does config.json belong to this checkpoint?".to_string()
            };
            self.errors.push(Error::ShapeMismatch {
                path: found.path.to_path_buf(),
                name: found.original.clone(),
                expected,
                found: found.view.shape().to_vec(),
                hint,
            });
            return param;
        }
        let values = if found.view.dtype() == Dtype::I8 {
            // A quantised folder (`quant`): int8 with per-row scales beside it.
            let scales = self.found.remove(&crate::quant::scale_name(&entry.hf));
            crate::quant::read_int8_view(
                found.path,
                &found.original,
                &found.view,
                scales.as_ref().map(|s| &s.view),
            )
            .map(|w| {
                let v = crate::quant::dequantize_rows(&w.q, &w.scales, w.cols);
                match entry.layout {
                    AsIs => v,
                    Transposed => {
                        self.stored.insert(path.clone(), std::sync::Arc::new(w));
                        transpose(&v, expected[0], expected[1])
                    }
                }
            })
        } else {
            found.to_f32(&entry.hf, entry.layout)
        };
        let values = match values {
            Ok(v) => v,
            Err(e) => {
                self.errors.push(e);
                return param;
            }
        };
        let device = param.lazy_device();
        let tensor = Tensor::<D>::from_data(TensorData::new(values, ours), &device);
        self.loaded.insert(entry.hf.clone(), found.original);
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_layer_once() {
        let t = table(6);
        assert_eq!(t.len(), 5 + 6 * 16 + 2 + 2);
        let mut hf: Vec<_> = t.iter().map(|e| e.hf.clone()).collect();
        hf.sort();
        hf.dedup();
        assert_eq!(hf.len(), t.len());
        assert_eq!(t[0].hf, "bert.embeddings.word_embeddings.weight");
        assert_eq!(t[5].hf, "bert.encoder.layer.0.attention.self.query.weight");
        assert_eq!(t[5].module, "bert.encoder.layers.0.attention.query.weight");
        assert_eq!(t.last().unwrap().hf, "classifier.bias");
    }

    #[test]
    fn canonical_names_accept_bare_prefixed_and_legacy() {
        assert_eq!(
            canonical_name("encoder.layer.3.output.LayerNorm.gamma"),
            "bert.encoder.layer.3.output.LayerNorm.weight"
        );
        assert_eq!(
            canonical_name("bert.pooler.dense.bias"),
            "bert.pooler.dense.bias"
        );
        assert_eq!(canonical_name("classifier.weight"), "classifier.weight");
        assert_eq!(
            canonical_name("cls.predictions.bias"),
            "cls.predictions.bias"
        );
    }

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }
}
