//! The `vault-tool` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    ops_common::cli::main::<vault_tool::Cli>()
}
