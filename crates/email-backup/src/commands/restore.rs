//! `email-backup restore SNAPSHOT --target DIR [--include PATH]`: the bounded restore of
//! [`crate::restore`], under a restic lock.

use std::fmt::Write as _;
use std::path::PathBuf;

use ops_common::cli::Context;
use ops_common::exit;

use crate::commands::{count, human_bytes, open, short_id};
use crate::error::{Error, Result, storage_cause};
use crate::restore::{RestoreRequest, restore};
use crate::settings;

/// `restore`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    /// `latest`, or a snapshot id or its prefix.
    pub snapshot: String,
    /// Where to write.
    pub target: PathBuf,
    /// Paths as stored in the snapshot.
    pub includes: Vec<PathBuf>,
    /// Replace existing files that differ.
    pub overwrite: bool,
    /// Print the report as JSON.
    pub json: bool,
}

/// Runs `restore`.
///
/// # Errors
/// A missing snapshot or include path, the repository, the store; files that exist with other
/// content ([`Error::Conflict`]). Files that could not be restored make the status 1.
pub fn run(ctx: &Context, options: &Options) -> Result<u8> {
    let concurrency = settings::restore_concurrency(&ctx.settings)?;
    let mut includes = Vec::new();
    for include in &options.includes {
        if !include.is_absolute() {
            return Err(Error::Usage(format!(
                "--include {}: give the path as stored in the snapshot (absolute, as `snapshots` shows)",
                include.display()
            )));
        }
        includes.push(include.components().collect::<PathBuf>());
    }
    let open = open(ctx)?;
    let lock = open.lock(false)?;
    let snapshot = open
        .repo
        .get_snapshot_from_str(&options.snapshot, |_| true)
        .map_err(|e| {
            if storage_cause(&*e).is_some_and(|c| !c.is_not_found()) {
                Error::rustic("reading the snapshots", &e)
            } else {
                Error::NotFound(format!(
                    "no snapshot {:?} in {}",
                    options.snapshot, open.conn.location
                ))
            }
        })?;
    let store = std::sync::Arc::clone(open.conn.store());
    let handle = open.conn.handle();
    let key = open.key.clone();
    let bars = crate::progress::Bars::new(ctx.log_format);
    let repo = open
        .repo
        .to_indexed()
        .map_err(|e| Error::rustic("reading the index", &e))?;
    for include in &includes {
        let relative = include.strip_prefix("/").unwrap_or(include);
        if repo.node_from_path(snapshot.tree, relative).is_err() {
            return Err(Error::NotFound(format!(
                "{} is not in snapshot {}",
                include.display(),
                short_id(&snapshot)
            )));
        }
    }
    let request = RestoreRequest {
        tree: snapshot.tree,
        target: options.target.clone(),
        includes,
        overwrite: options.overwrite,
        concurrency,
    };
    let progress = bars.bytes("restoring");
    tracing::info!(snapshot = %short_id(&snapshot), target = %options.target.display(), "restoring");
    let report = restore(&repo, &*store, &handle, &key, &request, &progress);
    progress.finish_and_clear();
    drop(lock);
    let report = report?;

    if options.json {
        ops_common::output::print_json(&report)?;
    } else {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "restored snapshot {} to {}: {}, {}{}",
            short_id(&snapshot),
            options.target.display(),
            count(report.files_restored, "file"),
            human_bytes(report.bytes_restored),
            if report.files_unchanged > 0 {
                format!(" ({} already there)", count(report.files_unchanged, "file"))
            } else {
                String::new()
            }
        );
        for failed in &report.files_failed {
            let _ = writeln!(out, "not restored: {}: {}", failed.path, failed.error);
        }
        for skipped in &report.files_skipped {
            let _ = writeln!(out, "exists, left as it is: {skipped}");
        }
        ops_common::output::print(&out)?;
    }
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    if !report.files_failed.is_empty() {
        tracing::error!(
            "{} could not be restored; every other file was",
            count(report.files_failed.len() as u64, "file")
        );
        return Ok(exit::FAILURE);
    }
    if !report.files_skipped.is_empty() {
        return Err(Error::Conflict(format!(
            "{} in {} with other content left as they are (--overwrite replaces them)",
            count(report.files_skipped.len() as u64, "file"),
            options.target.display()
        )));
    }
    Ok(exit::SUCCESS)
}
