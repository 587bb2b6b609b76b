//! One module per command, and what they share.

pub mod check;
pub mod default_rules;
pub mod rollback;
pub mod run;

use ops_common::settings::Settings;

use crate::error::{Error, Result};
use crate::rules::Rules;
use crate::settings;

/// The rules from `STATS_ANONYMIZE_RULES`, or the built-in ones, and how to name them in messages.
///
/// # Errors
/// When the file cannot be read, or the rules are invalid ([`Error::Rules`]).
pub fn load_rules(settings: &Settings) -> Result<(Rules, String)> {
    let (text, origin) = match settings::rules_path(settings) {
        Some(path) => (
            std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?,
            format!("rules {}", path.display()),
        ),
        None => (
            crate::rules::ALAVETELI.to_owned(),
            "the built-in rules".to_owned(),
        ),
    };
    let rules = Rules::parse(&text, &origin).map_err(Error::Rules)?;
    Ok((rules, origin))
}
