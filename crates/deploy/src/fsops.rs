//! File system operations shared by the resources: paths under `--root`, atomic replacement
//! with validation, ownership and modes, and diffs.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Component, Path, PathBuf};

use crate::secrets::Masker;

/// Where a path of the plan is on this machine: itself, or under `--root`.
pub fn under(root: Option<&Path>, path: &Path) -> PathBuf {
    match root {
        None => path.to_path_buf(),
        Some(root) => {
            // `..` never climbs above the root: `/../../etc` is `<root>/etc`.
            let mut parts = Vec::new();
            for c in path.components() {
                match c {
                    Component::Normal(n) => parts.push(n),
                    Component::ParentDir => {
                        parts.pop();
                    }
                    _ => {}
                }
            }
            let mut out = root.to_path_buf();
            out.extend(parts);
            out
        }
    }
}

/// A path as the plan names it, for messages.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Creates missing parent directories (mode 0755).
///
/// # Errors
/// When one cannot be created.
pub fn create_parents(path: &Path) -> Result<(), String> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    Ok(())
}

/// A check of a new file's content before it replaces the old one (`validate:`).
pub type Validate<'a> = &'a dyn Fn(&Path) -> Result<(), String>;

/// Replaces `path` with `content` atomically: a temporary file in the same directory, created
/// with `mode` and the owner, flushed, checked by `validate` (given its path), then renamed over
/// the target, and the directory flushed. A failed validation removes the temporary file and
/// leaves the target as it was.
///
/// # Errors
/// Any step failing, or the validation's message.
pub fn replace_file(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: (Option<u32>, Option<u32>),
    validate: Option<Validate<'_>>,
) -> Result<(), String> {
    create_parents(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.deploy-{}",
        ops_common::fsutil::random_suffix()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&temp)
            .map_err(|e| format!("creating {}: {e}", temp.display()))?;
        file.write_all(content)
            .map_err(|e| format!("writing {}: {e}", temp.display()))?;
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::fchown(&file, owner.0, owner.1)
                .map_err(|e| format!("chown {}: {e}", temp.display()))?;
        }
        // After chown, which clears set-id bits; and exactly, whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", temp.display()))?;
        file.sync_all()
            .map_err(|e| format!("flushing {}: {e}", temp.display()))?;
        drop(file);
        if let Some(validate) = validate {
            validate(&temp)?;
        }
        std::fs::rename(&temp, path).map_err(|e| format!("renaming over {}: {e}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    ops_common::fsutil::sync_dir(dir).map_err(|e| e.to_string())
}

/// Replaces a symbolic link (or creates it) atomically: a new link under a temporary name,
/// renamed over the old one.
///
/// # Errors
/// When the link cannot be made or renamed.
pub fn replace_symlink(path: &Path, target: &Path) -> Result<(), String> {
    create_parents(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.deploy-{}",
        ops_common::fsutil::random_suffix()
    ));
    std::os::unix::fs::symlink(target, &temp)
        .map_err(|e| format!("creating link {}: {e}", temp.display()))?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("renaming over {}: {e}", path.display()));
    }
    ops_common::fsutil::sync_dir(dir).map_err(|e| e.to_string())
}

/// What differs in ownership and mode, as notes ("mode 0644 → 0600"), and applies it unless
/// `check`. `follow`: the path is not a symbolic link (links get lchown, and no mode).
///
/// # Errors
/// When chown or chmod fails.
pub fn fix_attrs(
    path: &Path,
    meta: &std::fs::Metadata,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
    check: bool,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let link = meta.file_type().is_symlink();
    let uid = uid.filter(|u| *u != meta.uid());
    let gid = gid.filter(|g| *g != meta.gid());
    if let Some(u) = uid {
        notes.push(format!("owner {} → {u}", meta.uid()));
    }
    if let Some(g) = gid {
        notes.push(format!("group {} → {g}", meta.gid()));
    }
    if (uid.is_some() || gid.is_some()) && !check {
        let r = if link {
            std::os::unix::fs::lchown(path, uid, gid)
        } else {
            std::os::unix::fs::chown(path, uid, gid)
        };
        r.map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    if !link && let Some(mode) = mode {
        // Read again: chown may have cleared set-id bits.
        let current = if check || (uid.is_none() && gid.is_none()) {
            meta.mode() & 0o7777
        } else {
            std::fs::metadata(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .mode()
                & 0o7777
        };
        if current != mode {
            notes.push(format!("mode {current:04o} → {mode:04o}"));
            if !check {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            }
        }
    }
    Ok(notes)
}

/// A unified diff of two contents, with secrets masked; text only.
pub fn diff(old: Option<&[u8]>, new: Option<&[u8]>, name: &str, masker: &Masker) -> String {
    fn as_text(b: Option<&[u8]>) -> Result<Option<&str>, std::str::Utf8Error> {
        b.map(std::str::from_utf8).transpose()
    }
    let (Ok(old_text), Ok(new_text)) = (as_text(old), as_text(new)) else {
        return format!("binary content of {name} differs\n");
    };
    let (a, b) = (
        masker.mask(old_text.unwrap_or_default()),
        masker.mask(new_text.unwrap_or_default()),
    );
    let before = if old.is_some() {
        name.to_owned()
    } else {
        "/dev/null".to_owned()
    };
    let after = if new.is_some() {
        name.to_owned()
    } else {
        "/dev/null".to_owned()
    };
    let diff = similar::TextDiff::from_lines(&a, &b);
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{before} (before)"), &format!("{after} (after)"))
        .to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if text.is_empty() && old != new {
        // Masking made the two sides equal: a secret changed.
        text = format!("--- {before} (before)\n+++ {after} (after)\n  (a secret value changed)\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_root_cannot_leave_it() {
        let root = Path::new("/tmp/r");
        assert_eq!(
            under(Some(root), Path::new("/etc/x")),
            Path::new("/tmp/r/etc/x")
        );
        assert_eq!(
            under(Some(root), Path::new("/../../etc")),
            Path::new("/tmp/r/etc")
        );
        assert_eq!(under(None, Path::new("/etc/x")), Path::new("/etc/x"));
    }

    #[test]
    fn a_failed_validation_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        let refuse = |p: &Path| -> Result<(), String> {
            assert_eq!(std::fs::read(p).unwrap(), b"new");
            Err("invalid".to_owned())
        };
        let e = replace_file(&path, b"new", 0o600, (None, None), Some(&refuse)).unwrap_err();
        assert_eq!(e, "invalid");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        replace_file(&path, b"new", 0o640, (None, None), None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let nested = dir.path().join("a/b/c");
        replace_file(&nested, b"x", 0o644, (None, None), None).unwrap();
        replace_symlink(&dir.path().join("l"), Path::new("f")).unwrap();
        replace_symlink(&dir.path().join("l"), Path::new("a")).unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join("l")).unwrap(),
            Path::new("a")
        );
    }

    #[test]
    fn diffs_mask_secrets() {
        let m = Masker::new(["hunter22".to_owned()]);
        let d = diff(
            Some(b"a\npw=old1\n"),
            Some(b"a\npw=hunter22\n"),
            "/etc/x",
            &m,
        );
        assert!(d.contains("-pw=old1\n+pw=********\n"), "{d}");
        assert!(!d.contains("hunter22"));
        let d = diff(None, Some(b"new\n"), "/etc/y", &m);
        assert!(
            d.starts_with("--- /dev/null (before)\n+++ /etc/y (after)\n"),
            "{d}"
        );
        let m = Masker::new(["secret-a".to_owned(), "secret-b".to_owned()]);
        let d = diff(Some(b"secret-a\n"), Some(b"secret-b\n"), "/x", &m);
        assert!(d.contains("a secret value changed"), "{d}");
        assert!(diff(Some(&[0xff]), Some(b"x"), "/b", &m).starts_with("binary"));
    }
}
