//! The configuration directory: what is in it, and reading it.
//!
//! ```text
//! inventory.yml                  environments → hosts, and how to reach each (local or ssh)
//! group_vars/all/vars.yml        the main variables file (every variable, with defaults)
//! group_vars/<env>/vars.yml      the environment's overrides, and `x: "{{ vault_x }}"` lines
//! group_vars/<env>/vault.yml     the environment's secrets, ansible-vault encrypted, `vault_*`
//! plan/*.yml                     resources and handlers, in file-name order
//! templates/                     Jinja2 templates (`template:`)
//! files/                         files copied as they are (`src:`)
//! diff-allow.yml                 variables allowed to differ between environments (`deploy diff`)
//! ```
//!
//! Every file in `group_vars/<group>/` is read (in name order), and `group_vars/<group>.yml` too,
//! as ansible does. The layout is the one `vault-tool check` expects, so the `vault_` convention
//! can be checked on the same directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use crate::error::{Error, Result};

/// The inventory file's name.
pub const INVENTORY: &str = "inventory.yml";
/// The allow-list file of `deploy diff`.
pub const DIFF_ALLOW: &str = "diff-allow.yml";
/// The default remote directory of the deploy binary on SSH hosts.
pub const DEFAULT_REMOTE_DIR: &str = "~/.cache/alaveteli-ops";

/// The configuration directory, with its inventory read.
#[derive(Debug)]
pub struct ConfigDir {
    /// The directory.
    pub root: PathBuf,
    /// The environments, in the order of the inventory.
    pub environments: Vec<Environment>,
}

/// An environment: its hosts.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Its name (`staging`, `production`).
    pub name: String,
    /// Its hosts, in the order of the inventory.
    pub hosts: Vec<Host>,
}

/// How to reach a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// In this process, on this machine.
    Local,
    /// Over SSH, with the OpenSSH client.
    Ssh,
}

/// A host of the inventory.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name in the inventory (the `inventory_hostname` variable).
    pub name: String,
    /// How to reach it.
    pub spec: HostSpec,
}

/// A host's entry in `inventory.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// `local` or `ssh`.
    pub transport: TransportKind,
    /// The address to connect to; default: the host's name.
    #[serde(default)]
    pub host: Option<String>,
    /// The SSH user; default: ssh's (the current user, or `~/.ssh/config`).
    #[serde(default)]
    pub user: Option<String>,
    /// The SSH port; default 22 (or `~/.ssh/config`).
    #[serde(default)]
    pub port: Option<u16>,
    /// The private key to log in with.
    #[serde(default)]
    pub identity_file: Option<String>,
    /// More `-o` options for ssh, as `Name=value`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// Run the deploy binary on the host through `sudo -n` (as root).
    #[serde(default, rename = "become")]
    pub become_root: bool,
    /// Where the deploy binary lives on the host; default `~/.cache/alaveteli-ops`.
    #[serde(default)]
    pub remote_dir: Option<String>,
    /// Variables of this host, above the environment's and below the vault's.
    #[serde(default)]
    pub vars: Option<Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    environments: Mapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentEntry {
    hosts: Mapping,
}

/// True for names usable as environment and host names (and in file names): letters, digits,
/// `.`, `_` and `-`, not starting with `.` or `-`.
pub fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl ConfigDir {
    /// Opens a configuration directory and reads its inventory.
    ///
    /// # Errors
    /// A missing directory or inventory, invalid YAML, unknown keys, invalid names.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::config(
                root,
                "not a directory (give the configuration directory with --dir or DEPLOY_DIR)",
            ));
        }
        let value = read_yaml(root, Path::new(INVENTORY))?;
        let file: InventoryFile = serde_yaml_ng::from_value(value)
            .map_err(|e| Error::config(INVENTORY, yaml_message(&e)))?;
        let mut environments = Vec::new();
        for (name, entry) in file.environments {
            let name = key_string(&name, INVENTORY, "environments")?;
            if !is_simple_name(&name) {
                return Err(Error::config(
                    INVENTORY,
                    format!("environment name {name:?}: use letters, digits, `.`, `_` and `-`"),
                ));
            }
            let entry: EnvironmentEntry = serde_yaml_ng::from_value(entry).map_err(|e| {
                Error::config_at(INVENTORY, format!("environment {name}"), yaml_message(&e))
            })?;
            let mut hosts = Vec::new();
            for (host_name, spec) in entry.hosts {
                let host_name = key_string(&host_name, INVENTORY, &format!("environment {name}"))?;
                let context = format!("environment {name}, host {host_name}");
                if !is_simple_name(&host_name) {
                    return Err(Error::config_at(
                        INVENTORY,
                        context,
                        "host name: use letters, digits, `.`, `_` and `-`",
                    ));
                }
                let spec: HostSpec = serde_yaml_ng::from_value(spec)
                    .map_err(|e| Error::config_at(INVENTORY, &context, yaml_message(&e)))?;
                if spec.transport == TransportKind::Local
                    && (spec.host.is_some()
                        || spec.user.is_some()
                        || spec.port.is_some()
                        || spec.identity_file.is_some()
                        || !spec.ssh_options.is_empty()
                        || spec.become_root
                        || spec.remote_dir.is_some())
                {
                    return Err(Error::config_at(
                        INVENTORY,
                        context,
                        "host, user, port, identity_file, ssh_options, become and remote_dir are for `transport: ssh`",
                    ));
                }
                hosts.push(Host {
                    name: host_name,
                    spec,
                });
            }
            if hosts.is_empty() {
                return Err(Error::config_at(
                    INVENTORY,
                    format!("environment {name}"),
                    "no hosts",
                ));
            }
            environments.push(Environment { name, hosts });
        }
        if environments.is_empty() {
            return Err(Error::config(INVENTORY, "no environments"));
        }
        Ok(Self {
            root: root.to_path_buf(),
            environments,
        })
    }

    /// The environment of that name.
    ///
    /// # Errors
    /// [`Error::UnknownEnvironment`].
    pub fn environment(&self, name: &str) -> Result<&Environment> {
        self.environments
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::UnknownEnvironment {
                name: name.to_owned(),
                known: self.environments.iter().map(|e| e.name.clone()).collect(),
            })
    }

    /// The files of `group_vars` for a group, in the order they are read: `group_vars/<g>.yml`
    /// (or `.yaml`), then every file in `group_vars/<g>/` by name. Paths are relative to the
    /// configuration directory.
    ///
    /// # Errors
    /// A directory that cannot be listed.
    // Ansible reads `.yml` and `.yaml` as spelt, in lower case; so does deploy.
    #[allow(clippy::case_sensitive_file_extension_comparisons)]
    pub fn group_var_files(&self, group: &str) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for ext in ["yml", "yaml"] {
            let rel = PathBuf::from(format!("group_vars/{group}.{ext}"));
            if self.root.join(&rel).is_file() {
                files.push(rel);
            }
        }
        let dir = Path::new("group_vars").join(group);
        let full = self.root.join(&dir);
        if full.is_dir() {
            let mut names = list_dir(&full)?;
            names.retain(|n| {
                !n.starts_with('.')
                    && (n.ends_with(".yml") || n.ends_with(".yaml") || !n.contains('.'))
                    && full.join(n).is_file()
            });
            files.extend(names.into_iter().map(|n| dir.join(n)));
        }
        Ok(files)
    }

    /// The plan files, `plan/*.yml` and `plan/*.yaml`, by name (relative paths).
    ///
    /// # Errors
    /// No `plan/` directory, or one that cannot be listed.
    #[allow(clippy::case_sensitive_file_extension_comparisons)]
    pub fn plan_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.root.join("plan");
        if !dir.is_dir() {
            return Err(Error::config("plan", "no plan/ directory"));
        }
        let mut names = list_dir(&dir)?;
        names.retain(|n| !n.starts_with('.') && (n.ends_with(".yml") || n.ends_with(".yaml")));
        Ok(names
            .into_iter()
            .map(|n| Path::new("plan").join(n))
            .collect())
    }
}

/// A file's names in a directory, sorted.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Reads a YAML file of the configuration directory (an empty file is `Null`).
///
/// # Errors
/// A missing or unreadable file, invalid YAML (with its position).
pub fn read_yaml(root: &Path, rel: &Path) -> Result<Value> {
    let text = read_text(root, rel)?;
    serde_yaml_ng::from_str(&text).map_err(|e| Error::config(rel, yaml_message(&e)))
}

/// Reads a text file of the configuration directory.
///
/// # Errors
/// A missing or unreadable file, or one that is not UTF-8.
pub fn read_text(root: &Path, rel: &Path) -> Result<String> {
    let path = root.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::config(rel, "no such file")
        } else {
            Error::io(&path, e)
        }
    })?;
    String::from_utf8(bytes).map_err(|_| Error::config(rel, "not UTF-8 text"))
}

/// A YAML error as one line: `line 3, column 5: …` first when known.
pub fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let text = text.replace(&suffix, "");
            format!("line {}, column {}: {text}", loc.line(), loc.column())
        }
        None => text,
    }
}

/// A mapping key that must be a string.
fn key_string(key: &Value, file: &str, context: &str) -> Result<String> {
    key.as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::config_at(file, context, "keys must be strings"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(inventory: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INVENTORY), inventory).unwrap();
        dir
    }

    #[test]
    fn inventory_keeps_order_and_reads_ssh_hosts() {
        let dir = dir_with(
            "environments:\n  staging:\n    hosts:\n      s1: {transport: local}\n  production:\n    hosts:\n      web1:\n        transport: ssh\n        host: 192.0.2.10\n        user: deploy\n        port: 2222\n        become: true\n        ssh_options: [ServerAliveInterval=30]\n",
        );
        let config = ConfigDir::open(dir.path()).unwrap();
        let names: Vec<&str> = config
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["staging", "production"]);
        let web1 = &config.environment("production").unwrap().hosts[0];
        assert_eq!(web1.spec.transport, TransportKind::Ssh);
        assert_eq!(web1.spec.port, Some(2222));
        assert!(web1.spec.become_root);
        let e = config.environment("prod").unwrap_err().to_string();
        assert_eq!(
            e,
            "inventory.yml: no environment \"prod\" (environments: staging, production)"
        );
    }

    #[test]
    fn unknown_keys_and_misplaced_ssh_options_are_errors() {
        let dir = dir_with(
            "environments:\n  staging:\n    hosts:\n      s1: {transport: ssh, prot: 22}\n",
        );
        let e = ConfigDir::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("inventory.yml, environment staging, host s1: ")
                && e.contains("unknown field `prot`"),
            "{e}"
        );
        let dir = dir_with(
            "environments:\n  staging:\n    hosts:\n      s1: {transport: local, user: x}\n",
        );
        let e = ConfigDir::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("are for `transport: ssh`"), "{e}");
        let dir = dir_with("environments: {}\n");
        assert!(ConfigDir::open(dir.path()).is_err());
    }

    #[test]
    fn group_var_files_are_read_in_name_order() {
        let dir = dir_with("environments:\n  s:\n    hosts:\n      h: {transport: local}\n");
        std::fs::create_dir_all(dir.path().join("group_vars/all")).unwrap();
        for f in [
            "group_vars/all/vars.yml",
            "group_vars/all/a.yaml",
            "group_vars/all.yml",
            "group_vars/all/notes.txt",
        ] {
            std::fs::write(dir.path().join(f), "x: 1\n").unwrap();
        }
        let config = ConfigDir::open(dir.path()).unwrap();
        let files = config.group_var_files("all").unwrap();
        assert_eq!(
            files,
            [
                PathBuf::from("group_vars/all.yml"),
                PathBuf::from("group_vars/all/a.yaml"),
                PathBuf::from("group_vars/all/vars.yml")
            ]
        );
        assert!(config.group_var_files("none").unwrap().is_empty());
    }
}
