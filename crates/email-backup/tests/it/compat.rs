//! email-backup and restic 0.14 on one repository, both ways, on a local directory and on the
//! in-process S3 server: restic lists, checks and restores byte for byte what email-backup wrote,
//! and email-backup reads what restic wrote.

use crate::support::{Env, Store, alaveteli_corpus, assert_same_tree, under};
use ops_testkit::S3Server;
use sha2::Digest as _;

fn round_trip(env: &Env) {
    let src = env.dir("site").join("raw_emails");
    let files = alaveteli_corpus(&src, 240, 1);
    std::os::unix::fs::symlink("../../missing-on-purpose", src.join("dangling")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();

    let init = env.run(&["init"]).success();
    assert!(
        init.stdout.contains("created restic repository"),
        "{}",
        init.stdout
    );

    // First backup: a JSON summary for cron, absolute paths, tags and host as given.
    let first = env
        .run(&[
            "backup",
            src.to_str().unwrap(),
            "--tag",
            "nightly",
            "--host",
            "foi-web1",
            "--json",
        ])
        .success();
    let summary: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(summary["message_type"], "summary");
    // The raw emails, the empty file and the symlink (restic counts symlinks as files).
    assert_eq!(summary["files_new"], files.len() as u64 + 2);
    assert_eq!(summary["total_files_processed"], files.len() as u64 + 2);

    // Unchanged second backup: nothing new, the first is its parent.
    let second = env
        .run(&[
            "backup",
            src.to_str().unwrap(),
            "--host",
            "foi-web1",
            "--json",
        ])
        .success();
    let summary: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(summary["files_new"], 0);
    assert_eq!(summary["files_unmodified"], files.len() as u64 + 2);

    // email-backup lists them oldest first.
    let listed: serde_json::Value =
        serde_json::from_str(&env.run(&["snapshots", "--json"]).success().stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0]["time"].as_str() <= listed[1]["time"].as_str());
    assert_eq!(listed[0]["tags"], serde_json::json!(["nightly"]));

    // restic sees the same snapshots, with the absolute path and host.
    let restic: serde_json::Value =
        serde_json::from_str(&env.run_restic(&["snapshots", "--json"]).success().stdout).unwrap();
    let restic = restic.as_array().unwrap();
    assert_eq!(restic.len(), 2);
    assert_eq!(
        restic[0]["paths"],
        serde_json::json!([src.to_str().unwrap()])
    );
    assert_eq!(restic[0]["hostname"], "foi-web1");
    let mut ids: Vec<&str> = restic.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut ours: Vec<&str> = listed.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ours.sort_unstable();
    assert_eq!(ids, ours);

    // restic checks every byte and restores the same tree.
    env.run_restic(&["check", "--read-data"])
        .success()
        .stdout_has("no errors were found");
    let by_restic = env.dir("restored-by-restic");
    env.run_restic(&["restore", "latest", "--target", by_restic.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &under(&by_restic, &src));

    // email-backup restores the same tree.
    let by_us = env.dir("restored-by-us");
    env.run(&["restore", "latest", "--target", by_us.to_str().unwrap()])
        .success()
        .stdout_has(&format!("{} files", files.len() + 2));
    assert_same_tree(&src, &under(&by_us, &src));
    env.run(&["check", "--read-data"]).success();
}

#[test]
fn local_repository_is_read_by_restic_byte_for_byte() {
    round_trip(&Env::new(Store::Local));
}

#[test]
fn s3_repository_is_read_by_restic_byte_for_byte() {
    round_trip(&Env::new(Store::S3(S3Server::start())));
}

fn reads_restic(env: &Env) {
    let src = env.dir("site").join("raw_emails");
    alaveteli_corpus(&src, 150, 2);
    env.run_restic(&["init"]).success();
    env.run_restic(&["backup", src.to_str().unwrap(), "--tag", "by-restic"])
        .success();

    let listed: serde_json::Value =
        serde_json::from_str(&env.run(&["snapshots", "--json"]).success().stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["tags"], serde_json::json!(["by-restic"]));
    env.run(&["check", "--read-data"]).success();

    let target = env.dir("restored");
    env.run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &under(&target, &src));

    // A backup on top of restic's (its snapshot as parent), then restic checks the result.
    alaveteli_corpus(&src.join("999"), 10, 3);
    let more = env
        .run(&["backup", src.to_str().unwrap(), "--json"])
        .success();
    let summary: serde_json::Value = serde_json::from_str(&more.stdout).unwrap();
    assert_eq!(summary["files_new"], 10);
    env.run_restic(&["check", "--read-data"]).success();
    let by_restic = env.dir("restored-by-restic");
    env.run_restic(&["restore", "latest", "--target", by_restic.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &under(&by_restic, &src));
}

#[test]
fn reads_a_local_repository_written_by_restic() {
    reads_restic(&Env::new(Store::Local));
}

#[test]
fn reads_an_s3_repository_written_by_restic() {
    reads_restic(&Env::new(Store::S3(S3Server::start())));
}

#[test]
fn one_raw_email_restores_alone_and_existing_files_are_kept() {
    let env = Env::new(Store::Local);
    let src = env.dir("site").join("raw_emails");
    let files = alaveteli_corpus(&src, 40, 4);
    env.run(&["init"]).success();
    env.run(&["backup", src.to_str().unwrap()]).success();

    let one = &files[17];
    let target = env.dir("one");
    env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        one.to_str().unwrap(),
    ])
    .success()
    .stdout_has(": 1 file,");
    let restored: Vec<_> = crate::support::walk(&target)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(restored, vec![under(&target, one)]);
    assert_eq!(
        std::fs::read(one).unwrap(),
        std::fs::read(&restored[0]).unwrap()
    );

    // Same content again: nothing to do. Other content: left alone, status 5, unless --overwrite.
    env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        one.to_str().unwrap(),
    ])
    .success()
    .stdout_has("(1 file already there)");
    std::fs::write(&restored[0], b"edited by hand").unwrap();
    env.run(&[
        "-q",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        one.to_str().unwrap(),
    ])
    .code(5)
    .one_line_error()
    .stderr_has("--overwrite");
    assert_eq!(std::fs::read(&restored[0]).unwrap(), b"edited by hand");
    env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        one.to_str().unwrap(),
        "--overwrite",
    ])
    .success();
    assert_eq!(
        std::fs::read(one).unwrap(),
        std::fs::read(&restored[0]).unwrap()
    );

    // A path the snapshot does not hold.
    env.run(&[
        "-q",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "/no/such/mail",
    ])
    .code(4)
    .one_line_error()
    .stderr_has("/no/such/mail is not in snapshot");
}

#[test]
fn init_writes_one_key_with_restics_scrypt_parameters() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let keys = crate::support::walk(&std::path::Path::new(&env.repository).join("keys"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&keys[0]).unwrap()).unwrap();
    // restic 0.14's calibration here (32 MiB per open), not rustic_core's 2^17 (128 MiB).
    assert_eq!(
        (&key["kdf"], &key["N"], &key["r"], &key["p"]),
        (
            &serde_json::json!("scrypt"),
            &serde_json::json!(32768),
            &serde_json::json!(8),
            &serde_json::json!(2)
        )
    );
    // restic opens it with the password; email-backup too.
    env.run_restic(&["snapshots"]).success();
    env.run(&["snapshots"]).success();
    // The key file's name is its SHA-256, as restic names it.
    let name = keys[0].file_name().unwrap().to_str().unwrap();
    let digest = sha2::Sha256::digest(std::fs::read(&keys[0]).unwrap());
    assert_eq!(name, hex::encode(digest));
}
