//! The post-processing rule of a remodelled model (`thresholds.json`):
//! fitted on the validation rows kept for fitting, saved beside the model, applied by
//! `valor predict` row by row or chunk by chunk.

use std::path::Path;

use serde::{Deserialize, Serialize};
use valor_fair::{
    ClassOffsets, Constraint, DecisionStream, LabelId, LabelSet, OffsetConfig, ThresholdOptimizer,
    ThresholdOptimizerConfig,
};

use super::io_err;
use super::prepare::Context;
use crate::config::Penalty;
use crate::error::{Error, Result};

/// File name of the post-processing rule saved next to a remodelled model.
pub const THRESHOLDS_FILE: &str = "thresholds.json";
/// Schema tag of [`ThresholdsFile`].
pub const THRESHOLDS_SCHEMA: &str = "valor.remodel.thresholds/1";

/// A post-processing rule fitted on validation scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "rule")]
pub enum PostProcess {
    /// Per-group class-score offsets (three or more labels): predict
    /// `argmax_c (p_c + offset[group][c])` over the softmax probabilities.
    ClassOffsets(ClassOffsets),
    /// Per-group randomised thresholds on `P(label 1)` (two labels).
    Thresholds(ThresholdOptimizer),
}

/// `thresholds.json` of a remodelled model folder: which group column the
/// rule reads, and the rule. `valor predict` applies it to the softmax
/// probabilities of each row, given the row's value in `group_column`:
/// `class_offsets` → `argmax_c (p_c + rule.offsets[group][c])` (labels in
/// `rule.labels` order); `thresholds` → `ThresholdOptimizer::predict` on
/// `p_1` with `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdsFile {
    /// [`THRESHOLDS_SCHEMA`].
    pub schema: String,
    /// The group column whose value selects each row's rule.
    pub group_column: String,
    /// Seed of the randomised thresholds (unused by class offsets).
    pub seed: u64,
    /// The rule.
    #[serde(flatten)]
    pub post: PostProcess,
}

impl ThresholdsFile {
    /// Reads `dir/thresholds.json`; `Ok(None)` when the folder has none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(THRESHOLDS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let file: Self = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            path: path.clone(),
            message: format!("invalid JSON: {e}"),
        })?;
        if file.schema != THRESHOLDS_SCHEMA {
            return Err(Error::Invalid {
                path,
                message: format!("schema `{}`, expected `{THRESHOLDS_SCHEMA}`", file.schema),
            });
        }
        Ok(Some(file))
    }

    /// Predicted label ids for row-major probabilities (`k` per row) and
    /// each row's group value.
    pub fn predict<S: AsRef<str>>(&self, probs: &[f64], groups: &[S]) -> Result<Vec<u32>> {
        self.predictor().predict(probs, groups)
    }

    /// Applies the rule to rows that come in chunks (a streamed file): the
    /// chunks' labels together are [`predict`](Self::predict)'s on all the
    /// rows at once (the randomised thresholds' draws continue from chunk to
    /// chunk).
    pub fn predictor(&self) -> ThresholdsPredictor<'_> {
        ThresholdsPredictor {
            file: self,
            draws: DecisionStream::new(self.seed),
        }
    }

    /// The rule's name as `thresholds.json` spells it (`kind`):
    /// `class_offsets` or `thresholds`.
    pub fn kind(&self) -> &'static str {
        match self.post {
            PostProcess::ClassOffsets(_) => "class_offsets",
            PostProcess::Thresholds(_) => "thresholds",
        }
    }

    /// The groups the rule knows, in the file's order; any other group value is an error
    /// (the file has no fallback rule).
    pub fn groups(&self) -> Vec<&str> {
        match &self.post {
            PostProcess::ClassOffsets(o) => o.offsets.keys().collect(),
            PostProcess::Thresholds(t) => t.groups.keys().collect(),
        }
    }

    /// Checks that the rule fits a model with these labels (`id2label`
    /// order): class offsets name the same labels, thresholds need two.
    pub fn check_labels(&self, labels: &[String]) -> std::result::Result<(), String> {
        match &self.post {
            PostProcess::ClassOffsets(o) if o.labels != labels => Err(format!(
                "the class offsets are for labels [{}], the model's are [{}]",
                o.labels.join(", "),
                labels.join(", ")
            )),
            PostProcess::Thresholds(_) if labels.len() != 2 => Err(format!(
                "thresholds need a model with two labels, the model has {} ({})",
                labels.len(),
                labels.join(", ")
            )),
            _ => Ok(()),
        }
    }
}

/// A [`ThresholdsFile`] applied chunk by chunk ([`ThresholdsFile::predictor`]).
#[derive(Debug, Clone)]
pub struct ThresholdsPredictor<'a> {
    file: &'a ThresholdsFile,
    draws: DecisionStream,
}

impl ThresholdsPredictor<'_> {
    /// Label ids of the next rows: row-major probabilities (`k` per row) and
    /// each row's group value.
    pub fn predict<S: AsRef<str>>(&mut self, probs: &[f64], groups: &[S]) -> Result<Vec<u32>> {
        match &self.file.post {
            PostProcess::ClassOffsets(o) => Ok(o
                .predict(probs, groups)?
                .into_iter()
                .map(|l| l.get())
                .collect()),
            PostProcess::Thresholds(t) => {
                let p1: Vec<f64> = probs.chunks(2).map(|r| r[1]).collect();
                let p = t.predict_proba(&p1, groups)?;
                Ok(self.draws.decide(&p).into_iter().map(u32::from).collect())
            }
        }
    }
}

/// Fits the post-processing rule on a model's probabilities on the fitting
/// rows (`ctx.fit`, row-major), never on the rows candidates are chosen on.
pub(super) fn fit_post(ctx: &Context, probs: &[f64], penalty: Penalty) -> Result<PostProcess> {
    let k = ctx.labels.len();
    if k == 2 {
        let p1: Vec<f64> = probs.chunks(2).map(|r| r[1]).collect();
        let y: Vec<bool> = ctx.fit.labels.iter().map(|&l| l == 1).collect();
        let constraint = match penalty {
            Penalty::EqualizedOdds => Constraint::EqualizedOdds,
            Penalty::DemographicParity => Constraint::DemographicParity,
        };
        let config = ThresholdOptimizerConfig {
            constraint,
            ..ThresholdOptimizerConfig::default()
        };
        Ok(PostProcess::Thresholds(ThresholdOptimizer::fit(
            &p1,
            &y,
            &ctx.fit.fair_values,
            &config,
        )?))
    } else {
        let labels = LabelSet::new(&ctx.labels)?;
        let y: Vec<LabelId> = ctx.fit.labels.iter().map(|&l| LabelId::new(l)).collect();
        Ok(PostProcess::ClassOffsets(ClassOffsets::fit(
            &labels,
            probs,
            &y,
            &ctx.fit.fair_values,
            &OffsetConfig::default(),
        )?))
    }
}

pub(super) fn post_name(post: &PostProcess) -> &'static str {
    match post {
        PostProcess::ClassOffsets(_) => "class-offsets",
        PostProcess::Thresholds(_) => "thresholds",
    }
}

pub(super) fn apply_post(
    post: &PostProcess,
    probs: &[f64],
    groups: &[String],
    seed: u64,
) -> Result<Vec<u32>> {
    let file = ThresholdsFile {
        schema: THRESHOLDS_SCHEMA.into(),
        group_column: String::new(),
        seed,
        post: post.clone(),
    };
    file.predict(probs, groups)
}
