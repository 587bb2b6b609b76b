//! The compiled plan: every resource rendered to its final form, and the results of applying it.
//!
//! This is what crosses the SSH connection, as JSON: the controller sends a [`Plan`] on the
//! remote `deploy apply-plan`'s stdin, and reads one [`Event`] per line from its stdout. The plan
//! holds secrets (the files that need them, and the list used to mask output), so it only ever
//! lives in memory and in the pipe; `apply-plan` never writes it anywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The version of the plan format; `apply-plan` refuses any other.
pub const FORMAT: u32 = 1;

/// A compiled plan for one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// [`FORMAT`].
    pub format: u32,
    /// The version of the deploy binary that compiled it.
    pub version: String,
    /// The environment.
    pub environment: String,
    /// The host's name in the inventory.
    pub host: String,
    /// How to apply it.
    pub options: Options,
    /// The resources, in plan order.
    pub resources: Vec<Resource>,
    /// The handlers, in plan order.
    pub handlers: Vec<Handler>,
    /// Every secret value, so the side applying the plan masks what it reports.
    pub secrets: Vec<String>,
}

/// How a plan is applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    /// Apply or roll back.
    pub mode: Mode,
    /// Change nothing; report what would change.
    pub check: bool,
    /// Report unified diffs of changes.
    pub diff: bool,
    /// Apply under this directory instead of `/`.
    pub root: Option<PathBuf>,
}

/// What to do with the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bring every resource to its state.
    #[default]
    Apply,
    /// Switch each release back to the previous one.
    Rollback,
}

/// The kinds of resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A directory of one-value files (daemontools' envdir).
    Envdir,
    /// A file in `/etc/cron.d`.
    Cron,
    /// A systemd unit.
    Systemd,
    /// Debian packages.
    Package,
    /// A swap file.
    Swapfile,
    /// A shell command.
    Command,
    /// A git checkout.
    Git,
    /// A PostgreSQL server setting.
    PostgresSetting,
    /// A Capistrano-style release.
    Release,
}

impl Kind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Kind; 12] = [
        Kind::File,
        Kind::Directory,
        Kind::Symlink,
        Kind::Envdir,
        Kind::Cron,
        Kind::Systemd,
        Kind::Package,
        Kind::Swapfile,
        Kind::Command,
        Kind::Git,
        Kind::PostgresSetting,
        Kind::Release,
    ];

    /// The key that names a resource of this kind in the plan (`file: /etc/…`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
            Kind::Envdir => "envdir",
            Kind::Cron => "cron",
            Kind::Systemd => "systemd",
            Kind::Package => "package",
            Kind::Swapfile => "swapfile",
            Kind::Command => "command",
            Kind::Git => "git",
            Kind::PostgresSetting => "postgres_setting",
            Kind::Release => "release",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// A resource of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    /// Where it is defined: `plan/web.yml#3` (1-based).
    pub source: String,
    /// Its kind.
    pub kind: Kind,
    /// What it is shown as: its `name:`, or the value of its kind's key.
    pub name: String,
    /// The handlers it notifies when it changes.
    pub notify: Vec<String>,
    /// What it manages; `None` when its `when:` is false.
    pub spec: Option<Spec>,
}

/// What a resource manages, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Spec {
    /// A file.
    File(FileSpec),
    /// A directory.
    Directory(DirectorySpec),
    /// A symbolic link.
    Symlink(SymlinkSpec),
    /// An envdir.
    Envdir(EnvdirSpec),
    /// `/etc/cron.d/<name>`.
    Cron(CronSpec),
    /// A systemd unit.
    Systemd(SystemdSpec),
    /// Debian packages.
    Package(PackageSpec),
    /// A swap file.
    Swapfile(SwapfileSpec),
    /// A command.
    Command(CommandSpec),
    /// A git checkout.
    Git(GitSpec),
    /// A PostgreSQL setting.
    PostgresSetting(PostgresSettingSpec),
    /// A release.
    Release(ReleaseSpec),
}

/// Present or absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// It exists as described.
    #[default]
    Present,
    /// It does not exist.
    Absent,
}

/// Owner, group and mode of a file or directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// The owning user, by name.
    pub owner: Option<String>,
    /// The owning group, by name.
    pub group: Option<String>,
    /// The permission bits; `None`: left as they are (new files get a default).
    pub mode: Option<u32>,
}

/// A file's content: text, or base64 for bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        enum Repr<'a> {
            #[serde(rename = "text")]
            Text(&'a str),
            #[serde(rename = "base64")]
            Base64(String),
        }
        match std::str::from_utf8(&self.0) {
            Ok(text) => Repr::Text(text).serialize(s),
            Err(_) => {
                Repr::Base64(base64::engine::general_purpose::STANDARD.encode(&self.0)).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        enum Repr {
            #[serde(rename = "text")]
            Text(String),
            #[serde(rename = "base64")]
            Base64(String),
        }
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(Bytes(t.into_bytes())),
            Repr::Base64(b) => base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map(Bytes)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSpec {
    /// The file.
    pub path: PathBuf,
    /// Present or absent.
    pub state: State,
    /// The content (present files).
    pub content: Option<Bytes>,
    /// Owner, group, mode.
    pub attrs: Attrs,
    /// A command that checks the new content before it replaces the file; `%s` is the new file.
    pub validate: Option<String>,
}

/// `directory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorySpec {
    /// The directory.
    pub path: PathBuf,
    /// Present or absent.
    pub state: State,
    /// Owner, group, mode.
    pub attrs: Attrs,
}

/// `symlink`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymlinkSpec {
    /// The link.
    pub path: PathBuf,
    /// Where it points (present links).
    pub target: Option<PathBuf>,
    /// Present or absent.
    pub state: State,
    /// Owner and group of the link itself.
    pub attrs: Attrs,
    /// Replace a file that is in the way.
    pub force: bool,
}

/// `envdir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvdirSpec {
    /// The directory (mode 0700).
    pub path: PathBuf,
    /// Each file's name and its content as envdir reads it (newlines as NUL, a final newline).
    pub files: BTreeMap<String, String>,
    /// Owner and group of the directory and its files.
    pub attrs: Attrs,
}

/// `cron`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronSpec {
    /// The file name in `/etc/cron.d`.
    pub name: String,
    /// The file's content.
    pub content: String,
}

/// A service's wanted run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Running.
    Started,
    /// Not running.
    Stopped,
}

/// `systemd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemdSpec {
    /// The unit's name, with its suffix (`foi.puma.service`).
    pub unit: String,
    /// The unit file's content, written to `/etc/systemd/system/<unit>`; `None`: a unit that
    /// another package installs.
    pub content: Option<String>,
    /// Enabled at boot (`None`: left as it is).
    pub enabled: Option<bool>,
    /// Running or not (`None`: left as it is).
    pub state: Option<ServiceState>,
}

/// `package`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSpec {
    /// Debian package names.
    pub names: Vec<String>,
}

/// `swapfile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapfileSpec {
    /// The swap file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// How a command runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// The command, run by `/bin/sh -c`.
    pub command: String,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Environment variables (on top of a minimal environment: `PATH`, `HOME`, `LANG`).
    pub env: BTreeMap<String, String>,
    /// Run as this user (through `runuser`, when deploy runs as root).
    pub user: Option<String>,
}

/// `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The command.
    pub exec: Exec,
    /// Not run when this path exists.
    pub creates: Option<PathBuf>,
    /// Not run when this command succeeds (run with the same user, directory and environment).
    pub unless: Option<String>,
}

/// `git`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitSpec {
    /// The working tree.
    pub path: PathBuf,
    /// The repository URL.
    pub repo: String,
    /// The branch, tag or full commit id.
    pub reference: String,
    /// Owner of the checkout's files.
    pub owner: Option<String>,
}

/// `postgres_setting`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresSettingSpec {
    /// The setting's name.
    pub name: String,
    /// Its value, as `ALTER SYSTEM SET name = 'value'` gets it.
    pub value: String,
    /// The server: a host name or a socket directory (psql's `-h`).
    pub host: Option<String>,
    /// The server's port.
    pub port: Option<u16>,
    /// The database user (a superuser).
    pub db_user: String,
    /// The database to connect to.
    pub database: String,
    /// The system user psql runs as when deploy runs as root (for peer authentication).
    pub os_user: Option<String>,
}

/// A release's health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// An `http://` URL that must answer 2xx or 3xx to a GET.
    pub url: Option<String>,
    /// A command that must succeed (run in the new release, as the release's user).
    pub command: Option<String>,
    /// Attempts before giving up.
    pub retries: u32,
    /// Seconds between attempts.
    pub delay: f64,
    /// Seconds one attempt may take.
    pub timeout: f64,
}

/// `release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    /// The deploy directory (`releases/`, `shared/`, `repo/`, `current`).
    pub path: PathBuf,
    /// The repository URL.
    pub repo: String,
    /// The branch, tag or full commit id.
    pub reference: String,
    /// How many releases to keep (the live one is never deleted).
    pub keep: usize,
    /// Owner of the release, and the user its commands run as.
    pub user: Option<String>,
    /// Directories of `shared/` linked into each release.
    pub shared_dirs: Vec<String>,
    /// Files of `shared/` linked into each release.
    pub shared_files: Vec<String>,
    /// Check out submodules (a clone sharing the cached repository, instead of `git archive`).
    pub submodules: bool,
    /// Environment of the release's commands.
    pub env: BTreeMap<String, String>,
    /// Commands run in the new release before anything else (bundle install, assets).
    pub build: Vec<String>,
    /// Commands run in the new release just before the switch (migrations).
    pub before_switch: Vec<String>,
    /// Commands run right after the switch (restart the application server), and again after
    /// switching back.
    pub after_switch: Vec<String>,
    /// Checked after the switch; on failure the previous release is switched back.
    pub health_check: Option<HealthCheck>,
}

/// A handler: run once at the end when a resource that notifies it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handler {
    /// Its name, as resources' `notify` give it.
    pub name: String,
    /// Where it is defined.
    pub source: String,
    /// What it does.
    pub action: HandlerAction,
}

/// What a handler does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HandlerAction {
    /// Runs a command.
    Command(Exec),
    /// `systemctl <action> <unit>`.
    Systemd {
        /// The unit.
        unit: String,
        /// `restart`, `reload`, `reload-or-restart`, `start`, `stop` or `daemon-reload`.
        action: String,
    },
}

/// The outcome of one resource or handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Already as described.
    Ok,
    /// Changed (or, in check mode, would change).
    Changed,
    /// Could not be brought to its state.
    Failed,
    /// Not applied: `when` is false, `--root`, or an earlier failure.
    Skipped,
}

impl Status {
    /// The word shown.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// One result, as printed and as streamed from a remote host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Where the resource or handler is defined.
    pub source: String,
    /// `handler`, or the resource's kind.
    pub kind: String,
    /// The resource's or handler's name.
    pub name: String,
    /// What happened.
    pub status: Status,
    /// More about it (what changed, why it was skipped, why it failed); secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A unified diff of the change (with `--diff`); secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Counts of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Already as described.
    pub ok: usize,
    /// Changed, or would change.
    pub changed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Summary {
    /// Counts one result.
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
    }

    /// Adds another summary.
    pub fn absorb(&mut self, other: &Summary) {
        self.ok += other.ok;
        self.changed += other.changed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// A line of `apply-plan`'s output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A resource or handler was applied.
    Result(Outcome),
    /// The plan is done.
    Done(Summary),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_travel_as_text_or_base64() {
        let text = serde_json::to_string(&Bytes(b"hi\n".to_vec())).unwrap();
        assert_eq!(text, r#"{"text":"hi\n"}"#);
        let binary = serde_json::to_string(&Bytes(vec![0xff, 0])).unwrap();
        assert_eq!(binary, r#"{"base64":"/wA="}"#);
        for json in [text, binary] {
            let back: Bytes = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
    }

    #[test]
    fn events_are_one_json_object_each() {
        let e = Event::Result(Outcome {
            source: "plan/a.yml#1".into(),
            kind: "file".into(),
            name: "/etc/x".into(),
            status: Status::Changed,
            message: None,
            diff: None,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"event":"result","source":"plan/a.yml#1","kind":"file","name":"/etc/x","status":"changed"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let done = serde_json::to_string(&Event::Done(Summary::default())).unwrap();
        assert!(done.starts_with(r#"{"event":"done""#), "{done}");
    }
}
