//! The bounded restore: a snapshot's files written from pack ranges, with memory that does not
//! grow with the repository.
//!
//! `rustic_core`'s own restore reads with a fixed number of threads, each holding up to 40 MiB, and
//! peaked at ~1.8 GB on the benchmark corpus; a read error there is a panic. This one uses only
//! `rustic_core`'s lower-level, stable parts — the snapshot's trees and the index (blob → pack,
//! offset, length) — and does the rest itself:
//!
//! 1. **Walk** the snapshot's trees (only into directories on the way to an `--include` path),
//!    creating directories and symlinks and listing the files to write (path, size, metadata and
//!    the ids of their data blobs: a few hundred bytes per file).
//! 2. **Plan**: look every data blob up in the index and group the blobs by pack, sorted by
//!    offset, then cut each pack's list into ranges of at most [`MAX_RANGE`] bytes.
//! 3. **Write**: `concurrency` threads each take a range, read it with one ranged GET, check
//!    and decrypt each blob (MAC, then SHA-256 against its id), decompress it, and write it at its
//!    offset in each file that holds it. A file's last blob sets its mode and times.
//!
//! Peak memory is therefore about `concurrency × (MAX_RANGE + largest blob)` plus the list of
//! files. A range that cannot be read, or a blob that fails its checks, fails exactly the files
//! that need it: they are removed and reported, and every other file is restored.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use indicatif::ProgressBar;
use ops_common::storage::{ByteRange, ObjectStore};
use rustic_core::repofile::{Node, NodeType, PackId};
use rustic_core::{DataId, IndexedFull, Repository, TreeId};
use sha2::{Digest as _, Sha256};
use tokio::runtime::Handle;

use crate::crypto::RepoKey;
use crate::error::{Error, Result};

/// Largest pack range read at once (unless one blob is larger).
pub const MAX_RANGE: u32 = 4 << 20;
/// Two blobs of one pack are read in one range when the gap between them is at most this.
const MAX_GAP: u32 = 256 << 10;

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The snapshot's root tree.
    pub tree: TreeId,
    /// Where to write.
    pub target: PathBuf,
    /// Paths as stored in the snapshot (`/var/www/.../raw_emails/123`); empty: everything.
    pub includes: Vec<PathBuf>,
    /// Replace existing files that differ from the snapshot.
    pub overwrite: bool,
    /// Ranges read and written at the same time.
    pub concurrency: usize,
}

/// What a restore did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// Files written.
    pub files_restored: u64,
    /// Bytes written.
    pub bytes_restored: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Files already present with the snapshot's content, left as they were.
    pub files_unchanged: u64,
    /// Files present with other content, left as they were (no `--overwrite`).
    pub files_skipped: Vec<String>,
    /// Files that could not be restored, with the reason.
    pub files_failed: Vec<FailedFile>,
    /// Other problems (unreadable trees, special files not restored).
    pub warnings: Vec<String>,
}

/// A file that could not be restored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedFile {
    /// The file, under the target.
    pub path: String,
    /// Why.
    pub error: String,
}

/// Metadata applied when a file or directory is complete.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: Option<u32>,
    mtime: Option<std::time::SystemTime>,
    atime: Option<std::time::SystemTime>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Meta {
    fn of(node: &Node) -> Self {
        let time = |t: Option<rustic_core::jiff::Timestamp>| t.map(std::time::SystemTime::from);
        Self {
            mode: node.meta.mode.map(mode_from_go),
            mtime: time(node.meta.mtime),
            atime: time(node.meta.atime),
            uid: node.meta.uid,
            gid: node.meta.gid,
        }
    }

    fn apply(&self, path: &Path, file: Option<&File>) -> std::io::Result<()> {
        if rustix::process::geteuid().is_root()
            && let (Some(uid), Some(gid)) = (self.uid, self.gid)
        {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        if let Some(mode) = self.mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
        if let Some(mtime) = self.mtime {
            let times = fs::FileTimes::new()
                .set_modified(mtime)
                .set_accessed(self.atime.unwrap_or(mtime));
            match file {
                Some(f) => f.set_times(times)?,
                None => File::open(path)?.set_times(times)?,
            }
        }
        Ok(())
    }
}

/// Go's `os.FileMode` (what restic stores) to Unix permission bits.
fn mode_from_go(go: u32) -> u32 {
    let mut mode = go & 0o777;
    if go & (1 << 23) != 0 {
        mode |= 0o4000;
    }
    if go & (1 << 22) != 0 {
        mode |= 0o2000;
    }
    if go & (1 << 20) != 0 {
        mode |= 0o1000;
    }
    mode
}

/// A file to write.
struct FileJob {
    path: PathBuf,
    size: u64,
    meta: Meta,
    remaining: AtomicU32,
    created: Mutex<bool>,
    failed: AtomicBool,
}

/// One blob's place in a pack and where its content goes.
#[derive(Clone, Copy)]
struct BlobUse {
    offset: u32,
    length: u32,
    uncompressed: Option<u32>,
    id: DataId,
    file: u32,
    file_offset: u64,
}

/// A range of a pack, and the blobs in it.
struct RangeJob {
    pack: PackId,
    start: u32,
    end: u32,
    blobs: Vec<BlobUse>,
}

fn included(path: &Path, includes: &[PathBuf]) -> (bool, bool) {
    // (restore this node and everything below, descend into it looking for includes)
    if includes.is_empty() {
        return (true, true);
    }
    let full = includes.iter().any(|inc| path.starts_with(inc));
    let on_the_way = includes.iter().any(|inc| inc.starts_with(path));
    (full, full || on_the_way)
}

/// Restores files of a snapshot; see the module documentation.
///
/// # Panics
/// With more than 4 billion files in one restore.
///
/// # Errors
/// Only for problems that stop the whole restore (the target cannot be created, the snapshot's
/// root tree cannot be read); problems with single files are in the report.
#[allow(clippy::too_many_lines)]
pub fn restore<S: IndexedFull>(
    repo: &Repository<S>,
    store: &dyn ObjectStore,
    handle: &Handle,
    key: &RepoKey,
    request: &RestoreRequest,
    progress: &ProgressBar,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    fs::create_dir_all(&request.target).map_err(|e| Error::io(&request.target, e))?;

    // 1. Walk.
    let mut files: Vec<FileJob> = Vec::new();
    let mut file_blobs: Vec<Vec<DataId>> = Vec::new();
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut symlinks = 0u64;
    let root = repo
        .get_tree(&request.tree)
        .map_err(|e| Error::rustic("reading the snapshot's root tree", &e))?;
    let mut stack: Vec<(PathBuf, rustic_core::repofile::Tree)> = vec![(PathBuf::from("/"), root)];
    while let Some((dir, tree)) = stack.pop() {
        for node in tree.nodes {
            let stored = dir.join(node.name());
            let (take, descend) = included(&stored, &request.includes);
            if !descend {
                continue;
            }
            let dest = request
                .target
                .join(stored.strip_prefix("/").unwrap_or(&stored));
            match &node.node_type {
                NodeType::Dir => {
                    if let Err(e) = fs::create_dir_all(&dest) {
                        report.warnings.push(format!(
                            "{}: {e}; nothing below it restored",
                            dest.display()
                        ));
                        continue;
                    }
                    if take {
                        dirs.push((dest.clone(), Meta::of(&node)));
                    }
                    let Some(subtree) = node.subtree else {
                        continue;
                    };
                    match repo.get_tree(&subtree) {
                        Ok(tree) => stack.push((stored, tree)),
                        Err(e) => report.warnings.push(format!(
                            "{}: its tree cannot be read, nothing below it restored: {}",
                            dest.display(),
                            crate::error::rustic_message(&e)
                        )),
                    }
                }
                NodeType::File if take => {
                    let blobs = node.content.clone().unwrap_or_default();
                    if dest.symlink_metadata().is_ok() {
                        match existing_matches(repo, &dest, node.meta.size, &blobs) {
                            Ok(true) => {
                                report.files_unchanged += 1;
                                continue;
                            }
                            Ok(false) if !request.overwrite => {
                                report.files_skipped.push(dest.display().to_string());
                                continue;
                            }
                            Ok(false) => {}
                            Err(e) => {
                                report.files_failed.push(FailedFile {
                                    path: dest.display().to_string(),
                                    error: e,
                                });
                                continue;
                            }
                        }
                    }
                    files.push(FileJob {
                        path: dest,
                        size: node.meta.size,
                        meta: Meta::of(&node),
                        remaining: AtomicU32::new(u32::try_from(blobs.len()).unwrap_or(u32::MAX)),
                        created: Mutex::new(false),
                        failed: AtomicBool::new(false),
                    });
                    file_blobs.push(blobs);
                }
                NodeType::Symlink { .. } if take => {
                    let target = node.node_type.to_link();
                    if dest.symlink_metadata().is_ok() {
                        if fs::read_link(&dest).is_ok_and(|t| t == target) {
                            report.files_unchanged += 1;
                            continue;
                        }
                        if request.overwrite {
                            let _ = fs::remove_file(&dest);
                        } else {
                            report.files_skipped.push(dest.display().to_string());
                            continue;
                        }
                    }
                    match std::os::unix::fs::symlink(target, &dest) {
                        Ok(()) => symlinks += 1,
                        Err(e) => report.files_failed.push(FailedFile {
                            path: dest.display().to_string(),
                            error: e.to_string(),
                        }),
                    }
                }
                NodeType::File | NodeType::Symlink { .. } => {}
                other => report
                    .warnings
                    .push(format!("{}: a {other} is not restored", dest.display())),
            }
        }
    }

    // 2. Plan.
    let total: u64 = files.iter().map(|f| f.size).sum();
    progress.set_length(total);
    let mut by_pack: BTreeMap<PackId, Vec<BlobUse>> = BTreeMap::new();
    for (index, blobs) in file_blobs.iter().enumerate() {
        let file = u32::try_from(index).expect("fewer than 4 billion files");
        let mut file_offset = 0u64;
        for id in blobs {
            let Ok(entry) = repo.get_index_entry(id) else {
                files[index].failed.store(true, Ordering::Relaxed);
                report.files_failed.push(FailedFile {
                    path: files[index].path.display().to_string(),
                    error: format!("blob {} is not in the index", id.to_hex().as_str()),
                });
                break;
            };
            let location = entry.location;
            by_pack.entry(entry.pack).or_default().push(BlobUse {
                offset: location.offset,
                length: location.length,
                uncompressed: location.uncompressed_length.map(std::num::NonZeroU32::get),
                id: *id,
                file,
                file_offset,
            });
            file_offset += u64::from(location.data_length());
        }
    }
    drop(file_blobs);
    let mut ranges: Vec<RangeJob> = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort_by_key(|b| (b.offset, b.file));
        let mut current: Option<RangeJob> = None;
        for blob in blobs {
            if files[blob.file as usize].failed.load(Ordering::Relaxed) {
                continue;
            }
            let end = blob.offset + blob.length;
            if let Some(range) = &mut current
                && blob.offset <= range.end.saturating_add(MAX_GAP)
                && end.max(range.end) - range.start <= MAX_RANGE
            {
                range.end = range.end.max(end);
                range.blobs.push(blob);
                continue;
            }
            ranges.extend(current.take());
            current = Some(RangeJob {
                pack,
                start: blob.offset,
                end,
                blobs: vec![blob],
            });
        }
        ranges.extend(current);
    }

    // Empty files have no blobs: create them now.
    for file in &files {
        if file.remaining.load(Ordering::Relaxed) == 0 && !file.failed.load(Ordering::Relaxed) {
            let outcome =
                File::create(&file.path).and_then(|f| file.meta.apply(&file.path, Some(&f)));
            if let Err(e) = outcome {
                file.failed.store(true, Ordering::Relaxed);
                report.files_failed.push(FailedFile {
                    path: file.path.display().to_string(),
                    error: e.to_string(),
                });
            }
        }
    }

    // 3. Write.
    let queue = Mutex::new(ranges.into_iter());
    let failures: Mutex<HashMap<u32, String>> = Mutex::new(HashMap::new());
    let written = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..request.concurrency.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next();
                    let Some(range) = next else { break };
                    write_range(
                        store, handle, key, &range, &files, &failures, &written, progress,
                    );
                }
            });
        }
    });

    let failures = failures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut failed: Vec<(u32, String)> = failures.into_iter().collect();
    failed.sort_unstable();
    for (index, error) in failed {
        let file = &files[index as usize];
        // Never leave a file with a hole where a damaged blob should be.
        let _ = fs::remove_file(&file.path);
        report.files_failed.push(FailedFile {
            path: file.path.display().to_string(),
            error,
        });
    }
    report.files_restored = files
        .iter()
        .filter(|f| !f.failed.load(Ordering::Relaxed))
        .count() as u64
        + symlinks;
    report.bytes_restored = written.load(Ordering::Relaxed);

    // Directories last, deepest first, so that writing files does not change their times.
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, meta) in &dirs {
        if let Err(e) = meta.apply(path, None) {
            report
                .warnings
                .push(format!("{}: metadata not set: {e}", path.display()));
        }
    }
    report.dirs = dirs.len() as u64;
    report.files_failed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// Whether an existing file already holds exactly the snapshot's content.
fn existing_matches<S: IndexedFull>(
    repo: &Repository<S>,
    path: &Path,
    size: u64,
    blobs: &[DataId],
) -> std::result::Result<bool, String> {
    let meta = path.symlink_metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut offset = 0u64;
    for id in blobs {
        let entry = repo
            .get_index_entry(id)
            .map_err(|e| crate::error::rustic_message(&e))?;
        let length = entry.location.data_length() as usize;
        let mut buf = vec![0u8; length];
        if file.read_exact_at(&mut buf, offset).is_err() {
            return Ok(false);
        }
        if Sha256::digest(&buf).as_slice() != hex_bytes(id).as_slice() {
            return Ok(false);
        }
        offset += length as u64;
    }
    Ok(true)
}

fn hex_bytes(id: &DataId) -> Vec<u8> {
    hex::decode(id.to_hex().as_str()).unwrap_or_default()
}

/// Reads one range and writes its blobs; failures are recorded against the files that needed them.
#[allow(clippy::too_many_arguments)]
fn write_range(
    store: &dyn ObjectStore,
    handle: &Handle,
    key: &RepoKey,
    range: &RangeJob,
    files: &[FileJob],
    failures: &Mutex<HashMap<u32, String>>,
    written: &AtomicU64,
    progress: &ProgressBar,
) {
    let fail = |file: u32, error: String| {
        if !files[file as usize].failed.swap(true, Ordering::Relaxed) {
            failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(file, error);
        }
    };
    let object = crate::backend::key(rustic_core::FileType::Pack, &range.pack);
    let data = handle.block_on(async {
        let reader = store
            .get(
                &object,
                Some(ByteRange::new(u64::from(range.start), u64::from(range.end))),
            )
            .await?;
        ops_common::storage::read_to_end(store, &object, reader).await
    });
    let data = match data {
        Ok(data) if data.len() == (range.end - range.start) as usize => data,
        Ok(data) => {
            for blob in &range.blobs {
                fail(
                    blob.file,
                    format!(
                        "pack {object} is shorter than the index says ({} of {} bytes at {})",
                        data.len(),
                        range.end - range.start,
                        range.start
                    ),
                );
            }
            return;
        }
        Err(e) => {
            let message = ops_common::one_line(&e);
            for blob in &range.blobs {
                fail(blob.file, message.clone());
            }
            return;
        }
    };
    for blob in &range.blobs {
        if files[blob.file as usize].failed.load(Ordering::Relaxed) {
            continue;
        }
        let at = (blob.offset - range.start) as usize;
        let sealed = &data[at..at + blob.length as usize];
        let plain = match decode_blob(key, sealed, blob) {
            Ok(plain) => plain,
            Err(e) => {
                fail(
                    blob.file,
                    format!("blob {} in pack {object}: {e}", blob.id.to_hex().as_str()),
                );
                continue;
            }
        };
        let file = &files[blob.file as usize];
        match write_blob(file, &plain, blob.file_offset) {
            Ok(()) => {
                written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                progress.inc(plain.len() as u64);
            }
            Err(e) => fail(blob.file, e.to_string()),
        }
    }
}

/// Checks, decrypts and decompresses one blob, and checks it against its id.
fn decode_blob(
    key: &RepoKey,
    sealed: &[u8],
    blob: &BlobUse,
) -> std::result::Result<Vec<u8>, String> {
    let decrypted = key.decrypt(sealed).map_err(|e| e.to_string())?;
    let plain = match blob.uncompressed {
        Some(length) => {
            let mut out = Vec::with_capacity(length as usize);
            zstd::stream::copy_decode(&decrypted[..], &mut out)
                .map_err(|e| format!("does not decompress: {e}"))?;
            out
        }
        None => decrypted,
    };
    if Sha256::digest(&plain).as_slice() != hex_bytes(&blob.id).as_slice() {
        return Err("content does not match its id".to_owned());
    }
    Ok(plain)
}

/// Writes a blob into its file (created on the first write), and sets the file's metadata after
/// its last blob.
fn write_blob(file: &FileJob, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut created = file
        .created
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handle = if *created {
        OpenOptions::new().write(true).open(&file.path)?
    } else {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&file.path)?;
        if file.remaining.load(Ordering::Relaxed) > 1 {
            f.set_len(file.size)?;
        }
        *created = true;
        f
    };
    handle.write_all_at(data, offset)?;
    if file.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        file.meta.apply(&file.path, Some(&handle))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_select_subtrees_and_the_way_to_them() {
        let inc = vec![PathBuf::from("/srv/mail/123/12345")];
        assert_eq!(included(Path::new("/srv"), &inc), (false, true));
        assert_eq!(
            included(Path::new("/srv/mail/123/12345"), &inc),
            (true, true)
        );
        assert_eq!(
            included(Path::new("/srv/mail/123/12345/9"), &inc),
            (true, true)
        );
        assert_eq!(included(Path::new("/srv/mail/124"), &inc), (false, false));
        assert_eq!(included(Path::new("/x"), &[]), (true, true));
    }

    #[test]
    fn go_modes_map_to_unix_bits() {
        assert_eq!(mode_from_go(0o644), 0o644);
        assert_eq!(mode_from_go((1 << 31) | 0o755), 0o755);
        assert_eq!(mode_from_go((1 << 23) | 0o755), 0o4755);
    }
}
