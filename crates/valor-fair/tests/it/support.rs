//! Shared helpers: CSV columns, fixtures, and the one comparison vocabulary.

use std::path::{Path, PathBuf};

use serde_json::Value;
use valor_fair::{AuditInput, LabelSet};
use valor_testkit::{Tolerance, assert_close};

/// Parity tolerance of the fairness fixtures (README: 1e-9 absolute).
pub const PARITY: Tolerance = Tolerance::abs(1e-9);

/// A CSV read as string columns.
pub struct Csv {
    pub header: Vec<String>,
    pub columns: Vec<Vec<String>>,
}

impl Csv {
    pub fn read(path: &Path) -> Self {
        let mut r =
            csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
        let mut columns = vec![Vec::new(); header.len()];
        for rec in r.records() {
            let rec = rec.unwrap();
            for (c, v) in columns.iter_mut().zip(rec.iter()) {
                c.push(v.to_owned());
            }
        }
        Self { header, columns }
    }

    pub fn col(&self, name: &str) -> &[String] {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        &self.columns[i]
    }

    /// An audit input over `y_true`/`y_pred` (and `y_score` if asked) with the given group columns.
    pub fn input(&self, labels: Option<LabelSet>, scores: bool, groups: &[&str]) -> AuditInput {
        let mut input =
            AuditInput::from_strings(self.col("y_true"), self.col("y_pred"), labels).unwrap();
        if scores {
            let s: Vec<f64> = self
                .col("y_score")
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
            input = input.with_scores(s).unwrap();
        }
        for g in groups {
            input = input.with_group(g, self.col(g)).unwrap();
        }
        input
    }
}

/// The fairness fixtures folder.
pub fn fairness_dir(shared: &Path) -> PathBuf {
    shared.join("fixtures").join("fairness")
}

pub fn fixture(shared: &Path, name: &str) -> Value {
    let p = fairness_dir(shared).join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Compares a value that may be undefined with a fixture number or null.
#[track_caller]
pub fn check(what: &str, actual: Option<f64>, expected: &Value) {
    match (actual, expected.as_f64()) {
        (Some(a), Some(e)) => assert_close(what, a, e, PARITY),
        (None, None) => assert!(expected.is_null(), "{what}: expected {expected}"),
        (a, _) => panic!("{what}: actual {a:?} vs expected {expected}"),
    }
}
