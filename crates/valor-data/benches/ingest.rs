//! Ingestion and tokenization benchmarks (run by `cargo xtask bench`).
//!
//! The CSV has the shape of `../shared/bench/bench_csv.py`'s file (id, age,
//! income, group, label, ~100-character text, half of the texts quoted with a
//! comma inside). If that script already wrote `text_1m.csv` into
//! `$VALOR_BENCH_DATA`, the same file is read, so both sides time the same bytes.
#![allow(clippy::print_stderr)]

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use valor_base::csv::RecordWriter;
use valor_data::dataset::read_dataset;
use valor_data::{DatasetSpec, SpecArgs, TextTokenizer, read_table};

const WORDS: &str = "the service was quick and friendly but the food arrived cold while staff \
seemed overwhelmed tonight great value would recommend never again loved it terrible experience \
average at best surprisingly good clean quiet room loud music parking easy location central price \
fair slow checkout";

fn data_dir() -> PathBuf {
    std::env::var_os("VALOR_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("valor-peers-data"))
}

fn ensure_csv(path: &Path, rows: usize) {
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let groups = ["north", "south", "east", "west"];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let tmp = path.with_extension("tmp");
    let mut f = RecordWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap()),
        b',',
    );
    f.write(["id", "age", "income", "group", "label", "text"])
        .unwrap();
    for i in 0..rows {
        let n = rng.random_range(12..19);
        let mut ws: Vec<String> = (0..n)
            .map(|_| words[rng.random_range(0..words.len())].to_string())
            .collect();
        let comma = rng.random_bool(0.5);
        if comma {
            let mid = ws.len() / 2;
            ws[mid].push(',');
        }
        // The writer quotes the texts with a comma, as the peer's file does.
        let text = ws.join(" ");
        let age = rng.random_range(18..91).to_string();
        let income = format!("{:.2}", rng.random_range(10_000.0..200_000.0f64));
        let group = groups[rng.random_range(0..4)];
        let label = rng.random_range(0..3).to_string();
        f.write([&i.to_string(), &age, &income, group, &label, &text])
            .unwrap();
    }
    f.into_inner().unwrap().flush().unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn spec(path: &Path) -> DatasetSpec {
    DatasetSpec::from_args(
        SpecArgs {
            path: Some(path.to_path_buf()),
            text_col: Some("text".into()),
            label_col: Some("label".into()),
            groups: vec!["group".into()],
            ..Default::default()
        },
        "bench",
    )
    .unwrap()
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    for (id, rows, file) in [
        ("csv_100k_rows", 100_000, "text_100k.csv"),
        ("csv_1m_rows", 1_000_000, "text_1m.csv"),
    ] {
        let path = data_dir().join(file);
        ensure_csv(&path, rows);
        let spec = spec(&path);
        g.bench_function(id, |b| {
            b.iter(|| {
                let (d, _) = read_dataset(&spec).unwrap();
                black_box(d.len())
            })
        });
    }
    g.finish();
}

fn tokenize(c: &mut Criterion) {
    let Some(shared) = std::env::var_os("VALOR_SHARED_DIR").map(PathBuf::from) else {
        eprintln!("SKIPPED tokenize benchmark: set VALOR_SHARED_DIR");
        return;
    };
    let tok = TextTokenizer::from_model_dir(&shared.join("models/all-MiniLM-L6-v2"), 128).unwrap();
    let path = data_dir().join("text_100k.csv");
    ensure_csv(&path, 100_000);
    let texts: Vec<String> = read_table(&path)
        .unwrap()
        .strings("text")
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    let mut g = c.benchmark_group("tokenize");
    g.sample_size(10);
    g.bench_function("minilm_100k_sentences", |b| {
        b.iter(|| black_box(tok.encode_batch(&texts).unwrap().len()))
    });
    g.finish();
}

criterion_group!(benches, ingest, tokenize);
criterion_main!(benches);
