//! The command line (clap only; settings are resolved by `ops_common::settings`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ops_common::cli::{CommonCommand, GlobalArgs};

/// PostgreSQL continuous archiving and point-in-time recovery, to S3 or a local directory.
#[derive(Debug, Parser)]
#[command(name = "wal-archive", version, about, long_about = None, after_help = "Settings: see `wal-archive config show`. Exit statuses: 0 done, 1 not found (fetch) or problems, 200 fetch cannot tell (recovery must stop); the full table is in docs/operations.md.")]
pub struct Cli {
    #[command(flatten)]
    pub(crate) globals: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Archive one WAL file: `archive_command = 'wal-archive push %p'`.
    Push {
        /// The file, as PostgreSQL gives it (`%p`, relative to the data directory).
        path: PathBuf,
        #[command(flatten)]
        pgdata: PgdataArg,
    },
    /// Restore one WAL file: `restore_command = 'wal-archive fetch %f %p'`.
    Fetch {
        /// The file wanted (`%f`).
        file: String,
        /// Where to write it (`%p`).
        destination: PathBuf,
    },
    /// Download the segments after FILE into the prefetch directory (started by fetch itself).
    #[command(hide = true)]
    Prefetch {
        /// The segment just fetched.
        after: String,
        /// How many segments ahead.
        #[arg(long, default_value_t = 8)]
        count: usize,
    },
    /// Take a base backup of the running cluster.
    Backup {
        #[command(flatten)]
        pgdata: PgdataArg,
        /// Print the backup's record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the complete backups, oldest first.
    List {
        /// As a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new data directory, set to recover to a time.
    Restore(RestoreArgs),
    /// Retention: keep the N newest backups and the WAL to restore them; without --confirm, only list.
    Delete {
        /// How many backups to keep (at least 1).
        #[arg(long, value_name = "N")]
        retain: usize,
        /// Delete; without it, print what would be deleted.
        #[arg(long)]
        confirm: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read every stored object and check it; walk the WAL chain of each backup and report gaps.
    Verify {
        /// Only this backup (and the WAL from its start on).
        #[arg(long, value_name = "NAME")]
        backup: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore into a scratch copy, start it, run a check query, report the time it took; remove it.
    Drill {
        /// Recover to this time instead of the end of the archive.
        #[arg(long, value_name = "TIME")]
        target_time: Option<String>,
        /// The query that must succeed on the restored copy; its first value is reported.
        #[arg(
            long,
            value_name = "SQL",
            default_value = "select count(*) from pg_database"
        )]
        check_sql: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Common(CommonCommand),
}

/// `--pgdata`.
#[derive(Debug, Args)]
pub(crate) struct PgdataArg {
    /// The data directory [setting: PGDATA].
    #[arg(long, value_name = "DIR")]
    pub(crate) pgdata: Option<PathBuf>,
}

/// `restore`'s arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["target_time", "latest"])))]
pub(crate) struct RestoreArgs {
    /// The new data directory (empty or absent) [setting: PGDATA].
    #[arg(long, value_name = "DIR")]
    pub(crate) pgdata: Option<PathBuf>,
    /// Recover to this time: `YYYY-MM-DD HH:MM[:SS]`, with an optional offset like `+02:00` (default UTC).
    #[arg(long, value_name = "TIME")]
    pub(crate) target_time: Option<String>,
    /// Recover to the end of the archived WAL.
    #[arg(long)]
    pub(crate) latest: bool,
    /// Start the server, wait until recovery ends, and print the point reached.
    #[arg(long)]
    pub(crate) start: bool,
    /// Replace the contents of a non-empty directory.
    #[arg(long)]
    pub(crate) force: bool,
    /// Port for the restored server (to run it beside another one).
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Turn archiving off in the restored server, so a copy made for checks does not push a new
    /// timeline into the archive.
    #[arg(long)]
    pub(crate) no_archive: bool,
}
