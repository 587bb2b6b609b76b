//! `view`: prints decrypted vaults, or YAML files with their inline values revealed.
//!
//! ansible-vault pipes the text through a pager; here it goes to stdout (pipe it to `less`).
//! Every file is decrypted before anything is printed.

use ops_common::cli::Context;
use ops_common::{exit, output};

use super::{decrypt_any, keyring, read_input};
use crate::cli::ViewArgs;
use crate::error::Result;

pub(super) fn run(args: &ViewArgs, ctx: &Context) -> Result<u8> {
    let keys = keyring(ctx, &args.passwords)?;
    let mut texts = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let input = read_input(file)?;
        texts.push(decrypt_any(&input, &keys)?);
    }
    for text in &texts {
        output::print_bytes(text)?;
    }
    Ok(exit::SUCCESS)
}
