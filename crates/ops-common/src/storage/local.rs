//! The local-directory store: objects are files under a root directory.
//!
//! A put writes `<root>/<key's directory>/.<name>.tmp-<random>`, flushes it, renames it to
//! `<root>/<key>` and flushes the directory, so an object is visible whole or not at all and
//! survives a crash once `put` returns; a crash before leaves at most that dot-file, which
//! listings skip. Files are private (0600) and directories 0700, whatever the umask: an archive
//! holds a whole database, and a backup run from cron has the usual umask of 022. The work runs on
//! blocking threads, bounded by the same per-attempt timeout as S3 calls so that a hung mount cannot
//! hang a tool; local errors other than timeouts are not retried, since they do not go away by
//! themselves.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncReadExt as _;

use super::{
    AttemptError, ByteRange, ObjectMeta, ObjectReader, ObjectStore, PutBody, PutReceipt,
    RetryPolicy, validate_key, validate_prefix, with_retry,
};
use crate::error::{Error, Result, StorageErrorKind};
use crate::fsutil;

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

    /// Writes everything `source` yields into a file staged next to `target` (a dot-file, which
    /// listings skip), flushes it and renames it into place ([`fsutil::AtomicFile`]).
    ///
    /// Staging in the target's own directory, rather than one shared staging directory, spreads
    /// new inodes over the key directories: with every put creating its file in one directory,
    /// ext4 spent more time searching that directory's block group for a free inode than a
    /// backup spent compressing.
    fn put_from(
        root: &Path,
        target: &Path,
        mut source: impl FnMut(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>,
    ) -> std::result::Result<PutReceipt, AttemptError> {
        let failed = |e: Error| AttemptError::permanent(e.to_string());
        fsutil::create_dir_all_durable(target.parent().unwrap_or(root)).map_err(failed)?;
        let mut staged = fsutil::AtomicFile::create(target, 0o600).map_err(failed)?;
        let written = (|| -> std::io::Result<PutReceipt> {
            // Bodies come whole or in large pieces, which go straight through; only a stream's
            // small reads are gathered.
            let mut writer = std::io::BufWriter::with_capacity(64 << 10, staged.file());
            let mut size = 0u64;
            source(&mut |chunk| {
                size += chunk.len() as u64;
                writer.write_all(chunk)
            })?;
            writer.flush()?;
            Ok(PutReceipt { size })
        })();
        // Dropped on failure, `staged` removes its file.
        let receipt = written.map_err(|e| AttemptError::permanent(e.to_string()))?;
        staged.commit().map_err(failed)?;
        Ok(receipt)
    }
}

/// The whole file at `path`, read into a [`fsutil::PageBuffer`] (which says why).
fn read_aligned(path: &Path) -> std::io::Result<Bytes> {
    let mut file = std::fs::File::open(path)?;
    let size = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    // One byte more than the size, to notice a file that grew since: it is then read to its end.
    let mut buffer = fsutil::PageBuffer::zeroed(size + 1);
    let filled = fsutil::read_full(&mut file, &mut buffer)?;
    if filled <= size {
        return Ok(buffer.into_bytes(filled));
    }
    let mut whole = buffer.into_bytes(filled).to_vec();
    file.read_to_end(&mut whole)?;
    Ok(Bytes::from(whole))
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
            PutBody::Parts(parts) => {
                self.blocking("put", key, move || {
                    Self::put_from(&root, &target, |sink| {
                        parts.iter().try_for_each(|p| sink(p))
                    })
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
            read_aligned(&path).map_err(|e| classify(&e))
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
