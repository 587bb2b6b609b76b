//! The leak scan: the last check before the swap.
//!
//! Every text column the new copy holds as the source had it (`keep`, and `sql` expressions of a
//! text type: not hashes, booleans, dates or counts; arrays of text, element by element) is
//! searched, in the rows as they stream into the copy ([`StreamScan`]), for
//! - email addresses (except in the columns `scan.allow_emails` names);
//! - values sampled from the source's personal columns (`scan.samples`: users' names and emails),
//!   case-insensitively and as whole words, ignoring values shorter than `scan.min_length` (except
//!   in the columns `scan.allow_samples` names);
//! - the rules' own patterns (`scan.patterns`, regular expressions, case-insensitive).
//!
//! The search runs here rather than in PostgreSQL: its regular expressions took 38 s of a 42 s run
//! over a 200,000-row copy with a few hundred sampled names (an alternation that large is slow in
//! its engine), where one Aho-Corasick automaton and one DFA take a fraction of a second. It reads
//! the bytes the target stores, on their way there: reading each table back once loaded searched
//! the same values at the cost of a second pass over the copy (a tenth of a run's CPU). Memory
//! stays flat: at most one row is held. A hit names the table, the column and what was found,
//! never the value; the swap does not happen.

use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::error::{Error, Result};
use crate::pg::{ident, qualified};
use crate::plan::{ScanAs, TablePlan};
use crate::rules::{ColumnRef, Rules};
use crate::stream::{fields, i32_at};

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

/// The most sampled values searched with a DFA (about 10 MB of it for names and emails).
const MAX_DFA_NEEDLES: usize = 5_000;

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
            // A DFA searches fastest, and a few hundred needles make a small one; many thousands
            // (a large `sample_size`) would take too much memory, and get the library's choice.
            // ASCII case-insensitive, so that ASCII text (most of it) need not be lower-cased
            // first.
            let kind = (values.len() <= MAX_DFA_NEEDLES).then_some(AhoCorasickKind::DFA);
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .ascii_case_insensitive(true)
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
            let lower;
            let text = if value.is_ascii() {
                value
            } else {
                lower = value.to_lowercase();
                &lower
            };
            for m in automaton.find_overlapping_iter(text) {
                if whole_word(text, m.start(), m.end()) {
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

/// The rows a sample reads at least (or all of its table): enough for `sample_size` values of
/// a column that most rows leave empty or short.
fn rows_to_read(sample_size: u32) -> f64 {
    f64::from(sample_size.saturating_mul(20))
}

/// Samples the source columns of `scan.samples` (inside the run's snapshot), spread over
/// `clients`, which query at the same time, the larger tables first, each on the client with the
/// fewest bytes to read so far.
///
/// A sample of a table of more than 20 × `sample_size` rows reads a random part of its pages
/// (`TABLESAMPLE SYSTEM`), then picks values at random among those rows: reading all of
/// `outgoing_messages` (with the message bodies) for 100 names took most of the time before the
/// copy could start. When that part holds too few values, the sample reads the whole table.
///
/// # Errors
/// When a query fails.
pub async fn sample(
    clients: &[&tokio_postgres::Client],
    rules: &Rules,
    source_schema: &str,
) -> Result<Needles> {
    let min_length = i32::try_from(rules.scan.min_length.max(1)).unwrap_or(i32::MAX);
    let size = i64::from(rules.scan.sample_size);
    let Some(first) = clients.first() else {
        return Ok(Needles::new(rules, Vec::new()));
    };
    let tables: Vec<&str> = rules
        .scan
        .samples
        .iter()
        .map(|c| c.table.as_str())
        .collect();
    let sizes: std::collections::BTreeMap<String, (i64, f64)> = first
        .query(
            "SELECT c.relname::text, pg_relation_size(c.oid), c.reltuples::float8 FROM pg_class c \
             WHERE c.relnamespace = to_regnamespace($1) AND c.relname = ANY($2)",
            &[&source_schema, &tables],
        )
        .await
        .map_err(|e| Error::db("reading the sizes of the sampled tables", &e))?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let size_of = |column: &ColumnRef| sizes.get(&column.table).copied().unwrap_or((0, -1.0));
    let mut columns: Vec<(usize, &ColumnRef)> = rules.scan.samples.iter().enumerate().collect();
    columns.sort_by_key(|(_, c)| std::cmp::Reverse(size_of(c).0));
    let mut lanes: Vec<(i64, Vec<(usize, &ColumnRef)>)> = vec![(0, Vec::new()); clients.len()];
    for column in columns {
        if let Some(lane) = lanes.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            lane.0 += size_of(column.1).0;
            lane.1.push(column);
        }
    }
    let wanted = rows_to_read(rules.scan.sample_size);
    let lanes = clients.iter().zip(lanes).map(|(client, (_, columns))| {
        let size_of = &size_of;
        async move {
            let mut sampled = Vec::new();
            for (n, column) in columns {
                let rows = size_of(column).1;
                // Never analysed (-1) or empty: read it all.
                let percent = if rows > wanted { 100.0 * wanted / rows } else { 100.0 };
                let value = format!("btrim({}::text)", ident(&column.column));
                let query = |part: &str| {
                    format!(
                        "SELECT {value} FROM {}{part} WHERE length({value}) >= $1 ORDER BY random() LIMIT $2",
                        qualified(source_schema, &column.table)
                    )
                };
                let fetch = async |part: &str| {
                    let rows = client
                        .query(&query(part), &[&min_length, &size])
                        .await
                        .map_err(|e| Error::db(format!("sampling {column} for the leak scan"), &e))?;
                    Ok::<Vec<String>, Error>(rows.iter().map(|r| r.get(0)).collect())
                };
                let mut values = if percent < 100.0 {
                    fetch(&format!(" TABLESAMPLE SYSTEM ({percent})")).await?
                } else {
                    Vec::new()
                };
                // Fewer rows than asked for: the part read was too small, or the table is.
                if values.len() < rules.scan.sample_size as usize {
                    values = fetch("").await?;
                }
                values.sort_unstable();
                values.dedup();
                sampled.push((n, column.clone(), values));
            }
            Ok::<_, Error>(sampled)
        }
    });
    let mut sampled: Vec<_> = futures_util::future::try_join_all(lanes)
        .await?
        .into_iter()
        .flatten()
        .collect();
    sampled.sort_by_key(|(n, ..)| *n);
    Ok(Needles::new(
        rules,
        sampled.into_iter().map(|(_, c, v)| (c, v)).collect(),
    ))
}

/// The leak scan of one table, searching its rows as they stream from the source into the copy:
/// the bytes it searches are those `COPY … FROM STDIN` stores, so reading the copy back afterwards
/// would search the same values again, at the cost of a second pass over every table.
pub struct StreamScan<'a> {
    needles: &'a Needles,
    table: &'a str,
    /// Per column of the copy, in order: whether and how it is searched.
    columns: Vec<Option<Searched<'a>>>,
    /// Per column: what was found.
    hits: Vec<BTreeSet<Hit>>,
}

/// A searched column.
struct Searched<'a> {
    name: &'a str,
    how: ScanAs,
    emails: bool,
    samples: bool,
}

impl<'a> StreamScan<'a> {
    /// The scan of `table`'s stream; `None` when none of its columns is searched.
    pub fn new(table: &'a TablePlan, needles: &'a Needles) -> Option<Self> {
        let allowed = |list: &[ColumnRef], column: &str| {
            list.iter()
                .any(|a| a.table == table.name && a.column == column)
        };
        let columns: Vec<Option<Searched<'a>>> = table
            .columns
            .iter()
            .map(|c| {
                c.scan.map(|how| Searched {
                    name: &c.name,
                    how,
                    emails: !allowed(&needles.allow_emails, &c.name),
                    samples: !allowed(&needles.allow_samples, &c.name),
                })
            })
            .collect();
        columns.iter().any(Option::is_some).then(|| Self {
            needles,
            table: &table.name,
            hits: vec![BTreeSet::new(); columns.len()],
            columns,
        })
    }

    /// What was found, once the stream has ended.
    pub fn finish(self) -> Vec<Leak> {
        self.columns
            .iter()
            .zip(self.hits)
            .filter_map(|(c, found)| c.as_ref().map(|c| (c.name, found)))
            .flat_map(|(column, found)| {
                found.into_iter().map(move |hit| Leak {
                    table: self.table.to_owned(),
                    column: column.to_owned(),
                    found: self.needles.describe(hit),
                })
            })
            .collect()
    }

    /// Searches the fields of one complete row ([`crate::stream::CopyRows`]).
    ///
    /// # Errors
    /// When an array is malformed.
    pub fn row(&mut self, row: &[u8]) -> std::result::Result<(), String> {
        for ((column, found), value) in self.columns.iter().zip(&mut self.hits).zip(fields(row)) {
            let (Some(column), Some(value)) = (column, value) else {
                continue;
            };
            let mut check = |text: &[u8]| {
                self.needles.check(
                    &String::from_utf8_lossy(text),
                    column.emails,
                    column.samples,
                    found,
                );
            };
            match column.how {
                ScanAs::Text => check(value),
                ScanAs::Jsonb => check(value.get(1..).unwrap_or_default()),
                ScanAs::Array { jsonb } => {
                    for element in array_elements(value)? {
                        check(if jsonb {
                            element.get(1..).unwrap_or_default()
                        } else {
                            element
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The non-NULL elements of an array in its binary form: dimensions, a NULL flag, the element
/// type, each dimension's size and lower bound, then each element's length and bytes.
fn array_elements(value: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let malformed = || "a malformed array in the COPY data".to_owned();
    let dimensions =
        usize::try_from(i32_at(value, 0).ok_or_else(malformed)?).map_err(|_| malformed())?;
    let mut at = 12 + 8 * dimensions;
    let mut elements = Vec::new();
    while at < value.len() {
        let length = i32_at(value, at).ok_or_else(malformed)?;
        at += 4;
        if let Ok(length) = usize::try_from(length) {
            elements.push(value.get(at..at + length).ok_or_else(malformed)?);
            at += length;
        }
    }
    if at == value.len() {
        Ok(elements)
    } else {
        Err(malformed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::CopyRows;
    use crate::stream::tests::{field, stream};

    /// What the scan of `table` finds in `bytes`, pushed in chunks of `size`.
    fn scanned(
        table: &TablePlan,
        needles: &Needles,
        bytes: &[u8],
        size: usize,
    ) -> std::result::Result<Vec<Leak>, String> {
        let mut scan = StreamScan::new(table, needles).unwrap();
        let mut rows = CopyRows::new(table.columns.len());
        for chunk in bytes.chunks(size) {
            rows.push(chunk, &mut |row| scan.row(row))?;
        }
        rows.finish()?;
        Ok(scan.finish())
    }

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

    /// A one-dimensional array in the binary form, of elements of type `oid`.
    fn array(oid: u32, elements: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&i32::from(elements.contains(&None)).to_be_bytes());
        out.extend_from_slice(&oid.to_be_bytes());
        out.extend_from_slice(&i32::try_from(elements.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for element in elements {
            field(&mut out, *element);
        }
        out
    }

    fn text(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn found(leaks: &[Leak]) -> Vec<String> {
        leaks
            .iter()
            .map(|l| format!("{}: {}", l.column, l.found))
            .collect()
    }

    #[test]
    fn searches_the_rows_as_they_stream_in_any_chunking() {
        let needles = Needles::new(
            &rules("patterns = ['secret-\\d+']"),
            vec![(users("name"), vec!["Ann Lee".to_owned()])],
        );
        let table = crate::plan::fixtures::kept(&[
            ("id", "integer"),
            ("body", "text"),
            ("doc", "jsonb"),
            ("tags", "character varying[]"),
            ("docs", "jsonb[]"),
            ("raw", "bytea"),
            ("note", "text"),
        ]);
        let mut jsonb = vec![1u8];
        jsonb.extend_from_slice(br#"{"to": "x@example.com"}"#);
        let mut jsonb_element = vec![1u8];
        jsonb_element.extend_from_slice(b"code SECRET-7");
        let rows = [
            vec![
                Some(7i32.to_be_bytes().to_vec()),
                Some(text("nothing here")),
                Some(jsonb),
                Some(array(1043, &[Some(b"roads"), None, Some(b"for ann lee")])),
                None,
                None,
                Some(text("ünïcode")),
            ],
            vec![
                // An integer column is never searched, whatever its bytes.
                Some(b"@a.bc".to_vec()),
                None,
                None,
                Some(array(1043, &[])),
                Some(array(3802, &[Some(&jsonb_element)])),
                Some(b"\xff\xfe mail me: y@example.org".to_vec()),
                Some(text("")),
            ],
        ];
        let bytes = stream(&rows);
        for size in [1, 3, 7, 64, bytes.len()] {
            assert_eq!(
                found(&scanned(&table, &needles, &bytes, size).unwrap()),
                [
                    "doc: an email address",
                    "tags: a value of users.name sampled from the source",
                    "docs: scan.patterns[0]",
                    "raw: an email address",
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_malformed_array_is_an_error() {
        let needles = Needles::new(&rules(""), Vec::new());
        // An array whose elements overrun it.
        let table = crate::plan::fixtures::kept(&[("tags", "text[]")]);
        let mut bad = array(25, &[Some(b"abc")]);
        bad.truncate(bad.len() - 1);
        let bytes = stream(&[vec![Some(bad)]]);
        assert!(scanned(&table, &needles, &bytes, bytes.len()).is_err());
        // A table with nothing to search has no scan.
        let table = crate::plan::fixtures::kept(&[("id", "integer")]);
        assert!(StreamScan::new(&table, &needles).is_none());
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
