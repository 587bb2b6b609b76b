//! Running programs: shell commands of the plan, and the tools resources use (git, systemctl,
//! dpkg-query, psql).
//!
//! Every child gets a minimal, known environment: `PATH`, `LANG`, `HOME`, `USER`, `LOGNAME`, and
//! what the plan gives in `env:`. Nothing else of deploy's own environment is passed on; in
//! particular not `VAULT_TOOL_PASSWORD` or any other password a CI job gave deploy. Standard input
//! is closed unless the caller feeds it (SQL to psql).
//!
//! A command with a `user` runs through `runuser -u USER --` when deploy runs as root, and
//! directly when the user is deploy's own.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::accounts::Accounts;
use crate::model::Exec;

/// The `PATH` children get when deploy has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a finished program did.
#[derive(Debug)]
pub struct Output {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// True on exit status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exited with status N: `last lines of output`", for messages (mask before showing).
    pub fn failure(&self, what: &str) -> String {
        let status = match self.code {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_owned(),
        };
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() {
            format!("{what} {status}")
        } else {
            format!("{what} {status}: {tail}")
        }
    }
}

/// The user deploy runs as is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A program run with the minimal environment.
pub struct Program {
    command: Command,
    stdin: Option<Vec<u8>>,
}

impl Program {
    /// `program args…`, as deploy's own user.
    pub fn new(program: impl AsRef<std::ffi::OsStr>) -> Self {
        let mut command = Command::new(program);
        base_env(&mut command, None);
        Self {
            command,
            stdin: None,
        }
    }

    /// A shell command of the plan, as its user, in its directory, with its environment.
    ///
    /// # Errors
    /// A user other than deploy's own when deploy is not root, or one that does not exist.
    pub fn shell(exec: &Exec, accounts: &Accounts) -> Result<Self, String> {
        Self::shell_text(&exec.command, exec, accounts)
    }

    /// Like [`Program::shell`] with another command text (guards, health checks).
    ///
    /// # Errors
    /// See [`Program::shell`].
    pub fn shell_text(text: &str, exec: &Exec, accounts: &Accounts) -> Result<Self, String> {
        let mut program = match &exec.user {
            Some(user) => {
                let found = accounts
                    .user(user)
                    .ok_or_else(|| format!("there is no user {user:?}"))?;
                let mut p = if found.uid == rustix::process::geteuid().as_raw() {
                    Self::new("/bin/sh")
                } else if is_root() {
                    let mut p = Self::new("runuser");
                    p.command.args(["-u", user, "--", "/bin/sh"]);
                    p
                } else {
                    return Err(format!(
                        "deploy must run as root to run commands as {user:?}"
                    ));
                };
                base_env(&mut p.command, Some((user, &found.home)));
                p
            }
            None => Self::new("/bin/sh"),
        };
        program.command.args(["-c", text]);
        if let Some(cwd) = &exec.cwd {
            program.command.current_dir(cwd);
        }
        program.envs(&exec.env);
        Ok(program)
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Runs in a directory.
    #[must_use]
    pub fn dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Sets environment variables.
    pub fn envs(&mut self, env: &BTreeMap<String, String>) {
        self.command.envs(env);
    }

    /// Feeds standard input.
    #[must_use]
    pub fn stdin(mut self, input: Vec<u8>) -> Self {
        self.stdin = Some(input);
        self
    }

    /// The underlying command (to pipe it into another).
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Runs to completion, capturing its output.
    ///
    /// # Errors
    /// When the program cannot be started ("cannot run git: No such file or directory").
    ///
    /// # Panics
    /// Never: the pipes it takes are set up just before.
    pub fn run(mut self) -> Result<Output, String> {
        let name = self.command.get_program().to_string_lossy().into_owned();
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .command
            .spawn()
            .map_err(|e| format!("cannot run {name}: {e}"))?;
        if let Some(input) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {name}: {e}"))?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs and requires success; returns standard output.
    ///
    /// # Errors
    /// A program that cannot start or fails (with the tail of its output).
    pub fn ok(self, what: &str) -> Result<String, String> {
        let out = self.run()?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.failure(what))
        }
    }
}

/// Clears the environment and sets the minimal one.
fn base_env(command: &mut Command, user: Option<(&str, &PathBuf)>) {
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    let lang = std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".to_owned());
    command.env_clear().env("PATH", path).env("LANG", lang);
    match user {
        Some((name, home)) => {
            command
                .env("HOME", home)
                .env("USER", name)
                .env("LOGNAME", name);
        }
        None => {
            for name in ["HOME", "USER", "LOGNAME"] {
                if let Some(v) = std::env::var_os(name) {
                    command.env(name, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_a_minimal_environment_and_the_plans() {
        let mut env = BTreeMap::new();
        env.insert("GREETING".to_owned(), "hi".to_owned());
        let exec = Exec {
            command: "echo \"$GREETING\"; env | cut -d= -f1 | sort | tr '\\n' ' '".to_owned(),
            cwd: Some("/".into()),
            env,
            user: None,
        };
        let out = Program::shell(&exec, &Accounts::new(None))
            .unwrap()
            .run()
            .unwrap();
        assert!(out.success());
        assert!(out.stdout.starts_with("hi\n"), "{}", out.stdout);
        for name in out.stdout.lines().nth(1).unwrap().split_whitespace() {
            assert!(
                [
                    "GREETING", "HOME", "LANG", "LOGNAME", "PATH", "PWD", "SHLVL", "USER", "_"
                ]
                .contains(&name),
                "unexpected variable {name}"
            );
        }
        let failed = Program::new("/bin/sh")
            .args(["-c", "echo one; echo two >&2; exit 3"])
            .run()
            .unwrap();
        assert_eq!(failed.failure("x"), "x exited with status 3: two");
        assert!(Program::new("/no/such/program").run().is_err());
    }
}
