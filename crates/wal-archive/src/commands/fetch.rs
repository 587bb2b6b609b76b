//! `wal-archive fetch %f %p`: restore one WAL file, for `restore_command`.
//!
//! PostgreSQL asks for files that do not exist as a matter of course (the next timeline's history
//! file, the segment after the last one): those end with status 1 and nothing on stderr. Anything
//! else that goes wrong — the store unreachable after retries, a corrupt object, the time limit —
//! must not look like "not found", or PostgreSQL would end recovery there and silently lose
//! everything after it: those end with status 200, which makes PostgreSQL stop recovery instead.

use std::io::Write as _;
use std::path::Path;

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::fsutil::AtomicFile;

use crate::archive;
use crate::error::{Error, Result};
use crate::settings;
use crate::walfile;

/// Runs `fetch`.
///
/// # Errors
/// [`Error::AbortRecovery`] for everything but a file that is not in the archive.
pub fn run(ctx: &Context, name: &str, destination: &Path) -> Result<u8> {
    match fetch(ctx, name, destination) {
        Ok(true) => Ok(exit::SUCCESS),
        Ok(false) => {
            tracing::debug!(file = name, "not in the archive");
            Ok(exit::FAILURE)
        }
        Err(e) => Err(Error::AbortRecovery {
            file: name.to_owned(),
            cause: Box::new(e),
        }),
    }
}

/// Fetches `name` into `destination`; `Ok(false)` when the archive does not have it.
fn fetch(ctx: &Context, name: &str, destination: &Path) -> Result<bool> {
    if walfile::classify(name).is_none() {
        // Nothing that is not a WAL file name is ever archived.
        return Ok(false);
    }
    let timeout = settings::command_timeout(&ctx.settings)?;
    let store = settings::open_store(&ctx.settings)?;
    let key = archive::wal_key(name);
    let fetched = ops_common::cli::runtime_current_thread()
        .block_on(async { tokio::time::timeout(timeout, store.get_bytes(&key)).await })
        .map_err(|_| Error::Timeout(timeout))?;
    let sealed = match fetched {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let data = archive::open(&sealed)
        .map_err(|e| Error::Integrity(format!("{}: {e}", store.describe(&key))))?;
    let mut file = AtomicFile::create(destination, 0o600)?;
    file.write_all(&data)
        .map_err(|e| Error::io(destination, e))?;
    file.commit()?;
    tracing::debug!(file = name, bytes = data.len(), "restored");
    Ok(true)
}
