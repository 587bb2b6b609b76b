//! `check DIR`: the `vault_` convention over an ansible directory (see [`crate::convention`]).
//!
//! Prints every violation on its own line (`path:line: message`) and exits with status 1 when
//! there is any; prints nothing and exits 0 when the tree follows the convention.

use ops_common::cli::Context;
use ops_common::{exit, output};

use super::keyring;
use crate::cli::CheckArgs;
use crate::convention;
use crate::error::{Error, Result};

pub(super) fn run(args: &CheckArgs, ctx: &Context) -> Result<u8> {
    let meta = std::fs::metadata(&args.dir).map_err(|e| Error::io(&args.dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{}: not a directory",
            args.dir.display()
        )));
    }
    let keys = keyring(ctx, &args.passwords)?;
    let violations = convention::check(&args.dir, &keys)?;
    if violations.is_empty() {
        tracing::info!(dir = %args.dir.display(), "the vault_ convention holds");
        return Ok(exit::SUCCESS);
    }
    let mut text = String::new();
    for v in &violations {
        text.push_str(&v.to_string());
        text.push('\n');
    }
    output::print(&text)?;
    tracing::warn!(
        count = violations.len(),
        "violations of the vault_ convention"
    );
    Ok(exit::FAILURE)
}
