//! The resources: how each kind is brought to its state, and when it counts as changed.
//!
//! Each `apply` compares first and changes only what differs, so a second run reports `ok`
//! everywhere; in check mode it stops after comparing. Failures are returned as one-line messages
//! (masked by the caller).

pub mod command;
pub mod envdir;
pub mod file;
pub mod git;
pub mod postgres;
pub mod release;
pub mod swapfile;
pub mod system;
