//! Failures at each step leave the target as it was, and say why without quoting data.

use std::time::{Duration, Instant};

use crate::support::{Site, binary};

#[test]
fn a_schema_that_is_not_ours_is_never_replaced() {
    let site = Site::new(20);
    site.target()
        .batch_execute("CREATE SCHEMA stats; CREATE TABLE stats.precious (x int); INSERT INTO stats.precious VALUES (42)")
        .unwrap();
    site.run(&["-qq", "run"])
        .code(5)
        .one_line_error()
        .stderr_has(
            "schema stats of the target was not made by stats-anonymize; refusing to replace it",
        );
    let x: i32 = site
        .target()
        .query_one("SELECT x FROM stats.precious", &[])
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
    site.run(&["rollback"])
        .code(5)
        .stderr_has("was not made by stats-anonymize");
}

#[test]
fn an_expired_copy_left_by_a_run_is_dropped_by_the_next() {
    // A run stopped between its swap and the drop of the copy it made expired leaves that copy;
    // one of that name that is not ours is never touched.
    let site = Site::new(20);
    site.target()
        .batch_execute("CREATE SCHEMA stats__expired")
        .unwrap();
    site.run(&["-qq", "run"])
        .code(5)
        .one_line_error()
        .stderr_has("schema stats__expired of the target was not made by stats-anonymize");
    site.target()
        .batch_execute(&format!(
            "COMMENT ON SCHEMA stats__expired IS '{}{}'; CREATE TABLE stats__expired.t (x int)",
            stats_anonymize::target::MARK,
            r#"{"started_at":"2026-11-25T03:00:00Z","version":"0.1.0","tables":1,"rows":1}"#
        ))
        .unwrap();
    site.run(&["-q", "run"]).success();
    assert!(!site.target_schemas().contains("stats__expired"));
}

#[test]
fn one_run_at_a_time() {
    let site = Site::new(20);
    let mut holder = site.target();
    holder
        .execute(
            "SELECT pg_advisory_lock(hashtextextended('stats-anonymize:stats', 0))",
            &[],
        )
        .unwrap();
    site.run(&["-qq", "run"])
        .code(5)
        .one_line_error()
        .stderr_has("another stats-anonymize run or rollback is working on schema stats");
    site.run(&["rollback"]).code(5);
    // Released before the next command: a closed connection's server process may still hold it
    // for a moment while it exits.
    holder
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .unwrap();
    site.run(&["rollback"])
        .code(4)
        .one_line_error()
        .stderr_has("there is no previous copy (schema stats__previous) to roll back to");
}

#[test]
fn an_error_during_the_copy_keeps_row_data_out_of_the_message_and_the_target_unchanged() {
    let site = Site::new(40);
    site.run(&["-q", "run"]).success();
    let before = site.target_state();
    // Casting names to integers fails on the first row, and PostgreSQL's message quotes the name.
    let path = site.default_rules_with(
        "broken.toml",
        "\nlocale = \"keep\"\nemail_bounced_at",
        "\nlocale = { sql = \"name\", type = \"integer\" }\nemail_bounced_at",
    );
    let out = site
        .run(&["-qq", "run", "--rules", path.to_str().unwrap()])
        .code(9)
        .one_line_error()
        .stderr_has("PostgreSQL: copying users from the source: SQLSTATE 22P02 (message withheld as it may quote row data");
    assert!(
        !out.stderr.contains("Abernethy") && !out.stderr.contains("invalid input"),
        "{}",
        out.stderr
    );
    assert_eq!(site.target_state(), before);
    assert_eq!(
        site.target_schemas().len(),
        1,
        "{:?}",
        site.target_schemas()
    );
}

#[test]
fn an_interrupted_run_drops_its_unfinished_copy() {
    let site = Site::new(150);
    site.run(&["-q", "run"]).success();
    let before = site.target_state();
    // Every user row takes 50 ms to select, so the copy is still going when the signal comes.
    let path = site.default_rules_with(
        "slow.toml",
        "\nlocale = \"keep\"\nemail_bounced_at",
        "\nlocale = { sql = \"CASE WHEN pg_sleep(0.05) IS NULL THEN locale ELSE locale END\" }\nemail_bounced_at",
    );
    let child = ops_testkit::Cmd::new(binary())
        .arg("--envdir")
        .arg(&site.envdir)
        .args(["run", "--rules", path.to_str().unwrap()])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !site.target_schemas().contains("stats__loading") {
        assert!(Instant::now() < deadline, "the run never started loading");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; the target was left as it was"),
        "{stderr}"
    );
    assert_eq!(site.target_state(), before);
    assert_eq!(
        site.target_schemas(),
        ["stats".to_owned()].into_iter().collect()
    );
}
