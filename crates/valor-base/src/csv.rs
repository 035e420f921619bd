//! CSV records as Valor writes them (RFC 4180 through the `csv` crate): a
//! field is quoted only when it holds the separator, a quote or a line
//! break, and a quote inside is doubled. Used where Valor streams rows
//! (`valor predict`) and where benchmarks write their inputs.

use std::io::{self, Write};

/// Writes records to `W`, one line each (`\n`-terminated).
#[derive(Debug)]
pub struct RecordWriter<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> RecordWriter<W> {
    /// A writer with `sep` between fields (`b','` for CSV, `b'\t'` for TSV).
    pub fn new(w: W, sep: u8) -> Self {
        Self {
            inner: csv::WriterBuilder::new()
                .delimiter(sep)
                .terminator(csv::Terminator::Any(b'\n'))
                .has_headers(false)
                .from_writer(w),
        }
    }

    /// Writes one record.
    pub fn write<I, T>(&mut self, fields: I) -> io::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.inner.write_record(fields).map_err(into_io)
    }

    /// Flushes what is buffered to `W`.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Flushes and returns `W`.
    pub fn into_inner(self) -> io::Result<W> {
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

/// One record as a line (with its `\n`).
pub fn record<I, T>(fields: I, sep: u8) -> String
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut w = RecordWriter::new(Vec::new(), sep);
    // Writing to a Vec cannot fail.
    let bytes = w
        .write(fields)
        .and_then(|()| w.into_inner())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn into_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(record(["a", "b c", "1.5"], b','), "a,b c,1.5\n");
        assert_eq!(
            record(["x,y", "say \"hi\"", "two\nlines"], b','),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\n"
        );
        assert_eq!(record(["x,y", "t\tu"], b'\t'), "x,y\t\"t\tu\"\n");
    }

    #[test]
    fn streams_records() {
        let mut w = RecordWriter::new(Vec::new(), b',');
        w.write(["id", "label"]).unwrap();
        w.write(["1", "a"]).unwrap();
        assert_eq!(w.into_inner().unwrap(), b"id,label\n1,a\n");
    }
}
