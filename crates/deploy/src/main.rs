//! The `deploy` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    ops_common::cli::main::<deploy::Cli>()
}
