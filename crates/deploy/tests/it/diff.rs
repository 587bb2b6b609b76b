//! `deploy diff`: every difference listed, the allowed ones explained, any other one failing.

use crate::support::Site;

fn two_environments(label: &str) -> Site {
    let site = Site::new(label);
    site.write(
        "group_vars/all/vars.yml",
        "domain: foi.example.org\nworkers: 2\ndb_password: \"{{ vault_db_password }}\"\nadmin_email: \"admin@{{ domain }}\"\n",
    );
    site.write(
        "group_vars/staging/vars.yml",
        "domain: staging.foi.example.org\n",
    );
    site.write_vault(
        "group_vars/staging/vault.yml",
        "vault_db_password: staging-db-secret\n",
    );
    site.write_vault(
        "group_vars/production/vault.yml",
        "vault_db_password: production-db-secret\n",
    );
    site.write(
        "plan/a.yml",
        "resources:\n  - file: /etc/app.conf\n    content: \"domain={{ domain }}\\nworkers={{ workers }}\\npassword={{ db_password }}\\nadmin={{ admin_email }}\\n\"\n    mode: \"0640\"\n",
    );
    site.write(
        "diff-allow.yml",
        "- domain\n- vault_*\n- env\n- inventory_hostname\n",
    );
    site
}

#[test]
fn differences_explained_by_allowed_variables_pass() {
    let site = two_environments("deploy-diff-ok");
    let out = site.cmd(["diff", "production", "staging"]).run().success();
    assert!(out.stdout.contains("allowed      variable domain: production: \"foi.example.org\"  staging: \"staging.foi.example.org\""), "{}", out.stdout);
    // Derived from allowed variables: explained without being listed.
    assert!(
        out.stdout.contains("allowed      variable admin_email"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "allowed      variable db_password: production: \"********\"  staging: \"********\""
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("allowed      file /etc/app.conf (plan/a.yml#1): content"),
        "{}",
        out.stdout
    );
    // The secret differs, but masked both sides read the same.
    assert!(
        out.stdout.contains("\n     password=********\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("db-secret"), "{}", out.stdout);
    assert!(out.stdout.ends_with(", 0 not allowed\n"), "{}", out.stdout);
}

#[test]
fn any_other_difference_fails() {
    let site = two_environments("deploy-diff-fail");
    site.write(
        "group_vars/staging/vars.yml",
        "domain: staging.foi.example.org\nworkers: 1\n",
    );
    let out = site.cmd(["diff", "production", "staging"]).run().code(1);
    assert!(
        out.stdout
            .contains("NOT ALLOWED  variable workers: production: 2  staging: 1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("NOT ALLOWED  file /etc/app.conf (plan/a.yml#1): content"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("    -workers=2\n") && out.stdout.contains("    +workers=1\n"),
        "{}",
        out.stdout
    );
    // --allow adds to the file's list.
    site.cmd(["diff", "production", "staging", "--allow", "work*"])
        .run()
        .success();
    let out = site
        .cmd(["diff", "production", "staging", "--json"])
        .run()
        .code(1);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["not_allowed"], 2, "{doc}");
    let workers = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "workers")
        .unwrap();
    assert_eq!(
        (workers["type"].as_str(), workers["allowed"].as_bool()),
        (Some("variable"), Some(false))
    );
    // A host more in one environment is a difference too.
    site.write(
        "inventory.yml",
        "environments:\n  staging:\n    hosts:\n      stage1: {transport: local}\n  production:\n    hosts:\n      web1: {transport: local}\n      web2: {transport: local}\n",
    );
    let out = site
        .cmd(["diff", "production", "staging", "--allow", "workers"])
        .run()
        .code(1);
    assert!(
        out.stdout
            .contains("NOT ALLOWED  hosts: production has 2, staging has 1"),
        "{}",
        out.stdout
    );
}
