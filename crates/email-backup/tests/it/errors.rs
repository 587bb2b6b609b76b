//! Bad input: one line on stderr, the documented status, and never a secret in the message.

use crate::support::{Env, PASSWORD, Store, alaveteli_corpus, write_setting};

#[test]
fn a_missing_repository_says_to_run_init() {
    let env = Env::new(Store::Local);
    let out = env
        .run(&["snapshots"])
        .code(4)
        .one_line_error()
        .stderr_has("no repository at")
        .stderr_has("email-backup init");
    assert!(out.stderr.contains(&env.repository), "{}", out.stderr);
    // Nothing was created on the way.
    assert!(!std::path::Path::new(&env.repository).exists());
}

#[test]
fn a_wrong_password_is_status_11_and_not_echoed() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    write_setting(&env.envdir, "RESTIC_PASSWORD", "not the password at all");
    let out = env
        .run(&["snapshots"])
        .code(11)
        .one_line_error()
        .stderr_has("wrong password");
    assert!(!out.stderr.contains("not the password"), "{}", out.stderr);
    // restic agrees that the repository's key needs the real one.
    env.run_restic(&["snapshots"]).success();
}

#[test]
fn init_twice_is_refused() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let keys = crate::support::walk(&std::path::Path::new(&env.repository).join("keys"));
    env.run(&["init"])
        .code(5)
        .one_line_error()
        .stderr_has("a repository already exists");
    assert_eq!(
        crate::support::walk(&std::path::Path::new(&env.repository).join("keys")),
        keys
    );
}

#[test]
fn a_path_that_does_not_exist_saves_nothing() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    let src = env.dir("mail");
    alaveteli_corpus(&src, 5, 7);
    env.run(&[
        "backup",
        src.to_str().unwrap(),
        src.join("no-such-dir").to_str().unwrap(),
    ])
    .code(4)
    .one_line_error()
    .stderr_has("no-such-dir: no such file or directory; nothing was saved");
    env.run(&["snapshots"]).success().stdout_has("0 snapshots");
    // Without paths and without RAW_EMAILS_LOCATION there is nothing to do.
    env.run(&["backup"])
        .code(2)
        .one_line_error()
        .stderr_has("RAW_EMAILS_LOCATION");
}

#[test]
fn no_password_or_a_bad_password_source_is_a_settings_error() {
    let env = Env::new(Store::Local);
    std::fs::remove_file(env.envdir.join("RESTIC_PASSWORD")).unwrap();
    env.run(&["init"])
        .code(3)
        .one_line_error()
        .stderr_has("set RESTIC_PASSWORD, RESTIC_PASSWORD_FILE or RESTIC_PASSWORD_COMMAND");
    write_setting(&env.envdir, "RESTIC_PASSWORD_COMMAND", "false");
    env.run(&["init"])
        .code(3)
        .one_line_error()
        .stderr_has("RESTIC_PASSWORD_COMMAND")
        .stderr_has("the command failed");
    std::fs::remove_file(env.envdir.join("RESTIC_PASSWORD_COMMAND")).unwrap();
    write_setting(
        &env.envdir,
        "RESTIC_PASSWORD_FILE",
        env.tmp.path().join("missing").to_str().unwrap(),
    );
    env.run(&["init"])
        .code(10)
        .one_line_error()
        .stderr_has("missing");
    assert!(!std::path::Path::new(&env.repository).exists());
}

#[test]
fn password_file_and_command_open_the_same_repository() {
    let env = Env::new(Store::Local);
    env.run(&["init"]).success();
    std::fs::remove_file(env.envdir.join("RESTIC_PASSWORD")).unwrap();
    let file = env.tmp.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    write_setting(&env.envdir, "RESTIC_PASSWORD_FILE", file.to_str().unwrap());
    env.run(&["snapshots"]).success();
    // The command wins over the file, as in restic.
    write_setting(
        &env.envdir,
        "RESTIC_PASSWORD_COMMAND",
        &format!("cat {}", file.display()),
    );
    std::fs::write(env.tmp.path().join("other"), "wrong\n").unwrap();
    write_setting(
        &env.envdir,
        "RESTIC_PASSWORD_FILE",
        env.tmp.path().join("other").to_str().unwrap(),
    );
    env.run(&["snapshots"]).success();
    // `config show` never prints the password.
    write_setting(&env.envdir, "RESTIC_PASSWORD", PASSWORD);
    let shown = env.run(&["config", "show"]).success();
    assert!(!shown.stdout.contains(PASSWORD), "{}", shown.stdout);
    assert!(shown.stdout.contains("RESTIC_PASSWORD"), "{}", shown.stdout);
}

#[test]
fn unsupported_backends_and_bad_include_paths_are_refused() {
    let env = Env::new(Store::Local);
    write_setting(
        &env.envdir,
        "RESTIC_REPOSITORY",
        "sftp:backup@host:/srv/restic",
    );
    env.run(&["snapshots"])
        .code(3)
        .one_line_error()
        .stderr_has("the sftp backend is not supported");
    write_setting(&env.envdir, "RESTIC_REPOSITORY", "s3:http://host-only");
    env.run(&["snapshots"])
        .code(3)
        .one_line_error()
        .stderr_has("s3:[http[s]://]host/bucket[/prefix]");
    write_setting(&env.envdir, "RESTIC_REPOSITORY", &env.repository);
    env.run(&["init"]).success();
    let target = env.dir("target");
    env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "relative/path",
    ])
    .code(2)
    .one_line_error()
    .stderr_has("give the path as stored in the snapshot");
    env.run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .code(4)
        .one_line_error()
        .stderr_has("no snapshot \"latest\"");
    env.run(&["forget", "--prune"])
        .code(2)
        .one_line_error()
        .stderr_has("--keep-daily");
    env.run(&["check", "--read-data-subset", "150%"])
        .code(2)
        .one_line_error();
}
