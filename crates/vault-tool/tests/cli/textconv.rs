//! textconv: readable `git diff` of vault files, through git itself.

use std::path::Path;

use crate::support::{Scratch, V1_PASSWORD, fixture, fixture_bytes, vt};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.net",
            "-c",
            "core.pager=cat",
        ])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn git_diff_of_a_vault_file_shows_the_changed_plaintext_line() {
    let tmp = Scratch::new();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    // The two lines the reference page documents.
    std::fs::write(repo.join(".gitattributes"), "vault.yml diff=vault\n").unwrap();
    git(
        &repo,
        &[
            "config",
            "diff.vault.textconv",
            &format!("{} textconv", env!("CARGO_BIN_EXE_vault-tool")),
        ],
    );
    let vault = repo.join("vault.yml");
    std::fs::write(&vault, fixture_bytes("v1-vault.yml")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    // Re-encrypt with one changed line: every ciphertext byte changes.
    let plain = String::from_utf8(fixture_bytes("v1-plaintext.yml")).unwrap();
    let new_plain = plain.replace("p4ss w0rd with spaces", "a new password");
    std::fs::remove_file(&vault).unwrap();
    vt().arg("encrypt")
        .arg("--output")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .stdin(new_plain)
        .run()
        .success();
    let diff = git(&repo, &["diff"]);
    let changes: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(
        changes,
        [
            "-vault_db_password: \"p4ss w0rd with spaces\"",
            "+vault_db_password: \"a new password\""
        ],
        "{diff}"
    );
}

#[test]
fn textconv_never_fails_on_content() {
    let tmp = Scratch::new();
    // A vault it can decrypt, inline values, a plaintext file, a vault it cannot decrypt.
    let out = vt()
        .arg("textconv")
        .arg(fixture("v1-vault.yml"))
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .run()
        .success();
    assert_eq!(out.stdout_bytes, fixture_bytes("v1-plaintext.yml"));
    let out = vt()
        .arg("textconv")
        .arg(fixture("v3-encrypt-string.yml"))
        .env("VAULT_TOOL_PASSWORD", "staging-pass")
        .run()
        .success();
    assert_eq!(out.stdout, "vault_recaptcha_secret: \"s3cr3t-value\"\n");
    let plain = tmp.write("plain.txt", "just text\n");
    let out = vt().arg("textconv").arg(&plain).run().success();
    assert_eq!(out.stdout, "just text\n");
    let out = vt()
        .arg("textconv")
        .arg(fixture("v1-vault.yml"))
        .env("VAULT_TOOL_PASSWORD", "wrong")
        .run()
        .success()
        .stderr_has("wrong vault password (tried vault ids: default); showing it encrypted");
    assert_eq!(out.stdout_bytes, fixture_bytes("v1-vault.yml"));
    vt().arg("textconv")
        .arg(tmp.path().join("absent"))
        .run()
        .code(4);
}
