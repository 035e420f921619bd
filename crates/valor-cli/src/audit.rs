//! `valor audit`: the fairness report of any model's predictions file, and
//! `valor audit --monitor`, the same over a sliding window of a stream.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use valor_data::dataset::file_sha256;
use valor_data::{Table, expand_inputs, read_table, stream_table};
use valor_fair::{
    AuditConfig, AuditCounts, AuditInput, AuditReport, BootstrapConfig, CellKey, CellValue,
    CodedChunk, CodedColumn, CountsBuilder, GroupSpec, LabelSet, ScoreBins, SqlColumns, SqlDialect,
    Threshold, WindowMonitor, audit, audit_counts, counts_sql, paths,
};

use crate::Outcome;

/// SQL dialects of `--emit-sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    Trino,
    Duckdb,
    Sqlite,
    Postgres,
    Spark,
    Bigquery,
}

impl Dialect {
    fn quoting(self) -> SqlDialect {
        match self {
            Self::Spark | Self::Bigquery => SqlDialect::Backtick,
            Self::Trino | Self::Duckdb | Self::Sqlite | Self::Postgres => SqlDialect::Ansi,
        }
    }
}

/// Where the rows are counted (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Valor reads the rows itself.
    Local,
    /// Apache Spark counts them (--remote, and --table or --predictions);
    /// needs the `spark` cargo feature.
    Spark,
}

/// Output format of `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Md,
    Html,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Predictions file (.csv, .tsv, .parquet, .jsonl); with --stream also a
    /// folder or a glob (`logs/part-*.parquet`) of them. With --monitor, a
    /// file that grows (or `-` for standard input), CSV with a header.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["counts", "emit_sql", "remote"]
    )]
    pub predictions: Option<PathBuf>,
    /// Who counts the rows: `local` (Valor) or `spark` (Apache Spark over
    /// Spark Connect, at --remote: it reads --predictions, Parquet files on
    /// its own file systems, or else --table, and sends back counts).
    #[arg(long, value_enum, default_value = "local", conflicts_with_all = ["counts", "monitor", "emit_sql", "stream"])]
    pub engine: Engine,
    /// The Spark Connect server of --engine spark (sc://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Read the predictions in chunks of --chunk-rows into counts (memory
    /// bounded by the number of distinct cells, not rows); implied by a
    /// folder or glob. Count-based numbers are those of the in-memory audit;
    /// scores are binned (--score-bins) and ROC AUC is within a bound the
    /// report states.
    #[arg(long)]
    pub stream: bool,
    /// Rows per chunk with --stream.
    #[arg(long, value_name = "N", default_value_t = 262_144)]
    pub chunk_rows: usize,
    /// Equal bins of [0, 1] for scores in counts (--stream, --counts,
    /// --write-counts, --emit-sql).
    #[arg(long, value_name = "N", default_value_t = valor_fair::DEFAULT_SCORE_BINS)]
    pub score_bins: usize,
    /// Audit counts instead of rows: a CSV with the group columns, `y_true`,
    /// `y_pred`, with scores `calibration_bin` and `score_bin`, then `n` (and
    /// with scores `score_sum`), as --write-counts writes and the query of
    /// --emit-sql returns.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["predictions", "monitor"])]
    pub counts: Option<PathBuf>,
    /// Also write the counts of the audited rows to this CSV (the --counts
    /// format); refused if it exists unless --overwrite.
    #[arg(long, value_name = "FILE", conflicts_with = "monitor")]
    pub write_counts: Option<PathBuf>,
    /// Print the SQL (GROUP BY) that counts a predictions table in an engine
    /// Valor does not run, and exit; save its result as CSV for --counts.
    #[arg(long, value_enum, value_name = "DIALECT", conflicts_with_all = ["counts", "monitor"])]
    pub emit_sql: Option<Dialect>,
    /// The table the SQL of --emit-sql, or Spark (--engine spark without
    /// --predictions), reads (`schema.table` is quoted per part).
    #[arg(long, value_name = "NAME", default_value = "predictions")]
    pub table: String,
    /// Column holding the true label.
    #[arg(long, value_name = "COL", default_value = "y_true")]
    pub label_col: String,
    /// Column holding the predicted label.
    #[arg(long, value_name = "COL", default_value = "y_pred")]
    pub pred_col: String,
    /// Column holding the score P(positive label) (binary tasks): enables ROC
    /// AUC and calibration.
    #[arg(long, value_name = "COL")]
    pub score_col: Option<String>,
    /// Sensitive (group) column; repeat for several.
    #[arg(long = "group", value_name = "COL", required = true)]
    pub groups: Vec<String>,
    /// Also audit the intersection of all group columns.
    #[arg(long)]
    pub intersect: bool,
    /// Privileged group for AIF360's signed metrics, as `column=value`
    /// (repeatable; for an intersection `a+b=x|y`).
    #[arg(long, value_name = "COL=VALUE")]
    pub privileged: Vec<String>,
    /// The positive (favourable) label of a binary task (default: 1, true, or
    /// the second label).
    #[arg(long, value_name = "LABEL")]
    pub positive: Option<String>,
    /// Label names in order, comma-separated (default: sorted distinct values).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// The labels are ordered (`--labels` order): also report the binary view
    /// at each cut ("at least b").
    #[arg(long)]
    pub ordinal: bool,
    /// Bootstrap resamples for confidence intervals of every disparity (0: none).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Warn about groups with fewer rows than this.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub min_group_size: u64,
    /// Fail (exit 1) when fairlearn's demographic parity difference exceeds this.
    #[arg(long, value_name = "X")]
    pub max_dp_difference: Option<f64>,
    /// Fail (exit 1) when fairlearn's equalized odds difference exceeds this.
    #[arg(long, value_name = "X")]
    pub max_eo_difference: Option<f64>,
    /// Fail (exit 1) when AIF360's disparate impact falls below this (0.8 is the
    /// four-fifths rule).
    #[arg(long, value_name = "X")]
    pub min_disparate_impact: Option<f64>,
    /// Fail (exit 1) when the multiclass selection-rate gap exceeds this.
    #[arg(long, value_name = "X")]
    pub max_selection_rate_gap: Option<f64>,
    /// Any other threshold, as `metric<=x`, `metric>=x` or `|metric|<=x`, with
    /// metric paths from valor-fair's SCHEMA.md (repeatable).
    #[arg(long = "threshold", value_name = "RULE")]
    pub thresholds: Vec<String>,
    /// Format of --out (default: from its extension).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the report here (JSON, Markdown or HTML); an existing file is
    /// replaced only with --overwrite.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the JSON report on standard output instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Read a stream of predictions and report over a sliding window.
    #[arg(long)]
    pub monitor: bool,
    /// Rows in the sliding window (--monitor).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub window: usize,
    /// Check the thresholds every N rows (--monitor).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub check_every: u64,
    /// Keep reading a growing file after its end (--monitor), like `tail -f`;
    /// stops after this many seconds without new rows.
    #[arg(long, value_name = "SECONDS")]
    pub follow: Option<u64>,
}

fn config(a: &AuditArgs) -> Result<AuditConfig> {
    let mut cfg = AuditConfig::default();
    cfg.specs = GroupSpec::from_columns(&a.groups, a.intersect);
    cfg.positive_label = a.positive.clone();
    cfg.ordinal = a.ordinal;
    cfg.min_group_size = a.min_group_size;
    if a.bootstrap > 0 {
        cfg.bootstrap = Some(BootstrapConfig::new(a.bootstrap, a.seed));
    }
    for p in &a.privileged {
        let (spec, value) = p
            .split_once('=')
            .with_context(|| format!("--privileged `{p}`: expected column=value"))?;
        cfg = cfg.privilege(spec, value);
    }
    let mut push = |t: Threshold| cfg.thresholds.push(t);
    if let Some(x) = a.max_dp_difference {
        push(Threshold::at_most(paths::DEMOGRAPHIC_PARITY_DIFFERENCE, x));
    }
    if let Some(x) = a.max_eo_difference {
        push(Threshold::at_most(paths::EQUALIZED_ODDS_DIFFERENCE, x));
    }
    if let Some(x) = a.min_disparate_impact {
        push(Threshold::at_least(paths::DISPARATE_IMPACT, x));
    }
    if let Some(x) = a.max_selection_rate_gap {
        push(Threshold::at_most(paths::MULTICLASS_SELECTION_RATE_GAP, x));
    }
    for t in &a.thresholds {
        cfg.thresholds.push(
            t.parse()
                .map_err(|e| anyhow::anyhow!("--threshold `{t}`: {e}"))?,
        );
    }
    cfg.validate()?;
    Ok(cfg)
}

/// A valor-fair error about the rows of `path`, told as a file error: its
/// row (valor-fair's 0-based index) as the 1-based data row, and its column
/// by the name the file gives it.
fn in_file(err: valor_fair::Error, path: &std::path::Path, a: &AuditArgs) -> anyhow::Error {
    let name = |column: &str| -> String {
        match column {
            "y_true" => a.label_col.clone(),
            "y_pred" => a.pred_col.clone(),
            "y_score" | "scores" => a.score_col.clone().unwrap_or_else(|| column.to_string()),
            other => other.to_string(),
        }
    };
    match err {
        valor_fair::Error::UnknownLabel {
            column,
            row,
            value,
            labels,
        } => anyhow::anyhow!(
            "{}: row {}, column `{}`: `{value}` is not one of the labels {}; declare every label (--labels) or drop the row",
            path.display(),
            row + 1,
            name(&column),
            labels.join(", ")
        ),
        valor_fair::Error::NonFiniteScore { row, column, value } => anyhow::anyhow!(
            "{}: row {}, column `{}`: the score is {value}, not a finite number",
            path.display(),
            row + 1,
            name(&column)
        ),
        valor_fair::Error::ScoreOutOfRange { row, column, value } => anyhow::anyhow!(
            "{}: row {}, column `{}`: the score is {value}, outside [0, 1]; counts (--stream) \
             bin scores of [0, 1]: pass probabilities, or audit in memory without --stream",
            path.display(),
            row + 1,
            name(&column)
        ),
        valor_fair::Error::MissingValue { column, row } => anyhow::anyhow!(
            "{}: row {}, column `{}`: empty value",
            path.display(),
            row + 1,
            name(&column)
        ),
        valor_fair::Error::InvalidCounts { row, why } => {
            anyhow::anyhow!("{}: row {}: {why}", path.display(), row + 1)
        }
        other => anyhow::Error::from(other).context(format!("in {}", path.display())),
    }
}

fn required(
    values: Vec<Option<String>>,
    file: &std::path::Path,
    column: &str,
) -> Result<Vec<String>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => bail!(
                "{}: row {}, column `{column}`: empty value",
                file.display(),
                i + 1
            ),
        })
        .collect()
}

pub fn run(a: AuditArgs) -> Result<Outcome> {
    if let Some(dialect) = a.emit_sql {
        return emit_sql(&a, dialect);
    }
    let cfg = config(&a)?;
    let mut inputs: Vec<&std::path::Path> = Vec::new();
    inputs.extend(a.predictions.as_deref());
    inputs.extend(a.counts.as_deref());
    for out in [&a.out, &a.write_counts].into_iter().flatten() {
        crate::common::check_output(out, &inputs, a.overwrite)?;
    }
    if a.monitor {
        return monitor(&a, &cfg);
    }
    let (mut report, counts, source) = if a.engine == Engine::Spark || a.remote.is_some() {
        let (counts, source) = spark_counts(&a, &cfg)?;
        let report = audit_counts(&counts, &cfg)?;
        (report, Some(counts), source)
    } else if let Some(path) = &a.counts {
        let counts = read_counts(&a, &cfg, path)?;
        let report = audit_counts(&counts, &cfg).map_err(|e| in_file(e, path, &a))?;
        (report, Some(counts), path.clone())
    } else {
        let path = a.predictions.clone().context("pass --predictions")?;
        let files = expand_inputs(&path)?;
        if a.stream || files.len() > 1 || files[0] != path {
            let counts = stream_counts(&a, &cfg, &files)?;
            let report = audit_counts(&counts, &cfg)?;
            (report, Some(counts), path)
        } else {
            let input = read_rows(&a, &path)?;
            let report = audit(&input, &cfg)?;
            let counts = match &a.write_counts {
                Some(_) => Some(AuditCounts::from_input(&input, bins(&a, &cfg)?)?),
                None => None,
            };
            (report, counts, path)
        }
    };
    report.provenance.source = Some(source.display().to_string());
    if source.is_file() {
        report.provenance.source_sha256 = Some(file_sha256(&source)?);
    }
    // valor-train's build script records the commit (valor-cli has none).
    report.provenance.git_commit =
        (valor_train::GIT_COMMIT != "unknown").then(|| valor_train::GIT_COMMIT.to_string());
    if let (Some(file), Some(counts)) = (&a.write_counts, &counts) {
        write_counts(counts, file).with_context(|| format!("writing {}", file.display()))?;
    }
    print_report(&a, &report)
}

/// Counts the rows in Apache Spark (`--engine spark`); the counts and the
/// source the report names.
#[cfg(feature = "spark")]
fn spark_counts(a: &AuditArgs, cfg: &AuditConfig) -> Result<(AuditCounts, PathBuf)> {
    use valor_spark::{CountsQuery, Source, SparkRemote};
    let (Engine::Spark, Some(url)) = (a.engine, &a.remote) else {
        bail!("--engine spark needs --remote sc://HOST:PORT, and --remote needs --engine spark");
    };
    let remote = SparkRemote::parse(url)?;
    let source = match &a.predictions {
        // Spark resolves a relative path from its own working folder: give
        // it this one's (a URL such as s3a://… goes as it is).
        Some(p) if !p.to_string_lossy().contains("://") => {
            Source::Parquet(std::path::absolute(p)?.to_string_lossy().into_owned())
        }
        Some(p) => Source::Parquet(p.to_string_lossy().into_owned()),
        None => Source::Table(a.table.clone()),
    };
    let labels = a.labels.as_ref().map(|l| LabelSet::new(l)).transpose()?;
    let score = match &a.score_col {
        Some(sc) => Some((sc.as_str(), bins(a, cfg)?.context("--score-bins")?)),
        None => None,
    };
    let query = CountsQuery {
        source: &source,
        columns: SqlColumns {
            y_true: &a.label_col,
            y_pred: &a.pred_col,
            groups: &a.groups,
            score,
        },
        labels,
    };
    let counted = valor_spark::count(&remote, &query)
        .with_context(|| format!("auditing {} through Spark", source.describe()))?;
    let name = match &source {
        Source::Parquet(p) => p.clone(),
        Source::Table(t) => format!("{}#table={t}", remote.url()),
    };
    Ok((counted.counts, PathBuf::from(name)))
}

#[cfg(not(feature = "spark"))]
fn spark_counts(_: &AuditArgs, _: &AuditConfig) -> Result<(AuditCounts, PathBuf)> {
    bail!(
        "this valor was built without Spark: --engine spark needs the `spark` cargo feature \
         (cargo build --release -p valor-cli --features spark; building it needs protoc)"
    )
}

/// The score binning of counts: when scores are audited.
fn bins(a: &AuditArgs, cfg: &AuditConfig) -> Result<Option<ScoreBins>> {
    a.score_col
        .as_ref()
        .map(|_| ScoreBins::new(a.score_bins, cfg.ece_bins))
        .transpose()
        .context("--score-bins")
}

/// The whole file as an [`AuditInput`].
fn read_rows(a: &AuditArgs, path: &std::path::Path) -> Result<AuditInput> {
    let table = read_table(path).with_context(|| format!("reading {}", path.display()))?;
    require_columns(a, &table)?;
    let y_true = required(table.strings(&a.label_col)?, path, &a.label_col)?;
    let y_pred = required(table.strings(&a.pred_col)?, path, &a.pred_col)?;
    let labels = a.labels.as_ref().map(|l| LabelSet::new(l)).transpose()?;
    let mut input =
        AuditInput::from_strings(&y_true, &y_pred, labels).map_err(|e| in_file(e, path, a))?;
    if let Some(sc) = &a.score_col {
        let scores: Vec<f64> = table
            .floats(sc)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.with_context(|| {
                    format!(
                        "{}: row {}, column `{sc}`: empty score",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<_>>()?;
        input = input.with_scores(scores).map_err(|e| in_file(e, path, a))?;
    }
    for g in &a.groups {
        let values = required(table.strings(g)?, path, g)?;
        input = input
            .with_group(g, &values)
            .map_err(|e| in_file(e, path, a))?;
    }
    Ok(input)
}

fn require_columns(a: &AuditArgs, table: &Table) -> Result<()> {
    for (c, hint) in [(&a.label_col, "--label-col"), (&a.pred_col, "--pred-col")] {
        table.require(c, Some(&format!("pass the column with {hint}")))?;
    }
    for g in &a.groups {
        table.require(g, Some("pass the group column with --group"))?;
    }
    if let Some(sc) = &a.score_col {
        table.require(sc, Some("pass the score column with --score-col"))?;
    }
    Ok(())
}

/// Counts the rows of `files`, each read in chunks of `--chunk-rows`: memory
/// holds one chunk and the distinct cells, whatever the number of rows.
/// Each column of a chunk comes as codes into its distinct values, which
/// are trimmed and checked once per chunk (valor-fair's `add_chunk`), so no
/// string is made or hashed per row. Parquet chunks decode only the audited
/// columns.
fn stream_counts(a: &AuditArgs, cfg: &AuditConfig, files: &[PathBuf]) -> Result<AuditCounts> {
    let labels = a.labels.as_ref().map(|l| LabelSet::new(l)).transpose()?;
    let mut builder = CountsBuilder::new(a.groups.clone(), labels, bins(a, cfg)?)?;
    let mut wanted: Vec<&str> = vec![&a.label_col, &a.pred_col];
    wanted.extend(a.groups.iter().map(String::as_str));
    wanted.extend(a.score_col.as_deref());
    for path in files {
        let chunks = stream_table(path, a.chunk_rows)
            .and_then(|s| s.select(&wanted))
            .with_context(|| format!("reading {}", path.display()))?;
        for chunk in chunks {
            let table = chunk.with_context(|| format!("reading {}", path.display()))?;
            require_columns(a, &table)?;
            let coded = |c: &str| table.coded(c);
            let (y_true, y_pred) = (coded(&a.label_col)?, coded(&a.pred_col)?);
            let groups = a
                .groups
                .iter()
                .map(|g| coded(g))
                .collect::<valor_data::Result<Vec<_>>>()?;
            let scores = match &a.score_col {
                Some(sc) => Some(table.floats(sc)?),
                None => None,
            };
            let (t_values, p_values) = (trimmed(&y_true), trimmed(&y_pred));
            let g_values: Vec<Vec<Option<&str>>> = groups.iter().map(trimmed).collect();
            let group_cols: Vec<CodedColumn<'_>> = groups
                .iter()
                .zip(&g_values)
                .map(|(g, values)| CodedColumn {
                    codes: &g.codes,
                    values,
                })
                .collect();
            let chunk = CodedChunk {
                y_true: CodedColumn {
                    codes: &y_true.codes,
                    values: &t_values,
                },
                y_pred: CodedColumn {
                    codes: &y_pred.codes,
                    values: &p_values,
                },
                groups: &group_cols,
                scores: scores.as_deref(),
            };
            builder
                .add_chunk(&chunk, table.row_offset())
                .map_err(|e| in_file(e, path, a))?;
        }
    }
    builder.finish().context("counting the predictions")
}

/// A column's distinct values as the in-memory audit reads them: trimmed,
/// and blank is missing.
fn trimmed(c: &valor_data::table::CodedText) -> Vec<Option<&str>> {
    c.values
        .iter()
        .map(|v| v.as_deref().map(str::trim).filter(|s| !s.is_empty()))
        .collect()
}

/// Reads a counts CSV (the --counts format) over the `--group` columns;
/// other group columns in the file are summed over.
fn read_counts(a: &AuditArgs, cfg: &AuditConfig, path: &std::path::Path) -> Result<AuditCounts> {
    let table = read_table(path).with_context(|| format!("reading {}", path.display()))?;
    let names = table.column_names();
    let scored = names.iter().any(|c| c == "score_bin");
    let mut needed: Vec<&str> = a.groups.iter().map(String::as_str).collect();
    needed.extend(["y_true", "y_pred", "n"]);
    if scored {
        needed.extend(["calibration_bin", "score_bin", "score_sum"]);
    }
    for c in &needed {
        table.require(
            c,
            Some("counts have the --group columns, y_true, y_pred, n (see --emit-sql)"),
        )?;
    }
    let bins = if scored {
        Some(ScoreBins::new(a.score_bins, cfg.ece_bins).context("--score-bins")?)
    } else {
        None
    };
    let labels = a.labels.as_ref().map(|l| LabelSet::new(l)).transpose()?;
    let mut counts = AuditCounts::new(a.groups.clone(), labels, bins)?;
    let text = |c: &str| -> Result<Vec<String>> { required(table.strings(c)?, path, c) };
    let groups: Vec<Vec<String>> = a.groups.iter().map(|g| text(g)).collect::<Result<_>>()?;
    let (y_true, y_pred, n) = (text("y_true")?, text("y_pred")?, text("n")?);
    let ints = |c: &str| -> Result<Vec<u32>> {
        if !scored {
            return Ok(vec![0; n.len()]);
        }
        text(c)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.parse::<u32>().with_context(|| {
                    format!(
                        "{}: row {}, column `{c}`: `{v}` is not a bin number",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect()
    };
    let (cal, bin) = (ints("calibration_bin")?, ints("score_bin")?);
    let sums: Vec<f64> = if scored {
        table
            .floats("score_sum")?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.with_context(|| {
                    format!(
                        "{}: row {}, column `score_sum`: empty value",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<_>>()?
    } else {
        vec![0.0; n.len()]
    };
    for (i, count) in n.iter().enumerate() {
        let rows: u64 = count.parse().with_context(|| {
            format!(
                "{}: row {}, column `n`: `{count}` is not a count of rows",
                path.display(),
                i + 1
            )
        })?;
        let key = CellKey {
            groups: groups.iter().map(|g| g[i].clone()).collect(),
            y_true: y_true[i].clone(),
            y_pred: y_pred[i].clone(),
            calibration_bin: cal[i],
            score_bin: bin[i],
        };
        let value = CellValue {
            n: rows,
            score_sum: sums[i],
        };
        counts
            .add_cell(key, value, i)
            .map_err(|e| in_file(e, path, a))?;
    }
    Ok(counts)
}

/// Writes counts as the CSV that --counts reads.
fn write_counts(counts: &AuditCounts, path: &std::path::Path) -> Result<()> {
    let scored = counts.bins().is_some();
    let mut header: Vec<String> = counts.columns().to_vec();
    header.extend(["y_true".into(), "y_pred".into()]);
    if scored {
        header.extend(["calibration_bin".into(), "score_bin".into()]);
    }
    header.push("n".into());
    if scored {
        header.push("score_sum".into());
    }
    let mut w = valor_base::csv::RecordWriter::new(Vec::new(), b',');
    w.write(&header)?;
    let mut fields: Vec<String> = Vec::with_capacity(header.len());
    for (k, v) in counts.cells() {
        fields.clear();
        fields.extend(k.groups.iter().cloned());
        fields.extend([k.y_true.clone(), k.y_pred.clone()]);
        if scored {
            fields.extend([k.calibration_bin.to_string(), k.score_bin.to_string()]);
        }
        fields.push(v.n.to_string());
        if scored {
            // Display of f64 is the shortest text that parses back to it.
            fields.push(v.score_sum.to_string());
        }
        w.write(&fields)?;
    }
    let bytes = w.into_inner()?;
    valor_fair::write_atomic(path, &bytes)?;
    Ok(())
}

/// Prints the SQL that counts a predictions table (--emit-sql).
fn emit_sql(a: &AuditArgs, dialect: Dialect) -> Result<Outcome> {
    let bins = a
        .score_col
        .as_deref()
        .map(|sc| -> Result<_> {
            Ok((
                sc,
                ScoreBins::new(a.score_bins, AuditConfig::default().ece_bins)
                    .context("--score-bins")?,
            ))
        })
        .transpose()?;
    let sql = counts_sql(
        &a.table,
        &SqlColumns {
            y_true: &a.label_col,
            y_pred: &a.pred_col,
            groups: &a.groups,
            score: bins,
        },
        dialect.quoting(),
    );
    let mut out = std::io::stdout().lock();
    write!(out, "{sql}")?;
    Ok(Outcome::Ok)
}

fn print_report(a: &AuditArgs, report: &AuditReport) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", report.to_json_pretty()?)?;
    } else {
        write!(out, "{}", report.to_markdown())?;
    }
    if let Some(file) = &a.out {
        let format = a
            .format
            .unwrap_or_else(|| match file.extension().and_then(|e| e.to_str()) {
                Some("html" | "htm") => Format::Html,
                Some("md" | "markdown") => Format::Md,
                _ => Format::Json,
            });
        match format {
            Format::Json => report.write_json(file),
            Format::Md => report.write_markdown(file),
            Format::Html => report.write_html(file),
        }
        .with_context(|| format!("writing {}", file.display()))?;
        if !a.json {
            writeln!(out, "\nwrote {}", file.display())?;
        }
    }
    if report.passed() {
        Ok(Outcome::Ok)
    } else {
        let mut err = std::io::stderr().lock();
        for b in report.breaches() {
            writeln!(err, "breach: {b}")?;
        }
        Ok(Outcome::TargetMissed)
    }
}

/// Reads CSV rows as they come (a growing file, or standard input), feeding a
/// [`WindowMonitor`]; prints each breach and recovery as it happens and a
/// final window summary. Exit 1 if any breach happened.
fn monitor(a: &AuditArgs, cfg: &AuditConfig) -> Result<Outcome> {
    let labels = match &a.labels {
        Some(l) => LabelSet::new(l)?,
        None => bail!("--monitor needs --labels (the label set cannot be inferred from a stream)"),
    };
    let mut mon = WindowMonitor::new(labels, a.groups.clone(), a.window, cfg)?
        .with_check_every(a.check_every);
    let predictions = a
        .predictions
        .as_deref()
        .context("--monitor needs --predictions")?;
    let stdin = predictions.as_os_str() == "-";
    let mut reader: Box<dyn BufRead> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(predictions)
                .with_context(|| format!("opening {}", predictions.display()))?,
        ))
    };
    let name = predictions.display().to_string();
    let mut header: Option<Vec<String>> = None;
    let mut idx: Vec<usize> = Vec::new();
    let mut line = String::new();
    let mut breached = false;
    let mut out = std::io::stdout().lock();
    let mut idle = std::time::Instant::now();
    let mut row = 0usize;
    let mut pending = String::new();
    let mut last = false;
    while !last {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("reading {name}"))?;
        if n == 0 {
            // End of what is there now: wait for more when following a file.
            if let Some(secs) = a.follow
                && !stdin
                && idle.elapsed().as_secs() < secs
            {
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
            if pending.is_empty() {
                break;
            }
            last = true;
        } else {
            idle = std::time::Instant::now();
            pending.push_str(&line);
            if !line.ends_with('\n') && a.follow.is_some() {
                continue; // a row still being written
            }
        }
        let record = std::mem::take(&mut pending);
        let record = record.trim_end_matches(['\n', '\r']);
        if record.is_empty() {
            continue;
        }
        let fields = split_csv_line(record);
        let Some(h) = &header else {
            let cols: Vec<String> = fields;
            let find = |c: &str| {
                cols.iter().position(|x| x == c).with_context(|| {
                    format!(
                        "{name}: column `{c}` not found; columns are: {}",
                        cols.join(", ")
                    )
                })
            };
            idx = vec![find(&a.label_col)?, find(&a.pred_col)?];
            for g in &a.groups {
                idx.push(find(g)?);
            }
            header = Some(cols);
            continue;
        };
        row += 1;
        if fields.len() != h.len() {
            bail!(
                "{name}: row {row}: {} fields, the header has {}",
                fields.len(),
                h.len()
            );
        }
        let groups: Vec<&str> = idx[2..].iter().map(|&i| fields[i].as_str()).collect();
        let events = mon
            .push(&fields[idx[0]], &fields[idx[1]], &groups)
            .with_context(|| format!("{name}: row {row}"))?;
        for e in events {
            breached |= matches!(e.kind, valor_fair::MonitorEventKind::Breached);
            writeln!(
                out,
                "row {}: {:?} {}{} = {} (limit {})",
                e.row,
                e.kind,
                e.spec
                    .as_deref()
                    .map(|s| format!("{s} "))
                    .unwrap_or_default(),
                e.metric,
                e.value
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "null".into()),
                e.limit
            )?;
        }
    }
    writeln!(
        out,
        "monitored {} rows; window of the last {}",
        mon.rows_seen(),
        mon.window_len()
    )?;
    for spec in mon.snapshot()? {
        let dp = spec
            .fairlearn
            .as_ref()
            .and_then(|f| f.demographic_parity_difference);
        writeln!(
            out,
            "  {}: demographic parity difference {}",
            spec.name,
            dp.map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "n/a".into())
        )?;
    }
    Ok(if breached {
        Outcome::TargetMissed
    } else {
        Outcome::Ok
    })
}

/// Splits one CSV record (RFC 4180 quotes; a record on one line).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_line_splitting() {
        assert_eq!(super::split_csv_line(r#"a,"b,c",d"#), vec!["a", "b,c", "d"]);
        assert_eq!(
            super::split_csv_line(r#""say ""hi""",x"#),
            vec![r#"say "hi""#, "x"]
        );
    }
}
