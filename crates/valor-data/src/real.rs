//! Readers for real public datasets whose files are not plain tables with a
//! header: Statlog German Credit, UCI Adult, Financial PhraseBank. Each reader
//! turns the file into a [`Table`] with columns `text`, `label` and the
//! dataset's group columns, which then goes through the same validation as
//! any user table.

use std::path::Path;

use crate::error::{Error, Result};
use crate::spec::Preset;
use crate::table::Table;

/// Reads a real dataset file into a table with `text`, `label` and group columns.
pub fn read_preset(preset: Preset, path: &Path) -> Result<Table> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    match preset {
        Preset::GermanCredit => german_credit(path, &bytes),
        Preset::Adult => adult(path, &bytes),
        Preset::Phrasebank => phrasebank(path, &bytes),
    }
}

fn utf8_row<'a>(path: &Path, line: &'a [u8], row: usize) -> Result<&'a str> {
    std::str::from_utf8(line).map_err(|e| Error::NotUtf8 {
        path: path.to_path_buf(),
        row,
        offset: e.valid_up_to(),
    })
}

/// German Credit attribute decoding (from `german.doc`).
fn german_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "A11" => "below 0 DM",
        "A12" => "0 to 200 DM",
        "A13" => "200 DM or more",
        "A14" => "no checking account",
        "A30" => "no credits taken or all paid back duly",
        "A31" => "all credits at this bank paid back duly",
        "A32" => "existing credits paid back duly till now",
        "A33" => "delay in paying off in the past",
        "A34" => "critical account or other credits existing",
        "A40" => "new car",
        "A41" => "used car",
        "A42" => "furniture/equipment",
        "A43" => "radio/TV",
        "A44" => "domestic appliances",
        "A45" => "repairs",
        "A46" => "education",
        "A47" => "vacation",
        "A48" => "retraining",
        "A49" => "business",
        "A410" => "others",
        "A61" => "below 100 DM",
        "A62" => "100 to 500 DM",
        "A63" => "500 to 1000 DM",
        "A64" => "1000 DM or more",
        "A65" => "unknown or none",
        "A71" => "unemployed",
        "A72" => "less than 1 year",
        "A73" => "1 to 4 years",
        "A74" => "4 to 7 years",
        "A75" => "7 years or more",
        "A91" => "divorced/separated",
        "A92" => "divorced/separated/married",
        "A93" => "single",
        "A94" => "married/widowed",
        "A95" => "single",
        "A101" => "none",
        "A102" => "co-applicant",
        "A103" => "guarantor",
        "A121" => "real estate",
        "A122" => "building society savings or life insurance",
        "A123" => "car or other",
        "A124" => "unknown or none",
        "A141" => "bank",
        "A142" => "stores",
        "A143" => "none",
        "A151" => "rent",
        "A152" => "own",
        "A153" => "for free",
        "A171" => "unemployed or unskilled non-resident",
        "A172" => "unskilled resident",
        "A173" => "skilled employee or official",
        "A174" => "management, self-employed or highly qualified",
        "A191" => "none",
        "A192" => "yes",
        "A201" => "yes",
        "A202" => "no",
        _ => return None,
    })
}

/// The 20 attribute names of `german.data`, in file order.
const GERMAN_ATTRIBUTES: [&str; 20] = [
    "checking account",
    "duration months",
    "credit history",
    "purpose",
    "credit amount",
    "savings",
    "employment since",
    "installment rate percent",
    "personal status",
    "other debtors",
    "residence since",
    "property",
    "age",
    "other installment plans",
    "housing",
    "existing credits",
    "job",
    "people liable",
    "telephone",
    "foreign worker",
];

/// `german.data`: 20 space-separated attributes and the class (1 good, 2 bad).
/// The text serialises the decoded attributes except the sensitive ones
/// (personal status and sex, age), which become groups: `sex` from the personal
/// status code (female = A92, A95) and `age_group` (`>=25`, `<25`).
fn german_credit(path: &Path, bytes: &[u8]) -> Result<Table> {
    let (mut text, mut label, mut sex, mut age_group) = (vec![], vec![], vec![], vec![]);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let row = i + 1;
        let line = utf8_row(path, line, row)?.trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 21 {
            return Err(Error::BadValue {
                path: path.to_path_buf(),
                row,
                column: "(whole line)".into(),
                message: format!("expected 21 space-separated fields, found {}", f.len()),
            });
        }
        let mut parts = Vec::with_capacity(18);
        for (j, (&name, &value)) in GERMAN_ATTRIBUTES.iter().zip(&f[..20]).enumerate() {
            let decoded = if value.starts_with('A') {
                german_code(value).ok_or_else(|| Error::BadValue {
                    path: path.to_path_buf(),
                    row,
                    column: name.into(),
                    message: format!("unknown attribute code `{value}`"),
                })?
            } else {
                value
            };
            if j == 8 || j == 12 {
                continue; // sensitive: personal status/sex and age become groups
            }
            parts.push(format!("{name}: {decoded}"));
        }
        text.push(Some(parts.join("; ")));
        label.push(Some(
            match f[20] {
                "1" => "good",
                "2" => "bad",
                other => {
                    return Err(Error::BadValue {
                        path: path.to_path_buf(),
                        row,
                        column: "class".into(),
                        message: format!("class must be 1 (good) or 2 (bad), found `{other}`"),
                    });
                }
            }
            .to_string(),
        ));
        sex.push(Some(
            if matches!(f[8], "A92" | "A95") {
                "female"
            } else {
                "male"
            }
            .to_string(),
        ));
        let age: u32 = f[12].parse().map_err(|_| Error::BadValue {
            path: path.to_path_buf(),
            row,
            column: "age".into(),
            message: format!("`{}` is not an age", f[12]),
        })?;
        age_group.push(Some(if age >= 25 { ">=25" } else { "<25" }.to_string()));
    }
    Table::from_string_columns(
        path,
        vec![
            ("text".into(), text),
            ("label".into(), label),
            ("sex".into(), sex),
            ("age_group".into(), age_group),
        ],
    )
}

const ADULT_COLUMNS: [&str; 15] = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
];

/// `adult.data` / `adult.test`: comma-plus-space separated, no header; the test
/// file starts with a banner line (`|1x3 Cross validator`) and its labels end in
/// a period. `?` is a missing value (written as `unknown` in the text). The text
/// serialises every attribute except race, sex and the census weight.
fn adult(path: &Path, bytes: &[u8]) -> Result<Table> {
    let (mut text, mut label, mut sex, mut race) = (vec![], vec![], vec![], vec![]);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let row = i + 1;
        let line = utf8_row(path, line, row)?.trim();
        if line.is_empty() || line.starts_with('|') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 15 {
            return Err(Error::BadValue {
                path: path.to_path_buf(),
                row,
                column: "(whole line)".into(),
                message: format!("expected 15 comma-separated fields, found {}", f.len()),
            });
        }
        let parts: Vec<String> = ADULT_COLUMNS[..14]
            .iter()
            .zip(&f[..14])
            .filter(|(name, _)| !matches!(**name, "race" | "sex" | "fnlwgt"))
            .map(|(name, v)| format!("{name}: {}", if *v == "?" { "unknown" } else { v }))
            .collect();
        text.push(Some(parts.join("; ")));
        let l = f[14].trim_end_matches('.');
        if l != "<=50K" && l != ">50K" {
            return Err(Error::BadValue {
                path: path.to_path_buf(),
                row,
                column: "income".into(),
                message: format!("income must be <=50K or >50K, found `{}`", f[14]),
            });
        }
        label.push(Some(l.to_string()));
        for (col, v, name) in [(&mut sex, f[9], "sex"), (&mut race, f[8], "race")] {
            if v == "?" || v.is_empty() {
                return Err(Error::Empty {
                    path: path.to_path_buf(),
                    row,
                    column: name.into(),
                    hint: Some("group values cannot be missing".into()),
                });
            }
            col.push(Some(v.to_string()));
        }
    }
    Table::from_string_columns(
        path,
        vec![
            ("text".into(), text),
            ("label".into(), label),
            ("sex".into(), sex),
            ("race".into(), race),
        ],
    )
}

/// Financial PhraseBank: `sentence@label` per line, split on the last `@`.
/// `Sentences_AllAgree.txt` is UTF-8; the other levels are ISO-8859-1, so a
/// line that is not valid UTF-8 is decoded as latin-1 (every byte maps to the
/// code point of the same value).
fn phrasebank(path: &Path, bytes: &[u8]) -> Result<Table> {
    let (mut text, mut label) = (vec![], vec![]);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let row = i + 1;
        let line: String = match std::str::from_utf8(line) {
            Ok(s) => s.to_string(),
            Err(_) => line.iter().map(|&b| b as char).collect(),
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((sentence, l)) = line.rsplit_once('@') else {
            return Err(Error::BadValue {
                path: path.to_path_buf(),
                row,
                column: "(whole line)".into(),
                message: "expected `sentence@label`".into(),
            });
        };
        text.push(Some(sentence.trim().to_string()));
        label.push(Some(l.trim().to_string()));
    }
    Table::from_string_columns(path, vec![("text".into(), text), ("label".into(), label)])
}
