//! `systemd` units and `package`s: the resources of the service and package managers.
//!
//! - `systemd`: the unit file (when given) is written to `/etc/systemd/system/<unit>`; when it
//!   changed, `systemctl daemon-reload`; then `enable`/`disable` and `start`/`stop` when
//!   `systemctl is-enabled`/`is-active` say they are needed. Restarting a service because its
//!   configuration changed is a handler's job (`notify`). Under `--root` only the file is written.
//! - `package`: `dpkg-query` tells which are installed; the missing ones are installed together
//!   with `apt-get install --no-install-recommends` (after `apt-get update` if apt does not know
//!   one). Nothing is upgraded. Under `--root`: skipped.

use std::path::Path;

use crate::apply::{Change, Ctx, ROOT_SKIP};
use crate::exec::Program;
use crate::model::{Attrs, PackageSpec, ServiceState, SystemdSpec};
use crate::resources::file::ensure_file;

/// Where unit files go.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// Applies a `systemd` unit.
///
/// # Errors
/// A failed write or `systemctl` command.
pub fn systemd(spec: &SystemdSpec, ctx: &Ctx) -> Result<Change, String> {
    let mut change = Change::ok();
    let mut file_changed = false;
    if let Some(content) = &spec.content {
        let attrs = Attrs {
            owner: Some("root".to_owned()),
            group: Some("root".to_owned()),
            mode: Some(0o644),
        };
        let path = Path::new(UNIT_DIR).join(&spec.unit);
        let c = ensure_file(ctx, &path, content.as_bytes(), &attrs, 0o644, None)?;
        file_changed = c.changed;
        change.merge(c);
    }
    if !ctx.live() {
        if spec.content.is_none() {
            return Ok(Change::skipped(ROOT_SKIP));
        }
        change.note(format!("service actions skipped ({ROOT_SKIP})"));
        return Ok(change);
    }
    let unit = spec.unit.as_str();
    if file_changed {
        act(ctx, &mut change, &["daemon-reload"], "daemon-reload")?;
    }
    let query = |what: &str| -> bool {
        // In check mode, a systemctl that cannot answer (no systemd running) means "not yet".
        Program::new("systemctl")
            .args([what, "--quiet", unit])
            .run()
            .is_ok_and(|o| o.success())
    };
    match spec.enabled {
        Some(true) if !query("is-enabled") => act(ctx, &mut change, &["enable", unit], "enable")?,
        Some(false) if query("is-enabled") => act(ctx, &mut change, &["disable", unit], "disable")?,
        _ => {}
    }
    match spec.state {
        Some(ServiceState::Started) if !query("is-active") => {
            act(ctx, &mut change, &["start", unit], "start")?;
        }
        Some(ServiceState::Stopped) if query("is-active") => {
            act(ctx, &mut change, &["stop", unit], "stop")?;
        }
        _ => {}
    }
    Ok(change)
}

fn act(ctx: &Ctx, change: &mut Change, args: &[&str], note: &str) -> Result<(), String> {
    change.changed(note);
    if ctx.check {
        return Ok(());
    }
    Program::new("systemctl")
        .args(args)
        .ok(&format!("systemctl {}", args.join(" ")))
        .map(|_| ())
}

/// True when dpkg says the package is installed.
pub fn installed(name: &str) -> bool {
    Program::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .run()
        .is_ok_and(|o| {
            o.success() && {
                let words: Vec<&str> = o.stdout.split_whitespace().collect();
                matches!(words.as_slice(), ["install" | "hold", _, "installed"])
            }
        })
}

/// Applies a `package`.
///
/// # Errors
/// apt-get failing.
pub fn package(spec: &PackageSpec, ctx: &Ctx) -> Result<Change, String> {
    if !ctx.live() {
        return Ok(Change::skipped(ROOT_SKIP));
    }
    let missing: Vec<&str> = spec
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| !installed(n))
        .collect();
    let mut change = Change::ok();
    if missing.is_empty() {
        return Ok(change);
    }
    if ctx.check {
        change.changed(format!("would install {}", missing.join(", ")));
        return Ok(change);
    }
    let install = || {
        let mut p =
            Program::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]);
        p.envs(&[("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned())].into());
        p.args(&missing).run()
    };
    let mut out = install()?;
    if !out.success() {
        Program::new("apt-get")
            .args(["update", "-q"])
            .ok("apt-get update")?;
        out = install()?;
    }
    if !out.success() {
        return Err(out.failure("apt-get install"));
    }
    change.changed(format!("installed {}", missing.join(", ")));
    Ok(change)
}
