//! Flags shared by every subcommand that reads a dataset, so `--text-col`,
//! `--label-col` and `--group` mean the same thing everywhere.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use valor_data::{DatasetSpec, Preset, SpecArgs, builtin_spec, read_table};
use valor_fair::{Threshold, paths};

/// Which columns of a data file are the text, the label and the groups.
#[derive(Debug, Clone, Default, Args)]
pub struct DataArgs {
    /// A dataset spec (TOML) naming the file and its columns; flags given
    /// here override it.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Read a real dataset's own file format: german-credit, adult, phrasebank.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<Preset>,
    /// Column holding the text.
    #[arg(long, value_name = "COL")]
    pub text_col: Option<String>,
    /// Tabular column to serialise into the text (repeat for several).
    #[arg(long = "feature", value_name = "COL")]
    pub features: Vec<String>,
    /// Sentence template for the feature columns, with `{column}` placeholders.
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Column holding the label.
    #[arg(long, value_name = "COL")]
    pub label_col: Option<String>,
    /// Label names in id order, comma-separated (default: sorted distinct values).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Sensitive (group) column; repeat for several.
    #[arg(long = "group", value_name = "COL")]
    pub groups: Vec<String>,
    /// Column holding row ids (default: the row number).
    #[arg(long, value_name = "COL")]
    pub id_col: Option<String>,
    /// Column holding per-row weights.
    #[arg(long, value_name = "COL")]
    pub weight_col: Option<String>,
    /// Column holding each row's counterfactual twin text.
    #[arg(long, value_name = "COL")]
    pub twin_col: Option<String>,
    /// A second label column in the same label space (e.g. a fair label).
    #[arg(long, value_name = "COL")]
    pub reference_label_col: Option<String>,
    /// Warn about groups with fewer rows than this.
    #[arg(long, value_name = "N")]
    pub min_group_size: Option<usize>,
}

impl DataArgs {
    /// Whether no column was named (no spec, preset, text, label or group).
    pub fn names_no_columns(&self) -> bool {
        self.spec.is_none()
            && self.preset.is_none()
            && self.text_col.is_none()
            && self.features.is_empty()
            && self.label_col.is_none()
            && self.groups.is_empty()
    }

    /// The spec for `path`: with no column flags, a file written by
    /// `valor data gen` is read with its own columns
    /// ([`valor_data::builtin_spec`]); otherwise the flags (and `--spec`) decide.
    pub fn resolve(&self, path: Option<PathBuf>, flag: &str) -> Result<DatasetSpec> {
        if !self.names_no_columns() {
            return self.to_spec(path);
        }
        let file = path.with_context(|| format!("give the data file ({flag}), or --spec"))?;
        let table = read_table(&file).with_context(|| format!("reading {}", file.display()))?;
        anyhow::ensure!(
            ["text", "label", "gender", "twin_text"]
                .iter()
                .all(|c| table.require(c, None).is_ok()),
            "{} is not a file written by `valor data gen`; say which columns to use with --text-col, --label-col and --group (or --spec)",
            file.display()
        );
        Ok(builtin_spec(&file))
    }

    /// The validated spec for `path` (or the spec file's own path).
    pub fn to_spec(&self, path: Option<PathBuf>) -> Result<DatasetSpec> {
        let args = SpecArgs {
            path,
            preset: self.preset,
            text_col: self.text_col.clone(),
            features: self.features.clone(),
            template: self.template.clone(),
            label_col: self.label_col.clone(),
            labels: self.labels.clone(),
            groups: self.groups.clone(),
            id_col: self.id_col.clone(),
            weight_col: self.weight_col.clone(),
            twin_col: self.twin_col.clone(),
            reference_label_col: self.reference_label_col.clone(),
            min_group_size: self.min_group_size,
        };
        match &self.spec {
            Some(spec) => DatasetSpec::from_toml_file(spec, args)
                .with_context(|| format!("reading dataset spec {}", spec.display())),
            None => Ok(DatasetSpec::from_args(args, "command line")?),
        }
    }
}

/// Checks, before any work starts, that writing `out` loses nothing the user
/// has: it must not be one of `inputs` (the same file through any path,
/// link or hard link), must not be a folder, and may replace an existing
/// file only with `overwrite` (`--overwrite`).
pub fn check_output(
    out: &std::path::Path,
    inputs: &[&std::path::Path],
    overwrite: bool,
) -> Result<()> {
    use anyhow::bail;
    for input in inputs {
        if input.as_os_str() == "-" {
            continue;
        }
        if same_file(out, input) {
            bail!(
                "{}: the output is the input {}; refusing to write over it (choose another output file)",
                out.display(),
                input.display()
            );
        }
    }
    match std::fs::metadata(out) {
        Ok(meta) if meta.is_dir() => bail!(
            "{}: is a folder; the output must be a file path",
            out.display()
        ),
        Ok(_) if !overwrite => bail!(
            "{}: already exists; pass --overwrite to replace it",
            out.display()
        ),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` name the same existing file (device and inode on
/// Unix, so links and hard links count; canonical paths elsewhere).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
    }
}

/// The live monitor's window, drift reference and fairness limits: the same
/// flags, with the same defaults, on `valor serve` and `valor monitor`, so
/// that replaying a decision log reproduces what the server reported.
#[derive(Debug, Clone, Args)]
pub struct MonitorFlags {
    /// The window: the last N decisions (`GET /fairness`, the gauges of
    /// `/metrics`, each window of `valor monitor`).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub window: usize,
    /// The window is the decisions of the last S seconds instead (at most
    /// --window of them).
    #[arg(long, value_name = "S")]
    pub window_seconds: Option<f64>,
    /// Reference sample for drift: a `valor train` run folder (its
    /// `reference.json`: the model's predictions on the validation rows), a
    /// `valor.monitor.reference/1` JSON file, or a predictions file as
    /// `valor predict` writes it on validation data (`label` and
    /// `p_<label>` columns; optional `text_chars` / `text` and
    /// `unknown_rate`). Without it, no drift.
    #[arg(long, value_name = "FILE|RUN")]
    pub reference: Option<PathBuf>,
    /// Count and log a breach when a window's demographic-parity difference
    /// exceeds this.
    #[arg(long, value_name = "X")]
    pub max_dp_difference: Option<f64>,
    /// … when its demographic-parity ratio falls below this.
    #[arg(long, value_name = "X")]
    pub min_dp_ratio: Option<f64>,
    /// … when the equalized-odds difference of the decisions with feedback
    /// exceeds this.
    #[arg(long, value_name = "X")]
    pub max_eo_difference: Option<f64>,
    /// Outcome metrics (equalized odds, accuracy) are checked once this many
    /// decisions of the window have feedback.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub min_feedback: usize,
}

impl MonitorFlags {
    /// The declared limits as audit thresholds.
    pub fn thresholds(&self) -> Vec<Threshold> {
        let mut out = Vec::new();
        if let Some(x) = self.max_dp_difference {
            out.push(Threshold::at_most(paths::DEMOGRAPHIC_PARITY_DIFFERENCE, x));
        }
        if let Some(x) = self.min_dp_ratio {
            out.push(Threshold::at_least(paths::DEMOGRAPHIC_PARITY_RATIO, x));
        }
        if let Some(x) = self.max_eo_difference {
            out.push(Threshold::at_most(paths::EQUALIZED_ODDS_DIFFERENCE, x));
        }
        out
    }
}

/// What `--precision` means on `backend`, for the line a command prints
/// when it runs in another precision than fp32.
pub fn precision_note(backend: valor_bert::Backend, precision: valor_bert::Precision) -> String {
    if backend == valor_bert::Backend::Cpu {
        format!("encoder Linear layers on {} kernels", precision.kernel())
    } else {
        format!(
            "the {} device computes the whole model in {precision} (its float dtype)",
            backend.name()
        )
    }
}
