//! Running `$EDITOR` on decrypted text without leaving it behind (`create` and `edit`).
//!
//! The text goes into a file with mode 0600, named like the vault file (so the editor picks the
//! right syntax), inside a fresh directory with mode 0700 in `/dev/shm` when there is one (memory,
//! never disk; editors' swap and backup files land in the same private directory) and in the
//! temporary directory otherwise. Whatever happens afterwards — the editor fails, the text is
//! unchanged, encryption fails, a panic — every file in that directory is overwritten with zeros
//! and the directory removed. While the editor runs, Ctrl-C, SIGTERM and SIGHUP do not kill
//! vault-tool (the editor gets them and decides), so the clean-up always runs.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// An editor that returns sooner than this without a change has probably forked (VS Code
/// without `-w`), and the user's changes would be lost: warn.
const FORKED_EDITOR_HINT: Duration = Duration::from_secs(1);

/// Where the private directory goes when `/dev/shm` is not usable.
fn temp_bases() -> Vec<PathBuf> {
    let shm = PathBuf::from("/dev/shm");
    let mut bases = Vec::new();
    if shm.is_dir() {
        bases.push(shm);
    }
    bases.push(std::env::temp_dir());
    bases
}

/// The private directory and the file in it, wiped and removed when dropped.
struct Scratch {
    dir: Option<tempfile::TempDir>,
    file: PathBuf,
}

impl Scratch {
    fn new(name: &OsStr, content: &[u8]) -> Result<Self> {
        let mut last_error = None;
        for base in temp_bases() {
            match tempfile::Builder::new()
                .prefix("vault-tool-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir_in(&base)
            {
                Ok(dir) => {
                    let file = dir.path().join(name);
                    let scratch = Self {
                        dir: Some(dir),
                        file,
                    };
                    scratch.write(content)?;
                    return Ok(scratch);
                }
                Err(e) => last_error = Some(Error::io(&base, e)),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::io(
                std::env::temp_dir(),
                std::io::Error::other("no temporary directory"),
            )
        }))
    }

    fn write(&self, content: &[u8]) -> Result<()> {
        let dir = self.dir.as_ref().map_or(Path::new("."), |d| d.path());
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.file)
            .map_err(|e| Error::io(&self.file, e))?;
        file.write_all(content)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&self.file, e))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        // Overwrite every file the editor left (ours, swap and backup files) before removing.
        if let Ok(entries) = std::fs::read_dir(dir.path()) {
            for entry in entries.flatten() {
                wipe(&entry.path());
            }
        }
        if let Err(e) = dir.close() {
            tracing::warn!("could not remove the temporary directory: {e}");
        }
    }
}

fn wipe(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) {
        let zeros = vec![0u8; 64 * 1024];
        let mut left = meta.len();
        while left > 0 {
            let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
            if file.write_all(&zeros[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = file.sync_all();
    }
    let _ = std::fs::remove_file(path);
}

/// Keeps SIGINT, SIGTERM and SIGHUP from killing the process while the editor runs. The
/// handlers stay installed until the process exits, which is soon after.
fn shield_signals() -> Option<(tokio::runtime::Runtime, Vec<tokio::signal::unix::Signal>)> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    let signals = {
        let _entered = runtime.enter();
        [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|kind| signal(kind).ok())
        .collect()
    };
    Some((runtime, signals))
}

/// Lets the user edit `content` with `editor` (a command line split like a shell's, the file
/// appended). `name` is the file name the temporary copy gets. Returns the new content, or
/// `None` when it did not change.
///
/// # Errors
/// [`Error::Editor`] when the editor cannot be started, exits with a failure status (as `:cq`
/// in vim does to abandon an edit), or removes the file; I/O errors of the temporary file.
pub(crate) fn edit(
    editor: &[String],
    name: &OsStr,
    content: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let shown = editor.join(" ");
    let Some((program, args)) = editor.split_first() else {
        return Err(Error::Editor {
            command: shown,
            message: "no editor command".to_owned(),
        });
    };
    let scratch = Scratch::new(name, content)?;
    let _shield = shield_signals();
    let started = Instant::now();
    tracing::debug!(editor = %shown, "running the editor");
    let status = Command::new(program)
        .args(args)
        .arg(&scratch.file)
        .status()
        .map_err(|e| Error::Editor {
            command: shown.clone(),
            message: format!("cannot run it: {e}"),
        })?;
    if !status.success() {
        let how = status.code().map_or_else(
            || "was killed by a signal".to_owned(),
            |c| format!("exited with status {c}"),
        );
        return Err(Error::Editor {
            command: shown,
            message: how,
        });
    }
    let edited = std::fs::read(&scratch.file)
        .map(Zeroizing::new)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Editor {
                    command: shown.clone(),
                    message: "the temporary file was removed".to_owned(),
                }
            } else {
                Error::io(&scratch.file, e)
            }
        })?;
    drop(scratch);
    if edited.as_slice() == content {
        if started.elapsed() < FORKED_EDITOR_HINT {
            tracing::warn!(
                "the editor returned at once without a change; if it runs in the background (VS Code, Sublime), make it wait: EDITOR=\"code -w\""
            );
        }
        return Ok(None);
    }
    Ok(Some(edited))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> String {
        let path = dir.join("ed.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn the_scratch_file_is_private_and_removed_afterwards() {
        let tmp = tempfile::tempdir().unwrap();
        let record = tmp.path().join("record");
        // The editor records where the file is, its mode and its directory's mode, then edits.
        let ed = script(
            tmp.path(),
            &format!(
                "stat -c '%a' \"$1\" \"$(dirname \"$1\")\" > {r}; echo \"$1\" >> {r}; printf 'new' > \"$1\"; touch \"$1.swp\"",
                r = record.display()
            ),
        );
        let out = edit(&[ed], OsStr::new("vault.yml"), b"old").unwrap();
        assert_eq!(out.as_deref().map(Vec::as_slice), Some(&b"new"[..]));
        let seen = std::fs::read_to_string(&record).unwrap();
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines[..2], ["600", "700"]);
        assert!(lines[2].ends_with("/vault.yml"));
        let file = Path::new(lines[2]);
        assert!(!file.exists() && !file.parent().unwrap().exists());
    }

    #[test]
    fn unchanged_failed_and_missing_editors() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            edit(&["true".to_owned()], OsStr::new("f"), b"same")
                .unwrap()
                .is_none()
        );
        let e = edit(&["false".to_owned()], OsStr::new("f"), b"x").unwrap_err();
        assert!(e.to_string().contains("exited with status 1"), "{e}");
        let e = edit(
            &[tmp.path().join("no-such-editor").display().to_string()],
            OsStr::new("f"),
            b"x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot run it"), "{e}");
        let rm = script(tmp.path(), "rm \"$1\"");
        let e = edit(&[rm], OsStr::new("f"), b"x").unwrap_err();
        assert!(e.to_string().contains("removed"), "{e}");
    }
}
