//! `email-backup`: deduplicated, encrypted backups of an Alaveteli site's raw emails, in the restic
//! repository format, readable and writable by restic 0.14 and later.
//!
//! - The repository format is `rustic_core`'s ([`rustic_core`], pinned): init, backup, snapshots,
//!   forget, prune and check are its commands.
//! - Storage is the toolkit's: [`backend`] plugs `ops_common::storage` (one aws-sdk-s3 client with
//!   the toolkit's timeouts, retries and checksums, or a local directory) into `rustic_core`, in
//!   restic's object layout.
//! - [`lock`] writes restic's lock files, which `rustic_core` does not, so email-backup and restic can
//!   work on one repository without a prune deleting what a backup is writing.
//! - [`keys`] writes the first key with restic's scrypt parameters (32 MiB per open instead of
//!   `rustic_core`'s 128 MiB).
//! - [`restore`] is email-backup's own, bounded in memory and reporting damaged files instead of
//!   stopping (`rustic_core`'s restore peaked at ~1.8 GB and panics on a read error).
//!
//! What it does not do: other restic backends (sftp, rest, b2…), `mount`, key management beyond the
//! first key.

pub mod backend;
mod cli;
pub mod commands;
pub mod crypto;
mod error;
pub mod keys;
pub mod lock;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod settings;

pub use cli::Cli;
use cli::Command;
pub use error::{Error, Result};
use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;
pub use settings::SETTINGS;

impl Tool for Cli {
    const NAME: &'static str = "email-backup";
    type Error = Error;

    fn settings() -> &'static [Setting] {
        SETTINGS
    }

    fn globals(&self) -> &GlobalArgs {
        &self.globals
    }

    fn common(&self) -> Option<&CommonCommand> {
        match &self.command {
            Command::Common(common) => Some(common),
            _ => None,
        }
    }

    fn flag_settings(&self) -> Vec<(&'static str, String)> {
        let mut flags = Vec::new();
        if let Some(repo) = &self.repo {
            flags.push((settings::RESTIC_REPOSITORY.name, repo.clone()));
        }
        if let Command::Backup(args) = &self.command
            && let Some(host) = &args.host
        {
            flags.push((settings::EMAIL_BACKUP_HOST.name, host.clone()));
        }
        flags
    }

    fn run(self, ctx: &Context) -> Result<u8> {
        match self.command {
            Command::Init => commands::init::run(ctx),
            Command::Backup(args) => commands::backup::run(
                ctx,
                &commands::backup::BackupOptions {
                    paths: args.paths,
                    tags: args.tag,
                    excludes: args.exclude,
                    json: args.json,
                },
            ),
            Command::Snapshots { host, tag, json } => {
                commands::snapshots::run(ctx, host.as_deref(), &tag, json)
            }
            Command::Restore(args) => commands::restore::run(
                ctx,
                &commands::restore::Options {
                    snapshot: args.snapshot,
                    target: args.target,
                    includes: args.include,
                    overwrite: args.overwrite,
                    json: args.json,
                },
            ),
            Command::Forget(args) => commands::forget::run(
                ctx,
                &commands::forget::Options {
                    keep_last: args.keep_last,
                    keep_daily: args.keep_daily,
                    keep_weekly: args.keep_weekly,
                    keep_monthly: args.keep_monthly,
                    prune: args.prune,
                    dry_run: args.dry_run,
                    json: args.json,
                },
            ),
            Command::Prune { json } => commands::prune::run(ctx, json),
            Command::Check {
                read_data,
                read_data_subset,
                json,
            } => commands::check::run(ctx, read_data, read_data_subset.as_deref(), json),
            Command::Metrics => commands::metrics::run(ctx),
            Command::Common(_) => unreachable!("answered by ops_common::cli"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        ops_common::cli::debug_assert_cli::<super::Cli>();
    }
}
