//! Applying a compiled plan on the machine this process runs on.
//!
//! Resources are applied in order; each reports `ok`, `changed`, `failed` or `skipped` as soon as
//! it is done. After a failure the rest of the resources are reported `skipped` and not applied
//! (what follows may depend on it), but the handlers notified so far still run: a configuration
//! file that changed must not be left unloaded because a later resource failed (ansible's
//! `force_handlers`). Each handler runs once, in the order of the plan, after every resource.
//!
//! In check mode nothing is changed: each resource compares and reports what it would do
//! (read-only commands such as `systemctl is-active`, `dpkg-query` or `git ls-remote` still run).
//! Under `--root`, resources that act on the running system are reported `skipped (--root)`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::accounts::Accounts;
use crate::exec::Program;
use crate::fsops;
use crate::model::{Event, HandlerAction, Kind, Mode, Outcome, Plan, Spec, Status, Summary};
use crate::resources;
use crate::secrets::Masker;

/// What a resource reports when it is done.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Changed (or would change).
    pub changed: bool,
    /// Skipped, and why.
    pub skipped: Option<String>,
    /// What changed, or what was left alone and why.
    pub notes: Vec<String>,
    /// A unified diff (with `--diff`).
    pub diff: Option<String>,
}

impl Change {
    /// Nothing to do.
    pub fn ok() -> Self {
        Self::default()
    }

    /// Skipped for a reason.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self {
            skipped: Some(reason.into()),
            ..Self::default()
        }
    }

    /// Adds a change note.
    pub fn changed(&mut self, note: impl Into<String>) {
        self.changed = true;
        self.notes.push(note.into());
    }

    /// Adds an informative note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Adds a diff (joined to any earlier one).
    pub fn add_diff(&mut self, diff: String) {
        if diff.is_empty() {
            return;
        }
        match &mut self.diff {
            Some(d) => d.push_str(&diff),
            None => self.diff = Some(diff),
        }
    }

    /// Takes in what another change did.
    pub fn merge(&mut self, other: Change) {
        self.changed |= other.changed;
        self.notes.extend(other.notes);
        if let Some(d) = other.diff {
            self.add_diff(d);
        }
    }
}

/// The context resources are applied in.
#[derive(Debug)]
pub struct Ctx {
    /// Apply under this directory instead of `/`.
    pub root: Option<PathBuf>,
    /// Change nothing.
    pub check: bool,
    /// Produce diffs.
    pub diff: bool,
    /// The run's secrets.
    pub masker: Masker,
    /// User and group lookups.
    pub accounts: Accounts,
    warned: RefCell<BTreeSet<String>>,
}

/// The reason resources acting on the running system give under `--root`.
pub const ROOT_SKIP: &str = "--root";

impl Ctx {
    /// The context of a plan.
    pub fn new(plan: &Plan) -> Self {
        let root = plan.options.root.clone();
        Self {
            accounts: Accounts::new(root.as_deref()),
            root,
            check: plan.options.check,
            diff: plan.options.diff,
            masker: Masker::new(plan.secrets.iter().cloned()),
            warned: RefCell::new(BTreeSet::new()),
        }
    }

    /// Where a path of the plan is on this machine.
    pub fn path(&self, path: &Path) -> PathBuf {
        fsops::under(self.root.as_deref(), path)
    }

    /// True when resources act on the running system (no `--root`).
    pub fn live(&self) -> bool {
        self.root.is_none()
    }

    /// Logs a warning once per run.
    pub fn warn_once(&self, key: &str, message: &str) {
        if self.warned.borrow_mut().insert(key.to_owned()) {
            tracing::warn!("{message}");
        }
    }

    /// A user id by name; `None` (with a warning, once) when the user does not exist here.
    pub fn uid(&self, name: Option<&str>) -> Option<u32> {
        let name = name?;
        let found = self.accounts.user(name).map(|u| u.uid);
        if found.is_none() {
            self.warn_once(
                &format!("user:{name}"),
                &format!("there is no user {name:?} here: ownership by {name} is left as it is"),
            );
        }
        found
    }

    /// A group id by name; `None` (with a warning, once) when the group does not exist here.
    pub fn gid(&self, name: Option<&str>) -> Option<u32> {
        let name = name?;
        let found = self.accounts.group(name);
        if found.is_none() {
            self.warn_once(
                &format!("group:{name}"),
                &format!(
                    "there is no group {name:?} here: group ownership by {name} is left as it is"
                ),
            );
        }
        found
    }
}

/// Applies a plan, calling `emit` with each result as it is known, and returns the counts.
pub fn run(plan: &Plan, emit: &mut dyn FnMut(&Event)) -> Summary {
    let ctx = Ctx::new(plan);
    let mut summary = Summary::default();
    let mut notified: BTreeSet<&str> = BTreeSet::new();
    let mut failed = false;
    let mut report = |outcome: Outcome, summary: &mut Summary| {
        summary.add(outcome.status);
        emit(&Event::Result(outcome));
    };
    for resource in &plan.resources {
        if plan.options.mode == Mode::Rollback && resource.kind != Kind::Release {
            continue;
        }
        let base = |status: Status, message: Option<String>, diff: Option<String>| Outcome {
            source: resource.source.clone(),
            kind: resource.kind.key().to_owned(),
            name: ctx.masker.mask(&resource.name),
            status,
            message: message.map(|m| ctx.masker.mask(&m)),
            diff: diff.map(|d| ctx.masker.mask(&d)),
        };
        let Some(spec) = &resource.spec else {
            report(
                base(Status::Skipped, Some("when: false".to_owned()), None),
                &mut summary,
            );
            continue;
        };
        if failed {
            report(
                base(
                    Status::Skipped,
                    Some("not applied: an earlier resource failed".to_owned()),
                    None,
                ),
                &mut summary,
            );
            continue;
        }
        tracing::debug!(resource = %resource.source, kind = %resource.kind, "applying");
        let result = match (plan.options.mode, spec) {
            (Mode::Rollback, Spec::Release(r)) => resources::release::rollback(r, &ctx),
            (_, spec) => apply_spec(spec, &ctx),
        };
        match result {
            Ok(change) => {
                let status = if change.changed {
                    notified.extend(resource.notify.iter().map(String::as_str));
                    Status::Changed
                } else if change.skipped.is_some() {
                    Status::Skipped
                } else {
                    Status::Ok
                };
                let mut notes = change.notes;
                if let Some(reason) = change.skipped {
                    notes.push(reason);
                }
                let message = (!notes.is_empty()).then(|| notes.join("; "));
                report(base(status, message, change.diff), &mut summary);
            }
            Err(message) => {
                failed = true;
                report(base(Status::Failed, Some(message), None), &mut summary);
            }
        }
    }
    for handler in &plan.handlers {
        if !notified.contains(handler.name.as_str()) {
            continue;
        }
        let (status, message) = run_handler(&handler.action, &ctx);
        report(
            Outcome {
                source: handler.source.clone(),
                kind: "handler".to_owned(),
                name: handler.name.clone(),
                status,
                message: message.map(|m| ctx.masker.mask(&m)),
                diff: None,
            },
            &mut summary,
        );
    }
    emit(&Event::Done(summary));
    summary
}

fn apply_spec(spec: &Spec, ctx: &Ctx) -> Result<Change, String> {
    match spec {
        Spec::File(s) => resources::file::apply(s, ctx),
        Spec::Directory(s) => resources::file::directory(s, ctx),
        Spec::Symlink(s) => resources::file::symlink(s, ctx),
        Spec::Envdir(s) => resources::envdir::apply(s, ctx),
        Spec::Cron(s) => resources::file::cron(s, ctx),
        Spec::Systemd(s) => resources::system::systemd(s, ctx),
        Spec::Package(s) => resources::system::package(s, ctx),
        Spec::Swapfile(s) => resources::swapfile::apply(s, ctx),
        Spec::Command(s) => resources::command::apply(s, ctx),
        Spec::Git(s) => resources::git::checkout(s, ctx),
        Spec::PostgresSetting(s) => resources::postgres::apply(s, ctx),
        Spec::Release(s) => resources::release::apply(s, ctx),
    }
}

fn run_handler(action: &HandlerAction, ctx: &Ctx) -> (Status, Option<String>) {
    if !ctx.live() {
        return (Status::Skipped, Some(ROOT_SKIP.to_owned()));
    }
    if ctx.check {
        return (Status::Changed, Some("would run".to_owned()));
    }
    let result = match action {
        HandlerAction::Command(exec) => Program::shell(exec, &ctx.accounts)
            .and_then(|p| p.ok(&format!("`{}`", exec.command)))
            .map(|_| ()),
        HandlerAction::Systemd { unit, action } => {
            let mut p = Program::new("systemctl");
            if action == "daemon-reload" {
                p = p.args(["daemon-reload"]);
            } else {
                p = p.args([action.as_str(), unit.as_str()]);
            }
            p.ok(&format!("systemctl {action} {unit}")).map(|_| ())
        }
    };
    match result {
        Ok(()) => (Status::Changed, None),
        Err(m) => (Status::Failed, Some(m)),
    }
}
