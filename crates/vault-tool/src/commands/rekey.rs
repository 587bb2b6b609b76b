//! `rekey`: re-encrypt vaults with a new password.
//!
//! The new password comes from `--new-vault-password-file` (vault id `default`, so format 1.1)
//! or `--new-vault-id LABEL@FILE` (format 1.2 with that label). Every file is decrypted and
//! re-encrypted before any is written; each keeps its mode and owner.

use ops_common::cli::Context;
use ops_common::exit;

use super::{keyring, read_input, replace_keeping_mode};
use crate::cli::RekeyArgs;
use crate::error::{Error, Result};
use crate::format;
use crate::password::{KeyringSource as _, Sources, VaultIdSpec};

pub(super) fn run(args: &RekeyArgs, ctx: &Context) -> Result<u8> {
    let new_spec = match (&args.new_vault_id, &args.new_vault_password_file) {
        (Some(spec), _) => spec.clone(),
        (None, Some(file)) => VaultIdSpec::password_file(file),
        (None, None) => {
            return Err(Error::Usage(
                "rekey needs --new-vault-password-file or --new-vault-id".to_owned(),
            ));
        }
    };
    let new_keyring = Sources::from_vault_ids(vec![new_spec]).load()?;
    let new = new_keyring.encryption_secret(None)?;
    let keys = keyring(ctx, &args.passwords)?;
    let mut results = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let input = read_input(file)?;
        let Some(path) = input.path.clone() else {
            return Err(Error::Usage("rekey needs files, not stdin".to_owned()));
        };
        if !format::is_encrypted(&input.data) {
            return Err(Error::NotEncrypted { input: input.name });
        }
        let done = keys
            .keyring()?
            .decrypt(&input.data)
            .map_err(|e| e.for_input(&input.name))?;
        let vault = format::encrypt(&done.plaintext, new.password(), Some(new.label()))
            .map_err(|e| e.for_input(&input.name))?;
        results.push((path, input.name, vault));
    }
    for (path, name, vault) in &results {
        replace_keeping_mode(path, vault.as_bytes())?;
        tracing::info!(file = %name, vault_id = new.label(), "rekeyed");
    }
    Ok(exit::SUCCESS)
}
