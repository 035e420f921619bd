//! `valor audit --engine spark` against a real Spark Connect server (built
//! with the `spark` feature; `.ci/run` starts the server on loopback and
//! sets `VALOR_SPARK_REMOTE`): Spark counts a Parquet log, Valor audits the
//! counts, and the report is the local audit's of the same rows.

use serde_json::Value;

use crate::{adult_flags, valor};

/// The adult predictions (shared fixture) as Parquet parts in `dir`, every
/// column text but the score; with `blank_sex_at` a row whose `sex` is
/// empty.
fn write_parquet_parts(dir: &std::path::Path, blank_sex_at: Option<usize>) {
    let shared = valor_testkit::shared_dir();
    let csv = shared.join("fixtures/fairness/adult_predictions.csv");
    let table = valor_data::read_table(&csv).unwrap();
    let n = table.n_rows();
    let half = n / 2;
    for (i, range) in [0..half, half..n].into_iter().enumerate() {
        let columns = table
            .column_names()
            .iter()
            .map(|c| {
                let mut v: Vec<String> = table.strings(c).unwrap()[range.clone()]
                    .iter()
                    .map(|s| s.clone().unwrap())
                    .collect();
                if let Some(at) = blank_sex_at
                    && c == "sex"
                    && range.contains(&at)
                {
                    v[at - range.start] = String::new();
                }
                let data = if c == "y_score" {
                    valor_data::ColumnData::Float(v.iter().map(|s| s.parse().unwrap()).collect())
                } else {
                    valor_data::ColumnData::Text(v)
                };
                (c.clone(), data)
            })
            .collect();
        valor_data::write_table(&dir.join(format!("part-{i}.parquet")), columns).unwrap();
    }
}

/// `valor audit ARGS --json`: exit code, the report without its provenance
/// (the source is named differently), stderr.
fn audit(args: &[impl AsRef<str>]) -> (i32, Value, String) {
    let mut all = vec!["audit"];
    all.extend(args.iter().map(AsRef::as_ref));
    all.push("--json");
    let (code, stdout, stderr) = valor(&all);
    let mut v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("provenance");
    }
    (code, v, stderr)
}

/// `a` and `b` have the same shape, strings and integers, and floats
/// within `rel` of each other (score sums added in another order by Spark).
fn assert_same(path: &str, a: &Value, b: &Value, rel: f64) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            assert_eq!(kx, ky, "{path}");
            for k in x.keys() {
                assert_same(&format!("{path}/{k}"), &x[k], &y[k], rel);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_same(&format!("{path}/{i}"), p, q, rel);
            }
        }
        (Value::Number(p), Value::Number(q)) if p.is_f64() || q.is_f64() => {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            assert!(
                (p - q).abs() <= rel * p.abs().max(q.abs()),
                "{path}: {p} vs {q}"
            );
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// The adult tests' flags (`adult_flags`), then `extra`.
fn flags(source: &str, extra: &[&str]) -> Vec<String> {
    let mut f = adult_flags(source);
    f.extend(extra.iter().map(|s| s.to_string()));
    f
}

#[valor_testkit::spark_test]
fn spark_counts_a_parquet_log_into_the_local_audit_number_for_number() {
    let remote = valor_testkit::spark_remote();
    // No dot in the path: it is also read as the table `parquet`.`<path>`.
    let dir = tempfile::Builder::new()
        .prefix("valor-spark-")
        .tempdir()
        .unwrap();
    let parts = dir.path().join("log");
    std::fs::create_dir(&parts).unwrap();
    write_parquet_parts(&parts, None);
    let source = parts.to_str().unwrap();
    let spark = ["--engine", "spark", "--remote", remote.as_str()];

    // Without scores: the report is the local one, bit for bit (bootstrap
    // included: it resamples the same cells).
    let (code, local, stderr) = audit(&flags(source, &["--stream"]));
    assert!(code == 0 || code == 1, "{stderr}");
    let (spark_code, by_spark, stderr) = audit(&flags(source, &spark));
    assert_eq!(spark_code, code, "{stderr}");
    assert_eq!(by_spark, local, "Spark's counts give the local report");
    // The same files as a table of Spark's (`--table`, quoted per part):
    // Spark SQL reads `parquet`.`/path` as the files there.
    assert!(!source.contains('.'), "{source}");
    let table = format!("parquet.{source}");
    let mut f = flags(source, &spark);
    f.drain(0..2);
    f.extend(["--table", table.as_str()].map(String::from));
    let (table_code, by_table, stderr) = audit(&f);
    assert_eq!(table_code, code, "{stderr}");
    assert_eq!(by_table, local, "a Spark table gives the local report");

    // With scores, and the counts themselves: the same cells, score sums
    // equal but for the order of the additions.
    let counts_local = dir.path().join("local.csv");
    let counts_spark = dir.path().join("spark.csv");
    let scored = |counts: &std::path::Path, more: &[&str]| -> (i32, Value, String) {
        let mut extra = vec![
            "--score-col",
            "y_score",
            "--write-counts",
            counts.to_str().unwrap(),
        ];
        extra.extend_from_slice(more);
        audit(&flags(source, &extra))
    };
    let (_, local, stderr) = scored(&counts_local, &["--stream"]);
    assert!(local.is_object(), "{stderr}");
    let (_, by_spark, stderr) = scored(&counts_spark, &spark);
    assert!(by_spark.is_object(), "{stderr}");
    assert_same("", &by_spark, &local, 1e-12);
    assert!(
        by_spark["specs"][0]["metrics"]["roc_auc"]["overall"].is_number(),
        "{by_spark}"
    );
    let read = |p: &std::path::Path| -> Vec<Vec<String>> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    };
    let (l, s) = (read(&counts_local), read(&counts_spark));
    assert_eq!(l.len(), s.len(), "as many cells");
    assert!(l.len() > 100, "{} cells", l.len());
    for (a, b) in l.iter().zip(&s) {
        // Every column but score_sum, the last, is identical.
        assert_eq!(a[..a.len() - 1], b[..b.len() - 1]);
        if let (Ok(x), Ok(y)) = (a[a.len() - 1].parse::<f64>(), b[b.len() - 1].parse::<f64>()) {
            assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }
}

#[valor_testkit::spark_test]
fn spark_refuses_rows_valor_refuses_and_names_the_column() {
    let remote = valor_testkit::spark_remote();
    let dir = tempfile::tempdir().unwrap();
    write_parquet_parts(dir.path(), Some(17));
    let source = dir.path().to_str().unwrap();
    let spark = ["--engine", "spark", "--remote", remote.as_str()];
    // Valor's own reader stops at the row.
    let (code, _, stderr) = audit(&flags(source, &["--stream"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("column `sex`: empty value"), "{stderr}");
    // Spark's GROUP BY would have counted it as a group ``; it is refused.
    let (code, _, stderr) = audit(&flags(source, &spark));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("column `sex`: 1 of ") && stderr.contains("rows have no value"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A path Spark cannot read, and a missing column: Spark's error, named.
    let missing = dir.path().join("nothing-here");
    let (code, _, stderr) = audit(&flags(missing.to_str().unwrap(), &spark));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing-here"), "{stderr}");
    let mut f = flags(source, &spark);
    f.extend(["--group", "no_such_column"].map(String::from));
    let (code, _, stderr) = audit(&f);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no_such_column"), "{stderr}");
}

#[test]
fn spark_without_a_server_says_so_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let remote = format!("sc://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let (code, _, stderr) = audit(&[
        "--engine",
        "spark",
        "--remote",
        remote.as_str(),
        "--table",
        "preds",
        "--group",
        "sex",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no Spark Connect server answers at") && stderr.contains(&remote),
        "{stderr}"
    );
    assert!(started.elapsed().as_secs() < 30);
    let (code, _, stderr) = audit(&[
        "--engine",
        "spark",
        "--remote",
        "http://127.0.0.1:15002",
        "--group",
        "sex",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is not a Spark Connect address"),
        "{stderr}"
    );
}
