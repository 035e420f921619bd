//! The candidates of a remodeling, one lever at a time: constrained
//! retrainings at the gap bounds the planner's search points ask for, one
//! with reweighing, one LoRA retraining, int8 copies (`valor quantize`'s
//! folders) of the baseline and of the provisional `V_T`'s model, and
//! post-processing of every model; each measured into a profile on the
//! selection rows as it would run in `valor predict`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use valor_values::{Candidate, PlanStatus, Planner, Profile, ValueSpace};

use super::prepare::Context;
use super::scoring::{Scored, measure_model, probabilities, score};
use super::thresholds::{PostProcess, fit_post, post_name};
use super::{invalid, show};
use valor_bert::lora::LoraConfig;
use valor_bert::{LoadOptions, Precision, QuantScheme};

use super::scoring::inference_precision;
use crate::config::{Devices, ModelSource, Penalty, SettingSource, Weighting};
use crate::constraint::{Constraint, ConstraintKind};
use crate::error::Result;
use crate::observe::Observer;
use crate::trainer::{Outcome, RunDir, train};

/// A trained model among the candidates.
pub(super) struct ModelEntry {
    pub(super) label: String,
    pub(super) dir: PathBuf,
    pub(super) lambda: f64,
    /// The fairness constraint it was trained under (the first, for a
    /// baseline trained under several).
    pub(super) constraint: Option<Constraint>,
    /// A retraining under a constraint: whether its tested epoch met it on
    /// the fitting rows (with the training's bootstrap margin).
    pub(super) met_on_fit: Option<bool>,
    pub(super) reweighing: bool,
    /// The compression lever that made it, if any: `int8` (a quantised
    /// copy of another model) or `lora` (a LoRA retraining, merged).
    pub(super) compression: Option<&'static str>,
    /// A LoRA retraining's adapter settings.
    pub(super) lora: Option<LoraConfig>,
    /// The precision it is scored and predicts at
    /// ([`inference_precision`]).
    pub(super) precision: Precision,
    /// Scored on the selection rows (`ctx.select`).
    pub(super) valid: Scored,
    /// Probabilities on the fitting rows (`ctx.fit`), row-major.
    pub(super) fit_probs: Vec<f64>,
}

/// A measured candidate: which model, which post-processing.
pub(super) struct Trial {
    pub(super) model: usize,
    pub(super) post: Option<PostProcess>,
}

/// Everything tried so far: the trained models, the measured candidates
/// (a model, maybe post-processed) and what the planner was told.
pub(super) struct Search {
    pub(super) models: Vec<ModelEntry>,
    pub(super) candidates: Vec<Candidate>,
    pub(super) trials: Vec<Trial>,
    /// The planner's candidate index -> model index.
    planned: Vec<usize>,
    /// Every constraint bound tried, why, and what it gave
    /// (`remodel.json`'s `provenance.bound_search.tried`).
    pub(super) bounds: Vec<Value>,
}

impl Search {
    /// The search with the baseline as its first model and candidate.
    pub(super) fn new(
        ctx: &Context,
        baseline_dir: PathBuf,
        baseline_precision: Precision,
        valid0: Scored,
        fit0: Vec<f64>,
        p0: Profile,
    ) -> Self {
        let models = vec![ModelEntry {
            label: "baseline".into(),
            dir: baseline_dir,
            lambda: ctx.base.fairness.lambda,
            constraint: ctx.base.fairness.constraints.first().copied(),
            met_on_fit: None,
            reweighing: ctx.base.weighting == Weighting::Reweighing,
            compression: None,
            lora: None,
            precision: baseline_precision,
            valid: valid0,
            fit_probs: fit0,
        }];
        let candidates = vec![Candidate {
            label: "baseline".into(),
            settings: settings(&models[0], None),
            profile: p0,
        }];
        Self {
            models,
            candidates,
            trials: vec![Trial {
                model: 0,
                post: None,
            }],
            planned: Vec::new(),
            bounds: Vec::new(),
        }
    }

    /// Retrains with a fairness constraint at the bounds V_D's fairness
    /// target translates into, until the planner stops, no new bound is
    /// left or `budget` retrainings ran; returns how many ran.
    ///
    /// Each bound is the gap the planner's search point asks for: the
    /// fairness dimension is `1 - gap` (`1-demographic_parity_difference`
    /// or `1-equalized_odds_difference`), so a search point with fairness
    /// `f` is the constraint `gap <= 1 - f` (rounded to 0.001, never under
    /// the target's own gap `1 - V_D.fairness` nor [`MIN_BOUND`]). A bound
    /// within 0.005 of one tried is moved halfway to the target's gap; if
    /// that was tried too the search ends. Every bound, the reason for it
    /// and what it gave go into [`Search::bounds`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bounds(
        &mut self,
        ctx: &Context,
        planner: &mut Planner,
        space: &ValueSpace,
        target: &BoundTarget,
        budget: usize,
        observer: &mut dyn Observer,
        note: &mut dyn FnMut(&str),
    ) -> Result<usize> {
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
            if retrainings >= budget {
                note(&format!(
                    "retraining budget spent ({budget} constraint bounds)"
                ));
                break;
            }
            let Some(f) = space
                .profile(&proposal.search_point)?
                .value(valor_values::FAIRNESS)
            else {
                note("the fairness dimension is not measured: no bound to search");
                break;
            };
            let tried: Vec<f64> = self
                .models
                .iter()
                .filter_map(|m| m.constraint.map(|c| c.bound))
                .collect();
            let head = format!("rung {}: ", proposal.rung);
            let (bound, why) = match next_bound(f, target, &tried) {
                Ok((bound, why)) => (bound, head + &why),
                Err(why) => {
                    note(&why);
                    break;
                }
            };
            let anchor = proposal.anchor.map_or(0, |i| self.planned[i]);
            let constraint = Constraint {
                kind: target.kind,
                bound,
            };
            let label = format!("{}<={bound}", target.kind.name());
            note(&format!(
                "candidate {label}: retraining {} epoch(s) from {} ({why})",
                ctx.config.epochs, self.models[anchor].label,
            ));
            let retraining = Retraining {
                from: anchor,
                lambda: 0.0,
                constraint: Some(constraint),
                reweighing: false,
                penalty: target.penalty,
                lora: None,
            };
            let (m, profile) =
                self.retrain_and_add(ctx, retraining, label.clone(), observer, note)?;
            retrainings += 1;
            let x = space.vector(&profile)?;
            planner.record(x)?;
            self.planned.push(m);
            self.bounds.push(json!({
                "bound": bound,
                "constraint": constraint.to_string(),
                "candidate": label,
                "warm_start_from": self.models[anchor].label,
                "why": why,
                "met_on_fitting_rows": self.models[m].met_on_fit,
                "selection_profile": profile,
            }));
        }
        Ok(retrainings)
    }

    /// A retraining warm-started from the anchor, at its weight or
    /// constraint, with `lever` on top:
    /// - [`Lever::Reweighing`]: reweighed examples;
    /// - [`Lever::Lora`]: LoRA adapters only ([`LORA`]: PEFT's defaults for
    ///   BERT, `r` 8, `alpha` 16 on query and value) at [`LORA_LR_SCALE`]
    ///   times the retrainings' learning rate. Its candidate is the merged
    ///   model (`model/` of its run; the PEFT adapter is in `adapter/`), so
    ///   it costs as much per prediction as the anchor: the lever saves
    ///   training, not inference.
    pub(super) fn retrain_from_anchor(
        &mut self,
        ctx: &Context,
        planner: &Planner,
        penalty: Penalty,
        lever: Lever,
        observer: &mut dyn Observer,
        note: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let anchor = planner.anchor().map_or(0, |i| self.planned[i]);
        let from = &self.models[anchor];
        let mut retraining = Retraining {
            from: anchor,
            lambda: from.lambda,
            constraint: from.constraint,
            reweighing: from.reweighing,
            penalty,
            lora: None,
        };
        let (label, how) = match lever {
            Lever::Reweighing => {
                retraining.reweighing = true;
                let label = match from.constraint {
                    Some(c) => format!("{}<={}+reweighing", c.kind.name(), c.bound),
                    None => format!("lambda={}+reweighing", from.lambda),
                };
                (label, "retraining")
            }
            Lever::Lora => {
                retraining.lora = Some(LoraConfig::new(
                    LORA.0,
                    LORA.1,
                    vec!["query".into(), "value".into()],
                ));
                (
                    format!("{}+lora", from.label),
                    "LoRA retraining (r=8, alpha=16, query and value)",
                )
            }
        };
        note(&format!("candidate {label}: {how} from {}", from.label));
        self.retrain_and_add(ctx, retraining, label, observer, note)?;
        Ok(())
    }

    /// Int8 copies of the models `which` (indices into [`Search::models`]):
    /// each written as `valor quantize` writes a folder (int8 per output
    /// channel, `candidates/NN-<label>-int8/`), scored as `valor predict`
    /// runs it (the int8 kernels on the CPU) and added as a model and a
    /// candidate of its own; returns the new models' indices.
    pub(super) fn int8_copies(
        &mut self,
        ctx: &Context,
        which: &[usize],
        note: &mut dyn FnMut(&str),
    ) -> Result<Vec<usize>> {
        let mut added = Vec::new();
        for &m in which {
            let from = &self.models[m];
            let label = format!("{}+int8", from.label);
            let dir = ctx.config.out_dir.join("candidates").join(format!(
                "{:02}-{}",
                self.models.len(),
                slug(&label)
            ));
            let device = valor_bert::device(ctx.backend)?;
            let (config, model, _) = valor_bert::with_device_rng(|| {
                valor_bert::load_hf(&from.dir, &device, LoadOptions::default())
            })?;
            let q = valor_bert::save_quantized(
                &model,
                &config,
                &dir,
                Some(&from.dir),
                QuantScheme::Int8PerChannel,
                &[],
            )?;
            let precision = inference_precision(&dir, ctx.backend)?;
            note(&format!(
                "candidate {label}: {} weights int8 ({:.3}x their f32 bytes), run at {precision}",
                q.quantized.len(),
                q.quantized_ratio
            ));
            let entry = ModelEntry {
                label: label.clone(),
                valid: score(ctx, &dir, precision, &ctx.select)?,
                fit_probs: probabilities(ctx, &dir, precision, &ctx.fit)?,
                dir,
                lambda: from.lambda,
                constraint: from.constraint,
                met_on_fit: None,
                reweighing: from.reweighing,
                compression: Some("int8"),
                lora: from.lora.clone(),
                precision,
            };
            self.models.push(entry);
            let m = self.models.len() - 1;
            self.add_candidate(ctx, m, note)?;
            added.push(m);
        }
        Ok(added)
    }
    /// Post-processing of the models `which` (no retraining).
    pub(super) fn post_processing(
        &mut self,
        ctx: &Context,
        penalty: Penalty,
        which: impl IntoIterator<Item = usize>,
        note: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let spec = &ctx.config.values;
        for m in which {
            let model = &self.models[m];
            let post = fit_post(ctx, &model.fit_probs, penalty)?;
            let label = format!("{}+{}", model.label, post_name(&post));
            let profile = measure_model(ctx, model, spec, Some(&post))?;
            note(&format!("{label}: {}", show(&profile)));
            self.candidates.push(Candidate {
                label,
                settings: settings(model, Some(&post)),
                profile,
            });
            self.trials.push(Trial {
                model: m,
                post: Some(post),
            });
        }
        Ok(())
    }

    /// Runs `retraining` and adds its model as a candidate of its own;
    /// returns the model's index and validation profile.
    fn retrain_and_add(
        &mut self,
        ctx: &Context,
        retraining: Retraining,
        label: String,
        observer: &mut dyn Observer,
        note: &mut dyn FnMut(&str),
    ) -> Result<(usize, Profile)> {
        let number = self.models.len();
        let entry = retrain(
            ctx,
            observer,
            &self.models[retraining.from],
            &label,
            &retraining,
            number,
        )?;
        self.models.push(entry);
        let m = self.models.len() - 1;
        let profile = self.add_candidate(ctx, m, note)?;
        Ok((m, profile))
    }

    /// Adds model `m`, as it is, as a candidate; returns its profile on the
    /// selection rows.
    fn add_candidate(
        &mut self,
        ctx: &Context,
        m: usize,
        note: &mut dyn FnMut(&str),
    ) -> Result<Profile> {
        let model = &self.models[m];
        let profile = measure_model(ctx, model, &ctx.config.values, None)?;
        note(&format!("{}: {}", model.label, show(&profile)));
        self.candidates.push(Candidate {
            label: model.label.clone(),
            settings: settings(model, None),
            profile: profile.clone(),
        });
        self.trials.push(Trial {
            model: m,
            post: None,
        });
        Ok(profile)
    }

    /// How many more models `max_candidates` of `values.toml` allows (the
    /// baseline not counted).
    pub(super) fn room(&self, ctx: &Context) -> usize {
        ctx.config
            .values
            .search()
            .max_candidates
            .saturating_sub(self.models.len() - 1)
    }
}

pub(super) fn settings(m: &ModelEntry, post: Option<&PostProcess>) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    s.insert("lambda".to_owned(), json!(m.lambda));
    s.insert(
        "constraint".to_owned(),
        json!(m.constraint.map(|c| c.to_string())),
    );
    s.insert("reweighing".to_owned(), json!(m.reweighing));
    s.insert("postprocess".to_owned(), json!(post.map(post_name)));
    s.insert("compression".to_owned(), json!(m.compression));
    s.insert("lora".to_owned(), json!(m.lora));
    s.insert("precision".to_owned(), json!(m.precision.name()));
    s.insert("model".to_owned(), json!(m.dir.display().to_string()));
    s
}

/// What a retraining from the anchor adds ([`Search::retrain_from_anchor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lever {
    Reweighing,
    Lora,
}

/// The LoRA candidate's rank and alpha (PEFT's defaults for BERT, on
/// query and value).
const LORA: (usize, f64) = (8, 16.0);

/// A LoRA retraining's learning rate over the retrainings' (LoRA usually
/// needs 10–40 times full fine-tuning's; on PhraseBank 5e-3 worked).
pub(super) const LORA_LR_SCALE: f64 = 10.0;

/// One retraining: warm-started from model `from`, under `constraint`
/// (else at weight `lambda` of `penalty`), with or without reweighing.
struct Retraining {
    from: usize,
    lambda: f64,
    constraint: Option<Constraint>,
    reweighing: bool,
    penalty: Penalty,
    /// Adapters only (merged into the candidate's `model/`).
    lora: Option<LoraConfig>,
}

/// Retrains from `from` as `r` says into `candidates/NN-<label>/`; scores
/// the result on validation.
fn retrain(
    ctx: &Context,
    observer: &mut dyn Observer,
    from: &ModelEntry,
    label: &str,
    r: &Retraining,
    number: usize,
) -> Result<ModelEntry> {
    let Retraining {
        lambda,
        constraint,
        reweighing,
        penalty,
        ..
    } = *r;
    let mut c = ctx.base.clone();
    if let Some(lora) = &r.lora {
        c.lora = Some(lora.clone());
    }
    c.model = ModelSource::Pretrained {
        dir: from.dir.clone(),
    };
    c.epochs = ctx.config.epochs;
    c.lr = ctx.config.lr.unwrap_or(ctx.base.lr);
    if r.lora.is_some() {
        c.lr *= LORA_LR_SCALE;
    }
    c.fairness.lambda = if constraint.is_some() { 0.0 } else { lambda };
    c.fairness.constraints = constraint.into_iter().collect();
    c.fairness.constraints_from = SettingSource::Config;
    c.fairness.penalty = penalty;
    c.fairness.lambda_from = SettingSource::Config;
    c.fairness.penalty_from = SettingSource::Config;
    c.fairness.groups = vec![ctx.group_columns[0].0.clone()];
    c.weighting = if reweighing {
        Weighting::Reweighing
    } else {
        ctx.base.weighting
    };
    // The selection rows stay unseen: the retraining chooses its epoch
    // on the fitting rows.
    c.held_out_rows.extend(&ctx.rows.select);
    c.held_out_rows.sort_unstable();
    c.held_out_rows.dedup();
    c.early_stopping_patience = None;
    c.checkpoint_every = None;
    c.keep_last = 1;
    if c.backend != ctx.backend {
        // The run's device list belongs to its own backend.
        c.devices = Devices::default();
    }
    c.backend = ctx.backend;
    let run = ctx
        .config
        .out_dir
        .join("candidates")
        .join(format!("{number:02}-{}", slug(label)));
    let met_on_fit = match train(&c, &run, true, observer)? {
        Outcome::Finished(report) => report.constraints.as_ref().map(|k| k.met_on_validation),
        Outcome::Stopped { step } => {
            return Err(invalid(
                &run,
                format!("the retraining was stopped after step {step}"),
            ));
        }
    };
    let dir = RunDir::new(&run).model();
    let precision = inference_precision(&dir, ctx.backend)?;
    let valid = score(ctx, &dir, precision, &ctx.select)?;
    let fit_probs = probabilities(ctx, &dir, precision, &ctx.fit)?;
    Ok(ModelEntry {
        label: label.to_owned(),
        dir,
        lambda: c.fairness.lambda,
        constraint,
        met_on_fit,
        reweighing: reweighing || c.weighting == Weighting::Reweighing,
        compression: r.lora.as_ref().map(|_| "lora"),
        lora: c.lora.clone(),
        precision,
        valid,
        fit_probs,
    })
}

/// `label` as a folder name: ASCII letters, digits and dots kept, anything
/// else `-`.
fn slug(label: &str) -> String {
    label
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '.' {
                ch
            } else {
                '-'
            }
        })
        .collect()
}

/// The smallest bound the search tries: a gap of 0 can only be met by a
/// constant classifier.
pub(super) const MIN_BOUND: f64 = 0.01;

/// The bound a search point with fairness `f` asks for, and why; an
/// error (the reason) when it and the bound halfway to the floor were both
/// tried (`tried`: the bounds of the models so far). See
/// [`Search::bounds`].
fn next_bound(f: f64, target: &BoundTarget, tried: &[f64]) -> Result<(f64, String), String> {
    let floor = target.gap.max(MIN_BOUND);
    let was_tried = |b: f64| tried.iter().any(|t| (t - b).abs() < 0.005 - 1e-12);
    let mut bound = round_bound((1.0 - f).max(floor));
    let mut why = format!(
        "the planner's search point has fairness {f:.4}, that is {} gap {:.4}",
        target.kind.name(),
        1.0 - f
    );
    if 1.0 - f < floor {
        why.push_str(&format!(", raised to the floor {floor:.3}"));
    }
    if was_tried(bound) {
        let moved = round_bound((bound + floor) / 2.0);
        if was_tried(moved) {
            return Err(format!(
                "no untried bound: {bound} and {moved} (halfway to the floor {floor:.3}) were tried"
            ));
        }
        why.push_str(&format!(
            "; {bound} was tried, so halfway to the floor {floor:.3}"
        ));
        bound = moved;
    }
    Ok((bound, why))
}

fn round_bound(b: f64) -> f64 {
    ((b * 1000.0).round() / 1000.0).clamp(MIN_BOUND, 1.0)
}

/// What the bound search aims at: the constrained gap, the penalty of the
/// same gap (for post-processing and reweighing), and V_D's gap.
pub(super) struct BoundTarget {
    pub(super) kind: ConstraintKind,
    pub(super) penalty: Penalty,
    /// `1 - V_D.fairness`: the gap the target asks for.
    pub(super) gap: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(gap: f64) -> BoundTarget {
        BoundTarget {
            kind: ConstraintKind::DemographicParity,
            penalty: Penalty::DemographicParity,
            gap,
        }
    }

    #[test]
    fn a_search_point_becomes_a_bound_on_its_gap() {
        // Fairness 0.6282 is a gap of 0.3718: the bound, rounded.
        let (b, why) = next_bound(0.6282, &target(0.05), &[]).unwrap();
        assert_eq!(b, 0.372);
        assert!(
            why.contains("gap 0.3718") && !why.contains("floor"),
            "{why}"
        );
        // Never under V_D's gap, nor under MIN_BOUND.
        let (b, why) = next_bound(0.99, &target(0.05), &[]).unwrap();
        assert_eq!(b, 0.05);
        assert!(why.contains("raised to the floor 0.050"), "{why}");
        assert_eq!(next_bound(1.0, &target(0.0), &[]).unwrap().0, MIN_BOUND);
        // A tried bound moves halfway to the floor; then the search ends.
        let (b, why) = next_bound(0.7, &target(0.1), &[0.302]).unwrap();
        assert_eq!(b, 0.2);
        assert!(why.contains("0.3 was tried"), "{why}");
        assert!(next_bound(0.7, &target(0.1), &[0.3, 0.2]).is_err());
        assert!(next_bound(0.99, &target(0.05), &[0.05]).is_err());
    }
}
