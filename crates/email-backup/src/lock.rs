//! restic-compatible lock files, so that email-backup and restic can share a repository.
//!
//! `rustic_core` takes no locks. restic does: every command that reads or adds data writes a
//! non-exclusive lock, and `prune`/`forget` an exclusive one, and refuses to start while a
//! conflicting lock exists (an exclusive lock conflicts with every other lock; a non-exclusive one
//! only with exclusive ones). A `restic prune` started while email-backup backs up therefore
//! refuses instead of deleting packs the backup is about to reference, and email-backup refuses to
//! prune while restic (or another email-backup) holds any lock.
//!
//! The format is restic's (`internal/restic/lock.go`): `locks/<id>`, a JSON object
//! `{"time", "exclusive", "hostname", "username", "pid", "uid", "gid"}` encrypted with the
//! repository's master key, whose id is the SHA-256 of the stored (encrypted) bytes. restic
//! refreshes its locks every 5 minutes and takes a lock older than 30 minutes, or one of a process
//! that no longer runs on the same host, as stale; email-backup does the same, and ignores stale
//! locks. An exclusive lock also removes the stale locks it finds (what `restic unlock` does), so a
//! process killed half-way does not block pruning for ever.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use ops_common::storage::{ObjectStore, PutBody};
use rustic_core::jiff;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::runtime::Handle;

use crate::crypto::RepoKey;
use crate::error::{Error, Result};

/// restic's `StaleLockTimeout`.
const STALE_AFTER: Duration = Duration::from_mins(30);
/// restic refreshes its locks this often.
const REFRESH_EVERY: Duration = Duration::from_mins(5);
/// restic's `waitBeforeLockCheck`: time for a concurrent locker's file to become visible.
const WAIT_BEFORE_CHECK: Duration = Duration::from_millis(200);

/// A lock file's content, field for field as restic writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRecord {
    /// When the lock was taken or last refreshed.
    pub time: Timestamp,
    /// Exclusive (prune, forget) or not (backup, restore, check).
    pub exclusive: bool,
    /// Host of the process.
    pub hostname: String,
    /// User of the process.
    #[serde(default)]
    pub username: String,
    /// Process id.
    pub pid: i64,
    /// User id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    /// Group id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference.
fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl LockRecord {
    fn ours(exclusive: bool) -> Self {
        let uid = rustix::process::getuid().as_raw();
        Self {
            time: Timestamp::now(),
            exclusive,
            hostname: hostname(),
            username: username(uid),
            pid: i64::from(std::process::id()),
            uid,
            gid: rustix::process::getgid().as_raw(),
        }
    }

    /// restic's rule: older than 30 minutes, or from a process that no longer runs on this host.
    pub fn is_stale(&self) -> bool {
        let age = Timestamp::now().duration_since(self.time);
        if age > jiff::SignedDuration::try_from(STALE_AFTER).unwrap_or_default() {
            return true;
        }
        self.hostname == hostname()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    fn describe(&self) -> String {
        format!(
            "{}lock of PID {} on {} by {}, taken {}",
            if self.exclusive { "exclusive " } else { "" },
            self.pid,
            self.hostname,
            if self.username.is_empty() {
                "?"
            } else {
                &self.username
            },
            self.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn username(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_default()
}

/// A lock held in the repository, refreshed in the background; released by [`Lock::release`] or
/// when dropped.
pub struct Lock {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    /// The lock file's key in the store; empty once removed.
    key: Arc<Mutex<String>>,
    gate: WriteGate,
    /// The second check's error, for [`Lock::confirmed`].
    refusal: Arc<Mutex<Option<Error>>>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").finish_non_exhaustive()
    }
}

/// Writes a lock record; returns its key.
async fn write_lock(store: &dyn ObjectStore, key: &RepoKey, record: &LockRecord) -> Result<String> {
    let json = serde_json::to_vec(record).expect("a lock record serializes");
    let sealed = key.encrypt(&json);
    let id = hex::encode(Sha256::digest(&sealed));
    let object = format!("locks/{id}");
    store.put(&object, PutBody::from(sealed)).await?;
    Ok(object)
}

/// Every lock in the repository except `skip`: `(key, record)`; unreadable ones as `Err(key)`.
async fn read_locks(
    store: &dyn ObjectStore,
    key: &RepoKey,
    skip: Option<&str>,
) -> Result<Vec<std::result::Result<(String, LockRecord), String>>> {
    let mut out = Vec::new();
    for meta in store.list("locks/").await? {
        if Some(meta.key.as_str()) == skip || meta.size == 0 {
            // restic ignores empty lock files too: some stores leave them after a failed upload.
            continue;
        }
        let data = match store.get_bytes(&meta.key).await {
            Ok(data) => data,
            Err(e) if e.is_not_found() => continue, // released in the meantime
            Err(e) => return Err(e.into()),
        };
        let record = key
            .decrypt_unpacked(&data)
            .ok()
            .and_then(|plain| serde_json::from_slice::<LockRecord>(&plain).ok());
        out.push(record.map(|r| (meta.key.clone(), r)).ok_or(meta.key));
    }
    Ok(out)
}

/// Every lock in the repository, for reports.
///
/// # Errors
/// When the locks cannot be listed or read.
pub fn list(
    store: &dyn ObjectStore,
    handle: &Handle,
    key: &RepoKey,
) -> Result<Vec<std::result::Result<(String, LockRecord), String>>> {
    handle.block_on(read_locks(store, key, None))
}

/// Looks for locks that conflict with one of ours; removes stale ones when `exclusive`.
async fn check_others(
    store: &dyn ObjectStore,
    key: &RepoKey,
    exclusive: bool,
    own: Option<&str>,
) -> Result<()> {
    for lock in read_locks(store, key, own).await? {
        let (object, record) = match lock {
            Ok(found) => found,
            Err(object) => {
                return Err(Error::Conflict(format!(
                    "{object} is not a lock this repository's key can read; remove it by hand if no other program uses the repository"
                )));
            }
        };
        if record.is_stale() {
            if exclusive {
                tracing::warn!(lock = %object, "removing a stale {}", record.describe());
                if let Err(e) = store.delete(&object).await {
                    tracing::warn!(lock = %object, "could not remove it: {}", ops_common::one_line(&e));
                }
            } else if own.is_none() {
                // Logged on the first look only: the check after writing our lock sees it again.
                tracing::info!(lock = %object, "ignoring a stale {}", record.describe());
            }
            continue;
        }
        if exclusive || record.exclusive {
            return Err(Error::Conflict(format!(
                "the repository is locked: {} ({object}); try again when it is done",
                record.describe()
            )));
        }
    }
    Ok(())
}

/// Holds a command's writes to the repository until its lock has passed restic's second check.
///
/// restic writes its lock, waits 200 ms for a concurrent locker's file to become visible, checks
/// again, and only then touches the repository. Waiting is only needed before the first write:
/// reading meanwhile is harmless, and an unchanged backup is almost all reading. So the second
/// check runs on the lock's own thread, and the backend's writes and deletes wait at this gate.
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Debug, Default)]
enum GateState {
    #[default]
    Open,
    Held,
    /// The check failed: why, for the writes that were waiting.
    Refused(String),
}

impl WriteGate {
    fn set(&self, state: GateState) {
        let (current, changed) = &*self.0;
        *lock_unpoisoned(current) = state;
        changed.notify_all();
    }

    /// Blocks while the lock's second check is pending; why writing is refused, if it is.
    ///
    /// # Errors
    /// The reason, when the check found a conflicting lock or could not run.
    pub fn wait(&self) -> std::result::Result<(), String> {
        let (current, changed) = &*self.0;
        let mut state = lock_unpoisoned(current);
        loop {
            match &*state {
                GateState::Open => return Ok(()),
                GateState::Refused(why) => return Err(why.clone()),
                GateState::Held => {
                    state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl Lock {
    /// Takes a lock the way restic does: check, write, wait, check again; but returns right after
    /// writing it. The wait and the second check run on the lock's thread while `gate` holds the
    /// writes; [`Self::confirmed`] waits for them.
    ///
    /// # Errors
    /// [`Error::Conflict`] when a conflicting lock is held, or the store's error.
    pub fn acquire(
        store: Arc<dyn ObjectStore>,
        handle: Handle,
        key: &RepoKey,
        exclusive: bool,
        gate: WriteGate,
    ) -> Result<Self> {
        handle.block_on(check_others(&*store, key, exclusive, None))?;
        let object = handle.block_on(write_lock(&*store, key, &LockRecord::ours(exclusive)))?;
        let written = std::time::Instant::now();
        tracing::debug!(lock = %object, exclusive, "lock written");
        gate.set(GateState::Held);
        let current = Arc::new(Mutex::new(object));
        let refusal = Arc::new(Mutex::new(None));
        let (stop, stopped) = mpsc::channel::<()>();
        let refresher = {
            let store = Arc::clone(&store);
            let handle = handle.clone();
            let current = Arc::clone(&current);
            let refusal = Arc::clone(&refusal);
            let gate = gate.clone();
            let key = key.clone();
            std::thread::Builder::new()
                .name("lock".to_owned())
                .spawn(move || {
                    let wait = WAIT_BEFORE_CHECK.saturating_sub(written.elapsed());
                    if stopped.recv_timeout(wait) != Err(mpsc::RecvTimeoutError::Timeout) {
                        gate.set(GateState::Refused("the lock was released".to_owned()));
                        return;
                    }
                    let object = lock_unpoisoned(&current).clone();
                    if let Err(e) =
                        handle.block_on(check_others(&*store, &key, exclusive, Some(&object)))
                    {
                        let _ = handle.block_on(store.delete(&object));
                        lock_unpoisoned(&current).clear();
                        gate.set(GateState::Refused(e.to_string()));
                        *lock_unpoisoned(&refusal) = Some(e);
                        return;
                    }
                    gate.set(GateState::Open);
                    while let Err(mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(REFRESH_EVERY)
                    {
                        refresh(&*store, &handle, &key, &current, exclusive);
                    }
                })
                .map_err(|e| Error::io("lock thread", e))?
        };
        Ok(Self {
            store,
            handle,
            key: current,
            gate,
            refusal,
            stop: Some(stop),
            refresher: Some(refresher),
        })
    }

    /// Waits for restic's second check of the lock.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another process locked the repository meanwhile (this lock is
    /// then removed), or the store's error.
    pub fn confirmed(&self) -> Result<()> {
        self.gate.wait().map_err(|why| {
            lock_unpoisoned(&self.refusal)
                .take()
                .unwrap_or(Error::Conflict(why))
        })
    }

    /// Stops refreshing and removes the lock file.
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.refresher.take() {
            let _ = thread.join();
        }
        let object = lock_unpoisoned(&self.key).clone();
        if object.is_empty() {
            return;
        }
        match self.handle.block_on(self.store.delete(&object)) {
            Ok(()) => tracing::debug!(lock = %object, "lock removed"),
            Err(e) => {
                tracing::warn!(lock = %object, "could not remove the lock (it goes stale in 30 minutes): {}", ops_common::one_line(&e));
            }
        }
        lock_unpoisoned(&self.key).clear();
    }
}

/// restic's refresh: write a new lock with the current time, then remove the old one.
fn refresh(
    store: &dyn ObjectStore,
    handle: &Handle,
    key: &RepoKey,
    current: &std::sync::Mutex<String>,
    exclusive: bool,
) {
    match handle.block_on(write_lock(store, key, &LockRecord::ours(exclusive))) {
        Ok(new) => {
            let old = std::mem::replace(
                &mut *current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                new,
            );
            if let Err(e) = handle.block_on(store.delete(&old)) {
                tracing::warn!(lock = %old, "could not remove the previous lock: {}", ops_common::one_line(&e));
            }
        }
        Err(e) => tracing::warn!("could not refresh the lock: {}", ops_common::one_line(&e)),
    }
}

fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.release_inner();
    }
}
