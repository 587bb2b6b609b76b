//! What `apply` and `rollback` print: a line per resource as it is done, a summary per host, or
//! one JSON document at the end (`--json`, for CI).

use ops_common::output::{self, OutputError};
use serde::Serialize;

use crate::model::{Event, Outcome, Status, Summary};

/// The printer of one command.
#[derive(Debug)]
pub struct Printer {
    json: bool,
    check: bool,
    command: &'static str,
    environment: String,
    hosts: Vec<HostReport>,
    error: Option<OutputError>,
}

#[derive(Debug, Serialize)]
struct HostReport {
    host: String,
    transport: String,
    results: Vec<Outcome>,
    summary: Summary,
}

#[derive(Serialize)]
struct Document<'a> {
    command: &'static str,
    environment: &'a str,
    check: bool,
    hosts: &'a [HostReport],
    summary: Summary,
}

impl Printer {
    /// A printer for a command on an environment.
    pub fn new(command: &'static str, environment: &str, json: bool, check: bool) -> Self {
        Self {
            json,
            check,
            command,
            environment: environment.to_owned(),
            hosts: Vec::new(),
            error: None,
        }
    }

    fn print(&mut self, text: &str) {
        if self.error.is_none()
            && let Err(e) = output::print(text)
        {
            self.error = Some(e);
        }
    }

    /// A host begins.
    pub fn start_host(&mut self, host: &str, transport: &str) {
        self.hosts.push(HostReport {
            host: host.to_owned(),
            transport: transport.to_owned(),
            results: Vec::new(),
            summary: Summary::default(),
        });
        if !self.json {
            let mode = if self.check { ", check mode" } else { "" };
            self.print(&format!(
                "==> {} {}: {host} ({transport}{mode})\n",
                self.command, self.environment
            ));
        }
    }

    /// A result or the end of a host's plan.
    ///
    /// # Panics
    /// If called before [`Printer::start_host`].
    pub fn event(&mut self, event: &Event) {
        let host = self.hosts.last_mut().expect("a host was started");
        match event {
            Event::Result(outcome) => {
                host.results.push(outcome.clone());
                if !self.json {
                    let line = line(outcome, self.check);
                    self.print(&line);
                }
            }
            Event::Done(summary) => {
                host.summary = *summary;
                if !self.json {
                    let name = host.host.clone();
                    let text = format!("{name}: {}\n", summary_text(summary, self.check));
                    self.print(&text);
                }
            }
        }
    }

    /// The counts of every host so far.
    pub fn total(&self) -> Summary {
        let mut total = Summary::default();
        for h in &self.hosts {
            total.absorb(&h.summary);
        }
        total
    }

    /// Prints the end: the JSON document, or the total when there were several hosts.
    ///
    /// # Errors
    /// Writing stdout failed (a closed pipe is [`OutputError::Closed`]).
    pub fn finish(mut self) -> Result<Summary, OutputError> {
        let total = self.total();
        if self.json {
            let doc = Document {
                command: self.command,
                environment: &self.environment,
                check: self.check,
                hosts: &self.hosts,
                summary: total,
            };
            if self.error.is_none()
                && let Err(e) = output::print_json(&doc)
            {
                self.error = Some(e);
            }
        } else if self.hosts.len() > 1 {
            let text = format!("total: {}\n", summary_text(&total, self.check));
            self.print(&text);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

/// `3 changed, 40 ok, 0 failed, 7 skipped`, with a note in check mode.
pub fn summary_text(s: &Summary, check: bool) -> String {
    let changed = if check { "would change" } else { "changed" };
    let mut text = format!(
        "{} ok, {} {changed}, {} failed, {} skipped",
        s.ok, s.changed, s.failed, s.skipped
    );
    if check {
        text.push_str(" (check mode: nothing was changed)");
    }
    text
}

/// One result line, and its diff below it.
pub fn line(o: &Outcome, check: bool) -> String {
    let status = match o.status {
        Status::Changed if check => "would change",
        s => s.word(),
    };
    let mut text = format!("{status:<12} {:<16} {}", o.kind, o.name);
    if let Some(m) = &o.message {
        text.push_str("  (");
        text.push_str(m);
        text.push(')');
    }
    text.push('\n');
    if let Some(d) = &o.diff {
        for l in d.lines() {
            text.push_str("    ");
            text.push_str(l);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summaries() {
        let o = Outcome {
            source: "plan/a.yml#1".into(),
            kind: "file".into(),
            name: "/etc/x".into(),
            status: Status::Changed,
            message: Some("new file".into()),
            diff: Some("+a\n".into()),
        };
        assert_eq!(
            line(&o, false),
            "changed      file             /etc/x  (new file)\n    +a\n"
        );
        assert!(line(&o, true).starts_with("would change file"));
        let s = Summary {
            ok: 40,
            changed: 0,
            failed: 0,
            skipped: 7,
        };
        assert_eq!(
            summary_text(&s, false),
            "40 ok, 0 changed, 0 failed, 7 skipped"
        );
        assert!(summary_text(&s, true).ends_with("(check mode: nothing was changed)"));
    }
}
