//! ansible-vault compatible secret files, with the vault_ variable convention.
//!
//! The library, for the commands and for `deploy`:
//! - [`format`]: the ansible-vault format (1.1 and 1.2), byte-compatibly;
//! - [`password`]: password sources and the keyring that tries them;
//! - [`yaml`]: YAML files with inline `!vault` values, to plain values;
//! - [`convention`]: the `vault_` convention check.
//!
//! The commands come next.

pub mod convention;
mod error;
pub mod format;
pub mod password;
pub mod settings;
pub mod yaml;

pub use error::{Error, FormatError, Result};
pub use settings::SETTINGS;

use clap::Parser;
use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vault-tool",
    version,
    about = "ansible-vault compatible secret files, with the vault_ variable convention"
)]
pub struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Common(CommonCommand),
}

impl Tool for Cli {
    const NAME: &'static str = "vault-tool";
    type Error = ops_common::Error;

    fn settings() -> &'static [Setting] {
        SETTINGS
    }

    fn globals(&self) -> &GlobalArgs {
        &self.globals
    }

    fn common(&self) -> Option<&CommonCommand> {
        match &self.command {
            Command::Common(common) => Some(common),
        }
    }

    fn run(self, _ctx: &Context) -> Result<u8, Self::Error> {
        match self.command {
            Command::Common(_) => unreachable!("common commands are answered by ops_common::cli"),
        }
    }
}
