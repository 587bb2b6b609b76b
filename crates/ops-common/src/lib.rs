//! What the alaveteli-ops tools share: settings, envdirs, object storage, logging, metrics, exit
//! statuses and the command-line driver.
//!
//! Each tool (`wal-archive`, `email-backup`, `stats-anonymize`, `vault-tool`, `deploy`) is a thin
//! binary over its own library, and every library builds on this crate so that the tools behave the
//! same way for an operator: the same settings layering and names, the same `--envdir`, the same
//! exit statuses, the same logs and metrics.
//!
//! This crate does no tool-specific work: it knows nothing of WAL, restic repositories or vaults.

pub mod cli;
pub mod envdir;
mod error;
pub mod exit;
pub mod fsutil;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod progress;
pub mod settings;
pub mod storage;
pub mod vars;

pub use error::{Error, Result, StorageErrorKind, one_line};
