//! `stats-anonymize`: a nightly, deny-by-default anonymised copy of the Alaveteli database, for
//! the public statistics that Metabase shows.
//!
//! Only what the rules ([`rules`]) allow reaches the copy: every table and column of the source
//! must be named, rows of embargoed and hidden requests (and everything referring to them) are
//! filtered out, personal columns are dropped, generalised or replaced by keyed pseudonyms. The
//! masking and filtering run inside `COPY (SELECT …) TO STDOUT` on the source ([`plan`]), so what is
//! hidden never leaves the source server; the rows stream (with the counter caches filled in) into a fresh schema of the
//! target, in parallel, from one snapshot ([`engine`]). The new copy is indexed, searched for
//! personal data that slipped through ([`scan`]), and only then swapped with the one readers use,
//! in one transaction ([`target`]); the copy it replaces is kept for one `rollback`.
//!
//! What it does not do: copy views, functions or other schemas than one; follow foreign keys by
//! itself (references are declared in the rules, foreign key or not); connect over TLS.

mod cli;
pub mod commands;
pub mod engine;
mod error;
pub mod pg;
pub mod plan;
pub mod pseudonym;
pub mod rules;
pub mod scan;
pub mod schema;
pub mod settings;
pub mod stream;
pub mod target;

pub use cli::Cli;
use cli::Command;
pub use error::{Error, Result};
use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;
pub use settings::SETTINGS;

impl Tool for Cli {
    const NAME: &'static str = "stats-anonymize";
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
        let (rules, source, target) = match &self.command {
            Command::Run(args) => (
                args.rules.rules.as_ref(),
                args.source.source.as_ref(),
                args.target.target.as_ref(),
            ),
            Command::Check(args) => (args.rules.rules.as_ref(), args.source.source.as_ref(), None),
            Command::Rollback { target } => (None, None, target.target.as_ref()),
            _ => (None, None, None),
        };
        let mut flags = Vec::new();
        if let Some(path) = rules {
            flags.push((
                settings::STATS_ANONYMIZE_RULES.name,
                path.to_string_lossy().into_owned(),
            ));
        }
        if let Some(url) = source {
            flags.push((settings::SOURCE_DATABASE_URL.name, url.clone()));
        }
        if let Some(url) = target {
            flags.push((settings::TARGET_DATABASE_URL.name, url.clone()));
        }
        flags
    }

    fn run(self, ctx: &Context) -> Result<u8> {
        match self.command {
            Command::Run(args) => commands::run::run(
                ctx,
                &commands::run::Options {
                    dry_run: args.dry_run,
                    explain: args.explain,
                    json: args.json,
                },
            ),
            Command::Check(args) => commands::check::run(ctx, args.schema.as_deref()),
            Command::Rollback { .. } => commands::rollback::run(ctx),
            Command::DefaultRules => commands::default_rules::run(),
            Command::Common(_) => unreachable!("answered by ops_common::cli"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        ops_common::cli::debug_assert_cli::<super::Cli>();
    }
}
