//! wal-archive's error type.
//!
//! Policy: each variant names the file, object or backup concerned and maps to one exit status from
//! `ops_common::exit`. `fetch` has its own mapping on top (see `commands::fetch`): there, anything
//! but a clean "not in the archive" must stop PostgreSQL's recovery.

use std::path::PathBuf;

use ops_common::cli::{ToolError, output_exit_code};
use ops_common::exit;
use ops_common::output::OutputError;

/// Result with wal-archive's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a wal-archive command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings, envdir, config file (and storage, through the common crate).
    #[error(transparent)]
    Settings(#[from] ops_common::Error),
    /// A local file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// PostgreSQL refused a connection or a statement.
    #[error("PostgreSQL: {context}: {source}")]
    Database {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file given to push or fetch is not something PostgreSQL archives.
    #[error("{0}")]
    Usage(String),
    /// The archive already holds different content, or belongs to another cluster.
    #[error("{0}")]
    Conflict(String),
    /// A stored object or a WAL file failed its checks.
    #[error("{0}")]
    Integrity(String),
    /// A named backup or file does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A push or fetch took longer than `WAL_ARCHIVE_TIMEOUT`.
    #[error("gave up after {0:?} (WAL_ARCHIVE_TIMEOUT)")]
    Timeout(std::time::Duration),
    /// PostgreSQL (`pg_ctl`, recovery) did not do what was expected.
    #[error("{0}")]
    Server(String),
    /// `fetch` could not tell whether a file exists: recovery must stop rather than end early.
    #[error(
        "fetching {file}: {cause} (exit status 200 stops recovery rather than ending it early)"
    )]
    AbortRecovery {
        /// The file PostgreSQL asked for.
        file: String,
        /// What went wrong.
        #[source]
        cause: Box<Error>,
    },
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

    /// A database error with what we were doing.
    pub fn db(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Database {
            context: context.into(),
            source,
        }
    }
}

impl ToolError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Settings(e) => e.exit_code(),
            Self::Io { .. } => exit::IO,
            Self::Database { .. } | Self::Server(_) => exit::DATABASE,
            Self::Usage(_) => exit::USAGE,
            Self::Conflict(_) => exit::CONFLICT,
            Self::Integrity(_) => exit::INTEGRITY,
            Self::NotFound(_) => exit::NOT_FOUND,
            Self::Timeout(_) => exit::STORAGE_UNAVAILABLE,
            Self::AbortRecovery { .. } => exit::ABORT_RECOVERY,
            Self::Output(e) => output_exit_code(e),
        }
    }
}
