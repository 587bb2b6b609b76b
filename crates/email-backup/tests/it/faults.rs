//! A backup killed half-way, and damaged pack files: the repository stays usable, damage is
//! reported, and restore saves what can be saved.

use rustix::process::Signal;

use crate::support::{Env, Store, alaveteli_corpus, short_emails, signal, under, wait_until, walk};

#[test]
fn a_backup_killed_half_way_is_followed_by_a_good_one() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let src = env.dir("site").join("raw_emails");
    // rustic_core writes a data pack every 10,000 blobs: with 12,000 short emails, the first
    // one is written before the last files are read.
    let files = short_emails(&src, 12_000, 21);
    let mut backup = env.tool().args(["backup", src.to_str().unwrap()]).spawn();
    wait_until("the first pack", || !env.packs().is_empty());
    signal(&backup, Signal::KILL);
    assert!(!backup.wait().unwrap().success());
    assert!(
        walk(&env.repo_dir().join("snapshots")).is_empty(),
        "killed before its snapshot"
    );
    assert_eq!(env.locks().len(), 1, "the killed backup's lock is left");

    let out = env
        .run(&["backup", src.to_str().unwrap(), "--json"])
        .success();
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["files_new"], files.len());
    env.run(&["check"])
        .success()
        .stdout_has("no errors were found");
    // prune removes the stale lock (restic 0.14 would want `restic unlock` first) and the packs no
    // index knows.
    env.run(&["prune"]).success();
    assert!(env.locks().is_empty());
    env.run_restic(&["check", "--read-data"]).success();
}

fn damage_one_pack(env: &Env) -> String {
    // The largest pack holds file data (tree packs are small); flip a byte in its middle.
    let (path, size) = env
        .packs()
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let mut data = std::fs::read(&path).unwrap();
    data[usize::try_from(size / 2).unwrap()] ^= 0x55;
    std::fs::write(&path, data).unwrap();
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

fn damaged_pack_is_reported_and_the_rest_restored(env: &Env) {
    let src = env.dir("site").join("raw_emails");
    let files = alaveteli_corpus(&src, 400, 23);
    env.run(&["init"]).success();
    env.run(&["backup", src.to_str().unwrap()]).success();
    let pack = damage_one_pack(env);

    // Structure alone still looks fine; reading the data finds the damage.
    env.run(&["check"]).success();
    let out = env
        .run(&["check", "--read-data"])
        .code(1)
        .stdout_has("the repository has errors");
    assert!(out.stdout.contains(&pack[..8]), "{}", out.stdout);
    env.run_restic(&["check", "--read-data"]).code(1);

    let target = env.dir("restored");
    let out = env
        .run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .code(1)
        .stderr_has("could not be restored; every other file was");
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("not restored: "))
        .collect();
    assert!(!failed.is_empty(), "{}", out.stdout);
    assert!(failed.len() < files.len() / 4, "{}", out.stdout);
    let mut restored = 0;
    for file in &files {
        let copy = under(&target, file);
        let listed = failed
            .iter()
            .any(|l| l.starts_with(&format!("{}: ", copy.display())));
        if listed {
            assert!(
                !copy.exists(),
                "{} is not left half-written",
                copy.display()
            );
        } else {
            assert_eq!(
                std::fs::read(file).unwrap(),
                std::fs::read(&copy).unwrap(),
                "{}",
                copy.display()
            );
            restored += 1;
        }
    }
    assert_eq!(restored + failed.len(), files.len());
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn a_damaged_pack_on_disk_is_reported_and_the_rest_restored() {
    damaged_pack_is_reported_and_the_rest_restored(&Env::new(Store::Local));
}

#[test]
fn a_damaged_pack_on_s3_is_reported_and_the_rest_restored() {
    damaged_pack_is_reported_and_the_rest_restored(&Env::new(Store::S3(
        ops_testkit::S3Server::start(),
    )));
}

#[test]
fn a_missing_pack_fails_only_the_files_in_it() {
    let env = Env::new(Store::Local);
    let src = env.dir("site").join("raw_emails");
    let files = alaveteli_corpus(&src, 30, 24);
    env.run(&["init"]).success();
    env.run(&["backup", src.to_str().unwrap()]).success();
    let (pack, _) = env
        .packs()
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    std::fs::remove_file(&pack).unwrap();
    env.run(&["check"]).code(1);
    let target = env.dir("restored");
    let out = env
        .run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .code(1);
    let failed = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("not restored: "))
        .count();
    assert_eq!(failed, files.len(), "{}", out.stdout);
    assert!(
        out.stdout.contains("not found") || out.stdout.contains("No such file"),
        "{}",
        out.stdout
    );
}
