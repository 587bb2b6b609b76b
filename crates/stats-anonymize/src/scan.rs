//! The leak scan: the last check before the swap.
//!
//! Every text column the new copy holds as the source had it (`keep`, and `sql` expressions of a
//! text type: not hashes, booleans, dates or counts) is read back from the target and searched for
//! - email addresses (except in the columns `scan.allow_emails` names);
//! - values sampled from the source's personal columns (`scan.samples`: users' names and emails),
//!   case-insensitively and as whole words, ignoring values shorter than `scan.min_length` (except
//!   in the columns `scan.allow_samples` names);
//! - the rules' own patterns (`scan.patterns`, regular expressions, case-insensitive).
//!
//! The search runs here rather than in PostgreSQL: its regular expressions took 38 s of a 42 s run
//! over a 200,000-row copy with a few hundred sampled names (an alternation that large is slow in
//! its engine), where one Aho-Corasick automaton and one DFA take a fraction of a second. Reading
//! the copy back costs little: it holds only what the rules keep. The rows stream through (binary
//! `COPY`), so memory stays flat. A hit names the table, the column and what was found, never the
//! value.

use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::{Buf as _, BytesMut};
use futures_util::TryStreamExt as _;
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::error::{Error, Result};
use crate::pg::{ident, qualified};
use crate::plan::{ScanAs, TablePlan};
use crate::rules::{ColumnRef, Rules};

/// An email address: a local part, `@`, a domain with a dot and a top-level name of letters.
pub const EMAIL: &str = r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}";

/// Something found where it must not be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leak {
    /// The table of the copy.
    pub table: String,
    /// Its column.
    pub column: String,
    /// What was found: `an email address`, `a value of users.name sampled from the source`,
    /// `scan.patterns[0]`.
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

/// The rules' patterns, compiled: case-insensitive.
///
/// # Errors
/// The index and message of each pattern that does not compile.
pub fn compile_patterns(patterns: &[String]) -> Result<Option<RegexSet>, Vec<String>> {
    let mut problems = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        if let Err(e) = regex::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .build()
        {
            let message = e.to_string();
            let last = message.lines().last().unwrap_or_default().trim().to_owned();
            problems.push(format!(
                "scan.patterns[{i}]: not a valid regular expression ({last})"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if patterns.is_empty() {
        return Ok(None);
    }
    RegexSetBuilder::new(patterns)
        .case_insensitive(true)
        .build()
        .map(Some)
        .map_err(|e| vec![format!("scan.patterns: {e}")])
}

/// What the scan looks for.
pub struct Needles {
    email: Regex,
    /// The sampled values, lower-cased, and for each the source column it came from.
    samples: Option<(AhoCorasick, Vec<usize>)>,
    sample_columns: Vec<ColumnRef>,
    patterns: Option<RegexSet>,
    allow_emails: Vec<ColumnRef>,
    allow_samples: Vec<ColumnRef>,
    /// How many values were sampled in all.
    pub sampled: usize,
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sampled values are personal data: never in a debug log.
        f.debug_struct("Needles")
            .field("sampled", &self.sampled)
            .finish_non_exhaustive()
    }
}

/// What one value holds that it must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hit {
    Email,
    Sample(usize),
    Pattern(usize),
}

impl Needles {
    /// The needles from the rules and the values sampled from each source column.
    ///
    /// # Panics
    /// If the rules' patterns do not compile, which [`Rules::parse`] has checked.
    pub fn new(rules: &Rules, by_column: Vec<(ColumnRef, Vec<String>)>) -> Self {
        let mut values = Vec::new();
        let mut origin = Vec::new();
        let mut sample_columns = Vec::new();
        for (column, column_values) in by_column {
            for value in column_values {
                let value = value.to_lowercase();
                if !value.trim().is_empty() {
                    values.push(value);
                    origin.push(sample_columns.len());
                }
            }
            sample_columns.push(column);
        }
        let count = values.len();
        let samples = (!values.is_empty()).then(|| {
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&values)
                .expect("an automaton of a few thousand strings builds");
            (automaton, origin)
        });
        Self {
            email: Regex::new(EMAIL).expect("the email expression compiles"),
            samples,
            sample_columns,
            patterns: compile_patterns(&rules.scan.patterns)
                .expect("patterns are checked when the rules are parsed"),
            allow_emails: rules.scan.allow_emails.clone(),
            allow_samples: rules.scan.allow_samples.clone(),
            sampled: count,
        }
    }

    /// Every hit in one value. `emails` and `samples` say whether those are looked for.
    fn check(&self, value: &str, emails: bool, samples: bool, hits: &mut BTreeSet<Hit>) {
        if emails && self.email.is_match(value) {
            hits.insert(Hit::Email);
        }
        if samples && let Some((automaton, origin)) = &self.samples {
            let lower = value.to_lowercase();
            for m in automaton.find_overlapping_iter(&lower) {
                if whole_word(&lower, m.start(), m.end()) {
                    hits.insert(Hit::Sample(origin[m.pattern().as_usize()]));
                }
            }
        }
        if let Some(patterns) = &self.patterns {
            for i in &patterns.matches(value) {
                hits.insert(Hit::Pattern(i));
            }
        }
    }

    fn describe(&self, hit: Hit) -> String {
        match hit {
            Hit::Email => "an email address".to_owned(),
            Hit::Sample(i) => format!(
                "a value of {} sampled from the source",
                self.sample_columns[i]
            ),
            Hit::Pattern(i) => format!("scan.patterns[{i}]"),
        }
    }
}

/// True when the text around `start..end` is not a letter, a digit or an underscore: a sampled
/// "ann lee" is found in "to Ann Lee." but not in "Joanne Leeds".
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    !text[..start].chars().next_back().is_some_and(word)
        && !text[end..].chars().next().is_some_and(word)
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
    let min_length = i32::try_from(rules.scan.min_length.max(1)).unwrap_or(i32::MAX);
    let size = i64::from(rules.scan.sample_size);
    let mut sampled = Vec::new();
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
        sampled.push((
            column.clone(),
            rows.iter().map(|r| r.get::<_, String>(0)).collect(),
        ));
    }
    Ok(Needles::new(rules, sampled))
}

/// `column` as text for the scan.
fn column_text(column: &str, how: ScanAs) -> String {
    match how {
        ScanAs::Text => format!("{}::text", ident(column)),
        ScanAs::Bytes => format!("encode({}, 'escape')", ident(column)),
    }
}

/// Scans one table of the copy in `schema`; returns what was found.
///
/// # Errors
/// When the copy cannot be read back.
pub async fn scan_table(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    schema: &str,
    needles: &Needles,
) -> Result<Vec<Leak>> {
    let allowed = |list: &[ColumnRef], column: &str| {
        list.iter()
            .any(|a| a.table == table.name && a.column == column)
    };
    // (column, look for emails, look for samples)
    let columns: Vec<(&str, bool, bool, String)> = table
        .columns
        .iter()
        .filter_map(|c| {
            c.scan.map(|how| {
                (
                    c.name.as_str(),
                    !allowed(&needles.allow_emails, &c.name),
                    !allowed(&needles.allow_samples, &c.name),
                    column_text(&c.name, how),
                )
            })
        })
        .collect();
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let select: Vec<&str> = columns.iter().map(|c| c.3.as_str()).collect();
    let sql = format!(
        "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
        select.join(", "),
        qualified(schema, &table.name)
    );
    let failed = |e: tokio_postgres::Error| Error::db(format!("leak scan of {}", table.name), &e);
    let stream = client.copy_out(&sql).await.map_err(failed)?;
    futures_util::pin_mut!(stream);
    let mut reader = BinaryCopy::default();
    let mut hits: Vec<BTreeSet<Hit>> = vec![BTreeSet::new(); columns.len()];
    while let Some(chunk) = stream.try_next().await.map_err(failed)? {
        reader.push(&chunk);
        while let Some(row) = reader.next_row().map_err(|message| Error::Database {
            context: format!("leak scan of {}", table.name),
            message,
        })? {
            for ((field, (_, emails, samples, _)), found) in
                row.iter().zip(&columns).zip(hits.iter_mut())
            {
                if let Some(bytes) = field {
                    needles.check(&String::from_utf8_lossy(bytes), *emails, *samples, found);
                }
            }
        }
    }
    Ok(columns
        .iter()
        .zip(hits)
        .flat_map(|((column, ..), found)| {
            found.into_iter().map(|hit| Leak {
                table: table.name.clone(),
                column: (*column).to_owned(),
                found: needles.describe(hit),
            })
        })
        .collect())
}

/// Reads PostgreSQL's binary `COPY` format as it streams in: a header, then per row a field count
/// and each field's length (-1 for NULL) and bytes, then -1
/// (<https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.4>).
#[derive(Default)]
struct BinaryCopy {
    buffer: BytesMut,
    header_read: bool,
    done: bool,
}

/// The signature that starts a binary `COPY` stream.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl BinaryCopy {
    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete row, or `None` until more bytes arrive (or after the end).
    fn next_row(&mut self) -> std::result::Result<Option<Vec<Option<Vec<u8>>>>, String> {
        if self.done {
            return Ok(None);
        }
        if !self.header_read {
            if self.buffer.len() < SIGNATURE.len() + 8 {
                return Ok(None);
            }
            if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
                return Err("unexpected COPY data (no binary signature)".to_owned());
            }
            let extension = u32::from_be_bytes(self.buffer[15..19].try_into().expect("4 bytes"));
            let header = 19 + extension as usize;
            if self.buffer.len() < header {
                return Ok(None);
            }
            self.buffer.advance(header);
            self.header_read = true;
        }
        let data = &self.buffer[..];
        if data.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([data[0], data[1]]);
        if fields == -1 {
            self.done = true;
            return Ok(None);
        }
        let mut at = 2;
        let mut row = Vec::with_capacity(usize::try_from(fields).unwrap_or(0));
        for _ in 0..fields {
            let Some(length) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let length = i32::from_be_bytes(length.try_into().expect("4 bytes"));
            at += 4;
            if length < 0 {
                row.push(None);
                continue;
            }
            let end = at + usize::try_from(length).unwrap_or(0);
            let Some(bytes) = data.get(at..end) else {
                return Ok(None);
            };
            row.push(Some(bytes.to_vec()));
            at = end;
        }
        self.buffer.advance(at);
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(scan: &str) -> Rules {
        Rules::parse(
            &format!("version = 1\n[scan]\n{scan}\n[tables.t]\naction = \"copy\"\ncolumns = {{ id = \"keep\", a = \"keep\" }}\n"),
            "test rules",
        )
        .unwrap()
    }

    fn hits(needles: &Needles, value: &str) -> Vec<String> {
        let mut found = BTreeSet::new();
        needles.check(value, true, true, &mut found);
        found.into_iter().map(|h| needles.describe(h)).collect()
    }

    fn users(column: &str) -> ColumnRef {
        ColumnRef {
            table: "users".to_owned(),
            column: column.to_owned(),
        }
    }

    #[test]
    fn finds_emails_sampled_values_and_patterns() {
        let needles = Needles::new(
            &rules("patterns = ['\\bsecret-\\d+\\b', 'ni\\s+number']"),
            vec![
                (
                    users("name"),
                    vec!["Ann Lee".to_owned(), "Zoë Ñúñez".to_owned()],
                ),
                (users("email"), vec!["ann.lee@mail.example.net".to_owned()]),
            ],
        );
        assert_eq!(needles.sampled, 3);
        assert!(hits(&needles, "Spending on roads in 2019").is_empty());
        assert_eq!(
            hits(&needles, "write to x.y+z@example.co.uk"),
            ["an email address"]
        );
        assert_eq!(
            hits(&needles, "A letter to ANN LEE, about roads"),
            ["a value of users.name sampled from the source"]
        );
        // Whole words only.
        assert!(hits(&needles, "Joanne Leeds council").is_empty());
        assert!(hits(&needles, "Ann Lees").is_empty());
        assert_eq!(
            hits(&needles, "from zoë ñúñez"),
            ["a value of users.name sampled from the source"]
        );
        assert_eq!(
            hits(&needles, "ann.lee@mail.example.net"),
            [
                "an email address",
                "a value of users.email sampled from the source"
            ]
        );
        assert_eq!(hits(&needles, "code SECRET-42 here"), ["scan.patterns[0]"]);
        assert_eq!(hits(&needles, "NI  number"), ["scan.patterns[1]"]);
        assert!(hits(&needles, "secret-42x").is_empty());
        let mut found = BTreeSet::new();
        needles.check("ann.lee@mail.example.net", false, false, &mut found);
        assert!(found.is_empty(), "emails and samples can be allowed");
    }

    #[test]
    fn invalid_patterns_are_named() {
        let problems = compile_patterns(&["ok".to_owned(), "(unclosed".to_owned()]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("scan.patterns[1]: not a valid regular expression ("),
            "{problems:?}"
        );
    }

    #[test]
    fn reads_binary_copy_in_any_chunking() {
        let mut stream = Vec::new();
        stream.extend_from_slice(SIGNATURE);
        stream.extend_from_slice(&0u32.to_be_bytes());
        stream.extend_from_slice(&4u32.to_be_bytes());
        stream.extend_from_slice(b"ext!");
        for (a, b) in [(Some("first"), None), (Some(""), Some("ünïcode"))] {
            stream.extend_from_slice(&2i16.to_be_bytes());
            for field in [a, b] {
                match field {
                    Some(text) => {
                        stream.extend_from_slice(&i32::try_from(text.len()).unwrap().to_be_bytes());
                        stream.extend_from_slice(text.as_bytes());
                    }
                    None => stream.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        for size in [1, 3, 7, stream.len()] {
            let mut reader = BinaryCopy::default();
            let mut rows = Vec::new();
            for chunk in stream.chunks(size) {
                reader.push(chunk);
                while let Some(row) = reader.next_row().unwrap() {
                    rows.push(row);
                }
            }
            assert_eq!(
                rows,
                [
                    vec![Some(b"first".to_vec()), None],
                    vec![Some(Vec::new()), Some("ünïcode".as_bytes().to_vec())]
                ],
                "chunks of {size}"
            );
            assert!(reader.done);
        }
        let mut reader = BinaryCopy::default();
        reader.push(b"not binary copy data at all");
        assert!(reader.next_row().is_err());
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
        let needles = Needles::new(
            &rules(""),
            vec![(users("name"), vec!["Jane Doe".to_owned()])],
        );
        let debug = format!("{needles:?}");
        assert!(!debug.to_lowercase().contains("jane"), "{debug}");
    }
}
