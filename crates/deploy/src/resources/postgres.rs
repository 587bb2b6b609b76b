//! `postgres_setting`: `ALTER SYSTEM SET`, compared with what `postgresql.auto.conf` holds.
//!
//! The current value is the last line for the setting in the data directory's
//! `postgresql.auto.conf`, as the server reads it (`pg_file_settings`); when it equals the wanted
//! value the resource is `ok`. Otherwise `ALTER SYSTEM SET name = 'value'` and
//! `pg_reload_conf()`. A setting that only takes effect at a restart (its `pg_settings.context`
//! is `postmaster`, like `archive_mode`) is reported "restart pending": deploy never restarts the
//! database by itself.
//!
//! psql runs with the SQL on its standard input (never on its command line), as the `os_user`
//! (default `postgres`, for peer authentication) when deploy runs as root. Under `--root`:
//! skipped.

use crate::apply::{Change, Ctx, ROOT_SKIP};
use crate::exec::{Program, is_root};
use crate::model::PostgresSettingSpec;

/// Field and record separators psql prints (unit and record separators: not in settings).
const FS: &str = "\u{1f}";
const RS: &str = "\u{1e}";
/// What the query returns when `postgresql.auto.conf` does not set the name.
const UNSET: &str = "\u{1}unset";

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn psql(spec: &PostgresSettingSpec, ctx: &Ctx, sql: String) -> Result<String, String> {
    let mut args: Vec<String> = Vec::new();
    let mut program = match &spec.os_user {
        Some(user) if is_root() && user != "root" => {
            if ctx.accounts.user(user).is_none() {
                return Err(format!("there is no user {user:?} to run psql as"));
            }
            args.extend([
                "-u".to_owned(),
                user.clone(),
                "--".to_owned(),
                "psql".to_owned(),
            ]);
            Program::new("runuser")
        }
        _ => Program::new("psql"),
    };
    args.extend(
        [
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            FS,
            "-R",
            RS,
        ]
        .map(str::to_owned),
    );
    if let Some(host) = &spec.host {
        args.extend(["-h".to_owned(), host.clone()]);
    }
    if let Some(port) = spec.port {
        args.extend(["-p".to_owned(), port.to_string()]);
    }
    args.extend([
        "-U".to_owned(),
        spec.db_user.clone(),
        "-d".to_owned(),
        spec.database.clone(),
        "-f".to_owned(),
        "-".to_owned(),
    ]);
    program = program
        .args(args)
        .stdin(sql.into_bytes())
        .dir(std::path::Path::new("/"));
    program.ok("psql")
}

/// Applies a `postgres_setting`.
///
/// # Errors
/// psql failing (server down, not a superuser), an unknown setting name.
pub fn apply(spec: &PostgresSettingSpec, ctx: &Ctx) -> Result<Change, String> {
    if !ctx.live() {
        return Ok(Change::skipped(ROOT_SKIP));
    }
    let name = literal(&spec.name);
    let query = format!(
        "SELECT coalesce((SELECT setting FROM pg_file_settings WHERE name = {name} \
           AND sourcefile = current_setting('data_directory') || '/postgresql.auto.conf' \
           ORDER BY seqno DESC LIMIT 1), {unset}), \
         coalesce((SELECT context FROM pg_settings WHERE name = {name}), ''), \
         coalesce((SELECT pending_restart::text FROM pg_settings WHERE name = {name}), '');\n",
        unset = literal(UNSET)
    );
    let out = psql(spec, ctx, query)?;
    let record = out.trim_end_matches(['\n', '\u{1e}']);
    let fields: Vec<&str> = record.split(FS).collect();
    let [current, context, pending] = fields.as_slice() else {
        return Err(format!("unexpected answer from psql: {record:?}"));
    };
    if context.is_empty() {
        return Err(format!("PostgreSQL has no setting {:?}", spec.name));
    }
    let mut change = Change::ok();
    if *current == spec.value {
        if *pending == "true" {
            change.note("restart pending: PostgreSQL must be restarted to use it");
        }
        return Ok(change);
    }
    let was = if *current == UNSET {
        "not set in postgresql.auto.conf".to_owned()
    } else {
        format!("was {current:?}")
    };
    change.changed(format!("set to {:?} ({was})", spec.value));
    if *context == "postmaster" {
        change.note("restart pending: PostgreSQL must be restarted to use it");
    }
    if ctx.check {
        return Ok(change);
    }
    let set = format!(
        "ALTER SYSTEM SET {} = {};\nSELECT pg_reload_conf();\n",
        quote_ident(&spec.name),
        literal(&spec.value)
    );
    psql(spec, ctx, set)?;
    Ok(change)
}

/// A setting name for ALTER SYSTEM: as it is when simple, else double-quoted.
fn quote_ident(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_owned()
    } else {
        name.split('.')
            .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(quote_ident("archive_command"), "archive_command");
        assert_eq!(
            quote_ident("auto_explain.log_min_duration"),
            "\"auto_explain\".\"log_min_duration\""
        );
    }
}
