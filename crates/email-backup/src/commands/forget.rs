//! `email-backup forget --keep-daily N … [--prune]`: remove snapshots by restic's retention rules,
//! under an exclusive restic lock.
//!
//! The policy is restic's own (`internal/restic/snapshot_policy.go`), not `rustic_core`'s: within
//! each group of snapshots with the same host and paths, newest first, a snapshot is kept when it is
//! one of the `--keep-last` newest, or when it is the newest of a day (week, month) not yet
//! covered while that rule's count lasts. (`rustic_core` also keeps the oldest snapshot of each
//! group while a count lasts, so the same repository would keep different snapshots under restic
//! and email-backup.)

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;
use rustic_core::repofile::SnapshotFile;
use serde_json::json;

use crate::commands::{count, full_id, open, short_id, sorted_snapshots};
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
    let snapshots = sorted_snapshots(&open.repo)?;
    let decisions = apply_policy(snapshots, options);

    let mut out = String::new();
    let mut report = Vec::new();
    let mut remove = Vec::new();
    for (s, reasons) in &decisions {
        let keep = !reasons.is_empty();
        let _ = writeln!(
            out,
            "{} {:<8} {} {:<16} {}",
            if keep { "keep  " } else { "remove" },
            short_id(s),
            s.time.strftime("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            reasons.join(", ")
        );
        report.push(json!({
            "id": full_id(s),
            "time": s.time.timestamp().to_string(),
            "hostname": s.hostname,
            "paths": s.paths.iter().collect::<Vec<_>>(),
            "keep": keep,
            "reasons": reasons,
        }));
        if !keep {
            remove.push(s.id);
        }
    }
    if options.dry_run {
        let _ = writeln!(
            out,
            "would remove {} (dry run)",
            count(remove.len() as u64, "snapshot")
        );
    } else {
        open.repo
            .delete_snapshots(&remove)
            .map_err(|e| Error::rustic("removing snapshots", &e))?;
        let _ = writeln!(out, "removed {}", count(remove.len() as u64, "snapshot"));
    }
    let pruned = if options.prune && !options.dry_run {
        Some(crate::commands::prune::prune(&open)?)
    } else {
        None
    };
    if options.json {
        let mut value =
            json!({"snapshots": report, "removed": remove.len(), "dry_run": options.dry_run});
        if let Some(pruned) = &pruned {
            value["prune"] = json!(pruned);
        }
        ops_common::output::print_json(&value)?;
    } else {
        if let Some(pruned) = &pruned {
            out.push_str(&pruned.text());
        }
        ops_common::output::print(&out)?;
    }
    drop(lock);
    Ok(exit::SUCCESS)
}

/// A snapshot's bucket for each rule: restic's `ymd`, ISO `year*100 + week`, `ym`, in the time zone
/// the snapshot was written in.
fn buckets(s: &SnapshotFile) -> [i64; 3] {
    let date = s.time.date();
    let week = date.iso_week_date();
    [
        i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day()),
        i64::from(week.year()) * 100 + i64::from(week.week()),
        i64::from(date.year()) * 100 + i64::from(date.month()),
    ]
}

/// restic's `ApplyPolicy` per group (host and paths); returns every snapshot, newest first within
/// its group, with the reasons it is kept (none: removed).
fn apply_policy(
    snapshots: Vec<SnapshotFile>,
    options: &Options,
) -> Vec<(SnapshotFile, Vec<&'static str>)> {
    let mut groups: std::collections::BTreeMap<(String, Vec<String>), Vec<SnapshotFile>> =
        std::collections::BTreeMap::new();
    for s in snapshots {
        let mut paths: Vec<String> = s.paths.iter().cloned().collect();
        paths.sort();
        groups
            .entry((s.hostname.clone(), paths))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
        // (remaining count, -1 for unlimited; last bucket seen)
        let mut rules = [
            (options.keep_daily, None::<i64>, "daily snapshot"),
            (options.keep_weekly, None, "weekly snapshot"),
            (options.keep_monthly, None, "monthly snapshot"),
        ];
        for (nr, s) in group.into_iter().enumerate() {
            let mut reasons = Vec::new();
            if options
                .keep_last
                .is_some_and(|n| n < 0 || i64::try_from(nr).is_ok_and(|nr| nr < i64::from(n)))
            {
                reasons.push("last snapshot");
            }
            for ((count, last, reason), bucket) in rules.iter_mut().zip(buckets(&s)) {
                if let Some(n) = count
                    && *n != 0
                    && *last != Some(bucket)
                {
                    reasons.push(*reason);
                    *last = Some(bucket);
                    if *n > 0 {
                        *n -= 1;
                    }
                }
            }
            out.push((s, reasons));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(time: &str, host: &str) -> SnapshotFile {
        serde_json::from_value(serde_json::json!({
            "time": time,
            "tree": "0000000000000000000000000000000000000000000000000000000000000000",
            "paths": ["/var/www/alaveteli/files/raw_emails"],
            "hostname": host,
        }))
        .unwrap()
    }

    fn kept(options: &Options, times: &[&str]) -> Vec<String> {
        let snapshots = times.iter().map(|t| snapshot(t, "web1")).collect();
        apply_policy(snapshots, options)
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(s, _)| s.time.strftime("%m-%d %H").to_string())
            .collect()
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day_like_restic() {
        let times = [
            "2024-03-01T01:00:00+00:00",
            "2024-03-01T13:00:00+00:00",
            "2024-03-02T01:00:00+00:00",
            "2024-03-02T13:00:00+00:00",
            "2024-03-03T01:00:00+00:00",
        ];
        let options = Options {
            keep_daily: Some(2),
            ..Options::default()
        };
        // restic keeps 03-03 and 03-02 13h; rustic_core would keep 03-01 01h as well.
        assert_eq!(kept(&options, &times), ["03-03 01", "03-02 13"]);
        let options = Options {
            keep_daily: Some(7),
            ..Options::default()
        };
        assert_eq!(kept(&options, &times), ["03-03 01", "03-02 13", "03-01 13"]);
        let options = Options {
            keep_last: Some(1),
            keep_monthly: Some(-1),
            ..Options::default()
        };
        assert_eq!(kept(&options, &times), ["03-03 01"]);
    }

    #[test]
    fn groups_are_host_and_paths() {
        let snapshots = vec![
            snapshot("2024-03-01T01:00:00+00:00", "web1"),
            snapshot("2024-03-01T02:00:00+00:00", "web2"),
        ];
        let options = Options {
            keep_last: Some(1),
            ..Options::default()
        };
        assert!(
            apply_policy(snapshots, &options)
                .iter()
                .all(|(_, r)| r == &["last snapshot"])
        );
    }
}
