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

/// A size for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod human_bytes_tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
