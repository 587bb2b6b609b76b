//! Integration tests: the real `vault-tool` binary, run with a cleared environment, against
//! fixtures made by ansible-vault 2.14 and, live, against the real `ansible-vault`.
//!
//! One test binary; the modules group the tests by command.

mod support;

mod ansible;
mod check;
mod common;
mod edit;
mod envdir;
mod files;
mod passwords;
mod strings;
mod textconv;
