//! Object storage: one trait, an S3 implementation and a local-directory one.
//!
//! The tools store backups in an S3-compatible bucket off-site, or in a local directory (the embedded
//! default, and a fair comparison in benchmarks). Both implementations keep the same promises:
//!
//! - **No partial object is ever visible.** A put becomes visible whole or not at all: S3 publishes an
//!   object only when its upload completes (a failed multipart upload is aborted); the local store
//!   writes a temporary file outside the key space, flushes it and renames it into place.
//! - **Checksums are sent and verified.** Every S3 request body carries a Content-MD5 the server
//!   checks; every object whose content is known before its upload starts (bytes, files, streams
//!   shorter than a part) carries its SHA-256 in its metadata (`x-amz-meta-sha256`), checked when it
//!   is read whole. Callers that recorded a SHA-256 (manifests) read with [`ObjectStore::get_verified`],
//!   which works on both stores.
//! - **Every call is bounded.** Each attempt has a time limit, transient failures are retried a bounded
//!   number of times with exponential backoff, and the error says whether the failure was
//!   [`StorageErrorKind::NotFound`], `Transient` or `Permanent`.
//!
//! Keys are `/`-separated relative paths whose components are not empty and do not start with `.`
//! (the local store stages each write in a dot-file beside its key).

mod local;
mod s3;

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _};

pub use self::local::LocalStore;
pub use self::s3::S3Store;
use crate::error::{Error, Result, StorageErrorKind};
use crate::settings::Settings;
use crate::vars;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `data`.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// When the text is not 64 hex digits.
    pub fn from_hex(text: &str) -> std::result::Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out)
            .map_err(|e| format!("invalid SHA-256 {text:?}: {e}"))?;
        Ok(Self(out))
    }

    /// Lowercase hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// What is stored about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, if the store says.
    pub last_modified: Option<SystemTime>,
    /// The SHA-256 recorded when the object was written (S3 metadata); `None` where the store keeps
    /// no metadata (the local store) or the object was written by another program.
    pub sha256: Option<Sha256Digest>,
}

/// The content of a put.
pub enum PutBody {
    /// Bytes in memory.
    Bytes(Bytes),
    /// Pieces in memory, stored one after the other. The local store writes them as they are; S3
    /// gathers them into one body first (its single puts want one).
    Parts(Vec<Bytes>),
    /// A file, read when uploading (and re-read on retries).
    File(PathBuf),
    /// A stream of unknown length, read once. Large streams are uploaded in parts; an error from the
    /// reader abandons the put and nothing becomes visible.
    Stream(Box<dyn std::io::Read + Send>),
}

impl fmt::Debug for PutBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Parts(parts) => write!(
                f,
                "Parts({} parts, {} bytes)",
                parts.len(),
                parts.iter().map(Bytes::len).sum::<usize>()
            ),
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<Bytes> for PutBody {
    fn from(b: Bytes) -> Self {
        Self::Bytes(b)
    }
}

impl From<Vec<u8>> for PutBody {
    fn from(b: Vec<u8>) -> Self {
        Self::Bytes(Bytes::from(b))
    }
}

/// What a successful put stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReceipt {
    /// Bytes stored.
    pub size: u64,
}

/// A byte range of an object: from `start` to `end` (exclusive), or to the end of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte; `None` for the end of the object.
    pub end: Option<u64>,
}

impl ByteRange {
    /// `start..end`.
    #[must_use]
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end: Some(end),
        }
    }

    /// `start..`.
    #[must_use]
    pub fn from(start: u64) -> Self {
        Self { start, end: None }
    }
}

/// A streaming read of an object.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// An object store. Implemented by [`S3Store`] and [`LocalStore`]; see the module documentation for
/// the promises every implementation keeps.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Where the objects are, as a URL without credentials (for messages and logs).
    fn url(&self) -> String;

    /// Stores an object, replacing any object under the same key. Returns only when the object is
    /// durable and its checksum confirmed.
    async fn put(&self, key: &str, body: PutBody) -> Result<PutReceipt>;

    /// Starts reading an object, or a range of it. The request is retried; a failure in the middle
    /// of the stream is an I/O error of the reader.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ObjectReader>;

    /// Reads a whole object into memory, checking it against the SHA-256 recorded in its metadata
    /// when the store keeps one. Retried as a whole on transient failures.
    async fn get_bytes(&self, key: &str) -> Result<Bytes>;

    /// What is stored about an object.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Every object whose key starts with `prefix`, sorted by key. Pages through the store's listing.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes objects; keys that do not exist are not an error.
    async fn delete_many(&self, keys: &[String]) -> Result<()>;

    /// Reads a whole object and checks it against a SHA-256 the caller recorded.
    async fn get_verified(&self, key: &str, expected: &Sha256Digest) -> Result<Bytes> {
        let data = self.get_bytes(key).await?;
        let actual = Sha256Digest::of(&data);
        if actual != *expected {
            return Err(Error::Integrity {
                what: self.describe(key),
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(data)
    }

    /// Whether an object exists.
    async fn exists(&self, key: &str) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes one object.
    async fn delete(&self, key: &str) -> Result<()> {
        self.delete_many(&[key.to_owned()]).await
    }

    /// `key` as a location for messages: the store's URL and the key.
    fn describe(&self, key: &str) -> String {
        format!("{}/{key}", self.url().trim_end_matches('/'))
    }
}

/// Reads a streaming object to the end.
///
/// # Errors
/// When the stream fails; the error names the object.
pub async fn read_to_end(
    store: &dyn ObjectStore,
    key: &str,
    mut reader: ObjectReader,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .await
        .map_err(|e| Error::Storage {
            op: "get",
            key: key.to_owned(),
            store: store.url(),
            kind: StorageErrorKind::Transient,
            message: e.to_string(),
        })?;
    Ok(out)
}

/// Where a store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// A local directory (`file:///path` or an absolute path).
    Local(PathBuf),
}

impl StoreLocation {
    /// Parses `s3://bucket[/prefix]`, `file:///absolute/path` or `/absolute/path`.
    ///
    /// # Errors
    /// Any other form, with a hint of the accepted ones.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{text:?}: no bucket name after s3://"));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.starts_with('/') {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        Err(format!(
            "{text:?}: expected s3://bucket/prefix, file:///absolute/path or /absolute/path"
        ))
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Local(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// How calls are bounded and retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Time limit of one attempt.
    pub attempt_timeout: Duration,
    /// Time limit of connecting (S3 only).
    pub connect_timeout: Duration,
    /// First backoff delay; doubled each retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 4,
            attempt_timeout: Duration::from_mins(1),
            connect_timeout: Duration::from_secs(5),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1 << retry.min(16))
            .min(self.max_delay);
        // Full jitter between half and all of the delay, so parallel workers do not retry in step.
        exp.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// S3 credentials and endpoint.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token.
    pub session_token: Option<String>,
    /// Region.
    pub region: String,
    /// Endpoint URL, for S3-compatible stores.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

/// Everything needed to open a store, apart from its location.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// S3 settings (unused for a local store).
    pub s3: S3Options,
    /// Timeouts and retries.
    pub retry: RetryPolicy,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: u64,
    /// Size of each part (S3 requires at least 5 MiB for all parts but the last).
    pub part_size: u64,
    /// Parts uploaded at the same time.
    pub part_concurrency: usize,
    /// Keys per listing request (S3's maximum is 1,000).
    pub list_page_size: i32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            s3: S3Options {
                region: "us-east-1".to_owned(),
                ..S3Options::default()
            },
            retry: RetryPolicy::default(),
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            part_concurrency: 4,
            list_page_size: 1000,
        }
    }
}

impl StoreOptions {
    /// Reads the shared storage settings ([`vars::STORAGE`]).
    ///
    /// # Errors
    /// When a value does not parse.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let endpoint = settings.get(&vars::AWS_ENDPOINT).map(str::to_owned);
        let force_path_style = settings
            .flag(&vars::AWS_S3_FORCE_PATH_STYLE)?
            .unwrap_or(endpoint.is_some());
        let mut retry = RetryPolicy::default();
        if let Some(timeout) = settings.seconds(&vars::OPS_STORE_TIMEOUT)? {
            if timeout.is_zero() {
                return Err(settings.invalid(&vars::OPS_STORE_TIMEOUT, "must be more than 0"));
            }
            retry.attempt_timeout = timeout;
            retry.connect_timeout = retry.connect_timeout.min(timeout);
        }
        if let Some(retries) = settings.parse::<u32>(&vars::OPS_STORE_RETRIES)? {
            retry.retries = retries;
        }
        Ok(Self {
            s3: S3Options {
                access_key_id: settings.get(&vars::AWS_ACCESS_KEY_ID).map(str::to_owned),
                secret_access_key: settings
                    .get(&vars::AWS_SECRET_ACCESS_KEY)
                    .map(str::to_owned),
                session_token: settings.get(&vars::AWS_SESSION_TOKEN).map(str::to_owned),
                region: settings
                    .get(&vars::AWS_REGION)
                    .unwrap_or("us-east-1")
                    .to_owned(),
                endpoint,
                force_path_style,
            },
            retry,
            ..Self::default()
        })
    }
}

/// Opens the store at `location`.
///
/// # Errors
/// When S3 credentials are missing or the endpoint is not a URL.
pub fn open(location: &StoreLocation, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    Ok(match location {
        StoreLocation::S3 { bucket, prefix } => Arc::new(S3Store::new(bucket, prefix, options)?),
        StoreLocation::Local(root) => Arc::new(LocalStore::new(root.clone(), options.retry)),
    })
}

/// Checks a key: `/`-separated, no empty components, none starting with `.`.
fn validate_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("empty key".to_owned());
    }
    if key.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
        return Err(format!(
            "invalid key {key:?}: components must be non-empty and not start with '.'"
        ));
    }
    Ok(())
}

/// Checks a listing prefix: like a key, but may be empty or end with `/`.
fn validate_prefix(prefix: &str) -> std::result::Result<(), String> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        Ok(())
    } else {
        validate_key(trimmed)
    }
}

/// The outcome of one failed attempt.
#[derive(Debug)]
struct AttemptError {
    kind: StorageErrorKind,
    message: String,
}

impl AttemptError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: StorageErrorKind::Transient,
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: StorageErrorKind::Permanent,
            message: message.into(),
        }
    }

    fn not_found() -> Self {
        Self {
            kind: StorageErrorKind::NotFound,
            message: "not found".to_owned(),
        }
    }
}

/// Runs `attempt` until it succeeds, fails with a non-transient error, or the retries run out; each
/// attempt is cut off after the policy's timeout.
async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    op: &'static str,
    key: &str,
    store: &str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, AttemptError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = match tokio::time::timeout(policy.attempt_timeout, attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AttemptError::transient(format!(
                "timed out after {:?}",
                policy.attempt_timeout
            ))),
        };
        match outcome {
            Ok(value) => return Ok(value),
            Err(e) if e.kind == StorageErrorKind::Transient && tries <= policy.retries => {
                let delay = policy.delay(tries - 1);
                tracing::warn!(op, key, store, attempt = tries, error = %e.message, "storage call failed; retrying in {delay:.1?}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                let message = if e.kind == StorageErrorKind::Transient && tries > 1 {
                    format!("{} (gave up after {tries} attempts)", e.message)
                } else {
                    e.message
                };
                return Err(Error::Storage {
                    op,
                    key: key.to_owned(),
                    store: store.to_owned(),
                    kind: e.kind,
                    message,
                });
            }
        }
    }
}

/// The SHA-256 of everything a reader yields.
///
/// # Errors
/// When reading fails.
pub fn sha256_reader(reader: &mut dyn std::io::Read) -> std::io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(Sha256Digest(hasher.finalize().into())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads up to `limit` bytes from a blocking reader, off the async threads. Returns the reader back
/// with the bytes; fewer than `limit` bytes means the stream ended.
async fn read_chunk(
    mut reader: Box<dyn std::io::Read + Send>,
    limit: u64,
) -> std::io::Result<(Box<dyn std::io::Read + Send>, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(
            &mut <&mut Box<dyn std::io::Read + Send> as std::io::Read>::take(&mut reader, limit),
            &mut buf,
        )?;
        Ok((reader, buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            StoreLocation::parse("s3://b/a/b/").unwrap(),
            StoreLocation::S3 {
                bucket: "b".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            StoreLocation::parse("s3://b").unwrap(),
            StoreLocation::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            StoreLocation::parse("file:///var/x").unwrap(),
            StoreLocation::Local("/var/x".into())
        );
        assert_eq!(
            StoreLocation::parse("/var/x").unwrap(),
            StoreLocation::Local("/var/x".into())
        );
        assert!(StoreLocation::parse("relative/x").is_err());
        assert!(StoreLocation::parse("s3:///x").is_err());
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_key("a/b.c").is_ok());
        for bad in ["", "/a", "a//b", "a/", "../a", "a/.tmp/x", "."] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("wal/").is_ok());
        assert!(validate_prefix("wal/0000").is_ok());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(0) <= Duration::from_millis(200));
        assert!(p.delay(0) >= Duration::from_millis(100));
        assert!(p.delay(30) <= Duration::from_secs(5));
    }
}
