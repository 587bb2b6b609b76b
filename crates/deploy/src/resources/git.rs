//! `git`: a working tree at a commit; and the git helpers releases use.
//!
//! The wanted commit is what the reference names on the remote (`git ls-remote`: a tag, peeled
//! to its commit, before a branch, as git resolves names), or the reference itself when it is a
//! full commit id. The checkout is `ok` when its `HEAD` is that commit, its tracked files are
//! unmodified and its `origin` is the repository; otherwise it is fetched and checked out
//! (detached, `--force`). Untracked files are left alone.
//!
//! git runs with `-c safe.directory=*`, since deploy (as root) works on trees owned by the
//! application's user, which git would otherwise refuse.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::apply::{Change, Ctx};
use crate::exec::Program;
use crate::fsops::shown;
use crate::model::GitSpec;

/// `git -c safe.directory=* …`.
pub fn git() -> Program {
    Program::new("git").args(["-c", "safe.directory=*"])
}

/// True for a full (40 or 64 hex digit) commit id.
pub fn is_full_commit(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64) && reference.chars().all(|c| c.is_ascii_hexdigit())
}

/// The commit a reference names on a remote repository.
///
/// # Errors
/// `git ls-remote` failing, or no such reference.
pub fn resolve_remote(repo: &str, reference: &str) -> Result<String, String> {
    if is_full_commit(reference) {
        return Ok(reference.to_ascii_lowercase());
    }
    let out = git()
        .args(["ls-remote", "--", repo, reference])
        .ok(&format!("git ls-remote {repo}"))?;
    let refs: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(commit, name)| (name, commit))
        .collect();
    let find = |name: &str| refs.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
    let candidates = [
        reference.to_owned(),
        format!("refs/{reference}"),
        format!("refs/tags/{reference}^{{}}"),
        format!("refs/tags/{reference}"),
        format!("refs/heads/{reference}"),
    ];
    candidates
        .iter()
        .find_map(|c| find(c))
        .map(str::to_owned)
        .ok_or_else(|| format!("{repo} has no branch or tag {reference:?}"))
}

/// A short commit id for messages.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// Gives a tree (not following symbolic links) to a user and group.
///
/// # Errors
/// A failed chown.
pub fn chown_tree(path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<(), String> {
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let needs = uid.is_some_and(|u| u != meta.uid()) || gid.is_some_and(|g| g != meta.gid());
    if needs {
        std::os::unix::fs::lchown(path, uid, gid)
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Applies a `git` checkout.
///
/// # Errors
/// git failing, or a non-empty directory that is not a checkout.
pub fn checkout(spec: &GitSpec, ctx: &Ctx) -> Result<Change, String> {
    let real = ctx.path(&spec.path);
    let commit = resolve_remote(&spec.repo, &spec.reference)?;
    let mut change = Change::ok();
    let dir = real.to_string_lossy().into_owned();
    if real.join(".git").exists() {
        let head = git().args(["-C", &dir, "rev-parse", "HEAD"]).run()?;
        let head = head.success().then(|| head.stdout.trim().to_owned());
        let dirty = !git()
            .args(["-C", &dir, "status", "--porcelain", "--untracked-files=no"])
            .ok("git status")?
            .trim()
            .is_empty();
        let origin = git()
            .args(["-C", &dir, "config", "remote.origin.url"])
            .run()?
            .stdout
            .trim()
            .to_owned();
        if head.as_deref() == Some(commit.as_str()) && !dirty && origin == spec.repo {
            return Ok(change);
        }
        if origin != spec.repo {
            change.changed(format!("origin {origin} → {}", spec.repo));
            if !ctx.check {
                git()
                    .args(["-C", &dir, "remote", "set-url", "origin", &spec.repo])
                    .ok("git remote set-url")?;
            }
        }
        match head {
            Some(h) if h != commit => change.changed(format!("{} → {}", short(&h), short(&commit))),
            None => change.changed(format!("check out {}", short(&commit))),
            _ => {}
        }
        if dirty {
            change.changed("local changes discarded");
        }
    } else {
        if real.is_dir()
            && std::fs::read_dir(&real)
                .map_err(|e| format!("{}: {e}", real.display()))?
                .next()
                .is_some()
        {
            return Err(format!(
                "{} exists, is not empty and is not a git checkout",
                shown(&spec.path)
            ));
        }
        change.changed(format!("clone at {}", short(&commit)));
        if !ctx.check {
            crate::fsops::create_parents(&real)?;
            git()
                .args(["clone", "--quiet", "--no-checkout", "--", &spec.repo, &dir])
                .ok("git clone")?;
        }
    }
    if ctx.check {
        return Ok(change);
    }
    let present = |c: &str| {
        git()
            .args(["-C", &dir, "cat-file", "-e", &format!("{c}^{{commit}}")])
            .run()
            .is_ok_and(|o| o.success())
    };
    if !present(&commit) {
        git()
            .args([
                "-C", &dir, "fetch", "--quiet", "--tags", "--force", "origin",
            ])
            .ok("git fetch")?;
    }
    if !present(&commit) {
        git()
            .args(["-C", &dir, "fetch", "--quiet", "origin", &commit])
            .ok("git fetch")?;
    }
    git()
        .args([
            "-C", &dir, "checkout", "--quiet", "--force", "--detach", &commit,
        ])
        .ok("git checkout")?;
    let uid = ctx.uid(spec.owner.as_deref());
    let gid = spec
        .owner
        .as_deref()
        .and_then(|o| ctx.accounts.user(o))
        .map(|u| u.gid);
    chown_tree(&real, uid, gid)?;
    Ok(change)
}
