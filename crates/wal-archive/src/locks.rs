//! Locks in the archive between `backup` and `delete`.
//!
//! A backup reuses chunks the archive already holds, and a delete removes chunks no backup
//! references: run at the same time, the delete could remove a chunk the running backup is about to
//! reference. So each takes a lock object (`locks/backup-<name>.json`, `locks/delete.json`), then
//! looks for the other's: if both start together, both see the other and both refuse, which is
//! safe. A lock older than [`STALE_AFTER`] is from a process that died and is ignored.

use chrono::{DateTime, Duration, Utc};
use ops_common::storage::{ObjectStore, PutBody};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Locks older than this are ignored: no backup or delete runs that long.
pub(crate) const STALE_AFTER: Duration = Duration::hours(24);

/// What a lock object records.
#[derive(Debug, Serialize, Deserialize)]
struct LockRecord {
    command: String,
    host: String,
    pid: u32,
    time: DateTime<Utc>,
}

/// A lock held in the archive; release it with [`Lock::release`].
pub(crate) struct Lock {
    key: String,
}

impl Lock {
    /// Takes the lock `key` for `command`, then refuses if any fresh lock under `conflicting_prefix`
    /// exists (other than this one).
    ///
    /// # Errors
    /// [`Error::Conflict`] when a conflicting lock is held, or the store fails (this lock is then
    /// released).
    pub(crate) async fn take(
        store: &dyn ObjectStore,
        key: &str,
        command: &str,
        conflicting_prefix: &str,
    ) -> Result<Self> {
        let record = LockRecord {
            command: command.to_owned(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            pid: std::process::id(),
            time: Utc::now(),
        };
        store
            .put(
                key,
                PutBody::from(serde_json::to_vec(&record).expect("serializes")),
            )
            .await?;
        let lock = Self {
            key: key.to_owned(),
        };
        match conflicting_lock(store, key, conflicting_prefix).await {
            Ok(()) => Ok(lock),
            Err(e) => {
                lock.release(store).await;
                Err(e)
            }
        }
    }

    /// Removes the lock object (a failure is logged: the lock goes stale in a day).
    pub(crate) async fn release(self, store: &dyn ObjectStore) {
        if let Err(e) = store.delete(&self.key).await {
            tracing::warn!(lock = %self.key, "could not remove the lock: {}", ops_common::one_line(&e));
        }
    }
}

/// Fails when a fresh lock other than `own` is held under `prefix`. A lock that cannot be read
/// counts as held: failing open here would let a delete remove chunks a running backup reuses.
async fn conflicting_lock(store: &dyn ObjectStore, own: &str, prefix: &str) -> Result<()> {
    for other in store.list(prefix).await? {
        if other.key == own {
            continue;
        }
        let bytes = match store.get_bytes(&other.key).await {
            Ok(bytes) => bytes,
            // Released since the listing.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let held = serde_json::from_slice::<LockRecord>(&bytes).map_err(|e| {
            Error::Conflict(format!(
                "{} is a lock that cannot be read ({e}); remove it if no backup or delete is running",
                store.describe(&other.key)
            ))
        })?;
        if Utc::now() - held.time > STALE_AFTER {
            tracing::warn!(lock = %other.key, since = %held.time, "ignoring a stale lock");
            continue;
        }
        return Err(Error::Conflict(format!(
            "{} holds {} (pid {} on {}, since {}); try again when it is done",
            held.command,
            other.key,
            held.pid,
            held.host,
            held.time.format("%Y-%m-%d %H:%M:%S UTC")
        )));
    }
    Ok(())
}
