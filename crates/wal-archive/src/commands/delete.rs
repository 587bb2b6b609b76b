//! `wal-archive delete --retain N [--confirm]`: retention.
//!
//! Keeps the N newest backups, ordered by the time they finished (never by name: names sort wrong
//! after a clock change or a `pg_upgrade`), every WAL file from the oldest kept backup's start on (so a
//! restore to any time after that backup stays possible), every history file, and every chunk a kept
//! backup references. Backups share chunks but never depend on each other, so deleting one can never
//! break another. Without `--confirm` it only lists what it would delete.

use std::collections::HashSet;
use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::output::human_bytes;
use ops_common::storage::{ObjectStore, Sha256Digest};
use serde::Serialize;

use crate::archive::{self, BACKUP_MARKER};
use crate::commands::verify::list_wal;
use crate::error::{Error, Result};
use crate::locks::Lock;
use crate::manifest::{self, BackupInfo};
use crate::settings;
use crate::walfile::{self, SegmentName, WalFileKind};

/// What a delete removes (or would remove).
#[derive(Debug, Default, Serialize)]
pub struct DeletePlan {
    /// Backups kept, oldest first.
    pub kept: Vec<String>,
    /// Backups deleted, oldest first.
    pub deleted_backups: Vec<String>,
    /// WAL files deleted.
    pub deleted_wal_files: Vec<String>,
    /// Chunks no kept backup references.
    pub deleted_chunks: u64,
    /// Their total stored size.
    pub deleted_chunk_bytes: u64,
    /// Objects of backups that never completed (killed half-way).
    pub incomplete_objects: u64,
    /// Whether it was done (`--confirm`) or only planned.
    pub confirmed: bool,
}

/// Runs `delete`.
///
/// # Errors
/// When the archive cannot be read or written, or a backup holds its lock.
pub fn run(ctx: &Context, retain: usize, confirm: bool, json: bool) -> Result<u8> {
    if retain == 0 {
        return Err(Error::Usage(
            "--retain must be at least 1: an archive without a backup cannot be restored"
                .to_owned(),
        ));
    }
    let store = settings::open_store(&ctx.settings)?;
    let plan = ops_common::cli::runtime().block_on(async {
        if !confirm {
            return plan(&*store, retain).await.map(|(plan, _)| plan);
        }
        let lock = Lock::take(&*store, "locks/delete.json", "delete", "locks/backup-").await?;
        let result = async {
            let (mut plan, keys) = plan(&*store, retain).await?;
            execute(&*store, &plan, keys).await?;
            plan.confirmed = true;
            Ok(plan)
        }
        .await;
        lock.release(&*store).await;
        result
    })?;
    if json {
        ops_common::output::print_json(&plan)?;
    } else {
        ops_common::output::print(&describe(&plan))?;
    }
    Ok(exit::SUCCESS)
}

fn describe(plan: &DeletePlan) -> String {
    let verb = if plan.confirmed {
        "deleted"
    } else {
        "would delete"
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "keeping {} backup(s): {}",
        plan.kept.len(),
        plan.kept.join(", ")
    );
    for name in &plan.deleted_backups {
        let _ = writeln!(text, "{verb} backup {name}");
    }
    match (
        plan.deleted_wal_files.first(),
        plan.deleted_wal_files.last(),
    ) {
        (Some(first), Some(last)) => {
            let _ = writeln!(
                text,
                "{verb} {} WAL file(s), {first} to {last}",
                plan.deleted_wal_files.len()
            );
        }
        _ => {
            let _ = writeln!(text, "{verb} no WAL file");
        }
    }
    let _ = writeln!(
        text,
        "{verb} {} unreferenced chunk(s), {}",
        plan.deleted_chunks,
        human_bytes(plan.deleted_chunk_bytes)
    );
    if plan.incomplete_objects > 0 {
        let _ = writeln!(
            text,
            "{verb} {} object(s) of backups that never completed",
            plan.incomplete_objects
        );
    }
    if !plan.confirmed {
        text.push_str("nothing was deleted: run again with --confirm to delete\n");
    }
    text
}

/// The keys a confirmed delete removes, in the order it removes them.
struct Doomed {
    /// Completion markers first, so that a half-deleted backup never looks complete.
    markers: Vec<String>,
    rest: Vec<String>,
}

async fn plan(store: &dyn ObjectStore, retain: usize) -> Result<(DeletePlan, Doomed)> {
    let backups = manifest::list_backups(store).await?;
    let split = backups.len().saturating_sub(retain);
    let (old, kept): (&[BackupInfo], &[BackupInfo]) = backups.split_at(split);
    let mut plan = DeletePlan {
        kept: kept.iter().map(|b| b.name.clone()).collect(),
        deleted_backups: old.iter().map(|b| b.name.clone()).collect(),
        ..DeletePlan::default()
    };
    let mut doomed = Doomed {
        markers: Vec::new(),
        rest: Vec::new(),
    };

    let complete: HashSet<&str> = backups.iter().map(|b| b.name.as_str()).collect();
    let deleted: HashSet<&str> = old.iter().map(|b| b.name.as_str()).collect();
    for object in store.list("backups/").await? {
        let name = object.key.split('/').nth(1).unwrap_or_default();
        if deleted.contains(name) {
            if object.key.ends_with(&format!("/{BACKUP_MARKER}")) {
                doomed.markers.push(object.key);
            } else {
                doomed.rest.push(object.key);
            }
        } else if !complete.contains(name) {
            plan.incomplete_objects += 1;
            doomed.rest.push(object.key);
        }
    }

    // Chunks: everything the kept backups reference stays.
    let mut referenced: HashSet<Sha256Digest> = HashSet::new();
    for info in kept {
        referenced.extend(manifest::read_chunk_index(store, &info.name).await?);
    }
    for object in store.list("chunks/").await? {
        let digest = object
            .key
            .rsplit('/')
            .next()
            .and_then(|hex| Sha256Digest::from_hex(hex).ok());
        if digest.is_none_or(|d| !referenced.contains(&d)) {
            plan.deleted_chunks += 1;
            plan.deleted_chunk_bytes += object.size;
            doomed.rest.push(object.key);
        }
    }

    // WAL: everything before the oldest kept backup's start segment, except history files.
    if let Some(oldest) = kept.first() {
        let segment_size = oldest.wal_segment_size;
        if let Some(start) = SegmentName::parse(&oldest.start_wal_file, segment_size) {
            let wal = list_wal(store, segment_size).await?;
            for name in wal.names {
                let segment = match walfile::classify(&name) {
                    Some(
                        WalFileKind::Segment | WalFileKind::Partial | WalFileKind::BackupHistory,
                    ) => name.get(..24),
                    _ => None,
                };
                if segment
                    .and_then(|s| SegmentName::parse(s, segment_size))
                    .is_some_and(|s| s.segno < start.segno)
                {
                    doomed.rest.push(archive::wal_key(&name));
                    plan.deleted_wal_files.push(name);
                }
            }
        }
    }
    Ok((plan, doomed))
}

async fn execute(store: &dyn ObjectStore, plan: &DeletePlan, doomed: Doomed) -> Result<()> {
    store.delete_many(&doomed.markers).await?;
    store.delete_many(&doomed.rest).await?;
    tracing::info!(
        backups = plan.deleted_backups.len(),
        wal_files = plan.deleted_wal_files.len(),
        chunks = plan.deleted_chunks,
        "retention applied"
    );
    Ok(())
}
