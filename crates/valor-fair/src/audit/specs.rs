//! The group specs of an audit resolved against the input: which columns
//! each spec crosses, its groups and their keys, the privileged flags, and
//! its confusion matrices ([`SpecState`]); declared groups checked.

use crate::config::{AuditConfig, GroupSpec};
use crate::core::{Core, CoreCtx};
use crate::error::{Error, Result};
use crate::partition::{Partition, SpecGroups};
use crate::report::{Warning, WarningKind};

use super::{Columns, SpecState, list};

/// The specs to audit (the configured ones, else one per group column),
/// their names, and the input columns they use (sorted).
pub(super) struct ResolvedSpecs {
    specs: Vec<GroupSpec>,
    names: Vec<String>,
    pub(super) used: Vec<usize>,
}

/// Checks the configured specs against the input's columns: none empty,
/// every column known, no name twice, every privileged spec audited.
pub(super) fn resolve_specs(cols: &Columns<'_>, config: &AuditConfig) -> Result<ResolvedSpecs> {
    let available = || list(cols.names.iter().map(|g| format!("`{g}`")));
    let specs: Vec<GroupSpec> = if config.specs.is_empty() {
        cols.names.iter().map(|g| GroupSpec::single(g)).collect()
    } else {
        config.specs.clone()
    };
    let mut used: Vec<usize> = Vec::new();
    for spec in &specs {
        if spec.columns.is_empty() {
            return Err(Error::InvalidConfig {
                setting: "specs".into(),
                why: "a group spec has no columns".into(),
            });
        }
        for c in &spec.columns {
            let idx = cols.index(c).ok_or_else(|| Error::UnknownGroupColumn {
                column: c.clone(),
                available: available(),
            })?;
            if !used.contains(&idx) {
                used.push(idx);
            }
        }
    }
    used.sort_unstable();
    let names: Vec<String> = specs.iter().map(GroupSpec::name).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(Error::InvalidConfig {
                setting: "specs".into(),
                why: format!("`{n}` is listed twice"),
            });
        }
    }
    for s in config.privileged.keys() {
        if !names.contains(s) {
            return Err(Error::PrivilegedSpecNotAudited {
                spec: s.clone(),
                available: list(names.iter().map(|n| format!("`{n}`"))),
            });
        }
    }
    Ok(ResolvedSpecs { specs, names, used })
}

/// One [`SpecState`] per spec (groups, keys, privileged flags, matrices and
/// core metrics) with the spec's groups in the partition.
pub(super) fn spec_states(
    cols: &Columns<'_>,
    config: &AuditConfig,
    part: &Partition,
    resolved: ResolvedSpecs,
    labels: &[String],
    positive: Option<usize>,
) -> Result<(Vec<SpecState>, Vec<SpecGroups>)> {
    let ResolvedSpecs { specs, names, used } = resolved;
    let mut states = Vec::with_capacity(specs.len());
    let mut spec_groups: Vec<SpecGroups> = Vec::with_capacity(specs.len());
    for (spec, name) in specs.into_iter().zip(names) {
        let spec_cols: Vec<usize> = spec
            .columns
            .iter()
            .map(|c| cols.index(c).unwrap_or_default())
            .collect();
        let positions: Vec<usize> = spec_cols
            .iter()
            .map(|c| used.iter().position(|u| u == c).unwrap_or_default())
            .collect();
        let groups = part.spec_groups(&positions);
        let values: Vec<Vec<String>> = groups
            .codes
            .iter()
            .map(|codes| {
                codes
                    .iter()
                    .zip(&spec_cols)
                    .map(|(&code, &c)| cols.levels[c][code as usize].clone())
                    .collect()
            })
            .collect();
        let keys: Vec<String> = values.iter().map(|v| v.join("|")).collect();
        let privileged = privileged_flags(config, &name, &keys)?;
        let ctx = CoreCtx::new(labels, positive, privileged.clone(), config.ordinal);
        let matrices = part.spec_matrices(&part.counts, &groups);
        let core = Core::compute(&ctx, &matrices);
        spec_groups.push(groups);
        states.push(SpecState {
            spec,
            name,
            keys,
            values,
            privileged,
            ctx,
            matrices,
            core,
        });
    }
    Ok((states, spec_groups))
}

/// Which of a spec's groups (`keys`) are privileged, when the
/// configuration names any; each named group must exist, and one group at
/// least must be left unprivileged.
fn privileged_flags(
    config: &AuditConfig,
    name: &str,
    keys: &[String],
) -> Result<Option<Vec<bool>>> {
    let Some(wanted) = config.privileged.get(name) else {
        return Ok(None);
    };
    let mut flags = vec![false; keys.len()];
    for w in wanted {
        let g = keys
            .iter()
            .position(|k| k == w)
            .ok_or_else(|| Error::UnknownPrivilegedGroup {
                spec: name.to_owned(),
                group: w.clone(),
                available: list(keys.iter().map(|k| format!("`{k}`"))),
            })?;
        flags[g] = true;
    }
    if flags.iter().all(|f| *f) {
        return Err(Error::NoUnprivilegedGroup {
            spec: name.to_owned(),
        });
    }
    Ok(Some(flags))
}

/// Every value of a column with declared groups must be declared (else an
/// error naming the first row, when `first_row` knows it); a declared group
/// with no rows is a warning.
pub(super) fn check_known_groups(
    cols: &Columns<'_>,
    config: &AuditConfig,
    first_row: &dyn Fn(usize, usize) -> Option<usize>,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    for (col, known) in &config.known_groups {
        let c = cols.index(col).ok_or_else(|| Error::UnknownGroupColumn {
            column: col.clone(),
            available: list(cols.names.iter().map(|g| format!("`{g}`"))),
        })?;
        let levels = cols.levels[c];
        for (code, level) in levels.iter().enumerate() {
            if !known.contains(level) {
                return Err(match first_row(c, code) {
                    Some(row) => Error::UnseenGroup {
                        column: col.clone(),
                        row,
                        value: level.clone(),
                        known: known.clone(),
                    },
                    None => Error::UnseenCountedGroup {
                        column: col.clone(),
                        value: level.clone(),
                        known: known.clone(),
                    },
                });
            }
        }
        for k in known {
            if !levels.contains(k) {
                warnings.push(Warning {
                    kind: WarningKind::DeclaredGroupAbsent,
                    spec: Some(col.clone()),
                    group: Some(k.clone()),
                    message: format!(
                        "declared group `{k}` of `{col}` has no rows: no metric can be computed for it"
                    ),
                });
            }
        }
    }
    Ok(())
}
