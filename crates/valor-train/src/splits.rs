//! A run's train/validation/test rows: drawn by valor-data's stratified
//! [`split`] from the configured fractions and seed, or read from a split
//! column of the data file (`TrainConfig::split_column`), row for row, so
//! that Valor and a peer tool can be measured on identical rows.

use valor_data::{Dataset, Splits, read_table, split};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// The values a split column may hold (case-insensitive), by split.
pub const SPLIT_VALUES: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("valid", &["valid", "validation", "val", "dev"]),
    ("test", &["test"]),
];

/// The run's splits: from the split column when the configuration names
/// one, else from the fractions and the split seed.
pub fn run_splits(config: &TrainConfig, data: &Dataset) -> Result<Splits> {
    match &config.split_column {
        None => Ok(split(data, &config.split)?),
        Some(column) => splits_from_column(data, column),
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
