//! Audit benchmarks (run by `cargo xtask bench`) on the data set of
//! `../shared/bench/fair_data.py`, the input of the fairlearn peer
//! (`bench_fairness.py`): SplitMix64 seeded with 42, three draws per row for
//! group (A/B/C), `y_true` and `y_pred`, written as `fair_<n>.csv` in
//! `$VALOR_BENCH_DATA`.
//!
//! The generator below reproduces `fair_data.py` exactly. When the CSV is
//! already there (the peer wrote it) it is read and checked row by row against
//! the generator; when it is missing it is written here, byte for byte in the
//! peer's format, and the peer checks it against its own generator. Either
//! way both sides time the same rows.
//!
//! Timed: `AuditInput::from_strings` + `with_group` + [`audit`] with the default
//! metric set and no bootstrap, from in-memory columns, against fairlearn's
//! `MetricFrame(...)` + `.difference()` + `.ratio()` on in-memory pandas
//! Series (neither side's time includes reading the CSV).
#![allow(clippy::print_stderr)]

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use valor_base::csv::RecordWriter;
use valor_base::splitmix::{splitmix64, unit_f64};
use valor_fair::{AuditConfig, AuditInput, GroupSpec, audit};

const GROUPS: [&str; 3] = ["A", "B", "C"];
const BASE: [f64; 3] = [0.30, 0.40, 0.50];
const TPR: [f64; 3] = [0.80, 0.70, 0.60];
const FPR: [f64; 3] = [0.10, 0.15, 0.25];

/// The k-th SplitMix64 output for `seed`, as a double in [0, 1).
fn uniform(seed: u64, k: u64) -> f64 {
    unit_f64(splitmix64(seed, k))
}

/// Rows of `fair_data.generate(n, seed)`: (y_true, y_pred, group index).
fn generate(n: usize, seed: u64) -> Vec<(u8, u8, usize)> {
    (0..n as u64)
        .map(|i| {
            let (ug, ut, up) = (
                uniform(seed, 3 * i),
                uniform(seed, 3 * i + 1),
                uniform(seed, 3 * i + 2),
            );
            let g = if ug < 0.5 {
                0
            } else if ug < 0.8 {
                1
            } else {
                2
            };
            let y_true = u8::from(ut < BASE[g]);
            let threshold = if y_true == 1 { TPR[g] } else { FPR[g] };
            (y_true, u8::from(up < threshold), g)
        })
        .collect()
}

fn data_dir() -> PathBuf {
    std::env::var_os("VALOR_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("valor-peers-data"))
}

/// The CSV text `fair_data.write_csv` writes.
fn csv_text(rows: &[(u8, u8, usize)]) -> String {
    let mut w = RecordWriter::new(Vec::with_capacity(rows.len() * 6 + 20), b',');
    let write = |w: &mut RecordWriter<Vec<u8>>, r: [&str; 3]| w.write(r).expect("in memory");
    write(&mut w, ["y_true", "y_pred", "group"]);
    for &(t, p, g) in rows {
        write(&mut w, [&t.to_string(), &p.to_string(), GROUPS[g]]);
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("ASCII")
}

/// Reads (or writes) `fair_<n>.csv` and returns its columns as strings.
fn columns(path: &Path, n: usize) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    let rows = generate(n, 42);
    let expected = csv_text(&rows);
    if path.exists() {
        let found = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(
            found == expected,
            "{} differs from the SplitMix64 generator of fair_data.py; delete it to regenerate",
            path.display()
        );
    } else {
        std::fs::create_dir_all(path.parent().expect("data dir")).expect("creating data dir");
        let tmp = path.with_extension("csv.tmp");
        let mut f = std::fs::File::create(&tmp).expect("creating CSV");
        f.write_all(expected.as_bytes()).expect("writing CSV");
        f.sync_all().expect("syncing CSV");
        std::fs::rename(&tmp, path).expect("renaming CSV");
        eprintln!("wrote {}", path.display());
    }
    let label = |v: u8| if v == 1 { "1" } else { "0" };
    (
        rows.iter().map(|r| label(r.0)).collect(),
        rows.iter().map(|r| label(r.1)).collect(),
        rows.iter().map(|r| GROUPS[r.2]).collect(),
    )
}

fn wanted(id: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--") && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

fn fair(c: &mut Criterion) {
    let mut g = c.benchmark_group("fair");
    g.sample_size(10);
    for (id, n) in [("audit_10k_rows", 10_000), ("audit_1m_rows", 1_000_000)] {
        if !wanted(&format!("fair/{id}")) {
            continue;
        }
        let (y_true, y_pred, group) = columns(&data_dir().join(format!("fair_{n}.csv")), n);
        let mut config = AuditConfig::default();
        config.specs = vec![GroupSpec::single("group")];
        g.bench_function(id, |b| {
            b.iter(|| {
                let input = AuditInput::from_strings(&y_true, &y_pred, None)
                    .and_then(|i| i.with_group("group", &group))
                    .expect("audit input");
                black_box(audit(&input, &config).expect("audit"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fair);
criterion_main!(benches);
