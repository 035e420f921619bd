//! Reading and writing tables (CSV, Parquet, JSON Lines) with polars.
//!
//! A [`Table`] is a thin wrapper over a polars `DataFrame` that remembers the
//! file it came from and the row offset of its first row, so every error can
//! name file, row and column. Values leave this module as Rust strings and
//! numbers: polars types never cross the crate boundary.
//!
//! CSV is parsed with every column as text (no dtype guessing): labels, groups
//! and ids keep their exact spelling ("01" stays "01"), and numeric columns are
//! parsed where they are used, with a row-level error when they do not parse.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};

mod coded;
pub use coded::CodedText;

/// The file formats Valor reads and writes, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// Apache Parquet.
    Parquet,
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    JsonLines,
}

impl Format {
    /// The format named by `path`'s extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" => Ok(Self::Tsv),
            "parquet" | "pq" => Ok(Self::Parquet),
            "jsonl" | "ndjson" => Ok(Self::JsonLines),
            _ => Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                ext,
            }),
        }
    }

    fn separator(self) -> u8 {
        if self == Self::Tsv { b'\t' } else { b',' }
    }
}

/// An in-memory table read from one file (or one chunk of it).
#[derive(Debug, Clone)]
pub struct Table {
    path: PathBuf,
    df: DataFrame,
    /// Data-row number (0-based) of this table's first row within its file.
    row_offset: usize,
}

/// Reads a whole table; the format follows the extension and is checked
/// against the file's first bytes.
pub fn read_table(path: &Path) -> Result<Table> {
    let format = Format::from_path(path)?;
    match format {
        Format::Parquet => {
            check_parquet_magic(path)?;
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let df = ParquetReader::new(file)
                .finish()
                .map_err(|e| Error::parse(path, e))?;
            Table::new(path, df, 0)
        }
        Format::Csv | Format::Tsv | Format::JsonLines => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            parse_text_bytes(path, format, &bytes, 0)
        }
    }
}

impl Table {
    fn new(path: &Path, df: DataFrame, row_offset: usize) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            df,
            row_offset,
        })
    }

    /// Builds a table from named text columns (all the same length).
    pub fn from_string_columns(
        path: &Path,
        columns: Vec<(String, Vec<Option<String>>)>,
    ) -> Result<Self> {
        let cols: Vec<Column> = columns
            .into_iter()
            .map(|(name, values)| Column::new(name.into(), values))
            .collect();
        let df = DataFrame::new_infer_height(cols).map_err(|e| Error::parse(path, e))?;
        Self::new(path, df, 0)
    }

    /// The file this table was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.df.height()
    }
    /// 0-based data-row number of the first row of this table within its file.
    pub fn row_offset(&self) -> usize {
        self.row_offset
    }
    /// Column names in file order.
    pub fn column_names(&self) -> Vec<String> {
        self.df
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    /// Column names with a human-readable type: the stored type for Parquet and
    /// JSON, and for CSV text columns the narrowest of `int`, `float`, `text`
    /// that fits every non-empty value.
    pub fn schema(&self) -> Vec<(String, String)> {
        self.df
            .columns()
            .iter()
            .map(|c| {
                let ty = match c.dtype() {
                    DataType::String => infer_text_type(c),
                    other => other.to_string(),
                };
                (c.name().to_string(), ty)
            })
            .collect()
    }

    /// Errors unless `name` is a column; the error lists the columns that exist.
    pub fn require(&self, name: &str, hint: Option<&str>) -> Result<()> {
        if self.df.get_column_index(name).is_some() {
            Ok(())
        } else {
            Err(Error::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.column_names(),
                hint: hint.map(str::to_string),
            })
        }
    }

    fn column(&self, name: &str) -> Result<&Column> {
        self.require(name, None)?;
        Ok(self.df.column(name).expect("checked by require"))
    }

    /// A column as text (numbers are formatted); nulls are `None`.
    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let col = self.column(name)?;
        let cast = col
            .cast(&DataType::String)
            .map_err(|e| Error::parse(&self.path, format!("column `{name}`: {e}")))?;
        let ca = cast
            .str()
            .map_err(|e| Error::parse(&self.path, format!("column `{name}`: {e}")))?;
        Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// A column as text (numbers are formatted) without a `String` per
    /// value: for loops over many rows (a streamed audit).
    pub fn text(&self, name: &str) -> Result<TextColumn> {
        let col = self.column(name)?;
        let cast = col
            .cast(&DataType::String)
            .map_err(|e| Error::parse(&self.path, format!("column `{name}`: {e}")))?;
        let ca = cast
            .str()
            .map_err(|e| Error::parse(&self.path, format!("column `{name}`: {e}")))?
            .rechunk()
            .into_owned();
        Ok(TextColumn { ca })
    }

    /// A column as numbers; a value that is not a number is an error naming
    /// its row. Nulls and blanks are `None`.
    pub fn floats(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let col = self.column(name)?;
        if col.dtype().is_primitive_numeric() {
            let cast = col
                .cast(&DataType::Float64)
                .map_err(|e| Error::parse(&self.path, format!("column `{name}`: {e}")))?;
            let ca = cast
                .f64()
                .map_err(|e| Error::parse(&self.path, format!("column `{name}`: {e}")))?;
            return Ok(ca.iter().collect());
        }
        self.strings(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => s.parse::<f64>().map(Some).map_err(|_| Error::BadValue {
                    path: self.path.clone(),
                    row: self.row_offset + i + 1,
                    column: name.to_string(),
                    message: format!("`{s}` is not a number"),
                }),
            })
            .collect()
    }

    /// The 1-based row number, in the file, of this table's row `i`.
    pub fn file_row(&self, i: usize) -> usize {
        self.row_offset + i + 1
    }
}

fn infer_text_type(c: &Column) -> String {
    let Ok(ca) = c.str() else {
        return "text".into();
    };
    let mut all_int = true;
    let mut all_float = true;
    let mut any = false;
    for v in ca.iter().flatten() {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        any = true;
        if all_int && v.parse::<i64>().is_err() {
            all_int = false;
        }
        if all_float && v.parse::<f64>().is_err() {
            all_float = false;
        }
        if !all_int && !all_float {
            break;
        }
    }
    match (any, all_int, all_float) {
        (false, _, _) => "empty",
        (true, true, _) => "int",
        (true, false, true) => "float",
        _ => "text",
    }
    .into()
}

fn check_parquet_magic(path: &Path) -> Result<()> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 4];
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    if n < 4 || &head != b"PAR1" {
        return Err(Error::WrongFormat {
            path: path.to_path_buf(),
            expected: "Parquet",
            why: "it does not start with the Parquet magic bytes `PAR1`".into(),
        });
    }
    Ok(())
}

/// Checks that text-format bytes are what the extension says and valid UTF-8;
/// the error for invalid UTF-8 names the data row.
fn check_text_bytes(path: &Path, format: Format, bytes: &[u8], row_offset: usize) -> Result<()> {
    let expected = match format {
        Format::JsonLines => "JSON Lines",
        Format::Tsv => "TSV",
        _ => "CSV",
    };
    if bytes.starts_with(b"PAR1") {
        return Err(Error::WrongFormat {
            path: path.to_path_buf(),
            expected,
            why: "it is a Parquet file (starts with `PAR1`); rename it to .parquet".into(),
        });
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::WrongFormat {
            path: path.to_path_buf(),
            expected,
            why: "it is a compressed archive (zip/gzip); decompress it first".into(),
        });
    }
    if bytes.iter().take(8192).any(|&b| b == 0) {
        return Err(Error::WrongFormat {
            path: path.to_path_buf(),
            expected,
            why: "it contains NUL bytes, so it is binary, not text".into(),
        });
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let offset = e.valid_up_to();
        let row = match format {
            // JSON Lines: one record per line, no header.
            Format::JsonLines => count_records(&bytes[..offset], false) + 1,
            // CSV: records before the offset, minus the header.
            _ => count_records(&bytes[..offset], true).saturating_sub(1) + 1,
        };
        return Err(Error::NotUtf8 {
            path: path.to_path_buf(),
            row: row_offset + row,
            offset,
        });
    }
    if format != Format::JsonLines
        && let Some(row) = unterminated_quote_row(bytes)
    {
        return Err(Error::UnterminatedQuote {
            path: path.to_path_buf(),
            row: row_offset + row,
        });
    }
    if format == Format::JsonLines
        && let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && *first != b'{'
    {
        return Err(Error::WrongFormat {
            path: path.to_path_buf(),
            expected,
            why: format!(
                "the first record starts with `{}`, not `{{` (one JSON object per line is expected)",
                *first as char
            ),
        });
    }
    Ok(())
}

/// Number of complete records (newline-terminated outside quotes) in `bytes`.
fn count_records(bytes: &[u8], quoted: bool) -> usize {
    let mut in_quotes = false;
    let mut n = 0;
    for &b in bytes {
        match b {
            b'"' if quoted => in_quotes = !in_quotes,
            b'\n' if !in_quotes => n += 1,
            _ => {}
        }
    }
    n
}

/// The data row (1-based, header not counted; 0 for the header) where a
/// quote opens that is still open at the end of `bytes` (CSV/TSV quoting:
/// every `"` toggles, as the streaming reader counts them), if any.
fn unterminated_quote_row(bytes: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    let mut newlines = 0usize;
    let mut opened_at = 0usize;
    for &b in bytes {
        match b {
            b'"' => {
                in_quotes = !in_quotes;
                if in_quotes {
                    opened_at = newlines;
                }
            }
            b'\n' if !in_quotes => newlines += 1,
            _ => {}
        }
    }
    in_quotes.then_some(opened_at)
}

/// The longest record (row) the streaming reader accepts: a bound on what a
/// malformed file (say, a stray quote) can make it buffer.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

fn parse_text_bytes(path: &Path, format: Format, bytes: &[u8], row_offset: usize) -> Result<Table> {
    check_text_bytes(path, format, bytes, row_offset)?;
    let df = match format {
        Format::JsonLines => parse_jsonl(path, bytes, row_offset)?,
        _ => parse_csv(path, format, bytes, row_offset)?,
    };
    Table::new(path, df, row_offset)
}

/// Calls `each(record, fields)` for the records of CSV/TSV `bytes` in order
/// (record 0 is the header; blank lines are skipped, not counted), with
/// their fields unquoted, until `each` returns false. Quoting as polars
/// reads it: a field may be quoted, `""` inside quotes is one quote.
fn for_each_record(bytes: &[u8], sep: u8, mut each: impl FnMut(usize, Vec<String>) -> bool) {
    let mut fields: Vec<String> = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut in_quotes = false;
    let mut record = 0usize;
    let mut i = 0usize;
    let mut blank = true;
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            Some(b'"') if in_quotes && bytes.get(i + 1) == Some(&b'"') => {
                field.push(b'"');
                i += 1;
            }
            Some(b'"') => {
                in_quotes = !in_quotes;
                blank = false;
            }
            Some(c) if in_quotes => field.push(c),
            Some(c) if c == sep => {
                fields.push(String::from_utf8_lossy(&field).into_owned());
                field.clear();
                blank = false;
            }
            Some(b'\n') | None => {
                if field.last() == Some(&b'\r') {
                    field.pop();
                }
                if !(blank && field.is_empty()) {
                    fields.push(String::from_utf8_lossy(&field).into_owned());
                    if !each(record, std::mem::take(&mut fields)) {
                        return;
                    }
                    record += 1;
                }
                field.clear();
                fields.clear();
                blank = true;
            }
            Some(c) => {
                field.push(c);
                if !c.is_ascii_whitespace() {
                    blank = false;
                }
            }
        }
        i += 1;
    }
}

/// The header's column names, checked for duplicates (polars would
/// silently rename the second one).
fn check_header(path: &Path, format: Format, bytes: &[u8]) -> Result<()> {
    let mut dup = None;
    for_each_record(bytes, format.separator(), |_, names| {
        let mut seen = std::collections::HashSet::new();
        dup = names.into_iter().find(|n| !seen.insert(n.clone()));
        false
    });
    match dup {
        Some(column) => Err(Error::Parse {
            path: path.to_path_buf(),
            message: format!(
                "the header names column `{column}` twice; column names must be distinct"
            ),
        }),
        None => Ok(()),
    }
}

/// The first data row (1-based within `bytes`) whose field count differs
/// from the header's, with both counts.
fn ragged_row(bytes: &[u8], sep: u8) -> Option<(usize, usize, usize)> {
    let mut width = 0;
    let mut found = None;
    for_each_record(bytes, sep, |record, fields| {
        if record == 0 {
            width = fields.len();
        } else if fields.len() != width {
            found = Some((record, fields.len(), width));
            return false;
        }
        true
    });
    found
}

fn parse_csv(path: &Path, format: Format, bytes: &[u8], row_offset: usize) -> Result<DataFrame> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::NoRows {
            path: path.to_path_buf(),
        });
    }
    check_header(path, format, bytes)?;
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_parse_options(
            CsvParseOptions::default()
                .with_separator(format.separator())
                .with_missing_is_null(true),
        )
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
        .map_err(|e| match ragged_row(bytes, format.separator()) {
            Some((row, fields, width)) => Error::BadValue {
                path: path.to_path_buf(),
                row: row_offset + row,
                column: "(whole row)".into(),
                message: format!("{fields} fields where the header has {width}"),
            },
            None => Error::parse(path, e),
        })
}

/// JSON Lines are parsed with serde_json, one object per line, so that a
/// malformed line is reported with its row number. Values become text:
/// strings as they are, numbers and booleans as written, null as null.
fn parse_jsonl(path: &Path, bytes: &[u8], row_offset: usize) -> Result<DataFrame> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::parse(path, e))?;
    let mut names: Vec<String> = Vec::new();
    let mut cols: Vec<Vec<Option<String>>> = Vec::new();
    let mut n = 0usize;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let row = row_offset + n + 1;
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| Error::BadValue {
                path: path.to_path_buf(),
                row,
                column: "(whole line)".into(),
                message: format!("not a JSON object: {e}"),
            })?;
        for (k, v) in obj {
            let idx = match names.iter().position(|x| *x == k) {
                Some(i) => i,
                None => {
                    names.push(k);
                    cols.push(vec![None; n]);
                    names.len() - 1
                }
            };
            let value = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => {
                    Some(other.to_string())
                }
                other => {
                    return Err(Error::BadValue {
                        path: path.to_path_buf(),
                        row,
                        column: names[idx].clone(),
                        message: format!("nested value {other} is not supported; flatten it"),
                    });
                }
            };
            cols[idx].push(value);
        }
        n += 1;
        for c in &mut cols {
            if c.len() < n {
                c.push(None);
            }
        }
    }
    if n == 0 {
        return Err(Error::NoRows {
            path: path.to_path_buf(),
        });
    }
    let columns: Vec<Column> = names
        .into_iter()
        .zip(cols)
        .map(|(name, values)| Column::new(name.into(), values))
        .collect();
    DataFrame::new_infer_height(columns).map_err(|e| Error::parse(path, e))
}

/// Reads a file in chunks of about `chunk_rows` rows, so a file larger than
/// memory can be processed. CSV records may span lines (quoted newlines).
/// Parquet is read one slice at a time.
pub fn stream_table(path: &Path, chunk_rows: usize) -> Result<TableStream> {
    let format = Format::from_path(path)?;
    let chunk_rows = chunk_rows.max(1);
    let inner = match format {
        Format::Parquet => {
            check_parquet_magic(path)?;
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let total = ParquetReader::new(file)
                .num_rows()
                .map_err(|e| Error::parse(path, e))?;
            StreamInner::Parquet {
                total,
                columns: None,
            }
        }
        Format::Csv | Format::Tsv | Format::JsonLines => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let header = if format == Format::JsonLines {
                Vec::new()
            } else {
                let mut header = Vec::new();
                read_record(&mut reader, &mut header, true).map_err(|e| e.into_error(path, 0))?;
                if header.iter().all(|b| b.is_ascii_whitespace()) {
                    return Err(Error::NoRows {
                        path: path.to_path_buf(),
                    });
                }
                header
            };
            StreamInner::Text { reader, header }
        }
    };
    Ok(TableStream {
        path: path.to_path_buf(),
        format,
        chunk_rows,
        next_row: 0,
        inner,
        done: false,
    })
}

impl TableStream {
    /// Reads only `names` from a Parquet file when it has them all (Parquet
    /// stores columns apart, so the others are never decoded); when one is
    /// missing, or for text formats, chunks keep every column, so a
    /// missing column's error lists those the file has.
    pub fn select(mut self, names: &[&str]) -> Result<Self> {
        if let StreamInner::Parquet { columns, .. } = &mut self.inner {
            let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
            let schema = ParquetReader::new(file)
                .schema()
                .map_err(|e| Error::parse(&self.path, e))?;
            if names.iter().all(|n| schema.contains(n)) {
                let mut keep: Vec<String> = Vec::with_capacity(names.len());
                for n in names {
                    if !keep.iter().any(|k| k == n) {
                        keep.push((*n).to_string());
                    }
                }
                *columns = Some(keep);
            }
        }
        Ok(self)
    }
}

/// Iterator over the chunks of a file; see [`stream_table`].
#[derive(Debug)]
pub struct TableStream {
    path: PathBuf,
    format: Format,
    chunk_rows: usize,
    next_row: usize,
    inner: StreamInner,
    done: bool,
}

#[derive(Debug)]
enum StreamInner {
    Parquet {
        total: usize,
        /// The columns read (`None`: all); see [`TableStream::select`].
        columns: Option<Vec<String>>,
    },
    Text {
        reader: BufReader<File>,
        header: Vec<u8>,
    },
}

/// Why one record could not be read.
#[derive(Debug)]
enum RecordError {
    Io(std::io::Error),
    /// The file ended inside a quoted field.
    Unterminated,
    /// The record grew past [`MAX_RECORD_BYTES`].
    TooLong,
}

impl RecordError {
    /// The crate error, for the record that is data row `row` (0: header).
    fn into_error(self, path: &Path, row: usize) -> Error {
        match self {
            Self::Io(e) => Error::io(path, e),
            Self::Unterminated => Error::UnterminatedQuote {
                path: path.to_path_buf(),
                row,
            },
            Self::TooLong => Error::RowTooLong {
                path: path.to_path_buf(),
                row,
                limit_mib: MAX_RECORD_BYTES >> 20,
            },
        }
    }
}

/// Appends one record (through its terminating newline outside quotes) to
/// `buf`; returns the number of bytes read (0 at end of file). A file that
/// ends inside quotes, or a record longer than [`MAX_RECORD_BYTES`], is an
/// error rather than one endless value.
fn read_record(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    quoted: bool,
) -> std::result::Result<usize, RecordError> {
    let mut total = 0;
    let mut in_quotes = false;
    loop {
        let start = buf.len();
        let n = (&mut *reader)
            .take((MAX_RECORD_BYTES + 1 - total) as u64)
            .read_until(b'\n', buf)
            .map_err(RecordError::Io)?;
        if n == 0 {
            return if in_quotes {
                Err(RecordError::Unterminated)
            } else {
                Ok(total)
            };
        }
        total += n;
        if total > MAX_RECORD_BYTES {
            return Err(RecordError::TooLong);
        }
        if quoted {
            for &b in &buf[start..] {
                if b == b'"' {
                    in_quotes = !in_quotes;
                }
            }
        }
        if !in_quotes && buf.last() == Some(&b'\n') {
            return Ok(total);
        }
    }
}

impl Iterator for TableStream {
    type Item = Result<Table>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let offset = self.next_row;
        let result = match &mut self.inner {
            StreamInner::Parquet { total, columns } => {
                if offset >= *total {
                    self.done = true;
                    return None;
                }
                let len = self.chunk_rows.min(*total - offset);
                File::open(&self.path)
                    .map_err(|e| Error::io(&self.path, e))
                    .and_then(|f| {
                        ParquetReader::new(f)
                            .with_slice(Some((offset, len)))
                            .with_columns(columns.clone())
                            .finish()
                            .map_err(|e| Error::parse(&self.path, e))
                    })
                    .and_then(|df| Table::new(&self.path, df, offset))
            }
            StreamInner::Text { reader, header } => {
                let mut buf = header.clone();
                let quoted = self.format != Format::JsonLines;
                let mut rows = 0;
                while rows < self.chunk_rows {
                    match read_record(reader, &mut buf, quoted) {
                        Ok(0) => {
                            self.done = true;
                            break;
                        }
                        Ok(_) => {
                            let last = buf.len();
                            // Blank lines are not records.
                            if buf[..last].ends_with(b"\n\n") || buf.len() == header.len() + 1 {
                                continue;
                            }
                            rows += 1;
                        }
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e.into_error(&self.path, offset + rows + 1)));
                        }
                    }
                }
                if rows == 0 {
                    self.done = true;
                    return None;
                }
                parse_text_bytes(&self.path, self.format, &buf, offset)
            }
        };
        match result {
            Ok(t) => {
                self.next_row += t.n_rows();
                Some(Ok(t))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One column of a [`Table`] as text; see [`Table::text`].
#[derive(Debug, Clone)]
pub struct TextColumn {
    ca: StringChunked,
}

impl TextColumn {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ca.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ca.is_empty()
    }
    /// The values in row order; nulls are `None`.
    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.ca.iter()
    }
}

/// A column to write.
#[derive(Debug, Clone)]
pub enum ColumnData {
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Float(Vec<f64>),
    Int(Vec<i64>),
}

impl ColumnData {
    fn into_column(self, name: &str) -> Column {
        match self {
            Self::Text(v) => Column::new(name.into(), v),
            Self::OptText(v) => Column::new(name.into(), v),
            Self::Float(v) => Column::new(name.into(), v),
            Self::Int(v) => Column::new(name.into(), v),
        }
    }
}

/// Writes named columns to `path` in the format of its extension, atomically:
/// the data goes to a temporary file in the same folder, is synced, and is then
/// renamed over `path`, so a reader never sees a half-written file.
pub fn write_table(path: &Path, columns: Vec<(String, ColumnData)>) -> Result<()> {
    let format = Format::from_path(path)?;
    let cols: Vec<Column> = columns
        .into_iter()
        .map(|(name, data)| data.into_column(&name))
        .collect();
    let mut df = DataFrame::new_infer_height(cols).map_err(|e| Error::parse(path, e))?;
    write_atomic(path, |file| {
        match format {
            Format::Csv | Format::Tsv => CsvWriter::new(&mut *file)
                .include_header(true)
                .with_separator(format.separator())
                .finish(&mut df)
                .map_err(std::io::Error::other)?,
            Format::Parquet => {
                ParquetWriter::new(&mut *file)
                    .finish(&mut df)
                    .map_err(std::io::Error::other)?;
            }
            Format::JsonLines => JsonWriter::new(&mut *file)
                .with_json_format(JsonFormat::JsonLines)
                .finish(&mut df)
                .map_err(std::io::Error::other)?,
        }
        Ok(())
    })
}

/// Writes a file atomically ([`valor_fsio::write_atomic`]): temp file in
/// the same folder, fsync, rename, with an ordinary file's mode, so what is
/// written here (tokenizers, tables, reports) is never half-written.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    valor_fsio::write_atomic(path, write).map_err(|e| Error::io(e.path, e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn an_unterminated_quote_is_an_error_naming_its_row() {
        let text = b"text,label\nfine,a\n\"never closed,b\nok,a\nmore,b\n";
        let (_d, p) = tmp_with("q.csv", text);
        let e = read_table(&p).unwrap_err();
        assert!(matches!(e, Error::UnterminatedQuote { row: 2, .. }), "{e}");
        // Streaming: chunks before the row come back, then the error, then
        // nothing (the rest of the file is not swallowed into one value).
        let mut chunks = stream_table(&p, 1).unwrap();
        assert_eq!(chunks.next().unwrap().unwrap().n_rows(), 1);
        let e = chunks.next().unwrap().unwrap_err();
        assert!(matches!(e, Error::UnterminatedQuote { row: 2, .. }), "{e}");
        assert!(chunks.next().is_none());
        // A quoted field over several lines is fine.
        let (_d, p) = tmp_with("ml.csv", b"text,label\n\"two\nlines\",a\nok,b\n");
        assert_eq!(read_table(&p).unwrap().n_rows(), 2);
        assert_eq!(stream_table(&p, 1).unwrap().count(), 2);
    }

    #[test]
    fn duplicate_headers_and_ragged_rows_are_named() {
        let (_d, p) = tmp_with("d.csv", b"text,label,label\na,b,c\n");
        let e = read_table(&p).unwrap_err().to_string();
        assert!(e.contains("`label` twice"), "{e}");
        let (_d, p) = tmp_with("r.csv", b"text,label\na,b\n\"x,y\",b\nc,d,e,f\n");
        let e = read_table(&p).unwrap_err().to_string();
        assert!(
            e.contains("row 3") && e.contains("4 fields where the header has 2"),
            "{e}"
        );
    }

    #[test]
    fn csv_keeps_text_exactly() {
        let (_d, p) = tmp_with(
            "a.csv",
            b"id,text,label\n01,\"hello, world\",1\n02,\"multi\nline\",0\n",
        );
        let t = read_table(&p).unwrap();
        assert_eq!(t.n_rows(), 2);
        assert_eq!(
            t.strings("id").unwrap(),
            vec![Some("01".into()), Some("02".into())]
        );
        assert_eq!(
            t.strings("text").unwrap()[1].as_deref(),
            Some("multi\nline")
        );
        assert_eq!(t.floats("label").unwrap(), vec![Some(1.0), Some(0.0)]);
    }

    #[test]
    fn missing_column_lists_the_others() {
        let (_d, p) = tmp_with("a.csv", b"a,b\n1,2\n");
        let err = read_table(&p)
            .unwrap()
            .strings("sex")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column `sex` not found; columns are: a, b"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_names_the_row() {
        let (_d, p) = tmp_with("a.csv", b"a,b\n1,ok\n2,caf\xe9\n");
        let err = read_table(&p).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn wrong_format_is_named() {
        let (_d, p) = tmp_with("a.parquet", b"a,b\n1,2\n");
        let err = read_table(&p).unwrap_err().to_string();
        assert!(err.contains("not Parquet"), "{err}");
        let (_d, p) = tmp_with("a.jsonl", b"a,b\n1,2\n");
        let err = read_table(&p).unwrap_err().to_string();
        assert!(err.contains("not JSON Lines"), "{err}");
    }

    #[test]
    fn jsonl_bad_line_names_the_row() {
        let (_d, p) = tmp_with("a.jsonl", b"{\"a\": 1}\n{\"a\": 2\n");
        let err = read_table(&p).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
    }

    #[test]
    fn non_number_names_the_row() {
        let (_d, p) = tmp_with("a.csv", b"w\n1.5\nabc\n");
        let err = read_table(&p).unwrap().floats("w").unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("`abc` is not a number"),
            "{err}"
        );
    }

    #[test]
    fn roundtrip_every_format_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["csv", "tsv", "parquet", "jsonl"] {
            let p = dir.path().join(format!("t.{ext}"));
            let texts: Vec<String> = (0..25)
                .map(|i| format!("row \"{i}\", with\nnewline"))
                .collect();
            write_table(
                &p,
                vec![
                    ("text".into(), ColumnData::Text(texts.clone())),
                    (
                        "x".into(),
                        ColumnData::Float((0..25).map(f64::from).collect()),
                    ),
                ],
            )
            .unwrap();
            let t = read_table(&p).unwrap();
            let got: Vec<String> = t
                .strings("text")
                .unwrap()
                .into_iter()
                .map(Option::unwrap)
                .collect();
            assert_eq!(got, texts, "{ext}");
            let chunks: Vec<Table> = stream_table(&p, 7).unwrap().map(Result::unwrap).collect();
            assert_eq!(
                chunks.iter().map(Table::n_rows).collect::<Vec<_>>(),
                vec![7, 7, 7, 4],
                "{ext}"
            );
            assert_eq!(chunks[1].row_offset(), 7);
            let streamed: Vec<String> = chunks
                .iter()
                .flat_map(|c| c.strings("text").unwrap())
                .map(Option::unwrap)
                .collect();
            assert_eq!(streamed, texts, "{ext}");
        }
    }
}
