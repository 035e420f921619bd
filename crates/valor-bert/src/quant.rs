//! Quantised model folders: symmetric int8 weights with one f32 scale per
//! output channel (per row of HF's `[out, in]` Linear weight), the scheme of
//! PyTorch's `quantize_per_channel` with `qint8` and a zero point of 0
//! (Jacob et al. 2018, §2; PyTorch's dynamic quantisation of BERT's Linear
//! layers stores weights this way).
//!
//! On disk a quantised folder is an HF folder whose `model.safetensors`
//! holds each quantised weight as an `I8` tensor under its HF name, in HF
//! layout, with its scales beside it as an `F32` tensor named
//! `<name>_scale` (`[rows]`); every other tensor stays as it was.
//! `quantization.json` ([`QUANTIZATION_FILE`], schema
//! [`QUANTIZATION_SCHEMA`]) records the scheme, which tensors were
//! quantised and their bytes before and after. Loading
//! ([`load_hf`](crate::load_hf)) recognises an `I8` tensor, takes its scales
//! and dequantises it (`w = q · scale`), so a quantised folder loads
//! wherever a plain one does, and keeps the stored integers and scales of
//! each Linear weight beside it ([`StoredInt8`], a burn reparameterization
//! whose value is the dequantised weight unchanged). Inference at
//! [`Precision::Int8`](crate::lowp::Precision::Int8)
//! ([`lowp::apply`](crate::lowp::apply)) packs the encoder's Linear layers
//! from those stored integers and scales for the int8 kernels
//! ([`valor_kernels::PackedI8::from_quantized`]): no dequantise–requantise
//! round trip. In f32 the dequantised weights compute as before.
//!
//! Weights are quantised by [`valor_kernels::quantize_row`], the rounding
//! the int8 kernels use for a weight they pack themselves (`--precision
//! int8` on an f32 folder): so a quantised folder computes at int8 exactly
//! what its f32 original computes at `--precision int8`.
//!
//! Scheme [`QuantScheme::Int8PerChannel`] quantises the encoder's and the
//! pooler's Linear weights; the embeddings, LayerNorms, biases and the
//! classification head stay f32. [`QuantScheme::Int8PerChannelEmbeddings`]
//! also quantises the word-embedding table, one scale per token row.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use burn::module::{Module, Param, ParamId, Reparameterization, Reparameterizer};
use burn::tensor::Tensor;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::classifier::BertForSequenceClassification;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::loader::{Layout, table};
use crate::save::{hf_tensors, write_folder};

/// The file that marks a quantised model folder.
pub const QUANTIZATION_FILE: &str = "quantization.json";
/// The schema of [`QUANTIZATION_FILE`].
pub const QUANTIZATION_SCHEMA: &str = "valor.quantize/1";

/// How weights are quantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantScheme {
    /// int8 per output channel for the encoder's and pooler's Linear weights.
    Int8PerChannel,
    /// As [`Int8PerChannel`](Self::Int8PerChannel), and the word-embedding
    /// table int8 per token row.
    Int8PerChannelEmbeddings,
}

impl QuantScheme {
    /// The scheme's name, as `--scheme` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8PerChannel => "int8-per-channel",
            Self::Int8PerChannelEmbeddings => "int8-per-channel-embeddings",
        }
    }

    /// Whether the tensor `hf` (an HF name, stored in `layout`) is quantised.
    fn quantises(self, hf: &str, layout: Layout) -> bool {
        let linear = layout == Layout::Transposed && !hf.starts_with("classifier.");
        match self {
            Self::Int8PerChannel => linear,
            Self::Int8PerChannelEmbeddings => {
                linear || hf == "bert.embeddings.word_embeddings.weight"
            }
        }
    }
}

impl std::str::FromStr for QuantScheme {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "int8-per-channel" => Ok(Self::Int8PerChannel),
            "int8-per-channel-embeddings" => Ok(Self::Int8PerChannelEmbeddings),
            other => Err(format!(
                "unknown quantisation scheme `{other}`; schemes are: int8-per-channel, \
                 int8-per-channel-embeddings"
            )),
        }
    }
}

/// What a quantisation did: the contents of `quantization.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationReport {
    /// [`QUANTIZATION_SCHEMA`].
    pub schema: String,
    /// The scheme's name.
    pub scheme: QuantScheme,
    /// HF names of the quantised tensors, in name-table order.
    pub quantized: Vec<String>,
    /// Bytes of the quantised tensors as f32.
    pub quantized_f32_bytes: u64,
    /// Bytes of the quantised tensors as int8 plus their f32 scales.
    pub quantized_int8_bytes: u64,
    /// `quantized_int8_bytes / quantized_f32_bytes`.
    pub quantized_ratio: f64,
    /// Bytes of every parameter as f32 (the unquantised model's tensors).
    pub model_f32_bytes: u64,
    /// Bytes of every parameter as stored here.
    pub model_bytes: u64,
    /// Largest `|w - q·scale|` over the quantised weights.
    pub max_abs_error: f64,
}

impl QuantizationReport {
    /// Reads `dir`'s `quantization.json`, `None` when the folder has none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(QUANTIZATION_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let report: Self =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })?;
        Ok(Some(report))
    }
}

/// Symmetric int8 quantisation of a row-major `[rows, cols]` matrix, one
/// scale per row: `scale = max|w| / 127`, `q = round(w · 127 / max|w|)`
/// (ties to even), in `-127..=127`, by [`valor_kernels::quantize_row`] (the
/// int8 kernels' own rounding). A row of zeros gets scale 0 and zeros; a
/// row with a non-finite value gets a NaN scale (which loading refuses).
pub fn quantize_rows(values: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    debug_assert_eq!(values.len(), rows * cols);
    let mut q = vec![0i8; rows * cols];
    let mut scales = Vec::with_capacity(rows);
    for (row, qrow) in values
        .chunks_exact(cols.max(1))
        .zip(q.chunks_exact_mut(cols.max(1)))
        .take(rows)
    {
        scales.push(valor_kernels::quantize_row(row, qrow));
    }
    (q, scales)
}

/// A Linear weight as a quantised folder stores it: `rows × cols` int8
/// values in HF's `[out, in]` layout, one scale per row.
#[derive(Debug)]
pub struct Int8Weight {
    /// The stored integers, row-major `[rows, cols]`.
    pub q: Vec<i8>,
    /// One scale per row: `w ≈ q · scale`.
    pub scales: Vec<f32>,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

/// The stored int8 form of a Linear weight loaded from a quantised folder,
/// attached to the weight's [`Param`]; its value is the (dequantised) f32
/// weight unchanged. [`lowp::apply`](crate::lowp::apply) at int8 packs
/// these integers and scales rather than quantising the f32 weight again.
#[derive(Module, Debug)]
pub struct StoredInt8 {
    #[module(skip)]
    weight: Arc<Int8Weight>,
}

impl StoredInt8 {
    /// The stored integers and scales.
    pub fn weight(&self) -> &Int8Weight {
        &self.weight
    }
}

impl Reparameterization for StoredInt8 {
    const NAME: &'static str = "int8";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        base
    }
}

/// Attaches [`StoredInt8`] to the parameters named (by module path) in its
/// map, as loading a quantised folder does.
pub(crate) struct AttachStored(pub HashMap<String, Arc<Int8Weight>>);

impl Reparameterizer for &mut AttachStored {
    type Reparam = StoredInt8;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<StoredInt8>) {
        match self.0.remove(path) {
            Some(weight) if D == 2 => (param, Some(StoredInt8 { weight })),
            _ => (param, None),
        }
    }
}

/// How many Linear weights of `model` carry their stored int8 form (the
/// quantised Linear weights of a folder `valor quantize` wrote).
pub fn stored_int8_count(model: &BertForSequenceClassification) -> usize {
    stored_by_id(model).len()
}

/// The stored int8 forms of `model`'s Linear weights, by parameter id.
fn stored_by_id(model: &BertForSequenceClassification) -> HashMap<ParamId, Arc<Int8Weight>> {
    encoder_linears(model)
        .chain([&model.bert.pooler.dense])
        .filter_map(|lin| {
            let s = lin.weight.reparameterization::<StoredInt8>()?;
            Some((lin.weight.id, s.weight.clone()))
        })
        .collect()
}

/// The encoder's Linear layers, layer by layer: query, key, value,
/// attention output, intermediate, output (what quantisation and the
/// low-precision kernels act on, with the pooler's for quantisation).
pub(crate) fn encoder_linears(
    model: &BertForSequenceClassification,
) -> impl Iterator<Item = &burn::nn::Linear> {
    model.bert.encoder.layers.iter().flat_map(|l| {
        [
            &l.attention.query,
            &l.attention.key,
            &l.attention.value,
            &l.attention.output,
            &l.intermediate,
            &l.output,
        ]
    })
}

/// Takes the [`StoredInt8`] forms off `model`'s weights (their values, the
/// dequantised weights, stay) and returns them by parameter id. burn's
/// module mapping keeps a parameter's reparameterization and drops one a
/// reparameterizer attaches to it, so whatever attaches its own (LoRA
/// adapters, [`lowp::apply`](crate::lowp::apply)'s packed weights) calls
/// this first.
pub(crate) fn take_stored(
    model: BertForSequenceClassification,
) -> (
    BertForSequenceClassification,
    HashMap<ParamId, Arc<Int8Weight>>,
) {
    let stored = stored_by_id(&model);
    if stored.is_empty() {
        return (model, stored);
    }
    (model.materialize(), stored)
}

impl Int8Weight {
    /// Whether `w` (`[rows, cols]`, HF layout) is still exactly this
    /// weight dequantised: a weight changed since loading (trained, merged)
    /// is quantised afresh rather than replaced by stale integers.
    pub(crate) fn matches(&self, w: &[f32]) -> bool {
        w.len() == self.q.len()
            && dequantize_rows(&self.q, &self.scales, self.cols)
                .iter()
                .zip(w)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// The inverse of [`quantize_rows`]: `w = q · scale` of its row.
pub fn dequantize_rows(q: &[i8], scales: &[f32], cols: usize) -> Vec<f32> {
    q.chunks_exact(cols.max(1))
        .zip(scales)
        .flat_map(|(row, &s)| row.iter().map(move |&v| f32::from(v) * s))
        .collect()
}

/// The name of the scales of the quantised tensor `name`.
pub fn scale_name(name: &str) -> String {
    format!("{name}_scale")
}

/// Reads an `I8` checkpoint tensor `[rows, cols]` (HF layout) with its
/// scales `[rows]`, both from `path`; errors name the tensor.
pub(crate) fn read_int8_view(
    path: &Path,
    name: &str,
    weight: &TensorView<'_>,
    scales: Option<&TensorView<'_>>,
) -> Result<Int8Weight> {
    let shape = weight.shape();
    let [rows, cols] = shape else {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            message: format!(
                "tensor `{name}` is int8 with shape {shape:?}; only 2-D weights are quantised"
            ),
        });
    };
    let Some(scales) = scales else {
        return Err(Error::MissingTensor {
            path: path.to_path_buf(),
            name: scale_name(name),
            expected: vec![*rows],
        });
    };
    if scales.dtype() != Dtype::F32 || scales.shape() != [*rows] {
        return Err(Error::ShapeMismatch {
            path: path.to_path_buf(),
            name: scale_name(name),
            expected: vec![*rows],
            found: scales.shape().to_vec(),
            hint: format!(
                " (dtype {:?}): the scales of an int8 tensor are F32, one per row",
                scales.dtype()
            ),
        });
    }
    let q: Vec<i8> = weight.data().iter().map(|&b| b as i8).collect();
    let s: Vec<f32> = scales
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(bad) = s.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            message: format!(
                "tensor `{}`: scale {bad} is {}, not a finite number >= 0",
                scale_name(name),
                s[bad]
            ),
        });
    }
    Ok(Int8Weight {
        q,
        scales: s,
        rows: *rows,
        cols: *cols,
    })
}

/// Writes `model` quantised with `scheme` as a model folder at `dir`
/// (config.json, model.safetensors, [`QUANTIZATION_FILE`], the tokenizer
/// from `tokenizer_src`, and `extra` files such as `thresholds.json`),
/// atomically as [`save_hf`](crate::save_hf) writes a folder.
pub fn save_quantized(
    model: &BertForSequenceClassification,
    config: &BertConfig,
    dir: &Path,
    tokenizer_src: Option<&Path>,
    scheme: QuantScheme,
    extra: &[(&str, Vec<u8>)],
) -> Result<QuantizationReport> {
    let layouts: HashMap<String, Layout> = table(model.bert.encoder.layers.len())
        .into_iter()
        .map(|e| (e.hf, e.layout))
        .collect();
    let tensors = hf_tensors(model)?;
    let mut report = QuantizationReport {
        schema: QUANTIZATION_SCHEMA.into(),
        scheme,
        quantized: Vec::new(),
        quantized_f32_bytes: 0,
        quantized_int8_bytes: 0,
        quantized_ratio: 0.0,
        model_f32_bytes: 0,
        model_bytes: 0,
        max_abs_error: 0.0,
    };
    // (name, dtype, shape, bytes), in name-table order.
    let mut stored: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &tensors {
        let f32_bytes = 4 * t.values.len() as u64;
        report.model_f32_bytes += f32_bytes;
        let layout = layouts.get(&t.name).copied().unwrap_or(Layout::AsIs);
        if !(scheme.quantises(&t.name, layout) && t.shape.len() == 2) {
            report.model_bytes += f32_bytes;
            stored.push((
                t.name.clone(),
                Dtype::F32,
                t.shape.clone(),
                le_bytes(&t.values),
            ));
            continue;
        }
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let (q, scales) = quantize_rows(&t.values, rows, cols);
        let back = dequantize_rows(&q, &scales, cols);
        let err = t
            .values
            .iter()
            .zip(&back)
            .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
        report.max_abs_error = report.max_abs_error.max(err);
        let int8_bytes = (q.len() + 4 * scales.len()) as u64;
        report.quantized.push(t.name.clone());
        report.quantized_f32_bytes += f32_bytes;
        report.quantized_int8_bytes += int8_bytes;
        report.model_bytes += int8_bytes;
        stored.push((
            t.name.clone(),
            Dtype::I8,
            t.shape.clone(),
            q.iter().map(|&v| v as u8).collect(),
        ));
        stored.push((
            scale_name(&t.name),
            Dtype::F32,
            vec![rows],
            le_bytes(&scales),
        ));
    }
    if report.quantized_f32_bytes > 0 {
        report.quantized_ratio =
            report.quantized_int8_bytes as f64 / report.quantized_f32_bytes as f64;
    }
    let weights_path = dir.join("model.safetensors");
    let mut views = Vec::with_capacity(stored.len());
    for (name, dtype, shape, data) in &stored {
        let view =
            TensorView::new(*dtype, shape.clone(), data).map_err(|e| Error::Safetensors {
                path: weights_path.clone(),
                message: format!("tensor `{name}`: {e}"),
            })?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("valor_quantization".to_string(), scheme.name().to_string()),
    ]);
    let weights =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Safetensors {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
    let json = serde_json::to_string_pretty(&report).map_err(|source| Error::Json {
        path: dir.join(QUANTIZATION_FILE),
        source,
    })?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![(QUANTIZATION_FILE, format!("{json}\n").into())];
    files.extend(extra.iter().map(|(n, b)| (*n, b.clone())));
    write_folder(config, dir, &weights, tokenizer_src, &files)?;
    Ok(report)
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_within_half_a_step() {
        let values = [0.5, -1.0, 0.25, 0.0, 3.0, -0.1, 0.0, 0.0, 0.0];
        let (q, s) = quantize_rows(&values, 3, 3);
        assert_eq!(q[1], -127);
        assert_eq!(q[4], 127);
        assert_eq!(s[2], 0.0, "a zero row has scale 0");
        let back = dequantize_rows(&q, &s, 3);
        for (row, chunk) in values.chunks(3).enumerate() {
            for (j, w) in chunk.iter().enumerate() {
                let err = (w - back[row * 3 + j]).abs();
                assert!(err <= s[row] / 2.0 + 1e-7, "row {row} col {j}: {err}");
            }
        }
    }

    /// A quantised folder's Linear weights reach the int8 kernels as
    /// stored: a weight whose integers do not span ±127 (as `valor
    /// quantize` never writes, and quantising the dequantised weight again
    /// would change) computes with exactly its integers and scales.
    #[cfg(feature = "flex")]
    #[test]
    fn int8_packs_the_stored_integers_not_a_requantisation() {
        use burn::tensor::TensorData;
        use valor_kernels::PackedI8;

        let device = crate::device(crate::Backend::Cpu).unwrap();
        let mut config = BertConfig::new(97, 32, 2, 4, 64);
        config.max_position_embeddings = 40;
        config.type_vocab_size = 2;
        let config = config.with_num_labels(3);
        let model = crate::with_device_rng(|| config.init_classifier_seeded(&device, 3));
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("q");
        save_quantized(
            &model,
            &config,
            &folder,
            None,
            QuantScheme::Int8PerChannel,
            &[],
        )
        .unwrap();

        // Halve the integers of one weight and double its scales.
        let name = "bert.encoder.layer.1.attention.self.value.weight";
        let path = folder.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    v.dtype(),
                    v.shape().to_vec(),
                    v.data().to_vec(),
                )
            })
            .collect();
        let (mut q, mut scales) = (Vec::new(), Vec::new());
        for (n, _, _, data) in &mut tensors {
            if *n == name {
                q = data.iter().map(|&b| (b as i8) / 2).collect();
                *data = q.iter().map(|&v| v as u8).collect();
            } else if *n == scale_name(name) {
                scales = data
                    .chunks_exact(4)
                    .map(|b| 2.0 * f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                *data = le_bytes(&scales);
            }
        }
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        assert!(q.iter().all(|v| v.abs() <= 64) && scales.len() == 32);

        let (_, loaded, _) = crate::with_device_rng(|| {
            crate::load_hf(&folder, &device, crate::LoadOptions::default())
        })
        .unwrap();
        assert_eq!(stored_int8_count(&loaded), 2 * 6 + 1);
        let low = crate::lowp::apply(loaded, crate::lowp::Precision::Int8).unwrap();
        assert_eq!(crate::lowp::packed_count(&low), 2 * 6);
        let layer = &low.bert.encoder.layers[1].attention.value;
        let bias: Vec<f32> = layer
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();

        let m = 5;
        let x: Vec<f32> = (0..m * 32)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let input = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, 32]), &device);
        let got: Vec<f32> = crate::lowp::linear(layer, input)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mut want = vec![0f32; m * 32];
        PackedI8::from_quantized(&q, &scales, 32, 32)
            .unwrap()
            .linear(&x, m, Some(&bias), &mut want)
            .unwrap();
        assert_eq!(got, want, "the stored integers and scales");
        let mut again = vec![0f32; m * 32];
        PackedI8::pack(&dequantize_rows(&q, &scales, 32), 32, 32)
            .unwrap()
            .linear(&x, m, Some(&bias), &mut again)
            .unwrap();
        assert_ne!(got, again, "requantising the dequantised weight differs");
    }

    #[test]
    fn scheme_names_parse_back() {
        for s in [
            QuantScheme::Int8PerChannel,
            QuantScheme::Int8PerChannelEmbeddings,
        ] {
            assert_eq!(s.name().parse::<QuantScheme>(), Ok(s));
        }
        assert!("int4".parse::<QuantScheme>().is_err());
    }

    #[test]
    fn linear_scheme_leaves_head_and_embeddings() {
        let s = QuantScheme::Int8PerChannel;
        assert!(s.quantises(
            "bert.encoder.layer.0.attention.self.query.weight",
            Layout::Transposed
        ));
        assert!(!s.quantises("classifier.weight", Layout::Transposed));
        assert!(!s.quantises("bert.embeddings.word_embeddings.weight", Layout::AsIs));
        assert!(
            QuantScheme::Int8PerChannelEmbeddings
                .quantises("bert.embeddings.word_embeddings.weight", Layout::AsIs)
        );
    }
}
