//! A run's train/validation/test rows: drawn by valor-data's stratified
//! [`split`] from the configured fractions and seed, read from a split
//! column of the data file (`TrainConfig::split_column`), or given as three
//! files (`TrainConfig::split_files`), row for row, so that Valor and a
//! peer tool can be measured on identical rows.

use valor_data::{
    Dataset, SplitFileRecord, Splits, Warning, load_dataset, load_split_files, read_table, split,
};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// The values a split column may hold (case-insensitive), by split.
pub const SPLIT_VALUES: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("valid", &["valid", "validation", "val", "dev"]),
    ("test", &["test"]),
];

/// A run's data and its splits.
#[derive(Debug)]
pub struct RunData {
    /// Every row of the run (with split files: the training file's rows,
    /// then the validation file's, then the test file's).
    pub data: Dataset,
    /// Row indices into `data`, `held_out_rows` removed.
    pub splits: Splits,
    pub warnings: Vec<Warning>,
    /// With split files: each file (train, valid, test) as read.
    pub files: Option<[SplitFileRecord; 3]>,
}

/// Loads the run's data and splits it: from the three split files when the
/// configuration gives them, else the data file split by [`run_splits`].
pub fn load_run_data(config: &TrainConfig) -> Result<RunData> {
    match &config.split_files {
        Some(files) => {
            let loaded = load_split_files(&config.data, files)?;
            let mut splits = loaded.splits;
            remove_held_out(config, &mut splits);
            Ok(RunData {
                data: loaded.data,
                splits,
                warnings: loaded.warnings,
                files: Some(loaded.files),
            })
        }
        None => {
            let (data, warnings) = load_dataset(&config.data)?;
            let splits = run_splits(config, &data)?;
            Ok(RunData {
                data,
                splits,
                warnings,
                files: None,
            })
        }
    }
}

/// The splits of a run's data file: from the split column when the
/// configuration names one, else from the fractions and the split seed.
/// Rows in `config.held_out_rows` are then removed from every split.
/// (Split files are read by [`load_run_data`].)
pub fn run_splits(config: &TrainConfig, data: &Dataset) -> Result<Splits> {
    if config.split_files.is_some() {
        return Err(Error::config(
            "split_files",
            "a run with split files is loaded with load_run_data, which reads the three files",
        ));
    }
    let mut splits = match &config.split_column {
        None => split(data, &config.split)?,
        Some(column) => splits_from_column(data, column)?,
    };
    remove_held_out(config, &mut splits);
    Ok(splits)
}

/// Removes `config.held_out_rows` from every split.
fn remove_held_out(config: &TrainConfig, splits: &mut Splits) {
    if !config.held_out_rows.is_empty() {
        let held: std::collections::BTreeSet<usize> =
            config.held_out_rows.iter().copied().collect();
        for part in [&mut splits.train, &mut splits.valid, &mut splits.test] {
            part.retain(|i| !held.contains(i));
        }
    }
}

/// Each row's split from column `column` of the data file (rows in file
/// order, as the dataset holds them). An unknown or empty value is an
/// error naming the file, the row (1-based data row) and the column.
fn splits_from_column(data: &Dataset, column: &str) -> Result<Splits> {
    let bad = |message: String| Error::Data {
        path: data.source.clone(),
        message,
    };
    let table = read_table(&data.source)?;
    if !table.column_names().iter().any(|c| c == column) {
        return Err(bad(format!(
            "the split column `{column}` is not in the file; columns are: {}",
            table.column_names().join(", ")
        )));
    }
    let values = table.strings(column)?;
    if values.len() != data.len() {
        return Err(bad(format!(
            "the split column `{column}` has {} rows but the dataset {}; a split column needs a CSV, TSV, JSONL or Parquet file read row for row",
            values.len(),
            data.len()
        )));
    }
    let mut splits = Splits {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
    };
    for (i, v) in values.iter().enumerate() {
        let v = v.as_deref().unwrap_or("").trim().to_ascii_lowercase();
        let which = SPLIT_VALUES
            .iter()
            .position(|(_, names)| names.contains(&v.as_str()))
            .ok_or_else(|| {
                bad(format!(
                    "row {}, column `{column}`: `{v}` is not a split; use train, valid (or validation, val, dev) or test",
                    i + 1
                ))
            })?;
        [&mut splits.train, &mut splits.valid, &mut splits.test][which].push(i);
    }
    if splits.train.is_empty() {
        return Err(bad(format!(
            "the split column `{column}` marks no row `train`"
        )));
    }
    Ok(splits)
}

/// How [`selection_split`] divides the validation rows, for reports.
pub const SELECTION_SPLIT_RULE: &str = "the run's validation rows, grouped by (label, fairness group), \
each group ordered by splitmix64(split seed XOR row), then dealt alternately (fit, select, fit, …) \
with the alternation carried from group to group";

/// Divides the validation rows `valid` (data row indices) into two disjoint
/// halves, deterministically: `fit` rows, on which `valor remodel` fits
/// post-processing and its retrainings choose their epoch, and `select`
/// rows, on which it measures every candidate and chooses `V_T`. Rows are
/// stratified by `stratum(row)` (label and fairness group), ordered within
/// a stratum by a hash of the seed and the row, and dealt alternately, so
/// both halves hold every stratum in nearly equal parts
/// ([`SELECTION_SPLIT_RULE`]). Both come back in ascending row order.
pub fn selection_split<K: Ord>(
    valid: &[usize],
    stratum: impl Fn(usize) -> K,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut strata: std::collections::BTreeMap<K, Vec<usize>> = std::collections::BTreeMap::new();
    for &i in valid {
        strata.entry(stratum(i)).or_default().push(i);
    }
    let (mut fit, mut select) = (Vec::new(), Vec::new());
    let mut to_fit = true;
    for rows in strata.values_mut() {
        rows.sort_by_key(|&i| (splitmix64(seed ^ i as u64), i));
        for &i in rows.iter() {
            if to_fit {
                fit.push(i);
            } else {
                select.push(i);
            }
            to_fit = !to_fit;
        }
    }
    fit.sort_unstable();
    select.sort_unstable();
    (fit, select)
}

/// SplitMix64's finaliser (Steele et al. 2014): a fixed, well-mixed hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_split_is_disjoint_covering_balanced_and_deterministic() {
        let valid: Vec<usize> = (100..201).collect();
        // Stratum: label = row % 3, group = row % 2.
        let stratum = |i: usize| (i % 3, i % 2);
        let (fit, select) = selection_split(&valid, stratum, 7);
        assert!(fit.iter().all(|i| !select.contains(i)));
        let mut all: Vec<usize> = fit.iter().chain(&select).copied().collect();
        all.sort_unstable();
        assert_eq!(all, valid);
        assert_eq!((fit.len(), select.len()), (51, 50));
        for s in 0..6 {
            let n = |rows: &[usize]| rows.iter().filter(|&&i| i % 6 == s).count() as i64;
            assert!((n(&fit) - n(&select)).abs() <= 1, "stratum {s}");
        }
        assert_eq!(selection_split(&valid, stratum, 7), (fit.clone(), select));
        assert_ne!(
            selection_split(&valid, stratum, 8).0,
            fit,
            "the seed matters"
        );
    }

    #[test]
    fn held_out_rows_leave_every_split() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("finance.csv");
        valor_data::generate(&valor_data::SynthConfig {
            rows: 200,
            ..valor_data::SynthConfig::default()
        })
        .write(&path)
        .unwrap();
        let mut config = TrainConfig::scratch(valor_data::builtin_spec(&path), "tiny");
        let (data, _) = valor_data::load_dataset(&config.data).unwrap();
        let all = run_splits(&config, &data).unwrap();
        config.held_out_rows = vec![all.train[0], all.valid[0], all.test[0], all.valid[1]];
        let kept = run_splits(&config, &data).unwrap();
        assert_eq!(kept.train, all.train[1..]);
        assert_eq!(kept.valid, all.valid[2..]);
        assert_eq!(kept.test, all.test[1..]);
    }

    /// Split files: each file's rows are its split (train, then valid,
    /// then test, in file order), `held_out_rows` index the combined rows,
    /// and `run_splits` refuses such a configuration instead of drawing.
    #[test]
    fn split_files_give_the_splits_less_held_out_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("finance.csv");
        let data = valor_data::generate(&valor_data::SynthConfig {
            rows: 30,
            ..valor_data::SynthConfig::default()
        });
        data.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let rows: Vec<&str> = lines.collect();
        let write = |name: &str, part: &[&str]| {
            let p = tmp.path().join(name);
            std::fs::write(&p, format!("{header}\n{}\n", part.join("\n"))).unwrap();
            p
        };
        let files = valor_data::SplitFiles {
            train: write("train.csv", &rows[..20]),
            valid: write("valid.csv", &rows[20..24]),
            test: write("test.csv", &rows[24..]),
        };
        let mut config = TrainConfig::scratch(valor_data::builtin_spec(&files.train), "tiny");
        config.split_files = Some(files.clone());
        config.validate().unwrap();
        let run = load_run_data(&config).unwrap();
        assert_eq!(run.splits.train, (0..20).collect::<Vec<_>>());
        assert_eq!(run.splits.valid, (20..24).collect::<Vec<_>>());
        assert_eq!(run.splits.test, (24..30).collect::<Vec<_>>());
        let (whole, _) = valor_data::load_dataset(&valor_data::builtin_spec(&path)).unwrap();
        assert_eq!(run.data.ids, whole.ids);
        assert_eq!(run.data.texts, whole.texts);
        assert_eq!(run.files.as_ref().unwrap()[1].path, files.valid);

        config.held_out_rows = vec![0, 21];
        let kept = load_run_data(&config).unwrap().splits;
        assert_eq!(kept.train, (1..20).collect::<Vec<_>>());
        assert_eq!(kept.valid, [20, 22, 23]);
        assert!(run_splits(&config, &run.data).is_err());

        // A split column beside them, or a data path that is not the
        // training file, is refused.
        let mut both = config.clone();
        both.split_column = Some("split".into());
        assert!(both.validate().is_err());
        let mut other = config.clone();
        other.data.path = path.clone();
        assert!(other.validate().is_err());
    }
}
