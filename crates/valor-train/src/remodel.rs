//! `valor remodel`: steer a trained model's value profile towards the
//! target `V_D` of a `values.toml`, as the seed's steps 1–5 describe.
//!
//! 1. **Measure `V0`.** The baseline (the run folder's `model/`) is scored on
//!    the validation split: accuracy and macro-F1 from streamed counts
//!    ([`EvalCounts`]), the fairness gaps of the fairness group column,
//!    throughput (examples/s of timed inference over the whole split, the
//!    fastest of a few passes) and,
//!    when asked for, ERASER faithfulness of integrated-gradients
//!    explanations on the first validation examples
//!    (`valor_bert::faithfulness`). `valor_values::measure` turns the numbers
//!    into a profile; a dimension that cannot be measured is NOT MEASURED
//!    (or an error, per `unmeasured` in `values.toml`), never invented.
//! 2. **Candidates.** Three levers: the fairness-penalty weight `λ`
//!    (retraining for a few epochs, warm-started from the planner's anchor
//!    model), reweighing on or off (one retraining at the anchor's `λ`), and
//!    post-processing without retraining (per-group class offsets fitted on
//!    validation scores for three or more labels, a threshold optimizer for
//!    two). The [`valor_values::Planner`] chooses each next `λ` (the solver
//!    step from the anchor towards the current rung of the alpha ladder from
//!    `V0` to `V_D`) and says when to stop.
//! 3. **Select.** Every candidate's validation profile goes into
//!    [`valor_values::select`]: the Pareto front, and `V_T` = the front's
//!    profile nearest `V_D` in the metric of `values.toml`.
//! 4. **Confirm.** The baseline and the chosen model are scored again on the
//!    test split, which took no part in choosing; `remodel.json` and
//!    `remodel.html` report `V0`, `V_T`, `V_D`, both distances, the front and
//!    the chosen settings, and say honestly when `V_D` is out of reach.
//! 5. **Save.** The chosen model is written as a normal model folder
//!    (`model/`), with `thresholds.json` ([`THRESHOLDS_FILE`],
//!    [`ThresholdsFile`]) when it was post-processed.
//!
//! The output folder: `remodel.json`, `remodel.html`, `model/`, and
//! `candidates/NN-<label>/`, one training run folder per retraining.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use valor_bert::explain::{
    FaithfulnessConfig, FaithfulnessItem, IgConfig, TokenSequence, faithfulness,
    integrated_gradients, pad_baseline, predict_proba,
};
use valor_bert::{Backend, BertInput, LoadOptions};
use valor_data::{BatchConfig, Encoded, TextTokenizer, collate, load_dataset, plan_batches, split};
use valor_fair::{
    ClassOffsets, Constraint, DecisionStream, LabelId, LabelSet, OffsetConfig, ThresholdOptimizer,
    ThresholdOptimizerConfig,
};
use valor_values::{
    Candidate, EvalField, Evaluation, Measure, PlanStatus, Planner, Profile, RemodelReport,
    TestConfirmation, ValuesSpec, measure, select,
};

use crate::config::{Devices, ModelSource, Penalty, SettingSource, TrainConfig, Weighting};
use crate::error::{Error, Result};
use crate::metrics::{EvalCounts, EvalMetrics, RowOutcome};
use crate::observe::Observer;
use crate::trainer::{GIT_COMMIT, Outcome, RunDir, read_run_config, train};

/// File name of the post-processing rule saved next to a remodelled model.
pub const THRESHOLDS_FILE: &str = "thresholds.json";
/// Schema tag of [`ThresholdsFile`].
pub const THRESHOLDS_SCHEMA: &str = "valor.remodel.thresholds/1";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::io(path, source)
}

/// Settings of one remodeling.
#[derive(Debug, Clone)]
pub struct RemodelConfig {
    /// The trained run folder (its `config.json` and `model/`).
    pub run_dir: PathBuf,
    /// Where `remodel.json`, `remodel.html`, `model/` and `candidates/` go.
    pub out_dir: PathBuf,
    /// The target and search settings.
    pub values: ValuesSpec,
    /// Epochs of each retraining (warm-started, so few are needed).
    pub epochs: usize,
    /// Most retrainings (fairness-penalty weights plus reweighing), on top
    /// of `max_candidates` in `values.toml`.
    pub max_retrainings: usize,
    /// Peak learning rate of the retrainings (default: the run's).
    pub lr: Option<f64>,
    /// Validation (and test) examples whose integrated-gradients
    /// explanations measure faithfulness; 0 leaves transparency NOT MEASURED.
    pub faithfulness_examples: usize,
    /// Integration steps of those explanations.
    pub ig_steps: usize,
    /// Timed inference passes over a split; throughput is the fastest's.
    pub timing_passes: usize,
    /// Compute backend (default: the run's).
    pub backend: Option<Backend>,
    /// Replace the results of an earlier remodeling in `out_dir`.
    pub overwrite: bool,
}

impl RemodelConfig {
    /// Defaults sized for two CPU cores: one epoch per retraining, at most
    /// three retrainings, faithfulness on 16 examples with 16 IG steps,
    /// throughput as the fastest of three timed passes.
    pub fn new(
        run_dir: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
        values: ValuesSpec,
    ) -> Self {
        Self {
            run_dir: run_dir.into(),
            out_dir: out_dir.into(),
            values,
            epochs: 1,
            max_retrainings: 3,
            lr: None,
            faithfulness_examples: 16,
            ig_steps: 16,
            timing_passes: 3,
            backend: None,
            overwrite: false,
        }
    }
}

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

/// What [`remodel`] produced.
#[derive(Debug, Clone)]
pub struct RemodelOutcome {
    /// The report (also written as `remodel.json` and `remodel.html`).
    pub report: RemodelReport,
    /// The chosen model's folder (`out_dir/model`).
    pub model_dir: PathBuf,
    /// `out_dir/remodel.json`.
    pub report_json: PathBuf,
    /// `out_dir/remodel.html`.
    pub report_html: PathBuf,
}

/// One split, tokenized, with what evaluation needs per row.
struct SplitRows {
    enc: Vec<Encoded>,
    labels: Vec<u32>,
    /// Group ids per row, the fairness column first.
    groups: Vec<Vec<u32>>,
    /// The fairness column's value per row.
    fair_values: Vec<String>,
    reference: Option<Vec<u32>>,
}

struct Context {
    config: RemodelConfig,
    base: TrainConfig,
    backend: Backend,
    labels: Vec<String>,
    /// Group columns (name, values), the fairness column first.
    group_columns: Vec<(String, Vec<String>)>,
    valid: SplitRows,
    test: SplitRows,
    pad_id: u32,
    special_ids: Vec<u32>,
    eval_batch_size: usize,
}

/// A model scored on one split.
struct Scored {
    /// Softmax probabilities, row-major.
    probs: Vec<f64>,
    examples_per_s: f64,
    faithfulness: Option<f64>,
}

/// A trained model among the candidates.
struct ModelEntry {
    label: String,
    dir: PathBuf,
    lambda: f64,
    reweighing: bool,
    valid: Scored,
}

/// A measured candidate: which model, which post-processing.
struct Trial {
    model: usize,
    post: Option<PostProcess>,
}

/// Runs the remodeling; `observer` sees the retrainings' events and `note`
/// receives one human-readable line per stage.
pub fn remodel(
    config: &RemodelConfig,
    observer: &mut dyn Observer,
    note: &mut dyn FnMut(&str),
) -> Result<RemodelOutcome> {
    let spec = &config.values;
    if config.epochs == 0 {
        return Err(invalid(&config.run_dir, "--epochs must be at least 1"));
    }
    // Fail before any work on a dimension that cannot be measured.
    for d in spec.dimensions() {
        if !available(&d.measure.input(), true) {
            return Err(Error::Unmeasurable {
                file: spec.origin().to_owned(),
                dimension: d.dimension.name.clone(),
                measure: d.measure.name(),
                supported: SUPPORTED.into(),
            });
        }
    }
    let faith = config.faithfulness_examples > 0;
    spec.check_available(|f| available(f, faith))?;
    let ctx = prepare(config)?;
    let out = &config.out_dir;
    prepare_out(out, config.overwrite)?;
    let baseline_dir = RunDir::new(&config.run_dir).model();

    // 1. V0 on validation.
    note(&format!(
        "measuring the baseline {} on {} validation rows",
        baseline_dir.display(),
        ctx.valid.labels.len()
    ));
    let valid0 = score(&ctx, &baseline_dir, &ctx.valid)?;
    let (eval0, _) = evaluation(&ctx, &ctx.valid, &valid0, None)?;
    let p0 = measure(&eval0, spec)?;
    note(&format!("V0 = {}", show(&p0)));

    let (space, _) = spec.space().measured_in(&[&p0])?;
    let v0 = space.vector(&p0)?;
    let mut planner = Planner::new(
        space.clone(),
        v0.clone(),
        spec.target_vector(&space)?,
        spec.search(),
    )?;
    let mut models = vec![ModelEntry {
        label: "baseline".into(),
        dir: baseline_dir.clone(),
        lambda: ctx.base.fairness.lambda,
        reweighing: ctx.base.weighting == Weighting::Reweighing,
        valid: valid0,
    }];
    let mut candidates = vec![Candidate {
        label: "baseline".into(),
        settings: settings(&models[0], None),
        profile: p0.clone(),
    }];
    let mut trials = vec![Trial {
        model: 0,
        post: None,
    }];
    // The planner's candidate index -> model index.
    let mut planned: Vec<usize> = Vec::new();
    let mut tried = vec![(ctx.base.fairness.lambda, v0)];
    let reweigh = spec.search().reweighing && ctx.base.weighting != Weighting::Reweighing;
    let lambda_budget = config.max_retrainings.saturating_sub(usize::from(reweigh));
    let penalty = penalty_for(spec);

    // 2. Fairness-penalty weights chosen by the planner.
    let mut retrainings = 0;
    loop {
        let proposal = planner.propose()?;
        if proposal.status != PlanStatus::Search {
            note(&format!(
                "planner: {:?} after {} candidates",
                proposal.status, proposal.candidates_measured
            ));
            break;
        }
        if retrainings >= lambda_budget {
            note(&format!(
                "retraining budget spent ({lambda_budget} fairness-penalty weights)"
            ));
            break;
        }
        let Some(lambda) =
            planner.next_lambda(&proposal.search_point, &tried, &spec.search().lambdas)?
        else {
            note("every fairness-penalty weight of the grid was tried");
            break;
        };
        let anchor = proposal.anchor.map_or(0, |i| planned[i]);
        let label = format!("lambda={lambda}");
        note(&format!(
            "candidate {label}: retraining {} epoch(s) from {} towards rung {} (search point {})",
            config.epochs,
            models[anchor].label,
            proposal.rung,
            show(&space.profile(&proposal.search_point)?)
        ));
        let entry = retrain(
            &ctx,
            observer,
            &models[anchor],
            &label,
            lambda,
            false,
            penalty,
            models.len(),
        )?;
        models.push(entry);
        retrainings += 1;
        let m = models.len() - 1;
        let profile = measure_model(&ctx, &models[m], spec, None)?;
        note(&format!("{label}: {}", show(&profile)));
        let x = space.vector(&profile)?;
        planner.record(x.clone())?;
        planned.push(m);
        tried.push((lambda, x));
        candidates.push(Candidate {
            label,
            settings: settings(&models[m], None),
            profile,
        });
        trials.push(Trial {
            model: m,
            post: None,
        });
    }

    // Reweighing at the anchor's weight, warm-started from the anchor.
    if reweigh && retrainings < config.max_retrainings {
        let anchor = planner.anchor().map_or(0, |i| planned[i]);
        let lambda = models[anchor].lambda;
        let label = format!("lambda={lambda}+reweighing");
        note(&format!(
            "candidate {label}: retraining from {}",
            models[anchor].label
        ));
        let entry = retrain(
            &ctx,
            observer,
            &models[anchor],
            &label,
            lambda,
            true,
            penalty,
            models.len(),
        )?;
        models.push(entry);
        let m = models.len() - 1;
        let profile = measure_model(&ctx, &models[m], spec, None)?;
        note(&format!("{label}: {}", show(&profile)));
        candidates.push(Candidate {
            label,
            settings: settings(&models[m], None),
            profile,
        });
        trials.push(Trial {
            model: m,
            post: None,
        });
    }

    // Post-processing of every trained model (no retraining).
    if spec.search().postprocess_thresholds {
        for (m, model) in models.iter().enumerate() {
            let post = fit_post(&ctx, &model.valid, penalty)?;
            let label = format!("{}+{}", model.label, post_name(&post));
            let profile = measure_model(&ctx, model, spec, Some(&post))?;
            note(&format!("{label}: {}", show(&profile)));
            candidates.push(Candidate {
                label,
                settings: settings(model, Some(&post)),
                profile,
            });
            trials.push(Trial {
                model: m,
                post: Some(post),
            });
        }
    }

    // 3. V_T on validation.
    let selection = select(spec, &p0, &candidates)?;
    let chosen = &trials[selection.chosen];
    let chosen_model = &models[chosen.model];
    note(&format!(
        "chosen: {} (validation distance to V_D {:.4}, baseline {:.4})",
        candidates[selection.chosen].label, selection.distance_vt_vd, selection.distance_v0_vd
    ));

    // 4. Confirmation on the test split.
    note(&format!(
        "confirming on {} test rows",
        ctx.test.labels.len()
    ));
    let test0 = score(&ctx, &baseline_dir, &ctx.test)?;
    let (test_eval0, _) = evaluation(&ctx, &ctx.test, &test0, None)?;
    let test_t = if chosen.model == 0 {
        test0
    } else {
        score(&ctx, &chosen_model.dir, &ctx.test)?
    };
    let (test_eval_t, _) = evaluation(&ctx, &ctx.test, &test_t, chosen.post.as_ref())?;
    let test = TestConfirmation {
        v0: measure(&test_eval0, spec)?,
        vt: measure(&test_eval_t, spec)?,
    };

    // 5. Save the chosen model, then the report.
    let model_dir = out.join("model");
    save_model(
        &chosen_model.dir,
        &model_dir,
        chosen.post.as_ref(),
        ctx.group_columns[0].0.as_str(),
        ctx.base.seed,
    )?;
    let provenance = provenance(&ctx, &models, &test_eval0, &test_eval_t);
    let report = RemodelReport::new(spec, &selection, Some(&test), planner.history(), provenance)?;
    let report_json = out.join("remodel.json");
    let report_html = out.join("remodel.html");
    report.write_json(&report_json)?;
    report.write_html(&report_html)?;
    note(&report.message);
    Ok(RemodelOutcome {
        report,
        model_dir,
        report_json,
        report_html,
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The measures [`available`] accepts, for error messages.
const SUPPORTED: &str = "the measures accuracy, macro_f1, balanced_accuracy, 1-equalized_odds_difference, \
1-demographic_parity_difference, throughput, faithfulness and extra.accuracy_reference";

/// Which evaluation fields remodel computes.
fn available(field: &EvalField, faithfulness: bool) -> bool {
    match field {
        EvalField::Accuracy
        | EvalField::MacroF1
        | EvalField::BalancedAccuracy
        | EvalField::DemographicParityDifference
        | EvalField::EqualizedOddsDifference
        | EvalField::ExamplesPerS => true,
        EvalField::Faithfulness => faithfulness,
        EvalField::Extra(name) => name == "accuracy_reference",
        _ => false,
    }
}

/// The differentiable penalty matching the fairness measure.
fn penalty_for(spec: &ValuesSpec) -> Penalty {
    match spec.dimension(valor_values::FAIRNESS).map(|d| &d.measure) {
        Some(Measure::OneMinusEqualizedOddsDifference | Measure::EqualizedOddsRatio) => {
            Penalty::EqualizedOdds
        }
        _ => Penalty::DemographicParity,
    }
}

fn prepare_out(out: &Path, overwrite: bool) -> Result<()> {
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

fn prepare(config: &RemodelConfig) -> Result<Context> {
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
    let tokenizer = TextTokenizer::from_model_dir(&model_dir, base.max_len)?;
    let rows = |idx: &[usize]| -> Result<SplitRows> {
        let sub = data.subset(idx);
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
    };
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

/// Scores the model in `dir` on `split`: probabilities, timed throughput,
/// and faithfulness on the first examples when asked for.
fn score(ctx: &Context, dir: &Path, split: &SplitRows) -> Result<Scored> {
    let device = valor_bert::device(ctx.backend)?;
    let (_, model, _) =
        valor_bert::with_device_rng(|| valor_bert::load_hf(dir, &device, LoadOptions::default()))?;
    let lengths: Vec<usize> = split.enc.iter().map(Encoded::len).collect();
    let plan = plan_batches(
        &lengths,
        &BatchConfig {
            batch_size: ctx.eval_batch_size,
            window_batches: 50,
            shuffle: false,
            seed: 0,
        },
        0,
    );
    let k = ctx.labels.len();
    let mut probs = vec![0.0; split.enc.len() * k];
    // Throughput: the fastest of `timing_passes` timed passes over the
    // split (the usual benchmark rule: slower passes measure contention
    // from other processes, not the model); the first pass's
    // probabilities are kept.
    let mut seconds = f64::INFINITY;
    for pass in 0..ctx.config.timing_passes.max(1) {
        let clock = Instant::now();
        for rows in &plan {
            let encs: Vec<&Encoded> = rows.iter().map(|&i| &split.enc[i]).collect();
            let batch = collate(rows.clone(), &encs, ctx.pad_id);
            let input = BertInput::from_flat(
                &batch.input_ids,
                &batch.attention_mask,
                &batch.token_type_ids,
                [batch.batch_size, batch.seq_len],
                &device,
            )?;
            let out = predict_proba(&model, input)?;
            if pass > 0 {
                continue;
            }
            for (r, p) in rows.iter().zip(out) {
                if p.len() != k {
                    return Err(invalid(
                        dir,
                        format!("the model has {} labels but the data {k}", p.len()),
                    ));
                }
                probs[r * k..(r + 1) * k].copy_from_slice(&p);
            }
        }
        seconds = seconds.min(clock.elapsed().as_secs_f64().max(1e-9));
    }
    let examples_per_s = split.enc.len() as f64 / seconds;
    let faithfulness = if ctx.config.faithfulness_examples > 0 {
        Some(faithfulness_of(ctx, dir, split)?)
    } else {
        None
    };
    Ok(Scored {
        probs,
        examples_per_s,
        faithfulness,
    })
}

/// ERASER faithfulness score of integrated-gradients explanations of the
/// predicted class, on the first `faithfulness_examples` rows of `split`.
fn faithfulness_of(ctx: &Context, dir: &Path, split: &SplitRows) -> Result<f64> {
    let device = valor_bert::autodiff_device(ctx.backend)?;
    let (_, model, _) =
        valor_bert::with_device_rng(|| valor_bert::load_hf(dir, &device, LoadOptions::default()))?;
    let model = model.freeze();
    let ig = IgConfig {
        n_steps: ctx.config.ig_steps.max(1),
        internal_batch_size: ctx.config.ig_steps.max(1),
        ..IgConfig::default()
    };
    let mut items = Vec::new();
    for enc in split
        .enc
        .iter()
        .filter(|e| e.word_ids.iter().any(Option::is_some))
        .take(ctx.config.faithfulness_examples)
    {
        let seq = TokenSequence::new(enc.ids.clone(), Some(enc.type_ids.clone()));
        let baseline = pad_baseline(&seq, &ctx.special_ids, ctx.pad_id);
        let explanation = integrated_gradients(&model, &seq, &baseline, None, &ig)?;
        items.push(FaithfulnessItem {
            input_ids: enc.ids.clone(),
            token_type_ids: enc.type_ids.clone(),
            special: enc
                .ids
                .iter()
                .map(|i| ctx.special_ids.contains(i))
                .collect(),
            attributions: explanation.token_attributions,
            target: explanation.target,
        });
    }
    let report = faithfulness(
        &model,
        &items,
        &FaithfulnessConfig {
            seed: ctx.base.seed,
            ..FaithfulnessConfig::default()
        },
    )?;
    Ok(report.score)
}

fn argmax(row: &[f64]) -> u32 {
    let mut best = 0;
    for (c, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = c;
        }
    }
    best as u32
}

/// The evaluation numbers of `scored` on `split`, predictions adjusted by
/// `post` when given.
fn evaluation(
    ctx: &Context,
    split: &SplitRows,
    scored: &Scored,
    post: Option<&PostProcess>,
) -> Result<(Evaluation, EvalMetrics)> {
    let k = ctx.labels.len();
    let predicted: Vec<u32> = match post {
        None => scored.probs.chunks(k).map(argmax).collect(),
        Some(p) => apply_post(p, &scored.probs, &split.fair_values, ctx.base.seed)?,
    };
    let mut counts = EvalCounts::new(
        &ctx.labels,
        &ctx.group_columns,
        split.reference.is_some(),
        false,
    )?;
    for (i, &p) in predicted.iter().enumerate() {
        let label = split.labels[i];
        counts.add(RowOutcome {
            label,
            predicted: p,
            loss: -scored.probs[i * k + label as usize]
                .max(f64::MIN_POSITIVE)
                .ln(),
            groups: &split.groups[i],
            reference: split.reference.as_ref().map(|r| r[i]),
            twin_predicted: None,
        })?;
    }
    let m = counts.metrics();
    let mut extra = BTreeMap::new();
    if let Some(a) = m.accuracy_reference {
        extra.insert("accuracy_reference".to_owned(), a);
    }
    let eval = Evaluation {
        accuracy: m.accuracy,
        macro_f1: m.macro_f1,
        balanced_accuracy: m.balanced_accuracy,
        demographic_parity_difference: m.selection_rate_gap,
        equalized_odds_difference: m.equalized_odds_gap,
        faithfulness: scored.faithfulness,
        examples_per_s: Some(scored.examples_per_s),
        extra,
        ..Evaluation::default()
    };
    Ok((eval, m))
}

fn apply_post(post: &PostProcess, probs: &[f64], groups: &[String], seed: u64) -> Result<Vec<u32>> {
    let file = ThresholdsFile {
        schema: THRESHOLDS_SCHEMA.into(),
        group_column: String::new(),
        seed,
        post: post.clone(),
    };
    file.predict(probs, groups)
}

fn measure_model(
    ctx: &Context,
    m: &ModelEntry,
    spec: &ValuesSpec,
    post: Option<&PostProcess>,
) -> Result<Profile> {
    let (eval, _) = evaluation(ctx, &ctx.valid, &m.valid, post)?;
    Ok(measure(&eval, spec)?)
}

/// Fits the post-processing rule on a model's validation scores.
fn fit_post(ctx: &Context, scored: &Scored, penalty: Penalty) -> Result<PostProcess> {
    let k = ctx.labels.len();
    if k == 2 {
        let p1: Vec<f64> = scored.probs.chunks(2).map(|r| r[1]).collect();
        let y: Vec<bool> = ctx.valid.labels.iter().map(|&l| l == 1).collect();
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
            &ctx.valid.fair_values,
            &config,
        )?))
    } else {
        let labels = LabelSet::new(&ctx.labels)?;
        let y: Vec<LabelId> = ctx.valid.labels.iter().map(|&l| LabelId::new(l)).collect();
        Ok(PostProcess::ClassOffsets(ClassOffsets::fit(
            &labels,
            &scored.probs,
            &y,
            &ctx.valid.fair_values,
            &OffsetConfig::default(),
        )?))
    }
}

fn post_name(post: &PostProcess) -> &'static str {
    match post {
        PostProcess::ClassOffsets(_) => "class-offsets",
        PostProcess::Thresholds(_) => "thresholds",
    }
}

fn settings(m: &ModelEntry, post: Option<&PostProcess>) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    s.insert("lambda".to_owned(), json!(m.lambda));
    s.insert("reweighing".to_owned(), json!(m.reweighing));
    s.insert("postprocess".to_owned(), json!(post.map(post_name)));
    s.insert("model".to_owned(), json!(m.dir.display().to_string()));
    s
}

/// Retrains from `from` with weight `lambda` (and reweighing) into
/// `candidates/NN-<label>/`; scores the result on validation.
#[allow(clippy::too_many_arguments)]
fn retrain(
    ctx: &Context,
    observer: &mut dyn Observer,
    from: &ModelEntry,
    label: &str,
    lambda: f64,
    reweighing: bool,
    penalty: Penalty,
    number: usize,
) -> Result<ModelEntry> {
    let mut c = ctx.base.clone();
    c.model = ModelSource::Pretrained {
        dir: from.dir.clone(),
    };
    c.epochs = ctx.config.epochs;
    c.lr = ctx.config.lr.unwrap_or(ctx.base.lr);
    c.fairness.lambda = lambda;
    c.fairness.penalty = penalty;
    c.fairness.lambda_from = SettingSource::Config;
    c.fairness.penalty_from = SettingSource::Config;
    c.fairness.groups = vec![ctx.group_columns[0].0.clone()];
    c.weighting = if reweighing {
        Weighting::Reweighing
    } else {
        ctx.base.weighting
    };
    c.early_stopping_patience = None;
    c.checkpoint_every = None;
    c.keep_last = 1;
    if c.backend != ctx.backend {
        // The run's device list belongs to its own backend.
        c.devices = Devices::default();
    }
    c.backend = ctx.backend;
    let slug: String = label
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '.' {
                ch
            } else {
                '-'
            }
        })
        .collect();
    let run = ctx
        .config
        .out_dir
        .join("candidates")
        .join(format!("{number:02}-{slug}"));
    match train(&c, &run, true, observer)? {
        Outcome::Finished(_) => {}
        Outcome::Stopped { step } => {
            return Err(invalid(
                &run,
                format!("the retraining was stopped after step {step}"),
            ));
        }
    }
    let dir = RunDir::new(&run).model();
    let valid = score(ctx, &dir, &ctx.valid)?;
    Ok(ModelEntry {
        label: label.to_owned(),
        dir,
        lambda,
        reweighing: reweighing || c.weighting == Weighting::Reweighing,
        valid,
    })
}

/// Copies the chosen model folder to `to` (atomically: a temporary folder
/// beside it, renamed), with `thresholds.json` when post-processed.
fn save_model(
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

fn provenance(
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
    p.insert(
        "rows".into(),
        json!({"validation": ctx.valid.labels.len(), "test": ctx.test.labels.len()}),
    );
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

fn show(p: &Profile) -> String {
    p.iter()
        .map(|(k, s)| match s.value() {
            Some(v) => format!("{k} {v:.3}"),
            None => format!("{k} NOT MEASURED"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
