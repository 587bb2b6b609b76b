//! What the tests share: the binary, the fixtures, a scratch directory, small assertions.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

pub(crate) use ops_testkit::{Cmd, Output};

/// The password of the v1 and v5 fixtures (and of `v1-password.txt`, whitespace stripped).
pub(crate) const V1_PASSWORD: &str = "correct horse battery staple";

/// `vault-tool`, with a cleared environment.
pub(crate) fn vt() -> Cmd {
    Cmd::new(env!("CARGO_BIN_EXE_vault-tool"))
}

/// A fixture made by ansible-vault (see tests/fixtures/vault/README.md).
pub(crate) fn fixture(name: &str) -> PathBuf {
    ops_testkit::fixtures_dir().join("vault").join(name)
}

/// A fixture's bytes.
pub(crate) fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A scratch directory, removed at the end of the test.
pub(crate) struct Scratch(tempfile::TempDir);

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes a file (creating its directories) and returns its path.
    pub(crate) fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Writes an executable shell script.
    pub(crate) fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.write(name, format!("#!/bin/sh\n{body}\n"));
        set_mode(&path, 0o755);
        path
    }

    /// Copies a fixture in.
    pub(crate) fn copy_fixture(&self, name: &str, as_name: &str) -> PathBuf {
        self.write(as_name, fixture_bytes(name))
    }
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn header(path: &Path) -> String {
    String::from_utf8(read(path))
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The names in a directory, sorted (to see that no temporary file was left).
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Encrypts `plaintext` with vault-tool and the password in `VAULT_TOOL_PASSWORD`, into `path`.
pub(crate) fn encrypt_to(path: &Path, plaintext: &[u8], password: &str, label: Option<&str>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut cmd = vt()
        .args(["encrypt", "--output"])
        .arg(path)
        .env("VAULT_TOOL_PASSWORD", password)
        .stdin(plaintext.to_vec());
    if let Some(label) = label {
        cmd = cmd.env("VAULT_TOOL_PASSWORD_ID", label);
    }
    cmd.run().success();
}

/// Asserts that an output contains no secret.
#[track_caller]
pub(crate) fn assert_no_secret(out: &Output, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "{s:?} leaked:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}
