//! The error type of `vault-tool`, and how each error maps to an exit status.
//!
//! Policy:
//! - An error names its input (a path, `stdin`, a password source) and says what is wrong and,
//!   for a malformed vault, where (line and column in the file, or the field of the envelope).
//! - An error never contains a secret: no password, no plaintext, no derived key. Password
//!   sources are named by their label and path, never by their content.
//! - Nothing is written when an error is returned before the final write: every command
//!   decrypts and encrypts everything it needs first, then writes atomically.
//! - Each variant maps to one status of [`ops_common::exit`] (wrong password → `AUTH`, malformed
//!   input → `INPUT`, …); the driver prints the error once, on one line.

use std::fmt;
use std::path::{Path, PathBuf};

use ops_common::cli::ToolError;
use ops_common::exit;
use ops_common::output::OutputError;

/// Result with `vault-tool`'s [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a vault envelope or a YAML file, and where.
///
/// Lines and columns are 1-based and count in the file being read (for an inline `!vault` value
/// found by position, in the YAML file around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The line, when known.
    pub line: Option<usize>,
    /// The column (in bytes), when known.
    pub column: Option<usize>,
    /// What is wrong; never contains decrypted data.
    pub message: String,
}

impl FormatError {
    /// A problem without a position.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a line and column.
    pub fn at(line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// The same problem, for an envelope that starts at `line` and is indented by `indent` columns
    /// in a larger file: positions become positions in that file.
    #[must_use]
    pub fn shifted(mut self, line: usize, indent: usize) -> Self {
        if let Some(l) = self.line.as_mut() {
            *l += line - 1;
            if let Some(c) = self.column.as_mut() {
                *c += indent;
            }
        }
        self
    }

    /// The same problem with context in front (e.g. the YAML key holding an inline vault): the
    /// position, relative to that context, moves into the message after it.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self::new(format!("{context}: {self}"))
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FormatError {}

/// Everything that can go wrong in `vault-tool`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not a valid vault (or not valid YAML around inline values).
    #[error("{}{problem}", prefix(input.as_deref()))]
    Malformed {
        /// The file (or `stdin`), when known.
        input: Option<String>,
        /// What is wrong, and where.
        problem: FormatError,
    },
    /// None of the loaded passwords decrypts the input (the HMAC did not match).
    #[error("{}decryption failed: wrong vault password{}", prefix(input.as_deref()), tried_list(tried))]
    WrongPassword {
        /// The file, when known.
        input: Option<String>,
        /// The vault ids (labels) of the passwords tried.
        tried: Vec<String>,
    },
    /// `ANSIBLE_VAULT_ID_MATCH` is on and no loaded password has the vault's label.
    #[error(
        "{}no password for vault id {label:?} (ANSIBLE_VAULT_ID_MATCH is on; loaded: {})",
        prefix(input.as_deref()),
        loaded.join(", ")
    )]
    NoMatchingPassword {
        /// The file, when known.
        input: Option<String>,
        /// The label in the vault's header.
        label: String,
        /// The labels of the passwords loaded.
        loaded: Vec<String>,
    },
    /// The input was expected to be vault-encrypted and is not.
    #[error("{input}: not vault-encrypted (no `$ANSIBLE_VAULT` header, no `!vault` values)")]
    NotEncrypted {
        /// The file.
        input: String,
    },
    /// The input to encrypt is already vault-encrypted (ansible refuses this too).
    #[error("{}already vault-encrypted", prefix(input.as_deref()))]
    AlreadyEncrypted {
        /// The file, when known.
        input: Option<String>,
    },
    /// A vault id label that the format cannot carry.
    #[error("invalid vault id {label:?}: {reason}")]
    InvalidLabel {
        /// The label.
        label: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A command needs a password and none was given.
    #[error(
        "no vault password: give --vault-password-file or --vault-id, or set ANSIBLE_VAULT_PASSWORD_FILE or VAULT_TOOL_PASSWORD"
    )]
    NoPassword,
    /// A password source could not give a password.
    #[error("vault password from {origin}: {message}")]
    PasswordSource {
        /// The source: its label and path, or the setting's name; never the password.
        origin: String,
        /// What went wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        cause: Option<std::io::Error>,
    },
    /// Several passwords are loaded and the command must encrypt with one.
    #[error(
        "the vault ids {} are loaded; choose the one to encrypt with with --encrypt-vault-id (or ANSIBLE_VAULT_ENCRYPT_IDENTITY)",
        labels.join(", ")
    )]
    AmbiguousEncryptId {
        /// The labels loaded.
        labels: Vec<String>,
    },
    /// `--encrypt-vault-id` names a label that no loaded password has.
    #[error("--encrypt-vault-id {label}: no password with that vault id is loaded (loaded: {})", loaded.join(", "))]
    UnknownEncryptId {
        /// The label asked for.
        label: String,
        /// The labels loaded.
        loaded: Vec<String>,
    },
    /// An invalid command line that clap cannot express.
    #[error("{0}")]
    Usage(String),
    /// `create` refuses to overwrite.
    #[error("{}: already exists; use `vault-tool edit` to change it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file changed on disk while it was being edited; the edit was saved next to it.
    #[error(
        "{}: changed on disk while it was being edited; your edit is saved, encrypted, as {}",
        path.display(),
        saved.display()
    )]
    ChangedDuringEdit {
        /// The file edited.
        path: PathBuf,
        /// Where the edited version was saved (encrypted).
        saved: PathBuf,
    },
    /// The editor could not be run or failed; the file is unchanged.
    #[error("editor {command:?}: {message}; nothing was saved")]
    Editor {
        /// The editor command (from `EDITOR`).
        command: String,
        /// What happened.
        message: String,
    },
    /// A file named on the command line does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// A variable asked for is not in any of the files read.
    #[error("{key}: not defined in {}", files.join(", "))]
    MissingKey {
        /// The YAML key.
        key: String,
        /// The files searched.
        files: Vec<String>,
    },
    /// A value that cannot be written where it was asked to go.
    #[error("{what}: {message}")]
    Unrepresentable {
        /// The value's name.
        what: String,
        /// Why.
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
    /// An error from the common crate (atomic writes, settings).
    #[error(transparent)]
    Common(#[from] ops_common::Error),
    /// Writing to stdout failed (a closed pipe ends the command successfully).
    #[error(transparent)]
    Output(#[from] OutputError),
}

fn prefix(input: Option<&str>) -> String {
    input.map(|i| format!("{i}: ")).unwrap_or_default()
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" (tried vault ids: {})", tried.join(", "))
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns; a missing file becomes [`Error::NotFound`].
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound { path }
        } else {
            Self::Io { path, source }
        }
    }

    /// A malformed-input error without a known input name.
    pub fn malformed(problem: FormatError) -> Self {
        Self::Malformed {
            input: None,
            problem,
        }
    }

    /// The same error, naming the input it concerns (in front of a more precise one, such as the
    /// YAML key of an inline value).
    #[must_use]
    pub fn for_input(mut self, name: &str) -> Self {
        match &mut self {
            Self::Malformed { input, .. }
            | Self::WrongPassword { input, .. }
            | Self::NoMatchingPassword { input, .. }
            | Self::AlreadyEncrypted { input } => {
                *input = Some(match input.take() {
                    Some(inner) => format!("{name}: {inner}"),
                    None => name.to_owned(),
                });
            }
            _ => {}
        }
        self
    }

    /// The status from [`ops_common::exit`] this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Malformed { .. }
            | Self::NotEncrypted { .. }
            | Self::AlreadyEncrypted { .. }
            | Self::Unrepresentable { .. } => exit::INPUT,
            Self::WrongPassword { .. } | Self::NoMatchingPassword { .. } => exit::AUTH,
            Self::NoPassword
            | Self::PasswordSource { .. }
            | Self::AmbiguousEncryptId { .. }
            | Self::UnknownEncryptId { .. } => exit::CONFIG,
            Self::InvalidLabel { .. } | Self::Usage(_) => exit::USAGE,
            Self::Exists { .. } | Self::ChangedDuringEdit { .. } => exit::CONFLICT,
            Self::Editor { .. } => exit::FAILURE,
            Self::NotFound { .. } | Self::MissingKey { .. } => exit::NOT_FOUND,
            Self::Io { .. } => exit::IO,
            Self::Common(e) => e.exit_code(),
            Self::Output(e) => ops_common::cli::output_exit_code(e),
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
    fn positions_shift_into_the_surrounding_file() {
        let e = FormatError::at(2, 5, "bad").shifted(10, 10);
        assert_eq!(e.to_string(), "line 11, column 15: bad");
        let e = FormatError::new("bad")
            .shifted(10, 10)
            .context("value of `x`");
        assert_eq!(e.to_string(), "value of `x`: bad");
        let e = FormatError::at(3, 5, "bad").context("value of `x`");
        assert_eq!(e.to_string(), "value of `x`: line 3, column 5: bad");
    }

    #[test]
    fn errors_map_to_the_documented_statuses() {
        let wrong = Error::WrongPassword {
            input: None,
            tried: vec!["default".into()],
        };
        assert_eq!(wrong.exit_code(), exit::AUTH);
        assert_eq!(
            wrong.for_input("a.yml").to_string(),
            "a.yml: decryption failed: wrong vault password (tried vault ids: default)"
        );
        assert_eq!(
            Error::malformed(FormatError::new("x")).exit_code(),
            exit::INPUT
        );
        assert_eq!(Error::NoPassword.exit_code(), exit::CONFIG);
        assert_eq!(
            Error::Output(OutputError::Closed).exit_code(),
            exit::SUCCESS
        );
        assert_eq!(
            Error::io("x", std::io::Error::from(std::io::ErrorKind::NotFound)).exit_code(),
            exit::NOT_FOUND
        );
    }
}
