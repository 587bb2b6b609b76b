//! `deploy apply ENV` and `deploy rollback ENV`: compile the plan of each host of the
//! environment here, apply it through the host's transport, print the results.

use std::path::{Path, PathBuf};

use ops_common::cli::Context;
use ops_common::exit;

use crate::cli::{RunArgs, SourceArgs};
use crate::commands::Loaded;
use crate::config::TransportKind;
use crate::error::{Error, Result};
use crate::model::{Mode, Options};
use crate::report::Printer;
use crate::settings;
use crate::transport;

/// Runs `apply` (or `rollback`) and returns the exit status: 0 when nothing failed, 1 when a
/// resource or handler failed.
///
/// # Errors
/// Configuration, vault and transport errors.
pub(crate) fn run(
    ctx: &Context,
    dir: Option<&Path>,
    env_name: &str,
    mode: Mode,
    diff: bool,
    run: &RunArgs,
    source: &SourceArgs,
) -> Result<u8> {
    let loaded = Loaded::open(ctx, dir, source)?;
    let env = loaded.config.environment(env_name)?.clone();
    if mode == Mode::Rollback && !loaded.plan.has_release() {
        return Err(Error::NothingToRollBack(
            "the plan has no release resource: nothing to roll back".to_owned(),
        ));
    }
    let hosts: Vec<_> = match &run.host {
        Some(name) => {
            let found: Vec<_> = env.hosts.iter().filter(|h| &h.name == name).collect();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "--host {name}: no such host in environment {env_name} (hosts: {})",
                    env.hosts
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            found
        }
        None => env.hosts.iter().collect(),
    };
    let root = run
        .root
        .as_deref()
        .map(|r| std::path::absolute(r).map_err(|e| Error::io(r, e)))
        .transpose()?;
    let options = Options {
        mode,
        check: run.check,
        diff,
        root,
    };
    // Compile every host first: a template error on the second host must stop the run before
    // the first one is changed.
    let mut plans = Vec::with_capacity(hosts.len());
    for host in &hosts {
        plans.push(loaded.compile(&env, host, options.clone())?);
    }
    let command = match mode {
        Mode::Apply => "apply",
        Mode::Rollback => "rollback",
    };
    let mut printer = Printer::new(command, env_name, run.json, run.check);
    let binary = remote_binary(ctx)?;
    for (host, plan) in hosts.iter().zip(&plans) {
        let mut host = (*host).clone();
        if run.local {
            host.spec.transport = TransportKind::Local;
        }
        let transport = match host.spec.transport {
            TransportKind::Local => "local",
            TransportKind::Ssh => "ssh",
        };
        printer.start_host(&host.name, transport);
        if let Err(e) = transport::apply(&host, plan, &binary, &mut |event| printer.event(event)) {
            // What the hosts before did is still reported (the JSON document for CI too); the
            // error follows on stderr.
            let _ = printer.finish();
            return Err(e);
        }
    }
    let total = printer.finish()?;
    Ok(if total.failed > 0 {
        exit::FAILURE
    } else {
        exit::SUCCESS
    })
}

/// The binary sent to SSH hosts: `DEPLOY_REMOTE_BINARY`, or this executable.
fn remote_binary(ctx: &Context) -> Result<PathBuf> {
    match ctx.settings.get(&settings::DEPLOY_REMOTE_BINARY) {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e)),
    }
}
