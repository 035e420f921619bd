//! Which files one `--predictions` argument names: a file, a folder (its
//! files in a format Valor reads, sorted by name), or a glob whose last
//! component holds `*` or `?` (`logs/part-*.parquet`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::table::Format;

/// The files `path` names, sorted; a folder or glob that matches no file is
/// an error naming it.
pub fn expand_inputs(path: &Path) -> Result<Vec<PathBuf>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (dir, pattern): (PathBuf, Option<&str>) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else if name.contains(['*', '?']) {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (dir, Some(name))
    } else {
        return Ok(vec![path.to_path_buf()]);
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let p = entry.path();
        let Some(file) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let wanted = match pattern {
            Some(pat) => glob_match(pat.as_bytes(), file.as_bytes()),
            None => !file.starts_with('.') && Format::from_path(&p).is_ok(),
        };
        if wanted && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            message: match pattern {
                Some(_) => "no file matches this pattern".into(),
                None => "the folder holds no .csv, .tsv, .parquet or .jsonl file".into(),
            },
        });
    }
    Ok(files)
}

/// `*` matches any run of characters, `?` one character.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob_match(b"part-*.parquet", b"part-0001.parquet"));
        assert!(glob_match(b"*", b"x"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"part-*.parquet", b"part-1.csv"));
        assert!(!glob_match(b"a?c", b"ac"));
    }

    #[test]
    fn folders_and_globs_list_sorted_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.parquet", "a.parquet", "notes.txt", ".hidden.csv"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(expand_inputs(dir.path()).unwrap()),
            ["a.parquet", "b.parquet"]
        );
        assert_eq!(
            names(expand_inputs(&dir.path().join("*.txt")).unwrap()),
            ["notes.txt"]
        );
        assert!(expand_inputs(&dir.path().join("*.jsonl")).is_err());
        let one = dir.path().join("a.parquet");
        assert_eq!(expand_inputs(&one).unwrap(), vec![one]);
    }
}
