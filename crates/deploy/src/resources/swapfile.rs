//! `swapfile`: a swap file of a size, in `/etc/fstab`, in use.
//!
//! The file is right when it has the size, mode 0600 and the swap signature `mkswap` writes.
//! Otherwise it is made again under a temporary name (blocks allocated with `fallocate`, since
//! the kernel refuses swap files with holes; written with zeros where the file system cannot
//! allocate), `mkswap`ed and renamed into place; a swap file in use is first `swapoff`ed. Then the
//! `/etc/fstab` line `<path> none swap sw 0 0` replaces any other line for the path, and
//! `swapon` runs if the kernel does not list the file in `/proc/swaps`. Under `--root` the file and
//! fstab are made in the tree and `swapoff`/`swapon` are skipped.

use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use crate::apply::{Change, Ctx, ROOT_SKIP};
use crate::exec::Program;
use crate::fsops;
use crate::model::SwapfileSpec;

/// The signature at the end of the first page of a swap area.
const SIGNATURE: &[u8] = b"SWAPSPACE2";
/// Page sizes the signature may be placed for (x86-64, arm64 with 16K and 64K pages).
const PAGE_SIZES: [u64; 3] = [4096, 16384, 65536];

fn has_signature(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    PAGE_SIZES.iter().any(|page| {
        let mut buf = [0u8; 10];
        f.seek(SeekFrom::Start(page - 10)).is_ok()
            && f.read_exact(&mut buf).is_ok()
            && buf == SIGNATURE
    })
}

/// True when the kernel uses the file as swap.
fn active(path: &Path) -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| {
        s.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&*path.to_string_lossy()))
    })
}

fn human(size: u64) -> String {
    let units = [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, factor) in units {
        if size.is_multiple_of(factor) {
            return format!("{}{unit}", size / factor);
        }
    }
    format!("{size} bytes")
}

/// Applies a `swapfile`.
///
/// # Errors
/// A failed allocation, `mkswap`, `swapoff`, `swapon` or fstab write.
pub fn apply(spec: &SwapfileSpec, ctx: &Ctx) -> Result<Change, String> {
    let real = ctx.path(&spec.path);
    let mut change = Change::ok();
    let meta = std::fs::metadata(&real).ok();
    let right = meta
        .as_ref()
        .is_some_and(|m| m.is_file() && m.len() == spec.size)
        && has_signature(&real);
    if meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
        return Err(format!("{} is a directory", spec.path.display()));
    }
    if right {
        if let Some(m) = &meta
            && m.mode() & 0o7777 != 0o600
        {
            for note in fsops::fix_attrs(&real, m, None, None, Some(0o600), ctx.check)? {
                change.changed(note);
            }
        }
    } else {
        change.changed(match &meta {
            None => format!("new swap file of {}", human(spec.size)),
            Some(m) if m.len() != spec.size => {
                format!("size {} → {}", human(m.len()), human(spec.size))
            }
            Some(_) => "made a swap area again (no swap signature)".to_owned(),
        });
        if !ctx.check {
            if ctx.live() && active(&real) {
                Program::new("swapoff").args([&real]).ok("swapoff")?;
            }
            make(&real, spec.size)?;
        }
    }
    fstab(spec, ctx, &mut change)?;
    if !ctx.live() {
        change.note(format!("swapon skipped ({ROOT_SKIP})"));
    } else if !active(&real) {
        change.changed("swapon");
        if !ctx.check {
            Program::new("swapon").args([&real]).ok("swapon")?;
        }
    }
    Ok(change)
}

/// Makes the swap file under a temporary name and renames it into place.
fn make(real: &Path, size: u64) -> Result<(), String> {
    fsops::create_parents(real)?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(
        ".{}.deploy-{}",
        real.file_name().unwrap_or_default().to_string_lossy(),
        ops_common::fsutil::random_suffix()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| format!("creating {}: {e}", temp.display()))?;
        if rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size).is_err() {
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
                file.write_all(&zeros[..n])
                    .map_err(|e| format!("writing {}: {e}", temp.display()))?;
                left -= n as u64;
            }
        }
        file.sync_all()
            .map_err(|e| format!("flushing {}: {e}", temp.display()))?;
        drop(file);
        Program::new("mkswap").args([&temp]).ok("mkswap")?;
        std::fs::rename(&temp, real).map_err(|e| format!("renaming over {}: {e}", real.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Puts the swap file's line in `/etc/fstab`, in place of any other line for it.
fn fstab(spec: &SwapfileSpec, ctx: &Ctx, change: &mut Change) -> Result<(), String> {
    let logical = Path::new("/etc/fstab");
    let real = ctx.path(logical);
    let old = match std::fs::read_to_string(&real) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", real.display())),
    };
    let path = spec.path.to_string_lossy();
    let line = format!("{path} none swap sw 0 0");
    let text = old.clone().unwrap_or_default();
    let mut lines: Vec<String> = Vec::new();
    let mut placed = false;
    for l in text.lines() {
        let first = l.split_whitespace().next();
        if !l.trim_start().starts_with('#') && first == Some(&*path) {
            if !placed {
                lines.push(line.clone());
                placed = true;
            }
        } else {
            lines.push(l.to_owned());
        }
    }
    if !placed {
        lines.push(line);
    }
    let new = lines.join("\n") + "\n";
    if old.as_deref() == Some(new.as_str()) {
        return Ok(());
    }
    change.changed("fstab");
    if ctx.diff {
        change.add_diff(fsops::diff(
            old.as_deref().map(str::as_bytes),
            Some(new.as_bytes()),
            "/etc/fstab",
            &ctx.masker,
        ));
    }
    if ctx.check {
        return Ok(());
    }
    let mode = std::fs::metadata(&real).map_or(0o644, |m| m.mode() & 0o7777);
    fsops::replace_file(&real, new.as_bytes(), mode, (None, None), None)
}
