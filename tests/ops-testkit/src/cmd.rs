//! Running the real binaries from tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A command to run with a cleared environment: only `PATH` and what the test adds, so the
/// machine's environment cannot change a test's outcome.
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    as_postgres: bool,
    dir: Option<PathBuf>,
}

/// What a command did.
#[derive(Debug)]
pub struct Output {
    /// Exit status (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Raw standard output.
    pub stdout_bytes: Vec<u8>,
    /// Wall time.
    pub elapsed: Duration,
    shown: String,
}

impl Cmd {
    /// A command running `program`.
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            as_postgres: false,
            dir: None,
        }
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets several environment variables.
    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Feeds stdin.
    #[must_use]
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs as the `postgres` user when the tests run as root (as `archive_command` does).
    #[must_use]
    pub fn as_postgres(mut self) -> Self {
        self.as_postgres = true;
        self
    }

    /// Runs in a directory.
    #[must_use]
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    fn command(&self) -> Command {
        let mut cmd = if self.as_postgres && crate::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"]);
            // runuser resets nothing we need, but `env` makes the cleared environment explicit.
            for (k, v) in &self.env {
                let mut pair = k.clone();
                pair.push("=");
                pair.push(v);
                c.arg(pair);
            }
            c.arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        if !(self.as_postgres && crate::is_root()) {
            cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        }
        cmd.args(&self.args);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    fn shown(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        format!("{} {}", self.program.display(), args.join(" "))
    }

    /// Runs to completion.
    ///
    /// # Panics
    /// If the program cannot be started.
    pub fn run(&self) -> Output {
        let start = Instant::now();
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.shown()));
        if let Some(input) = &self.stdin {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin piped");
            let input = input.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let out = child.wait_with_output().expect("waiting for the command");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            stdout_bytes: out.stdout,
            elapsed: start.elapsed(),
            shown: self.shown(),
        }
    }

    /// Starts without waiting (to kill it half-way).
    ///
    /// # Panics
    /// If the program cannot be started.
    pub fn spawn(&self) -> std::process::Child {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.shown()))
    }
}

impl Output {
    /// Asserts exit status 0 and returns self.
    ///
    /// # Panics
    /// Otherwise, showing the output.
    #[track_caller]
    pub fn success(self) -> Self {
        self.code(0)
    }

    /// Asserts an exit status and returns self.
    ///
    /// # Panics
    /// Otherwise, showing the output.
    #[track_caller]
    pub fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.code,
            Some(expected),
            "`{}` exited with {:?}, expected {expected}\n--- stdout\n{}\n--- stderr\n{}",
            self.shown,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    ///
    /// # Panics
    /// Otherwise.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr of `{}` lacks {needle:?}:\n{}",
            self.shown,
            self.stderr
        );
        self
    }

    /// Asserts that stdout contains `needle`.
    ///
    /// # Panics
    /// Otherwise.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout of `{}` lacks {needle:?}:\n{}",
            self.shown,
            self.stdout
        );
        self
    }

    /// Asserts that stderr is a single line (errors are printed once, on one line).
    ///
    /// # Panics
    /// Otherwise.
    #[track_caller]
    pub fn one_line_error(self) -> Self {
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "stderr of `{}` is not one line:\n{}",
            self.shown,
            self.stderr
        );
        self
    }
}
