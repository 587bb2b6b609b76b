//! The nightly copy end to end, on the real binary: what reaches the target and what does not.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{Site, default_rules, ids, pseudonym};

/// Request ids of `generate.sql` that are public: not hidden or `requester_only` (id % 20 in 0, 1),
/// not embargoed (id % 20 in 3, 4, including the embargo whose `publish_at` has passed).
fn public_request(id: i64) -> bool {
    !matches!(id % 20, 0 | 1 | 3 | 4)
}

/// Messages (both directions) with their own prominence normal.
fn visible_message(id: i64) -> bool {
    !matches!(id % 25, 0 | 1)
}

/// (id, referenced ids…) of a source query.
fn rows(client: &mut postgres::Client, sql: &str) -> Vec<Vec<Option<i64>>> {
    client
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get::<_, Option<i64>>(i)).collect())
        .collect()
}

/// What the target must hold, worked out from generate.sql's id arithmetic rather than from the
/// rules' SQL.
struct Expected {
    requests: BTreeSet<i64>,
    incoming: BTreeSet<i64>,
    outgoing: BTreeSet<i64>,
    attachments: BTreeSet<i64>,
    comments: BTreeSet<i64>,
    events: BTreeSet<i64>,
    classifications: BTreeSet<i64>,
    tracks: BTreeSet<i64>,
    votes: BTreeSet<i64>,
    tags: BTreeSet<i64>,
    citations: BTreeSet<i64>,
}

/// The ids of the rows of `sql` (id first, then the referenced ids) that `keep` keeps.
fn kept(
    source: &mut postgres::Client,
    sql: &str,
    keep: impl Fn(&[Option<i64>]) -> bool,
) -> BTreeSet<i64> {
    rows(source, sql)
        .into_iter()
        .filter(|r| keep(r))
        .map(|r| r[0].unwrap())
        .collect()
}

fn expected(source: &mut postgres::Client) -> Expected {
    let public = |id: Option<i64>| id.is_some_and(public_request);
    let requests = kept(source, "SELECT id::int8 FROM info_requests", |r| {
        public(r[0])
    });
    let incoming = kept(
        source,
        "SELECT id::int8, info_request_id::int8 FROM incoming_messages",
        |r| visible_message(r[0].unwrap()) && public(r[1]),
    );
    let outgoing = kept(
        source,
        "SELECT id::int8, info_request_id::int8, incoming_message_followup_id::int8 FROM outgoing_messages",
        |r| {
            visible_message(r[0].unwrap())
                && public(r[1])
                && r[2].is_none_or(|m| incoming.contains(&m))
        },
    );
    let attachments = kept(
        source,
        "SELECT id::int8, incoming_message_id::int8 FROM foi_attachments",
        |r| r[0].unwrap() % 30 != 0 && r[1].is_some_and(|m| incoming.contains(&m)),
    );
    let comments = kept(
        source,
        "SELECT id::int8, info_request_id::int8 FROM comments",
        |r| r[0].unwrap() % 7 != 0 && public(r[1]),
    );
    let events = kept(
        source,
        "SELECT id::int8, info_request_id::int8, incoming_message_id::int8, outgoing_message_id::int8, comment_id::int8 FROM info_request_events",
        |r| {
            public(r[1])
                && r[2].is_none_or(|m| incoming.contains(&m))
                && r[3].is_none_or(|m| outgoing.contains(&m))
                && r[4].is_none_or(|c| comments.contains(&c))
        },
    );
    let classifications = kept(
        source,
        "SELECT id::int8, info_request_event_id::int8 FROM request_classifications",
        |r| r[1].is_some_and(|e| events.contains(&e)),
    );
    let tracks = kept(
        source,
        "SELECT id::int8, info_request_id::int8 FROM track_things",
        |r| r[1].is_none() || public(r[1]),
    );
    let votes = kept(
        source,
        "SELECT id::int8, info_request_id::int8 FROM widget_votes",
        |r| public(r[1]),
    );
    // Polymorphic: (id, 1 for a public body's tag or 2 for a request's, model id).
    let tags = kept(
        source,
        "SELECT id::int8, CASE model_type WHEN 'PublicBody' THEN 1 WHEN 'InfoRequest' THEN 2 END::int8, model_id::int8 FROM has_tag_string_tags",
        |r| r[1] == Some(1) || (r[1] == Some(2) && public(r[2])),
    );
    let citations = kept(
        source,
        "SELECT id::int8, CASE citable_type WHEN 'InfoRequest' THEN 2 END::int8, citable_id::int8 FROM citations",
        |r| r[1] == Some(2) && public(r[2]),
    );
    Expected {
        requests,
        incoming,
        outgoing,
        attachments,
        comments,
        events,
        classifications,
        tracks,
        votes,
        tags,
        citations,
    }
}

#[test]
fn the_copy_holds_only_public_rows_and_no_value_the_rules_do_not_keep() {
    let site = Site::new(300);
    site.fill_empty_tables();
    let canaries = site.plant_canaries(&default_rules());
    site.mark_private_requests();
    let metrics = site.tmp.subdir("metrics");
    site.set("OPS_METRICS_DIR", metrics.to_str().unwrap());
    let mut source = site.source();
    let want = expected(&mut source);
    assert!(
        want.requests.len() > 100 && want.events.len() > 500,
        "the data should be large enough to mean something"
    );

    let out = site.run(&["run", "--log-format", "json"]).success();

    no_canary_reached_the_target(&site, &canaries);
    let mut target = site.target();
    exactly_the_public_rows_were_copied(&mut source, &mut target, &want);
    skipped_tables_and_dropped_columns_are_absent(&mut target);
    counters_are_recomputed_from_the_copy(&mut target, &want);
    pseudonyms_dates_and_booleans(&mut source, &mut target);
    keys_indexes_and_the_reader(&site, &mut target, &want);
    summary_logs_and_metrics(&out, &metrics, &want);
}

fn no_canary_reached_the_target(site: &Site, canaries: &BTreeMap<String, String>) {
    // 1. No canary anywhere in a full dump of the target, not even hex-encoded in a bytea.
    let dump = site.dump_target();
    let found: Vec<&String> = canaries
        .iter()
        .filter(|(canary, _)| {
            dump.contains(canary.as_str()) || dump.contains(&hex::encode(canary.as_bytes()))
        })
        .map(|(_, column)| column)
        .collect();
    assert!(found.is_empty(), "values of {found:?} reached the target");
    assert!(!dump.contains("cnry"), "a canary reached the target");
    assert!(
        !dump.contains("privmark"),
        "a private request's title reached the target"
    );
    assert!(canaries.len() > 150, "{} canaries", canaries.len());
}

fn exactly_the_public_rows_were_copied(
    source: &mut postgres::Client,
    target: &mut postgres::Client,
    want: &Expected,
) {
    // 2. Exactly the public rows: nothing of an embargoed or hidden request, hidden message or
    // hidden comment, in any table; and nothing public missing.
    let have = |target: &mut postgres::Client, table: &str| {
        ids(target, &format!("SELECT id::int8 FROM stats.{table}"))
    };
    for (table, want) in [
        ("info_requests", &want.requests),
        ("incoming_messages", &want.incoming),
        ("outgoing_messages", &want.outgoing),
        ("foi_attachments", &want.attachments),
        ("comments", &want.comments),
        ("info_request_events", &want.events),
        ("request_classifications", &want.classifications),
        ("track_things", &want.tracks),
        ("widget_votes", &want.votes),
        ("has_tag_string_tags", &want.tags),
        ("citations", &want.citations),
    ] {
        assert_eq!(&have(target, table), want, "rows of {table}");
    }
    let private: BTreeSet<i64> = ids(source, "SELECT id::int8 FROM info_requests")
        .into_iter()
        .filter(|id| !want.requests.contains(id))
        .collect();
    let with_request = target
        .query(
            "SELECT table_name::text FROM information_schema.columns WHERE table_schema = 'stats' AND column_name = 'info_request_id'",
            &[],
        )
        .unwrap();
    assert!(with_request.len() >= 6);
    for row in with_request {
        let table: String = row.get(0);
        let referred = ids(
            target,
            &format!(
                "SELECT DISTINCT info_request_id::int8 FROM stats.{table} WHERE info_request_id IS NOT NULL"
            ),
        );
        assert!(
            referred.is_disjoint(&private),
            "{table} holds rows of private requests"
        );
    }
}

fn skipped_tables_and_dropped_columns_are_absent(target: &mut postgres::Client) {
    // 3. Skipped tables are absent; dropped columns too.
    let tables = ids(
        target,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'stats'",
    );
    assert_eq!(tables, BTreeSet::from([25]));
    for gone in [
        "embargoes",
        "censor_rules",
        "raw_emails",
        "mail_server_logs",
    ] {
        let n: i64 = target
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
                &[&gone],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{gone} was copied");
    }
    let columns: Vec<String> = target
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'stats' AND table_name = 'users' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns[0], "id");
    for dropped in [
        "email",
        "name",
        "hashed_password",
        "otp_secret_key",
        "login_token",
        "about_me",
    ] {
        assert!(
            !columns.iter().any(|c| c == dropped),
            "users.{dropped} is in the copy"
        );
    }
}

fn counters_are_recomputed_from_the_copy(target: &mut postgres::Client, want: &Expected) {
    // 4. Counter caches recomputed from the copied rows, not taken from the source (where
    // generate.sql set them to nonsense).
    let mismatches: i64 = target
        .query_one(
            "SELECT count(*) FROM stats.public_bodies b WHERE \
               b.info_requests_count <> (SELECT count(*) FROM stats.info_requests r WHERE r.public_body_id = b.id) \
            OR b.info_requests_visible_count <> (SELECT count(*) FROM stats.info_requests r WHERE r.public_body_id = b.id AND r.prominence = 'normal') \
            OR b.info_requests_successful_count <> (SELECT count(*) FROM stats.info_requests r WHERE r.public_body_id = b.id AND r.prominence = 'normal' \
                   AND NOT r.awaiting_description AND r.described_state IN ('successful', 'partially_successful'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mismatches, 0, "public_bodies counters");
    let mismatches: i64 = target
        .query_one(
            "SELECT count(*) FROM stats.users u WHERE \
               u.info_requests_count <> (SELECT count(*) FROM stats.info_requests r WHERE r.user_id = u.id) \
            OR u.comments_count <> (SELECT count(*) FROM stats.comments c WHERE c.user_id = u.id) \
            OR u.request_classifications_count <> (SELECT count(*) FROM stats.request_classifications c WHERE c.user_id = u.id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mismatches, 0, "users counters");
    let mismatches: i64 = target
        .query_one(
            "SELECT count(*) FROM stats.info_requests r WHERE r.incoming_messages_count <> \
               (SELECT count(*) FROM stats.incoming_messages m WHERE m.info_request_id = r.id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mismatches, 0, "info_requests.incoming_messages_count");
    let total: i64 = target
        .query_one(
            "SELECT sum(info_requests_count)::int8 FROM stats.public_bodies",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(usize::try_from(total).unwrap(), want.requests.len());
}

fn pseudonyms_dates_and_booleans(source: &mut postgres::Client, target: &mut postgres::Client) {
    // 5. Pseudonyms are the HMAC of the value, the same in every table (joins work), and dates
    // and booleans are generalised.
    let sign_ins: BTreeMap<i32, (i32, String)> = source
        .query(
            "SELECT id::int4, user_id::int4, host(ip) FROM user_sign_ins",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let copied = target
        .query("SELECT id::int4, user_id, ip FROM stats.user_sign_ins", &[])
        .unwrap();
    assert_eq!(copied.len(), sign_ins.len());
    for row in &copied {
        let (user, ip) = &sign_ins[&row.get::<_, i32>(0)];
        assert_eq!(row.get::<_, String>(1), pseudonym(&user.to_string()));
        // `inet::text` keeps the netmask: 10.0.0.1/32.
        assert_eq!(row.get::<_, String>(2), pseudonym(&format!("{ip}/32")));
    }
    let unjoinable: i64 = target
        .query_one(
            "SELECT count(*) FROM stats.track_things t WHERE NOT EXISTS \
               (SELECT 1 FROM stats.user_sign_ins s WHERE s.user_id = t.tracking_user_id)",
            &[],
        )
        .unwrap()
        .get(0);
    let tracked_users: i64 = source
        .query_one(
            "SELECT count(*) FROM track_things t WHERE t.info_request_id IS NULL OR t.info_request_id % 20 NOT IN (0, 1, 3, 4)",
            &[],
        )
        .unwrap()
        .get(0);
    let without_sign_in: i64 = source
        .query_one(
            "SELECT count(*) FROM track_things t WHERE (t.info_request_id IS NULL OR t.info_request_id % 20 NOT IN (0, 1, 3, 4)) \
               AND NOT EXISTS (SELECT 1 FROM user_sign_ins s WHERE s.user_id = t.tracking_user_id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(tracked_users > 0);
    assert_eq!(
        unjoinable, without_sign_in,
        "hashed user ids join across tables"
    );
    let not_generalised: i64 = target
        .query_one(
            "SELECT (SELECT count(*) FROM stats.users WHERE created_at <> date_trunc('month', created_at)) \
                  + (SELECT count(*) FROM stats.track_things WHERE created_at <> date_trunc('day', created_at)) \
                  + (SELECT count(*) FROM stats.user_sign_ins WHERE created_at <> date_trunc('day', created_at))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(not_generalised, 0);
    let banned = ids(source, "SELECT id::int8 FROM users WHERE ban_text <> ''");
    assert!(!banned.is_empty());
    assert_eq!(
        ids(target, "SELECT id::int8 FROM stats.users WHERE ban_text"),
        banned
    );
    let closed = ids(
        source,
        "SELECT id::int8 FROM users WHERE closed_at IS NOT NULL",
    );
    assert!(!closed.is_empty());
    assert_eq!(
        ids(target, "SELECT id::int8 FROM stats.users WHERE closed_at"),
        closed
    );
}

fn keys_indexes_and_the_reader(site: &Site, target: &mut postgres::Client, want: &Expected) {
    // 6. Keys and indexes; the reader role reads the copy.
    let indexes: BTreeSet<String> = target
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'stats'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for index in [
        "info_requests_pkey",
        "index_info_requests_on_url_title",
        "index_info_requests_on_public_body_id",
        "index_info_request_events_on_info_request_id",
        "users_pkey",
    ] {
        assert!(indexes.contains(index), "{index} missing from {indexes:?}");
    }
    assert!(
        !indexes.contains("users_email_index"),
        "an index on a dropped column"
    );
    // Every table, the recounted ones included, is analysed by the run and left alone by
    // autovacuum.
    let tables = target
        .query(
            "SELECT c.relname::text, c.reloptions::text, s.last_analyze IS NOT NULL \
             FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid \
             WHERE c.relnamespace = 'stats'::regnamespace AND c.relkind = 'r'",
            &[],
        )
        .unwrap();
    assert_eq!(tables.len(), 25);
    for row in tables {
        let (table, options, analysed): (String, Option<String>, bool) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            options.as_deref(),
            Some("{autovacuum_enabled=false}"),
            "{table}"
        );
        assert!(analysed, "{table} was not analysed");
    }
    let n: i64 = site
        .reader()
        .query_one("SELECT count(*) FROM stats.info_requests", &[])
        .unwrap()
        .get(0);
    assert_eq!(usize::try_from(n).unwrap(), want.requests.len());
}

fn summary_logs_and_metrics(out: &ops_testkit::Output, metrics: &std::path::Path, want: &Expected) {
    // 7. The per-table summary, the JSON logs and the metrics.
    let requests_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("info_requests "))
        .unwrap_or_else(|| panic!("no info_requests line in\n{}", out.stdout));
    assert!(
        requests_line.contains(&format!(" {} ", want.requests.len())),
        "{requests_line}"
    );
    assert!(out.stdout.contains("25 tables copied"), "{}", out.stdout);
    assert!(out.stdout.contains("54 skipped"), "{}", out.stdout);
    let logs: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(logs.iter().any(|l| l["fields"]["message"] == "copied"
        && l["fields"]["table"] == "info_requests"
        && l["fields"]["rows"] == want.requests.len()));
    assert!(logs.iter().any(|l| l["fields"]["message"] == "swapped in"));
    let prom = std::fs::read_to_string(metrics.join("stats_anonymize_run.prom")).unwrap();
    assert!(prom.contains("stats_anonymize_run_success 1\n"), "{prom}");
    assert!(prom.contains(&format!(
        "stats_anonymize_table_rows{{table=\"info_requests\"}} {}\n",
        want.requests.len()
    )));
    assert!(prom.contains("stats_anonymize_run_last_run_timestamp_seconds"));
    assert!(!out.stderr.contains(crate::support::KEY) && !out.stdout.contains(crate::support::KEY));
}

#[test]
fn a_second_run_keeps_the_first_for_rollback_and_hides_it_from_readers() {
    let site = Site::new(60);
    site.run(&["-q", "run"]).success();
    let first = site.target_state();
    let requests = |site: &Site| -> i64 {
        site.target()
            .query_one("SELECT count(*) FROM stats.info_requests", &[])
            .unwrap()
            .get(0)
    };
    let before = requests(&site);
    site.source()
        .batch_execute(
            "INSERT INTO info_requests (title, user_id, public_body_id, created_at, updated_at, described_state, \
               prominence, url_title, idhash) \
             SELECT 'Later request ' || g, 1, 1, now(), now(), 'waiting_response', 'normal', 'later_' || g, 'x' \
             FROM generate_series(1, 5) g",
        )
        .unwrap();
    let out = site.run(&["run", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["previous"], "stats__previous");
    assert_eq!(report["dry_run"], false);
    assert_eq!(requests(&site), before + 5);
    assert_eq!(
        site.target_schemas(),
        BTreeSet::from(["stats".to_owned(), "stats__previous".to_owned()])
    );
    // The previous copy is out of the reader's reach.
    let denied = site
        .reader()
        .query_one("SELECT count(*) FROM stats__previous.info_requests", &[])
        .unwrap_err();
    let denied = denied.as_db_error().unwrap().message().to_owned();
    assert!(denied.contains("permission denied"), "{denied}");

    site.run(&["rollback"])
        .success()
        .stdout_has("rolled back: schema stats now holds the copy started at");
    assert_eq!(requests(&site), before);
    let n: i64 = site
        .reader()
        .query_one("SELECT count(*) FROM stats.info_requests", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, before, "the reader reads the rolled-back copy");
    assert!(
        site.reader()
            .query_one("SELECT 1 FROM stats__previous.info_requests LIMIT 1", &[])
            .is_err()
    );
    // A second rollback undoes the first.
    site.run(&["rollback"]).success();
    assert_eq!(requests(&site), before + 5);
    site.run(&["rollback"]).success();
    assert_eq!(requests(&site), before);
    // A third run replaces the oldest copy: it is dropped after the swap, and the copy the run
    // replaced is the previous one.
    site.run(&["-q", "run"]).success();
    assert_eq!(requests(&site), before + 5);
    assert_eq!(
        site.target_schemas(),
        BTreeSet::from(["stats".to_owned(), "stats__previous".to_owned()])
    );
    let previous: i64 = site
        .target()
        .query_one("SELECT count(*) FROM stats__previous.info_requests", &[])
        .unwrap()
        .get(0);
    assert_eq!(previous, before);
    assert!(
        !first.contains("stats__previous"),
        "the first run had nothing to keep"
    );
}

#[test]
fn a_reference_to_a_key_the_copy_masks_is_checked_by_its_chain() {
    // With comments.id hashed in the copy, its keys cannot be matched on the source: events check
    // that reference by the comments' own filter and references, and the others by key sets.
    // Either way the rows are those the chain selects, which is what --dry-run counts.
    let site = Site::new(60);
    let path = site.default_rules_with(
        "rules.toml",
        "[tables.comments.columns]\nid = \"keep\"",
        "[tables.comments.columns]\nid = \"hash\"",
    );
    let path = path.to_str().unwrap();
    let rows = |json: &str| -> BTreeMap<String, u64> {
        let report: serde_json::Value = serde_json::from_str(json).unwrap();
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["table"].as_str().unwrap().to_owned(),
                    t["rows"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let counted = site
        .run(&["-q", "run", "--dry-run", "--json", "--rules", path])
        .success();
    let copied = site
        .run(&["run", "--json", "--log-format", "json", "--rules", path])
        .success();
    let counted = rows(&counted.stdout);
    assert_eq!(rows(&copied.stdout), counted);
    assert!(counted["info_request_events"] > 100, "{counted:?}");
    let events: Vec<serde_json::Value> = copied
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| {
            l["fields"]["message"] == "copied" && l["fields"]["table"] == "info_request_events"
        })
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["fields"]["keyed"], true, "{:?}", events[0]);
    let hidden_comment_events = ids(
        &mut site.source(),
        "SELECT e.id::int8 FROM info_request_events e JOIN comments c ON c.id = e.comment_id WHERE NOT c.visible",
    );
    assert!(!hidden_comment_events.is_empty());
    let copied_events = ids(
        &mut site.target(),
        "SELECT id::int8 FROM stats.info_request_events",
    );
    assert!(copied_events.is_disjoint(&hidden_comment_events));
}

#[test]
fn dry_run_counts_and_explain_prints_the_sql_without_writing() {
    let site = Site::new(40);
    let out = site.run(&["run", "--dry-run"]).success();
    assert!(
        out.stdout.contains("dry run: 25 tables would be copied"),
        "{}",
        out.stdout
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("info_requests "))
        .unwrap();
    assert!(line.contains(" 32 "), "{line}"); // 40 requests, 8 of them private
    assert!(
        site.target_schemas().is_empty(),
        "a dry run wrote to the target"
    );

    let out = site.run(&["run", "--explain"]).success();
    assert!(out.stdout.contains("COPY (SELECT "));
    assert!(out.stdout.contains(
        "NOT EXISTS (SELECT 1 FROM embargoes WHERE embargoes.info_request_id = info_requests.id)"
    ));
    assert!(out.stdout.contains("FROM STDIN (FORMAT binary, FREEZE)"));
    // The run checks references against the keys of the copies, and says where they come from.
    assert!(
        out.stdout
            .contains("CASE WHEN \"info_request_events\".\"info_request_id\" = ANY(:'keys_")
    );
    assert!(out.stdout.contains(
        "FILTER (WHERE \"id\" IS NOT NULL)::text FROM \"stats__loading\".\"incoming_messages\""
    ));
    // Requests count their messages as they are copied, after them: their keys come from the
    // source.
    assert!(out.stdout.contains(
        "= the keys COPY (SELECT \"__q\".\"id\" FROM (SELECT \"info_requests\".\"id\" AS \"id\""
    ));
    assert!(out.stdout.contains(
        "COPY (SELECT \"incoming_messages\".\"info_request_id\" AS \"__k\", count(*)::integer AS \"__n1\" FROM \"stats__loading\".\"incoming_messages\" GROUP BY 1) TO STDOUT (FORMAT binary)"
    ));
    assert!(!out.stdout.contains(crate::support::KEY));
    assert!(
        site.target_schemas().is_empty(),
        "--explain wrote to the target"
    );
}

#[test]
fn without_memory_for_keys_and_counts_the_copy_is_the_same() {
    // STATS_ANONYMIZE_KEY_MEMORY=0: every reference is checked by its chain on the source, and
    // every counter cache counted by rebuilding its table once loaded: slower, the same copy.
    let site = Site::new(20);
    site.run(&["-q", "run"]).success();
    let usual = table_contents(&site);
    site.set("STATS_ANONYMIZE_KEY_MEMORY", "0");
    let out = site.run(&["--log-format", "json", "run"]).success();
    assert!(out.stderr.contains("\"keyed\":false"), "{}", out.stderr);
    assert!(!out.stderr.contains("\"keyed\":true"), "{}", out.stderr);
    assert!(
        out.stderr.contains("counted once it is loaded"),
        "{}",
        out.stderr
    );
    assert_eq!(table_contents(&site), usual);
    assert!(usual.len() > 20, "{usual:?}");
}

/// Per table of the live copy: its rows, sorted, as one digest.
fn table_contents(site: &Site) -> BTreeMap<String, String> {
    let mut target = site.target();
    let tables: Vec<String> = target
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'stats' AND c.relkind = 'r'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|table| {
            let digest: String = target
                .query_one(
                    &format!(
                        "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM stats.{table} t"
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            (table, digest)
        })
        .collect()
}
