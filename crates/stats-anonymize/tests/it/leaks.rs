//! The leak scan: rules that let personal data through are caught before the swap.

use crate::support::Site;

#[test]
fn personal_data_that_slips_through_stops_the_swap() {
    let site = Site::new(60);
    site.run(&["-q", "run"]).success();
    let before = site.target_state();
    let metrics = site.tmp.subdir("metrics");
    site.set("OPS_METRICS_DIR", metrics.to_str().unwrap());

    // A careless edit keeps the users' names and their "about me" (which holds email addresses),
    // and a pattern forbids the word "gritting" (in batch titles only: not copied, no hit).
    let rules = stats_anonymize::rules::ALAVETELI
        .replace(
            "\nname = \"drop\"\nhashed_password",
            "\nname = \"keep\"\nhashed_password",
        )
        .replace("about_me = \"drop\"", "about_me = \"keep\"")
        .replace(
            "patterns = []",
            "patterns = ['gritting', 'Department\\s+for']",
        );
    let path = site.rules_file("careless.toml", &rules);
    let out = site
        .run(&["-qq", "run", "--rules", path.to_str().unwrap()])
        .code(1)
        .one_line_error()
        .stderr_has("leak scan: 4 problems found in the new copy, which was dropped; the live copy is unchanged")
        .stderr_has("users.about_me (an email address)")
        .stderr_has("users.name (a value of users.name sampled from the source)")
        .stderr_has("users.name (a value of outgoing_messages.from_name sampled from the source)")
        .stderr_has("public_body_translations.name (scan.patterns[1])");
    assert!(
        !out.stderr.contains("@campaign.example.org"),
        "a value in the error: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("gritting (") && !out.stderr.contains("scan.patterns[0]"));
    assert_eq!(site.target_state(), before, "the target changed");
    assert_eq!(
        site.target_schemas().len(),
        1,
        "{:?}",
        site.target_schemas()
    );
    let prom = std::fs::read_to_string(metrics.join("stats_anonymize_run.prom")).unwrap();
    assert!(prom.contains("stats_anonymize_run_success 0\n"), "{prom}");
    assert!(prom.contains("stats_anonymize_run_leaks 4\n"), "{prom}");

    // Columns where an email or a sampled value is expected can be allowed, one by one.
    let allowed = rules
        .replace("allow_emails = []", "allow_emails = [\"users.about_me\"]")
        .replace("allow_samples = []", "allow_samples = [\"users.name\"]")
        .replace(
            "patterns = ['gritting', 'Department\\s+for']",
            "patterns = []",
        );
    let path = site.rules_file("allowed.toml", &allowed);
    site.run(&["-q", "run", "--rules", path.to_str().unwrap()])
        .success();
}
