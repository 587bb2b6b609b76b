//! `postgres_setting` against a real PostgreSQL 15 cluster: ALTER SYSTEM, reload, and a
//! restart flagged (never done) for settings that need one.

use ops_testkit::{PgCluster, PgOptions};

use crate::support::Site;

#[test]
fn settings_are_altered_reloaded_and_left_alone_when_equal() {
    let pg = PgCluster::start(&PgOptions::default());
    let site = Site::new("deploy-postgres");
    site.write(
        "group_vars/all/vars.yml",
        &format!("pg_port: {}\narchive_timeout: 60\n", pg.port()),
    );
    let setting = |name: &str, value: &str, notify: &str| {
        format!(
            "  - postgres_setting: {name}\n    value: \"{value}\"\n    host: 127.0.0.1\n    port: \"{{{{ pg_port }}}}\"\n{notify}"
        )
    };
    site.write(
        "plan/pg.yml",
        &format!(
            "resources:\n{}{}{}",
            setting("archive_command", "wal-archive push %p", ""),
            setting("archive_timeout", "{{ archive_timeout }}", ""),
            setting("archive_mode", "on", "")
        ),
    );
    let check = site.apply_live(&["--check"]).success();
    assert!(check.stdout.contains("would change postgres_setting archive_timeout  (set to \"60\" (not set in postgresql.auto.conf))"), "{}", check.stdout);
    assert_eq!(
        pg.psql("postgres", "SHOW archive_timeout").trim(),
        "0",
        "check mode changed nothing"
    );

    let first = site.apply_live(&[]).success();
    assert!(first.stdout.contains("0 ok, 3 changed"), "{}", first.stdout);
    assert!(
        first.stdout.contains(
            "archive_mode  (set to \"on\" (not set in postgresql.auto.conf); restart pending"
        ),
        "{}",
        first.stdout
    );
    // Reloaded: the server uses the new values that do not need a restart.
    assert_eq!(pg.psql("postgres", "SHOW archive_timeout").trim(), "1min");
    // (SHOW and pg_settings say "(disabled)" while archive_mode is off: read what was loaded.)
    let loaded = pg.psql(
        "postgres",
        "SELECT setting FROM pg_file_settings WHERE name = 'archive_command' AND applied",
    );
    assert_eq!(loaded.trim(), "wal-archive push %p");
    assert_eq!(
        pg.psql("postgres", "SHOW archive_mode").trim(),
        "off",
        "deploy never restarts the server"
    );
    let auto = std::fs::read_to_string(pg.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("archive_command = 'wal-archive push %p'"),
        "{auto}"
    );

    let second = site.apply_live(&[]).success();
    assert!(
        second.stdout.contains("3 ok, 0 changed"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("archive_mode  (restart pending"),
        "{}",
        second.stdout
    );

    // A setting PostgreSQL does not have fails the resource, with the name.
    site.write(
        "plan/pg.yml",
        &format!("resources:\n{}", setting("archive_timout", "60", "")),
    );
    let out = site.apply_live(&[]).code(1);
    assert!(
        out.stdout
            .contains("PostgreSQL has no setting \"archive_timout\""),
        "{}",
        out.stdout
    );
}
