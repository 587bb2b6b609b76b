//! `stats-anonymize rollback`: the previous copy becomes live again, in one transaction; the copy
//! it replaces becomes the previous one (no longer readable by the reader role), so a second
//! rollback undoes the first.

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;

use crate::engine;
use crate::error::Result;
use crate::settings::{
    self, STATS_ANONYMIZE_READER_ROLE, STATS_ANONYMIZE_TARGET_SCHEMA, TARGET_DATABASE_URL,
};
use crate::target::Names;

/// Runs `rollback`.
///
/// # Errors
/// When there is no previous copy, another run holds the lock, or PostgreSQL fails.
pub fn run(ctx: &Context) -> Result<u8> {
    let s = &ctx.settings;
    let target = settings::database_config(s, &TARGET_DATABASE_URL)?;
    let names = Names::new(&settings::schema_name(s, &STATS_ANONYMIZE_TARGET_SCHEMA)?);
    let reader = s.get(&STATS_ANONYMIZE_READER_ROLE).map(str::to_owned);
    let timeout = settings::swap_timeout(s)?;
    let (now_live, now_previous) = ops_common::cli::runtime().block_on(engine::rollback(
        &target,
        &names,
        reader.as_deref(),
        timeout,
    ))?;
    let mut text = format!(
        "rolled back: schema {} now holds the copy started at {} ({} tables, {} rows)",
        names.live, now_live.started_at, now_live.tables, now_live.rows
    );
    if let Some(previous) = now_previous {
        let _ = write!(
            text,
            "; the copy started at {} is kept as {} (rollback again to bring it back)",
            previous.started_at, names.previous
        );
    }
    text.push('\n');
    tracing::info!(schema = %names.live, started_at = %now_live.started_at, "rolled back");
    ops_common::output::print(&text)?;
    Ok(exit::SUCCESS)
}
