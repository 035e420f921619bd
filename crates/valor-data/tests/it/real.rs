//! Real datasets from `../shared/datasets`, checked against the counts in
//! their SOURCE.md files.

use std::path::PathBuf;

use valor_data::{Dataset, DatasetSpec, Preset, SpecArgs, load_dataset};

fn load(preset: Preset, path: PathBuf) -> Dataset {
    let spec = DatasetSpec::from_args(
        SpecArgs {
            path: Some(path),
            preset: Some(preset),
            ..Default::default()
        },
        "test",
    )
    .unwrap();
    load_dataset(&spec).unwrap().0
}

fn label_counts(d: &Dataset) -> Vec<(String, usize)> {
    d.label_names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.clone(),
                d.labels.iter().filter(|l| l.0 as usize == i).count(),
            )
        })
        .collect()
}

fn group_counts(d: &Dataset, g: &str) -> Vec<(String, usize)> {
    let g = d.group(g).unwrap();
    g.values.iter().cloned().zip(g.counts()).collect()
}

fn owned(v: &[(&str, usize)]) -> Vec<(String, usize)> {
    v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[valor_testkit::shared_test]
fn german_credit_counts() {
    let shared = valor_testkit::shared_dir();
    let d = load(
        Preset::GermanCredit,
        shared.join("datasets/german-credit/german.data"),
    );
    assert_eq!(d.len(), 1000);
    assert_eq!(label_counts(&d), owned(&[("bad", 300), ("good", 700)]));
    assert_eq!(
        group_counts(&d, "sex"),
        owned(&[("female", 310), ("male", 690)])
    );
    let ages = group_counts(&d, "age_group");
    assert_eq!(ages.iter().map(|(_, n)| n).sum::<usize>(), 1000);
    assert!(
        d.texts[0].starts_with("checking account: below 0 DM; duration months: 6;"),
        "{}",
        &d.texts[0]
    );
    assert!(!d.texts[0].contains("personal status") && !d.texts[0].contains("age:"));
}

#[valor_testkit::shared_test]
fn adult_counts() {
    let shared = valor_testkit::shared_dir();
    let train = load(Preset::Adult, shared.join("datasets/adult/adult.data"));
    assert_eq!(train.len(), 32_561);
    assert_eq!(
        label_counts(&train),
        owned(&[("<=50K", 24_720), (">50K", 7_841)])
    );
    assert_eq!(
        group_counts(&train, "sex"),
        owned(&[("Female", 10_771), ("Male", 21_790)])
    );
    let test = load(Preset::Adult, shared.join("datasets/adult/adult.test"));
    assert_eq!(test.len(), 16_281);
    assert_eq!(
        label_counts(&test),
        owned(&[("<=50K", 12_435), (">50K", 3_846)])
    );
    assert_eq!(
        group_counts(&test, "sex"),
        owned(&[("Female", 5_421), ("Male", 10_860)])
    );
    assert_eq!(group_counts(&test, "race").len(), 5);
    assert!(
        train.texts.iter().any(|t| t.contains("workclass: unknown")),
        "`?` becomes `unknown`"
    );
}

#[valor_testkit::shared_test]
fn phrasebank_counts_every_level() {
    let shared = valor_testkit::shared_dir();
    let dir = shared.join("datasets/financial-phrasebank");
    for (file, n, neutral, positive, negative) in [
        ("Sentences_50Agree.txt", 4846, 2879, 1363, 604),
        ("Sentences_66Agree.txt", 4217, 2535, 1168, 514),
        ("Sentences_75Agree.txt", 3453, 2146, 887, 420),
        ("Sentences_AllAgree.txt", 2264, 1391, 570, 303),
    ] {
        let d = load(Preset::Phrasebank, dir.join(file));
        assert_eq!(d.len(), n, "{file}");
        assert_eq!(
            label_counts(&d),
            owned(&[
                ("negative", negative),
                ("neutral", neutral),
                ("positive", positive)
            ]),
            "{file}"
        );
        assert!(
            d.texts
                .iter()
                .all(|t| !t.is_empty() && !t.contains('\u{FFFD}')),
            "{file}: decoding"
        );
    }
}
