//! `deploy diff ENV_A ENV_B`: renders both environments and lists every difference, in the
//! variables and in the compiled plans, then fails when one is not allowed.
//!
//! Hosts are paired by their position in the inventory (the first host of each environment,
//! then the second…). A difference is *allowed* when the variables allowed to differ explain it:
//! the second environment is rendered again with each allowed variable pinned to the first
//! environment's value, and what still differs is not explained. So `db_password: "{{
//! vault_db_password }}"` and the files using it are explained by allowing `vault_*`, while a
//! staging-only `worker_count` is not. The built-ins `env` and `inventory_hostname` are variables
//! like the others: allow them to accept what differs because of them (e.g. `when: env ==
//! 'production'`).
//!
//! The allowed variables are the patterns of `diff-allow.yml` (a YAML list; `*` matches any
//! characters) and of `--allow`. Secret values are masked in what is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use ops_common::cli::Context;
use ops_common::{exit, output};
use serde::Serialize;
use serde_yaml_ng::Value;

use crate::cli::DiffArgs;
use crate::commands::Loaded;
use crate::config::{DIFF_ALLOW, read_yaml};
use crate::error::{Error, Result};
use crate::model::{Options, Resource, Spec};
use crate::secrets::Masker;
use crate::vars::Variables;

/// One difference.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Difference {
    /// The environments have different numbers of hosts.
    Hosts { a: usize, b: usize, allowed: bool },
    /// A variable's value differs, or one environment lacks it.
    Variable {
        host_a: String,
        host_b: String,
        name: String,
        a: Option<String>,
        b: Option<String>,
        allowed: bool,
    },
    /// A resource of the compiled plans differs.
    Resource {
        host_a: String,
        host_b: String,
        source: String,
        kind: String,
        name: String,
        fields: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        allowed: bool,
    },
}

impl Difference {
    fn allowed(&self) -> bool {
        match self {
            Difference::Hosts { allowed, .. }
            | Difference::Variable { allowed, .. }
            | Difference::Resource { allowed, .. } => *allowed,
        }
    }

    fn text(&self, env_a: &str, env_b: &str) -> String {
        let tag = if self.allowed() {
            "allowed"
        } else {
            "NOT ALLOWED"
        };
        match self {
            Difference::Hosts { a, b, .. } => {
                format!("{tag:<12} hosts: {env_a} has {a}, {env_b} has {b}\n")
            }
            Difference::Variable { name, a, b, .. } => {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(undefined)".into());
                format!(
                    "{tag:<12} variable {name}: {env_a}: {}  {env_b}: {}\n",
                    show(a),
                    show(b)
                )
            }
            Difference::Resource {
                source,
                kind,
                name,
                fields,
                diff,
                ..
            } => {
                let mut text = format!(
                    "{tag:<12} {kind} {name} ({source}): {}\n",
                    fields.join(", ")
                );
                for line in diff.iter().flat_map(|d| d.lines()) {
                    text.push_str("    ");
                    text.push_str(line);
                    text.push('\n');
                }
                text
            }
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    environments: [&'a str; 2],
    allow: &'a [String],
    differences: &'a [Difference],
    not_allowed: usize,
}

/// True when `name` matches `pattern`, where `*` matches any characters.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// The patterns of `diff-allow.yml`, if there is one.
fn allow_file(root: &Path) -> Result<Vec<String>> {
    if !root.join(DIFF_ALLOW).is_file() {
        return Ok(Vec::new());
    }
    let value = read_yaml(root, Path::new(DIFF_ALLOW))?;
    if value.is_null() {
        return Ok(Vec::new());
    }
    serde_yaml_ng::from_value::<Vec<String>>(value).map_err(|_| {
        Error::config(
            DIFF_ALLOW,
            "a list of variable names (`*` matches any characters)",
        )
    })
}

/// A variable's value as shown: compact JSON, secrets masked.
fn shown(value: &Value, masker: &Masker) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    masker.mask(&json)
}

/// A resource as compared: everything but where it is defined.
fn comparable(r: &Resource) -> serde_json::Value {
    serde_json::json!({ "name": r.name, "notify": r.notify, "spec": r.spec })
}

/// The top-level fields in which two resources differ.
fn fields(a: &Resource, b: &Resource) -> Vec<String> {
    let (a, b) = (comparable(a), comparable(b));
    let mut out = Vec::new();
    for key in ["name", "notify"] {
        if a[key] != b[key] {
            out.push(key.to_owned());
        }
    }
    match (&a["spec"], &b["spec"]) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            out.extend(keys.into_iter().filter(|k| x.get(*k) != y.get(*k)).cloned());
        }
        (x, y) if x != y => out.push("when".to_owned()),
        _ => {}
    }
    out
}

/// The unified diff of two files' contents, when both resources are files.
fn content_diff(a: &Resource, b: &Resource, masker: &Masker) -> Option<String> {
    let content = |r: &Resource| match &r.spec {
        Some(Spec::File(f)) => f.content.as_ref().map(|c| c.0.clone()),
        Some(Spec::Cron(c)) => Some(c.content.clone().into_bytes()),
        Some(Spec::Systemd(s)) => s.content.clone().map(String::into_bytes),
        _ => None,
    };
    let (x, y) = (content(a), content(b));
    if x == y || (x.is_none() && y.is_none()) {
        return None;
    }
    Some(crate::fsops::diff(
        x.as_deref(),
        y.as_deref(),
        &a.name,
        masker,
    ))
}

/// Adds the variables that differ between two hosts' variables; one is explained when it is
/// allowed, or when pinning the allowed ones gives the first host's value.
fn variable_differences(
    (host_a, host_b): (&str, &str),
    (vars_a, vars_b, pinned): (&Variables, &Variables, &Variables),
    allowed: &dyn Fn(&str) -> bool,
    masker: &Masker,
    differences: &mut Vec<Difference>,
) {
    let names: BTreeSet<&String> = vars_a.values.keys().chain(vars_b.values.keys()).collect();
    for name in names {
        let (a, b) = (vars_a.values.get(name), vars_b.values.get(name));
        if a == b {
            continue;
        }
        let explained = allowed(name) || (a.is_some() && a == pinned.values.get(name));
        differences.push(Difference::Variable {
            host_a: host_a.to_owned(),
            host_b: host_b.to_owned(),
            name: name.clone(),
            a: a.map(|v| shown(v, masker)),
            b: b.map(|v| shown(v, masker)),
            allowed: explained,
        });
    }
}

/// Runs `diff`: 0 when every difference is allowed, 1 otherwise.
///
/// # Errors
/// Configuration and vault errors of either environment.
pub(crate) fn run(ctx: &Context, dir: Option<&Path>, args: &DiffArgs) -> Result<u8> {
    let loaded = Loaded::open(ctx, dir, &args.source)?;
    let env_a = loaded.config.environment(&args.env_a)?.clone();
    let env_b = loaded.config.environment(&args.env_b)?.clone();
    let mut allow = allow_file(&loaded.config.root)?;
    allow.extend(args.allow.iter().cloned());
    let allowed = |name: &str| allow.iter().any(|p| matches(p, name));
    let mut differences = Vec::new();
    if env_a.hosts.len() != env_b.hosts.len() {
        differences.push(Difference::Hosts {
            a: env_a.hosts.len(),
            b: env_b.hosts.len(),
            allowed: false,
        });
    }
    let options = Options {
        check: true,
        ..Options::default()
    };
    for (ha, hb) in env_a.hosts.iter().zip(&env_b.hosts) {
        let (_, vars_a) = loaded.variables(&env_a, ha, &BTreeMap::new())?;
        let (raw_b, vars_b) = loaded.variables(&env_b, hb, &BTreeMap::new())?;
        let pins: BTreeMap<String, Value> = vars_a
            .values
            .iter()
            .filter(|(name, _)| allowed(name) && vars_b.values.contains_key(*name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let pinned = raw_b.render(&loaded.templates, &env_b.name, &hb.name, &pins)?;
        let masker = vars_a.masker.merged(&vars_b.masker);
        variable_differences(
            (&ha.name, &hb.name),
            (&vars_a, &vars_b, &pinned),
            &allowed,
            &masker,
            &mut differences,
        );
        let compile = |host: &crate::config::Host, vars: &Variables| {
            loaded.plan.compile(
                &loaded.config,
                &loaded.templates,
                vars,
                &host.name,
                options.clone(),
            )
        };
        let plan_a = compile(ha, &vars_a)?;
        let plan_b = compile(hb, &vars_b)?;
        let plan_pinned = compile(hb, &pinned)?;
        for ((ra, rb), rp) in plan_a
            .resources
            .iter()
            .zip(&plan_b.resources)
            .zip(&plan_pinned.resources)
        {
            if comparable(ra) == comparable(rb) {
                continue;
            }
            differences.push(Difference::Resource {
                host_a: ha.name.clone(),
                host_b: hb.name.clone(),
                source: ra.source.clone(),
                kind: ra.kind.key().to_owned(),
                name: masker.mask(&ra.name),
                fields: fields(ra, rb),
                diff: content_diff(ra, rb, &masker),
                allowed: comparable(ra) == comparable(rp),
            });
        }
    }
    let not_allowed = differences.iter().filter(|d| !d.allowed()).count();
    if args.json {
        output::print_json(&Document {
            environments: [&env_a.name, &env_b.name],
            allow: &allow,
            differences: &differences,
            not_allowed,
        })?;
    } else {
        let mut text = String::new();
        for d in &differences {
            text.push_str(&d.text(&env_a.name, &env_b.name));
        }
        let _ = writeln!(
            text,
            "{} differences between {} and {}, {not_allowed} not allowed",
            differences.len(),
            env_a.name,
            env_b.name
        );
        output::print(&text)?;
    }
    Ok(if not_allowed > 0 {
        exit::FAILURE
    } else {
        exit::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_with_stars() {
        assert!(matches("vault_*", "vault_db_password"));
        assert!(matches("*_host", "db_host"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(matches("*", "anything"));
        assert!(!matches("vault_*", "db_password"));
        assert!(!matches("ab*ba", "aba"));
        assert!(matches("site_name", "site_name"));
        assert!(!matches("site_name", "site_names"));
    }
}
