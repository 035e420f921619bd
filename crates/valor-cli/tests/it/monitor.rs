//! `valor monitor` replays a decision log through the library's live
//! monitor: the same numbers as `LiveMonitor` fed the same records, per
//! window, as JSON and as an HTML page.

use valor_fair::{LiveConfig, LiveMonitor, Observation, Reference, Threshold, paths};
use valor_ledger::{Feedback, Ledger, LedgerConfig, Timestamp};

use super::log::decision;
use super::valor;

fn observation(d: &valor_ledger::Decision) -> Observation {
    Observation {
        id: d.decision_id.clone().unwrap(),
        time_s: d.time.unix_seconds(),
        groups: vec![d.groups["gender"].clone()],
        label: d.label.clone().unwrap(),
        probabilities: d.probabilities.as_ref().unwrap().values(),
        text_chars: d.input.map(|s| s.chars as f64),
        unknown_rate: d.input.map(|s| s.unknown_rate()),
    }
}

#[test]
fn monitor_reports_the_librarys_numbers_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let labels = vec!["deny".to_string(), "approve".to_string()];
    // reference: 500 fair decisions
    let reference_rows: Vec<_> = (10_000..10_500).map(|i| decision(i, false)).collect();
    let pred: Vec<&str> = reference_rows
        .iter()
        .map(|d| d.label.as_deref().unwrap())
        .collect();
    let probs: Vec<Vec<f64>> = reference_rows
        .iter()
        .map(|d| d.probabilities.as_ref().unwrap().values())
        .collect();
    let chars: Vec<f64> = reference_rows
        .iter()
        .map(|d| d.input.unwrap().chars as f64)
        .collect();
    let reference = Reference::from_rows(&labels, &pred, &probs, Some(chars), None).unwrap();
    let ref_path = dir.path().join("reference.json");
    std::fs::write(&ref_path, serde_json::to_string(&reference).unwrap()).unwrap();

    // the log: 200 fair decisions, 200 unfair; feedback for every third
    let decisions: Vec<_> = (0..400).map(|i| decision(i, i >= 200)).collect();
    let ledger = Ledger::open(
        &log,
        LedgerConfig {
            fsync: false,
            ..LedgerConfig::default()
        },
    )
    .unwrap();
    let mut refused = decision(9999, false);
    refused.status = 422;
    refused.decision_id = None;
    refused.label = None;
    refused.probabilities = None;
    refused.error = Some("unknown group `x`".into());
    ledger.append(refused).unwrap();
    let mut lib = {
        let mut c = LiveConfig::new(labels.clone(), vec!["gender".into()], 100);
        c.audit.thresholds.push(Threshold::at_most(
            paths::DEMOGRAPHIC_PARITY_DIFFERENCE,
            0.3,
        ));
        c.min_feedback_rows = 10;
        LiveMonitor::new(c, Some(reference)).unwrap()
    };
    let mut expected = Vec::new();
    for (i, d) in decisions.iter().enumerate() {
        ledger.append(d.clone()).unwrap();
        lib.observe(observation(d)).unwrap();
        // the CLI reports a window right after the decision that completes it
        if i + 1 >= 100 && (i + 1) % 50 == 0 {
            expected.push(lib.report().unwrap());
        }
        if i % 3 == 0 {
            let outcome = if i % 7 == 0 { "deny" } else { "approve" };
            ledger
                .append(Feedback {
                    time: Timestamp::now(),
                    request_id: format!("f{i}"),
                    key_id: None,
                    status: 200,
                    decision_id: d.decision_id.clone().unwrap(),
                    outcome: outcome.into(),
                    error: None,
                })
                .unwrap();
            lib.feedback(d.decision_id.as_ref().unwrap(), outcome)
                .unwrap();
        }
    }
    ledger.close().unwrap();

    let out = dir.path().join("timeline.json");
    let (code, stdout, stderr) = valor(&[
        "monitor",
        "--log-dir",
        log.to_str().unwrap(),
        "--reference",
        ref_path.to_str().unwrap(),
        "--window",
        "100",
        "--every",
        "50",
        "--max-dp-difference",
        "0.3",
        "--min-feedback",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 1,
        "the unfair half breaches the threshold: {stdout}{stderr}"
    );
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(t["schema"], "valor.monitor.timeline/1");
    assert_eq!(t["decisions"], 400);
    assert_eq!(t["skipped"]["refused requests"], 1);
    let windows = t["windows"].as_array().unwrap();
    assert_eq!(windows.len(), expected.len());
    for (w, e) in windows.iter().zip(&expected) {
        let e = serde_json::to_value(e).unwrap();
        for key in [
            "rows",
            "feedback_rows",
            "rows_seen",
            "selection",
            "outcomes",
            "drift",
        ] {
            assert_eq!(w[key], e[key], "window at {}: {key}", e["rows_seen"]);
        }
    }
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["metric"] == paths::DEMOGRAPHIC_PARITY_DIFFERENCE && e["kind"] == "breached")
    );
    assert!(t["last"]["outcome_audit"]["schema"] == "valor.fair.audit/1");

    let html = dir.path().join("timeline.html");
    let (code, _, stderr) = valor(&[
        "monitor",
        "--log-dir",
        log.to_str().unwrap(),
        "--window",
        "100",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "no threshold declared: {stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("Demographic parity"),
        "{page}"
    );
    assert!(!page.contains("Drift per window"), "no reference, no drift");
}

#[test]
fn monitor_refuses_an_unknown_output_format() {
    let (code, _, err) = valor(&[
        "monitor",
        "--log-dir",
        "/nonexistent",
        "--out",
        "report.txt",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains(".json or .html"), "{err}");
}
