//! Exit statuses shared by every alaveteli-ops tool.
//!
//! One table for all tools, so cron wrappers, CI and PostgreSQL can act on a status without knowing
//! which tool produced it. Ordinary failures stay below 126: PostgreSQL treats a status above 125
//! from `archive_command` or `restore_command` like a crash (the archiver restarts, recovery aborts).
//! The only status above 125 a tool returns on purpose is [`ABORT_RECOVERY`].
//!
//! The table is generated into the operator guide from [`TABLE`]; keep the two in one place.

/// The command did what was asked.
pub const SUCCESS: u8 = 0;
/// The command ran and its answer is negative: problems were found (verify, check), or the file
/// asked for is not there (`wal-archive fetch` of a segment that was never archived).
pub const FAILURE: u8 = 1;
/// The command line is invalid (unknown flag, missing argument).
pub const USAGE: u8 = 2;
/// The settings are invalid: a bad value, an unknown key in the config file, an unreadable envdir.
pub const CONFIG: u8 = 3;
/// Something named on the command line or in the settings does not exist (a backup, a snapshot, a
/// repository, a file).
pub const NOT_FOUND: u8 = 4;
/// The command refused to overwrite or to proceed: the target exists or is not empty, the archive
/// already holds different content, another process holds a lock.
pub const CONFLICT: u8 = 5;
/// Stored or received data failed a checksum or could not be decoded: nothing was applied.
pub const INTEGRITY: u8 = 6;
/// The object store could not be reached or kept failing after bounded retries; trying again later
/// may succeed.
pub const STORAGE_UNAVAILABLE: u8 = 7;
/// The object store refused the request (access denied, no such bucket, bad request); retrying will
/// not help until the settings or the store change.
pub const STORAGE: u8 = 8;
/// PostgreSQL refused a connection or a statement.
pub const DATABASE: u8 = 9;
/// A local file or directory could not be read or written.
pub const IO: u8 = 10;
/// A password or key is wrong.
pub const AUTH: u8 = 11;
/// An input file is malformed.
pub const INPUT: u8 = 12;
/// A panic: a bug. The message on stderr says where.
pub const PANIC: u8 = 101;
/// Interrupted by Ctrl-C (SIGINT), as shells report it.
pub const INTERRUPTED: u8 = 130;
/// `wal-archive fetch` could not tell whether a file exists (storage unreachable after retries, or a
/// stored object is corrupt). Above 125 on purpose: PostgreSQL then stops recovery instead of taking
/// the file as missing, ending recovery early and silently losing everything after the gap.
pub const ABORT_RECOVERY: u8 = 200;

/// Every status with its meaning, in the order of the documentation table.
pub const TABLE: &[(u8, &str, &str)] = &[
    (SUCCESS, "SUCCESS", "done"),
    (
        FAILURE,
        "FAILURE",
        "ran, and found problems or a missing file",
    ),
    (USAGE, "USAGE", "invalid command line"),
    (CONFIG, "CONFIG", "invalid settings, envdir or config file"),
    (
        NOT_FOUND,
        "NOT_FOUND",
        "a named backup, snapshot, repository or file does not exist",
    ),
    (
        CONFLICT,
        "CONFLICT",
        "refused: would overwrite, target not empty, or lock held",
    ),
    (
        INTEGRITY,
        "INTEGRITY",
        "checksum mismatch or undecodable data; nothing applied",
    ),
    (
        STORAGE_UNAVAILABLE,
        "STORAGE_UNAVAILABLE",
        "object store unreachable after retries; try later",
    ),
    (STORAGE, "STORAGE", "object store refused the request"),
    (DATABASE, "DATABASE", "PostgreSQL error"),
    (IO, "IO", "local file or directory error"),
    (AUTH, "AUTH", "wrong password or key"),
    (INPUT, "INPUT", "malformed input file"),
    (PANIC, "PANIC", "a bug: a panic"),
    (INTERRUPTED, "INTERRUPTED", "interrupted by Ctrl-C"),
    (
        ABORT_RECOVERY,
        "ABORT_RECOVERY",
        "wal-archive fetch: cannot tell; PostgreSQL must stop recovery",
    ),
];

/// The table of [`TABLE`] in Markdown, for the operator guide.
#[must_use]
pub fn markdown_table() -> String {
    use std::fmt::Write as _;
    let mut out = String::from("| Status | Name | Meaning |\n|---|---|---|\n");
    for (code, name, meaning) in TABLE {
        let _ = writeln!(out, "| {code} | `{name}` | {meaning} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_abort_recovery_and_conventional_codes_are_above_125() {
        for &(code, name, _) in TABLE {
            if code > 125 {
                assert!(
                    [PANIC, INTERRUPTED, ABORT_RECOVERY].contains(&code),
                    "{name} = {code} would look like a crash to PostgreSQL"
                );
            }
        }
        let mut codes: Vec<u8> = TABLE.iter().map(|t| t.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len(), "exit codes must be distinct");
    }
}
