//! `encrypt-string` (and `encrypt_string`): inline values, named or not, from arguments or stdin.

use serde_yaml_ng::Value;

use crate::support::{Scratch, mode_of, read, vt};

/// Decrypts the inline values of a YAML text with vault-tool itself.
fn values_of(yaml: &str, password: &str) -> Value {
    let out = vt()
        .args(["view", "-"])
        .env("VAULT_TOOL_PASSWORD", password)
        .stdin(yaml.to_owned())
        .run()
        .success();
    serde_yaml_ng::from_str(&out.stdout).unwrap()
}

#[test]
fn named_values_from_arguments() {
    let out = vt()
        .args([
            "encrypt_string",
            "--name",
            "vault_a",
            "-n",
            "vault_b",
            "one",
            "two",
        ])
        .env("VAULT_TOOL_PASSWORD", "pw")
        .run()
        .success();
    assert!(
        out.stdout
            .starts_with("vault_a: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n")
    );
    assert!(out.stdout.contains("\nvault_b: !vault |\n"));
    assert!(out.stdout.ends_with('\n') && !out.stdout.ends_with("\n\n"));
    assert!(
        out.stdout
            .lines()
            .skip(1)
            .all(|l| l.starts_with("          ") || l.starts_with("vault_b"))
    );
    let values = values_of(&out.stdout, "pw");
    assert_eq!(values["vault_a"], Value::from("one"));
    assert_eq!(values["vault_b"], Value::from("two"));
}

#[test]
fn stdin_keeps_its_trailing_newline_with_a_warning_unless_trimmed() {
    let run = |args: &[&str]| {
        vt().arg("encrypt-string")
            .args(args.iter().copied())
            .env("VAULT_TOOL_PASSWORD", "pw")
            .stdin("s3cret\n")
            .run()
            .success()
    };
    let kept = run(&["--stdin-name", "vault_x"]);
    assert!(
        kept.stderr.contains("ends with a newline"),
        "{}",
        kept.stderr
    );
    assert_eq!(
        values_of(&kept.stdout, "pw")["vault_x"],
        Value::from("s3cret\n")
    );
    let trimmed = run(&["--stdin-name", "vault_x", "--trim-newline"]);
    assert!(!trimmed.stderr.contains("ends with a newline"));
    assert_eq!(
        values_of(&trimmed.stdout, "pw")["vault_x"],
        Value::from("s3cret")
    );
    // A single --name with the value on stdin names it (ansible would drop the name).
    let named = run(&["--name", "vault_y", "-"]);
    assert!(named.stdout.starts_with("vault_y: !vault |\n"));
    // Without a name: the bare `!vault |` block.
    let bare = run(&[]);
    assert!(
        bare.stdout
            .starts_with("!vault |\n          $ANSIBLE_VAULT;1.1;AES256\n")
    );
}

#[test]
fn labels_and_output_file() {
    let tmp = Scratch::new();
    let pw = tmp.write("pw", "staging-pass");
    let output = tmp.path().join("out.yml");
    vt().args(["encrypt-string", "--name", "vault_token", "tok", "--output"])
        .arg(&output)
        .arg("--vault-id")
        .arg(format!("staging@{}", pw.display()))
        .run()
        .success();
    let text = String::from_utf8(read(&output)).unwrap();
    assert!(
        text.starts_with("vault_token: !vault |\n          $ANSIBLE_VAULT;1.2;AES256;staging\n")
    );
    assert_eq!(mode_of(&output), 0o600);
    assert_eq!(
        values_of(&text, "staging-pass")["vault_token"],
        Value::from("tok")
    );
}

#[test]
fn refusals() {
    let with_pw = |cmd: ops_testkit::Cmd| cmd.env("VAULT_TOOL_PASSWORD", "pw");
    with_pw(vt().args(["encrypt-string", "--name", "bad-name", "x"]))
        .run()
        .code(2)
        .stderr_has("\"bad-name\" is not a variable name");
    with_pw(vt().args(["encrypt-string", "--name", "a", "--name", "b", "x"]))
        .run()
        .code(2)
        .stderr_has("2 --name options for 1 value(s)");
    with_pw(vt().args(["encrypt-string", "-"]))
        .stdin("")
        .run()
        .code(2)
        .stderr_has("stdin was empty");
    with_pw(vt().args(["encrypt-string", ""]))
        .run()
        .code(2)
        .stderr_has("an empty value");
    vt().args(["encrypt-string", "x"])
        .run()
        .code(3)
        .stderr_has("no vault password");
}
