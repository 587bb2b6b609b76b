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
//!    fed with the bytes of `COPY (SELECT …) TO STDOUT` from the source as they arrive, which the
//!    leak scan ([`crate::scan`]) searches on their way; memory holds a few buffers whatever the
//!    table's size, and the key sets of [`crate::plan::KeySet`] (at most
//!    [`Job::key_memory`] each).
//! 5. Counter caches, primary keys and indexes, `ANALYZE`.
//! 6. If the leak scan found anything, the run stops here.
//! 7. The swap ([`crate::target::swap`]).
//!
//! Steps 4 and 5 overlap: they are tasks taken by the jobs as they become ready.
//!
//! Any failure drops `<schema>__loading` and leaves the live and previous copies as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, TryStreamExt as _};
use ops_common::logging::LogFormat;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pg::{self, ident, literal, qualified};
use crate::plan::{self, KeyValues, Plan, RECOUNT_STAGING, TablePlan};
use crate::pseudonym::{self, PaddedKeys};
use crate::rules::{Problems, Rules};
use crate::scan::{self, Needles};
use crate::schema::{self, Schema};
use crate::stream::{self, KeyCollector};
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
    /// Bytes a key set, or the counts of one table, may take ([`crate::settings::key_memory`]).
    pub key_memory: usize,
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
    /// Seconds from the start of the copy until the last table was loaded.
    pub copy_seconds: f64,
    /// Seconds counting, building keys and indexes and analysing, summed over the jobs (done
    /// alongside the copy).
    pub index_seconds: f64,
    /// Seconds searching the rows for the leak scan as they streamed, summed over the jobs.
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
/// snapshot is held for the whole copy; Greenmask #75), standard-conforming strings (key sets
/// are written into queries as [`literal`]s), and the pseudonyms' keys.
async fn prepare_source(
    client: &tokio_postgres::Client,
    schema: &str,
    keys: Option<&PaddedKeys>,
) -> Result<()> {
    client
        .query(
            "SELECT set_config('search_path', $1, true), set_config('statement_timeout', '0', true), \
                    set_config('idle_in_transaction_session_timeout', '0', true), \
                    set_config('standard_conforming_strings', 'on', true)",
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

/// A job's connection to the target.
///
/// Its commits do not wait for the WAL to reach the disk: what the jobs write is only kept if the
/// swap commits, and the swap's commit, synchronous, flushes the WAL of every commit before it (a
/// crash before it leaves a `__loading` schema that the next run drops). A run commits over a
/// hundred times, once per table, index and `ANALYZE`.
///
/// Its index builds take no parallel workers: the jobs already keep the cores busy, and a worker
/// sorting half a table and merging with the leader only added work (the index builds took 5–25%
/// less time without).
///
/// Its grouped counts of the counter caches get 64 MB to hash in: at the default 4 MB, the count
/// of 120,000 messages by request spilled to disk in five batches, and took 10–70% longer.
async fn job_target_session(job: &Job<'_>) -> Result<tokio_postgres::Client> {
    let client = target_session(job).await?;
    client
        .batch_execute(
            "SET synchronous_commit = off; SET max_parallel_maintenance_workers = 0; SET work_mem = '64MB'",
        )
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

/// Checks every generated query on the source, nothing run, so a broken filter or expression is
/// reported, table by table, before anything is copied. The queries a run executes are planned
/// (`EXPLAIN`, which also checks the source role's privileges): each table's keyed SELECT, or its
/// chain SELECT when it has none, when `chains` (a source older than PostgreSQL 14, and `check`)
/// or when its keys are collected on the source. Any other chain SELECT, which a run uses only
/// past `STATS_ANONYMIZE_KEY_MEMORY`, is parsed and analysed only (where a broken rule fails):
/// planning the joins of events' took half of the checks' time.
///
/// # Errors
/// [`Error::Rules`] naming each table whose query PostgreSQL refuses.
pub async fn compile(
    client: &tokio_postgres::Client,
    plan: &Plan,
    rules_origin: &str,
    chains: bool,
) -> Result<()> {
    let mut items = Vec::new();
    for table in &plan.tables {
        let keyed = table.keyed.as_ref().map(plan::KeyedSelect::without_keys);
        let keys_on_source = plan
            .key_sets
            .iter()
            .any(|set| set.from_source && set.table == table.name);
        let mut queries = vec![(
            format!(
                "tables.{}: the query of its filter, references and columns fails",
                table.name
            ),
            table.select.as_str(),
            keyed.is_none() || chains || keys_on_source,
        )];
        if let Some(keyed) = &keyed {
            queries.push((
                format!(
                    "tables.{}: the query that checks its references against the keys of the copies fails",
                    table.name
                ),
                keyed.as_str(),
                true,
            ));
        }
        for (column, check) in table.count_checks() {
            queries.push((
                format!(
                    "tables.{}.columns.{column}: counts are taken on the copy, and there the count's column and condition fail",
                    table.name
                ),
                check,
                true,
            ));
        }
        for (what, query, planned) in queries {
            client
                .batch_execute("SAVEPOINT compile")
                .await
                .map_err(|e| Error::db("planning the queries", &e))?;
            let checked = if planned {
                client
                    .query(&format!("EXPLAIN {query}"), &[])
                    .await
                    .map(drop)
            } else {
                client.prepare(query).await.map(drop)
            };
            if let Err(e) = checked {
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
    compile(&client, &plan, rules_origin, true).await?;
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
    /// The jobs, unless it is a dry run.
    jobs: Option<Jobs>,
    /// Whether the source hashes `= ANY` of a constant array, as [`plan::KeyedSelect`] needs (and
    /// has `get_bit(bytea, bigint)`, for keys written as bits: both came in PostgreSQL 14).
    hashes_arrays: bool,
}

/// The jobs' sessions (source, target), each source session in the snapshot, and the values
/// sampled through them for the leak scan.
struct Jobs {
    sessions: Vec<(tokio_postgres::Client, tokio_postgres::Client)>,
    /// One more target session, which only builds indexes, counts and `ANALYZE`s, from the first
    /// table loaded on: while the jobs copy, their sessions wait on each other and on the network
    /// for part of the time, and at the end each index build waits for its file to reach the
    /// disk. With it a run took 7-17% less time, with the same CPU.
    builder: tokio_postgres::Client,
    needles: Needles,
}

/// Steps 1 and 2: snapshot, schema, rules, queries; the target's lock and checks.
async fn prepare(job: &Job<'_>) -> Result<Ready> {
    let coordinator = pg::connect(&job.source, "source").await?;
    coordinator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::db("starting the source transaction", &e))?;
    prepare_source(&coordinator, &job.source_schema, job.keys.as_ref()).await?;
    let exported = coordinator
        .query_one(
            "SELECT pg_export_snapshot(), current_setting('server_version_num')::int >= 140000",
            &[],
        )
        .await
        .map_err(|e| Error::db("exporting the snapshot", &e))?;
    let snapshot: String = exported.get(0);
    // Before PostgreSQL 14 `= ANY` searches the array element by element, for every row: the
    // keyed SELECTs would take hours; the chain SELECTs do not.
    let hashes_arrays: bool = exported.get(1);
    if !hashes_arrays {
        tracing::info!(
            "the source is older than PostgreSQL 14: references are checked by their chain"
        );
    }
    let checks = async {
        let schema = checked_schema(
            &coordinator,
            job.rules,
            &job.rules_origin,
            &job.source_schema,
        )
        .await?;
        let plan = Plan::new(job.rules, &schema);
        compile(&coordinator, &plan, &job.rules_origin, !hashes_arrays).await?;
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
        Ok::<_, Error>((plan, target))
    };
    // The jobs connect and sample while the coordinator checks: both only read, in the snapshot,
    // and the sampling (a scan of each sampled table) kept both cores waiting before the copy.
    let early = async {
        if job.dry_run {
            return Ok(None);
        }
        let (sessions, builder) = futures_util::future::try_join(
            futures_util::future::try_join_all((0..job.jobs.max(1)).map(|_| async {
                Ok::<_, Error>((
                    source_session(job, &snapshot).await?,
                    job_target_session(job).await?,
                ))
            })),
            job_target_session(job),
        )
        .await?;
        let sources: Vec<&tokio_postgres::Client> =
            sessions.iter().map(|(source, _)| source).collect();
        let needles = scan::sample(&sources, job.rules, &job.source_schema).await?;
        Ok::<_, Error>(Some(Jobs {
            sessions,
            builder,
            needles,
        }))
    };
    let (checked, early) = tokio::join!(checks, early);
    // Problems with the rules come first: a sample of a column that no longer exists fails too.
    let (plan, target) = checked?;
    let jobs = early?;
    Ok(Ready {
        coordinator,
        snapshot,
        plan,
        target,
        jobs,
        hashes_arrays,
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
        jobs: early,
        hashes_arrays,
    } = tokio::select! {
        ready = prepare(job) => ready?,
        () = cancel.cancelled() => return Err(Error::Interrupted),
    };
    // Only a dry run has no jobs.
    let Some(early) = early else {
        let tables = tokio::select! {
            tables = count(job, &plan, &snapshot) => tables?,
            () = cancel.cancelled() => return Err(Error::Interrupted),
        };
        let timings = Timings::since(started);
        return Ok(report(job, &plan, tables, None, 0, &timings));
    };
    let mut mark = Mark {
        started_at: target::now(&target).await?,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Mark::default()
    };
    target::create_loading(&target, &job.names, &mark).await?;
    let mut timings = Timings::default();
    let mut jobs = Vec::new();
    let loaded = tokio::select! {
        loaded = load(job, &plan, &coordinator, early, hashes_arrays, &mut timings, &mut jobs) => loaded,
        () = cancel.cancelled() => Err(Error::Interrupted),
    };
    let outcome = match loaded {
        Ok((tables, sampled)) => {
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
                report(job, &plan, tables, previous, sampled, &timings)
            })
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        if matches!(e, Error::Interrupted) {
            tracing::warn!("interrupted; dropping the unfinished copy");
        }
        // The jobs' connections are closed, but the server finishes the statement under way
        // first: one still creating an index in the loading schema would deadlock the DROP.
        if let Err(e) = target::end_sessions(&target, &jobs).await {
            tracing::warn!(
                "could not end the jobs' sessions: {}",
                ops_common::one_line(&e)
            );
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

/// Steps 4 to 6, 4 and 5 overlapped: the jobs share one list of [`Task`]s, and each takes the
/// first that is ready (copies first: they make other tasks ready), so indexes are built while
/// other tables are still being copied.
async fn load(
    job: &Job<'_>,
    plan: &Plan,
    coordinator: &tokio_postgres::Client,
    early: Jobs,
    key_sets: bool,
    timings: &mut Timings,
    jobs: &mut Vec<target::Session>,
) -> Result<(Vec<TableReport>, usize)> {
    let started = Instant::now();
    let Jobs {
        mut sessions,
        builder,
        needles,
    } = early;
    sessions.truncate(plan.tables.len().max(1));
    for (_, target) in &sessions {
        jobs.push(target::Session::of(target).await?);
    }
    // Every job has imported the snapshot, and holds it while it has tables to copy: the
    // coordinator's own transaction no longer holds up the source's vacuum.
    coordinator
        .batch_execute("COMMIT")
        .await
        .map_err(|e| Error::db("ending the source transaction", &e))?;
    let schedule = Schedule::new(plan, &job.names.loading, key_sets);
    let bar = ops_common::progress::items(schedule.tasks(), "loading", job.log_format);
    jobs.push(target::Session::of(&builder).await?);
    let workers = sessions
        .into_iter()
        .map(|(source, target)| (Some(source), target))
        .chain([(None, builder)]);
    let worked =
        futures_util::future::try_join_all(workers.map(|(source, target)| {
            work(&schedule, &needles, source, target, job.key_memory, &bar)
        }))
        .await;
    bar.finish_and_clear();
    let mut tables = Vec::new();
    let mut leaks = Vec::new();
    for (t, l) in worked? {
        tables.extend(t);
        leaks.extend(l);
    }
    {
        let state = schedule.lock();
        timings.copy = state
            .last_copy
            .map_or(0.0, |at| at.duration_since(started).as_secs_f64());
        timings.index = state.index_seconds;
        timings.scan = state.scan_seconds;
    }
    if !leaks.is_empty() {
        leaks.sort_by(|a, b| (&a.table, &a.column).cmp(&(&b.table, &b.column)));
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
    Ok((tables, needles.sampled))
}

/// One piece of a run's work on one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    /// Collect key set number `n` of it on the source ([`plan::KeySet::from_source`]); ready at
    /// once.
    Keys(usize),
    /// Copy it; ready once the tables it refers to are loaded (their keys collected from the copy)
    /// or their key sets collected on the source, and, if it fills its counter caches as it is
    /// copied, once the tables they count are loaded.
    Copy,
    /// Fill its counter caches by rebuilding it, when its copy did not (their counts took more
    /// than [`Job::key_memory`], or see [`TablePlan::counts_as_copied`]); ready once it and the
    /// tables it counts are loaded.
    /// One at a time: two recounts rebuilding tables that count each other's rows would deadlock.
    Recount,
    /// Build its index number `n` (its primary key among them); ready once it is loaded and,
    /// if it has counter caches, rebuilt by the recount, and no task on it under way holds a lock
    /// it would wait for ([`locks_out`]).
    Index(usize),
    /// `ANALYZE` it; ready as an index build is. Indexes do not change its statistics: the copy
    /// has no expression index.
    Analyze,
}

/// A key set's state during a run.
enum Keys {
    /// Not collected yet (from its table's copy, or on the source).
    Pending,
    /// Collected from the copy.
    Read(Arc<KeyValues>),
    /// Its keys take more than [`Job::key_memory`], no table still to copy reads it,
    /// or the source cannot hash them: the tables still to copy check the reference by its chain.
    Unused,
}

/// The tasks of a run, shared by its jobs.
struct Schedule<'p> {
    plan: &'p Plan,
    loading: &'p str,
    state: Mutex<State<'p>>,
    /// Signalled whenever a task ends, as that can make others ready.
    changed: tokio::sync::Notify,
}

struct State<'p> {
    /// Tasks not handed out yet, in order of preference.
    pending: Vec<(Task, &'p TablePlan)>,
    /// Tasks under way.
    running: Vec<(Task, &'p str)>,
    /// Copies and recounts done.
    done: BTreeSet<(&'p str, TaskKind)>,
    /// Per key set: its state, and how many tables still to copy read it.
    keys: Vec<(Keys, usize)>,
    last_copy: Option<Instant>,
    index_seconds: f64,
    scan_seconds: f64,
}

/// The tasks other tasks wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TaskKind {
    Copy,
    Recount,
}

impl<'p> Schedule<'p> {
    /// The tasks of `plan`; without `key_sets`, every table is copied with its chain SELECT.
    fn new(plan: &'p Plan, loading: &'p str, key_sets: bool) -> Self {
        let mut keys: Vec<(Keys, usize)> = plan
            .key_sets
            .iter()
            .map(|_| {
                (
                    if key_sets {
                        Keys::Pending
                    } else {
                        Keys::Unused
                    },
                    0,
                )
            })
            .collect();
        for table in &plan.tables {
            for &n in table.keyed.iter().flat_map(|k| &k.key_sets) {
                keys[n].1 += 1;
            }
        }
        let tables = critical_first(plan);
        let mut pending = Vec::new();
        if key_sets {
            for (n, set) in plan.key_sets.iter().enumerate() {
                if let Some(table) = tables
                    .iter()
                    .find(|t| set.from_source && t.name == set.table)
                {
                    pending.push((Task::Keys(n), *table));
                }
            }
        }
        pending.extend(tables.iter().map(|&t| (Task::Copy, t)));
        pending.extend(
            tables
                .iter()
                .filter(|t| t.has_counts())
                .map(|&t| (Task::Recount, t)),
        );
        // Per table, the tasks that lock out its others first, so that the last tasks of a run
        // are index builds, which can share a table.
        for &t in &tables {
            pending.push((Task::Analyze, t));
            pending.extend((0..t.indexes(loading).len()).map(|n| (Task::Index(n), t)));
        }
        Self {
            plan,
            loading,
            state: Mutex::new(State {
                pending,
                running: Vec::new(),
                done: BTreeSet::new(),
                keys,
                last_copy: None,
                index_seconds: 0.0,
                scan_seconds: 0.0,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Tasks in all, for the progress bar.
    fn tasks(&self) -> u64 {
        self.lock().pending.len() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<'p>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next ready task, with the key sets a copy reads, copies (and key sets to collect) only
    /// if `copies`; waits while none is ready but tasks under way will make some ready; `None`
    /// once nothing is left.
    async fn next(
        &self,
        copies: bool,
    ) -> Option<(Task, &'p TablePlan, Vec<(usize, Arc<KeyValues>)>)> {
        loop {
            let changed = self.changed.notified();
            {
                let mut state = self.lock();
                if state.pending.is_empty() {
                    return None;
                }
                if let Some(i) = state.pending.iter().position(|&(task, table)| {
                    (copies || !matches!(task, Task::Copy | Task::Keys(_)))
                        && state.ready(self.plan, task, table)
                }) {
                    let (task, table) = state.pending.remove(i);
                    state.running.push((task, &table.name));
                    let keys = if task == Task::Copy {
                        state.take_keys(table)
                    } else {
                        Vec::new()
                    };
                    return Some((task, table, keys));
                }
            }
            changed.await;
        }
    }

    /// Records the end of a task, which took `seconds`; a copy brings the key sets collected from it.
    /// `counted` says that a copy filled the table's counter caches: its recount is dropped.
    /// Returns the tasks it ended: this one, and the recount.
    fn finished(
        &self,
        task: Task,
        table: &'p TablePlan,
        seconds: f64,
        keys: Vec<(usize, Option<KeyValues>)>,
        counted: bool,
    ) -> u64 {
        let mut state = self.lock();
        let mut ended = 1;
        if counted {
            let before = state.pending.len();
            state
                .pending
                .retain(|&(t, p)| !(t == Task::Recount && p.name == table.name));
            ended += (before - state.pending.len()) as u64;
            state.done.insert((&table.name, TaskKind::Recount));
        }
        for (n, read) in keys {
            state.keys[n].0 = read.map_or(Keys::Unused, |k| Keys::Read(Arc::new(k)));
        }
        if let Some(i) = state
            .running
            .iter()
            .position(|&(t, name)| t == task && name == table.name)
        {
            state.running.swap_remove(i);
        }
        let kind = match task {
            Task::Keys(_) => None,
            Task::Copy => {
                state.last_copy = Some(Instant::now());
                Some(TaskKind::Copy)
            }
            Task::Recount => {
                state.index_seconds += seconds;
                Some(TaskKind::Recount)
            }
            Task::Index(_) | Task::Analyze => {
                state.index_seconds += seconds;
                None
            }
        };
        if let Some(kind) = kind {
            state.done.insert((&table.name, kind));
        }
        drop(state);
        self.changed.notify_waiters();
        ended
    }

    /// Whether key set `n` is to be collected: some table still to copy reads it, and it is not
    /// [`Keys::Unused`].
    fn wanted(&self, n: usize) -> bool {
        let keys = &self.lock().keys[n];
        keys.1 > 0 && matches!(keys.0, Keys::Pending)
    }

    /// Whether copies (or key sets to collect on the source) are left to hand out.
    fn copies_left(&self) -> bool {
        self.lock()
            .pending
            .iter()
            .any(|(task, _)| matches!(task, Task::Copy | Task::Keys(_)))
    }
}

impl State<'_> {
    fn loaded(&self, table: &str) -> bool {
        self.done.contains(&(table, TaskKind::Copy))
    }

    fn ready(&self, plan: &Plan, task: Task, table: &TablePlan) -> bool {
        let name = table.name.as_str();
        let rebuilt = !table.has_counts() || self.done.contains(&(name, TaskKind::Recount));
        match task {
            Task::Keys(_) => true,
            Task::Copy => {
                plan.needs(table).all(|t| self.loaded(t))
                    && table.keyed.iter().flat_map(|k| &k.key_sets).all(|&n| {
                        !plan.key_sets[n].from_source || !matches!(self.keys[n].0, Keys::Pending)
                    })
            }
            Task::Recount => {
                self.loaded(name)
                    && table.counted().all(|t| self.loaded(t))
                    && !self.running.iter().any(|(t, _)| *t == Task::Recount)
            }
            Task::Index(_) | Task::Analyze => {
                self.loaded(name)
                    && rebuilt
                    && !self
                        .running
                        .iter()
                        .any(|&(other, p)| p == name && locks_out(table, task, other))
            }
        }
    }

    /// The key sets `table`'s keyed SELECT reads, all of them read; or none (the chain SELECT).
    /// Either way, `table` no longer needs them: a set no table needs any more is dropped.
    fn take_keys(&mut self, table: &TablePlan) -> Vec<(usize, Arc<KeyValues>)> {
        let Some(keyed) = &table.keyed else {
            return Vec::new();
        };
        let mut read = Vec::new();
        for &n in &keyed.key_sets {
            if let Keys::Read(keys) = &self.keys[n].0 {
                read.push((n, Arc::clone(keys)));
            }
            self.keys[n].1 -= 1;
            if self.keys[n].1 == 0 {
                self.keys[n].0 = Keys::Unused;
            }
        }
        if read.len() == keyed.key_sets.len() {
            read
        } else {
            Vec::new()
        }
    }
}

/// Whether `task` on `table` would wait for the lock of `running`, another task on it: index
/// builds share a table (`SHARE` locks), `ANALYZE` (`SHARE UPDATE EXCLUSIVE`) does not share it
/// with them, and adding the primary key (`ACCESS EXCLUSIVE`) with nothing. A job waiting for a
/// lock would do nothing meanwhile; it takes another task instead.
fn locks_out(table: &TablePlan, task: Task, running: Task) -> bool {
    let primary = |t: Task| matches!(t, Task::Index(n) if table.primary_key() == Some(n));
    match (task, running) {
        (Task::Index(_), Task::Index(_)) => primary(task) || primary(running),
        _ => true,
    }
}

/// The tables, those that head the longest chain of tables waiting for them first (the length of
/// a chain is the sum of its tables' sizes): `request_classifications` waits for events, which
/// wait for messages, which wait for requests, so requests must not wait behind an independent
/// table that is merely larger.
fn critical_first(plan: &Plan) -> Vec<&TablePlan> {
    fn chain<'p>(plan: &'p Plan, table: &'p TablePlan, memo: &mut BTreeMap<&'p str, i64>) -> i64 {
        if let Some(&length) = memo.get(table.name.as_str()) {
            return length;
        }
        let longest = plan
            .tables
            .iter()
            .filter(|t| plan.needs(t).any(|needed| needed == table.name))
            .map(|t| chain(plan, t, memo))
            .max()
            .unwrap_or(0);
        let length = table.bytes.max(0) + longest;
        memo.insert(&table.name, length);
        length
    }
    let mut memo = BTreeMap::new();
    let mut tables: Vec<(i64, &TablePlan)> = plan
        .tables
        .iter()
        .map(|t| (chain(plan, t, &mut memo), t))
        .collect();
    // Stable: equal chains keep the plan's order, largest first.
    tables.sort_by_key(|(length, _)| std::cmp::Reverse(*length));
    tables.into_iter().map(|(_, t)| t).collect()
}

/// One job: tasks until none is left; copies only with a `source` session (the builder has none).
/// Returns its copies and what the leak scan found in them.
async fn work(
    schedule: &Schedule<'_>,
    needles: &Needles,
    mut source: Option<tokio_postgres::Client>,
    target: tokio_postgres::Client,
    key_memory: usize,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<TableReport>, Vec<scan::Leak>)> {
    let loading = schedule.loading;
    let mut tables = Vec::new();
    let mut leaks = Vec::new();
    loop {
        if !schedule.copies_left() {
            // Ends its transaction: the source may vacuum past the snapshot once every job has.
            source = None;
        }
        let Some((task, table, keys)) = schedule.next(source.is_some()).await else {
            return Ok((tables, leaks));
        };
        let started = Instant::now();
        let mut read = Vec::new();
        let mut counted = false;
        match task {
            Task::Keys(n) => {
                let source = source
                    .as_ref()
                    .expect("a job keeps its source session while copies are left to hand out");
                let set = &schedule.plan.key_sets[n];
                read.push((n, source_keys(source, set, table, key_memory).await?));
            }
            Task::Copy => {
                let source = source
                    .as_ref()
                    .expect("a job keeps its source session while copies are left to hand out");
                let copied = copy_task(
                    schedule,
                    (source, &target),
                    table,
                    &keys,
                    needles,
                    key_memory,
                )
                .await?;
                drop(keys);
                read = copied.keys;
                counted = copied.counted;
                leaks.extend(copied.leaks);
                schedule.lock().scan_seconds += copied.scanning;
                tables.push(copied.report);
            }
            Task::Recount => {
                let statements = table
                    .recount(loading, RECOUNT_STAGING)
                    .expect("only tables with counter caches are recounted");
                target
                    .batch_execute(&format!("BEGIN; {}; COMMIT", statements.join("; ")))
                    .await
                    .map_err(|e| {
                        Error::db(format!("counting the counter caches of {}", table.name), &e)
                    })?;
            }
            Task::Index(n) => {
                target
                    .batch_execute(&table.indexes(loading)[n])
                    .await
                    .map_err(|e| Error::db(format!("indexing {}", table.name), &e))?;
            }
            Task::Analyze => {
                // Readers' queries are planned on statistics from the first minute.
                target
                    .batch_execute(&format!("ANALYZE {}", qualified(loading, &table.name)))
                    .await
                    .map_err(|e| Error::db(format!("analysing {}", table.name), &e))?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::debug!(task = ?task, table = %table.name, seconds, "task done");
        bar.inc(schedule.finished(task, table, seconds, read, counted));
    }
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

/// Copies `table`: collects the key sets still wanted from its stream and, if it fills its
/// counter caches as it is copied, reads their counts on the target first.
async fn copy_task(
    schedule: &Schedule<'_>,
    (source, target): (&tokio_postgres::Client, &tokio_postgres::Client),
    table: &TablePlan,
    keys: &[(usize, Arc<KeyValues>)],
    needles: &Needles,
    key_memory: usize,
) -> Result<Copied> {
    let loading = schedule.loading;
    let collect: Vec<(usize, KeyCollector)> = schedule
        .plan
        .key_sets
        .iter()
        .enumerate()
        .filter(|(n, set)| set.table == table.name && !set.from_source && schedule.wanted(*n))
        .filter_map(|(n, set)| {
            let column = table.columns.iter().position(|c| c.name == set.column)?;
            Some((n, KeyCollector::new(column, set.kind, key_memory)))
        })
        .collect();
    let counts = match table.count_reads(loading) {
        Some(reads) => {
            let counts = read_counts(target, table, &reads, key_memory).await?;
            if counts.is_none() {
                tracing::info!(
                    table = %table.name,
                    "its counts take more than STATS_ANONYMIZE_KEY_MEMORY: counted once it is loaded"
                );
            }
            counts
        }
        None => None,
    };
    let extras = Extras {
        keys,
        collect,
        counts,
    };
    let copied = copy_table(source, target, table, extras, loading, needles).await?;
    tracing::info!(
        table = %copied.report.table,
        rows = copied.report.rows,
        bytes = copied.report.bytes.unwrap_or(0),
        seconds = copied.report.seconds,
        keyed = !keys.is_empty(),
        counted = copied.counted,
        "copied"
    );
    Ok(copied)
}

/// Key set `set` of `table`, collected on the source from the table's chain SELECT; `None` past
/// [`Job::key_memory`].
async fn source_keys(
    source: &tokio_postgres::Client,
    set: &plan::KeySet,
    table: &TablePlan,
    key_memory: usize,
) -> Result<Option<KeyValues>> {
    let mut keys = KeyCollector::new(0, set.kind, key_memory);
    let query = set.source_copy(&table.select);
    let what = format!("reading the keys of {} on the source", table.name);
    each_row(source, &query, 1, &what, &mut |row| keys.row(row)).await?;
    Ok(keys.finish())
}

/// The counts of `table`'s counter caches, read from the copies of the tables they count; `None`
/// when they would take more than [`Job::key_memory`] (the table is then recounted once
/// loaded).
async fn read_counts(
    target: &tokio_postgres::Client,
    table: &TablePlan,
    reads: &[plan::CountRead],
    key_memory: usize,
) -> Result<Option<stream::Counts>> {
    if key_memory == 0 {
        return Ok(None);
    }
    let mut counts = stream::Counts::new(table.columns.len(), reads, key_memory);
    let what = format!("counting the counter caches of {}", table.name);
    for (r, read) in reads.iter().enumerate() {
        let mut within = true;
        each_row(
            target,
            &read.query,
            1 + read.counters.len(),
            &what,
            &mut |row| {
                if within {
                    within = counts.add(r, row)?;
                }
                Ok(())
            },
        )
        .await?;
        if !within {
            return Ok(None);
        }
    }
    Ok(Some(counts))
}

/// Runs `query`, a binary `COPY … TO STDOUT` of rows of `fields` fields, and hands each row to
/// `row` ([`stream::CopyRows`]); `what` says what for, in errors.
async fn each_row(
    client: &tokio_postgres::Client,
    query: &str,
    fields: usize,
    what: &str,
    row: &mut dyn FnMut(&[u8]) -> std::result::Result<(), String>,
) -> Result<()> {
    let stream = client
        .copy_out(query)
        .await
        .map_err(|e| Error::db(what, &e))?;
    futures_util::pin_mut!(stream);
    let mut rows = stream::CopyRows::new(fields);
    let unreadable = |message| Error::Database {
        context: what.to_owned(),
        message,
    };
    while let Some(chunk) = stream.try_next().await.map_err(|e| Error::db(what, &e))? {
        rows.push(&chunk, row).map_err(unreadable)?;
    }
    rows.finish().map_err(unreadable)
}

/// What a copy brings besides the rows it loaded.
struct Copied {
    report: TableReport,
    /// What the leak scan found in its rows.
    leaks: Vec<scan::Leak>,
    /// Seconds the leak scan spent searching its rows.
    scanning: f64,
    /// The key sets collected from it, by number; `None` past [`Job::key_memory`].
    keys: Vec<(usize, Option<KeyValues>)>,
    /// Whether it filled its counter caches.
    counted: bool,
}

/// A copy's rows are sent on in pieces of about this size (and written anew with counts): one
/// message per row, as they come from the source, cost the run a tenth more CPU.
const PIECE: usize = 64 << 10;

/// What a copy does besides streaming the rows.
struct Extras<'k> {
    /// The key sets written into its keyed SELECT; none for its chain SELECT.
    keys: &'k [(usize, Arc<KeyValues>)],
    /// The key sets to collect from its rows.
    collect: Vec<(usize, KeyCollector)>,
    /// The counts to write into its rows.
    counts: Option<stream::Counts>,
}

/// Streams one table from the source into a new table of the loading schema, searching its rows
/// for leaks, collecting key sets and writing counts into them on the way ([`Extras`]).
async fn copy_table(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    table: &TablePlan,
    extras: Extras<'_>,
    loading: &str,
    needles: &Needles,
) -> Result<Copied> {
    let Extras {
        keys,
        mut collect,
        mut counts,
    } = extras;
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
    let copy_out = match &table.keyed {
        Some(keyed) if !keys.is_empty() => plan::copy_out(&keyed.with_keys(keys)),
        _ => table.copy_out(),
    };
    let stream = source.copy_out(&copy_out).await.map_err(from)?;
    futures_util::pin_mut!(sink);
    futures_util::pin_mut!(stream);
    let mut scan = scan::StreamScan::new(table, needles);
    let mut rows = (scan.is_some() || !collect.is_empty() || counts.is_some())
        .then(|| stream::CopyRows::new(table.columns.len()));
    let unreadable = |message| Error::Database {
        context: format!("reading the rows of {}", table.name),
        message,
    };
    // Pieces are split off one buffer, which is used again once the connection has sent them.
    let mut outgoing = BytesMut::with_capacity(4 * PIECE);
    if counts.is_some() {
        stream::Counts::header(&mut outgoing);
    }
    let mut bytes = 0u64;
    let mut scanning = Duration::ZERO;
    while let Some(chunk) = stream.try_next().await.map_err(from)? {
        bytes += chunk.len() as u64;
        if let Some(rows) = &mut rows {
            rows.push(&chunk, &mut |row: &[u8]| {
                if let Some(scan) = &mut scan {
                    let searching = Instant::now();
                    scan.row(row)?;
                    scanning += searching.elapsed();
                }
                for (_, keys) in &mut collect {
                    keys.row(row)?;
                }
                if let Some(counts) = &mut counts {
                    counts.write_row(row, &mut outgoing);
                }
                Ok(())
            })
            .map_err(unreadable)?;
        }
        if counts.is_none() {
            outgoing.extend_from_slice(&chunk);
        }
        if outgoing.len() >= PIECE {
            sink.feed(outgoing.split().freeze()).await.map_err(into)?;
            outgoing.reserve(2 * PIECE);
        }
    }
    if let Some(rows) = &rows {
        rows.finish().map_err(unreadable)?;
    }
    if counts.is_some() {
        stream::Counts::trailer(&mut outgoing);
    }
    sink.feed(outgoing.split().freeze()).await.map_err(into)?;
    let loaded = sink.as_mut().finish().await.map_err(into)?;
    target.batch_execute("COMMIT").await.map_err(into)?;
    Ok(Copied {
        report: TableReport {
            table: table.name.clone(),
            rows: loaded,
            bytes: Some(bytes),
            seconds: started.elapsed().as_secs_f64(),
        },
        leaks: scan.map(scan::StreamScan::finish).unwrap_or_default(),
        scanning: scanning.as_secs_f64(),
        keys: collect
            .into_iter()
            .map(|(n, keys)| (n, keys.finish()))
            .collect(),
        counted: counts.is_some(),
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

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;
    use crate::plan::fixtures::{plan, table};

    /// The next task, which must be ready now.
    fn next<'p>(schedule: &Schedule<'p>) -> (Task, &'p str, Vec<(usize, Arc<KeyValues>)>) {
        let (task, table, keys) = schedule
            .next(true)
            .now_or_never()
            .expect("a task is ready")
            .expect("tasks are left");
        (task, table.name.as_str(), keys)
    }

    #[test]
    fn copies_wait_for_the_tables_they_refer_to_and_count_and_read_their_keys() {
        let plan = plan();
        let schedule = Schedule::new(&plan, "s", true);
        // requests counts messages, which refer to it: its keys are collected on the source, and
        // it is copied after messages.
        assert!(plan.key_sets[0].from_source);
        // The builder takes no copy, nor keys to collect on the source.
        assert!(schedule.next(false).now_or_never().is_none());
        assert_eq!(next(&schedule), (Task::Keys(0), "requests", vec![]));
        assert!(
            schedule.next(true).now_or_never().is_none(),
            "nothing else is ready"
        );
        assert!(schedule.copies_left());
        let requests = table(&plan, "requests");
        schedule.finished(
            Task::Keys(0),
            requests,
            1.0,
            vec![(0, Some(KeyValues::Array("{1,2}".to_owned())))],
            false,
        );

        let keys: Vec<(usize, Arc<KeyValues>)> =
            vec![(0, Arc::new(KeyValues::Array("{1,2}".to_owned())))];
        assert_eq!(next(&schedule), (Task::Copy, "messages", keys.clone()));
        assert_eq!(next(&schedule), (Task::Copy, "tags", keys));
        assert!(!schedule.wanted(0), "no copy is left to read the keys");
        assert!(matches!(schedule.lock().keys[0].0, Keys::Unused));
        assert!(schedule.next(true).now_or_never().is_none());
        schedule.finished(Task::Copy, table(&plan, "messages"), 1.0, vec![], false);
        // While copies are left, the builder takes the tasks of messages, loaded: ANALYZE, then
        // the primary key, which waits for it (it would wait for its lock).
        let builder = || schedule.next(false).now_or_never().flatten();
        let messages = table(&plan, "messages");
        let (task, built, _) = builder().unwrap();
        assert_eq!((task, built.name.as_str()), (Task::Analyze, "messages"));
        assert!(builder().is_none(), "the primary key waits for ANALYZE");
        schedule.finished(task, messages, 1.0, vec![], false);
        let (task, built, _) = builder().unwrap();
        assert_eq!((task, built.name.as_str()), (Task::Index(0), "messages"));
        schedule.finished(task, messages, 1.0, vec![], false);
        assert_eq!(next(&schedule), (Task::Copy, "requests", vec![]));
        assert!(!schedule.copies_left());
        assert!(schedule.next(true).now_or_never().is_none());
        // The copy filled the counter caches: no recount.
        assert_eq!(
            schedule.finished(Task::Copy, requests, 1.0, vec![], true),
            2,
            "the copy, and the recount it spared"
        );
        assert_eq!(next(&schedule), (Task::Analyze, "requests", vec![]));
        assert!(schedule.next(true).now_or_never().is_none());
        schedule.finished(Task::Analyze, requests, 1.0, vec![], false);
        assert_eq!(next(&schedule), (Task::Index(0), "requests", vec![]));
        assert!(
            schedule.next(true).now_or_never().is_none(),
            "the other index waits for the primary key"
        );
        schedule.finished(Task::Index(0), requests, 1.0, vec![], false);
        assert_eq!(next(&schedule), (Task::Index(1), "requests", vec![]));
        schedule.finished(Task::Index(1), requests, 1.0, vec![], false);
        let state = schedule.lock();
        assert!(state.pending.is_empty() || state.pending.iter().all(|(_, t)| t.name == "tags"));
        assert!((state.index_seconds - 5.0).abs() < 1e-9, "five index tasks");
        assert!(state.last_copy.is_some());
        assert!(
            !state.pending.iter().any(|(t, _)| *t == Task::Recount),
            "{:?}",
            state
                .pending
                .iter()
                .map(|(t, p)| (t, &p.name))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_copy_that_did_not_count_is_recounted_before_its_indexes() {
        let plan = plan();
        let schedule = Schedule::new(&plan, "s", true);
        let requests = table(&plan, "requests");
        assert_eq!(next(&schedule).0, Task::Keys(0));
        schedule.finished(Task::Keys(0), requests, 1.0, vec![(0, None)], false);
        assert_eq!(next(&schedule), (Task::Copy, "messages", vec![]));
        assert_eq!(next(&schedule), (Task::Copy, "tags", vec![]));
        schedule.finished(Task::Copy, table(&plan, "messages"), 1.0, vec![], false);
        assert_eq!(next(&schedule), (Task::Copy, "requests", vec![]));
        schedule.finished(Task::Copy, requests, 1.0, vec![], false);
        assert_eq!(next(&schedule), (Task::Recount, "requests", vec![]));
        assert!(
            !std::iter::from_fn(|| schedule.next(true).now_or_never().flatten())
                .any(|(_, t, _)| t.name == "requests"),
            "the indexes of requests wait for its recount"
        );
    }

    #[test]
    fn a_job_waiting_for_a_task_wakes_when_another_ends() {
        let plan = plan();
        let schedule = Schedule::new(&plan, "s", true);
        let requests = next(&schedule).1;
        let runtime = ops_common::cli::runtime_current_thread();
        let (woken, ()) = runtime.block_on(async {
            // A lost wakeup would leave the job waiting: bounded, so the test fails instead.
            let waiting = tokio::time::timeout(Duration::from_secs(10), schedule.next(true));
            tokio::join!(waiting, async {
                // The other job is waiting by now: nothing was ready when it looked.
                tokio::task::yield_now().await;
                let keys = vec![(0, Some(KeyValues::Array("{1}".to_owned())))];
                schedule.finished(Task::Keys(0), table(&plan, requests), 1.0, keys, false);
            })
        });
        let (task, table, _) = woken
            .expect("woken when the copy ended, not left waiting")
            .expect("a task");
        assert_eq!((task, table.name.as_str()), (Task::Copy, "messages"));
    }

    #[test]
    fn without_key_sets_every_table_is_copied_by_its_chain() {
        // A source older than PostgreSQL 14: no key set is read, none handed to a copy.
        let plan = plan();
        let schedule = Schedule::new(&plan, "s", false);
        assert!(!schedule.wanted(0), "nothing reads the keys of requests");
        assert_eq!(next(&schedule), (Task::Copy, "messages", vec![]));
        assert_eq!(next(&schedule), (Task::Copy, "tags", vec![]));
        schedule.finished(Task::Copy, table(&plan, "messages"), 1.0, vec![], false);
        assert_eq!(next(&schedule), (Task::Copy, "requests", vec![]));
    }

    #[test]
    fn a_table_with_too_many_keys_is_referred_to_by_its_chain() {
        let plan = plan();
        let schedule = Schedule::new(&plan, "s", true);
        assert_eq!(next(&schedule).0, Task::Keys(0));
        schedule.finished(
            Task::Keys(0),
            table(&plan, "requests"),
            1.0,
            vec![(0, None)],
            false,
        );
        // No keys: the copy runs the SELECT with the chain.
        assert_eq!(next(&schedule), (Task::Copy, "messages", vec![]));
    }

    #[test]
    fn only_index_builds_other_than_the_primary_key_share_a_table() {
        let plan = plan();
        let requests = table(&plan, "requests");
        assert_eq!(requests.primary_key(), Some(0));
        let (key, index) = (Task::Index(0), Task::Index(1));
        assert!(!locks_out(requests, index, Task::Index(2)));
        for (task, running) in [
            (key, index),
            (index, key),
            (Task::Analyze, index),
            (index, Task::Analyze),
            (Task::Analyze, key),
            (Task::Recount, Task::Analyze),
        ] {
            assert!(
                locks_out(requests, task, running),
                "{task:?} with {running:?}"
            );
        }
        // Without a primary key in the copy, index 0 is an index like the others.
        assert!(!locks_out(
            table(&plan, "tags"),
            Task::Index(0),
            Task::Index(1)
        ));
    }

    #[test]
    fn nothing_left_ends_the_jobs() {
        let plan = crate::plan::Plan {
            tables: Vec::new(),
            skipped: Vec::new(),
            key_sets: Vec::new(),
        };
        let schedule = Schedule::new(&plan, "s", true);
        assert_eq!(schedule.tasks(), 0);
        assert!(schedule.next(true).now_or_never().unwrap().is_none());
    }
}
