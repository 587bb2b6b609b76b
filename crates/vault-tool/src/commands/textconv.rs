//! `textconv`: prints a file decrypted, for git's `diff.<driver>.textconv`.
//!
//! git runs it on each side of a diff. It never fails on content, so that `git diff` keeps
//! working for someone without the password: a plaintext file is printed as it is, and a vault
//! that cannot be decrypted (no password, wrong password, damaged) is printed as it is with a
//! warning on stderr. Only an unreadable file is an error.

use ops_common::cli::Context;
use ops_common::{exit, output};

use super::{decrypt_any, keyring, read_input};
use crate::cli::TextconvArgs;
use crate::error::{Error, Result};

pub(super) fn run(args: &TextconvArgs, ctx: &Context) -> Result<u8> {
    let input = read_input(&args.file)?;
    let keys = keyring(ctx, &args.passwords)?;
    match decrypt_any(&input, &keys) {
        Ok(plaintext) => output::print_bytes(&plaintext)?,
        Err(Error::NotEncrypted { .. }) => output::print_bytes(&input.data)?,
        Err(e @ (Error::Io { .. } | Error::NotFound { .. } | Error::Output(_))) => return Err(e),
        Err(e) => {
            tracing::warn!("{}; showing it encrypted", ops_common::one_line(&e));
            output::print_bytes(&input.data)?;
        }
    }
    Ok(exit::SUCCESS)
}
