//! The candidates of a remodeling, one lever at a time: retrainings at the
//! fairness-penalty weights the planner proposes, one with reweighing, and
//! post-processing of every trained model; each measured into a profile on
//! validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use valor_values::{Candidate, PlanStatus, Planner, Profile, ValueSpace, ValueVector};

use super::prepare::Context;
use super::scoring::{Scored, measure_model, score};
use super::thresholds::{PostProcess, fit_post, post_name};
use super::{invalid, show};
use crate::config::{Devices, ModelSource, Penalty, SettingSource, Weighting};
use crate::error::Result;
use crate::observe::Observer;
use crate::trainer::{Outcome, RunDir, train};

/// A trained model among the candidates.
pub(super) struct ModelEntry {
    pub(super) label: String,
    pub(super) dir: PathBuf,
    pub(super) lambda: f64,
    pub(super) reweighing: bool,
    pub(super) valid: Scored,
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
    /// (λ, profile) of every model trained at a planned weight, and the baseline.
    tried: Vec<(f64, ValueVector)>,
}

impl Search {
    /// The search with the baseline as its first model and candidate.
    pub(super) fn new(
        ctx: &Context,
        baseline_dir: PathBuf,
        valid0: Scored,
        p0: Profile,
        v0: ValueVector,
    ) -> Self {
        let models = vec![ModelEntry {
            label: "baseline".into(),
            dir: baseline_dir,
            lambda: ctx.base.fairness.lambda,
            reweighing: ctx.base.weighting == Weighting::Reweighing,
            valid: valid0,
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
            tried: vec![(ctx.base.fairness.lambda, v0)],
        }
    }

    /// Retrains at the fairness-penalty weights the planner proposes, until
    /// it stops, the grid is spent or `budget` retrainings ran; returns how
    /// many ran.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lambdas(
        &mut self,
        ctx: &Context,
        planner: &mut Planner,
        space: &ValueSpace,
        penalty: Penalty,
        budget: usize,
        observer: &mut dyn Observer,
        note: &mut dyn FnMut(&str),
    ) -> Result<usize> {
        let spec = &ctx.config.values;
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
                    "retraining budget spent ({budget} fairness-penalty weights)"
                ));
                break;
            }
            let Some(lambda) =
                planner.next_lambda(&proposal.search_point, &self.tried, &spec.search().lambdas)?
            else {
                note("every fairness-penalty weight of the grid was tried");
                break;
            };
            let anchor = proposal.anchor.map_or(0, |i| self.planned[i]);
            let label = format!("lambda={lambda}");
            note(&format!(
                "candidate {label}: retraining {} epoch(s) from {} towards rung {} (search point {})",
                ctx.config.epochs,
                self.models[anchor].label,
                proposal.rung,
                show(&space.profile(&proposal.search_point)?)
            ));
            let retraining = Retraining {
                from: anchor,
                lambda,
                reweighing: false,
                penalty,
            };
            let (m, profile) = self.retrain_and_add(ctx, retraining, label, observer, note)?;
            retrainings += 1;
            let x = space.vector(&profile)?;
            planner.record(x.clone())?;
            self.planned.push(m);
            self.tried.push((lambda, x));
        }
        Ok(retrainings)
    }

    /// Reweighing at the anchor's weight, warm-started from the anchor.
    pub(super) fn reweighing(
        &mut self,
        ctx: &Context,
        planner: &Planner,
        penalty: Penalty,
        observer: &mut dyn Observer,
        note: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let anchor = planner.anchor().map_or(0, |i| self.planned[i]);
        let lambda = self.models[anchor].lambda;
        let label = format!("lambda={lambda}+reweighing");
        note(&format!(
            "candidate {label}: retraining from {}",
            self.models[anchor].label
        ));
        let retraining = Retraining {
            from: anchor,
            lambda,
            reweighing: true,
            penalty,
        };
        self.retrain_and_add(ctx, retraining, label, observer, note)?;
        Ok(())
    }

    /// Post-processing of every trained model (no retraining).
    pub(super) fn post_processing(
        &mut self,
        ctx: &Context,
        penalty: Penalty,
        note: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let spec = &ctx.config.values;
        for (m, model) in self.models.iter().enumerate() {
            let post = fit_post(ctx, &model.valid, penalty)?;
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
        let profile = measure_model(ctx, &self.models[m], &ctx.config.values, None)?;
        note(&format!("{label}: {}", show(&profile)));
        self.candidates.push(Candidate {
            label,
            settings: settings(&self.models[m], None),
            profile: profile.clone(),
        });
        self.trials.push(Trial {
            model: m,
            post: None,
        });
        Ok((m, profile))
    }
}

pub(super) fn settings(m: &ModelEntry, post: Option<&PostProcess>) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    s.insert("lambda".to_owned(), json!(m.lambda));
    s.insert("reweighing".to_owned(), json!(m.reweighing));
    s.insert("postprocess".to_owned(), json!(post.map(post_name)));
    s.insert("model".to_owned(), json!(m.dir.display().to_string()));
    s
}

/// One retraining: warm-started from model `from`, at weight `lambda` of
/// `penalty`, with or without reweighing.
struct Retraining {
    from: usize,
    lambda: f64,
    reweighing: bool,
    penalty: Penalty,
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
        reweighing,
        penalty,
        ..
    } = *r;
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
    let run = ctx
        .config
        .out_dir
        .join("candidates")
        .join(format!("{number:02}-{}", slug(label)));
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
