//! `email-backup snapshots [--json]`: the snapshots, oldest first, as restic lists them.

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;
use serde_json::json;

use crate::commands::{count, full_id, open, short_id, sorted_snapshots};
use crate::error::Result;

/// Runs `snapshots`.
///
/// # Errors
/// When the repository cannot be opened or read.
pub fn run(ctx: &Context, host: Option<&str>, tags: &[String], json: bool) -> Result<u8> {
    let open = open(ctx)?;
    let snapshots: Vec<_> = sorted_snapshots(&open.repo)?
        .into_iter()
        .filter(|s| host.is_none_or(|h| s.hostname == h))
        .filter(|s| tags.is_empty() || tags.iter().any(|t| s.tags.contains(t)))
        .collect();
    if json {
        // restic's `snapshots --json` fields, plus the summary rustic_core records.
        let list: Vec<_> = snapshots
            .iter()
            .map(|s| {
                let mut value = json!({
                    "time": s.time.timestamp().to_string(),
                    "tree": s.tree.to_hex().as_str(),
                    "paths": s.paths.iter().collect::<Vec<_>>(),
                    "hostname": s.hostname,
                    "username": s.username,
                    "tags": s.tags.iter().collect::<Vec<_>>(),
                    "id": full_id(s),
                    "short_id": short_id(s),
                    "program_version": s.program_version,
                });
                if let Some(parent) = &s.parent {
                    value["parent"] = json!(parent.to_hex().as_str());
                }
                if let Some(summary) = &s.summary {
                    value["summary"] = json!({
                        "total_files_processed": summary.total_files_processed,
                        "total_bytes_processed": summary.total_bytes_processed,
                        "files_new": summary.files_new,
                        "data_added": summary.data_added,
                    });
                }
                value
            })
            .collect();
        ops_common::output::print_json(&list)?;
        return Ok(exit::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8}  {:<19}  {:<16}  {:<16}  PATHS",
        "ID", "TIME", "HOST", "TAGS"
    );
    for s in &snapshots {
        let tags: Vec<_> = s.tags.iter().map(String::as_str).collect();
        let paths: Vec<_> = s.paths.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "{:<8}  {:<19}  {:<16}  {:<16}  {}",
            short_id(s),
            s.time.strftime("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            tags.join(","),
            paths.join(",")
        );
    }
    let _ = writeln!(out, "{}", count(snapshots.len() as u64, "snapshot"));
    ops_common::output::print(&out)?;
    Ok(exit::SUCCESS)
}
