//! A dataset whose train, validation and test splits come as three files
//! (`valor train --train A --valid B --test C`), honoured row for row: every
//! row of the training file trains, every row of the validation file
//! validates, every row of the test file tests.
//!
//! The three files are read with the same [`DatasetSpec`] (its `path` is
//! ignored) and must have the same columns (in any order). Each file is
//! validated on its own, so an error names that file, its row and its
//! column. Label names, when the spec does not list them, are inferred from
//! the labels of all three files together (so a label missing from one file
//! keeps its id), and group values are encoded over all three. The combined
//! [`Dataset`] holds the training rows, then the validation rows, then the
//! test rows, each in file order; row ids are the id column's or each row's
//! 1-based row number in its own file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::{
    Dataset, GroupColumn, Warning, dataset_from_table, dataset_warnings, file_sha256,
    label_names_from, load_table,
};
use crate::error::{Error, Result};
use crate::spec::DatasetSpec;
use crate::split::Splits;
use crate::strs::Strs;

/// The three files of explicit splits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFiles {
    pub train: PathBuf,
    pub valid: PathBuf,
    pub test: PathBuf,
}

impl SplitFiles {
    /// Each split's name (`train`, `valid`, `test`) and file, in that order.
    pub fn named(&self) -> [(&'static str, &Path); 3] {
        [
            ("train", &self.train),
            ("valid", &self.valid),
            ("test", &self.test),
        ]
    }
}

/// One split file as read: its path, SHA-256 and number of rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFileRecord {
    pub path: PathBuf,
    pub sha256: String,
    pub rows: usize,
}

/// The dataset of three split files.
#[derive(Debug, Clone)]
pub struct SplitFilesData {
    /// Training rows, then validation rows, then test rows. Its `source` is
    /// the training file; its `sha256` is the SHA-256 of the text
    /// `train <sha256>\nvalid <sha256>\ntest <sha256>\n` of the three files'
    /// own SHA-256s, so it changes when any of them does.
    pub data: Dataset,
    /// The row indices (into `data`) of each file's rows.
    pub splits: Splits,
    /// The files in the order train, valid, test.
    pub files: [SplitFileRecord; 3],
    /// Warnings about the combined data (small groups, unused labels).
    pub warnings: Vec<Warning>,
}

/// Reads the three split files with `spec`'s columns (see the module
/// documentation).
///
/// Errors: a file that cannot be read or has no rows; two splits naming the
/// same file (their rows would be in both); a column that one file has and
/// another lacks (naming that file and the column); any value error of a
/// file (naming that file, row and column).
pub fn load_split_files(spec: &DatasetSpec, files: &SplitFiles) -> Result<SplitFilesData> {
    let named = files.named();
    for (i, (a, pa)) in named.iter().enumerate() {
        for (b, pb) in &named[i + 1..] {
            if same_file(pa, pb) {
                return Err(Error::SplitFiles {
                    path: pb.to_path_buf(),
                    message: format!(
                        "the {a} and {b} splits are the same file; give each split its own file (a row in two splits would be tested on what it trained or selected on)"
                    ),
                });
            }
        }
    }
    let tables = named
        .iter()
        .map(|(_, path)| {
            load_table(&DatasetSpec {
                path: path.to_path_buf(),
                ..spec.clone()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Same columns everywhere: each file's against the training file's.
    let reference = tables[0].column_names();
    for ((split, path), table) in named.iter().zip(&tables).skip(1) {
        let columns = table.column_names();
        if let Some(missing) = reference.iter().find(|c| !columns.contains(c)) {
            return Err(Error::SplitFiles {
                path: path.to_path_buf(),
                message: format!(
                    "the {split} file has no column `{missing}`, which the training file {} has; the three split files need the same columns (this one has: {})",
                    files.train.display(),
                    columns.join(", ")
                ),
            });
        }
        if let Some(extra) = columns.iter().find(|c| !reference.contains(c)) {
            return Err(Error::SplitFiles {
                path: path.to_path_buf(),
                message: format!(
                    "the {split} file has a column `{extra}` that the training file {} lacks; the three split files need the same columns (the training file has: {})",
                    files.train.display(),
                    reference.join(", ")
                ),
            });
        }
    }
    // One label space for all three: inferred from every file's labels.
    let mut file_spec = spec.clone();
    if file_spec.labels.is_none() && tables.iter().all(|t| t.require(&spec.label, None).is_ok()) {
        let raw = tables
            .iter()
            .map(|t| t.strings(&spec.label))
            .collect::<Result<Vec<_>>>()?;
        let names = label_names_from(
            raw.iter()
                .flatten()
                .flatten()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty()),
        );
        file_spec.labels = Some(names);
    }
    let mut parts = Vec::with_capacity(3);
    for ((_, path), table) in named.iter().zip(&tables) {
        let (part, _) = dataset_from_table(
            &DatasetSpec {
                path: path.to_path_buf(),
                ..file_spec.clone()
            },
            table,
            String::new(),
        )?;
        parts.push(part);
    }
    drop(tables);
    let records = named
        .iter()
        .zip(&parts)
        .map(|((_, path), part)| {
            Ok(SplitFileRecord {
                path: path.to_path_buf(),
                sha256: file_sha256(path)?,
                rows: part.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut hasher = Sha256::new();
    for ((split, _), record) in named.iter().zip(&records) {
        hasher.update(format!("{split} {}\n", record.sha256).as_bytes());
    }
    let sha256 = format!("{:x}", hasher.finalize());
    let (data, splits) = concatenate(parts, &files.train, sha256);
    let warnings = dataset_warnings(spec, &data.groups, &data.labels, &data.label_names);
    let files: [SplitFileRecord; 3] = records.try_into().expect("three split files");
    Ok(SplitFilesData {
        data,
        splits,
        files,
        warnings,
    })
}

/// The three parts (same label names, same group columns) as one dataset,
/// with each part's row indices. Group values are re-encoded over all rows.
fn concatenate(parts: Vec<Dataset>, source: &Path, sha256: String) -> (Dataset, Splits) {
    let mut ranges = Vec::with_capacity(parts.len());
    let mut start = 0;
    for p in &parts {
        ranges.push((start..start + p.len()).collect::<Vec<usize>>());
        start += p.len();
    }
    let groups = parts[0]
        .groups
        .iter()
        .enumerate()
        .map(|(g, column)| {
            let raw: Vec<String> = parts
                .iter()
                .flat_map(|p| (0..p.len()).map(move |i| p.groups[g].value(i).to_string()))
                .collect();
            GroupColumn::from_values(&column.name, &raw)
        })
        .collect();
    let label_names = parts[0].label_names.clone();
    let with_weights = parts[0].weights.is_some();
    let with_twins = parts[0].twins.is_some();
    let with_reference = parts[0].reference_labels.is_some();
    let mut data = Dataset {
        source: source.to_path_buf(),
        sha256,
        texts: Strs::new(),
        label_names,
        labels: Vec::with_capacity(start),
        groups,
        ids: Strs::new(),
        weights: with_weights.then(Vec::new),
        twins: with_twins.then(Strs::new),
        reference_labels: with_reference.then(Vec::new),
    };
    for p in parts {
        data.texts.append(p.texts);
        data.labels.extend(p.labels);
        data.ids.append(p.ids);
        if let (Some(all), Some(w)) = (&mut data.weights, p.weights) {
            all.extend(w);
        }
        if let (Some(all), Some(t)) = (&mut data.twins, p.twins) {
            all.append(t);
        }
        if let (Some(all), Some(r)) = (&mut data.reference_labels, p.reference_labels) {
            all.extend(r);
        }
    }
    let mut ranges = ranges.into_iter();
    let splits = Splits {
        train: ranges.next().unwrap_or_default(),
        valid: ranges.next().unwrap_or_default(),
        test: ranges.next().unwrap_or_default(),
    };
    (data, splits)
}

/// Whether two paths name the same file (through links or `..`); paths
/// that cannot be resolved compare as written.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SpecArgs;

    fn spec(dir: &Path, labels: Option<Vec<String>>) -> DatasetSpec {
        DatasetSpec::from_args(
            SpecArgs {
                path: Some(dir.join("unused.csv")),
                text_col: Some("text".into()),
                label_col: Some("label".into()),
                labels,
                groups: vec!["g".into()],
                id_col: Some("id".into()),
                min_group_size: Some(1),
                ..SpecArgs::default()
            },
            "test",
        )
        .unwrap()
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn files(dir: &Path, train: &str, valid: &str, test: &str) -> SplitFiles {
        SplitFiles {
            train: write(dir, "train.csv", train),
            valid: write(dir, "valid.csv", valid),
            test: write(dir, "test.csv", test),
        }
    }

    #[test]
    fn rows_stay_in_their_files_split_with_one_label_and_group_space() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(
            dir.path(),
            "id,text,label,g\nt1,aa,x,m\nt2,bb,y,f\nt3,cc,x,m\n",
            "g,label,text,id\nm,y,dd,v1\n",
            "id,text,label,g\ne1,ee,z,n\ne2,ff,x,f\n",
        );
        let loaded = load_split_files(&spec(dir.path(), None), &f).unwrap();
        let d = &loaded.data;
        assert_eq!(d.label_names, ["x", "y", "z"]);
        assert_eq!(d.ids, ["t1", "t2", "t3", "v1", "e1", "e2"]);
        assert_eq!(d.texts, ["aa", "bb", "cc", "dd", "ee", "ff"]);
        assert_eq!(
            d.labels.iter().map(|l| l.0).collect::<Vec<_>>(),
            [0, 1, 0, 1, 2, 0]
        );
        assert_eq!(d.groups[0].values, ["f", "m", "n"]);
        assert_eq!(
            (0..6).map(|i| d.groups[0].value(i)).collect::<Vec<_>>(),
            ["m", "f", "m", "m", "n", "f"]
        );
        assert_eq!(loaded.splits.train, [0, 1, 2]);
        assert_eq!(loaded.splits.valid, [3]);
        assert_eq!(loaded.splits.test, [4, 5]);
        assert_eq!(
            loaded.files.iter().map(|r| r.rows).collect::<Vec<_>>(),
            [3, 1, 2]
        );
        assert_eq!(loaded.files[2].sha256, file_sha256(&f.test).unwrap());
        assert_eq!(d.source, f.train);
        // The combined hash follows every file.
        std::fs::write(&f.valid, "g,label,text,id\nm,y,dz,v1\n").unwrap();
        let again = load_split_files(&spec(dir.path(), None), &f).unwrap();
        assert_ne!(again.data.sha256, d.sha256);
        assert_eq!(again.files[0].sha256, loaded.files[0].sha256);
    }

    #[test]
    fn a_column_one_file_lacks_or_adds_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(
            dir.path(),
            "id,text,label,g\nt1,aa,x,m\n",
            "id,text,label\nv1,dd,y\n",
            "id,text,label,g\ne1,ee,x,f\n",
        );
        let err = load_split_files(&spec(dir.path(), None), &f)
            .unwrap_err()
            .to_string();
        assert!(err.contains("valid.csv"), "{err}");
        assert!(err.contains("no column `g`"), "{err}");
        let f = files(
            dir.path(),
            "id,text,label,g\nt1,aa,x,m\n",
            "id,text,label,g\nv1,dd,y,f\n",
            "id,text,label,g,extra\ne1,ee,x,f,1\n",
        );
        let err = load_split_files(&spec(dir.path(), None), &f)
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.csv"), "{err}");
        assert!(err.contains("`extra`"), "{err}");
    }

    #[test]
    fn value_errors_name_their_own_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let labels = Some(vec!["x".to_string(), "y".to_string()]);
        let f = files(
            dir.path(),
            "id,text,label,g\nt1,aa,x,m\n",
            "id,text,label,g\nv1,dd,y,f\n",
            "id,text,label,g\ne1,ee,x,f\ne2,ff,w,m\n",
        );
        let err = load_split_files(&spec(dir.path(), labels), &f)
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.csv: row 2, column `label`"), "{err}");
        let f = files(
            dir.path(),
            "id,text,label,g\nt1,,x,m\n",
            "id,text,label,g\nv1,dd,y,f\n",
            "id,text,label,g\ne1,ee,x,f\n",
        );
        let err = load_split_files(&spec(dir.path(), None), &f)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.csv: row 1, column `text`"), "{err}");
    }

    #[test]
    fn the_same_file_for_two_splits_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(
            dir.path(),
            "id,text,label,g\nt1,aa,x,m\n",
            "id,text,label,g\nv1,dd,y,f\n",
            "id,text,label,g\ne1,ee,x,f\n",
        );
        let same = SplitFiles {
            test: dir.path().join(".").join("valid.csv"),
            ..f
        };
        let err = load_split_files(&spec(dir.path(), None), &same)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("valid and test splits are the same file"),
            "{err}"
        );
    }
}
