//! `edit`: decrypt to a private temporary file, run `$EDITOR`, re-encrypt if it changed.
//!
//! Re-encrypts with the password that decrypted the file and keeps its vault id (so a 1.1 file
//! stays 1.1), keeps the file's mode and owner, and writes atomically. If the file changed on
//! disk while it was being edited (a `git pull` in another terminal), it is left alone and the
//! edit is saved, encrypted, next to it. Inline `!vault` values are not edited here: edit such a
//! file as plain text and make new values with `encrypt-string`.

use std::ffi::OsStr;

use ops_common::cli::Context;
use ops_common::{exit, fsutil};

use super::{editor_command, keyring, read_input, replace_keeping_mode};
use crate::cli::EditArgs;
use crate::editor;
use crate::error::{Error, Result};
use crate::format;
use crate::password::KeyringSource;
use crate::yaml;

pub(super) fn run(args: &EditArgs, ctx: &Context) -> Result<u8> {
    let keys = keyring(ctx, &args.passwords)?;
    let command = editor_command(ctx)?;
    for file in &args.files {
        edit_one(file, &keys, &command)?;
    }
    Ok(exit::SUCCESS)
}

fn edit_one(file: &std::path::Path, keys: &dyn KeyringSource, command: &[String]) -> Result<()> {
    let input = read_input(file)?;
    let Some(path) = input.path.clone() else {
        return Err(Error::Usage("edit needs a file, not stdin".to_owned()));
    };
    if !format::is_encrypted(&input.data) {
        if std::str::from_utf8(&input.data).is_ok_and(yaml::has_inline_values) {
            return Err(Error::Usage(format!(
                "{}: has inline !vault values, which edit does not change; edit it as plain text and make new values with `vault-tool encrypt-string`",
                input.name
            )));
        }
        return Err(Error::NotEncrypted { input: input.name });
    }
    let done = keys
        .keyring()?
        .decrypt(&input.data)
        .map_err(|e| e.for_input(&input.name))?;
    let name = path.file_name().unwrap_or(OsStr::new("vault"));
    let Some(edited) = editor::edit(command, name, &done.plaintext)? else {
        tracing::info!(file = %input.name, "unchanged; not re-encrypted");
        return Ok(());
    };
    let label = done.header_label.as_deref();
    let vault = format::encrypt(&edited, done.secret.password(), label)
        .map_err(|e| e.for_input(&input.name))?;
    let now = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if now != *input.data {
        let saved = path.with_file_name(format!(
            "{}.edited-{}",
            name.to_string_lossy(),
            fsutil::random_suffix()
        ));
        fsutil::write_atomic(&saved, vault.as_bytes(), 0o600)?;
        return Err(Error::ChangedDuringEdit { path, saved });
    }
    replace_keeping_mode(&path, vault.as_bytes())?;
    tracing::info!(file = %input.name, vault_id = label.unwrap_or(format::DEFAULT_LABEL), "re-encrypted");
    Ok(())
}
