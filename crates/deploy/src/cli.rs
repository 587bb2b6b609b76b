//! The command line (clap only; settings are resolved by `ops_common::settings`).
//!
//! Values are `Option`s without clap defaults where a setting backs them, so that `config show`
//! tells where each value came from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ops_common::cli::{CommonCommand, GlobalArgs};
use vault_tool::cli::PasswordArgs;

/// Idempotent configuration and releases of an Alaveteli site, run from CI.
#[derive(Debug, Parser)]
#[command(
    name = "deploy",
    version,
    about = "Idempotent configuration and releases of an Alaveteli site, run from CI",
    long_about = "Idempotent configuration and releases of an Alaveteli site, run from CI.\n\n\
        Reads a configuration directory laid out like an ansible tree (inventory.yml, group_vars/ \
        with ansible-vault secrets, plan/ of typed resources, Jinja2 templates/, files/), renders \
        the plan on this machine, and applies it locally or over SSH.",
    after_help = "Exit statuses: 0 done, 1 a resource failed (or `diff` found differences that are not allowed), \
        3 invalid configuration, 4 unknown environment or nothing to roll back, 10 a host could not be reached, \
        11 wrong vault password; the full table is in docs/deploy.md."
)]
pub struct Cli {
    /// Flags every tool takes.
    #[command(flatten)]
    pub(crate) globals: GlobalArgs,
    /// The configuration directory [setting: `DEPLOY_DIR`, default: the current directory].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply the plan to every host of an environment.
    Apply(ApplyArgs),
    /// Switch each release back to the one before it, and run the release's handlers.
    Rollback(RollbackArgs),
    /// Render two environments and list every difference; fail on any that no allowed variable explains.
    Diff(DiffArgs),
    /// Apply a compiled plan read from stdin, printing one JSON result per line (what `apply` runs
    /// on SSH hosts).
    #[command(hide = true)]
    ApplyPlan,
    /// The commands every tool has.
    #[command(flatten)]
    Common(CommonCommand),
}

/// What a command reads besides the configuration directory.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct SourceArgs {
    /// A YAML file of variables that override every other (as ansible's `-e @FILE`); repeatable,
    /// later ones win.
    #[arg(long = "extra-vars", short = 'e', value_name = "FILE")]
    pub(crate) extra_vars: Vec<PathBuf>,
    /// Vault passwords (never on the command line itself).
    #[command(flatten)]
    pub(crate) passwords: PasswordArgs,
}

/// How results are shown and where the plan is applied.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct RunArgs {
    /// Change nothing; say what would change.
    #[arg(long)]
    pub(crate) check: bool,
    /// Print one JSON document at the end instead of a line per resource.
    #[arg(long)]
    pub(crate) json: bool,
    /// Apply under this directory instead of `/` (file system resources only; resources that act
    /// on the running system are skipped).
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
    /// Only this host of the environment (its name in the inventory).
    #[arg(long, value_name = "HOST")]
    pub(crate) host: Option<String>,
    /// Apply every host's plan on this machine, whatever the inventory says (as ansible's
    /// `-c local`): for running on the host itself, and with `--root` for tests.
    #[arg(long)]
    pub(crate) local: bool,
}

/// `apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The environment (from inventory.yml).
    pub(crate) env: String,
    /// Show a unified diff of each change, with secret values masked.
    #[arg(long)]
    pub(crate) diff: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) source: SourceArgs,
}

/// `rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The environment (from inventory.yml).
    pub(crate) env: String,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) source: SourceArgs,
}

/// `diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The first environment.
    pub(crate) env_a: String,
    /// The second environment.
    pub(crate) env_b: String,
    /// A variable allowed to differ (a `*` matches any characters: `vault_*`); repeatable, added
    /// to the list in `diff-allow.yml`.
    #[arg(long, value_name = "VAR")]
    pub(crate) allow: Vec<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) source: SourceArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
