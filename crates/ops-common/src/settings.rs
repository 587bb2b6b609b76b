//! Settings: declared once, resolved from five layers, shown with their origin.
//!
//! Every setting a tool reads is a [`Setting`] declared in one place (this crate's [`crate::vars`]
//! for shared ones, each tool's `settings.rs` for its own). Its name is the environment variable
//! name, and the same name is the key in the config file and the file name in an envdir, so one
//! name works everywhere an operator may put it.
//!
//! Precedence, highest first: command-line flag > process environment > envdir (later `--envdir`
//! wins) > config file (`--config`, TOML) > built-in default. An empty value counts as unset at its
//! layer. Unknown keys in the config file are errors (a typo must not be silently ignored);
//! unknown variables in the environment or an envdir are ignored, because an envdir is often shared
//! with the tool being replaced (WAL-G, restic) and holds its other settings.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::envdir::Envdir;
use crate::error::{Error, Result};

/// A setting a tool reads: its name, other accepted names, default and documentation.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The canonical name: environment variable, envdir file and config file key.
    pub name: &'static str,
    /// Other names accepted for compatibility (e.g. `WALE_S3_PREFIX` for `WALG_S3_PREFIX`); the
    /// canonical name wins when both are set in the same layer.
    pub aliases: &'static [&'static str],
    /// The command-line flag that sets it, if any (`--pgdata`). Secrets never have one: argv is
    /// visible to every user of the machine.
    pub flag: Option<&'static str>,
    /// The value used when no layer sets it.
    pub default: Option<&'static str>,
    /// Redacted by `config show` and never logged.
    pub secret: bool,
    /// One line for `config show` and the reference documentation.
    pub help: &'static str,
}

impl Setting {
    /// A setting with no alias, flag or default, not secret.
    #[must_use]
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            aliases: &[],
            flag: None,
            default: None,
            secret: false,
            help,
        }
    }

    /// With other accepted names.
    #[must_use]
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// With a command-line flag (documentation; the tool passes the flag's value in [`Inputs`]).
    #[must_use]
    pub const fn flag(mut self, flag: &'static str) -> Self {
        self.flag = Some(flag);
        self
    }

    /// With a default value.
    #[must_use]
    pub const fn default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }

    /// Marked secret: redacted in `config show`, never given a flag.
    #[must_use]
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// The process environment, under this name (the canonical one or an alias).
    Env(&'static str),
    /// An envdir: the directory and the name of the file.
    Envdir(PathBuf, &'static str),
    /// The config file, under this key.
    File(PathBuf, &'static str),
    /// The built-in default (or nothing, when the setting has no default and nothing set it).
    Default,
}

impl Source {
    /// The short label used in `config show --json`: `flag`, `env`, `envdir`, `file` or `default`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Env(_) => "env",
            Self::Envdir(..) => "envdir",
            Self::File(..) => "file",
            Self::Default => "default",
        }
    }

    /// A human description for messages, e.g. `envdir /etc/wal-archive.d (WALE_S3_PREFIX)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Flag => "command line".to_owned(),
            Self::Env(name) => format!("environment ({name})"),
            Self::Envdir(dir, name) => format!("envdir {} ({name})", dir.display()),
            Self::File(path, key) => format!("config file {} ({key})", path.display()),
            Self::Default => "default".to_owned(),
        }
    }
}

/// The raw inputs a resolution starts from, apart from the process environment.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// Values given on the command line, by setting name.
    pub flags: Vec<(&'static str, String)>,
    /// `--envdir` directories, in order.
    pub envdirs: Vec<PathBuf>,
    /// `--config` file.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Resolved {
    setting: Setting,
    value: Option<String>,
    source: Source,
}

/// A tool's resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    entries: Vec<Resolved>,
}

/// Reads the process environment for a name; non-UTF-8 values are errors, not silently dropped.
fn process_env(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Setting {
            name: name.to_owned(),
            origin: " (from environment)".to_owned(),
            message: "value is not UTF-8".to_owned(),
        }),
    }
}

impl Settings {
    /// Resolves every declared setting from the inputs, the process environment, the envdirs and
    /// the config file.
    ///
    /// # Errors
    /// An unreadable envdir or config file, an unknown key in the config file, a non-UTF-8 value.
    pub fn resolve(declared: &[Setting], inputs: &Inputs) -> Result<Self> {
        Self::resolve_with_env(declared, inputs, process_env)
    }

    /// Like [`Settings::resolve`] with an explicit environment lookup (for tests).
    ///
    /// # Errors
    /// See [`Settings::resolve`].
    pub fn resolve_with_env(
        declared: &[Setting],
        inputs: &Inputs,
        env: impl Fn(&str) -> Result<Option<String>>,
    ) -> Result<Self> {
        let envdir = Envdir::load(&inputs.envdirs)?;
        let file = match &inputs.config_file {
            Some(path) => Some((path.clone(), read_config_file(path, declared)?)),
            None => None,
        };
        let mut entries = Vec::with_capacity(declared.len());
        for setting in declared {
            let (value, source) = Self::resolve_one(setting, inputs, &env, &envdir, file.as_ref())?;
            entries.push(Resolved {
                setting: *setting,
                value,
                source,
            });
        }
        Ok(Self { entries })
    }

    fn resolve_one(
        setting: &Setting,
        inputs: &Inputs,
        env: &impl Fn(&str) -> Result<Option<String>>,
        envdir: &Envdir,
        file: Option<&(PathBuf, BTreeMap<String, String>)>,
    ) -> Result<(Option<String>, Source)> {
        let non_empty = |v: &str| !v.is_empty();
        if let Some((_, v)) = inputs
            .flags
            .iter()
            .find(|(n, v)| *n == setting.name && non_empty(v))
        {
            return Ok((Some(v.clone()), Source::Flag));
        }
        for name in setting.names() {
            if let Some(v) = env(name)?.filter(|v| non_empty(v)) {
                return Ok((Some(v), Source::Env(name)));
            }
        }
        for name in setting.names() {
            if let Some((v, dir)) = envdir.get(name).filter(|(v, _)| non_empty(v)) {
                return Ok((Some(v.to_owned()), Source::Envdir(dir.to_path_buf(), name)));
            }
        }
        if let Some((path, values)) = file {
            for name in setting.names() {
                if let Some(v) = values.get(name).filter(|v| non_empty(v)) {
                    return Ok((Some(v.clone()), Source::File(path.clone(), name)));
                }
            }
        }
        Ok((setting.default.map(str::to_owned), Source::Default))
    }

    fn entry(&self, setting: &Setting) -> &Resolved {
        self.entries
            .iter()
            .find(|e| e.setting.name == setting.name)
            .unwrap_or_else(|| {
                panic!(
                    "setting {} is read but was not declared for this tool",
                    setting.name
                )
            })
    }

    /// The value of a setting, if any layer or the default sets it.
    ///
    /// # Panics
    /// If the setting is not among those declared for the tool: a bug, caught by the tests.
    #[must_use]
    pub fn get(&self, setting: &Setting) -> Option<&str> {
        self.entry(setting).value.as_deref()
    }

    /// Where the value of a setting came from.
    ///
    /// # Panics
    /// See [`Settings::get`].
    #[must_use]
    pub fn source(&self, setting: &Setting) -> &Source {
        &self.entry(setting).source
    }

    /// The value of a setting that must be set.
    ///
    /// # Errors
    /// When nothing sets it.
    pub fn require(&self, setting: &Setting) -> Result<&str> {
        self.get(setting).ok_or_else(|| Error::Setting {
            name: setting.name.to_owned(),
            origin: String::new(),
            message: "not set (give it in the environment, an envdir or the config file)"
                .to_owned(),
        })
    }

    /// Parses a setting's value; the error names the setting and where the value came from, and
    /// shows the value unless the setting is secret.
    ///
    /// # Errors
    /// When the value does not parse.
    pub fn parse<T>(&self, setting: &Setting) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(raw) = self.get(setting) else {
            return Ok(None);
        };
        raw.parse().map(Some).map_err(|e| {
            let shown = if setting.secret {
                String::new()
            } else {
                format!("{raw:?}: ")
            };
            self.invalid(setting, format!("{shown}{e}"))
        })
    }

    /// An error about a setting's value, naming where the value came from.
    #[must_use]
    pub fn invalid(&self, setting: &Setting, message: impl Into<String>) -> Error {
        let source = self.source(setting);
        let origin = if *source == Source::Default {
            String::new()
        } else {
            format!(" (from {})", source.describe())
        };
        Error::Setting {
            name: setting.name.to_owned(),
            origin,
            message: message.into(),
        }
    }

    /// Parses a boolean setting: `true/false`, `yes/no`, `on/off`, `1/0`.
    ///
    /// # Errors
    /// When the value is none of those.
    pub fn flag(&self, setting: &Setting) -> Result<Option<bool>> {
        let Some(raw) = self.get(setting) else {
            return Ok(None);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Some(true)),
            "false" | "no" | "off" | "0" => Ok(Some(false)),
            _ => Err(self.invalid(setting, format!("{raw:?} is not a boolean (true/false)"))),
        }
    }

    /// Parses a duration in seconds (`30`, `2.5`).
    ///
    /// # Errors
    /// When the value is not a non-negative number.
    pub fn seconds(&self, setting: &Setting) -> Result<Option<std::time::Duration>> {
        let Some(secs) = self.parse::<f64>(setting)? else {
            return Ok(None);
        };
        std::time::Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| self.invalid(setting, format!("{secs} is not a number of seconds")))
    }

    /// `config show`: one line per setting, `NAME  value  source`, secrets redacted.
    #[must_use]
    pub fn show_text(&self) -> String {
        let width = self
            .entries
            .iter()
            .map(|e| e.setting.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for e in &self.entries {
            let value = self
                .display_value(e)
                .unwrap_or_else(|| "(unset)".to_owned());
            let _ = writeln!(
                out,
                "{:width$}  {value}  [{}]",
                e.setting.name,
                e.source.describe()
            );
        }
        out
    }

    /// `config show --json`: `{"NAME": {"value": …, "source": "flag|env|envdir|file|default"}}`.
    #[must_use]
    pub fn show_json(&self) -> serde_json::Value {
        let map = self
            .entries
            .iter()
            .map(|e| {
                let value = self
                    .display_value(e)
                    .map_or(serde_json::Value::Null, serde_json::Value::String);
                (
                    e.setting.name.to_owned(),
                    serde_json::json!({ "value": value, "source": e.source.label() }),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(map)
    }

    fn display_value(&self, e: &Resolved) -> Option<String> {
        let _ = self;
        let v = e.value.as_ref()?;
        Some(if e.setting.secret {
            REDACTED.to_owned()
        } else {
            v.clone()
        })
    }
}

/// What `config show` prints in place of a secret's value.
pub const REDACTED: &str = "<redacted>";

/// Reads the TOML config file: a flat table of setting names to values.
fn read_config_file(path: &Path, declared: &[Setting]) -> Result<BTreeMap<String, String>> {
    let file_error = |message: String| Error::ConfigFile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.message().to_owned()))?;
    let known = |key: &str| declared.iter().any(|s| s.names().any(|n| n == key));
    let unknown: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|k| !known(k))
        .collect();
    if !unknown.is_empty() {
        return Err(file_error(format!(
            "unknown setting{} {} (`config show` lists the settings this tool reads)",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", ")
        )));
    }
    table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(file_error(format!(
                        "{key}: must be a string, number or boolean"
                    )));
                }
            };
            Ok((key, value))
        })
        .collect()
}

/// The reference table of a tool's settings, in Markdown, for its documentation page.
#[must_use]
pub fn markdown_table(declared: &[Setting]) -> String {
    let mut out = String::from("| Setting | Flag | Default | Description |\n|---|---|---|---|\n");
    for s in declared {
        let mut name = format!("`{}`", s.name);
        for alias in s.aliases {
            let _ = write!(name, " (or `{alias}`)");
        }
        let flag = s.flag.map(|f| format!("`{f}`")).unwrap_or_default();
        let default = s.default.map(|d| format!("`{d}`")).unwrap_or_default();
        let secret = if s.secret {
            " Secret: redacted, never a flag."
        } else {
            ""
        };
        let _ = writeln!(out, "| {name} | {flag} | {default} | {}{secret} |", s.help);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Setting = Setting::new("A_SETTING", "a")
        .aliases(&["OLD_A"])
        .flag("--a")
        .default("dflt");
    const S: Setting = Setting::new("SECRET_KEY", "s").secret();
    const DECLARED: &[Setting] = &[A, S];

    fn env_of(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Result<Option<String>> {
        move |name| {
            Ok(pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned()))
        }
    }

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn precedence_is_flag_env_envdir_file_default() {
        let tmp = tempfile::tempdir().unwrap();
        let envdir = tmp.path().join("env");
        std::fs::create_dir(&envdir).unwrap();
        write(&envdir, "A_SETTING", "from-envdir\n");
        let file = write(tmp.path(), "c.toml", "A_SETTING = \"from-file\"\n");

        let mut inputs = Inputs {
            flags: vec![],
            envdirs: vec![],
            config_file: None,
        };
        let none = env_of(&[]);
        assert_eq!(
            Settings::resolve_with_env(DECLARED, &inputs, &none)
                .unwrap()
                .get(&A),
            Some("dflt")
        );
        inputs.config_file = Some(file.clone());
        let s = Settings::resolve_with_env(DECLARED, &inputs, &none).unwrap();
        assert_eq!(
            (s.get(&A), s.source(&A)),
            (Some("from-file"), &Source::File(file, "A_SETTING"))
        );
        inputs.envdirs = vec![envdir.clone()];
        let s = Settings::resolve_with_env(DECLARED, &inputs, &none).unwrap();
        assert_eq!(
            (s.get(&A), s.source(&A).label()),
            (Some("from-envdir"), "envdir")
        );
        let s = Settings::resolve_with_env(DECLARED, &inputs, env_of(&[("OLD_A", "from-env")]))
            .unwrap();
        assert_eq!(
            (s.get(&A), s.source(&A)),
            (Some("from-env"), &Source::Env("OLD_A"))
        );
        inputs.flags = vec![("A_SETTING", "from-flag".to_owned())];
        let s = Settings::resolve_with_env(DECLARED, &inputs, env_of(&[("OLD_A", "from-env")]))
            .unwrap();
        assert_eq!(
            (s.get(&A), s.source(&A)),
            (Some("from-flag"), &Source::Flag)
        );
    }

    #[test]
    fn canonical_name_beats_alias_and_empty_counts_as_unset() {
        let inputs = Inputs::default();
        let s = Settings::resolve_with_env(
            DECLARED,
            &inputs,
            env_of(&[("OLD_A", "old"), ("A_SETTING", "new")]),
        )
        .unwrap();
        assert_eq!(s.get(&A), Some("new"));
        let s = Settings::resolve_with_env(
            DECLARED,
            &inputs,
            env_of(&[("A_SETTING", ""), ("OLD_A", "old")]),
        )
        .unwrap();
        assert_eq!(s.get(&A), Some("old"));
    }

    #[test]
    fn unknown_config_keys_are_errors_naming_every_one() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write(
            tmp.path(),
            "c.toml",
            "A_SETTING = 1\nTYPO_ONE = 2\nTYPO_TWO = true\n",
        );
        let inputs = Inputs {
            config_file: Some(file),
            ..Inputs::default()
        };
        let err = Settings::resolve_with_env(DECLARED, &inputs, env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown settings TYPO_ONE, TYPO_TWO"), "{err}");
        let nested = write(tmp.path(), "n.toml", "[A_SETTING]\nx = 1\n");
        let inputs = Inputs {
            config_file: Some(nested),
            ..Inputs::default()
        };
        let err = Settings::resolve_with_env(DECLARED, &inputs, env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("A_SETTING: must be a string"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_and_kept_out_of_errors() {
        let s = Settings::resolve_with_env(
            DECLARED,
            &Inputs::default(),
            env_of(&[("SECRET_KEY", "hunter2")]),
        )
        .unwrap();
        assert!(!s.show_text().contains("hunter2"));
        assert!(!s.show_json().to_string().contains("hunter2"));
        assert_eq!(s.show_json()["SECRET_KEY"]["value"], REDACTED);
        assert_eq!(s.show_json()["SECRET_KEY"]["source"], "env");
        assert_eq!(s.show_json()["A_SETTING"]["source"], "default");
        let err = s.parse::<u32>(&S).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.contains("SECRET_KEY (from environment (SECRET_KEY))"),
            "{err}"
        );
    }
}
