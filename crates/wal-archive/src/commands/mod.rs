//! One module per command.

pub mod backup;
pub mod delete;
pub mod drill;
pub mod fetch;
pub mod list;
pub mod push;
pub mod restore;
pub mod verify;
