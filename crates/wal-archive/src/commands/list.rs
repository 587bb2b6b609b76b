//! `wal-archive list [--json]`: the complete backups, oldest first.

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::output::human_bytes;

use crate::error::Result;
use crate::manifest::list_backups;
use crate::settings;

/// Runs `list`.
///
/// # Errors
/// When the archive cannot be read.
pub fn run(ctx: &Context, json: bool) -> Result<u8> {
    let store = settings::open_store(&ctx.settings)?;
    let backups = ops_common::cli::runtime_current_thread().block_on(list_backups(&*store))?;
    if json {
        ops_common::output::print_json(&backups)?;
        return Ok(exit::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<20} {:<20} {:>3} {:>14} {:>14} {:>12} {:>14}",
        "NAME", "STARTED (UTC)", "FINISHED (UTC)", "TL", "START LSN", "STOP LSN", "SIZE", "STORED"
    );
    for b in &backups {
        let _ = writeln!(
            out,
            "{:<26} {:<20} {:<20} {:>3} {:>14} {:>14} {:>12} {:>14}",
            b.name,
            b.start_time.format("%Y-%m-%d %H:%M:%S"),
            b.stop_time.format("%Y-%m-%d %H:%M:%S"),
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            human_bytes(b.size_bytes),
            human_bytes(b.stored_bytes)
        );
    }
    ops_common::output::print(&out)?;
    Ok(exit::SUCCESS)
}
