//! `email-backup check [--read-data | --read-data-subset N%]`: `rustic_core`'s check (index, packs,
//! snapshots and trees; with `--read-data`, every blob of the packs read is decrypted and hashed),
//! under a non-exclusive restic lock.

use std::fmt::Write as _;

use ops_common::cli::Context;
use ops_common::exit;
use rustic_core::{CheckOptions, ReadSubsetOption};
use serde_json::json;

use crate::commands::open;
use crate::error::{Error, Result};

/// restic's forms of `--read-data-subset`: `N%` with 0 < N ≤ 100, `n/m` with 1 ≤ n ≤ m, or a
/// size; `rustic_core` would take `150%` as everything and divide by zero on `1/0`. Its named
/// forms (`daily/week`) pass through.
fn validate_subset(subset: &str) -> Result<()> {
    let valid = if let Some(percent) = subset.strip_suffix('%') {
        percent
            .trim()
            .parse::<f64>()
            .is_ok_and(|p| p > 0.0 && p <= 100.0)
    } else if let Some((n, m)) = subset.split_once('/') {
        match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
            (Ok(n), Ok(m)) => n >= 1 && n <= m,
            (_, Ok(m)) => m > 0,
            _ => true,
        }
    } else {
        // `all` or a size (`500M`): rustic_core parses those.
        true
    };
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--read-data-subset {subset}: expected N% (0 < N <= 100), n/m (1 <= n <= m) or a size such as 500M"
        )))
    }
}

/// Runs `check`; status 1 when errors were found.
///
/// # Errors
/// An invalid subset, the repository, a lock held exclusively, the store.
pub fn run(ctx: &Context, read_data: bool, subset: Option<&str>, as_json: bool) -> Result<u8> {
    let mut options = CheckOptions::default();
    if let Some(subset) = subset {
        validate_subset(subset)?;
        let parsed: ReadSubsetOption =
            subset.parse().map_err(|e: Box<rustic_core::RusticError>| {
                Error::Usage(format!(
                    "--read-data-subset {subset}: {}",
                    crate::error::rustic_message(&e)
                ))
            })?;
        options = options.read_data(true).read_data_subset(parsed);
    } else if read_data {
        options = options.read_data(true);
    }
    let open = open(ctx)?;
    let lock = open.lock(false)?;
    let results = open
        .repo
        .check(options)
        .map_err(|e| Error::rustic("checking", &e))?;
    lock.release();

    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (level, finding) in &results.0 {
        let text = finding.to_string().replace(['\n', '\r'], " ");
        if format!("{level:?}") == "Error" {
            errors.push(text);
        } else {
            warnings.push(text);
        }
    }
    if as_json {
        ops_common::output::print_json(&json!({
            "errors": errors,
            "warnings": warnings,
            "read_data": options.read_data,
        }))?;
    } else {
        let mut out = String::new();
        for e in &errors {
            let _ = writeln!(out, "error: {e}");
        }
        for w in &warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(
            out,
            "{}",
            if errors.is_empty() {
                "no errors were found"
            } else {
                "the repository has errors"
            }
        );
        ops_common::output::print(&out)?;
    }
    Ok(if errors.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
