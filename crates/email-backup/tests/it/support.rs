//! A repository (local directory or the in-process S3 server), the real email-backup and restic
//! binaries pointed at it, and a generated corpus shaped like Alaveteli's raw emails.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ops_testkit::{Cmd, Output, S3Server, TempDir};

/// The repository password the tests use.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// Where the repository is.
pub(crate) enum Store {
    /// A local directory.
    Local,
    /// A bucket of the in-process S3 server.
    S3(S3Server),
}

/// A repository, an envdir for email-backup (restic's names), and the environment for restic.
pub(crate) struct Env {
    pub(crate) tmp: TempDir,
    pub(crate) envdir: PathBuf,
    pub(crate) store: Store,
    pub(crate) bucket: Option<String>,
    /// `RESTIC_REPOSITORY`.
    pub(crate) repository: String,
}

impl Env {
    pub(crate) fn new(store: Store) -> Self {
        let tmp = TempDir::new("email");
        let envdir = tmp.subdir("env");
        let (repository, bucket) = match &store {
            Store::Local => (tmp.path().join("repo").display().to_string(), None),
            Store::S3(server) => {
                let bucket = server.bucket();
                for (name, value) in server.env() {
                    // The endpoint travels in RESTIC_REPOSITORY, as restic users write it.
                    if name != "AWS_ENDPOINT" {
                        write_setting(&envdir, &name, &value);
                    }
                }
                (
                    format!("s3:{}/{bucket}/site/raw", server.endpoint()),
                    Some(bucket),
                )
            }
        };
        write_setting(&envdir, "RESTIC_REPOSITORY", &repository);
        write_setting(&envdir, "RESTIC_PASSWORD", PASSWORD);
        Self {
            tmp,
            envdir,
            store,
            bucket,
            repository,
        }
    }

    /// email-backup with the envdir.
    pub(crate) fn tool(&self) -> Cmd {
        Cmd::new(env!("CARGO_BIN_EXE_email-backup"))
            .arg("--envdir")
            .arg(&self.envdir)
    }

    /// Runs email-backup.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.tool().args(args.iter().copied()).run()
    }

    /// restic 0.14 on the same repository.
    pub(crate) fn restic(&self) -> Cmd {
        let mut cmd = Cmd::new("/usr/bin/restic")
            .arg("--no-cache")
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD", PASSWORD);
        if let Store::S3(server) = &self.store {
            for (name, value) in server.env() {
                cmd = cmd.env(name, value);
            }
        }
        cmd
    }

    /// restic as a plain `Command` (cleared environment), for a run the test feeds or signals.
    pub(crate) fn restic_process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("/usr/bin/restic");
        cmd.arg("--no-cache")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD", PASSWORD);
        if let Store::S3(server) = &self.store {
            cmd.envs(server.env());
        }
        cmd
    }

    /// Runs restic.
    pub(crate) fn run_restic(&self, args: &[&str]) -> Output {
        self.restic().args(args.iter().copied()).run()
    }

    /// The directory holding the repository's objects (local directory or the S3 server's files).
    pub(crate) fn repo_dir(&self) -> PathBuf {
        match &self.store {
            Store::Local => PathBuf::from(&self.repository),
            Store::S3(server) => server.object_path(self.bucket.as_ref().unwrap(), "site/raw"),
        }
    }

    /// The pack files, with their sizes.
    pub(crate) fn packs(&self) -> BTreeMap<PathBuf, u64> {
        published(&self.repo_dir().join("data"))
            .into_iter()
            .map(|path| {
                let size = path.metadata().unwrap().len();
                (path, size)
            })
            .collect()
    }

    /// The lock files, once written: restic creates a lock file empty and then writes it, and an
    /// empty lock file is ignored by restic and email-backup alike.
    pub(crate) fn locks(&self) -> Vec<PathBuf> {
        published(&self.repo_dir().join("locks"))
            .into_iter()
            .filter(|p| p.metadata().is_ok_and(|m| m.len() > 0))
            .collect()
    }

    /// A fresh directory.
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.tmp.subdir(name)
    }
}

/// Waits (up to three minutes: the machine may be busy) until `ready` holds.
///
/// # Panics
/// When it never does.
pub(crate) fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(3);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Sends a signal to a child process.
pub(crate) fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, signal).unwrap();
}

/// `count` short raw emails (auto-replies: 200–700 bytes, each different) in dated
/// subdirectories (`YYYY/MM/DD/<id>`), 500 to a day.
pub(crate) fn short_emails(root: &Path, count: u64, seed: u64) -> Vec<PathBuf> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let day = i / 500;
            let dir = root.join(format!(
                "2024/{:02}/{:02}",
                1 + (day / 28) % 12,
                1 + day % 28
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let id = 900_000 + i;
            let text = format!(
                "From: MAILER-DAEMON@mx.authority.example.gov.uk\r\nTo: request-{id}@foi.example\r\n\
                 Subject: Automatic reply\r\nMessage-ID: <{id}.{}@mx.authority.example.gov.uk>\r\n\r\n\
                 I am out of the office until Monday.\r\n{}",
                rng.next(),
                "-".repeat(rng.index(500))
            );
            let path = dir.join(id.to_string());
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

pub(crate) fn write_setting(envdir: &Path, name: &str, value: &str) {
    std::fs::write(envdir.join(name), format!("{value}\n")).unwrap();
}

/// The files under `root` that are objects of the repository: not the dot-files the local store
/// writes first and renames into place, which neither restic nor email-backup reads.
fn published(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

/// Every path under `root` (files and directories), sorted; empty if it does not exist.
pub(crate) fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A small deterministic generator (xorshift64*), so corpora are the same on every run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap()
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// One raw email: headers, a text part and a base64 attachment, `size` bytes.
pub(crate) fn raw_email(rng: &mut Rng, id: u64, size: usize) -> Vec<u8> {
    let mut text = format!(
        "Return-Path: <foi-{id}@authority.example.gov.uk>\r\nReceived: from mx.example.gov.uk\r\n\
         From: FOI Team <foi@authority.example.gov.uk>\r\nTo: request-{id}-abcd1234@whatdotheyknow.example\r\n\
         Subject: Freedom of Information request {id}\r\nMessage-ID: <{id}.{}@authority.example.gov.uk>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{id}\"\r\n\r\n--b{id}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nDear requester,\r\n\r\nPlease find attached the \
         information you asked for under the Freedom of Information Act 2000.\r\n\r\n--b{id}\r\n\
         Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        rng.next()
    )
    .into_bytes();
    while text.len() < size {
        for _ in 0..76 {
            text.push(B64[rng.index(64)]);
        }
        text.extend_from_slice(b"\r\n");
    }
    text.truncate(size);
    text
}

/// Writes `count` raw emails under `root` in Alaveteli's layout
/// (`<first 3 digits of the request id>/<request id>/<incoming message id>`), sizes 2–50 KiB.
/// Returns the files written.
pub(crate) fn alaveteli_corpus(root: &Path, count: u64, seed: u64) -> Vec<PathBuf> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::new();
    let mut message = 10_000 + seed * 1_000_000;
    let mut request = 12_000 + seed * 100_000;
    while (files.len() as u64) < count {
        request += 1 + rng.below(7);
        let dir = root
            .join(&request.to_string()[..3])
            .join(request.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..=rng.below(4) {
            message += 1 + rng.below(3);
            let size = 2048 + rng.index(48 * 1024);
            let path = dir.join(message.to_string());
            std::fs::write(&path, raw_email(&mut rng, message, size)).unwrap();
            files.push(path);
            if files.len() as u64 == count {
                break;
            }
        }
    }
    files
}

/// Asserts that `restored` holds the same tree as `original`: names, kinds, bytes, modes and
/// modification times of files.
pub(crate) fn assert_same_tree(original: &Path, restored: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let a = walk(original);
    let b = walk(restored);
    let rel = |root: &Path, v: &[PathBuf]| -> Vec<PathBuf> {
        v.iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(
        rel(original, &a),
        rel(restored, &b),
        "different entries in {} and {}",
        original.display(),
        restored.display()
    );
    for (x, y) in a.iter().zip(&b) {
        let (mx, my) = (x.symlink_metadata().unwrap(), y.symlink_metadata().unwrap());
        assert_eq!(mx.file_type(), my.file_type(), "{}", y.display());
        assert_eq!(mx.mode(), my.mode(), "mode of {}", y.display());
        if mx.is_file() {
            assert_eq!(mx.mtime(), my.mtime(), "mtime of {}", y.display());
            assert!(
                std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
                "{} differs from {}",
                y.display(),
                x.display()
            );
        } else if mx.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(x).unwrap(),
                std::fs::read_link(y).unwrap()
            );
        }
    }
}

/// The restored copy of an absolute source path under a restore target.
pub(crate) fn under(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}
