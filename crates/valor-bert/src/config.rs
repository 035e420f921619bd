//! Hyperparameters of BERT (Devlin et al. 2019), read from and written to the
//! HuggingFace `config.json` schema, plus named presets for training from
//! scratch.
//!
//! The JSON field names are HF's (`hidden_size`, `num_hidden_layers`,
//! `layer_norm_eps`, `id2label`, ...). Keys this crate does not model are kept
//! in [`BertConfig::extra`] and written back on save, so a config survives a
//! load/save round trip.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Number of labels when neither `id2label` nor `num_labels` says otherwise.
/// (HF's own default is 2; Valor's decision tasks default to 3 classes.)
pub const DEFAULT_NUM_LABELS: usize = 3;

/// Feed-forward activation (`hidden_act` in HF's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: exact GELU with erf, as `torch.nn.functional.gelu` (HF `GELUActivation`).
    Gelu,
    /// `"gelu_new"`: tanh approximation (HF `NewGELUActivation`).
    GeluNew,
    /// `"gelu_pytorch_tanh"`: the same tanh approximation, PyTorch's kernel.
    GeluPytorchTanh,
    /// `"relu"`.
    Relu,
    /// `"silu"` / `"swish"`.
    Silu,
}

impl Activation {
    /// The HF name of the activation.
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluNew => "gelu_new",
            Activation::GeluPytorchTanh => "gelu_pytorch_tanh",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        }
    }

    /// Parses an HF `hidden_act` name.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" => Activation::GeluNew,
            "gelu_pytorch_tanh" => Activation::GeluPytorchTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }
}

/// BERT hyperparameters, HF `config.json` compatible.
///
/// Deserialising validates: the hidden size must divide into the heads, the
/// activation and position-embedding type must be supported, dropout
/// probabilities must lie in `[0, 1)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the classifier; `None` means `hidden_dropout_prob` (as HF).
    pub classifier_dropout: Option<f64>,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Standard deviation of the normal initialiser (HF `_init_weights`).
    pub initializer_range: f64,
    pub pad_token_id: u32,
    /// Size of the classifier head; always equal to `id2label.len()`.
    pub num_labels: usize,
    /// Label names by class id (HF `id2label`; `LABEL_i` when not given).
    pub id2label: Vec<String>,
    /// Every other key of `config.json`, kept verbatim for saving.
    pub extra: Map<String, Value>,
}

impl BertConfig {
    /// The names accepted by [`BertConfig::preset`].
    pub const PRESETS: &'static [&'static str] = &["tiny", "mini", "small", "medium", "base"];

    /// Reads and validates an HF `config.json`. Malformed JSON is an
    /// [`Error::Json`]; well-formed JSON with missing or invalid values an
    /// [`Error::Config`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            valor_fsio::read_to_string_capped(path, 1 << 20).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| {
            if source.is_data() {
                Error::Config {
                    path: Some(path.to_path_buf()),
                    message: source.to_string(),
                }
            } else {
                Error::Json {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }

    /// Parses and validates HF `config.json` text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config {
            path: None,
            message: e.to_string(),
        })
    }

    /// The HF `config.json` text for this configuration (with
    /// `architectures: ["BertForSequenceClassification"]`, `model_type: "bert"`,
    /// `id2label` and `label2id`).
    pub fn to_json_string(&self) -> String {
        // Serialising plain maps and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A configuration for training from scratch, by name (BERT miniatures of
    /// Turc et al. 2019 and BERT-base): `tiny` (2 layers, hidden 128),
    /// `mini` (4, 256), `small` (4, 512), `medium` (8, 512), `base` (12, 768).
    /// Uncased WordPiece vocabulary of 30,522 tokens, 512 positions.
    pub fn preset(name: &str) -> Result<Self> {
        let (layers, hidden) = match name {
            "tiny" => (2, 128),
            "mini" => (4, 256),
            "small" => (4, 512),
            "medium" => (8, 512),
            "base" => (12, 768),
            _ => {
                return Err(Error::UnknownPreset {
                    name: name.to_string(),
                    known: Self::PRESETS.join(", "),
                });
            }
        };
        Ok(Self::new(30_522, hidden, layers, hidden / 64, hidden * 4))
    }

    /// A configuration with HF's defaults for everything but the sizes.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            classifier_dropout: None,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            initializer_range: 0.02,
            pad_token_id: 0,
            num_labels: DEFAULT_NUM_LABELS,
            id2label: default_labels(DEFAULT_NUM_LABELS),
            extra: Map::new(),
        }
    }

    /// Sets the number of labels; label names become `LABEL_i` unless the
    /// count is unchanged.
    pub fn with_num_labels(mut self, num_labels: usize) -> Self {
        if num_labels != self.num_labels {
            self.num_labels = num_labels;
            self.id2label = default_labels(num_labels);
        }
        self
    }

    /// Sets the label names (and so the number of labels).
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.num_labels = labels.len();
        self.id2label = labels;
        self
    }

    /// Sets every dropout probability (hidden, attention, classifier).
    pub fn with_dropout(mut self, prob: f64) -> Self {
        self.hidden_dropout_prob = prob;
        self.attention_probs_dropout_prob = prob;
        self.classifier_dropout = None;
        self
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The dropout probability in front of the classifier.
    pub fn effective_classifier_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Checks the invariants the model relies on.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                path: None,
                message,
            })
        };
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("num_labels", self.num_labels),
        ] {
            if v == 0 {
                return fail(format!("`{name}` must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "`hidden_size` {} is not a multiple of `num_attention_heads` {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.effective_classifier_dropout()),
        ] {
            if !(0.0..1.0).contains(&p) {
                return fail(format!("`{name}` is {p}; it must lie in [0, 1)"));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return fail(format!(
                "`layer_norm_eps` is {}; it must be positive",
                self.layer_norm_eps
            ));
        }
        if self.id2label.len() != self.num_labels {
            return fail(format!(
                "`id2label` has {} names but `num_labels` is {}",
                self.id2label.len(),
                self.num_labels
            ));
        }
        Ok(())
    }

    /// `label2id`, the inverse of `id2label`.
    pub fn label2id(&self) -> Map<String, Value> {
        self.id2label
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), Value::from(i)))
            .collect()
    }
}

fn default_labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("LABEL_{i}")).collect()
}

/// The `config.json` shape, as HF writes it.
#[derive(Serialize, Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classifier_dropout: Option<f64>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_labels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id2label: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label2id: Option<Map<String, Value>>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}

impl TryFrom<RawConfig> for BertConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let hidden_act = Activation::from_hf_name(&raw.hidden_act).ok_or_else(|| {
            format!(
                "`hidden_act` `{}` is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, silu)",
                raw.hidden_act
            )
        })?;
        let mut extra = raw.extra;
        if let Some(kind) = extra.get("position_embedding_type")
            && kind.as_str() != Some("absolute")
        {
            return Err(format!(
                "`position_embedding_type` {kind} is not supported; only \"absolute\" is"
            ));
        }
        if let Some(kind) = extra.get("model_type")
            && kind.as_str() != Some("bert")
        {
            return Err(format!(
                "`model_type` is {kind}; this loader reads \"bert\" models"
            ));
        }
        // Written back by `into` from our own fields.
        extra.remove("architectures");
        extra.remove("model_type");
        let id2label = match raw.id2label {
            Some(map) => parse_id2label(&map)?,
            None => default_labels(raw.num_labels.unwrap_or(DEFAULT_NUM_LABELS)),
        };
        if let Some(n) = raw.num_labels
            && n != id2label.len()
        {
            return Err(format!(
                "`num_labels` is {n} but `id2label` names {} labels",
                id2label.len()
            ));
        }
        let config = BertConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act,
            hidden_dropout_prob: raw.hidden_dropout_prob,
            attention_probs_dropout_prob: raw.attention_probs_dropout_prob,
            classifier_dropout: raw.classifier_dropout,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            initializer_range: raw.initializer_range,
            pad_token_id: raw.pad_token_id.unwrap_or(0),
            num_labels: id2label.len(),
            id2label,
            extra,
        };
        config.validate().map_err(|e| match e {
            Error::Config { message, .. } => message,
            other => other.to_string(),
        })?;
        Ok(config)
    }
}

fn parse_id2label(map: &Map<String, Value>) -> Result<Vec<String>, String> {
    let mut labels = vec![None; map.len()];
    for (key, value) in map {
        let id: usize = key
            .parse()
            .map_err(|_| format!("`id2label` key `{key}` is not a class id"))?;
        let slot = labels.get_mut(id).ok_or_else(|| {
            format!(
                "`id2label` ids must be 0..{}, found {id}",
                map.len().saturating_sub(1)
            )
        })?;
        let name = value
            .as_str()
            .ok_or_else(|| format!("`id2label[{key}]` is not a string"))?;
        *slot = Some(name.to_string());
    }
    Ok(labels.into_iter().flatten().collect())
}

impl From<BertConfig> for RawConfig {
    fn from(c: BertConfig) -> Self {
        let label2id = c.label2id();
        let id2label = c
            .id2label
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), Value::from(l.clone())))
            .collect();
        let mut extra = Map::new();
        extra.insert(
            "architectures".into(),
            Value::from(vec!["BertForSequenceClassification"]),
        );
        extra.insert("model_type".into(), Value::from("bert"));
        for (k, v) in c.extra {
            extra.entry(k).or_insert(v);
        }
        RawConfig {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            hidden_act: c.hidden_act.hf_name().to_string(),
            hidden_dropout_prob: c.hidden_dropout_prob,
            attention_probs_dropout_prob: c.attention_probs_dropout_prob,
            classifier_dropout: c.classifier_dropout,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size,
            layer_norm_eps: c.layer_norm_eps,
            initializer_range: c.initializer_range,
            pad_token_id: Some(c.pad_token_id),
            num_labels: None,
            id2label: Some(id2label),
            label2id: Some(label2id),
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{
      "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": ["BertModel"],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 384,
      "initializer_range": 0.02,
      "intermediate_size": 1536,
      "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512,
      "model_type": "bert",
      "num_attention_heads": 12,
      "num_hidden_layers": 6,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    }"#;

    #[test]
    fn reads_hf_config_and_defaults_to_three_labels() {
        let c = BertConfig::from_json_str(MINILM).unwrap();
        assert_eq!(c.hidden_size, 384);
        assert_eq!(c.num_hidden_layers, 6);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.hidden_act, Activation::Gelu);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.num_labels, DEFAULT_NUM_LABELS);
        assert_eq!(c.id2label, vec!["LABEL_0", "LABEL_1", "LABEL_2"]);
        assert_eq!(c.extra["transformers_version"], "4.8.2");
    }

    #[test]
    fn writes_classification_config_with_label_maps() {
        let c = BertConfig::from_json_str(MINILM)
            .unwrap()
            .with_labels(vec!["deny".into(), "approve".into()]);
        let v: Value = serde_json::from_str(&c.to_json_string()).unwrap();
        assert_eq!(v["architectures"][0], "BertForSequenceClassification");
        assert_eq!(v["model_type"], "bert");
        assert_eq!(v["id2label"]["1"], "approve");
        assert_eq!(v["label2id"]["deny"], 0);
        assert_eq!(v["_name_or_path"], "nreimers/MiniLM-L6-H384-uncased");
        let back = BertConfig::from_json_str(&c.to_json_string()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn id2label_sets_num_labels_in_id_order() {
        let text = MINILM.replace(
            "\"use_cache\": true,",
            "\"use_cache\": true, \"id2label\": {\"1\": \"b\", \"0\": \"a\", \"10\": \"k\", \"2\": \"c\", \"3\": \"d\", \"4\": \"e\", \"5\": \"f\", \"6\": \"g\", \"7\": \"h\", \"8\": \"i\", \"9\": \"j\"},",
        );
        let c = BertConfig::from_json_str(&text).unwrap();
        assert_eq!(c.num_labels, 11);
        assert_eq!(c.id2label[10], "k");
        assert_eq!(c.id2label[2], "c");
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let text = MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
        let err = BertConfig::from_json_str(&text).unwrap_err().to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }

    #[test]
    fn rejects_unsupported_activation_and_position_type() {
        let text = MINILM.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"mish\"");
        let err = BertConfig::from_json_str(&text).unwrap_err().to_string();
        assert!(err.contains("mish"), "{err}");
        let text = MINILM.replace("\"absolute\"", "\"relative_key\"");
        let err = BertConfig::from_json_str(&text).unwrap_err().to_string();
        assert!(err.contains("relative_key"), "{err}");
    }

    #[test]
    fn presets_have_documented_sizes() {
        let tiny = BertConfig::preset("tiny").unwrap();
        assert_eq!((tiny.num_hidden_layers, tiny.hidden_size), (2, 128));
        let mini = BertConfig::preset("mini").unwrap();
        assert_eq!((mini.num_hidden_layers, mini.hidden_size), (4, 256));
        for name in BertConfig::PRESETS {
            BertConfig::preset(name).unwrap().validate().unwrap();
        }
        let err = BertConfig::preset("huge").unwrap_err().to_string();
        assert!(err.contains("tiny, mini"), "{err}");
    }
}
