//! `create`: a new vault written with `$EDITOR`.
//!
//! Refuses a file that exists (`edit` is for those). Missing parent directories are created (as
//! ansible does). The password is loaded before the editor starts, so a password problem never
//! costs an edit. The new file has mode 0600; leaving the editor with a failure status (`:cq`)
//! creates nothing.

use std::ffi::OsStr;

use ops_common::cli::Context;
use ops_common::{exit, fsutil};

use super::{editor_command, encrypt_id, keyring};
use crate::cli::CreateArgs;
use crate::editor;
use crate::error::{Error, Result};
use crate::format;
use crate::password::KeyringSource as _;

pub(super) fn run(args: &CreateArgs, ctx: &Context) -> Result<u8> {
    let path = &args.file;
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::Exists { path: path.clone() });
    }
    let keys = keyring(ctx, &args.passwords)?;
    let secret = keys.keyring()?.encryption_secret(encrypt_id(ctx))?;
    let command = editor_command(ctx)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        tracing::warn!(dir = %parent.display(), "creating the missing directory");
        fsutil::create_dir_all_durable(parent)?;
    }
    let name = path.file_name().unwrap_or(OsStr::new("vault"));
    // Unchanged means empty: ansible still creates the (empty) vault, and so does this.
    let text = editor::edit(&command, name, b"")?.unwrap_or_default();
    let vault = format::encrypt(&text, secret.password(), Some(secret.label()))
        .map_err(|e| e.for_input(&path.display().to_string()))?;
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::Exists { path: path.clone() });
    }
    fsutil::write_atomic(path, vault.as_bytes(), 0o600)?;
    tracing::info!(file = %path.display(), vault_id = secret.label(), "created");
    Ok(exit::SUCCESS)
}
