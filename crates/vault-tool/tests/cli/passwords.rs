//! Every password source: files, executables, client executables, several `--vault-id`s, the
//! environment, envdirs and the config file; and the errors when they fail.

use crate::support::{Scratch, V1_PASSWORD, encrypt_to, fixture, fixture_bytes, header, vt};

const V1_PLAIN: &str = "v1-plaintext.yml";

fn view_v1() -> ops_testkit::Cmd {
    vt().arg("view").arg(fixture("v1-vault.yml"))
}

#[test]
fn password_file_is_stripped_of_surrounding_whitespace() {
    let tmp = Scratch::new();
    let file = tmp.write("pw", format!("\n  {V1_PASSWORD} \t\r\n\n"));
    let out = view_v1()
        .arg("--vault-password-file")
        .arg(&file)
        .run()
        .success();
    assert_eq!(out.stdout_bytes, fixture_bytes(V1_PLAIN));
    // ansible's other spelling.
    view_v1()
        .arg("--vault-pass-file")
        .arg(&file)
        .run()
        .success();
}

#[test]
fn executable_password_file_is_run_and_its_output_stripped_of_line_ends() {
    let tmp = Scratch::new();
    let script = tmp.script("pass.sh", &format!("printf '{V1_PASSWORD}\\r\\n'"));
    let out = view_v1()
        .arg("--vault-password-file")
        .arg(&script)
        .run()
        .success();
    assert_eq!(out.stdout_bytes, fixture_bytes(V1_PLAIN));
    // A failing script is an error naming it, with its status.
    let failing = tmp.script("fail.sh", "exit 3");
    view_v1()
        .arg("--vault-password-file")
        .arg(&failing)
        .run()
        .code(3)
        .one_line_error()
        .stderr_has("fail.sh): the script exited with status 3");
}

#[test]
fn client_script_is_asked_for_the_vault_id() {
    let tmp = Scratch::new();
    let prod = String::from_utf8(fixture_bytes("v2-password-prod.txt")).unwrap();
    let client = tmp.script(
        "keys-client.sh",
        &format!(
            "[ \"$1\" = --vault-id ] || exit 9\ncase \"$2\" in prod) printf '%s' '{prod}';; *) echo \"no $2\" >&2; exit 2;; esac"
        ),
    );
    let out = vt()
        .arg("view")
        .arg(fixture("v2-vault.yml"))
        .arg("--vault-id")
        .arg(format!("prod@{}", client.display()))
        .run()
        .success();
    assert_eq!(out.stdout_bytes, fixture_bytes("v2-plaintext.yml"));
    vt().arg("view")
        .arg(fixture("v2-vault.yml"))
        .arg("--vault-id")
        .arg(format!("dev@{}", client.display()))
        .run()
        .code(3)
        .stderr_has("does not know vault id dev: no dev");
}

#[test]
fn several_vault_ids_the_matching_label_first() {
    let tmp = Scratch::new();
    let v1 = tmp.write("v1", V1_PASSWORD);
    let wrong = tmp.write("wrong", "wrong");
    // The 1.2 `prod` vault is found by its label whatever the order; the 1.1 vault by trying.
    for order in [["a", "prod"], ["prod", "a"]] {
        let mut cmd = vt()
            .arg("view")
            .arg(fixture("v2-vault.yml"))
            .arg(fixture("v1-vault.yml"));
        for label in order {
            let source = if label == "prod" {
                fixture("v2-password-prod.txt")
            } else {
                v1.clone()
            };
            cmd = cmd
                .arg("--vault-id")
                .arg(format!("{label}@{}", source.display()));
        }
        let out = cmd
            .arg("--vault-id")
            .arg(format!("x@{}", wrong.display()))
            .run()
            .success();
        let mut expected = fixture_bytes("v2-plaintext.yml");
        expected.extend(fixture_bytes(V1_PLAIN));
        assert_eq!(out.stdout_bytes, expected);
    }
    // With ANSIBLE_VAULT_ID_MATCH only the password labelled `prod` may open the prod vault.
    vt().arg("view")
        .arg(fixture("v2-vault.yml"))
        .arg("--vault-id")
        .arg(format!(
            "other@{}",
            fixture("v2-password-prod.txt").display()
        ))
        .env("ANSIBLE_VAULT_ID_MATCH", "true")
        .run()
        .code(11)
        .stderr_has("no password for vault id \"prod\"");
}

#[test]
fn environment_envdir_and_config_file_sources() {
    let tmp = Scratch::new();
    let file = tmp.write("pw", V1_PASSWORD);
    let expected = fixture_bytes(V1_PLAIN);
    let out = view_v1()
        .env("ANSIBLE_VAULT_PASSWORD_FILE", &file)
        .run()
        .success();
    assert_eq!(out.stdout_bytes, expected);
    let out = view_v1()
        .env("VAULT_TOOL_PASSWORD", format!("{V1_PASSWORD}\n"))
        .run()
        .success();
    assert_eq!(out.stdout_bytes, expected);
    // The CI variable from an envdir, and the password file from the config file.
    let envdir = tmp.write("env/VAULT_TOOL_PASSWORD", format!("{V1_PASSWORD}\n"));
    let out = view_v1()
        .arg("--envdir")
        .arg(envdir.parent().unwrap())
        .run()
        .success();
    assert_eq!(out.stdout_bytes, expected);
    let config = tmp.write(
        "c.toml",
        format!(
            "ANSIBLE_VAULT_PASSWORD_FILE = {:?}\n",
            file.display().to_string()
        ),
    );
    let out = view_v1().arg("--config").arg(&config).run().success();
    assert_eq!(out.stdout_bytes, expected);
    // The identity list, as ansible's vault_identity_list.
    let out = vt()
        .arg("view")
        .arg(fixture("v2-vault.yml"))
        .env(
            "ANSIBLE_VAULT_IDENTITY_LIST",
            format!(
                "dev@{}, prod@{}",
                file.display(),
                fixture("v2-password-prod.txt").display()
            ),
        )
        .run()
        .success();
    assert_eq!(out.stdout_bytes, fixture_bytes("v2-plaintext.yml"));
}

#[test]
fn the_ci_variable_can_carry_a_label() {
    let tmp = Scratch::new();
    let vault = tmp.path().join("labelled.yml");
    encrypt_to(&vault, b"x: 1\n", "ci-pass", Some("ci"));
    assert_eq!(header(&vault), "$ANSIBLE_VAULT;1.2;AES256;ci");
    vt().arg("view")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", "ci-pass")
        .env("VAULT_TOOL_PASSWORD_ID", "ci")
        .env("ANSIBLE_VAULT_ID_MATCH", "yes")
        .run()
        .success()
        .stdout_has("x: 1");
}

#[test]
fn bad_sources_are_errors_not_silent_fallbacks() {
    let tmp = Scratch::new();
    let good = tmp.write("pw", V1_PASSWORD);
    // A missing file is an error even when another source would work (ansible only warns).
    view_v1()
        .arg("--vault-password-file")
        .arg(&good)
        .arg("--vault-id")
        .arg(format!("x@{}", tmp.path().join("missing").display()))
        .run()
        .code(3)
        .one_line_error()
        .stderr_has("vault password from vault id x (")
        .stderr_has("missing): no such file");
    let empty = tmp.write("empty", " \n");
    view_v1()
        .arg("--vault-password-file")
        .arg(&empty)
        .run()
        .code(3)
        .stderr_has("the password is empty");
    view_v1().run().code(3).stderr_has("no vault password");
    view_v1()
        .args(["--vault-id", "prod@prompt"])
        .run()
        .code(2)
        .stderr_has("does not prompt");
    view_v1()
        .args(["--vault-id", "a;b@/x"])
        .run()
        .code(2)
        .stderr_has("';' is not allowed");
    view_v1()
        .env("ANSIBLE_VAULT_ID_MATCH", "perhaps")
        .env("VAULT_TOOL_PASSWORD", "x")
        .run()
        .code(3)
        .stderr_has("ANSIBLE_VAULT_ID_MATCH");
}

#[test]
fn wrong_password_is_a_clear_error_with_status_11() {
    let tmp = Scratch::new();
    let wrong = tmp.write("pw", "wrong");
    view_v1()
        .arg("--vault-id")
        .arg(format!("dev@{}", wrong.display()))
        .run()
        .code(11)
        .one_line_error()
        .stderr_has("v1-vault.yml: decryption failed: wrong vault password (tried vault ids: dev)");
}

#[test]
fn the_same_file_from_the_flag_and_the_environment_is_one_password() {
    let tmp = Scratch::new();
    let file = tmp.write("pw", "only one");
    let out = vt()
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(&file)
        .env("ANSIBLE_VAULT_PASSWORD_FILE", &file)
        .stdin("x")
        .run()
        .success();
    assert!(out.stdout.starts_with("$ANSIBLE_VAULT;1.1;AES256\n"));
    // Two different passwords with the same label are two: encrypting needs a choice.
    let other = tmp.write("other", "another one");
    vt().arg("encrypt")
        .arg("--vault-password-file")
        .arg(&file)
        .env("ANSIBLE_VAULT_PASSWORD_FILE", &other)
        .stdin("x")
        .run()
        .code(3)
        .stderr_has("the vault ids default, default are loaded");
}
