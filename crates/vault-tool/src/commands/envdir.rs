//! `envdir --out DIR --from FILE… VAR…`: chosen variables as an envdir, for the tools that read
//! their secrets from one (`wal-archive`, `email-backup`).
//!
//! `VAR` is `NAME` (the file `NAME` gets the value of the variable `NAME`) or `NAME=VARIABLE`.
//! Variables are read from the `--from` files (vaults, YAML with inline values, or plain YAML; a
//! later file wins). Every value is found and checked before anything is written. The directory
//! is created with mode 0700 (an existing one is tightened to it); each file is written
//! atomically with mode 0600; other files in the directory are left alone.
//!
//! Values are encoded for daemontools' envdir rules (the first line of the file, trailing spaces
//! and tabs removed, NUL bytes read as newlines): newlines are written as NUL bytes; a value that
//! holds a NUL byte or ends with a space or tab cannot be represented and is refused.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use ops_common::cli::Context;
use ops_common::{exit, fsutil};
use serde_yaml_ng::Value;
use zeroize::Zeroizing;

use super::{keyring, read_input};
use crate::cli::EnvdirArgs;
use crate::error::{Error, FormatError, Result};
use crate::yaml;

pub(super) fn run(args: &EnvdirArgs, ctx: &Context) -> Result<u8> {
    let wanted = parse_vars(&args.vars)?;
    let keys = keyring(ctx, &args.passwords)?;
    let mut vars = BTreeMap::new();
    let mut sources = Vec::new();
    for file in &args.from {
        let input = read_input(file)?;
        let value = yaml::load_vars(&input.data, &keys).map_err(|e| e.for_input(&input.name))?;
        match value {
            Value::Null => {}
            Value::Mapping(mapping) => {
                for (k, v) in mapping {
                    vars.insert(yaml::key_text(&k), v);
                }
            }
            _ => {
                return Err(Error::Malformed {
                    input: Some(input.name),
                    problem: FormatError::new("not a mapping of variables"),
                });
            }
        }
        sources.push(input.name);
    }
    let mut files = Vec::with_capacity(wanted.len());
    for (name, variable) in &wanted {
        let value = vars.get(*variable).ok_or_else(|| Error::MissingKey {
            key: (*variable).to_owned(),
            files: sources.clone(),
        })?;
        files.push((*name, encode(variable, value)?));
    }
    prepare_dir(&args.out)?;
    for (name, content) in &files {
        fsutil::write_atomic(&args.out.join(name), content, 0o600)?;
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    tracing::info!(dir = %args.out.display(), "wrote {}", names.join(", "));
    Ok(exit::SUCCESS)
}

/// `NAME` or `NAME=VARIABLE`, checked as envdir file names.
fn parse_vars(vars: &[String]) -> Result<Vec<(&str, &str)>> {
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(vars.len());
    for var in vars {
        let (name, variable) = var.split_once('=').unwrap_or((var, var));
        if name.is_empty()
            || variable.is_empty()
            || name.starts_with('.')
            || name.contains(['/', '\0'])
        {
            return Err(Error::Usage(format!(
                "{var:?}: expected NAME or NAME=VARIABLE, where NAME is an envdir file name (no `/`, not starting with `.`)"
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Error::Usage(format!("{name} is given twice")));
        }
        out.push((name, variable));
    }
    Ok(out)
}

/// A value as an envdir file: newlines as NUL bytes, then one newline.
fn encode(variable: &str, value: &Value) -> Result<Zeroizing<Vec<u8>>> {
    let refuse = |message: &str| Error::Unrepresentable {
        what: variable.to_owned(),
        message: message.to_owned(),
    };
    let text = Zeroizing::new(match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => return Err(refuse("is null, not a value")),
        _ => {
            return Err(refuse(
                "is not a single value (a list, a mapping or a tagged value)",
            ));
        }
    });
    if text.contains('\0') {
        return Err(refuse("contains a NUL byte, which an envdir cannot hold"));
    }
    if text.ends_with([' ', '\t']) {
        return Err(refuse("ends with a space or tab, which envdir would strip"));
    }
    let mut content = Zeroizing::new(text.replace('\n', "\0").into_bytes());
    content.push(b'\n');
    Ok(content)
}

/// Creates the directory with mode 0700, or tightens an existing one to it.
fn prepare_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode != 0o700 {
                tracing::warn!(dir = %dir.display(), "mode {mode:04o} tightened to 0700");
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(dir, e))?;
            }
            Ok(())
        }
        Ok(_) => Err(Error::Usage(format!(
            "{}: exists and is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent {
                fsutil::create_dir_all_durable(parent)?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
            fsutil::sync_dir(parent.unwrap_or(Path::new(".")))?;
            Ok(())
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_for_envdir() {
        let enc = |v: Value| encode("x", &v).map(|c| c.to_vec());
        assert_eq!(enc(Value::from("a b")).unwrap(), b"a b\n");
        assert_eq!(enc(Value::from("l1\nl2\n")).unwrap(), b"l1\0l2\0\n");
        assert_eq!(enc(Value::from("")).unwrap(), b"\n");
        assert_eq!(enc(Value::from(42)).unwrap(), b"42\n");
        assert_eq!(enc(Value::Bool(true)).unwrap(), b"true\n");
        assert!(enc(Value::from("trailing ")).is_err());
        assert!(enc(Value::from("nul\0")).is_err());
        assert!(enc(Value::Null).is_err());
        assert!(enc(Value::Sequence(vec![])).is_err());
    }

    #[test]
    fn var_specs() {
        let vars = |v: &[&str]| {
            parse_vars(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).map(|p| {
                p.iter()
                    .map(|(a, b)| format!("{a}={b}"))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(vars(&["A", "B=vault_b"]).unwrap(), ["A=A", "B=vault_b"]);
        for bad in ["", "=x", "A=", ".A", "a/b", "A=x"] {
            let list: Vec<&str> = if bad == "A=x" {
                vec!["A", bad]
            } else {
                vec![bad]
            };
            assert!(vars(&list).is_err(), "{bad:?}");
        }
    }
}
