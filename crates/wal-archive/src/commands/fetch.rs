//! `wal-archive fetch %f %p`: restore one WAL file, for `restore_command`.
//!
//! PostgreSQL asks for files that do not exist as a matter of course (the next timeline's history
//! file, the segment after the last one): those end with status 1 and nothing on stderr. Anything
//! else that goes wrong — the store unreachable after retries, a corrupt object, the time limit —
//! must not look like "not found", or PostgreSQL would end recovery there and silently lose
//! everything after it: those end with status 200, which makes PostgreSQL stop recovery instead.
//!
//! Recovery asks for segments one at a time, waiting for each download. So, like WAL-G, a fetch
//! of a segment starts a background `prefetch` of the next ones into `pg_wal/wal-archive.d/prefetch/`
//! (a directory PostgreSQL ignores), as the envelopes they are stored in: a prefetched segment is
//! checked against its SHA-256 when it is used, exactly like one fetched directly.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::fsutil::{self, AtomicFile};
use ops_common::storage::ObjectStore;

use crate::archive::{self, ArchiveInfo};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::settings::{self, WALG_DOWNLOAD_CONCURRENCY};
use crate::walfile::{self, SegmentName, WalFileKind};

/// A prefetch running longer than this is taken for dead and may be started again.
const PREFETCH_STALE: Duration = Duration::from_secs(120);

/// Runs `fetch`.
///
/// # Errors
/// [`Error::AbortRecovery`] for everything but a file that is not in the archive.
pub fn run(ctx: &Context, name: &str, destination: &Path, settings_args: &[String]) -> Result<u8> {
    match fetch(ctx, name, destination, settings_args) {
        Ok(true) => Ok(exit::SUCCESS),
        Ok(false) => {
            tracing::debug!(file = name, "not in the archive");
            Ok(exit::FAILURE)
        }
        Err(e) => Err(Error::AbortRecovery {
            file: name.to_owned(),
            cause: Box::new(e),
        }),
    }
}

/// Fetches `name` into `destination`; `Ok(false)` when the archive does not have it.
fn fetch(ctx: &Context, name: &str, destination: &Path, settings_args: &[String]) -> Result<bool> {
    let Some(kind) = walfile::classify(name) else {
        // Nothing that is not a WAL file name is ever archived.
        return Ok(false);
    };
    let prefetch = PrefetchDir::new(&settings::pgdata(&ctx.settings)?);
    let concurrency = settings::concurrency(&ctx.settings, &WALG_DOWNLOAD_CONCURRENCY)?;
    let codec = settings::codec(&ctx.settings)?;
    if kind == WalFileKind::Segment {
        prefetch.forget_before(name);
        if let Some(sealed) = prefetch.take(name) {
            match codec.open(&sealed) {
                Ok(data) => {
                    write_destination(destination, &data)?;
                    tracing::debug!(file = name, "restored from the prefetch directory");
                    prefetch.start(name, settings_args, concurrency);
                    return Ok(true);
                }
                Err(e) => tracing::warn!(
                    file = name,
                    "prefetched copy is damaged ({e}); fetching it again"
                ),
            }
        }
    }
    let timeout = settings::command_timeout(&ctx.settings)?;
    let store = settings::open_store(&ctx.settings)?;
    let key = archive::wal_key(name);
    let fetched = ops_common::cli::block_on_within(
        ops_common::cli::runtime_current_thread(),
        timeout,
        async {
            match store.get_bytes(&key).await {
                Err(e) if e.is_not_found() => archive_exists(&*store).await.map(|()| None),
                fetched => Ok(Some(fetched?)),
            }
        },
    )
    .ok_or(Error::Timeout(timeout))??;
    let Some(sealed) = fetched else {
        return Ok(false);
    };
    let data = codec
        .open(&sealed)
        .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))?;
    write_destination(destination, &data)?;
    tracing::debug!(file = name, bytes = data.len(), "restored");
    if kind == WalFileKind::Segment {
        prefetch.start(name, settings_args, concurrency);
    }
    Ok(true)
}

/// Makes sure the store holds an archive, so that "not found" means the file and not the whole
/// archive: an unmounted directory or a mistyped prefix must stop recovery, not end it as if the
/// archive had been read to its end.
async fn archive_exists(store: &dyn ObjectStore) -> Result<()> {
    match store.head(archive::ARCHIVE_KEY).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Err(Error::Integrity(format!(
            "{} holds no archive ({} is missing); check WALG_FILE_PREFIX or WALG_S3_PREFIX",
            store.describe(""),
            archive::ARCHIVE_KEY
        ))),
        Err(e) => Err(e.into()),
    }
}

fn write_destination(destination: &Path, data: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(destination, 0o600)?;
    file.write_all(data)
        .map_err(|e| Error::io(destination, e))?;
    file.commit()?;
    Ok(())
}

/// `pg_wal/wal-archive.d/prefetch/` of the cluster being recovered.
struct PrefetchDir {
    dir: PathBuf,
}

impl PrefetchDir {
    fn new(pgdata: &Path) -> Self {
        Self {
            dir: pgdata.join("pg_wal/wal-archive.d/prefetch"),
        }
    }

    /// Takes a prefetched envelope out of the directory.
    fn take(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let sealed = std::fs::read(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        Some(sealed)
    }

    /// Removes prefetched segments recovery has moved past, or of another timeline.
    fn forget_before(&self, name: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(std::result::Result::ok) {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            if walfile::classify(file) == Some(WalFileKind::Segment)
                && (file[..8] != name[..8] || file[8..] < name[8..])
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Starts `wal-archive prefetch` in the background for the segments after `name`, unless one
    /// is already running. Failing to start it only costs speed.
    fn start(&self, name: &str, settings_args: &[String], count: usize) {
        if count < 2 || self.running() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let spawned = std::process::Command::new(exe)
            .args(settings_args)
            .args(["prefetch", name, "--count", &count.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group, so it outlives this short-lived command quietly.
            .process_group(0)
            .spawn();
        if let Err(e) = spawned {
            tracing::debug!("prefetch not started: {e}");
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("running")
    }

    fn running(&self) -> bool {
        std::fs::metadata(self.lock_path())
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < PREFETCH_STALE)
    }
}

/// Runs the hidden `prefetch` command: downloads the `count` segments after `after` (on its
/// timeline) that are not there yet, several at a time, and stops at the first that is not archived.
///
/// # Errors
/// When the prefetch directory cannot be written; download failures only end the prefetch.
pub fn prefetch(ctx: &Context, after: &str, count: usize) -> Result<u8> {
    let prefetch = PrefetchDir::new(&settings::pgdata(&ctx.settings)?);
    fsutil::create_dir_all_durable(&prefetch.dir)?;
    let lock = prefetch.lock_path();
    if prefetch.running() {
        return Ok(exit::SUCCESS);
    }
    fsutil::write_atomic(&lock, std::process::id().to_string().as_bytes(), 0o600)?;
    let store = settings::open_store(&ctx.settings)?;
    let timeout = settings::command_timeout(&ctx.settings)?;
    let codec = settings::codec(&ctx.settings)?;
    let fetched = ops_common::cli::block_on_within(
        ops_common::cli::runtime(),
        timeout,
        download_ahead(store, &codec, &prefetch.dir, after, count),
    );
    let _ = std::fs::remove_file(&lock);
    match fetched {
        Some(Ok(n)) => tracing::debug!(after, segments = n, "prefetched"),
        Some(Err(e)) => tracing::debug!(after, "prefetch stopped: {}", ops_common::one_line(&e)),
        None => tracing::debug!(after, "prefetch stopped after {timeout:?}"),
    }
    Ok(exit::SUCCESS)
}

async fn download_ahead(
    store: std::sync::Arc<dyn ObjectStore>,
    codec: &Codec,
    dir: &Path,
    after: &str,
    count: usize,
) -> Result<usize> {
    let info: ArchiveInfo =
        serde_json::from_slice(&store.get_bytes(archive::ARCHIVE_KEY).await?)
            .map_err(|e| Error::Integrity(format!("{}: {e}", archive::ARCHIVE_KEY)))?;
    let segment_size = info.wal_segment_size;
    let start = SegmentName::parse(after, segment_size)
        .ok_or_else(|| Error::Usage(format!("{after}: not a segment name")))?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=count as u64 {
        let name = SegmentName {
            segno: start.segno + n,
            ..start
        }
        .file_name(segment_size);
        if dir.join(&name).exists() {
            continue;
        }
        let (store, dir, codec) = (store.clone(), dir.to_path_buf(), codec.clone());
        tasks.spawn(async move {
            let sealed = match store.get_bytes(&archive::wal_key(&name)).await {
                Ok(sealed) => sealed,
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(Error::from(e)),
            };
            // Only a verified copy is kept; it is verified again when used.
            codec
                .open(&sealed)
                .map_err(|e| Error::Integrity(format!("{name}: {e}")))?;
            fsutil::write_atomic(&dir.join(&name), &sealed, 0o600)?;
            Ok(true)
        });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        if result.map_err(|e| Error::Server(e.to_string()))?? {
            done += 1;
        }
    }
    Ok(done)
}
