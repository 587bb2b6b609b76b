//! Opening a repository: the store, `rustic_core`'s backend over it, the password, the key.

use std::sync::Arc;

use ops_common::settings::Settings;
use ops_common::storage::ObjectStore;
use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, OpenStatus, Repository, RepositoryBackends,
    RepositoryOptions,
};

use crate::backend::StoreBackend;
use crate::crypto::RepoKey;
use crate::error::{Error, Result};
use crate::lock::{Lock, WriteGate};
use crate::progress::Bars;
use crate::settings::{self, RepoLocation};

/// A connection to a repository's store, with the runtime its calls run on.
///
/// The runtime is never entered by the main thread: `rustic_core` runs there and in its own threads,
/// and the backend drives each store call with `Handle::block_on`.
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    /// Where the repository is.
    pub location: RepoLocation,
    store: Arc<dyn ObjectStore>,
    /// Where the backend's writes wait for the lock's second check.
    gate: WriteGate,
    backends: RepositoryBackends,
    progress: Bars,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// An open repository, its key, and its connection.
pub struct Open {
    /// The connection.
    pub conn: Connection,
    /// `rustic_core`'s repository.
    pub repo: Repository<OpenStatus>,
    /// The master key, for locks and the restore.
    pub key: RepoKey,
}

impl Connection {
    /// Connects to `RESTIC_REPOSITORY` with the toolkit's storage settings.
    ///
    /// # Errors
    /// Invalid settings.
    pub fn new(settings: &Settings, progress: Bars) -> Result<Self> {
        let location = settings::repo_location(settings)?;
        let store = settings::open_store(settings, &location)?;
        let runtime = ops_common::cli::runtime();
        let gate = WriteGate::default();
        let backend = StoreBackend::new(
            Arc::clone(&store),
            runtime.handle().clone(),
            location.to_string(),
            gate.clone(),
        );
        Ok(Self {
            runtime,
            location,
            store,
            gate,
            backends: RepositoryBackends::new(Arc::new(backend), None),
            progress,
        })
    }

    /// The store under the repository.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A handle to run store calls from non-runtime threads.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    fn repository(&self) -> Result<Repository<()>> {
        // No local cache: cron jobs may run without a home directory, and a cache of another
        // user's files is one more thing to go stale.
        let options = RepositoryOptions::default().no_cache(true);
        Repository::new_with_progress(&options, &self.backends, self.progress)
            .map_err(|e| Error::rustic("opening the repository", &e))
    }

    /// Whether a repository exists here (its `config` object).
    ///
    /// # Errors
    /// When the store cannot tell.
    pub fn exists(&self) -> Result<bool> {
        Ok(self.runtime.block_on(self.store.exists("config"))?)
    }

    /// Opens the repository with the password.
    ///
    /// # Errors
    /// [`Error::NoRepository`], [`Error::WrongPassword`], or the store's error.
    pub fn open(self, password: &str) -> Result<Open> {
        if !self.exists()? {
            return Err(Error::NoRepository(self.location.to_string()));
        }
        let repo = self
            .repository()?
            .open(&Credentials::password(password))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    Error::WrongPassword(self.location.to_string())
                } else {
                    Error::rustic("opening the repository", &e)
                }
            })?;
        let key = RepoKey::new(&repo.key());
        Ok(Open {
            conn: self,
            repo,
            key,
        })
    }

    /// Creates a repository (format 2, restic's chunker, zstd) with the password as its first key.
    ///
    /// # Errors
    /// [`Error::Conflict`] when one exists, or the store's error.
    pub fn init(self, password: &str) -> Result<Open> {
        if self.exists()? {
            return Err(Error::Conflict(format!(
                "a repository already exists at {}",
                self.location
            )));
        }
        if let RepoLocation::Local(root) = &self.location {
            create_local_layout(root)?;
        }
        let key_options = KeyOptions::default()
            .hostname(Some(crate::settings::hostname_of_machine()))
            .with_created(true);
        let repo = self
            .repository()?
            .init(
                &Credentials::password(password),
                &key_options,
                &ConfigOptions::default(),
            )
            .map_err(|e| Error::rustic("creating the repository", &e))?;
        let master = repo.key();
        self.runtime
            .block_on(crate::keys::replace_with_restic_params(
                &*self.store,
                &master,
                password,
            ))?;
        let key = RepoKey::new(&master);
        Ok(Open {
            conn: self,
            repo,
            key,
        })
    }
}

impl Open {
    /// Takes a restic lock (exclusive for prune and forget), and waits for restic's second check.
    ///
    /// # Errors
    /// [`Error::Conflict`] when a conflicting lock is held.
    pub fn lock(&self, exclusive: bool) -> Result<Lock> {
        let lock = self.lock_unconfirmed(exclusive)?;
        lock.confirmed()?;
        Ok(lock)
    }

    /// Takes a restic lock without waiting for restic's second check: the repository's writes
    /// wait for it instead (see [`crate::lock::WriteGate`]), so a backup reads the index and walks
    /// its files meanwhile. Call [`Lock::confirmed`] before trusting the result.
    ///
    /// # Errors
    /// [`Error::Conflict`] when a conflicting lock is held.
    pub fn lock_unconfirmed(&self, exclusive: bool) -> Result<Lock> {
        Lock::acquire(
            Arc::clone(self.conn.store()),
            self.conn.handle(),
            &self.key,
            exclusive,
            self.conn.gate.clone(),
        )
    }
}

/// restic's directories of a local repository, so restic finds them where it expects them
/// (`data/00` … `data/ff`, `index`, `keys`, `locks`, `snapshots`).
fn create_local_layout(root: &std::path::Path) -> Result<()> {
    let mut dirs = vec![
        root.to_path_buf(),
        root.join("index"),
        root.join("keys"),
        root.join("locks"),
        root.join("snapshots"),
    ];
    dirs.extend((0..=255u8).map(|b| root.join("data").join(format!("{b:02x}"))));
    for dir in dirs {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}
