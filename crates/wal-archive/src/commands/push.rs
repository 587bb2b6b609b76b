//! `wal-archive push %p`: archive one WAL file, for `archive_command`.
//!
//! Returns 0 only once the object is durable in the store and its checksum was confirmed by it
//! (Content-MD5 on S3; fsync on a local store). A file already in the archive is accepted when it
//! is byte-identical (PostgreSQL re-archives after a crash before it recorded success) and refused
//! otherwise: an archive never overwrites what it holds. A segment from another cluster is refused
//! before anything is stored.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::metrics::Metrics;
use ops_common::storage::{ByteRange, ObjectStore, PutBody, read_to_end};

use crate::archive::{self, ArchiveInfo};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::settings::{self, WALG_UPLOAD_CONCURRENCY};
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
    let state = UploadState::new(&pgdata);
    if kind == WalFileKind::Segment && state.take_marker(name, path) {
        tracing::info!(
            file = name,
            elapsed_ms = started.elapsed().as_millis(),
            "{name} was archived by an earlier parallel push"
        );
        write_metrics(ctx, &pgdata);
        return Ok(exit::SUCCESS);
    }
    let file = WalFile::open(path)?;
    let mut identity = cluster_identity(&pgdata)?;
    if matches!(kind, WalFileKind::Segment | WalFileKind::Partial) {
        identity.wal_segment_size = check_segment(name, &file, &identity)?;
    }
    let codec = settings::codec(&ctx.settings)?;
    identity.encryption = codec.fingerprint();
    let timeout = settings::command_timeout(&ctx.settings)?;
    let store = settings::open_store(&ctx.settings)?;
    let parallel = settings::concurrency(&ctx.settings, &WALG_UPLOAD_CONCURRENCY)?;
    let others = if kind == WalFileKind::Segment {
        state.ready_segments(name, parallel - 1)
    } else {
        Vec::new()
    };
    // Several segments compress in parallel on a multi-threaded runtime; one alone starts faster
    // on a single thread.
    let runtime = if others.is_empty() {
        ops_common::cli::runtime_current_thread()
    } else {
        ops_common::cli::runtime()
    };
    let outcome = ops_common::cli::block_on_within(runtime, timeout, async {
        ensure_archive_identity(&*store, &identity).await?;
        let mut extra = tokio::task::JoinSet::new();
        for other in others {
            let (store, identity, state, codec) = (
                store.clone(),
                identity.clone(),
                state.clone(),
                codec.clone(),
            );
            extra.spawn(async move {
                let result = push_ready(&*store, &state, &other, &codec, &identity).await;
                (other, result)
            });
        }
        let main = push(&*store, name, &file, &codec).await;
        while let Some(done) = extra.join_next().await {
            match done {
                Ok((other, Ok(()))) => {
                    tracing::debug!(file = %other, "archived ahead of PostgreSQL's request");
                }
                Ok((other, Err(e))) => {
                    tracing::warn!(file = %other, "archiving ahead failed (PostgreSQL will ask again): {}", ops_common::one_line(&e));
                }
                Err(e) => tracing::warn!("archiving ahead failed: {e}"),
            }
        }
        main
    });
    let outcome = outcome.ok_or(Error::Timeout(timeout))??;
    let verb = match outcome {
        Pushed::Stored(stored) => format!("archived ({} → {stored} bytes)", file.size),
        Pushed::AlreadyThere => "already archived with identical content".to_owned(),
    };
    tracing::info!(
        file = name,
        elapsed_ms = started.elapsed().as_millis(),
        "{name} {verb}"
    );
    write_metrics(ctx, &pgdata);
    Ok(exit::SUCCESS)
}

/// Push metrics: when the last push succeeded and how many segments wait to be archived.
fn write_metrics(ctx: &Context, pgdata: &Path) {
    if ctx
        .settings
        .get(&ops_common::vars::OPS_METRICS_DIR)
        .is_none()
    {
        return;
    }
    let waiting = std::fs::read_dir(pgdata.join("pg_wal/archive_status")).map_or(0, |entries| {
        entries
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
            .count()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut metrics = Metrics::new("wal-archive", "push");
    metrics
        .gauge(
            "push_last_success_timestamp_seconds",
            "When a WAL file was last archived (Unix time).",
            &[],
            now.as_secs_f64(),
        )
        .gauge(
            "push_ready_segments",
            "WAL files PostgreSQL has marked ready and not yet archived.",
            &[],
            waiting as f64,
        );
    ctx.write_metrics(&metrics);
}

/// Archives a segment PostgreSQL has marked `.ready` but not asked for yet, and remembers it so
/// that PostgreSQL's own request for it returns at once.
async fn push_ready(
    store: &dyn ObjectStore,
    state: &UploadState,
    name: &str,
    codec: &Codec,
    identity: &ArchiveInfo,
) -> Result<()> {
    let path = state.pg_wal.join(name);
    // Taken before the read: a file changed after it would no longer match the marker.
    let version = file_version(&path).map_err(|e| Error::io(&path, e))?;
    let file = WalFile::open(&path)?;
    check_segment(name, &file, identity)?;
    push(store, name, &file, codec).await?;
    state.write_marker(name, &version)
}

/// One version of a file: its device, inode, size and modification time, which any write changes.
fn file_version(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok(format!(
        "{} {} {} {}.{:09}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// Segments archived ahead of PostgreSQL's request, remembered in `pg_wal/wal-archive.d/uploaded/`
/// (a directory PostgreSQL ignores) with the version of the file that was stored
/// ([`file_version`]). A marker is written only once the segment is durable in the archive, and
/// used only if the file is still that version: PostgreSQL never writes a segment once it is
/// marked ready, so PostgreSQL's own request returns without reading or hashing 16 MiB again.
#[derive(Debug, Clone)]
struct UploadState {
    pg_wal: PathBuf,
    markers: PathBuf,
}

impl UploadState {
    fn new(pgdata: &Path) -> Self {
        let pg_wal = pgdata.join("pg_wal");
        let markers = pg_wal.join("wal-archive.d/uploaded");
        Self { pg_wal, markers }
    }

    /// Consumes the marker of `name`: true if it says the archive holds the file at `path` as it
    /// is now.
    fn take_marker(&self, name: &str, path: &Path) -> bool {
        let marker = self.markers.join(name);
        let Ok(recorded) = std::fs::read_to_string(&marker) else {
            return false;
        };
        let _ = std::fs::remove_file(&marker);
        file_version(path).is_ok_and(|version| recorded.trim() == version)
    }

    fn write_marker(&self, name: &str, version: &str) -> Result<()> {
        ops_common::fsutil::create_dir_all_durable(&self.markers)?;
        ops_common::fsutil::write_atomic(&self.markers.join(name), version.as_bytes(), 0o600)?;
        Ok(())
    }

    /// Up to `limit` segments marked ready, oldest first, other than `requested` and those
    /// already archived ahead. Also forgets markers whose segment is gone.
    fn ready_segments(&self, requested: &str, limit: usize) -> Vec<String> {
        if let Ok(entries) = std::fs::read_dir(&self.markers) {
            for entry in entries.filter_map(std::result::Result::ok) {
                if !self.pg_wal.join(entry.file_name()).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(self.pg_wal.join("archive_status")) else {
            return Vec::new();
        };
        let mut ready: Vec<String> = entries
            .filter_map(std::result::Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".ready")
                    .map(str::to_owned)
            })
            .filter(|name| {
                name != requested
                    && walfile::classify(name) == Some(WalFileKind::Segment)
                    && !self.markers.join(name).exists()
            })
            .collect();
        ready.sort();
        ready.truncate(limit);
        ready
    }
}

/// What a push did.
enum Pushed {
    /// Stored, this many bytes after compression.
    Stored(u64),
    /// The archive already had this exact file.
    AlreadyThere,
}

/// A WAL file to archive: open, with its size and first bytes.
struct WalFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    /// The first page (or the whole file, if shorter), for [`check_segment`].
    head: Vec<u8>,
}

impl WalFile {
    /// How much of the start is read for the checks: the first page, whose long header names
    /// the cluster and the segment.
    const HEAD: u64 = 8192;

    fn open(path: &Path) -> Result<Self> {
        use std::os::unix::fs::FileExt as _;
        let io = |e| Error::io(path, e);
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut head = vec![0; usize::try_from(size.min(Self::HEAD)).expect("small")];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            head,
        })
    }

    /// Its identity and the object to store, reading the file from its start.
    fn seal(&self, codec: &Codec) -> Result<(ops_common::storage::Sha256Digest, Vec<u8>)> {
        use std::io::{Seek as _, SeekFrom};
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| codec.seal_reader(file, self.size))
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Whether the file holds exactly `content`.
    fn holds(&self, content: &[u8]) -> Result<bool> {
        use std::os::unix::fs::FileExt as _;
        if content.len() as u64 != self.size {
            return Ok(false);
        }
        let mut data = vec![0; content.len()];
        self.file
            .read_exact_at(&mut data, 0)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(data == content)
    }
}

/// Archives `file` as `name`, unless the archive holds it already. The caller has checked that
/// the archive is this cluster's ([`ensure_archive_identity`]).
async fn push(
    store: &dyn ObjectStore,
    name: &str,
    file: &WalFile,
    codec: &Codec,
) -> Result<Pushed> {
    let key = archive::wal_key(name);
    // Compressed before knowing whether the archive has it already: that is the rare case, and
    // hashing and compressing together is what makes the common one fast.
    let (id, sealed) = file.seal(codec)?;
    if let Some(header) = stored_header(store, &key).await? {
        let (stored_id, stored_size) = Codec::stored_id(&header);
        let same = if stored_size.is_some_and(|size| size != file.size) {
            false
        } else if stored_id == id {
            true
        } else if matches!(header, archive::Header::Encrypted { .. }) {
            // Both are keyed identities of the content: they differ only if the contents do. (A
            // server holding only the public keys could not read the stored object anyway.)
            false
        } else {
            // A plain object's identity is its payload's, which differs when the compression
            // changed since the first push (another method, another zstd): only the contents
            // can tell.
            let stored = store.get_bytes(&key).await?;
            let content = codec
                .open(&stored)
                .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))?;
            file.holds(&content)?
        };
        if same {
            return Ok(Pushed::AlreadyThere);
        }
        return Err(Error::Conflict(format!(
            "{name} is already archived with different content; refusing to overwrite"
        )));
    }
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
        encryption: None,
    })
}

/// Checks a segment's header against its name and the cluster; returns the segment size.
fn check_segment(name: &str, file: &WalFile, identity: &ArchiveInfo) -> Result<u64> {
    let header = walfile::parse_segment_header(&file.head)
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
    if file.size != segment_size {
        return Err(Error::Integrity(format!(
            "{name}: {} bytes, but segments are {segment_size} bytes",
            file.size
        )));
    }
    Ok(segment_size)
}

fn describe_encryption(fingerprint: Option<&str>) -> String {
    fingerprint.map_or_else(
        || "not encrypted".to_owned(),
        |f| format!("encrypted ({f})"),
    )
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
            if recorded.encryption != identity.encryption {
                return Err(Error::Conflict(format!(
                    "the archive at {} is {}, but the settings say {}: one archive cannot mix them",
                    store.url(),
                    describe_encryption(recorded.encryption.as_deref()),
                    describe_encryption(identity.encryption.as_deref())
                )));
            }
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
