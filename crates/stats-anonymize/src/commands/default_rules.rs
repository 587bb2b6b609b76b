//! `stats-anonymize default-rules`: the built-in Alaveteli rules, to start a rules file from.

use ops_common::exit;

use crate::error::Result;

/// Prints the built-in rules.
///
/// # Errors
/// When stdout cannot be written.
pub fn run() -> Result<u8> {
    ops_common::output::print(crate::rules::ALAVETELI)?;
    Ok(exit::SUCCESS)
}
