//! What a remodeling reads before any work: the run's configuration and
//! data, its validation rows divided into fitting and selection rows and
//! its test rows, tokenized with the fairness column first (the
//! [`Context`]), and the output folder made ready.

use std::path::Path;

use valor_bert::Backend;
use valor_data::{Dataset, Encoded, TextTokenizer};

use super::{RemodelConfig, invalid, io_err};
use crate::checkpoint::write_atomic;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::trainer::{RunDir, read_run_config, remove_named, remove_run_files};

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

/// Which data rows each step of a remodeling reads (0-based, file order),
/// and their ids (the id column, or the 1-based row number).
pub(super) struct RowUse {
    /// Validation rows that fit post-processing and choose the
    /// retrainings' epochs.
    pub(super) fit: Vec<usize>,
    /// Validation rows that measure every candidate and choose `V_T`;
    /// disjoint from `fit`.
    pub(super) select: Vec<usize>,
    /// Test rows: the confirmation only.
    pub(super) test: Vec<usize>,
    /// Each data row's id.
    pub(super) ids: valor_data::Strs,
}

pub(super) struct Context {
    pub(super) config: RemodelConfig,
    pub(super) base: TrainConfig,
    pub(super) backend: Backend,
    pub(super) labels: Vec<String>,
    /// Group columns (name, values), the fairness column first.
    pub(super) group_columns: Vec<(String, Vec<String>)>,
    /// The validation rows post-processing is fitted on (`rows.fit`).
    pub(super) fit: SplitRows,
    /// The validation rows candidates are measured and chosen on
    /// (`rows.select`).
    pub(super) select: SplitRows,
    pub(super) test: SplitRows,
    pub(super) rows: RowUse,
    pub(super) pad_id: u32,
    pub(super) special_ids: Vec<u32>,
    pub(super) eval_batch_size: usize,
}

/// The file that marks an output folder as one `valor remodel` made
/// (written before anything else): `--overwrite` clears no other.
pub const REMODEL_MARKER: &str = ".valor-remodel.json";
/// [`REMODEL_MARKER`]'s schema tag.
const MARKER_SCHEMA: &str = "valor.remodel.folder/1";

/// Readies `out`: an earlier remodeling there is an error unless
/// `overwrite`, and then only a folder `valor remodel` made (its
/// [`REMODEL_MARKER`]) is cleared, and only of what it wrote: `remodel.json`,
/// `remodel.html`, the model files of `model/` and the runs' files in
/// `candidates/` (a user's own files stay). `model/` must end up empty,
/// since the chosen model replaces it whole. Then the marker and
/// `candidates/` are made.
pub(super) fn prepare_out(out: &Path, overwrite: bool) -> Result<()> {
    let marker = out.join(REMODEL_MARKER);
    let previous = [
        "remodel.json",
        "remodel.html",
        "model",
        "candidates",
        REMODEL_MARKER,
    ]
    .map(|f| out.join(f));
    if previous.iter().any(|p| p.exists()) {
        if !overwrite {
            return Err(invalid(
                out,
                "already holds a remodeling (remodel.json, model/ or candidates/); pass --overwrite to replace it",
            ));
        }
        if !is_marker(&marker) {
            return Err(Error::NotValorsFolder {
                dir: out.to_path_buf(),
                why: format!(
                    "holds remodel.json, model/ or candidates/ but was not made by `valor remodel` (no {REMODEL_MARKER}); nothing was replaced: choose another --out"
                ),
            });
        }
        clear_previous(out)?;
    }
    std::fs::create_dir_all(out.join("candidates")).map_err(io_err(out))?;
    let text = format!("{{\"schema\": \"{MARKER_SCHEMA}\"}}\n");
    write_atomic(&marker, text.as_bytes())
}

/// Whether `path` is a [`REMODEL_MARKER`] Valor wrote.
fn is_marker(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["schema"] == MARKER_SCHEMA)
}

/// Removes what an earlier remodeling wrote into `out`; first checks that
/// `model/` holds only model files (the chosen model replaces it whole).
fn clear_previous(out: &Path) -> Result<()> {
    let model = out.join("model");
    if model.is_dir() {
        let foreign: Vec<String> = std::fs::read_dir(&model)
            .map_err(io_err(&model))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !valor_bert::is_model_file(n))
            .collect();
        if !foreign.is_empty() {
            return Err(Error::NotValorsFolder {
                dir: model,
                why: format!(
                    "holds files that are not a model's ({}); the chosen model replaces this folder whole, so move them elsewhere first; nothing was removed",
                    foreign.join(", ")
                ),
            });
        }
    }
    for f in ["remodel.json", "remodel.html"].map(|f| out.join(f)) {
        if f.is_file() {
            std::fs::remove_file(&f).map_err(io_err(&f))?;
        }
    }
    let candidates = out.join("candidates");
    if candidates.is_dir() {
        for entry in std::fs::read_dir(&candidates).map_err(io_err(&candidates))? {
            let path = entry.map_err(io_err(&candidates))?.path();
            if path.is_dir() {
                // A run folder whose config.json is foreign is left alone.
                match remove_run_files(&RunDir::new(&path)) {
                    Ok(()) => remove_named(&path, |_| false)?,
                    Err(Error::NotValorsFolder { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        remove_named(&candidates, |_| false)?;
    }
    remove_named(&model, valor_bert::is_model_file)
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
    let crate::splits::RunData { data, splits, .. } = crate::splits::load_run_data(&base)?;
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
    let (fit_rows, select_rows) = crate::splits::selection_split(
        &splits.valid,
        |i| (data.labels[i].0, data.groups[fair_at].ids[i].0),
        base.split.seed,
    );
    if fit_rows.is_empty() || select_rows.is_empty() {
        return Err(invalid(
            &data.source,
            format!(
                "remodel fits post-processing on one half of the validation split and chooses on the other; the run's split has {} validation row(s), at least 2 are needed",
                splits.valid.len()
            ),
        ));
    }
    let tokenizer = TextTokenizer::from_model_dir(&model_dir, base.max_len)?;
    let rows = |idx: &[usize]| split_rows(&data.subset(idx), &tokenizer, &order, fair_at);
    let fit = rows(&fit_rows)?;
    let select = rows(&select_rows)?;
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
        fit,
        select,
        test,
        rows: RowUse {
            fit: fit_rows,
            select: select_rows,
            test: splits.test.clone(),
            ids: data.ids.clone(),
        },
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
        enc: tokenizer.encode_batch(&sub.texts.as_strs())?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A remodeling's folder as `valor remodel` leaves it, plus a user's
    /// notes beside its files (one in a candidate's `model/`).
    fn previous_remodeling(out: &Path) {
        write(
            &out.join(REMODEL_MARKER),
            &format!("{{\"schema\": \"{MARKER_SCHEMA}\"}}"),
        );
        let run = out.join("candidates").join("01-lambda-0.5");
        write(&run.join("config.json"), "{}");
        for f in ["metrics.jsonl", "tokenizer.json", "report.json"] {
            write(&run.join(f), "x");
        }
        write(&run.join("checkpoints").join("step-00000003.ckpt"), "x");
        write(&run.join("checkpoints").join("model_config.json"), "x");
        write(&run.join("model").join("model.safetensors"), "x");
        write(&run.join("model").join("my-notes.txt"), "mine");
        write(&out.join("remodel.json"), "{}");
        write(&out.join("remodel.html"), "<html>");
        write(&out.join("model").join("model.safetensors"), "x");
        write(&out.join("model").join("thresholds.json"), "{}");
        write(&out.join("notes.txt"), "mine");
    }

    #[test]
    fn overwrite_clears_only_what_remodel_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        previous_remodeling(out);
        // The candidate's config.json is no run configuration: left alone.
        let err = prepare_out(out, true);
        assert!(err.is_ok(), "{err:?}");
        let run = out.join("candidates").join("01-lambda-0.5");
        assert!(
            run.join("config.json").exists(),
            "a foreign config.json was removed"
        );

        // With Valor's own run configuration, the candidate is cleared but
        // for the user's notes.
        previous_remodeling(out);
        let provenance = crate::report::Provenance {
            seed: 1,
            split_seed: 2,
            git_commit: String::new(),
            crate_version: String::new(),
            backend: "cpu".into(),
            dtype: "f32".into(),
            dataset: String::new(),
            dataset_sha256: String::new(),
            dataset_rows: 0,
            rows: crate::report::SplitRows {
                train: 0,
                valid: 0,
                test: 0,
            },
            labels: Vec::new(),
            fairness_groups: Vec::new(),
            tokenizer_vocab_size: 0,
            model_parameters: 0,
            fairness_lambda: 0.0,
            total_steps: 0,
            split_ids: None,
            split_files: None,
        };
        let file = crate::trainer::RunConfigFile::new(
            TrainConfig::scratch(valor_data::builtin_spec(Path::new("data.csv")), "tiny"),
            provenance,
        );
        write(
            &run.join("config.json"),
            &serde_json::to_string(&file).unwrap(),
        );
        prepare_out(out, true).unwrap();
        let mut left: Vec<String> = Vec::new();
        for e in walk(out) {
            left.push(e.strip_prefix(out).unwrap().display().to_string());
        }
        left.sort();
        assert_eq!(
            left,
            [
                ".valor-remodel.json",
                "candidates/01-lambda-0.5/model/my-notes.txt",
                "notes.txt"
            ]
        );
    }

    #[test]
    fn a_folder_remodel_did_not_make_or_a_model_folder_with_other_files_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        write(&out.join("remodel.json"), "{}");
        write(&out.join("model").join("model.safetensors"), "x");
        let err = prepare_out(out, true).unwrap_err();
        assert!(
            err.to_string().contains("not made by `valor remodel`"),
            "{err}"
        );
        assert!(out.join("remodel.json").exists() && out.join("model").exists());

        previous_remodeling(out);
        write(&out.join("model").join("my-card.md"), "mine");
        let err = prepare_out(out, true).unwrap_err();
        assert!(err.to_string().contains("my-card.md"), "{err}");
        // Nothing was removed.
        assert!(out.join("remodel.json").exists());
        assert!(out.join("model").join("model.safetensors").exists());
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
