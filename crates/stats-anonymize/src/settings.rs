//! stats-anonymize's settings: declared once here, resolved by `ops_common::settings`.
//!
//! The two database URLs are secrets, because a URL may carry a password: they come from the
//! environment, an envdir or the config file, never from a flag. `--source` and `--target` exist for
//! convenience on a workstation (`check --source postgresql:///alaveteli`), and are refused when the
//! URL they give holds a password (see [`database_config`]), since every user of the machine can
//! read a process's command line.

use std::path::PathBuf;
use std::time::Duration;

use ops_common::settings::{Setting, Settings};
use ops_common::vars;

use crate::error::{Error, Result};

/// Where the production database is.
pub const SOURCE_DATABASE_URL: Setting = Setting::new(
    "SOURCE_DATABASE_URL",
    "The database to copy from (read only, in one snapshot): a libpq URL or `key=value` string, e.g. `postgresql://stats@localhost/alaveteli` or `host=/var/run/postgresql dbname=alaveteli`. `--source` overrides it with a URL that carries no password.",
)
.secret();

/// Where the statistics database is.
pub const TARGET_DATABASE_URL: Setting = Setting::new(
    "TARGET_DATABASE_URL",
    "The separate database Metabase reads, which receives the anonymised copy. `--target` overrides it with a URL that carries no password.",
)
.secret();

/// The rules file.
pub const STATS_ANONYMIZE_RULES: Setting = Setting::new(
    "STATS_ANONYMIZE_RULES",
    "The rules file (TOML). Unset: the Alaveteli rules built into the binary (`stats-anonymize default-rules` prints them).",
)
.flag("--rules");

/// The key of the pseudonyms.
pub const STATS_ANONYMIZE_HMAC_KEY: Setting = Setting::new(
    "STATS_ANONYMIZE_HMAC_KEY",
    "Key of the `hash` pseudonyms (HMAC-SHA256), at least 16 characters. Keep it the same every night so pseudonyms stay stable and joins keep working; never store it in the target. Required when the rules hash a column.",
)
.secret();

/// The schema copied from.
pub const STATS_ANONYMIZE_SOURCE_SCHEMA: Setting = Setting::new(
    "STATS_ANONYMIZE_SOURCE_SCHEMA",
    "The schema of the source database whose tables the rules cover.",
)
.default("public");

/// The schema Metabase reads.
pub const STATS_ANONYMIZE_TARGET_SCHEMA: Setting = Setting::new(
    "STATS_ANONYMIZE_TARGET_SCHEMA",
    "The schema of the target database that readers use. Each run loads `<schema>__loading` and swaps it in; the copy it replaces is kept as `<schema>__previous` for `rollback`, and the one before is renamed `<schema>__expired` and dropped.",
)
.default("stats");

/// The read-only role.
pub const STATS_ANONYMIZE_READER_ROLE: Setting = Setting::new(
    "STATS_ANONYMIZE_READER_ROLE",
    "A role (e.g. `metabase`) given USAGE on the live schema and SELECT on its tables at each swap, and no access to the previous copy. Unset: no grants.",
);

/// Parallel table copies.
pub const STATS_ANONYMIZE_JOBS: Setting = Setting::new(
    "STATS_ANONYMIZE_JOBS",
    "Tables copied (and scanned) at the same time; each job holds one connection to each database and also builds indexes, and one more connection to the target only builds indexes.",
)
.default("2");

/// The memory for key sets and counts.
pub const STATS_ANONYMIZE_KEY_MEMORY: Setting = Setting::new(
    "STATS_ANONYMIZE_KEY_MEMORY",
    "MiB the run may hold for the keys of one copied table that other tables refer to, and for the counts of one table's counter caches (it holds each once more while a query that reads the keys runs). Past it, references to that table are checked by their chain on the source, and the counter caches are counted once the table is loaded, by rebuilding it: the same copy, more slowly. 0: always so, whatever the tables' size.",
)
.default("64");

/// How long the swap may wait for readers.
pub const STATS_ANONYMIZE_SWAP_TIMEOUT: Setting = Setting::new(
    "STATS_ANONYMIZE_SWAP_TIMEOUT",
    "Seconds the swap may keep trying to lock the live tables while readers use them (each attempt waits at most half the server's `deadlock_timeout`, so a reader is never held up longer nor cancelled); past it the run fails and the live copy stays.",
)
.default("300");

/// Every setting stats-anonymize reads.
pub static SETTINGS: &[Setting] = &[
    SOURCE_DATABASE_URL,
    TARGET_DATABASE_URL,
    STATS_ANONYMIZE_RULES,
    STATS_ANONYMIZE_HMAC_KEY,
    STATS_ANONYMIZE_SOURCE_SCHEMA,
    STATS_ANONYMIZE_TARGET_SCHEMA,
    STATS_ANONYMIZE_READER_ROLE,
    STATS_ANONYMIZE_JOBS,
    STATS_ANONYMIZE_KEY_MEMORY,
    STATS_ANONYMIZE_SWAP_TIMEOUT,
    vars::OPS_LOG_FORMAT,
    vars::OPS_LOG_LEVEL,
    vars::OPS_METRICS_DIR,
];

/// The shortest HMAC key accepted: below 128 bits a key is guessable, and pseudonyms of small
/// value spaces (IP addresses, ids) could be reversed by trying every value.
pub const MIN_KEY_LEN: usize = 16;

/// A database URL from its setting, checked and given the tool's connection defaults.
///
/// `setting` is [`SOURCE_DATABASE_URL`] or [`TARGET_DATABASE_URL`]; when it came from a flag, a
/// URL holding a password is refused.
///
/// # Errors
/// When the URL is missing or unparsable, or given as a flag with a password.
pub fn database_config(settings: &Settings, setting: &Setting) -> Result<tokio_postgres::Config> {
    let url = settings.require(setting)?;
    // The parser's message can quote the URL, which may hold a password: keep it out.
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
        Error::Settings(settings.invalid(
            setting,
            "not a PostgreSQL URL or key=value connection string",
        ))
    })?;
    if *settings.source(setting) == ops_common::settings::Source::Flag
        && config.get_password().is_some()
    {
        let flag = if setting.name == SOURCE_DATABASE_URL.name {
            "--source"
        } else {
            "--target"
        };
        return Err(Error::Usage(format!(
            "{flag} must not carry a password (every user of the machine can read a command line): put the URL in {} (environment, envdir or config file)",
            setting.name
        )));
    }
    if config.get_hosts().is_empty() {
        config.host_path("/var/run/postgresql");
    }
    config.application_name("stats-anonymize");
    config.connect_timeout(Duration::from_secs(10));
    // A run holds its snapshot for as long as the copy takes; keepalives notice a dead peer
    // instead of waiting for the kernel's two hours.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_mins(1));
    Ok(config)
}

/// The rules file, if one is set.
pub fn rules_path(settings: &Settings) -> Option<PathBuf> {
    settings.get(&STATS_ANONYMIZE_RULES).map(PathBuf::from)
}

/// A schema name from its setting.
///
/// # Errors
/// When it is empty or too long for PostgreSQL (the target's also needs room for `__previous`).
pub fn schema_name(settings: &Settings, setting: &Setting) -> Result<String> {
    let name = settings.get(setting).unwrap_or("public").to_owned();
    let limit = if setting.name == STATS_ANONYMIZE_TARGET_SCHEMA.name {
        // PostgreSQL truncates identifiers at 63 bytes; `__previous` must still fit.
        63 - "__previous".len()
    } else {
        63
    };
    if name.is_empty() || name.len() > limit {
        return Err(settings
            .invalid(setting, format!("must be 1 to {limit} bytes long"))
            .into());
    }
    Ok(name)
}

/// The number of parallel jobs.
///
/// # Errors
/// When it is not a positive integer.
pub fn jobs(settings: &Settings) -> Result<usize> {
    match settings.parse::<usize>(&STATS_ANONYMIZE_JOBS)? {
        Some(0) => Err(settings
            .invalid(&STATS_ANONYMIZE_JOBS, "must be at least 1")
            .into()),
        Some(n) => Ok(n),
        None => Ok(2),
    }
}

/// The memory for key sets and counts, in bytes ([`STATS_ANONYMIZE_KEY_MEMORY`]).
///
/// # Errors
/// When it is not a whole number of MiB that this machine can address.
pub fn key_memory(settings: &Settings) -> Result<usize> {
    let mib = settings
        .parse::<usize>(&STATS_ANONYMIZE_KEY_MEMORY)?
        .unwrap_or(64);
    mib.checked_mul(1 << 20).ok_or_else(|| {
        settings
            .invalid(
                &STATS_ANONYMIZE_KEY_MEMORY,
                "is more memory than this machine can address",
            )
            .into()
    })
}

/// How long the swap may keep trying.
///
/// # Errors
/// When it is not a number of seconds.
pub fn swap_timeout(settings: &Settings) -> Result<Duration> {
    Ok(settings
        .seconds(&STATS_ANONYMIZE_SWAP_TIMEOUT)?
        .unwrap_or(Duration::from_mins(5)))
}

/// The HMAC key, checked for length.
///
/// # Errors
/// When it is missing or too short.
pub fn hmac_key(settings: &Settings) -> Result<Vec<u8>> {
    let key = settings.get(&STATS_ANONYMIZE_HMAC_KEY).ok_or_else(|| {
        Error::Settings(ops_common::Error::Setting {
            name: STATS_ANONYMIZE_HMAC_KEY.name.to_owned(),
            origin: String::new(),
            message: "not set, and the rules hash columns (give it in the environment, an envdir or the config file)".to_owned(),
        })
    })?;
    if key.len() < MIN_KEY_LEN {
        return Err(settings
            .invalid(
                &STATS_ANONYMIZE_HMAC_KEY,
                format!("must be at least {MIN_KEY_LEN} characters long"),
            )
            .into());
    }
    Ok(key.as_bytes().to_vec())
}
