//! The settings `deploy` reads, declared once.
//!
//! Most of what a deployment needs lives in the configuration directory (inventory, variables,
//! plan), not in settings: settings say where that directory is, which binary to send to SSH
//! hosts, and where the vault passwords come from. The password settings are vault-tool's, with
//! ansible's names, so an environment set up for ansible-vault or vault-tool works unchanged; the
//! password itself is never a flag.

use ops_common::settings::Setting;
use ops_common::vars;
use vault_tool::settings as vault;

/// The configuration directory.
pub const DEPLOY_DIR: Setting = Setting::new(
    "DEPLOY_DIR",
    "The configuration directory: `inventory.yml`, `group_vars/`, `plan/`, `templates/`, `files/` (see docs/deploy.md).",
)
.flag("--dir")
.default(".");

/// The binary sent to SSH hosts.
pub const DEPLOY_REMOTE_BINARY: Setting = Setting::new(
    "DEPLOY_REMOTE_BINARY",
    "The `deploy` binary copied to SSH hosts that lack it or have another build (it must run there: same architecture, a glibc as old or older); unset: this executable.",
);

/// Every setting `deploy` reads.
pub static SETTINGS: &[Setting] = &[
    DEPLOY_DIR,
    DEPLOY_REMOTE_BINARY,
    vault::ANSIBLE_VAULT_PASSWORD_FILE,
    vault::ANSIBLE_VAULT_IDENTITY_LIST,
    vault::ANSIBLE_VAULT_ID_MATCH,
    vault::VAULT_TOOL_PASSWORD,
    vault::VAULT_TOOL_PASSWORD_ID,
    vars::LOGGING[0],
    vars::LOGGING[1],
];

#[cfg(test)]
mod tests {
    use super::*;
    use ops_common::settings::{Inputs, Settings};

    #[test]
    fn settings_include_logging_and_what_vault_tool_reads() {
        for s in &vars::LOGGING {
            assert!(SETTINGS.iter().any(|t| t.name == s.name), "{}", s.name);
        }
        // `Sources::from_settings` panics on a setting the tool did not declare.
        let settings = Settings::resolve_with_env(SETTINGS, &Inputs::default(), |_| Ok(None))
            .expect("defaults resolve");
        let sources = vault_tool::password::Sources::from_settings(&settings, &[], &[]).unwrap();
        assert!(sources.is_empty());
        assert!(SETTINGS.iter().all(|s| !(s.secret && s.flag.is_some())));
    }
}
