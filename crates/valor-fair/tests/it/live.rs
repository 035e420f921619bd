//! The live monitor: its fairness numbers are `audit`'s on the window's
//! rows, feedback turns on outcome metrics, thresholds and drift become
//! events, and windows evict by count and by time.

use valor_fair::drift::DriftMethod;
use valor_fair::{
    AuditConfig, AuditInput, FeedbackMatch, LiveConfig, LiveMonitor, MonitorEventKind, Observation,
    Reference, Threshold, Window, audit, paths,
};

fn labels() -> Vec<String> {
    vec!["deny".into(), "approve".into()]
}

/// A deterministic decision stream: `unfair` makes men approved far more.
fn obs(i: u64, unfair: bool) -> Observation {
    let gender = if i.is_multiple_of(2) {
        "female"
    } else {
        "male"
    };
    let h = (i.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
    let p = if unfair && gender == "male" {
        0.6 + 0.4 * h
    } else if unfair {
        0.4 * h
    } else {
        h
    };
    Observation {
        id: format!("d{i}"),
        time_s: 1_000.0 + i as f64,
        groups: vec![gender.into()],
        label: if p > 0.5 { "approve" } else { "deny" }.into(),
        probabilities: vec![1.0 - p, p],
        text_chars: Some(20.0 + (i % 17) as f64),
        unknown_rate: Some((i % 5) as f64 / 50.0),
    }
}

#[test]
fn demographic_parity_is_audits_on_the_windows_rows() {
    let mut config = LiveConfig::new(labels(), vec!["gender".into()], 100);
    config.audit = AuditConfig::default().privilege("gender", "male");
    let mut m = LiveMonitor::new(config, None).unwrap();
    let stream: Vec<Observation> = (0..350).map(|i| obs(i, i >= 200)).collect();
    for o in &stream {
        m.observe(o.clone()).unwrap();
    }
    assert_eq!(m.window_len(), 100);
    let report = m.report().unwrap();
    // valor audit on the same 100 rows (true labels do not enter demographic parity)
    let rows = &stream[250..];
    let pred: Vec<&str> = rows.iter().map(|o| o.label.as_str()).collect();
    let truth: Vec<&str> = rows.iter().map(|_| "deny").collect();
    let groups: Vec<&str> = rows.iter().map(|o| o.groups[0].as_str()).collect();
    let input = AuditInput::from_strings(
        &truth,
        &pred,
        Some(valor_fair::LabelSet::new(&labels()).unwrap()),
    )
    .unwrap()
    .with_group("gender", &groups)
    .unwrap();
    let mut cfg = AuditConfig::default().privilege("gender", "male");
    cfg.positive_label = Some("approve".into());
    let expected = audit(&input, &cfg).unwrap();
    let fl = expected.specs[0].fairlearn.as_ref().unwrap();
    let sel = &report.selection[0];
    assert_eq!(
        sel.demographic_parity_difference,
        fl.demographic_parity_difference
    );
    assert_eq!(sel.demographic_parity_ratio, fl.demographic_parity_ratio);
    assert_eq!(
        sel.disparate_impact,
        expected.specs[0].aif360.as_ref().unwrap().disparate_impact
    );
    assert!(sel.demographic_parity_difference.unwrap() > 0.5, "{sel:?}");
    // the per-class rates are the counts of the window
    let f_approve = rows
        .iter()
        .filter(|o| o.groups[0] == "female" && o.label == "approve")
        .count() as f64
        / 50.0;
    assert_eq!(
        sel.rates.get("female").unwrap().get("approve"),
        Some(&f_approve)
    );
    assert_eq!(sel.counts.get("male"), Some(&50));
}

#[test]
fn feedback_turns_on_equalized_odds_and_accuracy() {
    let mut config = LiveConfig::new(labels(), vec!["gender".into()], 200);
    config.min_feedback_rows = 10;
    let mut m = LiveMonitor::new(config, None).unwrap();
    let stream: Vec<Observation> = (0..200).map(|i| obs(i, false)).collect();
    for o in &stream {
        m.observe(o.clone()).unwrap();
    }
    assert!(m.report().unwrap().outcomes.is_empty());
    let mut truth = Vec::new();
    for (i, o) in stream.iter().enumerate().step_by(3) {
        let outcome = if i % 7 == 0 { "deny" } else { "approve" };
        assert_eq!(m.feedback(&o.id, outcome).unwrap(), FeedbackMatch::Joined);
        truth.push((o, outcome));
    }
    assert_eq!(
        m.feedback("unknown-id", "deny").unwrap(),
        FeedbackMatch::NotInWindow
    );
    assert!(
        m.feedback(&stream[0].id, "maybe").is_err(),
        "an unknown label is an error"
    );
    let report = m.report().unwrap();
    assert_eq!(report.feedback_rows, truth.len());
    let t: Vec<&str> = truth.iter().map(|(_, y)| *y).collect();
    let p: Vec<&str> = truth.iter().map(|(o, _)| o.label.as_str()).collect();
    let g: Vec<&str> = truth.iter().map(|(o, _)| o.groups[0].as_str()).collect();
    let scores: Vec<f64> = truth.iter().map(|(o, _)| o.probabilities[1]).collect();
    let input =
        AuditInput::from_strings(&t, &p, Some(valor_fair::LabelSet::new(&labels()).unwrap()))
            .unwrap()
            .with_scores(scores)
            .unwrap()
            .with_group("gender", &g)
            .unwrap();
    let mut cfg = AuditConfig::default();
    cfg.positive_label = Some("approve".into());
    let expected = audit(&input, &cfg).unwrap();
    let out = &report.outcomes[0];
    let fl = expected.specs[0].fairlearn.as_ref().unwrap();
    assert_eq!(
        out.equalized_odds_difference,
        fl.equalized_odds_difference_worst_case
    );
    assert_eq!(
        out.accuracy,
        expected.specs[0].metrics.get("accuracy").unwrap().overall
    );
    assert!(out.accuracy.is_some() && out.equalized_odds_difference.is_some());
    let oa = report.outcome_audit.as_ref().unwrap();
    assert_eq!(oa.rows, truth.len() as u64);
}

#[test]
fn thresholds_breach_and_recover_with_the_window() {
    let mut config = LiveConfig::new(labels(), vec!["gender".into()], 60);
    config.audit.thresholds.push(Threshold::at_most(
        paths::DEMOGRAPHIC_PARITY_DIFFERENCE,
        0.3,
    ));
    let mut m = LiveMonitor::new(config, None).unwrap();
    let mut events = Vec::new();
    for i in 0..400 {
        events.extend(m.observe(obs(i, (150..300).contains(&i))).unwrap());
    }
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![MonitorEventKind::Breached, MonitorEventKind::Recovered],
        "{events:?}"
    );
    assert!(
        events[0].rows_seen > 150 && events[0].rows_seen < 210,
        "{events:?}"
    );
    assert!(events[1].rows_seen > 300, "{events:?}");
    assert!(m.report().unwrap().breached.is_empty());
}

#[test]
fn drift_of_predictions_scores_and_inputs_against_a_reference() {
    let reference_rows: Vec<Observation> = (10_000..10_800).map(|i| obs(i, false)).collect();
    let pred: Vec<&str> = reference_rows.iter().map(|o| o.label.as_str()).collect();
    let probs: Vec<Vec<f64>> = reference_rows
        .iter()
        .map(|o| o.probabilities.clone())
        .collect();
    let chars: Vec<f64> = reference_rows
        .iter()
        .map(|o| o.text_chars.unwrap())
        .collect();
    let unk: Vec<f64> = reference_rows
        .iter()
        .map(|o| o.unknown_rate.unwrap())
        .collect();
    let reference = Reference::from_rows(&labels(), &pred, &probs, Some(chars), Some(unk)).unwrap();
    // The reference survives its JSON form.
    let json = serde_json::to_string(&reference).unwrap();
    assert_eq!(Reference::from_json(&json).unwrap(), reference);

    let config = LiveConfig::new(labels(), vec!["gender".into()], 300);
    let mut m = LiveMonitor::new(config, Some(reference)).unwrap();
    let mut events = Vec::new();
    for i in 0..300 {
        events.extend(m.observe(obs(i, false)).unwrap());
    }
    let d = m.report().unwrap().drift.unwrap();
    let names: Vec<&str> = d.features.iter().map(|f| f.feature.as_str()).collect();
    assert_eq!(
        names,
        [
            "predicted_class",
            "score.deny",
            "score.approve",
            "text_chars",
            "unknown_rate"
        ]
    );
    assert_eq!(d.features[0].method, DriftMethod::ZTest);
    assert_eq!(d.features[1].method, DriftMethod::Ks);
    assert_eq!(d.drifted, 0, "{d:?}");
    assert!(events.is_empty(), "{events:?}");
    // Scores shift: the score features drift, and that is an event.
    for i in 300..600 {
        events.extend(m.observe(obs(i, true)).unwrap());
    }
    let d = m.report().unwrap().drift.unwrap();
    assert!(d.features[1].drifted && d.features[2].drifted, "{d:?}");
    assert!(
        events
            .iter()
            .any(|e| e.metric == "drift.score.approve" && e.kind == MonitorEventKind::Breached)
    );
}

#[test]
fn a_time_window_keeps_the_last_seconds() {
    let mut config = LiveConfig::new(labels(), vec!["gender".into()], 1);
    config.window = Window::Span {
        seconds: 30.0,
        max_rows: 1000,
    };
    let mut m = LiveMonitor::new(config, None).unwrap();
    for i in 0..100 {
        m.observe(obs(i, false)).unwrap();
    }
    // times 1000..1099: the last 30 seconds hold 1069..=1099
    assert_eq!(m.window_len(), 31);
    assert_eq!(
        m.feedback("d10", "deny").unwrap(),
        FeedbackMatch::NotInWindow
    );
    assert_eq!(m.feedback("d90", "deny").unwrap(), FeedbackMatch::Joined);
    let r = m.report().unwrap();
    assert_eq!(
        (r.first_time_s, r.last_time_s),
        (Some(1069.0), Some(1099.0))
    );
}

#[test]
fn bad_decisions_are_refused_naming_the_cause() {
    let mut config = LiveConfig::new(labels(), vec!["gender".into()], 10);
    config
        .audit
        .known_groups
        .insert("gender".into(), vec!["female".into(), "male".into()]);
    let mut m = LiveMonitor::new(config, None).unwrap();
    let mut o = obs(1, false);
    o.groups = vec!["other".into()];
    assert!(m.observe(o).unwrap_err().to_string().contains("other"));
    let mut o = obs(2, false);
    o.probabilities = vec![0.5];
    assert!(m.observe(o).is_err());
    m.observe(obs(3, false)).unwrap();
    assert!(m.observe(obs(3, false)).is_err(), "a repeated decision id");
}

#[test]
fn three_classes_and_a_single_group_still_report() {
    let labels: Vec<String> = ["low", "mid", "high"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut m = LiveMonitor::new(
        LiveConfig::new(labels.clone(), vec!["region".into()], 50),
        None,
    )
    .unwrap();
    for i in 0..60u64 {
        let c = (i % 3) as usize;
        let mut p = vec![0.1, 0.1, 0.1];
        p[c] = 0.8;
        m.observe(Observation {
            id: format!("m{i}"),
            time_s: i as f64,
            groups: vec![if i < 30 { "north" } else { "south" }.into()],
            label: labels[c].clone(),
            probabilities: p,
            text_chars: None,
            unknown_rate: None,
        })
        .unwrap();
    }
    let r = m.report().unwrap();
    let sel = &r.selection[0];
    // rows 10..60: north holds 20 of them, south 30
    assert_eq!(sel.counts.get("north"), Some(&20));
    assert_eq!(sel.counts.get("south"), Some(&30));
    assert!(sel.demographic_parity_difference.is_none(), "binary only");
    assert!(sel.multiclass_selection_rate_gap.is_some());
    assert!(r.drift.is_none() && r.outcomes.is_empty());
}
