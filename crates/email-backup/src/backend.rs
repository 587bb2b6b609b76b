//! `rustic_core`'s storage backend over the toolkit's object store.
//!
//! `rustic_core` reads and writes typed files by id through [`ReadBackend`] and [`WriteBackend`];
//! this module maps them onto [`ObjectStore`] keys with restic's layout — `config`, `keys/<id>`,
//! `snapshots/<id>`, `index/<id>`, `data/<first two hex digits>/<id>` (and `locks/<id>`, which
//! `rustic_core` does not know about: see [`crate::lock`]) — so one S3 client, with the toolkit's
//! timeouts, retries and checksums, serves both local and S3 repositories.
//!
//! `rustic_core` calls its backend synchronously, from its own threads (rayon and plain threads).
//! Each call runs the store's async future with [`Handle::block_on`] on the toolkit's runtime, which
//! is correct only from threads that are not runtime workers: commands therefore call `rustic_core`
//! from the main thread without entering the runtime.

use std::sync::Arc;

use bytes::Bytes;
use ops_common::storage::{ByteRange, ObjectStore, PutBody};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};
use tokio::runtime::Handle;

use crate::lock::WriteGate;

/// The key of a repository file in restic's layout.
#[must_use]
pub fn key(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    let hex = hex.as_str();
    match tpe {
        FileType::Config => "config".to_owned(),
        FileType::Pack => format!("data/{}/{hex}", &hex[..2]),
        other => format!("{}/{hex}", other.dirname()),
    }
}

/// A repository in an object store, as `rustic_core`'s backend.
#[derive(Debug, Clone)]
pub struct StoreBackend {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    location: String,
    gate: WriteGate,
}

impl StoreBackend {
    /// A backend over `store`, running its calls on `handle`'s runtime; writes and deletes wait
    /// at `gate` while a lock is being checked.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        handle: Handle,
        location: String,
        gate: WriteGate,
    ) -> Self {
        Self {
            store,
            handle,
            location,
            gate,
        }
    }

    /// Waits until this process may change the repository.
    fn may_write(&self, op: &str, key: &str) -> RusticResult<()> {
        self.gate.wait().map_err(|why| {
            RusticError::new(ErrorKind::Backend, "{op} {key} refused: {why}")
                .attach_context("op", op.to_owned())
                .attach_context("key", key.to_owned())
                .attach_context("why", why)
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Runs a store call to completion from a `rustic_core` thread.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }
}

/// A `rustic_core` error carrying the store's error as its source, so that the command can still
/// tell a missing object from an unreachable store (see `Error::rustic`).
fn backend_error(op: &str, key: &str, err: ops_common::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "{op} {key} failed", err)
        .attach_context("op", op.to_owned())
        .attach_context("key", key.to_owned())
}

impl ReadBackend for StoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return match self.block_on(self.store.head("config")) {
                Ok(meta) => Ok(vec![(Id::default(), size_u32(meta.size))]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(backend_error("head", "config", e)),
            };
        }
        let prefix = format!("{}/", tpe.dirname());
        let objects = self
            .block_on(self.store.list(&prefix))
            .map_err(|e| backend_error("list", &prefix, e))?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.key.rsplit('/').next()?;
                let id = Id::parse_some(name, tpe)?;
                // Only keys where restic's layout puts them (a stray `data/foo/<id>` is not a pack).
                (key(tpe, &id) == meta.key).then(|| (id, size_u32(meta.size)))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = key(tpe, id);
        self.block_on(self.store.get_bytes(&key))
            .map_err(|e| backend_error("get", &key, e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let key = key(tpe, id);
        let range = ByteRange::new(u64::from(offset), u64::from(offset) + u64::from(length));
        let data = self
            .block_on(async {
                let reader = self.store.get(&key, Some(range)).await?;
                ops_common::storage::read_to_end(&*self.store, &key, reader).await
            })
            .map_err(|e| backend_error("get", &key, e))?;
        if data.len() != length as usize {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "get {key}: short read ({got} of {want} bytes)",
            )
            .attach_context("key", key)
            .attach_context("got", data.len().to_string())
            .attach_context("want", length.to_string()));
        }
        Ok(Bytes::from(data))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        key(tpe, id)
    }
}

impl WriteBackend for StoreBackend {
    fn create(&self) -> RusticResult<()> {
        // Objects create their directories (local) or need none (S3).
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = key(tpe, id);
        self.may_write("put", &key)?;
        // A pack is one part per blob: passed on as parts, the local store writes them without
        // gathering a pack-sized copy first.
        self.block_on(self.store.put(&key, PutBody::Parts(content.into_vec())))
            .map(drop)
            .map_err(|e| backend_error("put", &key, e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = key(tpe, id);
        self.may_write("delete", &key)?;
        self.block_on(self.store.delete(&key))
            .map_err(|e| backend_error("delete", &key, e))
    }
}

fn size_u32(size: u64) -> u32 {
    // restic's pack files stay far below 4 GiB; saturate rather than wrap for anything odd.
    u32::try_from(size).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_restics_layout() {
        let id: Id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            .parse()
            .unwrap();
        assert_eq!(
            key(FileType::Pack, &id),
            "data/01/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            key(FileType::Snapshot, &id),
            "snapshots/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert_eq!(key(FileType::Key, &id)[..5], *"keys/");
        assert_eq!(key(FileType::Index, &id)[..6], *"index/");
        assert_eq!(key(FileType::Config, &id), "config");
    }
}
