//! `email-backup metrics`: the repository's state as Prometheus metrics, for an alert on a backup
//! that stopped happening. Printed on stdout, and written to `OPS_METRICS_DIR` when it is set.

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::metrics::Metrics;
use rustic_core::repofile::NodeType;
use rustic_core::{IndexedTree, Repository, TreeId};

use crate::commands::{open, sorted_snapshots};
use crate::error::{Error, Result};

/// Runs `metrics`.
///
/// # Errors
/// The repository, the store.
pub fn run(ctx: &Context) -> Result<u8> {
    let open = open(ctx)?;
    let snapshots = sorted_snapshots(&open.repo)?;
    let packs = open
        .conn
        .handle()
        .block_on(open.conn.store().list("data/"))?;
    let repository_bytes: u64 = packs.iter().map(|m| m.size).sum();

    let mut metrics = Metrics::new("email-backup", "metrics");
    metrics
        .gauge(
            "snapshots",
            "Snapshots in the repository.",
            &[],
            snapshots.len() as f64,
        )
        .gauge(
            "repository_data_bytes",
            "Bytes of pack files in the repository.",
            &[],
            repository_bytes as f64,
        );
    if let Some(latest) = snapshots.last() {
        let time = latest.time.timestamp();
        let age = rustic_core::jiff::Timestamp::now().duration_since(time);
        // restic does not record a summary in its snapshots: count the tree then.
        let (files, bytes) = if let Some(summary) = &latest.summary {
            (summary.total_files_processed, summary.total_bytes_processed)
        } else {
            let repo = open
                .repo
                .to_indexed_ids()
                .map_err(|e| Error::rustic("reading the index", &e))?;
            count_tree(&repo, latest.tree)?
        };
        metrics
            .gauge(
                "latest_snapshot_timestamp_seconds",
                "When the newest snapshot was taken (Unix time).",
                &[],
                time.as_second() as f64,
            )
            .gauge(
                "latest_snapshot_age_seconds",
                "Age of the newest snapshot.",
                &[],
                age.as_secs_f64(),
            )
            .gauge(
                "latest_snapshot_files",
                "Files in the newest snapshot.",
                &[],
                files as f64,
            )
            .gauge(
                "latest_snapshot_bytes",
                "Bytes of the files in the newest snapshot.",
                &[],
                bytes as f64,
            );
    }
    ctx.write_metrics(&metrics);
    ops_common::output::print(&metrics.render())?;
    Ok(exit::SUCCESS)
}

fn count_tree<S: IndexedTree>(repo: &Repository<S>, root: TreeId) -> Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        let tree = repo
            .get_tree(&id)
            .map_err(|e| Error::rustic("reading a tree", &e))?;
        for node in tree.nodes {
            match node.node_type {
                NodeType::Dir => stack.extend(node.subtree),
                NodeType::File => {
                    files += 1;
                    bytes += node.meta.size;
                }
                _ => {}
            }
        }
    }
    Ok((files, bytes))
}
