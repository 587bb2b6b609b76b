//! wal-archive's settings: declared once here, resolved by `ops_common::settings`.
//!
//! The names are WAL-G's and libpq's where those exist, so a WAL-G envdir works unchanged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ops_common::settings::{Setting, Settings};
use ops_common::storage::{self, ObjectStore, StoreLocation, StoreOptions};
use ops_common::vars;

use crate::archive::Compression;
use crate::codec::Codec;
use crate::error::{Error, Result};

/// S3 location of the archive.
pub const WALG_S3_PREFIX: Setting = Setting::new(
    "WALG_S3_PREFIX",
    "Where the archive is in S3: `s3://bucket/prefix`.",
)
.aliases(&["WALE_S3_PREFIX"]);

/// Local-directory archive.
pub const WALG_FILE_PREFIX: Setting = Setting::new(
    "WALG_FILE_PREFIX",
    "Where the archive is on a local (or mounted) file system: an absolute path. Used when `WALG_S3_PREFIX` is not set.",
);

/// Compression of stored WAL and backup chunks.
pub const WALG_COMPRESSION_METHOD: Setting = Setting::new(
    "WALG_COMPRESSION_METHOD",
    "Compression of what is stored: `zstd` (level 1), `lz4` or `none`.",
)
.default("zstd");

/// Parallel uploads in `backup`.
pub const WALG_UPLOAD_CONCURRENCY: Setting = Setting::new(
    "WALG_UPLOAD_CONCURRENCY",
    "Uploads at the same time: files read and chunks compressed by `backup` (each with up to four chunks being stored meanwhile); segments a `push` archives, counting those it archives ahead of PostgreSQL's request.",
)
.default("4");

/// Parallel downloads in `restore`.
pub const WALG_DOWNLOAD_CONCURRENCY: Setting = Setting::new(
    "WALG_DOWNLOAD_CONCURRENCY",
    "Downloads at the same time: chunks by `restore` and `drill`, objects re-read by `verify`; also how many segments a `fetch` prefetches.",
)
.default("8");

/// The data directory.
pub const PGDATA: Setting = Setting::new(
    "PGDATA",
    "The cluster's data directory. `push` defaults to its working directory, which PostgreSQL sets to the data directory.",
)
.flag("--pgdata");

/// libpq: server host or socket directory.
pub const PGHOST: Setting = Setting::new(
    "PGHOST",
    "PostgreSQL host name, or the directory of its Unix socket (a path starting with `/`).",
)
.default("/var/run/postgresql");
/// libpq: server port.
pub const PGPORT: Setting = Setting::new("PGPORT", "PostgreSQL port.").default("5432");
/// libpq: user.
pub const PGUSER: Setting = Setting::new(
    "PGUSER",
    "PostgreSQL user; `backup` needs a superuser or the pg_backup_start/stop grants.",
)
.default("postgres");
/// libpq: database.
pub const PGDATABASE: Setting =
    Setting::new("PGDATABASE", "Database to connect to.").default("postgres");
/// libpq: password.
pub const PGPASSWORD: Setting = Setting::new(
    "PGPASSWORD",
    "PostgreSQL password, when the server asks for one.",
)
.secret();

/// Bound on one push or fetch.
pub const WAL_ARCHIVE_TIMEOUT: Setting = Setting::new(
    "WAL_ARCHIVE_TIMEOUT",
    "Seconds a `push` or `fetch` may take in all, retries included; past it the command fails (push: status 7, so PostgreSQL retries; fetch: status 200, so recovery stops) instead of hanging.",
)
.default("120");

/// Where PostgreSQL's server programs are.
pub const WAL_ARCHIVE_PG_BINDIR: Setting = Setting::new(
    "WAL_ARCHIVE_PG_BINDIR",
    "Directory of `pg_ctl`, for `restore --start`; default: `/usr/lib/postgresql/<version>/bin`, then `PATH`.",
);

/// Where drills restore.
pub const WAL_ARCHIVE_DRILL_DIR: Setting = Setting::new(
    "WAL_ARCHIVE_DRILL_DIR",
    "Directory in which `drill` makes its scratch copy (it needs room for one restored data directory).",
)
.default("/var/tmp");

/// age public keys to encrypt to.
pub const WAL_ARCHIVE_AGE_RECIPIENTS: Setting = Setting::new(
    "WAL_ARCHIVE_AGE_RECIPIENTS",
    "age X25519 public keys (`age1…`, separated by commas or spaces): every stored object is compressed, then encrypted to them. The server needs only these to archive. The stored names are derived from this list: with more than one key, hosts that read the archive set it too, next to their identity file.",
);

/// age private keys, to read an encrypted archive.
pub const WAL_ARCHIVE_AGE_IDENTITY_FILE: Setting = Setting::new(
    "WAL_ARCHIVE_AGE_IDENTITY_FILE",
    "File of age X25519 secret keys (`AGE-SECRET-KEY-1…` lines, as `age-keygen` writes), needed to fetch, restore, verify and drill an encrypted archive; alone, it also encrypts to its own public key.",
);

/// Passphrase encryption.
pub const WAL_ARCHIVE_PASSPHRASE: Setting = Setting::new(
    "WAL_ARCHIVE_PASSPHRASE",
    "Encrypt with this passphrase instead of keys (age's scrypt mode; every object is a standard age file). Slower: scrypt runs once per object.",
)
.secret();

/// Every setting wal-archive reads.
pub static SETTINGS: &[Setting] = &[
    WALG_S3_PREFIX,
    WALG_FILE_PREFIX,
    WALG_COMPRESSION_METHOD,
    WALG_UPLOAD_CONCURRENCY,
    WALG_DOWNLOAD_CONCURRENCY,
    PGDATA,
    PGHOST,
    PGPORT,
    PGUSER,
    PGDATABASE,
    PGPASSWORD,
    WAL_ARCHIVE_TIMEOUT,
    WAL_ARCHIVE_PG_BINDIR,
    WAL_ARCHIVE_DRILL_DIR,
    WAL_ARCHIVE_AGE_RECIPIENTS,
    WAL_ARCHIVE_AGE_IDENTITY_FILE,
    WAL_ARCHIVE_PASSPHRASE,
    vars::OPS_LOG_FORMAT,
    vars::OPS_LOG_LEVEL,
    vars::OPS_METRICS_DIR,
    vars::AWS_ACCESS_KEY_ID,
    vars::AWS_SECRET_ACCESS_KEY,
    vars::AWS_SESSION_TOKEN,
    vars::AWS_REGION,
    vars::AWS_ENDPOINT,
    vars::AWS_S3_FORCE_PATH_STYLE,
    vars::OPS_STORE_TIMEOUT,
    vars::OPS_STORE_RETRIES,
];

/// Where the archive is, from `WALG_S3_PREFIX` or `WALG_FILE_PREFIX`.
///
/// # Errors
/// When neither is set or the value is not a location.
pub fn store_location(settings: &Settings) -> Result<StoreLocation> {
    if let Some(s3) = settings.get(&WALG_S3_PREFIX) {
        return match StoreLocation::parse(s3) {
            Ok(location @ StoreLocation::S3 { .. }) => Ok(location),
            _ => Err(settings
                .invalid(&WALG_S3_PREFIX, "expected s3://bucket/prefix")
                .into()),
        };
    }
    if let Some(dir) = settings.get(&WALG_FILE_PREFIX) {
        return match StoreLocation::parse(dir) {
            Ok(location @ StoreLocation::Local(_)) => Ok(location),
            _ => Err(settings
                .invalid(&WALG_FILE_PREFIX, "expected an absolute path")
                .into()),
        };
    }
    Err(Error::Settings(ops_common::Error::Setting {
        name: "WALG_S3_PREFIX".to_owned(),
        origin: String::new(),
        message: "no archive location: set WALG_S3_PREFIX (s3://bucket/prefix) or WALG_FILE_PREFIX (a directory)".to_owned(),
    }))
}

/// Opens the archive's store.
///
/// # Errors
/// When the location or the storage settings are invalid.
pub fn open_store(settings: &Settings) -> Result<Arc<dyn ObjectStore>> {
    let location = store_location(settings)?;
    let options = StoreOptions::from_settings(settings)?;
    Ok(storage::open(&location, &options)?)
}

/// How content is stored: the compression method, and encryption if configured.
///
/// # Errors
/// When the method is unknown or a key does not parse.
pub fn codec(settings: &Settings) -> Result<Codec> {
    let compression = settings
        .parse::<Compression>(&WALG_COMPRESSION_METHOD)?
        .unwrap_or(Compression::Zstd);
    Codec::from_settings(settings, compression)
}

/// The bound on one push or fetch.
///
/// # Errors
/// When the value is not a number of seconds.
pub fn command_timeout(settings: &Settings) -> Result<Duration> {
    Ok(settings
        .seconds(&WAL_ARCHIVE_TIMEOUT)?
        .unwrap_or(Duration::from_mins(2)))
}

/// A positive count setting.
///
/// # Errors
/// When the value is not a positive integer.
pub fn concurrency(settings: &Settings, setting: &Setting) -> Result<usize> {
    match settings.parse::<usize>(setting)? {
        Some(0) => Err(settings.invalid(setting, "must be at least 1").into()),
        Some(n) => Ok(n),
        None => Ok(4),
    }
}

/// The data directory: `--pgdata`/`PGDATA`, or the working directory.
///
/// # Errors
/// When the working directory cannot be read.
pub fn pgdata(settings: &Settings) -> Result<PathBuf> {
    match settings.get(&PGDATA) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => std::env::current_dir().map_err(|e| Error::Io {
            path: PathBuf::from("."),
            source: e,
        }),
    }
}

/// A tokio-postgres configuration from the libpq settings.
///
/// # Errors
/// When the port is not a number.
pub fn pg_config(settings: &Settings) -> Result<tokio_postgres::Config> {
    pg_config_on_port(settings, None)
}

/// Like [`pg_config`], on another port (tokio-postgres adds ports rather than replacing them).
///
/// # Errors
/// When the port setting is not a number.
pub fn pg_config_on_port(settings: &Settings, port: Option<u16>) -> Result<tokio_postgres::Config> {
    let mut config = tokio_postgres::Config::new();
    let host = settings.get(&PGHOST).unwrap_or("/var/run/postgresql");
    if host.starts_with('/') {
        config.host_path(host);
    } else {
        config.host(host);
    }
    config.port(match port {
        Some(port) => port,
        None => settings.parse::<u16>(&PGPORT)?.unwrap_or(5432),
    });
    config.user(settings.get(&PGUSER).unwrap_or("postgres"));
    config.dbname(settings.get(&PGDATABASE).unwrap_or("postgres"));
    if let Some(password) = settings.get(&PGPASSWORD) {
        config.password(password);
    }
    config.application_name("wal-archive");
    config.connect_timeout(Duration::from_secs(10));
    Ok(config)
}
