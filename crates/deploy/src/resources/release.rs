//! `release`: Capistrano-style releases of an application from git.
//!
//! ```text
//! <path>/repo/                     a mirror of the repository, fetched before each new release
//! <path>/releases/<YYYYmmddHHMMSS>/ one directory per release, with a REVISION file (the commit)
//! <path>/shared/                   what every release shares: config files, uploads, logs
//! <path>/current -> releases/…     the live release
//! ```
//!
//! Idempotency: when `current`'s `REVISION` is the commit the reference names, nothing is done.
//! Otherwise, in order:
//! 1. the mirror is cloned or fetched, and the commit exported into a new release directory
//!    (`git archive`; with `submodules: true`, a clone sharing the mirror's objects, and
//!    `git submodule update --init --recursive`), with `REVISION`;
//! 2. `shared_dirs` (created in `shared/` if missing) and `shared_files` (which must exist: write
//!    them with `file` resources first) replace what the release has at those paths, as links;
//! 3. the release is given to `user`; `build` commands run in it, then `before_switch` (migrations);
//! 4. `current` is switched atomically: a new link renamed over it;
//! 5. `after_switch` commands run (restart the application server), then the `health_check`; if
//!    it fails, `current` is switched back to the previous release, `after_switch` runs again
//!    there, the new release is removed and the resource fails;
//! 6. the newest `keep` releases are kept, and never the live one is removed.
//!
//! A failure before the switch removes the new release and leaves `current` alone. Under
//! `--root`, the directories and links are made in the tree and the commands and health check are
//! skipped. Link targets are the paths on the host (`/var/www/foi/releases/…`), also under
//! `--root`, so the tree is what the host would have.
//!
//! `rollback` switches `current` to the release before it, runs `after_switch` there and removes
//! the release rolled back from (as Capistrano does), so the list of releases stays a line.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::apply::{Change, Ctx, ROOT_SKIP};
use crate::exec::Program;
use crate::fsops;
use crate::model::{Exec, HealthCheck, ReleaseSpec};
use crate::resources::git::{chown_tree, git, resolve_remote, short};

/// The layout of one deploy directory, on the host and on this machine.
struct Layout<'a> {
    spec: &'a ReleaseSpec,
    ctx: &'a Ctx,
}

impl Layout<'_> {
    fn logical(&self, rel: &str) -> PathBuf {
        self.spec.path.join(rel)
    }

    fn real(&self, rel: &str) -> PathBuf {
        self.ctx.path(&self.logical(rel))
    }

    fn release_logical(&self, name: &str) -> PathBuf {
        self.spec.path.join("releases").join(name)
    }

    fn release_real(&self, name: &str) -> PathBuf {
        self.ctx.path(&self.release_logical(name))
    }

    /// The release names, oldest first.
    fn releases(&self) -> Result<Vec<String>, String> {
        let dir = self.real("releases");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_release_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The release `current` points to.
    fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.real("current")).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        is_release_name(&name).then_some(name)
    }

    fn revision(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.release_real(name).join("REVISION"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Points `current` at a release.
    fn switch(&self, name: &str) -> Result<(), String> {
        fsops::replace_symlink(&self.real("current"), &self.release_logical(name))
    }

    /// The release's commands' execution settings.
    fn exec(&self, name: &str, command: &str) -> Exec {
        Exec {
            command: command.to_owned(),
            cwd: Some(self.release_logical(name)),
            env: self.spec.env.clone(),
            user: self.spec.user.clone(),
        }
    }

    fn run_commands(&self, name: &str, stage: &str, commands: &[String]) -> Result<(), String> {
        for command in commands {
            tracing::info!(release = name, stage, "running `{command}`");
            let exec = self.exec(name, command);
            Program::shell(&exec, &self.ctx.accounts)?.ok(&format!("{stage} `{command}`"))?;
        }
        Ok(())
    }

    fn remove_release(&self, name: &str) {
        let dir = self.release_real(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("could not remove {}: {e}", dir.display());
        }
    }
}

/// `YYYYmmddHHMMSS`.
fn is_release_name(name: &str) -> bool {
    name.len() == 14 && name.chars().all(|c| c.is_ascii_digit())
}

/// Applies a `release`.
///
/// # Errors
/// git, a build or migration command, the switch or the health check failing (after switching
/// back).
pub fn apply(spec: &ReleaseSpec, ctx: &Ctx) -> Result<Change, String> {
    let layout = Layout { spec, ctx };
    let commit = resolve_remote(&spec.repo, &spec.reference)?;
    let current = layout.current();
    let current_revision = current.as_deref().and_then(|c| layout.revision(c));
    let mut change = Change::ok();
    if current_revision.as_deref() == Some(commit.as_str()) {
        return Ok(change);
    }
    let was = match (&current, &current_revision) {
        (Some(c), Some(r)) => format!("{} in {c}", short(r)),
        _ => "no release".to_owned(),
    };
    if ctx.check {
        change.changed(format!("would release {} (live: {was})", short(&commit)));
        return Ok(change);
    }
    update_mirror(&layout, &commit)?;
    let name = new_release_name(&layout)?;
    let result = build_release(&layout, &name, &commit);
    if let Err(e) = result {
        layout.remove_release(&name);
        return Err(e);
    }
    layout.switch(&name)?;
    change.changed(format!(
        "released {} as releases/{name} (was {was})",
        short(&commit)
    ));
    if ctx.live() {
        if let Err(e) = after_switch_and_check(&layout, &name) {
            let back = match &current {
                Some(prev) => {
                    layout.switch(prev)?;
                    let again = layout.run_commands(prev, "after_switch", &spec.after_switch);
                    layout.remove_release(&name);
                    match again {
                        Ok(()) => format!("switched back to releases/{prev}"),
                        Err(m) => format!("switched back to releases/{prev}, where {m}"),
                    }
                }
                None => "there is no previous release to switch back to".to_owned(),
            };
            return Err(format!("{e}; {back}"));
        }
    } else {
        change.note(format!(
            "build, before_switch, after_switch and health check skipped ({ROOT_SKIP})"
        ));
    }
    let removed = cleanup(&layout, &name)?;
    if !removed.is_empty() {
        change.note(format!("removed releases/{}", removed.join(", releases/")));
    }
    Ok(change)
}

fn after_switch_and_check(layout: &Layout<'_>, name: &str) -> Result<(), String> {
    layout.run_commands(name, "after_switch", &layout.spec.after_switch)?;
    if let Some(check) = &layout.spec.health_check {
        health_check(layout, name, check)?;
    }
    Ok(())
}

/// Clones or fetches the mirror and makes sure it has the commit.
fn update_mirror(layout: &Layout<'_>, commit: &str) -> Result<(), String> {
    let repo = layout.real("repo");
    let dir = repo.to_string_lossy().into_owned();
    if repo.join("HEAD").exists() {
        git()
            .args([
                "--git-dir",
                &dir,
                "remote",
                "set-url",
                "origin",
                &layout.spec.repo,
            ])
            .ok("git remote set-url")?;
        git()
            .args(["--git-dir", &dir, "fetch", "--quiet", "--prune", "origin"])
            .ok("git fetch")?;
    } else {
        fsops::create_parents(&repo)?;
        git()
            .args([
                "clone",
                "--quiet",
                "--mirror",
                "--",
                &layout.spec.repo,
                &dir,
            ])
            .ok("git clone --mirror")?;
    }
    let has = |c: &str| {
        git()
            .args([
                "--git-dir",
                &dir,
                "cat-file",
                "-e",
                &format!("{c}^{{commit}}"),
            ])
            .run()
            .is_ok_and(|o| o.success())
    };
    if !has(commit) {
        git()
            .args(["--git-dir", &dir, "fetch", "--quiet", "origin", commit])
            .ok("git fetch of the commit")?;
    }
    Ok(())
}

/// A new release name from the time, one second later if taken.
fn new_release_name(layout: &Layout<'_>) -> Result<String, String> {
    let mut time = chrono::Utc::now();
    loop {
        let name = time.format("%Y%m%d%H%M%S").to_string();
        let dir = layout.release_real(&name);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            return Ok(name);
        }
        time += chrono::Duration::seconds(1);
    }
}

/// Exports the commit into the release, links the shared paths, gives it to the user and runs
/// the `build` and `before_switch` commands.
fn build_release(layout: &Layout<'_>, name: &str, commit: &str) -> Result<(), String> {
    let spec = layout.spec;
    let release = layout.release_real(name);
    export(layout, &release, commit)?;
    std::fs::write(release.join("REVISION"), format!("{commit}\n"))
        .map_err(|e| format!("writing {}/REVISION: {e}", release.display()))?;
    let user = spec
        .user
        .as_deref()
        .and_then(|u| layout.ctx.accounts.user(u));
    if spec.user.is_some() && user.is_none() {
        layout.ctx.uid(spec.user.as_deref());
    }
    let (uid, gid) = (user.as_ref().map(|u| u.uid), user.as_ref().map(|u| u.gid));
    for dir in &spec.shared_dirs {
        let shared = layout.real(&format!("shared/{dir}"));
        if !shared.is_dir() {
            std::fs::create_dir_all(&shared)
                .map_err(|e| format!("creating {}: {e}", shared.display()))?;
            chown_tree(&shared, uid, gid)?;
        }
        link_shared(layout, &release, dir)?;
    }
    for file in &spec.shared_files {
        let shared = layout.real(&format!("shared/{file}"));
        if !shared.exists() {
            return Err(format!(
                "{} does not exist: write it with a `file` resource before the release",
                layout.logical(&format!("shared/{file}")).display()
            ));
        }
        link_shared(layout, &release, file)?;
    }
    chown_tree(&release, uid, gid)?;
    if layout.ctx.live() {
        layout.run_commands(name, "build", &spec.build)?;
        layout.run_commands(name, "before_switch", &spec.before_switch)?;
    }
    Ok(())
}

/// Replaces `rel` in the release with a link to `shared/rel`.
fn link_shared(layout: &Layout<'_>, release: &Path, rel: &str) -> Result<(), String> {
    let at = release.join(rel);
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&at),
        Ok(_) => std::fs::remove_file(&at),
        Err(_) => Ok(()),
    }
    .map_err(|e| format!("removing {}: {e}", at.display()))?;
    fsops::create_parents(&at)?;
    std::os::unix::fs::symlink(layout.logical(&format!("shared/{rel}")), &at)
        .map_err(|e| format!("linking {}: {e}", at.display()))
}

/// Writes the commit's tree into the release directory.
fn export(layout: &Layout<'_>, release: &Path, commit: &str) -> Result<(), String> {
    let repo = layout.real("repo").to_string_lossy().into_owned();
    let dir = release.to_string_lossy().into_owned();
    if layout.spec.submodules {
        git()
            .args([
                "clone",
                "--quiet",
                "--shared",
                "--no-checkout",
                "--",
                &repo,
                &dir,
            ])
            .ok("git clone --shared")?;
        git()
            .args([
                "-C", &dir, "checkout", "--quiet", "--force", "--detach", commit,
            ])
            .ok("git checkout")?;
        git()
            .args([
                "-C",
                &dir,
                "submodule",
                "update",
                "--quiet",
                "--init",
                "--recursive",
            ])
            .ok("git submodule update")?;
        return Ok(());
    }
    let mut archive = git().args(["--git-dir", &repo, "archive", "--format=tar", commit]);
    let mut archive_child = archive
        .command_mut()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let tar_in = archive_child.stdout.take().expect("stdout is piped");
    let tar = Program::new("tar")
        .args(["-x", "-f", "-", "-C", &dir])
        .command_mut()
        .stdin(Stdio::from(tar_in))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let archived = archive_child
        .wait_with_output()
        .map_err(|e| format!("waiting for git archive: {e}"))?;
    if !archived.status.success() {
        return Err(format!(
            "git archive failed: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        ));
    }
    if !tar.status.success() {
        return Err(format!(
            "tar failed: {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        ));
    }
    Ok(())
}

/// Keeps the newest `keep` releases and the live one; returns those removed.
fn cleanup(layout: &Layout<'_>, live: &str) -> Result<Vec<String>, String> {
    let releases = layout.releases()?;
    let keep_from = releases.len().saturating_sub(layout.spec.keep);
    let mut removed = Vec::new();
    for (i, name) in releases.iter().enumerate() {
        if i >= keep_from || name == live {
            continue;
        }
        let dir = layout.release_real(name);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
        removed.push(name.clone());
    }
    Ok(removed)
}

/// Runs the health check until it passes or its attempts are used up.
fn health_check(layout: &Layout<'_>, name: &str, check: &HealthCheck) -> Result<(), String> {
    let timeout = Duration::from_secs_f64(check.timeout);
    let mut last = String::new();
    for attempt in 1..=check.retries {
        let result = match (&check.url, &check.command) {
            (Some(url), _) => http_check(url, timeout),
            (None, Some(command)) => {
                let exec = layout.exec(name, command);
                Program::shell(&exec, &layout.ctx.accounts)
                    .and_then(|p| p.ok(&format!("`{command}`")))
                    .map(|_| ())
            }
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(attempt, "health check: {e}");
                last = e;
            }
        }
        if attempt < check.retries {
            std::thread::sleep(Duration::from_secs_f64(check.delay));
        }
    }
    Err(format!(
        "health check failed after {} attempt{}: {last}",
        check.retries,
        if check.retries == 1 { "" } else { "s" }
    ))
}

/// `GET url` over HTTP/1.1; success is a 2xx or 3xx status.
///
/// # Errors
/// A URL that is not `http://host[:port][/path]`, a connection or read failure, another status.
pub fn http_check(url: &str, timeout: Duration) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .collect();
    let mut stream = None;
    let mut error = format!("{url}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => error = format!("{url}: {e}"),
        }
    }
    let mut stream = stream.ok_or(error)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(10));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: deploy/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).map_err(|e| format!("{url}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer: {line:?}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

/// Switches `current` back to the release before it.
///
/// # Errors
/// No current release, none before it, or a failed switch or `after_switch` command.
pub fn rollback(spec: &ReleaseSpec, ctx: &Ctx) -> Result<Change, String> {
    let layout = Layout { spec, ctx };
    let current = layout
        .current()
        .ok_or_else(|| format!("{}/current is not a release", spec.path.display()))?;
    let releases = layout.releases()?;
    let position = releases.iter().position(|r| *r == current);
    let previous = position
        .and_then(|i| i.checked_sub(1))
        .map(|i| releases[i].clone())
        .ok_or_else(|| format!("there is no release before releases/{current} to roll back to"))?;
    let describe = |n: &str| match layout.revision(n) {
        Some(r) => format!("releases/{n} ({})", short(&r)),
        None => format!("releases/{n}"),
    };
    let mut change = Change::ok();
    change.changed(format!(
        "current: {} → {}",
        describe(&current),
        describe(&previous)
    ));
    if ctx.check {
        return Ok(change);
    }
    layout.switch(&previous)?;
    if ctx.live() {
        layout.run_commands(&previous, "after_switch", &spec.after_switch)?;
    } else {
        change.note(format!("after_switch skipped ({ROOT_SKIP})"));
    }
    layout.remove_release(&current);
    change.note(format!("removed releases/{current}"));
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_and_http_checks() {
        assert!(is_release_name("20260501123456"));
        assert!(!is_release_name("2026050112345x") && !is_release_name("current"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 302 Found\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /health HTTP/1.1\r\n"));
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/health");
        assert_eq!(http_check(&url, Duration::from_secs(5)), Ok(()));
        let e = http_check(&url, Duration::from_secs(5)).unwrap_err();
        assert!(e.ends_with("answered 503"), "{e}");
        server.join().unwrap();
        assert!(http_check("https://x/", Duration::from_secs(1)).is_err());
    }
}
