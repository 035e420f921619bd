//! Score-based metrics of an audit (ROC AUC, calibration): one slot per
//! (spec, group) and one for all rows, computed in one pass over the rows.

use crate::input::AuditInput;
use crate::report::{Warning, WarningKind};
use crate::scores::{BinnedScores, ScoreInput, SlotScores, binned_score_metrics, score_metrics};

use super::Counted;

/// The score slots when the input has scores and the task a positive
/// label; scores outside [0, 1] skip calibration (with a warning).
pub(super) fn scored_slots(
    input: &AuditInput,
    counted: &Counted<'_>,
    warnings: &mut Vec<Warning>,
) -> Option<Vec<SlotScores>> {
    let (Some(scores), Some(pos)) = (input.scores(), counted.positive) else {
        return None;
    };
    let in_unit = scores.iter().all(|s| (0.0..=1.0).contains(s));
    if !in_unit {
        warnings.push(Warning {
            kind: WarningKind::ScoresOutOfRange,
            spec: None,
            group: None,
            message: "scores fall outside [0, 1]: calibration is skipped (ROC AUC only \
                      needs an ordering and is still reported)"
                .into(),
        });
    }
    Some(score_slots(
        input,
        counted,
        pos,
        in_unit.then_some(counted.config.ece_bins),
        scores,
    ))
}

/// The score slots of an audit of counts, from their histograms; a
/// warning states the binning and the bound on ROC AUC.
pub(super) fn binned_slots(
    binned: &BinnedScores,
    counted: &Counted<'_>,
    warnings: &mut Vec<Warning>,
) -> Vec<SlotScores> {
    let (combo_slots, n_slots) = combo_slots(counted);
    let (slots, bound) = binned_score_metrics(binned, &combo_slots, n_slots);
    warnings.push(Warning {
        kind: WarningKind::ScoresBinned,
        spec: None,
        group: None,
        message: format!(
            "score metrics from counts in {} score bins of [0, 1]: pairs within a bin count one \
             half, so each ROC AUC is within {bound:e} of the exact value and ROC curves have a \
             point per bin; calibration uses the same {} bins as an audit of the rows",
            binned.bins.score_bins(),
            binned.bins.calibration_bins()
        ),
    });
    slots
}

/// Per combination of the partition, the slots (spec groups, then the
/// overall slot) its rows belong to; and the number of slots.
fn combo_slots(counted: &Counted<'_>) -> (Vec<Vec<u32>>, usize) {
    let Counted {
        part,
        states,
        spec_groups,
        ..
    } = *counted;
    let mut offsets = Vec::with_capacity(states.len());
    let mut n_slots = 0u32;
    for st in states {
        offsets.push(n_slots);
        n_slots += st.keys.len() as u32;
    }
    let overall_slot = n_slots;
    let n_slots = n_slots as usize + 1;
    let combo_slots: Vec<Vec<u32>> = (0..part.combos.len())
        .map(|c| {
            let mut v: Vec<u32> = spec_groups
                .iter()
                .zip(&offsets)
                .map(|(g, off)| off + g.combo_group[c])
                .collect();
            v.push(overall_slot);
            v
        })
        .collect();
    (combo_slots, n_slots)
}

fn score_slots(
    input: &AuditInput,
    counted: &Counted<'_>,
    pos: usize,
    bins: Option<usize>,
    scores: &[f64],
) -> Vec<SlotScores> {
    let Counted {
        part,
        states,
        overall,
        ..
    } = *counted;
    let (combo_slots, n_slots) = combo_slots(counted);
    let mut slot_pos = Vec::with_capacity(n_slots);
    let mut slot_neg = Vec::with_capacity(n_slots);
    for st in states {
        for m in &st.matrices {
            let b = m.one_vs_rest(pos);
            slot_pos.push(b.positives());
            slot_neg.push(b.negatives());
        }
    }
    let b = overall.one_vs_rest(pos);
    slot_pos.push(b.positives());
    slot_neg.push(b.negatives());
    let positive: Vec<bool> = input.y_true().iter().map(|t| t.index() == pos).collect();
    score_metrics(&ScoreInput {
        scores,
        positive: &positive,
        row_combo: &part.row_combo,
        combo_slots: &combo_slots,
        n_slots,
        slot_pos: &slot_pos,
        slot_neg: &slot_neg,
        bins,
    })
}
