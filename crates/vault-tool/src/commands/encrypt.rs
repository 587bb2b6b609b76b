//! `encrypt`: files in place, to `--output`, or stdin to stdout.
//!
//! Refuses input that is already a vault (as ansible does). Every input is encrypted before
//! anything is written; files are written atomically with mode 0600.

use ops_common::cli::Context;
use ops_common::exit;

use super::{Destination, encrypt_id, inputs, keyring, one_input_for_output, read_input};
use crate::cli::EncryptArgs;
use crate::error::Result;
use crate::format;
use crate::password::KeyringSource as _;

pub(super) fn run(args: &EncryptArgs, ctx: &Context) -> Result<u8> {
    let files = inputs(&args.files);
    one_input_for_output(args.output.as_deref(), &files)?;
    let keys = keyring(ctx, &args.passwords)?;
    let secret = keys.keyring()?.encryption_secret(encrypt_id(ctx))?;
    let mut results = Vec::with_capacity(files.len());
    for file in &files {
        let input = read_input(file)?;
        let vault = format::encrypt(&input.data, secret.password(), Some(secret.label()))
            .map_err(|e| e.for_input(&input.name))?;
        results.push((Destination::of(args.output.as_deref(), &input), vault));
    }
    for (destination, vault) in &results {
        destination.write(vault.as_bytes(), 0o600)?;
    }
    Ok(exit::SUCCESS)
}
