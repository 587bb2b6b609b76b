//! The local-directory store: objects are files under a root directory.
//!
//! A put writes `<root>/.tmp/<random>`, flushes it, renames it to `<root>/<key>` and flushes the
//! directory, so an object is visible whole or not at all and survives a crash once `put` returns.
//! Files are private (0600) and directories 0700, whatever the umask: an archive holds a whole
//! database, and a backup run from cron has the usual umask of 022. The work runs on
//! blocking threads, bounded by the same per-attempt timeout as S3 calls so that a hung mount cannot
//! hang a tool; local errors other than timeouts are not retried, since they do not go away by
//! themselves.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::{
    AttemptError, ByteRange, ObjectMeta, ObjectReader, ObjectStore, PutBody, PutReceipt,
    RetryPolicy, Sha256Digest, validate_key, validate_prefix, with_retry,
};
use crate::error::{Error, Result, StorageErrorKind};
use crate::fsutil;

/// Name of the directory under the root where puts are staged.
const STAGING_DIR: &str = ".tmp";

/// A store in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    retry: RetryPolicy,
}

fn classify(e: &std::io::Error) -> AttemptError {
    if e.kind() == std::io::ErrorKind::NotFound {
        AttemptError::not_found()
    } else {
        AttemptError::permanent(e.to_string())
    }
}

impl LocalStore {
    /// A store rooted at `root`; the directory is created by the first put.
    #[must_use]
    pub fn new(root: PathBuf, retry: RetryPolicy) -> Self {
        Self { root, retry }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn key_error(&self, op: &'static str, key: &str, message: String) -> Error {
        Error::Storage {
            op,
            key: key.to_owned(),
            store: self.url(),
            kind: StorageErrorKind::Permanent,
            message,
        }
    }

    /// Runs blocking file work under the retry policy's timeout.
    async fn blocking<T, F>(&self, op: &'static str, key: &str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn() -> std::result::Result<T, AttemptError> + Send + Sync + Clone + 'static,
    {
        // Local failures are permanent or not-found; only a timeout counts as transient, and a
        // blocking thread that timed out is still running: do not start another one beside it.
        let policy = RetryPolicy {
            retries: 0,
            ..self.retry
        };
        with_retry(&policy, op, key, &self.url(), || {
            let work = work.clone();
            async move {
                tokio::task::spawn_blocking(work)
                    .await
                    .map_err(|e| AttemptError::permanent(e.to_string()))?
            }
        })
        .await
    }

    /// Moves a staged file into place under `key`, durably.
    fn publish(root: &Path, staged: &Path, target: &Path) -> std::result::Result<(), AttemptError> {
        let parent = target.parent().unwrap_or(root);
        fsutil::create_dir_all_durable(parent)
            .map_err(|e| AttemptError::permanent(e.to_string()))?;
        std::fs::rename(staged, target).map_err(|e| AttemptError::permanent(e.to_string()))?;
        fsutil::sync_dir(parent).map_err(|e| AttemptError::permanent(e.to_string()))
    }

    fn stage(root: &Path) -> std::result::Result<(PathBuf, std::fs::File), AttemptError> {
        let staging = root.join(STAGING_DIR);
        fsutil::create_dir_all_durable(&staging)
            .map_err(|e| AttemptError::permanent(e.to_string()))?;
        let path = staging.join(fsutil::random_suffix());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AttemptError::permanent(format!("{}: {e}", path.display())))?;
        Ok((path, file))
    }

    /// Writes everything `source` yields into a staged file, flushes it and publishes it.
    fn put_from(
        root: &Path,
        target: &Path,
        mut source: impl FnMut(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>,
    ) -> std::result::Result<PutReceipt, AttemptError> {
        let (staged, file) = Self::stage(root)?;
        let result = (|| -> std::io::Result<PutReceipt> {
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            source(&mut |chunk| {
                hasher.update(chunk);
                size += chunk.len() as u64;
                writer.write_all(chunk)
            })?;
            let file = writer
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            file.sync_all()?;
            Ok(PutReceipt {
                size,
                sha256: Sha256Digest(hasher.finalize().into()),
            })
        })();
        match result {
            Ok(receipt) => match Self::publish(root, &staged, target) {
                Ok(()) => Ok(receipt),
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    Err(e)
                }
            },
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                Err(AttemptError::permanent(e.to_string()))
            }
        }
    }
}

fn copy_reader(
    reader: &mut dyn Read,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sink(&buf[..n])?;
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, body: PutBody) -> Result<PutReceipt> {
        validate_key(key).map_err(|m| self.key_error("put", key, m))?;
        let root = self.root.clone();
        let target = self.path(key);
        match body {
            PutBody::Bytes(bytes) => {
                self.blocking("put", key, move || {
                    Self::put_from(&root, &target, |sink| sink(&bytes))
                })
                .await
            }
            PutBody::File(path) => {
                self.blocking("put", key, move || {
                    let mut file = std::fs::File::open(&path)
                        .map_err(|e| AttemptError::permanent(format!("{}: {e}", path.display())))?;
                    Self::put_from(&root, &target, |sink| copy_reader(&mut file, sink))
                })
                .await
            }
            PutBody::Stream(reader) => {
                // A stream can be read only once, so it is not run under `blocking` (which may
                // re-run its closure); it is staged here and published like the others.
                let url = self.url();
                let fail = |message: String| Error::Storage {
                    op: "put",
                    key: key.to_owned(),
                    store: url.clone(),
                    kind: StorageErrorKind::Permanent,
                    message,
                };
                let reader = std::sync::Mutex::new(Some(reader));
                let work = move || {
                    let mut reader = reader
                        .lock()
                        .expect("not poisoned")
                        .take()
                        .expect("read once");
                    Self::put_from(&root, &target, |sink| copy_reader(&mut reader, sink))
                };
                tokio::task::spawn_blocking(work)
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .map_err(|e| fail(e.message))
            }
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ObjectReader> {
        validate_key(key).map_err(|m| self.key_error("get", key, m))?;
        let path = self.path(key);
        let (file, len) = self
            .blocking("get", key, move || {
                let mut file = std::fs::File::open(&path).map_err(|e| classify(&e))?;
                let size = file.metadata().map_err(|e| classify(&e))?.len();
                let Some(range) = range else {
                    return Ok((file, size));
                };
                let end = range.end.unwrap_or(size).min(size);
                if range.start > size || range.start > end {
                    return Err(AttemptError::permanent(format!(
                        "range {}..{end} is outside the object ({size} bytes)",
                        range.start
                    )));
                }
                file.seek(SeekFrom::Start(range.start))
                    .map_err(|e| classify(&e))?;
                Ok((file, end - range.start))
            })
            .await?;
        Ok(Box::pin(tokio::fs::File::from_std(file).take(len)))
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        validate_key(key).map_err(|m| self.key_error("get", key, m))?;
        let path = self.path(key);
        self.blocking("get", key, move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| classify(&e))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key).map_err(|m| self.key_error("head", key, m))?;
        let path = self.path(key);
        let owned_key = key.to_owned();
        self.blocking("head", key, move || {
            let meta = std::fs::metadata(&path).map_err(|e| classify(&e))?;
            if !meta.is_file() {
                return Err(AttemptError::not_found());
            }
            Ok(ObjectMeta {
                key: owned_key.clone(),
                size: meta.len(),
                last_modified: meta.modified().ok(),
                sha256: None,
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix).map_err(|m| self.key_error("list", prefix, m))?;
        let root = self.root.clone();
        let owned_prefix = prefix.to_owned();
        self.blocking("list", prefix, move || {
            // Walk only the directory the prefix points into.
            let dir_part = owned_prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
            let mut out = Vec::new();
            walk(&root, &root.join(dir_part), &owned_prefix, &mut out).map_err(|e| classify(&e))?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            validate_key(key).map_err(|m| self.key_error("delete", key, m))?;
        }
        let root = self.root.clone();
        let keys = keys.to_vec();
        let first = keys.first().cloned().unwrap_or_default();
        self.blocking("delete", &first, move || {
            for key in &keys {
                match std::fs::remove_file(root.join(key)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(AttemptError::permanent(format!("{key}: {e}"))),
                }
                // Directories exist only to hold keys: remove the ones this emptied.
                let mut dir = root.join(key);
                while dir.pop() && dir != root && std::fs::remove_dir(&dir).is_ok() {}
            }
            Ok(())
        })
        .await
    }
}

/// Collects the files under `dir` whose keys start with `prefix`, skipping dot-files (staging).
fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let key = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            // Descend only where keys under this directory can match the prefix.
            let dir_key = format!("{key}/");
            if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                walk(root, &path, prefix, out)?;
            }
        } else if key.starts_with(prefix) {
            let meta = entry.metadata()?;
            out.push(ObjectMeta {
                key,
                size: meta.len(),
                last_modified: meta.modified().ok(),
                sha256: None,
            });
        }
    }
    Ok(())
}
