//! Cooperative consumers: several processes share one consumer's stream, each working
//! on its own batch, and a batch held by a subconsumer that went silent is taken over.
//! pgq_coop does this upstream but is not packaged, so strata ships its own SQL
//! (`coop.sql`, schema `strata_pgq`), designed afresh on pgq's public tables: see the
//! comment at its top and docs/pgq.md.

use crate::api::{check_name, Batch, CoopBatch};
use crate::{PgqError, Result};
use std::time::Duration;
use tokio_postgres::Client;

/// The functions and table, installed by [`setup`] (idempotent).
pub const SQL: &str = include_str!("coop.sql");

/// Installs (or updates) strata's cooperative-consumer functions in the queue's database.
pub async fn setup(client: &Client) -> Result<()> {
    client
        .batch_execute(SQL)
        .await
        .map_err(|e| PgqError::sql("installing strata_pgq cooperative consumer functions", e))
}

pub use crate::coop_orphans::forget_orphans;

/// Registers subconsumer `sub` of `consumer` (which must be registered); `false` when it
/// was registered already.
pub async fn register(client: &Client, queue: &str, consumer: &str, sub: &str) -> Result<bool> {
    check_name("queue", queue)?;
    check_name("consumer", consumer)?;
    check_name("subconsumer", sub)?;
    let row = client
        .query_one(
            "select strata_pgq.coop_register($1, $2, $3)",
            &[&queue, &consumer, &sub],
        )
        .await
        .map_err(|e| PgqError::sql(format!("registering {consumer}.{sub} on {queue}"), e))?;
    Ok(row.get::<_, i32>(0) == 1)
}

/// Unregisters a subconsumer; refused while it holds a batch.
pub async fn unregister(client: &Client, queue: &str, consumer: &str, sub: &str) -> Result<bool> {
    let row = client
        .query_one(
            "select strata_pgq.coop_unregister($1, $2, $3)",
            &[&queue, &consumer, &sub],
        )
        .await
        .map_err(|e| PgqError::sql(format!("unregistering {consumer}.{sub} from {queue}"), e))?;
    Ok(row.get::<_, i32>(0) == 1)
}

/// The subconsumer's batch: its open one, one taken over from a subconsumer silent for
/// `dead_interval`, or the main consumer's next one; `None` when there is nothing. The
/// batch carries [`crate::api::CoopBatch`] for the exactly-once records.
pub async fn next_batch(
    client: &Client,
    queue: &str,
    consumer: &str,
    sub: &str,
    dead_interval: Option<Duration>,
) -> Result<Option<Batch>> {
    let dead = dead_interval.map(|d| d.as_secs_f64());
    let row = client
        .query_one(
            "select batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time, cur_tick_event_seq, prev_tick_event_seq, finished_below \
             from strata_pgq.coop_next_batch($1, $2, $3, $4::float8 * interval '1 second')",
            &[&queue, &consumer, &sub, &dead],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) {
                PgqError::BadInput(format!(
                    "the cooperative consumer functions in the database of queue {queue} are older than this strata: \
                     install them again (strata pgq register {queue} {consumer} --sub {sub}, or strata_pgq::coop::setup)"
                ))
            } else {
                PgqError::sql(format!("next batch of {consumer}.{sub} on {queue}"), e)
            }
        })?;
    Ok(Batch::from_row(&row).map(|mut batch| {
        batch.coop = Some(CoopBatch {
            main_consumer: consumer.to_string(),
            finished_below: row.get::<_, Option<i64>>(7).unwrap_or(0),
        });
        batch
    }))
}

/// Finishes a subconsumer's batch (and drops its position so it holds back no rotation).
/// A batch that another subconsumer took over (this one was silent too long) is an error:
/// its events may be applied twice, and the caller must know.
pub async fn finish_batch(client: &Client, batch_id: i64) -> Result<()> {
    let finished: i32 = client
        .query_one("select strata_pgq.coop_finish_batch($1)", &[&batch_id])
        .await
        .map_err(|e| PgqError::sql(format!("finishing batch {batch_id}"), e))?
        .get(0);
    if finished == 0 {
        return Err(PgqError::TakenOver(batch_id));
    }
    Ok(())
}
