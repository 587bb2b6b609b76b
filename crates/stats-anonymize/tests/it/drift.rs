//! Deny by default on a live source: a schema change the rules do not cover stops the run before
//! anything is written.

use crate::support::Site;

#[test]
fn a_new_column_fails_the_run_and_leaves_the_target_unchanged() {
    let site = Site::new(40);
    let metrics = site.tmp.subdir("metrics");
    site.set("OPS_METRICS_DIR", metrics.to_str().unwrap());
    site.run(&["-q", "run"]).success();
    let before = site.target_state();

    // A migration adds a column holding personal data, and another a table.
    site.source()
        .batch_execute(
            "ALTER TABLE users ADD COLUMN phone_number text DEFAULT '07700 900123'; \
             CREATE TABLE public.surveys (id serial PRIMARY KEY, answer text)",
        )
        .unwrap();
    let out = site
        .run(&["run"])
        .code(12)
        .one_line_error()
        .stderr_has("the built-in rules do not match schema public of the source")
        .stderr_has("column users.phone_number is not in the rules")
        .stderr_has("table surveys is not in the rules")
        .stderr_has("nothing was written");
    assert!(!out.stderr.contains("07700"), "{}", out.stderr);
    assert_eq!(site.target_state(), before, "the target changed");
    assert_eq!(
        site.target_schemas(),
        ["stats".to_owned()].into_iter().collect(),
        "no loading schema is left behind"
    );
    let prom = std::fs::read_to_string(metrics.join("stats_anonymize_run.prom")).unwrap();
    assert!(prom.contains("stats_anonymize_run_success 0\n"), "{prom}");
    assert!(
        prom.contains("stats_anonymize_run_rules_problems 2\n"),
        "{prom}"
    );

    // check against the database reports the same, on stdout, one per line.
    let out = site.run(&["check"]).code(12);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "table surveys is not in the rules (add [tables.surveys] with action = \"copy\" or \"skip\")",
            "column users.phone_number is not in the rules (add it to [tables.users.columns])",
        ]
    );

    // The operator adds the rules (as the guide says), and the run goes through again.
    let rules = stats_anonymize::rules::ALAVETELI
        .replace(
            "last_sign_in_at = \"drop\"\n",
            "last_sign_in_at = \"drop\"\nphone_number = \"drop\"\n",
        )
        .replace(
            "[tables.webhooks]",
            "[tables.surveys]\naction = \"skip\"\nreason = \"Answers are free text.\"\n\n[tables.webhooks]",
        );
    let path = site.rules_file("rules.toml", &rules);
    site.run(&["check", "--rules", path.to_str().unwrap()])
        .success()
        .stdout_has("80 tables (25 copied, 55 skipped)");
    site.run(&["-q", "run", "--rules", path.to_str().unwrap()])
        .success();
    assert!(!site.dump_target().contains("07700"));
}

#[test]
fn a_rule_for_a_vanished_column_fails_the_run_too() {
    let site = Site::new(20);
    // info_requests.external_user_name is also sampled for the leak scan, which the jobs do while
    // the rules are checked: the rules' problem is what the run reports, not the sample's error.
    site.source()
        .batch_execute(
            "ALTER TABLE comments DROP COLUMN attention_requested; \
             ALTER TABLE info_requests DROP COLUMN external_user_name",
        )
        .unwrap();
    site.run(&["run"])
        .code(12)
        .one_line_error()
        .stderr_has("column comments.attention_requested is in the rules but not in the source")
        .stderr_has(
            "column info_requests.external_user_name is in the rules but not in the source",
        );
    assert!(site.target_schemas().is_empty());
}

#[test]
fn a_filter_that_does_not_compile_fails_before_the_target_is_touched() {
    let site = Site::new(20);
    let path =
        site.default_rules_with("rules.toml", "filter = \"visible\"", "filter = \"visibel\"");
    site.run(&["run", "--rules", path.to_str().unwrap()])
        .code(12)
        .one_line_error()
        .stderr_has("tables.comments: the query of its filter, references and columns fails: column \"visibel\" does not exist (SQLSTATE 42703)");
    assert!(site.target_schemas().is_empty());
    site.run(&["check", "--rules", path.to_str().unwrap()])
        .code(12)
        .stdout_has("tables.comments: the query");
}

#[test]
fn a_count_whose_condition_reads_a_masked_column_is_refused() {
    // Counts are taken on the copy: a condition on a column the copy hashes would count hashes.
    let site = Site::new(20);
    let path = site.default_rules_with(
        "rules.toml",
        "info_requests_visible_count = { count = \"info_requests.public_body_id\", where = \"prominence = 'normal'\" }",
        "info_requests_visible_count = { count = \"info_requests.public_body_id\", where = \"prominence = 'normal' AND external_user_name IS NULL\" }",
    );
    site.run(&["run", "--rules", path.to_str().unwrap()])
        .code(12)
        .one_line_error()
        .stderr_has("tables.public_bodies.columns.info_requests_visible_count: counts are taken on the copy, and there the count's column and condition fail: column \"external_user_name\" does not exist");
    assert!(site.target_schemas().is_empty());
}
