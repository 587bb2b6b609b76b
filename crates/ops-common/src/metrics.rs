//! Prometheus textfile metrics for cron jobs.
//!
//! node_exporter's textfile collector reads every `*.prom` file in a directory on each scrape, so a
//! file must never be seen half written: it is written atomically ([`crate::fsutil`]) under the name
//! `<tool>_<command>.prom`, mode 0644 (the collector usually runs as another user). Each run replaces
//! the whole file; a job that stops running leaves its last values, and alerts should look at the
//! `*_last_run_timestamp_seconds` gauge every file carries.
//!
//! Format reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Result;

/// The metrics of one run of one command.
#[derive(Debug, Clone)]
pub struct Metrics {
    prefix: String,
    file_stem: String,
    text: String,
    declared: Vec<String>,
}

impl Metrics {
    /// Metrics for `tool command`, e.g. `("wal-archive", "backup")`: metric names start with
    /// `wal_archive_` and the file is `wal_archive_backup.prom`.
    #[must_use]
    pub fn new(tool: &str, command: &str) -> Self {
        let prefix = sanitize(tool);
        let file_stem = format!("{prefix}_{}", sanitize(command));
        Self {
            prefix,
            file_stem,
            text: String::new(),
            declared: Vec::new(),
        }
    }

    /// Adds a gauge sample. `name` is given without the tool prefix; labels are `(name, value)`.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        let full = format!("{}_{}", self.prefix, sanitize(name));
        if !self.declared.contains(&full) {
            let _ = writeln!(
                self.text,
                "# HELP {full} {}",
                help.replace('\\', "\\\\").replace('\n', "\\n")
            );
            let _ = writeln!(self.text, "# TYPE {full} gauge");
            self.declared.push(full.clone());
        }
        let _ = write!(self.text, "{full}");
        if !labels.is_empty() {
            let rendered: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}=\"{}\"",
                        sanitize(k),
                        v.replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n")
                    )
                })
                .collect();
            let _ = write!(self.text, "{{{}}}", rendered.join(","));
        }
        let _ = writeln!(self.text, " {}", format_value(value));
        self
    }

    /// The exposition text, ending with the time of this run.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = self.text.clone();
        let name = format!("{}_last_run_timestamp_seconds", self.file_stem);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "# HELP {name} When this command last ran (Unix time)."
        );
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name} {}", format_value(now.as_secs_f64()));
        text
    }

    /// Writes `<dir>/<tool>_<command>.prom` atomically and returns its path.
    ///
    /// # Errors
    /// When the file cannot be written; the previous file is then left as it was.
    pub fn write_to_dir(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(format!("{}.prom", self.file_stem));
        crate::fsutil::write_atomic(&path, self.render().as_bytes(), 0o644)?;
        Ok(path)
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_labels_and_escapes() {
        let mut m = Metrics::new("wal-archive", "backup");
        m.gauge("backup_bytes", "Size.", &[("name", "base_\"1\"")], 42.0);
        m.gauge("backup_bytes", "Size.", &[("name", "b2")], 1.5);
        let text = m.render();
        assert!(text.starts_with(
            "# HELP wal_archive_backup_bytes Size.\n# TYPE wal_archive_backup_bytes gauge\n"
        ));
        assert!(text.contains("wal_archive_backup_bytes{name=\"base_\\\"1\\\"\"} 42\n"));
        assert!(text.contains("wal_archive_backup_bytes{name=\"b2\"} 1.5\n"));
        assert_eq!(text.matches("# TYPE wal_archive_backup_bytes").count(), 1);
        assert!(text.contains("wal_archive_backup_last_run_timestamp_seconds "));
        let dir = tempfile::tempdir().unwrap();
        let path = m.write_to_dir(dir.path()).unwrap();
        assert_eq!(path.file_name().unwrap(), "wal_archive_backup.prom");
    }
}
