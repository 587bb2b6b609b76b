//! The command line (clap only; settings are resolved by `ops_common::settings`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ops_common::cli::{CommonCommand, GlobalArgs};

/// Nightly anonymised copy of the Alaveteli database for public statistics.
#[derive(Debug, Parser)]
#[command(
    name = "stats-anonymize",
    version,
    about,
    long_about = None,
    after_help = "Database URLs and the HMAC key come from the environment, an envdir or the config file (`stats-anonymize config show`). Exit statuses: 0 done, 1 the leak scan found something, 12 the rules do not match the source, 9 PostgreSQL error, 5 another run or a foreign schema in the way; the table is in docs/stats-anonymize.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) globals: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Copy the source into a fresh schema of the target, check it, and swap it in.
    Run(RunArgs),
    /// Check the rules against the source's schema or a schema dump; write nothing.
    Check(CheckArgs),
    /// Swap the previous copy back in (run again to undo).
    Rollback {
        #[command(flatten)]
        target: TargetArg,
    },
    /// Print the Alaveteli rules built into the binary, to start a rules file from.
    DefaultRules,
    #[command(flatten)]
    Common(CommonCommand),
}

/// `--rules`.
#[derive(Debug, Args)]
pub(crate) struct RulesArg {
    /// The rules file (TOML); default: the built-in Alaveteli rules [setting: `STATS_ANONYMIZE_RULES`].
    #[arg(long, value_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,
}

/// `--source`.
#[derive(Debug, Args)]
pub(crate) struct SourceArg {
    /// The source database, as a URL without a password [setting: `SOURCE_DATABASE_URL`].
    #[arg(long, value_name = "URL")]
    pub(crate) source: Option<String>,
}

/// `--target`.
#[derive(Debug, Args)]
pub(crate) struct TargetArg {
    /// The target database, as a URL without a password [setting: `TARGET_DATABASE_URL`].
    #[arg(long, value_name = "URL")]
    pub(crate) target: Option<String>,
}

/// `run`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) rules: RulesArg,
    #[command(flatten)]
    pub(crate) source: SourceArg,
    #[command(flatten)]
    pub(crate) target: TargetArg,
    /// Check the rules, connect to both databases and count the rows each table would get;
    /// write nothing.
    #[arg(long, conflicts_with = "explain")]
    pub(crate) dry_run: bool,
    /// Print the SQL the run would execute on each side, and stop.
    #[arg(long)]
    pub(crate) explain: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `check`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) rules: RulesArg,
    #[command(flatten)]
    pub(crate) source: SourceArg,
    /// Check against a `pg_dump --schema-only` file instead of a database.
    #[arg(long, value_name = "FILE", conflicts_with = "source")]
    pub(crate) schema: Option<PathBuf>,
}
