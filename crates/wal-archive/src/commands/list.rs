//! `wal-archive list [--json]`: the complete backups, oldest first.

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;

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

/// `1.5 GiB`-style sizes for tables meant for people.
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

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
