//! The command line: common commands, secrets kept out of argv, the built-in rules, `check`.

use ops_testkit::Cmd;

use crate::support::{binary, fixtures};

#[test]
fn common_commands() {
    ops_testkit::assert_common_commands(binary(), "stats-anonymize");
}

#[test]
fn database_urls_with_a_password_are_refused_on_the_command_line() {
    for args in [
        [
            "run",
            "--source",
            "postgresql://stats:hunter2@db.example.org/alaveteli",
        ],
        [
            "run",
            "--target",
            "host=db.example.org password=hunter2 dbname=stats",
        ],
        [
            "check",
            "--source",
            "postgresql://db.example.org/alaveteli?password=hunter2",
        ],
    ] {
        let out = Cmd::new(binary())
            .args(args)
            .env("SOURCE_DATABASE_URL", "postgresql://localhost/a")
            .env("TARGET_DATABASE_URL", "postgresql://localhost/b")
            .run()
            .code(2)
            .one_line_error()
            .stderr_has("must not carry a password");
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    }
    // From the environment a password is fine, and `config show` redacts it.
    let out = Cmd::new(binary())
        .args(["config", "show", "--json"])
        .env(
            "SOURCE_DATABASE_URL",
            "postgresql://stats:hunter2@db.example.org/alaveteli",
        )
        .env("STATS_ANONYMIZE_HMAC_KEY", "a-very-secret-key-123")
        .run()
        .success();
    assert!(!out.stdout.contains("hunter2") && !out.stdout.contains("a-very-secret"));
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["SOURCE_DATABASE_URL"]["value"], "<redacted>");
    assert_eq!(json["STATS_ANONYMIZE_HMAC_KEY"]["value"], "<redacted>");
    assert_eq!(json["STATS_ANONYMIZE_TARGET_SCHEMA"]["value"], "stats");
}

#[test]
fn an_unparsable_url_is_reported_without_quoting_it() {
    Cmd::new(binary())
        .args(["run", "--dry-run"])
        .env("SOURCE_DATABASE_URL", "postgresql://u:s3cret@[::1")
        .run()
        .code(3)
        .one_line_error()
        .stderr_has("setting SOURCE_DATABASE_URL (from environment (SOURCE_DATABASE_URL)): not a PostgreSQL URL");
}

#[test]
fn a_short_hmac_key_is_refused_before_connecting() {
    let out = Cmd::new(binary())
        .args(["run"])
        .env("SOURCE_DATABASE_URL", "postgresql://localhost:1/a")
        .env("TARGET_DATABASE_URL", "postgresql://localhost:1/b")
        .env("STATS_ANONYMIZE_HMAC_KEY", "short")
        .run()
        .code(3)
        .one_line_error()
        .stderr_has("STATS_ANONYMIZE_HMAC_KEY")
        .stderr_has("at least 16 characters");
    assert!(!out.stderr.contains("short\""), "{}", out.stderr);
    Cmd::new(binary())
        .args(["run"])
        .env("SOURCE_DATABASE_URL", "postgresql://localhost:1/a")
        .env("TARGET_DATABASE_URL", "postgresql://localhost:1/b")
        .run()
        .code(3)
        .stderr_has("STATS_ANONYMIZE_HMAC_KEY")
        .stderr_has("not set, and the rules hash columns");
}

#[test]
fn the_same_database_as_source_and_target_is_refused() {
    Cmd::new(binary())
        .args(["run"])
        .env(
            "SOURCE_DATABASE_URL",
            "postgresql://stats@localhost/alaveteli",
        )
        .env("TARGET_DATABASE_URL", "host=localhost dbname=alaveteli")
        .env("STATS_ANONYMIZE_HMAC_KEY", "0123456789abcdef")
        .run()
        .code(2)
        .stderr_has("name the same database");
}

#[test]
fn default_rules_prints_the_shipped_file() {
    let out = Cmd::new(binary()).arg("default-rules").run().success();
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/alaveteli.toml"),
    )
    .unwrap();
    assert_eq!(out.stdout, file);
}

#[test]
fn the_default_rules_cover_the_alaveteli_schema_exactly() {
    let structure = fixtures().join("structure.sql");
    Cmd::new(binary())
        .args(["check", "--schema"])
        .arg(&structure)
        .run()
        .success()
        .stdout_has("the built-in rules match schema public of")
        .stdout_has("79 tables (25 copied, 54 skipped)");
    // Every table of the schema has a rule, and every rule a table: compare the names directly.
    let schema = stats_anonymize::schema::parse_dump(
        &std::fs::read_to_string(&structure).unwrap(),
        "public",
    )
    .unwrap();
    let rules = crate::support::default_rules();
    assert!(schema.tables.keys().eq(rules.tables.keys()));
}

#[test]
fn check_reports_new_and_vanished_tables_and_columns_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let structure = std::fs::read_to_string(fixtures().join("structure.sql")).unwrap();
    let changed = structure
        .replace(
            "    last_sign_in_at timestamp without time zone\n);",
            "    last_sign_in_at timestamp without time zone,\n    phone_number text\n);",
        )
        .replace("    locale text DEFAULT ''::text NOT NULL,\n", "")
        .replace(
            "CREATE TABLE public.holidays (",
            "CREATE TABLE public.surveys (\n    id integer NOT NULL\n);\n\nCREATE TABLE public.holidays (",
        )
        .replace("CREATE TABLE public.spam_addresses (", "CREATE TABLE public.spam_addresses_old (");
    assert_ne!(changed, structure);
    let path = tmp.path().join("structure.sql");
    std::fs::write(&path, changed).unwrap();
    let out = Cmd::new(binary())
        .args(["check", "--schema"])
        .arg(&path)
        .run()
        .code(12)
        .one_line_error()
        .stderr_has("the built-in rules do not match schema public of");
    let problems: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        problems,
        [
            "table spam_addresses_old is not in the rules (add [tables.spam_addresses_old] with action = \"copy\" or \"skip\")",
            "table surveys is not in the rules (add [tables.surveys] with action = \"copy\" or \"skip\")",
            "column users.phone_number is not in the rules (add it to [tables.users.columns])",
            "column comments.locale is in the rules but not in the source (remove its rule)",
            "table spam_addresses is in the rules but not in the source (remove its rule)",
        ]
    );
    assert!(out.stderr.contains("5 problems"), "{}", out.stderr);
}

#[test]
fn invalid_rules_files_are_input_errors_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rules.toml");
    let rules = stats_anonymize::rules::ALAVETELI.replace(
        "[tables.comments.columns]\nid = \"keep\"",
        "[tables.comments.columns]\nid = \"kepp\"",
    );
    std::fs::write(&path, rules).unwrap();
    Cmd::new(binary())
        .args(["check", "--schema"])
        .arg(fixtures().join("structure.sql"))
        .arg("--rules")
        .arg(&path)
        .run()
        .code(12)
        .one_line_error()
        .stderr_has("tables.comments.columns.id: \"kepp\" is not a rule")
        .stdout_has("tables.comments.columns.id");
    Cmd::new(binary())
        .args(["check", "--schema"])
        .arg(fixtures().join("structure.sql"))
        .arg("--rules")
        .arg(tmp.path().join("missing.toml"))
        .run()
        .code(10)
        .one_line_error();
}
