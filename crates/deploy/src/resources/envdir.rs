//! `envdir`: a directory of one-value files, managed exactly.
//!
//! The directory is mode 0700 and each file 0600, owned by the given user and group (the user
//! the tool reading them runs as). Each file holds its value as daemontools' envdir reads it:
//! newlines written as NUL bytes, then one final newline (so an empty value is set, not removed).
//! Files that are not in the plan are removed, so a setting dropped from the plan stops applying.

use std::collections::BTreeSet;
use std::path::Path;

use crate::apply::{Change, Ctx};
use crate::fsops::shown;
use crate::model::{Attrs, EnvdirSpec, State};
use crate::resources::file::{ensure_directory, ensure_file};

/// Applies an `envdir`.
///
/// # Errors
/// A file in the way of the directory, a subdirectory in it, a failed write.
pub fn apply(spec: &EnvdirSpec, ctx: &Ctx) -> Result<Change, String> {
    let dir_attrs = Attrs {
        mode: Some(0o700),
        ..spec.attrs.clone()
    };
    let file_attrs = Attrs {
        mode: Some(0o600),
        ..spec.attrs.clone()
    };
    let real = ctx.path(&spec.path);
    let existed = real.is_dir();
    let mut change = ensure_directory(ctx, &spec.path, State::Present, &dir_attrs, 0o700)?;
    let (mut added, mut updated, mut fixed) = (Vec::new(), Vec::new(), Vec::new());
    for (name, content) in &spec.files {
        let path = spec.path.join(name);
        let was = ctx.path(&path).exists();
        let c = ensure_file(ctx, &path, content.as_bytes(), &file_attrs, 0o600, None)?;
        if c.changed {
            let notes = c.notes.join(", ");
            match (was, notes.as_str()) {
                (false, _) => added.push(name.clone()),
                (true, "content") => updated.push(name.clone()),
                (true, _) => fixed.push(format!("{name} ({notes})")),
            }
            change.changed = true;
        }
        if let Some(d) = c.diff {
            change.add_diff(d);
        }
    }
    let mut removed = Vec::new();
    if existed {
        let wanted: BTreeSet<&str> = spec.files.keys().map(String::as_str).collect();
        let entries = std::fs::read_dir(&real).map_err(|e| format!("{}: {e}", real.display()))?;
        let mut extra = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", real.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if wanted.contains(name.as_str()) {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                return Err(format!(
                    "{} holds a directory, {name}, which envdir refuses",
                    shown(&spec.path)
                ));
            }
            extra.push(name);
        }
        extra.sort();
        for name in extra {
            if ctx.diff {
                let old = std::fs::read(real.join(&name)).ok();
                change.add_diff(crate::fsops::diff(
                    old.as_deref(),
                    None,
                    &shown(&Path::new(&spec.path).join(&name)),
                    &ctx.masker,
                ));
            }
            if !ctx.check {
                std::fs::remove_file(real.join(&name))
                    .map_err(|e| format!("removing {}: {e}", real.join(&name).display()))?;
            }
            removed.push(name);
            change.changed = true;
        }
    }
    for (label, names) in [
        ("new", added),
        ("changed", updated),
        ("fixed", fixed),
        ("removed", removed),
    ] {
        if !names.is_empty() {
            change.notes.push(format!("{label}: {}", names.join(", ")));
        }
    }
    Ok(change)
}
