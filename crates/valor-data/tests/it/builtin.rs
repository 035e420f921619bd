//! The built-in dataset through the public pipeline: generate, write in every
//! format, load with its spec, split, tokenize, batch.

use valor_data::inspect::inspect;
use valor_data::{
    BatchConfig, SplitConfig, SynthConfig, TextTokenizer, builtin_spec, generate, load_dataset,
    plan_batches, read_table, split,
};

#[test]
fn written_file_loads_with_its_spec_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(&SynthConfig {
        rows: 500,
        ..Default::default()
    });
    let mut first = None;
    for ext in ["csv", "parquet", "jsonl"] {
        let path = dir.path().join(format!("finance.{ext}"));
        data.write(&path).unwrap();
        let (d, _) = load_dataset(&builtin_spec(&path)).unwrap();
        assert_eq!(d.len(), 500);
        assert_eq!(d.label_names, vec!["conservative", "balanced", "growth"]);
        assert_eq!(d.texts, data.texts);
        assert_eq!(d.twins.as_ref().unwrap(), &data.twins);
        let labels: Vec<usize> = d.labels.iter().map(|l| l.0 as usize).collect();
        assert_eq!(labels, data.historical);
        match &first {
            None => first = Some(d),
            Some(f) => assert_eq!(
                (&f.texts, &f.labels, &f.groups),
                (&d.texts, &d.labels, &d.groups)
            ),
        }
    }
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    generate(&SynthConfig {
        rows: 300,
        ..Default::default()
    })
    .write(&a)
    .unwrap();
    generate(&SynthConfig {
        rows: 300,
        ..Default::default()
    })
    .write(&b)
    .unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn inspect_reports_the_historical_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("finance.csv");
    generate(&SynthConfig::default()).write(&path).unwrap();
    let spec = builtin_spec(&path);
    let (d, w) = load_dataset(&spec).unwrap();
    let report = inspect(
        &d,
        &read_table(&path).unwrap(),
        &w,
        "label",
        Some("fair_label"),
    );
    let gap = |label_col: &str| {
        let g = report
            .group_summaries
            .iter()
            .find(|g| g.column == "gender" && g.label_column == label_col)
            .unwrap();
        g.gaps.iter().find(|x| x.label == "growth").unwrap().clone()
    };
    let hist = gap("label");
    assert!(hist.gap > 0.1, "historical growth gap {}", hist.gap);
    assert_eq!(
        (hist.highest_group.as_str(), hist.lowest_group.as_str()),
        ("male", "female")
    );
    assert!(
        gap("fair_label").gap < 0.04,
        "fair growth gap {}",
        gap("fair_label").gap
    );
    assert!(report.to_text().contains("label `label` rate by `gender`"));
}

#[test]
fn split_tokenize_batch() {
    let data = generate(&SynthConfig {
        rows: 1200,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.parquet");
    data.write(&path).unwrap();
    let (d, _) = load_dataset(&builtin_spec(&path)).unwrap();
    let s = split(&d, &SplitConfig::default()).unwrap();
    let train = d.subset(&s.train);
    let tok = TextTokenizer::train_wordpiece(&train.texts.as_strs(), 1500, 96).unwrap();
    let enc = tok.encode_batch(&train.texts.as_strs()).unwrap();
    assert!(enc.iter().all(|e| e.len() <= 96 && e.len() > 10));
    let unk = tok.token_to_id("[UNK]").unwrap();
    let unk_rate = enc
        .iter()
        .flat_map(|e| &e.ids)
        .filter(|&&i| i == unk)
        .count() as f64
        / enc.iter().map(|e| e.len()).sum::<usize>() as f64;
    assert!(unk_rate < 0.01, "unknown-token rate {unk_rate}");
    let lengths: Vec<usize> = enc.iter().map(|e| e.len()).collect();
    let plan = plan_batches(&lengths, &BatchConfig::default(), 0);
    assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), train.len());
}
