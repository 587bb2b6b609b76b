//! The operator guide's generated parts match the code.

use std::path::Path;

#[test]
fn exit_code_table_is_current() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    ops_testkit::check_generated(&doc, "exit-codes", &ops_common::exit::markdown_table());
}

#[test]
fn shared_settings_table_is_current() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    let mut shared = ops_common::vars::LOGGING.to_vec();
    shared.push(ops_common::vars::OPS_METRICS_DIR);
    shared.extend(ops_common::vars::STORAGE);
    ops_testkit::check_generated(
        &doc,
        "shared-settings",
        &ops_common::settings::markdown_table(&shared),
    );
}
