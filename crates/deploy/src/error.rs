//! The error type of `deploy`, and how each error maps to an exit status.
//!
//! Policy:
//! - An error about the configuration directory names the file (relative to the directory) and,
//!   for the plan, the resource (`plan/web.yml, resource 3 (file /etc/nginx/…)`), so the operator
//!   can go straight to the line.
//! - An error never contains a secret: no vault password, no decrypted value, no rendered file
//!   content. Messages that may quote command output are masked first (see [`crate::secrets`]).
//! - Errors are what stops a run before or around the plan (configuration, vaults, transport).
//!   A resource that fails while the plan is applied is not an error: it is a `failed` result,
//!   the run goes on with the handlers, and the exit status is [`exit::FAILURE`].

use std::path::{Path, PathBuf};

use ops_common::cli::{ToolError, output_exit_code};
use ops_common::exit;
use ops_common::output::OutputError;

/// Result with `deploy`'s [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a `deploy` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings, envdir or config file (from the common crate), or an atomic write.
    #[error(transparent)]
    Common(#[from] ops_common::Error),
    /// A file of the configuration directory is invalid: YAML, unknown keys, templates, variables.
    #[error("{}{}: {message}", file.display(), context.as_ref().map(|c| format!(", {c}")).unwrap_or_default())]
    Config {
        /// The file, relative to the configuration directory.
        file: PathBuf,
        /// Where in the file: a resource, a handler, a variable.
        context: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A vault file could not be decrypted (no password, wrong password, damaged file).
    #[error("{}: {source}", file.display())]
    Vault {
        /// The vault file, relative to the configuration directory.
        file: PathBuf,
        /// What vault-tool's library said.
        #[source]
        source: vault_tool::Error,
    },
    /// The vault password sources are invalid.
    #[error(transparent)]
    Passwords(vault_tool::Error),
    /// The environment named on the command line is not in the inventory.
    #[error("inventory.yml: no environment {name:?} (environments: {})", known.join(", "))]
    UnknownEnvironment {
        /// The name given.
        name: String,
        /// The environments the inventory has.
        known: Vec<String>,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A host could not be reached, or the deploy process on it failed outside the plan.
    #[error("{host}: {message}")]
    Transport {
        /// The host, as named in the inventory.
        host: String,
        /// What happened.
        message: String,
    },
    /// The compiled plan given to `apply-plan` is not one this binary can apply.
    #[error("compiled plan: {0}")]
    Plan(String),
    /// `rollback` has nothing to roll back to.
    #[error("{0}")]
    NothingToRollBack(String),
    /// An invalid command line that clap cannot express.
    #[error("{0}")]
    Usage(String),
    /// Writing results to stdout (a closed pipe ends the command successfully).
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl Error {
    /// An error about a file of the configuration directory.
    pub fn config(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            file: file.into(),
            context: None,
            message: message.into(),
        }
    }

    /// An error about a place in a file of the configuration directory.
    pub fn config_at(
        file: impl Into<PathBuf>,
        context: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Config {
            file: file.into(),
            context: Some(context.into()),
            message: message.into(),
        }
    }

    /// An I/O error about a path.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The status from [`ops_common::exit`] this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Common(e) => e.exit_code(),
            Self::Config { .. } => exit::CONFIG,
            Self::Vault { source, .. } | Self::Passwords(source) => source.exit_code(),
            Self::UnknownEnvironment { .. } | Self::NothingToRollBack(_) => exit::NOT_FOUND,
            Self::Io { .. } | Self::Transport { .. } => exit::IO,
            Self::Plan(_) => exit::INPUT,
            Self::Usage(_) => exit::USAGE,
            Self::Output(e) => output_exit_code(e),
        }
    }
}

impl ToolError for Error {
    fn exit_code(&self) -> u8 {
        Error::exit_code(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_file_and_the_place() {
        let e = Error::config_at(
            "plan/web.yml",
            "resource 3 (file /etc/x)",
            "unknown key `mod`",
        );
        assert_eq!(
            e.to_string(),
            "plan/web.yml, resource 3 (file /etc/x): unknown key `mod`"
        );
        assert_eq!(e.exit_code(), exit::CONFIG);
        let e = Error::config("inventory.yml", "no environments");
        assert_eq!(e.to_string(), "inventory.yml: no environments");
    }

    #[test]
    fn errors_map_to_the_documented_statuses() {
        let vault = Error::Vault {
            file: "group_vars/staging/vault.yml".into(),
            source: vault_tool::Error::WrongPassword {
                input: None,
                tried: vec!["default".into()],
            },
        };
        assert_eq!(vault.exit_code(), exit::AUTH);
        assert!(
            vault
                .to_string()
                .starts_with("group_vars/staging/vault.yml: ")
        );
        let unknown = Error::UnknownEnvironment {
            name: "prod".into(),
            known: vec!["production".into(), "staging".into()],
        };
        assert_eq!(unknown.exit_code(), exit::NOT_FOUND);
        let down = Error::Transport {
            host: "web1".into(),
            message: "ssh exited with status 255".into(),
        };
        assert_eq!(down.exit_code(), exit::IO);
        assert_eq!(
            Error::Output(OutputError::Closed).exit_code(),
            exit::SUCCESS
        );
    }
}
