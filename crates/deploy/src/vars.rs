//! Variables: read in layers, decrypted in memory, rendered to their final values.
//!
//! Layers, lowest precedence first (a later layer replaces a variable whole, as ansible's
//! default `hash_behaviour = replace`):
//! 1. `group_vars/all` (every file but vaults);
//! 2. `group_vars/<env>` (every file but vaults);
//! 3. the host's `vars:` in the inventory;
//! 4. vault files (whole-file ansible-vault), `all` then `<env>`;
//! 5. `--extra-vars` files, in order.
//!
//! Built-in: `env` (the environment's name) and `inventory_hostname` (the host's name in the
//! inventory); defining them is an error.
//!
//! Values may be templates referring to other variables (`db_password: "{{ vault_db_password }}"`).
//! Each variable's references are read from its templates, the variables are rendered in
//! dependency order, and a cycle is an error naming it. A reference to a variable that no layer
//! defines is an error when the template is rendered (unless it has a `default`).
//!
//! Every scalar of a vault file, and every inline `!vault` value, is a secret: its text is
//! collected for [`crate::secrets::Masker`]. Nothing decrypted is ever written to disk here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};
use vault_tool::password::KeyringSource;

use crate::config::{ConfigDir, Environment, Host, yaml_message};
use crate::error::{Error, Result};
use crate::secrets::{MIN_MASKED, Masker};
use crate::template::{Templates, is_template};

/// The built-in variable holding the environment's name.
pub const ENV: &str = "env";
/// The built-in variable holding the host's name in the inventory.
pub const INVENTORY_HOSTNAME: &str = "inventory_hostname";

/// Variables as read from their files, before rendering.
#[derive(Debug, Clone, Default)]
pub struct RawVars {
    /// Each variable's value and the file that set it last.
    values: BTreeMap<String, (Value, String)>,
    /// The text of every secret scalar.
    secrets: BTreeSet<String>,
}

/// Variables after rendering.
#[derive(Debug, Clone)]
pub struct Variables {
    /// Every variable's final value, built-ins included.
    pub values: BTreeMap<String, Value>,
    /// The same, as a template context.
    pub context: minijinja::Value,
    /// The secrets of this environment.
    pub masker: Masker,
}

/// True for names a variable can have: letters, digits and `_`, not starting with a digit.
pub fn is_variable_name(name: &str) -> bool {
    vault_tool::yaml::is_variable_name(name)
}

impl RawVars {
    /// Reads the layers of an environment and host. Vaults are decrypted with `keys` (passwords
    /// are only loaded when there is a vault).
    ///
    /// # Errors
    /// Unreadable or invalid files, vaults that cannot be decrypted, invalid names.
    pub fn load(
        config: &ConfigDir,
        env: &Environment,
        host: &Host,
        extra: &[PathBuf],
        keys: &dyn KeyringSource,
    ) -> Result<Self> {
        let mut raw = Self::default();
        let mut vaults = Vec::new();
        for group in ["all", env.name.as_str()] {
            for rel in config.group_var_files(group)? {
                let data = std::fs::read(config.root.join(&rel))
                    .map_err(|e| Error::io(config.root.join(&rel), e))?;
                if vault_tool::format::is_encrypted(&data) {
                    vaults.push((rel, data));
                } else {
                    raw.layer(&rel, &data, keys)?;
                }
            }
        }
        if let Some(vars) = &host.spec.vars {
            let origin = format!("inventory.yml (host {})", host.name);
            raw.merge(Value::Mapping(vars.clone()), Path::new(&origin), false)?;
        }
        for (rel, data) in vaults {
            raw.layer(&rel, &data, keys)?;
        }
        for file in extra {
            let data = std::fs::read(file).map_err(|e| Error::io(file, e))?;
            raw.layer(file, &data, keys)?;
        }
        Ok(raw)
    }

    /// Reads one file: a whole-file vault, YAML with inline `!vault` values, or plain YAML.
    fn layer(&mut self, rel: &Path, data: &[u8], keys: &dyn KeyringSource) -> Result<()> {
        let vault_error = |source| Error::Vault {
            file: rel.to_path_buf(),
            source,
        };
        if vault_tool::format::is_encrypted(data) {
            let value = vault_tool::yaml::load_vars(data, keys).map_err(vault_error)?;
            return self.merge(value, rel, true);
        }
        let text = std::str::from_utf8(data).map_err(|_| Error::config(rel, "not UTF-8 text"))?;
        if vault_tool::yaml::has_inline_values(text) {
            let tagged: Value =
                serde_yaml_ng::from_str(text).map_err(|e| Error::config(rel, yaml_message(&e)))?;
            let value = vault_tool::yaml::decrypt_values(text, keys).map_err(vault_error)?;
            let mut found = Vec::new();
            inline_secrets(&tagged, &value, &mut found);
            self.add_secrets(found, rel);
            return self.merge(value, rel, false);
        }
        let value: Value =
            serde_yaml_ng::from_str(text).map_err(|e| Error::config(rel, yaml_message(&e)))?;
        self.merge(value, rel, false)
    }

    fn add_secrets(&mut self, found: Vec<String>, rel: &Path) {
        for s in found {
            if !s.is_empty() && s.chars().count() < MIN_MASKED {
                tracing::warn!(
                    file = %rel.display(),
                    "a vault value is shorter than {MIN_MASKED} characters: it is not masked in diffs"
                );
            }
            self.secrets.insert(s);
        }
    }

    /// Merges a file's top-level mapping into the variables.
    fn merge(&mut self, value: Value, rel: &Path, secret: bool) -> Result<()> {
        let mapping = match value {
            Value::Null => return Ok(()),
            Value::Mapping(m) => m,
            _ => return Err(Error::config(rel, "must be a mapping of variables")),
        };
        if secret {
            let mut found = Vec::new();
            scalars(&Value::Mapping(mapping.clone()), &mut found);
            self.add_secrets(found, rel);
        }
        let origin = rel.display().to_string();
        for (key, value) in mapping {
            let Some(name) = key.as_str() else {
                return Err(Error::config(rel, "variable names must be strings"));
            };
            if !is_variable_name(name) {
                return Err(Error::config_at(
                    rel,
                    format!("variable {name:?}"),
                    "names are letters, digits and `_`, not starting with a digit",
                ));
            }
            if name == ENV || name == INVENTORY_HOSTNAME {
                return Err(Error::config_at(
                    rel,
                    format!("variable {name}"),
                    "is built in (the environment's name, the host's name) and cannot be set",
                ));
            }
            self.values.insert(name.to_owned(), (value, origin.clone()));
        }
        Ok(())
    }

    /// The secret texts.
    pub fn secrets(&self) -> impl Iterator<Item = &String> {
        self.secrets.iter()
    }

    /// Where a variable was set last.
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(_, o)| o.as_str())
    }

    /// Renders every variable. `pins` replace the rendered value of a variable (and so what the
    /// variables using it render to); `deploy diff` uses them to tell which differences allowed
    /// variables explain.
    ///
    /// # Errors
    /// Template errors, undefined variables and cycles, naming the variable and its file.
    pub fn render(
        &self,
        templates: &Templates,
        env: &str,
        host: &str,
        pins: &BTreeMap<String, Value>,
    ) -> Result<Variables> {
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        for (name, value) in [(ENV, env), (INVENTORY_HOSTNAME, host)] {
            let value = pins
                .get(name)
                .cloned()
                .unwrap_or_else(|| Value::String(value.to_owned()));
            values.insert(name.to_owned(), value);
        }
        let order = self.order(templates)?;
        let mut context = to_context(&values);
        for name in order {
            let (value, origin) = &self.values[&name];
            let rendered = match pins.get(&name) {
                Some(pinned) => pinned.clone(),
                None => render_tree(templates, value, &context, &name).map_err(|m| {
                    Error::config_at(origin.as_str(), format!("variable {name}"), m)
                })?,
            };
            values.insert(name, rendered);
            context = to_context(&values);
        }
        Ok(Variables {
            values,
            context,
            masker: Masker::new(self.secrets.iter().cloned()),
        })
    }

    /// The variables in an order where each comes after those it refers to.
    fn order(&self, templates: &Templates) -> Result<Vec<String>> {
        let mut deps: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (name, (value, origin)) in &self.values {
            let mut refs = BTreeSet::new();
            let mut strings = Vec::new();
            template_strings(value, &mut strings);
            for s in strings {
                let found = templates.references(name, s).map_err(|m| {
                    Error::config_at(origin.as_str(), format!("variable {name}"), m)
                })?;
                refs.extend(found.into_iter().filter(|r| self.values.contains_key(r)));
            }
            deps.insert(name, refs);
        }
        let mut order = Vec::with_capacity(deps.len());
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        for name in deps.keys() {
            self.visit(name, &deps, &mut state, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        name: &'a str,
        deps: &'a BTreeMap<&'a str, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(name);
                let origin = self.origin(name).unwrap_or("group_vars");
                return Err(Error::config_at(
                    origin,
                    format!("variable {name}"),
                    format!(
                        "the variables {} refer to each other in a cycle",
                        cycle.join(" → ")
                    ),
                ));
            }
            _ => {}
        }
        state.insert(name, 1);
        stack.push(name);
        for dep in &deps[name] {
            let dep = deps.get_key_value(dep.as_str()).map_or(name, |(k, _)| *k);
            self.visit(dep, deps, state, stack, order)?;
        }
        stack.pop();
        state.insert(name, 2);
        order.push(name.to_owned());
        Ok(())
    }
}

/// The template context of a set of variables.
pub fn to_context(values: &BTreeMap<String, Value>) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(values))
}

/// Renders every template string in a YAML value; other values stay as they are.
///
/// # Errors
/// The first template error, as one line.
pub fn render_tree(
    templates: &Templates,
    value: &Value,
    ctx: &minijinja::Value,
    name: &str,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) if is_template(s) => {
            let rendered = templates.render_value(name, s, ctx)?;
            serde_yaml_ng::to_value(&rendered).map_err(|e| e.to_string())?
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|v| render_tree(templates, v, ctx, name))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = Mapping::with_capacity(m.len());
            for (k, v) in m {
                out.insert(k.clone(), render_tree(templates, v, ctx, name)?);
            }
            Value::Mapping(out)
        }
        Value::Tagged(t) => render_tree(templates, &t.value, ctx, name)?,
        other => other.clone(),
    })
}

/// Every template string in a value.
fn template_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) if is_template(s) => out.push(s),
        Value::Sequence(items) => items.iter().for_each(|v| template_strings(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| template_strings(v, out)),
        Value::Tagged(t) => template_strings(&t.value, out),
        _ => {}
    }
}

/// Every scalar of a value, as text.
fn scalars(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(_) | Value::Null => {}
        Value::Sequence(items) => items.iter().for_each(|v| scalars(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| scalars(v, out)),
        Value::Tagged(t) => scalars(&t.value, out),
    }
}

/// The decrypted values found where the raw document had a `!vault` tag.
fn inline_secrets(raw: &Value, decrypted: &Value, out: &mut Vec<String>) {
    match raw {
        Value::Tagged(t) if t.tag == vault_tool::yaml::TAG => scalars(decrypted, out),
        Value::Mapping(m) => {
            for (k, v) in m {
                if let Some(d) = decrypted.get(k) {
                    inline_secrets(v, d, out);
                }
            }
        }
        Value::Sequence(items) => {
            if let Value::Sequence(ds) = decrypted {
                for (v, d) in items.iter().zip(ds) {
                    inline_secrets(v, d, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawVars {
        let mut raw = RawVars::default();
        for (name, yaml) in pairs {
            let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
            raw.values.insert(
                (*name).to_owned(),
                (value, "group_vars/all/vars.yml".to_owned()),
            );
        }
        raw
    }

    fn templates() -> Templates {
        Templates::new(Path::new("/nonexistent"))
    }

    #[test]
    fn variables_render_in_dependency_order_keeping_types() {
        let raw = raw(&[
            ("url", "\"postgres://{{ user }}@{{ host }}/{{ env }}\""),
            ("host", "\"db.{{ domain }}\""),
            ("domain", "example.org"),
            ("user", "foi"),
            ("ports", "\"{{ base_ports }}\""),
            ("base_ports", "[80, 443]"),
        ]);
        let vars = raw
            .render(&templates(), "staging", "web1", &BTreeMap::new())
            .unwrap();
        assert_eq!(
            vars.values["url"],
            Value::String("postgres://foi@db.example.org/staging".into())
        );
        assert_eq!(
            vars.values["ports"],
            serde_yaml_ng::from_str::<Value>("[80, 443]").unwrap()
        );
        assert_eq!(
            vars.values[INVENTORY_HOSTNAME],
            Value::String("web1".into())
        );
    }

    #[test]
    fn cycles_and_undefined_variables_are_named() {
        let raw = raw(&[
            ("a", "\"{{ b }}\""),
            ("b", "\"x{{ c }}\""),
            ("c", "\"{{ a }}\""),
        ]);
        let e = raw
            .render(&templates(), "s", "h", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("group_vars/all/vars.yml, variable a: the variables a → b → c → a refer to each other in a cycle"),
            "{e}"
        );
        let raw = self::raw(&[("a", "\"{{ a }}\"")]);
        assert!(
            raw.render(&templates(), "s", "h", &BTreeMap::new())
                .is_err()
        );
        let raw = self::raw(&[("a", "\"x {{ nope }}\"")]);
        let e = raw
            .render(&templates(), "s", "h", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("variable a") && e.contains("nope"), "{e}");
    }

    #[test]
    fn pins_replace_values_and_what_uses_them() {
        let raw = raw(&[
            ("name", "\"{{ env }}.example.org\""),
            ("url", "\"https://{{ name }}/\""),
        ]);
        let mut pins = BTreeMap::new();
        pins.insert("name".to_owned(), Value::String("www.example.org".into()));
        let vars = raw.render(&templates(), "staging", "h", &pins).unwrap();
        assert_eq!(
            vars.values["url"],
            Value::String("https://www.example.org/".into())
        );
    }

    #[test]
    fn inline_vault_values_are_secrets() {
        let vault = vault_tool::format::encrypt(b"inline-secret", b"pw", None).unwrap();
        let text = format!(
            "plain: x\n{}\n",
            vault_tool::yaml::format_inline(Some("token"), &vault)
        );
        let keyring = vault_tool::password::Keyring::new(vec![
            vault_tool::password::Secret::new(
                "default",
                zeroize::Zeroizing::new(b"pw".to_vec()),
                "test",
            )
            .unwrap(),
        ]);
        let mut raw = RawVars::default();
        raw.layer(
            Path::new("group_vars/all/vars.yml"),
            text.as_bytes(),
            &keyring,
        )
        .unwrap();
        assert_eq!(raw.secrets().collect::<Vec<_>>(), ["inline-secret"]);
        assert_eq!(raw.values["token"].0, Value::String("inline-secret".into()));
        let e = RawVars::default()
            .merge(
                serde_yaml_ng::from_str("env: x").unwrap(),
                Path::new("f.yml"),
                false,
            )
            .unwrap_err();
        assert!(e.to_string().contains("built in"), "{e}");
    }
}
