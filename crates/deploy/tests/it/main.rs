//! deploy's integration tests: the real binary on configuration directories the tests write,
//! applied under `--root` in a temporary directory, or live on paths inside one.

mod apply;
mod cli;
mod diff;
mod docs;
mod example;
mod postgres;
mod release;
mod ssh;
mod support;
