//! `valor remodel`: steer a trained model's value profile towards the
//! target `V_D` of a `values.toml`, as the seed's steps 1–5 describe.
//!
//! **Rows.** The run's validation rows are divided in two disjoint halves
//! ([`crate::splits::selection_split`]: stratified by label and fairness
//! group, deterministic from the split seed): the *fitting* rows fit
//! post-processing and are the retrainings' validation split (their epoch
//! choice), and the *selection* rows measure `V0` and every candidate and
//! choose `V_T`; the retrainings leave the selection rows out of every
//! split (`TrainConfig::held_out_rows`). So the chosen profile is not
//! measured on the rows its thresholds or offsets were fitted on. The test
//! rows only confirm. `remodel.json`'s `provenance.rows` lists each part's
//! rows and ids and what it was used for.
//!
//! 1. **Measure `V0`.** The baseline (the run folder's `model/`) is scored on
//!    the selection rows: accuracy and macro-F1 from streamed counts
//!    ([`EvalCounts`]), the fairness gaps of the fairness group column,
//!    its cost (forward GFLOP per example at the split's mean token count
//!    and MB of weight files, counted: the default efficiency measure, the
//!    same on every run), throughput (examples/s of timed inference over
//!    the rows, the fastest of a few passes; reported, and the
//!    efficiency dimension only if `values.toml` asks for `throughput`) and,
//!    when asked for, ERASER faithfulness of integrated-gradients
//!    explanations on the first selection rows
//!    (`valor_bert::faithfulness`). `valor_values::measure` turns the numbers
//!    into a profile; a dimension that cannot be measured is NOT MEASURED
//!    (or an error, per `unmeasured` in `values.toml`), never invented.
//! 2. **Candidates.** Three levers: constrained retraining (a few epochs,
//!    warm-started from the planner's anchor model) under a bound on the
//!    gap the fairness measure is `1 -` of (`demographic_parity` or
//!    `equalized_odds`), reweighing (one retraining at the anchor's
//!    setting), and post-processing without retraining (per-group class
//!    offsets for three or more labels, a threshold optimizer for two,
//!    fitted on the fitting rows). The [`valor_values::Planner`] gives each
//!    next search point (the solver step from the anchor towards the current
//!    rung of the alpha ladder from `V0` to `V_D`) and says when to stop; a
//!    search point's fairness `f` becomes the bound `gap <= 1 - f`, never
//!    under `V_D`'s own gap (`Search::bounds`). `remodel.json`'s
//!    `provenance.bound_search` lists every bound, why it was tried, whether
//!    the retraining met it on the fitting rows, and why `V_T` won.
//!    Then compression ([`CompressionLevers`], `--compression`): one LoRA
//!    retraining from the anchor (r 8, alpha 16 on query and value, ten
//!    times the retrainings' learning rate; its candidate is the merged
//!    model, which costs as much per prediction as a full one) when the
//!    retraining budget has room; and, after post-processing, int8 copies
//!    (`valor_bert::save_quantized`, int8 per output channel) of the
//!    baseline's model and of the model of the provisional `V_T` (the
//!    selection over the candidates so far), each post-processed again on
//!    its own probabilities. Every model is scored as `valor predict` runs
//!    its folder ([`scoring`]'s `inference_precision`): an int8 folder on
//!    the int8 kernels with its stored integers, so its accuracy and gaps
//!    are the int8 predictions', and its `cost` counts its smaller weight
//!    files. Each new model counts against `max_candidates`; the settings
//!    of every candidate in `remodel.json` name its `compression`,
//!    `precision` and `model` folder.
//! 3. **Select.** Every candidate's profile on the selection rows goes into
//!    [`valor_values::select`]: the Pareto front, and `V_T` = the front's
//!    profile nearest `V_D` in the metric of `values.toml`.
//! 4. **Confirm.** The baseline and the chosen model are scored again on the
//!    test split, which took no part in choosing; `remodel.json` and
//!    `remodel.html` report `V0`, `V_T`, `V_D`, both distances, the front and
//!    the chosen settings, and say honestly when `V_D` is out of reach.
//! 5. **Save.** The chosen model is written as a normal model folder
//!    (`model/`; an int8 copy stays a quantised folder, which `valor
//!    predict` and `valor serve` run at int8), with `thresholds.json`
//!    ([`THRESHOLDS_FILE`], [`ThresholdsFile`]) when it was post-processed.
//!
//! The output folder: `remodel.json`, `remodel.html`, `model/`, and
//! `candidates/NN-<label>/`, one training run folder per retraining and one
//! model folder per int8 copy.
//!
//! Files: `prepare` reads the run and readies the output folder,
//! `scoring` scores a model on a split, `candidates` trains and measures
//! the candidates, `thresholds` is the post-processing rule
//! (`thresholds.json`), `output` saves the chosen model and provenance.

mod candidates;
mod output;
mod prepare;
mod scoring;
mod thresholds;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use valor_bert::{Backend, Precision};
use valor_values::{
    EvalField, Evaluation, Measure, Planner, Profile, RemodelReport, Selection, TestConfirmation,
    ValuesSpec, measure, select,
};

pub use thresholds::{
    PostProcess, THRESHOLDS_FILE, THRESHOLDS_SCHEMA, ThresholdsFile, ThresholdsPredictor,
};

use crate::config::{Penalty, Weighting};
use crate::constraint::ConstraintKind;
use crate::error::{Error, Result};
use crate::observe::Observer;
use crate::trainer::RunDir;
use candidates::{BoundTarget, Lever, MIN_BOUND, Search};
use output::{provenance, save_model};
use prepare::{Context, prepare, prepare_out};
use scoring::{evaluation, inference_precision, probabilities, score};

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
    /// Most retrainings (constraint bounds plus reweighing), on top of
    /// `max_candidates` in `values.toml`.
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
    /// Which compression levers become candidates.
    pub compression: CompressionLevers,
}

/// The compression levers a remodeling weighs, each bounded by
/// `max_candidates` of `values.toml` (and the LoRA retraining by
/// `max_retrainings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionLevers {
    /// Int8 copies (`valor quantize`'s folders) of the baseline and of the
    /// provisional `V_T`'s model, run on the int8 kernels.
    pub int8: bool,
    /// One LoRA retraining from the anchor (merged), when the retraining
    /// budget has room left after the bounds and reweighing.
    pub lora: bool,
}

impl Default for CompressionLevers {
    /// Both levers.
    fn default() -> Self {
        Self {
            int8: true,
            lora: true,
        }
    }
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
            compression: CompressionLevers::default(),
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

/// Runs the remodeling; `observer` sees the retrainings' events and `note`
/// receives one human-readable line per stage.
pub fn remodel(
    config: &RemodelConfig,
    observer: &mut dyn Observer,
    note: &mut dyn FnMut(&str),
) -> Result<RemodelOutcome> {
    let spec = &config.values;
    check_measurable(config)?;
    let ctx = prepare(config)?;
    let out = &config.out_dir;
    prepare_out(out, config.overwrite)?;
    let baseline_dir = RunDir::new(&config.run_dir).model();

    // 1. V0 on the selection rows.
    note(&format!(
        "measuring the baseline {} on {} validation rows kept for choosing ({} others fit post-processing)",
        baseline_dir.display(),
        ctx.select.labels.len(),
        ctx.fit.labels.len()
    ));
    let precision0 = inference_precision(&baseline_dir, ctx.backend)?;
    let valid0 = score(&ctx, &baseline_dir, precision0, &ctx.select)?;
    let fit0 = probabilities(&ctx, &baseline_dir, precision0, &ctx.fit)?;
    let (eval0, _) = evaluation(&ctx, &ctx.select, &valid0, None)?;
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
    let mut search = Search::new(
        &ctx,
        baseline_dir.clone(),
        precision0,
        valid0,
        fit0,
        p0.clone(),
    );
    let reweigh = spec.search().reweighing && ctx.base.weighting != Weighting::Reweighing;
    let bound_budget = config.max_retrainings.saturating_sub(usize::from(reweigh));
    let penalty = penalty_for(spec);
    let target = bound_target(spec, penalty);

    // 2. Candidates: constrained retrainings at the bounds the planner's
    // search points translate into, then reweighing, then post-processing.
    let retrainings = match &target {
        Some(target) => search.bounds(
            &ctx,
            &mut planner,
            &space,
            target,
            bound_budget,
            observer,
            note,
        )?,
        None => {
            note("V_D sets no fairness target: no constraint bound to search");
            0
        }
    };
    let mut retrainings = retrainings;
    if reweigh && retrainings < config.max_retrainings {
        search.retrain_from_anchor(&ctx, &planner, penalty, Lever::Reweighing, observer, note)?;
        retrainings += 1;
    }
    if config.compression.lora {
        if retrainings < config.max_retrainings && search.room(&ctx) > 0 {
            search.retrain_from_anchor(&ctx, &planner, penalty, Lever::Lora, observer, note)?;
        } else {
            note("no LoRA candidate: the retraining budget or max_candidates is spent");
        }
    }
    let postprocess = spec.search().postprocess_thresholds;
    if postprocess {
        search.post_processing(&ctx, penalty, 0..search.models.len(), note)?;
    }
    if config.compression.int8 {
        // The baseline's and the provisional V_T's model, quantised; with
        // post-processing refitted on their own int8 probabilities.
        let provisional = select(spec, &p0, &search.candidates)?.chosen;
        let mut which = vec![0, search.trials[provisional].model];
        which.dedup();
        which.retain(|&m| search.models[m].precision != valor_bert::Precision::Int8);
        let room = search.room(&ctx);
        if room < which.len() {
            note(&format!(
                "max_candidates leaves room for {room} of {} int8 copies",
                which.len()
            ));
            which.truncate(room);
        }
        let added = search.int8_copies(&ctx, &which, note)?;
        if postprocess {
            search.post_processing(&ctx, penalty, added, note)?;
        }
    }

    // 3. V_T on validation.
    let selection = select(spec, &p0, &search.candidates)?;
    let chosen = &search.trials[selection.chosen];
    let chosen_model = &search.models[chosen.model];
    note(&format!(
        "chosen: {} (validation distance to V_D {:.4}, baseline {:.4})",
        search.candidates[selection.chosen].label,
        selection.distance_vt_vd,
        selection.distance_v0_vd
    ));

    // 4. Confirmation on the test split.
    note(&format!(
        "confirming on {} test rows",
        ctx.test.labels.len()
    ));
    let chosen_dir =
        (chosen.model != 0).then_some((chosen_model.dir.as_path(), chosen_model.precision));
    let (test, test_eval0, test_eval_t) = confirm(
        &ctx,
        (&baseline_dir, precision0),
        chosen_dir,
        chosen.post.as_ref(),
    )?;

    // 5. Save the chosen model, then the report.
    let model_dir = out.join("model");
    save_model(
        &chosen_model.dir,
        &model_dir,
        chosen.post.as_ref(),
        ctx.group_columns[0].0.as_str(),
        ctx.base.seed,
    )?;
    let mut provenance = provenance(&ctx, &search.models, &test_eval0, &test_eval_t);
    provenance.insert(
        "bound_search".into(),
        bound_search_json(target.as_ref(), &p0, &search, &selection),
    );
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

/// Fails before any work on a setting or a dimension that cannot be
/// measured.
fn check_measurable(config: &RemodelConfig) -> Result<()> {
    let spec = &config.values;
    if config.epochs == 0 {
        return Err(invalid(&config.run_dir, "--epochs must be at least 1"));
    }
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
    Ok(())
}

/// The baseline and the chosen model (`chosen`; `None` when it is the
/// baseline), each folder with the precision it runs at, scored again on
/// the test split, which took no part in choosing: their profiles and
/// evaluations.
fn confirm(
    ctx: &Context,
    (baseline_dir, precision0): (&Path, Precision),
    chosen: Option<(&Path, Precision)>,
    post: Option<&PostProcess>,
) -> Result<(TestConfirmation, Evaluation, Evaluation)> {
    let spec = &ctx.config.values;
    let test0 = score(ctx, baseline_dir, precision0, &ctx.test)?;
    let (test_eval0, _) = evaluation(ctx, &ctx.test, &test0, None)?;
    let test_t = match chosen {
        None => test0,
        Some((dir, precision)) => score(ctx, dir, precision, &ctx.test)?,
    };
    let (test_eval_t, _) = evaluation(ctx, &ctx.test, &test_t, post)?;
    let test = TestConfirmation {
        v0: measure(&test_eval0, spec)?,
        vt: measure(&test_eval_t, spec)?,
    };
    Ok((test, test_eval0, test_eval_t))
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The measures [`available`] accepts, for error messages.
const SUPPORTED: &str = "the measures accuracy, macro_f1, balanced_accuracy, 1-equalized_odds_difference, \
1-demographic_parity_difference, cost, throughput, faithfulness and extra.accuracy_reference";

/// Which evaluation fields remodel computes.
fn available(field: &EvalField, faithfulness: bool) -> bool {
    match field {
        EvalField::Accuracy
        | EvalField::MacroF1
        | EvalField::BalancedAccuracy
        | EvalField::DemographicParityDifference
        | EvalField::EqualizedOddsDifference
        | EvalField::ExamplesPerS
        | EvalField::GflopsPerExample
        | EvalField::WeightMb => true,
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

/// A profile on one line, for notes.
fn show(p: &Profile) -> String {
    p.iter()
        .map(|(k, s)| match s.value() {
            Some(v) => format!("{k} {v:.3}"),
            None => format!("{k} NOT MEASURED"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the bound search aims at, from `V_D`'s fairness target (`None`
/// without one): the gap of the fairness measure, at `1 - target`.
fn bound_target(spec: &ValuesSpec, penalty: Penalty) -> Option<BoundTarget> {
    let fairness = *spec.targets().get(valor_values::FAIRNESS)?;
    let kind = match penalty {
        Penalty::EqualizedOdds => ConstraintKind::EqualizedOdds,
        Penalty::DemographicParity => ConstraintKind::DemographicParity,
    };
    Some(BoundTarget {
        kind,
        penalty,
        gap: 1.0 - fairness,
    })
}

/// `provenance.bound_search` of `remodel.json`: the gap searched, V_D's and
/// the baseline's gap, every bound tried (why, and what it gave), and why
/// `V_T` won.
fn bound_search_json(
    target: Option<&BoundTarget>,
    p0: &Profile,
    search: &Search,
    selection: &Selection,
) -> Value {
    let chosen = selection.chosen;
    let label = |i: usize| search.candidates[i].label.clone();
    let mut others: Vec<(usize, f64)> = selection
        .pareto_front
        .iter()
        .filter(|&&i| i != chosen)
        .map(|&i| (i, selection.distances[i]))
        .collect();
    others.sort_by(|a, b| a.1.total_cmp(&b.1));
    let why = match others.first() {
        Some(&(i, d)) => format!(
            "V_T is the Pareto-front candidate nearest V_D on the selection rows: distance {:.4}; the next on the front, {}, is at {d:.4}; the baseline is at {:.4}",
            selection.distance_vt_vd,
            label(i),
            selection.distance_v0_vd
        ),
        None => format!(
            "V_T is the only Pareto-front candidate: distance to V_D {:.4} on the selection rows; the baseline is at {:.4}",
            selection.distance_vt_vd, selection.distance_v0_vd
        ),
    };
    let chosen_model = &search.models[search.trials[chosen].model];
    json!({
        "gap": target.map(|t| t.kind.name()),
        "target_gap": target.map(|t| t.gap),
        "baseline_gap": p0.value(valor_values::FAIRNESS).map(|f| 1.0 - f),
        "min_bound": MIN_BOUND,
        "tried": search.bounds,
        "chosen": {
            "candidate": label(chosen),
            "constraint": chosen_model.constraint.map(|c| c.to_string()),
            "distance_to_vd": selection.distance_vt_vd,
            "why": why,
        },
    })
}
