//! `verify`: the whole chain, checked; and the streaming reader.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chain::{Failure, FailureKind, Step, TornTail, Walker};
use crate::error::{Error, Result};
use crate::record::StoredRecord;

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The folder.
    pub dir: PathBuf,
    /// The log files, in chain order.
    pub files: Vec<PathBuf>,
    /// Records verified (before the failure, if any).
    pub records: u64,
    /// Of those, decisions and feedback records.
    pub decisions: u64,
    pub feedback: u64,
    /// The last verified record: its index and hash. Publishing this hash
    /// elsewhere (a ticket, a second system) anchors the chain: records
    /// cut from the end of a log can only be noticed against an anchor.
    pub head: Option<ChainHead>,
    /// The last file ends inside a record (see [`TornTail`]).
    pub torn_tail: Option<TornTail>,
    /// The first record where the chain breaks.
    pub failure: Option<Failure>,
}

/// The last record of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl VerifyReport {
    /// The chain is intact (a torn tail is reported but is not a break).
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Checks every record of the log in `dir`: each record's hash over its
/// content, the link (`prev`) to the record before it, consecutive `seq`
/// numbers, and that every file starts with the segment record naming the
/// file before it. Stops at the first break and names it (file, line,
/// record index). `Err` only when the folder cannot be read.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let mut walker = Walker::open(dir)?;
    let mut report = VerifyReport {
        dir: dir.to_owned(),
        files: walker.files().iter().map(|(_, p)| p.clone()).collect(),
        records: 0,
        decisions: 0,
        feedback: 0,
        head: None,
        torn_tail: None,
        failure: None,
    };
    while let Some(step) = walker.step()? {
        match step {
            Step::Record(r) => {
                report.records += 1;
                match r.entry {
                    crate::Entry::Decision(_) => report.decisions += 1,
                    crate::Entry::Feedback(_) => report.feedback += 1,
                    _ => {}
                }
                report.head = Some(ChainHead {
                    seq: r.seq,
                    hash: r.hash,
                });
            }
            Step::Torn(t) => report.torn_tail = Some(t),
            Step::Broken(mut f) => {
                if f.kind == FailureKind::Removed && Walker::seen_later(dir, f.record)? {
                    f.kind = FailureKind::Reordered;
                    f.why = format!("{}; record {} comes later", f.why, f.record);
                }
                report.failure = Some(f);
            }
        }
    }
    Ok(report)
}

/// Streams the records of a log folder back in chain order, checking the
/// chain as it goes (the checks of [`verify`]). A break ends the stream
/// with [`Error::Broken`]; a torn final record with [`Error::TornTail`]
/// (the records before it are complete and were returned).
#[derive(Debug)]
pub struct LedgerReader {
    walker: Walker,
    dir: PathBuf,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker").finish_non_exhaustive()
    }
}

impl LedgerReader {
    /// Opens the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            walker: Walker::open(dir)?,
            dir: dir.to_owned(),
        })
    }
}

impl Iterator for LedgerReader {
    type Item = Result<StoredRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.walker.step() {
            Err(e) => Some(Err(e)),
            Ok(None) => None,
            Ok(Some(Step::Record(r))) => Some(Ok(*r)),
            Ok(Some(Step::Torn(t))) => Some(Err(Error::TornTail(t))),
            Ok(Some(Step::Broken(mut f))) => {
                if f.kind == FailureKind::Removed {
                    match Walker::seen_later(&self.dir, f.record) {
                        Ok(true) => f.kind = FailureKind::Reordered,
                        Ok(false) => {}
                        Err(e) => return Some(Err(e)),
                    }
                }
                Some(Err(Error::Broken(f)))
            }
        }
    }
}
