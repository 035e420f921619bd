//! Atomic writes for files the user keeps (reports, fitted mitigations).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically ([`valor_fsio::write_atomic`]): a
/// reader sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    valor_fsio::write_atomic(path, |f| f.write_all(bytes)).map_err(|e| Error::Io {
        path: e.path,
        source: e.source,
    })
}
