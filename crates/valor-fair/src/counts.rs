//! Sufficient statistics of an audit: every number `audit` reports is a
//! function of cell counts, so the heavy pass over the rows is a GROUP BY
//! that any engine can run, and partial counts merge.
//!
//! A cell is one (group values × true label × predicted label) combination,
//! and with scores also one (calibration bin × score bin): calibration bins
//! are scikit-learn's (`np.linspace(0, 1, E + 1)`, a score on an inner edge
//! falls in the lower bin), score bins are `B` equal bins of [0, 1]
//! (`floor(score · B)`, 1.0 in the last). Each cell holds its row count and
//! the sum of its scores.
//!
//! Exactness: every count-based metric (rates, disparities, confusion
//! matrices, ordinal cuts, reweighing, the bootstrap, which resamples the
//! same cell counts) is identical to the audit of the rows; calibration
//! bins, their counts and positives are identical, their mean scores and
//! the ECE equal up to the rounding of the score sums (summed in another
//! order); ROC AUC counts ties within a score bin one half, so it is within
//! `Σ_b pos_b · neg_b / (2 · P · Q)` of the exact value (the report states
//! that bound), and ROC curves have one point per score bin.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::audit::Columns;
use crate::config::AuditConfig;
use crate::error::{Error, Result};
use crate::ids::{LabelSet, MAX_LABELS, sort_values};
use crate::input::{AuditInput, MAX_GROUP_CELLS};
use crate::partition::Partition;
use crate::scores::{BinnedScores, linspace_edges};

/// Score bins of counts when the caller does not choose: 1,000 bins of
/// width 0.001 (with 10 calibration bins, 16 KB of counts per group cell).
pub const DEFAULT_SCORE_BINS: usize = 1000;
/// The most score bins (AUC resolution past this buys nothing and costs
/// memory per group cell).
pub const MAX_SCORE_BINS: usize = 1 << 20;

/// How scores are binned in counts: `score_bins` equal bins of [0, 1] for
/// ROC AUC and ROC curves, and `calibration_bins` scikit-learn bins for the
/// reliability curve and ECE (the audit's `ece_bins`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreBins {
    score_bins: usize,
    calibration_bins: usize,
}

impl ScoreBins {
    /// Checks both counts (1 to [`MAX_SCORE_BINS`]).
    pub fn new(score_bins: usize, calibration_bins: usize) -> Result<Self> {
        for (setting, n) in [
            ("score_bins", score_bins),
            ("calibration_bins", calibration_bins),
        ] {
            if n == 0 || n > MAX_SCORE_BINS {
                return Err(Error::InvalidConfig {
                    setting: setting.into(),
                    why: format!("{n} bins; give 1 to {MAX_SCORE_BINS}"),
                });
            }
        }
        Ok(Self {
            score_bins,
            calibration_bins,
        })
    }
    /// Equal bins of [0, 1] for ROC AUC.
    pub fn score_bins(&self) -> usize {
        self.score_bins
    }
    /// scikit-learn calibration bins.
    pub fn calibration_bins(&self) -> usize {
        self.calibration_bins
    }
    /// The score bin of a score in [0, 1]: `floor(score · B)`, 1.0 in the
    /// last bin (as the emitted SQL computes it).
    pub fn score_bin(&self, score: f64) -> u32 {
        if score >= 1.0 {
            (self.score_bins - 1) as u32
        } else {
            ((score * self.score_bins as f64).floor() as u32).min(self.score_bins as u32 - 1)
        }
    }
    /// The inner edges of the calibration bins (`linspace(0, 1, E + 1)[1:-1]`).
    pub fn calibration_edges(&self) -> Vec<f64> {
        let e = linspace_edges(self.calibration_bins);
        e[1..self.calibration_bins].to_vec()
    }
}

/// The calibration bin of `score` given the inner edges: the number of
/// inner edges strictly below it (`np.searchsorted(edges, score)`).
fn calibration_bin(score: f64, inner: &[f64]) -> u32 {
    inner.partition_point(|&e| e < score) as u32
}

/// The key of one cell: group values (in the counts' column order), true
/// and predicted label, and with scores the calibration and score bin (0
/// without scores).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    pub groups: Vec<String>,
    pub y_true: String,
    pub y_pred: String,
    pub calibration_bin: u32,
    pub score_bin: u32,
}

/// The rows of one cell and the sum of their scores (0 without scores).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CellValue {
    pub n: u64,
    pub score_sum: f64,
}

/// Counts of an audit's rows: the audit's input when the rows are too many
/// to hold, were counted elsewhere (`--emit-sql`), or come in parts.
/// [`audit_counts`](crate::audit_counts) turns them into the report;
/// [`merge`](Self::merge) adds counts of other rows.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditCounts {
    columns: Vec<String>,
    labels: Option<LabelSet>,
    bins: Option<ScoreBins>,
    cells: BTreeMap<CellKey, CellValue>,
}

impl AuditCounts {
    /// Empty counts over the named group columns (distinct, at least one);
    /// `labels` fixes the label set and its order (else the labels seen,
    /// sorted as [`LabelSet::infer`] sorts them); `bins` when rows have
    /// scores.
    pub fn new(
        columns: Vec<String>,
        labels: Option<LabelSet>,
        bins: Option<ScoreBins>,
    ) -> Result<Self> {
        if columns.is_empty() {
            return Err(Error::NoGroups);
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(Error::DuplicateGroupColumn { column: c.clone() });
            }
        }
        if let (Some(l), Some(_)) = (&labels, bins)
            && l.len() != 2
        {
            return Err(Error::ScoresNeedBinary { n_labels: l.len() });
        }
        Ok(Self {
            columns,
            labels,
            bins,
            cells: BTreeMap::new(),
        })
    }

    /// The counts of an in-memory input (every row; its label set).
    pub fn from_input(input: &AuditInput, bins: Option<ScoreBins>) -> Result<Self> {
        let columns: Vec<String> = input.groups().iter().map(|g| g.name().to_owned()).collect();
        let scores = match bins {
            Some(_) => Some(input.scores().ok_or_else(|| Error::InvalidConfig {
                setting: "score_bins".into(),
                why: "the input has no scores to bin".into(),
            })?),
            None => None,
        };
        let mut b = CountsBuilder::new(columns, Some(input.labels().clone()), bins)?;
        // The input is already coded: labels by id, groups by level.
        let names: Vec<Option<&str>> = input
            .labels()
            .names()
            .iter()
            .map(|n| Some(n.as_str()))
            .collect();
        let ids = |l: &[crate::LabelId]| -> Vec<u32> { l.iter().map(|id| id.get()).collect() };
        let (y_true, y_pred) = (ids(input.y_true()), ids(input.y_pred()));
        let levels: Vec<Vec<Option<&str>>> = input
            .groups()
            .iter()
            .map(|g| g.levels().iter().map(|l| Some(l.as_str())).collect())
            .collect();
        let groups: Vec<CodedColumn<'_>> = input
            .groups()
            .iter()
            .zip(&levels)
            .map(|(g, values)| CodedColumn {
                codes: g.codes(),
                values,
            })
            .collect();
        let scores: Option<Vec<Option<f64>>> = scores.map(|s| s.iter().map(|&v| Some(v)).collect());
        b.add_chunk(
            &CodedChunk {
                y_true: CodedColumn {
                    codes: &y_true,
                    values: &names,
                },
                y_pred: CodedColumn {
                    codes: &y_pred,
                    values: &names,
                },
                groups: &groups,
                scores: scores.as_deref(),
            },
            0,
        )?;
        b.finish()
    }

    /// Adds one cell read from a counts file or an engine's answer; `row`
    /// (0-based) names it in errors. Cells with the same key add up; a cell
    /// of 0 rows is checked but counts nothing.
    pub fn add_cell(&mut self, key: CellKey, value: CellValue, row: usize) -> Result<()> {
        let bad = |why: String| Error::InvalidCounts { row, why };
        if key.groups.len() != self.columns.len() {
            return Err(bad(format!(
                "{} group values for {} group columns",
                key.groups.len(),
                self.columns.len()
            )));
        }
        if let Some(l) = &self.labels {
            for (column, v) in [("y_true", &key.y_true), ("y_pred", &key.y_pred)] {
                if l.id(v).is_none() {
                    return Err(Error::UnknownLabel {
                        column: column.into(),
                        row,
                        value: v.clone(),
                        labels: l.names().to_vec(),
                    });
                }
            }
        }
        match self.bins {
            Some(b) => {
                if key.score_bin as usize >= b.score_bins
                    || key.calibration_bin as usize >= b.calibration_bins
                {
                    return Err(bad(format!(
                        "score bin {} / calibration bin {} out of range for {} score and {} \
                         calibration bins (were the counts made with other --score-bins?)",
                        key.score_bin, key.calibration_bin, b.score_bins, b.calibration_bins
                    )));
                }
                if !value.score_sum.is_finite()
                    || value.score_sum < 0.0
                    || value.score_sum > value.n as f64
                {
                    return Err(bad(format!(
                        "score sum {} of {} rows: not a sum of scores in [0, 1]",
                        value.score_sum, value.n
                    )));
                }
            }
            None => {
                if key.score_bin != 0 || key.calibration_bin != 0 {
                    return Err(bad("score bins in counts without scores".into()));
                }
            }
        }
        if value.n == 0 {
            return Ok(());
        }
        let e = self.cells.entry(key).or_default();
        e.n += value.n;
        e.score_sum += value.score_sum;
        if self.cells.len() > MAX_GROUP_CELLS {
            return Err(bad(format!(
                "more than {MAX_GROUP_CELLS} distinct cells; is a group column an id?"
            )));
        }
        Ok(())
    }

    /// Adds counts of other rows over the same columns, labels and bins.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if other.columns != self.columns || other.labels != self.labels || other.bins != self.bins {
            return Err(Error::Mismatch {
                what: "merge counts".into(),
                why: "counts over different group columns, declared labels or score bins".into(),
            });
        }
        for (k, v) in &other.cells {
            let e = self.cells.entry(k.clone()).or_default();
            e.n += v.n;
            e.score_sum += v.score_sum;
        }
        Ok(())
    }

    /// Group column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
    /// The declared label set, if any.
    pub fn declared_labels(&self) -> Option<&LabelSet> {
        self.labels.as_ref()
    }
    /// Score binning, when rows had scores.
    pub fn bins(&self) -> Option<ScoreBins> {
        self.bins
    }
    /// Non-empty cells in key order.
    pub fn cells(&self) -> impl Iterator<Item = (&CellKey, &CellValue)> {
        self.cells.iter()
    }
    /// Rows counted.
    pub fn rows(&self) -> u64 {
        self.cells.values().map(|v| v.n).sum()
    }

    /// The label set: declared, or the labels of the counted rows sorted as
    /// [`LabelSet::infer`] sorts a column.
    pub fn label_set(&self) -> Result<LabelSet> {
        if let Some(l) = &self.labels {
            return Ok(l.clone());
        }
        let mut t: Vec<&str> = self.cells.keys().map(|k| k.y_true.as_str()).collect();
        let mut p: Vec<&str> = self.cells.keys().map(|k| k.y_pred.as_str()).collect();
        t.dedup();
        p.sort_unstable();
        p.dedup();
        LabelSet::infer(&t, &p)
    }
}

impl AuditCounts {
    /// Per column, the distinct values of counted rows, sorted as
    /// [`GroupColumn`](crate::GroupColumn) sorts levels.
    pub(crate) fn levels(&self) -> Vec<Vec<String>> {
        let mut levels: Vec<Vec<&str>> = vec![Vec::new(); self.columns.len()];
        for k in self.cells.keys() {
            for (l, g) in levels.iter_mut().zip(&k.groups) {
                l.push(g);
            }
        }
        levels
            .into_iter()
            .map(|mut l| {
                l.sort_unstable();
                l.dedup();
                sort_values(&mut l);
                l.into_iter().map(str::to_owned).collect()
            })
            .collect()
    }

    /// The partition of the counted rows over the columns `used` (indices
    /// into `cols`, sorted), as [`Partition::build`] makes it from rows, and
    /// the score histograms of its combinations.
    pub(crate) fn partition(
        &self,
        cols: &Columns<'_>,
        labels: &LabelSet,
        used: &[usize],
        positive: Option<usize>,
        config: &AuditConfig,
    ) -> Result<(Partition, Option<BinnedScores>)> {
        let k = labels.len();
        let code_of: Vec<HashMap<&str, u32>> = cols
            .levels
            .iter()
            .map(|l| {
                l.iter()
                    .enumerate()
                    .map(|(i, v)| (v.as_str(), i as u32))
                    .collect()
            })
            .collect();
        let combo_of = |key: &CellKey| -> Vec<u32> {
            used.iter()
                .map(|&c| code_of[c][key.groups[c].as_str()])
                .collect()
        };
        let combos: Vec<Vec<u32>> = self
            .cells
            .keys()
            .map(combo_of)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: HashMap<&[u32], usize> = combos
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_slice(), i))
            .collect();
        let bins = match (self.bins, positive) {
            (Some(b), Some(_)) => {
                if b.calibration_bins != config.ece_bins {
                    return Err(Error::InvalidConfig {
                        setting: "ece_bins".into(),
                        why: format!(
                            "the counts have {} calibration bins but the audit asks for {}; \
                             count again with {} or audit with {}",
                            b.calibration_bins,
                            config.ece_bins,
                            config.ece_bins,
                            b.calibration_bins
                        ),
                    });
                }
                Some(b)
            }
            _ => None,
        };
        let mut counts = vec![0u64; combos.len() * k * k];
        let mut binned = bins.map(|b| BinnedScores::new(b, combos.len()));
        for (key, v) in &self.cells {
            let c = index[combo_of(key).as_slice()];
            let label = |s: &str| {
                labels
                    .id(s)
                    .map(|id| id.index())
                    .ok_or_else(|| Error::UnknownLabel {
                        column: "y_true".into(),
                        row: 0,
                        value: s.to_owned(),
                        labels: labels.names().to_vec(),
                    })
            };
            let (t, p) = (label(&key.y_true)?, label(&key.y_pred)?);
            counts[(c * k + t) * k + p] += v.n;
            if let (Some(h), Some(pos)) = (&mut binned, positive) {
                h.add(c, t == pos, key.calibration_bin, key.score_bin, v);
            }
        }
        Ok((
            Partition {
                combos,
                row_combo: Vec::new(),
                counts,
                k,
            },
            binned,
        ))
    }
}

/// FxHash-style hasher for the counting loop's small keys (no DoS concern:
/// keys are the user's own data, and the tables are bounded).
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// Distinct strings and their codes, in order of first appearance.
#[derive(Default)]
struct Interner {
    codes: FxMap<String, u32>,
    values: Vec<String>,
}

impl Interner {
    fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = self.values.len() as u32;
        self.codes.insert(s.to_owned(), c);
        self.values.push(s.to_owned());
        c
    }
}

/// Counts rows one at a time (a stream's chunks, a file's records) into
/// [`AuditCounts`]; memory grows with the distinct cells, not the rows.
pub struct CountsBuilder {
    columns: Vec<String>,
    declared: Option<LabelSet>,
    bins: Option<ScoreBins>,
    edges: Vec<f64>,
    labels: Interner,
    levels: Vec<Interner>,
    combos: FxMap<Vec<u32>, u32>,
    combo_codes: Vec<Vec<u32>>,
    cells: FxMap<u128, CellValue>,
    key: Vec<u32>,
    /// A chunk's dense cell index per row and dense counts (add_chunk),
    /// kept to reuse their memory.
    index: Vec<u32>,
    dense_n: Vec<u64>,
    dense_sum: Vec<f64>,
}

/// One column of a chunk of rows, dictionary-coded: row `i` holds
/// `values[codes[i]]`, `None` being a missing value (null, or blank after
/// trimming). A value may stand under several codes; they count as one.
#[derive(Clone, Copy, Debug)]
pub struct CodedColumn<'a> {
    pub codes: &'a [u32],
    pub values: &'a [Option<&'a str>],
}

/// A chunk of rows for [`CountsBuilder::add_chunk`]: both label columns,
/// the group columns in the builder's order and, when the counts bin
/// scores, the scores (`None`: missing).
#[derive(Clone, Copy, Debug)]
pub struct CodedChunk<'a> {
    pub y_true: CodedColumn<'a>,
    pub y_pred: CodedColumn<'a>,
    pub groups: &'a [CodedColumn<'a>],
    pub scores: Option<&'a [Option<f64>]>,
}

/// A chunk-local code whose value is missing or not a label.
const BAD: u32 = u32::MAX;
/// The most cells of a chunk's dense count array (their count is the
/// product of the chunk's distinct values per column, and of the bins).
const DENSE_CELLS: usize = 1 << 20;

impl std::fmt::Debug for CountsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountsBuilder")
            .field("columns", &self.columns)
            .field("cells", &self.cells.len())
            .finish_non_exhaustive()
    }
}

impl CountsBuilder {
    /// A builder over the named group columns; see [`AuditCounts::new`].
    pub fn new(
        columns: Vec<String>,
        labels: Option<LabelSet>,
        bins: Option<ScoreBins>,
    ) -> Result<Self> {
        // Same checks as the counts it builds.
        AuditCounts::new(columns.clone(), labels.clone(), bins)?;
        let mut interned = Interner::default();
        if let Some(l) = &labels {
            for n in l.names() {
                interned.code(n);
            }
        }
        Ok(Self {
            levels: columns.iter().map(|_| Interner::default()).collect(),
            key: Vec::with_capacity(columns.len()),
            columns,
            declared: labels,
            edges: bins.map(|b| b.calibration_edges()).unwrap_or_default(),
            bins,
            labels: interned,
            combos: FxMap::default(),
            combo_codes: Vec::new(),
            cells: FxMap::default(),
            index: Vec::new(),
            dense_n: Vec::new(),
            dense_sum: Vec::new(),
        })
    }

    fn label(&mut self, column: &str, value: &str, row: usize) -> Result<u32> {
        if let Some(l) = &self.declared {
            return l
                .id(value)
                .map(|id| id.get())
                .ok_or_else(|| Error::UnknownLabel {
                    column: column.into(),
                    row,
                    value: value.to_owned(),
                    labels: l.names().to_vec(),
                });
        }
        let c = self.labels.code(value);
        if self.labels.values.len() > MAX_LABELS {
            return Err(Error::TooManyLabels {
                limit: MAX_LABELS,
                examples: self.labels.values.iter().take(3).cloned().collect(),
            });
        }
        Ok(c)
    }

    /// Counts one row: its labels, group values (in column order) and, when
    /// the counts have score bins, its score (finite, in [0, 1]). `row`
    /// (0-based) names it in errors; a rejected row counts nothing.
    pub fn add_row(
        &mut self,
        y_true: &str,
        y_pred: &str,
        groups: &[&str],
        score: Option<f64>,
        row: usize,
    ) -> Result<()> {
        if groups.len() != self.columns.len() {
            return Err(Error::LengthMismatch {
                column: "groups".into(),
                expected: self.columns.len(),
                actual: groups.len(),
            });
        }
        let t = self.label("y_true", y_true, row)?;
        let p = self.label("y_pred", y_pred, row)?;
        let (cal, bin, s) = self.bin(score, row)?;
        let k = self.k();
        self.key.clear();
        for (i, g) in groups.iter().enumerate() {
            let c = self.level(i, g, k)?;
            self.key.push(c);
        }
        let combo = self.combo(k)?;
        self.add_cell(combo, t, p, cal, bin, 1, s);
        Ok(())
    }

    /// Counts a chunk of dictionary-coded rows (a table's chunk, an input's
    /// codes): the same counts as [`add_row`](Self::add_row) on each row,
    /// but values are looked up once per distinct value, not per row, and
    /// rows are counted by index arithmetic into a dense array when the
    /// chunk's cells are few. `first_row` (0-based) is the row number of the
    /// chunk's first row in errors, which name the first bad row; a chunk
    /// with a bad row counts nothing. Score sums add up per chunk, then
    /// across chunks (another order than row by row: equal up to rounding).
    pub fn add_chunk(&mut self, chunk: &CodedChunk<'_>, first_row: usize) -> Result<()> {
        let n = chunk.y_true.codes.len();
        if chunk.groups.len() != self.columns.len() {
            return Err(Error::LengthMismatch {
                column: "groups".into(),
                expected: self.columns.len(),
                actual: chunk.groups.len(),
            });
        }
        let names = self.columns.clone();
        let mut coded: Vec<(&str, CodedColumn<'_>)> =
            vec![("y_true", chunk.y_true), ("y_pred", chunk.y_pred)];
        coded.extend(
            names
                .iter()
                .map(String::as_str)
                .zip(chunk.groups.iter().copied()),
        );
        let scores = match (self.bins, chunk.scores) {
            (Some(_), Some(s)) => Some(s),
            (Some(_), None) => {
                return Err(Error::InvalidConfig {
                    setting: "score".into(),
                    why: "the counts bin scores but the chunk has none".into(),
                });
            }
            (None, _) => None,
        };
        let lengths = coded.iter().map(|(c, col)| (*c, col.codes.len()));
        for (column, actual) in lengths.chain(scores.map(|s| ("y_score", s.len()))) {
            if actual != n {
                return Err(Error::LengthMismatch {
                    column: column.into(),
                    expected: n,
                    actual,
                });
            }
        }
        if n == 0 {
            return Ok(());
        }
        for (i, (column, col)) in coded.iter().enumerate() {
            let levels = col.values.len();
            if let Some(at) = col.codes.iter().position(|&c| c as usize >= levels) {
                let (row, code) = (first_row + at, col.codes[at]);
                return Err(if i < 2 {
                    Error::LabelIdOutOfRange {
                        column: (*column).into(),
                        row,
                        id: code,
                        n_labels: levels,
                    }
                } else {
                    Error::GroupCodeOutOfRange {
                        column: (*column).into(),
                        row,
                        code,
                        n_levels: levels,
                    }
                });
            }
        }
        // Chunk codes to the builder's codes, once per distinct value.
        let mut maps: Vec<Vec<u32>> = Vec::with_capacity(coded.len());
        for (column, col) in &coded[..2] {
            let mut map = Vec::with_capacity(col.values.len());
            for v in col.values {
                map.push(match v {
                    None => BAD,
                    Some(v) => match self.label(column, v, first_row) {
                        Ok(c) => c,
                        Err(Error::UnknownLabel { .. }) => BAD,
                        Err(e) => return Err(e),
                    },
                });
            }
            maps.push(map);
        }
        let k = self.k();
        for (i, (_, col)) in coded[2..].iter().enumerate() {
            let mut map = Vec::with_capacity(col.values.len());
            for v in col.values {
                map.push(match v {
                    None => BAD,
                    Some(v) => self.level(i, v, k)?,
                });
            }
            maps.push(map);
        }
        // The first bad row, if any: a missing or unknown value, or a bad score.
        let mut first_bad = n;
        for ((_, col), map) in coded.iter().zip(&maps) {
            if map.contains(&BAD)
                && let Some(at) = col.codes[..first_bad]
                    .iter()
                    .position(|&c| map[c as usize] == BAD)
            {
                first_bad = at;
            }
        }
        if let Some(s) = scores
            && let Some(at) = s[..first_bad]
                .iter()
                .position(|v| !matches!(v, Some(v) if (0.0..=1.0).contains(v)))
        {
            first_bad = at;
        }
        if first_bad < n {
            return Err(self.row_error(&coded, scores, first_bad, first_row + first_bad));
        }
        let mut dims: Vec<usize> = coded.iter().map(|(_, col)| col.values.len()).collect();
        if let Some(b) = self.bins {
            dims.extend([b.calibration_bins, b.score_bins]);
        }
        let dense = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&cells| cells <= DENSE_CELLS.min(n.saturating_mul(4).saturating_add(4096)));
        match dense {
            Some(cells) => self.count_dense(&coded, scores, &maps, &dims, cells, k),
            None => {
                for i in 0..n {
                    let code = |c: usize| maps[c][coded[c].1.codes[i] as usize];
                    let (t, p) = (code(0), code(1));
                    self.key.clear();
                    self.key.extend((2..coded.len()).map(code));
                    let (cal, bin, s) = self.bin(scores.and_then(|s| s[i]), first_row + i)?;
                    let combo = self.combo(k)?;
                    self.add_cell(combo, t, p, cal, bin, 1, s);
                }
                Ok(())
            }
        }
    }

    /// [`add_chunk`](Self::add_chunk)'s fast path for a chunk of checked
    /// rows: a dense index per row (chunk codes in mixed radix over `dims`,
    /// then the bins), counts by index, then one cell per non-empty index.
    fn count_dense(
        &mut self,
        coded: &[(&str, CodedColumn<'_>)],
        scores: Option<&[Option<f64>]>,
        maps: &[Vec<u32>],
        dims: &[usize],
        cells: usize,
        k: usize,
    ) -> Result<()> {
        let mut index = std::mem::take(&mut self.index);
        index.clear();
        index.extend_from_slice(coded[0].1.codes);
        // cells <= DENSE_CELLS: every partial index fits in u32.
        for ((_, col), &d) in coded[1..].iter().zip(&dims[1..]) {
            for (x, &c) in index.iter_mut().zip(col.codes) {
                *x = *x * d as u32 + c;
            }
        }
        let mut dense_n = std::mem::take(&mut self.dense_n);
        let mut dense_sum = std::mem::take(&mut self.dense_sum);
        dense_n.clear();
        dense_n.resize(cells, 0);
        dense_sum.clear();
        if let (Some(b), Some(scores)) = (self.bins, scores) {
            let (c, sb) = (b.calibration_bins as u32, b.score_bins as u32);
            for (x, s) in index.iter_mut().zip(scores) {
                // Checked by add_chunk: present and in [0, 1].
                let s = s.unwrap_or_default();
                *x = (*x * c + calibration_bin(s, &self.edges)) * sb + b.score_bin(s);
            }
            dense_sum.resize(cells, 0.0);
            for (&x, s) in index.iter().zip(scores) {
                dense_sum[x as usize] += s.unwrap_or_default();
            }
        }
        for &x in &index {
            dense_n[x as usize] += 1;
        }
        let bins = self.bins.map(|b| (b.calibration_bins, b.score_bins));
        let mut result = Ok(());
        let mut local = vec![0usize; coded.len()];
        for (cell, &count) in dense_n.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let mut rest = cell;
            let (mut cal, mut bin) = (0, 0);
            if let Some((c, sb)) = bins {
                bin = (rest % sb) as u32;
                rest /= sb;
                cal = (rest % c) as u32;
                rest /= c;
            }
            for (l, &d) in local.iter_mut().zip(&dims[..coded.len()]).rev() {
                *l = rest % d;
                rest /= d;
            }
            self.key.clear();
            self.key.extend((2..coded.len()).map(|c| maps[c][local[c]]));
            let combo = match self.combo(k) {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let sum = dense_sum.get(cell).copied().unwrap_or_default();
            self.add_cell(
                combo,
                maps[0][local[0]],
                maps[1][local[1]],
                cal,
                bin,
                count,
                sum,
            );
        }
        self.index = index;
        self.dense_n = dense_n;
        self.dense_sum = dense_sum;
        result
    }

    /// The error of row `i` of a chunk (its file row `row`), checking its
    /// values in column order, then its score.
    fn row_error(
        &mut self,
        coded: &[(&str, CodedColumn<'_>)],
        scores: Option<&[Option<f64>]>,
        i: usize,
        row: usize,
    ) -> Error {
        for (c, (column, col)) in coded.iter().enumerate() {
            match col.values[col.codes[i] as usize] {
                None => {
                    return Error::MissingValue {
                        column: (*column).into(),
                        row,
                    };
                }
                Some(v) if c < 2 => {
                    if let Err(e) = self.label(column, v, row) {
                        return e;
                    }
                }
                Some(_) => {}
            }
        }
        match scores.map(|s| self.bin(s[i], row)) {
            Some(Err(e)) => e,
            _ => Error::InvalidCounts {
                row,
                why: "a row add_chunk found bad is not".into(),
            },
        }
    }

    /// The number of labels the cells' matrices are sized for.
    fn k(&self) -> usize {
        self.declared
            .as_ref()
            .map_or(self.labels.values.len(), LabelSet::len)
            .max(2)
    }

    /// A score's calibration bin, score bin and the score itself (zeros
    /// without score bins); a missing, non-finite or out-of-range score is
    /// an error naming `row`.
    fn bin(&self, score: Option<f64>, row: usize) -> Result<(u32, u32, f64)> {
        match (self.bins, score) {
            (Some(b), Some(s)) => {
                if !s.is_finite() {
                    return Err(Error::NonFiniteScore {
                        column: "y_score".into(),
                        row,
                        value: s,
                    });
                }
                if !(0.0..=1.0).contains(&s) {
                    return Err(Error::ScoreOutOfRange {
                        column: "y_score".into(),
                        row,
                        value: s,
                    });
                }
                Ok((calibration_bin(s, &self.edges), b.score_bin(s), s))
            }
            (Some(_), None) => Err(Error::MissingValue {
                column: "y_score".into(),
                row,
            }),
            (None, _) => Ok((0, 0, 0.0)),
        }
    }

    /// The builder's code of value `g` of group column `i`; too many levels
    /// for matrices of `k` labels is an error.
    fn level(&mut self, i: usize, g: &str, k: usize) -> Result<u32> {
        let level = &mut self.levels[i];
        let c = level.code(g);
        if level.values.len().saturating_mul(k * k) > MAX_GROUP_CELLS {
            return Err(Error::TooManyGroups {
                column: self.columns[i].clone(),
                levels: level.values.len(),
                labels: k,
                limit: MAX_GROUP_CELLS,
            });
        }
        Ok(c)
    }

    /// The combination of group codes in `self.key`.
    fn combo(&mut self, k: usize) -> Result<u32> {
        if let Some(&c) = self.combos.get(self.key.as_slice()) {
            return Ok(c);
        }
        let c = self.combo_codes.len() as u32;
        if (c as usize + 1).saturating_mul(k * k) > MAX_GROUP_CELLS {
            return Err(Error::TooManyGroups {
                column: self.columns.join("+"),
                levels: c as usize + 1,
                labels: k,
                limit: MAX_GROUP_CELLS,
            });
        }
        self.combos.insert(self.key.clone(), c);
        self.combo_codes.push(self.key.clone());
        Ok(c)
    }

    /// Adds `n` rows with score sum `sum` to a cell.
    #[allow(clippy::too_many_arguments)]
    fn add_cell(&mut self, combo: u32, t: u32, p: u32, cal: u32, bin: u32, n: u64, sum: f64) {
        let packed = (u128::from(combo) << 96)
            | (u128::from(t) << 80)
            | (u128::from(p) << 64)
            | (u128::from(cal) << 32)
            | u128::from(bin);
        let e = self.cells.entry(packed).or_default();
        e.n += n;
        e.score_sum += sum;
    }

    /// Rows counted so far.
    pub fn rows(&self) -> u64 {
        self.cells.values().map(|v| v.n).sum()
    }

    /// The counts (no rows is an error: nothing to audit).
    pub fn finish(self) -> Result<AuditCounts> {
        let mut counts = AuditCounts::new(self.columns, self.declared, self.bins)?;
        if self.cells.is_empty() {
            return Err(Error::Empty {
                what: "audit".into(),
            });
        }
        let label_name = |id: u128| -> String {
            match &counts.labels {
                Some(l) => l.names()[id as usize].clone(),
                None => self.labels.values[id as usize].clone(),
            }
        };
        let mut cells = BTreeMap::new();
        for (packed, v) in self.cells {
            let combo = (packed >> 96) as usize;
            let key = CellKey {
                groups: self.combo_codes[combo]
                    .iter()
                    .zip(&self.levels)
                    .map(|(&c, l)| l.values[c as usize].clone())
                    .collect(),
                y_true: label_name((packed >> 80) & 0xffff),
                y_pred: label_name((packed >> 64) & 0xffff),
                calibration_bin: (packed >> 32) as u32,
                score_bin: packed as u32,
            };
            cells.insert(key, v);
        }
        counts.cells = cells;
        if counts.bins.is_some() {
            let n = counts.label_set()?.len();
            if n != 2 {
                return Err(Error::ScoresNeedBinary { n_labels: n });
            }
        }
        Ok(counts)
    }
}

/// SQL dialects of [`counts_sql`]: they differ in how identifiers are
/// quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlDialect {
    /// Standard double quotes: Trino, DuckDB, PostgreSQL, SQLite.
    Ansi,
    /// Backticks: Spark SQL, BigQuery.
    Backtick,
}

/// The columns of a predictions table that [`counts_sql`] reads (and that
/// valor-spark counts).
#[derive(Clone, Debug)]
pub struct SqlColumns<'a> {
    pub y_true: &'a str,
    pub y_pred: &'a str,
    pub groups: &'a [String],
    /// Score column and its binning.
    pub score: Option<(&'a str, ScoreBins)>,
}

/// The GROUP BY that counts a predictions table into the cells of
/// [`AuditCounts`]: its result, saved as CSV, is what `valor audit
/// --counts` reads (columns: the group columns, `y_true`, `y_pred`, with
/// scores `calibration_bin`, `score_bin`, then `n` and with scores
/// `score_sum`). Labels and group values are cast to strings; rows with a
/// NULL in a used column are left out by the `WHERE` (Valor refuses them
/// when it reads rows itself). The bins are computed as Valor computes them
/// (scikit-learn's calibration edges as exact double literals).
pub fn counts_sql(table: &str, c: &SqlColumns<'_>, dialect: SqlDialect) -> String {
    let q = |name: &str| match dialect {
        SqlDialect::Ansi => format!("\"{}\"", name.replace('"', "\"\"")),
        SqlDialect::Backtick => format!("`{}`", name.replace('`', "``")),
    };
    let text = "VARCHAR";
    let text = match dialect {
        SqlDialect::Ansi => text,
        SqlDialect::Backtick => "STRING",
    };
    let mut select = Vec::new();
    let mut keys = Vec::new();
    let mut not_null = Vec::new();
    for g in c.groups {
        select.push(format!("  CAST({} AS {text}) AS {}", q(g), q(g)));
        keys.push(q(g));
        not_null.push(format!("{} IS NOT NULL", q(g)));
    }
    for (col, alias) in [(c.y_true, "y_true"), (c.y_pred, "y_pred")] {
        select.push(format!("  CAST({} AS {text}) AS {}", q(col), q(alias)));
        keys.push(q(alias));
        not_null.push(format!("{} IS NOT NULL", q(col)));
    }
    if let Some((score, bins)) = c.score {
        let s = q(score);
        let mut case = String::from("  CASE");
        for (i, e) in bins.calibration_edges().iter().enumerate() {
            case.push_str(&format!(" WHEN {s} <= {e:e} THEN {i}"));
        }
        let last = bins.calibration_bins - 1;
        if last == 0 {
            select.push(format!("  0 AS {}", q("calibration_bin")));
        } else {
            case.push_str(&format!(" ELSE {last} END AS {}", q("calibration_bin")));
            select.push(case);
        }
        select.push(format!(
            "  CASE WHEN {s} >= 1 THEN {} ELSE CAST(FLOOR({s} * {}) AS BIGINT) END AS {}",
            bins.score_bins - 1,
            bins.score_bins,
            q("score_bin")
        ));
        keys.push(q("calibration_bin"));
        keys.push(q("score_bin"));
        not_null.push(format!("{s} IS NOT NULL"));
    }
    select.push(format!("  COUNT(*) AS {}", q("n")));
    if let Some((score, _)) = c.score {
        select.push(format!("  SUM({}) AS {}", q(score), q("score_sum")));
    }
    let table = table.split('.').map(q).collect::<Vec<_>>().join(".");
    // Ordinals, not aliases: Trino groups by neither an alias nor an
    // expression's name, and every engine here takes positions.
    let positions = (1..=keys.len())
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT\n{}\nFROM {table}\nWHERE {}\nGROUP BY {positions}\nORDER BY {positions}\n",
        select.join(",\n"),
        not_null.join(" AND "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_and_calibration_bins_follow_their_rules() {
        let b = ScoreBins::new(1000, 10).unwrap();
        assert_eq!(b.score_bin(0.0), 0);
        assert_eq!(b.score_bin(0.0005), 0);
        assert_eq!(b.score_bin(0.001), 1);
        assert_eq!(b.score_bin(1.0), 999);
        let e = b.calibration_edges();
        // scikit-learn: a score on an inner edge falls in the lower bin
        assert_eq!(calibration_bin(0.1, &e), 0);
        assert_eq!(calibration_bin(0.5, &e), 4);
        assert_eq!(calibration_bin(0.5000001, &e), 5);
        assert_eq!(calibration_bin(1.0, &e), 9);
        assert!(ScoreBins::new(0, 10).is_err());
    }

    #[test]
    fn builder_checks_rows_and_names_them() {
        let labels = LabelSet::new(&["0", "1"]).unwrap();
        let bins = ScoreBins::new(10, 10).unwrap();
        let mut b = CountsBuilder::new(vec!["sex".into()], Some(labels), Some(bins)).unwrap();
        b.add_row("1", "0", &["f"], Some(0.3), 0).unwrap();
        assert!(matches!(
            b.add_row("2", "0", &["f"], Some(0.3), 1),
            Err(Error::UnknownLabel { row: 1, .. })
        ));
        assert!(matches!(
            b.add_row("1", "0", &["f"], Some(1.5), 2),
            Err(Error::ScoreOutOfRange { row: 2, .. })
        ));
        assert!(matches!(
            b.add_row("1", "0", &["f"], Some(f64::NAN), 3),
            Err(Error::NonFiniteScore { row: 3, .. })
        ));
        assert_eq!(b.rows(), 1);
        let c = b.finish().unwrap();
        assert_eq!(c.rows(), 1);
        let (k, v) = c.cells().next().unwrap();
        assert_eq!((k.calibration_bin, k.score_bin, v.n), (2, 3, 1));
    }

    #[test]
    fn sql_names_every_cell_column() {
        let groups = vec!["sex".to_string(), "a\"b".to_string()];
        let sql = counts_sql(
            "db.preds",
            &SqlColumns {
                y_true: "label",
                y_pred: "pred",
                groups: &groups,
                score: Some(("p", ScoreBins::new(100, 2).unwrap())),
            },
            SqlDialect::Ansi,
        );
        assert!(sql.contains("FROM \"db\".\"preds\""), "{sql}");
        assert!(
            sql.contains("CAST(\"a\"\"b\" AS VARCHAR) AS \"a\"\"b\""),
            "{sql}"
        );
        assert!(
            sql.contains("WHEN \"p\" <= 5e-1 THEN 0 ELSE 1 END"),
            "{sql}"
        );
        assert!(sql.contains("CAST(FLOOR(\"p\" * 100) AS BIGINT)"), "{sql}");
        let spark = counts_sql(
            "preds",
            &SqlColumns {
                y_true: "label",
                y_pred: "pred",
                groups: &groups,
                score: None,
            },
            SqlDialect::Backtick,
        );
        assert!(
            spark.contains("CAST(`label` AS STRING) AS `y_true`"),
            "{spark}"
        );
        assert!(!spark.contains("score_bin"), "{spark}");
        assert!(
            spark.contains("GROUP BY 1, 2, 3, 4\nORDER BY 1, 2, 3, 4\n"),
            "{spark}"
        );
    }
}
