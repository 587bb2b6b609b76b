//! `stats-anonymize run`: the nightly copy (see [`crate::engine`]), with `--dry-run` and
//! `--explain`, a per-table summary on stdout and Prometheus metrics for cron.

use std::fmt::Write as _;
use std::time::Instant;

use ops_common::cli::Context;
use ops_common::exit;
use ops_common::metrics::Metrics;
use ops_common::output::human_bytes;

use crate::commands::load_rules;
use crate::engine::{self, Cancel, Job, Report};
use crate::error::{Error, Result};
use crate::pseudonym::PaddedKeys;
use crate::settings::{
    self, SOURCE_DATABASE_URL, STATS_ANONYMIZE_READER_ROLE, STATS_ANONYMIZE_SOURCE_SCHEMA,
    STATS_ANONYMIZE_TARGET_SCHEMA, TARGET_DATABASE_URL,
};
use crate::target::Names;

/// `run`'s flags.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Count, write nothing.
    pub dry_run: bool,
    /// Print the SQL, do nothing.
    pub explain: bool,
    /// Summary as JSON.
    pub json: bool,
}

/// Runs `run`.
///
/// # Errors
/// Whatever stops the run; the target is then as it was.
///
/// # Panics
/// Never: the report always serialises to JSON.
pub fn run(ctx: &Context, options: &Options) -> Result<u8> {
    let started = Instant::now();
    let s = &ctx.settings;
    let (rules, rules_origin) = load_rules(s)?;
    let source = settings::database_config(s, &SOURCE_DATABASE_URL)?;
    let source_schema = settings::schema_name(s, &STATS_ANONYMIZE_SOURCE_SCHEMA)?;
    let names = Names::new(&settings::schema_name(s, &STATS_ANONYMIZE_TARGET_SCHEMA)?);
    let runtime = ops_common::cli::runtime_current_thread();
    if options.explain {
        let checked = runtime.block_on(engine::check_source(
            &source,
            &rules,
            &rules_origin,
            &source_schema,
        ))?;
        ops_common::output::print(&checked.plan.explain(&source_schema, &names.loading))?;
        return Ok(exit::SUCCESS);
    }
    let target = settings::database_config(s, &TARGET_DATABASE_URL)?;
    if same_database(&source, &target) {
        return Err(Error::Usage(
            "SOURCE_DATABASE_URL and TARGET_DATABASE_URL name the same database; the copy must go to a separate one".to_owned(),
        ));
    }
    let keys = if rules.uses_hash() {
        Some(PaddedKeys::new(&settings::hmac_key(s)?))
    } else {
        None
    };
    let job = Job {
        source,
        target,
        rules: &rules,
        rules_origin,
        source_schema,
        names,
        reader: s.get(&STATS_ANONYMIZE_READER_ROLE).map(str::to_owned),
        jobs: settings::jobs(s)?,
        key_memory: settings::key_memory(s)?,
        swap_timeout: settings::swap_timeout(s)?,
        keys,
        dry_run: options.dry_run,
        log_format: ctx.log_format,
    };
    let span = tracing::info_span!("run", target_schema = %job.names.live, dry_run = job.dry_run);
    let _entered = span.enter();
    let outcome = runtime.block_on(async {
        let (stop, cancel) = Cancel::new();
        tokio::spawn(async move {
            shutdown().await;
            let _ = stop.send(true);
        });
        engine::run(&job, &cancel).await
    });
    drop(runtime);
    if !job.dry_run {
        ctx.write_metrics(&metrics(outcome.as_ref(), started));
    }
    let report = outcome?;
    let text = if options.json {
        let mut text = serde_json::to_string_pretty(&report).expect("the report serialises");
        text.push('\n');
        text
    } else {
        summary(&report)
    };
    ops_common::output::print(&text)?;
    Ok(exit::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM (cron's and systemd's way of stopping a job).
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

/// True when two configurations reach the same database (same hosts, ports and database name).
fn same_database(a: &tokio_postgres::Config, b: &tokio_postgres::Config) -> bool {
    let database =
        |c: &tokio_postgres::Config| c.get_dbname().or_else(|| c.get_user()).map(str::to_owned);
    let ports = |c: &tokio_postgres::Config| {
        if c.get_ports().is_empty() {
            vec![5432]
        } else {
            c.get_ports().to_vec()
        }
    };
    format!("{:?}", a.get_hosts()) == format!("{:?}", b.get_hosts())
        && ports(a) == ports(b)
        && database(a) == database(b)
}

/// The metrics of a run, for node_exporter's textfile collector.
fn metrics(outcome: std::result::Result<&Report, &Error>, started: Instant) -> Metrics {
    let mut m = Metrics::new("stats-anonymize", "run");
    m.gauge(
        "run_success",
        "1 if the last run swapped a new copy in, 0 if it failed.",
        &[],
        if outcome.is_ok() { 1.0 } else { 0.0 },
    )
    .gauge(
        "run_duration_seconds",
        "How long the last run took.",
        &[],
        started.elapsed().as_secs_f64(),
    );
    match outcome {
        Ok(report) => {
            m.gauge("run_rows", "Rows in the new copy.", &[], report.rows as f64)
                .gauge(
                    "run_bytes",
                    "Bytes streamed from the source.",
                    &[],
                    report.bytes as f64,
                )
                .gauge(
                    "run_tables",
                    "Tables in the new copy.",
                    &[],
                    report.tables.len() as f64,
                )
                .gauge(
                    "run_leaks",
                    "Leaks the scan found in the last run (a run with leaks swaps nothing in).",
                    &[],
                    0.0,
                );
            for (phase, seconds) in [
                ("copy", report.copy_seconds),
                ("index", report.index_seconds),
                ("scan", report.scan_seconds),
                ("swap", report.swap_seconds),
            ] {
                m.gauge(
                    "run_phase_seconds",
                    "Seconds each phase of the last run took: copy and swap from start to end; index summed over the jobs, overlapping the copy; scan (searching the rows as they streamed) summed over the jobs, within the copy.",
                    &[("phase", phase)],
                    seconds,
                );
            }
            for t in &report.tables {
                m.gauge(
                    "table_rows",
                    "Rows of each table in the new copy.",
                    &[("table", &t.table)],
                    t.rows as f64,
                );
                m.gauge(
                    "table_bytes",
                    "Bytes of each table streamed from the source.",
                    &[("table", &t.table)],
                    t.bytes.unwrap_or(0) as f64,
                );
                m.gauge(
                    "table_seconds",
                    "Seconds each table took to copy.",
                    &[("table", &t.table)],
                    t.seconds,
                );
            }
        }
        Err(Error::Leak(leaks)) => {
            m.gauge(
                "run_leaks",
                "Leaks the scan found in the last run (a run with leaks swaps nothing in).",
                &[],
                leaks.len() as f64,
            );
        }
        Err(Error::Rules(problems)) => {
            m.gauge(
                "run_rules_problems",
                "Problems between the rules and the source in the last run (new tables or columns without a rule).",
                &[],
                problems.items.len() as f64,
            );
        }
        Err(_) => {}
    }
    m
}

/// The summary for people: one line per table, then the totals.
fn summary(report: &Report) -> String {
    let width = report
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$} {:>12} {:>12} {:>9}",
        "TABLE", "ROWS", "BYTES", "SECONDS"
    );
    for t in &report.tables {
        let _ = writeln!(
            out,
            "{:<width$} {:>12} {:>12} {:>9.2}",
            t.table,
            t.rows,
            t.bytes.map_or_else(|| "-".to_owned(), human_bytes),
            t.seconds
        );
    }
    if report.dry_run {
        let _ = writeln!(
            out,
            "dry run: {} tables would be copied ({} rows), {} skipped; nothing was written ({:.1} s)",
            report.tables.len(),
            report.rows,
            report.skipped.len(),
            report.seconds
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} tables copied ({} rows, {}), {} skipped; leak scan of {} sampled values and the patterns: nothing found",
        report.tables.len(),
        report.rows,
        human_bytes(report.bytes),
        report.skipped.len(),
        report.sampled
    );
    let _ = writeln!(
        out,
        "copy {:.1} s (leak scan {:.1} s of it); indexes {:.1} s of the jobs' time, alongside; swap {:.1} s; {:.1} s in all",
        report.copy_seconds,
        report.scan_seconds,
        report.index_seconds,
        report.swap_seconds,
        report.seconds
    );
    let _ = match &report.previous {
        Some(previous) => writeln!(
            out,
            "schema {} now holds the new copy; the one it replaced is kept as {previous} (`stats-anonymize rollback`)",
            report.schema
        ),
        None => writeln!(out, "schema {} now holds the new copy", report.schema),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_database_is_recognised() {
        let parse = |s: &str| s.parse::<tokio_postgres::Config>().unwrap();
        assert!(same_database(
            &parse("postgresql://a@localhost/alaveteli"),
            &parse("host=localhost user=b dbname=alaveteli port=5432")
        ));
        assert!(!same_database(
            &parse("postgresql://a@localhost/alaveteli"),
            &parse("postgresql://a@localhost/stats")
        ));
        assert!(!same_database(
            &parse("postgresql://a@localhost:5433/alaveteli"),
            &parse("postgresql://a@localhost/alaveteli")
        ));
    }
}
