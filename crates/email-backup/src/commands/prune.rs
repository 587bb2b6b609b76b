//! `email-backup prune`: remove data no snapshot references, under an exclusive restic lock.
//!
//! Packs are deleted at once, as restic does under its exclusive lock, instead of `rustic_core`'s
//! default of marking them and deleting them on a run a day later: the lock already keeps every
//! other restic and email-backup process out, and marked packs would look like stray files to
//! restic.

use ops_common::cli::Context;
use ops_common::exit;
use rustic_core::PruneOptions;
use serde_json::json;

use crate::commands::{human_bytes, open};
use crate::error::{Error, Result};
use crate::repo::Open;

/// Runs `prune`.
///
/// # Errors
/// The repository, a lock held by another process, the store.
pub fn run(ctx: &Context, json: bool) -> Result<u8> {
    let open = open(ctx)?;
    let lock = open.lock(true)?;
    prune(ctx, &open, json)?;
    lock.release();
    Ok(exit::SUCCESS)
}

/// Prunes an open repository; the caller holds the exclusive lock.
///
/// # Errors
/// See [`run`].
pub fn prune(_ctx: &Context, open: &Open, json: bool) -> Result<()> {
    let options = PruneOptions::default().instant_delete(true);
    let plan = open
        .repo
        .prune_plan(&options)
        .map_err(|e| Error::rustic("planning the prune", &e))?;
    let stats = &plan.stats;
    let packs_removed = stats.packs_to_delete.remove;
    let packs_repacked = stats.packs.repack;
    let size_removed = stats.size_to_delete.remove;
    let blobs = stats.blobs_sum();
    let size = stats.size_sum();
    let (blobs_used, blobs_unused, size_used, size_unused) =
        (blobs.used, blobs.unused, size.used, size.unused);
    open.repo
        .prune(&options, plan)
        .map_err(|e| Error::rustic("pruning", &e))?;
    if json {
        ops_common::output::print_json(&json!({
            "packs_removed": packs_removed,
            "packs_repacked": packs_repacked,
            "bytes_removed": size_removed,
            "blobs_used": blobs_used,
            "blobs_unused": blobs_unused,
            "bytes_used": size_used,
            "bytes_unused": size_unused,
        }))?;
    } else {
        ops_common::output::print(&format!(
            "prune: {packs_removed} packs removed ({}), {packs_repacked} repacked; the repository now holds {} of data in use\n",
            human_bytes(size_removed),
            human_bytes(size_used)
        ))?;
    }
    Ok(())
}
