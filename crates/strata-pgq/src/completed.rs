//! Exactly-once application for consumers that write into another database: the batch's
//! end tick is recorded in the target's own transaction, next to the rows it produced.
//! A batch whose tick is already recorded was applied before a crash that came between
//! the target's commit and `finish_batch` on the queue's database, so it is skipped and
//! just finished. (pgq_node does the same with `set_consumer_completed`/`is_batch_done`;
//! this table is strata's own so a plain consumer needs no cascade setup.)

use crate::api::Batch;
use crate::{PgqError, Result};
use tokio_postgres::GenericClient;

/// The table, in the target database: one row per (queue, consumer).
pub const SETUP_SQL: &str = "create schema if not exists strata_pgq; \
create table if not exists strata_pgq.completed_tick (\
 queue_name text not null, consumer_name text not null, last_tick_id bigint not null, \
 updated_at timestamptz not null default now(), primary key (queue_name, consumer_name))";

/// Creates the `strata_pgq.completed_tick` table in the target when it is missing.
pub async fn setup(target: &impl GenericClient) -> Result<()> {
    target
        .batch_execute(SETUP_SQL)
        .await
        .map_err(|e| PgqError::sql("creating strata_pgq.completed_tick", e))
}

/// Whether `batch` was already applied in the target. Call it inside the target
/// transaction that will apply the batch: it locks the consumer's row, so two copies of
/// one consumer cannot both apply a batch. Before the consumer's first `mark_done` there
/// is no row to lock, so it inserts one (tick 0, below every batch): a second copy's
/// insert then waits for the first transaction and finds its row.
pub async fn is_done(
    tx: &impl GenericClient,
    queue: &str,
    consumer: &str,
    batch: &Batch,
) -> Result<bool> {
    tx.execute(
        "insert into strata_pgq.completed_tick (queue_name, consumer_name, last_tick_id) values ($1, $2, 0) \
         on conflict (queue_name, consumer_name) do nothing",
        &[&queue, &consumer],
    )
    .await
    .map_err(|e| PgqError::sql("locking the consumer's row in strata_pgq.completed_tick", e))?;
    let row = tx
        .query_opt(
            "select last_tick_id from strata_pgq.completed_tick where queue_name = $1 and consumer_name = $2 for update",
            &[&queue, &consumer],
        )
        .await
        .map_err(|e| PgqError::sql("reading strata_pgq.completed_tick", e))?;
    Ok(row.is_some_and(|r| r.get::<_, i64>(0) >= batch.cur_tick_id))
}

/// Records `batch` as applied, in the same target transaction as its rows.
pub async fn mark_done(
    tx: &impl GenericClient,
    queue: &str,
    consumer: &str,
    batch: &Batch,
) -> Result<()> {
    tx.execute(
        "insert into strata_pgq.completed_tick (queue_name, consumer_name, last_tick_id) values ($1, $2, $3) \
         on conflict (queue_name, consumer_name) do update set last_tick_id = excluded.last_tick_id, updated_at = now()",
        &[&queue, &consumer, &batch.cur_tick_id],
    )
    .await
    .map_err(|e| PgqError::sql("recording the applied tick", e))?;
    Ok(())
}
