//! What a backup records: the manifest of its files, and the completion marker.

use chrono::{DateTime, Utc};
use ops_common::storage::{ObjectStore, Sha256Digest};
use serde::{Deserialize, Serialize};

use crate::archive::{self, BACKUP_MARKER};
use crate::codec::Codec;
use crate::error::{Error, Result};

/// Files are stored in pieces of this size; a piece that has not changed since an earlier backup
/// is not stored again. 1 MiB is 128 PostgreSQL pages: small enough that a few changed rows do not
/// resend a whole table, large enough that a 1 GiB table is 1,024 objects.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// A regular file of the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the data directory.
    pub path: String,
    /// Size in bytes, as read.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// SHA-256 of the whole file as read.
    pub sha256: Sha256Digest,
    /// The identity of each `chunk_size` piece, in order; each names a stored chunk (its
    /// SHA-256; with encryption, its keyed HMAC).
    pub chunks: Vec<Sha256Digest>,
}

/// A directory of the data directory (including those whose contents are not backed up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Path relative to the data directory.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
}

/// A symbolic link of the data directory, restored as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// Path relative to the data directory.
    pub path: String,
    /// Where it points.
    pub target: String,
}

/// Every file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The backup's name.
    pub name: String,
    /// Size of the pieces files were cut into.
    pub chunk_size: u64,
    /// Directories, parents before children.
    pub dirs: Vec<DirEntry>,
    /// Regular files.
    pub files: Vec<FileEntry>,
    /// Symbolic links.
    pub links: Vec<LinkEntry>,
}

/// The completion marker, `backups/<name>/backup.json`, written last: a backup exists only when it
/// does. It says what a restore needs to choose the backup and what it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's name.
    pub name: String,
    /// The cluster's system identifier.
    pub system_identifier: String,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// WAL segment size of the cluster.
    pub wal_segment_size: u64,
    /// Timeline the backup started on.
    pub timeline: u32,
    /// Where WAL replay must start (`X/Y`).
    pub start_lsn: String,
    /// Where the data is consistent (`X/Y`); recovery must replay at least to here.
    pub stop_lsn: String,
    /// The WAL segment holding the start LSN.
    pub start_wal_file: String,
    /// When `pg_backup_start` was called.
    pub start_time: DateTime<Utc>,
    /// When `pg_backup_stop` returned: restore picks backups that finished before its target.
    pub stop_time: DateTime<Utc>,
    /// Number of regular files.
    pub files: u64,
    /// Total size of the files.
    pub size_bytes: u64,
    /// Bytes this backup added to the store (new chunks, after compression).
    pub stored_bytes: u64,
    /// Chunks this backup references.
    pub chunks: u64,
    /// Chunks this backup stored because no earlier backup had them.
    pub new_chunks: u64,
    /// Identity of the manifest (its SHA-256; with encryption, its keyed HMAC).
    pub manifest_id: Sha256Digest,
    /// Identity of the backup label.
    pub backup_label_id: Sha256Digest,
    /// Identity of the tablespace map, when the server returned one.
    pub tablespace_map_id: Option<Sha256Digest>,
}

/// Every complete backup in the archive, sorted by the time it finished.
///
/// # Errors
/// When the store cannot be listed or a marker cannot be read.
pub async fn list_backups(store: &dyn ObjectStore) -> Result<Vec<BackupInfo>> {
    let suffix = format!("/{BACKUP_MARKER}");
    let markers: Vec<String> = store
        .list("backups/")
        .await?
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.ends_with(&suffix))
        .collect();
    let mut backups = Vec::with_capacity(markers.len());
    for key in markers {
        let bytes = store.get_bytes(&key).await?;
        let info: BackupInfo = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))?;
        backups.push(info);
    }
    backups.sort_by(|a, b| {
        a.stop_time
            .cmp(&b.stop_time)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(backups)
}

/// Reads and checks a backup's manifest.
///
/// # Errors
/// When it is missing, corrupt or does not match the marker.
pub async fn read_manifest(
    store: &dyn ObjectStore,
    codec: &Codec,
    info: &BackupInfo,
) -> Result<Manifest> {
    let json = read_backup_file(store, codec, &info.name, "manifest", &info.manifest_id).await?;
    let key = archive::backup_key(&info.name, "manifest");
    serde_json::from_slice(&json)
        .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))
}

/// Name of the chunk index within a backup.
pub const CHUNK_INDEX: &str = "chunks";

/// The chunks a backup references, stored beside its manifest and never encrypted (chunk
/// identities reveal nothing), so that retention works where only public keys are.
///
/// # Errors
/// When it is missing or corrupt.
pub async fn read_chunk_index(store: &dyn ObjectStore, name: &str) -> Result<Vec<Sha256Digest>> {
    let key = archive::backup_key(name, CHUNK_INDEX);
    let json = archive::open(&store.get_bytes(&key).await?)
        .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))
}

/// Reads one of a backup's objects (label, map, manifest) and checks it against its identity.
///
/// # Errors
/// When it is missing, corrupt or does not match `expected`.
pub async fn read_backup_file(
    store: &dyn ObjectStore,
    codec: &Codec,
    name: &str,
    object: &str,
    expected: &Sha256Digest,
) -> Result<Vec<u8>> {
    let key = archive::backup_key(name, object);
    codec
        .open_expecting(&store.get_bytes(&key).await?, expected)
        .map_err(|e| {
            Error::Integrity(format!(
                "{}: {e} (its identity in backup.json)",
                store.describe(&key)
            ))
        })
}
