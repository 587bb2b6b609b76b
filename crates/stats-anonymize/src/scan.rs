//! The leak scan: the last check before the swap.
//!
//! Every text column the new copy holds as the source had it (`keep`, and `sql` expressions of a
//! text type) is searched, on the target server, for
//! - email addresses (except in the columns `scan.allow_emails` names);
//! - values sampled from the source's personal columns (`scan.samples`: users' names and emails),
//!   case-insensitively, ignoring values shorter than `scan.min_length`;
//! - the rules' own patterns (`scan.patterns`, PostgreSQL regular expressions, case-insensitive).
//!
//! One pass per table evaluates everything (`bool_or` over the rows); the sampled values go to the
//! server as bind parameters, never in a query's text, so a failed query cannot write them into the
//! server's log. A hit names the table, the column and what was found, never the value.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::pg::{ident, qualified};
use crate::plan::{ScanAs, TablePlan};
use crate::rules::{ColumnRef, Problems, Rules};

/// An email address, as a PostgreSQL advanced regular expression.
pub const EMAIL: &str = r"[[:alnum:]._%+-]+@[[:alnum:]-]+(\.[[:alnum:]-]+)*\.[[:alpha:]]{2,}";

/// Something found where it must not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The table of the copy.
    pub table: String,
    /// Its column.
    pub column: String,
    /// What was found: `an email address`, `a sampled value of users.name`, `scan.patterns[0]`.
    pub found: String,
}

impl Leak {
    /// `table.column (what); …`.
    pub fn list(leaks: &[Leak]) -> String {
        leaks
            .iter()
            .map(|l| format!("{}.{} ({})", l.table, l.column, l.found))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What the scan looks for.
#[derive(Clone, Default)]
pub struct Needles {
    /// Per sampled source column, an alternation of its escaped values (none when nothing long
    /// enough was sampled).
    samples: Vec<(ColumnRef, String)>,
    /// The rules' patterns.
    patterns: Vec<String>,
    /// Columns where emails are allowed.
    allow_emails: Vec<ColumnRef>,
    /// Columns where sampled values are allowed.
    allow_samples: Vec<ColumnRef>,
    /// How many values were sampled in all.
    pub sampled: usize,
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sampled values are personal data: never in a debug log.
        f.debug_struct("Needles")
            .field("sampled", &self.sampled)
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

/// `value` as a regular expression matching exactly it: in PostgreSQL's advanced regular
/// expressions a backslash before any non-alphanumeric character makes it literal. Letters beyond
/// ASCII are left alone (a backslash before a letter would be an escape).
pub fn regex_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for ch in value.chars() {
        if ch.is_ascii() && !ch.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Samples the source columns of `scan.samples` (inside the run's snapshot).
///
/// # Errors
/// When a query fails.
pub async fn sample(
    client: &tokio_postgres::Client,
    rules: &Rules,
    source_schema: &str,
) -> Result<Needles> {
    let mut needles = Needles {
        patterns: rules.scan.patterns.clone(),
        allow_emails: rules.scan.allow_emails.clone(),
        allow_samples: rules.scan.allow_samples.clone(),
        ..Needles::default()
    };
    let min_length = i32::try_from(rules.scan.min_length).unwrap_or(i32::MAX);
    let size = i64::from(rules.scan.sample_size);
    for column in &rules.scan.samples {
        let value = format!("btrim({}::text)", ident(&column.column));
        let sql = format!(
            "SELECT DISTINCT v FROM (SELECT {value} AS v FROM {} WHERE length({value}) >= $1 ORDER BY random() LIMIT $2) AS s",
            qualified(source_schema, &column.table)
        );
        let rows = client
            .query(&sql, &[&min_length, &size])
            .await
            .map_err(|e| Error::db(format!("sampling {column} for the leak scan"), &e))?;
        let values: Vec<String> = rows
            .iter()
            .map(|r| regex_literal(&r.get::<_, String>(0)))
            .collect();
        needles.sampled += values.len();
        if !values.is_empty() {
            needles.samples.push((column.clone(), values.join("|")));
        }
    }
    Ok(needles)
}

/// Checks that every pattern of the rules is a valid regular expression for PostgreSQL, before
/// anything is copied rather than after.
///
/// # Errors
/// [`Error::Rules`] naming the invalid patterns.
pub async fn check_patterns(client: &tokio_postgres::Client, rules: &Rules) -> Result<()> {
    let mut items = Vec::new();
    for (i, pattern) in rules.scan.patterns.iter().enumerate() {
        if client
            .query_one("SELECT '' ~* $1", &[pattern])
            .await
            .is_err()
        {
            items.push(format!(
                "scan.patterns[{i}]: not a valid PostgreSQL regular expression"
            ));
        }
    }
    if items.is_empty() {
        Ok(())
    } else {
        Err(Error::Rules(Problems {
            summary: "the scan patterns are invalid".to_owned(),
            items,
        }))
    }
}

/// One thing looked for in one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Email,
    Samples,
    Patterns,
}

/// The one query that scans a table: `bool_or` of every check on every scanned column.
#[derive(Debug)]
struct Query {
    sql: String,
    /// The bind parameters: regular expressions.
    params: Vec<String>,
    /// What each result column is.
    checks: Vec<(String, ScanAs, Check)>,
}

/// Builds the scan of one table, or nothing when no column is searched.
fn query(table: &TablePlan, schema: &str, needles: &Needles) -> Option<Query> {
    let mut params = vec![EMAIL.to_owned()];
    let samples = (!needles.samples.is_empty()).then(|| {
        params.push(whole_words(
            &needles
                .samples
                .iter()
                .map(|(_, alternation)| alternation.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        ));
        params.len()
    });
    let patterns = (!needles.patterns.is_empty()).then(|| {
        params.push(
            needles
                .patterns
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|"),
        );
        params.len()
    });
    let mut items = Vec::new();
    let mut checks = Vec::new();
    for column in &table.columns {
        let Some(how) = column.scan else { continue };
        let value = column_text(&column.name, how);
        let allowed = |list: &[ColumnRef]| {
            list.iter()
                .any(|a| a.table == table.name && a.column == column.name)
        };
        let mut check = |slot: usize, op: &str, check: Check| {
            items.push(format!("coalesce(bool_or({value} {op} ${slot}), false)"));
            checks.push((column.name.clone(), how, check));
        };
        if !allowed(&needles.allow_emails) {
            check(1, "~", Check::Email);
        }
        if let Some(slot) = samples.filter(|_| !allowed(&needles.allow_samples)) {
            check(slot, "~*", Check::Samples);
        }
        if let Some(slot) = patterns {
            check(slot, "~*", Check::Patterns);
        }
    }
    if items.is_empty() {
        return None;
    }
    // Every parameter must appear in the statement, even where every column allows it.
    for slot in 1..=params.len() {
        if !items.iter().any(|i| i.contains(&format!("${slot})"))) {
            items.push(format!("${slot}::text IS NULL"));
        }
    }
    Some(Query {
        sql: format!(
            "SELECT {} FROM {}",
            items.join(", "),
            qualified(schema, &table.name)
        ),
        params,
        checks,
    })
}

/// Scans one table of the copy in `schema`; returns what was found.
///
/// # Errors
/// When a query fails.
pub async fn scan_table(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    schema: &str,
    needles: &Needles,
) -> Result<Vec<Leak>> {
    let Some(query) = query(table, schema, needles) else {
        return Ok(Vec::new());
    };
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = query
        .params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let row = client
        .query_one(&query.sql, &params)
        .await
        .map_err(|e| Error::db(format!("leak scan of {}", table.name), &e))?;
    let mut leaks = Vec::new();
    for (i, (column, how, check)) in query.checks.iter().enumerate() {
        if row.get::<_, bool>(i) {
            leaks.extend(identify(client, table, schema, needles, column, *how, *check).await?);
        }
    }
    Ok(leaks)
}

/// Says what a hit was: which sampled column or which pattern.
async fn identify(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    schema: &str,
    needles: &Needles,
    column: &str,
    how: ScanAs,
    check: Check,
) -> Result<Vec<Leak>> {
    let leak = |found: String| Leak {
        table: table.name.clone(),
        column: column.to_owned(),
        found,
    };
    let mut leaks = Vec::new();
    match check {
        Check::Email => leaks.push(leak("an email address".to_owned())),
        Check::Samples => {
            for (source, alternation) in &needles.samples {
                let regex = whole_words(alternation);
                if matches(client, table, schema, column, how, &regex).await? {
                    leaks.push(leak(format!("a value of {source} sampled from the source")));
                }
            }
        }
        Check::Patterns => {
            for (n, pattern) in needles.patterns.iter().enumerate() {
                if matches(client, table, schema, column, how, pattern).await? {
                    leaks.push(leak(format!("scan.patterns[{n}]")));
                }
            }
        }
    }
    Ok(leaks)
}

/// An alternation matched only as whole words: not preceded or followed by a letter, digit or
/// underscore (so a sampled "Ann Lee" does not match "Anne Leeds"), whatever the edges of the
/// values are (`\m` and `\M` would need them to be word characters).
fn whole_words(alternation: &str) -> String {
    format!("(^|[^[:alnum:]_])(?:{alternation})([^[:alnum:]_]|$)")
}

/// `column` as text for the scan.
fn column_text(column: &str, how: ScanAs) -> String {
    match how {
        ScanAs::Text => format!("{}::text", ident(column)),
        ScanAs::Bytes => format!("encode({}, 'escape')", ident(column)),
    }
}

/// Whether `regex` matches some value of one column (to say which needle a hit was).
async fn matches(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    schema: &str,
    column: &str,
    how: ScanAs,
    regex: &str,
) -> Result<bool> {
    let mut sql = String::new();
    let _ = write!(
        sql,
        "SELECT coalesce(bool_or({} ~* $1), false) FROM {}",
        column_text(column, how),
        qualified(schema, &table.name)
    );
    let row = client
        .query_one(&sql, &[&regex])
        .await
        .map_err(|e| Error::db(format!("leak scan of {}", table.name), &e))?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_every_ascii_punctuation() {
        assert_eq!(regex_literal("a.b+c@d"), r"a\.b\+c\@d");
        assert_eq!(regex_literal("O'Brien (Jr)"), r"O\'Brien\ \(Jr\)");
        assert_eq!(regex_literal("Zoë Ñ"), r"Zoë\ Ñ");
    }

    #[test]
    fn one_query_checks_every_scanned_column() {
        let rules = crate::rules::Rules::parse(
            r#"
version = 1
[scan]
allow_emails = ["t.contact"]
[tables.t]
action = "copy"
columns = { id = "keep", title = "keep", contact = "keep", secret = "hash", data = "keep" }
"#,
            "test rules",
        )
        .unwrap();
        let mut schema = crate::schema::Schema {
            name: "public".to_owned(),
            ..Default::default()
        };
        let column = |name: &str, sql_type: &str| crate::schema::Column {
            name: name.to_owned(),
            sql_type: sql_type.to_owned(),
            builtin: true,
            not_null: false,
        };
        schema.tables.insert(
            "t".to_owned(),
            crate::schema::Table {
                name: "t".to_owned(),
                columns: vec![
                    column("id", "integer"),
                    column("title", "text"),
                    column("contact", "character varying"),
                    column("secret", "text"),
                    column("data", "bytea"),
                ],
                ..Default::default()
            },
        );
        let plan = crate::plan::Plan::new(&rules, &schema);
        let needles = Needles {
            samples: vec![(
                ColumnRef {
                    table: "users".to_owned(),
                    column: "name".to_owned(),
                },
                "Jane\\ Doe".to_owned(),
            )],
            allow_emails: rules.scan.allow_emails.clone(),
            ..Needles::default()
        };
        let q = query(&plan.tables[0], "s", &needles).unwrap();
        assert_eq!(
            q.sql,
            "SELECT coalesce(bool_or(\"title\"::text ~ $1), false), coalesce(bool_or(\"title\"::text ~* $2), false), \
             coalesce(bool_or(\"contact\"::text ~* $2), false), \
             coalesce(bool_or(encode(\"data\", 'escape') ~ $1), false), coalesce(bool_or(encode(\"data\", 'escape') ~* $2), false) \
             FROM \"s\".\"t\""
        );
        assert_eq!(
            q.params[1],
            "(^|[^[:alnum:]_])(?:Jane\\ Doe)([^[:alnum:]_]|$)"
        );
        assert_eq!(q.checks.len(), 5);
        assert!(q.checks.iter().all(|(c, _, _)| c != "secret" && c != "id"));
    }

    #[test]
    fn leaks_are_listed_without_values() {
        let leaks = [
            Leak {
                table: "users".to_owned(),
                column: "about_me".to_owned(),
                found: "an email address".to_owned(),
            },
            Leak {
                table: "comments".to_owned(),
                column: "body".to_owned(),
                found: "scan.patterns[0]".to_owned(),
            },
        ];
        assert_eq!(
            Leak::list(&leaks),
            "users.about_me (an email address); comments.body (scan.patterns[0])"
        );
        let debug = format!(
            "{:?}",
            Needles {
                samples: vec![(
                    ColumnRef {
                        table: "users".to_owned(),
                        column: "name".to_owned()
                    },
                    "Jane\\ Doe".to_owned()
                )],
                sampled: 1,
                ..Needles::default()
            }
        );
        assert!(!debug.contains("Jane"), "{debug}");
    }
}
