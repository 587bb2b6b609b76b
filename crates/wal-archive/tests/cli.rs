//! The commands every tool has, on the real `wal-archive` binary.

#[test]
fn common_commands() {
    ops_testkit::assert_common_commands(
        std::path::Path::new(env!("CARGO_BIN_EXE_wal-archive")),
        "wal-archive",
    );
}
