//! The `email-backup` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    ops_common::cli::main::<email_backup::Cli>()
}
