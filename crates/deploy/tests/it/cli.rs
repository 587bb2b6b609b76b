//! The commands every tool has, on the real `deploy` binary.

#[test]
fn common_commands() {
    ops_testkit::assert_common_commands(
        std::path::Path::new(env!("CARGO_BIN_EXE_deploy")),
        "deploy",
    );
}

use crate::support::Site;

#[test]
fn bad_input_is_one_line_with_a_documented_status() {
    let site = Site::new("deploy-errors");
    site.write("group_vars/all/vars.yml", "x: 1\n");
    site.write(
        "plan/a.yml",
        "resources:\n  - file: /etc/x\n    content: hi\n    mod: \"0644\"\n",
    );
    let out = site
        .cmd(["apply", "staging", "--check"])
        .run()
        .code(3)
        .one_line_error();
    assert!(
        out.stderr
            .contains("plan/a.yml, resource 1 (file /etc/x): unknown key `mod`"),
        "{}",
        out.stderr
    );
    site.write(
        "plan/a.yml",
        "resources:\n  - file: /etc/x\n    content: \"{{ nope }}\"\n",
    );
    let out = site
        .cmd(["apply", "staging", "--check"])
        .run()
        .code(3)
        .one_line_error();
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    site.write("plan/a.yml", "resources: []\n");
    let out = site.cmd(["apply", "prod"]).run().code(4).one_line_error();
    assert!(
        out.stderr
            .contains("no environment \"prod\" (environments: staging, production)"),
        "{}",
        out.stderr
    );
    site.cmd(["rollback", "staging"])
        .run()
        .code(4)
        .one_line_error();
    let out = site
        .cmd(["apply", "staging", "--host", "nope"])
        .run()
        .code(2)
        .one_line_error();
    assert!(
        out.stderr
            .contains("--host nope: no such host in environment staging (hosts: stage1)"),
        "{}",
        out.stderr
    );
    site.write(
        "group_vars/staging/vault.yml",
        &vault_tool::format::encrypt(b"vault_x: secret-value\n", b"another password", None)
            .unwrap(),
    );
    let out = site
        .cmd(["apply", "staging", "--check"])
        .run()
        .code(11)
        .one_line_error();
    assert!(
        out.stderr.contains("group_vars/staging/vault.yml"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("secret-value"));
}

#[test]
fn secrets_are_refused_where_every_user_could_read_them() {
    let site = Site::new("deploy-secret-places");
    site.write(
        "group_vars/all/vars.yml",
        "db_password: \"{{ vault_db_password }}\"\n",
    );
    site.write_vault(
        "group_vars/staging/vault.yml",
        "vault_db_password: do-not-leak-me\n",
    );
    let cases = [
        (
            "  - file: /etc/app.conf\n    content: \"pw={{ db_password }}\\n\"\n",
            "give it a `mode` other users cannot read",
        ),
        (
            "  - file: /etc/app.conf\n    content: \"pw={{ db_password }}\\n\"\n    mode: \"0644\"\n",
            "give it a `mode` other users cannot read",
        ),
        (
            "  - command: \"psql -c 'alter role foi password {{ db_password }}'\"\n",
            "the command line of a process is visible to every user",
        ),
        (
            "  - cron: backup\n    jobs: [{schedule: \"@daily\", user: root, command: \"backup --password {{ db_password }}\"}]\n",
            "readable by every user",
        ),
        (
            "  - systemd: app.service\n    content: \"[Service]\\nEnvironment=PW={{ db_password }}\\n\"\n",
            "unit files are readable by every user",
        ),
    ];
    for (resource, message) in cases {
        site.write("plan/a.yml", &format!("resources:\n{resource}"));
        let out = site
            .cmd(["apply", "staging", "--check"])
            .run()
            .code(3)
            .one_line_error();
        assert!(out.stderr.contains(message), "{resource}: {}", out.stderr);
        assert!(!out.stderr.contains("do-not-leak-me"));
    }
    site.write("plan/a.yml", "resources:\n  - file: /etc/app.conf\n    content: \"pw={{ db_password }}\\n\"\n    mode: \"0640\"\n");
    site.cmd(["apply", "staging", "--check"]).run().success();
}
