//! The common crate's error type.
//!
//! Policy: every variant carries the context an operator needs to act (the setting, the path, the
//! object key) and never a secret value. Storage errors say whether they were "not found",
//! "transient" (retrying later may help) or "permanent"; callers decide on that classification, never
//! on message text. An error is printed once, on one line with its causes, by [`crate::cli`].

use std::path::PathBuf;

use crate::exit;

/// Result with the common crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a storage failure should be treated by its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The object does not exist.
    NotFound,
    /// Timeouts, refused or reset connections, 5xx and throttling: retrying later may succeed.
    Transient,
    /// The store refused the request (access denied, no such bucket, invalid request).
    Permanent,
}

/// Everything that can go wrong in the common crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object store call failed.
    #[error("{op} {key} on {store}: {message}")]
    Storage {
        /// The operation, e.g. `put`.
        op: &'static str,
        /// The object key (or prefix, for list).
        key: String,
        /// The store, as a URL without credentials.
        store: String,
        /// Not-found, transient or permanent.
        kind: StorageErrorKind,
        /// What the store or the network said.
        message: String,
    },
    /// Stored data does not match its checksum.
    #[error("{what}: checksum mismatch (expected {expected}, got {actual})")]
    Integrity {
        /// The object or file.
        what: String,
        /// The checksum recorded when it was written.
        expected: String,
        /// The checksum of what was read.
        actual: String,
    },
    /// A setting has an invalid value or is missing.
    #[error("setting {name}{origin}: {message}")]
    Setting {
        /// The setting's canonical name.
        name: String,
        /// Where the bad value came from, as ` (from …)`, or empty.
        origin: String,
        /// What is wrong; never contains the value of a secret.
        message: String,
    },
    /// An envdir could not be loaded.
    #[error("envdir {}: {message}", dir.display())]
    Envdir {
        /// The envdir.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The config file is unreadable or invalid.
    #[error("config file {}: {message}", path.display())]
    ConfigFile {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The storage classification, if this is a storage error.
    #[must_use]
    pub fn storage_kind(&self) -> Option<StorageErrorKind> {
        match self {
            Self::Storage { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True if this is a storage "not found".
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.storage_kind() == Some(StorageErrorKind::NotFound)
    }

    /// The exit status from [`crate::exit`] this error maps to.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Storage {
                kind: StorageErrorKind::NotFound,
                ..
            } => exit::NOT_FOUND,
            Self::Storage {
                kind: StorageErrorKind::Transient,
                ..
            } => exit::STORAGE_UNAVAILABLE,
            Self::Storage {
                kind: StorageErrorKind::Permanent,
                ..
            } => exit::STORAGE,
            Self::Integrity { .. } => exit::INTEGRITY,
            Self::Setting { .. } | Self::Envdir { .. } | Self::ConfigFile { .. } => exit::CONFIG,
            Self::Io { .. } => exit::IO,
        }
    }
}

/// Renders an error and its chain of causes on one line, `outer: cause: cause`.
///
/// Causes whose text the outer message already contains are skipped, so wrapped errors that repeat
/// their source do not print it twice.
#[must_use]
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Outer(#[source] Error);

    #[test]
    fn one_line_joins_causes_without_repeating_them() {
        let inner = Error::io(
            "/x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone\nreally"),
        );
        let outer = Outer(inner);
        assert_eq!(one_line(&outer), "outer failed: /x: gone really");
    }
}
