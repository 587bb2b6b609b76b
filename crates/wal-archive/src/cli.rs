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
