//! A primary with archiving through the real wal-archive binary, on either kind of store.

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ops_testkit::{
    Cmd, Output, PgCluster, PgOptions, S3Server, TempDir, install_binary, pg_ctl_stop,
};

/// Where the archive is.
pub(crate) enum Store {
    /// A local directory.
    File,
    /// The in-process S3 server.
    S3(S3Server),
}

/// A primary PostgreSQL 15 with `archive_command` set to the built binary, and its archive.
pub(crate) struct Site {
    pub(crate) tmp: TempDir,
    pub(crate) bin: PathBuf,
    pub(crate) envdir: PathBuf,
    pub(crate) primary: PgCluster,
    pub(crate) store: Store,
    pub(crate) bucket: Option<String>,
}

impl Site {
    pub(crate) fn new(store: Store) -> Self {
        Self::with_settings(store, &[])
    }

    /// A site whose envdir has extra settings.
    pub(crate) fn with_settings(store: Store, extra: &[(&str, &str)]) -> Self {
        let tmp = TempDir::new("wal");
        let bin = install_binary(
            Path::new(env!("CARGO_BIN_EXE_wal-archive")),
            &tmp.subdir("bin"),
        );
        let envdir = tmp.subdir("env");
        let bucket = match &store {
            Store::File => {
                let archive = tmp.subdir("archive");
                write_setting(&envdir, "WALG_FILE_PREFIX", archive.to_str().unwrap());
                None
            }
            Store::S3(server) => {
                let bucket = server.bucket();
                write_setting(&envdir, "WALG_S3_PREFIX", &format!("s3://{bucket}/db/main"));
                for (name, value) in server.env() {
                    write_setting(&envdir, &name, &value);
                }
                Some(bucket)
            }
        };
        for (name, value) in extra {
            write_setting(&envdir, name, value);
        }
        let archive_command = format!("'{} --envdir {} push %p'", bin.display(), envdir.display());
        let primary = PgCluster::start(
            &PgOptions::default()
                .setting("archive_mode", "on")
                .setting("archive_command", &archive_command)
                .setting("wal_level", "replica")
                .setting("max_wal_senders", "2"),
        );
        for (name, value) in primary.libpq_env() {
            write_setting(&envdir, &name, &value);
        }
        write_setting(&envdir, "PGDATA", primary.data_dir().to_str().unwrap());
        Self {
            tmp,
            bin,
            envdir,
            primary,
            store,
            bucket,
        }
    }

    /// The tool, run as `postgres` with the site's envdir.
    pub(crate) fn tool(&self) -> Cmd {
        Cmd::new(&self.bin)
            .as_postgres()
            .arg("--envdir")
            .arg(&self.envdir)
    }

    /// Runs the tool.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.tool().args(args.iter().copied()).run()
    }

    /// Restores the newest backup to the end of the archive into a fresh directory, starts it on a
    /// free port without archiving, and waits for recovery to finish.
    pub(crate) fn restore_latest(&self, dir: &str) -> Restored {
        let data = self.restore_dir(dir);
        let port = ops_testkit::free_port();
        self.run(&[
            "restore",
            "--pgdata",
            data.to_str().unwrap(),
            "--latest",
            "--start",
            "--no-archive",
            "--port",
            &port.to_string(),
        ])
        .success();
        Restored { data, port }
    }

    /// Ends the current segment and waits until the archiver has archived it.
    pub(crate) fn switch_and_wait_archived(&self, cluster_url: &str) {
        let mut client = postgres::Client::connect(cluster_url, postgres::NoTls).unwrap();
        let segment: String = client
            .query_one("select pg_walfile_name(pg_switch_wal() - 1)", &[])
            .unwrap()
            .get(0);
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let row = client.query_one("select coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') from pg_stat_archiver", &[]).unwrap();
            let archived: String = row.get(0);
            if archived.len() >= 24 && archived[..24] >= *segment.as_str() {
                return;
            }
            let failures: i64 = row.get(1);
            assert!(
                Instant::now() < deadline,
                "{segment} not archived after 60 s (last archived {archived:?}, {failures} failures, last failed {:?})\n{}",
                row.get::<_, String>(2),
                self.primary.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The file a stored object is in (local store or S3 server root).
    pub(crate) fn stored_file(&self, key: &str) -> PathBuf {
        match &self.store {
            Store::File => self.tmp.path().join("archive").join(key),
            Store::S3(server) => {
                server.object_path(self.bucket.as_ref().unwrap(), &format!("db/main/{key}"))
            }
        }
    }

    /// A fresh directory for a restore, owned by postgres.
    pub(crate) fn restore_dir(&self, name: &str) -> PathBuf {
        self.tmp.subdir(name).join("data")
    }
}

pub(crate) fn write_setting(envdir: &Path, name: &str, value: &str) {
    std::fs::write(envdir.join(name), format!("{value}\n")).unwrap();
}

/// A server the tool started (restore --start); stopped when dropped.
pub(crate) struct Restored {
    pub(crate) data: PathBuf,
    pub(crate) port: u16,
}

impl Restored {
    pub(crate) fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub(crate) fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        pg_ctl_stop(&self.data);
    }
}

/// Rows per batch in table `t`.
pub(crate) fn batches(client: &mut postgres::Client) -> Vec<i32> {
    client
        .query("select distinct batch from t order by batch", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Commits a batch of rows, then waits past the next whole second and returns that second as a
/// target time: every row of this batch committed before it, every later batch after it.
pub(crate) fn commit_batch_and_mark(client: &mut postgres::Client, batch: i32) -> String {
    client
        .execute(
            "insert into t (batch, n) select $1, g from generate_series(1, 100) g",
            &[&batch],
        )
        .unwrap();
    let now: f64 = client
        .query_one("select extract(epoch from clock_timestamp())::float8", &[])
        .unwrap()
        .get(0);
    let next_second = now.floor() + 1.0;
    std::thread::sleep(Duration::from_secs_f64(next_second - now + 0.3));
    let mark: i64 = client
        .query_one("select floor($1::float8)::int8", &[&next_second])
        .unwrap()
        .get(0);
    let mark = chrono::DateTime::from_timestamp(mark, 0).unwrap();
    mark.format("%Y-%m-%d %H:%M:%S").to_string()
}
