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
pub use ops_common::output::human_bytes;
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
    fn counts_read_well() {
        assert_eq!(super::count(1u32, "file"), "1 file");
        assert_eq!(super::count(0u32, "file"), "0 files");
    }
}
