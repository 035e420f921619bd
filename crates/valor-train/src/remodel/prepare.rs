//! What a remodeling reads before any work: the run's configuration and
//! data, its validation and test splits tokenized with the fairness column
//! first (the [`Context`]), and the output folder made ready.

use std::path::Path;

use valor_bert::Backend;
use valor_data::{Dataset, Encoded, TextTokenizer, load_dataset, split};

use super::{RemodelConfig, invalid, io_err};
use crate::config::TrainConfig;
use crate::error::Result;
use crate::trainer::{RunDir, read_run_config};

/// One split, tokenized, with what evaluation needs per row.
pub(super) struct SplitRows {
    pub(super) enc: Vec<Encoded>,
    pub(super) labels: Vec<u32>,
    /// Group ids per row, the fairness column first.
    pub(super) groups: Vec<Vec<u32>>,
    /// The fairness column's value per row.
    pub(super) fair_values: Vec<String>,
    pub(super) reference: Option<Vec<u32>>,
}

pub(super) struct Context {
    pub(super) config: RemodelConfig,
    pub(super) base: TrainConfig,
    pub(super) backend: Backend,
    pub(super) labels: Vec<String>,
    /// Group columns (name, values), the fairness column first.
    pub(super) group_columns: Vec<(String, Vec<String>)>,
    pub(super) valid: SplitRows,
    pub(super) test: SplitRows,
    pub(super) pad_id: u32,
    pub(super) special_ids: Vec<u32>,
    pub(super) eval_batch_size: usize,
}

/// Readies `out`: an earlier remodeling there is an error unless
/// `overwrite` (then its files are removed); `candidates/` is made.
pub(super) fn prepare_out(out: &Path, overwrite: bool) -> Result<()> {
    let previous = ["remodel.json", "remodel.html", "model", "candidates"].map(|f| out.join(f));
    if previous.iter().any(|p| p.exists()) {
        if !overwrite {
            return Err(invalid(
                out,
                "already holds a remodeling (remodel.json, model/ or candidates/); pass --overwrite to replace it",
            ));
        }
        for p in &previous {
            if p.is_dir() {
                std::fs::remove_dir_all(p).map_err(io_err(p))?;
            } else if p.exists() {
                std::fs::remove_file(p).map_err(io_err(p))?;
            }
        }
    }
    std::fs::create_dir_all(out.join("candidates")).map_err(io_err(out))
}

/// Reads the run folder and its data into a [`Context`].
pub(super) fn prepare(config: &RemodelConfig) -> Result<Context> {
    let base = read_run_config(&config.run_dir)?.config;
    let model_dir = RunDir::new(&config.run_dir).model();
    if !model_dir.join("config.json").is_file() {
        return Err(invalid(
            &config.run_dir,
            "has no trained model (model/config.json); finish the run first",
        ));
    }
    let (data, _) = load_dataset(&base.data)?;
    let splits = split(&data, &base.split)?;
    if splits.valid.is_empty() || splits.test.is_empty() {
        return Err(invalid(
            &data.source,
            format!(
                "remodel chooses on the validation split and confirms on the test split; the run's split has {} validation and {} test rows",
                splits.valid.len(),
                splits.test.len()
            ),
        ));
    }
    let (order, fair_at) = fairness_first(&base, &data)?;
    let tokenizer = TextTokenizer::from_model_dir(&model_dir, base.max_len)?;
    let rows = |idx: &[usize]| split_rows(&data.subset(idx), &tokenizer, &order, fair_at);
    let valid = rows(&splits.valid)?;
    let test = rows(&splits.test)?;
    let special_ids = ["[CLS]", "[SEP]"]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    Ok(Context {
        backend: config.backend.unwrap_or(base.backend),
        labels: data.label_names.clone(),
        group_columns: order
            .iter()
            .map(|&g| (data.groups[g].name.clone(), data.groups[g].values.clone()))
            .collect(),
        valid,
        test,
        pad_id: tokenizer.pad_id(),
        special_ids,
        eval_batch_size: base.eval_batch_size,
        base,
        config: config.clone(),
    })
}

/// The order of the group columns with the fairness column first (the
/// run's first fairness group, else the data's first group column), and
/// the fairness column's index in the data.
fn fairness_first(base: &TrainConfig, data: &Dataset) -> Result<(Vec<usize>, usize)> {
    let fair_name = base
        .fairness
        .groups
        .first()
        .cloned()
        .or_else(|| data.groups.first().map(|g| g.name.clone()))
        .ok_or_else(|| {
            invalid(
                &data.source,
                "remodel needs a group column for fairness; train with --group",
            )
        })?;
    let mut order: Vec<usize> = (0..data.groups.len()).collect();
    let fair_at = data
        .groups
        .iter()
        .position(|g| g.name == fair_name)
        .ok_or_else(|| {
            invalid(
                &data.source,
                format!("the fairness group column `{fair_name}` is not in the data"),
            )
        })?;
    order.retain(|&i| i != fair_at);
    order.insert(0, fair_at);
    Ok((order, fair_at))
}

/// One split's rows tokenized, with labels, group ids in `order` and the
/// fairness column's values.
fn split_rows(
    sub: &Dataset,
    tokenizer: &TextTokenizer,
    order: &[usize],
    fair_at: usize,
) -> Result<SplitRows> {
    Ok(SplitRows {
        enc: tokenizer.encode_batch(&sub.texts)?,
        labels: sub.labels.iter().map(|l| l.0).collect(),
        groups: (0..sub.len())
            .map(|i| order.iter().map(|&g| sub.groups[g].ids[i].0).collect())
            .collect(),
        fair_values: (0..sub.len())
            .map(|i| sub.groups[fair_at].value(i).to_owned())
            .collect(),
        reference: sub
            .reference_labels
            .as_ref()
            .map(|r| r.iter().map(|l| l.0).collect()),
    })
}
