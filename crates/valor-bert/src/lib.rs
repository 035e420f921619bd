//! BERT for sequence classification in burn 0.22, matching HuggingFace
//! `transformers` number for number.
//!
//! Owns: the model (`BertForSequenceClassification` of Devlin et al. 2019:
//! embeddings, Transformer encoder of Vaswani et al. 2017, pooler,
//! classifier), its configuration in HF's `config.json` schema, loading HF
//! checkpoints through one declarative name table and saving HF-compatible
//! folders, the choice of compute backend, and a PyTorch-exact AdamW
//! (Loshchilov & Hutter 2019).
//!
//! Does not know about: tokenization (valor-data hands over token ids),
//! datasets, training loops and schedules (valor-train), fairness metrics,
//! the command line.
//!
//! Main types: [`BertConfig`] holds the hyperparameters (serde from HF
//! `config.json`, or a named [preset](BertConfig::preset)) and builds a fresh
//! model with [`BertConfig::init_classifier`]. [`BertForSequenceClassification`]
//! is a burn `Module`; [`forward`](BertForSequenceClassification::forward)
//! maps a [`BertInput`] to logits, and
//! [`forward_full`](BertForSequenceClassification::forward_full) also returns
//! the pooled output, the mean-pooled sentence embedding and, with
//! [`ForwardOptions`], every hidden state and attention map
//! ([`BertOutput`]). [`load_hf`] reads an HF folder and says in a
//! [`LoadReport`] what it consumed; [`save_hf`] writes one. [`Backend`] and
//! [`device`] turn a `--backend` choice into a burn `Device`
//! ([`autodiff_device`] for training); [`AdamW`] updates a model from its
//! gradients. [`explain`] attributes decisions to tokens (integrated
//! gradients, attention rollout, occlusion) and measures how faithful the
//! attributions are (ERASER comprehensiveness and sufficiency).
//!
//! On the CPU (burn's `flex` device) the attention softmax, the residual +
//! LayerNorm blocks, GELU and the AdamW update run as fused multi-threaded
//! kernels with hand-written backward passes (private modules `fused` and
//! `kernels`), checked against the burn ops they replace; other devices run
//! burn's ops.
//!
//! burn 0.22 has no backend type parameter: tensors and modules carry a
//! runtime `Device`, so no type here is generic over a backend.

mod attention;
mod backend;
mod classifier;
mod config;
pub mod cost;
mod embeddings;
mod encoder;
mod error;
pub mod explain;
mod fused;
mod host;
mod init;
mod input;
mod kernels;
mod loader;
pub mod lora;
pub mod lowp;
mod model;
pub mod optim;
mod packed;
mod pooler;
pub mod quant;
mod save;

pub use attention::{BertAttention, mask_bias};
pub use backend::{
    Backend, GpuPrecision, TEST_BACKEND_ENV, autodiff_device, configure_precision, device,
    device_count, device_name, devices, prepare_precision, with_device_rng,
};
pub use classifier::{BertForSequenceClassification, cross_entropy};
pub use config::{Activation, BertConfig, DEFAULT_NUM_LABELS};
pub use embeddings::BertEmbeddings;
pub use encoder::{BertEncoder, BertLayer, EncoderOutput};
pub use error::{Error, Result};
pub use explain::{
    IgConfig, IgExplanation, TokenSequence, WordAttribution, attention_rollout, faithfulness,
    integrated_gradients, merge_words, occlusion, pad_baseline,
};
pub use host::tune_host_allocator;
pub use input::BertInput;
pub use loader::{
    Layout, LoadOptions, LoadReport, NAME_TABLE, NameEntry, canonical_name, load_head, load_hf,
    table as name_table,
};
pub use lowp::Precision;
pub use model::{BaseOutput, BertModel, BertOutput, ForwardOptions, mean_pooled_embedding};
pub use optim::{AdamW, AdamWConfig, DecayMask};
pub use packed::PackedInput;
pub use pooler::BertPooler;
pub use quant::{QUANTIZATION_FILE, QuantScheme, QuantizationReport, save_quantized};
pub use save::{HfTensor, TOKENIZER_FILES, hf_tensors, is_model_file, save_hf};

/// burn, re-exported so dependents use the same version and features.
pub use burn;
