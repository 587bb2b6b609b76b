//! `wal-archive push %p`: archive one WAL file, for `archive_command`.
//!
//! Returns 0 only once the object is durable in the store and its checksum was confirmed by it
//! (Content-MD5 on S3; fsync on a local store). A file already in the archive is accepted when it
//! is byte-identical (PostgreSQL re-archives after a crash before it recorded success) and refused
//! otherwise: an archive never overwrites what it holds. A segment from another cluster is refused
//! before anything is stored.

use std::path::Path;
use std::time::Instant;

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::storage::{ByteRange, ObjectStore, PutBody, Sha256Digest, read_to_end};

use crate::archive::{self, ArchiveInfo, Compression};
use crate::error::{Error, Result};
use crate::settings;
use crate::walfile::{self, SegmentName, WalFileKind};

/// Runs `push`.
///
/// # Errors
/// Anything that keeps the file from being archived; PostgreSQL retries it later.
pub fn run(ctx: &Context, path: &Path) -> Result<u8> {
    let started = Instant::now();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{}: not a WAL file name", path.display())))?;
    let kind = walfile::classify(name).ok_or_else(|| {
        Error::Usage(format!(
            "{name}: not a file PostgreSQL archives (segment, .history, .backup or .partial)"
        ))
    })?;
    let pgdata = settings::pgdata(&ctx.settings)?;
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut identity = cluster_identity(&pgdata)?;
    if matches!(kind, WalFileKind::Segment | WalFileKind::Partial) {
        identity.wal_segment_size = check_segment(name, &data, &identity)?;
    }
    let compression = settings::compression(&ctx.settings)?;
    let timeout = settings::command_timeout(&ctx.settings)?;
    let store = settings::open_store(&ctx.settings)?;
    let outcome = ops_common::cli::runtime_current_thread().block_on(async {
        tokio::time::timeout(timeout, push(&*store, name, &data, compression, &identity)).await
    });
    let outcome = outcome.map_err(|_| Error::Timeout(timeout))??;
    let verb = match outcome {
        Pushed::Stored(stored) => format!("archived ({} → {stored} bytes)", data.len()),
        Pushed::AlreadyThere => "already archived with identical content".to_owned(),
    };
    tracing::info!(
        file = name,
        elapsed_ms = started.elapsed().as_millis(),
        "{name} {verb}"
    );
    Ok(exit::SUCCESS)
}

/// What a push did.
enum Pushed {
    /// Stored, this many bytes after compression.
    Stored(u64),
    /// The archive already had this exact file.
    AlreadyThere,
}

/// Archives `data` as `name`, unless the archive holds it already.
async fn push(
    store: &dyn ObjectStore,
    name: &str,
    data: &[u8],
    compression: Compression,
    identity: &ArchiveInfo,
) -> Result<Pushed> {
    ensure_archive_identity(store, identity).await?;
    let key = archive::wal_key(name);
    let digest = Sha256Digest::of(data);
    match stored_header(store, &key).await? {
        Some(header) if header.sha256 == digest && header.size == data.len() as u64 => {
            return Ok(Pushed::AlreadyThere);
        }
        Some(header) => {
            return Err(Error::Conflict(format!(
                "{name} is already archived with different content ({} bytes, sha256 {}; this file: {} bytes, sha256 {digest}); refusing to overwrite",
                header.size,
                header.sha256,
                data.len()
            )));
        }
        None => {}
    }
    let sealed = archive::seal_with_digest(data, digest, compression);
    let stored = sealed.len() as u64;
    store.put(&key, PutBody::from(sealed)).await?;
    Ok(Pushed::Stored(stored))
}

/// The header of an object already stored under `key`, if there is one.
async fn stored_header(store: &dyn ObjectStore, key: &str) -> Result<Option<archive::Header>> {
    let reader = match store.get(key, Some(ByteRange::new(0, 4096))).await {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let head = read_to_end(store, key, reader).await?;
    let (header, _) = archive::read_header(&head)
        .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(key))))?;
    Ok(Some(header))
}

/// The identity of the cluster in `pgdata` (with the default segment size, which a segment's
/// header or the server's `wal_segment_size` then corrects).
///
/// # Errors
/// When `pg_control` or `PG_VERSION` cannot be read.
pub fn cluster_identity(pgdata: &Path) -> Result<ArchiveInfo> {
    let hint = |e: std::io::Error| {
        Error::io(
            pgdata.join("global/pg_control"),
            std::io::Error::new(
                e.kind(),
                format!("{e} (run from the data directory, or set PGDATA)"),
            ),
        )
    };
    let system_identifier = walfile::read_system_identifier(pgdata).map_err(hint)?;
    let pg_version =
        walfile::read_pg_version(pgdata).map_err(|e| Error::io(pgdata.join("PG_VERSION"), e))?;
    Ok(ArchiveInfo {
        system_identifier: system_identifier.to_string(),
        pg_version,
        wal_segment_size: 16 << 20,
    })
}

/// Checks a segment's header against its name and the cluster; returns the segment size.
fn check_segment(name: &str, data: &[u8], identity: &ArchiveInfo) -> Result<u64> {
    let header = walfile::parse_segment_header(data)
        .map_err(|e| Error::Integrity(format!("{name}: {e}")))?;
    if header.system_identifier.to_string() != identity.system_identifier {
        return Err(Error::Conflict(format!(
            "{name} was written by the cluster with system identifier {}, not this one ({}): refusing another cluster's WAL",
            header.system_identifier, identity.system_identifier
        )));
    }
    let segment_size = u64::from(header.segment_size);
    let base = name.strip_suffix(".partial").unwrap_or(name);
    let position = SegmentName::parse(base, segment_size).ok_or_else(|| {
        Error::Integrity(format!(
            "{name}: not a segment name for {segment_size}-byte segments"
        ))
    })?;
    if position.segno * segment_size != header.page_address {
        return Err(Error::Integrity(format!(
            "{name}: its first page is at {}, not where the name says ({})",
            walfile::format_lsn(header.page_address),
            walfile::format_lsn(position.segno * segment_size)
        )));
    }
    if data.len() as u64 != segment_size {
        return Err(Error::Integrity(format!(
            "{name}: {} bytes, but segments are {segment_size} bytes",
            data.len()
        )));
    }
    Ok(segment_size)
}

/// Checks that the archive belongs to this cluster, recording the cluster if the archive is new.
///
/// # Errors
/// When the archive belongs to another cluster or cannot be read.
///
/// # Panics
/// Never: the record always serializes.
pub async fn ensure_archive_identity(
    store: &dyn ObjectStore,
    identity: &ArchiveInfo,
) -> Result<()> {
    match store.get_bytes(archive::ARCHIVE_KEY).await {
        Ok(bytes) => {
            let recorded: ArchiveInfo = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Integrity(format!("{}: {e}", store.describe(archive::ARCHIVE_KEY)))
            })?;
            if recorded.system_identifier != identity.system_identifier {
                return Err(Error::Conflict(format!(
                    "the archive at {} belongs to the cluster with system identifier {}, not this one ({}); give this cluster its own WALG_S3_PREFIX/WALG_FILE_PREFIX",
                    store.url(),
                    recorded.system_identifier,
                    identity.system_identifier
                )));
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => {
            let json = serde_json::to_vec_pretty(identity).expect("serializes");
            store.put(archive::ARCHIVE_KEY, PutBody::from(json)).await?;
            tracing::info!(store = %store.url(), system_identifier = %identity.system_identifier, "new archive");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
