//! envdir directories, read with the exact semantics of daemontools' `envdir`, into a table.
//!
//! Each file in the directory is one variable, named after the file. Its value is the file's first
//! line, with trailing spaces and tabs removed and NUL bytes turned into newlines (the way envdir
//! lets a value contain a newline). An empty file *removes* the variable; a file holding only a
//! newline sets it to the empty string. Names starting with `.` are skipped and a subdirectory is an
//! error, as in envdir.
//!
//! Unlike envdir, the result is a lookup table, never written into the process environment: the
//! tools read settings from it, and secrets in it do not leak into child processes. One deliberate
//! difference: a file whose name contains `=` is refused, where envdir would produce a variable
//! named after the part before the `=` (surprising, and never what was meant).
//!
//! Reference: <https://cr.yp.to/daemontools/envdir.html>.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The effect of one envdir file on a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvdirValue {
    /// The variable is set to this value.
    Set(String),
    /// The file was empty: the variable is removed.
    Remove,
}

/// The merged effect of one or more envdirs: later directories win, and a later empty file removes
/// what an earlier directory set.
#[derive(Debug, Clone, Default)]
pub struct Envdir {
    entries: BTreeMap<String, (EnvdirValue, PathBuf)>,
}

impl Envdir {
    /// Loads the directories in order; a variable in a later one replaces an earlier one.
    ///
    /// # Errors
    /// A directory that cannot be listed, a file that cannot be read, a subdirectory, a name with `=`
    /// or a value that is not UTF-8.
    pub fn load(dirs: &[PathBuf]) -> Result<Self> {
        let mut merged = Self::default();
        for dir in dirs {
            for (name, value) in read_dir(dir)? {
                merged.entries.insert(name, (value, dir.clone()));
            }
        }
        Ok(merged)
    }

    /// The value of `name` after all directories are applied: `None` when no directory sets it or
    /// the last one to mention it removes it.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<(&str, &Path)> {
        match self.entries.get(name) {
            Some((EnvdirValue::Set(value), dir)) => Some((value, dir)),
            _ => None,
        }
    }

    /// Applies the directories to a base environment, as `envdir DIR… cmd` would for `cmd`.
    #[must_use]
    pub fn apply(&self, mut base: BTreeMap<String, String>) -> BTreeMap<String, String> {
        for (name, (value, _)) in &self.entries {
            match value {
                EnvdirValue::Set(v) => {
                    base.insert(name.clone(), v.clone());
                }
                EnvdirValue::Remove => {
                    base.remove(name);
                }
            }
        }
        base
    }
}

/// Reads one envdir into `(name, effect)` pairs, sorted by name.
///
/// # Errors
/// See [`Envdir::load`].
pub fn read_dir(dir: &Path) -> Result<Vec<(String, EnvdirValue)>> {
    let envdir_error = |message: String| Error::Envdir {
        dir: dir.to_path_buf(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| envdir_error(e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| envdir_error(e.to_string()))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            return Err(envdir_error(format!(
                "file name {} is not UTF-8",
                file_name.display()
            )));
        };
        if name.starts_with('.') {
            continue;
        }
        if name.contains('=') {
            return Err(envdir_error(format!(
                "file name {name:?} contains '=', which cannot be in a variable name"
            )));
        }
        let path = entry.path();
        // Like envdir, follow symlinks and refuse anything that is not a regular file.
        let bytes = std::fs::read(&path).map_err(|e| envdir_error(format!("{name}: {e}")))?;
        let value = match parse_value(&bytes) {
            None => EnvdirValue::Remove,
            Some(value) => EnvdirValue::Set(
                String::from_utf8(value)
                    .map_err(|_| envdir_error(format!("{name}: value is not UTF-8")))?,
            ),
        };
        out.push((name.to_owned(), value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The value envdir derives from a file's bytes, or `None` for an empty file (remove the variable).
#[must_use]
pub fn parse_value(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.is_empty() {
        return None;
    }
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let trimmed_len = first_line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    Some(
        first_line[..trimmed_len]
            .iter()
            .map(|&b| if b == 0 { b'\n' } else { b })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_value_follows_envdir() {
        assert_eq!(parse_value(b""), None);
        assert_eq!(parse_value(b"\n"), Some(b"".to_vec()));
        assert_eq!(parse_value(b"v \t \nsecond"), Some(b"v".to_vec()));
        assert_eq!(parse_value(b"crlf\r\n"), Some(b"crlf\r".to_vec()));
        assert_eq!(parse_value(b"a\0b\0\n"), Some(b"a\nb\n".to_vec()));
        assert_eq!(parse_value(b"  lead"), Some(b"  lead".to_vec()));
        // Trailing blanks are removed before NULs become newlines, so a NUL protects a trailing blank.
        assert_eq!(parse_value(b"x \0"), Some(b"x \n".to_vec()));
    }
}
