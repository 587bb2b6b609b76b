//! `wal-archive verify`: re-read the archive and prove the backups restore.
//!
//! Every object is read back and checked: each backup's manifest, label and map against the hashes
//! in its marker, every chunk against its SHA-256, every archived WAL file against its envelope. Then
//! the WAL chain is walked from each backup's start to the newest archived segment, along the
//! timelines that the history files describe, and every missing segment is reported by name: a gap
//! there is where a point-in-time recovery would stop.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::metrics::Metrics;
use ops_common::storage::{ObjectStore, Sha256Digest};
use serde::Serialize;

use crate::archive::{self, ArchiveInfo};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::manifest::{self, BackupInfo};
use crate::settings::{self, WALG_DOWNLOAD_CONCURRENCY};
use crate::walfile::{self, SegmentName, WalFileKind};

/// What verify found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Backups checked.
    pub backups: Vec<String>,
    /// Distinct chunks read and checked.
    pub chunks_checked: u64,
    /// WAL files read and checked.
    pub wal_files_checked: u64,
    /// Every problem, one sentence each.
    pub problems: Vec<String>,
}

/// Runs `verify`; status 1 when there is any problem.
///
/// # Errors
/// When the archive cannot be read at all.
pub fn run(ctx: &Context, backup: Option<&str>, json: bool) -> Result<u8> {
    let store = settings::open_store(&ctx.settings)?;
    let concurrency = settings::concurrency(&ctx.settings, &WALG_DOWNLOAD_CONCURRENCY)?;
    let result = ops_common::cli::runtime().block_on(verify(ctx, store, backup, concurrency));
    let mut metrics = Metrics::new("wal-archive", "verify");
    let problems = result.as_ref().map_or(1.0, |r| r.problems.len() as f64);
    metrics
        .gauge(
            "verify_success",
            "1 if the last verify found no problem.",
            &[],
            if problems == 0.0 { 1.0 } else { 0.0 },
        )
        .gauge(
            "verify_problems",
            "Problems the last verify found.",
            &[],
            problems,
        );
    ctx.write_metrics(&metrics);
    let report = result?;
    if json {
        ops_common::output::print_json(&report)?;
    } else {
        let mut text = String::new();
        for problem in &report.problems {
            let _ = writeln!(text, "problem: {problem}");
        }
        let _ = writeln!(
            text,
            "{}: {} backup(s), {} chunks and {} WAL files read and checked, {} problem(s)",
            if report.problems.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            report.backups.len(),
            report.chunks_checked,
            report.wal_files_checked,
            report.problems.len()
        );
        ops_common::output::print(&text)?;
    }
    Ok(if report.problems.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

async fn verify(
    ctx: &Context,
    store: Arc<dyn ObjectStore>,
    only: Option<&str>,
    concurrency: usize,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let codec = settings::codec(&ctx.settings)?;
    if !codec.can_decrypt() {
        return Err(ctx.settings.invalid(
            &settings::WAL_ARCHIVE_AGE_IDENTITY_FILE,
            "not set: the archive is encrypted with age, and verify reads every object; give it the private key",
        ).into());
    }
    let all = manifest::list_backups(&*store).await?;
    let backups: Vec<BackupInfo> = match only {
        Some(name) => vec![
            all.iter()
                .find(|b| b.name == name)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("no complete backup named {name}")))?,
        ],
        None => all,
    };
    for info in &backups {
        report.backups.push(info.name.clone());
    }
    let chunks = read_backup_records(&*store, &codec, &backups, &mut report.problems).await;
    let progress =
        ops_common::progress::items(chunks.len() as u64, "verify chunks", ctx.log_format);
    let chunk_problems = check_objects(
        store.clone(),
        &codec,
        chunks
            .into_iter()
            .map(|(digest, used_by)| (archive::chunk_key(&digest), Some(digest), used_by))
            .collect(),
        concurrency,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    report.chunks_checked = chunk_problems.checked;
    report.problems.extend(chunk_problems.problems);

    let segment_size = archive_segment_size(&*store, &backups).await;
    let wal = list_wal(&*store, segment_size).await?;
    // With --backup, only the WAL from that backup's start on matters.
    let from = match only {
        Some(_) => backups
            .iter()
            .filter_map(|b| SegmentName::parse(&b.start_wal_file, segment_size))
            .map(|s| s.segno)
            .min(),
        None => None,
    };
    let wal_objects: Vec<(String, Option<Sha256Digest>, String)> = wal
        .names
        .iter()
        .filter(|name| {
            let segno = name
                .get(..24)
                .and_then(|s| SegmentName::parse(s, segment_size))
                .map(|s| s.segno);
            match (from, segno) {
                (Some(from), Some(segno)) => segno >= from,
                _ => true,
            }
        })
        .map(|name| (archive::wal_key(name), None, name.clone()))
        .collect();
    let progress =
        ops_common::progress::items(wal_objects.len() as u64, "verify WAL", ctx.log_format);
    let wal_problems =
        check_objects(store.clone(), &codec, wal_objects, concurrency, &progress).await;
    progress.finish_and_clear();
    report.wal_files_checked = wal_problems.checked;
    report.problems.extend(wal_problems.problems);

    let histories = read_histories(&*store, &codec, &wal, &mut report.problems).await;
    for info in &backups {
        report
            .problems
            .extend(chain_gaps(info, &wal, &histories, segment_size));
    }
    Ok(report)
}

/// Reads each backup's manifest, label and map, checking them against the marker; returns every
/// chunk the backups reference, with a file that uses it (for the report).
async fn read_backup_records(
    store: &dyn ObjectStore,
    codec: &Codec,
    backups: &[BackupInfo],
    problems: &mut Vec<String>,
) -> BTreeMap<Sha256Digest, String> {
    let mut chunks: BTreeMap<Sha256Digest, String> = BTreeMap::new();
    for info in backups {
        match manifest::read_manifest(store, codec, info).await {
            Ok(manifest) => {
                for file in &manifest.files {
                    for chunk in &file.chunks {
                        chunks
                            .entry(*chunk)
                            .or_insert_with(|| format!("{} ({})", file.path, info.name));
                    }
                }
            }
            Err(e) => problems.push(format!(
                "backup {}: manifest: {}",
                info.name,
                ops_common::one_line(&e)
            )),
        }
        for (object, sha) in [
            ("backup_label", Some(info.backup_label_id)),
            ("tablespace_map", info.tablespace_map_id),
        ] {
            if let Some(sha) = sha
                && let Err(e) =
                    manifest::read_backup_file(store, codec, &info.name, object, &sha).await
            {
                problems.push(format!(
                    "backup {}: {object}: {}",
                    info.name,
                    ops_common::one_line(&e)
                ));
            }
        }
    }
    chunks
}

/// The outcome of checking a set of objects.
struct Checked {
    checked: u64,
    problems: Vec<String>,
}

/// Reads every object, opens its envelope, and checks it against the expected digest if given.
async fn check_objects(
    store: Arc<dyn ObjectStore>,
    codec: &Codec,
    objects: Vec<(String, Option<Sha256Digest>, String)>,
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> Checked {
    let queue = Arc::new(Mutex::new(objects));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let checked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, problems, checked, store, progress) = (
            queue.clone(),
            problems.clone(),
            checked.clone(),
            store.clone(),
            progress.clone(),
        );
        let codec = codec.clone();
        workers.spawn(async move {
            loop {
                let Some((key, expected, what)) = queue.lock().expect("queue lock").pop() else {
                    return;
                };
                let outcome = match store.get_bytes(&key).await {
                    Err(e) if e.is_not_found() => Err("missing".to_owned()),
                    Err(e) => Err(ops_common::one_line(&e)),
                    Ok(sealed) => {
                        let codec = codec.clone();
                        tokio::task::spawn_blocking(move || {
                            let opened = match &expected {
                                Some(digest) => codec.open_expecting(&sealed, digest),
                                None => codec.open(&sealed),
                            };
                            opened.map(drop).map_err(|e| e.to_string())
                        })
                        .await
                        .expect("checking does not panic")
                    }
                };
                checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                progress.inc(1);
                if let Err(problem) = outcome {
                    problems
                        .lock()
                        .expect("problems lock")
                        .push(format!("{key}: {problem} (used by {what})"));
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let mut problems = std::mem::take(&mut *problems.lock().expect("problems lock"));
    problems.sort();
    Checked {
        checked: checked.load(std::sync::atomic::Ordering::Relaxed),
        problems,
    }
}

/// The archived WAL files, by kind.
pub struct WalListing {
    /// Every file name under `wal/`.
    pub names: Vec<String>,
    /// Complete segments, as (timeline, segment number).
    pub segments: HashSet<(u32, u64)>,
    /// Timelines with a history file.
    pub history_timelines: BTreeSet<u32>,
}

/// Lists `wal/`.
///
/// # Errors
/// When the store cannot be listed.
pub async fn list_wal(store: &dyn ObjectStore, segment_size: u64) -> Result<WalListing> {
    let names: Vec<String> = store
        .list("wal/")
        .await?
        .into_iter()
        .filter_map(|m| m.key.strip_prefix("wal/").map(str::to_owned))
        .collect();
    let mut segments = HashSet::new();
    let mut history_timelines = BTreeSet::new();
    for name in &names {
        match walfile::classify(name) {
            Some(WalFileKind::Segment) => {
                if let Some(segment) = SegmentName::parse(name, segment_size) {
                    segments.insert((segment.timeline, segment.segno));
                }
            }
            Some(WalFileKind::History) => {
                history_timelines.insert(u32::from_str_radix(&name[..8], 16).unwrap_or(0));
            }
            _ => {}
        }
    }
    Ok(WalListing {
        names,
        segments,
        history_timelines,
    })
}

/// A timeline's place in the history: it starts at `begin` (the parent's switch point) and, if it
/// is not the newest, ends at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSpan {
    /// The timeline.
    pub timeline: u32,
    /// LSN where it begins (0 for the first).
    pub begin: u64,
    /// LSN where the next timeline branched off, if any.
    pub end: Option<u64>,
}

/// Parses a timeline history file into the spans leading to `timeline`, oldest first.
pub fn parse_history(timeline: u32, text: &str) -> Vec<TimelineSpan> {
    let mut spans = Vec::new();
    let mut begin = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(parent), Some(lsn)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(parent), Some(lsn)) = (parent.parse::<u32>(), walfile::parse_lsn(lsn)) else {
            continue;
        };
        spans.push(TimelineSpan {
            timeline: parent,
            begin,
            end: Some(lsn),
        });
        begin = lsn;
    }
    spans.push(TimelineSpan {
        timeline,
        begin,
        end: None,
    });
    spans
}

/// The spans leading to the newest timeline, from its history file.
async fn read_histories(
    store: &dyn ObjectStore,
    codec: &Codec,
    wal: &WalListing,
    problems: &mut Vec<String>,
) -> Vec<TimelineSpan> {
    let newest_segment_timeline = wal.segments.iter().map(|(t, _)| *t).max().unwrap_or(1);
    let newest = wal
        .history_timelines
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(newest_segment_timeline);
    if newest == 1 {
        return parse_history(1, "");
    }
    let name = format!("{newest:08X}.history");
    match store
        .get_bytes(&archive::wal_key(&name))
        .await
        .map_err(Error::from)
        .and_then(|sealed| {
            codec
                .open(&sealed)
                .map_err(|e| Error::Integrity(e.to_string()))
        }) {
        Ok(text) => parse_history(newest, &String::from_utf8_lossy(&text)),
        Err(e) => {
            problems.push(format!(
                "wal/{name}: {} (timeline {newest} has segments but no readable history)",
                ops_common::one_line(&e)
            ));
            parse_history(newest, "")
        }
    }
}

async fn archive_segment_size(store: &dyn ObjectStore, backups: &[BackupInfo]) -> u64 {
    if let Some(b) = backups.first() {
        return b.wal_segment_size;
    }
    match store.get_bytes(archive::ARCHIVE_KEY).await {
        Ok(bytes) => {
            serde_json::from_slice::<ArchiveInfo>(&bytes).map_or(16 << 20, |i| i.wal_segment_size)
        }
        Err(_) => 16 << 20,
    }
}

/// The segments a restore of `info` to the end of the archive needs and the archive lacks.
pub fn chain_gaps(
    info: &BackupInfo,
    wal: &WalListing,
    spans: &[TimelineSpan],
    segment_size: u64,
) -> Vec<String> {
    let archived = &wal.segments;
    let Some(start) = SegmentName::parse(&info.start_wal_file, segment_size) else {
        return vec![format!(
            "backup {}: unreadable start segment {}",
            info.name, info.start_wal_file
        )];
    };
    let Some(first) = spans.iter().position(|s| s.timeline == info.timeline) else {
        let newest = spans.last().map_or(1, |s| s.timeline);
        return vec![format!(
            "backup {} is on timeline {}, which is not an ancestor of the newest timeline {newest}: a restore would not reach it",
            info.name, info.timeline
        )];
    };
    let stop = walfile::parse_lsn(&info.stop_lsn).unwrap_or(0);
    if let Some(end) = spans[first].end
        && stop > end
    {
        return vec![format!(
            "backup {} ended on timeline {} after timeline {} branched off at {}: a restore following the newest timeline would miss it",
            info.name,
            info.timeline,
            spans[first + 1].timeline,
            walfile::format_lsn(end)
        )];
    }
    let newest_timeline = spans.last().map_or(1, |s| s.timeline);
    let newest_segno = archived
        .iter()
        .filter(|(t, _)| *t == newest_timeline)
        .map(|(_, s)| *s)
        .max();
    let mut missing = Vec::new();
    for span in &spans[first..] {
        let from = (span.begin / segment_size).max(start.segno);
        let to = match span.end {
            // The segment holding the switch point is read from the new timeline.
            Some(end) => (end / segment_size).checked_sub(1),
            None => newest_segno,
        };
        let Some(to) = to else { continue };
        for segno in from..=to {
            if !archived.contains(&(span.timeline, segno)) {
                missing.push(SegmentName {
                    timeline: span.timeline,
                    segno,
                });
            }
        }
    }
    gap_ranges(&missing, segment_size)
        .into_iter()
        .map(|range| format!("WAL gap needed by backup {}: {range} missing", info.name))
        .collect()
}

/// Consecutive missing segments as `A` or `A to B (n segments)`.
fn gap_ranges(missing: &[SegmentName], segment_size: u64) -> Vec<String> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < missing.len() {
        let mut j = i;
        while j + 1 < missing.len()
            && missing[j + 1].timeline == missing[j].timeline
            && missing[j + 1].segno == missing[j].segno + 1
        {
            j += 1;
        }
        if i == j {
            ranges.push(missing[i].file_name(segment_size));
        } else {
            ranges.push(format!(
                "{} to {} ({} segments)",
                missing[i].file_name(segment_size),
                missing[j].file_name(segment_size),
                j - i + 1
            ));
        }
        i = j + 1;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn backup(timeline: u32, start: &str, stop_lsn: &str) -> BackupInfo {
        let json = serde_json::json!({
            "name": "b", "system_identifier": "1", "pg_version": 15, "wal_segment_size": SEG, "timeline": timeline,
            "start_lsn": "0/0", "stop_lsn": stop_lsn, "start_wal_file": start,
            "start_time": "2026-01-01T00:00:00Z", "stop_time": "2026-01-01T00:01:00Z",
            "files": 0, "size_bytes": 0, "stored_bytes": 0, "chunks": 0, "new_chunks": 0,
            "manifest_id": "00".repeat(32), "backup_label_id": "00".repeat(32), "tablespace_map_id": null
        });
        serde_json::from_value(json).unwrap()
    }

    fn listing(names: &[&str]) -> WalListing {
        let mut segments = HashSet::new();
        let mut history_timelines = BTreeSet::new();
        for name in names {
            if name.ends_with(".history") {
                history_timelines.insert(u32::from_str_radix(&name[..8], 16).unwrap());
            } else {
                let segment = SegmentName::parse(name, SEG).unwrap();
                segments.insert((segment.timeline, segment.segno));
            }
        }
        WalListing {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            segments,
            history_timelines,
        }
    }

    #[test]
    fn history_files_parse_into_spans() {
        let spans = parse_history(
            3,
            "1\t0/5000000\tno recovery target specified\n\n2\t0/7000100\tbefore 2026-01-01\n",
        );
        assert_eq!(
            spans,
            vec![
                TimelineSpan {
                    timeline: 1,
                    begin: 0,
                    end: Some(0x500_0000)
                },
                TimelineSpan {
                    timeline: 2,
                    begin: 0x500_0000,
                    end: Some(0x700_0100)
                },
                TimelineSpan {
                    timeline: 3,
                    begin: 0x700_0100,
                    end: None
                },
            ]
        );
    }

    #[test]
    fn an_unbroken_chain_has_no_gaps_and_gaps_are_named() {
        let b = backup(1, "000000010000000000000002", "0/2000100");
        let spans = parse_history(1, "");
        let full = listing(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
        ]);
        assert!(chain_gaps(&b, &full, &spans, SEG).is_empty());
        let holes = listing(&[
            "000000010000000000000002",
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000008",
        ]);
        assert_eq!(
            chain_gaps(&b, &holes, &spans, SEG),
            vec![
                "WAL gap needed by backup b: 000000010000000000000003 to 000000010000000000000004 (2 segments) missing",
                "WAL gap needed by backup b: 000000010000000000000007 missing",
            ]
        );
    }

    #[test]
    fn the_chain_follows_timelines() {
        // Timeline 2 branched at 0/4000100: segments up to 3 on timeline 1, from 4 on timeline 2.
        let spans = parse_history(2, "1\t0/4000100\tbranch\n");
        let b = backup(1, "000000010000000000000002", "0/2000100");
        let good = listing(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000020000000000000004",
            "000000020000000000000005",
            "00000002.history",
        ]);
        assert!(chain_gaps(&b, &good, &spans, SEG).is_empty());
        let missing_on_new = listing(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000020000000000000005",
        ]);
        assert_eq!(
            chain_gaps(&b, &missing_on_new, &spans, SEG),
            vec!["WAL gap needed by backup b: 000000020000000000000004 missing"]
        );
        // A backup taken on timeline 1 after timeline 2 branched off cannot be restored along it.
        let late = backup(1, "000000010000000000000006", "0/6000100");
        assert!(chain_gaps(&late, &good, &spans, SEG)[0].contains("after timeline 2 branched off"));
        // A timeline that is not an ancestor of the newest.
        let other = backup(3, "000000030000000000000006", "0/6000100");
        assert!(chain_gaps(&other, &good, &spans, SEG)[0].contains("not an ancestor"));
    }
}
