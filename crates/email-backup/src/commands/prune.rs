//! `email-backup prune`: remove data no snapshot references, under an exclusive restic lock.
//!
//! Packs are deleted at once, as restic does under its exclusive lock, instead of `rustic_core`'s
//! default of marking them and deleting them on a run a day later: the lock already keeps every
//! other restic and email-backup process out, and marked packs would look like stray files to
//! restic.

use ops_common::cli::Context;
use ops_common::exit;
use rustic_core::PruneOptions;

use crate::commands::{count, human_bytes, open};
use crate::error::{Error, Result};
use crate::repo::Open;

/// What a prune did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PruneReport {
    /// Packs deleted whole.
    pub packs_removed: u64,
    /// Packs whose used blobs were copied to new packs, then deleted.
    pub packs_repacked: u64,
    /// Bytes of the packs deleted whole.
    pub bytes_removed: u64,
    /// Blobs some snapshot needs.
    pub blobs_used: u64,
    /// Blobs no snapshot needs (before the prune).
    pub blobs_unused: u64,
    /// Bytes of the used blobs.
    pub bytes_used: u64,
    /// Bytes of the unused blobs (before the prune).
    pub bytes_unused: u64,
}

impl PruneReport {
    /// One line for people.
    pub fn text(&self) -> String {
        format!(
            "prune: {} removed ({}), {} repacked; the repository now holds {} of data in use\n",
            count(self.packs_removed, "pack"),
            human_bytes(self.bytes_removed),
            count(self.packs_repacked, "pack"),
            human_bytes(self.bytes_used)
        )
    }
}

/// Runs `prune`.
///
/// # Errors
/// The repository, a lock held by another process, the store.
pub fn run(ctx: &Context, json: bool) -> Result<u8> {
    let open = open(ctx)?;
    let lock = open.lock(true)?;
    let report = prune(&open)?;
    lock.release();
    if json {
        ops_common::output::print_json(&report)?;
    } else {
        ops_common::output::print(&report.text())?;
    }
    Ok(exit::SUCCESS)
}

/// Prunes an open repository; the caller holds the exclusive lock.
///
/// # Errors
/// See [`run`].
pub fn prune(open: &Open) -> Result<PruneReport> {
    let options = PruneOptions::default().instant_delete(true);
    let plan = open
        .repo
        .prune_plan(&options)
        .map_err(|e| Error::rustic("planning the prune", &e))?;
    let stats = &plan.stats;
    let blobs = stats.blobs_sum();
    let size = stats.size_sum();
    let report = PruneReport {
        packs_removed: stats.packs_to_delete.remove,
        packs_repacked: stats.packs.repack,
        bytes_removed: stats.size_to_delete.remove,
        blobs_used: blobs.used,
        blobs_unused: blobs.unused,
        bytes_used: size.used,
        bytes_unused: size.unused,
    };
    open.repo
        .prune(&options, plan)
        .map_err(|e| Error::rustic("pruning", &e))?;
    Ok(report)
}
