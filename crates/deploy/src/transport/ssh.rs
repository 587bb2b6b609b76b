//! The SSH transport: the plan is compiled here and applied on the host by the same binary.
//!
//! Per host, with the OpenSSH client (`ssh -o BatchMode=yes`, so it never prompts):
//! 1. `sha256sum <remote_dir>/deploy` on the host; when it is missing or differs from the binary
//!    to send (another version, or another build of the same one), the binary is streamed over
//!    the session's stdin into `<remote_dir>/.deploy.upload`, made executable, renamed into place
//!    and run with `--version` to check it runs there;
//! 2. `[sudo -n] <remote_dir>/deploy apply-plan`: the compiled plan goes over the session's stdin
//!    (JSON), and each result comes back as one JSON line on stdout, printed as it arrives. The
//!    remote deploy's log lines come back on stderr.
//!
//! Secrets travel only inside the plan, through the encrypted session, and live only in the
//! remote process's memory until they are written to the files that need them: nothing is put in
//! a temporary file or on a command line. The host needs `sha256sum`, `sh`, `mkdir`, `cat`, `chmod`,
//! `mv` (coreutils), `sudo` for `become`, and the programs the plan's resources use.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest as _;

use crate::config::{DEFAULT_REMOTE_DIR, Host};
use crate::error::{Error, Result};
use crate::model::{Event, Plan, Summary};

/// The settings a child process must not inherit (the ssh client has no use for passwords).
const PRIVATE_ENV: [&str; 3] = [
    "VAULT_TOOL_PASSWORD",
    "ANSIBLE_VAULT_PASSWORD_FILE",
    "ANSIBLE_VAULT_IDENTITY_LIST",
];

/// One host over SSH.
#[derive(Debug)]
pub struct Ssh<'a> {
    host: &'a Host,
}

/// Quotes a path for the remote shell, keeping a leading `~/` unquoted so the shell expands it.
pub fn remote_path(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("~/{}", crate::template::shell_quote(rest)),
        None if path == "~" => "~".to_owned(),
        None => crate::template::shell_quote(path),
    }
}

/// The SHA-256 of a file, in hex.
///
/// # Errors
/// An unreadable file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(sha2::Sha256::digest(&data)))
}

impl<'a> Ssh<'a> {
    /// The transport to a host.
    pub fn new(host: &'a Host) -> Self {
        Self { host }
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Transport {
            host: self.host.name.clone(),
            message: message.into(),
        }
    }

    /// `ssh <options> <host> -- <remote command>`.
    fn command(&self, remote: &str) -> Command {
        let spec = &self.host.spec;
        let mut c = Command::new("ssh");
        for name in PRIVATE_ENV {
            c.env_remove(name);
        }
        c.args(["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]);
        if let Some(port) = spec.port {
            c.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &spec.user {
            c.arg("-l").arg(user);
        }
        if let Some(identity) = &spec.identity_file {
            c.arg("-i").arg(identity).args(["-o", "IdentitiesOnly=yes"]);
        }
        for option in &spec.ssh_options {
            c.arg("-o").arg(option);
        }
        c.arg(spec.host.as_deref().unwrap_or(&self.host.name));
        c.arg("--").arg(remote);
        c
    }

    fn remote_dir(&self) -> &str {
        self.host
            .spec
            .remote_dir
            .as_deref()
            .unwrap_or(DEFAULT_REMOTE_DIR)
            .trim_end_matches('/')
    }

    fn remote_binary(&self) -> String {
        format!("{}/deploy", self.remote_dir())
    }

    /// Runs a remote command, feeding `input`, and returns its stdout.
    fn run(&self, remote: &str, input: Option<Vec<u8>>, what: &str) -> Result<String> {
        let mut c = self.command(remote);
        c.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| self.error(format!("cannot run ssh: {e}")))?;
        if let Some(data) = input {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.error(format!("waiting for ssh: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            return Err(self.error(format!(
                "{what}: ssh exited with status {}{}",
                out.status
                    .code()
                    .map_or_else(|| "(signal)".to_owned(), |c| c.to_string()),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {}", last.trim())
                }
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes sure the host has this build of the binary.
    ///
    /// # Errors
    /// The host cannot be reached, or the copy does not run there.
    pub fn ensure_binary(&self, binary: &Path) -> Result<()> {
        let wanted = file_sha256(binary)?;
        let target = remote_path(&self.remote_binary());
        let found = self.run(
            &format!("sha256sum -- {target} 2>/dev/null || true"),
            None,
            "checking the deploy binary",
        )?;
        if found.split_whitespace().next() == Some(wanted.as_str()) {
            tracing::debug!(host = %self.host.name, "the host has this deploy binary");
            return Ok(());
        }
        let dir = remote_path(self.remote_dir());
        let upload = remote_path(&format!("{}/.deploy.upload", self.remote_dir()));
        let data = std::fs::read(binary).map_err(|e| Error::io(binary, e))?;
        tracing::info!(
            host = %self.host.name,
            "copying the deploy binary ({} MiB) to {}",
            data.len() >> 20,
            self.remote_binary()
        );
        let version = self.run(
            &format!(
                "umask 077 && mkdir -p {dir} && cat > {upload} && chmod 755 {upload} && mv -f {upload} {target} && {target} --version"
            ),
            Some(data),
            "copying the deploy binary",
        )?;
        let expected = format!("deploy {}", env!("CARGO_PKG_VERSION"));
        if version.trim() != expected {
            return Err(self.error(format!(
                "the copied binary answered {:?} to --version, not {expected:?}",
                version.trim()
            )));
        }
        Ok(())
    }

    /// Applies a plan on the host, streaming its results to `on_event`.
    ///
    /// # Errors
    /// The host cannot be reached, or the remote deploy stopped before the end of the plan.
    ///
    /// # Panics
    /// Never: stdin and stdout are piped just before they are taken.
    pub fn apply(
        &self,
        plan: &Plan,
        binary: &Path,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Summary> {
        self.ensure_binary(binary)?;
        let sudo = if self.host.spec.become_root {
            "sudo -n "
        } else {
            ""
        };
        let remote = format!("{sudo}{} apply-plan", remote_path(&self.remote_binary()));
        let mut c = self.command(&remote);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c
            .spawn()
            .map_err(|e| self.error(format!("cannot run ssh: {e}")))?;
        let input = serde_json::to_vec(plan).map_err(|e| self.error(e.to_string()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut done = None;
        let mut problem = None;
        for line in BufReader::new(stdout).lines() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    problem = Some(format!("reading the results: {e}"));
                    break;
                }
            };
            if !line.starts_with('{') {
                if !line.trim().is_empty() {
                    tracing::warn!(host = %self.host.name, "the host printed: {line}");
                }
                continue;
            }
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => {
                    if let Event::Done(summary) = &event {
                        done = Some(*summary);
                    }
                    on_event(&event);
                }
                Err(e) => {
                    problem = Some(format!("an unreadable result line: {e}"));
                    break;
                }
            }
        }
        let _ = writer.join();
        let status = child
            .wait()
            .map_err(|e| self.error(format!("waiting for ssh: {e}")))?;
        if let Some(p) = problem {
            return Err(self.error(p));
        }
        match done {
            Some(summary) => Ok(summary),
            None => Err(self.error(format!(
                "the remote deploy stopped before the end of the plan (ssh exited with status {})",
                status
                    .code()
                    .map_or_else(|| "(signal)".to_owned(), |c| c.to_string())
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_keep_the_home_directory_expandable() {
        assert_eq!(
            remote_path("~/.cache/alaveteli-ops"),
            "~/.cache/alaveteli-ops"
        );
        assert_eq!(remote_path("~/my dir"), "~/'my dir'");
        assert_eq!(remote_path("/opt/deploy"), "/opt/deploy");
    }
}
