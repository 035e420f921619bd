//! Dataset specs: which columns hold the text (or the tabular features that are
//! serialised into text), the label, the groups, ids, weights and twins.
//!
//! A spec comes from CLI flags or a TOML file:
//!
//! ```toml
//! path = "customers.csv"        # relative to the spec file
//! text = "text"                 # or: features = ["age", "housing"] (+ template)
//! label = "label"
//! labels = ["conservative", "balanced", "growth"]   # id = position; optional
//! groups = ["gender", "age_band"]
//! id = "id"                     # optional
//! weight = "w"                  # optional
//! twin = "twin_text"            # optional counterfactual twin text
//! reference_label = "fair_label" # optional second label (e.g. the fair one)
//! min_group_size = 30
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How rows become text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// One column holds the text.
    Column(String),
    /// Tabular columns serialised into text: with no template as
    /// `"col: value; col: value"` (TabLLM's list serialisation), or through a
    /// template with `{column}` placeholders.
    Features {
        columns: Vec<String>,
        template: Option<String>,
    },
}

/// The built-in readers for real datasets whose files are not plain tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Statlog German Credit (`german.data`): decoded attributes serialised to
    /// text; label good/bad; groups `sex` (from personal_status) and `age_group`
    /// (`>=25` / `<25`).
    GermanCredit,
    /// UCI Adult (`adult.data` or `adult.test`); label `<=50K`/`>50K`; groups
    /// `sex`, `race`.
    Adult,
    /// Financial PhraseBank (`Sentences_*Agree.txt`); label negative/neutral/
    /// positive; no group.
    Phrasebank,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "german-credit" => Ok(Self::GermanCredit),
            "adult" => Ok(Self::Adult),
            "phrasebank" | "financial-phrasebank" => Ok(Self::Phrasebank),
            _ => Err(format!(
                "unknown preset `{s}`; presets are german-credit, adult, phrasebank"
            )),
        }
    }
}

/// A validated description of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// The data file.
    pub path: PathBuf,
    /// A built-in reader for a real dataset, instead of the columns below.
    pub preset: Option<Preset>,
    pub text: TextSource,
    pub label: String,
    /// Label names in id order; `None` infers them (sorted; numerically when
    /// every label is an integer).
    pub labels: Option<Vec<String>>,
    pub groups: Vec<String>,
    pub id: Option<String>,
    pub weight: Option<String>,
    pub twin: Option<String>,
    pub reference_label: Option<String>,
    /// Groups with fewer rows than this get a warning.
    pub min_group_size: usize,
}

/// Default for [`DatasetSpec::min_group_size`].
pub const DEFAULT_MIN_GROUP_SIZE: usize = 30;

/// The TOML form of a spec (what a user writes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    path: Option<PathBuf>,
    preset: Option<String>,
    text: Option<String>,
    features: Option<Vec<String>>,
    template: Option<String>,
    label: Option<String>,
    labels: Option<Vec<String>>,
    #[serde(default)]
    groups: Vec<String>,
    id: Option<String>,
    weight: Option<String>,
    twin: Option<String>,
    reference_label: Option<String>,
    min_group_size: Option<usize>,
}

/// The pieces of a spec as typed on a command line; `None` means not given.
#[derive(Debug, Clone, Default)]
pub struct SpecArgs {
    pub path: Option<PathBuf>,
    pub preset: Option<Preset>,
    pub text_col: Option<String>,
    pub features: Vec<String>,
    pub template: Option<String>,
    pub label_col: Option<String>,
    pub labels: Option<Vec<String>>,
    pub groups: Vec<String>,
    pub id_col: Option<String>,
    pub weight_col: Option<String>,
    pub twin_col: Option<String>,
    pub reference_label_col: Option<String>,
    pub min_group_size: Option<usize>,
}

impl DatasetSpec {
    /// Reads a spec TOML file; relative data paths are resolved against the
    /// spec file's folder. `overrides` (CLI flags) win over the file.
    pub fn from_toml_file(path: &Path, overrides: SpecArgs) -> Result<Self> {
        let text =
            valor_fsio::read_to_string_capped(path, 1 << 20).map_err(|e| Error::io(path, e))?;
        let file: SpecFile = toml::from_str(&text).map_err(|e| Error::Spec {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let preset = file
            .preset
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|message| Error::Spec {
                origin: path.display().to_string(),
                message,
            })?;
        let args = SpecArgs {
            path: file
                .path
                .map(|p| if p.is_relative() { base.join(p) } else { p }),
            preset,
            text_col: file.text,
            features: file.features.unwrap_or_default(),
            template: file.template,
            label_col: file.label,
            labels: file.labels,
            groups: file.groups,
            id_col: file.id,
            weight_col: file.weight,
            twin_col: file.twin,
            reference_label_col: file.reference_label,
            min_group_size: file.min_group_size,
        };
        Self::from_args(args.merged_with(overrides), &path.display().to_string())
    }

    /// Builds a spec from command-line pieces. `origin` names where they came
    /// from in error messages.
    pub fn from_args(args: SpecArgs, origin: &str) -> Result<Self> {
        let err = |message: String| Error::Spec {
            origin: origin.to_string(),
            message,
        };
        let path = args.path.ok_or_else(|| err("no data file given".into()))?;
        if let Some(preset) = args.preset {
            return Ok(preset_spec(preset, path));
        }
        let text = match (args.text_col, args.features.is_empty()) {
            (Some(c), true) => TextSource::Column(c),
            (None, false) => TextSource::Features {
                columns: args.features,
                template: args.template,
            },
            (Some(_), false) => {
                return Err(err(
                    "give either a text column (--text-col / text) or feature columns (--feature / features), not both".into(),
                ));
            }
            (None, true) => {
                return Err(err(
                    "no text: give a text column (--text-col / text) or feature columns (--feature / features)".into(),
                ));
            }
        };
        if let TextSource::Features {
            columns,
            template: Some(t),
        } = &text
        {
            for name in template_placeholders(t) {
                if !columns.contains(&name) {
                    return Err(err(format!(
                        "template placeholder `{{{name}}}` is not one of the feature columns ({})",
                        columns.join(", ")
                    )));
                }
            }
        }
        let label = args
            .label_col
            .ok_or_else(|| err("no label column given (--label-col / label)".into()))?;
        if let Some(labels) = &args.labels {
            if labels.is_empty() {
                return Err(err("`labels` is empty".into()));
            }
            let mut sorted = labels.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != labels.len() {
                return Err(err(format!(
                    "`labels` has duplicates: {}",
                    labels.join(", ")
                )));
            }
        }
        Ok(Self {
            path,
            preset: None,
            text,
            label,
            labels: args.labels,
            groups: args.groups,
            id: args.id_col,
            weight: args.weight_col,
            twin: args.twin_col,
            reference_label: args.reference_label_col,
            min_group_size: args.min_group_size.unwrap_or(DEFAULT_MIN_GROUP_SIZE),
        })
    }
}

impl SpecArgs {
    /// `self` with every field that `over` sets replaced by `over`'s.
    pub fn merged_with(self, over: SpecArgs) -> SpecArgs {
        SpecArgs {
            path: over.path.or(self.path),
            preset: over.preset.or(self.preset),
            text_col: over.text_col.or(self.text_col),
            features: if over.features.is_empty() {
                self.features
            } else {
                over.features
            },
            template: over.template.or(self.template),
            label_col: over.label_col.or(self.label_col),
            labels: over.labels.or(self.labels),
            groups: if over.groups.is_empty() {
                self.groups
            } else {
                over.groups
            },
            id_col: over.id_col.or(self.id_col),
            weight_col: over.weight_col.or(self.weight_col),
            twin_col: over.twin_col.or(self.twin_col),
            reference_label_col: over.reference_label_col.or(self.reference_label_col),
            min_group_size: over.min_group_size.or(self.min_group_size),
        }
    }
}

/// The column names the presets produce (so `--group` etc. need not be typed).
fn preset_spec(preset: Preset, path: PathBuf) -> DatasetSpec {
    let (labels, groups): (&[&str], &[&str]) = match preset {
        Preset::GermanCredit => (&["bad", "good"], &["sex", "age_group"]),
        Preset::Adult => (&["<=50K", ">50K"], &["sex", "race"]),
        Preset::Phrasebank => (&["negative", "neutral", "positive"], &[]),
    };
    DatasetSpec {
        path,
        preset: Some(preset),
        text: TextSource::Column("text".into()),
        label: "label".into(),
        labels: Some(labels.iter().map(|s| s.to_string()).collect()),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        id: None,
        weight: None,
        twin: None,
        reference_label: None,
        min_group_size: DEFAULT_MIN_GROUP_SIZE,
    }
}

/// The `{name}` placeholders of a template, in order.
pub fn template_placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str, expected: std::result::Result<(), &str>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spec.toml");
        std::fs::write(&p, toml_text).unwrap();
        match (
            DatasetSpec::from_toml_file(&p, SpecArgs::default()),
            expected,
        ) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e} !~ {want}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn spec_files() {
        check("path='a.csv'\ntext='t'\nlabel='y'\ngroups=['g']", Ok(()));
        check(
            "path='a.csv'\ntext='t'\nlabel='y'\ncolour='red'",
            Err("unknown field `colour`"),
        );
        check("path='a.csv'\nlabel='y'", Err("no text"));
        check("path='a.csv'\ntext='t'", Err("no label column"));
        check(
            "path='a.csv'\ntext='t'\nlabel='y'\nlabels=['a','a']",
            Err("duplicates"),
        );
        check(
            "path='a.csv'\nfeatures=['age']\ntemplate='{age} and {job}'\nlabel='y'",
            Err("`{job}` is not one of the feature columns"),
        );
        check(
            "path='a.csv'\npreset='nope'\nlabel='y'",
            Err("unknown preset"),
        );
    }

    #[test]
    fn relative_path_is_resolved_against_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spec.toml");
        std::fs::write(&p, "path='data.csv'\ntext='t'\nlabel='y'").unwrap();
        let spec = DatasetSpec::from_toml_file(&p, SpecArgs::default()).unwrap();
        assert_eq!(spec.path, dir.path().join("data.csv"));
    }
}
