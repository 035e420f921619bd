//! Mitigations that need no retraining of the model's features: weights for
//! the next training run (reweighing) and post-processing of scores
//! (threshold optimizer, class-score offsets).

pub mod offsets;
pub mod reweighing;
pub mod threshold;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::io::write_atomic;

/// Interns group names in first-seen order.
pub(crate) fn intern<S: AsRef<str>>(groups: &[S]) -> (Vec<String>, Vec<u32>) {
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut names = Vec::new();
    let ids = groups
        .iter()
        .map(|g| {
            let g = g.as_ref();
            *index.entry(g).or_insert_with(|| {
                names.push(g.to_owned());
                names.len() as u32 - 1
            })
        })
        .collect();
    (names, ids)
}

/// Maps group names to the fitted groups; an unseen group is an error.
pub(crate) fn lookup_groups<S: AsRef<str>>(fitted: &[String], groups: &[S]) -> Result<Vec<usize>> {
    let index: HashMap<&str, usize> = fitted
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    groups
        .iter()
        .enumerate()
        .map(|(row, g)| {
            index
                .get(g.as_ref())
                .copied()
                .ok_or_else(|| Error::UnknownGroup {
                    group: g.as_ref().to_owned(),
                    row,
                    known: fitted.join(", "),
                })
        })
        .collect()
}

pub(crate) fn save_json<T: Serialize>(value: &T, what: &str, path: &Path) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        what: what.to_owned(),
        source,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub(crate) fn load_json<T: DeserializeOwned>(what: &str, path: &Path) -> Result<T> {
    let text = valor_fsio::read_to_string_capped(path, 16 << 20).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        what: format!("{what} {}", path.display()),
        source,
    })
}
