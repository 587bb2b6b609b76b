//! Results on stdout.
//!
//! The one place that prints results, so that a closed pipe (`wal-archive list | head -1`) ends the
//! command quietly and successfully, as in ripgrep, instead of an error or a panic.

use std::io::Write;

/// Why printing stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader of stdout went away; the command should end successfully.
    #[error("stdout closed")]
    Closed,
    /// Writing stdout failed for another reason (disk full when redirected to a file).
    #[error("writing to stdout: {0}")]
    Io(#[from] std::io::Error),
}

fn classify(e: std::io::Error) -> OutputError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        OutputError::Closed
    } else {
        OutputError::Io(e)
    }
}

/// Writes text to stdout as it is.
///
/// # Errors
/// [`OutputError::Closed`] on a closed pipe, otherwise the I/O error.
pub fn print(text: &str) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(classify)?;
    out.flush().map_err(classify)
}

/// Writes raw bytes to stdout (decrypted files, man pages).
///
/// # Errors
/// See [`print()`].
pub fn print_bytes(bytes: &[u8]) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).map_err(classify)?;
    out.flush().map_err(classify)
}

/// Writes a value as pretty JSON followed by a newline.
///
/// # Errors
/// See [`print()`].
pub fn print_json(value: &impl serde::Serialize) -> Result<(), OutputError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| OutputError::Io(e.into()))?;
    text.push('\n');
    print(&text)
}
