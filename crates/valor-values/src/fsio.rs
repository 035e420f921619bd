//! Atomic file writes.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically ([`valor_fsio::write_atomic`]):
/// readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    valor_fsio::write_atomic(path, |f| f.write_all(bytes)).map_err(|e| Error::Write {
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// valor-fsio tests the procedure; here only that a failure becomes
    /// this crate's error naming the path.
    #[test]
    fn a_failure_is_a_write_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let err = write_atomic(&blocker.join("out.json"), b"x").unwrap_err();
        assert!(
            matches!(&err, Error::Write { path, .. } if *path == blocker),
            "{err}"
        );
    }
}
