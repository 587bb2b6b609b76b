//! The command line (clap only; settings are resolved by `ops_common::settings`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ops_common::cli::{CommonCommand, GlobalArgs};

/// Deduplicated, encrypted backups of raw emails in the restic repository format.
#[derive(Debug, Parser)]
#[command(
    name = "email-backup",
    version,
    about,
    long_about = None,
    after_help = "Settings (restic's names): see `email-backup config show`. Exit statuses: 0 done, 1 problems found (check, restore), 4 no repository or snapshot, 5 lock held or file exists, 11 wrong password; the full table is in docs/operations.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) globals: GlobalArgs,
    /// The repository [setting: `RESTIC_REPOSITORY`].
    #[arg(short = 'r', long, global = true, value_name = "REPOSITORY")]
    pub(crate) repo: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new repository.
    Init,
    /// Save a snapshot of PATHS (default: `RAW_EMAILS_LOCATION`).
    Backup(BackupArgs),
    /// List the snapshots, oldest first.
    Snapshots {
        /// Only snapshots of this host.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only snapshots with this tag (repeatable: any of them).
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// As a JSON array (restic's fields).
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot, or part of it, into a directory.
    Restore(RestoreArgs),
    /// Remove snapshots by a retention policy.
    Forget(ForgetArgs),
    /// Remove data no snapshot needs any more.
    Prune {
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the repository's structure, and optionally its data.
    Check {
        /// Read and check every pack file.
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read and check a random part of the packs: `N%`, or `n/m` for the n-th of m parts.
        #[arg(long, value_name = "SUBSET")]
        read_data_subset: Option<String>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write Prometheus metrics: newest snapshot's age, files and bytes, snapshot count, size.
    Metrics,
    #[command(flatten)]
    Common(CommonCommand),
}

/// `backup`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// Files and directories to save (stored with absolute paths, as restic does).
    pub(crate) paths: Vec<PathBuf>,
    /// Add a tag to the snapshot (repeatable).
    #[arg(long, value_name = "TAG")]
    pub(crate) tag: Vec<String>,
    /// Host name to record [setting: `EMAIL_BACKUP_HOST`].
    #[arg(long, value_name = "HOST")]
    pub(crate) host: Option<String>,
    /// Leave out files and directories matching this glob (restic's `--exclude`; repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) exclude: Vec<String>,
    /// Print restic's JSON summary on stdout, for cron.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `restore`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The snapshot: an id (or its first 8+ characters), or `latest`.
    pub(crate) snapshot: String,
    /// The directory to restore into (created if needed).
    #[arg(short, long, value_name = "DIR")]
    pub(crate) target: PathBuf,
    /// Restore only this path as stored, e.g. one raw email or one directory (repeatable).
    #[arg(short, long, value_name = "PATH")]
    pub(crate) include: Vec<PathBuf>,
    /// Replace files that exist in the target with other content (default: leave them and fail).
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `forget`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct ForgetArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub(crate) keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_daily: Option<i32>,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_weekly: Option<i32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_monthly: Option<i32>,
    /// Then prune.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Only print what would be removed.
    #[arg(short = 'n', long)]
    pub(crate) dry_run: bool,
    /// Print the decision as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}
