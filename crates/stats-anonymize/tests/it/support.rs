//! A source database loaded from Alaveteli's schema with generated data, a separate target
//! database, and the real binary pointed at both through an envdir.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use hmac::{Hmac, KeyInit as _, Mac as _};
use ops_testkit::{Cmd, Output, PgCluster, PgOptions, TempDir, pg_bindir};
use stats_anonymize::rules::{ColumnRule, Rules, TableRule};

/// The HMAC key the tests use.
pub(crate) const KEY: &str = "test-hmac-key-0123456789";

/// The binary under test.
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stats-anonymize"))
}

/// The fixtures of this crate's tests.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/alaveteli")
}

/// The built-in rules, parsed.
pub(crate) fn default_rules() -> Rules {
    Rules::parse(stats_anonymize::rules::ALAVETELI, "built-in rules").unwrap()
}

/// HMAC-SHA256 of `value` with [`KEY`], in hex: what a `hash` column must hold.
pub(crate) fn pseudonym(value: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A PostgreSQL 15 cluster with the source database `alaveteli` (structure.sql plus generated
/// data), the target database `stats`, and the reader role `metabase`.
pub(crate) struct Site {
    pub(crate) tmp: TempDir,
    pub(crate) pg: PgCluster,
    pub(crate) envdir: PathBuf,
}

impl Site {
    /// A site with `scale` requests.
    pub(crate) fn new(scale: u32) -> Self {
        let tmp = TempDir::new("stats");
        let pg = PgCluster::start(&PgOptions::default().setting("max_connections", "40"));
        for sql in [
            "CREATE DATABASE alaveteli",
            "CREATE DATABASE stats",
            "CREATE ROLE metabase LOGIN",
        ] {
            pg.psql("postgres", sql);
        }
        pg.psql_file("alaveteli", &fixtures().join("structure.sql"));
        let site = Self {
            envdir: tmp.subdir("env"),
            tmp,
            pg,
        };
        site.generate(scale);
        for (name, value) in [
            ("SOURCE_DATABASE_URL", site.pg.url("alaveteli")),
            ("TARGET_DATABASE_URL", site.pg.url("stats")),
            ("STATS_ANONYMIZE_HMAC_KEY", KEY.to_owned()),
            ("STATS_ANONYMIZE_READER_ROLE", "metabase".to_owned()),
        ] {
            site.set(name, &value);
        }
        site
    }

    /// Runs generate.sql with a scale.
    pub(crate) fn generate(&self, scale: u32) {
        let out = Command::new(pg_bindir().join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v"])
            .arg(format!("scale={scale}"))
            .arg("-d")
            .arg(self.pg.url("alaveteli"))
            .arg("-f")
            .arg(fixtures().join("generate.sql"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "generate.sql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a setting into the envdir (an empty value removes it for envdir's rules).
    pub(crate) fn set(&self, name: &str, value: &str) {
        std::fs::write(self.envdir.join(name), format!("{value}\n")).unwrap();
    }

    /// The tool with the site's envdir.
    pub(crate) fn tool(&self) -> Cmd {
        Cmd::new(binary()).arg("--envdir").arg(&self.envdir)
    }

    /// Runs the tool.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.tool().args(args.iter().copied()).run()
    }

    /// A connection to the source.
    pub(crate) fn source(&self) -> postgres::Client {
        self.pg.connect("alaveteli")
    }

    /// A connection to the target.
    pub(crate) fn target(&self) -> postgres::Client {
        self.pg.connect("stats")
    }

    /// A connection to the target as the reader role.
    pub(crate) fn reader(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!("postgresql://metabase@127.0.0.1:{}/stats", self.pg.port()),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// `pg_dump` of the whole target database, data included.
    pub(crate) fn dump_target(&self) -> String {
        let out = Command::new(pg_bindir().join("pg_dump"))
            .arg("-d")
            .arg(self.pg.url("stats"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The target's schemas, tables and rows, for "unchanged" comparisons: a dump without the
    /// lines that differ between two dumps of the same data.
    pub(crate) fn target_state(&self) -> String {
        self.dump_target()
            .lines()
            // pg_dump's \restrict lines carry a random key each time.
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The schemas of the target whose name starts with `stats`.
    pub(crate) fn target_schemas(&self) -> BTreeSet<String> {
        self.target()
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'stats%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Writes a rules file into the site's directory and returns its path.
    pub(crate) fn rules_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes the default rules with the one occurrence of `from` replaced by `to` as a rules
    /// file, and returns its path. A `from` the default rules no longer hold fails the test, rather
    /// than leaving the rules unchanged and the test testing nothing.
    pub(crate) fn default_rules_with(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let rules = stats_anonymize::rules::ALAVETELI;
        assert_eq!(
            rules.matches(from).count(),
            1,
            "{from:?} in the default rules"
        );
        self.rules_file(name, &rules.replace(from, to))
    }

    /// Fills every empty table of the source with one row of made-up values (foreign keys off),
    /// so that every table has a row to copy or to skip.
    pub(crate) fn fill_empty_tables(&self) {
        let mut source = self.source();
        let columns = source
            .query(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY c.relname, a.attnum",
                &[],
            )
            .unwrap();
        let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for row in columns {
            tables
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), row.get(2)));
        }
        let mut tx = source.transaction().unwrap();
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .unwrap();
        for (table, columns) in tables {
            let empty: bool = tx
                .query_one(
                    &format!("SELECT NOT EXISTS (SELECT 1 FROM public.\"{table}\")"),
                    &[],
                )
                .unwrap()
                .get(0);
            if !empty {
                continue;
            }
            let names: Vec<String> = columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
            let values: Vec<String> = columns
                .iter()
                .map(|(column, sql_type)| made_up(&table, column, sql_type))
                .collect();
            tx.batch_execute(&format!(
                "INSERT INTO public.\"{table}\" ({}) VALUES ({})",
                names.join(", "),
                values.join(", ")
            ))
            .unwrap();
        }
        tx.commit().unwrap();
    }

    /// Puts a canary (`cnry<n>x`) into every non-empty value of every text, JSON and bytea column
    /// the rules do not keep: all columns of skipped tables, and the columns of copied tables whose
    /// rule is not `keep`. Returns the canaries by column; panics if a column had no value to mark,
    /// since the test would then prove nothing about it.
    pub(crate) fn plant_canaries(&self, rules: &Rules) -> BTreeMap<String, String> {
        let mut source = self.source();
        let columns = source
            .query(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                        CASE WHEN a.atttypmod > 4 AND t.typname = 'varchar' THEN a.atttypmod - 4 END \
                 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
                   AND t.typname IN ('text', 'varchar', 'bpchar', 'json', 'jsonb', 'bytea') \
                 ORDER BY c.relname, a.attnum",
                &[],
            )
            .unwrap();
        let mut canaries = BTreeMap::new();
        let mut tx = source.transaction().unwrap();
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .unwrap();
        for row in columns {
            let (table, column, sql_type): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let limit: Option<i32> = row.get(3);
            let kept = match &rules.tables[&table] {
                TableRule::Copy(copy) => copy.columns[&column] == ColumnRule::Keep,
                TableRule::Skip { .. } => false,
            };
            if kept {
                continue;
            }
            let canary = format!("cnry{}x", canaries.len() + 1);
            let c = format!("\"{column}\"");
            let value = match sql_type.as_str() {
                "jsonb" => format!(
                    "CASE WHEN jsonb_typeof({c}) = 'object' THEN {c} || jsonb_build_object('canary', '{canary}') ELSE jsonb_build_array({c}, '{canary}') END"
                ),
                "json" => format!("jsonb_build_array({c}::jsonb, '{canary}')::json"),
                "bytea" => format!("{c} || convert_to(' {canary}', 'UTF8')"),
                _ => match limit {
                    Some(n) => format!(
                        "left({c}, {} ) || ' {canary}'",
                        n - 1 - i32::try_from(canary.len()).unwrap()
                    ),
                    None => format!("{c} || ' {canary}'"),
                },
            };
            let non_empty = if sql_type == "bytea" {
                format!("{c} IS NOT NULL AND length({c}) > 0")
            } else {
                format!("{c} IS NOT NULL AND {c}::text NOT IN ('', '{{}}')")
            };
            let marked = tx
                .execute(
                    &format!("UPDATE public.\"{table}\" SET {c} = {value} WHERE {non_empty}"),
                    &[],
                )
                .unwrap();
            assert!(
                marked > 0,
                "{table}.{column} has no value to put a canary in: generate.sql should fill it"
            );
            canaries.insert(canary, format!("{table}.{column}"));
        }
        tx.commit().unwrap();
        canaries
    }

    /// Marks the kept text of every request that must not be copied (`privmark<id>`).
    pub(crate) fn mark_private_requests(&self) {
        self.source()
            .batch_execute(
                "UPDATE info_requests SET title = title || ' privmark' || id, url_title = url_title || '_privmark' || id \
                 WHERE prominence NOT IN ('normal', 'backpage') OR id IN (SELECT info_request_id FROM embargoes)",
            )
            .unwrap();
    }
}

/// A value of a type for a made-up row.
fn made_up(table: &str, column: &str, sql_type: &str) -> String {
    let t = sql_type.to_ascii_lowercase();
    if t.starts_with("timestamp") || t == "date" {
        "now()".to_owned()
    } else if t == "boolean" {
        "true".to_owned()
    } else if ["integer", "bigint", "smallint"].contains(&t.as_str()) || t.starts_with("numeric") {
        "1".to_owned()
    } else if t == "jsonb" || t == "json" {
        "'{\"made_up\": \"value\"}'".to_owned()
    } else if t == "bytea" {
        "'\\x6d6164652d7570'::bytea".to_owned()
    } else if t == "inet" {
        "'192.0.2.1'".to_owned()
    } else {
        format!("left('made-up {table} {column}', 30)")
    }
}

/// Ids of a query's first column.
pub(crate) fn ids(client: &mut postgres::Client, sql: &str) -> BTreeSet<i64> {
    client
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}
