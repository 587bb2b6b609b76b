//! view, decrypt, encrypt and rekey on files and stdin.

use crate::support::{
    Scratch, V1_PASSWORD, encrypt_to, fixture, fixture_bytes, header, mode_of, names_in, read,
    set_mode, vt,
};

fn with_v1(cmd: ops_testkit::Cmd) -> ops_testkit::Cmd {
    cmd.env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
}

#[test]
fn view_prints_the_exact_plaintext_of_each_fixture() {
    for (vault, plain, password) in [
        ("v1-vault.yml", "v1-plaintext.yml", V1_PASSWORD.to_owned()),
        (
            "v5-vault-empty.vault",
            "v5-plaintext.empty",
            V1_PASSWORD.to_owned(),
        ),
        (
            "v2-vault.yml",
            "v2-plaintext.yml",
            String::from_utf8(fixture_bytes("v2-password-prod.txt")).unwrap(),
        ),
    ] {
        let out = vt()
            .arg("view")
            .arg(fixture(vault))
            .env("VAULT_TOOL_PASSWORD", password)
            .run()
            .success();
        assert_eq!(out.stdout_bytes, fixture_bytes(plain), "{vault}");
    }
    // From stdin.
    let out = with_v1(vt().args(["view", "-"]))
        .stdin(fixture_bytes("v1-vault.yml"))
        .run()
        .success();
    assert_eq!(out.stdout_bytes, fixture_bytes("v1-plaintext.yml"));
}

#[test]
fn view_and_decrypt_reveal_inline_values_in_yaml() {
    let out = vt()
        .arg("view")
        .arg(fixture("v6-inline-vars.yml"))
        .arg("--vault-id")
        .arg(format!("default@{}", fixture("v1-password.txt").display()))
        .arg("--vault-id")
        .arg(format!(
            "staging@{}",
            fixture("v3-password-staging.txt").display()
        ))
        .run()
        .success();
    // The plain values are those ansible itself decrypts the file to.
    let shown: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out.stdout).unwrap();
    let expected: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(&fixture_bytes("v6-values.json")).unwrap();
    assert_eq!(shown, expected);
    assert!(
        out.stdout.starts_with("# Inline values made by"),
        "comments kept"
    );

    let tmp = Scratch::new();
    let file = tmp.copy_fixture("v3-encrypt-string.yml", "inline.yml");
    vt().arg("decrypt")
        .arg(&file)
        .env("VAULT_TOOL_PASSWORD", "staging-pass")
        .run()
        .success();
    assert_eq!(read(&file), b"vault_recaptcha_secret: \"s3cr3t-value\"\n");
    assert_eq!(mode_of(&file), 0o600);
}

#[test]
fn decrypt_in_place_to_a_file_and_to_stdout() {
    let tmp = Scratch::new();
    let plain = fixture_bytes("v1-plaintext.yml");
    // In place: atomic (nothing else left in the directory), mode 0600.
    let in_place = tmp.copy_fixture("v1-vault.yml", "in-place/vault.yml");
    set_mode(&in_place, 0o644);
    with_v1(vt().arg("decrypt").arg(&in_place)).run().success();
    assert_eq!(read(&in_place), plain);
    assert_eq!(mode_of(&in_place), 0o600);
    assert_eq!(names_in(in_place.parent().unwrap()), ["vault.yml"]);
    // --output FILE.
    let out_file = tmp.path().join("out/plain.yml");
    std::fs::create_dir_all(out_file.parent().unwrap()).unwrap();
    with_v1(
        vt().arg("decrypt")
            .arg(fixture("v1-vault.yml"))
            .arg("--output")
            .arg(&out_file),
    )
    .run()
    .success();
    assert_eq!(read(&out_file), plain);
    assert_eq!(mode_of(&out_file), 0o600);
    assert_eq!(names_in(out_file.parent().unwrap()), ["plain.yml"]);
    // --output - and stdin to stdout.
    let out = with_v1(
        vt().arg("decrypt")
            .arg(fixture("v1-vault.yml"))
            .args(["--output", "-"]),
    )
    .run()
    .success();
    assert_eq!(out.stdout_bytes, plain);
    let out = with_v1(vt().arg("decrypt"))
        .stdin(fixture_bytes("v1-vault.yml"))
        .run()
        .success();
    assert_eq!(out.stdout_bytes, plain);
}

#[test]
fn decrypt_follows_symlinks_like_ansible() {
    let tmp = Scratch::new();
    let target = tmp.copy_fixture("v1-vault.yml", "real.yml");
    let link = tmp.path().join("link.yml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    with_v1(vt().arg("decrypt").arg(&link)).run().success();
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(read(&target), fixture_bytes("v1-plaintext.yml"));
}

#[test]
fn wrong_password_writes_nothing() {
    let tmp = Scratch::new();
    let first = tmp.copy_fixture("v1-vault.yml", "a.yml");
    let second = tmp.copy_fixture("v2-vault.yml", "b.yml");
    // The second file needs another password: the first must not be decrypted either.
    let out = with_v1(vt().arg("decrypt").arg(&first).arg(&second))
        .run()
        .code(11)
        .one_line_error()
        .stderr_has("b.yml: decryption failed: wrong vault password");
    assert!(out.stdout.is_empty());
    assert_eq!(read(&first), fixture_bytes("v1-vault.yml"));
    assert_eq!(read(&second), fixture_bytes("v2-vault.yml"));
    let output = tmp.path().join("never.yml");
    vt().arg("decrypt")
        .arg(fixture("v1-vault.yml"))
        .arg("--output")
        .arg(&output)
        .env("VAULT_TOOL_PASSWORD", "wrong")
        .run()
        .code(11);
    assert!(!output.exists());
    assert_eq!(names_in(tmp.path()), ["a.yml", "b.yml"]);
}

#[test]
fn malformed_files_say_what_and_where() {
    let tmp = Scratch::new();
    let vault = String::from_utf8(fixture_bytes("v1-vault.yml")).unwrap();
    let damaged = tmp.write("damaged.yml", vault.replacen("3766", "37z6", 1));
    with_v1(vt().arg("view").arg(&damaged))
        .run()
        .code(12)
        .one_line_error()
        .stderr_has("damaged.yml: line 2, column 3: `z` is not a hex digit");
    let truncated = tmp.write("truncated.yml", &vault[..vault.len() - 30]);
    with_v1(vt().arg("decrypt").arg(&truncated))
        .run()
        .code(12)
        .stderr_has("truncated.yml: ")
        .stderr_has("truncated or damaged");
    let header = tmp.write("header.yml", vault.replacen("1.1;AES256", "1.1;AES128", 1));
    with_v1(vt().arg("view").arg(&header))
        .run()
        .code(12)
        .stderr_has("line 1, column 20: unsupported cipher `AES128`");
    let plain = tmp.write("plain.yml", "a: 1\n");
    with_v1(vt().arg("view").arg(&plain))
        .run()
        .code(12)
        .stderr_has("plain.yml: not vault-encrypted");
    with_v1(vt().arg("view").arg(tmp.path().join("absent.yml")))
        .run()
        .code(4)
        .stderr_has("absent.yml: no such file");
    // The damaged files were left as they were.
    assert_eq!(read(&truncated), vault.as_bytes()[..vault.len() - 30]);
}

#[test]
fn encrypt_in_place_to_a_file_and_stdin_to_stdout() {
    let tmp = Scratch::new();
    let file = tmp.write("secrets.yml", "vault_x: 1\n");
    set_mode(&file, 0o644);
    with_v1(vt().arg("encrypt").arg(&file)).run().success();
    assert_eq!(header(&file), "$ANSIBLE_VAULT;1.1;AES256");
    assert_eq!(mode_of(&file), 0o600);
    assert_eq!(names_in(tmp.path()), ["secrets.yml"]);
    let out = with_v1(vt().arg("view").arg(&file)).run().success();
    assert_eq!(out.stdout, "vault_x: 1\n");
    // Encrypting a vault again is refused, as ansible does, and leaves it alone.
    let before = read(&file);
    with_v1(vt().arg("encrypt").arg(&file))
        .run()
        .code(12)
        .stderr_has("secrets.yml: already vault-encrypted");
    assert_eq!(read(&file), before);
    // stdin to stdout, then back.
    let out = with_v1(vt().arg("encrypt"))
        .stdin("from stdin")
        .run()
        .success();
    assert!(out.stdout.starts_with("$ANSIBLE_VAULT;1.1;AES256\n"));
    let back = with_v1(vt().arg("decrypt"))
        .stdin(out.stdout_bytes)
        .run()
        .success();
    assert_eq!(back.stdout, "from stdin");
    // --output takes one input only.
    with_v1(
        vt().arg("encrypt")
            .arg(&file)
            .arg(&file)
            .args(["--output", "x"]),
    )
    .run()
    .code(2)
    .stderr_has("--output takes a single input file");
}

#[test]
fn encrypt_with_a_label_and_several_vault_ids() {
    let tmp = Scratch::new();
    let a = tmp.write("a", "pass-a");
    let b = tmp.write("b", "pass-b");
    let ids = |cmd: ops_testkit::Cmd| {
        cmd.arg("--vault-id")
            .arg(format!("dev@{}", a.display()))
            .arg("--vault-id")
            .arg(format!("prod@{}", b.display()))
    };
    ids(vt().arg("encrypt"))
        .stdin("x")
        .run()
        .code(3)
        .stderr_has("the vault ids dev, prod are loaded; choose the one to encrypt with");
    let out = ids(vt().args(["encrypt", "--encrypt-vault-id", "prod"]))
        .stdin("x")
        .run()
        .success();
    assert!(out.stdout.starts_with("$ANSIBLE_VAULT;1.2;AES256;prod\n"));
    // The same choice from ansible's environment variable.
    let out = ids(vt().arg("encrypt"))
        .env("ANSIBLE_VAULT_ENCRYPT_IDENTITY", "dev")
        .stdin("x")
        .run()
        .success();
    assert!(out.stdout.starts_with("$ANSIBLE_VAULT;1.2;AES256;dev\n"));
    ids(vt().args(["encrypt", "--encrypt-vault-id", "test"]))
        .stdin("x")
        .run()
        .code(3)
        .stderr_has("--encrypt-vault-id test: no password with that vault id");
}

#[test]
fn rekey_changes_password_and_label_keeping_the_mode() {
    let tmp = Scratch::new();
    let first = tmp.copy_fixture("v1-vault.yml", "one.yml");
    let second = tmp.path().join("two.yml");
    encrypt_to(&second, b"two\n", V1_PASSWORD, None);
    set_mode(&first, 0o640);
    let new = tmp.write("new-pass", "brand new");
    with_v1(vt().arg("rekey").arg(&first).arg(&second))
        .arg("--new-vault-id")
        .arg(format!("prod@{}", new.display()))
        .run()
        .success();
    assert_eq!(header(&first), "$ANSIBLE_VAULT;1.2;AES256;prod");
    assert_eq!(mode_of(&first), 0o640);
    let out = vt()
        .arg("view")
        .arg(&first)
        .arg(&second)
        .env("VAULT_TOOL_PASSWORD", "brand new")
        .run()
        .success();
    let mut expected = fixture_bytes("v1-plaintext.yml");
    expected.extend(b"two\n");
    assert_eq!(out.stdout_bytes, expected);
    with_v1(vt().arg("view").arg(&first)).run().code(11);
    // Back to format 1.1 with a plain password file.
    let old = tmp.write("old-pass", V1_PASSWORD);
    vt().arg("rekey")
        .arg(&first)
        .arg("--new-vault-password-file")
        .arg(&old)
        .env("VAULT_TOOL_PASSWORD", "brand new")
        .run()
        .success();
    assert_eq!(header(&first), "$ANSIBLE_VAULT;1.1;AES256");
    with_v1(vt().arg("view").arg(&first)).run().success();
    vt().arg("rekey").arg(&first).run().code(2);
    assert_eq!(
        names_in(tmp.path()),
        ["new-pass", "old-pass", "one.yml", "two.yml"]
    );
}
