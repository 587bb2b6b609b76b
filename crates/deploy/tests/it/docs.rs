//! The reference page's generated blocks match the code.

use std::fmt::Write as _;
use std::path::PathBuf;

use deploy::model::Kind;
use deploy::plan::{COMMON_KEYS, options_of};

fn page() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md")
}

#[test]
fn settings_table_is_current() {
    ops_testkit::check_generated(
        &page(),
        "settings",
        &ops_common::settings::markdown_table(deploy::SETTINGS),
    );
}

#[test]
fn resource_keys_table_is_current() {
    let mut table = String::from("| Kind key | Options |\n|---|---|\n");
    for kind in Kind::ALL {
        let options: Vec<String> = options_of(kind).iter().map(|o| format!("`{o}`")).collect();
        let _ = writeln!(table, "| `{}` | {} |", kind.key(), options.join(", "));
    }
    let common: Vec<String> = COMMON_KEYS.iter().map(|o| format!("`{o}`")).collect();
    let _ = writeln!(table, "\nEvery resource also takes {}.", common.join(", "));
    ops_testkit::check_generated(&page(), "resources", &table);
}
