//! The plan: typed resources and handlers read from `plan/*.yml`, compiled for one host.
//!
//! A plan file is a mapping with `resources:` (a list) and `handlers:` (a list), both optional.
//! Each resource has exactly one *kind key* whose value names what it manages
//! (`file: /etc/nginx/sites-available/foi`), the common keys `name`, `when` and `notify`, and the
//! options of its kind. Unknown keys are errors naming the file and the resource, checked for
//! every resource, including those whose `when` is false in the environment at hand, so a typo in
//! a production-only part is caught on staging.
//!
//! Compiling renders every string of a resource with the host's variables (a string that is one
//! `{{ expression }}` keeps its type), reads templates and files, and checks the result: paths
//! absolute, one source of content, names valid. It also refuses any secret in a string that
//! would end up on a command line (commands, guards, `validate`, repository URLs) or in a
//! world-readable cron file: the command line of a process is visible to every user.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use crate::config::{ConfigDir, read_yaml, yaml_message};
use crate::error::{Error, Result};
use crate::model::{
    Attrs, Bytes, CommandSpec, CronSpec, DirectorySpec, EnvdirSpec, Exec, FileSpec, GitSpec,
    Handler, HandlerAction, HealthCheck, Kind, Options, PackageSpec, Plan, PostgresSettingSpec,
    ReleaseSpec, Resource, ServiceState, Spec, State, SwapfileSpec, SymlinkSpec, SystemdSpec,
};
use crate::secrets::Masker;
use crate::template::{Templates, contained};
use crate::vars::{Variables, render_tree};

/// The directory of files copied as they are (`src:`).
pub const FILES_DIR: &str = "files";

/// Keys every resource may have besides its kind key and its kind's options.
pub const COMMON_KEYS: [&str; 3] = ["name", "when", "notify"];

/// The systemd actions a handler may take.
pub const SYSTEMD_ACTIONS: [&str; 6] = [
    "restart",
    "reload",
    "reload-or-restart",
    "start",
    "stop",
    "daemon-reload",
];

/// The plan as read from its files, before rendering.
#[derive(Debug, Clone)]
pub struct PlanSource {
    resources: Vec<RawResource>,
    handlers: Vec<RawHandler>,
}

#[derive(Debug, Clone)]
struct RawResource {
    file: PathBuf,
    index: usize,
    kind: Kind,
    target: Value,
    name: Option<Value>,
    when: Option<Value>,
    notify: Vec<String>,
    fields: Mapping,
}

#[derive(Debug, Clone)]
struct RawHandler {
    file: PathBuf,
    index: usize,
    name: String,
    fields: Mapping,
}

impl RawResource {
    fn context(&self) -> String {
        format!(
            "resource {} ({} {})",
            self.index,
            self.kind,
            short(&scalar_text(&self.target))
        )
    }

    fn source(&self) -> String {
        format!("{}#{}", self.file.display(), self.index)
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::config_at(&self.file, self.context(), message)
    }
}

/// Text of a scalar (for names and messages); other values in flow YAML.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Sequence(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(", "),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim_end().replace('\n', " "))
            .unwrap_or_default(),
    }
}

/// The first line of a text, cut to 72 characters.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 72 || text.lines().nth(1).is_some() {
        let cut: String = line.chars().take(71).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// The field names of a struct that derives `Deserialize`, found by asking it to deserialize
/// from a probe (serde passes them to `deserialize_struct`).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("probe"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// The options each kind takes (besides its kind key and `name`, `when`, `notify`).
pub fn options_of(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::File => field_names::<FileIn>(),
        Kind::Directory => field_names::<DirectoryIn>(),
        Kind::Symlink => field_names::<SymlinkIn>(),
        Kind::Envdir => field_names::<EnvdirIn>(),
        Kind::Cron => field_names::<CronIn>(),
        Kind::Systemd => field_names::<SystemdIn>(),
        Kind::Package => field_names::<PackageIn>(),
        Kind::Swapfile => field_names::<SwapfileIn>(),
        Kind::Command => field_names::<CommandIn>(),
        Kind::Git => field_names::<GitIn>(),
        Kind::PostgresSetting => field_names::<PostgresSettingIn>(),
        Kind::Release => field_names::<ReleaseIn>(),
    }
}

/// A file mode: `"0640"` (octal text) or `0640`/`640` written as a YAML number (its digits are
/// read as octal, which is what was meant).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ModeIn {
    Text(String),
    Number(u64),
}

impl ModeIn {
    fn parse(&self) -> std::result::Result<u32, String> {
        let digits = match self {
            ModeIn::Text(s) => s.trim().trim_start_matches("0o").to_owned(),
            ModeIn::Number(n) => n.to_string(),
        };
        let mode = u32::from_str_radix(&digits, 8)
            .map_err(|_| format!("mode {digits:?} is not an octal number such as \"0644\""))?;
        if mode > 0o7777 {
            return Err(format!("mode {digits:?} is more than 07777"));
        }
        Ok(mode)
    }
}

/// One string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringList {
    One(String),
    Many(Vec<String>),
}

impl StringList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringList::One(s) => vec![s],
            StringList::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    content: Option<String>,
    template: Option<String>,
    src: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    mode: Option<ModeIn>,
    validate: Option<String>,
    state: Option<State>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryIn {
    owner: Option<String>,
    group: Option<String>,
    mode: Option<ModeIn>,
    state: Option<State>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SymlinkIn {
    target: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    state: Option<State>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvdirIn {
    vars: Mapping,
    owner: Option<String>,
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CronIn {
    content: Option<String>,
    template: Option<String>,
    src: Option<String>,
    jobs: Option<Vec<CronJobIn>>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CronJobIn {
    name: Option<String>,
    schedule: String,
    user: Option<String>,
    command: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemdIn {
    content: Option<String>,
    template: Option<String>,
    src: Option<String>,
    enabled: Option<bool>,
    state: Option<ServiceState>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageIn {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapfileIn {
    size: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandIn {
    creates: Option<String>,
    unless: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitIn {
    repo: String,
    #[serde(rename = "ref")]
    reference: Value,
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresSettingIn {
    value: Value,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    database: Option<String>,
    os_user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseIn {
    repo: String,
    #[serde(rename = "ref")]
    reference: Value,
    keep: Option<usize>,
    user: Option<String>,
    #[serde(default)]
    shared_dirs: Vec<String>,
    #[serde(default)]
    shared_files: Vec<String>,
    #[serde(default)]
    submodules: bool,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    build: Option<StringList>,
    before_switch: Option<StringList>,
    after_switch: Option<StringList>,
    health_check: Option<HealthIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthIn {
    url: Option<String>,
    command: Option<String>,
    retries: Option<u32>,
    delay: Option<f64>,
    timeout: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerIn {
    // Read for the unknown-key check and the type check; the name is taken from the raw handler.
    #[allow(dead_code)]
    name: String,
    command: Option<String>,
    systemd: Option<String>,
    action: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFileIn {
    #[serde(default)]
    resources: Vec<Value>,
    #[serde(default)]
    handlers: Vec<Value>,
}

impl PlanSource {
    /// Reads and checks every plan file.
    ///
    /// # Errors
    /// Invalid YAML, a resource without exactly one kind key, unknown keys, duplicate handler
    /// names, a `notify` naming no handler.
    pub fn load(config: &ConfigDir) -> Result<Self> {
        let mut resources = Vec::new();
        let mut handlers: Vec<RawHandler> = Vec::new();
        for rel in config.plan_files()? {
            let value = read_yaml(&config.root, &rel)?;
            if value.is_null() {
                continue;
            }
            let file: PlanFileIn = serde_yaml_ng::from_value(value)
                .map_err(|e| Error::config(&rel, yaml_message(&e)))?;
            for (i, item) in file.resources.into_iter().enumerate() {
                resources.push(parse_resource(&rel, i + 1, item)?);
            }
            for (i, item) in file.handlers.into_iter().enumerate() {
                let handler = parse_handler(&rel, i + 1, item)?;
                if let Some(other) = handlers.iter().find(|h| h.name == handler.name) {
                    return Err(Error::config_at(
                        &rel,
                        format!("handler {}", handler.index),
                        format!(
                            "a handler named {:?} is already defined in {} (handler {})",
                            handler.name,
                            other.file.display(),
                            other.index
                        ),
                    ));
                }
                handlers.push(handler);
            }
        }
        for r in &resources {
            for name in &r.notify {
                if !handlers.iter().any(|h| &h.name == name) {
                    return Err(r.error(format!("notify: no handler named {name:?}")));
                }
            }
        }
        Ok(Self {
            resources,
            handlers,
        })
    }

    /// True when the plan has a `release` resource.
    pub fn has_release(&self) -> bool {
        self.resources.iter().any(|r| r.kind == Kind::Release)
    }

    /// Compiles the plan for one host with its variables.
    ///
    /// # Errors
    /// Template errors, invalid rendered values, secrets on command lines; each names its file
    /// and resource.
    pub fn compile(
        &self,
        config: &ConfigDir,
        templates: &Templates,
        vars: &Variables,
        host: &str,
        options: Options,
    ) -> Result<Plan> {
        let compiler = Compiler {
            root: &config.root,
            templates,
            ctx: &vars.context,
            masker: &vars.masker,
        };
        let mut resources = Vec::with_capacity(self.resources.len());
        for raw in &self.resources {
            resources.push(compiler.resource(raw)?);
        }
        let mut handlers = Vec::with_capacity(self.handlers.len());
        for raw in &self.handlers {
            handlers.push(compiler.handler(raw)?);
        }
        Ok(Plan {
            format: crate::model::FORMAT,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            environment: vars
                .values
                .get(crate::vars::ENV)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            host: host.to_owned(),
            options,
            resources,
            handlers,
            secrets: vars.masker.values().to_vec(),
        })
    }
}

/// Splits one resource item into its kind key, common keys and options, checking the keys.
fn parse_resource(file: &Path, index: usize, item: Value) -> Result<RawResource> {
    let here = format!("resource {index}");
    let Value::Mapping(mut map) = item else {
        return Err(Error::config_at(file, here, "a resource is a mapping"));
    };
    for key in map.keys() {
        if !key.is_string() {
            return Err(Error::config_at(file, here, "keys must be strings"));
        }
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| map.contains_key(k.key()))
        .collect();
    let kind = match kinds.as_slice() {
        [kind] => *kind,
        [] => {
            let keys: Vec<String> = map
                .keys()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.key()).collect();
            return Err(Error::config_at(
                file,
                here,
                format!(
                    "no kind key among {} (a resource needs one of {})",
                    keys.join(", "),
                    all.join(", ")
                ),
            ));
        }
        several => {
            let names: Vec<&str> = several.iter().map(|k| k.key()).collect();
            return Err(Error::config_at(
                file,
                here,
                format!("several kind keys ({}): give exactly one", names.join(", ")),
            ));
        }
    };
    let target = map.remove(kind.key()).unwrap_or(Value::Null);
    let name = map.remove("name");
    let when = map.remove("when");
    let notify = match map.remove("notify") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => match serde_yaml_ng::from_value::<StringList>(v) {
            Ok(list) => list.into_vec(),
            Err(_) => {
                return Err(Error::config_at(
                    file,
                    here,
                    "notify: a handler name or a list of them",
                ));
            }
        },
    };
    let raw = RawResource {
        file: file.to_path_buf(),
        index,
        kind,
        target,
        name,
        when,
        notify,
        fields: map,
    };
    let options = options_of(kind);
    for key in raw.fields.keys().filter_map(Value::as_str) {
        if !options.contains(&key) {
            let mut allowed: Vec<&str> = options.to_vec();
            allowed.extend(COMMON_KEYS);
            return Err(raw.error(format!(
                "unknown key `{key}` (a {kind} resource takes: {})",
                allowed.join(", ")
            )));
        }
    }
    if raw.target.is_null() {
        return Err(raw.error(format!("`{kind}` needs a value")));
    }
    Ok(raw)
}

fn parse_handler(file: &Path, index: usize, item: Value) -> Result<RawHandler> {
    let here = format!("handler {index}");
    let Value::Mapping(map) = item else {
        return Err(Error::config_at(file, here, "a handler is a mapping"));
    };
    let options = field_names::<HandlerIn>();
    for key in map.keys() {
        match key.as_str() {
            Some(k) if options.contains(&k) => {}
            Some(k) => {
                return Err(Error::config_at(
                    file,
                    here,
                    format!(
                        "unknown key `{k}` (a handler takes: {})",
                        options.join(", ")
                    ),
                ));
            }
            None => return Err(Error::config_at(file, here, "keys must be strings")),
        }
    }
    let name = match map.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(Error::config_at(file, here, "a handler needs a `name`")),
    };
    let has = |k: &str| map.contains_key(k);
    if has("command") == has("systemd") {
        return Err(Error::config_at(
            file,
            format!("handler {index} ({name})"),
            "give exactly one of `command` or `systemd`",
        ));
    }
    Ok(RawHandler {
        file: file.to_path_buf(),
        index,
        name,
        fields: map,
    })
}

/// Compiles resources of one host.
struct Compiler<'a> {
    root: &'a Path,
    templates: &'a Templates,
    ctx: &'a minijinja::Value,
    masker: &'a Masker,
}

impl Compiler<'_> {
    fn render(&self, raw: &RawResource, value: &Value) -> Result<Value> {
        render_tree(self.templates, value, self.ctx, &raw.source()).map_err(|m| raw.error(m))
    }

    fn resource(&self, raw: &RawResource) -> Result<Resource> {
        let display_name = |target: &Value| -> Result<String> {
            match &raw.name {
                Some(n) => {
                    let n = self.render(raw, n)?;
                    Ok(scalar_text(&n))
                }
                None => Ok(short(&scalar_text(target))),
            }
        };
        let enabled = match &raw.when {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(expr)) => {
                let expr = expr
                    .trim()
                    .strip_prefix("{{")
                    .and_then(|e| e.strip_suffix("}}"))
                    .unwrap_or(expr);
                self.templates
                    .eval_bool(expr, self.ctx)
                    .map_err(|m| raw.error(format!("when: {m}")))?
            }
            Some(_) => return Err(raw.error("when: an expression (a string) or a boolean")),
        };
        if !enabled {
            return Ok(Resource {
                source: raw.source(),
                kind: raw.kind,
                name: match &raw.name {
                    Some(n) => scalar_text(n),
                    None => short(&scalar_text(&raw.target)),
                },
                notify: raw.notify.clone(),
                spec: None,
            });
        }
        let target = self.render(raw, &raw.target)?;
        let fields = self.render(raw, &Value::Mapping(raw.fields.clone()))?;
        let name = display_name(&target)?;
        let spec = self.spec(raw, &target, fields)?;
        self.check_secrets(raw, &spec)?;
        Ok(Resource {
            source: raw.source(),
            kind: raw.kind,
            name,
            notify: raw.notify.clone(),
            spec: Some(spec),
        })
    }

    fn options<T: DeserializeOwned>(raw: &RawResource, fields: Value) -> Result<T> {
        serde_yaml_ng::from_value(fields).map_err(|e| raw.error(yaml_message(&e)))
    }

    fn target_text(raw: &RawResource, target: &Value) -> Result<String> {
        match target {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(raw.error(format!("`{}` must be a non-empty string", raw.kind))),
        }
    }

    fn abs_path(raw: &RawResource, what: &str, text: &str) -> Result<PathBuf> {
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(raw.error(format!("{what} {text:?} must be an absolute path")));
        }
        Ok(path)
    }

    fn attrs(
        raw: &RawResource,
        owner: Option<String>,
        group: Option<String>,
        mode: Option<&ModeIn>,
    ) -> Result<Attrs> {
        for name in owner.iter().chain(group.iter()) {
            if !is_account_name(name) {
                return Err(raw.error(format!("{name:?} is not a user or group name")));
            }
        }
        let mode = mode
            .map(ModeIn::parse)
            .transpose()
            .map_err(|m| raw.error(m))?;
        Ok(Attrs { owner, group, mode })
    }

    /// The content given by one of `content`, `template` or `src`.
    fn content(
        &self,
        raw: &RawResource,
        content: Option<String>,
        template: Option<String>,
        src: Option<String>,
    ) -> Result<Option<Vec<u8>>> {
        match (content, template, src) {
            (None, None, None) => Ok(None),
            (Some(c), None, None) => Ok(Some(c.into_bytes())),
            (None, Some(t), None) => self
                .templates
                .render_file(&t, self.ctx)
                .map(|s| Some(s.into_bytes()))
                .map_err(|m| raw.error(m)),
            (None, None, Some(s)) => {
                let dir = self.root.join(FILES_DIR);
                let path = contained(&dir, &s).ok_or_else(|| {
                    raw.error(format!(
                        "src {s:?} must be a relative path inside {FILES_DIR}/"
                    ))
                })?;
                std::fs::read(&path)
                    .map(Some)
                    .map_err(|e| raw.error(format!("src {FILES_DIR}/{s}: {e}")))
            }
            _ => Err(raw.error("give only one of `content`, `template` or `src`")),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn spec(&self, raw: &RawResource, target: &Value, fields: Value) -> Result<Spec> {
        Ok(match raw.kind {
            Kind::File => {
                let o: FileIn = Self::options(raw, fields)?;
                let path = Self::abs_path(raw, "file", &Self::target_text(raw, target)?)?;
                let attrs = Self::attrs(raw, o.owner, o.group, o.mode.as_ref())?;
                let state = o.state.unwrap_or_default();
                let content = self.content(raw, o.content, o.template, o.src)?;
                match (state, &content) {
                    (State::Present, None) => {
                        return Err(raw.error("give one of `content`, `template` or `src`"));
                    }
                    (State::Absent, Some(_)) => {
                        return Err(raw.error("an absent file has no content"));
                    }
                    _ => {}
                }
                if let Some(v) = &o.validate
                    && !v.contains("%s")
                {
                    return Err(raw.error("validate: the command must contain %s (the new file)"));
                }
                Spec::File(FileSpec {
                    path,
                    state,
                    content: content.map(Bytes),
                    attrs,
                    validate: o.validate,
                })
            }
            Kind::Directory => {
                let o: DirectoryIn = Self::options(raw, fields)?;
                Spec::Directory(DirectorySpec {
                    path: Self::abs_path(raw, "directory", &Self::target_text(raw, target)?)?,
                    state: o.state.unwrap_or_default(),
                    attrs: Self::attrs(raw, o.owner, o.group, o.mode.as_ref())?,
                })
            }
            Kind::Symlink => {
                let o: SymlinkIn = Self::options(raw, fields)?;
                let state = o.state.unwrap_or_default();
                if state == State::Present && o.target.as_deref().is_none_or(str::is_empty) {
                    return Err(raw.error("a symlink needs a `target`"));
                }
                Spec::Symlink(SymlinkSpec {
                    path: Self::abs_path(raw, "symlink", &Self::target_text(raw, target)?)?,
                    target: o.target.map(PathBuf::from),
                    state,
                    attrs: Self::attrs(raw, o.owner, o.group, None)?,
                    force: o.force,
                })
            }
            Kind::Envdir => {
                let o: EnvdirIn = Self::options(raw, fields)?;
                let mut files = BTreeMap::new();
                for (k, v) in o.vars {
                    let name = k.as_str().unwrap_or_default().to_owned();
                    if !is_envdir_name(&name) {
                        return Err(raw.error(format!(
                            "vars: {name:?} cannot be an envdir file name (no `/`, `=` or leading `.`)"
                        )));
                    }
                    let value = scalar_value(&v).ok_or_else(|| {
                        raw.error(format!("vars: {name} must be a string, number or boolean"))
                    })?;
                    files.insert(
                        name.clone(),
                        envdir_encode(&value)
                            .map_err(|m| raw.error(format!("vars: {name}: {m}")))?,
                    );
                }
                Spec::Envdir(EnvdirSpec {
                    path: Self::abs_path(raw, "envdir", &Self::target_text(raw, target)?)?,
                    files,
                    attrs: Self::attrs(raw, o.owner, o.group, None)?,
                })
            }
            Kind::Cron => {
                let o: CronIn = Self::options(raw, fields)?;
                let name = Self::target_text(raw, target)?;
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(raw.error(
                        "cron: the name may only have letters, digits, `_` and `-` (cron ignores other files in /etc/cron.d)",
                    ));
                }
                let given = self.content(raw, o.content, o.template, o.src)?;
                let content = match (given, o.jobs) {
                    (Some(c), None) if o.env.is_empty() => String::from_utf8(c)
                        .map_err(|_| raw.error("cron: the content is not UTF-8 text"))?,
                    (None, Some(jobs)) => cron_file(raw, &o.env, &jobs)?,
                    _ => {
                        return Err(raw.error(
                            "give `jobs` (with optional `env`), or one of `content`, `template` or `src`",
                        ));
                    }
                };
                let content = if content.ends_with('\n') {
                    content
                } else {
                    content + "\n"
                };
                Spec::Cron(CronSpec { name, content })
            }
            Kind::Systemd => {
                let o: SystemdIn = Self::options(raw, fields)?;
                let mut unit = Self::target_text(raw, target)?;
                if !crate::config::is_simple_name(&unit) || unit.contains('/') {
                    return Err(raw.error(format!("{unit:?} is not a unit name")));
                }
                if !UNIT_SUFFIXES.iter().any(|s| unit.ends_with(s)) {
                    unit.push_str(".service");
                }
                let content = self
                    .content(raw, o.content, o.template, o.src)?
                    .map(String::from_utf8)
                    .transpose()
                    .map_err(|_| raw.error("the unit file is not UTF-8 text"))?;
                Spec::Systemd(SystemdSpec {
                    unit,
                    content,
                    enabled: Some(o.enabled.unwrap_or(true)),
                    state: Some(o.state.unwrap_or(ServiceState::Started)),
                })
            }
            Kind::Package => {
                let _: PackageIn = Self::options(raw, fields)?;
                let names = match target {
                    Value::Sequence(items) => items.iter().map(scalar_text).collect(),
                    other => vec![Self::target_text(raw, other)?],
                };
                for n in &names {
                    if !is_package_name(n) {
                        return Err(raw.error(format!("{n:?} is not a Debian package name")));
                    }
                }
                Spec::Package(PackageSpec { names })
            }
            Kind::Swapfile => {
                let o: SwapfileIn = Self::options(raw, fields)?;
                let size = parse_size(&o.size).map_err(|m| raw.error(format!("size: {m}")))?;
                Spec::Swapfile(SwapfileSpec {
                    path: Self::abs_path(raw, "swapfile", &Self::target_text(raw, target)?)?,
                    size,
                })
            }
            Kind::Command => {
                let o: CommandIn = Self::options(raw, fields)?;
                let exec = Exec {
                    command: Self::target_text(raw, target)?,
                    cwd: o.cwd.map(|c| Self::abs_path(raw, "cwd", &c)).transpose()?,
                    env: env_map(raw, o.env)?,
                    user: user_name(raw, o.user)?,
                };
                Spec::Command(CommandSpec {
                    exec,
                    creates: o
                        .creates
                        .map(|c| Self::abs_path(raw, "creates", &c))
                        .transpose()?,
                    unless: o.unless,
                })
            }
            Kind::Git => {
                let o: GitIn = Self::options(raw, fields)?;
                Spec::Git(GitSpec {
                    path: Self::abs_path(raw, "git", &Self::target_text(raw, target)?)?,
                    repo: non_empty(raw, "repo", o.repo)?,
                    reference: reference(raw, &o.reference)?,
                    owner: user_name(raw, o.owner)?,
                })
            }
            Kind::PostgresSetting => {
                let o: PostgresSettingIn = Self::options(raw, fields)?;
                let name = Self::target_text(raw, target)?;
                if !is_guc_name(&name) {
                    return Err(raw.error(format!("{name:?} is not a PostgreSQL setting name")));
                }
                let value = match &o.value {
                    Value::Bool(true) => "on".to_owned(),
                    Value::Bool(false) => "off".to_owned(),
                    v => scalar_value(v)
                        .ok_or_else(|| raw.error("value: a string, number or boolean"))?,
                };
                Spec::PostgresSetting(PostgresSettingSpec {
                    name,
                    value,
                    host: o.host,
                    port: o.port,
                    db_user: o.user.unwrap_or_else(|| "postgres".to_owned()),
                    database: o.database.unwrap_or_else(|| "postgres".to_owned()),
                    os_user: user_name(
                        raw,
                        Some(o.os_user.unwrap_or_else(|| "postgres".to_owned())),
                    )?,
                })
            }
            Kind::Release => Self::release(raw, target, fields)?,
        })
    }

    fn release(raw: &RawResource, target: &Value, fields: Value) -> Result<Spec> {
        let o: ReleaseIn = Self::options(raw, fields)?;
        for rel in o.shared_dirs.iter().chain(&o.shared_files) {
            if contained(Path::new("/"), rel).is_none() {
                return Err(raw.error(format!(
                    "shared path {rel:?} must be relative to the release, without `..`"
                )));
            }
        }
        let health_check = match o.health_check {
            None => None,
            Some(h) => {
                match (&h.url, &h.command) {
                    (Some(url), None) => {
                        if !url.starts_with("http://") {
                            return Err(raw.error(
                                "health_check: url must be http:// (for https, use `command: curl -fsS https://…`)",
                            ));
                        }
                    }
                    (None, Some(_)) => {}
                    _ => {
                        return Err(
                            raw.error("health_check: give exactly one of `url` or `command`")
                        );
                    }
                }
                Some(HealthCheck {
                    url: h.url,
                    command: h.command,
                    retries: h.retries.unwrap_or(10).max(1),
                    delay: h.delay.unwrap_or(3.0).max(0.0),
                    timeout: h.timeout.unwrap_or(10.0).max(0.1),
                })
            }
        };
        let keep = o.keep.unwrap_or(5);
        if keep == 0 {
            return Err(raw.error("keep: at least 1 (the live release)"));
        }
        Ok(Spec::Release(ReleaseSpec {
            path: Self::abs_path(raw, "release", &Self::target_text(raw, target)?)?,
            repo: non_empty(raw, "repo", o.repo)?,
            reference: reference(raw, &o.reference)?,
            keep,
            user: user_name(raw, o.user)?,
            shared_dirs: o.shared_dirs,
            shared_files: o.shared_files,
            submodules: o.submodules,
            env: env_map(raw, o.env)?,
            build: o.build.map(StringList::into_vec).unwrap_or_default(),
            before_switch: o
                .before_switch
                .map(StringList::into_vec)
                .unwrap_or_default(),
            after_switch: o.after_switch.map(StringList::into_vec).unwrap_or_default(),
            health_check,
        }))
    }

    fn handler(&self, raw: &RawHandler) -> Result<Handler> {
        let context = format!("handler {} ({})", raw.index, raw.name);
        let fail = |m: String| Error::config_at(&raw.file, &context, m);
        let rendered = render_tree(
            self.templates,
            &Value::Mapping(raw.fields.clone()),
            self.ctx,
            &raw.name,
        )
        .map_err(&fail)?;
        let h: HandlerIn =
            serde_yaml_ng::from_value(rendered).map_err(|e| fail(yaml_message(&e)))?;
        let source = format!("{}#{}", raw.file.display(), raw.index);
        let action = if let Some(command) = h.command {
            if h.action.is_some() {
                return Err(fail("`action` goes with `systemd`".to_owned()));
            }
            if self.masker.contains_secret(&command) {
                return Err(fail(SECRET_ON_COMMAND_LINE.to_owned()));
            }
            let mut env = BTreeMap::new();
            for (k, v) in h.env {
                let v = scalar_value(&v).ok_or_else(|| fail(format!("env: {k}: a scalar")))?;
                env.insert(k, v);
            }
            HandlerAction::Command(Exec {
                command,
                cwd: h.cwd.map(PathBuf::from),
                env,
                user: h.user,
            })
        } else {
            let unit = h.systemd.unwrap_or_default();
            let action = h.action.unwrap_or_else(|| "restart".to_owned());
            if !SYSTEMD_ACTIONS.contains(&action.as_str()) {
                return Err(fail(format!(
                    "action {action:?}: one of {}",
                    SYSTEMD_ACTIONS.join(", ")
                )));
            }
            if h.cwd.is_some() || !h.env.is_empty() || h.user.is_some() {
                return Err(fail("cwd, env and user go with `command`".to_owned()));
            }
            HandlerAction::Systemd { unit, action }
        };
        Ok(Handler {
            name: raw.name.clone(),
            source,
            action,
        })
    }

    /// Refuses secrets in what ends up on a command line or in a world-readable cron file.
    fn check_secrets(&self, raw: &RawResource, spec: &Spec) -> Result<()> {
        let argv: Vec<&str> = match spec {
            Spec::File(f)
                if f.content.as_ref().is_some_and(|c| {
                    self.masker.contains_secret(&String::from_utf8_lossy(&c.0))
                }) && f.attrs.mode.is_none_or(|m| m & 0o004 != 0) =>
            {
                return Err(raw.error(
                    "the file would hold a secret value: give it a `mode` other users cannot read, such as \"0640\"",
                ));
            }
            Spec::Systemd(u)
                if u.content
                    .as_deref()
                    .is_some_and(|c| self.masker.contains_secret(c)) =>
            {
                return Err(raw.error(
                    "the unit file would hold a secret value, but unit files are readable by every user: use an EnvironmentFile written with a restrictive mode",
                ));
            }
            Spec::File(f) => f.validate.iter().map(String::as_str).collect(),
            Spec::Command(c) => std::iter::once(c.exec.command.as_str())
                .chain(c.unless.as_deref())
                .collect(),
            Spec::Git(g) => vec![g.repo.as_str(), g.reference.as_str()],
            Spec::Release(r) => std::iter::once(r.repo.as_str())
                .chain(std::iter::once(r.reference.as_str()))
                .chain(r.build.iter().map(String::as_str))
                .chain(r.before_switch.iter().map(String::as_str))
                .chain(r.after_switch.iter().map(String::as_str))
                .chain(r.health_check.iter().filter_map(|h| h.command.as_deref()))
                .collect(),
            Spec::Cron(c) => {
                if self.masker.contains_secret(&c.content) {
                    return Err(raw.error(
                        "the cron file would hold a secret value, but files in /etc/cron.d are readable by every user: give the job its secrets through an envdir",
                    ));
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        if argv.iter().any(|s| self.masker.contains_secret(s)) {
            return Err(raw.error(SECRET_ON_COMMAND_LINE));
        }
        Ok(())
    }
}

const SECRET_ON_COMMAND_LINE: &str = "a command or URL here holds a secret value, and the command line of a process is visible to every user: pass secrets through `env:` (or an envdir, or a file)";

/// Suffixes of systemd unit names; a name without one is a `.service`.
const UNIT_SUFFIXES: [&str; 10] = [
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
];

fn non_empty(raw: &RawResource, what: &str, value: String) -> Result<String> {
    if value.trim().is_empty() {
        return Err(raw.error(format!("{what} must not be empty")));
    }
    Ok(value)
}

/// A git reference: a branch, a tag or a full commit id (a number in YAML is taken as text).
fn reference(raw: &RawResource, value: &Value) -> Result<String> {
    let text = scalar_value(value).unwrap_or_default();
    if text.is_empty() || text.starts_with('-') || text.contains(char::is_whitespace) {
        return Err(raw.error("ref: a branch, a tag or a full commit id"));
    }
    Ok(text)
}

fn user_name(raw: &RawResource, user: Option<String>) -> Result<Option<String>> {
    if let Some(u) = &user
        && !is_account_name(u)
    {
        return Err(raw.error(format!("{u:?} is not a user name")));
    }
    Ok(user)
}

fn env_map(raw: &RawResource, env: BTreeMap<String, Value>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in env {
        if !crate::vars::is_variable_name(&k) {
            return Err(raw.error(format!("env: {k:?} is not an environment variable name")));
        }
        let v = scalar_value(&v)
            .ok_or_else(|| raw.error(format!("env: {k} must be a string, number or boolean")))?;
        out.insert(k, v);
    }
    Ok(out)
}

/// A scalar as text; `None` for null, lists and mappings.
fn scalar_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `/etc/cron.d` file of `jobs:` and `env:`.
fn cron_file(
    raw: &RawResource,
    env: &BTreeMap<String, Value>,
    jobs: &[CronJobIn],
) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = format!(
        "# Written by deploy from {}: do not edit here.\n",
        raw.source()
    );
    for (k, v) in env {
        let v = scalar_value(v)
            .ok_or_else(|| raw.error(format!("env: {k} must be a string, number or boolean")))?;
        if !crate::vars::is_variable_name(k) || v.contains('\n') {
            return Err(raw.error(format!("env: {k}: a variable name and a one-line value")));
        }
        let _ = writeln!(out, "{k}={v}");
    }
    for (i, job) in jobs.iter().enumerate() {
        let fields = job.schedule.split_whitespace().count();
        let valid_schedule = if job.schedule.trim_start().starts_with('@') {
            fields == 1
        } else {
            fields == 5
        };
        if !valid_schedule {
            return Err(raw.error(format!(
                "jobs[{i}]: schedule {:?} must have 5 fields or be an @keyword such as @daily",
                job.schedule
            )));
        }
        if job.command.contains('\n') || job.command.trim().is_empty() {
            return Err(raw.error(format!("jobs[{i}]: command must be one non-empty line")));
        }
        let user = job.user.as_deref().unwrap_or("root");
        if !is_account_name(user) {
            return Err(raw.error(format!("jobs[{i}]: {user:?} is not a user name")));
        }
        out.push('\n');
        if let Some(name) = &job.name {
            let _ = writeln!(out, "# {}", name.replace('\n', " "));
        }
        let _ = writeln!(
            out,
            "{} {user} {}",
            job.schedule
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            job.command.trim()
        );
    }
    Ok(out)
}

/// A value as the file envdir reads it: newlines as NUL bytes, then a final newline.
///
/// # Errors
/// Values envdir cannot give back: with a NUL byte, or ending with a space or a tab.
pub fn envdir_encode(value: &str) -> std::result::Result<String, String> {
    if value.contains('\0') {
        return Err("a value cannot hold a NUL byte".to_owned());
    }
    if value.ends_with([' ', '\t']) {
        return Err("the value ends with a space or tab, which envdir would strip".to_owned());
    }
    Ok(format!("{}\n", value.replace('\n', "\0")))
}

fn is_envdir_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '=', '\0'])
}

/// POSIX-ish user and group names (what useradd accepts).
pub fn is_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
}

fn is_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:".contains(c))
}

fn is_guc_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// A size: bytes as a number, or with a suffix `K`, `M`, `G`, `T` (powers of 1024).
fn parse_size(v: &Value) -> std::result::Result<u64, String> {
    let text = scalar_value(v).ok_or("a size such as 2G or 512M")?;
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 2G or 512M"))?;
    let factor: u64 = match unit.trim().trim_end_matches(['B', 'b', 'i']) {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(format!("{text:?}: the unit must be K, M, G or T")),
    };
    let size = n
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if size < 40 * 1024 {
        return Err(format!("{text:?}: mkswap needs at least 40K"));
    }
    Ok(size)
}

/// The set of handler names that resources notify (for tests and `diff`).
pub fn notified(plan: &Plan) -> BTreeSet<&str> {
    plan.resources
        .iter()
        .flat_map(|r| r.notify.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_from_the_structs() {
        assert_eq!(
            options_of(Kind::Directory),
            ["owner", "group", "mode", "state"]
        );
        assert!(options_of(Kind::Release).contains(&"before_switch"));
        assert!(options_of(Kind::Package).is_empty());
        assert!(options_of(Kind::Git).contains(&"ref"));
    }

    #[test]
    fn modes_sizes_and_envdir_values() {
        assert_eq!(ModeIn::Text("0640".into()).parse(), Ok(0o640));
        assert_eq!(ModeIn::Number(640).parse(), Ok(0o640));
        assert!(ModeIn::Number(899).parse().is_err());
        assert!(ModeIn::Text("17777".into()).parse().is_err());
        assert_eq!(parse_size(&Value::String("2G".into())), Ok(2 << 30));
        assert_eq!(parse_size(&Value::String("512MiB".into())), Ok(512 << 20));
        assert_eq!(
            parse_size(&serde_yaml_ng::from_str("65536").unwrap()),
            Ok(65536)
        );
        assert!(parse_size(&Value::String("2X".into())).is_err());
        assert!(parse_size(&Value::String("1K".into())).is_err());
        assert_eq!(envdir_encode("a\nb").unwrap(), "a\0b\n");
        assert_eq!(envdir_encode("").unwrap(), "\n");
        assert!(envdir_encode("x ").is_err());
        assert!(envdir_encode("a\0").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(is_package_name("postgresql-15") && is_package_name("g++"));
        assert!(!is_package_name("Nginx") && !is_package_name("-x"));
        assert!(is_guc_name("archive_command") && !is_guc_name("x; drop"));
        assert!(is_account_name("www-data") && !is_account_name("a b"));
        assert!(is_envdir_name("AWS_REGION") && !is_envdir_name(".x") && !is_envdir_name("a=b"));
        assert_eq!(short("a\nb"), "a…");
    }
}
