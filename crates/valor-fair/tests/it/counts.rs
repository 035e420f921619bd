//! Counts as the audit's input: the report of counts equals the report of
//! the rows they count, and counts of two parts merge into the counts of
//! the whole.

use proptest::prelude::*;
use serde_json::Value;
use valor_fair::{
    AuditConfig, AuditCounts, AuditInput, BootstrapConfig, CodedChunk, CodedColumn, CountsBuilder,
    Error, GroupSpec, LabelSet, ScoreBins, Threshold, WarningKind, audit, audit_counts, paths,
};

/// A deterministic table: `n` rows, `k` labels, two group columns, scores
/// from `score(i)`.
fn table(n: usize, k: u8, seed: u64, score: &dyn Fn(u64) -> f64) -> AuditInput {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut t, mut p, mut sex, mut age, mut sc) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let g = next() % 3;
        let truth = (next() % u64::from(k)) as u8;
        // predictions agree with the truth more often in group 0
        let pred = if next() % (2 + g) == 0 {
            (next() % u64::from(k)) as u8
        } else {
            truth
        };
        t.push(truth.to_string());
        p.push(pred.to_string());
        sex.push(["f", "m", "x"][g as usize]);
        age.push(["young", "old"][(next() % 2) as usize]);
        sc.push(score(next()));
    }
    let labels: Vec<String> = (0..k).map(|i| i.to_string()).collect();
    let mut i = AuditInput::from_strings(&t, &p, Some(LabelSet::new(&labels).unwrap()))
        .unwrap()
        .with_group("sex", &sex)
        .unwrap()
        .with_group("age", &age)
        .unwrap();
    if k == 2 {
        i = i.with_scores(sc).unwrap();
    }
    i
}

fn config(ordinal: bool) -> AuditConfig {
    let mut c = AuditConfig::default()
        .privilege("sex", "m")
        .privilege("sex+age", "m|old");
    c.specs = GroupSpec::from_columns(&["sex".to_string(), "age".to_string()], true);
    c.ordinal = ordinal;
    c.bootstrap = Some(BootstrapConfig::new(200, 7));
    let metric = if ordinal {
        paths::MULTICLASS_SELECTION_RATE_GAP
    } else {
        paths::DEMOGRAPHIC_PARITY_DIFFERENCE
    };
    c.thresholds.push(Threshold::at_most(metric, 0.01));
    c
}

/// Equal JSON, numbers within `tol` (relative to their size).
fn same(a: &Value, b: &Value, tol: f64, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= tol * x.abs().max(1.0),
                "{path}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same(x, y, tol, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            assert_eq!(kx, ky, "{path}: keys");
            for (k, v) in x {
                same(v, &y[k], tol, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn counts_give_the_report_of_the_rows_multiclass_ordinal_with_bootstrap() {
    let rows = table(3000, 3, 11, &|_| 0.5);
    let cfg = config(true);
    let direct = audit(&rows, &cfg).unwrap();
    let counts = AuditCounts::from_input(&rows, None).unwrap();
    assert_eq!(counts.rows(), 3000);
    let counted = audit_counts(&counts, &cfg).unwrap();
    assert!(direct.specs[2].multiclass.is_some() && !direct.specs[2].ordinal.is_empty());
    assert!(direct.bootstrap.is_some() && !direct.breaches.is_empty());
    // identical, to the bit: the same cell counts, the same resamples
    assert_eq!(
        direct.to_json_pretty().unwrap(),
        counted.to_json_pretty().unwrap()
    );
}

#[test]
fn counts_give_the_report_of_the_rows_binary_with_scores() {
    // Scores at bin centres of 1000 bins (one distinct score per bin): the
    // binned AUC and ROC are then the exact ones; calibration sums differ
    // only in rounding.
    let rows = table(4000, 2, 5, &|r| ((r % 1000) as f64 + 0.5) / 1000.0);
    let cfg = config(false);
    let direct = audit(&rows, &cfg).unwrap();
    let bins = ScoreBins::new(1000, cfg.ece_bins).unwrap();
    let counts = AuditCounts::from_input(&rows, Some(bins)).unwrap();
    let mut counted = audit_counts(&counts, &cfg).unwrap();
    let binned: Vec<_> = counted
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::ScoresBinned)
        .cloned()
        .collect();
    assert_eq!(binned.len(), 1, "{:?}", counted.warnings);
    counted
        .warnings
        .retain(|w| w.kind != WarningKind::ScoresBinned);
    assert!(direct.specs[0].roc.is_some() && direct.specs[0].calibration.is_some());
    let a: Value = serde_json::from_str(&direct.to_json_pretty().unwrap()).unwrap();
    let b: Value = serde_json::from_str(&counted.to_json_pretty().unwrap()).unwrap();
    same(&a, &b, 1e-12, "report");
    // everything but the score sums is exact
    let strip = |mut v: Value| {
        for s in v["specs"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("calibration");
            s["metrics"]
                .as_object_mut()
                .unwrap()
                .remove("expected_calibration_error");
        }
        v
    };
    assert_eq!(strip(a), strip(b));
}

#[test]
fn counts_with_other_calibration_bins_are_refused() {
    let rows = table(200, 2, 3, &|r| (r % 97) as f64 / 97.0);
    let counts = AuditCounts::from_input(&rows, Some(ScoreBins::new(100, 5).unwrap())).unwrap();
    let err = audit_counts(&counts, &AuditConfig::default()).unwrap_err();
    assert!(err.to_string().contains("5 calibration bins"), "{err}");
}

fn split_rows(n: usize, cut: usize, seed: u64) -> (AuditInput, AuditInput, AuditInput) {
    // scores k/16 add up exactly in any order
    let score = |r: u64| (r % 17) as f64 / 16.0;
    let all = table(n, 2, seed, &score);
    let part = |range: std::ops::Range<usize>| {
        let names = all.labels().names();
        let t: Vec<&str> = all.y_true()[range.clone()]
            .iter()
            .map(|l| names[l.index()].as_str())
            .collect();
        let p: Vec<&str> = all.y_pred()[range.clone()]
            .iter()
            .map(|l| names[l.index()].as_str())
            .collect();
        let mut i = AuditInput::from_strings(&t, &p, Some(all.labels().clone()))
            .unwrap()
            .with_scores(all.scores().unwrap()[range.clone()].to_vec())
            .unwrap();
        for g in all.groups() {
            let v: Vec<&str> = g.codes()[range.clone()]
                .iter()
                .map(|&c| g.levels()[c as usize].as_str())
                .collect();
            i = i.with_group(g.name(), &v).unwrap();
        }
        i
    };
    (part(0..cut), part(cut..n), all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn counts_of_two_parts_merge_into_the_counts_of_the_whole(
        n in 2usize..400, cut_frac in 0.0f64..1.0, seed in any::<u64>()
    ) {
        let cut = ((n as f64 * cut_frac) as usize).clamp(1, n - 1);
        let (a, b, all) = split_rows(n, cut, seed);
        let bins = Some(ScoreBins::new(16, 4).unwrap());
        let mut merged = AuditCounts::from_input(&a, bins).unwrap();
        merged.merge(&AuditCounts::from_input(&b, bins).unwrap()).unwrap();
        let whole = AuditCounts::from_input(&all, bins).unwrap();
        prop_assert_eq!(&merged, &whole);
        // and merging is what the audit sees: the same report
        let mut cfg = AuditConfig::default();
        cfg.ece_bins = 4;
        cfg.min_group_size = 0;
        let x = audit_counts(&merged, &cfg).unwrap().to_json_pretty().unwrap();
        let y = audit_counts(&whole, &cfg).unwrap().to_json_pretty().unwrap();
        prop_assert_eq!(x, y);
    }
}

#[test]
fn merging_counts_of_other_columns_is_refused() {
    let a = AuditCounts::new(vec!["sex".into()], None, None).unwrap();
    let mut b = AuditCounts::new(vec!["age".into()], None, None).unwrap();
    assert!(b.merge(&a).is_err());
}

/// One row of [`chunked_rows`]: label, prediction, two group values (value
/// indices) and a score in eighths.
type Row = (usize, usize, usize, usize, u8);

/// The rows coded as a table chunk codes them, each value under `copies`
/// codes (a chunk may repeat a value), counted chunk by chunk.
fn chunked_rows(
    rows: &[Row],
    chunk: usize,
    copies: usize,
    labels: Option<LabelSet>,
    bins: Option<ScoreBins>,
) -> valor_fair::Result<AuditCounts> {
    let (names, g1, g2) = (
        ["0", "1", "2"],
        ["f", "m", "x", "y"],
        ["young", "old", "mid"],
    );
    let values = |names: &[&'static str]| -> Vec<Option<&'static str>> {
        names
            .iter()
            .flat_map(|n| std::iter::repeat_n(Some(*n), copies))
            .collect()
    };
    let (lv, v1, v2) = (values(&names), values(&g1), values(&g2));
    let mut b = CountsBuilder::new(vec!["sex".into(), "age".into()], labels, bins)?;
    for (c, part) in rows.chunks(chunk).enumerate() {
        let code = |i: usize, v: usize| (v * copies + i % copies) as u32;
        let col = |f: &dyn Fn(&Row) -> usize| -> Vec<u32> {
            part.iter()
                .enumerate()
                .map(|(i, r)| code(i, f(r)))
                .collect()
        };
        let (t, p, a, b2) = (col(&|r| r.0), col(&|r| r.1), col(&|r| r.2), col(&|r| r.3));
        let scores: Vec<Option<f64>> = part.iter().map(|r| Some(f64::from(r.4) / 8.0)).collect();
        let groups = [
            CodedColumn {
                codes: &a,
                values: &v1,
            },
            CodedColumn {
                codes: &b2,
                values: &v2,
            },
        ];
        b.add_chunk(
            &CodedChunk {
                y_true: CodedColumn {
                    codes: &t,
                    values: &lv,
                },
                y_pred: CodedColumn {
                    codes: &p,
                    values: &lv,
                },
                groups: &groups,
                scores: bins.map(|_| scores.as_slice()),
            },
            c * chunk,
        )?;
    }
    b.finish()
}

/// The same rows, one `add_row` at a time.
fn row_by_row(rows: &[Row], labels: Option<LabelSet>, bins: Option<ScoreBins>) -> AuditCounts {
    let (names, g1, g2) = (
        ["0", "1", "2"],
        ["f", "m", "x", "y"],
        ["young", "old", "mid"],
    );
    let mut b = CountsBuilder::new(vec!["sex".into(), "age".into()], labels, bins).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let score = bins.map(|_| f64::from(r.4) / 8.0);
        b.add_row(names[r.0], names[r.1], &[g1[r.2], g2[r.3]], score, i)
            .unwrap();
    }
    b.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Chunks of coded rows count as their rows do, whether a chunk is
    /// counted densely (few codes) or row by row (many codes), with and
    /// without declared labels and scores (eighths: sums exact in any order).
    #[test]
    fn coded_chunks_count_as_their_rows(
        rows in proptest::collection::vec((0usize..3, 0usize..3, 0usize..4, 0usize..3, 0u8..=8), 1..300),
        chunk in 1usize..80,
        copies in 1usize..9,
        scored in any::<bool>(),
        declared in any::<bool>(),
    ) {
        let mut rows = rows;
        let bins = scored.then(|| ScoreBins::new(8, 4).unwrap());
        if scored {
            for r in &mut rows {
                r.0 %= 2;
                r.1 %= 2;
            }
        }
        let k = if scored { 2 } else { 3 };
        let labels = declared.then(|| LabelSet::new(&["0", "1", "2"][..k]).unwrap());
        if !declared && scored {
            // Inferred labels must be two: make sure both occur.
            rows[0].0 = 0;
            rows[0].1 = 1;
        }
        let expected = row_by_row(&rows, labels.clone(), bins);
        let counted = chunked_rows(&rows, chunk, copies, labels, bins).unwrap();
        prop_assert_eq!(counted, expected);
    }
}

#[test]
fn a_coded_chunk_names_its_first_bad_row() {
    let labels = LabelSet::new(&["0", "1"]).unwrap();
    let bins = ScoreBins::new(10, 10).unwrap();
    let lv = [Some("0"), Some("1"), Some("2"), None];
    let gv = [Some("f"), None];
    let count = |t: &[u32], g: &[u32], s: &[Option<f64>]| -> Error {
        let mut b =
            CountsBuilder::new(vec!["sex".into()], Some(labels.clone()), Some(bins)).unwrap();
        let groups = [CodedColumn {
            codes: g,
            values: &gv,
        }];
        let chunk = CodedChunk {
            y_true: CodedColumn {
                codes: t,
                values: &lv,
            },
            y_pred: CodedColumn {
                codes: &[0; 4],
                values: &lv,
            },
            groups: &groups,
            scores: Some(s),
        };
        let err = b.add_chunk(&chunk, 100).unwrap_err();
        // a chunk with a bad row counts nothing
        assert!(matches!(b.finish(), Err(Error::Empty { .. })));
        err
    };
    let ok = [Some(0.5); 4];
    // an unknown label at row 2 comes before a missing group at row 3
    let e = count(&[0, 1, 2, 0], &[0, 0, 0, 1], &ok);
    assert!(
        matches!(e, Error::UnknownLabel { row: 102, ref column, .. } if column == "y_true"),
        "{e:?}"
    );
    let e = count(&[0, 1, 0, 0], &[0, 1, 0, 0], &ok);
    assert!(
        matches!(e, Error::MissingValue { row: 101, ref column } if column == "sex"),
        "{e:?}"
    );
    let e = count(&[0, 3, 0, 0], &[0, 0, 0, 0], &ok);
    assert!(
        matches!(e, Error::MissingValue { row: 101, ref column } if column == "y_true"),
        "{e:?}"
    );
    // a bad score before any bad value
    let e = count(
        &[0, 1, 0, 2],
        &[0; 4],
        &[Some(0.5), Some(f64::NAN), None, Some(0.5)],
    );
    assert!(matches!(e, Error::NonFiniteScore { row: 101, .. }), "{e:?}");
    let e = count(
        &[0, 1, 0, 2],
        &[0; 4],
        &[Some(0.5), Some(0.1), None, Some(1.5)],
    );
    assert!(
        matches!(e, Error::MissingValue { row: 102, ref column } if column == "y_score"),
        "{e:?}"
    );
    // codes past the values
    let e = count(&[0, 4, 0, 0], &[0; 4], &ok);
    assert!(
        matches!(e, Error::LabelIdOutOfRange { row: 101, .. }),
        "{e:?}"
    );
}
