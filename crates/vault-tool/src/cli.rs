//! The command line (clap only): ansible-vault's command names and flags, and vault-tool's own.
//!
//! Values are `Option`s without clap defaults: defaults live in the settings
//! ([`crate::settings`]), so that `config show` tells where each value came from.

use std::path::PathBuf;

use clap::Parser;
use ops_common::cli::{CommonCommand, GlobalArgs};

use crate::password::VaultIdSpec;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vault-tool",
    version,
    about = "ansible-vault compatible secret files, with the vault_ variable convention",
    long_about = "ansible-vault compatible secret files, with the vault_ variable convention.\n\n\
        Reads and writes ansible-vault 1.1 and 1.2 files (and inline !vault values) byte-compatibly, \
        with ansible-vault's command names and flags. Passwords come from --vault-password-file, \
        --vault-id, ANSIBLE_VAULT_PASSWORD_FILE or VAULT_TOOL_PASSWORD, never from the command line."
)]
pub struct Cli {
    /// Flags every tool takes.
    #[command(flatten)]
    pub globals: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a new encrypted file with $EDITOR (refuses an existing file).
    Create(CreateArgs),
    /// Edit an encrypted file with $EDITOR, re-encrypting it only if it changed.
    Edit(EditArgs),
    /// Print the decrypted content of vault files, or of YAML files with inline !vault values.
    View(ViewArgs),
    /// Encrypt files in place (or to --output), or stdin.
    Encrypt(EncryptArgs),
    /// Decrypt files in place (or to --output), or stdin; YAML files with inline !vault values
    /// get plain values.
    Decrypt(DecryptArgs),
    /// Re-encrypt files with a new password.
    Rekey(RekeyArgs),
    /// Encrypt a value for a YAML file (`NAME: !vault |`).
    #[command(name = "encrypt-string", visible_alias = "encrypt_string")]
    EncryptString(EncryptStringArgs),
    /// Check the vault_ convention over an ansible directory; print every violation.
    Check(CheckArgs),
    /// Write chosen variables as an envdir (directory 0700, files 0600, written atomically).
    Envdir(EnvdirArgs),
    /// Print a file decrypted, for git's diff.DRIVER.textconv (plaintext files as they are).
    Textconv(TextconvArgs),
    /// The commands every tool has.
    #[command(flatten)]
    Common(CommonCommand),
}

/// Where the passwords come from (never the command line itself).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PasswordArgs {
    /// A vault id: `LABEL@FILE` or `FILE`, where FILE holds the password or is an executable
    /// printing it; repeatable, tried in order (the one whose label matches a vault first).
    #[arg(long = "vault-id", value_name = "[LABEL@]FILE")]
    pub vault_id: Vec<VaultIdSpec>,
    /// A password file or executable, with the vault id `default`; repeatable.
    #[arg(
        long = "vault-password-file",
        visible_alias = "vault-pass-file",
        value_name = "FILE"
    )]
    pub vault_password_file: Vec<PathBuf>,
}

/// `create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The file to create.
    pub file: PathBuf,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
    /// The vault id to encrypt with, when several are loaded [setting: `ANSIBLE_VAULT_ENCRYPT_IDENTITY`].
    #[arg(long, value_name = "LABEL")]
    pub encrypt_vault_id: Option<String>,
}

/// `edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The files to edit, one after the other.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
}

/// `view`.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// The files to print (`-` for stdin).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
}

/// `encrypt`.
#[derive(Debug, clap::Args)]
pub struct EncryptArgs {
    /// The files to encrypt in place; stdin when none (or `-`).
    pub files: Vec<PathBuf>,
    /// Write here instead (`-` for stdout); only with one input.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
    /// The vault id to encrypt with, when several are loaded [setting: `ANSIBLE_VAULT_ENCRYPT_IDENTITY`].
    #[arg(long, value_name = "LABEL")]
    pub encrypt_vault_id: Option<String>,
}

/// `decrypt`.
#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// The files to decrypt in place; stdin when none (or `-`).
    pub files: Vec<PathBuf>,
    /// Write here instead (`-` for stdout), atomically with mode 0600; only with one input.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
}

/// `rekey`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("new").required(true).args(["new_vault_password_file", "new_vault_id"])))]
pub struct RekeyArgs {
    /// The files to re-encrypt.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
    /// The new password file or executable (vault id `default`: format 1.1).
    #[arg(long, value_name = "FILE")]
    pub new_vault_password_file: Option<PathBuf>,
    /// The new vault id, `LABEL@FILE` (format 1.2 with that label).
    #[arg(long, value_name = "[LABEL@]FILE")]
    pub new_vault_id: Option<VaultIdSpec>,
}

/// `encrypt-string`.
#[derive(Debug, clap::Args)]
pub struct EncryptStringArgs {
    /// Values to encrypt; `-` (or none) reads one value from stdin, trailing newline included.
    /// Values given here are visible to other users in the process list: prefer stdin.
    pub values: Vec<String>,
    /// The variable name of each value, in order; repeatable.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// The variable name of the value read from stdin.
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Option<String>,
    /// Drop one trailing newline from the value read from stdin (ansible keeps it).
    #[arg(long)]
    pub trim_newline: bool,
    /// Write here instead of stdout (atomically, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
    /// The vault id to encrypt with, when several are loaded [setting: `ANSIBLE_VAULT_ENCRYPT_IDENTITY`].
    #[arg(long, value_name = "LABEL")]
    pub encrypt_vault_id: Option<String>,
}

/// `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The ansible directory (holding `group_vars/`, `host_vars/`, roles and playbooks).
    pub dir: PathBuf,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
}

/// `envdir`.
#[derive(Debug, clap::Args)]
pub struct EnvdirArgs {
    /// The envdir to write (created with mode 0700; other files in it are left alone).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A variables file to take values from: a vault, YAML with inline values, or plain YAML;
    /// repeatable, a later file wins.
    #[arg(long = "from", value_name = "FILE", required = true)]
    pub from: Vec<PathBuf>,
    /// `NAME` (the file NAME gets the value of the variable NAME) or `NAME=VARIABLE`.
    #[arg(required = true, value_name = "VAR")]
    pub vars: Vec<String>,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
}

/// `textconv`.
#[derive(Debug, clap::Args)]
pub struct TextconvArgs {
    /// The file git gives (a temporary copy of one side of the diff).
    pub file: PathBuf,
    /// Where the passwords come from.
    #[command(flatten)]
    pub passwords: PasswordArgs,
}
