//! Exactly-once application for consumers that write into another database: a batch is
//! recorded as applied in the target's own transaction, next to the rows it produced. A
//! batch found recorded was applied before a crash that came between the target's commit
//! and `finish_batch` on the queue's database (or by a sibling that took it over), so it
//! is skipped and just finished. (pgq_node does the same for its serial consumers with
//! `set_consumer_completed`/`is_batch_done`; these tables are strata's own so a plain
//! consumer needs no cascade setup.)
//!
//! Two records, chosen by the batch:
//!
//! - A plain consumer takes its batches in tick order, one at a time, so one position per
//!   (queue, consumer) says it all: `completed_tick.last_tick_id`, the end tick of the
//!   last applied batch. Every batch ending at or below it is done.
//! - Cooperative subconsumers ([`crate::coop`]) finish batches out of order, and a batch
//!   may move to a sibling (take-over) while its first holder is only slow, so one
//!   position would skip an earlier batch once a later one is recorded, and a record per
//!   subconsumer would let a take-over apply a batch twice. Their batches are recorded by
//!   tick range in `completed_batch`, under the **main** consumer, where every sibling
//!   looks. `completed_tick.last_tick_id` then holds the stream's `finished_below` (see
//!   [`crate::api::CoopBatch`]): batches ending at or below it were finished on the
//!   queue's database, hence applied, and their range rows are deleted.

use crate::api::{Batch, CoopBatch};
use crate::{PgqError, Result};
use tokio_postgres::GenericClient;

/// The tables, in the target database: one row per (queue, consumer) in
/// `completed_tick`, and per applied but not yet forgotten batch of a cooperative
/// consumer in `completed_batch`.
pub const SETUP_SQL: &str = "create schema if not exists strata_pgq; \
create table if not exists strata_pgq.completed_tick (\
 queue_name text not null, consumer_name text not null, last_tick_id bigint not null, \
 updated_at timestamptz not null default now(), primary key (queue_name, consumer_name)); \
create table if not exists strata_pgq.completed_batch (\
 queue_name text not null, consumer_name text not null, \
 prev_tick_id bigint not null, cur_tick_id bigint not null, \
 applied boolean not null default false, updated_at timestamptz not null default now(), \
 primary key (queue_name, consumer_name, prev_tick_id, cur_tick_id))";

/// Creates strata's exactly-once tables in the target when they are missing.
pub async fn setup(target: &impl GenericClient) -> Result<()> {
    target
        .batch_execute(SETUP_SQL)
        .await
        .map_err(|e| PgqError::sql("creating strata_pgq.completed_tick and completed_batch", e))
}

/// Whether `batch` was already applied in the target. Call it inside the target
/// transaction that will apply the batch: it locks the batch's record, so two copies of
/// one consumer (or a subconsumer and the sibling that took its batch over) cannot both
/// apply it; the second waits for the first transaction and then finds the batch done.
/// For a cooperative subconsumer's batch, `consumer` must be the main consumer's name.
///
/// The transaction must be READ COMMITTED (PostgreSQL's default); any other isolation is
/// refused with [`PgqError::BadInput`]. The checks read what siblings committed after the
/// transaction began (a cooperative batch's `finished_below`, written by a sibling whose
/// `mark_done` may have deleted the range's row): an older snapshot would miss it and let
/// a slow holder apply a batch that its taker already applied.
pub async fn is_done(
    tx: &impl GenericClient,
    queue: &str,
    consumer: &str,
    batch: &Batch,
) -> Result<bool> {
    check_read_committed(tx).await?;
    match &batch.coop {
        None => serial_is_done(tx, queue, consumer, batch).await,
        Some(coop) => {
            check_main(consumer, coop)?;
            coop_is_done(tx, queue, consumer, batch).await
        }
    }
}

/// Records `batch` as applied, in the same target transaction as its rows.
pub async fn mark_done(
    tx: &impl GenericClient,
    queue: &str,
    consumer: &str,
    batch: &Batch,
) -> Result<()> {
    match &batch.coop {
        None => serial_mark_done(tx, queue, consumer, batch).await,
        Some(coop) => {
            check_main(consumer, coop)?;
            coop_mark_done(tx, queue, consumer, batch, coop.finished_below).await
        }
    }
}

async fn check_read_committed(tx: &impl GenericClient) -> Result<()> {
    let level: String = tx
        .query_one("select current_setting('transaction_isolation')", &[])
        .await
        .map_err(|e| PgqError::sql("reading the target transaction's isolation level", e))?
        .get(0);
    if level != "read committed" {
        return Err(PgqError::BadInput(format!(
            "completed::is_done needs a READ COMMITTED target transaction, not {level}: \
             an older snapshot can miss a sibling's record and apply a batch twice"
        )));
    }
    Ok(())
}

/// A subconsumer's records under its own name would be invisible to a sibling taking its
/// batch over: refused before anything is written.
fn check_main(consumer: &str, coop: &CoopBatch) -> Result<()> {
    if consumer != coop.main_consumer {
        return Err(PgqError::BadInput(format!(
            "the batch belongs to cooperative consumer {main}: record it under {main:?}, not {consumer:?} \
             (a sibling that takes a batch over looks under the main consumer)",
            main = coop.main_consumer
        )));
    }
    Ok(())
}

/// One position per consumer: before its first `mark_done` there is no row to lock, so
/// one is inserted (tick 0, below every batch): a second copy's insert then waits for the
/// first transaction and finds its row.
async fn serial_is_done(
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

async fn serial_mark_done(
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

/// A cooperative batch's record is its tick range. The range row is inserted (not yet
/// applied) and locked first, and only then is the stream's `finished_below` read: a
/// sibling that deleted this range's row (because the range was finished) committed a
/// `finished_below` covering it before the delete became visible, so one of the two
/// always says done. Nothing here locks anything shared by siblings working on other
/// batches, so they apply in parallel.
async fn coop_is_done(
    tx: &impl GenericClient,
    queue: &str,
    consumer: &str,
    batch: &Batch,
) -> Result<bool> {
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&queue, &consumer, &batch.prev_tick_id, &batch.cur_tick_id];
    tx.execute(
        "insert into strata_pgq.completed_batch (queue_name, consumer_name, prev_tick_id, cur_tick_id) \
         values ($1, $2, $3, $4) on conflict do nothing",
        &key,
    )
    .await
    .map_err(|e| PgqError::sql("locking the batch's row in strata_pgq.completed_batch", e))?;
    let applied = tx
        .query_opt(
            "select applied from strata_pgq.completed_batch \
             where queue_name = $1 and consumer_name = $2 and prev_tick_id = $3 and cur_tick_id = $4 for update",
            &key,
        )
        .await
        .map_err(|e| PgqError::sql("reading strata_pgq.completed_batch", e))?
        .is_some_and(|r| r.get::<_, bool>(0));
    if applied {
        return Ok(true);
    }
    let finished_below = tx
        .query_opt(
            "select last_tick_id from strata_pgq.completed_tick where queue_name = $1 and consumer_name = $2",
            &[&queue, &consumer],
        )
        .await
        .map_err(|e| PgqError::sql("reading strata_pgq.completed_tick", e))?
        .map_or(0, |r| r.get::<_, i64>(0));
    Ok(batch.cur_tick_id <= finished_below)
}

/// Marks the range applied, then forgets what the queue's database says is finished:
/// `finished_below` moves up (skipped when a sibling's open transaction holds the row:
/// it is moving it too, and waiting would chain the siblings' commits) and the range rows
/// it covers go (rows a sibling still holds are left for later). The consumer's
/// `completed_tick` row is inserted only while none is committed: an `insert … on
/// conflict` on an existing row would wait for a sibling's uncommitted update of it.
async fn coop_mark_done(
    tx: &impl GenericClient,
    queue: &str,
    consumer: &str,
    batch: &Batch,
    finished_below: i64,
) -> Result<()> {
    tx.execute(
        "insert into strata_pgq.completed_batch (queue_name, consumer_name, prev_tick_id, cur_tick_id, applied) \
         values ($1, $2, $3, $4, true) \
         on conflict (queue_name, consumer_name, prev_tick_id, cur_tick_id) do update set applied = true, updated_at = now()",
        &[&queue, &consumer, &batch.prev_tick_id, &batch.cur_tick_id],
    )
    .await
    .map_err(|e| PgqError::sql("recording the applied batch", e))?;
    let sql = |e| PgqError::sql("recording the finished batches of the stream", e);
    tx.execute(
        "insert into strata_pgq.completed_tick (queue_name, consumer_name, last_tick_id) \
         select $1, $2, 0 where not exists (select 1 from strata_pgq.completed_tick \
             where queue_name = $1 and consumer_name = $2) \
         on conflict (queue_name, consumer_name) do nothing",
        &[&queue, &consumer],
    )
    .await
    .map_err(sql)?;
    tx.execute(
        "with mine as (select ctid from strata_pgq.completed_tick \
             where queue_name = $1 and consumer_name = $2 and last_tick_id < $3 for update skip locked) \
         update strata_pgq.completed_tick t set last_tick_id = $3, updated_at = now() from mine where t.ctid = mine.ctid",
        &[&queue, &consumer, &finished_below],
    )
    .await
    .map_err(sql)?;
    // Ours if we moved it, else what a sibling committed: either way covered by a
    // `finished_below` that is visible no later than the deletes below.
    let recorded: i64 = tx
        .query_one(
            "select last_tick_id from strata_pgq.completed_tick where queue_name = $1 and consumer_name = $2",
            &[&queue, &consumer],
        )
        .await
        .map_err(sql)?
        .get(0);
    tx.execute(
        "delete from strata_pgq.completed_batch b using (select ctid from strata_pgq.completed_batch \
             where queue_name = $1 and consumer_name = $2 and cur_tick_id <= $3 for update skip locked) old \
         where b.ctid = old.ctid",
        &[&queue, &consumer, &recorded.min(finished_below)],
    )
    .await
    .map_err(sql)?;
    Ok(())
}
