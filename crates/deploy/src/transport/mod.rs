//! Getting a compiled plan applied on a host, and its results back.
//!
//! - `local`: in this process ([`crate::apply::run`]).
//! - `ssh`: through the OpenSSH client, see [`ssh`].
//!
//! Either way each result is handed to the caller as soon as it is known.

pub mod ssh;

use std::path::Path;

use crate::config::{Host, TransportKind};
use crate::error::Result;
use crate::model::{Event, Plan, Summary};

/// Applies a plan on a host, calling `on_event` with each result.
///
/// # Errors
/// The host could not be reached, or the remote deploy failed outside the plan.
pub fn apply(
    host: &Host,
    plan: &Plan,
    remote_binary: &Path,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    match host.spec.transport {
        TransportKind::Local => Ok(crate::apply::run(plan, on_event)),
        TransportKind::Ssh => ssh::Ssh::new(host).apply(plan, remote_binary, on_event),
    }
}
