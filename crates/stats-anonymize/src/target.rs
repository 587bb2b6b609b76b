//! The target database: the schemas a run loads, swaps and keeps.
//!
//! Three schemas per target schema `stats`: `stats` (what readers use), `stats__loading` (the copy
//! being made) and `stats__previous` (the copy the last swap replaced, for `rollback`). Every schema
//! stats-anonymize creates carries a comment marking it as its own; a schema of one of those names
//! without the mark is never dropped or renamed, so a wrong `TARGET_DATABASE_URL` or schema name
//! cannot destroy someone's data.
//!
//! The swap is one transaction: lock every table of the live copy, drop the old previous copy,
//! rename live → previous and loading → live, move the reader role's grants, commit. A query that
//! started before holds a lock on the old tables, so the swap waits for it; a query that starts
//! during the swap waits on the lock and then resolves its table names again, in the new schema.
//! Either way a statement sees one copy, never a mix.
//!
//! Waiting for those locks must not hurt readers. A reader locks its tables one by one, in the
//! order of its query, and the swap in another order: a reader holding table A and waiting for B,
//! which the swap holds while waiting for A, is a deadlock, and PostgreSQL would cancel whichever
//! of the two has waited `deadlock_timeout` (1 s by default) first, possibly the reader. So each
//! attempt waits at most half the server's `deadlock_timeout` (and at most [`MAX_LOCK_WAIT`]),
//! then gives every lock back and tries again a moment later: the swap is what gives way, a reader
//! waits a fraction of a second at most and never gets an error. Attempts go on for
//! `STATS_ANONYMIZE_SWAP_TIMEOUT`; past it the run fails and the live copy stays.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::Cancel;
use crate::error::{Error, Result};
use crate::pg::{self, ident, literal};

/// The longest one attempt of the swap waits for its locks (less when the server's
/// `deadlock_timeout` is under 4 s: half of it).
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(2);

/// The wait of one attempt: half the server's `deadlock_timeout`, so that a reader the swap holds
/// up is let go before PostgreSQL's deadlock check could pick it as the victim.
async fn lock_wait(client: &tokio_postgres::Client) -> Result<Duration> {
    let seconds: f64 = client
        .query_one(
            "SELECT extract(epoch FROM current_setting('deadlock_timeout')::interval)::float8",
            &[],
        )
        .await
        .map_err(|e| Error::db("reading deadlock_timeout", &e))?
        .get(0);
    let half = Duration::try_from_secs_f64(seconds / 2.0).unwrap_or(MAX_LOCK_WAIT);
    Ok(half.clamp(Duration::from_millis(10), MAX_LOCK_WAIT))
}

/// The start of the comment on every schema stats-anonymize made.
pub const MARK: &str = "stats-anonymize copy ";

/// The names of the schemas a run or rollback uses.
#[derive(Debug, Clone)]
pub struct Names {
    /// What readers use.
    pub live: String,
    /// The copy being made.
    pub loading: String,
    /// The copy the last swap replaced.
    pub previous: String,
    /// The copy before that, between the swap that replaces it and its drop, which readers do not
    /// wait for.
    pub expired: String,
    /// A name used for a moment during `rollback`.
    swapping: String,
}

impl Names {
    /// The names for a target schema.
    pub fn new(live: &str) -> Self {
        Self {
            live: live.to_owned(),
            loading: format!("{live}__loading"),
            previous: format!("{live}__previous"),
            expired: format!("{live}__expired"),
            swapping: format!("{live}__rollback"),
        }
    }
}

/// What the mark on a schema records.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mark {
    /// When the run that made the copy started (UTC, from the target server's clock).
    pub started_at: String,
    /// The version of stats-anonymize that made it.
    pub version: String,
    /// Tables copied (0 while loading).
    pub tables: u64,
    /// Rows copied (0 while loading).
    pub rows: u64,
}

impl Mark {
    fn comment(&self) -> String {
        format!(
            "{MARK}{}",
            serde_json::to_string(self).expect("a mark serialises")
        )
    }
}

/// A schema as found in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No such schema.
    Absent,
    /// Ours, with its mark.
    Ours(Mark),
    /// Someone else's.
    Foreign,
}

/// Reads a schema's mark.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn find(client: &tokio_postgres::Client, schema: &str) -> Result<Found> {
    let row = client
        .query_opt(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("reading the target's schemas", &e))?;
    Ok(match row {
        None => Found::Absent,
        Some(row) => match row
            .get::<_, Option<String>>(0)
            .as_deref()
            .and_then(|c| c.strip_prefix(MARK))
            .and_then(|json| serde_json::from_str(json).ok())
        {
            Some(mark) => Found::Ours(mark),
            None => Found::Foreign,
        },
    })
}

/// Takes the target's lock for this schema, held until the connection closes: two runs (or a run
/// and a rollback) on one target never overlap.
///
/// # Errors
/// [`Error::Conflict`] when another run holds it.
pub async fn lock(client: &tokio_postgres::Client, names: &Names) -> Result<()> {
    let key = format!("stats-anonymize:{}", names.live);
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .map_err(|e| Error::db("taking the target's lock", &e))?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "another stats-anonymize run or rollback is working on schema {} of the target",
            names.live
        )))
    }
}

/// Refuses to touch any of the schemas a run uses if one exists without our mark.
///
/// # Errors
/// [`Error::Conflict`] naming the schema.
pub async fn check_ours(client: &tokio_postgres::Client, names: &Names) -> Result<()> {
    for schema in [&names.live, &names.loading, &names.previous, &names.expired] {
        if find(client, schema).await? == Found::Foreign {
            return Err(Error::Conflict(format!(
                "schema {schema} of the target was not made by stats-anonymize; refusing to replace it (choose another STATS_ANONYMIZE_TARGET_SCHEMA, or drop that schema yourself)"
            )));
        }
    }
    Ok(())
}

/// Checks that the reader role exists, before anything is copied.
///
/// # Errors
/// When it does not.
pub async fn check_role(client: &tokio_postgres::Client, role: &str) -> Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(|e| Error::db("reading the target's roles", &e))?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(Error::Settings(ops_common::Error::Setting {
            name: crate::settings::STATS_ANONYMIZE_READER_ROLE.name.to_owned(),
            origin: String::new(),
            message: format!("role {role:?} does not exist in the target database"),
        }))
    }
}

/// The target server's current time, UTC, ISO 8601.
///
/// # Errors
/// When the query fails.
pub async fn now(client: &tokio_postgres::Client) -> Result<String> {
    Ok(client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .await
        .map_err(|e| Error::db("reading the target's clock", &e))?
        .get(0))
}

/// Drops the loading and expired schemas a failed run left, and creates a fresh loading schema
/// with its mark.
///
/// # Errors
/// When a statement fails.
pub async fn create_loading(
    client: &tokio_postgres::Client,
    names: &Names,
    mark: &Mark,
) -> Result<()> {
    drop_loading(client, names).await?;
    drop_ours(client, &names.expired).await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {loading}; COMMENT ON SCHEMA {loading} IS {}",
            literal(&mark.comment()),
            loading = ident(&names.loading)
        ))
        .await
        .map_err(|e| Error::db(format!("creating schema {}", names.loading), &e))
}

/// Drops the loading schema, if there is one (and it is ours: [`check_ours`] ran before).
///
/// # Errors
/// When the statement fails.
pub async fn drop_loading(client: &tokio_postgres::Client, names: &Names) -> Result<()> {
    drop_ours(client, &names.loading).await
}

/// Drops `schema`, if it exists and is ours.
async fn drop_ours(client: &tokio_postgres::Client, schema: &str) -> Result<()> {
    if let Found::Ours(_) = find(client, schema).await? {
        client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", ident(schema)))
            .await
            .map_err(|e| Error::db(format!("dropping schema {schema}"), &e))?;
    }
    Ok(())
}

/// A session of the target, as `pg_stat_activity` names it: its server process and when that
/// started (a process number alone may have been reused).
#[derive(Debug, Clone)]
pub struct Session {
    pid: i32,
    started: String,
}

impl Session {
    /// The session of `client`.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn of(client: &tokio_postgres::Client) -> Result<Self> {
        let row = client
            .query_one(
                "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| Error::db("reading the session's process", &e))?;
        Ok(Self {
            pid: row.get(0),
            started: row.get(1),
        })
    }
}

/// Ends `sessions` (statement under way included) and waits up to 10 seconds for each to exit.
///
/// # Errors
/// When the query fails.
pub async fn end_sessions(client: &tokio_postgres::Client, sessions: &[Session]) -> Result<()> {
    let pids: Vec<i32> = sessions.iter().map(|s| s.pid).collect();
    let started: Vec<&str> = sessions.iter().map(|s| s.started.as_str()).collect();
    client
        .query(
            "SELECT pg_terminate_backend(a.pid, 10000) FROM pg_stat_activity a \
             JOIN unnest($1::int4[], $2::text[]) AS s(pid, started) \
             ON a.pid = s.pid AND a.backend_start = s.started::timestamptz",
            &[&pids, &started],
        )
        .await
        .map_err(|e| Error::db("ending the jobs' sessions", &e))?;
    Ok(())
}

/// The tables of a schema, quoted and qualified.
async fn tables_of(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> std::result::Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            &[&schema],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| pg::qualified(schema, r.get::<_, &str>(0)))
        .collect())
}

/// The statements of one exchange of schemas.
struct Exchange<'a> {
    /// Schemas whose tables readers may be using: locked first.
    lock: Vec<&'a str>,
    /// Renames, in order.
    renames: Vec<(&'a str, &'a str)>,
    /// The new live schema, given to the reader role.
    grant: &'a str,
    /// Schemas the reader role loses access to.
    revoke: Vec<&'a str>,
    /// A new comment for the new live schema.
    mark: Option<Mark>,
}

/// Runs an exchange in one transaction, retrying while locks are not available.
///
/// The tables are locked one statement at a time, so that a lock not obtained in time names its
/// table: the next attempt locks that table first. A reader locks the tables of its query in
/// its own order, and a reader that runs statement after statement on the same tables would
/// otherwise take back, each time, a table the swap reaches last.
async fn exchange(
    client: &mut tokio_postgres::Client,
    exchange: &Exchange<'_>,
    reader: Option<&str>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let wait = lock_wait(client).await?;
    let mut busy: Vec<String> = Vec::new();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let failed = match try_exchange(client, exchange, reader, wait, &busy).await {
            Ok(()) => return Ok(()),
            Err(failed) => failed,
        };
        if pg::is_retryable(&failed.error) && Instant::now() < deadline {
            tracing::info!(
                attempt,
                table = failed.table.as_deref().unwrap_or(""),
                "readers hold the live tables; trying the swap again: {}",
                pg::describe(&failed.error)
            );
            if let Some(table) = failed.table {
                busy.retain(|t| *t != table);
                busy.insert(0, table);
            }
            // Long enough for the readers queued behind the attempt to get through; varied so as
            // not to fall in step with a reader that runs at a fixed rhythm.
            let pause = 100 + u64::from(attempt * 37 % 150);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(pause)) => {}
                () = cancel.cancelled() => return Err(Error::Interrupted),
            }
            continue;
        }
        let context = if pg::is_retryable(&failed.error) {
            format!(
                "swapping schemas (gave up after {attempt} attempts in {}s: readers kept the live tables locked; STATS_ANONYMIZE_SWAP_TIMEOUT)",
                timeout.as_secs()
            )
        } else {
            "swapping schemas".to_owned()
        };
        return Err(Error::db(context, &failed.error));
    }
}

/// Why an attempt failed, and on which table's lock if that was it.
struct Failed {
    error: tokio_postgres::Error,
    table: Option<String>,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Self {
        Self { error, table: None }
    }
}

async fn try_exchange(
    client: &mut tokio_postgres::Client,
    exchange: &Exchange<'_>,
    reader: Option<&str>,
    wait: Duration,
    busy: &[String],
) -> std::result::Result<(), Failed> {
    let started = Instant::now();
    let tx = client.transaction().await?;
    // Whatever the server's default: this commit is what makes the jobs' asynchronous commits,
    // whose WAL comes before it, durable.
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    let mut tables = Vec::new();
    for schema in &exchange.lock {
        tables.extend(tables_of(&tx, schema).await?);
    }
    // Tables that were busy before first, most recent first; then the others in name order.
    tables.sort_by_key(|t| busy.iter().position(|b| b == t).unwrap_or(usize::MAX));
    for table in tables {
        // The whole attempt waits at most `wait`, however many tables make it wait.
        let left = wait
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let locked = tx
            .batch_execute(&format!(
                "SET LOCAL lock_timeout = '{}ms'; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE",
                left.as_millis()
            ))
            .await;
        if let Err(error) = locked {
            return Err(Failed {
                error,
                table: Some(table),
            });
        }
    }
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        wait.as_millis()
    ))
    .await?;
    let mut sql = Vec::new();
    for (from, to) in &exchange.renames {
        sql.push(format!(
            "ALTER SCHEMA {} RENAME TO {}",
            ident(from),
            ident(to)
        ));
    }
    if let Some(role) = reader {
        let role = ident(role);
        for schema in &exchange.revoke {
            let schema = ident(schema);
            sql.push(format!("REVOKE ALL ON SCHEMA {schema} FROM {role}"));
            sql.push(format!(
                "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}"
            ));
        }
        let schema = ident(exchange.grant);
        sql.push(format!("GRANT USAGE ON SCHEMA {schema} TO {role}"));
        sql.push(format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"
        ));
    }
    if let Some(mark) = &exchange.mark {
        sql.push(format!(
            "COMMENT ON SCHEMA {} IS {}",
            ident(exchange.grant),
            literal(&mark.comment())
        ));
    }
    tx.batch_execute(&sql.join("; ")).await?;
    tx.commit().await?;
    Ok(())
}

/// Swaps the loading schema in: live becomes previous, loading becomes live, the reader role
/// follows. The old previous copy is renamed expired in the same transaction and dropped after
/// it: dropping it in the swap kept readers waiting while the server freed its files (0.2-0.3 s
/// for 270 MB).
///
/// # Errors
/// When the swap fails or cannot get its locks in time; nothing changed then. A failure to drop
/// the expired copy is only logged: the swap is done, and the next run drops it.
pub async fn swap(
    client: &mut tokio_postgres::Client,
    names: &Names,
    mark: &Mark,
    reader: Option<&str>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<bool> {
    let live_exists = find(client, &names.live).await? != Found::Absent;
    let previous_exists = find(client, &names.previous).await? != Found::Absent;
    let mut renames = Vec::new();
    if previous_exists {
        renames.push((names.previous.as_str(), names.expired.as_str()));
    }
    if live_exists {
        renames.push((names.live.as_str(), names.previous.as_str()));
    }
    renames.push((names.loading.as_str(), names.live.as_str()));
    // Readers may be using the live schema's tables; the previous copy is out of their reach.
    let plan = Exchange {
        lock: if live_exists {
            vec![names.live.as_str()]
        } else {
            Vec::new()
        },
        renames,
        grant: &names.live,
        revoke: if live_exists {
            vec![names.previous.as_str()]
        } else {
            Vec::new()
        },
        mark: Some(mark.clone()),
    };
    // Renamed schemas keep their names in `revoke`/`grant` only after the renames: the statements
    // run in that order in one transaction.
    exchange(client, &plan, reader, timeout, cancel).await?;
    if let Err(e) = drop_ours(client, &names.expired).await {
        tracing::warn!(
            "could not drop the expired copy {} (the next run drops it): {}",
            names.expired,
            ops_common::one_line(&e)
        );
    }
    Ok(live_exists)
}

/// Exchanges the live copy and the previous one.
///
/// # Errors
/// [`Error::NotFound`] when there is no previous copy; otherwise when the exchange fails.
pub async fn rollback(
    client: &mut tokio_postgres::Client,
    names: &Names,
    reader: Option<&str>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(Mark, Option<Mark>)> {
    let Found::Ours(previous) = find(client, &names.previous).await? else {
        return Err(Error::NotFound(format!(
            "there is no previous copy (schema {}) to roll back to",
            names.previous
        )));
    };
    let live = match find(client, &names.live).await? {
        Found::Ours(mark) => Some(mark),
        _ => None,
    };
    if find(client, &names.swapping).await? != Found::Absent {
        return Err(Error::Conflict(format!(
            "schema {} exists; it is in the way of the rollback",
            names.swapping
        )));
    }
    let renames = if live.is_some() {
        vec![
            (names.live.as_str(), names.swapping.as_str()),
            (names.previous.as_str(), names.live.as_str()),
            (names.swapping.as_str(), names.previous.as_str()),
        ]
    } else {
        vec![(names.previous.as_str(), names.live.as_str())]
    };
    let plan = Exchange {
        lock: if live.is_some() {
            vec![names.live.as_str(), names.previous.as_str()]
        } else {
            vec![names.previous.as_str()]
        },
        renames,
        grant: &names.live,
        revoke: if live.is_some() {
            vec![names.previous.as_str()]
        } else {
            Vec::new()
        },
        mark: None,
    };
    exchange(client, &plan, reader, timeout, cancel).await?;
    Ok((previous, live))
}
