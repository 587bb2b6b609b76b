//! email-backup's integration tests: the real binary on a local repository and on the in-process
//! S3 server, next to the real restic 0.14, with generated corpora shaped like Alaveteli's raw emails.

mod cli;
mod compat;
mod docs;
mod errors;
mod faults;
mod lifecycle;
mod locks;
mod support;
