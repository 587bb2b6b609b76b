//! Point-in-time recovery with real PostgreSQL 15, archiving through the built binary, on the local
//! store and on the in-process S3 server: rows written in batches, restores to times between them,
//! exactly the rows committed before each target; then a restore that branches a new timeline,
//! writes on it, and a restore to a time on that timeline.

mod support;

use ops_testkit::{S3Server, free_port};
use support::{Restored, Site, Store, batches, commit_batch_and_mark};

fn restore(site: &Site, name: &str, target: Option<&str>, archive: bool) -> Restored {
    let data = site.restore_dir(name);
    let port = free_port();
    let port_text = port.to_string();
    let mut args = vec![
        "restore",
        "--pgdata",
        data.to_str().unwrap(),
        "--start",
        "--port",
        &port_text,
    ];
    match target {
        Some(time) => args.extend(["--target-time", time]),
        None => args.push("--latest"),
    }
    if !archive {
        args.push("--no-archive");
    }
    let out = site.run(&args).success();
    assert!(out.stdout.contains("recovered up to"), "{}", out.stdout);
    Restored { data, port }
}

fn point_in_time_recovery(store: Store) {
    let site = Site::new(store);
    let mut primary = site.primary.connect("postgres");
    primary
        .batch_execute(
            "create table t (batch int, n int, at timestamptz default clock_timestamp())",
        )
        .unwrap();

    let backup = site.run(&["backup"]).success();
    assert!(backup.stdout.starts_with("base_"), "{}", backup.stdout);

    let marks: Vec<String> = (1..=4)
        .map(|batch| {
            let mark = commit_batch_and_mark(&mut primary, batch);
            site.switch_and_wait_archived(&site.primary.url("postgres"));
            mark
        })
        .collect();

    let list = site.run(&["list", "--json"]).success();
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Three targets on the first timeline: exactly the batches committed before each.
    for (i, mark) in marks.iter().take(3).enumerate() {
        let restored = restore(&site, &format!("r{i}"), Some(mark), false);
        let expected: Vec<i32> = (1..=i32::try_from(i).unwrap() + 1).collect();
        assert_eq!(batches(&mut restored.connect()), expected, "target {mark}");
        let count: i64 = restored
            .connect()
            .query_one("select count(*) from t", &[])
            .unwrap()
            .get(0);
        assert_eq!(count, 100 * (i64::try_from(i).unwrap() + 1));
    }

    // A new timeline: restore to after batch 2 with archiving on; the promoted copy writes on
    // timeline 2 into the same archive.
    let branch = restore(&site, "branch", Some(&marks[1]), true);
    let mut on_branch = branch.connect();
    let timeline: String = on_branch
        .query_one(
            "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(timeline, "00000002");
    let branch_mark = commit_batch_and_mark(&mut on_branch, 10);
    on_branch
        .execute(
            "insert into t (batch, n) select 11, g from generate_series(1, 100) g",
            &[],
        )
        .unwrap();
    site.switch_and_wait_archived(&branch.url());
    assert!(
        site.stored_file("wal/00000002.history").exists(),
        "the new timeline's history is archived"
    );

    // Back to a time on timeline 2: batches 1 and 2 from timeline 1, then 10 from timeline 2.
    let on_tl2 = restore(&site, "on-tl2", Some(&branch_mark), false);
    assert_eq!(batches(&mut on_tl2.connect()), vec![1, 2, 10]);
    drop(on_tl2);

    // To the end of the archive: the latest timeline, all of it.
    let latest = restore(&site, "latest", None, false);
    assert_eq!(batches(&mut latest.connect()), vec![1, 2, 10, 11]);
}

#[test]
fn point_in_time_recovery_on_the_file_store() {
    point_in_time_recovery(Store::File);
}

#[test]
fn point_in_time_recovery_on_s3() {
    point_in_time_recovery(Store::S3(S3Server::start()));
}
