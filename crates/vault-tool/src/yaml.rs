//! YAML files with inline `!vault` values (ansible's `encrypt_string` output), and variables
//! files in general.
//!
//! An inline value is a vault in a YAML scalar tagged `!vault`, as `encrypt_string` prints it:
//!
//! ```yaml
//! vault_db_password: !vault |
//!           $ANSIBLE_VAULT;1.1;AES256
//!           6162...
//! ```
//!
//! - [`decrypt_values`] parses a document and replaces every `!vault` value with its plaintext
//!   (what `deploy` needs: plain values).
//! - [`reveal`] does the same on the text, keeping the layout and comments (what `view`,
//!   `decrypt` and `textconv` print): each `!vault |` block becomes a quoted string or a literal
//!   block. The result is parsed again and compared with [`decrypt_values`]; if the layout could
//!   not be kept (a `!vault` value in flow style, say), the document is re-serialised instead.
//! - [`load_vars`] reads a variables file that is a whole-file vault, YAML with inline values, or
//!   plain YAML.
//! - [`format_inline`] writes an inline value the way `encrypt_string` does.
//!
//! ansible-core's own `view` and `decrypt` cannot handle a file with inline values.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_yaml_ng::Value;
use zeroize::Zeroizing;

use crate::error::{Error, FormatError, Result};
use crate::format;
use crate::password::{Keyring, KeyringSource};

/// The YAML tag of an inline vault value.
pub const TAG: &str = "!vault";

/// How many spaces `encrypt_string` indents the vault lines by.
pub const INLINE_INDENT: usize = 10;

/// True when the text contains a `!vault` tag (an inline vault value), by a quick scan.
pub fn has_inline_values(text: &str) -> bool {
    text.match_indices(TAG).any(|(at, _)| {
        let before_ok = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '-' || c == ':' || c == '[' || c == ',');
        let after_ok = text[at + TAG.len()..]
            .chars()
            .next()
            .is_none_or(char::is_whitespace);
        before_ok && after_ok
    })
}

/// Formats a vault as an inline YAML value, exactly as ansible's `encrypt_string` prints it:
/// `NAME: !vault |` and the vault's lines indented by 10 spaces, without a final newline.
pub fn format_inline(name: Option<&str>, vault: &str) -> String {
    let mut out = match name {
        Some(name) => format!("{name}: {TAG} |"),
        None => format!("{TAG} |"),
    };
    for line in vault.lines() {
        out.push('\n');
        out.push_str(&" ".repeat(INLINE_INDENT));
        out.push_str(line);
    }
    out
}

/// True when `name` is a valid ansible variable name (letters, digits and `_`, not starting with
/// a digit), so that `NAME: !vault |` is a valid YAML key without quoting.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Decrypted inline values, by their vault text (trailing whitespace removed), so that a value is
/// decrypted once even when both passes of [`reveal`] meet it.
#[derive(Default)]
struct Cache(HashMap<String, Zeroizing<String>>);

impl Cache {
    fn decrypt(&mut self, vault: &str, keys: &dyn KeyringSource) -> Result<String> {
        let key = vault.trim_end();
        if let Some(found) = self.0.get(key) {
            return Ok(found.as_str().to_owned());
        }
        let keyring = keys.keyring()?;
        let plaintext = decrypt_inline(key, keyring)?;
        self.0
            .insert(key.to_owned(), Zeroizing::new(plaintext.clone()));
        Ok(plaintext)
    }
}

fn decrypt_inline(vault: &str, keyring: &Keyring) -> Result<String> {
    let done = keyring.decrypt(vault.as_bytes())?;
    String::from_utf8(done.plaintext.to_vec()).map_err(|_| {
        Error::malformed(FormatError::new(
            "the value decrypts to bytes that are not UTF-8 text",
        ))
    })
}

/// Parses one YAML document and replaces every `!vault` value with its decrypted text.
///
/// The passwords are only loaded when the document holds a `!vault` value.
///
/// # Errors
/// [`Error::Malformed`] for invalid YAML (with its position) or an invalid inline vault (naming
/// the key that holds it); the keyring's errors (wrong password), naming the key.
pub fn decrypt_values(text: &str, keys: &dyn KeyringSource) -> Result<Value> {
    decrypt_values_cached(text, keys, &mut Cache::default())
}

fn decrypt_values_cached(text: &str, keys: &dyn KeyringSource, cache: &mut Cache) -> Result<Value> {
    let mut value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| Error::malformed(FormatError::new(format!("invalid YAML: {e}"))))?;
    walk(&mut value, &mut Vec::new(), keys, cache)?;
    Ok(value)
}

fn walk(
    value: &mut Value,
    path: &mut Vec<String>,
    keys: &dyn KeyringSource,
    cache: &mut Cache,
) -> Result<()> {
    match value {
        Value::Tagged(tagged) if tagged.tag == TAG => {
            let where_ = format!("the value of `{}`", path.join("."));
            let Value::String(vault) = &tagged.value else {
                return Err(Error::malformed(FormatError::new(format!(
                    "{where_}: a !vault value must be a string"
                ))));
            };
            let plaintext = cache
                .decrypt(vault, keys)
                .map_err(|e| in_value(e, &where_))?;
            *value = Value::String(plaintext);
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, keys, cache)?,
        Value::Mapping(mapping) => {
            for (key, v) in mapping.iter_mut() {
                path.push(key_text(key));
                walk(v, path, keys, cache)?;
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                walk(v, path, keys, cache)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// A key as text for messages: strings as they are, other scalars in YAML form.
pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map_or_else(|_| "?".to_owned(), |s| s.trim_end().to_owned()),
    }
}

/// Adds where an inline value is to an error about it.
fn in_value(e: Error, where_: &str) -> Error {
    match e {
        Error::Malformed {
            input: None,
            problem,
        } => Error::malformed(problem.context(where_)),
        other => other.for_input(where_),
    }
}

/// Reads a variables file into a YAML value with plain values: a whole-file vault (decrypted),
/// YAML with inline `!vault` values (decrypted), or plain YAML. An empty file is `Null`.
///
/// # Errors
/// Those of [`Keyring::decrypt`] and [`decrypt_values`]; text that is not UTF-8.
pub fn load_vars(data: &[u8], keys: &dyn KeyringSource) -> Result<Value> {
    if format::is_encrypted(data) {
        let done = keys.keyring()?.decrypt(data)?;
        let text = std::str::from_utf8(&done.plaintext).map_err(|_| {
            Error::malformed(FormatError::new(
                "decrypts to bytes that are not UTF-8 text",
            ))
        })?;
        decrypt_values(text, keys)
    } else {
        let text = std::str::from_utf8(data).map_err(|e| {
            Error::malformed(FormatError::new(format!(
                "not UTF-8 text (byte {} is invalid)",
                e.valid_up_to()
            )))
        })?;
        decrypt_values(text, keys)
    }
}

/// The YAML text with every inline `!vault` value replaced by its plaintext, keeping the rest of
/// the text (comments, order, layout) as it is where possible.
///
/// # Errors
/// As [`decrypt_values`]; an invalid inline vault in block style is reported at its line and
/// column in the file.
pub fn reveal(text: &str, keys: &dyn KeyringSource) -> Result<String> {
    let mut cache = Cache::default();
    let revealed = reveal_blocks(text, keys, &mut cache)?;
    let expected = decrypt_values_cached(text, keys, &mut cache)?;
    let kept = serde_yaml_ng::from_str::<Value>(&revealed)
        .ok()
        .is_some_and(|v| v == expected);
    if kept {
        Ok(revealed)
    } else {
        tracing::warn!(
            "the layout of the file could not be kept around its !vault values; printing it re-serialised"
        );
        serde_yaml_ng::to_string(&expected)
            .map_err(|e| Error::malformed(FormatError::new(format!("cannot re-serialise: {e}"))))
    }
}

/// A `!vault |` block found on a line: where the tag starts and what follows the indicator.
struct BlockStart<'a> {
    tag_at: usize,
    comment: Option<&'a str>,
}

/// Finds `!vault |` (or `|-`, `|+`) ending a line, optionally followed by a comment.
fn block_start(line: &str) -> Option<BlockStart<'_>> {
    for (at, _) in line.match_indices(TAG) {
        let before = line[..at].chars().next_back();
        if !before.is_none_or(|c| c == ' ' || c == '\t') {
            continue;
        }
        let rest = &line[at + TAG.len()..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if trimmed.len() == rest.len() {
            continue;
        }
        let Some(after) = trimmed.strip_prefix('|') else {
            continue;
        };
        let after = after
            .strip_prefix('-')
            .or_else(|| after.strip_prefix('+'))
            .unwrap_or(after);
        let tail = after.trim_start_matches([' ', '\t']);
        if tail.is_empty() {
            return Some(BlockStart {
                tag_at: at,
                comment: None,
            });
        }
        if tail.starts_with('#') && tail.len() < after.len() {
            return Some(BlockStart {
                tag_at: at,
                comment: Some(tail),
            });
        }
    }
    None
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    line.trim_matches([' ', '\t', '\r', '\n']).is_empty()
}

/// The text pass of [`reveal`]: replaces each `!vault |` block in place.
fn reveal_blocks(text: &str, keys: &dyn KeyringSource, cache: &mut Cache) -> Result<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let content = line.trim_end_matches(['\n', '\r']);
        let ending = &line[content.len()..];
        let Some(start) = block_start(content) else {
            out.push_str(line);
            i += 1;
            continue;
        };
        // The block: the lines after, indented more than this one; its indentation is that of
        // its first non-blank line (YAML's rule).
        let own = indentation(content);
        let Some(first) = (i + 1..lines.len()).find(|&j| !is_blank(lines[j])) else {
            out.push_str(line);
            i += 1;
            continue;
        };
        let indent = indentation(lines[first]);
        if indent <= own {
            out.push_str(line);
            i += 1;
            continue;
        }
        let mut last = first;
        for (j, l) in lines.iter().enumerate().skip(first + 1) {
            if is_blank(l) {
                continue;
            }
            if indentation(l) < indent {
                break;
            }
            last = j;
        }
        let vault: String = lines[first..=last]
            .iter()
            .map(|l| {
                let l = l.trim_end_matches(['\n', '\r']);
                l.get(indent..).unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let plaintext = cache.decrypt(&vault, keys).map_err(|e| match e {
            Error::Malformed {
                input: None,
                problem,
            } => Error::malformed(problem.shifted(first + 1, indent)),
            other => other.for_input(&format!("the !vault value at line {}", i + 1)),
        })?;
        out.push_str(&content[..start.tag_at]);
        out.push_str(&render_scalar(&plaintext, indent, start.comment, ending));
        i = last + 1;
    }
    Ok(out)
}

/// A string as a YAML scalar that reads back as exactly that string: a literal block (`|` or `|-`)
/// for readable multi-line text, a double-quoted string otherwise.
fn render_scalar(value: &str, indent: usize, comment: Option<&str>, ending: &str) -> String {
    let comment = comment.map(|c| format!(" {c}")).unwrap_or_default();
    let newline = if ending.is_empty() { "\n" } else { ending };
    if literal_ok(value) {
        let (body, chomp) = match value.strip_suffix('\n') {
            Some(body) => (body, ""),
            None => (value, "-"),
        };
        let mut out = format!("|{chomp}{comment}{newline}");
        let pad = " ".repeat(indent);
        for l in body.split('\n') {
            if !l.is_empty() {
                out.push_str(&pad);
                out.push_str(l);
            }
            out.push_str(newline);
        }
        return out;
    }
    format!("{}{comment}{ending}", double_quoted(value))
}

/// Whether a value reads back unchanged from a literal block with clip or strip chomping.
fn literal_ok(value: &str) -> bool {
    let body = value.strip_suffix('\n').unwrap_or(value);
    body.contains('\n')
        && !body.ends_with('\n')
        && !body.starts_with([' ', '\t', '\n'])
        && body.split('\n').all(|l| !is_blank(l) || l.is_empty())
        && body.chars().all(|c| c == '\n' || c == '\t' || printable(c))
}

/// YAML's printable characters (`c-printable`) minus the ones a literal block cannot hold.
fn printable(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// A YAML double-quoted scalar.
fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if printable(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Secret;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/vault")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn keyring() -> Keyring {
        let secret = |label: &str, file: &str| {
            Secret::new(
                label,
                Zeroizing::new(fixture(file).trim().as_bytes().to_vec()),
                file,
            )
            .unwrap()
        };
        Keyring::new(vec![
            secret("default", "v1-password.txt"),
            secret("staging", "v3-password-staging.txt"),
        ])
    }

    #[test]
    fn encrypt_string_output_without_and_with_a_final_newline() {
        let without = fixture("v3-encrypt-string.yml");
        assert!(
            !without.ends_with('\n'),
            "ansible 2.14 prints no final newline"
        );
        let with = format!("{without}\n");
        for text in [&without, &with] {
            assert!(has_inline_values(text));
            let value = decrypt_values(text, &keyring()).unwrap();
            assert_eq!(
                value["vault_recaptcha_secret"],
                Value::String(fixture("v3-plaintext.txt"))
            );
            let shown = reveal(text, &keyring()).unwrap();
            assert_eq!(shown.trim_end(), "vault_recaptcha_secret: \"s3cr3t-value\"");
        }
    }

    #[test]
    fn inline_values_decrypt_as_ansible_decrypts_them() {
        let text = fixture("v6-inline-vars.yml");
        let value = decrypt_values(&text, &keyring()).unwrap();
        let expected: Value = serde_yaml_ng::from_str(&fixture("v6-values.json")).unwrap();
        for key in ["db", "vault_smtp_password", "tls_key", "plain"] {
            assert_eq!(value[key], expected[key], "{key}");
        }
    }

    #[test]
    fn reveal_keeps_comments_and_layout() {
        let text = fixture("v6-inline-vars.yml");
        let shown = reveal(&text, &keyring()).unwrap();
        let expected = "# Inline values made by ansible-vault encrypt_string 2.14.18 (see README.md)\n\
db:\n  user: alaveteli\n  password: \"pa:ss \\\"quoted\\\" #x\"\n\n\
vault_smtp_password: \"smtp-secret\"\n\n\
tls_key: |\n          -----BEGIN KEY-----\n          AAAA\n          BBBB\n          -----END KEY-----\n\
plain: value\n";
        assert_eq!(shown, expected);
    }

    #[test]
    fn rendered_scalars_read_back_unchanged() {
        let values = [
            "",
            "plain",
            "two\nlines",
            "two\nlines\n",
            "keep\n\n",
            "\nleading newline",
            " leading space\nx",
            "tab\tinside\nx",
            "blank\n\nline\n",
            "spaces only\n   \nline",
            "quote \" and \\ backslash",
            "cr\r\nlf",
            "nul\0and\u{7f}del\u{85}nel\u{2028}ls\u{feff}bom",
            "émoji 🦀\nünïcode",
            "---\n...\n- not a list: [x]\n",
        ];
        for v in values {
            let text = format!("k: {}", render_scalar(v, 2, None, "\n"));
            let back: Value =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{v:?}: {e}\n{text}"));
            assert_eq!(back["k"], Value::String(v.to_owned()), "{v:?} as\n{text}");
        }
    }

    #[test]
    fn flow_style_values_fall_back_to_a_reserialised_document() {
        let vault = format::encrypt(b"flow", b"correct horse battery staple", None).unwrap();
        let text = format!(
            "# comment\nx: {{a: !vault \"{}\"}}\n",
            vault.trim_end().replace('\n', "\\n")
        );
        let shown = reveal(&text, &keyring()).unwrap();
        let back: Value = serde_yaml_ng::from_str(&shown).unwrap();
        assert_eq!(back["x"]["a"], Value::String("flow".to_owned()));
    }

    #[test]
    fn a_damaged_inline_value_is_located_in_the_file() {
        let text = fixture("v3-encrypt-string.yml");
        // Damage the 3rd hex line of the value (line 4 of the file), column 15 after the indent.
        let damaged: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(n, l)| {
                if n == 3 {
                    let mut l = l.to_owned();
                    l.replace_range(14..15, "x");
                    l
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let damaged = damaged.join("\n");
        let e = reveal(&damaged, &keyring()).unwrap_err().to_string();
        assert_eq!(e, "line 4, column 15: `x` is not a hex digit");
        let e = decrypt_values(&damaged, &keyring())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the value of `vault_recaptcha_secret`: line 3, column 5:"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_password_names_the_value() {
        let wrong = Keyring::new(vec![
            Secret::new("staging", Zeroizing::new(b"nope".to_vec()), "t").unwrap(),
        ]);
        let text = fixture("v3-encrypt-string.yml");
        let e = decrypt_values(&text, &wrong).unwrap_err();
        assert!(matches!(e, Error::WrongPassword { .. }));
        assert!(
            e.to_string()
                .starts_with("the value of `vault_recaptcha_secret`: decryption failed"),
            "{e}"
        );
    }

    #[test]
    fn plain_yaml_needs_no_password_and_bad_yaml_is_located() {
        let none = Keyring::default();
        let v = decrypt_values("a: 1\nb: [x]\n", &none).unwrap();
        assert_eq!(v["a"], Value::from(1));
        let e = decrypt_values("a: [\n", &none).unwrap_err().to_string();
        assert!(e.starts_with("invalid YAML:") && e.contains("line"), "{e}");
        assert!(!has_inline_values("a: '!vaulted'\nb: x!vault y\n"));
        assert!(has_inline_values("- !vault |\n"));
    }

    #[test]
    fn format_inline_matches_encrypt_string() {
        let text = fixture("v3-encrypt-string.yml");
        let vault: String = text
            .lines()
            .skip(1)
            .flat_map(|l| [l.trim_start(), "\n"])
            .collect();
        assert_eq!(format_inline(Some("vault_recaptcha_secret"), &vault), text);
        assert!(is_variable_name("vault_x1"));
        assert!(!is_variable_name("1x") && !is_variable_name("a-b") && !is_variable_name(""));
    }
}
