//! `encrypt-string` (also `encrypt_string`): values for YAML files, as `NAME: !vault |` blocks.
//!
//! As ansible-vault: the value read from stdin (when no value is given, for `-`, or with
//! `--stdin-name`) comes first, then the values given as arguments, named by `--name` in order.
//! The output is ansible's, with a final newline (ansible 2.14 prints none; later versions do).
//!
//! Differences that avoid common mistakes: a value read from stdin that ends with a newline is
//! encrypted with it, as ansible does, but with a warning (`--trim-newline` drops it); a single
//! `--name` with a value on stdin names that value (ansible would drop the name); more names than
//! values, and names that are not variable names, are errors.

use std::io::Read as _;

use ops_common::cli::Context;
use ops_common::{exit, fsutil, output};
use zeroize::Zeroizing;

use super::{encrypt_id, is_dash, keyring};
use crate::cli::EncryptStringArgs;
use crate::error::{Error, Result};
use crate::password::KeyringSource as _;
use crate::{format, yaml};

pub(super) fn run(args: &EncryptStringArgs, ctx: &Context) -> Result<u8> {
    let given: Vec<&str> = args
        .values
        .iter()
        .map(String::as_str)
        .filter(|v| *v != "-")
        .collect();
    let read_stdin =
        args.values.is_empty() || args.values.iter().any(|v| v == "-") || args.stdin_name.is_some();
    let mut names = args.names.clone();
    let mut stdin_name = args.stdin_name.clone();
    if read_stdin && given.is_empty() && stdin_name.is_none() && names.len() == 1 {
        stdin_name = names.pop();
    }
    for name in names.iter().chain(stdin_name.iter()) {
        if !yaml::is_variable_name(name) {
            return Err(Error::Usage(format!(
                "{name:?} is not a variable name (letters, digits and _, not starting with a digit)"
            )));
        }
    }
    if names.len() > given.len() {
        return Err(Error::Usage(format!(
            "{} --name options for {} value(s) given as arguments",
            names.len(),
            given.len()
        )));
    }
    if !names.is_empty() && names.len() < given.len() {
        tracing::warn!(
            "{} value(s) have no --name; they are printed without one",
            given.len() - names.len()
        );
    }
    let keys = keyring(ctx, &args.passwords)?;
    let secret = keys.keyring()?.encryption_secret(encrypt_id(ctx))?;

    let mut values: Vec<(Option<String>, Zeroizing<Vec<u8>>)> = Vec::new();
    if read_stdin {
        values.push((stdin_name, read_stdin_value(args.trim_newline)?));
    }
    for (i, value) in given.iter().enumerate() {
        if value.is_empty() {
            return Err(Error::Usage(
                "an empty value was given; not encrypting".to_owned(),
            ));
        }
        values.push((
            names.get(i).cloned(),
            Zeroizing::new(value.as_bytes().to_vec()),
        ));
    }
    let mut out = Vec::with_capacity(values.len());
    for (name, value) in &values {
        let vault = format::encrypt(value, secret.password(), Some(secret.label()))?;
        out.push(yaml::format_inline(name.as_deref(), &vault));
    }
    let mut text = out.join("\n");
    text.push('\n');
    match &args.output {
        Some(path) if !is_dash(path) => fsutil::write_atomic(path, text.as_bytes(), 0o600)?,
        _ => output::print(&text)?,
    }
    Ok(exit::SUCCESS)
}

fn read_stdin_value(trim_newline: bool) -> Result<Zeroizing<Vec<u8>>> {
    let mut value = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .read_to_end(&mut value)
        .map_err(|e| Error::io("stdin", e))?;
    if value.is_empty() {
        return Err(Error::Usage("stdin was empty; not encrypting".to_owned()));
    }
    if value.ends_with(b"\n") {
        if trim_newline {
            value.pop();
            if value.ends_with(b"\r") {
                value.pop();
            }
        } else {
            tracing::warn!(
                "the value read from stdin ends with a newline, which is encrypted with it (as ansible does); use --trim-newline or `printf %s` to leave it out"
            );
        }
    }
    Ok(value)
}
