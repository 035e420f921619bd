//! Audits of predictions that live in Apache Spark: Valor sends Spark the
//! GROUP BY that counts the rows into an audit's cells
//! ([`valor_fair::counts_sql`], Spark's dialect) over Spark Connect, and
//! turns the few rows of its answer into [`AuditCounts`], from which
//! [`valor_fair::audit_counts`] computes the report locally. The rows never
//! leave Spark; the answer holds one row per (group values × true label ×
//! predicted label [× calibration bin × score bin]).
//!
//! Before counting, one more query checks what Valor's own reader would
//! refuse and the GROUP BY would silently drop or mis-bin: NULL or blank
//! labels and group values, and scores that are NULL, NaN or outside
//! [0, 1]. So an audit through Spark is the audit of the same rows read by
//! `valor audit --stream`, or an error that names the column.
//!
//! Does not know about: files on this machine (Spark reads the paths it is
//! given, from its own file systems), report formats, the CLI. Does not
//! start Spark: [`SparkRemote`] is the address of a running Spark Connect
//! server (`sc://host:port`).
//!
//! Main types: [`SparkRemote`] (a checked `sc://` address), [`Source`] (a
//! table or files Spark reads), [`CountsQuery`] (which columns, scores and
//! labels), [`count`] (runs both queries and returns [`SparkCounts`]).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use spark_connect::SparkSession;
use spark_connect::row::{Row, Value};
use valor_fair::{AuditCounts, CellKey, CellValue, LabelSet, SqlColumns, SqlDialect, counts_sql};

/// Spark Connect's port when the address names none.
pub const DEFAULT_PORT: u16 = 15002;

/// How long [`count`] waits for the server's port to accept a connection
/// before saying that nothing answers (the client itself would retry for
/// minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The temporary view (session-scoped) that files are registered as.
const FILES_VIEW: &str = "valor_audit_rows";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "`{url}` is not a Spark Connect address: {why}; expected sc://HOST:PORT (e.g. sc://127.0.0.1:15002)"
    )]
    InvalidRemote { url: String, why: String },
    #[error(
        "no Spark Connect server answers at {url} ({addr}): {source}; start one (Spark's \
         sbin/start-connect-server.sh) or pass its address with --remote"
    )]
    Unreachable {
        url: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Spark at {url}: {what}: {message}")]
    Spark {
        url: String,
        what: String,
        message: String,
    },
    #[error(
        "{source_name}: column `{column}`: {rows} of {total} rows have no value (NULL or blank); \
         Valor audits no such row: filter or fill them in Spark first"
    )]
    MissingValues {
        source_name: String,
        column: String,
        rows: u64,
        total: u64,
    },
    #[error(
        "{source_name}: column `{column}`: {rows} of {total} scores are NaN or outside [0, 1]; \
         counts bin probabilities of [0, 1]: pass probabilities"
    )]
    ScoresOutOfRange {
        source_name: String,
        column: String,
        rows: u64,
        total: u64,
    },
    #[error("Spark's answer, row {row}, column `{column}`: {why}")]
    Answer {
        row: usize,
        column: String,
        why: String,
    },
    #[error("Spark's answer, row {row}: {source}")]
    Cell {
        row: usize,
        #[source]
        source: valor_fair::Error,
    },
    #[error(transparent)]
    Fair(#[from] valor_fair::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Spark Connect address, `sc://HOST[:PORT][/;param=value…]`, checked as
/// the client checks it, with the socket address it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkRemote {
    url: String,
    addr: String,
}

impl SparkRemote {
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidRemote {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix("sc://")
            .ok_or_else(|| bad("it does not start with sc://"))?;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        // `[v6]:port`, `host:port` or a host alone.
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let addr = if has_port {
            let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
            if host.is_empty() {
                return Err(bad("no host"));
            }
            port.parse::<u16>()
                .map_err(|_| bad(&format!("`{port}` is not a port number")))?;
            authority.to_string()
        } else {
            format!("{authority}:{DEFAULT_PORT}")
        };
        spark_connect_channel_check(url).map_err(|why| bad(&why))?;
        Ok(Self {
            url: url.to_string(),
            addr,
        })
    }

    /// The address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// The client's own parse of the address (params, path), without
/// connecting.
fn spark_connect_channel_check(url: &str) -> std::result::Result<(), String> {
    SparkSession::builder()
        .remote(url)
        .get_or_create()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What Spark reads the predictions from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A table or view of Spark's catalog (`db.table` is quoted per part).
    Table(String),
    /// Parquet files as Spark's reader takes them: a file, a folder, or a
    /// glob, on Spark's file systems (`s3a://…`, `hdfs://…`, a path on the
    /// server's machine).
    Parquet(String),
}

impl Source {
    /// How errors name it.
    pub fn describe(&self) -> String {
        match self {
            Self::Table(t) => format!("Spark table `{t}`"),
            Self::Parquet(p) => format!("Parquet `{p}` (read by Spark)"),
        }
    }
}

/// What to count: the source, its columns as [`counts_sql`] reads them, and
/// the declared labels (else the labels seen).
#[derive(Debug, Clone)]
pub struct CountsQuery<'a> {
    pub source: &'a Source,
    pub columns: SqlColumns<'a>,
    pub labels: Option<LabelSet>,
}

/// The counts Spark returned, and what produced them.
#[derive(Debug, Clone)]
pub struct SparkCounts {
    pub counts: AuditCounts,
    /// Rows Spark counted (those of the source; none is dropped: rows the
    /// GROUP BY would drop are refused first).
    pub rows: u64,
    /// The server's Spark version.
    pub spark_version: String,
    /// The counting query as sent.
    pub sql: String,
}

/// Backtick quoting, as [`counts_sql`] quotes for
/// Spark.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_table(name: &str) -> String {
    name.split('.').map(quote).collect::<Vec<_>>().join(".")
}

/// The query that counts, over `table`, all rows and per used column the
/// rows the GROUP BY could not count as Valor does: NULL or blank labels
/// and group values; NULL, NaN or out-of-range scores. Columns: `rows`,
/// then one count per label/pred/group column, then one for the score.
pub fn check_sql(q: &CountsQuery<'_>, table: &str) -> String {
    let c = &q.columns;
    let mut select = vec!["  COUNT(*) AS `rows`".to_string()];
    let text_cols = [c.y_true, c.y_pred]
        .into_iter()
        .chain(c.groups.iter().map(String::as_str));
    for (i, c) in text_cols.enumerate() {
        let c = quote(c);
        select.push(format!(
            "  COALESCE(SUM(CASE WHEN {c} IS NULL OR TRIM(CAST({c} AS STRING)) = '' THEN 1 ELSE 0 END), 0) AS `missing_{i}`"
        ));
    }
    if let Some((s, _)) = c.score {
        let s = quote(s);
        select.push(format!(
            "  COALESCE(SUM(CASE WHEN {s} IS NULL OR isnan(CAST({s} AS DOUBLE)) OR {s} < 0 OR {s} > 1 \
             THEN 1 ELSE 0 END), 0) AS `bad_scores`"
        ));
    }
    format!(
        "SELECT\n{}\nFROM {}\n",
        select.join(",\n"),
        quote_table(table)
    )
}

/// Counts the rows of `q.source` in the Spark Connect server at `remote`.
pub fn count(remote: &SparkRemote, q: &CountsQuery<'_>) -> Result<SparkCounts> {
    reachable(remote)?;
    let spark = |what: &str| {
        let url = remote.url.clone();
        let what = what.to_string();
        move |e: Box<spark_connect::SparkError>| Error::Spark {
            url,
            what,
            message: e.to_string(),
        }
    };
    let session = SparkSession::builder()
        .remote(&remote.url)
        .get_or_create()
        .map_err(Box::new)
        .map_err(spark("opening a session"))?;
    let spark_version = session
        .version()
        .map_err(Box::new)
        .map_err(spark("asking its version"))?;
    let table = match q.source {
        Source::Table(t) => t.clone(),
        Source::Parquet(p) => {
            session
                .read()
                .parquet(p)
                .create_or_replace_temp_view(FILES_VIEW)
                .map_err(Box::new)
                .map_err(spark(&format!("reading Parquet `{p}`")))?;
            FILES_VIEW.to_string()
        }
    };
    let source_name = q.source.describe();

    let check = check_sql(q, &table);
    let rows = run_sql(&session, &check).map_err(spark(&format!("checking {source_name}")))?;
    let total = check_answer(q, &source_name, &rows)?;

    let sql = counts_sql(&table, &q.columns, SqlDialect::Backtick);
    let cells = run_sql(&session, &sql).map_err(spark(&format!("counting {source_name}")))?;
    let counts = counts_from_rows(q, &cells)?;
    if counts.rows() != total {
        return Err(Error::Answer {
            row: 0,
            column: "n".into(),
            why: format!(
                "the cells hold {} rows but {source_name} has {total}",
                counts.rows()
            ),
        });
    }
    // Temp views die with the session; dropping it early is tidiness only.
    if matches!(q.source, Source::Parquet(_)) {
        let _ = run_sql(
            &session,
            &format!("DROP VIEW IF EXISTS {}", quote(FILES_VIEW)),
        );
    }
    Ok(SparkCounts {
        counts,
        rows: total,
        spark_version,
        sql,
    })
}

/// Runs one statement and collects its answer (the client's error boxed:
/// it is large).
fn run_sql(session: &SparkSession, sql: &str) -> Result<Vec<Row>, Box<spark_connect::SparkError>> {
    Ok(session.sql(sql)?.collect()?)
}

/// A plain TCP connect first: the client retries an unreachable server for
/// minutes before it gives up.
fn reachable(remote: &SparkRemote) -> Result<()> {
    let unreachable = |source| Error::Unreachable {
        url: remote.url.clone(),
        addr: remote.addr.clone(),
        source,
    };
    let addrs = remote.addr.to_socket_addrs().map_err(unreachable)?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(unreachable(last))
}

/// Reads [`check_sql`]'s one row: the total, or the first column with rows
/// Valor would refuse.
pub fn check_answer(q: &CountsQuery<'_>, source_name: &str, rows: &[Row]) -> Result<u64> {
    let [row] = rows else {
        return Err(Error::Answer {
            row: 0,
            column: "rows".into(),
            why: format!("{} rows where the check has one", rows.len()),
        });
    };
    let total = integer(row, 0, 0, "rows")?;
    let c = &q.columns;
    let names = [c.y_true, c.y_pred]
        .into_iter()
        .chain(c.groups.iter().map(String::as_str));
    for (i, column) in names.enumerate() {
        let missing = integer(row, 0, i + 1, column)?;
        if missing > 0 {
            return Err(Error::MissingValues {
                source_name: source_name.to_string(),
                column: column.to_string(),
                rows: missing,
                total,
            });
        }
    }
    if let Some((s, _)) = c.score {
        let bad = integer(row, 0, 3 + c.groups.len(), s)?;
        if bad > 0 {
            return Err(Error::ScoresOutOfRange {
                source_name: source_name.to_string(),
                column: s.to_string(),
                rows: bad,
                total,
            });
        }
    }
    Ok(total)
}

/// The cells of the counting query's answer (columns: the groups,
/// `y_true`, `y_pred`, with scores `calibration_bin`, `score_bin`, then `n`
/// and with scores `score_sum`). Labels and group values are trimmed, as
/// Valor's readers trim them.
pub fn counts_from_rows(q: &CountsQuery<'_>, rows: &[Row]) -> Result<AuditCounts> {
    let (groups, bins) = (q.columns.groups, q.columns.score.map(|(_, b)| b));
    let mut counts = AuditCounts::new(groups.to_vec(), q.labels.clone(), bins)?;
    let g = groups.len();
    let width = g + 3 + if bins.is_some() { 3 } else { 0 };
    for (i, row) in rows.iter().enumerate() {
        if row.len() != width {
            return Err(Error::Answer {
                row: i,
                column: String::new(),
                why: format!("{} columns where the counts have {width}", row.len()),
            });
        }
        let mut values = Vec::with_capacity(g);
        for (c, name) in groups.iter().enumerate() {
            values.push(text(row, i, c, name)?);
        }
        let y_true = text(row, i, g, "y_true")?;
        let y_pred = text(row, i, g + 1, "y_pred")?;
        let (calibration_bin, score_bin, n, score_sum) = if bins.is_some() {
            (
                bin(row, i, g + 2, "calibration_bin")?,
                bin(row, i, g + 3, "score_bin")?,
                integer(row, i, g + 4, "n")?,
                float(row, i, g + 5, "score_sum")?,
            )
        } else {
            (0, 0, integer(row, i, g + 2, "n")?, 0.0)
        };
        let key = CellKey {
            groups: values,
            y_true,
            y_pred,
            calibration_bin,
            score_bin,
        };
        counts
            .add_cell(key, CellValue { n, score_sum }, i)
            .map_err(|source| Error::Cell { row: i, source })?;
    }
    Ok(counts)
}

fn value<'r>(row: &'r Row, i: usize, c: usize, column: &str) -> Result<&'r Value> {
    match row.get(c) {
        Some(Value::Null) | None => Err(Error::Answer {
            row: i,
            column: column.to_string(),
            why: "no value".into(),
        }),
        Some(v) => Ok(v),
    }
}

fn wrong(i: usize, column: &str, v: &Value, expected: &str) -> Error {
    Error::Answer {
        row: i,
        column: column.to_string(),
        why: format!("{v:?} where {expected} was expected"),
    }
}

fn text(row: &Row, i: usize, c: usize, column: &str) -> Result<String> {
    match value(row, i, c, column)? {
        Value::String(s) => Ok(s.trim().to_string()),
        v => Err(wrong(i, column, v, "a string")),
    }
}

fn integer(row: &Row, i: usize, c: usize, column: &str) -> Result<u64> {
    let v = value(row, i, c, column)?;
    let n: i64 = match *v {
        Value::Byte(x) => x.into(),
        Value::Short(x) => x.into(),
        Value::Integer(x) => x.into(),
        Value::Long(x) => x,
        _ => return Err(wrong(i, column, v, "an integer")),
    };
    u64::try_from(n).map_err(|_| wrong(i, column, v, "a count (not negative)"))
}

fn bin(row: &Row, i: usize, c: usize, column: &str) -> Result<u32> {
    let n = integer(row, i, c, column)?;
    u32::try_from(n).map_err(|_| wrong(i, column, &Value::Long(n as i64), "a bin number"))
}

fn float(row: &Row, i: usize, c: usize, column: &str) -> Result<f64> {
    let v = value(row, i, c, column)?;
    match v {
        Value::Double(x) => Ok(*x),
        Value::Float(x) => Ok(f64::from(*x)),
        Value::Decimal { value, .. } => value.parse().map_err(|_| wrong(i, column, v, "a number")),
        _ => Err(wrong(i, column, v, "a number")),
    }
}

#[cfg(test)]
mod tests {
    use valor_fair::ScoreBins;

    use super::*;

    fn row(values: Vec<Value>) -> Row {
        let fields = (0..values.len()).map(|i| format!("c{i}")).collect();
        Row::new(fields, values)
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    /// Labels `y` and `p` of `source`, grouped by `groups`, without
    /// declared labels.
    fn query<'a>(
        source: &'a Source,
        groups: &'a [String],
        score: Option<(&'a str, ScoreBins)>,
    ) -> CountsQuery<'a> {
        CountsQuery {
            source,
            columns: SqlColumns {
                y_true: "y",
                y_pred: "p",
                groups,
                score,
            },
            labels: None,
        }
    }

    #[test]
    fn remote_addresses_are_checked_as_the_client_checks_them() {
        let r = SparkRemote::parse("sc://127.0.0.1:15002").unwrap();
        assert_eq!(r.addr(), "127.0.0.1:15002");
        assert_eq!(
            SparkRemote::parse("sc://spark.example").unwrap().addr(),
            "spark.example:15002"
        );
        assert_eq!(
            SparkRemote::parse("sc://[::1]:4000/;use_ssl=false")
                .unwrap()
                .addr(),
            "[::1]:4000"
        );
        for bad in [
            "http://h:1",
            "sc://",
            "sc://h:port",
            "sc://h:99999",
            "sc://h:1/path",
        ] {
            let e = SparkRemote::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn an_address_where_nothing_listens_is_named_quickly() {
        // Port 9 (discard) on loopback: nothing listens in a test machine.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let r = SparkRemote::parse(&format!("sc://127.0.0.1:{port}")).unwrap();
        let groups = vec!["sex".to_string()];
        let source = Source::Table("t".into());
        let q = query(&source, &groups, None);
        let e = count(&r, &q).unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("no Spark Connect server answers"));
    }

    #[test]
    fn cells_become_counts_and_bad_cells_are_named() {
        let groups = vec!["sex".to_string()];
        let source = Source::Table("t".into());
        let q = query(
            &source,
            &groups,
            Some(("s", ScoreBins::new(10, 2).unwrap())),
        );
        let rows = vec![
            row(vec![
                s("f "),
                s("1"),
                s("0"),
                Value::Integer(1),
                Value::Long(7),
                Value::Long(3),
                Value::Double(2.2),
            ]),
            row(vec![
                s("m"),
                s("0"),
                s("0"),
                Value::Integer(0),
                Value::Long(1),
                Value::Long(2),
                Value::Double(0.3),
            ]),
        ];
        let c = counts_from_rows(&q, &rows).unwrap();
        assert_eq!(c.rows(), 5);
        let (k, v) = c.cells().next().unwrap();
        assert_eq!((k.groups[0].as_str(), k.score_bin, v.n), ("f", 7, 3));
        let mut bad = rows.clone();
        bad[1] = row(vec![
            s("m"),
            s("0"),
            s("0"),
            Value::Integer(0),
            Value::Long(12),
            Value::Long(2),
            Value::Double(0.3),
        ]);
        let e = counts_from_rows(&q, &bad).unwrap_err().to_string();
        assert!(e.starts_with("Spark's answer, row 1"), "{e}");
        bad[1] = row(vec![s("m"), s("0"), s("0"), Value::Long(2)]);
        let e = counts_from_rows(&q, &bad).unwrap_err().to_string();
        assert!(e.contains("4 columns where the counts have 7"), "{e}");
    }

    #[test]
    fn the_check_refuses_what_valor_refuses_naming_the_column() {
        let groups = vec!["sex".to_string(), "race".to_string()];
        let source = Source::Parquet("s3a://b/p/*.parquet".into());
        let q = query(
            &source,
            &groups,
            Some(("s", ScoreBins::new(10, 2).unwrap())),
        );
        let sql = check_sql(&q, "db.t");
        assert!(sql.contains("FROM `db`.`t`"), "{sql}");
        assert!(sql.contains("TRIM(CAST(`race` AS STRING)) = ''"), "{sql}");
        assert!(sql.contains("isnan(CAST(`s` AS DOUBLE))"), "{sql}");
        let name = source.describe();
        let answer = |v: [i64; 6]| vec![row(v.into_iter().map(Value::Long).collect())];
        assert_eq!(
            check_answer(&q, &name, &answer([9, 0, 0, 0, 0, 0])).unwrap(),
            9
        );
        let e = check_answer(&q, &name, &answer([9, 0, 0, 0, 2, 0]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column `race`: 2 of 9 rows have no value"),
            "{e}"
        );
        assert!(e.contains("s3a://b/p/*.parquet"), "{e}");
        let e = check_answer(&q, &name, &answer([9, 0, 0, 0, 0, 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("column `s`: 1 of 9 scores are NaN"), "{e}");
    }
}
