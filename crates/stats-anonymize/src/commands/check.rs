//! `stats-anonymize check`: the rules against the source's schema (`--source`, or
//! `SOURCE_DATABASE_URL`) or against a `pg_dump --schema-only` file (`--schema`). Writes nothing.
//!
//! It reports, all at once, every table and column the rules do not cover and every rule naming
//! something that does not exist (deny by default), and rules that do not fit a column's type;
//! against a database it also plans every generated query, so a broken filter shows here rather
//! than at night. The problems go to stdout, one per line; the status is 12 when there are some.

use std::fmt::Write as _;
use std::path::Path;

use ops_common::cli::Context;
use ops_common::exit;

use crate::commands::load_rules;
use crate::engine;
use crate::error::{Error, Result};
use crate::rules::{Problems, Rules};
use crate::schema::{self, Schema};
use crate::settings::{self, SOURCE_DATABASE_URL, STATS_ANONYMIZE_SOURCE_SCHEMA};

/// Runs `check`.
///
/// # Errors
/// [`Error::Rules`] when the rules have problems (after printing them); settings, file and
/// database errors.
pub fn run(ctx: &Context, schema_file: Option<&Path>) -> Result<u8> {
    let s = &ctx.settings;
    let source_schema = settings::schema_name(s, &STATS_ANONYMIZE_SOURCE_SCHEMA)?;
    let outcome = load_rules(s).and_then(|(rules, origin)| {
        let (schema, against) = if let Some(path) = schema_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let schema = schema::parse_dump(&text, &source_schema).map_err(|message| {
                Error::Rules(Problems {
                    summary: format!("{} is not a schema dump", path.display()),
                    items: vec![message],
                })
            })?;
            let items = rules.check_against(&schema);
            if !items.is_empty() {
                return Err(Error::Rules(Problems {
                    summary: format!(
                        "{origin} do not match schema {source_schema} of {} (deny by default)",
                        path.display()
                    ),
                    items,
                }));
            }
            (
                schema,
                format!("schema {source_schema} of {}", path.display()),
            )
        } else {
            if s.get(&SOURCE_DATABASE_URL).is_none() {
                return Err(Error::Usage(
                    "check needs --source URL, --schema FILE, or SOURCE_DATABASE_URL".to_owned(),
                ));
            }
            let config = settings::database_config(s, &SOURCE_DATABASE_URL)?;
            let checked = ops_common::cli::runtime().block_on(engine::check_source(
                &config,
                &rules,
                &origin,
                &source_schema,
            ))?;
            (
                checked.schema,
                format!("schema {source_schema} of the source database"),
            )
        };
        Ok(summary(&rules, &origin, &schema, &against))
    });
    match outcome {
        Ok(text) => {
            ops_common::output::print(&text)?;
            Ok(exit::SUCCESS)
        }
        Err(Error::Rules(problems)) => {
            let mut text = String::new();
            for item in &problems.items {
                let _ = writeln!(text, "{item}");
            }
            ops_common::output::print(&text)?;
            Err(Error::Rules(problems))
        }
        Err(e) => Err(e),
    }
}

/// `… match …: N tables (C copied, S skipped); columns: K keep, …`.
fn summary(rules: &Rules, origin: &str, schema: &Schema, against: &str) -> String {
    let copied = rules.copied().count();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for (_, copy) in rules.copied() {
        for rule in copy.columns.values() {
            let name = rule.name();
            match kinds.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => *n += 1,
                None => kinds.push((name, 1)),
            }
        }
    }
    kinds.sort_by_key(|(k, n)| (std::cmp::Reverse(*n), *k));
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "{origin} match {against}: {} tables ({copied} copied, {} skipped); columns of copied tables: {}\n",
        schema.tables.len(),
        rules.tables.len() - copied,
        kinds.join(", ")
    )
}
