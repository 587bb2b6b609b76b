//! Throwaway PostgreSQL clusters.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{TempDir, command_as_postgres, free_port};

/// How to set up a cluster.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Extra `postgresql.conf` lines, `name = value`.
    pub settings: Vec<(String, String)>,
}

impl PgOptions {
    /// Adds a `postgresql.conf` setting (the value as it appears in the file, quoted if needed).
    #[must_use]
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 and on a Unix socket in
/// that directory. Stopped (immediately) and removed when dropped.
pub struct PgCluster {
    dir: TempDir,
    data: PathBuf,
    port: u16,
    running: bool,
}

/// Where the PostgreSQL 15 server programs are.
///
/// # Panics
/// When none is found.
pub fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() {
        return debian;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("no PostgreSQL 15 found: set PG_BINDIR");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {text}");
    text
}

impl PgCluster {
    /// Creates (initdb, trust authentication, UTF-8) and starts a cluster.
    ///
    /// # Panics
    /// If initdb or the start fails; the message includes the server log.
    pub fn start(options: &PgOptions) -> Self {
        let dir = TempDir::new("pg");
        let data = dir.path().join("data");
        run(
            command_as_postgres(bindir().join("initdb"))
                .args(["-D"])
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]),
            "initdb",
        );
        let mut cluster = Self {
            port: free_port(),
            data,
            dir,
            running: false,
        };
        cluster.configure(&options.settings);
        cluster.start_server();
        cluster
    }

    /// Appends settings to `postgresql.conf`; the port and sockets are always this cluster's.
    fn configure(&mut self, extra: &[(String, String)]) {
        use std::fmt::Write as _;
        let mut conf =
            std::fs::read_to_string(self.data.join("postgresql.conf")).unwrap_or_default();
        let _ = writeln!(conf, "\n# ops-testkit");
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(conf, "listen_addresses = '127.0.0.1'");
        let _ = writeln!(
            conf,
            "unix_socket_directories = '{}'",
            self.dir.path().display()
        );
        let _ = writeln!(conf, "fsync = off");
        for (name, value) in extra {
            let _ = writeln!(conf, "{name} = {value}");
        }
        std::fs::write(self.data.join("postgresql.conf"), conf).expect("writing postgresql.conf");
    }

    /// Appends settings to `postgresql.conf` (takes effect at the next start or reload).
    pub fn set(&mut self, name: &str, value: &str) {
        self.configure(&[(name.to_owned(), value.to_owned())]);
    }

    /// Starts the server and waits until it accepts connections.
    ///
    /// # Panics
    /// If it does not start; the message includes the server log.
    pub fn start_server(&mut self) {
        let log = self.log_path();
        let out = command_as_postgres(bindir().join("pg_ctl"))
            .args(["-D"])
            .arg(&self.data)
            .args(["-l"])
            .arg(&log)
            .args(["-w", "-t", "120", "start"])
            .output()
            .expect("pg_ctl start");
        self.running = out.status.success();
        assert!(
            self.running,
            "pg_ctl start failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Stops the server (fast shutdown: a checkpoint, then exit).
    pub fn stop(&mut self) {
        self.stop_mode("fast");
    }

    /// Stops the server with a `pg_ctl` mode (`fast`, `immediate`).
    pub fn stop_mode(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let _ = command_as_postgres(bindir().join("pg_ctl"))
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", mode, "-w", "stop"])
            .output();
        self.running = false;
    }

    /// True while the postmaster is running (checked with `pg_ctl status`).
    pub fn is_running(&self) -> bool {
        command_as_postgres(bindir().join("pg_ctl"))
            .args(["-D"])
            .arg(&self.data)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The temporary directory holding the data directory and the socket.
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// A libpq connection string for a database.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `PGHOST`/`PGPORT`/`PGUSER` for tools that use libpq's variables.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".to_owned(), "127.0.0.1".to_owned()),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGUSER".to_owned(), "postgres".to_owned()),
            ("PGDATABASE".to_owned(), "postgres".to_owned()),
        ]
    }

    /// A connection to a database.
    ///
    /// # Panics
    /// If the connection fails.
    pub fn connect(&self, database: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(database), postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "connecting to {}: {e}\nserver log:\n{}",
                self.url(database),
                self.log()
            )
        })
    }

    /// Runs SQL through `psql -X -A -t -v ON_ERROR_STOP=1` and returns its output.
    ///
    /// # Panics
    /// If psql fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(bindir().join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(database),
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Loads a SQL file with `psql -f`, stopping at the first error.
    ///
    /// # Panics
    /// If psql fails.
    pub fn psql_file(&self, database: &str, file: &Path) {
        let out = Command::new(bindir().join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(database),
                "-f",
            ])
            .arg(file)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql -f {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// Stops whatever server runs in a data directory (immediate shutdown); for servers a tool started.
pub fn pg_ctl_stop(data: &Path) {
    let _ = command_as_postgres(bindir().join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "stop"])
        .output();
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_mode("immediate");
    }
}
