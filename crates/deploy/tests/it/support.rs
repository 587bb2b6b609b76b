//! A configuration directory in a temporary directory, and running deploy on it.

use std::path::{Path, PathBuf};

use ops_testkit::{Cmd, Output, TempDir};

/// The vault password the tests encrypt with.
pub(crate) const PASSWORD: &str = "test-vault-password";

/// The deploy binary under test.
pub(crate) fn deploy() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_deploy"))
}

/// A configuration directory (`cfg/`), a root to apply under (`root/`), and scratch space.
pub(crate) struct Site {
    pub(crate) tmp: TempDir,
}

impl Site {
    /// A site with a one-host `staging` and `production` inventory and the password file.
    pub(crate) fn new(label: &str) -> Self {
        let site = Self {
            tmp: TempDir::new(label),
        };
        site.write(
            "inventory.yml",
            "environments:\n  staging:\n    hosts:\n      stage1: {transport: local}\n  production:\n    hosts:\n      web1: {transport: local}\n",
        );
        std::fs::write(site.tmp.path().join("vault-pass"), format!("{PASSWORD}\n")).unwrap();
        site
    }

    /// The configuration directory.
    pub(crate) fn cfg(&self) -> PathBuf {
        self.tmp.path().join("cfg")
    }

    /// The directory the plan is applied under.
    pub(crate) fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// A scratch path (for live resources and handler traces).
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file of the configuration directory.
    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.cfg().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Writes a vault file (ansible-vault format) of the configuration directory.
    pub(crate) fn write_vault(&self, rel: &str, plaintext: &str) {
        let text =
            vault_tool::format::encrypt(plaintext.as_bytes(), PASSWORD.as_bytes(), None).unwrap();
        self.write(rel, &text);
    }

    /// `deploy --dir cfg ARGS…` with the vault password file.
    pub(crate) fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        Cmd::new(deploy())
            .arg("--dir")
            .arg(self.cfg())
            .args(args)
            .env(
                "ANSIBLE_VAULT_PASSWORD_FILE",
                self.tmp.path().join("vault-pass"),
            )
    }

    /// `deploy apply staging --root root ARGS…`.
    pub(crate) fn apply_root(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "apply".into(),
            "staging".into(),
            "--root".into(),
            self.root().into_os_string(),
        ];
        args.extend(extra.iter().map(std::ffi::OsString::from));
        self.cmd(args).run()
    }

    /// `deploy apply staging ARGS…` (live: the plan's paths are inside the temporary directory).
    pub(crate) fn apply_live(&self, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "staging"];
        args.extend(extra);
        self.cmd(args).run()
    }
}

/// The summary of a `--json` run.
pub(crate) fn summary(out: &Output) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
    doc["summary"].clone()
}

/// The result of the resource named `name` in a `--json` run.
pub(crate) fn result<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["hosts"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result for {name}: {doc}"))
}
