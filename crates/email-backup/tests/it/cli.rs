//! The commands every tool has, on the real `email-backup` binary.

#[test]
fn common_commands() {
    ops_testkit::assert_common_commands(
        std::path::Path::new(env!("CARGO_BIN_EXE_email-backup")),
        "email-backup",
    );
}
