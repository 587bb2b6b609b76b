//! email-backup's settings: declared once here, resolved by `ops_common::settings`.
//!
//! The names are restic's, so the envdir a site already has for restic works unchanged:
//! `RESTIC_REPOSITORY`, `RESTIC_PASSWORD` (or `_FILE`, `_COMMAND`) and the AWS names. The default
//! backup path is Alaveteli's own setting name for where raw emails are kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ops_common::settings::{Setting, Settings};
use ops_common::storage::{self, ObjectStore, StoreLocation, StoreOptions};
use ops_common::vars;

use crate::error::{Error, Result};

/// Where the repository is.
pub const RESTIC_REPOSITORY: Setting = Setting::new(
    "RESTIC_REPOSITORY",
    "Where the repository is, as restic writes it: a local path (`/srv/backup/emails`, `local:/srv/backup/emails`) or `s3:` followed by an endpoint, bucket and prefix (`s3:https://s3.example.net/bucket/emails`, `s3:http://127.0.0.1:9000/bucket/emails`, `s3:s3.amazonaws.com/bucket/emails`).",
)
.flag("--repo");

/// The repository password.
pub const RESTIC_PASSWORD: Setting = Setting::new(
    "RESTIC_PASSWORD",
    "The repository password. Used when neither `RESTIC_PASSWORD_COMMAND` nor `RESTIC_PASSWORD_FILE` is set.",
)
.secret();

/// A file holding the password.
pub const RESTIC_PASSWORD_FILE: Setting = Setting::new(
    "RESTIC_PASSWORD_FILE",
    "A file whose content (surrounding white space removed) is the password; wins over `RESTIC_PASSWORD`.",
);

/// A command printing the password.
pub const RESTIC_PASSWORD_COMMAND: Setting = Setting::new(
    "RESTIC_PASSWORD_COMMAND",
    "A command (split like a shell would, run without one) whose output, white space trimmed, is the password; wins over the file and `RESTIC_PASSWORD`.",
);

/// The default backup path.
pub const RAW_EMAILS_LOCATION: Setting = Setting::new(
    "RAW_EMAILS_LOCATION",
    "The site's raw-emails directory (Alaveteli's `RAW_EMAILS_LOCATION`, as an absolute path): what `backup` saves when given no paths.",
);

/// The host name recorded in snapshots.
pub const EMAIL_BACKUP_HOST: Setting = Setting::new(
    "EMAIL_BACKUP_HOST",
    "Host name recorded in new snapshots and used to pick the parent snapshot; default: the machine's host name.",
)
.flag("--host");

/// Files restored in parallel.
pub const EMAIL_BACKUP_RESTORE_CONCURRENCY: Setting = Setting::new(
    "EMAIL_BACKUP_RESTORE_CONCURRENCY",
    "Pack ranges `restore` reads and writes out at the same time; each holds at most 8 MiB of pack data in memory.",
)
.default("8");

/// Every setting email-backup reads.
pub static SETTINGS: &[Setting] = &[
    RESTIC_REPOSITORY,
    RESTIC_PASSWORD,
    RESTIC_PASSWORD_FILE,
    RESTIC_PASSWORD_COMMAND,
    RAW_EMAILS_LOCATION,
    EMAIL_BACKUP_HOST,
    EMAIL_BACKUP_RESTORE_CONCURRENCY,
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

/// A parsed `RESTIC_REPOSITORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and prefix, with the endpoint from the URL (`None`: AWS).
    S3 {
        /// `http://host:port` or `https://host`, or `None` for AWS.
        endpoint: Option<String>,
        /// Bucket.
        bucket: String,
        /// Key prefix, without slashes at either end.
        prefix: String,
    },
}

impl RepoLocation {
    /// Parses restic's repository syntax (the backends email-backup supports).
    ///
    /// # Errors
    /// An unsupported backend or a malformed `s3:` URL, with the accepted forms.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if let Some(rest) = text.strip_prefix("s3:") {
            let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
                ("https", r)
            } else if let Some(r) = rest.strip_prefix("http://") {
                ("http", r)
            } else if rest.starts_with("//") {
                return Err(format!(
                    "{text:?}: write s3:https://host/bucket/prefix or s3:host/bucket/prefix"
                ));
            } else {
                // restic: "s3:host/bucket" means https.
                ("https", rest)
            };
            let mut parts = rest.splitn(3, '/');
            let host = parts.next().unwrap_or_default();
            let bucket = parts.next().unwrap_or_default();
            let prefix = parts.next().unwrap_or_default().trim_matches('/');
            if host.is_empty() || bucket.is_empty() {
                return Err(format!(
                    "{text:?}: expected s3:[http[s]://]host/bucket[/prefix]"
                ));
            }
            let endpoint = if host.ends_with("amazonaws.com") && scheme == "https" {
                None
            } else {
                Some(format!("{scheme}://{host}"))
            };
            return Ok(Self::S3 {
                endpoint,
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        let path = text.strip_prefix("local:").unwrap_or(text);
        if let Some((scheme, _)) = path.split_once(':')
            && !scheme.contains('/')
            && [
                "sftp", "rest", "b2", "azure", "gs", "swift", "rclone", "s3s",
            ]
            .contains(&scheme)
        {
            return Err(format!(
                "{text:?}: the {scheme} backend is not supported; use a local path or s3:"
            ));
        }
        if path.is_empty() {
            return Err("empty repository location".to_owned());
        }
        Ok(Self::Local(
            std::path::absolute(Path::new(path)).map_err(|e| format!("{text:?}: {e}"))?,
        ))
    }
}

impl std::fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let host = endpoint.as_deref().unwrap_or("https://s3.amazonaws.com");
                if prefix.is_empty() {
                    write!(f, "s3:{host}/{bucket}")
                } else {
                    write!(f, "s3:{host}/{bucket}/{prefix}")
                }
            }
        }
    }
}

/// The repository location from the settings.
///
/// # Errors
/// When `RESTIC_REPOSITORY` is unset or unsupported.
pub fn repo_location(settings: &Settings) -> Result<RepoLocation> {
    let text = settings.require(&RESTIC_REPOSITORY)?;
    RepoLocation::parse(text).map_err(|m| settings.invalid(&RESTIC_REPOSITORY, m).into())
}

/// Opens the object store under the repository (one S3 client, the toolkit's storage settings).
///
/// # Errors
/// When the location or the storage settings are invalid.
pub fn open_store(settings: &Settings, location: &RepoLocation) -> Result<Arc<dyn ObjectStore>> {
    let mut options = StoreOptions::from_settings(settings)?;
    let store_location = match location {
        RepoLocation::Local(path) => StoreLocation::Local(path.clone()),
        RepoLocation::S3 {
            endpoint,
            bucket,
            prefix,
        } => {
            if let Some(endpoint) = endpoint {
                options.s3.endpoint = Some(endpoint.clone());
                options.s3.force_path_style = settings
                    .flag(&vars::AWS_S3_FORCE_PATH_STYLE)?
                    .unwrap_or(true);
            }
            StoreLocation::S3 {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            }
        }
    };
    Ok(storage::open(&store_location, &options)?)
}

/// The repository password, from the command, the file or `RESTIC_PASSWORD`, in restic's order.
///
/// # Errors
/// When none is set, the file cannot be read, or the command fails. Messages never hold the password.
pub fn password(settings: &Settings) -> Result<String> {
    if let Some(command) = settings.get(&RESTIC_PASSWORD_COMMAND) {
        let words = shlex::split(command)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| {
                settings.invalid(
                    &RESTIC_PASSWORD_COMMAND,
                    "cannot split the command into words",
                )
            })?;
        let output = std::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| {
                settings.invalid(&RESTIC_PASSWORD_COMMAND, format!("{}: {e}", words[0]))
            })?;
        if !output.status.success() {
            return Err(settings
                .invalid(
                    &RESTIC_PASSWORD_COMMAND,
                    format!("the command failed ({})", output.status),
                )
                .into());
        }
        let text = String::from_utf8(output.stdout).map_err(|_| {
            settings.invalid(
                &RESTIC_PASSWORD_COMMAND,
                "the command's output is not UTF-8",
            )
        })?;
        return non_empty(settings, &RESTIC_PASSWORD_COMMAND, text.trim());
    }
    if let Some(file) = settings.get(&RESTIC_PASSWORD_FILE) {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        return non_empty(settings, &RESTIC_PASSWORD_FILE, text.trim());
    }
    if let Some(password) = settings.get(&RESTIC_PASSWORD) {
        return Ok(password.to_owned());
    }
    Err(Error::Settings(ops_common::Error::Setting {
        name: RESTIC_PASSWORD.name.to_owned(),
        origin: String::new(),
        message:
            "no password: set RESTIC_PASSWORD, RESTIC_PASSWORD_FILE or RESTIC_PASSWORD_COMMAND"
                .to_owned(),
    }))
}

fn non_empty(settings: &Settings, setting: &Setting, text: &str) -> Result<String> {
    if text.is_empty() {
        return Err(settings.invalid(setting, "gives an empty password").into());
    }
    Ok(text.to_owned())
}

/// The host name for snapshots: `--host`/`EMAIL_BACKUP_HOST`, or the machine's.
pub fn host(settings: &Settings) -> String {
    settings
        .get(&EMAIL_BACKUP_HOST)
        .map_or_else(hostname_of_machine, str::to_owned)
}

/// The machine's host name.
pub fn hostname_of_machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned())
}

/// The restore concurrency.
///
/// # Errors
/// When it is not a positive integer.
pub fn restore_concurrency(settings: &Settings) -> Result<usize> {
    match settings.parse::<usize>(&EMAIL_BACKUP_RESTORE_CONCURRENCY)? {
        Some(0) => Err(settings
            .invalid(&EMAIL_BACKUP_RESTORE_CONCURRENCY, "must be at least 1")
            .into()),
        Some(n) => Ok(n),
        None => Ok(8),
    }
}

#[cfg(test)]
mod tests {
    use super::RepoLocation;

    #[test]
    fn restic_repository_forms_parse() {
        assert_eq!(
            RepoLocation::parse("/srv/b").unwrap(),
            RepoLocation::Local("/srv/b".into())
        );
        assert_eq!(
            RepoLocation::parse("local:/srv/b").unwrap(),
            RepoLocation::Local("/srv/b".into())
        );
        assert_eq!(
            RepoLocation::parse("s3:http://127.0.0.1:9000/bucket/a/b/").unwrap(),
            RepoLocation::S3 {
                endpoint: Some("http://127.0.0.1:9000".into()),
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            RepoLocation::parse("s3:s3.amazonaws.com/bucket").unwrap(),
            RepoLocation::S3 {
                endpoint: None,
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            RepoLocation::parse("s3:minio.example.net/b/p").unwrap(),
            RepoLocation::S3 {
                endpoint: Some("https://minio.example.net".into()),
                bucket: "b".into(),
                prefix: "p".into()
            }
        );
        assert!(RepoLocation::parse("s3:http://host").is_err());
        assert!(RepoLocation::parse("sftp:host:/x").is_err());
        assert!(RepoLocation::parse("rest:http://x/").is_err());
    }
}
