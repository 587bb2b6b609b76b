//! PostgreSQL continuous archiving and point-in-time recovery to S3 or a local directory.

use clap::Parser;
use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;
use ops_common::vars;

/// Every setting `wal-archive` reads.
pub static SETTINGS: &[Setting] = &vars::LOGGING;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "wal-archive",
    version,
    about = "PostgreSQL continuous archiving and point-in-time recovery to S3 or a local directory"
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
    const NAME: &'static str = "wal-archive";
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
