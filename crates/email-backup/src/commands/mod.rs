//! One module per command, and what they share.

pub mod backup;
pub mod check;
pub mod forget;
pub mod init;
pub mod metrics;
pub mod prune;
pub mod restore;
pub mod snapshots;

use ops_common::cli::Context;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{OpenStatus, Repository};

use crate::error::{Error, Result};
use crate::progress::Bars;
use crate::repo::{Connection, Open};
use crate::settings;

/// Connects and opens the repository named by the settings.
///
/// # Errors
/// Settings, a missing repository, a wrong password, the store.
pub fn open(ctx: &Context) -> Result<Open> {
    let password = settings::password(&ctx.settings)?;
    Connection::new(&ctx.settings, Bars::new(ctx.log_format))?.open(&password)
}

/// Every snapshot, sorted by time (`rustic_core` returns them in listing order).
///
/// # Errors
/// When the snapshots cannot be read.
pub fn sorted_snapshots(repo: &Repository<OpenStatus>) -> Result<Vec<SnapshotFile>> {
    let mut snapshots = repo
        .get_all_snapshots()
        .map_err(|e| Error::rustic("reading the snapshots", &e))?;
    snapshots.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    Ok(snapshots)
}

/// `1.5 GiB`-style sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 file`, `2 files`.
pub fn count(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A snapshot id as restic shows it: the first 8 hex digits.
pub fn short_id(snapshot: &SnapshotFile) -> String {
    snapshot.id.to_hex().as_str()[..8].to_owned()
}

/// A snapshot id in full.
pub fn full_id(snapshot: &SnapshotFile) -> String {
    snapshot.id.to_hex().as_str().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(super::count(1u32, "file"), "1 file");
        assert_eq!(super::count(0u32, "file"), "0 files");
    }
}
