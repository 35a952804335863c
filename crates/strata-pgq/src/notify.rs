//! Event notifications: pgq itself never NOTIFYs, so a ticker can only poll. strata adds
//! a statement-level trigger on a queue's event tables (per queue on request, or on every
//! queue by the ticker's `notify_all_queues`) that sends
//! `NOTIFY strata_pgq_event, '<queue>'`; PostgreSQL delivers it at commit (so never for
//! a rolled-back event) and folds repeats within one transaction into one. The ticker
//! LISTENs and writes a wake-up tick (see `ticker::db`), so an event on an idle queue is
//! ticked when its notification arrives, or `wakeup_min_interval` after the queue's
//! previous tick if that is later, instead of waiting for pgq's `ticker_max_lag`. The cost
//! is one `pg_notify` call per insert statement into an event table: `pgq.insert_event`
//! and the `logutriga`/`sqltriga`/`jsontriga` triggers insert one event per statement,
//! so that is one call per event (measured in bench/results/pgq.md).

use crate::{PgqError, Result};
use strata_pgclient::{quote_ident, quote_literal};
use tokio_postgres::Client;

/// The trigger's name on each event table.
pub const TRIGGER: &str = "strata_pgq_notify";

const FUNCTION_SQL: &str = "create schema if not exists strata_pgq; \
create or replace function strata_pgq.notify_event() returns trigger language plpgsql as \
$f$ begin perform pg_notify('strata_pgq_event', tg_argv[0]); return null; end $f$";

/// The queue's event tables (`pgq.event_<id>_<n>`), quoted.
async fn event_tables(client: &Client, queue: &str) -> Result<Vec<String>> {
    let row = client
        .query_opt(
            "select queue_data_pfx, queue_ntables from pgq.queue where queue_name = $1",
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql("reading pgq.queue", e))?
        .ok_or_else(|| PgqError::BadInput(format!("no queue named {queue:?}")))?;
    let prefix: String = row.get(0);
    let ntables: i32 = row.get(1);
    let (schema, table) = prefix
        .split_once('.')
        .unwrap_or(("public", prefix.as_str()));
    Ok((0..ntables)
        .map(|n| {
            format!(
                "{}.{}",
                quote_ident(schema),
                quote_ident(&format!("{table}_{n}"))
            )
        })
        .collect())
}

/// Installs the notification trigger on every event table of `queue` (idempotent).
pub async fn enable(client: &Client, queue: &str) -> Result<()> {
    enable_waiting(client, queue, None).await
}

/// [`enable`], giving up when the event tables' locks are not granted within
/// `lock_timeout`: creating a trigger waits for transactions writing events, and every
/// producer arriving meanwhile would wait behind it. The ticker's `notify_all_queues`
/// uses this and tries again later.
pub async fn enable_waiting(
    client: &Client,
    queue: &str,
    lock_timeout: Option<std::time::Duration>,
) -> Result<()> {
    crate::api::check_name("queue", queue)?;
    let tables = event_tables(client, queue).await?;
    let mut sql = String::from("begin;");
    if let Some(limit) = lock_timeout {
        sql.push_str(&format!(
            " set local lock_timeout = {};",
            limit.as_millis().max(1)
        ));
    }
    sql.push_str(&format!(" {FUNCTION_SQL};"));
    for table in &tables {
        sql.push_str(&format!(
            " drop trigger if exists {t} on {table}; create trigger {t} after insert on {table} for each statement execute function strata_pgq.notify_event({q});",
            t = quote_ident(TRIGGER),
            q = quote_literal(queue),
        ));
    }
    sql.push_str(" commit;");
    run_transaction(
        client,
        &sql,
        format!("installing the notification trigger on queue {queue}"),
    )
    .await
}

/// Removes the notification trigger from the queue's event tables.
pub async fn disable(client: &Client, queue: &str) -> Result<()> {
    crate::api::check_name("queue", queue)?;
    let tables = event_tables(client, queue).await?;
    let mut sql = String::from("begin;");
    for table in &tables {
        sql.push_str(&format!(
            " drop trigger if exists {} on {table};",
            quote_ident(TRIGGER)
        ));
    }
    sql.push_str(" commit;");
    run_transaction(
        client,
        &sql,
        format!("removing the notification trigger from queue {queue}"),
    )
    .await
}

/// Whether every event table of the queue carries the notification trigger.
pub async fn is_enabled(client: &Client, queue: &str) -> Result<bool> {
    let tables = event_tables(client, queue).await?;
    let row = client
        .query_one(
            "select count(*) from pg_catalog.pg_trigger where tgname = $1 and tgrelid = any($2::text[]::regclass[])",
            &[&TRIGGER, &tables],
        )
        .await
        .map_err(|e| PgqError::sql("reading pg_trigger", e))?;
    Ok(row.get::<_, i64>(0) == tables.len() as i64)
}

/// Runs a multi-statement transaction; on failure rolls it back so the connection is
/// usable again.
async fn run_transaction(client: &Client, sql: &str, what: String) -> Result<()> {
    if let Err(e) = client.batch_execute(sql).await {
        let _ = client.batch_execute("rollback").await;
        return Err(PgqError::sql(what, e));
    }
    Ok(())
}
