//! check: the vault_ convention over a sample ansible tree with every kind of violation, and over
//! one that follows it.

use crate::support::{Scratch, encrypt_to, vt};

const PASSWORD: &str = "check-pass";

/// A tree that follows the convention: two groups, a role using the unprefixed names, ansible.cfg
/// mentioning `vault_password_file` (not a variable).
fn good_tree(tmp: &Scratch) {
    encrypt_to(
        &tmp.path().join("ansible/group_vars/all/vault.yml"),
        b"---\nvault_db_password: p4ss\nvault_smtp_password: smtp\n",
        PASSWORD,
        None,
    );
    tmp.write(
        "ansible/group_vars/all/vars.yml",
        "---\ndb_user: alaveteli\ndb_password: \"{{ vault_db_password }}\"\nsmtp_password: '{{vault_smtp_password}}'  # relay\n",
    );
    encrypt_to(
        &tmp.path().join("ansible/roles/app/vars/vault.yml"),
        b"vault_api_key: k\n",
        PASSWORD,
        Some("prod"),
    );
    tmp.write(
        "ansible/roles/app/vars/main.yml",
        "api_key: \"{{ vault_api_key }}\"\n",
    );
    tmp.write(
        "ansible/roles/app/templates/app.conf.j2",
        "password={{ db_password }}\nkey={{ api_key }}\n",
    );
    tmp.write(
        "ansible/ansible.cfg",
        "[defaults]\nvault_password_file = ~/.vault_pass\n",
    );
    tmp.write(
        "ansible/.git/HEAD",
        "vault_db_password in git's files is not looked at\n",
    );
}

fn check(tmp: &Scratch) -> ops_testkit::Cmd {
    vt().arg("check")
        .arg(tmp.path().join("ansible"))
        .env("VAULT_TOOL_PASSWORD", PASSWORD)
}

#[test]
fn a_tree_that_follows_the_convention_passes_silently() {
    let tmp = Scratch::new();
    good_tree(&tmp);
    let out = check(&tmp).run().success();
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("the vault_ convention holds"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_violation_is_listed_on_its_own_line() {
    let tmp = Scratch::new();
    good_tree(&tmp);
    // Rule 2 (a key without the prefix) and rule 4 (unused, used twice, misnamed).
    encrypt_to(
        &tmp.path().join("ansible/group_vars/all/vault.yml"),
        b"vault_db_password: p4ss\nvault_smtp_password: smtp\nvault_unused: u\nvault_twice: t\nvault_misnamed: m\nplain_key: oops\n",
        PASSWORD,
        None,
    );
    tmp.write(
        "ansible/group_vars/all/vars.yml",
        concat!(
            "db_password: \"{{ vault_db_password }}\"\n",
            "smtp_password: \"{{ vault_smtp_password }}\"\n",
            "twice: \"{{ vault_twice }}\"\n",
            "twice_again: \"{{ vault_twice }}\"\n",
            "wrong_name: \"{{ vault_misnamed }}\"\n",
            "ghost: \"{{ vault_ghost }}\"\n",
            "api_key: \"{{ vault_api_key }}\"\n",
            "db_url: \"postgres://app:{{ vault_db_password }}@db/app\"\n",
        ),
    );
    // Rules 1 and 3: a plaintext vault file without a main variables file.
    tmp.write(
        "ansible/group_vars/staging/vault.yml",
        "vault_stage_key: s\n",
    );
    // Rule 7: vault_ variables defined outside vault files, in plaintext and inline.
    let inline = vt()
        .args(["encrypt-string", "--name", "vault_inline", "x"])
        .env("VAULT_TOOL_PASSWORD", PASSWORD)
        .run()
        .success()
        .stdout;
    tmp.write(
        "ansible/host_vars/web1.yml",
        format!("vault_api_token: abc123\n{inline}"),
    );
    // Rule 6: direct uses, in a template, a task, and an encrypted file (decrypted to look).
    tmp.write(
        "ansible/roles/app/templates/smtp.conf.j2",
        "user=app\npassword={{ vault_smtp_password }}\n",
    );
    tmp.write(
        "ansible/roles/app/tasks/main.yml",
        "- name: show\n  debug:\n    msg: \"{{ vault_db_password }} and {{ vault_api_key }}\"\n",
    );
    encrypt_to(
        &tmp.path().join("ansible/roles/app/files/token.conf"),
        b"token={{ vault_api_key }}\n",
        PASSWORD,
        None,
    );
    // A damaged vault elsewhere is reported, not fatal.
    tmp.write(
        "ansible/roles/app/files/broken.vault",
        "$ANSIBLE_VAULT;1.1;AES256\nnot hex\n",
    );

    let out = check(&tmp).run().code(1);
    let expected = [
        "group_vars/all/vars.yml:4: `vault_twice` is used by 2 variables, `twice` (line 3), `twice_again` (line 4): exactly one, `twice`, may use it",
        "group_vars/all/vars.yml:5: `wrong_name` takes its value from `vault_misnamed`: the variable copying `vault_misnamed` must be named `misnamed`",
        "group_vars/all/vars.yml:6: `ghost` refers to `vault_ghost`, which the vault file next to it does not define",
        "group_vars/all/vars.yml:7: `api_key` refers to `vault_api_key`, which the vault file next to it does not define (it is defined in roles/app/vars/vault.yml, which has another main variables file)",
        "group_vars/all/vars.yml:8: uses `vault_db_password` directly: use `db_password`, which the main variables file copies it to",
        "group_vars/all/vault.yml: `plain_key` does not start with `vault_`: only secrets named `vault_<name>` belong in a vault file",
        "group_vars/all/vault.yml: `vault_unused` is not used: add `unused: \"{{ vault_unused }}\"` to group_vars/all/vars.yml",
        "group_vars/staging/vault.yml: no main variables file next to it (vars.yml, vars.yaml, vars, main.yml, main.yaml) to copy its variables into",
        "group_vars/staging/vault.yml: not encrypted: the secrets in it are in plaintext (encrypt it: vault-tool encrypt group_vars/staging/vault.yml)",
        "host_vars/web1.yml:1: defines `vault_api_token` in plaintext outside a vault file: move it into an encrypted vault.yml",
        "host_vars/web1.yml:2: defines `vault_inline` as an inline !vault value outside a vault file: move it into an encrypted vault.yml",
        "roles/app/files/broken.vault: not a valid vault: line 2, column 1: `n` is not a hex digit",
        "roles/app/files/token.conf:1: uses `vault_api_key` directly: use `api_key`, which the main variables file copies it to",
        "roles/app/tasks/main.yml:3: uses `vault_api_key` directly: use `api_key`, which the main variables file copies it to",
        "roles/app/tasks/main.yml:3: uses `vault_db_password` directly: use `db_password`, which the main variables file copies it to",
        "roles/app/templates/smtp.conf.j2:2: uses `vault_smtp_password` directly: use `smtp_password`, which the main variables file copies it to",
    ];
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(got, expected, "\n{}", out.stdout);
    assert!(
        !out.stdout.contains("p4ss") && !out.stdout.contains("abc123"),
        "no values shown"
    );
}

#[test]
fn check_needs_the_passwords_of_every_vault_file() {
    let tmp = Scratch::new();
    good_tree(&tmp);
    vt().arg("check")
        .arg(tmp.path().join("ansible"))
        .env("VAULT_TOOL_PASSWORD", "wrong")
        .run()
        .code(11)
        .one_line_error()
        .stderr_has("vault.yml: decryption failed");
    vt().arg("check")
        .arg(tmp.path().join("ansible"))
        .run()
        .code(3)
        .stderr_has("no vault password");
    vt().arg("check")
        .arg(tmp.path().join("absent"))
        .env("VAULT_TOOL_PASSWORD", PASSWORD)
        .run()
        .code(4);
}
