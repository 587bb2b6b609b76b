//! The rules: which tables are copied, which rows, and what becomes of each column.
//!
//! A rules file is TOML (not YAML: there `null`, `no` and `off` silently change type, and a rule
//! that silently means something else is a leak). Deny by default: every table of the source must
//! be named, as `copy` or `skip`, and every column of a copied table must have a rule; a table or
//! column the rules do not mention fails the run before anything is written, and so does a rule
//! naming something that no longer exists. Unknown keys are errors too, so a mis-nested rule cannot
//! quietly do nothing (Greenmask #176).
//!
//! ```toml
//! version = 1
//!
//! [scan]
//! samples = ["users.name", "users.email"]   # values sampled from the source, searched in the copy
//! patterns = ['\b[0-9]{5}\b']               # regular expressions that must not match
//!
//! [tables.embargoes]
//! action = "skip"
//! reason = "embargoed requests must not be known to exist"
//!
//! [tables.comments]
//! action = "copy"
//! filter = "visible"                                                # SQL, on the source
//! references = [{ column = "info_request_id", table = "info_requests" }]
//! [tables.comments.columns]
//! id = "keep"
//! body = "drop"
//! user_id = "keep"
//! info_request_id = "keep"
//! created_at = { date = "day" }
//! ```
//!
//! Column rules: `keep`, `drop` (no such column in the copy), `null` (the column, empty), `hash`
//! (HMAC-SHA256 pseudonym, hex), `bool` (true when the value is neither NULL nor empty, e.g.
//! `users.ban_text` → banned or not), `{ date = "day" | "month" | "year" }`,
//! `{ sql = "expression", type = "sql type" }`, and `{ count = "table.column", where = "…" }` (the
//! number of copied rows of that table whose column equals this row's `id`: counter caches
//! recomputed from what is copied).
//!
//! A reference `{ column, table, key = "id", when }` drops a row whose `column` points at a row of
//! `table` that the rules drop (its filter or its own references), also where there is no foreign
//! key; `when` limits it to polymorphic rows (`"model_type = 'InfoRequest'"`). A NULL reference
//! refers to nothing and keeps the row.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::schema::{Schema, TypeKind};

/// The version of the rules format this build reads.
pub const FORMAT_VERSION: i64 = 1;

/// The Alaveteli rules built into the binary (`rules/alaveteli.toml`).
pub const ALAVETELI: &str = include_str!("../rules/alaveteli.toml");

/// Problems found in the rules; reported all at once.
#[derive(Debug, Clone)]
pub struct Problems {
    /// What was being checked, e.g. `rules /etc/x.toml do not match the source`.
    pub summary: String,
    /// One line per problem.
    pub items: Vec<String>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len();
        write!(
            f,
            "{}: {n} problem{}: {}",
            self.summary,
            if n == 1 { "" } else { "s" },
            self.items.join("; ")
        )
    }
}

/// A `table.column` name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnRef {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table, self.column)
    }
}

impl ColumnRef {
    fn parse(text: &str) -> Option<Self> {
        let (table, column) = text.split_once('.')?;
        (!table.is_empty() && !column.is_empty() && !column.contains('.')).then(|| Self {
            table: table.to_owned(),
            column: column.to_owned(),
        })
    }
}

/// Generalisation of a date or timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    /// Midnight of the day.
    Day,
    /// The first of the month.
    Month,
    /// The first of January.
    Year,
}

impl DatePart {
    /// The `date_trunc` field name.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
            Self::Year => "year",
        }
    }
}

/// A counter recomputed from copied rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// The table counted; its filter and references apply.
    pub table: String,
    /// Its column that refers to this table.
    pub column: String,
    /// This table's column it refers to (default `id`).
    pub key: String,
    /// An extra condition on the counted rows (SQL).
    pub filter: Option<String>,
}

/// What becomes of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnRule {
    /// Copied as it is.
    Keep,
    /// Not in the copy at all.
    Drop,
    /// In the copy, always NULL.
    Null,
    /// A keyed HMAC-SHA256 pseudonym of the value's text, in hex; NULL stays NULL.
    Hash,
    /// True when the value is neither NULL nor empty.
    Bool,
    /// A date or timestamp truncated.
    Date(DatePart),
    /// An SQL expression evaluated on the source row, cast to `sql_type` (default: the column's).
    Sql {
        /// The expression.
        expr: String,
        /// The type of the column in the copy.
        sql_type: Option<String>,
    },
    /// A counter cache recomputed from the copied rows.
    Count(Count),
}

impl ColumnRule {
    /// True when the column exists in the copy.
    pub fn in_target(&self) -> bool {
        !matches!(self, Self::Drop)
    }

    /// The rule's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Null => "null",
            Self::Hash => "hash",
            Self::Bool => "bool",
            Self::Date(_) => "date",
            Self::Sql { .. } => "sql",
            Self::Count(_) => "count",
        }
    }
}

/// A row of this table is dropped when it refers to a row the rules drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// This table's column holding the reference.
    pub column: String,
    /// The table referred to; must be copied.
    pub table: String,
    /// The referred table's key column (default `id`).
    pub key: String,
    /// Only for rows where this SQL condition holds (polymorphic references).
    pub when: Option<String>,
}

/// How a copied table is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRule {
    /// Why, for the reader of the rules.
    pub reason: Option<String>,
    /// Only rows for which this SQL condition holds.
    pub filter: Option<String>,
    /// Rows referring to dropped rows are dropped.
    pub references: Vec<Reference>,
    /// A rule for every column.
    pub columns: BTreeMap<String, ColumnRule>,
}

/// What is done with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableRule {
    /// Copied, filtered and masked.
    Copy(CopyRule),
    /// Not copied; the reason says why.
    Skip {
        /// Why.
        reason: Option<String>,
    },
}

impl TableRule {
    /// The copy rule, for a copied table.
    pub fn as_copy(&self) -> Option<&CopyRule> {
        match self {
            Self::Copy(c) => Some(c),
            Self::Skip { .. } => None,
        }
    }

    /// The reason given.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Copy(c) => c.reason.as_deref(),
            Self::Skip { reason } => reason.as_deref(),
        }
    }
}

/// The leak scan's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRules {
    /// Source columns whose sampled values must appear nowhere in the copy (names, emails).
    pub samples: Vec<ColumnRef>,
    /// Values sampled from each of them.
    pub sample_size: u32,
    /// Shorter sampled values are not searched (a two-letter name matches everywhere).
    pub min_length: u32,
    /// Regular expressions (Rust's `regex` syntax, case-insensitive) that must not match any text
    /// in the copy.
    pub patterns: Vec<String>,
    /// Copied columns where email addresses are expected and allowed.
    pub allow_emails: Vec<ColumnRef>,
    /// Copied columns where sampled values may appear (a user named after an authority).
    pub allow_samples: Vec<ColumnRef>,
}

impl Default for ScanRules {
    fn default() -> Self {
        Self {
            samples: Vec::new(),
            sample_size: 100,
            min_length: 6,
            patterns: Vec::new(),
            allow_emails: Vec::new(),
            allow_samples: Vec::new(),
        }
    }
}

/// A whole rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Every table of the source, by name.
    pub tables: BTreeMap<String, TableRule>,
    /// The leak scan.
    pub scan: ScanRules,
}

/// Collects problems with the path of the value concerned.
struct Collector {
    items: Vec<String>,
}

impl Collector {
    fn push(&mut self, path: &str, message: impl fmt::Display) {
        self.items.push(format!("{path}: {message}"));
    }

    fn unknown_keys(&mut self, path: &str, table: &toml::Table, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.push(
                    &join(path, key),
                    format!("unknown key (expected {})", allowed.join(", ")),
                );
            }
        }
    }

    fn string(&mut self, path: &str, value: Option<&toml::Value>) -> Option<String> {
        match value? {
            toml::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            toml::Value::String(_) => {
                self.push(path, "must not be empty");
                None
            }
            other => {
                self.push(path, format!("must be a string, not {}", other.type_str()));
                None
            }
        }
    }

    fn table<'a>(&mut self, path: &str, value: &'a toml::Value) -> Option<&'a toml::Table> {
        if let toml::Value::Table(t) = value {
            Some(t)
        } else {
            self.push(path, format!("must be a table, not {}", value.type_str()));
            None
        }
    }

    fn count(&mut self, path: &str, value: Option<&toml::Value>, default: u32) -> u32 {
        match value {
            None => default,
            Some(toml::Value::Integer(n)) => u32::try_from(*n).unwrap_or_else(|_| {
                self.push(path, "must be between 0 and 4294967295");
                default
            }),
            Some(other) => {
                self.push(
                    path,
                    format!("must be an integer, not {}", other.type_str()),
                );
                default
            }
        }
    }

    fn strings(&mut self, path: &str, value: Option<&toml::Value>) -> Vec<String> {
        match value {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| self.string(&format!("{path}[{i}]"), Some(v)))
                .collect(),
            Some(other) => {
                self.push(path, format!("must be an array, not {}", other.type_str()));
                Vec::new()
            }
        }
    }

    fn column_refs(&mut self, path: &str, value: Option<&toml::Value>) -> Vec<ColumnRef> {
        self.strings(path, value)
            .into_iter()
            .filter_map(|s| {
                let parsed = ColumnRef::parse(&s);
                if parsed.is_none() {
                    self.push(path, format!("{s:?} is not `table.column`"));
                }
                parsed
            })
            .collect()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Rules {
    /// Parses a rules file. `origin` names it in the problems (a path, or `built-in rules`).
    ///
    /// # Errors
    /// Every problem found: TOML syntax, unknown keys, invalid rules, and the rules' own
    /// inconsistencies (see [`Rules::validate`]).
    pub fn parse(text: &str, origin: &str) -> Result<Self, Problems> {
        let problems = |items| Problems {
            summary: format!("{origin} are invalid"),
            items,
        };
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .map_or_else(String::new, |l| format!("line {l}: "));
            problems(vec![format!("{line}{}", e.message().trim())])
        })?;
        let mut c = Collector { items: Vec::new() };
        c.unknown_keys("", &root, &["version", "scan", "tables"]);
        match root.get("version") {
            Some(toml::Value::Integer(FORMAT_VERSION)) => {}
            Some(other) => c.push(
                "version",
                format!("{other} is not a version this build reads (it reads {FORMAT_VERSION})"),
            ),
            None => c.push(
                "version",
                format!("missing (write `version = {FORMAT_VERSION}`)"),
            ),
        }
        let scan = match root.get("scan") {
            Some(value) => c
                .table("scan", value)
                .map(|t| parse_scan(&mut c, t))
                .unwrap_or_default(),
            None => ScanRules::default(),
        };
        let mut tables = BTreeMap::new();
        match root.get("tables").map(|v| c.table("tables", v)) {
            Some(Some(t)) => {
                for (name, value) in t {
                    let path = format!("tables.{name}");
                    if let Some(rule) = c
                        .table(&path, value)
                        .and_then(|t| parse_table(&mut c, &path, t))
                    {
                        tables.insert(name.clone(), rule);
                    }
                }
            }
            Some(None) => {}
            None => c.push("tables", "missing: every table of the source needs a rule"),
        }
        let rules = Self { tables, scan };
        if c.items.is_empty() {
            c.items = rules.validate();
        }
        if c.items.is_empty() {
            Ok(rules)
        } else {
            Err(problems(c.items))
        }
    }

    /// The rules' own consistency, without a schema: references and counts name copied tables and
    /// columns that have rules, references form no cycle, scan settings name known columns.
    pub fn validate(&self) -> Vec<String> {
        let mut items = Vec::new();
        for (name, rule) in &self.tables {
            let Some(copy) = rule.as_copy() else { continue };
            for (i, r) in copy.references.iter().enumerate() {
                let path = format!("tables.{name}.references[{i}]");
                if !copy.columns.contains_key(&r.column) {
                    items.push(format!(
                        "{path}: column {:?} has no rule in tables.{name}.columns",
                        r.column
                    ));
                }
                match self.tables.get(&r.table) {
                    None => items.push(format!("{path}: table {:?} is not in the rules", r.table)),
                    Some(TableRule::Skip { .. }) => items.push(format!(
                        "{path}: table {:?} is skipped, so every row would be dropped; drop the reference or copy the table",
                        r.table
                    )),
                    Some(TableRule::Copy(_)) => {}
                }
            }
            for (column, rule) in &copy.columns {
                if let ColumnRule::Count(count) = rule {
                    let path = format!("tables.{name}.columns.{column}");
                    self.validate_count(&path, name, copy, count, &mut items);
                }
            }
        }
        if let Some(cycle) = self.reference_cycle() {
            items.push(format!(
                "references form a cycle ({}); a filter must break it",
                cycle.join(" → ")
            ));
        }
        for sample in &self.scan.samples {
            match self.tables.get(&sample.table) {
                None => items.push(format!(
                    "scan.samples: table {:?} is not in the rules",
                    sample.table
                )),
                Some(TableRule::Copy(copy)) if !copy.columns.contains_key(&sample.column) => {
                    items.push(format!("scan.samples: column {sample} has no rule"));
                }
                _ => {}
            }
        }
        for (key, list) in [
            ("allow_emails", &self.scan.allow_emails),
            ("allow_samples", &self.scan.allow_samples),
        ] {
            for allowed in list {
                match self.tables.get(&allowed.table).and_then(TableRule::as_copy) {
                    None => items.push(format!(
                        "scan.{key}: table {:?} is not copied",
                        allowed.table
                    )),
                    Some(copy) => match copy.columns.get(&allowed.column) {
                        Some(rule) if rule.in_target() => {}
                        _ => items.push(format!("scan.{key}: column {allowed} is not in the copy")),
                    },
                }
            }
        }
        if let Err(problems) = crate::scan::compile_patterns(&self.scan.patterns) {
            items.extend(problems);
        }
        for (name, copy) in self.copied() {
            if !copy.columns.is_empty() && !copy.columns.values().any(ColumnRule::in_target) {
                items.push(format!(
                    "tables.{name}: every column is dropped; skip the table instead"
                ));
            }
            items.extend(
                sql_texts(name, copy)
                    .filter(|(_, text)| text.contains('\0'))
                    .map(|(path, _)| {
                        format!(
                            "{path}: contains a NUL character, which PostgreSQL does not accept"
                        )
                    }),
            );
        }
        items
    }

    /// The problems of the counter cache at `path`, in the copy rule of table `name`.
    fn validate_count(
        &self,
        path: &str,
        name: &str,
        copy: &CopyRule,
        count: &Count,
        items: &mut Vec<String>,
    ) {
        match self.tables.get(&count.table) {
            Some(TableRule::Copy(counted)) => {
                if !counted.columns.contains_key(&count.column) {
                    items.push(format!(
                        "{path}: column {:?} has no rule in tables.{}.columns",
                        count.column, count.table
                    ));
                }
            }
            Some(TableRule::Skip { .. }) => items.push(format!(
                "{path}: counts rows of {:?}, which is skipped (the count would always be 0: use `drop`)",
                count.table
            )),
            None => items.push(format!(
                "{path}: table {:?} is not in the rules",
                count.table
            )),
        }
        // Counts are taken on the copy, matching the counted rows to this key there.
        match copy.columns.get(&count.key) {
            None => items.push(format!(
                "{path}: key column {:?} has no rule in tables.{name}.columns",
                count.key
            )),
            Some(ColumnRule::Keep) => {}
            Some(_) => items.push(format!(
                "{path}: key column {:?} must be kept as it is (counts are taken on the copy)",
                count.key
            )),
        }
    }

    /// A cycle among references, as the table names along it.
    fn reference_cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            rules: &'a Rules,
            table: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(start) = path.iter().position(|t| *t == table) {
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(table.to_owned());
                return Some(cycle);
            }
            if done.contains(table) {
                return None;
            }
            path.push(table);
            if let Some(copy) = rules.tables.get(table).and_then(TableRule::as_copy) {
                for r in &copy.references {
                    if let Some(cycle) = visit(rules, &r.table, path, done) {
                        return Some(cycle);
                    }
                }
            }
            path.pop();
            done.insert(table);
            None
        }
        let mut done = BTreeSet::new();
        for table in self.tables.keys() {
            if let Some(cycle) = visit(self, table, &mut Vec::new(), &mut done) {
                return Some(cycle);
            }
        }
        None
    }

    /// Deny by default: compares the rules with a source schema and returns every problem, the
    /// tables and columns without a rule first, then rules for things that do not exist, then rules
    /// that do not fit a column's type.
    pub fn check_against(&self, schema: &Schema) -> Vec<String> {
        let mut unknown = Vec::new();
        let mut stale = Vec::new();
        let mut misfit = Vec::new();
        for (name, table) in &schema.tables {
            match self.tables.get(name) {
                None => unknown.push(format!(
                    "table {name} is not in the rules (add [tables.{name}] with action = \"copy\" or \"skip\")"
                )),
                Some(TableRule::Copy(copy)) => {
                    for column in &table.columns {
                        if !copy.columns.contains_key(&column.name) {
                            unknown.push(format!(
                                "column {name}.{} is not in the rules (add it to [tables.{name}.columns])",
                                column.name
                            ));
                        }
                    }
                }
                Some(TableRule::Skip { .. }) => {}
            }
        }
        for (name, rule) in &self.tables {
            let Some(table) = schema.tables.get(name) else {
                stale.push(format!(
                    "table {name} is in the rules but not in the source (remove its rule)"
                ));
                continue;
            };
            let Some(copy) = rule.as_copy() else { continue };
            for (column, column_rule) in &copy.columns {
                let Some(col) = table.column(column) else {
                    stale.push(format!(
                        "column {name}.{column} is in the rules but not in the source (remove its rule)"
                    ));
                    continue;
                };
                let kind = TypeKind::of(&col.sql_type);
                match column_rule {
                    ColumnRule::Date(_) if kind != TypeKind::Date => misfit.push(format!(
                        "column {name}.{column}: `date` needs a date or timestamp column, not {}",
                        col.sql_type
                    )),
                    ColumnRule::Bool if kind == TypeKind::Bool => misfit.push(format!(
                        "column {name}.{column} is already boolean: use `keep`"
                    )),
                    ColumnRule::Count(count) => {
                        if kind != TypeKind::Integer {
                            misfit.push(format!(
                                "column {name}.{column}: `count` needs an integer column, not {}",
                                col.sql_type
                            ));
                        }
                        let counted = schema.tables.get(&count.table);
                        if counted.is_some_and(|t| t.column(&count.column).is_none()) {
                            stale.push(format!(
                                "column {name}.{column}: counts {}.{}, which does not exist in the source",
                                count.table, count.column
                            ));
                        }
                    }
                    _ => {}
                }
            }
            for r in &copy.references {
                if let Some(target) = schema.tables.get(&r.table)
                    && target.column(&r.key).is_none()
                {
                    stale.push(format!(
                        "tables.{name}.references: key {}.{} does not exist in the source",
                        r.table, r.key
                    ));
                }
            }
        }
        for sample in &self.scan.samples {
            if let Some(table) = schema.tables.get(&sample.table)
                && table.column(&sample.column).is_none()
            {
                stale.push(format!(
                    "scan.samples: column {sample} does not exist in the source"
                ));
            }
        }
        unknown.extend(stale);
        unknown.extend(misfit);
        unknown
    }

    /// True when some column is hashed (the key is then required).
    pub fn uses_hash(&self) -> bool {
        self.tables
            .values()
            .filter_map(TableRule::as_copy)
            .any(|c| c.columns.values().any(|r| *r == ColumnRule::Hash))
    }

    /// The copied tables' names.
    pub fn copied(&self) -> impl Iterator<Item = (&String, &CopyRule)> {
        self.tables
            .iter()
            .filter_map(|(n, r)| r.as_copy().map(|c| (n, c)))
    }
}

fn parse_scan(c: &mut Collector, t: &toml::Table) -> ScanRules {
    c.unknown_keys(
        "scan",
        t,
        &[
            "samples",
            "sample_size",
            "min_length",
            "patterns",
            "allow_emails",
            "allow_samples",
        ],
    );
    let defaults = ScanRules::default();
    ScanRules {
        samples: c.column_refs("scan.samples", t.get("samples")),
        sample_size: c.count(
            "scan.sample_size",
            t.get("sample_size"),
            defaults.sample_size,
        ),
        min_length: c.count("scan.min_length", t.get("min_length"), defaults.min_length),
        patterns: c.strings("scan.patterns", t.get("patterns")),
        allow_emails: c.column_refs("scan.allow_emails", t.get("allow_emails")),
        allow_samples: c.column_refs("scan.allow_samples", t.get("allow_samples")),
    }
}

fn parse_table(c: &mut Collector, path: &str, t: &toml::Table) -> Option<TableRule> {
    let action = c.string(&format!("{path}.action"), t.get("action"));
    let reason = c.string(&format!("{path}.reason"), t.get("reason"));
    match action.as_deref() {
        Some("skip") => {
            c.unknown_keys(path, t, &["action", "reason"]);
            Some(TableRule::Skip { reason })
        }
        Some("copy") => {
            c.unknown_keys(
                path,
                t,
                &["action", "reason", "filter", "references", "columns"],
            );
            let filter = c.string(&format!("{path}.filter"), t.get("filter"));
            let references =
                parse_references(c, &format!("{path}.references"), t.get("references"));
            let columns_path = format!("{path}.columns");
            let mut columns = BTreeMap::new();
            match t.get("columns").map(|v| c.table(&columns_path, v)) {
                Some(Some(cols)) => {
                    for (name, value) in cols {
                        if let Some(rule) = parse_column(c, &join(&columns_path, name), value) {
                            columns.insert(name.clone(), rule);
                        }
                    }
                }
                Some(None) => {}
                None => c.push(
                    &columns_path,
                    "missing: a copied table needs a rule for every column",
                ),
            }
            Some(TableRule::Copy(CopyRule {
                reason,
                filter,
                references,
                columns,
            }))
        }
        Some(other) => {
            c.push(
                &format!("{path}.action"),
                format!("{other:?} is not an action (expected \"copy\" or \"skip\")"),
            );
            None
        }
        None => {
            if !t.contains_key("action") {
                c.push(&format!("{path}.action"), "missing (\"copy\" or \"skip\")");
            }
            None
        }
    }
}

fn parse_references(c: &mut Collector, path: &str, value: Option<&toml::Value>) -> Vec<Reference> {
    let items = match value {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            c.push(path, format!("must be an array, not {}", other.type_str()));
            return Vec::new();
        }
    };
    let mut references = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(t) = c.table(&p, item) else { continue };
        c.unknown_keys(&p, t, &["column", "table", "key", "when"]);
        let column = c.string(&format!("{p}.column"), t.get("column"));
        let table = c.string(&format!("{p}.table"), t.get("table"));
        let key = c
            .string(&format!("{p}.key"), t.get("key"))
            .unwrap_or_else(|| "id".to_owned());
        let when = c.string(&format!("{p}.when"), t.get("when"));
        match (column, table) {
            (Some(column), Some(table)) => references.push(Reference {
                column,
                table,
                key,
                when,
            }),
            (column, table) => {
                if column.is_none() && !t.contains_key("column") {
                    c.push(&p, "missing `column`");
                }
                if table.is_none() && !t.contains_key("table") {
                    c.push(&p, "missing `table`");
                }
            }
        }
    }
    references
}

fn parse_column(c: &mut Collector, path: &str, value: &toml::Value) -> Option<ColumnRule> {
    const NAMES: &str =
        "keep, drop, null, hash, bool, or a table { date = … }, { sql = … }, { count = … }";
    match value {
        toml::Value::String(name) => match name.as_str() {
            "keep" => Some(ColumnRule::Keep),
            "drop" => Some(ColumnRule::Drop),
            "null" => Some(ColumnRule::Null),
            "hash" => Some(ColumnRule::Hash),
            "bool" => Some(ColumnRule::Bool),
            other => {
                c.push(path, format!("{other:?} is not a rule (expected {NAMES})"));
                None
            }
        },
        toml::Value::Table(t) => {
            let kinds: Vec<&str> = ["date", "sql", "count"]
                .into_iter()
                .filter(|k| t.contains_key(*k))
                .collect();
            match kinds.as_slice() {
                ["date"] => {
                    c.unknown_keys(path, t, &["date"]);
                    match c.string(&format!("{path}.date"), t.get("date")).as_deref() {
                        Some("day") => Some(ColumnRule::Date(DatePart::Day)),
                        Some("month") => Some(ColumnRule::Date(DatePart::Month)),
                        Some("year") => Some(ColumnRule::Date(DatePart::Year)),
                        Some(other) => {
                            c.push(
                                &format!("{path}.date"),
                                format!("{other:?} is not \"day\", \"month\" or \"year\""),
                            );
                            None
                        }
                        None => None,
                    }
                }
                ["sql"] => {
                    c.unknown_keys(path, t, &["sql", "type"]);
                    let expr = c.string(&format!("{path}.sql"), t.get("sql"))?;
                    let sql_type = c.string(&format!("{path}.type"), t.get("type"));
                    Some(ColumnRule::Sql { expr, sql_type })
                }
                ["count"] => {
                    c.unknown_keys(path, t, &["count", "where", "key"]);
                    let target = c.string(&format!("{path}.count"), t.get("count"))?;
                    let Some(target) = ColumnRef::parse(&target) else {
                        c.push(
                            &format!("{path}.count"),
                            format!("{target:?} is not `table.column`"),
                        );
                        return None;
                    };
                    Some(ColumnRule::Count(Count {
                        table: target.table,
                        column: target.column,
                        key: c
                            .string(&format!("{path}.key"), t.get("key"))
                            .unwrap_or_else(|| "id".to_owned()),
                        filter: c.string(&format!("{path}.where"), t.get("where")),
                    }))
                }
                [] => {
                    c.push(
                        path,
                        format!("a table rule needs one of date, sql, count ({NAMES})"),
                    );
                    None
                }
                _ => {
                    c.push(
                        path,
                        format!("only one of {} may be given", kinds.join(", ")),
                    );
                    None
                }
            }
        }
        other => {
            c.push(
                path,
                format!(
                    "must be a string or a table, not {} (expected {NAMES})",
                    other.type_str()
                ),
            );
            None
        }
    }
}

/// The SQL written in a table's copy rule, each with where it is written.
fn sql_texts<'a>(name: &'a str, copy: &'a CopyRule) -> impl Iterator<Item = (String, &'a str)> {
    let filter = copy
        .filter
        .iter()
        .map(move |f| (format!("tables.{name}.filter"), f.as_str()));
    let when = copy
        .references
        .iter()
        .enumerate()
        .filter_map(move |(i, r)| {
            r.when
                .as_deref()
                .map(|w| (format!("tables.{name}.references[{i}].when"), w))
        });
    let columns = copy.columns.iter().flat_map(move |(column, rule)| {
        let path = format!("tables.{name}.columns.{column}");
        let texts: Vec<&str> = match rule {
            ColumnRule::Sql { expr, sql_type } => std::iter::once(expr.as_str())
                .chain(sql_type.as_deref())
                .collect(),
            ColumnRule::Count(count) => count.filter.as_deref().into_iter().collect(),
            _ => Vec::new(),
        };
        texts.into_iter().map(move |t| (path.clone(), t))
    });
    filter.chain(when).chain(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rules, Problems> {
        Rules::parse(text, "test rules")
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text).expect_err("should be invalid").items
    }

    const SMALL: &str = r#"
version = 1
[tables.requests]
action = "copy"
filter = "prominence = 'normal'"
[tables.requests.columns]
id = "keep"
title = "keep"
email = "hash"
secret = "drop"
note = "null"
banned = "bool"
created_at = { date = "month" }
score = { sql = "score * 2", type = "bigint" }

[tables.messages]
action = "copy"
references = [{ column = "request_id", table = "requests" },
              { column = "model_id", table = "requests", key = "id", when = "model_type = 'R'" }]
columns = { id = "keep", request_id = "keep", model_id = "keep", model_type = "keep" }

[tables.logs]
action = "skip"
reason = "operational"
"#;

    #[test]
    fn parses_every_kind_of_rule() {
        let rules = parse(SMALL).unwrap();
        let requests = rules.tables["requests"].as_copy().unwrap();
        assert_eq!(requests.filter.as_deref(), Some("prominence = 'normal'"));
        assert_eq!(requests.columns["email"], ColumnRule::Hash);
        assert_eq!(requests.columns["secret"], ColumnRule::Drop);
        assert_eq!(requests.columns["note"], ColumnRule::Null);
        assert_eq!(requests.columns["banned"], ColumnRule::Bool);
        assert_eq!(
            requests.columns["created_at"],
            ColumnRule::Date(DatePart::Month)
        );
        assert_eq!(
            requests.columns["score"],
            ColumnRule::Sql {
                expr: "score * 2".to_owned(),
                sql_type: Some("bigint".to_owned())
            }
        );
        let messages = rules.tables["messages"].as_copy().unwrap();
        assert_eq!(messages.references.len(), 2);
        assert_eq!(messages.references[0].key, "id");
        assert_eq!(
            messages.references[1].when.as_deref(),
            Some("model_type = 'R'")
        );
        assert_eq!(
            rules.tables["logs"],
            TableRule::Skip {
                reason: Some("operational".to_owned())
            }
        );
        assert!(rules.uses_hash());
        assert_eq!(rules.scan, ScanRules::default());
    }

    #[test]
    fn unknown_and_misnested_keys_are_errors_not_ignored() {
        // A filter nested under columns is the kind of mistake that silently copies every row.
        let items = problems(
            r#"
version = 1
colour = "blue"
[tables.t]
action = "copy"
filtre = "x"
[tables.t.columns]
id = "keep"
filter = "visible"
"#,
        );
        assert!(
            items.contains(&"colour: unknown key (expected version, scan, tables)".to_owned()),
            "{items:?}"
        );
        assert!(
            items
                .iter()
                .any(|i| i.starts_with("tables.t.filtre: unknown key")),
            "{items:?}"
        );
        assert!(
            items
                .iter()
                .any(|i| i.starts_with("tables.t.columns.filter: \"visible\" is not a rule")),
            "{items:?}"
        );
    }

    #[test]
    fn invalid_rules_are_all_reported_with_their_path() {
        let items = problems(
            r#"
version = 1
[tables.a]
action = "copy"
columns = { x = "hsh", y = { date = "week" }, z = { sql = "1", count = "b.c" }, w = 3, v = {} }
[tables.b]
action = "skip"
filter = "true"
[tables.c]
action = "move"
[tables.d]
reason = "no action"
"#,
        );
        let expected = [
            "tables.a.columns.x: \"hsh\" is not a rule",
            "tables.a.columns.y.date: \"week\" is not \"day\", \"month\" or \"year\"",
            "tables.a.columns.z: only one of sql, count may be given",
            "tables.a.columns.w: must be a string or a table, not integer",
            "tables.a.columns.v: a table rule needs one of date, sql, count",
            "tables.b.filter: unknown key (expected action, reason)",
            "tables.c.action: \"move\" is not an action",
            "tables.d.action: missing",
        ];
        for e in expected {
            assert!(
                items.iter().any(|i| i.starts_with(e)),
                "{e} not in {items:#?}"
            );
        }
        assert_eq!(items.len(), expected.len(), "{items:#?}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("version = 1\n[tables\n").unwrap_err();
        assert_eq!(err.items.len(), 1);
        assert!(err.items[0].starts_with("line 2: "), "{err}");
        assert!(
            err.to_string()
                .starts_with("test rules are invalid: 1 problem: line 2")
        );
    }

    #[test]
    fn version_is_required_and_checked() {
        assert!(
            problems("[tables]\n")
                .iter()
                .any(|i| i.starts_with("version: missing"))
        );
        assert!(
            problems("version = 2\n[tables]\n")
                .iter()
                .any(|i| i.starts_with("version: 2 is not a version"))
        );
    }

    #[test]
    fn references_must_name_copied_tables_and_ruled_columns() {
        let items = problems(
            r#"
version = 1
[tables.a]
action = "copy"
references = [{ column = "b_id", table = "b" }, { column = "id", table = "nowhere" }]
columns = { id = "keep", n = { count = "c.a_id" } }
[tables.b]
action = "skip"
"#,
        );
        for e in [
            "tables.a.references[0]: column \"b_id\" has no rule",
            "tables.a.references[0]: table \"b\" is skipped",
            "tables.a.references[1]: table \"nowhere\" is not in the rules",
            "tables.a.columns.n: table \"c\" is not in the rules",
        ] {
            assert!(
                items.iter().any(|i| i.starts_with(e)),
                "{e} not in {items:#?}"
            );
        }
    }

    #[test]
    fn a_reference_needs_a_column_and_a_table() {
        let items = problems(
            r#"
version = 1
[tables.a]
action = "copy"
references = [{ table = "a" }, { column = "id", tabel = "a" }]
columns = { id = "keep" }
"#,
        );
        assert_eq!(
            items,
            [
                "tables.a.references[0]: missing `column`",
                "tables.a.references[1].tabel: unknown key (expected column, table, key, when)",
                "tables.a.references[1]: missing `table`"
            ]
        );
    }

    #[test]
    fn a_count_needs_its_key_kept_as_it_is() {
        let items = problems(
            r#"
version = 1
[tables.a]
action = "copy"
columns = { id = "hash", n = { count = "b.a_id" } }
[tables.b]
action = "copy"
columns = { id = "keep", a_id = "keep" }
"#,
        );
        assert_eq!(
            items,
            [
                "tables.a.columns.n: key column \"id\" must be kept as it is (counts are taken on the copy)"
            ]
        );
    }

    #[test]
    fn reference_cycles_are_refused() {
        let items = problems(
            r#"
version = 1
[tables.a]
action = "copy"
references = [{ column = "b_id", table = "b" }]
columns = { id = "keep", b_id = "keep" }
[tables.b]
action = "copy"
references = [{ column = "a_id", table = "a" }]
columns = { id = "keep", a_id = "keep" }
"#,
        );
        assert_eq!(
            items,
            ["references form a cycle (a → b → a); a filter must break it"]
        );
    }

    #[test]
    fn nul_characters_in_sql_are_refused() {
        let items = problems(
            r#"
version = 1
[tables.requests]
action = "copy"
filter = "a\u0000"
references = [{ column = "id", table = "requests", when = "b\u0000" }]
columns = { id = "keep", n = { sql = "c\u0000", type = "text" }, m = { count = "requests.id", where = "d\u0000" } }
"#,
        );
        for path in [
            "tables.requests.filter",
            "tables.requests.references[0].when",
            "tables.requests.columns.n",
            "tables.requests.columns.m",
        ] {
            let e = format!("{path}: contains a NUL character");
            assert!(
                items.iter().any(|i| i.starts_with(&e)),
                "{e} not in {items:#?}"
            );
        }
    }

    #[test]
    fn scan_settings_are_checked() {
        let items = problems(
            r#"
version = 1
[scan]
samples = ["users.name", "nodot", "ghosts.name"]
allow_emails = ["users.email"]
sample_size = -1
[tables.users]
action = "copy"
columns = { id = "keep", name = "drop", email = "drop" }
"#,
        );
        for e in [
            "scan.samples: \"nodot\" is not `table.column`",
            "scan.sample_size: must be between 0",
        ] {
            assert!(
                items.iter().any(|i| i.starts_with(e)),
                "{e} not in {items:#?}"
            );
        }
        // Only the syntax problems are reported while there are some; then the consistency ones.
        let items = problems(
            r#"
version = 1
[scan]
samples = ["ghosts.name"]
allow_emails = ["users.email"]
[tables.users]
action = "copy"
columns = { id = "keep", email = "drop" }
"#,
        );
        assert_eq!(
            items,
            [
                "scan.samples: table \"ghosts\" is not in the rules",
                "scan.allow_emails: column users.email is not in the copy"
            ]
        );
    }

    #[test]
    fn the_builtin_rules_parse() {
        let rules = Rules::parse(ALAVETELI, "built-in rules").unwrap();
        assert!(rules.tables.len() >= 79);
        assert!(rules.uses_hash());
    }
}
