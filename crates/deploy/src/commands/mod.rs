//! The commands: `apply` and `rollback` ([`apply`]), `diff` ([`diff`]) and the hidden
//! `apply-plan` that SSH hosts run ([`apply_plan`]).

pub(crate) mod apply;
pub(crate) mod apply_plan;
pub(crate) mod diff;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ops_common::cli::Context;
use vault_tool::password::{LazyKeyring, Sources};

use crate::cli::SourceArgs;
use crate::config::{ConfigDir, Environment, Host};
use crate::error::{Error, Result};
use crate::model::{Options, Plan};
use crate::plan::PlanSource;
use crate::settings;
use crate::template::Templates;
use crate::vars::{RawVars, Variables};

/// What every command that renders a plan reads once: the directory, its plan and templates,
/// and where the vault passwords come from (loaded on first use: a configuration without
/// vaults needs no password).
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The configuration directory.
    pub(crate) config: ConfigDir,
    /// The plan files, parsed and checked.
    pub(crate) plan: PlanSource,
    /// The Jinja2 environment.
    pub(crate) templates: Templates,
    keys: LazyKeyring,
    extra: Vec<PathBuf>,
}

impl Loaded {
    /// Reads the configuration directory given by `--dir`/`DEPLOY_DIR`.
    ///
    /// # Errors
    /// An invalid configuration directory or password settings.
    pub(crate) fn open(ctx: &Context, dir: Option<&Path>, source: &SourceArgs) -> Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from(ctx.settings.get(&settings::DEPLOY_DIR).unwrap_or(".")),
        };
        let config = ConfigDir::open(&dir)?;
        let plan = PlanSource::load(&config)?;
        let templates = Templates::new(&config.root);
        let keys = Sources::from_settings(
            &ctx.settings,
            &source.passwords.vault_id,
            &source.passwords.vault_password_file,
        )
        .map_err(Error::Passwords)?
        .lazy();
        Ok(Self {
            config,
            plan,
            templates,
            keys,
            extra: source.extra_vars.clone(),
        })
    }

    /// The variables of a host, rendered; `pins` as [`RawVars::render`] takes them.
    ///
    /// # Errors
    /// Unreadable variables, vaults that cannot be decrypted, template errors.
    pub(crate) fn variables(
        &self,
        env: &Environment,
        host: &Host,
        pins: &BTreeMap<String, serde_yaml_ng::Value>,
    ) -> Result<(RawVars, Variables)> {
        let raw = RawVars::load(&self.config, env, host, &self.extra, &self.keys)?;
        let vars = raw.render(&self.templates, &env.name, &host.name, pins)?;
        Ok((raw, vars))
    }

    /// The compiled plan of a host.
    ///
    /// # Errors
    /// See [`Loaded::variables`] and [`PlanSource::compile`].
    pub(crate) fn compile(&self, env: &Environment, host: &Host, options: Options) -> Result<Plan> {
        let (_, vars) = self.variables(env, host, &BTreeMap::new())?;
        self.plan
            .compile(&self.config, &self.templates, &vars, &host.name, options)
    }
}
