//! `wal-archive backup`: a base backup of the data directory.
//!
//! The non-exclusive API on one held connection: `pg_backup_start`, copy the data directory,
//! `pg_backup_stop` (which waits until the WAL the backup needs is archived), then store the backup
//! label, the manifest and, last, the completion marker. Files are cut into 1 MiB chunks stored by
//! their SHA-256, so a chunk any earlier backup stored is not uploaded again: every backup is
//! complete on its own, and an unchanged database costs only its manifest.
//!
//! If the command dies half-way, PostgreSQL ends the backup when the connection drops, no marker is
//! written (so the backup does not exist), and the chunks already stored are reused by the next one.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use ops_common::cli::Context;
use ops_common::exit;
use ops_common::fsutil::{self, PageBuffer};
use ops_common::metrics::Metrics;
use ops_common::storage::{ObjectStore, PutBody, Sha256Digest};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::archive::{self, ArchiveInfo, BACKUP_MARKER};
use crate::codec::Codec;
use crate::commands::push::ensure_archive_identity;
use crate::error::{Error, Result};
use crate::locks::Lock;
use crate::manifest::{BackupInfo, CHUNK_SIZE, DirEntry, FileEntry, LinkEntry, Manifest};
use crate::settings::{self, WALG_UPLOAD_CONCURRENCY};
use crate::walfile::{self, SegmentName};

/// How long a backup waits for its WAL to reach the archive before it is abandoned: with
/// archiving working it takes a fraction of a second; past this, archiving is broken.
const STOP_TIMEOUT: Duration = Duration::from_mins(10);

/// Directories whose contents PostgreSQL recreates or does not need (the documentation's list,
/// as `pg_basebackup` applies it); the directories themselves are kept.
const EXCLUDED_DIR_CONTENTS: &[&str] = &[
    "pg_wal",
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Files never copied: server state, and files a restore writes itself.
const EXCLUDED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "recovery.signal",
    "standby.signal",
    "wal-archive-restore.log",
];

/// Runs `backup` and prints its summary.
///
/// # Errors
/// Anything that stops the backup; no marker is written then.
pub fn run(ctx: &Context, json: bool) -> Result<u8> {
    let started = Instant::now();
    let settings = &ctx.settings;
    let pgdata = settings::pgdata(settings)?;
    let store = settings::open_store(settings)?;
    let codec = settings::codec(settings)?;
    let concurrency = settings::concurrency(settings, &WALG_UPLOAD_CONCURRENCY)?;
    let pg = settings::pg_config(settings)?;
    let info = ops_common::cli::runtime().block_on(backup(
        ctx,
        &pg,
        store,
        &pgdata,
        codec.clone(),
        concurrency,
    ))?;
    let mut metrics = Metrics::new("wal-archive", "backup");
    metrics
        .gauge(
            "backup_success",
            "1 if the last backup completed.",
            &[],
            1.0,
        )
        .gauge(
            "backup_duration_seconds",
            "How long the last backup took.",
            &[],
            started.elapsed().as_secs_f64(),
        )
        .gauge(
            "backup_size_bytes",
            "Size of the data directory in the last backup.",
            &[],
            info.size_bytes as f64,
        )
        .gauge(
            "backup_stored_bytes",
            "Bytes the last backup added to the archive.",
            &[],
            info.stored_bytes as f64,
        )
        .gauge(
            "backup_files",
            "Files in the last backup.",
            &[],
            info.files as f64,
        )
        .gauge(
            "backup_timestamp_seconds",
            "When the last backup finished (Unix time).",
            &[],
            info.stop_time.timestamp() as f64,
        );
    ctx.write_metrics(&metrics);
    if json {
        ops_common::output::print_json(&info)?;
    } else {
        ops_common::output::print(&format!(
            "{}: {} files, {} bytes, {} bytes stored ({} of {} chunks new), WAL {} to {} on timeline {}, {:.1}s\n",
            info.name,
            info.files,
            info.size_bytes,
            info.stored_bytes,
            info.new_chunks,
            info.chunks,
            info.start_lsn,
            info.stop_lsn,
            info.timeline,
            started.elapsed().as_secs_f64()
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// What the server says about itself before a backup.
struct ServerFacts {
    system_identifier: String,
    wal_segment_size: u64,
}

async fn check_server(client: &tokio_postgres::Client, pgdata: &Path) -> Result<ServerFacts> {
    let row = client
        .query_one(
            "select current_setting('server_version_num')::int, pg_is_in_recovery(), \
             current_setting('data_directory'), current_setting('archive_mode'), \
             current_setting('archive_command'), (select system_identifier::text from pg_control_system()), \
             (select setting::bigint from pg_settings where name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(|e| Error::db("reading the server's settings", e))?;
    let version: i32 = row.get(0);
    if !(150_000..160_000).contains(&version) {
        return Err(Error::Server(format!(
            "the server is version {version}; wal-archive supports PostgreSQL 15"
        )));
    }
    if row.get::<_, bool>(1) {
        return Err(Error::Server(
            "the server is a standby; take backups from the primary".to_owned(),
        ));
    }
    let data_directory: String = row.get(2);
    let same = std::fs::canonicalize(&data_directory).ok() == std::fs::canonicalize(pgdata).ok();
    if !same {
        return Err(Error::Server(format!(
            "the server's data directory is {data_directory}, not {} (set PGDATA or --pgdata to it, or PGHOST/PGPORT to its server)",
            pgdata.display()
        )));
    }
    let archive_mode: String = row.get(3);
    let archive_command: String = row.get(4);
    if archive_mode == "off" || archive_command.trim().is_empty() {
        return Err(Error::Server(
            "archive_mode is off or archive_command is empty: a base backup is useless without the WAL archived during and after it"
                .to_owned(),
        ));
    }
    let wal_segment_size: i64 = row.get(6);
    Ok(ServerFacts {
        system_identifier: row.get(5),
        wal_segment_size: u64::try_from(wal_segment_size).unwrap_or(16 << 20),
    })
}

async fn backup(
    ctx: &Context,
    pg: &tokio_postgres::Config,
    store: Arc<dyn ObjectStore>,
    pgdata: &Path,
    codec: Codec,
    concurrency: usize,
) -> Result<BackupInfo> {
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::db("connecting", e))?;
    let connection = tokio::spawn(connection);
    let facts = check_server(&client, pgdata).await?;
    let identity = ArchiveInfo {
        system_identifier: facts.system_identifier.clone(),
        pg_version: 15,
        wal_segment_size: facts.wal_segment_size,
        encryption: codec.fingerprint(),
    };
    ensure_archive_identity(&*store, &identity).await?;
    let name = unused_name(&*store).await?;
    let lock = Lock::take(
        &*store,
        &format!("locks/backup-{name}.json"),
        "backup",
        "locks/delete",
    )
    .await?;
    let result = backup_locked(
        ctx,
        client,
        store.clone(),
        pgdata,
        codec.clone(),
        concurrency,
        facts,
        name,
    )
    .await;
    lock.release(&*store).await;
    drop(connection);
    result
}

/// The backup proper, once the archive is locked against a concurrent delete.
#[allow(clippy::too_many_arguments)] // One call site, all of them the backup's own inputs.
async fn backup_locked(
    ctx: &Context,
    client: tokio_postgres::Client,
    store: Arc<dyn ObjectStore>,
    pgdata: &Path,
    codec: Codec,
    concurrency: usize,
    facts: ServerFacts,
    name: String,
) -> Result<BackupInfo> {
    let known = known_chunks(&*store).await?;

    let start_time = Utc::now();
    let span = tracing::info_span!("backup", name = %name);
    let _enter = span.enter();
    let start_lsn: String = client
        .query_one("select pg_backup_start($1, true)::text", &[&name])
        .await
        .map_err(|e| Error::db("pg_backup_start", e))?
        .get(0);
    tracing::info!(start_lsn, "backup started");

    let tree = walk(pgdata)?;
    let total: u64 = tree.files.iter().map(|f| f.1).sum();
    let progress = ops_common::progress::bytes(total, "backup", ctx.log_format);
    let copied = copy_files(
        pgdata,
        &tree.files,
        store.clone(),
        codec.clone(),
        concurrency,
        known,
        &progress,
    )
    .await?;
    progress.finish_and_clear();

    // Not PostgreSQL's own wait for archiving: it polls once a second, and it only knows that
    // archive_command succeeded. The backup waits instead for the WAL in this archive.
    let stop = client
        .query_one(
            "select lsn::text, labelfile, spcmapfile from pg_backup_stop(false)",
            &[],
        )
        .await
        .map_err(|e| Error::db("pg_backup_stop", e))?;
    let stopped = Stopped {
        time: Utc::now(),
        lsn: stop.get(0),
        label: stop.get(1),
        tablespace_map: stop.get(2),
    };
    drop(client);
    wait_until_archived(&*store, &stopped, facts.wal_segment_size).await?;
    let manifest = Manifest {
        name: name.clone(),
        chunk_size: CHUNK_SIZE,
        dirs: tree.dirs,
        files: copied.files,
        links: tree.links,
    };
    let started = Started {
        name,
        time: start_time,
        lsn: start_lsn,
    };
    record(
        &*store,
        codec.clone(),
        &facts,
        started,
        stopped,
        &manifest,
        copied.stored_bytes,
        copied.new_chunks,
    )
    .await
}

/// Waits until the archive holds the segment with the backup's last WAL (the one PostgreSQL
/// switched away from in `pg_backup_stop`): until then the backup cannot be restored, so its
/// completion marker must not be written.
///
/// # Errors
/// When the segment has not arrived after [`STOP_TIMEOUT`], or the archive cannot be read.
async fn wait_until_archived(
    store: &dyn ObjectStore,
    stopped: &Stopped,
    segment_size: u64,
) -> Result<()> {
    let timeline = stopped.timeline();
    let stop_lsn = walfile::parse_lsn(&stopped.lsn).unwrap_or_default();
    // The segment holding the last byte before the stop point, as PostgreSQL names it.
    let last = SegmentName::of_lsn(timeline, stop_lsn.saturating_sub(1), segment_size)
        .file_name(segment_size);
    let key = archive::wal_key(&last);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        match store.head(&key).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(Error::Server(format!(
                "the backup's last WAL segment {last} is not in the archive after {STOP_TIMEOUT:?}: archive_command must run `wal-archive push %p` with these settings, and it is failing or archives elsewhere (see pg_stat_archiver)"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// What `pg_backup_start` gave.
struct Started {
    name: String,
    time: chrono::DateTime<Utc>,
    lsn: String,
}

/// What `pg_backup_stop` gave.
struct Stopped {
    time: chrono::DateTime<Utc>,
    lsn: String,
    label: String,
    tablespace_map: Option<String>,
}

impl Stopped {
    /// The backup's timeline, from its label (a backup of a primary never changes timeline).
    fn timeline(&self) -> u32 {
        label_field(&self.label, "START TIMELINE")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1)
    }
}

/// Stores the label, the map and the manifest, then the completion marker, last.
#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename the same eight values.
async fn record(
    store: &dyn ObjectStore,
    codec: Codec,
    facts: &ServerFacts,
    started: Started,
    stopped: Stopped,
    manifest: &Manifest,
    stored_bytes: u64,
    new_chunks: u64,
) -> Result<BackupInfo> {
    let name = &started.name;
    let put_sealed = |object: &'static str, data: Vec<u8>, codec: Codec| async move {
        let (digest, sealed) = codec.seal(&data);
        store
            .put(&archive::backup_key(name, object), PutBody::from(sealed))
            .await?;
        Ok::<_, Error>(digest)
    };
    let timeline = stopped.timeline();
    let start_wal_file = SegmentName::of_lsn(
        timeline,
        walfile::parse_lsn(&started.lsn).unwrap_or_default(),
        facts.wal_segment_size,
    )
    .file_name(facts.wal_segment_size);
    let backup_label_id =
        put_sealed("backup_label", stopped.label.into_bytes(), codec.clone()).await?;
    let tablespace_map_id = match stopped.tablespace_map.filter(|m| !m.is_empty()) {
        Some(map) => Some(put_sealed("tablespace_map", map.into_bytes(), codec.clone()).await?),
        None => None,
    };
    let manifest_id = put_sealed(
        "manifest",
        serde_json::to_vec(manifest).expect("manifest serializes"),
        codec.clone(),
    )
    .await?;
    // The chunk index stays plain (identities reveal nothing), for retention without keys.
    let chunk_ids: std::collections::BTreeSet<Sha256Digest> = manifest
        .files
        .iter()
        .flat_map(|f| f.chunks.iter().copied())
        .collect();
    let index = archive::seal(
        &serde_json::to_vec(&chunk_ids).expect("index serializes"),
        archive::Compression::Zstd,
    );
    store
        .put(
            &archive::backup_key(name, crate::manifest::CHUNK_INDEX),
            PutBody::from(index),
        )
        .await?;
    let info = BackupInfo {
        name: name.clone(),
        system_identifier: facts.system_identifier.clone(),
        pg_version: 15,
        wal_segment_size: facts.wal_segment_size,
        timeline,
        start_lsn: started.lsn,
        stop_lsn: stopped.lsn,
        start_wal_file,
        start_time: started.time,
        stop_time: stopped.time,
        files: manifest.files.len() as u64,
        size_bytes: manifest.files.iter().map(|f| f.size).sum(),
        stored_bytes,
        chunks: manifest.files.iter().map(|f| f.chunks.len() as u64).sum(),
        new_chunks,
        manifest_id,
        backup_label_id,
        tablespace_map_id,
    };
    let marker = serde_json::to_vec_pretty(&info).expect("marker serializes");
    store
        .put(
            &archive::backup_key(name, BACKUP_MARKER),
            PutBody::from(marker),
        )
        .await?;
    tracing::info!(stop_lsn = %info.stop_lsn, "backup complete");
    Ok(info)
}

/// A name for the new backup from the current time, unique in the archive.
async fn unused_name(store: &dyn ObjectStore) -> Result<String> {
    let base = format!("base_{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut name = base.clone();
    for n in 2.. {
        if store.list(&format!("backups/{name}/")).await?.is_empty() {
            break;
        }
        name = format!("{base}_{n}");
    }
    Ok(name)
}

/// The chunks the archive already holds.
async fn known_chunks(store: &dyn ObjectStore) -> Result<HashSet<Sha256Digest>> {
    Ok(store
        .list("chunks/")
        .await?
        .iter()
        .filter_map(|m| {
            m.key
                .rsplit('/')
                .next()
                .and_then(|hex| Sha256Digest::from_hex(hex).ok())
        })
        .collect())
}

/// A value from the backup label, e.g. `START TIMELINE: 1`.
pub fn label_field<'a>(label: &'a str, field: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// The data directory's entries to back up.
struct Tree {
    dirs: Vec<DirEntry>,
    /// Relative path and size at the time of the walk.
    files: Vec<(String, u64, u32)>,
    links: Vec<LinkEntry>,
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Lists the data directory, applying the exclusions.
fn walk(pgdata: &Path) -> Result<Tree> {
    let mut tree = Tree {
        dirs: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
    };
    let tablespaces = std::fs::read_dir(pgdata.join("pg_tblspc")).map_or(0, Iterator::count);
    if tablespaces > 0 {
        return Err(Error::Server(
            "the cluster has tablespaces (pg_tblspc is not empty), which wal-archive does not back up".to_owned(),
        ));
    }
    walk_dir(pgdata, "", &mut tree)?;
    // Largest first, so the long files start early and the parallel workers finish together.
    tree.files.sort_by_key(|f| std::cmp::Reverse(f.1));
    Ok(tree)
}

fn walk_dir(root: &Path, relative: &str, tree: &mut Tree) -> Result<()> {
    let dir = root.join(relative);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // A directory dropped during the backup (a dropped database): WAL replay recreates the truth.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        names.push(entry.file_name().into_string().map_err(|n| {
            Error::Server(format!(
                "non-UTF-8 file name {} in {}",
                n.display(),
                dir.display()
            ))
        })?);
    }
    names.sort();
    for name in names {
        let path = if relative.is_empty() {
            name.clone()
        } else {
            format!("{relative}/{name}")
        };
        let full = root.join(&path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&full, e)),
        };
        if EXCLUDED_FILES.contains(&name.as_str())
            || name.starts_with("pgsql_tmp")
            || name == "pg_internal.init"
        {
            continue;
        }
        let top_level_excluded =
            relative.is_empty() && EXCLUDED_DIR_CONTENTS.contains(&name.as_str());
        if meta.file_type().is_symlink() {
            if top_level_excluded {
                // pg_wal on another disk: restore it as a plain directory.
                tree.dirs.push(DirEntry { path, mode: 0o700 });
            } else {
                let target = std::fs::read_link(&full).map_err(|e| Error::io(&full, e))?;
                tree.links.push(LinkEntry {
                    path,
                    target: target.to_string_lossy().into_owned(),
                });
            }
        } else if meta.is_dir() {
            tree.dirs.push(DirEntry {
                path: path.clone(),
                mode: mode_of(&meta),
            });
            if !top_level_excluded {
                walk_dir(root, &path, tree)?;
            }
        } else if meta.is_file() {
            tree.files.push((path, meta.len(), mode_of(&meta)));
        }
    }
    Ok(())
}

/// The outcome of copying the files.
struct Copied {
    files: Vec<FileEntry>,
    stored_bytes: u64,
    new_chunks: u64,
}

/// How many stores each compressing uploader may have waiting at once. A store is mostly waiting
/// (an fsync on a local store, a round trip to S3) while compressing is work: with one store at a
/// time, each uploader sat idle through every chunk's fsync and a backup used one core of two.
const STORES_PER_UPLOADER: usize = 4;

/// Reads every file in chunks (several files at a time) and uploads the chunks the archive does
/// not have: `concurrency` readers and `concurrency` compressors, each compressor with up to
/// [`STORES_PER_UPLOADER`] chunks being stored. Memory stays bounded: at most
/// `2 × concurrency` chunks wait to be compressed, and each compressor holds at most
/// `STORES_PER_UPLOADER + 1` compressed ones (one waiting for a store to end).
async fn copy_files(
    pgdata: &Path,
    files: &[(String, u64, u32)],
    store: Arc<dyn ObjectStore>,
    codec: Codec,
    concurrency: usize,
    known: HashSet<Sha256Digest>,
    progress: &indicatif::ProgressBar,
) -> Result<Copied> {
    let known = Arc::new(Mutex::new(known));
    let (tx, rx) = mpsc::channel::<(Sha256Digest, Bytes)>(concurrency * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let stored_bytes = Arc::new(AtomicU64::new(0));
    let new_chunks = Arc::new(AtomicU64::new(0));

    let mut uploaders = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (rx, store, stored_bytes, new_chunks, codec) = (
            rx.clone(),
            store.clone(),
            stored_bytes.clone(),
            new_chunks.clone(),
            codec.clone(),
        );
        uploaders.spawn(async move {
            let result = upload_chunks(&rx, &store, &codec, &stored_bytes, &new_chunks).await;
            if result.is_err() {
                // Stop the readers: nothing more can be sent once the channel is closed.
                rx.lock().await.close();
            }
            result
        });
    }

    let mut readers = tokio::task::JoinSet::new();
    let queue = Arc::new(Mutex::new(
        files
            .iter()
            .cloned()
            .enumerate()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>(),
    ));
    for _ in 0..concurrency {
        let (queue, known, tx, root, progress, codec) = (
            queue.clone(),
            known.clone(),
            tx.clone(),
            pgdata.to_path_buf(),
            progress.clone(),
            codec.clone(),
        );
        readers.spawn_blocking(move || {
            let mut done = Vec::new();
            loop {
                let Some((index, (path, _, mode))) = queue.lock().expect("queue lock").pop() else {
                    return Ok(done);
                };
                if let Some(entry) = read_file(&root, &path, mode, &codec, &known, &tx, &progress)?
                {
                    done.push((index, entry));
                }
            }
        });
    }
    drop(tx);

    let mut entries = Vec::with_capacity(files.len());
    let mut first_error: Option<Error> = None;
    while let Some(result) = readers.join_next().await {
        match result.expect("reader does not panic") {
            Ok(done) => entries.extend(done),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    while let Some(result) = uploaders.join_next().await {
        if let Err(e) = result.expect("uploader does not panic") {
            // An upload error closes the channel, so the readers report "channel closed": prefer the cause.
            first_error = Some(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    entries.sort_by_key(|(index, _)| *index);
    Ok(Copied {
        files: entries.into_iter().map(|(_, e)| e).collect(),
        stored_bytes: stored_bytes.load(Ordering::Relaxed),
        new_chunks: new_chunks.load(Ordering::Relaxed),
    })
}

/// One compressing uploader: takes chunks from `rx` until it is closed, compresses each and
/// stores it, with up to [`STORES_PER_UPLOADER`] stores waiting at once.
async fn upload_chunks(
    rx: &tokio::sync::Mutex<mpsc::Receiver<(Sha256Digest, Bytes)>>,
    store: &Arc<dyn ObjectStore>,
    codec: &Codec,
    stored_bytes: &AtomicU64,
    new_chunks: &AtomicU64,
) -> Result<()> {
    let mut storing = tokio::task::JoinSet::new();
    loop {
        // A failed store ends the backup at once, even while no new chunk comes (an incremental
        // backup reads mostly chunks the archive has).
        let next = tokio::select! {
            next = async { rx.lock().await.recv().await } => next,
            Some(done) = storing.join_next() => {
                done.expect("storing does not panic")?;
                new_chunks.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let Some((digest, chunk)) = next else {
            break;
        };
        let codec = codec.clone();
        let sealed = tokio::task::spawn_blocking(move || codec.seal_with_id(&chunk, digest))
            .await
            .expect("compression does not panic");
        stored_bytes.fetch_add(sealed.len() as u64, Ordering::Relaxed);
        if storing.len() == STORES_PER_UPLOADER {
            stored(&mut storing, new_chunks).await?;
        }
        let store = store.clone();
        storing.spawn(async move {
            store
                .put(&archive::chunk_key(&digest), PutBody::from(sealed))
                .await
                .map(|_receipt| ())
        });
    }
    while !storing.is_empty() {
        stored(&mut storing, new_chunks).await?;
    }
    Ok(())
}

/// Waits for one of the chunks being stored.
async fn stored(
    storing: &mut tokio::task::JoinSet<ops_common::Result<()>>,
    new_chunks: &AtomicU64,
) -> Result<()> {
    if let Some(done) = storing.join_next().await {
        done.expect("storing does not panic")?;
        new_chunks.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads one file, sending the chunks not yet in the archive to the uploaders. `None` when the file
/// disappeared since the walk (a dropped table: WAL replay makes it right).
fn read_file(
    root: &Path,
    path: &str,
    mode: u32,
    codec: &Codec,
    known: &Mutex<HashSet<Sha256Digest>>,
    tx: &mpsc::Sender<(Sha256Digest, Bytes)>,
    progress: &indicatif::ProgressBar,
) -> Result<Option<FileEntry>> {
    let full: PathBuf = root.join(path);
    let mut file = match std::fs::File::open(&full) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&full, e)),
    };
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    loop {
        // Page-aligned: the kernel copies into it three times faster (see `PageBuffer`).
        let mut buffer = PageBuffer::zeroed(usize::try_from(CHUNK_SIZE).expect("fits"));
        let filled = fsutil::read_full(&mut file, &mut buffer).map_err(|e| Error::io(&full, e))?;
        if filled == 0 {
            break;
        }
        let chunk = buffer.into_bytes(filled);
        whole.update(&chunk);
        size += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
        let digest = codec.id(&chunk);
        chunks.push(digest);
        let is_new = known.lock().expect("known lock").insert(digest);
        if is_new && tx.blocking_send((digest, chunk)).is_err() {
            return Err(Error::Server("an upload failed".to_owned()));
        }
    }
    Ok(Some(FileEntry {
        path: path.to_owned(),
        size,
        mode,
        sha256: Sha256Digest(whole.finalize().into()),
        chunks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_fields_parse() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 3\nLABEL: x\n";
        assert_eq!(label_field(label, "START TIMELINE"), Some("3"));
        assert_eq!(
            label_field(label, "START WAL LOCATION"),
            Some("0/2000028 (file 000000010000000000000002)")
        );
        assert_eq!(label_field(label, "NOPE"), None);
    }
}
