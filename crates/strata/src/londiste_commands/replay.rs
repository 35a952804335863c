//! The replay worker and what steers or checks it: `worker`, `pause`, `resume`,
//! `park-event`, `wait-sync`, `resync`, `execute`, `check`, `compare`, `repair`. The
//! checks exit 1 when they find a difference.

use super::Exit;
use crate::context::Context;
use crate::output::print_json;
use crate::pgq_commands::exit_code;
use std::path::PathBuf;
use std::time::Duration;
use strata_londiste::worker::{self, WorkerExit};
use strata_londiste::{admin, compare as diff, local, park, NodeConfig};

/// `worker`: in the foreground until a signal, or detached with `--daemon`.
pub(super) async fn worker(ctx: &Context, cf: &NodeConfig, daemon: bool, verbose: u8) -> Exit {
    // -q (every command's) logs errors only; each -v one level more.
    let verbosity = if ctx.global.quiet {
        -3
    } else {
        i32::from(verbose)
    };
    match worker::run_until_signal(cf.clone(), daemon, verbosity).await? {
        WorkerExit::Detached { pid, logfile } => ctx.say(format!(
            "worker running in the background (pid {pid}, log {})",
            logfile.display()
        )),
        WorkerExit::Stopped(stats) => ctx.say(format!(
            "worker stopped: {} batches, {} events, {} statements",
            stats.batches, stats.events, stats.statements
        )),
    }
    Ok(0)
}

/// `check`: exit 1 when a table's columns differ from the provider's.
pub(super) async fn check(ctx: &Context, cf: &NodeConfig) -> Exit {
    let diffs = admin::check_structure(cf).await?;
    if ctx.global.json {
        print_json(&diffs);
    } else {
        for d in &diffs {
            println!("{}: {}", d.table, d.problem);
        }
        if diffs.is_empty() {
            ctx.say("every replicated table has the provider's columns");
        }
    }
    Ok(exit_code(!diffs.is_empty()))
}

/// `resync`.
pub(super) async fn resync(ctx: &Context, cf: &NodeConfig, tables: &[String]) -> Exit {
    for table in admin::resync(cf, tables).await? {
        ctx.say(format!("{table}: copied again by the worker"));
    }
    Ok(0)
}

/// `execute`, then with `--wait` (`wait` is its timeout) the wait until every node has
/// applied the files.
pub(super) async fn execute(
    ctx: &Context,
    cf: &NodeConfig,
    files: &[PathBuf],
    wait: Option<Duration>,
) -> Exit {
    // Each file is reported before the wait, which may time out.
    let done = admin::execute(cf, files).await?;
    for (name, ran) in &done {
        ctx.say(if *ran {
            format!("executed {name}")
        } else {
            format!("skipped {name}: applied before")
        });
    }
    if let Some(timeout) = wait {
        let names: Vec<String> = done.into_iter().map(|(name, _)| name).collect();
        admin::wait_executed(cf, &names, timeout).await?;
        ctx.say("applied on every node");
    }
    Ok(0)
}

/// `compare`: exit 1 when a table differs from the provider's.
pub(super) async fn compare(
    ctx: &Context,
    cf: &NodeConfig,
    tables: &[String],
    timeout: Duration,
) -> Exit {
    let diffs = diff::compare(cf, tables, false, timeout).await?;
    for d in &diffs {
        let verdict = if d.equal { "equal" } else { "DIFFERENT" };
        ctx.say(format!(
            "{}: {} rows on the provider, {} here, {verdict}",
            d.table, d.provider_rows, d.local_rows
        ));
    }
    if ctx.global.json {
        print_json(&diffs);
    }
    Ok(exit_code(diffs.iter().any(|d| !d.equal)))
}

/// `repair`: each table's verdict as it is compared; exit 1 when differences remain.
pub(super) async fn repair(
    ctx: &Context,
    cf: &NodeConfig,
    tables: &[String],
    apply: bool,
    timeout: Duration,
) -> Exit {
    let repaired = diff::repair(cf, tables, apply, timeout, |d, fix| {
        let (t, m, e, c) = (&d.table, d.missing, d.extra, d.changed);
        ctx.say(match fix {
            None => format!("{t}: equal ({} rows)", d.provider_rows),
            Some(path) if apply => format!(
                "{t}: fixed {m} missing, {e} extra, {c} changed rows ({})",
                path.display()
            ),
            Some(path) => format!(
                "{t}: {m} missing, {e} extra, {c} changed rows; fix in {}",
                path.display()
            ),
        })
    })
    .await?;
    if ctx.global.json {
        print_json(&repaired.diffs);
    }
    Ok(exit_code(repaired.differences_remain))
}

/// `pause` and `resume`.
pub(super) async fn set_paused(ctx: &Context, cf: &NodeConfig, paused: bool) -> Exit {
    admin::set_paused(cf, paused).await?;
    ctx.say(if paused {
        "worker paused"
    } else {
        "worker resumed"
    });
    Ok(0)
}

/// `park-event`: the event, and that the worker applies the rest of its batch.
pub(super) async fn park_event(
    ctx: &Context,
    cf: &NodeConfig,
    event: i64,
    batch: Option<i64>,
    reason: &str,
) -> Exit {
    let report = park::park_event(cf, event, batch, reason).await?;
    if ctx.global.json {
        print_json(&report);
    }
    ctx.say(format!(
        "event {} ({}{}) of batch {} parked in {}: worker {} applies the rest of the batch",
        report.ev_id,
        report.ev_type.as_deref().unwrap_or("?"),
        report
            .table
            .as_deref()
            .map(|t| format!(", table {t}"))
            .unwrap_or_default(),
        report.batch_id,
        park::TABLE,
        report.consumer
    ));
    Ok(0)
}

/// `wait-sync`: until every table is `ok`.
pub(super) async fn wait_sync(ctx: &Context, cf: &NodeConfig, timeout: Duration) -> Exit {
    local::wait_sync(cf, timeout).await?;
    ctx.say("all tables ok");
    Ok(0)
}
