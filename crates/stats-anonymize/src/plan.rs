//! The SQL of a run, generated from the rules and the source's schema.
//!
//! Each copied table becomes one `COPY (SELECT …) TO STDOUT (FORMAT binary)` on the source, whose
//! rows go into `COPY … FROM STDIN (FORMAT binary, FREEZE)` on the target as they are (but for
//! the counter caches, [`crate::stream::Counts`]). Masking and
//! filtering are inside that SELECT, so a dropped column is never read (its TOAST data not even
//! fetched) and a masked value never leaves the source server.
//!
//! Shape of the SELECT of table `t`:
//!
//! ```sql
//! SELECT "t"."id", <masked columns>, NULL::integer AS "c_count"
//! FROM "public"."t"
//!   LEFT JOIN (<keys of the rows of p the rules copy>) AS "__r1" ON "__r1"."__k" = "t"."p_id"
//! WHERE (<filter of t>) AND ("t"."p_id" IS NULL OR "__r1"."__k" IS NOT NULL)
//! ```
//!
//! Counter caches are counted on the target, in the copies of the tables they count, which are
//! loaded first ([`TablePlan::count_reads`]; past the run's memory, by rebuilding the loaded table,
//! [`TablePlan::recount`]): the copy of the counted table is exactly "its rows the rules copy", and
//! counting a few narrow columns on the target is far cheaper than evaluating the counted table's
//! whole visibility chain again on the source.
//!
//! "The rows of p the rules copy" is p's own filter and references, recursively, so a row is dropped
//! whenever anything it refers to is dropped, however long the chain and whether or not there is a
//! foreign key. References are joins rather than `IN (…)` so that PostgreSQL can hash them whatever
//! their size (an `IN` under an `OR` becomes a subplan that is re-run for every row once it outgrows
//! `work_mem`). Filters are written by people against the table's own name, which the generated SQL
//! never aliases.
//!
//! That chain is what `check`, `--explain` and `--dry-run` plan and count. A run does less work:
//! a referred table's copy holds exactly "the keys of the rows the rules copy", so the run collects
//! them from the copy's stream as it loads ([`KeySet`]; those of a table with counter caches, which
//! is copied after the tables it counts, are collected on the source from its chain first), and
//! the table that refers to it is copied with
//! [`KeyedSelect`], which checks the reference against that list, written into its query as a
//! constant array, instead of evaluating the chain again. In Alaveteli's rules every table refers
//! to `info_requests`, and `request_classifications` to events, whose own chain is four tables
//! long: the chain was most of the copy's time. Rows are still filtered on the source; only keys
//! travel back to it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::pg::{ident, literal, qualified};
use crate::pseudonym;
use crate::rules::{ColumnRule, CopyRule, Count, Reference, Rules, TableRule};
use crate::schema::{Column, Schema, Table, TypeKind};

/// How the leak scan reads a column's values in the binary `COPY` stream
/// (<https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.4>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanAs {
    /// The value's bytes are its text: the character types, `json`, `xml`, `name`, and `bytea`
    /// (its raw bytes, read as UTF-8 where they are).
    Text,
    /// `jsonb`: a version byte, then its text.
    Jsonb,
    /// An array of one of those (`jsonb` says which): each element is searched.
    Array {
        /// The elements are `jsonb`.
        jsonb: bool,
    },
}

/// One column of a table in the copy.
#[derive(Debug, Clone)]
pub struct TargetColumn {
    /// Its name.
    pub name: String,
    /// Its type in the copy.
    pub sql_type: String,
    /// The rule that made it.
    pub rule: ColumnRule,
    /// Searched by the leak scan, and how.
    pub scan: Option<ScanAs>,
}

/// One copied table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// Its name (the same in the source and the copy).
    pub name: String,
    /// The SELECT run on the source, with every reference checked by its chain.
    pub select: String,
    /// The SELECT a run uses once the key sets it needs are read, if some reference can use one.
    pub keyed: Option<KeyedSelect>,
    /// Its columns in the copy, in the source's order.
    pub columns: Vec<TargetColumn>,
    /// Primary key (first) and index statements, with `{table}` where the target table goes.
    indexes: Vec<String>,
    /// The columns of its primary key, if the copy has one ([`Self::primary_key`]).
    primary_key: Vec<String>,
    /// Its counter caches, NULL in its SELECT, filled as it is copied or by [`Self::recount`].
    counts: Vec<CountColumn>,
    /// See [`Self::counts_as_copied`].
    counts_in_stream: bool,
    /// The source table's size on disk.
    pub bytes: i64,
}

impl TablePlan {
    /// The statement run on the source.
    pub fn copy_out(&self) -> String {
        copy_out(&self.select)
    }

    /// The statement that counts the rows a copy would take (`--dry-run`).
    pub fn count(&self) -> String {
        format!("SELECT count(*) FROM ({}) AS \"__q\"", self.select)
    }

    /// `CREATE TABLE` in the target schema. No constraints but `NOT NULL` on the primary key's
    /// columns: the copy is for reading, and a NOT NULL column that a rule empties must not fail
    /// the load; a primary key's columns are kept as they are, and adding the key to nullable
    /// columns would scan the table once more to check them. No autovacuum ([`NO_AUTOVACUUM`]).
    pub fn create(&self, schema: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let not_null = if self.primary_key.contains(&c.name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{not_null}", ident(&c.name), c.sql_type)
            })
            .collect();
        format!(
            "CREATE TABLE {} ({}) {NO_AUTOVACUUM}",
            qualified(schema, &self.name),
            columns.join(", ")
        )
    }

    /// The statement run on the target, in the transaction that created the table (so `FREEZE`
    /// applies: rows are written frozen, and nothing has to set hint bits or vacuum them later).
    pub fn copy_in(&self, schema: &str) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| ident(&c.name)).collect();
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary, FREEZE)",
            qualified(schema, &self.name),
            columns.join(", ")
        )
    }

    /// The statements that fill the counter caches in the target schema, once the table and the
    /// tables it counts are loaded: the table is rebuilt with each count taken from the copy of the counted table (with
    /// the count's condition), then takes the place of the loaded one. `None` without counts.
    ///
    /// `staging` names the rebuilt table until it takes the table's place; it must not be the name
    /// of a copied table.
    pub fn recount(&self, schema: &str, staging: &str) -> Option<Vec<String>> {
        if self.counts.is_empty() {
            return None;
        }
        let me = ident(&self.name);
        let groups = self.count_groups();
        let items: Vec<String> = self
            .columns
            .iter()
            .map(|column| {
                groups
                    .iter()
                    .enumerate()
                    .find_map(|(g, group)| {
                        let i = group.iter().position(|c| c.name == column.name)?;
                        Some(format!(
                            "coalesce(\"__c{}\".\"__n{}\", 0)::{} AS {}",
                            g + 1,
                            i + 1,
                            group[i].sql_type,
                            ident(&column.name)
                        ))
                    })
                    .unwrap_or_else(|| format!("{me}.{}", ident(&column.name)))
            })
            .collect();
        let mut joins = String::new();
        for (g, group) in groups.iter().enumerate() {
            let alias = format!("\"__c{}\"", g + 1);
            let _ = write!(
                joins,
                " LEFT JOIN ({}) AS {alias} ON {alias}.\"__k\" = {me}.{}",
                grouped_count(schema, group),
                ident(&group[0].count.key)
            );
        }
        Some(vec![
            format!(
                "CREATE TABLE {} {NO_AUTOVACUUM} AS SELECT {} FROM {} AS {me}{joins}",
                qualified(schema, staging),
                items.join(", "),
                qualified(schema, &self.name)
            ),
            format!("DROP TABLE {}", qualified(schema, &self.name)),
            format!("ALTER TABLE {} RENAME TO {me}", qualified(schema, staging)),
        ])
    }

    /// Whether its counter caches are filled as it is copied ([`Self::count_reads`]): each is an
    /// integer, counting a column of the same integer or `uuid` type as its key (so that a key
    /// and the value counted for it have the same bytes), and no table it counts counts it in
    /// turn (neither could be copied after the other). Otherwise they are counted once it is
    /// loaded, by [`Self::recount`].
    pub fn counts_as_copied(&self) -> bool {
        self.counts_in_stream
    }

    /// The counter caches as the copy fills them when the tables they count are loaded first:
    /// per counted table and column, a grouped count of its copy on the target, streamed to the
    /// run, which writes the counts into the table's rows on their way
    /// ([`crate::stream::Counts`]). `None` without counter caches, or when one is not of an
    /// integer type, or counts a table that counts it (see [`Self::counts_as_copied`]).
    pub fn count_reads(&self, schema: &str) -> Option<Vec<CountRead>> {
        if !self.counts_as_copied() {
            return None;
        }
        let position = |name: &str| self.columns.iter().position(|c| c.name == name);
        self.count_groups()
            .iter()
            .map(|group| {
                let counters = group
                    .iter()
                    .map(|c| Some((position(&c.name)?, integer_width(&c.sql_type)?)))
                    .collect::<Option<_>>()?;
                Some(CountRead {
                    query: copy_out(&grouped_count(schema, group)),
                    key: position(&group[0].count.key)?,
                    counters,
                })
            })
            .collect()
    }

    /// The counter caches, grouped by the table and column they count: one grouped count for
    /// each group, whatever the number of counters in it (`public_bodies` has five over
    /// `info_requests.public_body_id`): one scan each.
    fn count_groups(&self) -> Vec<Vec<&CountColumn>> {
        let mut groups: Vec<Vec<&CountColumn>> = Vec::new();
        for c in &self.counts {
            let what = |other: &CountColumn| {
                (&other.count.table, &other.count.column, &other.count.key)
                    == (&c.count.table, &c.count.column, &c.count.key)
            };
            match groups.iter_mut().find(|group| what(group[0])) {
                Some(group) => group.push(c),
                None => groups.push(vec![c]),
            }
        }
        groups
    }

    /// Whether the table has counter caches.
    pub fn has_counts(&self) -> bool {
        !self.counts.is_empty()
    }

    /// The tables its counter caches count, which must be loaded before they are counted.
    pub fn counted(&self) -> impl Iterator<Item = &str> {
        self.counts.iter().map(|c| c.count.table.as_str())
    }

    /// For each counter cache, its column and a query to plan on the source: the count's
    /// condition against only the columns the copy keeps as they are, so that a condition that
    /// would fail (or count masked values) on the target is refused before anything is written.
    pub fn count_checks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.counts
            .iter()
            .map(|c| (c.name.as_str(), c.check.as_str()))
    }

    /// The number of its primary key's statement in [`Self::indexes`], if the copy has one.
    pub fn primary_key(&self) -> Option<usize> {
        (!self.primary_key.is_empty()).then_some(0)
    }

    /// The primary key (first) and index statements for the target schema.
    pub fn indexes(&self, schema: &str) -> Vec<String> {
        let table = qualified(schema, &self.name);
        self.indexes
            .iter()
            .map(|s| s.replace("{table}", &table))
            .collect()
    }
}

/// The keys of the rows of a table the rules copy, collected from its copy's stream as it is
/// loaded (it holds exactly those rows; [`crate::stream::KeyCollector`]) and written into the queries
/// of the tables referring to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// The referred table.
    pub table: String,
    /// Its key column, which the copy keeps as it is.
    pub column: String,
    /// The key's type.
    pub sql_type: String,
    /// How the key's values are read from the stream.
    pub kind: KeyKind,
    /// Collected on the source, from the referred table's chain SELECT, before anything is
    /// copied: the referred table has counter caches, so it is copied after the tables it counts,
    /// which may refer to it ([`TablePlan::count_reads`]).
    pub from_source: bool,
}

impl KeySet {
    /// The name `--explain` gives key set number `n`, a psql variable.
    fn variable(n: usize) -> String {
        format!("keys_{n}")
    }

    /// The statement on the source that streams the keys of the rows `select` (the referred
    /// table's chain SELECT) copies, for a key set [`Self::from_source`].
    pub fn source_copy(&self, select: &str) -> String {
        copy_out(&format!(
            "SELECT \"__q\".{} FROM ({select}) AS \"__q\"",
            ident(&self.column)
        ))
    }

    /// A query on the target that gives the key set as the run collects it, for `--explain`.
    fn explained(&self, schema: &str) -> String {
        let column = ident(&self.column);
        format!(
            "SELECT array_agg({column}) FILTER (WHERE {column} IS NOT NULL)::text FROM {}",
            qualified(schema, &self.table)
        )
    }
}

/// The types of the keys that make key sets: those whose value in the binary stream gives their
/// exact text, whatever the server's settings (the text of dates, times, intervals, floats and
/// money depends on `DateStyle`, `IntervalStyle`, `extra_float_digits`, `lc_monetary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `smallint`, `integer`, `bigint`.
    Integer,
    /// `text`, `character varying`, `character`.
    Text,
    /// `uuid`.
    Uuid,
}

impl KeyKind {
    /// The kind of a key of `sql_type` (as `format_type` writes it), if it can make a key set.
    fn of(sql_type: &str) -> Option<Self> {
        if sql_type.ends_with("[]") {
            return None;
        }
        match sql_type.split('(').next().unwrap_or(sql_type).trim() {
            "smallint" | "integer" | "bigint" => Some(Self::Integer),
            "text" | "character varying" | "character" => Some(Self::Text),
            "uuid" => Some(Self::Uuid),
            _ => None,
        }
    }
}

/// The keys of a [`KeySet`] as a run writes them into the queries reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValues {
    /// The text of an array constant (`{1,2,3}`), searched as `"t"."p_id" = ANY('{…}'::integer[])`.
    /// PostgreSQL (14 and later) hashes the elements of a constant array once per query and
    /// probes that for every row.
    Array(String),
    /// Integer keys as bits: key `k` is in the set when bit `k - low` of `bits` is set (bit `i`
    /// is bit `i % 8` of byte `i / 8`, as `get_bit` numbers them). Dense keys, as serial ids
    /// mostly are, take a bit each instead of their digits, and a row is checked by reading one
    /// bit instead of hashing its key: a tenth of the time of `= ANY` for events.
    Bits {
        /// The smallest key.
        low: i64,
        /// One bit per key from `low` to the largest.
        bits: Vec<u8>,
    },
}

impl KeyValues {
    /// Integer keys in whichever form takes fewer bytes of query text: bits, or the array's
    /// text; `None` when that takes more than `limit` bytes.
    pub fn of_integers(keys: &[i64], limit: usize) -> Option<Self> {
        let (Some(&low), Some(&high)) = (keys.iter().min(), keys.iter().max()) else {
            return (limit >= 2).then(|| Self::Array("{}".to_owned()));
        };
        let array_bytes: usize = keys.iter().map(|k| decimal_digits(*k) + 1).sum::<usize>() + 1;
        // The span is at most 2^64 - 1 keys, in i128 without overflow.
        let span = i128::from(high) - i128::from(low) + 1;
        let bits_bytes = usize::try_from((span + 7) / 8).ok();
        match bits_bytes.filter(|&bytes| bytes.saturating_mul(2) < array_bytes) {
            Some(bytes) if bytes.saturating_mul(2) <= limit => {
                let mut bits = vec![0_u8; bytes];
                // Every key is at most `span - 1` past `low`, whose bits' bytes fit a `usize`.
                for bit in keys
                    .iter()
                    .filter_map(|key| usize::try_from(key.abs_diff(low)).ok())
                {
                    bits[bit / 8] |= 1 << (bit % 8);
                }
                Some(Self::Bits { low, bits })
            }
            _ if array_bytes <= limit => {
                let mut text = String::with_capacity(array_bytes);
                text.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    let _ = write!(text, "{key}");
                }
                text.push('}');
                Some(Self::Array(text))
            }
            _ => None,
        }
    }

    /// The condition that `column` (compared as `array_type`) is one of the keys: true, or NULL,
    /// whichever the form. The bit is read in a `CASE` of its own, which is evaluated only for a
    /// key within the bits (`get_bit` fails past them). In a `CASE`, which the planner does not
    /// look into: it estimates `= ANY` of a constant array element by element,
    /// a quarter of a second for the 330,000 keys of events, to plan a query that takes less.
    fn condition(&self, column: &str, array_type: &str) -> String {
        match self {
            Self::Array(text) => format!(
                "CASE WHEN {column} = ANY({}::{array_type}[]) THEN true END",
                literal(text)
            ),
            Self::Bits { low, bits } => {
                let high =
                    i128::from(*low) + i128::try_from(bits.len()).unwrap_or(i128::MAX) * 8 - 1;
                format!(
                    "CASE WHEN {column} BETWEEN ({low}) AND ({high}) \
                     THEN CASE WHEN get_bit(decode('{}', 'hex'), {column}::bigint - ({low})) = 1 \
                     THEN true END END",
                    hex::encode(bits)
                )
            }
        }
    }
}

/// The number of characters of `n` in decimal.
fn decimal_digits(n: i64) -> usize {
    let sign = usize::from(n < 0);
    sign + n
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1)
}

/// A table's SELECT for a run: each reference to a table loaded before it is checked against that
/// table's [`KeySet`], written into the query as a constant ([`KeyValues`]): no join, no
/// `DISTINCT`, no session setting to parse and unnest, which took a third of the time of a copy of
/// events. Column and keys are compared in one type (the column's, or `bigint` or `text` for a mix
/// of their kinds), as a comparison across two types has two hash functions and is searched element
/// by element instead.
#[derive(Debug, Clone)]
pub struct KeyedSelect {
    /// The SELECT's text between its key sets' conditions: one piece more than `slots`.
    pieces: Vec<String>,
    /// What goes between two pieces: the key set's number, the column compared and its type.
    slots: Vec<Slot>,
    /// The key sets it reads, as indexes into [`Plan::key_sets`].
    pub key_sets: Vec<usize>,
}

/// A condition of a [`KeyedSelect`] on a key set: its number, the column (an SQL expression) that
/// must be one of its keys, and the type they are compared as.
#[derive(Debug, Clone)]
struct Slot {
    key_set: usize,
    column: String,
    array_type: String,
}

/// Stands for the slot numbered between two of them while a keyed SELECT is generated: it is in
/// no SQL of the rules ([`Rules::validate`] refuses it), as PostgreSQL refuses it in a query.
const SLOT_MARK: char = '\0';

impl KeyedSelect {
    fn new(generated: &str, slots: &[Slot], key_sets: Vec<usize>) -> Self {
        let mut pieces = Vec::new();
        let mut order = Vec::new();
        for (i, piece) in generated.split(SLOT_MARK).enumerate() {
            if i % 2 == 0 {
                pieces.push(piece.to_owned());
            } else {
                let slot: usize = piece.parse().expect("a slot mark holds its number");
                order.push(slots[slot].clone());
            }
        }
        Self {
            pieces,
            slots: order,
            key_sets,
        }
    }

    /// The SELECT, with `condition(slot)` in every slot.
    fn select(&self, condition: impl Fn(&Slot) -> String) -> String {
        let mut out = self.pieces[0].clone();
        for (slot, piece) in self.slots.iter().zip(&self.pieces[1..]) {
            out.push_str(&condition(slot));
            out.push_str(piece);
        }
        out
    }

    /// The SELECT with psql variables for the key sets as arrays, for `--explain`.
    pub fn explained(&self) -> String {
        self.select(|slot| {
            format!(
                "CASE WHEN {} = ANY(:'{}'::{}[]) THEN true END",
                slot.column,
                KeySet::variable(slot.key_set),
                slot.array_type
            )
        })
    }

    /// The SELECT with empty key sets: planned by `check` to find errors.
    pub fn without_keys(&self) -> String {
        let empty = KeyValues::Array("{}".to_owned());
        self.select(|slot| empty.condition(&slot.column, &slot.array_type))
    }

    /// The SELECT with each key set, by number, as a constant.
    ///
    /// # Panics
    /// If `keys` lacks one of [`Self::key_sets`].
    pub fn with_keys(&self, keys: &[(usize, std::sync::Arc<KeyValues>)]) -> String {
        self.select(|slot| {
            let (_, values) = keys
                .iter()
                .find(|(n, _)| *n == slot.key_set)
                .expect("a keyed SELECT is run with every key set it reads");
            values.condition(&slot.column, &slot.array_type)
        })
    }
}

/// Whether `from` (a table whose counters would be filled as it is copied) counts `to`, directly
/// or through tables it counts that do the same; `seen` holds the tables already followed.
fn counts_back<'t>(
    tables: &'t [TablePlan],
    from: &'t str,
    to: &str,
    seen: &mut Vec<&'t str>,
) -> bool {
    let Some(table) = tables.iter().find(|t| t.name == from && t.counts_in_stream) else {
        return false;
    };
    table.counted().any(|counted| {
        if counted == to {
            return true;
        }
        if seen.contains(&counted) {
            return false;
        }
        seen.push(counted);
        counts_back(tables, counted, to, seen)
    })
}

/// One grouped count that fills counter caches of a table as it is copied
/// ([`TablePlan::count_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRead {
    /// `COPY (SELECT key, counts… GROUP BY key) TO STDOUT`, run on the target.
    pub query: String,
    /// The position of the counted key in the table's copy.
    pub key: usize,
    /// The position of each counter cache it fills, and the width of its integer type, in the
    /// order of the counts in the query.
    pub counters: Vec<(usize, usize)>,
}

/// The grouped count of one group of counter caches ([`TablePlan::count_groups`]) on the copy of
/// the table they count, read by its own name, as the conditions name it: the counted key as
/// `__k`, the counts as `__n1`, `__n2`… in the counters' types.
fn grouped_count(schema: &str, group: &[&CountColumn]) -> String {
    let count = &group[0].count;
    let aggregates: Vec<String> = group
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let condition = c
                .count
                .filter
                .as_ref()
                .map(|f| format!(" FILTER (WHERE ({f}))"))
                .unwrap_or_default();
            format!("count(*){condition}::{} AS \"__n{}\"", c.sql_type, i + 1)
        })
        .collect();
    format!(
        "SELECT {}.{} AS \"__k\", {} FROM {} GROUP BY 1",
        ident(&count.table),
        ident(&count.column),
        aggregates.join(", "),
        qualified(schema, &count.table)
    )
}

/// The bytes of an integer type in the binary `COPY` format.
fn integer_width(sql_type: &str) -> Option<usize> {
    match sql_type {
        "smallint" | "int2" => Some(2),
        "integer" | "int" | "int4" => Some(4),
        "bigint" | "int8" => Some(8),
        _ => None,
    }
}

/// A counter cache of a copied table.
#[derive(Debug, Clone)]
struct CountColumn {
    /// Its name.
    name: String,
    /// Its type in the copy.
    sql_type: String,
    /// What it counts.
    count: Count,
    /// Planned on the source by `check` and `run`: the count's condition against the columns the
    /// copy keeps as they are, so a condition that would fail (or count masked values) on the
    /// target is refused before anything is written.
    check: String,
}

/// Everything a run does, in SQL.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Copied tables, largest first (so the longest copy starts first).
    pub tables: Vec<TablePlan>,
    /// Skipped tables, by name.
    pub skipped: Vec<String>,
    /// The key sets the tables' [`KeyedSelect`]s read.
    pub key_sets: Vec<KeySet>,
}

impl Plan {
    /// Generates the SQL. The rules must have passed [`Rules::check_against`] for `schema`.
    pub fn new(rules: &Rules, schema: &Schema) -> Self {
        let keyed = keyed_references(rules, schema);
        let mut tables = Vec::new();
        let mut skipped = Vec::new();
        let mut key_sets = Vec::new();
        for (name, rule) in &rules.tables {
            match rule {
                TableRule::Skip { .. } => skipped.push(name.clone()),
                TableRule::Copy(copy) => {
                    let source = &schema.tables[name];
                    let mut builder = Builder {
                        rules,
                        schema,
                        aliases: 0,
                    };
                    tables.push(builder.table(source, copy, &keyed, &mut key_sets));
                }
            }
        }
        tables.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        // Tables that count each other's rows (or their own) are rebuilt instead.
        let in_cycle: Vec<String> = tables
            .iter()
            .filter(|t| counts_back(&tables, &t.name, &t.name, &mut Vec::new()))
            .map(|t| t.name.clone())
            .collect();
        for table in &mut tables {
            if in_cycle.contains(&table.name) {
                table.counts_in_stream = false;
            }
        }
        for set in &mut key_sets {
            set.from_source = tables
                .iter()
                .any(|t| t.name == set.table && t.counts_as_copied());
        }
        Self {
            tables,
            skipped,
            key_sets,
        }
    }

    /// The tables that must be loaded before `table` is copied: those whose copies its keyed
    /// SELECT reads keys from, and those its counter caches count when it fills them as it is
    /// copied ([`TablePlan::count_reads`]).
    pub fn needs<'a>(&'a self, table: &'a TablePlan) -> impl Iterator<Item = &'a str> {
        let counted = table
            .counts_as_copied()
            .then(|| table.counted())
            .into_iter()
            .flatten();
        table
            .keyed
            .iter()
            .flat_map(|k| &k.key_sets)
            .map(|&n| &self.key_sets[n])
            .filter(|set| !set.from_source)
            .map(|set| set.table.as_str())
            .chain(counted)
    }

    /// The plan as SQL for people (`run --explain`): per table, the statements on each side.
    pub fn explain(&self, source_schema: &str, loading: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "-- stats-anonymize: {} tables copied from schema {source_schema}, {} skipped.",
            self.tables.len(),
            self.skipped.len()
        );
        let _ = writeln!(
            out,
            "-- Source: one REPEATABLE READ, READ ONLY snapshot shared by every job (pg_export_snapshot).\n\
             -- Hashes read the key from the session settings {} and {}, never from the query.\n",
            pseudonym::IPAD_SETTING,
            pseudonym::OPAD_SETTING
        );
        for t in &self.tables {
            let _ = writeln!(out, "-- {}", t.name);
            let _ = writeln!(out, "-- on the target:\n{};", t.create(loading));
            let _ = writeln!(out, "{};", t.copy_in(loading));
            match &t.keyed {
                None => {
                    let _ = writeln!(out, "-- on the source:\n{};", t.copy_out());
                }
                Some(keyed) => {
                    let sets: Vec<String> = keyed
                        .key_sets
                        .iter()
                        .map(|&n| {
                            let set = &self.key_sets[n];
                            let referred = self.tables.iter().find(|t| t.name == set.table);
                            match referred.filter(|_| set.from_source) {
                                Some(referred) => format!(
                                    "--   :'{}' = the keys {} streams, on the source;",
                                    KeySet::variable(n),
                                    set.source_copy(&referred.select)
                                ),
                                None => format!(
                                    "--   :'{}' = {};",
                                    KeySet::variable(n),
                                    set.explained(loading)
                                ),
                            }
                        })
                        .collect();
                    let _ = writeln!(
                        out,
                        "-- on the source, once the keys of the tables it refers to are collected (from their copies,\n\
                         -- or on the source), written into the query as constants (integer keys that take fewer bytes\n\
                         -- as bits are written as `CASE WHEN <column> BETWEEN <low> AND <high> THEN CASE WHEN\n\
                         -- get_bit(decode('<bits>', 'hex'), <column>::bigint - <low>) = 1 THEN true END END` instead):\n{}\n{};",
                        sets.join("\n"),
                        copy_out(&keyed.explained())
                    );
                    let _ = writeln!(
                        out,
                        "-- (--dry-run, or a key set past STATS_ANONYMIZE_KEY_MEMORY: {};)",
                        t.copy_out()
                    );
                }
            }
            if let Some(reads) = t.count_reads(loading) {
                let queries: Vec<&str> = reads.iter().map(|r| r.query.as_str()).collect();
                let _ = writeln!(
                    out,
                    "-- copied once the tables it counts are loaded; its counter caches counted on the target,\n\
                     -- written into its rows as they stream in:\n{};",
                    queries.join(";\n")
                );
            }
            if let Some(statements) = t.recount(loading, RECOUNT_STAGING) {
                let when = if t.counts_as_copied() {
                    "if those counts take more than STATS_ANONYMIZE_KEY_MEMORY, once it is loaded"
                } else {
                    "once it and the tables it counts are loaded"
                };
                let _ = writeln!(
                    out,
                    "-- {when}, on the target (counter caches):\n{};",
                    statements.join(";\n")
                );
            }
            for index in t.indexes(loading) {
                let _ = writeln!(out, "-- after the load, on the target:\n{index};");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "-- skipped: {}", self.skipped.join(", "));
        out
    }
}

/// The storage parameters of the copy's tables. Autovacuum would only repeat the run's work: the
/// rows are loaded frozen (or, for a recount, written once), the run analyses every table, and
/// nothing changes them until the next run replaces them. Left on, it vacuumed and analysed the
/// tables again, during the run and after the swap.
pub const NO_AUTOVACUUM: &str =
    "WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)";

/// `COPY (select) TO STDOUT` in the binary format.
pub fn copy_out(select: &str) -> String {
    format!("COPY ({select}) TO STDOUT (FORMAT binary)")
}

/// The references that can read a key set, as (table, index in its `references`): those whose
/// referred table keeps the key as it is, so that its copy holds the source's values, in a type
/// that makes key sets ([`KeyKind`]). (The rules refuse references that
/// form a cycle, so the tables referred to can always be loaded first.)
fn keyed_references(rules: &Rules, schema: &Schema) -> BTreeMap<(String, usize), Compared> {
    let mut keyed = BTreeMap::new();
    for (name, rule) in &rules.tables {
        let Some(copy) = rule.as_copy() else { continue };
        for (i, r) in copy.references.iter().enumerate() {
            let kept = rules.tables[&r.table]
                .as_copy()
                .is_some_and(|p| p.columns.get(&r.key) == Some(&ColumnRule::Keep));
            let key = schema
                .tables
                .get(&r.table)
                .and_then(|t| t.column(&r.key))
                .filter(|c| c.builtin);
            let column = schema.tables.get(name).and_then(|t| t.column(&r.column));
            if let (true, Some(key), Some(column)) = (kept, key, column)
                && let Some(compared) = Compared::new(column, key)
            {
                keyed.insert((name.clone(), i), compared);
            }
        }
    }
    keyed
}

/// How a reference's column is compared with the keys of a key set.
#[derive(Debug, Clone)]
struct Compared {
    /// The key's type.
    key_type: String,
    /// How its values are read from the stream.
    kind: KeyKind,
    /// The type both are cast to, when the column's is not the key's.
    cast: Option<String>,
}

impl Compared {
    /// `None` when the key cannot make a key set ([`KeyKind`]), or the two types have no common
    /// type that holds every value of both.
    fn new(column: &Column, key: &Column) -> Option<Self> {
        let key_type = key.sql_type.clone();
        let kind = KeyKind::of(&key_type)?;
        if column.builtin && column.sql_type == key.sql_type {
            return Some(Self {
                key_type,
                kind,
                cast: None,
            });
        }
        let common = |sql_type: &str| match sql_type.split('(').next().unwrap_or(sql_type).trim() {
            _ if sql_type.ends_with("[]") => None,
            "smallint" | "integer" | "bigint" => Some("bigint"),
            "text" | "character varying" => Some("text"),
            _ => None,
        };
        match (
            column.builtin,
            common(&column.sql_type),
            common(&key.sql_type),
        ) {
            (true, Some(a), Some(b)) if a == b => Some(Self {
                key_type,
                kind,
                cast: Some(a.to_owned()),
            }),
            _ => None,
        }
    }
}

/// The name a table with counter caches is rebuilt under (one at a time) before it takes the
/// loaded table's place; Alaveteli's tables never start with `__`.
pub const RECOUNT_STAGING: &str = "__recount";

/// Generates SQL, numbering the aliases of one statement.
struct Builder<'a> {
    rules: &'a Rules,
    schema: &'a Schema,
    aliases: usize,
}

impl Builder<'_> {
    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("\"__{prefix}{}\"", self.aliases)
    }

    fn table(
        &mut self,
        source: &Table,
        copy: &CopyRule,
        keyed: &BTreeMap<(String, usize), Compared>,
        key_sets: &mut Vec<KeySet>,
    ) -> TablePlan {
        let me = ident(&source.name);
        let (joins, conditions) = self.conditions(&source.name, copy, None);
        let mut items = Vec::new();
        let mut columns = Vec::new();
        let mut counts = Vec::new();
        for column in &source.columns {
            let rule = &copy.columns[&column.name];
            let value = format!("{me}.{}", ident(&column.name));
            let own_type = if column.builtin {
                column.sql_type.clone()
            } else {
                "text".to_owned()
            };
            let (expr, sql_type) = match rule {
                ColumnRule::Drop => continue,
                ColumnRule::Keep if column.builtin => (value, own_type),
                ColumnRule::Keep => (format!("{value}::text"), own_type),
                ColumnRule::Null => (format!("NULL::{own_type}"), own_type),
                ColumnRule::Hash => (pseudonym::sql(&value), "text".to_owned()),
                ColumnRule::Bool => (
                    format!("({value} IS NOT NULL AND ({value})::text <> '')"),
                    "boolean".to_owned(),
                ),
                ColumnRule::Date(part) => (
                    format!("date_trunc('{}', {value})::{own_type}", part.sql()),
                    own_type,
                ),
                ColumnRule::Sql { expr, sql_type } => {
                    let sql_type = sql_type.clone().unwrap_or(own_type);
                    (format!("({expr})::{sql_type}"), sql_type)
                }
                ColumnRule::Count(count) => {
                    counts.push(CountColumn {
                        name: column.name.clone(),
                        sql_type: own_type.clone(),
                        count: count.clone(),
                        check: self.count_check(count),
                    });
                    (format!("NULL::{own_type}"), own_type)
                }
            };
            items.push(format!("{expr} AS {}", ident(&column.name)));
            columns.push(TargetColumn {
                name: column.name.clone(),
                scan: scan_as(rule, &sql_type),
                sql_type,
                rule: rule.clone(),
            });
        }
        let from = format!(
            "SELECT {} FROM {}",
            items.join(", "),
            qualified(&self.schema.name, &source.name)
        );
        let select = with_conditions(from.clone(), &joins, &conditions);
        let keyed = (0..copy.references.len())
            .any(|i| keyed.contains_key(&(source.name.clone(), i)))
            .then(|| {
                let mut keys = Keys {
                    keyed,
                    key_sets,
                    used: Vec::new(),
                    slots: Vec::new(),
                };
                self.aliases = 0;
                let (joins, conditions) = self.conditions(&source.name, copy, Some(&mut keys));
                KeyedSelect::new(
                    &with_conditions(from, &joins, &conditions),
                    &keys.slots,
                    keys.used,
                )
            });
        let counts_in_stream = !counts.is_empty()
            && counts.iter().all(|c| {
                let key = source.column(&c.count.key);
                let counted = self
                    .schema
                    .tables
                    .get(&c.count.table)
                    .and_then(|t| t.column(&c.count.column));
                integer_width(&c.sql_type).is_some()
                    && columns.iter().any(|t| t.name == c.count.key)
                    && matches!((key, counted), (Some(key), Some(counted))
                        if key.builtin
                            && key.sql_type == counted.sql_type
                            && matches!(KeyKind::of(&key.sql_type), Some(KeyKind::Integer | KeyKind::Uuid)))
            });
        let (indexes, primary_key) = indexes(source, copy);
        TablePlan {
            name: source.name.clone(),
            select,
            keyed,
            indexes,
            primary_key,
            counts,
            counts_in_stream,
            columns,
            bytes: source.bytes,
        }
    }

    /// The joins and conditions that keep exactly the rows of `table` the rules copy: its filter,
    /// and for each reference, that the row referred to is copied; checked against a key set where
    /// `keys` allows, by the referred table's own conditions otherwise.
    fn conditions(
        &mut self,
        table: &str,
        copy: &CopyRule,
        mut keys: Option<&mut Keys<'_>>,
    ) -> (Vec<String>, Vec<String>) {
        let me = ident(table);
        let mut joins = Vec::new();
        let mut conditions = Vec::new();
        if let Some(filter) = &copy.filter {
            conditions.push(format!("({filter})"));
        }
        for (i, r) in copy.references.iter().enumerate() {
            let column = format!("{me}.{}", ident(&r.column));
            let keyed = keys
                .as_deref_mut()
                .and_then(|keys| keys.found(&column, table, i, r));
            let found = if let Some(found) = keyed {
                found
            } else {
                let alias = self.alias("r");
                joins.push(format!(
                    "LEFT JOIN ({}) AS {alias} ON {alias}.\"__k\" = {column}",
                    self.copied_keys(&r.table, &r.key)
                ));
                format!("{alias}.\"__k\" IS NOT NULL")
            };
            let not_null = self
                .schema
                .tables
                .get(table)
                .and_then(|t| t.column(&r.column))
                .is_some_and(|c: &Column| c.not_null);
            conditions.push(match (&r.when, not_null) {
                (Some(when), _) => {
                    format!("(NOT coalesce(({when}), true) OR {column} IS NULL OR {found})")
                }
                (None, true) => found,
                (None, false) => format!("({column} IS NULL OR {found})"),
            });
        }
        (joins, conditions)
    }

    /// `SELECT key AS "__k"` of the rows of `table` the rules copy (distinct unless the key is
    /// unique, so the join cannot multiply rows).
    fn copied_keys(&mut self, table: &str, key: &str) -> String {
        let copy = self.rules.tables[table]
            .as_copy()
            .expect("references name copied tables (checked by Rules::validate)");
        let me = ident(table);
        let (joins, conditions) = self.conditions(table, copy, None);
        let unique = self
            .schema
            .tables
            .get(table)
            .is_some_and(|t| t.is_unique(key));
        let mut sql = format!(
            "SELECT {}{me}.{} AS \"__k\" FROM {}",
            if unique { "" } else { "DISTINCT " },
            ident(key),
            qualified(&self.schema.name, table)
        );
        for join in &joins {
            let _ = write!(sql, " {join}");
        }
        if !conditions.is_empty() {
            let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
        }
        sql
    }

    /// `SELECT … FROM (<the columns of the counted table its copy keeps as they are>) AS <counted
    /// table> WHERE <the count's condition>`: planned on the source, it fails exactly when the
    /// condition would fail on the copy, or would read a column the copy masks.
    fn count_check(&self, count: &Count) -> String {
        let copy = self.rules.tables[&count.table]
            .as_copy()
            .expect("counts name copied tables (checked by Rules::validate)");
        let me = ident(&count.table);
        let kept: Vec<String> = self.schema.tables[&count.table]
            .columns
            .iter()
            .filter(|c| copy.columns.get(&c.name) == Some(&ColumnRule::Keep))
            .map(|c| format!("{me}.{}", ident(&c.name)))
            .collect();
        let condition = count
            .filter
            .as_ref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default();
        format!(
            "SELECT {me}.{} FROM (SELECT {} FROM {}) AS {me}{condition}",
            ident(&count.column),
            kept.join(", "),
            qualified(&self.schema.name, &count.table)
        )
    }
}

/// The key sets of a plan, while one table's keyed SELECT is generated.
struct Keys<'a> {
    keyed: &'a BTreeMap<(String, usize), Compared>,
    key_sets: &'a mut Vec<KeySet>,
    used: Vec<usize>,
    /// The SELECT's slots so far.
    slots: Vec<Slot>,
}

impl Keys<'_> {
    /// A mark for the slot where the condition that `column` is one of the keys of reference
    /// number `i` of `table` goes ([`KeyValues::condition`]), registering the key set; `None` if
    /// the reference cannot read a key set.
    fn found(&mut self, column: &str, table: &str, i: usize, r: &Reference) -> Option<String> {
        let compared = self.keyed.get(&(table.to_owned(), i))?;
        let set = KeySet {
            table: r.table.clone(),
            column: r.key.clone(),
            sql_type: compared.key_type.clone(),
            kind: compared.kind,
            from_source: false,
        };
        let n = self
            .key_sets
            .iter()
            .position(|s| *s == set)
            .unwrap_or_else(|| {
                self.key_sets.push(set);
                self.key_sets.len() - 1
            });
        if !self.used.contains(&n) {
            self.used.push(n);
        }
        let (column, array_type) = match &compared.cast {
            None => (column.to_owned(), compared.key_type.clone()),
            Some(common) => (format!("{column}::{common}"), common.clone()),
        };
        self.slots.push(Slot {
            key_set: n,
            column,
            array_type,
        });
        Some(format!("{SLOT_MARK}{}{SLOT_MARK}", self.slots.len() - 1))
    }
}

/// `select` with its joins and WHERE conditions.
fn with_conditions(mut select: String, joins: &[String], conditions: &[String]) -> String {
    for join in joins {
        let _ = write!(select, " {join}");
    }
    if !conditions.is_empty() {
        let _ = write!(select, " WHERE {}", conditions.join(" AND "));
    }
    select
}

fn scan_as(rule: &ColumnRule, sql_type: &str) -> Option<ScanAs> {
    // Hashes are hex, booleans, dates and counts cannot hold a name: only what is copied as it is
    // or computed by an expression is searched.
    if !matches!(rule, ColumnRule::Keep | ColumnRule::Sql { .. }) {
        return None;
    }
    let scalar = |sql_type: &str| match TypeKind::of(sql_type) {
        TypeKind::Text if sql_type.trim().eq_ignore_ascii_case("jsonb") => Some(ScanAs::Jsonb),
        TypeKind::Text | TypeKind::Bytes => Some(ScanAs::Text),
        _ => None,
    };
    match sql_type.trim().strip_suffix("[]") {
        // Arrays of numbers, dates or booleans cannot hold a name.
        Some(element) => scalar(element).map(|e| ScanAs::Array {
            jsonb: e == ScanAs::Jsonb,
        }),
        None => scalar(sql_type),
    }
}

/// The source's indexes that still make sense in the copy: a primary key or unique index whose
/// columns are all kept as they are (a subset of unique values is unique), and any other index
/// whose columns are kept or generalised dates. Expression and partial indexes are not copied.
/// Returns their statements, the primary key's first, and the primary key's columns.
fn indexes(source: &Table, copy: &CopyRule) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut primary_key = Vec::new();
    for index in &source.indexes {
        let rules: Vec<&ColumnRule> = index
            .columns
            .iter()
            .filter_map(|c| copy.columns.get(c))
            .collect();
        if rules.len() != index.columns.len() {
            continue;
        }
        let all_kept = rules.iter().all(|r| **r == ColumnRule::Keep);
        let columns: Vec<String> = index.columns.iter().map(|c| ident(c)).collect();
        let columns = columns.join(", ");
        if index.primary {
            if all_kept {
                out.insert(
                    0,
                    format!(
                        "ALTER TABLE {{table}} ADD CONSTRAINT {} PRIMARY KEY ({columns})",
                        ident(&index.name)
                    ),
                );
                primary_key.clone_from(&index.columns);
            }
        } else if index.unique {
            if all_kept {
                out.push(format!(
                    "CREATE UNIQUE INDEX {} ON {{table}} USING {} ({columns})",
                    ident(&index.name),
                    ident(&index.method)
                ));
            }
        } else if rules
            .iter()
            .all(|r| matches!(r, ColumnRule::Keep | ColumnRule::Date(_)))
        {
            out.push(format!(
                "CREATE INDEX {} ON {{table}} USING {} ({columns})",
                ident(&index.name),
                ident(&index.method)
            ));
        }
    }
    (out, primary_key)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A small schema and rules, for the tests of plans and of what runs them.
    use super::*;
    use crate::schema::Index;

    pub(crate) fn column(name: &str, sql_type: &str, not_null: bool) -> Column {
        Column {
            name: name.to_owned(),
            sql_type: sql_type.to_owned(),
            builtin: true,
            not_null,
        }
    }

    pub(crate) fn schema() -> Schema {
        let mut schema = Schema {
            name: "public".to_owned(),
            ..Schema::default()
        };
        let pk = |table: &str| Index {
            name: format!("{table}_pkey"),
            primary: true,
            unique: true,
            method: "btree".to_owned(),
            columns: vec!["id".to_owned()],
        };
        schema.tables.insert(
            "requests".to_owned(),
            Table {
                name: "requests".to_owned(),
                columns: vec![
                    column("id", "integer", true),
                    column("title", "text", true),
                    column("prominence", "character varying", true),
                    column("created_at", "timestamp without time zone", true),
                    column("messages_count", "integer", false),
                    column("secret", "text", false),
                ],
                indexes: vec![
                    pk("requests"),
                    Index {
                        name: "index_requests_on_created_at".to_owned(),
                        primary: false,
                        unique: false,
                        method: "btree".to_owned(),
                        columns: vec!["created_at".to_owned()],
                    },
                    Index {
                        name: "index_requests_on_secret".to_owned(),
                        primary: false,
                        unique: true,
                        method: "btree".to_owned(),
                        columns: vec!["secret".to_owned()],
                    },
                ],
                bytes: 10,
            },
        );
        schema.tables.insert(
            "messages".to_owned(),
            Table {
                name: "messages".to_owned(),
                columns: vec![
                    column("id", "integer", true),
                    column("request_id", "integer", true),
                    column("from_email", "text", false),
                ],
                indexes: vec![pk("messages")],
                bytes: 20,
            },
        );
        schema.tables.insert(
            "tags".to_owned(),
            Table {
                name: "tags".to_owned(),
                columns: vec![
                    column("id", "integer", true),
                    column("model_type", "character varying", true),
                    column("model_id", "integer", false),
                ],
                indexes: vec![],
                bytes: 5,
            },
        );
        schema
    }

    pub(crate) const RULES: &str = r#"
version = 1
[tables.requests]
action = "copy"
filter = "prominence = 'normal'"
[tables.requests.columns]
id = "keep"
title = "keep"
prominence = "keep"
created_at = { date = "month" }
messages_count = { count = "messages.request_id" }
secret = "drop"

[tables.messages]
action = "copy"
references = [{ column = "request_id", table = "requests" }]
columns = { id = "keep", request_id = "keep", from_email = "hash" }

[tables.tags]
action = "copy"
filter = "model_type IN ('Request')"
references = [{ column = "model_id", table = "requests", when = "model_type = 'Request'" }]
columns = { id = "keep", model_type = "keep", model_id = "keep" }
"#;

    pub(crate) fn plan() -> Plan {
        let rules = Rules::parse(RULES, "test rules").unwrap();
        let schema = schema();
        assert!(rules.check_against(&schema).is_empty());
        Plan::new(&rules, &schema)
    }

    pub(crate) fn table<'a>(plan: &'a Plan, name: &str) -> &'a TablePlan {
        plan.tables.iter().find(|t| t.name == name).unwrap()
    }

    /// Table `t` of the copy with the columns given as (name, type), all kept as they are.
    pub(crate) fn kept(columns: &[(&str, &str)]) -> TablePlan {
        TablePlan {
            name: "t".to_owned(),
            select: String::new(),
            keyed: None,
            columns: columns
                .iter()
                .map(|&(name, sql_type)| TargetColumn {
                    name: name.to_owned(),
                    sql_type: sql_type.to_owned(),
                    rule: ColumnRule::Keep,
                    scan: scan_as(&ColumnRule::Keep, sql_type),
                })
                .collect(),
            indexes: Vec::new(),
            primary_key: Vec::new(),
            counts: Vec::new(),
            counts_in_stream: false,
            bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{RULES, plan, schema, table};
    use super::*;

    #[test]
    fn largest_tables_come_first() {
        let plan = plan();
        let names: Vec<&str> = plan.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["messages", "requests", "tags"]);
    }

    #[test]
    fn counters_of_one_column_are_counted_in_one_scan() {
        let mut schema = schema();
        let requests = schema.tables.get_mut("requests").unwrap();
        requests
            .columns
            .push(fixtures::column("late_messages_count", "integer", false));
        let rules = RULES.replace(
            "messages_count = { count = \"messages.request_id\" }",
            "messages_count = { count = \"messages.request_id\" }\n\
             late_messages_count = { count = \"messages.request_id\", where = \"id > 10\" }",
        );
        let rules = Rules::parse(&rules, "test rules").unwrap();
        assert!(rules.check_against(&schema).is_empty());
        let plan = Plan::new(&rules, &schema);
        let create = &table(&plan, "requests").recount("s", "__recount").unwrap()[0];
        assert_eq!(create.matches("LEFT JOIN").count(), 1, "{create}");
        assert!(create.contains(
            "coalesce(\"__c1\".\"__n1\", 0)::integer AS \"messages_count\", \
             coalesce(\"__c1\".\"__n2\", 0)::integer AS \"late_messages_count\""
        ));
        assert!(create.contains(
            "(SELECT \"messages\".\"request_id\" AS \"__k\", count(*)::integer AS \"__n1\", \
             count(*) FILTER (WHERE (id > 10))::integer AS \"__n2\" FROM \"s\".\"messages\" GROUP BY 1)"
        ));
    }

    #[test]
    fn a_filtered_table_masks_inside_its_select() {
        let plan = plan();
        let requests = table(&plan, "requests");
        assert_eq!(
            requests.select,
            "SELECT \"requests\".\"id\" AS \"id\", \"requests\".\"title\" AS \"title\", \
             \"requests\".\"prominence\" AS \"prominence\", \
             date_trunc('month', \"requests\".\"created_at\")::timestamp without time zone AS \"created_at\", \
             NULL::integer AS \"messages_count\" \
             FROM \"public\".\"requests\" WHERE (prominence = 'normal')"
        );
        // The count is taken on the copy of messages, whose key columns it checks are kept.
        assert_eq!(
            requests.recount("s", "__recount").unwrap(),
            [
                "CREATE TABLE \"s\".\"__recount\" WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false) AS SELECT \"requests\".\"id\", \"requests\".\"title\", \
                 \"requests\".\"prominence\", \"requests\".\"created_at\", \
                 coalesce(\"__c1\".\"__n1\", 0)::integer AS \"messages_count\" FROM \"s\".\"requests\" AS \"requests\" \
                 LEFT JOIN (SELECT \"messages\".\"request_id\" AS \"__k\", count(*)::integer AS \"__n1\" FROM \"s\".\"messages\" GROUP BY 1) AS \"__c1\" \
                 ON \"__c1\".\"__k\" = \"requests\".\"id\"",
                "DROP TABLE \"s\".\"requests\"",
                "ALTER TABLE \"s\".\"__recount\" RENAME TO \"requests\"",
            ]
        );
        assert_eq!(
            requests.count_checks().collect::<Vec<_>>(),
            [(
                "messages_count",
                "SELECT \"messages\".\"request_id\" FROM (SELECT \"messages\".\"id\", \"messages\".\"request_id\" \
                 FROM \"public\".\"messages\") AS \"messages\""
            )]
        );
        assert!(table(&plan, "messages").recount("s", "__recount").is_none());
        assert!(!requests.select.contains("secret"));
        let names: Vec<&str> = requests.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["id", "title", "prominence", "created_at", "messages_count"]
        );
        assert_eq!(
            requests.create("stats__loading"),
            "CREATE TABLE \"stats__loading\".\"requests\" (\"id\" integer NOT NULL, \"title\" text, \
             \"prominence\" character varying, \"created_at\" timestamp without time zone, \"messages_count\" integer) \
             WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
        );
        assert_eq!(
            requests.copy_in("s"),
            "COPY \"s\".\"requests\" (\"id\", \"title\", \"prominence\", \"created_at\", \"messages_count\") FROM STDIN (FORMAT binary, FREEZE)"
        );
        assert!(requests.copy_out().starts_with("COPY (SELECT "));
        assert!(requests.copy_out().ends_with(") TO STDOUT (FORMAT binary)"));
        // The primary key and the date index survive; the unique index on a dropped column does not.
        assert_eq!(
            requests.indexes("s"),
            [
                "ALTER TABLE \"s\".\"requests\" ADD CONSTRAINT \"requests_pkey\" PRIMARY KEY (\"id\")",
                "CREATE INDEX \"index_requests_on_created_at\" ON \"s\".\"requests\" USING \"btree\" (\"created_at\")"
            ]
        );
        // Only text copied as it is gets scanned.
        let scanned: Vec<&str> = requests
            .columns
            .iter()
            .filter(|c| c.scan.is_some())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(scanned, ["title", "prominence"]);
    }

    #[test]
    fn references_follow_the_referred_table_rules() {
        let plan = plan();
        let messages = table(&plan, "messages");
        assert!(
            messages.select.contains(
                "LEFT JOIN (SELECT \"requests\".\"id\" AS \"__k\" FROM \"public\".\"requests\" WHERE (prominence = 'normal')) AS \"__r1\" ON \"__r1\".\"__k\" = \"messages\".\"request_id\" WHERE \"__r1\".\"__k\" IS NOT NULL"
            ),
            "{}",
            messages.select
        );
        assert!(messages.select.contains("encode(sha256("));
        assert_eq!(messages.columns[2].sql_type, "text");
        assert_eq!(messages.columns[2].scan, None);
    }

    #[test]
    fn polymorphic_references_apply_only_when_their_condition_holds() {
        let plan = plan();
        let tags = table(&plan, "tags");
        assert!(
            tags.select.ends_with(
                "WHERE (model_type IN ('Request')) AND (NOT coalesce((model_type = 'Request'), true) OR \"tags\".\"model_id\" IS NULL OR \"__r1\".\"__k\" IS NOT NULL)"
            ),
            "{}",
            tags.select
        );
        // requests.id is its primary key: the keys need no DISTINCT.
        assert!(tags.select.contains("(SELECT \"requests\".\"id\" AS"));
        assert!(tags.indexes("s").is_empty());
    }

    #[test]
    fn explain_shows_every_statement() {
        let plan = plan();
        let text = plan.explain("public", "stats__loading");
        assert!(text.contains("3 tables copied from schema public, 0 skipped"));
        for t in &plan.tables {
            assert!(text.contains(&t.copy_out()));
            assert!(text.contains(&t.create("stats__loading")));
        }
    }

    #[test]
    fn references_read_the_keys_of_the_copy_in_a_run() {
        let plan = plan();
        assert_eq!(
            plan.key_sets,
            [KeySet {
                table: "requests".to_owned(),
                column: "id".to_owned(),
                sql_type: "integer".to_owned(),
                kind: KeyKind::Integer,
                // requests counts messages, which refer to it: it is copied after them, and its
                // keys are collected on the source.
                from_source: true,
            }]
        );
        let messages = table(&plan, "messages");
        let keyed = messages.keyed.as_ref().unwrap();
        assert_eq!(keyed.key_sets, [0]);
        assert_eq!(
            keyed.explained(),
            "SELECT \"messages\".\"id\" AS \"id\", \"messages\".\"request_id\" AS \"request_id\", \
             encode(sha256((SELECT decode(current_setting('stats_anonymize.hmac_opad'), 'hex')) || sha256((SELECT decode(current_setting('stats_anonymize.hmac_ipad'), 'hex')) || convert_to((\"messages\".\"from_email\")::text, 'UTF8'))), 'hex') AS \"from_email\" \
             FROM \"public\".\"messages\" \
             WHERE CASE WHEN \"messages\".\"request_id\" = ANY(:'keys_0'::integer[]) THEN true END"
        );
        let array = |text: &str| std::sync::Arc::new(KeyValues::Array(text.to_owned()));
        assert_eq!(
            keyed.with_keys(&[(0, array("{1,2}"))]),
            keyed.explained().replace(":'keys_0'", "'{1,2}'")
        );
        let bits = std::sync::Arc::new(KeyValues::Bits {
            low: -3,
            bits: vec![0b1000_0001, 0b10],
        });
        assert!(keyed.with_keys(&[(0, bits)]).ends_with(
            "WHERE CASE WHEN \"messages\".\"request_id\" BETWEEN (-3) AND (12) \
             THEN CASE WHEN get_bit(decode('8102', 'hex'), \"messages\".\"request_id\"::bigint - (-3)) = 1 \
             THEN true END END"
        ));
        assert_eq!(
            keyed.without_keys(),
            keyed.explained().replace(":'keys_0'", "'{}'")
        );
        // The polymorphic reference reads the same key set, under its condition.
        let tags = table(&plan, "tags").keyed.as_ref().unwrap();
        assert_eq!(tags.key_sets, [0]);
        assert!(tags.explained().ends_with(
            "WHERE (model_type IN ('Request')) AND (NOT coalesce((model_type = 'Request'), true) OR \"tags\".\"model_id\" IS NULL OR CASE WHEN \"tags\".\"model_id\" = ANY(:'keys_0'::integer[]) THEN true END)"
        ));
        // A table that refers to nothing has only its own SELECT, and waits only for the tables
        // its counter caches count.
        let requests = table(&plan, "requests");
        assert!(requests.keyed.is_none());
        assert_eq!(plan.needs(requests).collect::<Vec<_>>(), ["messages"]);
        assert_eq!(plan.needs(messages).count(), 0);
        assert_eq!(
            plan.key_sets[0].source_copy(&requests.select),
            copy_out(&format!(
                "SELECT \"__q\".\"id\" FROM ({}) AS \"__q\"",
                requests.select
            ))
        );
        assert_eq!(
            requests.count_reads("s").unwrap(),
            [CountRead {
                query: "COPY (SELECT \"messages\".\"request_id\" AS \"__k\", count(*)::integer AS \"__n1\" FROM \"s\".\"messages\" GROUP BY 1) TO STDOUT (FORMAT binary)".to_owned(),
                key: 0,
                counters: vec![(4, 4)],
            }]
        );
        assert_eq!(
            plan.key_sets[0].explained("s"),
            "SELECT array_agg(\"id\") FILTER (WHERE \"id\" IS NOT NULL)::text FROM \"s\".\"requests\""
        );
        let text = plan.explain("public", "stats__loading");
        assert!(text.contains(&copy_out(&keyed.explained())));
        assert!(
            text.contains("--   :'keys_0' = the keys COPY (SELECT \"__q\".\"id\" FROM (SELECT")
        );
        assert!(text.contains(&requests.count_reads("stats__loading").unwrap()[0].query));
    }

    #[test]
    fn a_table_that_counts_itself_is_recounted_once_loaded() {
        // It could not be copied after itself: its counters are counted on its loaded copy.
        let rules = RULES.replace(
            "messages_count = { count = \"messages.request_id\" }",
            "messages_count = { count = \"requests.id\" }",
        );
        assert_ne!(rules, RULES);
        let rules = Rules::parse(&rules, "test rules").unwrap();
        let plan = Plan::new(&rules, &schema());
        let requests = table(&plan, "requests");
        assert!(!requests.counts_as_copied());
        assert!(requests.count_reads("s").is_none());
        assert!(requests.recount("s", RECOUNT_STAGING).is_some());
        assert_eq!(plan.needs(requests).count(), 0);
        assert!(!plan.key_sets[0].from_source);
        assert_eq!(
            plan.needs(table(&plan, "messages")).collect::<Vec<_>>(),
            ["requests"]
        );
    }

    #[test]
    fn keys_are_compared_in_one_type_with_one_hash_function() {
        let column_of = |sql_type: &str| fixtures::column("c", sql_type, false);
        let compared = |column: &str, key: &str| {
            Compared::new(&column_of(column), &column_of(key)).map(|c| (c.key_type, c.cast))
        };
        let same = |t: &str| Some((t.to_owned(), None));
        let cast = |key: &str, common: &str| Some((key.to_owned(), Some(common.to_owned())));
        assert_eq!(compared("integer", "integer"), same("integer"));
        assert_eq!(compared("uuid", "uuid"), same("uuid"));
        // Not a key set's type.
        assert_eq!(compared("numeric(10,2)", "numeric(10,2)"), None);
        assert_eq!(compared("bigint", "integer"), cast("integer", "bigint"));
        assert_eq!(compared("integer", "bigint"), cast("bigint", "bigint"));
        assert_eq!(
            compared("character varying(255)", "text"),
            cast("text", "text")
        );
        // No type holds every value of both, or the comparison would not hash.
        assert_eq!(compared("numeric", "integer"), None);
        assert_eq!(compared("character(3)", "text"), None);
        assert_eq!(compared("uuid", "text"), None);
        assert_eq!(compared("character varying(255)[]", "text"), None);
        let mut domain = column_of("integer");
        domain.builtin = false;
        assert!(Compared::new(&domain, &column_of("integer")).is_none());
    }

    #[test]
    fn a_reference_of_another_integer_type_compares_as_bigint() {
        let mut schema = schema();
        let tags = schema.tables.get_mut("tags").unwrap();
        tags.columns[2] = fixtures::column("model_id", "bigint", false);
        let rules = Rules::parse(RULES, "test rules").unwrap();
        let plan = Plan::new(&rules, &schema);
        let tags = table(&plan, "tags").keyed.as_ref().unwrap();
        assert!(tags.explained().ends_with(
            "OR CASE WHEN \"tags\".\"model_id\"::bigint = ANY(:'keys_0'::bigint[]) THEN true END)"
        ));
        // The key set is the same: its text reads as integers or as bigints.
        assert_eq!(plan.key_sets.len(), 1);
    }

    #[test]
    fn integer_keys_take_the_shorter_form() {
        let of = |keys: &[i64]| KeyValues::of_integers(keys, 1 << 20);
        // Dense: a bit each, from the smallest; bit i is bit i % 8 of byte i / 8.
        let dense: Vec<i64> = (1..=20).filter(|k| k % 10 != 0).collect();
        assert_eq!(
            of(&dense),
            Some(KeyValues::Bits {
                low: 1,
                bits: vec![0xff, 0xfd, 0x07]
            })
        );
        assert_eq!(
            of(&[-5, -4]),
            Some(KeyValues::Bits {
                low: -5,
                bits: vec![0b11]
            })
        );
        // Sparse: the array is shorter, and spans past what bits could hold are arrays.
        assert_eq!(
            of(&[1, 1_000_000]),
            Some(KeyValues::Array("{1,1000000}".to_owned()))
        );
        assert_eq!(
            of(&[i64::MIN, i64::MAX]),
            Some(KeyValues::Array(format!("{{{},{}}}", i64::MIN, i64::MAX)))
        );
        assert_eq!(of(&[]), Some(KeyValues::Array("{}".to_owned())));
        // Past the limit in either form.
        assert_eq!(KeyValues::of_integers(&[1, 1_000_000], 5), None);
        assert_eq!(KeyValues::of_integers(&dense, 5), None);
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(-10), 3);
        assert_eq!(decimal_digits(i64::MIN), 20);
    }

    #[test]
    fn keys_are_quoted_as_constants() {
        let plan = plan();
        let keyed = table(&plan, "messages").keyed.as_ref().unwrap();
        let keys = KeyValues::Array(r#"{"it's"}"#.to_owned());
        let select = keyed.with_keys(&[(0, keys.into())]);
        assert!(select.contains(r#"= ANY('{"it''s"}'::integer[])"#));
    }

    #[test]
    fn text_columns_and_arrays_of_text_are_scanned_as_they_stream() {
        let scan = |sql_type: &str| scan_as(&ColumnRule::Keep, sql_type);
        for text in ["text", "character varying(255)", "json", "xml", "bytea"] {
            assert_eq!(scan(text), Some(ScanAs::Text), "{text}");
        }
        assert_eq!(scan("jsonb"), Some(ScanAs::Jsonb));
        assert_eq!(
            scan("character varying[]"),
            Some(ScanAs::Array { jsonb: false })
        );
        assert_eq!(scan("jsonb[]"), Some(ScanAs::Array { jsonb: true }));
        for other in [
            "integer",
            "integer[]",
            "timestamp without time zone",
            "boolean",
        ] {
            assert_eq!(scan(other), None, "{other}");
        }
        assert_eq!(scan_as(&ColumnRule::Hash, "text"), None);
    }

    #[test]
    fn only_keys_whose_text_is_exact_make_key_sets() {
        for (sql_type, kind) in [
            ("integer", KeyKind::Integer),
            ("bigint", KeyKind::Integer),
            ("smallint", KeyKind::Integer),
            ("character varying(255)", KeyKind::Text),
            ("character(3)", KeyKind::Text),
            ("text", KeyKind::Text),
            ("uuid", KeyKind::Uuid),
        ] {
            assert_eq!(KeyKind::of(sql_type), Some(kind), "{sql_type}");
        }
        for other in [
            "timestamp without time zone",
            "date",
            "double precision",
            "money",
            "interval",
            "numeric(10,2)",
            "integer[]",
            "character varying[]",
        ] {
            assert_eq!(KeyKind::of(other), None, "{other}");
        }
    }

    #[test]
    fn a_key_the_referred_copy_does_not_keep_as_it_is_is_checked_by_its_chain() {
        // The copy of messages holds hashes of from_email: not keys a source row can match.
        let rules = RULES.replace(
            "references = [{ column = \"model_id\", table = \"requests\", when = \"model_type = 'Request'\" }]",
            "references = [{ column = \"model_id\", table = \"messages\", key = \"from_email\" }]",
        );
        assert_ne!(rules, RULES);
        let rules = Rules::parse(&rules, "test rules").unwrap();
        let plan = Plan::new(&rules, &schema());
        let tags = table(&plan, "tags");
        assert!(tags.keyed.is_none());
        assert!(
            tags.select
                .contains("SELECT DISTINCT \"messages\".\"from_email\" AS \"__k\"")
        );
        assert_eq!(plan.key_sets.len(), 1);
    }
}
