//! ansible-vault compatible secret files, with the project's `vault_` variable convention.
//!
//! `vault-tool` reads and writes ansible-vault files byte-compatibly (formats 1.1 and 1.2, vault
//! ids, inline `!vault` values in YAML), so a team can switch without re-encrypting anything and
//! keep using ansible alongside. Its commands have ansible-vault's names and flags (`create`,
//! `edit`, `view`, `encrypt`, `decrypt`, `rekey`, `encrypt-string`), plus `check` (the `vault_`
//! convention over an ansible tree), `envdir` (secrets for the other tools) and `textconv`
//! (readable `git diff` of vault files).
//!
//! The library is what other tools use (`deploy` reads the site's secrets through it):
//! - [`format`](mod@format): the vault format itself: [`format::parse_envelope`], [`format::encrypt`],
//!   [`format::decrypt`];
//! - [`password`]: password sources (files, executables, the CI variable) and the
//!   [`password::Keyring`] that tries them;
//! - [`yaml`]: YAML files with inline `!vault` values, to plain values;
//! - [`convention`]: the `vault_` convention check.
//!
//! It does not prompt for passwords, and does not read `ansible.cfg`: passwords come from files,
//! executables and settings (see [`settings`]).

pub mod cli;
mod commands;
pub mod convention;
mod editor;
mod error;
pub mod format;
pub mod password;
pub mod settings;
pub mod yaml;

use ops_common::cli::{CommonCommand, Context, GlobalArgs, Tool};
use ops_common::settings::Setting;

pub use cli::Cli;
pub use error::{Error, FormatError, Result};
pub use settings::SETTINGS;

impl Tool for Cli {
    const NAME: &'static str = "vault-tool";
    type Error = Error;

    fn settings() -> &'static [Setting] {
        SETTINGS
    }

    fn globals(&self) -> &GlobalArgs {
        &self.globals
    }

    fn common(&self) -> Option<&CommonCommand> {
        match &self.command {
            cli::Command::Common(common) => Some(common),
            _ => None,
        }
    }

    fn flag_settings(&self) -> Vec<(&'static str, String)> {
        let encrypt_id = match &self.command {
            cli::Command::Create(a) => a.encrypt_vault_id.as_ref(),
            cli::Command::Encrypt(a) => a.encrypt_vault_id.as_ref(),
            cli::Command::EncryptString(a) => a.encrypt_vault_id.as_ref(),
            _ => None,
        };
        encrypt_id
            .map(|id| (settings::ANSIBLE_VAULT_ENCRYPT_IDENTITY.name, id.clone()))
            .into_iter()
            .collect()
    }

    fn run(self, ctx: &Context) -> Result<u8> {
        commands::run(self.command, ctx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        ops_common::cli::debug_assert_cli::<super::Cli>();
    }
}
