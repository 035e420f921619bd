//! How a file that a Valor user keeps (a report, a table, a tokenizer, a
//! checkpoint, a fitted mitigation) reaches the disk: never half-written.
//!
//! [`write_atomic`] writes into a temporary file in the target's folder,
//! flushes and fsyncs it, renames it over the target and fsyncs the folder,
//! so a reader (or a machine that loses power) sees the old file or the
//! complete new one. The file gets an ordinary file's mode (0666 less the
//! umask, so 0644 under the usual 022), not the owner-only 0600 that
//! temporary files are created with: what is written here is kept and
//! shared.
//!
//! This crate owns only that procedure. It does not know about file
//! formats or the other crates' error types: each crate wraps
//! [`WriteError`] in its own. It is the one Valor crate every library may
//! depend on, and it depends on none (`cargo xtask` tidy tests check both).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A failed atomic write: the path it concerns (the target, or its folder
/// when the folder could not be made or synced) and the cause. The target
/// is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Reads a small text file (a configuration, a spec, a `values.toml`)
/// whole, refusing one larger than `limit` bytes before reading it, so a
/// wrong path (a data file, a device) cannot make Valor allocate without
/// bound. The error is an `io::Error` of kind `InvalidData` naming the size
/// and the limit (callers add the path).
pub fn read_to_string_capped(path: &Path, limit: u64) -> io::Result<String> {
    use std::io::Read;
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a folder, not a file",
        ));
    }
    let too_big = |size: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "is {size} bytes, more than the {limit} bytes such a file may have (is it the right file?)"
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    // A pipe or device reports no size: read at most one byte past the limit.
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Writes `path` atomically with what `write` puts into the file, making
/// its folder if needed. When `write` fails, `path` is unchanged and no
/// temporary file is left.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), WriteError> {
    write_atomic_with_prefix(path, ".tmp", write)
}

/// [`write_atomic`] with temporary files named `prefix…`, for folders
/// whose owner recognises (and cleans up) its own leftovers.
pub fn write_atomic_with_prefix(
    path: &Path,
    prefix: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let at = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Created with this mode, so the kernel applies the umask.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(at(dir))?;
    write(tmp.as_file_mut()).map_err(at(path))?;
    tmp.as_file_mut().flush().map_err(at(path))?;
    tmp.as_file().sync_all().map_err(at(path))?;
    tmp.persist(path).map_err(|e| at(path)(e.error))?;
    sync_dir(dir).map_err(at(dir))
}

/// Fsyncs a folder, so that renames and new entries in it are durable. A
/// no-op where folders cannot be opened (not Unix).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn capped_reads_refuse_large_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert_eq!(read_to_string_capped(&p, 6).unwrap(), "a = 1\n");
        let e = read_to_string_capped(&p, 5).unwrap_err();
        assert!(e.to_string().contains("6 bytes, more than the 5"), "{e}");
        assert!(read_to_string_capped(dir.path(), 100).is_err());
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert!(
            read_to_string_capped(&p, 100)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, |f| f.write_all(b"one")).unwrap();
        write_atomic(&p, |f| f.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(dir.path()), ["r.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, |f| f.write_all(b"old")).unwrap();
        let err = write_atomic(&p, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(err.path, p);
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["r.json"]);
    }

    #[test]
    fn makes_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/r.txt");
        write_atomic(&p, |f| f.write_all(b"x")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn a_folder_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let err = write_atomic(&blocker.join("r.txt"), |f| f.write_all(b"x")).unwrap_err();
        assert_eq!(err.path, blocker);
    }

    #[cfg(unix)]
    #[test]
    fn files_get_an_ordinary_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (p, probe) = (dir.path().join("r.json"), dir.path().join("probe"));
        write_atomic(&p, |f| f.write_all(b"{}")).unwrap();
        std::fs::write(&probe, b"").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&probe));
    }
}
