//! Writes the fairness reference predictions of `../shared/bench/fair_data.py`
//! (SplitMix64 seeded 42; row i takes outputs 3i, 3i+1, 3i+2 as the group,
//! truth and prediction draws; groups A/B/C at 0.5/0.3/0.2) as one Parquet
//! file of `ROWS` rows in row groups of 1,048,576, written one row group at
//! a time (memory holds one). Its first N rows are `fair_data.py`'s N-row
//! set. `cargo xtask bench --filter audit_stream` makes its input with it.
//!
//! ```text
//! cargo run --release -p valor-data --example fair_parquet -- ROWS OUT.parquet
//! ```
#![allow(clippy::print_stderr)]

use std::fs::File;

use polars::prelude::*;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const GROUP: usize = 1 << 20;

fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The k-th uniform of the stream seeded `seed` (k from 0).
fn uniform(seed: u64, k: u64) -> f64 {
    let out = fmix(seed.wrapping_add((k + 1).wrapping_mul(GOLDEN)));
    (out >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rows, out] = args.as_slice() else {
        return Err("usage: fair_parquet ROWS OUT.parquet".into());
    };
    let rows: u64 = rows.parse()?;
    let tmp = format!("{out}.partial");
    let schema = Schema::from_iter([
        Field::new("y_true".into(), DataType::Int64),
        Field::new("y_pred".into(), DataType::Int64),
        Field::new("group".into(), DataType::String),
    ]);
    let mut writer = ParquetWriter::new(File::create(&tmp)?).batched(&schema)?;
    let (base, tpr, fpr) = ([0.30, 0.40, 0.50], [0.80, 0.70, 0.60], [0.10, 0.15, 0.25]);
    let mut start = 0u64;
    while start < rows {
        let n = (rows - start).min(GROUP as u64);
        let (mut t, mut p, mut g) = (
            Vec::with_capacity(n as usize),
            Vec::with_capacity(n as usize),
            Vec::with_capacity(n as usize),
        );
        for i in start..start + n {
            let (ug, ut, up) = (
                uniform(42, 3 * i),
                uniform(42, 3 * i + 1),
                uniform(42, 3 * i + 2),
            );
            let gi = if ug < 0.5 {
                0
            } else if ug < 0.8 {
                1
            } else {
                2
            };
            let y = i64::from(ut < base[gi]);
            let thr = if y == 1 { tpr[gi] } else { fpr[gi] };
            t.push(y);
            p.push(i64::from(up < thr));
            g.push(["A", "B", "C"][gi]);
        }
        let df = DataFrame::new_infer_height(vec![
            Column::new("y_true".into(), t),
            Column::new("y_pred".into(), p),
            Column::new("group".into(), g),
        ])?;
        writer.write_batch(&df)?;
        start += n;
        eprintln!("[fair_parquet] {start} / {rows} rows");
    }
    writer.finish()?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}
