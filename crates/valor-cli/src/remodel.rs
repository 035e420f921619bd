//! `valor remodel`: move a trained model's value profile towards the target
//! `V_D` of a `values.toml` — measure `V0`, search constraint bounds
//! (constrained retraining), reweighing, compression (a LoRA retraining,
//! int8 copies) and post-processing thresholds
//! (fitted on half the validation rows, chosen on the other half), keep the Pareto front, pick
//! `V_T`, confirm it on the test split, save the chosen model. The work
//! lives in `valor_train::remodel`; this file turns flags into a
//! `RemodelConfig` and prints the outcome.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use valor_bert::Backend;
use valor_train::{Control, Event, Observer, ProgressBars, RemodelConfig};
use valor_values::{Profile, RemodelReport, ValuesSpec};

use crate::Outcome;

#[derive(Debug, Args)]
pub struct RemodelArgs {
    /// Run folder written by `valor train` (its config.json and model/).
    #[arg(long, value_name = "DIR", required_unless_present = "print_values")]
    pub run: Option<PathBuf>,
    /// The value target V_D and search settings [default: the built-in
    /// values.toml, printed by `valor remodel --print-values`].
    #[arg(long, value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// Output folder: remodel.json, remodel.html, the chosen model as model/
    /// (with thresholds.json when post-processed) and candidates/ (one
    /// training run per retraining) [default: RUN/remodel].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an earlier remodeling in the output folder: only its own
    /// files are removed (a folder `valor remodel` did not make is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Epochs of each retraining, warm-started from the best model so far
    /// [default: 1].
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub epochs: usize,
    /// Most retrainings (fairness-constraint bounds chosen by the planner,
    /// plus one with reweighing); post-processing candidates need none
    /// [default: 3].
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_retrainings: usize,
    /// Peak learning rate of the retrainings [default: the run's].
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Validation and test examples whose integrated-gradients explanations
    /// measure faithfulness (the transparency dimension); 0 leaves
    /// transparency NOT MEASURED [default: 16].
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub faithfulness_examples: usize,
    /// Integration steps of those explanations [default: 16].
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub ig_steps: usize,
    /// Timed inference passes over a split; throughput (reported, and the
    /// efficiency dimension only when values.toml measures it with
    /// `throughput`; the default `cost` is counted, not timed) is the
    /// fastest pass's examples/s [default: 3].
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub timing_passes: usize,
    /// Compression levers weighed as candidates, comma-separated: `int8`
    /// (int8 copies, as `valor quantize` writes them, of the baseline and of
    /// the provisional V_T's model, measured on the int8 kernels as `valor
    /// predict` runs them), `lora` (one LoRA retraining, r=8 on query and
    /// value, merged, when --max-retrainings has room left), or `none`.
    /// Each new model counts against values.toml's `max_candidates`.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "int8,lora",
        value_parser = ["int8", "lora", "none"]
    )]
    pub compression: Vec<String>,
    /// Compute backend: cpu, wgpu or cuda (each needs its cargo feature)
    /// [default: the run's].
    #[arg(long, value_name = "NAME")]
    pub backend: Option<Backend>,
    /// Print remodel.json on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print the built-in values.toml (documented key by key) and exit.
    #[arg(long, exclusive = true)]
    pub print_values: bool,
}

impl RemodelArgs {
    /// The validated configuration the flags describe.
    pub fn to_config(&self) -> Result<RemodelConfig> {
        let values = match &self.values {
            Some(path) => ValuesSpec::from_path(path)
                .with_context(|| format!("reading {}", path.display()))?,
            None => ValuesSpec::default(),
        };
        for warning in values.warnings() {
            eprintln!("warning: {warning}");
        }
        anyhow::ensure!(self.epochs >= 1, "--epochs must be at least 1");
        if let Some(lr) = self.lr {
            anyhow::ensure!(
                lr.is_finite() && lr > 0.0,
                "--lr is {lr}; it must be positive"
            );
        }
        let run = self.run.clone().context("give the run folder with --run")?;
        let out = self.out.clone().unwrap_or_else(|| run.join("remodel"));
        let mut config = RemodelConfig::new(run, out, values);
        config.epochs = self.epochs;
        config.max_retrainings = self.max_retrainings;
        config.lr = self.lr;
        config.faithfulness_examples = self.faithfulness_examples;
        config.ig_steps = self.ig_steps;
        config.timing_passes = self.timing_passes;
        config.backend = self.backend;
        config.overwrite = self.overwrite;
        let has = |lever: &str| self.compression.iter().any(|c| c == lever);
        anyhow::ensure!(
            !has("none") || self.compression.len() == 1,
            "--compression none cannot be combined with a lever"
        );
        config.compression = valor_train::remodel::CompressionLevers {
            int8: has("int8"),
            lora: has("lora"),
        };
        Ok(config)
    }
}

/// Progress bars of the retrainings, warnings always.
struct CliObserver {
    bars: ProgressBars,
    quiet: bool,
}

impl Observer for CliObserver {
    fn on_event(&mut self, event: &Event<'_>) -> Control {
        if let Event::Warning { message } = event {
            self.bars.suspend(|| eprintln!("warning: {message}"));
        }
        if !self.quiet {
            self.bars.on_event(event);
        }
        Control::Continue
    }
}

pub fn run(args: RemodelArgs) -> Result<Outcome> {
    if args.print_values {
        let mut out = std::io::stdout().lock();
        out.write_all(valor_values::default_values_toml().as_bytes())?;
        return Ok(Outcome::Ok);
    }
    let config = args.to_config()?;
    let mut observer = CliObserver {
        bars: if args.quiet {
            ProgressBars::hidden()
        } else {
            ProgressBars::new()
        },
        quiet: args.quiet,
    };
    let quiet = args.quiet;
    let mut note = |line: &str| {
        if !quiet {
            eprintln!("remodel: {line}");
        }
    };
    let outcome = valor_train::remodel(&config, &mut observer, &mut note)
        .with_context(|| format!("remodeling the run {}", config.run_dir.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(outcome.report.to_json()?.as_bytes())?;
        writeln!(out)?;
    } else {
        write_summary(&mut out, &outcome.report)?;
        writeln!(
            out,
            "report: {} and {}",
            outcome.report_json.display(),
            outcome.report_html.display()
        )?;
        writeln!(out, "chosen model: {}", outcome.model_dir.display())?;
    }
    Ok(if outcome.report.reachable {
        Outcome::Ok
    } else {
        Outcome::TargetMissed
    })
}

fn cell(p: &Profile, dim: &str) -> String {
    match p.get(dim).map(|s| s.value()) {
        Some(Some(v)) => format!("{v:.3}"),
        Some(None) => "NOT MEASURED".into(),
        None => "-".into(),
    }
}

fn write_summary(out: &mut impl Write, r: &RemodelReport) -> std::io::Result<()> {
    writeln!(
        out,
        "value profiles on the {} split ({} distance):",
        r.split, r.metric
    )?;
    writeln!(
        out,
        "  {:<14} {:>12} {:>12} {:>8}",
        "dimension", "V0", "V_T", "V_D"
    )?;
    for (dim, target) in &r.vd {
        writeln!(
            out,
            "  {dim:<14} {:>12} {:>12} {target:>8.3}",
            cell(&r.v0, dim),
            cell(&r.vt, dim)
        )?;
    }
    writeln!(out, "  ||V0 - V_D|| = {:.4}", r.distance_v0_vd)?;
    writeln!(out, "  ||V_T - V_D|| = {:.4}", r.distance_vt_vd)?;
    writeln!(
        out,
        "chosen: {} ({} candidates, {} on the Pareto front)",
        r.chosen.label,
        r.candidates.len(),
        r.pareto_front.len()
    )?;
    writeln!(out, "{}", r.message)
}
