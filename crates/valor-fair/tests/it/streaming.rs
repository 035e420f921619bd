//! Streaming counts and the sliding-window monitor on the adult predictions.

use valor_fair::{
    AuditConfig, ConfusionCounts, CountsSummaryConfig, GroupId, GroupSpec, LabelSet,
    MonitorEventKind, Threshold, WindowMonitor, audit, paths,
};

use crate::support::{Csv, fairness_dir};

#[valor_testkit::shared_test]
fn counts_fed_in_batches_give_the_audit_numbers() {
    let shared = valor_testkit::shared_dir();
    let csv = Csv::read(&fairness_dir(&shared).join("adult_predictions.csv"));
    let labels = LabelSet::new(&["0", "1"]).unwrap();
    let t = labels.encode("y_true", csv.col("y_true")).unwrap();
    let p = labels.encode("y_pred", csv.col("y_pred")).unwrap();
    let groups = vec!["Female".to_owned(), "Male".to_owned()];
    let g: Vec<GroupId> = csv
        .col("sex")
        .iter()
        .map(|s| GroupId::new(u32::from(s == "Male")))
        .collect();
    let mut counts = ConfusionCounts::new(&labels, groups).unwrap();
    for start in (0..t.len()).step_by(512) {
        let end = (start + 512).min(t.len());
        counts
            .add_batch(&t[start..end], &p[start..end], &g[start..end])
            .unwrap();
    }
    let streamed = counts
        .summary(&CountsSummaryConfig {
            name: "sex".into(),
            privileged: vec!["Male".into()],
            ..Default::default()
        })
        .unwrap();
    let input = csv.input(None, false, &["sex"]);
    let report = audit(&input, &AuditConfig::default().privilege("sex", "Male")).unwrap();
    let spec = report.spec("sex").unwrap();
    assert_eq!(streamed.fairlearn, spec.fairlearn);
    assert_eq!(streamed.aif360, spec.aif360);
    assert_eq!(streamed.metrics, spec.metrics);
    assert_eq!(streamed.reweighing, spec.reweighing);
}

#[valor_testkit::shared_test]
fn monitor_flags_breaches_and_its_window_matches_an_audit() {
    let shared = valor_testkit::shared_dir();
    let csv = Csv::read(&fairness_dir(&shared).join("adult_predictions.csv"));
    let labels = LabelSet::new(&["0", "1"]).unwrap();
    let mut config = AuditConfig::default().privilege("sex", "Male");
    config.specs = vec![GroupSpec::single("sex")];
    config.thresholds = vec![Threshold::at_most(
        paths::DEMOGRAPHIC_PARITY_DIFFERENCE,
        0.17,
    )];
    let window = 2000;
    let mut m = WindowMonitor::new(labels, vec!["sex".into(), "race".into()], window, &config)
        .unwrap()
        .with_check_every(10);
    let (yt, yp, sex, race) = (
        csv.col("y_true"),
        csv.col("y_pred"),
        csv.col("sex"),
        csv.col("race"),
    );
    let mut events = Vec::new();
    for i in 0..yt.len() {
        events.extend(m.push(&yt[i], &yp[i], &[&sex[i], &race[i]]).unwrap());
    }
    // the full-data DP difference is 0.1696: windows move around the limit
    assert!(!events.is_empty());
    assert_eq!(events[0].kind, MonitorEventKind::Breached);
    for w in events.windows(2) {
        assert_ne!(w[0].kind, w[1].kind, "events alternate");
    }
    assert_eq!(m.rows_seen(), yt.len() as u64);
    let snap = m.snapshot().unwrap();
    let n = yt.len();
    let last = |c: &[String]| c[n - window..].to_vec();
    let input = valor_fair::AuditInput::from_strings(&last(yt), &last(yp), None)
        .unwrap()
        .with_group("sex", &last(sex))
        .unwrap();
    let mut c = AuditConfig::default().privilege("sex", "Male");
    c.specs = vec![GroupSpec::single("sex")];
    let r = audit(&input, &c).unwrap();
    assert_eq!(snap[0].fairlearn, r.specs[0].fairlearn);
    assert_eq!(snap[0].aif360, r.specs[0].aif360);
}
