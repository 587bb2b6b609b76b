//! What every tool's command line shares, and the driver that runs a tool.
//!
//! A tool's `main` is one call to [`main`]: it parses the arguments, answers the commands every tool
//! has (`config show`, `completions`, `man`), resolves the settings, sets up logging, runs the tool's
//! command, and turns the outcome into an exit status from [`crate::exit`]. An error is printed once,
//! on one line, as `<tool>: error: <what>: <cause>`; with JSON logs it is one JSON log line instead.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};
use tracing::level_filters::LevelFilter;

use crate::error::one_line;
use crate::exit;
use crate::logging::{self, LogFormat};
use crate::metrics::Metrics;
use crate::output::{self, OutputError};
use crate::settings::{Inputs, Setting, Settings};
use crate::vars;

/// Flags every tool takes, before or after its subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Read settings from an envdir (a directory with one file per variable, as daemontools'
    /// envdir); repeatable, later ones win.
    #[arg(long, global = true, value_name = "DIR")]
    pub envdir: Vec<PathBuf>,
    /// Read settings from a TOML file of `NAME = "value"` lines.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr [setting: `OPS_LOG_FORMAT`].
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (repeat for less).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

/// Commands every tool has.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CommonCommand {
    /// Inspect the settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (e.g. `> /etc/bash_completion.d/<tool>`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; e.g. `| man -l -`).
    Man,
}

/// `config` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print every setting with its resolved value and where it came from; secrets are redacted.
    Show {
        /// One JSON object: `{"NAME": {"value": …, "source": "flag|env|envdir|file|default"}}`.
        #[arg(long)]
        json: bool,
    },
}

/// An error a tool can report: it knows its exit status.
pub trait ToolError: std::error::Error + 'static {
    /// The status from [`crate::exit`]. [`exit::SUCCESS`] means "stop quietly" (stdout closed).
    fn exit_code(&self) -> u8;
}

impl ToolError for crate::Error {
    fn exit_code(&self) -> u8 {
        crate::Error::exit_code(self)
    }
}

/// Maps a failure to write stdout: a closed pipe ends the command successfully.
#[must_use]
pub fn output_exit_code(e: &OutputError) -> u8 {
    match e {
        OutputError::Closed => exit::SUCCESS,
        OutputError::Io(_) => exit::IO,
    }
}

/// A tool: its command line and how to run it.
pub trait Tool: Parser {
    /// The binary's name.
    const NAME: &'static str;
    /// Its error type.
    type Error: ToolError;

    /// Every setting the tool reads, shared ones included.
    fn settings() -> &'static [Setting];
    /// The global flags.
    fn globals(&self) -> &GlobalArgs;
    /// The common command, if that is what was asked.
    fn common(&self) -> Option<&CommonCommand>;
    /// Settings given as flags, by setting name.
    fn flag_settings(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Runs the tool's own command; returns the exit status on success (0, or 1 for "ran and found
    /// problems").
    ///
    /// # Errors
    /// Whatever stopped the command.
    fn run(self, ctx: &Context) -> Result<u8, Self::Error>;
}

/// What a running command gets besides its arguments.
#[derive(Debug)]
pub struct Context {
    /// The tool's name.
    pub tool: &'static str,
    /// The resolved settings.
    pub settings: Settings,
    /// The log format in effect.
    pub log_format: LogFormat,
}

impl Context {
    /// Writes metrics to `OPS_METRICS_DIR` if it is set. A failure is logged, not returned: a backup
    /// that worked must not be reported as failed because its metrics could not be written.
    pub fn write_metrics(&self, metrics: &Metrics) {
        let Some(dir) = self.settings.get(&vars::OPS_METRICS_DIR) else {
            return;
        };
        match metrics.write_to_dir(std::path::Path::new(dir)) {
            Ok(path) => tracing::debug!(path = %path.display(), "metrics written"),
            Err(e) => tracing::warn!("metrics not written: {}", one_line(&e)),
        }
    }
}

/// Runs a tool: the whole of its `main`.
pub fn main<T: Tool>() -> ExitCode {
    install_panic_hook(T::NAME);
    ExitCode::from(run::<T>(std::env::args_os()))
}

/// Runs a tool with explicit arguments and returns its exit status (for tests and `main`).
pub fn run<T: Tool>(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    let cli = match T::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return report_usage::<T>(&e),
    };
    let common = cli.common().cloned();
    match &common {
        Some(CommonCommand::Completions { shell }) => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut T::command(), T::NAME, &mut buf);
            return print_or_code(output::print_bytes(&buf));
        }
        Some(CommonCommand::Man) => {
            let mut buf = Vec::new();
            if let Err(e) = clap_mangen::Man::new(T::command()).render(&mut buf) {
                return report(T::NAME, LogFormat::Text, &e, exit::IO);
            }
            return print_or_code(output::print_bytes(&buf));
        }
        _ => {}
    }
    let globals = cli.globals().clone();
    let mut flags = cli.flag_settings();
    if let Some(format) = globals.log_format {
        let value = match format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        flags.push((vars::OPS_LOG_FORMAT.name, value.to_owned()));
    }
    let inputs = Inputs {
        flags,
        envdirs: globals.envdir.clone(),
        config_file: globals.config.clone(),
    };
    let settings = match Settings::resolve(T::settings(), &inputs) {
        Ok(s) => s,
        Err(e) => return report(T::NAME, LogFormat::Text, &e, e.exit_code()),
    };
    let (log_format, level) = match logging_choice(&settings, &globals) {
        Ok(choice) => choice,
        Err(e) => return report(T::NAME, LogFormat::Text, &e, e.exit_code()),
    };
    logging::init(log_format, level);
    if let Some(CommonCommand::Config(ConfigCommand::Show { json })) = common {
        let printed = if json {
            output::print_json(&settings.show_json())
        } else {
            output::print(&settings.show_text())
        };
        return print_or_code(printed);
    }
    let ctx = Context {
        tool: T::NAME,
        settings,
        log_format,
    };
    // One span per invocation: JSON log lines carry the tool, so a log shipper can tell them apart.
    let span = tracing::info_span!("run", tool = T::NAME);
    let _entered = span.enter();
    match cli.run(&ctx) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            if code == exit::SUCCESS {
                code
            } else {
                report(T::NAME, log_format, &e, code)
            }
        }
    }
}

fn logging_choice(
    settings: &Settings,
    globals: &GlobalArgs,
) -> crate::Result<(LogFormat, LevelFilter)> {
    let format = settings
        .parse::<LogFormat>(&vars::OPS_LOG_FORMAT)?
        .unwrap_or(LogFormat::Text);
    let base = match settings.get(&vars::OPS_LOG_LEVEL) {
        Some(name) => {
            logging::parse_level(name).map_err(|m| settings.invalid(&vars::OPS_LOG_LEVEL, m))?
        }
        None => LevelFilter::INFO,
    };
    Ok((
        format,
        logging::adjust(base, globals.verbose, globals.quiet),
    ))
}

fn print_or_code(result: Result<(), OutputError>) -> u8 {
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => output_exit_code(&e),
    }
}

/// Prints an error once, on one line, and returns `code`.
fn report(tool: &str, format: LogFormat, err: &(dyn std::error::Error + 'static), code: u8) -> u8 {
    let line = one_line(err);
    match format {
        LogFormat::Json => tracing::error!(exit_code = code, "{line}"),
        LogFormat::Text => {
            let _ = writeln!(std::io::stderr(), "{tool}: error: {line}");
        }
    }
    code
}

/// Help and version go to stdout with status 0; a usage error is one line and status 2.
fn report_usage<T: Tool>(e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print_or_code(output::print(&e.render().to_string()))
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(std::io::stderr(), "{}", e.render());
            exit::USAGE
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            let _ = writeln!(
                std::io::stderr(),
                "{}: error: {first} (see '{} --help')",
                T::NAME,
                T::NAME
            );
            exit::USAGE
        }
    }
}

/// A panic is a bug: say so on one line, then unwind to exit status 101 (never abort: PostgreSQL
/// treats a signal death of `archive_command` as a crash).
fn install_panic_hook(tool: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "{tool}: internal error (a bug, please report it): {message}{location}"
        );
    }));
}

/// Runs `future` on `runtime` for at most `limit`; `None` when the limit passed.
///
/// The runtime is then shut down without waiting for its blocking threads: dropping it would wait
/// for them without limit, so a read stuck on a hung mount would hang the command after all.
pub fn block_on_within<F: std::future::Future>(
    runtime: tokio::runtime::Runtime,
    limit: std::time::Duration,
    future: F,
) -> Option<F::Output> {
    let outcome = runtime.block_on(async { tokio::time::timeout(limit, future).await.ok() });
    runtime.shutdown_background();
    outcome
}

/// A multi-threaded runtime for commands that do I/O in parallel.
///
/// # Panics
/// If the operating system refuses to start threads.
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
}

/// A single-threaded runtime, for short commands where start-up time matters (`archive_command`).
///
/// # Panics
/// If the runtime cannot start.
#[must_use]
pub fn runtime_current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
}

/// Checks a tool's command line definition (clap's own consistency checks); for each tool's tests.
pub fn debug_assert_cli<T: Tool>() {
    T::command().debug_assert();
}
