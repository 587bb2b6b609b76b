//! `deploy`: idempotent configuration and releases of an Alaveteli site, run from CI; it replaces
//! the ansible playbook the site's pipeline ran (see `docs/deploy.md`).
//!
//! The flow of `apply`:
//! 1. [`config`] reads the configuration directory (an ansible-like tree) and its inventory;
//! 2. [`vars`] reads the variables in layers, decrypts the vaults in memory with vault-tool's
//!    library and renders every variable ([`template`]: Jinja2 through minijinja, strict);
//! 3. [`plan`] parses the typed resources of `plan/*.yml` and compiles them for one host into a
//!    [`model::Plan`]: everything rendered, checked, and no secret on a command line or in a
//!    world-readable file;
//! 4. [`transport`] applies that plan here ([`apply`], one module per kind in [`resources`]) or
//!    sends it over SSH to the same binary on the host (`deploy apply-plan`), and streams
//!    [`model::Event`]s back; [`report`] prints them.
//!
//! Every secret value is masked ([`secrets`]) in whatever is shown. `deploy` does not manage users
//! and groups, does not render templates on the hosts, applies hosts one after the other, and
//! never restarts PostgreSQL by itself.

pub mod accounts;
pub mod apply;
mod cli;
pub mod config;
mod error;
pub mod exec;
pub mod fsops;
pub mod model;
pub mod plan;
pub mod report;
pub mod resources;
pub mod secrets;
pub mod settings;
pub mod template;
pub mod transport;
pub mod vars;

pub use cli::Cli;
pub use error::{Error, Result};

use cli::Command;
use model::Mode;
use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;
pub use settings::SETTINGS;

mod commands;

impl Tool for Cli {
    const NAME: &'static str = "deploy";
    type Error = Error;

    fn settings() -> &'static [Setting] {
        SETTINGS
    }

    fn globals(&self) -> &GlobalArgs {
        &self.globals
    }

    fn common(&self) -> Option<&CommonCommand> {
        match &self.command {
            Command::Common(common) => Some(common),
            _ => None,
        }
    }

    fn flag_settings(&self) -> Vec<(&'static str, String)> {
        self.dir
            .as_ref()
            .map(|d| (settings::DEPLOY_DIR.name, d.to_string_lossy().into_owned()))
            .into_iter()
            .collect()
    }

    fn run(self, ctx: &Context) -> Result<u8> {
        let dir = self.dir.as_deref();
        match self.command {
            Command::Apply(args) => commands::apply::run(
                ctx,
                dir,
                &args.env,
                Mode::Apply,
                args.diff,
                &args.run,
                &args.source,
            ),
            Command::Rollback(args) => commands::apply::run(
                ctx,
                dir,
                &args.env,
                Mode::Rollback,
                false,
                &args.run,
                &args.source,
            ),
            Command::Diff(args) => commands::diff::run(ctx, dir, &args),
            Command::ApplyPlan => commands::apply_plan::run(),
            Command::Common(_) => unreachable!("answered by ops_common::cli"),
        }
    }
}
