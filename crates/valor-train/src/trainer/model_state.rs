//! The model and optimizer as checkpoint bytes (burn records) and back,
//! and the optimizer every run starts with.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use valor_bert::{AdamW, AdamWConfig, BertForSequenceClassification, DecayMask};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

pub(super) fn new_optimizer(config: &TrainConfig, model: &BertForSequenceClassification) -> AdamW {
    AdamW::new(
        AdamWConfig {
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.adam_eps,
            weight_decay: config.weight_decay,
            decay_mask: DecayMask::ExceptBiasAndLayerNorm,
        },
        model,
    )
}

pub(super) fn load_model_bytes(
    model: BertForSequenceClassification,
    bytes: &[u8],
    path: &Path,
) -> Result<BertForSequenceClassification> {
    let bad = |e: burn::store::RecordError| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("model: {e}"),
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(bad)?;
    model.try_load_record(record).map_err(bad)
}

pub(super) fn model_bytes(model: &BertForSequenceClassification) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: PathBuf::from("<model>"),
            message: e.to_string(),
        })?;
    Ok(bytes.to_vec())
}

/// `optim` with the state a checkpoint at `path` saved as `bytes`.
pub(super) fn load_optimizer_bytes(optim: AdamW, bytes: &[u8], path: &Path) -> Result<AdamW> {
    let inner = optim
        .inner()
        .clone()
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("optimizer state: {e}"),
        })?;
    Ok(optim.with_inner(inner))
}
