//! `decrypt`: files in place, to `--output`, or stdin to stdout.
//!
//! Every input is decrypted before anything is written, so a wrong password or a damaged file
//! leaves everything as it was. Files are written atomically with mode 0600. A YAML file with
//! inline `!vault` values gets plain values in their place.

use ops_common::cli::Context;
use ops_common::exit;

use super::{Destination, decrypt_any, inputs, keyring, one_input_for_output, read_input};
use crate::cli::DecryptArgs;
use crate::error::Result;

pub(super) fn run(args: &DecryptArgs, ctx: &Context) -> Result<u8> {
    let files = inputs(&args.files);
    one_input_for_output(args.output.as_deref(), &files)?;
    let keys = keyring(ctx, &args.passwords)?;
    let mut results = Vec::with_capacity(files.len());
    for file in &files {
        let input = read_input(file)?;
        let plaintext = decrypt_any(&input, &keys)?;
        results.push((Destination::of(args.output.as_deref(), &input), plaintext));
    }
    for (destination, plaintext) in &results {
        destination.write(plaintext, 0o600)?;
    }
    Ok(exit::SUCCESS)
}
