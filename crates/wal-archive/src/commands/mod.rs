//! One module per command.

pub mod backup;
pub mod fetch;
pub mod list;
pub mod push;
pub mod restore;
