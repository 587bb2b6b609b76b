//! The project's `vault_` convention, checked over an ansible directory (`vault-tool check`).
//!
//! The layout expected (ansible's own recommendation for vaulted variables):
//!
//! ```text
//! DIR/group_vars/<group>/vault.yml   encrypted; every key is `vault_<name>`
//! DIR/group_vars/<group>/vars.yml    the main variables file: `<name>: "{{ vault_<name> }}"`
//!                                    for each of them, next to the other, plain, variables
//! DIR/host_vars/<host>/vault.yml     the same, per host
//! DIR/...                            playbooks, roles, templates: use `<name>`, never `vault_<name>`
//! ```
//!
//! A *vault file* is any file named `vault.yml`, `vault.yaml` or `vault`, wherever it is; its
//! *main variables file* is the `vars.yml`, `vars.yaml`, `vars`, `main.yml` or `main.yaml` next
//! to it (the first that exists, so a role's `vars/vault.yml` pairs with `vars/main.yml`).
//!
//! The rules, each violation reported on its own line:
//! 1. a vault file is vault-encrypted;
//! 2. a vault file is a mapping whose every key starts with `vault_` (and has a name after it);
//! 3. a vault file has a main variables file;
//! 4. each `vault_<name>` is used by exactly one variable of the main variables file, named
//!    `<name>`, on one line of the form `<name>: "{{ vault_<name> }}"` (single or double quotes,
//!    any spaces inside the braces, a comment after it allowed);
//! 5. a reference in the main variables file names a variable its vault file defines;
//! 6. no `vault_` variable that a vault file defines is used anywhere else, in any text file
//!    (the main variables file's other lines included; encrypted files are decrypted to look);
//! 7. no `vault_` variable is defined outside a vault file (a top-level `vault_<name>:` key in a
//!    YAML file), in plaintext or as an inline `!vault` value: secrets live in vault files.
//!
//! The `.git` directory and files that are not UTF-8 text are skipped; directories reached
//! through symbolic links are not entered.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::error::{Error, Result};
use crate::format;
use crate::password::KeyringSource;
use crate::yaml;

/// File names of vault files.
pub const VAULT_FILE_NAMES: [&str; 3] = ["vault.yml", "vault.yaml", "vault"];
/// File names of the main variables file next to a vault file, in order of preference.
pub const MAIN_FILE_NAMES: [&str; 5] = ["vars.yml", "vars.yaml", "vars", "main.yml", "main.yaml"];
/// The prefix of secret variables.
pub const PREFIX: &str = "vault_";

/// Files larger than this are not scanned (they are not hand-written text).
const MAX_SCANNED: u64 = 16 * 1024 * 1024;

/// One violation of the convention: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The file, relative to the directory checked.
    pub path: PathBuf,
    /// The line, when the violation is on one (in the decrypted text for an encrypted file).
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// A vault file and what it defines.
struct VaultFile {
    rel: PathBuf,
    main: Option<PathBuf>,
    names: BTreeSet<String>,
}

/// A line `<key>: "{{ vault_<target> }}"` of a main variables file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    key: String,
    target: String,
}

/// Checks the convention over `root` and returns every violation, sorted by file and line.
///
/// # Errors
/// A directory or file that cannot be read, a vault file that the passwords cannot decrypt
/// (the check cannot be made without it), no password when there is something to decrypt.
pub fn check(root: &Path, keys: &dyn KeyringSource) -> Result<Vec<Violation>> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    let mut checker = Checker {
        root,
        keys,
        found: Vec::new(),
    };
    let vaults = checker.vault_files(&files)?;
    let references = checker.main_files(&vaults)?;
    checker.other_files(&files, &vaults, &references)?;
    let mut found = checker.found;
    found.sort();
    found.dedup();
    Ok(found)
}

/// The state of one check: where, with which passwords, and the violations found so far.
struct Checker<'a> {
    root: &'a Path,
    keys: &'a dyn KeyringSource,
    found: Vec<Violation>,
}

impl Checker<'_> {
    fn report(&mut self, path: &Path, line: Option<usize>, message: String) {
        self.found.push(Violation {
            path: path.to_path_buf(),
            line,
            message,
        });
    }

    fn rel(&self, path: &Path) -> PathBuf {
        path.strip_prefix(self.root).unwrap_or(path).to_path_buf()
    }

    /// Reads a file as text (decrypted if it is a vault). `None` when it is not text, and when it
    /// is a damaged vault (reported).
    fn read_text(&mut self, path: &Path) -> Result<Option<Text>> {
        match read_text(path, self.keys)? {
            Ok(text) => Ok(text),
            Err(problem) => {
                let rel = self.rel(path);
                self.report(&rel, None, format!("not a valid vault: {problem}"));
                Ok(None)
            }
        }
    }

    /// Rules 1–3: the vault files.
    fn vault_files(&mut self, files: &[PathBuf]) -> Result<Vec<VaultFile>> {
        let mut vaults = Vec::new();
        for path in files.iter().filter(|p| is_vault_file(p)) {
            let rel = self.rel(path);
            let Some(text) = self.read_text(path)? else {
                continue;
            };
            if !text.encrypted {
                self.report(
                    &rel,
                    None,
                    format!(
                        "not encrypted: the secrets in it are in plaintext (encrypt it: vault-tool encrypt {})",
                        rel.display()
                    ),
                );
            }
            let names = vault_names(&text, &rel, &mut |p, l, m| self.report(p, l, m));
            let main = MAIN_FILE_NAMES
                .iter()
                .map(|n| path.with_file_name(n))
                .find(|p| p.is_file());
            if main.is_none() {
                self.report(
                    &rel,
                    None,
                    format!(
                        "no main variables file next to it ({}) to copy its variables into",
                        MAIN_FILE_NAMES.join(", ")
                    ),
                );
            }
            vaults.push(VaultFile { rel, main, names });
        }
        Ok(vaults)
    }

    /// Rules 4–5: each main variables file against its vault file(s). Returns the references
    /// found in each, by path.
    fn main_files(&mut self, vaults: &[VaultFile]) -> Result<BTreeMap<PathBuf, Vec<Reference>>> {
        let defined = defined_names(vaults);
        let mut references = BTreeMap::new();
        let mains: BTreeSet<&PathBuf> = vaults.iter().filter_map(|v| v.main.as_ref()).collect();
        for main in mains {
            let Some(text) = self.read_text(main)? else {
                continue;
            };
            let refs: Vec<Reference> = text
                .text
                .lines()
                .enumerate()
                .filter_map(|(n, l)| parse_reference(l, n + 1))
                .collect();
            let main_rel = self.rel(main);
            check_references(&main_rel, &refs, &defined, vaults, main, &mut |p, l, m| {
                self.report(p, l, m);
            });
            references.insert(main.clone(), refs);
        }
        Ok(references)
    }

    /// Rules 6–7: every file but the vault files.
    fn other_files(
        &mut self,
        files: &[PathBuf],
        vaults: &[VaultFile],
        references: &BTreeMap<PathBuf, Vec<Reference>>,
    ) -> Result<()> {
        let defined = defined_names(vaults);
        for path in files.iter().filter(|p| !is_vault_file(p)) {
            let is_main = references.contains_key(path);
            let text = if is_main {
                // Read again without reporting twice what `main_files` reported.
                read_text(path, self.keys)?.ok().flatten()
            } else {
                self.read_text(path)?
            };
            let Some(text) = text else {
                continue;
            };
            let rel = self.rel(path);
            let refs = references.get(path).map_or(&[][..], Vec::as_slice);
            let yaml_file = is_yaml_name(path);
            for (n, line) in text.text.lines().enumerate() {
                let line_no = n + 1;
                let definition_here = if yaml_file { definition(line) } else { None };
                if let Some((name, inline)) = definition_here {
                    let how = if inline {
                        "as an inline !vault value"
                    } else {
                        "in plaintext"
                    };
                    self.report(
                        &rel,
                        Some(line_no),
                        format!(
                            "defines `{name}` {how} outside a vault file: move it into an encrypted vault.yml"
                        ),
                    );
                }
                let reference = refs.iter().find(|r| r.line == line_no);
                for (column, token) in vault_tokens(line) {
                    let is_definition = column == 0 && definition_here.is_some();
                    let is_checked_reference = reference.is_some_and(|r| r.target == token);
                    if is_definition || is_checked_reference || !defined.contains_key(token) {
                        continue;
                    }
                    self.report(
                        &rel,
                        Some(line_no),
                        format!(
                            "uses `{token}` directly: use `{}`, which the main variables file copies it to",
                            &token[PREFIX.len()..]
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Every name the vault files define, with the files defining it.
fn defined_names(vaults: &[VaultFile]) -> BTreeMap<&str, Vec<&Path>> {
    let mut defined: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for v in vaults {
        for name in &v.names {
            defined.entry(name).or_default().push(&v.rel);
        }
    }
    defined
}

fn check_references(
    main_rel: &Path,
    refs: &[Reference],
    defined: &BTreeMap<&str, Vec<&Path>>,
    vaults: &[VaultFile],
    main: &Path,
    report: &mut impl FnMut(&Path, Option<usize>, String),
) {
    let own: BTreeSet<&str> = vaults
        .iter()
        .filter(|v| v.main.as_deref() == Some(main))
        .flat_map(|v| v.names.iter().map(String::as_str))
        .collect();
    for r in refs.iter().filter(|r| !own.contains(r.target.as_str())) {
        let elsewhere = defined
            .get(r.target.as_str())
            .map(|paths| {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                format!(
                    " (it is defined in {}, which has another main variables file)",
                    list.join(", ")
                )
            })
            .unwrap_or_default();
        report(
            main_rel,
            Some(r.line),
            format!(
                "`{}` refers to `{}`, which the vault file next to it does not define{elsewhere}",
                r.key, r.target
            ),
        );
    }
    for vault in vaults.iter().filter(|v| v.main.as_deref() == Some(main)) {
        for target in &vault.names {
            let name = &target[PREFIX.len()..];
            let users: Vec<&Reference> = refs.iter().filter(|r| &r.target == target).collect();
            match users.as_slice() {
                [] => report(
                    &vault.rel,
                    None,
                    format!(
                        "`{target}` is not used: add `{name}: \"{{{{ {target} }}}}\"` to {}",
                        main_rel.display()
                    ),
                ),
                [only] if only.key != name => report(
                    main_rel,
                    Some(only.line),
                    format!(
                        "`{}` takes its value from `{target}`: the variable copying `{target}` must be named `{name}`",
                        only.key
                    ),
                ),
                [_] => {}
                several => {
                    let list: Vec<String> = several
                        .iter()
                        .map(|r| format!("`{}` (line {})", r.key, r.line))
                        .collect();
                    report(
                        main_rel,
                        Some(several[1].line),
                        format!(
                            "`{target}` is used by {} variables, {}: exactly one, `{name}`, may use it",
                            several.len(),
                            list.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// A file's text: decrypted when it is a whole-file vault.
struct Text {
    text: String,
    encrypted: bool,
}

/// Reads a file as text, decrypted when it is a whole-file vault: `Ok(None)` when it is not
/// text, the problem when it is a damaged vault.
fn read_text(
    path: &Path,
    keys: &dyn KeyringSource,
) -> Result<Result<Option<Text>, crate::error::FormatError>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_SCANNED {
        return Ok(Ok(None));
    }
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (bytes, encrypted) = if format::is_encrypted(&data) {
        match keys.keyring()?.decrypt(&data) {
            Ok(done) => (done.plaintext.to_vec(), true),
            Err(Error::Malformed { problem, .. }) => return Ok(Err(problem)),
            Err(e) => return Err(e.for_input(&path.display().to_string())),
        }
    } else {
        (data, false)
    };
    if bytes.contains(&0) {
        return Ok(Ok(None));
    }
    Ok(Ok(String::from_utf8(bytes)
        .ok()
        .map(|text| Text { text, encrypted })))
}

/// The `vault_` names a vault file defines; violations for anything else in it.
fn vault_names(
    text: &Text,
    rel: &Path,
    report: &mut impl FnMut(&Path, Option<usize>, String),
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let value: Value = match serde_yaml_ng::from_str(&text.text) {
        Ok(v) => v,
        Err(e) => {
            report(rel, None, format!("invalid YAML: {e}"));
            return names;
        }
    };
    let mapping = match value {
        Value::Null => return names,
        Value::Mapping(m) => m,
        _ => {
            report(rel, None, "is not a mapping of variables".to_owned());
            return names;
        }
    };
    for key in mapping.keys() {
        let shown = yaml::key_text(key);
        let line = if text.encrypted {
            None
        } else {
            key_line(&text.text, &shown)
        };
        match key.as_str() {
            Some(name) if name.len() > PREFIX.len() && name.starts_with(PREFIX) => {
                names.insert(name.to_owned());
            }
            _ => report(
                rel,
                line,
                format!(
                    "`{shown}` does not start with `{PREFIX}`: only secrets named `{PREFIX}<name>` belong in a vault file"
                ),
            ),
        }
    }
    names
}

/// The line where a top-level key is defined, for messages about plaintext files.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

fn is_vault_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| VAULT_FILE_NAMES.contains(&n))
}

/// YAML by its name: `.yml`, `.yaml`, or no extension (ansible's `group_vars/<group>` files).
fn is_yaml_name(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => ext == "yml" || ext == "yaml",
        None => true,
    }
}

/// A top-level `vault_<name>:` key on this line: its name, and whether the value is `!vault`.
fn definition(line: &str) -> Option<(&str, bool)> {
    let (column, name) = vault_tokens(line).next()?;
    if column != 0 {
        return None;
    }
    let rest = line[name.len()..].trim_start_matches([' ', '\t']);
    let value = rest.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with([' ', '\t'])) {
        return None;
    }
    Some((name, value.trim_start().starts_with(yaml::TAG)))
}

/// `<key>: "{{ vault_<name> }}"` at the top level (quotes single or double, a comment allowed).
fn parse_reference(line: &str, line_no: usize) -> Option<Reference> {
    let (key, rest) = line.split_once(':')?;
    if !yaml::is_variable_name(key) {
        return None;
    }
    let value = rest.trim_start_matches([' ', '\t']);
    if value.len() == rest.len() && !rest.is_empty() {
        return None;
    }
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner_and_rest = &value[1..];
    let close = inner_and_rest.find(quote)?;
    let after = inner_and_rest[close + 1..].trim();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let inner = inner_and_rest[..close].trim();
    let target = inner.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    if !(target.starts_with(PREFIX)
        && target.len() > PREFIX.len()
        && yaml::is_variable_name(target))
    {
        return None;
    }
    Some(Reference {
        line: line_no,
        key: key.to_owned(),
        target: target.to_owned(),
    })
}

/// Every `vault_<name>` token on a line (not inside a longer name), with its byte column.
fn vault_tokens(line: &str) -> impl Iterator<Item = (usize, &str)> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    line.match_indices(PREFIX).filter_map(move |(at, _)| {
        if at > 0 && word(line.as_bytes()[at - 1]) {
            return None;
        }
        let len = line.as_bytes()[at..]
            .iter()
            .position(|&c| !word(c))
            .unwrap_or(line.len() - at);
        (len > PREFIX.len()).then(|| (at, &line[at..at + len]))
    })
}

/// Every file under `dir`, sorted, skipping `.git` and not entering symlinked directories.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            walk(&path, out)?;
        } else if meta.is_file() || (meta.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_recognised_in_their_accepted_forms() {
        let r = |l: &str| parse_reference(l, 1).map(|r| (r.key, r.target));
        let ok = Some(("db".to_owned(), "vault_db".to_owned()));
        assert_eq!(r("db: \"{{ vault_db }}\""), ok);
        assert_eq!(r("db: '{{vault_db}}'  # the password"), ok);
        assert_eq!(r("db:   \"{{  vault_db  }}\""), ok);
        assert_eq!(r("  db: \"{{ vault_db }}\""), None, "not top level");
        assert_eq!(r("db: \"x{{ vault_db }}\""), None);
        assert_eq!(r("db: \"{{ vault_db | lower }}\""), None);
        assert_eq!(r("db: {{ vault_db }}"), None, "unquoted is not YAML");
        assert_eq!(r("db: \"{{ vault_ }}\""), None);
    }

    #[test]
    fn tokens_and_definitions() {
        let tokens: Vec<_> = vault_tokens("a vault_x b_vault_y vault_ vault_z.").collect();
        assert_eq!(tokens, [(2, "vault_x"), (27, "vault_z")]);
        assert_eq!(definition("vault_x: 1"), Some(("vault_x", false)));
        assert_eq!(definition("vault_x: !vault |"), Some(("vault_x", true)));
        assert_eq!(definition("vault_x:"), Some(("vault_x", false)));
        assert_eq!(definition("  vault_x: 1"), None);
        assert_eq!(definition("vault_x::"), None);
        assert_eq!(
            definition("vault_x_is: {{ x }}"),
            Some(("vault_x_is", false))
        );
    }
}
