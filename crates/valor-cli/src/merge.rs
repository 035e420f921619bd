//! `valor merge`: folds a PEFT LoRA adapter into its base model
//! (`W + (alpha/r) · A B` for every adapted layer, PEFT's
//! `merge_and_unload`) and writes a plain HF `BertForSequenceClassification`
//! folder (config.json with the labels, model.safetensors, the base's
//! tokenizer) that `valor predict`, `explain`, `serve` and transformers load
//! without the adapter.
//!
//! The folder is staged beside `--out` and renamed into place
//! (`valor_bert::save_hf`). An existing `--out` is refused without
//! `--overwrite`; with it, only an empty folder or a model folder
//! (config.json) is replaced, and its files that are not model files stay.
//! The base and adapter folders are never the output.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use valor_bert::{Backend, LoadOptions, lora};

use crate::Outcome;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model folder the adapter was trained on (HF layout: config.json,
    /// model.safetensors, tokenizer).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors).
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// The merged model folder to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace --out when it is an empty folder or a model folder (its
    /// files that are not model files are kept).
    #[arg(long)]
    pub overwrite: bool,
    /// Compute backend for the merge: cpu, wgpu, cuda.
    #[arg(long, value_name = "NAME", default_value = "cpu")]
    pub backend: Backend,
}

fn check_out(a: &MergeArgs) -> Result<()> {
    let out = &a.out;
    let Ok(meta) = std::fs::metadata(out) else {
        return Ok(());
    };
    for (what, dir) in [("base model", &a.model), ("adapter", &a.adapter)] {
        if let (Ok(x), Ok(y)) = (std::fs::canonicalize(out), std::fs::canonicalize(dir))
            && x == y
        {
            bail!(
                "{}: is the {what} folder; the merged model needs a folder of its own",
                out.display()
            );
        }
    }
    if !meta.is_dir() {
        bail!("{}: exists and is not a folder", out.display());
    }
    if !a.overwrite {
        bail!(
            "{}: already exists; pass --overwrite to replace the model folder there",
            out.display()
        );
    }
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .next()
        .is_none();
    if !empty && !out.join("config.json").is_file() {
        bail!(
            "{}: is a folder that holds no model (no config.json); refusing to write into it \
             even with --overwrite (choose another folder)",
            out.display()
        );
    }
    Ok(())
}

pub fn run(a: MergeArgs) -> Result<Outcome> {
    check_out(&a)?;
    let device = valor_bert::device(a.backend)?;
    let (config, model, report, adapter) = valor_bert::with_device_rng(|| {
        lora::load_hf_with_adapter(&a.model, &a.adapter, &device, LoadOptions::default())
    })
    .with_context(|| {
        format!(
            "loading {} with the adapter {}",
            a.model.display(),
            a.adapter.display()
        )
    })?;
    if !report.initialized.is_empty() {
        bail!(
            "{}: the adapter saved no classifier head and the base model has none ({} missing)",
            a.adapter.display(),
            report.initialized.join(", ")
        );
    }
    let adapted = lora::targets(&adapter.config, config.num_hidden_layers)?.len();
    let merged = lora::merge(model);
    valor_bert::save_hf(&merged, &config, &a.out, Some(&a.model))
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "merged {adapted} LoRA adapters (r={}, alpha={}, targets {}) into {}: {}",
        adapter.config.r,
        adapter.config.alpha,
        adapter.config.targets.join(","),
        a.model.display(),
        a.out.display()
    );
    Ok(Outcome::Ok)
}
