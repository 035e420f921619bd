//! What a remodeling leaves behind besides its report: the chosen model
//! folder (with `thresholds.json` when post-processed), and the report's
//! provenance.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use valor_values::Evaluation;

use super::candidates::ModelEntry;
use super::prepare::Context;
use super::thresholds::{PostProcess, THRESHOLDS_FILE, THRESHOLDS_SCHEMA, ThresholdsFile};
use super::{invalid, io_err};
use crate::error::Result;
use crate::trainer::GIT_COMMIT;

/// Copies the chosen model folder to `to` (atomically: a temporary folder
/// beside it, renamed), with `thresholds.json` when post-processed.
pub(super) fn save_model(
    from: &Path,
    to: &Path,
    post: Option<&PostProcess>,
    group: &str,
    seed: u64,
) -> Result<()> {
    let parent = to.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".model-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    for entry in std::fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let path = entry.path();
        if path.is_file() {
            let dest = tmp.path().join(entry.file_name());
            std::fs::copy(&path, &dest).map_err(io_err(&path))?;
            std::fs::File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&dest))?;
        }
    }
    if let Some(post) = post {
        let file = ThresholdsFile {
            schema: THRESHOLDS_SCHEMA.into(),
            group_column: group.to_owned(),
            seed,
            post: post.clone(),
        };
        let path = tmp.path().join(THRESHOLDS_FILE);
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|e| invalid(&path, format!("serialising the thresholds: {e}")))?;
        text.push('\n');
        std::fs::write(&path, text).map_err(io_err(&path))?;
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&path))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, to).map_err(io_err(to))
}

pub(super) fn provenance(
    ctx: &Context,
    models: &[ModelEntry],
    test0: &Evaluation,
    test_t: &Evaluation,
) -> BTreeMap<String, Value> {
    let mut p = BTreeMap::new();
    p.insert(
        "run_dir".into(),
        json!(ctx.config.run_dir.display().to_string()),
    );
    p.insert(
        "dataset".into(),
        json!(ctx.base.data.path.display().to_string()),
    );
    p.insert("seed".into(), json!(ctx.base.seed));
    p.insert("split_seed".into(), json!(ctx.base.split.seed));
    p.insert("git_commit".into(), json!(GIT_COMMIT));
    p.insert(
        "valor_train_version".into(),
        json!(env!("CARGO_PKG_VERSION")),
    );
    p.insert("backend".into(), json!(ctx.backend.name()));
    p.insert("fairness_group".into(), json!(ctx.group_columns[0].0));
    p.insert("retraining_epochs".into(), json!(ctx.config.epochs));
    p.insert(
        "retraining_lr".into(),
        json!(ctx.config.lr.unwrap_or(ctx.base.lr)),
    );
    p.insert("timing_passes".into(), json!(ctx.config.timing_passes));
    p.insert(
        "faithfulness_examples".into(),
        json!(ctx.config.faithfulness_examples),
    );
    p.insert("rows".into(), rows_json(ctx));
    p.insert(
        "models".into(),
        json!(
            models
                .iter()
                .map(|m| json!({"label": m.label, "dir": m.dir.display().to_string()}))
                .collect::<Vec<_>>()
        ),
    );
    p.insert(
        "test_evaluation".into(),
        json!({"baseline": test0, "chosen": test_t}),
    );
    p
}

/// `provenance.rows` of `remodel.json`: which data rows each step read
/// (0-based `rows` in file order, and their `ids`), how the validation
/// rows were divided, and what each part was used for.
fn rows_json(ctx: &Context) -> Value {
    let part = |rows: &[usize], used_for: &str| {
        json!({
            "count": rows.len(),
            "used_for": used_for,
            "rows": rows,
            "ids": rows.iter().map(|&i| &ctx.rows.ids[i]).collect::<Vec<_>>(),
        })
    };
    json!({
        "validation": ctx.rows.fit.len() + ctx.rows.select.len(),
        "test": ctx.rows.test.len(),
        "division": crate::splits::SELECTION_SPLIT_RULE,
        "fit": part(
            &ctx.rows.fit,
            "fitting post-processing (thresholds, class offsets) and the retrainings' choice of epoch",
        ),
        "select": part(
            &ctx.rows.select,
            "measuring V0 and every candidate, and choosing V_T",
        ),
        "confirm": part(&ctx.rows.test, "confirming V0 and V_T on test"),
    })
}
