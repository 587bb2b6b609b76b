//! stats-anonymize's integration tests: the real binary against real PostgreSQL 15 clusters, a
//! source database loaded from Alaveteli's schema and a separate target database.

mod cli;
mod copy;
mod docs;
mod drift;
mod failures;
mod leaks;
mod pseudonyms;
mod support;
mod swap;
