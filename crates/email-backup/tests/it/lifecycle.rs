//! The commands a site runs from cron: backup of the configured directory, snapshots, forget and
//! prune, check, metrics — on the in-process S3 server, with restic checking the result.

use ops_testkit::S3Server;

use crate::support::{Env, Store, alaveteli_corpus, write_setting};

#[test]
fn nightly_cycle_on_s3() {
    let env = Env::new(Store::S3(S3Server::start()));
    let src = env.dir("var").join("raw_emails");
    alaveteli_corpus(&src, 60, 31);
    write_setting(&env.envdir, "RAW_EMAILS_LOCATION", src.to_str().unwrap());
    let metrics_dir = env.dir("metrics");
    write_setting(
        &env.envdir,
        "OPS_METRICS_DIR",
        metrics_dir.to_str().unwrap(),
    );
    env.run(&["init"]).success();

    // No paths: the site's raw-emails directory. Excludes as restic's.
    std::fs::write(src.join("mail.tmp"), b"half-written").unwrap();
    env.run(&["backup", "--exclude", "*.tmp", "--tag", "nightly"])
        .success()
        .stdout_has("Files:       60 new");
    let metrics = std::fs::read_to_string(metrics_dir.join("email_backup_backup.prom")).unwrap();
    assert!(
        metrics.contains("email_backup_backup_files 60"),
        "{metrics}"
    );
    // A relative path is stored absolute, as restic stores it.
    alaveteli_corpus(&src.join("new"), 5, 32);
    let out = env
        .tool()
        .current_dir(src.parent().unwrap())
        .args(["backup", "raw_emails", "--json"])
        .run()
        .success();
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["paths"], serde_json::json!([src.to_str().unwrap()]));
    env.run(&["backup", "--exclude", "*.tmp"]).success();

    let listed: serde_json::Value =
        serde_json::from_str(&env.run(&["snapshots", "--json"]).success().stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .windows(2)
            .all(|w| w[0]["time"].as_str() <= w[1]["time"].as_str())
    );
    env.run(&["snapshots", "--tag", "nightly"])
        .success()
        .stdout_has("1 snapshot\n");

    // The newest snapshot of the day is kept; the two older ones go, and so does their data.
    env.run(&["forget", "--keep-daily", "7", "--dry-run"])
        .success()
        .stdout_has("would remove 2 snapshots (dry run)");
    let forget: serde_json::Value = serde_json::from_str(
        &env.run(&["forget", "--keep-daily", "7", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    assert_eq!(forget["removed"], 2);
    let prune: serde_json::Value =
        serde_json::from_str(&env.run(&["prune", "--json"]).success().stdout).unwrap();
    // The excluded-then-included mail.tmp is in no snapshot any more: its pack is repacked.
    assert!(prune["blobs_unused"].as_u64().unwrap() > 0, "{prune}");
    assert!(prune["packs_repacked"].as_u64().unwrap() > 0, "{prune}");
    let again: serde_json::Value =
        serde_json::from_str(&env.run(&["prune", "--json"]).success().stdout).unwrap();
    assert!(
        again["bytes_unused"].as_u64().unwrap() < prune["bytes_unused"].as_u64().unwrap(),
        "{again}"
    );

    let check: serde_json::Value = serde_json::from_str(
        &env.run(&["check", "--read-data-subset", "1/1", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    assert_eq!(check["errors"], serde_json::json!([]));
    env.run_restic(&["check", "--read-data"]).success();

    // Metrics for the alert on a backup that stopped happening.
    let out = env.run(&["metrics"]).success();
    assert!(
        out.stdout.contains("email_backup_snapshots 1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("email_backup_latest_snapshot_files 65"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("# TYPE email_backup_latest_snapshot_age_seconds gauge"),
        "{}",
        out.stdout
    );
    assert!(metrics_dir.join("email_backup_metrics.prom").exists());
}

#[test]
fn metrics_of_a_repository_written_by_restic_count_the_tree() {
    let env = Env::new(Store::Local);
    let src = env.dir("raw_emails");
    alaveteli_corpus(&src, 25, 33);
    env.run_restic(&["init"]).success();
    env.run_restic(&["backup", src.to_str().unwrap()]).success();
    let out = env.run(&["metrics"]).success();
    assert!(
        out.stdout.contains("email_backup_latest_snapshot_files 25"),
        "{}",
        out.stdout
    );
}
