//! Live cross-checks with the real ansible-vault, both ways, formats 1.1 and 1.2, whole files
//! and inline values. `scripts/test` installs ansible-core (Debian's, 2.14) when it is missing.

use std::path::{Path, PathBuf};

use crate::support::{Cmd, Scratch, header, read, vt};

/// The real program, found on the PATH the tests use.
fn ansible_program(name: &str) -> PathBuf {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed; install ansible-core (scripts/test does)")
        })
}

/// ansible-vault, with a HOME of its own (it keeps a temporary directory there).
fn ansible_vault(home: &Path) -> Cmd {
    Cmd::new(ansible_program("ansible-vault")).env("HOME", home)
}

/// Every byte value, a multi-byte UTF-8 string, a trailing newline: what must survive exactly.
fn tricky_plaintext() -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend("héllo ünïcode ✓\n".as_bytes());
    data
}

#[test]
fn what_vault_tool_writes_ansible_vault_decrypts() {
    let tmp = Scratch::new();
    let pw = tmp.write("pw", "cross-check password\n");
    let plaintext = tricky_plaintext();
    for label in [None, Some("prod")] {
        let vault = tmp
            .path()
            .join(format!("ours-{}.vault", label.unwrap_or("none")));
        let id = format!("{}@{}", label.unwrap_or("default"), pw.display());
        vt().args(["encrypt", "--output"])
            .arg(&vault)
            .args(["--vault-id", &id])
            .stdin(plaintext.clone())
            .run()
            .success();
        let expected_header = match label {
            None => "$ANSIBLE_VAULT;1.1;AES256".to_owned(),
            Some(l) => format!("$ANSIBLE_VAULT;1.2;AES256;{l}"),
        };
        assert_eq!(header(&vault), expected_header);
        let out = ansible_vault(tmp.path())
            .args(["decrypt", "--output", "-", "--vault-id", &id])
            .arg(&vault)
            .run()
            .success();
        assert_eq!(out.stdout_bytes, plaintext, "label {label:?}");
    }
}

#[test]
fn what_ansible_vault_writes_vault_tool_decrypts() {
    let tmp = Scratch::new();
    let pw = tmp.write("pw", "another password");
    let plaintext = tricky_plaintext();
    let source = tmp.write("plain.bin", &plaintext);
    for id in [
        format!("{}", pw.display()),
        format!("staging@{}", pw.display()),
    ] {
        let vault = tmp.path().join("theirs.vault");
        let _ = std::fs::remove_file(&vault);
        let mut cmd = ansible_vault(tmp.path())
            .args(["encrypt", "--output"])
            .arg(&vault)
            .args(["--vault-id", &id]);
        if id.contains('@') {
            cmd = cmd.args(["--encrypt-vault-id", "staging"]);
        }
        cmd.arg(&source).run().success();
        let out = vt()
            .args(["decrypt", "--output", "-", "--vault-id", &id])
            .arg(&vault)
            .run()
            .success();
        assert_eq!(out.stdout_bytes, plaintext, "{}", header(&vault));
    }
}

#[test]
fn inline_values_both_ways() {
    let tmp = Scratch::new();
    let pw = tmp.write("pw", "inline password");
    let id = format!("staging@{}", pw.display());
    // ansible-vault's encrypt_string, read by vault-tool.
    let theirs = ansible_vault(tmp.path())
        .args([
            "encrypt_string",
            "--vault-id",
            &id,
            "--encrypt-vault-id",
            "staging",
        ])
        .args(["--name", "vault_theirs", "their: value # with \"quotes\""])
        .run()
        .success();
    let shown = vt()
        .args(["view", "-", "--vault-id", &id])
        .stdin(theirs.stdout.clone())
        .run()
        .success();
    assert_eq!(
        shown.stdout.trim_end(),
        "vault_theirs: \"their: value # with \\\"quotes\\\"\""
    );
    // vault-tool's encrypt-string, read by ansible itself as a variables file.
    let ours = vt()
        .args([
            "encrypt-string",
            "--vault-id",
            &id,
            "--stdin-name",
            "vault_ours",
            "--trim-newline",
        ])
        .stdin("multi\nline: value\n")
        .run()
        .success();
    let vars = tmp.write("vars.yml", format!("{}{}\n", ours.stdout, theirs.stdout));
    let check = tmp.write(
        "check.yml",
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - copy:\n        content: \"{{ {'ours': vault_ours, 'theirs': vault_theirs} | to_json }}\"\n        dest: \"{{ out }}\"\n",
    );
    let result = tmp.path().join("result.json");
    Cmd::new(ansible_program("ansible-playbook"))
        .env("HOME", tmp.path())
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
        .args(["-e", &format!("@{}", vars.display())])
        .args(["-e", &format!("out={}", result.display())])
        .args(["--vault-id", &id])
        .arg(&check)
        .run()
        .success();
    let values: serde_json::Value = serde_json::from_slice(&read(&result)).unwrap();
    assert_eq!(values["ours"], "multi\nline: value");
    assert_eq!(values["theirs"], "their: value # with \"quotes\"");
}

#[test]
fn rekeyed_and_edited_files_still_open_in_ansible() {
    let tmp = Scratch::new();
    let old = tmp.write("old", "old password");
    let new = tmp.write("new", "new password");
    let source = tmp.write("secrets.yml", "vault_a: 1\n");
    ansible_vault(tmp.path())
        .args(["encrypt", "--vault-password-file"])
        .arg(&old)
        .arg(&source)
        .run()
        .success();
    let editor = tmp.script("ed.sh", "echo 'vault_b: 2' >> \"$1\"");
    vt().arg("edit")
        .arg(&source)
        .arg("--vault-password-file")
        .arg(&old)
        .env("EDITOR", editor.display().to_string())
        .run()
        .success();
    vt().arg("rekey")
        .arg(&source)
        .arg("--vault-password-file")
        .arg(&old)
        .arg("--new-vault-id")
        .arg(format!("prod@{}", new.display()))
        .run()
        .success();
    let out = ansible_vault(tmp.path())
        .args(["view", "--vault-id", &format!("prod@{}", new.display())])
        .arg(&source)
        .run()
        .success();
    assert_eq!(out.stdout, "vault_a: 1\nvault_b: 2\n");
}
