//! Logging: tracing to stderr, as text for people or JSON for cron; results go to stdout.
//!
//! JSON logs are one object per line with `timestamp`, `level`, `fields.message`, the other fields,
//! and the `span` of the invocation (the tool and command), so a log shipper can index them.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected `text` or `json`".to_owned()),
        }
    }
}

/// Log levels from most to least severe, as `-v`/`-q` step through them.
const LEVELS: [LevelFilter; 6] = [
    LevelFilter::OFF,
    LevelFilter::ERROR,
    LevelFilter::WARN,
    LevelFilter::INFO,
    LevelFilter::DEBUG,
    LevelFilter::TRACE,
];

/// Parses a level name (`error` … `trace`, or `off`).
///
/// # Errors
/// When the name is not a level.
pub fn parse_level(name: &str) -> Result<LevelFilter, String> {
    name.parse::<LevelFilter>()
        .map_err(|_| "expected one of off, error, warn, info, debug, trace".to_owned())
}

/// The level after `verbose` steps down and `quiet` steps up from `base`.
#[must_use]
pub fn adjust(base: LevelFilter, verbose: u8, quiet: u8) -> LevelFilter {
    let index = LEVELS.iter().position(|l| *l == base).unwrap_or(3);
    let index = (index + usize::from(verbose))
        .saturating_sub(usize::from(quiet))
        .min(LEVELS.len() - 1);
    LEVELS[index]
}

/// Installs the global subscriber. Only this crate's tools and ops crates log at the chosen level;
/// dependencies (the AWS SDK, hyper) only from `warn` up unless the level is `trace`, because their
/// debug output drowns everything else.
pub fn init(format: LogFormat, level: LevelFilter) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let deps = if level >= LevelFilter::TRACE {
        LevelFilter::TRACE
    } else {
        level.min(LevelFilter::WARN)
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(deps)
        .with_targets(
            [
                "ops_common",
                "wal_archive",
                "email_backup",
                "stats_anonymize",
                "vault_tool",
                "deploy",
            ]
            .map(|t| (t, level)),
        );
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false)
                    .without_time(),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    // A second init (tests calling `run` twice in one process) keeps the first subscriber.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_and_quiet_step_through_levels() {
        assert_eq!(adjust(LevelFilter::INFO, 0, 0), LevelFilter::INFO);
        assert_eq!(adjust(LevelFilter::INFO, 1, 0), LevelFilter::DEBUG);
        assert_eq!(adjust(LevelFilter::INFO, 5, 0), LevelFilter::TRACE);
        assert_eq!(adjust(LevelFilter::INFO, 0, 1), LevelFilter::WARN);
        assert_eq!(adjust(LevelFilter::INFO, 0, 9), LevelFilter::OFF);
    }
}
