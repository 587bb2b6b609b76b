//! `email-backup forget --keep-daily N … [--prune]`: remove snapshots by restic's retention rules,
//! under an exclusive restic lock.

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;
use rustic_core::{ForgetGroups, Grouped, KeepOptions, SnapshotGroupCriterion};
use serde_json::json;

use crate::commands::{full_id, open, short_id, sorted_snapshots};
use crate::error::{Error, Result};

/// `forget`'s options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--keep-last`.
    pub keep_last: Option<i32>,
    /// `--keep-daily`.
    pub keep_daily: Option<i32>,
    /// `--keep-weekly`.
    pub keep_weekly: Option<i32>,
    /// `--keep-monthly`.
    pub keep_monthly: Option<i32>,
    /// Prune afterwards.
    pub prune: bool,
    /// Only report.
    pub dry_run: bool,
    /// JSON report.
    pub json: bool,
}

/// Runs `forget`.
///
/// # Errors
/// No keep rule, the repository, a lock held by another process, the store.
pub fn run(ctx: &Context, options: &Options) -> Result<u8> {
    if [
        options.keep_last,
        options.keep_daily,
        options.keep_weekly,
        options.keep_monthly,
    ]
    .iter()
    .all(Option::is_none)
    {
        return Err(Error::Usage(
            "give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly (forget never removes every snapshot)".to_owned(),
        ));
    }
    let open = open(ctx)?;
    let lock = if options.dry_run {
        None
    } else {
        Some(open.lock(true)?)
    };
    let keep = KeepOptions::default()
        .keep_last(options.keep_last)
        .keep_daily(options.keep_daily)
        .keep_weekly(options.keep_weekly)
        .keep_monthly(options.keep_monthly);
    let snapshots = sorted_snapshots(&open.repo)?;
    // restic groups by host and paths.
    let criterion = SnapshotGroupCriterion::new()
        .hostname(true)
        .paths(true)
        .label(false)
        .tags(false);
    let grouped = Grouped::from_items(snapshots, criterion);
    let now = rustic_core::jiff::Zoned::now();
    let groups = ForgetGroups::from_grouped_snapshots_with_retention(grouped, &keep, &now)
        .map_err(|e| Error::Usage(crate::error::rustic_message(&e)))?;

    let mut out = String::new();
    let mut report = Vec::new();
    for group in &groups.0 {
        for item in &group.items {
            let s = &item.snapshot;
            let _ = writeln!(
                out,
                "{} {:<8} {} {:<16} {}",
                if item.keep { "keep  " } else { "remove" },
                short_id(s),
                s.time.strftime("%Y-%m-%d %H:%M:%S"),
                s.hostname,
                item.reasons.join(", ")
            );
            report.push(json!({
                "id": full_id(s),
                "time": s.time.timestamp().to_string(),
                "hostname": s.hostname,
                "keep": item.keep,
                "reasons": item.reasons,
            }));
        }
    }
    let remove = groups.into_forget_ids();
    if options.dry_run {
        let _ = writeln!(out, "would remove {} snapshots (dry run)", remove.len());
    } else {
        open.repo
            .delete_snapshots(&remove)
            .map_err(|e| Error::rustic("removing snapshots", &e))?;
        let _ = writeln!(out, "removed {} snapshots", remove.len());
    }
    if options.json {
        ops_common::output::print_json(
            &json!({"snapshots": report, "removed": remove.len(), "dry_run": options.dry_run}),
        )?;
    } else {
        ops_common::output::print(&out)?;
    }
    if options.prune && !options.dry_run {
        crate::commands::prune::prune(ctx, &open, options.json)?;
    }
    drop(lock);
    Ok(exit::SUCCESS)
}
