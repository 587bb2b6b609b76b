//! The test harness of alaveteli-ops: real parts, started and stopped by the tests.
//!
//! - [`PgCluster`]: a throwaway PostgreSQL 15 cluster (initdb into a temp dir, a free port, extra
//!   settings), run as the `postgres` user when the tests run as root, as PostgreSQL requires.
//! - [`S3Server`]: a real S3-protocol server (s3s-fs) in-process on 127.0.0.1, a fresh bucket per
//!   test, stoppable and restartable mid-test.
//! - [`FaultProxy`]: a TCP proxy in front of a server that cuts connections, delays them or
//!   swallows them, to test timeouts and retries.
//! - [`Cmd`]: runs a real binary with a cleared environment and captures what it did.
//!
//! Environment variables read by the harness (and nothing else):
//! - `PG_BINDIR`: where `initdb`, `pg_ctl` and `postgres` are; default `/usr/lib/postgresql/15/bin`,
//!   then `pg_config --bindir`.
//! - `OPS_TEST_KEEP`: when set, temporary directories are kept for inspection.
//! - `OPS_BLESS`: when set, generated blocks in the documentation are rewritten instead of checked.

// Assertions return the output so they chain; dropping it after the last one is the normal use.
#![allow(clippy::return_self_not_must_use)]
// Test output (kept directories) goes to stderr, where cargo test shows it for failed tests.
#![allow(clippy::print_stderr)]

mod cmd;
mod common_cli;
mod docs;
mod pg;
mod proxy;
mod s3;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use cmd::{Cmd, Output};
pub use common_cli::assert_common_commands;
pub use docs::check_generated;
pub use pg::{PgCluster, PgOptions, bindir as pg_bindir, pg_ctl_stop};
pub use proxy::{Fault, FaultProxy};
pub use s3::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

/// A port that was free a moment ago on 127.0.0.1.
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// True when the tests run as root, so PostgreSQL must be run as the `postgres` user.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and gid of the `postgres` user.
///
/// # Panics
/// If there is no such user (install PostgreSQL: `scripts/test` does).
pub fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("running id");
        assert!(
            out.status.success(),
            "there is no postgres user; install postgresql"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// A command that runs as the `postgres` user when the tests run as root, as itself otherwise.
pub fn command_as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A temporary directory that the `postgres` user owns (when running as root), so that a cluster,
/// an archive or a store inside it can be written by PostgreSQL and by the tools it runs.
pub struct TempDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory, world-traversable so tools running as `postgres` reach inside.
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ops-{label}-"))
            .tempdir_in("/tmp")
            .expect("temp dir");
        let path = dir.path().to_path_buf();
        set_mode(&path, 0o755);
        if is_root() {
            chown_postgres(&path);
        }
        Self {
            dir: Some(dir),
            path,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created and owned by `postgres` like its parent.
    ///
    /// # Panics
    /// If it cannot be created.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).expect("creating subdir");
        if is_root() {
            chown_postgres(&path);
        }
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take()
            && std::env::var_os("OPS_TEST_KEEP").is_some()
        {
            let kept = dir.keep();
            eprintln!("kept {}", kept.display());
        }
    }
}

/// Sets permission bits.
///
/// # Panics
/// If the mode cannot be set.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Gives a file or directory (recursively) to the `postgres` user.
///
/// # Panics
/// If `chown` fails.
pub fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown postgres {}", path.display());
}

/// Copies a built binary into `dir` (mode 0755), where the `postgres` user can run it: the cargo
/// target directory may sit under a home directory it cannot enter.
///
/// # Panics
/// If the copy fails.
pub fn install_binary(binary: &Path, dir: &Path) -> PathBuf {
    let target = dir.join(binary.file_name().expect("binary name"));
    std::fs::copy(binary, &target).expect("copying the binary");
    set_mode(&target, 0o755);
    target
}

/// The tests' fixtures directory (`tests/fixtures` at the workspace root).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}
