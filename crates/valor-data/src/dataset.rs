//! A validated, in-memory dataset: texts, label ids, group ids, and the
//! optional ids, weights, counterfactual twins and reference labels.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spec::{DatasetSpec, TextSource};
use crate::strs::Strs;
use crate::table::{Format, Table, read_table};

/// [`LabelId`]: the position of a label's name in [`Dataset::label_names`];
/// [`GroupId`]: the position of a group's value in [`GroupColumn::values`].
/// Both live in valor-base, shared with valor-fair.
pub use valor_base::{GroupId, LabelId};

/// One sensitive attribute: its name, its distinct values (sorted), and each
/// row's value as an index into them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupColumn {
    pub name: String,
    pub values: Vec<String>,
    pub ids: Vec<GroupId>,
}

impl GroupColumn {
    /// Encodes string values (sorted distinct values become the ids).
    pub fn from_values(name: &str, raw: &[String]) -> Self {
        // Distinct values from borrowed strings: cloning every row's value
        // first cost a million allocations on a million-row file.
        let mut values: Vec<String> = raw
            .iter()
            .map(String::as_str)
            .collect::<HashSet<&str>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        values.sort_unstable();
        let index: HashMap<&str, u32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i as u32))
            .collect();
        let ids = raw.iter().map(|v| GroupId(index[v.as_str()])).collect();
        Self {
            name: name.to_string(),
            values,
            ids,
        }
    }
    /// The value of row `i`.
    pub fn value(&self, i: usize) -> &str {
        &self.values[self.ids[i].0 as usize]
    }
    /// Rows per group value.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.values.len()];
        for g in &self.ids {
            c[g.0 as usize] += 1;
        }
        c
    }
}

/// Something worth telling the user that does not stop the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Warning {
    /// A group has fewer rows than the spec's `min_group_size`: its metrics
    /// will be noisy.
    SmallGroup {
        column: String,
        value: String,
        rows: usize,
        min: usize,
    },
    /// A label never occurs in the data.
    UnusedLabel { label: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SmallGroup {
                column,
                value,
                rows,
                min,
            } => write!(
                f,
                "group {column}={value} has only {rows} rows (fewer than {min}); its metrics will be noisy"
            ),
            Self::UnusedLabel { label } => write!(f, "label `{label}` never occurs in the data"),
        }
    }
}

/// A loaded, validated dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// The file it was read from.
    pub source: PathBuf,
    /// SHA-256 of the file's bytes, hex: the provenance of every artifact.
    pub sha256: String,
    pub texts: Strs,
    pub label_names: Vec<String>,
    pub labels: Vec<LabelId>,
    pub groups: Vec<GroupColumn>,
    /// Row ids (the id column, or the 1-based row number).
    pub ids: Strs,
    pub weights: Option<Vec<f64>>,
    /// Counterfactual twins: the same text with the group swapped.
    pub twins: Option<Strs>,
    /// A second label column in the same label space (e.g. the fair label).
    pub reference_labels: Option<Vec<LabelId>>,
}

impl Dataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    /// Whether there are no rows (never true for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
    /// Number of label classes.
    pub fn num_labels(&self) -> usize {
        self.label_names.len()
    }
    /// The rows at `indices`, in that order (used for splits).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let pick = |v: &Strs| v.pick(indices);
        Dataset {
            source: self.source.clone(),
            sha256: self.sha256.clone(),
            texts: pick(&self.texts),
            label_names: self.label_names.clone(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            groups: self
                .groups
                .iter()
                .map(|g| GroupColumn {
                    name: g.name.clone(),
                    values: g.values.clone(),
                    ids: indices.iter().map(|&i| g.ids[i]).collect(),
                })
                .collect(),
            ids: pick(&self.ids),
            weights: self
                .weights
                .as_ref()
                .map(|w| indices.iter().map(|&i| w[i]).collect()),
            twins: self.twins.as_ref().map(pick),
            reference_labels: self
                .reference_labels
                .as_ref()
                .map(|r| indices.iter().map(|&i| r[i]).collect()),
        }
    }
    /// The group column called `name`.
    pub fn group(&self, name: &str) -> Option<&GroupColumn> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// Loads and validates the dataset a spec describes, with the file's
/// SHA-256. Returns the warnings beside it (small groups, unused labels).
pub fn load_dataset(spec: &DatasetSpec) -> Result<(Dataset, Vec<Warning>)> {
    let (mut data, warnings) = read_dataset(spec)?;
    data.sha256 = file_sha256(&spec.path)?;
    Ok((data, warnings))
}

/// Reads and validates the dataset a spec describes, without hashing the
/// file (its `sha256` is empty). A plain CSV/TSV file is read straight
/// into the dataset (`csv_dataset`); every other file, and every file
/// with an error, is read (again) into a polars [`Table`] and through
/// [`dataset_from_table`], which name the file, row and column of the
/// first problem.
pub fn read_dataset(spec: &DatasetSpec) -> Result<(Dataset, Vec<Warning>)> {
    let format = Format::from_path(&spec.path);
    if spec.preset.is_none()
        && let Ok(format @ (Format::Csv | Format::Tsv)) = format
    {
        let found = crate::csv_dataset::read_file(spec, format);
        if let Some(found) = found.map_err(|e| Error::io(&spec.path, e))? {
            return Ok(found);
        }
    }
    let table = load_table(spec)?;
    dataset_from_table(spec, &table, String::new())
}

/// Reads the table a spec points at (through the preset reader if any).
pub fn load_table(spec: &DatasetSpec) -> Result<Table> {
    match spec.preset {
        Some(preset) => crate::real::read_preset(preset, &spec.path),
        None => read_table(&spec.path),
    }
}

/// Hex SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Validates a table against a spec and builds the dataset.
pub fn dataset_from_table(
    spec: &DatasetSpec,
    table: &Table,
    sha256: String,
) -> Result<(Dataset, Vec<Warning>)> {
    let path = table.path().to_path_buf();
    if table.n_rows() == 0 {
        return Err(Error::NoRows { path });
    }
    // Check every named column first, so the user sees the first missing one
    // before any value error.
    let mut named: Vec<&str> = vec![spec.label.as_str()];
    match &spec.text {
        TextSource::Column(c) => named.push(c),
        TextSource::Features { columns, .. } => named.extend(columns.iter().map(String::as_str)),
    }
    named.extend(spec.groups.iter().map(String::as_str));
    named.extend(
        [&spec.id, &spec.weight, &spec.twin, &spec.reference_label]
            .into_iter()
            .flatten()
            .map(String::as_str),
    );
    for c in named {
        let hint = if spec.groups.iter().any(|g| g == c) {
            Some("pass the group column with --group")
        } else if c == spec.label {
            Some("pass the label column with --label-col")
        } else {
            None
        };
        table.require(c, hint)?;
    }

    let texts = Strs::from(build_texts(spec, table)?);

    let raw_labels = required_strings(table, &spec.label, "labels cannot be null")?;
    let label_names = match &spec.labels {
        Some(l) => l.clone(),
        None => infer_label_names(&raw_labels),
    };
    let labels = encode_labels(table, &spec.label, &raw_labels, &label_names)?;

    let mut groups = Vec::new();
    for g in &spec.groups {
        let raw = required_strings(table, g, "group values cannot be null")?;
        groups.push(GroupColumn::from_values(g, &raw));
    }

    let ids: Strs = match &spec.id {
        Some(c) => required_strings(table, c, "ids cannot be null")?.into(),
        None => (1..=table.n_rows()).map(|i| i.to_string()).collect(),
    };

    let weights = match &spec.weight {
        Some(c) => {
            let w = table.floats(c)?;
            let mut out = Vec::with_capacity(w.len());
            for (i, v) in w.into_iter().enumerate() {
                match v {
                    Some(x) if x.is_finite() && x >= 0.0 => out.push(x),
                    Some(x) => {
                        return Err(Error::BadValue {
                            path: path.clone(),
                            row: table.file_row(i),
                            column: c.clone(),
                            message: format!("weight {x} must be finite and >= 0"),
                        });
                    }
                    None => {
                        return Err(Error::Empty {
                            path: path.clone(),
                            row: table.file_row(i),
                            column: c.clone(),
                            hint: None,
                        });
                    }
                }
            }
            Some(out)
        }
        None => None,
    };

    let twins = match &spec.twin {
        Some(c) => Some(Strs::from(required_strings(
            table,
            c,
            "twin texts cannot be empty",
        )?)),
        None => None,
    };

    let reference_labels = match &spec.reference_label {
        Some(c) => {
            let raw = required_strings(table, c, "reference labels cannot be null")?;
            Some(encode_labels(table, c, &raw, &label_names)?)
        }
        None => None,
    };

    let warnings = dataset_warnings(spec, &groups, &labels, &label_names);

    Ok((
        Dataset {
            source: spec.path.clone(),
            sha256,
            texts,
            label_names,
            labels,
            groups,
            ids,
            weights,
            twins,
            reference_labels,
        },
        warnings,
    ))
}

/// The warnings of a dataset: groups smaller than the spec's minimum,
/// labels that never occur.
pub(crate) fn dataset_warnings(
    spec: &DatasetSpec,
    groups: &[GroupColumn],
    labels: &[LabelId],
    label_names: &[String],
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for g in groups {
        for (value, rows) in g.values.iter().zip(g.counts()) {
            if rows < spec.min_group_size {
                warnings.push(Warning::SmallGroup {
                    column: g.name.clone(),
                    value: value.clone(),
                    rows,
                    min: spec.min_group_size,
                });
            }
        }
    }
    let mut seen = vec![false; label_names.len()];
    for l in labels {
        seen[l.0 as usize] = true;
    }
    for (name, s) in label_names.iter().zip(seen) {
        if !s {
            warnings.push(Warning::UnusedLabel {
                label: name.clone(),
            });
        }
    }
    warnings
}

fn required_strings(table: &Table, column: &str, hint: &str) -> Result<Vec<String>> {
    table
        .strings(column)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(Error::Empty {
                path: table.path().to_path_buf(),
                row: table.file_row(i),
                column: column.to_string(),
                hint: Some(hint.to_string()),
            }),
        })
        .collect()
}

fn build_texts(spec: &DatasetSpec, table: &Table) -> Result<Vec<String>> {
    match &spec.text {
        TextSource::Column(c) => required_strings(table, c, "every row needs a text"),
        TextSource::Features { columns, template } => {
            let values: Vec<Vec<Option<String>>> = columns
                .iter()
                .map(|c| table.strings(c))
                .collect::<Result<_>>()?;
            Ok((0..table.n_rows())
                .map(|i| serialize_row(columns, &values, i, template.as_deref()))
                .collect())
        }
    }
}

/// Serialises one tabular row to text: `"col: value; col: value"` (missing
/// values are written as `unknown`), or a template with `{col}` placeholders.
fn serialize_row(
    columns: &[String],
    values: &[Vec<Option<String>>],
    i: usize,
    template: Option<&str>,
) -> String {
    let value = |j: usize| {
        values[j][i]
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
    };
    match template {
        None => columns
            .iter()
            .enumerate()
            .map(|(j, c)| format!("{c}: {}", value(j)))
            .collect::<Vec<_>>()
            .join("; "),
        Some(t) => {
            let mut out = t.to_string();
            for (j, c) in columns.iter().enumerate() {
                out = out.replace(&format!("{{{c}}}"), value(j));
            }
            out
        }
    }
}

/// Distinct labels, sorted; numerically when every label is an integer.
pub fn infer_label_names(raw: &[String]) -> Vec<String> {
    label_names_from(raw.iter().map(|s| s.trim()))
}

/// [`infer_label_names`] of the (trimmed) labels `raw` yields.
pub(crate) fn label_names_from<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<String> {
    // Hashed per row, sorted once: a million rows have a handful of labels.
    let distinct: HashSet<&str> = raw.collect();
    let mut names: Vec<String> = distinct.into_iter().map(str::to_string).collect();
    names.sort_unstable();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().expect("checked"));
    }
    names
}

fn encode_labels(
    table: &Table,
    column: &str,
    raw: &[String],
    names: &[String],
) -> Result<Vec<LabelId>> {
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            index
                .get(v.trim())
                .map(|&id| LabelId(id))
                .ok_or_else(|| Error::UnknownLabel {
                    path: table.path().to_path_buf(),
                    row: table.file_row(i),
                    column: column.to_string(),
                    value: v.clone(),
                    known: names.to_vec(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DatasetSpec, SpecArgs};

    fn load(csv: &str, args: SpecArgs) -> Result<(Dataset, Vec<Warning>)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, csv).unwrap();
        let spec = DatasetSpec::from_args(
            SpecArgs {
                path: Some(p),
                ..args
            },
            "test",
        )?;
        load_dataset(&spec)
    }

    fn args(text: &str, label: &str, groups: &[&str]) -> SpecArgs {
        SpecArgs {
            text_col: Some(text.into()),
            label_col: Some(label.into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            min_group_size: Some(2),
            ..Default::default()
        }
    }

    fn check_err(csv: &str, a: SpecArgs, want: &str) {
        let e = load(csv, a).unwrap_err().to_string();
        assert!(e.contains(want), "{e} !~ {want}");
    }

    #[test]
    fn loads_and_encodes() {
        let (d, w) = load(
            "t,y,g\nhello,b,m\nworld,a,f\nagain,b,f\n",
            args("t", "y", &["g"]),
        )
        .unwrap();
        assert_eq!(d.label_names, vec!["a", "b"]);
        assert_eq!(d.labels, vec![LabelId(1), LabelId(0), LabelId(1)]);
        assert_eq!(d.groups[0].values, vec!["f", "m"]);
        assert_eq!(d.ids, vec!["1", "2", "3"]);
        assert_eq!(w.len(), 1, "{w:?}"); // group m has 1 row < 2
        assert!(w[0].to_string().contains("g=m has only 1 rows"));
    }

    #[test]
    fn numeric_labels_sort_numerically() {
        let (d, _) = load("t,y\na,10\nb,2\nc,1\n", args("t", "y", &[])).unwrap();
        assert_eq!(d.label_names, vec!["1", "2", "10"]);
    }

    #[test]
    fn bad_inputs_name_file_row_and_column() {
        check_err(
            "t,y\na,1\n",
            args("t", "y", &["sex"]),
            "column `sex` not found; columns are: t, y; pass the group column with --group",
        );
        check_err(
            "t,y\na,1\n,0\n",
            args("t", "y", &[]),
            "row 2, column `t`: empty value",
        );
        check_err(
            "t,y,g\na,1,\n",
            args("t", "y", &["g"]),
            "row 1, column `g`: empty value",
        );
        check_err(
            "t,y\na,1\nb,7\n",
            SpecArgs {
                labels: Some(vec!["0".into(), "1".into()]),
                ..args("t", "y", &[])
            },
            "row 2, column `y`: unknown label `7`; known labels are: 0, 1",
        );
        check_err(
            "t,y,w\na,1,1\nb,1,-2\n",
            SpecArgs {
                weight_col: Some("w".into()),
                ..args("t", "y", &[])
            },
            "row 2, column `w`: weight -2 must be finite",
        );
        check_err("t,y\n", args("t", "y", &[]), "no data rows");
    }

    #[test]
    fn features_are_serialised() {
        let a = SpecArgs {
            features: vec!["age".into(), "job".into()],
            label_col: Some("y".into()),
            ..Default::default()
        };
        let (d, _) = load("age,job,y\n35,,1\n", a).unwrap();
        assert_eq!(&d.texts[0], "age: 35; job: unknown");
        let a = SpecArgs {
            features: vec!["age".into(), "job".into()],
            template: Some("A {age}-year-old {job}.".into()),
            label_col: Some("y".into()),
            ..Default::default()
        };
        let (d, _) = load("age,job,y\n35,nurse,1\n", a).unwrap();
        assert_eq!(&d.texts[0], "A 35-year-old nurse.");
    }
}
