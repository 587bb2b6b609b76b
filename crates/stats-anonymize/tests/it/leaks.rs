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

    // Once the source has statistics, a small sample reads a part of the larger tables' pages:
    // found all the same.
    site.source().batch_execute("ANALYZE").unwrap();
    let sampled = rules.replace("sample_size = 100", "sample_size = 2");
    assert_ne!(sampled, rules);
    let path = site.rules_file("sampled.toml", &sampled);
    site.run(&["-qq", "run", "--rules", path.to_str().unwrap()])
        .code(1)
        .stderr_has("users.name (a value of outgoing_messages.from_name sampled from the source)");
    assert_eq!(site.target_state(), before, "the target changed");

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

#[test]
fn every_searched_type_is_searched_and_references_across_types_hold() {
    let site = Site::new(30);
    // Types the built-in rules never keep, and references from another integer type (bigint to
    // integer keys) and from varchar to text keys, one of them with a quote and a backslash.
    let public = "prominence = 'normal' AND NOT EXISTS \
                  (SELECT 1 FROM embargoes e WHERE e.info_request_id = info_requests.id)";
    site.source()
        .batch_execute(&format!(
            "UPDATE info_requests SET url_title = 'it''s\\a \"slug\"' \
               WHERE id = (SELECT min(id) FROM info_requests WHERE {public}); \
             CREATE TABLE public.extras (id serial PRIMARY KEY, request_id bigint, \
               request_slug varchar(255), doc jsonb, tags text[], docs jsonb[], raw bytea, note xml); \
             INSERT INTO extras (request_id, request_slug, doc, tags, docs, raw, note) \
               SELECT id, url_title, '{{\"a\": \"b\"}}', ARRAY['roads', NULL], \
                      ARRAY['{{\"c\": 1}}'::jsonb], 'bytes', '<p>fine</p>' FROM info_requests"
        ))
        .unwrap();
    let rules = format!(
        "{}\n[tables.extras]\naction = \"copy\"\nreason = \"A test of types.\"\n\
         references = [{{ column = \"request_id\", table = \"info_requests\" }}, \
         {{ column = \"request_slug\", table = \"info_requests\", key = \"url_title\" }}]\n\
         [tables.extras.columns]\nid = \"keep\"\nrequest_id = \"keep\"\nrequest_slug = \"keep\"\n\
         doc = \"keep\"\ntags = \"keep\"\ndocs = \"keep\"\nraw = \"keep\"\nnote = \"keep\"\n",
        stats_anonymize::rules::ALAVETELI
    );
    let path = site.rules_file("extras.toml", &rules);
    let rules = path.to_str().unwrap();
    let out = site
        .run(&["run", "--rules", rules, "--log-format", "json"])
        .success();
    let copied = out
        .stderr
        .lines()
        .find(|l| l.contains("\"table\":\"extras\""))
        .unwrap_or_else(|| panic!("no copy of extras logged: {}", out.stderr));
    assert!(copied.contains("\"keyed\":true"), "{copied}");
    let mut target = site.target();
    let requests = crate::support::ids(&mut target, "SELECT id::bigint FROM stats.info_requests");
    let extras = crate::support::ids(&mut target, "SELECT request_id FROM stats.extras");
    assert_eq!(
        extras, requests,
        "each public request's row, and only those"
    );
    let mut source = site.source();
    let all = crate::support::ids(&mut source, "SELECT request_id FROM extras");
    assert!(
        extras.len() < all.len(),
        "private requests' rows are dropped"
    );
    let odd: i64 = target
        .query_one(
            "SELECT count(*) FROM stats.extras WHERE request_slug = 'it''s\\a \"slug\"'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        odd, 1,
        "the slug with a quote and a backslash matched its key"
    );

    // An email address in a value of each searched type, in rows that are copied.
    let planted = [
        ("doc", "'{\"to\": \"x@example.com\"}'"),
        ("tags", "ARRAY['ok', NULL, 'mail y@example.com']"),
        (
            "docs",
            "ARRAY['{}'::jsonb, '{\"z\": \"z@example.com\"}'::jsonb]",
        ),
        (
            "raw",
            "'\\xff00'::bytea || convert_to('w@example.com', 'UTF8')",
        ),
        ("note", "'<p>v@example.com</p>'"),
    ];
    let mut requests = extras.iter();
    for (column, value) in planted {
        let id = requests.next().unwrap();
        source
            .batch_execute(&format!(
                "UPDATE extras SET {column} = {value} WHERE request_id = {id}"
            ))
            .unwrap();
    }
    let out = site.run(&["-qq", "run", "--rules", rules]).code(1);
    for column in ["doc", "tags", "docs", "raw", "note"] {
        assert!(
            out.stderr
                .contains(&format!("extras.{column} (an email address)")),
            "{column}: {}",
            out.stderr
        );
    }
}
