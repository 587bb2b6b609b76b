//! `wal-archive drill`: prove that the backups restore, every night.
//!
//! Restores the newest suitable backup into a scratch directory, starts it on a free port reachable
//! only through a Unix socket in that directory, with archiving off (a drill must never push a
//! timeline into the archive it checks) and small shared memory (it runs beside production), waits
//! until recovery ends, runs a check query, and reports how long all that took (the time to
//! restore, RTO) and the newest commit recovered. The scratch copy is always removed. Metrics say
//! whether the last drill passed, so an alert fires the first night it does not.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ops_common::cli::Context;
use ops_common::exit;
use ops_common::metrics::Metrics;

use crate::commands::restore::{self, RestoreOptions};
use crate::error::{Error, Result};
use crate::settings::{self, WAL_ARCHIVE_DRILL_DIR, WALG_DOWNLOAD_CONCURRENCY};

/// What a drill found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillReport {
    /// The backup restored.
    pub backup: String,
    /// The target time, if one was given.
    pub target_time: Option<DateTime<Utc>>,
    /// Seconds from the start of the drill until the check query answered.
    pub rto_seconds: f64,
    /// Of which: seconds to download and check the files.
    pub restore_seconds: f64,
    /// Commit time of the last transaction recovered.
    pub recovered_to: Option<String>,
    /// The check query's first value.
    pub check_result: Option<String>,
}

/// Runs `drill`, writes its metrics (also when it fails) and prints its report.
///
/// # Errors
/// When the drill fails at any step.
pub fn run(
    ctx: &Context,
    target: Option<DateTime<Utc>>,
    check_sql: &str,
    json: bool,
    settings_args: Vec<String>,
) -> Result<u8> {
    let started = Instant::now();
    let result = drill(ctx, target, check_sql, settings_args, started);
    let mut metrics = Metrics::new("wal-archive", "drill");
    metrics.gauge(
        "drill_success",
        "1 if the last restore drill passed.",
        &[],
        if result.is_ok() { 1.0 } else { 0.0 },
    );
    if let Ok(report) = &result {
        metrics.gauge(
            "drill_rto_seconds",
            "Time the last drill took to restore and answer a query.",
            &[],
            report.rto_seconds,
        );
        if let Some(recovered) = report.recovered_to.as_deref().and_then(parse_pg_timestamp) {
            metrics.gauge(
                "drill_recovered_timestamp_seconds",
                "Commit time of the newest transaction the last drill recovered (Unix time).",
                &[],
                recovered.timestamp() as f64,
            );
        }
    }
    ctx.write_metrics(&metrics);
    let report = result?;
    if json {
        ops_common::output::print_json(&report)?;
    } else {
        ops_common::output::print(&format!(
            "drill passed: restored {} in {:.1}s (files {:.1}s), recovered up to {}, check query returned {}\n",
            report.backup,
            report.rto_seconds,
            report.restore_seconds,
            report.recovered_to.as_deref().unwrap_or("the backup's end"),
            report.check_result.as_deref().unwrap_or("no rows")
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// Parses PostgreSQL's `timestamptz::text`, e.g. `2026-11-25 18:31:07.031271+00`.
fn parse_pg_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(&format!("{text}00"), "%Y-%m-%d %H:%M:%S%.f%z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn drill(
    ctx: &Context,
    target: Option<DateTime<Utc>>,
    check_sql: &str,
    settings_args: Vec<String>,
    started: Instant,
) -> Result<DrillReport> {
    if rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "run drill as the user PostgreSQL runs as (e.g. sudo -u postgres)".to_owned(),
        ));
    }
    let parent = ctx
        .settings
        .get(&WAL_ARCHIVE_DRILL_DIR)
        .unwrap_or("/var/tmp");
    let scratch = tempfile::Builder::new()
        .prefix("wal-archive-drill-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let pgdata = scratch.path().join("data");
    let port = free_port()?;
    let socket_dir = scratch.path().to_string_lossy().into_owned();
    let options = RestoreOptions {
        target,
        force: false,
        start: true,
        port: Some(port),
        no_archive: true,
        server_settings: vec![
            ("listen_addresses".to_owned(), "''".to_owned()),
            (
                "unix_socket_directories".to_owned(),
                format!("'{}'", socket_dir.replace('\'', "''")),
            ),
            ("shared_buffers".to_owned(), "'128MB'".to_owned()),
        ],
        settings_args,
    };
    let store = settings::open_store(&ctx.settings)?;
    let concurrency = settings::concurrency(&ctx.settings, &WALG_DOWNLOAD_CONCURRENCY)?;
    let runtime = ops_common::cli::runtime();
    let info = runtime.block_on(restore::restore_data(
        ctx,
        store,
        &pgdata,
        &options,
        concurrency,
    ))?;
    write_missing_configuration(&pgdata)?;
    let restore_seconds = started.elapsed().as_secs_f64();
    let bindir = restore::pg_bindir(ctx, info.pg_version);
    let connect = only_host(&settings::pg_config(&ctx.settings)?, scratch.path(), port);
    let outcome = runtime.block_on(async {
        let reached = restore::start_and_wait(&bindir, &pgdata, &connect).await?;
        let check = check_query(&connect, check_sql).await?;
        Ok::<_, Error>((reached, check))
    });
    stop_server(&bindir, &pgdata);
    let (reached, check_result) = outcome?;
    Ok(DrillReport {
        backup: info.name,
        target_time: target,
        rto_seconds: started.elapsed().as_secs_f64(),
        restore_seconds,
        recovered_to: reached.last_transaction,
        check_result,
    })
}

/// Gives the scratch copy a `postgresql.conf` and a `pg_hba.conf` when the backup has none: Debian
/// keeps them in `/etc/postgresql`, outside the data directory a backup copies. The copy's settings
/// are in `postgresql.auto.conf`; it listens only on a socket in its private (0700) scratch
/// directory, so trusting local connections lets in no one but this user.
fn write_missing_configuration(pgdata: &Path) -> Result<()> {
    for (name, content) in [
        (
            "postgresql.conf",
            "# Written by wal-archive drill: the settings are in postgresql.auto.conf.\n",
        ),
        (
            "pg_hba.conf",
            "# Written by wal-archive drill: only the scratch copy's private socket.\nlocal all all trust\n",
        ),
    ] {
        let path = pgdata.join(name);
        if !path.exists() {
            ops_common::fsutil::write_atomic(&path, content.as_bytes(), 0o600)?;
        }
    }
    Ok(())
}

/// A connection config to the scratch socket only (tokio-postgres adds hosts rather than
/// replacing them), with the user, database and password of `base`.
fn only_host(
    base: &tokio_postgres::Config,
    socket_dir: &Path,
    port: u16,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .connect_timeout(Duration::from_secs(5))
        .application_name("wal-archive drill");
    if let Some(user) = base.get_user() {
        config.user(user);
    }
    if let Some(dbname) = base.get_dbname() {
        config.dbname(dbname);
    }
    if let Some(password) = base.get_password() {
        config.password(password);
    }
    config
}

async fn check_query(connect: &tokio_postgres::Config, sql: &str) -> Result<Option<String>> {
    let (client, connection) = connect
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::db("connecting to the restored copy", e))?;
    let connection = tokio::spawn(connection);
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| Error::db(format!("check query {sql:?}"), e))?;
    drop(client);
    let _ = connection.await;
    Ok(messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => {
            Some(row.get(0).unwrap_or("NULL").to_owned())
        }
        _ => None,
    }))
}

fn stop_server(bindir: &Path, pgdata: &Path) {
    let stopped = std::process::Command::new(bindir.join("pg_ctl"))
        .arg("-D")
        .arg(pgdata)
        .args(["-m", "immediate", "-w", "stop"])
        .output();
    if let Ok(out) = stopped
        && !out.status.success()
        && pgdata.join("postmaster.pid").exists()
    {
        tracing::warn!(
            "could not stop the drill's server: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// A TCP port nothing listens on (the drill's server binds it only on its socket, but PostgreSQL
/// names the socket after the port, and a production server may use the same socket directory).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("127.0.0.1:0", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("127.0.0.1:0", e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_timestamps_parse() {
        let t = super::parse_pg_timestamp("2026-11-25 18:31:07.031271+00").unwrap();
        assert_eq!(t.timestamp(), 1_795_631_467);
        assert!(super::parse_pg_timestamp("2026-11-25 18:31:07+02").is_some());
    }
}
