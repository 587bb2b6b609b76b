//! `command`: a shell command, guarded.
//!
//! A command without guards runs on every apply and always counts as changed (as in ansible);
//! give it `creates` (a path that exists once it has run) or `unless` (a command that succeeds
//! once it is not needed) to make it idempotent. Guards are read-only by contract, and also run in
//! check mode to tell whether the command would run. Under `--root`, commands are not run.

use crate::apply::{Change, Ctx, ROOT_SKIP};
use crate::exec::Program;
use crate::model::CommandSpec;

/// Applies a `command`.
///
/// # Errors
/// The command failing (its status and the end of its output), or a user that does not exist.
pub fn apply(spec: &CommandSpec, ctx: &Ctx) -> Result<Change, String> {
    if !ctx.live() {
        return Ok(Change::skipped(ROOT_SKIP));
    }
    if let Some(path) = &spec.creates
        && path.exists()
    {
        let mut c = Change::ok();
        c.note(format!("{} exists", path.display()));
        return Ok(c);
    }
    if let Some(guard) = &spec.unless {
        let out = Program::shell_text(guard, &spec.exec, &ctx.accounts)?.run()?;
        if out.success() {
            let mut c = Change::ok();
            c.note("`unless` succeeded");
            return Ok(c);
        }
    }
    let mut change = Change::ok();
    if ctx.check {
        change.changed("would run");
        return Ok(change);
    }
    Program::shell(&spec.exec, &ctx.accounts)?.ok("the command")?;
    change.changed("ran");
    Ok(change)
}
