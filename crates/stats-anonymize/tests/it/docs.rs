//! The reference page's generated blocks match the code and the built-in rules.

use std::fmt::Write as _;
use std::path::PathBuf;

use stats_anonymize::rules::TableRule;

fn page() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/stats-anonymize.md")
}

#[test]
fn settings_table_is_current() {
    ops_testkit::check_generated(
        &page(),
        "settings",
        &ops_common::settings::markdown_table(stats_anonymize::SETTINGS),
    );
}

#[test]
fn decisions_table_is_current() {
    let rules = crate::support::default_rules();
    let mut table = String::from("| Table | Action | Why |\n|---|---|---|\n");
    for (name, rule) in &rules.tables {
        let action = match rule {
            TableRule::Copy(copy) => {
                let mut parts = vec!["copy".to_owned()];
                if copy.filter.is_some() {
                    parts.push("filtered".to_owned());
                }
                if !copy.references.is_empty() {
                    parts.push(format!(
                        "refs {}",
                        copy.references
                            .iter()
                            .map(|r| r.table.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                parts.join("; ")
            }
            TableRule::Skip { .. } => "skip".to_owned(),
        };
        let _ = writeln!(
            table,
            "| `{name}` | {action} | {} |",
            rule.reason().unwrap_or("").replace('|', "\\|")
        );
    }
    ops_testkit::check_generated(&page(), "decisions", &table);
}
