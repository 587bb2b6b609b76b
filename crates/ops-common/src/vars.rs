//! The settings shared by several tools, declared once.
//!
//! A tool lists the ones it reads in its own `SETTINGS` table next to its own settings; the names
//! are environment variable names, envdir file names and config file keys at the same time.
//! The S3 names are the ones WAL-G, restic and the AWS CLI already use, so an existing envdir works.

use crate::settings::Setting;

/// Log output format.
pub const OPS_LOG_FORMAT: Setting = Setting::new(
    "OPS_LOG_FORMAT",
    "Log format on stderr: `text`, or `json` (one object per line, for cron).",
)
.flag("--log-format")
.default("text");

/// Log level before `-v`/`-q`.
pub const OPS_LOG_LEVEL: Setting = Setting::new(
    "OPS_LOG_LEVEL",
    "Least severe log level shown: `error`, `warn`, `info`, `debug`, `trace`; each `-v` lowers it and each `-q` raises it by one.",
)
.default("info");

/// Directory of node_exporter's textfile collector.
pub const OPS_METRICS_DIR: Setting = Setting::new(
    "OPS_METRICS_DIR",
    "Directory where cron-run commands write Prometheus textfile metrics (`<tool>_<command>.prom`, atomically); unset: no metrics.",
);

/// S3 access key.
pub const AWS_ACCESS_KEY_ID: Setting = Setting::new("AWS_ACCESS_KEY_ID", "S3 access key id.");

/// S3 secret key.
pub const AWS_SECRET_ACCESS_KEY: Setting =
    Setting::new("AWS_SECRET_ACCESS_KEY", "S3 secret access key.").secret();

/// S3 session token, for temporary credentials.
pub const AWS_SESSION_TOKEN: Setting = Setting::new(
    "AWS_SESSION_TOKEN",
    "S3 session token, only with temporary credentials.",
)
.secret();

/// S3 region.
pub const AWS_REGION: Setting = Setting::new(
    "AWS_REGION",
    "S3 region (any value for most S3-compatible stores).",
)
.aliases(&["AWS_DEFAULT_REGION"])
.default("us-east-1");

/// S3 endpoint, for S3-compatible stores.
pub const AWS_ENDPOINT: Setting = Setting::new(
    "AWS_ENDPOINT",
    "S3 endpoint URL for an S3-compatible store, e.g. `https://s3.example.net` or `http://127.0.0.1:9000`; unset: AWS.",
)
.aliases(&["AWS_ENDPOINT_URL"]);

/// Path-style S3 addressing.
pub const AWS_S3_FORCE_PATH_STYLE: Setting = Setting::new(
    "AWS_S3_FORCE_PATH_STYLE",
    "Address buckets as `endpoint/bucket` instead of `bucket.endpoint`; needed for IP endpoints and most S3-compatible stores. Default: true when `AWS_ENDPOINT` is set.",
);

/// Time limit of one attempt of one storage call.
pub const OPS_STORE_TIMEOUT: Setting = Setting::new(
    "OPS_STORE_TIMEOUT",
    "Seconds one attempt of one object-store call may take (connecting: at most 5 s of it) before it is abandoned and retried.",
)
.default("60");

/// Retries of a failed storage call.
pub const OPS_STORE_RETRIES: Setting = Setting::new(
    "OPS_STORE_RETRIES",
    "How many times a storage call that failed transiently (timeout, connection error, 5xx, throttling) is retried, with exponential backoff from 0.2 s up to 5 s.",
)
.default("4");

/// What every tool reads: logging.
pub const LOGGING: [Setting; 2] = [OPS_LOG_FORMAT, OPS_LOG_LEVEL];

/// What every tool that talks to an object store reads, besides the store's URL.
pub const STORAGE: [Setting; 8] = [
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    AWS_REGION,
    AWS_ENDPOINT,
    AWS_S3_FORCE_PATH_STYLE,
    OPS_STORE_TIMEOUT,
    OPS_STORE_RETRIES,
];
