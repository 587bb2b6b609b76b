//! The reference page's generated blocks match the code.

fn page() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/email-backup.md")
}

#[test]
fn settings_table_is_current() {
    ops_testkit::check_generated(
        &page(),
        "settings",
        &ops_common::settings::markdown_table(email_backup::SETTINGS),
    );
}
