//! `wal-archive`: PostgreSQL continuous archiving and point-in-time recovery, to S3 or a local
//! directory.
//!
//! - `push` and `fetch` are PostgreSQL's `archive_command` and `restore_command`, and keep their
//!   contract strictly: push returns 0 only for a file that is durable and checked in the archive,
//!   never overwrites different content and refuses another cluster's WAL; fetch returns 1 only for
//!   a file the archive does not have, and 200 (stop recovery) when it cannot tell.
//! - `backup` takes a base backup through the non-exclusive API; files are stored as content-addressed
//!   chunks, so unchanged data is not stored twice.
//! - `restore` picks the backup for a target time, restores and checks it, and sets up recovery.
//!
//! The layout of the archive is described in [`archive`].

pub mod archive;
mod cli;
pub mod codec;
pub mod commands;
mod error;
mod locks;
pub mod manifest;
pub mod settings;
pub mod walfile;

pub use cli::Cli;
use cli::Command;
pub use error::{Error, Result};
use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;
pub use settings::SETTINGS;

impl Tool for Cli {
    const NAME: &'static str = "wal-archive";
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
        let pgdata = match &self.command {
            Command::Push { pgdata, .. } | Command::Backup { pgdata, .. } => pgdata.pgdata.as_ref(),
            Command::Restore(args) => args.pgdata.as_ref(),
            _ => None,
        };
        pgdata
            .map(|p| (settings::PGDATA.name, p.to_string_lossy().into_owned()))
            .into_iter()
            .collect()
    }

    fn run(self, ctx: &Context) -> Result<u8> {
        match self.command {
            Command::Push { path, .. } => commands::push::run(ctx, &path),
            Command::Fetch { file, destination } => {
                commands::fetch::run(ctx, &file, &destination, &settings_args(&self.globals)?)
            }
            Command::Prefetch { after, count } => commands::fetch::prefetch(ctx, &after, count),
            Command::Backup { json, .. } => commands::backup::run(ctx, json),
            Command::List { json } => commands::list::run(ctx, json),
            Command::Restore(args) => {
                let target = match &args.target_time {
                    Some(text) => {
                        Some(commands::restore::parse_target_time(text).map_err(Error::Usage)?)
                    }
                    None => None,
                };
                let options = commands::restore::RestoreOptions {
                    target,
                    force: args.force,
                    start: args.start,
                    port: args.port,
                    no_archive: args.no_archive,
                    server_settings: Vec::new(),
                    settings_args: settings_args(&self.globals)?,
                };
                commands::restore::run(ctx, &options)
            }
            Command::Delete {
                retain,
                confirm,
                json,
            } => commands::delete::run(ctx, retain, confirm, json),
            Command::Verify { backup, json } => commands::verify::run(ctx, backup.as_deref(), json),
            Command::Drill {
                target_time,
                check_sql,
                json,
            } => {
                let target = target_time
                    .as_deref()
                    .map(commands::restore::parse_target_time)
                    .transpose()
                    .map_err(Error::Usage)?;
                commands::drill::run(ctx, target, &check_sql, json, settings_args(&self.globals)?)
            }
            Command::Common(_) => unreachable!("answered by ops_common::cli"),
        }
    }
}

/// The `--envdir`/`--config` arguments, with absolute paths, for commands wal-archive writes
/// into the server's configuration (`restore_command` runs in the data directory).
fn settings_args(globals: &GlobalArgs) -> Result<Vec<String>> {
    let absolute = |p: &std::path::Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
    let mut args = Vec::new();
    for dir in &globals.envdir {
        args.push("--envdir".to_owned());
        args.push(absolute(dir)?.to_string_lossy().into_owned());
    }
    if let Some(config) = &globals.config {
        args.push("--config".to_owned());
        args.push(absolute(config)?.to_string_lossy().into_owned());
    }
    Ok(args)
}
