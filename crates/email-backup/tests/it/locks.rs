//! restic's lock files: email-backup and restic keep out of each other's way on one repository.

use rustix::process::Signal;

use crate::support::{Env, Store, alaveteli_corpus, signal, wait_until, walk};

#[test]
fn restic_prune_refuses_while_email_backup_backs_up() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let src = env.dir("site").join("raw_emails");
    alaveteli_corpus(&src, 300, 11);
    let mut backup = env.tool().args(["backup", src.to_str().unwrap()]).spawn();
    // Held still once its lock is written (it waits 200 ms before going on, as restic does).
    wait_until("the backup's lock", || !env.locks().is_empty());
    signal(&backup, Signal::STOP);
    assert!(
        backup.try_wait().unwrap().is_none(),
        "the backup ended too soon"
    );

    // restic reads the lock (it is restic's format, with our key) and refuses to prune.
    env.run_restic(&["prune"])
        .code(1)
        .stderr_has("repository is already locked")
        .stderr_has(&format!("PID {}", backup.id()));
    // So does email-backup, and forget too; a second backup may run alongside.
    env.run(&["-q", "prune"])
        .code(5)
        .one_line_error()
        .stderr_has("the repository is locked")
        .stderr_has(&format!("PID {}", backup.id()));
    env.run(&["-q", "forget", "--keep-last", "1"])
        .code(5)
        .one_line_error();

    signal(&backup, Signal::CONT);
    assert!(backup.wait().unwrap().success());
    assert!(env.locks().is_empty(), "the lock is removed at the end");
    env.run_restic(&["check"]).success();
    env.run(&["prune"]).success();
}

#[test]
fn email_backup_refuses_to_prune_while_restic_holds_a_lock() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let src = env.dir("site").join("raw_emails");
    alaveteli_corpus(&src, 50, 12);
    env.run(&["backup", src.to_str().unwrap()]).success();

    // A restic backup reading from a pipe holds its lock until the pipe closes.
    let mut restic = env
        .restic_process()
        .args(["backup", "--stdin", "--stdin-filename", "dump.mbox"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = restic.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"From: someone\r\n\r\nhello\r\n").unwrap();
    wait_until("restic's lock", || !env.locks().is_empty());

    env.run(&["-q", "prune"])
        .code(5)
        .one_line_error()
        .stderr_has("the repository is locked")
        .stderr_has(&format!("PID {}", restic.id()));
    env.run(&["-q", "forget", "--keep-last", "1", "--prune"])
        .code(5)
        .one_line_error();
    // Non-exclusive with non-exclusive: a backup and a check run next to restic's backup.
    env.run(&["backup", src.to_str().unwrap()]).success();
    env.run(&["check"]).success();
    assert_eq!(env.locks().len(), 1, "only restic's lock is left");

    drop(stdin);
    assert!(restic.wait().unwrap().success());
    let out = env
        .run(&["forget", "--keep-last", "1", "--prune", "--json"])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["removed"], 1, "{report}");
    assert!(
        report["prune"]["blobs_used"].as_u64().unwrap() > 0,
        "{report}"
    );
    env.run_restic(&["check", "--read-data"]).success();
}

#[test]
fn a_stale_lock_does_not_block_and_prune_removes_it() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let src = env.dir("site").join("raw_emails");
    alaveteli_corpus(&src, 20, 13);
    // A lock left by a process that no longer runs on this host: a restic killed outright.
    let mut restic = env
        .restic_process()
        .args(["backup", "--stdin", "--stdin-filename", "x"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("restic's lock", || !env.locks().is_empty());
    signal(&restic, Signal::KILL);
    restic.wait().unwrap();
    assert_eq!(env.locks().len(), 1);

    env.run(&["backup", src.to_str().unwrap()])
        .success()
        .stderr_has("ignoring a stale lock");
    env.run(&["prune"])
        .success()
        .stderr_has("removing a stale lock");
    assert!(env.locks().is_empty());
}

#[test]
fn a_backup_whose_second_lock_check_fails_writes_nothing() {
    // restic's check, write, wait 200 ms, check again: a lock that becomes visible during the
    // wait must stop the backup before it writes anything, although it reads meanwhile.
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let src = env.dir("site").join("raw_emails");
    alaveteli_corpus(&src, 300, 14);
    let snapshots = env.repo_dir().join("snapshots");
    let packs_before = walk(&env.repo_dir().join("data")).len();

    // A live exclusive lock (a restic prune, held still), kept out of sight for now.
    let mut prune = env
        .restic_process()
        .arg("prune")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("restic's lock", || !env.locks().is_empty());
    signal(&prune, Signal::STOP);
    let prune_lock = env.locks().remove(0);
    let hidden = env.dir("hidden").join("lock");
    std::fs::rename(&prune_lock, &hidden).unwrap();

    // The backup's first check finds no lock; held still right after writing its own, the
    // prune's lock appears, as a slow store would show it.
    let mut backup = env.tool().args(["backup", src.to_str().unwrap()]).spawn();
    wait_until("the backup's lock", || !env.locks().is_empty());
    signal(&backup, Signal::STOP);
    std::fs::rename(&hidden, &prune_lock).unwrap();
    signal(&backup, Signal::CONT);
    let status = backup.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(5),
        "the backup must fail with a conflict"
    );

    assert_eq!(walk(&snapshots).len(), 0, "no snapshot was written");
    assert_eq!(
        walk(&env.repo_dir().join("data")).len(),
        packs_before,
        "no pack was written"
    );
    assert_eq!(env.locks(), [prune_lock], "the backup removed its own lock");
    signal(&prune, Signal::KILL);
    prune.wait().unwrap();
}
