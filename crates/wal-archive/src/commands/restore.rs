//! `wal-archive restore`: a base backup into a new data directory, set up to recover to a time.
//!
//! Picks the newest backup that finished before the target, downloads its chunks in parallel,
//! checks each against its identity and each file's size against the manifest, then writes
//! `backup_label`, the recovery settings and `recovery.signal`. With `--start` it starts the
//! server, waits until recovery has ended and the server is promoted, and prints the point
//! actually reached.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use ops_common::cli::Context;
use ops_common::exit;
use ops_common::fsutil;
use ops_common::storage::{ObjectStore, Sha256Digest};

use crate::archive;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::manifest::{self, BackupInfo, Manifest};
use crate::settings::{self, WAL_ARCHIVE_PG_BINDIR, WALG_DOWNLOAD_CONCURRENCY};

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Recover to this time; `None`: to the end of the archived WAL.
    pub target: Option<DateTime<Utc>>,
    /// Replace the contents of a non-empty directory.
    pub force: bool,
    /// Start the server and wait for recovery.
    pub start: bool,
    /// The port the restored server listens on.
    pub port: Option<u16>,
    /// Turn archiving off in the restored server (checks and drills must not push a new timeline
    /// into the archive they restore from).
    pub no_archive: bool,
    /// Other server settings for the restored server, `name` and the value as written in
    /// `postgresql.conf` (quoted where needed).
    pub server_settings: Vec<(String, String)>,
    /// The arguments that locate the settings (`--envdir`, `--config`), repeated in
    /// `restore_command` so the restored server's fetches read the same archive.
    pub settings_args: Vec<String>,
}

/// Where recovery ended, as the restored server reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reached {
    /// Commit time of the last transaction replayed.
    pub last_transaction: Option<String>,
    /// The timeline the server now writes on.
    pub timeline: u32,
    /// Its current WAL position.
    pub lsn: String,
}

/// Parses a target time: `YYYY-MM-DD HH:MM[:SS]`, `T` allowed between date and time, with an
/// optional offset (`Z`, `UTC`, `+02:00`, `+0200`, `+02`); without one, UTC.
///
/// # Errors
/// When the text is none of those.
pub fn parse_target_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let bad = || {
        format!(
            "{text:?}: expected YYYY-MM-DD HH:MM[:SS] with an optional offset like +02:00 (default UTC)"
        )
    };
    let text = text.trim();
    if text.len() < 16 || !text.is_char_boundary(16) {
        return Err(bad());
    }
    let (date_time, rest) = if text.len() >= 19 && text.as_bytes()[16] == b':' {
        text.split_at(19)
    } else {
        text.split_at(16)
    };
    let date_time = date_time.replacen('T', " ", 1);
    let format = if date_time.len() == 19 {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M"
    };
    let naive = NaiveDateTime::parse_from_str(&date_time, format).map_err(|_| bad())?;
    let offset_seconds = parse_offset(rest.trim()).ok_or_else(bad)?;
    let offset = chrono::FixedOffset::east_opt(offset_seconds).ok_or_else(bad)?;
    naive
        .and_local_timezone(offset)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(bad)
}

/// Seconds east of UTC for `""`, `Z`, `UTC`, `+HH`, `+HHMM`, `+HH:MM` (and `-`).
fn parse_offset(text: &str) -> Option<i32> {
    if text.is_empty() || text == "Z" || text.eq_ignore_ascii_case("UTC") {
        return Some(0);
    }
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
}

/// The newest backup that finished at or before `target` (or the newest, for no target).
///
/// # Errors
/// When there is none.
pub fn choose_backup(backups: &[BackupInfo], target: Option<DateTime<Utc>>) -> Result<&BackupInfo> {
    let Some(target) = target else {
        return backups
            .last()
            .ok_or_else(|| Error::NotFound("the archive holds no complete backup".to_owned()));
    };
    backups
        .iter()
        .rev()
        .find(|b| b.stop_time <= target)
        .ok_or_else(|| match backups.first() {
            Some(oldest) => Error::NotFound(format!(
                "no backup finished before {}; the oldest finished at {}",
                target.format("%Y-%m-%d %H:%M:%S UTC"),
                oldest.stop_time.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            None => Error::NotFound("the archive holds no complete backup".to_owned()),
        })
}

/// Runs `restore` and prints what it did.
///
/// # Errors
/// Anything that stops the restore.
pub fn run(ctx: &Context, options: &RestoreOptions) -> Result<u8> {
    if rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "run restore as the user PostgreSQL runs as (e.g. sudo -u postgres wal-archive restore …): a data directory restored as root cannot be used by the server"
                .to_owned(),
        ));
    }
    let pgdata = PathBuf::from(ctx.settings.require(&settings::PGDATA)?);
    let store = settings::open_store(&ctx.settings)?;
    let concurrency = settings::concurrency(&ctx.settings, &WALG_DOWNLOAD_CONCURRENCY)?;
    let runtime = ops_common::cli::runtime();
    let started = Instant::now();
    let info = runtime.block_on(restore_data(ctx, store, &pgdata, options, concurrency))?;
    let mut report = format!(
        "restored {} (finished {}) into {} in {:.1}s\n",
        info.name,
        info.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
        pgdata.display(),
        started.elapsed().as_secs_f64()
    );
    if options.start {
        let bindir = pg_bindir(ctx, info.pg_version);
        let mut connect = settings::pg_config_on_port(&ctx.settings, options.port)?;
        connect.connect_timeout(Duration::from_secs(5));
        let reached = runtime.block_on(start_and_wait(&bindir, &pgdata, &connect))?;
        let _ = writeln!(
            report,
            "recovered up to {} (last replayed transaction); the server is promoted, on timeline {} at {}",
            reached
                .last_transaction
                .as_deref()
                .unwrap_or("the backup's end (no transaction replayed)"),
            reached.timeline,
            reached.lsn
        );
    } else {
        report.push_str(
            "start the server to recover; it promotes itself when recovery reaches the target\n",
        );
    }
    ops_common::output::print(&report)?;
    Ok(exit::SUCCESS)
}

/// Restores the files and writes the recovery settings; returns the backup used.
///
/// # Errors
/// Anything that stops the restore.
pub async fn restore_data(
    ctx: &Context,
    store: Arc<dyn ObjectStore>,
    pgdata: &Path,
    options: &RestoreOptions,
    concurrency: usize,
) -> Result<BackupInfo> {
    prepare_directory(pgdata, options.force)?;
    let backups = manifest::list_backups(&*store).await?;
    let info = choose_backup(&backups, options.target)?.clone();
    if let Some(target) = options.target
        && target > Utc::now()
    {
        tracing::warn!(
            "the target is in the future: recovery will fail if the archive ends before it"
        );
    }
    tracing::info!(backup = %info.name, "restoring");
    let codec = settings::codec(&ctx.settings)?;
    let manifest = manifest::read_manifest(&*store, &codec, &info).await?;
    restore_files(ctx, store.clone(), &codec, pgdata, &manifest, concurrency).await?;
    let label = manifest::read_backup_file(
        &*store,
        &codec,
        &info.name,
        "backup_label",
        &info.backup_label_id,
    )
    .await?;
    fsutil::write_atomic(&pgdata.join("backup_label"), &label, 0o600)?;
    if let Some(id) = &info.tablespace_map_id {
        let map =
            manifest::read_backup_file(&*store, &codec, &info.name, "tablespace_map", id).await?;
        fsutil::write_atomic(&pgdata.join("tablespace_map"), &map, 0o600)?;
    }
    write_recovery_settings(pgdata, options)?;
    fsutil::write_atomic(&pgdata.join("recovery.signal"), b"", 0o600)?;
    fsutil::sync_dir(pgdata)?;
    Ok(info)
}

/// Makes sure the directory exists, is empty (or emptied with `--force`) and is private.
fn prepare_directory(pgdata: &Path, force: bool) -> Result<()> {
    match std::fs::read_dir(pgdata) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                if pgdata.join("postmaster.pid").exists() {
                    return Err(Error::Conflict(format!(
                        "{} holds postmaster.pid: a server may be running there; stop it first",
                        pgdata.display()
                    )));
                }
                if !force {
                    return Err(Error::Conflict(format!(
                        "{} is not empty; restore into an empty directory, or pass --force to replace its contents",
                        pgdata.display()
                    )));
                }
                for entry in std::fs::read_dir(pgdata).map_err(|e| Error::io(pgdata, e))? {
                    let path = entry.map_err(|e| Error::io(pgdata, e))?.path();
                    let removed = if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.map_err(|e| Error::io(&path, e))?;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fsutil::create_dir_all_durable(pgdata)?;
        }
        Err(e) => return Err(Error::io(pgdata, e)),
    }
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(pgdata, e))
}

/// Creates the directories, links and files, fills the files chunk by chunk (each distinct chunk
/// downloaded once, several at a time), then checks every file against its SHA-256.
async fn restore_files(
    ctx: &Context,
    store: Arc<dyn ObjectStore>,
    codec: &Codec,
    pgdata: &Path,
    manifest: &Manifest,
    concurrency: usize,
) -> Result<()> {
    for dir in &manifest.dirs {
        let path = pgdata.join(&dir.path);
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(dir.mode))
            .map_err(|e| Error::io(&path, e))?;
    }
    for link in &manifest.links {
        let path = pgdata.join(&link.path);
        std::os::unix::fs::symlink(&link.target, &path).map_err(|e| Error::io(&path, e))?;
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    let mut positions: HashMap<Sha256Digest, Vec<(usize, u64)>> = HashMap::new();
    for (index, entry) in manifest.files.iter().enumerate() {
        files.push(Target {
            file: OnceLock::new(),
            path: pgdata.join(&entry.path),
            mode: entry.mode,
            size: entry.size,
            written: AtomicU64::new(0),
        });
        for (n, digest) in entry.chunks.iter().enumerate() {
            positions
                .entry(*digest)
                .or_default()
                .push((index, n as u64 * manifest.chunk_size));
        }
    }
    let files = Arc::new(files);
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    let progress = ops_common::progress::bytes(total, "restore", ctx.log_format);
    // File by file, front to back (popped from the end): each file is written in order and
    // finished early, so it can be flushed while the next ones are written.
    let mut chunks: Vec<_> = positions.into_iter().collect();
    chunks.sort_unstable_by_key(|(_, places)| std::cmp::Reverse(places[0]));
    let queue = Arc::new(std::sync::Mutex::new(chunks));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, store, files, progress, codec) = (
            queue.clone(),
            store.clone(),
            files.clone(),
            progress.clone(),
            codec.clone(),
        );
        workers.spawn(async move {
            // Travels into each blocking call and back: one zstd context and buffer per worker.
            let mut scratch = archive::Scratch::new();
            loop {
                let Some((digest, places)) = queue.lock().expect("queue lock").pop() else {
                    return Ok::<_, Error>(());
                };
                let key = archive::chunk_key(&digest);
                let sealed = store.get_bytes(&key).await?;
                let (files, codec) = (files.clone(), codec.clone());
                let describe = store.describe(&key);
                let (written, returned) = tokio::task::spawn_blocking(move || {
                    let written = (|| -> Result<u64> {
                        let data = codec
                            .open_expecting_into(&sealed, &digest, &mut scratch)
                            .map_err(|e| Error::Integrity(format!("{describe}: {e}")))?;
                        for (index, offset) in &places {
                            let target = &files[*index];
                            let file = target.file()?;
                            file.write_all_at(data, *offset)
                                .map_err(|e| Error::io(&describe, e))?;
                            start_writeback(file, *offset, data.len());
                            let before = target
                                .written
                                .fetch_add(data.len() as u64, Ordering::Relaxed);
                            // Its last chunk: flush it now, while the others are being written,
                            // rather than all 1.4 GB at the end (as pgBackRest does too).
                            if before + data.len() as u64 == target.size {
                                file.sync_all().map_err(|e| Error::io(&target.path, e))?;
                            }
                        }
                        Ok(data.len() as u64 * places.len() as u64)
                    })();
                    (written, scratch)
                })
                .await
                .expect("writing does not panic");
                scratch = returned;
                progress.inc(written?);
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.expect("restore worker does not panic")?;
    }
    progress.finish_and_clear();
    verify_files(pgdata, manifest, &files)
}

/// Starts writing `len` bytes at `offset` of `file` to the disk now, without waiting for it.
///
/// A restore is bound by the disk. Left alone, the kernel holds gigabytes of dirty pages (its
/// background writeback starts at 10% of memory) while the restore decompresses, and the disk
/// sits idle until the fsync of each finished file; started at once, writing overlaps the
/// decompressing. `POSIX_FADV_DONTNEED` on dirty pages starts their writeback (and drops only
/// pages already clean), as PostgreSQL's own `pg_flush_data` does where `sync_file_range` is
/// missing. Only a hint: the fsync of the finished file still makes it durable.
fn start_writeback(file: &std::fs::File, offset: u64, len: usize) {
    // No length would mean "to the end of the file".
    if let Some(len) = std::num::NonZeroU64::new(len as u64) {
        let _ = rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// A file being restored, and how many of its bytes have been written.
struct Target {
    /// Created by the first worker that writes into it (see [`Target::file`]).
    file: OnceLock<std::io::Result<std::fs::File>>,
    path: PathBuf,
    mode: u32,
    size: u64,
    written: AtomicU64,
}

impl Target {
    /// The file, created at its full size on first use. Creating the thousand files of a data
    /// directory one after the other before writing any took 0.7 s of a 3 s restore on the
    /// benchmark's disk: for a new directory, ext4 first reads inode tables and bitmaps from the
    /// disk, one block at a time. Created by the workers as they reach them, those reads overlap
    /// the writing of other files. Another worker that needs the file meanwhile waits for it.
    fn file(&self) -> Result<&std::fs::File> {
        let created = self.file.get_or_init(|| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&self.path)?;
            file.set_len(self.size)?;
            file.set_permissions(std::fs::Permissions::from_mode(self.mode))?;
            Ok(file)
        });
        created
            .as_ref()
            .map_err(|e| Error::io(&self.path, std::io::Error::new(e.kind(), e.to_string())))
    }
}

/// Checks that every file received all its bytes, and makes the rest durable. Every chunk was
/// checked against its identity as it was written, so a full file is the backed-up file (reading
/// each back to hash it again only re-read the page cache). Each file with content was fsynced by
/// the worker that completed it; what is left are the empty files and the directories.
fn verify_files(pgdata: &Path, manifest: &Manifest, files: &[Target]) -> Result<()> {
    for target in files {
        let written = target.written.load(Ordering::Relaxed);
        if written != target.size {
            return Err(Error::Integrity(format!(
                "{}: {written} bytes restored of {}",
                target.path.display(),
                target.size
            )));
        }
        if target.size == 0 {
            target
                .file()?
                .sync_all()
                .map_err(|e| Error::io(&target.path, e))?;
        }
    }
    for dir in std::iter::once("").chain(manifest.dirs.iter().map(|d| d.path.as_str())) {
        fsutil::sync_dir(&pgdata.join(dir))?;
    }
    Ok(())
}

/// The settings restore writes; earlier ones with the same names are removed from
/// `postgresql.auto.conf` first, so a backup of a restored cluster restores cleanly.
const RECOVERY_SETTINGS: &[&str] = &[
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_action",
    "recovery_target_timeline",
    "recovery_target_inclusive",
];

fn write_recovery_settings(pgdata: &Path, options: &RestoreOptions) -> Result<()> {
    let path = pgdata.join("postgresql.auto.conf");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let mut overridden: Vec<&str> = RECOVERY_SETTINGS.to_vec();
    if options.port.is_some() {
        overridden.push("port");
    }
    if options.no_archive {
        overridden.push("archive_mode");
    }
    overridden.extend(
        options
            .server_settings
            .iter()
            .map(|(name, _)| name.as_str()),
    );
    let mut text = String::new();
    for line in existing.lines() {
        let name = line.split('=').next().unwrap_or_default().trim();
        if !overridden.contains(&name) {
            let _ = writeln!(text, "{line}");
        }
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    let mut command = vec![shell_quote(&exe.to_string_lossy())];
    command.extend(options.settings_args.iter().map(|a| shell_quote(a)));
    command.extend(["fetch".to_owned(), "%f".to_owned(), "%p".to_owned()]);
    let _ = writeln!(
        text,
        "# written by wal-archive restore at {}",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(text, "restore_command = {}", pg_quote(&command.join(" ")));
    if let Some(target) = options.target {
        let _ = writeln!(
            text,
            "recovery_target_time = '{}'",
            target.format("%Y-%m-%d %H:%M:%S%.6f+00")
        );
        text.push_str("recovery_target_action = 'promote'\n");
    }
    text.push_str("recovery_target_timeline = 'latest'\n");
    if let Some(port) = options.port {
        let _ = writeln!(text, "port = {port}");
    }
    if options.no_archive {
        text.push_str("archive_mode = 'off'\n");
    }
    for (name, value) in &options.server_settings {
        let _ = writeln!(text, "{name} = {value}");
    }
    fsutil::write_atomic(&path, text.as_bytes(), 0o600)?;
    Ok(())
}

/// Quotes a word for `sh`, which runs `restore_command`.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+%".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Quotes a string value for `postgresql.conf`.
fn pg_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Where `pg_ctl` is.
pub fn pg_bindir(ctx: &Context, version: u32) -> PathBuf {
    if let Some(dir) = ctx.settings.get(&WAL_ARCHIVE_PG_BINDIR) {
        return PathBuf::from(dir);
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
    if debian.join("pg_ctl").exists() {
        debian
    } else {
        PathBuf::new()
    }
}

/// Starts the restored server and waits until recovery has ended and it is promoted.
///
/// # Errors
/// When the server does not start, or stops during recovery (the message quotes its log).
pub async fn start_and_wait(
    bindir: &Path,
    pgdata: &Path,
    connect: &tokio_postgres::Config,
) -> Result<Reached> {
    let pg_ctl = bindir.join("pg_ctl");
    let log = pgdata.join("wal-archive-restore.log");
    // `-w` waits until the server accepts connections: once recovery is consistent (hot standby),
    // or once it is promoted; it fails if the server dies first. Its chatter is not our output.
    let start = tokio::process::Command::new(&pg_ctl)
        .arg("-D")
        .arg(pgdata)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "86400", "start"])
        .output()
        .await
        .map_err(|e| Error::io(&pg_ctl, e))?;
    if !start.status.success() {
        return Err(Error::Server(format!(
            "pg_ctl start failed: {}",
            log_tail(&log)
        )));
    }
    let waiting = Instant::now();
    let mut last_note = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(reached) = promoted(connect).await {
            return Ok(reached);
        }
        let running = tokio::process::Command::new(&pg_ctl)
            .arg("-D")
            .arg(pgdata)
            .arg("status")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if !running {
            return Err(Error::Server(format!(
                "the server stopped during recovery: {}",
                log_tail(&log)
            )));
        }
        if last_note.elapsed() > Duration::from_secs(15) {
            tracing::info!(
                elapsed_s = waiting.elapsed().as_secs(),
                "recovery in progress"
            );
            last_note = Instant::now();
        }
    }
}

/// Where recovery ended, once the server is out of recovery; `None` while it is not.
async fn promoted(pg: &tokio_postgres::Config) -> Option<Reached> {
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| tracing::debug!("not connected yet: {e}"))
        .ok()?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "select pg_is_in_recovery(), pg_last_xact_replay_timestamp()::text, \
             pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .map_err(|e| tracing::debug!("not answering yet: {e}"))
        .ok();
    drop(client);
    let _ = connection.await;
    let row = row?;
    if row.get::<_, bool>(0) {
        return None;
    }
    let wal_file: String = row.get(2);
    Some(Reached {
        last_transaction: row.get(1),
        timeline: u32::from_str_radix(&wal_file[..8], 16).unwrap_or(0),
        lsn: row.get(3),
    })
}

/// The last lines of a server log, on one line, for an error message.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        format!("see {}", path.display())
    } else {
        format!("{tail} (log: {})", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_parse_with_and_without_offsets() {
        let utc = |s: &str| {
            parse_target_time(s)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        assert_eq!(utc("2026-05-01 12:34"), "2026-05-01 12:34:00");
        assert_eq!(utc("2026-05-01 12:34:56"), "2026-05-01 12:34:56");
        assert_eq!(utc("2026-05-01T12:34:56Z"), "2026-05-01 12:34:56");
        assert_eq!(utc("2026-05-01 12:34 +02:00"), "2026-05-01 10:34:00");
        assert_eq!(utc("2026-05-01 12:34:56+0200"), "2026-05-01 10:34:56");
        assert_eq!(utc("2026-05-01 00:10-01"), "2026-05-01 01:10:00");
        assert_eq!(utc("2026-05-01 12:34 UTC"), "2026-05-01 12:34:00");
        for bad in [
            "",
            "yesterday",
            "2026-05-01",
            "2026-13-01 00:00",
            "2026-05-01 12:34 +25:00",
            "2026-05-01 12:34 CEST",
        ] {
            assert!(parse_target_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting_survives_shell_and_postgresql() {
        assert_eq!(shell_quote("/usr/bin/wal-archive"), "/usr/bin/wal-archive");
        assert_eq!(shell_quote("/srv/my env"), "'/srv/my env'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(pg_quote("a 'b' c"), "'a ''b'' c'");
    }
}
