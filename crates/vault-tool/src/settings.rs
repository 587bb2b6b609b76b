//! The settings `vault-tool` reads, declared once.
//!
//! Where ansible already has a name for a setting (`ANSIBLE_VAULT_PASSWORD_FILE`,
//! `ANSIBLE_VAULT_IDENTITY_LIST`, `ANSIBLE_VAULT_ENCRYPT_IDENTITY`, `ANSIBLE_VAULT_ID_MATCH`, and
//! the editor's `EDITOR`), that name is used, so an existing environment works unchanged. Like
//! every setting, each can also come from an `--envdir` or the `--config` file.
//!
//! The password itself is never a flag (argv is visible to every user of the machine): it comes
//! from a file, an executable, or [`VAULT_TOOL_PASSWORD`] for CI.

use ops_common::settings::Setting;
use ops_common::vars;

/// A password file or executable, tried after those on the command line.
pub const ANSIBLE_VAULT_PASSWORD_FILE: Setting = Setting::new(
    "ANSIBLE_VAULT_PASSWORD_FILE",
    "A vault password file, or an executable printing the password, loaded with the vault id `default` after those given on the command line (as ansible's).",
);

/// Vault ids loaded before those on the command line.
pub const ANSIBLE_VAULT_IDENTITY_LIST: Setting = Setting::new(
    "ANSIBLE_VAULT_IDENTITY_LIST",
    "Comma-separated `label@source` vault ids loaded before those given on the command line (as ansible's `vault_identity_list`).",
);

/// The vault id to encrypt with when several are loaded.
pub const ANSIBLE_VAULT_ENCRYPT_IDENTITY: Setting = Setting::new(
    "ANSIBLE_VAULT_ENCRYPT_IDENTITY",
    "The vault id (label) to encrypt with when several passwords are loaded.",
)
.flag("--encrypt-vault-id");

/// Only try the password whose label matches the vault's.
pub const ANSIBLE_VAULT_ID_MATCH: Setting = Setting::new(
    "ANSIBLE_VAULT_ID_MATCH",
    "When true, a vault with a vault id is only decrypted with the password of that id; otherwise the matching password is tried first, then the others (as ansible's).",
)
.default("false");

/// The vault password itself, for CI.
pub const VAULT_TOOL_PASSWORD: Setting = Setting::new(
    "VAULT_TOOL_PASSWORD",
    "The vault password itself, for CI variables (surrounding whitespace is stripped, as from a password file); loaded after every other source.",
)
.secret();

/// The vault id of [`VAULT_TOOL_PASSWORD`].
pub const VAULT_TOOL_PASSWORD_ID: Setting = Setting::new(
    "VAULT_TOOL_PASSWORD_ID",
    "The vault id (label) of `VAULT_TOOL_PASSWORD`.",
)
.default("default");

/// The editor of `create` and `edit`.
pub const EDITOR: Setting = Setting::new(
    "EDITOR",
    "The editor `create` and `edit` run, split like a shell command line, with the temporary file appended (it must not return before the file is saved: `code -w`, not `code`).",
)
.default("vi");

/// The settings that decide which passwords are loaded; a tool that decrypts vaults with
/// [`crate::password::Sources::from_settings`] (such as `deploy`) declares these.
pub const PASSWORDS: [Setting; 6] = [
    ANSIBLE_VAULT_PASSWORD_FILE,
    ANSIBLE_VAULT_IDENTITY_LIST,
    ANSIBLE_VAULT_ENCRYPT_IDENTITY,
    ANSIBLE_VAULT_ID_MATCH,
    VAULT_TOOL_PASSWORD,
    VAULT_TOOL_PASSWORD_ID,
];

/// Every setting `vault-tool` reads.
pub static SETTINGS: &[Setting] = &[
    ANSIBLE_VAULT_PASSWORD_FILE,
    ANSIBLE_VAULT_IDENTITY_LIST,
    ANSIBLE_VAULT_ENCRYPT_IDENTITY,
    ANSIBLE_VAULT_ID_MATCH,
    VAULT_TOOL_PASSWORD,
    VAULT_TOOL_PASSWORD_ID,
    EDITOR,
    vars::LOGGING[0],
    vars::LOGGING[1],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_include_logging_and_every_password_setting() {
        for s in vars::LOGGING.iter().chain(PASSWORDS.iter()) {
            assert!(SETTINGS.iter().any(|t| t.name == s.name), "{}", s.name);
        }
        let secrets: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.name)
            .collect();
        assert_eq!(secrets, ["VAULT_TOOL_PASSWORD"]);
        assert!(SETTINGS.iter().all(|s| !(s.secret && s.flag.is_some())));
    }
}
