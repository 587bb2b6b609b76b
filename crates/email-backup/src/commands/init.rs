//! `email-backup init`: create a repository (restic format 2: zstd, restic's chunker).

use ops_common::cli::Context;
use ops_common::exit;

use crate::error::Result;
use crate::progress::Bars;
use crate::repo::Connection;
use crate::settings;

/// Runs `init`.
///
/// # Errors
/// A repository already exists, the settings or the store.
pub fn run(ctx: &Context) -> Result<u8> {
    let password = settings::password(&ctx.settings)?;
    let conn = Connection::new(&ctx.settings, Bars::new(ctx.log_format))?;
    let location = conn.location.to_string();
    let open = conn.init(&password)?;
    let id = open.repo.config().id.to_hex();
    tracing::info!(repository = %location, "repository created");
    ops_common::output::print(&format!(
        "created restic repository {} at {location}\n\nKeep the password safe: without it the backups cannot be read.\n",
        &id.as_str()[..10]
    ))?;
    Ok(exit::SUCCESS)
}
