//! `file`, `directory`, `symlink` and `cron`.
//!
//! - A file is changed when its content, owner, group or mode differs; new content goes through
//!   [`fsops::replace_file`] (temporary file with the final mode and owner, `validate`, rename),
//!   so a reader never sees a partial file and a failed validation leaves the old one.
//!   Without `mode`, a new file gets 0644 and an existing one keeps its mode.
//! - A directory is created with its parents (mode 0755 unless given); an existing one only gets
//!   its owner, group and mode fixed. `state: absent` removes it with its content.
//! - A symbolic link is replaced atomically when it points elsewhere; a file in its way is only
//!   replaced with `force: true`, a directory never.
//! - A cron entry is `/etc/cron.d/<name>`, owned by root, mode 0644.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::apply::{Change, Ctx, ROOT_SKIP};
use crate::exec::Program;
use crate::fsops::{self, shown};
use crate::model::{Attrs, CronSpec, DirectorySpec, FileSpec, State, SymlinkSpec};
use crate::template::shell_quote;

/// Applies a `file`.
///
/// # Errors
/// One line saying what failed.
pub fn apply(spec: &FileSpec, ctx: &Ctx) -> Result<Change, String> {
    match (spec.state, &spec.content) {
        (State::Present, Some(content)) => ensure_file(
            ctx,
            &spec.path,
            &content.0,
            &spec.attrs,
            0o644,
            spec.validate.as_deref(),
        ),
        _ => remove(ctx, &spec.path),
    }
}

fn metadata(path: &Path) -> Result<Option<std::fs::Metadata>, String> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn symlink_metadata(path: &Path) -> Result<Option<std::fs::Metadata>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Brings a file to a content, owner, group and mode.
///
/// # Errors
/// A directory in the way, a failed write or validation.
pub fn ensure_file(
    ctx: &Ctx,
    logical: &Path,
    content: &[u8],
    attrs: &Attrs,
    default_mode: u32,
    validate: Option<&str>,
) -> Result<Change, String> {
    let real = ctx.path(logical);
    let meta = metadata(&real)?;
    if meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
        return Err(format!("{} is a directory", shown(logical)));
    }
    let old = match &meta {
        Some(_) => Some(std::fs::read(&real).map_err(|e| format!("{}: {e}", real.display()))?),
        None => None,
    };
    let uid = ctx.uid(attrs.owner.as_deref());
    let gid = ctx.gid(attrs.group.as_deref());
    let mut change = Change::ok();
    if let (Some(meta), Some(old)) = (&meta, &old)
        && old.as_slice() == content
    {
        for note in fsops::fix_attrs(&real, meta, uid, gid, attrs.mode, ctx.check)? {
            change.changed(note);
        }
        return Ok(change);
    }
    let mode = attrs
        .mode
        .or(meta.as_ref().map(|m| m.mode() & 0o7777))
        .unwrap_or(default_mode);
    let owner = (
        uid.or(meta.as_ref().map(MetadataExt::uid)),
        gid.or(meta.as_ref().map(MetadataExt::gid)),
    );
    change.changed(if old.is_none() { "new file" } else { "content" });
    if ctx.diff {
        change.add_diff(fsops::diff(
            old.as_deref(),
            Some(content),
            &shown(logical),
            &ctx.masker,
        ));
    }
    if ctx.check {
        return Ok(change);
    }
    let validator = |temp: &Path| -> Result<(), String> {
        let command = validate
            .unwrap_or_default()
            .replace("%s", &shell_quote(&temp.to_string_lossy()));
        Program::new("/bin/sh")
            .args(["-c", command.as_str()])
            .ok("validation")
            .map(|_| ())
            .map_err(|m| format!("{m} (the file was left as it was)"))
    };
    let run_validation = validate.is_some() && ctx.live();
    if validate.is_some() && !ctx.live() {
        change.note(format!("validate skipped ({ROOT_SKIP})"));
    }
    fsops::replace_file(
        &real,
        content,
        mode,
        owner,
        run_validation.then_some(&validator as &dyn Fn(&Path) -> Result<(), String>),
    )?;
    Ok(change)
}

/// Removes a file (or a symbolic link) if it exists.
fn remove(ctx: &Ctx, logical: &Path) -> Result<Change, String> {
    let real = ctx.path(logical);
    let Some(meta) = symlink_metadata(&real)? else {
        return Ok(Change::ok());
    };
    if meta.is_dir() {
        return Err(format!("{} is a directory", shown(logical)));
    }
    let mut change = Change::ok();
    change.changed("removed");
    if ctx.diff && meta.is_file() {
        let old = std::fs::read(&real).ok();
        change.add_diff(fsops::diff(
            old.as_deref(),
            None,
            &shown(logical),
            &ctx.masker,
        ));
    }
    if !ctx.check {
        std::fs::remove_file(&real).map_err(|e| format!("removing {}: {e}", real.display()))?;
    }
    Ok(change)
}

/// Applies a `directory`.
///
/// # Errors
/// A file in the way, a failed creation or removal.
pub fn directory(spec: &DirectorySpec, ctx: &Ctx) -> Result<Change, String> {
    ensure_directory(ctx, &spec.path, spec.state, &spec.attrs, 0o755)
}

/// Brings a directory to existence (or absence), owner, group and mode.
///
/// # Errors
/// See [`directory`].
pub fn ensure_directory(
    ctx: &Ctx,
    logical: &Path,
    state: State,
    attrs: &Attrs,
    default_mode: u32,
) -> Result<Change, String> {
    let real = ctx.path(logical);
    let meta = metadata(&real)?;
    let mut change = Change::ok();
    match (state, meta) {
        (State::Absent, None) => {}
        (State::Absent, Some(m)) => {
            change.changed("removed");
            if !ctx.check {
                let r = if m.is_dir() {
                    std::fs::remove_dir_all(&real)
                } else {
                    std::fs::remove_file(&real)
                };
                r.map_err(|e| format!("removing {}: {e}", real.display()))?;
            }
        }
        (State::Present, Some(m)) if !m.is_dir() => {
            return Err(format!("{} exists and is not a directory", shown(logical)));
        }
        (State::Present, Some(m)) => {
            let uid = ctx.uid(attrs.owner.as_deref());
            let gid = ctx.gid(attrs.group.as_deref());
            for note in fsops::fix_attrs(&real, &m, uid, gid, attrs.mode, ctx.check)? {
                change.changed(note);
            }
        }
        (State::Present, None) => {
            let mode = attrs.mode.unwrap_or(default_mode);
            change.changed(format!("created (mode {mode:04o})"));
            let uid = ctx.uid(attrs.owner.as_deref());
            let gid = ctx.gid(attrs.group.as_deref());
            if ctx.check {
                return Ok(change);
            }
            fsops::create_parents(&real)?;
            std::fs::create_dir(&real).map_err(|e| format!("creating {}: {e}", real.display()))?;
            let m = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
            fsops::fix_attrs(&real, &m, uid, gid, Some(mode), false)?;
        }
    }
    Ok(change)
}

/// Applies a `symlink`.
///
/// # Errors
/// Something other than a link in the way (without `force`), a failed replacement.
pub fn symlink(spec: &SymlinkSpec, ctx: &Ctx) -> Result<Change, String> {
    let real = ctx.path(&spec.path);
    let meta = symlink_metadata(&real)?;
    let mut change = Change::ok();
    let Some(target) = spec
        .target
        .as_deref()
        .filter(|_| spec.state == State::Present)
    else {
        if let Some(m) = meta {
            if !m.file_type().is_symlink() {
                return Err(format!("{} is not a symbolic link", shown(&spec.path)));
            }
            change.changed("removed");
            if !ctx.check {
                std::fs::remove_file(&real)
                    .map_err(|e| format!("removing {}: {e}", real.display()))?;
            }
        }
        return Ok(change);
    };
    let uid = ctx.uid(spec.attrs.owner.as_deref());
    let gid = ctx.gid(spec.attrs.group.as_deref());
    let diff = |old: &str| {
        format!(
            "--- {0} (before)\n+++ {0} (after)\n-{old}\n+-> {1}\n",
            shown(&spec.path),
            target.display()
        )
    };
    match &meta {
        Some(m) if m.file_type().is_symlink() => {
            let current =
                std::fs::read_link(&real).map_err(|e| format!("{}: {e}", real.display()))?;
            if current == target {
                for note in fsops::fix_attrs(&real, m, uid, gid, None, ctx.check)? {
                    change.changed(note);
                }
                return Ok(change);
            }
            change.changed(format!(
                "target {} → {}",
                current.display(),
                target.display()
            ));
            if ctx.diff {
                change.add_diff(diff(&format!("-> {}", current.display())));
            }
        }
        Some(m) if m.is_dir() => {
            return Err(format!(
                "{} is a directory, not a symbolic link",
                shown(&spec.path)
            ));
        }
        Some(_) if !spec.force => {
            return Err(format!(
                "{} exists and is not a symbolic link (`force: true` replaces it)",
                shown(&spec.path)
            ));
        }
        Some(_) => change.changed("file replaced by a link"),
        None => {
            change.changed(format!("new link to {}", target.display()));
            if ctx.diff {
                change.add_diff(diff("(none)"));
            }
        }
    }
    if ctx.check {
        return Ok(change);
    }
    fsops::replace_symlink(&real, target)?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::lchown(&real, uid, gid)
            .map_err(|e| format!("chown {}: {e}", real.display()))?;
    }
    Ok(change)
}

/// Applies a `cron` entry.
///
/// # Errors
/// A failed write.
pub fn cron(spec: &CronSpec, ctx: &Ctx) -> Result<Change, String> {
    let path = Path::new("/etc/cron.d").join(&spec.name);
    let attrs = Attrs {
        owner: Some("root".to_owned()),
        group: Some("root".to_owned()),
        mode: Some(0o644),
    };
    ensure_file(ctx, &path, spec.content.as_bytes(), &attrs, 0o644, None)
}
