//! Walking the chain across a log folder's files: the one checker behind
//! [`crate::verify`] and [`crate::LedgerReader`].

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result, io};
use crate::record::{Entry, GENESIS, StoredRecord, parse_line};

/// `ledger-000001.jsonl`, …: the log's files, in chain order.
pub(crate) fn file_name(index: u32) -> String {
    format!("ledger-{index:06}.jsonl")
}

fn file_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("ledger-")?.strip_suffix(".jsonl")?;
    if digits.len() == 6 && digits.bytes().all(|c| c.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// The log files of `dir` in index order. Other files are not the log's
/// and are left alone; a `ledger-*` name that is not `ledger-NNNNNN.jsonl`
/// is an error (it looks like a log file that was renamed).
pub(crate) fn list_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(i) = file_index(&name) {
            out.push((i, e.path()));
        } else if name.starts_with("ledger-") {
            return Err(Error::Io {
                path: e.path(),
                source: std::io::Error::other(
                    "a `ledger-` file that is not named `ledger-NNNNNN.jsonl` (renamed log file?)",
                ),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// How the chain is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The record's content does not match its hash, or does not parse:
    /// it was changed.
    Changed,
    /// The record's hash is consistent but the next record does not link
    /// to it: it was changed and re-hashed.
    Rehashed,
    /// One or more records before this one are missing.
    Removed,
    /// The record is out of order (records were swapped or moved).
    Reordered,
    /// A file is missing, or a file does not start with its segment record
    /// linking it to the previous file.
    FileMissing,
    /// A line in the middle of the chain (not at the very end) is cut
    /// short.
    Truncated,
}

/// The first place where the chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// The file holding the bad record.
    pub file: PathBuf,
    /// 1-based line in that file.
    pub line: u64,
    /// 0-based index in the chain of the bad record (the `seq` it should
    /// have).
    pub record: u64,
    /// What was found.
    pub why: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FailureKind::Changed => "was changed",
            FailureKind::Rehashed => "was changed (and its hash recomputed)",
            FailureKind::Removed => "is missing (removed)",
            FailureKind::Reordered => "is out of order (records swapped or moved)",
            FailureKind::FileMissing => "is missing (a log file was removed)",
            FailureKind::Truncated => "is cut short",
        };
        write!(
            f,
            "record {} ({}, line {}) {what}: {}",
            self.record,
            self.file.display(),
            self.line,
            self.why
        )
    }
}

/// The last file ends inside a record: the bytes after its last newline.
/// A crash during a write leaves this; the writer cuts it off (and logs
/// that it did) when it opens the log again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    pub file: PathBuf,
    /// 1-based line where the torn record starts.
    pub line: u64,
    /// Byte offset where it starts.
    pub offset: u64,
    /// Its length in bytes.
    pub bytes: u64,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, line {} (byte {}): the last record is cut short ({} bytes without a newline; a write \
             interrupted by a crash); the records before it are complete, and the writer removes \
             it when it next opens the log",
            self.file.display(),
            self.line,
            self.offset,
            self.bytes
        )
    }
}

/// One step of a walk.
pub(crate) enum Step {
    Record(Box<StoredRecord>),
    Broken(Failure),
    Torn(TornTail),
}

/// Reads a log folder's files in order, checking each record's hash, its
/// `seq` and `prev` against the record before it, and each file's segment
/// record.
pub(crate) struct Walker {
    files: Vec<(u32, PathBuf)>,
    next_file: usize,
    current: Option<(PathBuf, BufReader<File>, u64, u64)>,
    expected_seq: u64,
    prev_hash: String,
    prev_file: Option<String>,
    prev_at: Option<(PathBuf, u64)>,
    done: bool,
    buf: Vec<u8>,
}

impl Walker {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::NoLog { path: dir.into() });
        }
        let files = list_files(dir)?;
        if files.is_empty() {
            return Err(Error::NoLog { path: dir.into() });
        }
        Ok(Self {
            files,
            next_file: 0,
            current: None,
            expected_seq: 0,
            prev_hash: GENESIS.to_owned(),
            prev_file: None,
            prev_at: None,
            done: false,
            buf: Vec::new(),
        })
    }

    /// Files walked so far (name, records in it).
    pub(crate) fn files(&self) -> &[(u32, PathBuf)] {
        &self.files
    }

    /// The next record, or where the chain breaks; `None` at the end.
    pub(crate) fn step(&mut self) -> Result<Option<Step>> {
        if self.done {
            return Ok(None);
        }
        loop {
            if self.current.is_none() {
                let Some((index, path)) = self.files.get(self.next_file).cloned() else {
                    self.done = true;
                    return Ok(None);
                };
                let expected_index = self.files[0].0 + self.next_file as u32;
                self.next_file += 1;
                if index != expected_index {
                    return self.broken(Failure {
                        kind: FailureKind::FileMissing,
                        file: path.with_file_name(file_name(expected_index)),
                        line: 1,
                        record: self.expected_seq,
                        why: format!(
                            "the log jumps from {} to {}",
                            self.prev_file.as_deref().unwrap_or("the start"),
                            file_name(index)
                        ),
                    });
                }
                let f = File::open(&path).map_err(io(&path))?;
                self.current = Some((path, BufReader::new(f), 0, 0));
            }
            let last_file = self.next_file == self.files.len();
            let Some((path, reader, line_no, offset)) = self.current.as_mut() else {
                continue;
            };
            self.buf.clear();
            let n = reader
                .read_until(b'\n', &mut self.buf)
                .map_err(io(path.clone()))?;
            if n == 0 {
                if *line_no == 0 {
                    // An empty file: only the last one may be (a crash
                    // right after it was created); it holds no record.
                    let path = path.clone();
                    self.current = None;
                    if !last_file {
                        return self.broken(Failure {
                            kind: FailureKind::FileMissing,
                            file: path,
                            line: 1,
                            record: self.expected_seq,
                            why: "the file is empty".into(),
                        });
                    }
                    continue;
                }
                self.current = None;
                continue;
            }
            *line_no += 1;
            let start = *offset;
            *offset += n as u64;
            let (path, line) = (path.clone(), *line_no);
            if self.buf.last() != Some(&b'\n') {
                self.done = true;
                if last_file {
                    return Ok(Some(Step::Torn(TornTail {
                        file: path,
                        line,
                        offset: start,
                        bytes: n as u64,
                    })));
                }
                return self.broken(Failure {
                    kind: FailureKind::Truncated,
                    file: path,
                    line,
                    record: self.expected_seq,
                    why: "the line has no newline but more files follow".into(),
                });
            }
            let bytes = &self.buf[..n - 1];
            let (head, hash, entry) = match parse_line(bytes) {
                Ok(x) => x,
                Err(why) => {
                    return self.broken(Failure {
                        kind: FailureKind::Changed,
                        file: path,
                        line,
                        record: self.expected_seq,
                        why,
                    });
                }
            };
            if let (0, 1, Entry::Segment(seg)) = (self.expected_seq, line, &entry)
                && let Some(before) = &seg.previous_file
            {
                // the log's first files were removed
                return self.broken(Failure {
                    kind: FailureKind::FileMissing,
                    file: path.with_file_name(before),
                    line: 1,
                    record: 0,
                    why: format!(
                        "the first file present starts at record {} and names {before} before it",
                        head.seq
                    ),
                });
            }
            if head.seq != self.expected_seq {
                let (kind, why) = if head.seq > self.expected_seq {
                    (
                        FailureKind::Removed,
                        format!(
                            "found record {} where record {} belongs",
                            head.seq, self.expected_seq
                        ),
                    )
                } else {
                    (
                        FailureKind::Reordered,
                        format!(
                            "found record {} after record {}",
                            head.seq,
                            self.expected_seq.saturating_sub(1)
                        ),
                    )
                };
                return self.broken(Failure {
                    kind,
                    file: path,
                    line,
                    record: self.expected_seq,
                    why,
                });
            }
            if head.prev != self.prev_hash {
                let (file, line) = self.prev_at.clone().unwrap_or((path, line));
                return self.broken(Failure {
                    kind: FailureKind::Rehashed,
                    file,
                    line,
                    record: self.expected_seq.saturating_sub(1),
                    why: format!(
                        "record {} links to a previous hash {}…, but this record hashes to {}…",
                        head.seq,
                        &head.prev[..head.prev.len().min(12)],
                        &self.prev_hash[..12]
                    ),
                });
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match (&entry, line == 1) {
                (Entry::Segment(s), true) => {
                    if s.file != name || s.previous_file != self.prev_file {
                        return self.broken(Failure {
                            kind: FailureKind::FileMissing,
                            file: path,
                            line,
                            record: head.seq,
                            why: format!(
                                "its segment record names file {} after {:?}, but it is {} after {:?}",
                                s.file, s.previous_file, name, self.prev_file
                            ),
                        });
                    }
                    self.prev_file = Some(name);
                }
                (Entry::Segment(_), false) => {
                    return self.broken(Failure {
                        kind: FailureKind::Reordered,
                        file: path,
                        line,
                        record: head.seq,
                        why: "a segment record that is not the first line of its file".into(),
                    });
                }
                (_, true) => {
                    return self.broken(Failure {
                        kind: FailureKind::FileMissing,
                        file: path,
                        line,
                        record: head.seq,
                        why: "the file does not start with its segment record".into(),
                    });
                }
                _ => {}
            }
            self.expected_seq += 1;
            self.prev_hash = hash.clone();
            self.prev_at = Some((path.clone(), line));
            return Ok(Some(Step::Record(Box::new(StoredRecord {
                seq: head.seq,
                prev: head.prev,
                hash,
                file: path,
                line,
                entry,
            }))));
        }
    }

    /// Ends the walk at `failure`.
    fn broken(&mut self, failure: Failure) -> Result<Option<Step>> {
        self.done = true;
        Ok(Some(Step::Broken(failure)))
    }

    /// After a [`FailureKind::Removed`] at record `missing`: whether that
    /// record appears later (then the records were reordered, not removed).
    pub(crate) fn seen_later(dir: &Path, missing: u64) -> Result<bool> {
        for (_, path) in list_files(dir)? {
            let f = File::open(&path).map_err(io(&path))?;
            for line in BufReader::new(f).split(b'\n') {
                let line = line.map_err(io(&path))?;
                if let Ok((head, _, _)) = parse_line(&line)
                    && head.seq == missing
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
