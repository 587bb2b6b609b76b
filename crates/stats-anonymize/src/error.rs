//! stats-anonymize's error type.
//!
//! Policy: an error names the table, column, schema or step concerned and maps to one exit status
//! from `ops_common::exit`. It never carries a secret or a value from a row: the database URLs and
//! the HMAC key are never formatted, and PostgreSQL's messages are kept only for the classes of
//! error whose text cannot quote row data (see [`crate::pg::describe`]); a unique violation's
//! `DETAIL: Key (email)=(…)` or a cast error's `invalid input syntax: "…"` is reduced to its
//! SQLSTATE, and the server log has the rest.
//!
//! Statuses (the table is in `docs/stats-anonymize.md`):
//! - rules that do not match the source schema, or are invalid: [`exit::INPUT`] (12);
//! - the leak scan found something: [`exit::FAILURE`] (1); nothing was swapped in;
//! - the target is not ours, or another run holds the lock: [`exit::CONFLICT`] (5);
//! - `rollback` without a previous copy: [`exit::NOT_FOUND`] (4);
//! - PostgreSQL refused: [`exit::DATABASE`] (9); settings: [`exit::CONFIG`] (3).

use std::path::PathBuf;

use ops_common::cli::{ToolError, output_exit_code};
use ops_common::exit;
use ops_common::output::OutputError;

use crate::rules::Problems;
use crate::scan::Leak;

/// Result with stats-anonymize's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a stats-anonymize command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings, envdir or config file.
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
    /// The rules are invalid, or do not match the source's schema; nothing was written.
    #[error("{0}")]
    Rules(Problems),
    /// PostgreSQL refused a connection or a statement.
    #[error("PostgreSQL: {context}: {message}")]
    Database {
        /// What we were doing (a step, a table).
        context: String,
        /// What PostgreSQL said, reduced to what cannot contain row data.
        message: String,
    },
    /// The leak scan found personal data in the new copy; it was not swapped in.
    #[error("leak scan: {} found in the new copy, which was dropped; the live copy is unchanged: {}", plural(.0.len(), "problem"), Leak::list(.0))]
    Leak(Vec<Leak>),
    /// The target holds something that is not ours, or another run is in progress.
    #[error("{0}")]
    Conflict(String),
    /// Something asked for does not exist (a previous copy to roll back to).
    #[error("{0}")]
    NotFound(String),
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// Interrupted (Ctrl-C or SIGTERM); the target was left as it was.
    #[error("interrupted; the target was left as it was")]
    Interrupted,
    /// Writing results to stdout.
    #[error(transparent)]
    Output(#[from] OutputError),
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl Error {
    /// An I/O error about a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A database error with what we were doing; the message is reduced by [`crate::pg::describe`].
    pub fn db(context: impl Into<String>, source: &tokio_postgres::Error) -> Self {
        Self::Database {
            context: context.into(),
            message: crate::pg::describe(source),
        }
    }
}

impl ToolError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Settings(e) => e.exit_code(),
            Self::Io { .. } => exit::IO,
            Self::Rules(_) => exit::INPUT,
            Self::Database { .. } => exit::DATABASE,
            Self::Leak(_) => exit::FAILURE,
            Self::Conflict(_) => exit::CONFLICT,
            Self::NotFound(_) => exit::NOT_FOUND,
            Self::Usage(_) => exit::USAGE,
            Self::Interrupted => exit::INTERRUPTED,
            Self::Output(e) => output_exit_code(e),
        }
    }
}
