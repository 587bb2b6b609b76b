//! `rustic_core`'s progress reports as the toolkit's progress bars: drawn on a terminal only
//! (`ops_common::progress`), and otherwise a log line when a phase starts.

use indicatif::ProgressBar;
use ops_common::logging::LogFormat;
use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// `rustic_core`'s [`ProgressBars`], drawn with indicatif on a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Bars {
    format: LogFormat,
}

impl Bars {
    /// Bars for the given log format (hidden unless text logs on a terminal).
    pub fn new(format: LogFormat) -> Self {
        Self { format }
    }

    /// A byte-counting bar for email-backup's own phases.
    pub fn bytes(&self, message: &str) -> ProgressBar {
        ops_common::progress::bytes(0, message, self.format)
    }
}

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        tracing::debug!("{prefix}");
        let bar = match progress_type {
            ProgressType::Bytes => ops_common::progress::bytes(0, prefix, self.format),
            ProgressType::Counter | ProgressType::Spinner => {
                ops_common::progress::items(0, prefix, self.format)
            }
        };
        Progress::new(Bar(bar))
    }
}

#[derive(Debug)]
struct Bar(ProgressBar);

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        self.0.is_hidden()
    }

    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }

    fn set_title(&self, title: &str) {
        self.0.set_message(title.to_owned());
    }

    fn inc(&self, inc: u64) {
        self.0.inc(inc);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
