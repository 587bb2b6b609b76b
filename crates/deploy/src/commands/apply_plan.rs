//! `deploy apply-plan` (hidden): what the SSH transport runs on a host. Reads one compiled plan
//! as JSON on stdin, applies it, and writes one JSON event per line on stdout as each result is
//! known. The plan (which holds secrets) lives only in this process's memory.

use std::io::Read as _;

use ops_common::exit;
use ops_common::output;

use crate::error::{Error, Result};
use crate::model::{Event, FORMAT, Plan};

/// Runs `apply-plan`; the status is 1 when a resource failed.
///
/// # Errors
/// An unreadable plan, or one of another format or version.
pub(crate) fn run() -> Result<u8> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::io("stdin", e))?;
    let plan: Plan = serde_json::from_slice(&input).map_err(|e| Error::Plan(e.to_string()))?;
    zeroize::Zeroize::zeroize(&mut input);
    if plan.format != FORMAT || plan.version != env!("CARGO_PKG_VERSION") {
        return Err(Error::Plan(format!(
            "format {} of deploy {}, this is format {FORMAT} of deploy {}",
            plan.format,
            plan.version,
            env!("CARGO_PKG_VERSION")
        )));
    }
    let mut closed = None;
    let summary = crate::apply::run(&plan, &mut |event: &Event| {
        if closed.is_some() {
            return;
        }
        let mut line = serde_json::to_string(event).expect("events serialize");
        line.push('\n');
        if let Err(e) = output::print(&line) {
            closed = Some(e);
        }
    });
    if let Some(e) = closed {
        return Err(Error::Output(e));
    }
    Ok(if summary.failed > 0 {
        exit::FAILURE
    } else {
        exit::SUCCESS
    })
}
