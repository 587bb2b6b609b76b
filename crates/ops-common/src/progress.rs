//! Progress bars for long interactive operations.
//!
//! Shown on stderr only when stderr is a terminal and logs are text: under cron, in CI or with JSON
//! logs a bar would be noise, so it is hidden and the operation's summary line is what remains.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::logging::LogFormat;

/// A byte-counting bar, or a hidden one when not on a terminal.
#[must_use]
pub fn bytes(total: u64, message: &str, format: LogFormat) -> ProgressBar {
    bar(
        total,
        message,
        format,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// An item-counting bar, or a hidden one when not on a terminal.
#[must_use]
pub fn items(total: u64, message: &str, format: LogFormat) -> ProgressBar {
    bar(
        total,
        message,
        format,
        "{msg} [{bar:30}] {pos}/{len} eta {eta}",
    )
}

fn bar(total: u64, message: &str, format: LogFormat, template: &str) -> ProgressBar {
    if format != LogFormat::Text || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}
