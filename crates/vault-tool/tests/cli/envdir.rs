//! envdir: secrets written as an envdir that daemontools' envdir (and the tools) read back.

use crate::support::{Scratch, encrypt_to, mode_of, names_in, set_mode, vt};

const PASSWORD: &str = "env-pass";

fn sources(tmp: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let vault = tmp.path().join("vault.yml");
    encrypt_to(
        &vault,
        b"vault_s3_secret: \"sEcReT/+=\"\nvault_tls_key: |\n  line one\n  line two\nvault_port: 5432\n",
        PASSWORD,
        None,
    );
    let vars = tmp.write(
        "vars.yml",
        "WALG_S3_PREFIX: s3://backups/db\nvault_port: 6543\n",
    );
    (vault, vars)
}

/// What daemontools' envdir gives a program for `name`.
fn through_envdir(dir: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new("envdir")
        .arg(dir)
        .args(["sh", "-c", &format!("printf '%s' \"${name}\"")])
        .output()
        .expect("daemontools' envdir (scripts/test installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn writes_a_private_envdir_that_envdir_reads_back() {
    let tmp = Scratch::new();
    let (vault, vars) = sources(&tmp);
    let dir = tmp.path().join("etc/wal-archive.d");
    vt().args(["envdir", "--out"])
        .arg(&dir)
        .arg("--from")
        .arg(&vault)
        .arg("--from")
        .arg(&vars)
        .args([
            "AWS_SECRET_ACCESS_KEY=vault_s3_secret",
            "TLS_KEY=vault_tls_key",
            "PGPORT=vault_port",
            "WALG_S3_PREFIX",
        ])
        .env("VAULT_TOOL_PASSWORD", PASSWORD)
        .run()
        .success();
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(
        names_in(&dir),
        [
            "AWS_SECRET_ACCESS_KEY",
            "PGPORT",
            "TLS_KEY",
            "WALG_S3_PREFIX"
        ],
        "no temporary file left"
    );
    for name in names_in(&dir) {
        assert_eq!(mode_of(&dir.join(&name)), 0o600, "{name}");
    }
    assert_eq!(through_envdir(&dir, "AWS_SECRET_ACCESS_KEY"), "sEcReT/+=");
    // A multi-line value, as envdir lets one be: newlines as NUL bytes.
    assert_eq!(
        std::fs::read(dir.join("TLS_KEY")).unwrap(),
        b"line one\0line two\0\n"
    );
    assert_eq!(through_envdir(&dir, "TLS_KEY"), "line one\nline two\n");
    // A later --from wins.
    assert_eq!(through_envdir(&dir, "PGPORT"), "6543");
    assert_eq!(through_envdir(&dir, "WALG_S3_PREFIX"), "s3://backups/db");
    // The common crate reads it the same way (as the tools do).
    let env = ops_common::envdir::Envdir::load(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(env.get("TLS_KEY").unwrap().0, "line one\nline two\n");
}

#[test]
fn an_existing_directory_is_tightened_and_other_files_left_alone() {
    let tmp = Scratch::new();
    let (vault, _) = sources(&tmp);
    let dir = tmp.path().join("env");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    std::fs::write(dir.join("OTHER"), "kept\n").unwrap();
    std::fs::write(dir.join("SECRET"), "old\n").unwrap();
    vt().args(["envdir", "--out"])
        .arg(&dir)
        .arg("--from")
        .arg(&vault)
        .arg("SECRET=vault_s3_secret")
        .env("VAULT_TOOL_PASSWORD", PASSWORD)
        .run()
        .success()
        .stderr_has("tightened to 0700");
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(std::fs::read(dir.join("OTHER")).unwrap(), b"kept\n");
    assert_eq!(std::fs::read(dir.join("SECRET")).unwrap(), b"sEcReT/+=\n");
    assert_eq!(mode_of(&dir.join("SECRET")), 0o600);
}

#[test]
fn nothing_is_written_when_a_variable_is_missing_or_cannot_be_represented() {
    let tmp = Scratch::new();
    let (vault, _) = sources(&tmp);
    let bad = tmp.write("bad.yml", "spaced: \"ends with a space \"\nlist: [1, 2]\n");
    let dir = tmp.path().join("env");
    let run = |vars: &[&str]| {
        vt().args(["envdir", "--out"])
            .arg(&dir)
            .arg("--from")
            .arg(&vault)
            .arg("--from")
            .arg(&bad)
            .args(vars.iter().copied())
            .env("VAULT_TOOL_PASSWORD", PASSWORD)
            .run()
    };
    run(&["A=vault_s3_secret", "B=vault_nope"])
        .code(4)
        .one_line_error()
        .stderr_has("vault_nope: not defined in");
    run(&["A=vault_s3_secret", "B=spaced"])
        .code(12)
        .stderr_has("spaced: ends with a space or tab");
    run(&["A=list"])
        .code(12)
        .stderr_has("is not a single value");
    run(&["../escape=vault_s3_secret"]).code(2);
    run(&["A=vault_s3_secret", "A=vault_port"])
        .code(2)
        .stderr_has("A is given twice");
    assert!(!dir.exists(), "nothing written");
    vt().args(["envdir", "--out"])
        .arg(&dir)
        .arg("--from")
        .arg(&vault)
        .arg("A=vault_s3_secret")
        .env("VAULT_TOOL_PASSWORD", "wrong")
        .run()
        .code(11);
    assert!(!dir.exists(), "nothing written");
}
