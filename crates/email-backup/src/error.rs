//! email-backup's error type.
//!
//! Policy: each variant says what was being done and to which repository, file or snapshot, never
//! a password, and maps to one exit status from `ops_common::exit`. Errors from `rustic_core` are
//! classified by what they carry: a storage error of the common crate keeps its own class
//! (not-found, transient, permanent), a wrong password is [`exit::AUTH`].

use std::path::PathBuf;

use ops_common::cli::{ToolError, output_exit_code};
use ops_common::exit;
use ops_common::output::OutputError;

/// Result with email-backup's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop an email-backup command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings, envdir, config file, storage (through the common crate).
    #[error(transparent)]
    Settings(#[from] ops_common::Error),
    /// A local file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// There is no repository at the location.
    #[error("no repository at {0}; create one with `email-backup init`")]
    NoRepository(String),
    /// The password opens no key of the repository.
    #[error("wrong password: no key in {0} opens with it")]
    WrongPassword(String),
    /// A repository operation failed in `rustic_core`.
    #[error("{context}: {message}")]
    Repository {
        /// What we were doing.
        context: String,
        /// `rustic_core`'s message, on one line.
        message: String,
        /// The exit status its cause maps to.
        code: u8,
    },
    /// A named thing does not exist (snapshot, path, path in a snapshot).
    #[error("{0}")]
    NotFound(String),
    /// Refused: a lock is held, a file exists, a repository exists.
    #[error("{0}")]
    Conflict(String),
    /// Invalid arguments that clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// Data in the repository failed its checks.
    #[error("{0}")]
    Integrity(String),
    /// Writing results to stdout.
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl Error {
    /// An I/O error about a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a `rustic_core` error, keeping the class of its cause.
    pub fn rustic(context: impl Into<String>, err: &rustic_core::RusticError) -> Self {
        let code = if err.is_incorrect_password() {
            exit::AUTH
        } else {
            storage_cause(err).map_or(exit::FAILURE, ops_common::Error::exit_code)
        };
        Self::Repository {
            context: context.into(),
            message: rustic_message(err),
            code,
        }
    }
}

/// The common crate's storage error at the root of a `rustic_core` error, if any: the backend
/// passes it through as the error's source.
pub(crate) fn storage_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ops_common::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ops_common::Error>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// `rustic_core`'s message on one line, without its multi-line report.
pub(crate) fn rustic_message(err: &rustic_core::RusticError) -> String {
    let text = err.display_log();
    let text = text.strip_prefix("Error: ").unwrap_or(&text);
    text.replace(['\n', '\r'], " ")
}

impl ToolError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Settings(e) => e.exit_code(),
            Self::Io { .. } => exit::IO,
            Self::NoRepository(_) | Self::NotFound(_) => exit::NOT_FOUND,
            Self::WrongPassword(_) => exit::AUTH,
            Self::Repository { code, .. } => *code,
            Self::Conflict(_) => exit::CONFLICT,
            Self::Usage(_) => exit::USAGE,
            Self::Integrity(_) => exit::INTEGRITY,
            Self::Output(e) => output_exit_code(e),
        }
    }
}
