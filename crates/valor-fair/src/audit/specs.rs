//! The group specs of an audit resolved against the input: which columns
//! each spec crosses, its groups and their keys, the privileged flags, and
//! its confusion matrices ([`SpecState`]); declared groups checked.

use crate::config::{AuditConfig, GroupSpec};
use crate::core::{Core, CoreCtx};
use crate::error::{Error, Result};
use crate::input::AuditInput;
use crate::partition::{Partition, SpecGroups};
use crate::report::{Warning, WarningKind};

use super::{SpecState, list};

/// The specs to audit (the configured ones, else one per group column),
/// their names, and the input columns they use (sorted).
pub(super) struct ResolvedSpecs {
    specs: Vec<GroupSpec>,
    names: Vec<String>,
    pub(super) used: Vec<usize>,
}

/// Checks the configured specs against the input's columns: none empty,
/// every column known, no name twice, every privileged spec audited.
pub(super) fn resolve_specs(input: &AuditInput, config: &AuditConfig) -> Result<ResolvedSpecs> {
    let available = || list(input.groups().iter().map(|g| format!("`{}`", g.name())));
    let specs: Vec<GroupSpec> = if config.specs.is_empty() {
        input
            .groups()
            .iter()
            .map(|g| GroupSpec::single(g.name()))
            .collect()
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
            let idx = input
                .groups()
                .iter()
                .position(|g| g.name() == c)
                .ok_or_else(|| Error::UnknownGroupColumn {
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
    input: &AuditInput,
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
        let cols: Vec<usize> = spec
            .columns
            .iter()
            .map(|c| {
                input
                    .groups()
                    .iter()
                    .position(|g| g.name() == c)
                    .unwrap_or_default()
            })
            .collect();
        let positions: Vec<usize> = cols
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
                    .zip(&cols)
                    .map(|(&code, &c)| input.groups()[c].levels()[code as usize].clone())
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
/// error naming the first row); a declared group with no rows is a warning.
pub(super) fn check_known_groups(
    input: &AuditInput,
    config: &AuditConfig,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    for (col, known) in &config.known_groups {
        let column = input.group(col).ok_or_else(|| Error::UnknownGroupColumn {
            column: col.clone(),
            available: list(input.groups().iter().map(|g| format!("`{}`", g.name()))),
        })?;
        for (code, level) in column.levels().iter().enumerate() {
            if !known.contains(level) {
                let row = column
                    .codes()
                    .iter()
                    .position(|&c| c as usize == code)
                    .unwrap_or_default();
                return Err(Error::UnseenGroup {
                    column: col.clone(),
                    row,
                    value: level.clone(),
                    known: known.clone(),
                });
            }
        }
        for k in known {
            if !column.levels().contains(k) {
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
