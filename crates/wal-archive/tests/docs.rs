//! The reference page's settings table matches the declarations.

#[test]
fn settings_table_is_current() {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/wal-archive.md");
    ops_testkit::check_generated(
        &doc,
        "settings",
        &ops_common::settings::markdown_table(wal_archive::SETTINGS),
    );
}
