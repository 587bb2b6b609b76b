//! The commands every tool has, the generated documentation, and what every command shares:
//! one-line errors, exit statuses, secrets kept out of output.

use crate::support::{Scratch, V1_PASSWORD, fixture, vt};

#[test]
fn common_commands() {
    ops_testkit::assert_common_commands(
        std::path::Path::new(env!("CARGO_BIN_EXE_vault-tool")),
        "vault-tool",
    );
}

#[test]
fn settings_table_in_the_reference_page_is_up_to_date() {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vault-tool.md");
    ops_testkit::check_generated(
        &doc,
        "settings",
        &ops_common::settings::markdown_table(vault_tool::SETTINGS),
    );
}

#[test]
fn config_show_redacts_the_password_and_names_ansible_settings() {
    let out = vt()
        .args(["config", "show", "--json"])
        .env("VAULT_TOOL_PASSWORD", "hunter2-secret")
        .env("ANSIBLE_VAULT_PASSWORD_FILE", "/etc/vault-pass")
        .run()
        .success();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        json["VAULT_TOOL_PASSWORD"],
        serde_json::json!({"value": "<redacted>", "source": "env"})
    );
    assert_eq!(
        json["ANSIBLE_VAULT_PASSWORD_FILE"]["value"],
        "/etc/vault-pass"
    );
    assert_eq!(
        json["EDITOR"],
        serde_json::json!({"value": "vi", "source": "default"})
    );
    assert!(!out.stdout.contains("hunter2-secret"));
}

#[test]
fn both_spellings_of_encrypt_string_and_help_for_every_command() {
    for command in [
        "create",
        "edit",
        "view",
        "encrypt",
        "decrypt",
        "rekey",
        "encrypt-string",
        "encrypt_string",
        "check",
        "envdir",
        "textconv",
    ] {
        vt().args([command, "--help"])
            .run()
            .success()
            .stdout_has("Usage: vault-tool");
    }
    vt().args(["view", "--vault-password", "x"])
        .run()
        .code(2)
        .one_line_error();
}

#[test]
fn a_password_never_appears_in_errors_or_debug_logs() {
    let tmp = Scratch::new();
    let wrong = tmp.write("wrong", "not-the-password-but-secret\n");
    let out = vt()
        .args(["-vvv", "view", "--vault-password-file"])
        .arg(&wrong)
        .arg(fixture("v1-vault.yml"))
        .env("VAULT_TOOL_PASSWORD", "env-secret-password")
        .run()
        .code(11);
    crate::support::assert_no_secret(
        &out,
        &["not-the-password-but-secret", "env-secret-password"],
    );
    // A successful run at trace level logs neither the password nor the plaintext.
    let right = tmp.write("right", V1_PASSWORD);
    let out = vt()
        .args([
            "-vvv",
            "decrypt",
            "--output",
            &tmp.path().join("out").display().to_string(),
        ])
        .arg("--vault-password-file")
        .arg(&right)
        .arg(fixture("v1-vault.yml"))
        .run()
        .success();
    crate::support::assert_no_secret(&out, &[V1_PASSWORD, "p4ss w0rd"]);
    assert!(out.stderr.contains("decrypted"), "{}", out.stderr);
}
