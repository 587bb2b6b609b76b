//! The run: snapshot, check, copy, index, scan, swap.
//!
//! 1. One connection to the source opens a `REPEATABLE READ, READ ONLY` transaction and exports its
//!    snapshot (`pg_export_snapshot`); every job imports it (`SET TRANSACTION SNAPSHOT`), so all
//!    tables are copied as of one instant, in parallel
//!    (<https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION>).
//! 2. The schema is read inside that snapshot and compared with the rules (deny by default); every
//!    generated query is planned (`EXPLAIN`) so a broken filter fails before the target is touched.
//! 3. The target is locked (an advisory lock: one run at a time), its schemas checked to be ours,
//!    and a fresh `<schema>__loading` created.
//! 4. Each table: `CREATE TABLE` and `COPY … FROM STDIN (FREEZE)` in one transaction on the target,
//!    fed with the bytes of `COPY (SELECT …) TO STDOUT` from the source as they arrive. Rows are
//!    never parsed here; memory holds a few buffers whatever the table's size.
//! 5. Primary keys and indexes, then `ANALYZE`, table by table in parallel.
//! 6. The leak scan ([`crate::scan`]); a hit stops the run.
//! 7. The swap ([`crate::target::swap`]).
//!
//! Any failure drops `<schema>__loading` and leaves the live and previous copies as they were.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, TryStreamExt as _};
use ops_common::logging::LogFormat;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pg::{self, ident, literal, qualified};
use crate::plan::{Plan, RECOUNT_STAGING, TablePlan};
use crate::pseudonym::{self, PaddedKeys};
use crate::rules::{Problems, Rules};
use crate::scan::{self, Needles};
use crate::schema::{self, Schema};
use crate::target::{self, Mark, Names};

/// What a run needs.
pub struct Job<'a> {
    /// The source database.
    pub source: tokio_postgres::Config,
    /// The target database.
    pub target: tokio_postgres::Config,
    /// The rules.
    pub rules: &'a Rules,
    /// Where the rules came from, for messages.
    pub rules_origin: String,
    /// The source's schema.
    pub source_schema: String,
    /// The target's schemas.
    pub names: Names,
    /// The role given read access.
    pub reader: Option<String>,
    /// Parallel jobs.
    pub jobs: usize,
    /// How long the swap may keep trying.
    pub swap_timeout: Duration,
    /// The pseudonyms' padded keys, when the rules hash.
    pub keys: Option<PaddedKeys>,
    /// Count rows instead of copying them.
    pub dry_run: bool,
    /// For progress bars.
    pub log_format: LogFormat,
}

/// One table's part of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// Rows copied (or, in a dry run, that would be).
    pub rows: u64,
    /// Bytes streamed from the source (binary COPY format); none in a dry run.
    pub bytes: Option<u64>,
    /// Seconds from `CREATE TABLE` to commit (or counting, in a dry run).
    pub seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nothing was written.
    pub dry_run: bool,
    /// The schema readers use.
    pub schema: String,
    /// Where the copy it replaced is kept, if there was one.
    pub previous: Option<String>,
    /// Copied tables, by name.
    pub tables: Vec<TableReport>,
    /// Skipped tables.
    pub skipped: Vec<String>,
    /// Rows in all.
    pub rows: u64,
    /// Bytes in all.
    pub bytes: u64,
    /// Values sampled from the source for the leak scan.
    pub sampled: usize,
    /// Seconds copying.
    pub copy_seconds: f64,
    /// Seconds building keys and indexes and analysing.
    pub index_seconds: f64,
    /// Seconds scanning.
    pub scan_seconds: f64,
    /// Seconds swapping (waiting for readers included).
    pub swap_seconds: f64,
    /// Seconds in all.
    pub seconds: f64,
}

/// Runs `work` on every item with `jobs` workers, each with its own connection from `connect`.
/// The first error stops everything: the other workers are dropped, closing their connections.
async fn pool<C, T, R>(
    jobs: usize,
    items: Vec<T>,
    connect: impl AsyncFn() -> Result<C>,
    work: impl AsyncFn(&C, T) -> Result<R>,
) -> Result<Vec<R>> {
    let workers = jobs.min(items.len());
    let queue = Mutex::new(items.into_iter());
    let next = || {
        queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next()
    };
    let runs = (0..workers).map(|_| async {
        let connection = connect().await?;
        let mut done = Vec::new();
        while let Some(item) = next() {
            done.push(work(&connection, item).await?);
        }
        Ok::<_, Error>(done)
    });
    Ok(futures_util::future::try_join_all(runs)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Session settings of every source connection, inside its transaction: the source schema first
/// in `search_path` (filters name tables without a schema), no statement or idle timeout (a
/// snapshot is held for the whole copy; Greenmask #75), and the pseudonyms' keys.
async fn prepare_source(
    client: &tokio_postgres::Client,
    schema: &str,
    keys: Option<&PaddedKeys>,
) -> Result<()> {
    client
        .query(
            "SELECT set_config('search_path', $1, true), set_config('statement_timeout', '0', true), \
                    set_config('idle_in_transaction_session_timeout', '0', true)",
            &[&ident(schema)],
        )
        .await
        .map_err(|e| Error::db("setting up the source session", &e))?;
    if let Some(keys) = keys {
        client
            .query(pseudonym::SET_KEYS, &[&keys.ipad, &keys.opad])
            .await
            .map_err(|e| Error::db("setting up the source session", &e))?;
    }
    Ok(())
}

/// A job's connection to the source, in the exported snapshot.
async fn source_session(job: &Job<'_>, snapshot: &str) -> Result<tokio_postgres::Client> {
    let client = pg::connect(&job.source, "source").await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            literal(snapshot)
        ))
        .await
        .map_err(|e| Error::db("importing the snapshot", &e))?;
    prepare_source(&client, &job.source_schema, job.keys.as_ref()).await?;
    Ok(client)
}

/// A connection to the target with no statement or idle timeouts (the coordinator holds the lock
/// while idle for as long as the copy takes).
async fn target_session(job: &Job<'_>) -> Result<tokio_postgres::Client> {
    let client = pg::connect(&job.target, "target").await?;
    client
        .batch_execute("SET statement_timeout = 0; SET idle_session_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .await
        .map_err(|e| Error::db("setting up the target session", &e))?;
    Ok(client)
}

/// Reads the source's schema through `client` and checks the rules against it.
///
/// # Errors
/// [`Error::Rules`] with every table and column the rules do not cover or name wrongly.
pub async fn checked_schema(
    client: &tokio_postgres::Client,
    rules: &Rules,
    rules_origin: &str,
    source_schema: &str,
) -> Result<Schema> {
    let schema = schema::introspect(client, source_schema).await?;
    let items = rules.check_against(&schema);
    if items.is_empty() {
        Ok(schema)
    } else {
        Err(Error::Rules(Problems {
            summary: format!(
                "{rules_origin} do not match schema {source_schema} of the source (deny by default: nothing was written)"
            ),
            items,
        }))
    }
}

/// Plans every generated query on the source (`EXPLAIN`, nothing runs), so a broken filter or
/// expression is reported, table by table, before anything is copied.
///
/// # Errors
/// [`Error::Rules`] naming each table whose query PostgreSQL refuses.
pub async fn compile(
    client: &tokio_postgres::Client,
    plan: &Plan,
    rules_origin: &str,
) -> Result<()> {
    let mut items = Vec::new();
    for table in &plan.tables {
        let mut queries = vec![(
            format!(
                "tables.{}: the query of its filter, references and columns fails",
                table.name
            ),
            table.select.as_str(),
        )];
        for (column, check) in table.count_checks() {
            queries.push((
                format!(
                    "tables.{}.columns.{column}: counts are taken on the copy, and there the count's column and condition fail",
                    table.name
                ),
                check,
            ));
        }
        for (what, query) in queries {
            client
                .batch_execute("SAVEPOINT compile")
                .await
                .map_err(|e| Error::db("planning the queries", &e))?;
            if let Err(e) = client.query(&format!("EXPLAIN {query}"), &[]).await {
                items.push(format!("{what}: {}", pg::describe(&e)));
            }
            client
                .batch_execute("ROLLBACK TO SAVEPOINT compile")
                .await
                .map_err(|e| Error::db("planning the queries", &e))?;
        }
    }
    if items.is_empty() {
        Ok(())
    } else {
        Err(Error::Rules(Problems {
            summary: format!("{rules_origin} give queries PostgreSQL refuses"),
            items,
        }))
    }
}

/// What `check --source` found.
pub struct Checked {
    /// The source's tables.
    pub schema: Schema,
    /// The queries.
    pub plan: Plan,
}

/// `check --source`: the schema comparison and the queries planned, in a read-only transaction,
/// writing nothing.
///
/// # Errors
/// [`Error::Rules`] for problems with the rules, otherwise database errors.
pub async fn check_source(
    config: &tokio_postgres::Config,
    rules: &Rules,
    rules_origin: &str,
    source_schema: &str,
) -> Result<Checked> {
    let client = pg::connect(config, "source").await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::db("starting a read-only transaction", &e))?;
    prepare_source(&client, source_schema, None).await?;
    let schema = checked_schema(&client, rules, rules_origin, source_schema).await?;
    let plan = Plan::new(rules, &schema);
    compile(&client, &plan, rules_origin).await?;
    Ok(Checked { schema, plan })
}

/// `run --explain`: the plan, read from the source, nothing written anywhere.
///
/// # Errors
/// As [`check_source`].
pub async fn explain(job: &Job<'_>) -> Result<String> {
    let checked = check_source(
        &job.source,
        job.rules,
        &job.rules_origin,
        &job.source_schema,
    )
    .await?;
    Ok(checked.plan.explain(&job.source_schema, &job.names.loading))
}

/// Asks a run to stop (Ctrl-C, SIGTERM). A run checks it between phases and while waiting, and
/// stops in a way that leaves the target as it was: it drops the unfinished copy itself, with the
/// connection that holds the target's lock. The swap's transaction is never cut in the middle.
#[derive(Clone)]
pub struct Cancel(tokio::sync::watch::Receiver<bool>);

impl Cancel {
    /// A token and the sender that cancels it.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once cancelled; never, if the sender is gone without cancelling.
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|cancelled| *cancelled).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What the checks before any write leave ready.
struct Ready {
    coordinator: tokio_postgres::Client,
    snapshot: String,
    plan: Plan,
    target: tokio_postgres::Client,
}

/// Steps 1 and 2: snapshot, schema, rules, queries; the target's lock and checks.
async fn prepare(job: &Job<'_>) -> Result<Ready> {
    let coordinator = pg::connect(&job.source, "source").await?;
    coordinator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::db("starting the source transaction", &e))?;
    prepare_source(&coordinator, &job.source_schema, job.keys.as_ref()).await?;
    let snapshot: String = coordinator
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| Error::db("exporting the snapshot", &e))?
        .get(0);
    let schema = checked_schema(
        &coordinator,
        job.rules,
        &job.rules_origin,
        &job.source_schema,
    )
    .await?;
    let plan = Plan::new(job.rules, &schema);
    compile(&coordinator, &plan, &job.rules_origin).await?;
    tracing::info!(
        snapshot,
        copied = plan.tables.len(),
        skipped = plan.skipped.len(),
        "rules match the source"
    );
    let target = target_session(job).await?;
    target::lock(&target, &job.names).await?;
    target::check_ours(&target, &job.names).await?;
    if let Some(role) = &job.reader {
        target::check_role(&target, role).await?;
    }
    Ok(Ready {
        coordinator,
        snapshot,
        plan,
        target,
    })
}

/// Runs the copy (or, with `dry_run`, counts what it would copy).
///
/// # Errors
/// Whatever stops it, [`Error::Interrupted`] when `cancel` fires; the target is then as it was.
pub async fn run(job: &Job<'_>, cancel: &Cancel) -> Result<Report> {
    let started = Instant::now();
    let Ready {
        coordinator,
        snapshot,
        plan,
        mut target,
    } = tokio::select! {
        ready = prepare(job) => ready?,
        () = cancel.cancelled() => return Err(Error::Interrupted),
    };
    if job.dry_run {
        let tables = tokio::select! {
            tables = count(job, &plan, &snapshot) => tables?,
            () = cancel.cancelled() => return Err(Error::Interrupted),
        };
        let timings = Timings::since(started);
        return Ok(report(job, &plan, tables, None, 0, &timings));
    }
    let needles = scan::sample(&coordinator, job.rules, &job.source_schema).await?;
    let mut mark = Mark {
        started_at: target::now(&target).await?,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Mark::default()
    };
    target::create_loading(&target, &job.names, &mark).await?;
    let mut timings = Timings::default();
    let loaded = tokio::select! {
        loaded = load(job, &plan, &coordinator, &snapshot, &needles, &mut timings) => loaded,
        () = cancel.cancelled() => Err(Error::Interrupted),
    };
    let outcome = match loaded {
        Ok(tables) => {
            let phase = Instant::now();
            mark.tables = tables.len() as u64;
            mark.rows = tables.iter().map(|t| t.rows).sum();
            let swapped = target::swap(
                &mut target,
                &job.names,
                &mark,
                job.reader.as_deref(),
                job.swap_timeout,
                cancel,
            )
            .await;
            timings.swap = phase.elapsed().as_secs_f64();
            timings.total = started.elapsed().as_secs_f64();
            swapped.map(|replaced| {
                tracing::info!(
                    schema = %job.names.live,
                    previous = replaced.then_some(job.names.previous.as_str()),
                    "swapped in"
                );
                let previous = replaced.then(|| job.names.previous.clone());
                report(job, &plan, tables, previous, needles.sampled, &timings)
            })
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        if matches!(e, Error::Interrupted) {
            tracing::warn!("interrupted; dropping the unfinished copy");
        }
        if let Err(e) = target::drop_loading(&target, &job.names).await {
            tracing::warn!(
                "could not drop {} after the failure (the next run drops it): {}",
                job.names.loading,
                ops_common::one_line(&e)
            );
        }
    }
    outcome
}

/// Durations of the phases.
#[derive(Default)]
struct Timings {
    copy: f64,
    index: f64,
    scan: f64,
    swap: f64,
    total: f64,
}

impl Timings {
    fn since(started: Instant) -> Self {
        Self {
            total: started.elapsed().as_secs_f64(),
            ..Self::default()
        }
    }
}

/// Steps 4 to 6: copy, index, scan.
async fn load(
    job: &Job<'_>,
    plan: &Plan,
    coordinator: &tokio_postgres::Client,
    snapshot: &str,
    needles: &Needles,
    timings: &mut Timings,
) -> Result<Vec<TableReport>> {
    let phase = Instant::now();
    let tables = copy(job, plan, snapshot).await?;
    // Every job has its rows: release the snapshot, so the source's vacuum is held up no longer.
    coordinator
        .batch_execute("COMMIT")
        .await
        .map_err(|e| Error::db("ending the source transaction", &e))?;
    timings.copy = phase.elapsed().as_secs_f64();

    let phase = Instant::now();
    recount(job, plan).await?;
    index(job, plan).await?;
    timings.index = phase.elapsed().as_secs_f64();

    let phase = Instant::now();
    let leaks = leak_scan(job, plan, needles).await?;
    timings.scan = phase.elapsed().as_secs_f64();
    if !leaks.is_empty() {
        for leak in &leaks {
            tracing::warn!(
                table = %leak.table,
                column = %leak.column,
                found = %leak.found,
                "leak scan: found in the new copy"
            );
        }
        return Err(Error::Leak(leaks));
    }
    tracing::info!(
        sampled = needles.sampled,
        seconds = timings.scan,
        "leak scan: nothing found"
    );
    Ok(tables)
}

fn report(
    job: &Job<'_>,
    plan: &Plan,
    mut tables: Vec<TableReport>,
    previous: Option<String>,
    sampled: usize,
    timings: &Timings,
) -> Report {
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    Report {
        dry_run: job.dry_run,
        schema: job.names.live.clone(),
        previous,
        rows: tables.iter().map(|t| t.rows).sum(),
        bytes: tables.iter().filter_map(|t| t.bytes).sum(),
        tables,
        skipped: plan.skipped.clone(),
        sampled,
        copy_seconds: timings.copy,
        index_seconds: timings.index,
        scan_seconds: timings.scan,
        swap_seconds: timings.swap,
        seconds: timings.total,
    }
}

/// Copies every table into the loading schema.
async fn copy(job: &Job<'_>, plan: &Plan, snapshot: &str) -> Result<Vec<TableReport>> {
    let bar = ops_common::progress::items(plan.tables.len() as u64, "copying", job.log_format);
    let loading = job.names.loading.as_str();
    let result = pool(
        job.jobs,
        plan.tables.iter().collect(),
        async || {
            let source = source_session(job, snapshot).await?;
            let target = target_session(job).await?;
            Ok((source, target))
        },
        async |(source, target): &(tokio_postgres::Client, tokio_postgres::Client),
               table: &TablePlan| {
            let report = copy_table(source, target, table, loading).await?;
            tracing::info!(
                table = %report.table,
                rows = report.rows,
                bytes = report.bytes.unwrap_or(0),
                seconds = report.seconds,
                "copied"
            );
            bar.inc(1);
            Ok(report)
        },
    )
    .await;
    bar.finish_and_clear();
    result
}

/// Streams one table from the source into a new table of the loading schema.
async fn copy_table(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    table: &TablePlan,
    loading: &str,
) -> Result<TableReport> {
    let started = Instant::now();
    let into =
        |e: tokio_postgres::Error| Error::db(format!("loading {} into the target", table.name), &e);
    let from =
        |e: tokio_postgres::Error| Error::db(format!("copying {} from the source", table.name), &e);
    target
        .batch_execute(&format!("BEGIN; {}", table.create(loading)))
        .await
        .map_err(into)?;
    let sink = target
        .copy_in::<_, Bytes>(&table.copy_in(loading))
        .await
        .map_err(into)?;
    let stream = source.copy_out(&table.copy_out()).await.map_err(from)?;
    futures_util::pin_mut!(sink);
    futures_util::pin_mut!(stream);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(from)? {
        bytes += chunk.len() as u64;
        sink.feed(chunk).await.map_err(into)?;
    }
    let rows = sink.as_mut().finish().await.map_err(into)?;
    target.batch_execute("COMMIT").await.map_err(into)?;
    Ok(TableReport {
        table: table.name.clone(),
        rows,
        bytes: Some(bytes),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `--dry-run`: the number of rows each table's query selects, in the snapshot.
async fn count(job: &Job<'_>, plan: &Plan, snapshot: &str) -> Result<Vec<TableReport>> {
    let bar = ops_common::progress::items(plan.tables.len() as u64, "counting", job.log_format);
    let result = pool(
        job.jobs,
        plan.tables.iter().collect(),
        async || source_session(job, snapshot).await,
        async |source: &tokio_postgres::Client, table: &TablePlan| {
            let started = Instant::now();
            let rows: i64 = source
                .query_one(&table.count(), &[])
                .await
                .map_err(|e| Error::db(format!("counting the rows of {}", table.name), &e))?
                .get(0);
            bar.inc(1);
            Ok(TableReport {
                table: table.name.clone(),
                rows: u64::try_from(rows).unwrap_or(0),
                bytes: None,
                seconds: started.elapsed().as_secs_f64(),
            })
        },
    )
    .await;
    bar.finish_and_clear();
    result
}

/// Fills the counter caches from the copied rows, in one transaction on one connection: a table
/// is rebuilt while others are read, and two jobs rebuilding tables that count each other's rows
/// would deadlock.
async fn recount(job: &Job<'_>, plan: &Plan) -> Result<()> {
    let loading = job.names.loading.as_str();
    let statements: Vec<String> = plan
        .tables
        .iter()
        .filter_map(|t| t.recount(loading, RECOUNT_STAGING))
        .flatten()
        .collect();
    if statements.is_empty() {
        return Ok(());
    }
    let target = target_session(job).await?;
    target
        .batch_execute(&format!("BEGIN; {}; COMMIT", statements.join("; ")))
        .await
        .map_err(|e| Error::db("counting the copied rows for the counter caches", &e))
}

/// Primary keys and indexes after the load (faster than maintaining them row by row), then
/// `ANALYZE`, so readers' queries are planned on statistics from the first minute.
async fn index(job: &Job<'_>, plan: &Plan) -> Result<()> {
    let bar = ops_common::progress::items(plan.tables.len() as u64, "indexing", job.log_format);
    let loading = job.names.loading.as_str();
    let result = pool(
        job.jobs,
        plan.tables.iter().collect(),
        async || target_session(job).await,
        async |target: &tokio_postgres::Client, table: &TablePlan| {
            let mut sql = table.indexes(loading).join("; ");
            if !sql.is_empty() {
                sql.push_str("; ");
            }
            let _ = write!(sql, "ANALYZE {}", qualified(loading, &table.name));
            target
                .batch_execute(&sql)
                .await
                .map_err(|e| Error::db(format!("indexing {}", table.name), &e))?;
            bar.inc(1);
            Ok(())
        },
    )
    .await;
    bar.finish_and_clear();
    result.map(|_| ())
}

/// Scans every table of the loading schema.
async fn leak_scan(job: &Job<'_>, plan: &Plan, needles: &Needles) -> Result<Vec<scan::Leak>> {
    let bar = ops_common::progress::items(plan.tables.len() as u64, "leak scan", job.log_format);
    let loading = job.names.loading.as_str();
    let result = pool(
        job.jobs,
        plan.tables.iter().collect(),
        async || target_session(job).await,
        async |target: &tokio_postgres::Client, table: &TablePlan| {
            let leaks = scan::scan_table(target, table, loading, needles).await?;
            bar.inc(1);
            Ok(leaks)
        },
    )
    .await;
    bar.finish_and_clear();
    let mut leaks: Vec<scan::Leak> = result?.into_iter().flatten().collect();
    leaks.sort_by(|a, b| (&a.table, &a.column).cmp(&(&b.table, &b.column)));
    Ok(leaks)
}

/// Exchanges the live and previous copies.
///
/// # Errors
/// When there is no previous copy, the lock is held, or the exchange fails.
pub async fn rollback(
    target_config: &tokio_postgres::Config,
    names: &Names,
    reader: Option<&str>,
    timeout: Duration,
) -> Result<(Mark, Option<Mark>)> {
    let mut client = pg::connect(target_config, "target").await?;
    target::lock(&client, names).await?;
    target::check_ours(&client, names).await?;
    if let Some(role) = reader {
        target::check_role(&client, role).await?;
    }
    let (_never, cancel) = Cancel::new();
    target::rollback(&mut client, names, reader, timeout, &cancel).await
}
