//! The source's schema: its tables, columns and indexes, read from the database (in the run's
//! snapshot) or from a `pg_dump --schema-only` file (for `check --schema`).
//!
//! Only ordinary and partitioned tables of one schema count (partitions are copied through their
//! parent); views, sequences and functions are not copied.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type as `format_type` writes it, e.g. `character varying(32)`.
    pub sql_type: String,
    /// A type of `pg_catalog`: the same type exists in the target. Other types (enums, domains,
    /// extension types) become `text` in the copy.
    pub builtin: bool,
    /// Declared `NOT NULL`.
    pub not_null: bool,
}

/// One index usable in the copy: on plain columns, without a predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Its name.
    pub name: String,
    /// The primary key.
    pub primary: bool,
    /// Unique.
    pub unique: bool,
    /// Access method (`btree`, `gin`, …).
    pub method: String,
    /// Its key columns, in order.
    pub columns: Vec<String>,
}

/// One table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Its columns in order.
    pub columns: Vec<Column>,
    /// Its plain indexes (from a database only).
    pub indexes: Vec<Index>,
    /// Its size on disk, to start the largest tables first (from a database only).
    pub bytes: i64,
}

impl Table {
    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// True when `column` alone is the primary key or a unique index (a join on it cannot
    /// multiply rows).
    pub fn is_unique(&self, column: &str) -> bool {
        self.indexes
            .iter()
            .any(|i| (i.primary || i.unique) && i.columns.len() == 1 && i.columns[0] == column)
    }
}

/// The tables of one schema.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    /// The schema's name.
    pub name: String,
    /// Its tables by name.
    pub tables: BTreeMap<String, Table>,
}

/// What the rules need to know about a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// Text, JSON and the like: searched by the leak scan.
    Text,
    /// `bytea`: searched by the leak scan as its raw bytes, read as UTF-8 where they are.
    Bytes,
    /// `date` and timestamps: can be generalised.
    Date,
    /// `boolean`.
    Bool,
    /// Integers: can hold a count.
    Integer,
    /// Arrays: the leak scan searches the elements of arrays of text (or `bytea`).
    Array,
    /// Anything else (numbers, network addresses, …).
    Other,
}

impl TypeKind {
    /// The kind of a type written as `format_type` does.
    pub fn of(sql_type: &str) -> Self {
        let t = sql_type.trim().to_ascii_lowercase();
        let base = t.split('(').next().unwrap_or_default().trim();
        if t.ends_with("[]") {
            Self::Array
        } else if base == "date" || base.starts_with("timestamp") {
            Self::Date
        } else if base == "boolean" || base == "bool" {
            Self::Bool
        } else if matches!(
            base,
            "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8"
        ) {
            Self::Integer
        } else if base == "bytea" {
            Self::Bytes
        } else if matches!(
            base,
            "text"
                | "character varying"
                | "varchar"
                | "character"
                | "char"
                | "json"
                | "jsonb"
                | "xml"
                | "citext"
                | "name"
        ) {
            Self::Text
        } else {
            Self::Other
        }
    }
}

/// Reads the tables, columns and indexes of `schema` through `client` (inside the run's snapshot).
///
/// # Errors
/// When the catalog cannot be read, or the schema has no tables (a wrong schema name must not look
/// like an empty database).
pub async fn introspect(client: &tokio_postgres::Client, schema: &str) -> Result<Schema> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    t.typnamespace = 'pg_catalog'::regnamespace, a.attnotnull, \
                    pg_relation_size(c.oid) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("reading the source's tables", &e))?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        let table = tables.entry(name.clone()).or_insert_with(|| Table {
            name,
            bytes: row.get(5),
            ..Table::default()
        });
        table.columns.push(Column {
            name: row.get(1),
            sql_type: row.get(2),
            builtin: row.get(3),
            not_null: row.get(4),
        });
    }
    if tables.is_empty() {
        return Err(Error::NotFound(format!(
            "the source has no tables in schema {schema:?} (check STATS_ANONYMIZE_SOURCE_SCHEMA and the database in SOURCE_DATABASE_URL)"
        )));
    }
    let indexes = client
        .query(
            "SELECT c.relname::text, i.relname::text, x.indisprimary, x.indisunique, am.amname::text, \
                    array(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(num, ord) \
                          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.num ORDER BY k.ord) \
             FROM pg_index x \
             JOIN pg_class c ON c.oid = x.indrelid \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_am am ON am.oid = i.relam \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND x.indexprs IS NULL AND x.indpred IS NULL \
               AND NOT 0 = ANY (x.indkey::int2[]) AND x.indnkeyatts = x.indnatts \
             ORDER BY c.relname, i.relname",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("reading the source's indexes", &e))?;
    for row in indexes {
        let table: String = row.get(0);
        if let Some(t) = tables.get_mut(&table) {
            t.indexes.push(Index {
                name: row.get(1),
                primary: row.get(2),
                unique: row.get(3),
                method: row.get(4),
                columns: row.get(5),
            });
        }
    }
    Ok(Schema {
        name: schema.to_owned(),
        tables,
    })
}

/// Reads the tables of `schema` from a `pg_dump --schema-only` file: each
/// `CREATE TABLE schema.name (…);` with its columns. Partitions (`PARTITION OF`) are skipped, as
/// when reading a database.
///
/// # Errors
/// When no table of that schema is found, or a `CREATE TABLE` does not end.
pub fn parse_dump(text: &str, schema: &str) -> Result<Schema, String> {
    let mut tables = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(rest) = line
            .strip_prefix("CREATE TABLE ")
            .or_else(|| line.strip_prefix("CREATE UNLOGGED TABLE "))
        else {
            continue;
        };
        let Some((table_schema, name, after)) = qualified_name(rest) else {
            return Err(format!("line {}: cannot read the table name", number + 1));
        };
        let after = after.trim();
        if after.starts_with("PARTITION OF") || table_schema.as_deref().unwrap_or(schema) != schema
        {
            continue;
        }
        if after != "(" {
            return Err(format!(
                "line {}: expected `(` after the table name of {name}",
                number + 1
            ));
        }
        let mut table = Table {
            name: name.clone(),
            ..Table::default()
        };
        loop {
            let Some((_, line)) = lines.next() else {
                return Err(format!("CREATE TABLE {name} does not end"));
            };
            let line = line.trim();
            if line.starts_with(')') {
                break;
            }
            if line.starts_with("CONSTRAINT ") || line.is_empty() {
                continue;
            }
            let (column, sql_type) = column_definition(line)
                .ok_or_else(|| format!("CREATE TABLE {name}: cannot read {line:?}"))?;
            table.columns.push(Column {
                name: column,
                not_null: line.contains(" NOT NULL"),
                sql_type,
                builtin: true,
            });
        }
        tables.insert(name, table);
    }
    if tables.is_empty() {
        return Err(format!("no CREATE TABLE in schema {schema:?}"));
    }
    Ok(Schema {
        name: schema.to_owned(),
        tables,
    })
}

/// An identifier at the start of `text`, unquoted, and the rest.
fn identifier(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, ch)) = chars.next() {
            if ch == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(ch);
            }
        }
        None
    } else {
        let end = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(text.len());
        (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
    }
}

/// `schema.name` or `name`, and the rest.
fn qualified_name(text: &str) -> Option<(Option<String>, String, &str)> {
    let (first, rest) = identifier(text)?;
    if let Some(rest) = rest.strip_prefix('.') {
        let (second, rest) = identifier(rest)?;
        Some((Some(first), second, rest))
    } else {
        Some((None, first, rest))
    }
}

/// `name type [NOT NULL] [DEFAULT …],` → (name, type).
fn column_definition(line: &str) -> Option<(String, String)> {
    let (name, rest) = identifier(line)?;
    let rest = rest.trim().trim_end_matches(',');
    let end = [
        " NOT NULL",
        " DEFAULT ",
        " COLLATE ",
        " GENERATED ",
        " CONSTRAINT ",
        " NULL",
    ]
    .iter()
    .filter_map(|m| rest.find(m))
    .min()
    .unwrap_or(rest.len());
    let sql_type = rest[..end].trim();
    (!sql_type.is_empty()).then(|| (name, sql_type.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_kinds() {
        assert_eq!(
            TypeKind::of("timestamp(6) without time zone"),
            TypeKind::Date
        );
        assert_eq!(TypeKind::of("date"), TypeKind::Date);
        assert_eq!(TypeKind::of("character varying(32)"), TypeKind::Text);
        assert_eq!(TypeKind::of("jsonb"), TypeKind::Text);
        assert_eq!(TypeKind::of("integer"), TypeKind::Integer);
        assert_eq!(TypeKind::of("bigint"), TypeKind::Integer);
        assert_eq!(TypeKind::of("numeric(8,2)"), TypeKind::Other);
        assert_eq!(TypeKind::of("inet"), TypeKind::Other);
        assert_eq!(TypeKind::of("text[]"), TypeKind::Array);
        assert_eq!(TypeKind::of("boolean"), TypeKind::Bool);
        assert_eq!(TypeKind::of("bytea"), TypeKind::Bytes);
    }

    #[test]
    fn reads_a_schema_dump() {
        let dump = r#"
CREATE TABLE public.users (
    id integer NOT NULL,
    "position" integer,
    name character varying DEFAULT 'x'::character varying NOT NULL,
    "we""ird" timestamp(6) without time zone,
    CONSTRAINT users_ck CHECK ((id > 0))
);
CREATE TABLE other.elsewhere (
    id integer
);
CREATE TABLE public.part_1 PARTITION OF public.parted FOR VALUES IN (1);
"#;
        let schema = parse_dump(dump, "public").unwrap();
        assert_eq!(schema.tables.len(), 1);
        let users = &schema.tables["users"];
        let columns: Vec<(&str, &str, bool)> = users
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.sql_type.as_str(), c.not_null))
            .collect();
        assert_eq!(
            columns,
            [
                ("id", "integer", true),
                ("position", "integer", false),
                ("name", "character varying", true),
                ("we\"ird", "timestamp(6) without time zone", false)
            ]
        );
        assert!(parse_dump(dump, "nothing").is_err());
        assert!(parse_dump("CREATE TABLE public.x (\n id integer,\n", "public").is_err());
    }

    #[test]
    fn reads_the_alaveteli_fixture() {
        let text = include_str!("../../../tests/fixtures/alaveteli/structure.sql");
        let schema = parse_dump(text, "public").unwrap();
        assert_eq!(schema.tables.len(), 79);
        let requests = &schema.tables["info_requests"];
        assert_eq!(requests.columns.len(), 31);
        assert_eq!(
            requests
                .column("date_response_required_by")
                .unwrap()
                .sql_type,
            "date"
        );
        assert_eq!(
            schema.tables["foi_attachments"]
                .column("hexdigest")
                .unwrap()
                .sql_type,
            "character varying(32)"
        );
    }
}
