//! `email-backup backup [PATHS]`: save a snapshot, under a restic lock.

use std::path::{Component, Path, PathBuf};

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::metrics::Metrics;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{BackupOptions as RusticBackupOptions, PathList, SnapshotOptions};
use serde_json::json;

use crate::commands::{full_id, human_bytes, open, short_id};
use crate::error::{Error, Result};
use crate::settings;

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Paths given on the command line (empty: `RAW_EMAILS_LOCATION`).
    pub paths: Vec<PathBuf>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// restic-style exclude globs.
    pub excludes: Vec<String>,
    /// Print restic's JSON summary.
    pub json: bool,
}

/// The paths to save: absolute and normalised as restic stores them, each one existing.
///
/// # Errors
/// No paths at all, or one that does not exist.
pub fn backup_paths(ctx: &Context, given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let given: Vec<PathBuf> = if given.is_empty() {
        let Some(location) = ctx.settings.get(&settings::RAW_EMAILS_LOCATION) else {
            return Err(Error::Usage(
                "nothing to back up: give PATHS or set RAW_EMAILS_LOCATION".to_owned(),
            ));
        };
        if !location.starts_with('/') {
            return Err(ctx
                .settings
                .invalid(&settings::RAW_EMAILS_LOCATION, "must be an absolute path")
                .into());
        }
        vec![PathBuf::from(location)]
    } else {
        given.to_vec()
    };
    let mut paths = Vec::with_capacity(given.len());
    for path in given {
        let absolute = normalize(&std::path::absolute(&path).map_err(|e| Error::io(&path, e))?);
        match absolute.symlink_metadata() {
            Ok(_) => paths.push(absolute),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "{}: no such file or directory; nothing was saved",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(&absolute, e)),
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// `a/./b/../c` → `a/c`, without touching the file system (restic's `filepath.Clean`; symlinks
/// are stored as given, not resolved).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Runs `backup`.
///
/// # Errors
/// Bad paths, the repository, a conflicting lock, the store.
pub fn run(ctx: &Context, options: &BackupOptions) -> Result<u8> {
    let paths = backup_paths(ctx, &options.paths)?;
    let open = open(ctx)?;
    let lock = open.lock_unconfirmed(false)?;
    let repo = match open.repo.to_indexed_ids() {
        Ok(repo) => repo,
        Err(e) => {
            // Read during the lock's check: a prune that won the race explains a vanished index.
            lock.confirmed()?;
            return Err(Error::rustic("reading the index", &e));
        }
    };

    let mut snapshot_options = SnapshotOptions::default().host(settings::host(&ctx.settings));
    for tag in &options.tags {
        snapshot_options = snapshot_options.add_tags(tag).map_err(|e| {
            Error::Usage(format!("tag {tag:?}: {}", crate::error::rustic_message(&e)))
        })?;
    }
    let mut snapshot = snapshot_options
        .to_snapshot()
        .map_err(|e| Error::rustic("preparing the snapshot", &e))?;
    snapshot.program_version = format!(
        "email-backup {} (rustic_core 0.13)",
        env!("CARGO_PKG_VERSION")
    );
    let mut backup_options = RusticBackupOptions::default();
    backup_options.excludes.globs = options.excludes.iter().map(|g| format!("!{g}")).collect();

    tracing::info!(paths = ?paths, "backing up");
    let source: PathList = paths.iter().cloned().collect();
    let result = repo.backup(&backup_options, &source, snapshot);
    // A refused lock fails the backup's writes; say why rather than which write failed.
    let confirmed = lock.confirmed();
    lock.release();
    confirmed?;
    let snapshot = result.map_err(|e| Error::rustic("backing up", &e))?;
    report(ctx, &snapshot, options.json)?;
    Ok(exit::SUCCESS)
}

fn report(ctx: &Context, snapshot: &SnapshotFile, as_json: bool) -> Result<()> {
    let summary = snapshot.summary.clone().unwrap_or_default();
    let mut metrics = Metrics::new("email-backup", "backup");
    let end = summary.backup_end.timestamp();
    metrics
        .gauge(
            "backup_timestamp_seconds",
            "When the last backup ended (Unix time).",
            &[],
            end.as_second() as f64,
        )
        .gauge(
            "backup_duration_seconds",
            "How long the last backup took.",
            &[],
            summary.backup_duration,
        )
        .gauge(
            "backup_files",
            "Files in the last snapshot.",
            &[],
            summary.total_files_processed as f64,
        )
        .gauge(
            "backup_bytes",
            "Bytes of the files in the last snapshot.",
            &[],
            summary.total_bytes_processed as f64,
        )
        .gauge(
            "backup_files_new",
            "Files the last backup found new.",
            &[],
            summary.files_new as f64,
        )
        .gauge(
            "backup_added_bytes",
            "Bytes the last backup added to the repository (after compression).",
            &[],
            summary.data_added_packed as f64,
        );
    ctx.write_metrics(&metrics);
    tracing::info!(
        snapshot = %short_id(snapshot),
        files = summary.total_files_processed,
        new = summary.files_new,
        changed = summary.files_changed,
        added = summary.data_added_packed,
        "snapshot saved"
    );
    if as_json {
        // restic's `backup --json` summary message.
        ops_common::output::print_json(&json!({
            "message_type": "summary",
            "files_new": summary.files_new,
            "files_changed": summary.files_changed,
            "files_unmodified": summary.files_unmodified,
            "dirs_new": summary.dirs_new,
            "dirs_changed": summary.dirs_changed,
            "dirs_unmodified": summary.dirs_unmodified,
            "data_blobs": summary.data_blobs,
            "tree_blobs": summary.tree_blobs,
            "data_added": summary.data_added,
            "data_added_packed": summary.data_added_packed,
            "total_files_processed": summary.total_files_processed,
            "total_bytes_processed": summary.total_bytes_processed,
            "total_duration": summary.backup_duration,
            "snapshot_id": full_id(snapshot),
            "paths": snapshot.paths.iter().collect::<Vec<_>>(),
            "hostname": snapshot.hostname,
            "tags": snapshot.tags.iter().collect::<Vec<_>>(),
        }))?;
    } else {
        ops_common::output::print(&format!(
            "Files:       {} new, {} changed, {} unmodified\nDirs:        {} new, {} changed, {} unmodified\nAdded to the repository: {} ({} stored)\nprocessed {} files, {} in {:.1}s\nsnapshot {} saved\n",
            summary.files_new,
            summary.files_changed,
            summary.files_unmodified,
            summary.dirs_new,
            summary.dirs_changed,
            summary.dirs_unmodified,
            human_bytes(summary.data_added),
            human_bytes(summary.data_added_packed),
            summary.total_files_processed,
            human_bytes(summary.total_bytes_processed),
            summary.backup_duration,
            short_id(snapshot)
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use std::path::Path;

    #[test]
    fn paths_are_cleaned_like_restic() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
    }
}
