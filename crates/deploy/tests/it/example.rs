//! examples/alaveteli: the complete configuration of the site, applied to staging under
//! `--root` twice, and production and staging compared with `deploy diff`.

use std::path::PathBuf;
use std::process::Command;

use ops_testkit::{Cmd, TempDir};

use crate::support::deploy;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/alaveteli")
}

fn cmd(args: &[&str]) -> Cmd {
    Cmd::new(deploy())
        .arg("--dir")
        .arg(example())
        .args(args)
        .env(
            "ANSIBLE_VAULT_PASSWORD_FILE",
            example().join("vault-password.example"),
        )
}

/// The vault secrets of the example's staging environment.
const STAGING_SECRETS: [&str; 3] = [
    "staging-example-db-password",
    "staging-example-aws-secret-key",
    "staging-example-restic-password",
];

/// A local git repository standing for Alaveteli's, and the overrides file pointing at it.
fn local_release(tmp: &TempDir) -> PathBuf {
    // The release comes from a local repository instead of GitHub, and the swap file is small:
    // the only overrides, given as ansible's `-e @file` would.
    let repo = tmp.path().join("alaveteli.git");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.org"])
            .args(args)
            .current_dir(&repo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    std::fs::create_dir_all(repo.join("config")).unwrap();
    git(&["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(
        repo.join("config/general.yml-example"),
        "SITE_NAME: example\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "alaveteli"]);
    let overrides = tmp.path().join("test-overrides.yml");
    std::fs::write(
        &overrides,
        format!(
            "alaveteli_repo: {}\nalaveteli_ref: main\nswap_size: 1M\n",
            repo.display()
        ),
    )
    .unwrap();
    overrides
}

#[test]
fn staging_applies_under_a_root_twice_and_the_second_run_changes_nothing() {
    let tmp = TempDir::new("deploy-example");
    let overrides = local_release(&tmp);
    let root = tmp.path().join("root");
    let args = [
        "apply",
        "staging",
        "--local",
        "--root",
        root.to_str().unwrap(),
        "-e",
        overrides.to_str().unwrap(),
    ];
    let first = cmd(&args).run().success();
    assert!(first.stdout.contains(" 0 failed"), "{}", first.stdout);
    assert!(!first.stdout.contains("0 changed"), "{}", first.stdout);
    // What the site's other tools read.
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("etc/wal-archive.d/WALG_S3_PREFIX"),
        "s3://foi-backups/staging/db\n"
    );
    assert_eq!(
        read("etc/wal-archive.d/AWS_SECRET_ACCESS_KEY"),
        "staging-example-aws-secret-key\n"
    );
    assert_eq!(
        read("etc/email-backup.d/RESTIC_PASSWORD"),
        "staging-example-restic-password\n"
    );
    assert!(read("etc/cron.d/wal-archive").contains(
        "postgres /usr/local/bin/wal-archive --envdir /etc/wal-archive.d --log-format json drill"
    ));
    assert!(read("etc/cron.d/wal-archive").contains("json verify"));
    assert!(
        read("etc/cron.d/stats-anonymize")
            .contains("stats-anonymize --envdir /etc/stats-anonymize.d --log-format json run")
    );
    assert!(
        read("etc/cron.d/email-backup")
            .contains("email-backup --envdir /etc/email-backup.d --log-format json backup")
    );
    assert!(read("etc/postfix/master.cf").contains("argv=/var/www/foi/current/script/mailin"));
    assert!(read("etc/postfix/main.cf").contains("relayhost = [mail-catcher.example.org]:2525"));
    assert!(read("etc/nginx/sites-available/foi").contains("server_name staging.foi.example.org;"));
    assert!(read("etc/dovecot/conf.d/99-alaveteli.conf").contains("protocols = pop3"));
    assert!(read("etc/systemd/system/metabase.service").contains("metabase-0.50.20.jar"));
    assert!(
        read("var/www/foi/shared/config/general.yml")
            .contains("DOMAIN: \"staging.foi.example.org\"")
    );
    assert!(
        read("var/www/foi/shared/config/database.yml")
            .contains("password: \"staging-example-db-password\"")
    );
    assert!(
        std::fs::read_link(root.join("var/www/foi/current"))
            .unwrap()
            .starts_with("/var/www/foi/releases/")
    );
    for secret in STAGING_SECRETS {
        assert!(
            !first.stdout.contains(secret) && !first.stderr.contains(secret),
            "{secret} shown"
        );
    }
    // PostgreSQL's archive settings are in the plan (applied on the host, skipped under --root).
    let plan = cmd(&[
        "apply",
        "staging",
        "--local",
        "--root",
        root.to_str().unwrap(),
        "-e",
        overrides.to_str().unwrap(),
        "--json",
    ])
    .run()
    .success();
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["summary"]["changed"], 0, "second run: {}", plan.stdout);
    assert_eq!(doc["summary"]["failed"], 0);
    let results = doc["hosts"][0]["results"].as_array().unwrap();
    for name in ["archive_command", "archive_timeout"] {
        assert!(
            results
                .iter()
                .any(|r| r["kind"] == "postgres_setting" && r["name"] == name),
            "{name}"
        );
    }
}

#[test]
fn production_and_staging_differ_only_in_allowed_variables() {
    let out = cmd(&["diff", "production", "staging", "--json"])
        .run()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["not_allowed"], 0, "{}", out.stdout);
    assert!(
        doc["differences"].as_array().unwrap().len() > 10,
        "{}",
        out.stdout
    );
    for secret in STAGING_SECRETS {
        assert!(!out.stdout.contains(secret), "{secret} shown");
    }
}
