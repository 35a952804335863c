//! Thin, typed wrappers over pgq's SQL API (the Debian `pgq` 3.5 extension). Every value
//! goes as a bound parameter; intervals travel as seconds (`float8`) and are converted on
//! the server, so no interval type is needed on this side.

use crate::error::{PgqError, Result};
use serde::Serialize;
use std::time::{Duration, SystemTime};
use tokio_postgres::Client;

/// Rejects names pgq cannot hold or that are surely a mistake (empty, NUL, huge):
/// bad input is reported before any SQL runs.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.contains('\0') {
        return Err(PgqError::BadInput(format!(
            "invalid {kind} name {name:?}: it must be 1 to 200 bytes without NUL"
        )));
    }
    Ok(())
}

/// Whether the database has the pgq schema with its ticker function (what pgqd checks
/// before ticking a database).
pub async fn has_pgq(client: &Client) -> Result<bool> {
    let row = client
        .query_one(
            "select exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = 'pgq' and p.proname = 'ticker')",
            &[],
        )
        .await
        .map_err(|e| PgqError::sql("looking for the pgq schema", e))?;
    Ok(row.get(0))
}

/// Creates a queue; `false` when it already existed.
pub async fn create_queue(client: &Client, queue: &str) -> Result<bool> {
    check_name("queue", queue)?;
    let row = client
        .query_one("select pgq.create_queue($1)", &[&queue])
        .await
        .map_err(|e| PgqError::sql(format!("creating queue {queue}"), e))?;
    Ok(row.get::<_, i32>(0) == 1)
}

/// Drops a queue; without `force` pgq refuses while consumers are registered. With
/// `force`, pgq unregisters them, cooperative subconsumers included, and strata's rows for
/// those ([`crate::coop_orphans`]) are deleted too: run it in a transaction to make that one step.
pub async fn drop_queue(client: &Client, queue: &str, force: bool) -> Result<()> {
    check_name("queue", queue)?;
    client
        .query_one("select pgq.drop_queue($1, $2)", &[&queue, &force])
        .await
        .map_err(|e| PgqError::sql(format!("dropping queue {queue}"), e))?;
    crate::coop_orphans::forget_orphans(client).await?;
    Ok(())
}

/// The queue settings `pgq.set_queue_config` accepts (without the `queue_` prefix).
pub const QUEUE_PARAMS: &[&str] = &[
    "ticker_max_count",
    "ticker_max_lag",
    "ticker_idle_period",
    "ticker_paused",
    "rotation_period",
    "external_ticker",
];

/// Changes one queue setting (see [`QUEUE_PARAMS`]); the value is PostgreSQL text
/// (`'2 seconds'`, `500`, `true`).
pub async fn set_queue_config(
    client: &Client,
    queue: &str,
    param: &str,
    value: &str,
) -> Result<()> {
    check_name("queue", queue)?;
    let param = param.strip_prefix("queue_").unwrap_or(param);
    if !QUEUE_PARAMS.contains(&param) {
        return Err(PgqError::BadInput(format!(
            "unknown queue setting {param:?}: use one of {}",
            QUEUE_PARAMS.join(", ")
        )));
    }
    client
        .query_one(
            "select pgq.set_queue_config($1, $2, $3)",
            &[&queue, &param, &value],
        )
        .await
        .map_err(|e| PgqError::sql(format!("setting {param} of queue {queue}"), e))?;
    Ok(())
}

/// Registers a consumer at the newest tick; `false` when it was registered already.
pub async fn register_consumer(client: &Client, queue: &str, consumer: &str) -> Result<bool> {
    check_name("queue", queue)?;
    check_name("consumer", consumer)?;
    let row = client
        .query_one("select pgq.register_consumer($1, $2)", &[&queue, &consumer])
        .await
        .map_err(|e| PgqError::sql(format!("registering {consumer} on {queue}"), e))?;
    Ok(row.get::<_, i32>(0) == 1)
}

/// Unregisters a consumer (its retry events go too); `false` when it was not registered.
pub async fn unregister_consumer(client: &Client, queue: &str, consumer: &str) -> Result<bool> {
    check_name("queue", queue)?;
    check_name("consumer", consumer)?;
    let registered = client
        .query_one(
            "select exists (select 1 from pgq.get_consumer_info() where queue_name = $1 and consumer_name = $2)",
            &[&queue, &consumer],
        )
        .await
        .map_err(|e| PgqError::sql(format!("looking up {consumer} on {queue}"), e))?
        .get::<_, bool>(0);
    if !registered {
        return Ok(false);
    }
    client
        .query_one(
            "select pgq.unregister_consumer($1, $2)",
            &[&queue, &consumer],
        )
        .await
        .map_err(|e| PgqError::sql(format!("unregistering {consumer} from {queue}"), e))?;
    // pgq drops the subscriptions of a main consumer's subconsumers with it.
    crate::coop_orphans::forget_orphans(client).await?;
    Ok(true)
}

/// Inserts one event in the caller's transaction; returns its id.
pub async fn insert_event(client: &Client, queue: &str, ev_type: &str, data: &str) -> Result<i64> {
    let row = client
        .query_one(
            "select pgq.insert_event($1, $2, $3)",
            &[&queue, &ev_type, &data],
        )
        .await
        .map_err(|e| PgqError::sql(format!("inserting into queue {queue}"), e))?;
    Ok(row.get(0))
}

/// How big and old a batch must be before `next_batch` hands it out
/// (`pgq.next_batch_custom`); all `None` is plain `pgq.next_batch`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRules {
    /// Only take ticks at least this old (a delayed consumer).
    pub min_lag: Option<Duration>,
    /// Merge ticks until the batch holds at least this many events...
    pub min_count: Option<i32>,
    /// ...or spans at least this long.
    pub min_interval: Option<Duration>,
}

/// An open batch: the events between two ticks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batch {
    /// The id pgq's batch functions take.
    pub batch_id: i64,
    /// The tick closing the batch: the consumer's position after `finish_batch`.
    pub cur_tick_id: i64,
    /// The tick opening the batch: the consumer's position before it.
    pub prev_tick_id: i64,
    /// When the closing tick was made.
    #[serde(skip)]
    pub cur_tick_time: SystemTime,
    /// When the opening tick was made.
    #[serde(skip)]
    pub prev_tick_time: SystemTime,
    /// The event sequence at the closing tick (a hint of the batch size, not exact).
    pub cur_tick_event_seq: i64,
    /// The event sequence at the opening tick.
    pub prev_tick_event_seq: i64,
    /// Set for a cooperative subconsumer's batch: what [`crate::completed`] needs to
    /// record it where a sibling taking it over finds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coop: Option<CoopBatch>,
}

/// What a cooperative subconsumer's batch carries besides its ticks. Subconsumers finish
/// batches out of order and a batch can move to a sibling (take-over), so "applied" is
/// recorded per tick range under the main consumer, not as one position per consumer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoopBatch {
    /// The main consumer whose stream the batch belongs to: every subconsumer records
    /// its batches under this name, so a take-over sees what the old holder applied.
    pub main_consumer: String,
    /// Every batch of the main consumer's stream that ends at or below this tick was
    /// finished on the queue's database and is never handed out again (the lowest start
    /// of a batch held by a subconsumer, or the main position when none is held): the
    /// records of those batches can go.
    pub finished_below: i64,
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// The consumer's next batch, or `None` when there is nothing new (sleep, then ask
/// again). Asking again before `finish_batch` returns the same batch.
pub async fn next_batch(
    client: &Client,
    queue: &str,
    consumer: &str,
    rules: &BatchRules,
) -> Result<Option<Batch>> {
    let min_lag = secs(rules.min_lag);
    let min_interval = secs(rules.min_interval);
    let row = client
        .query_one(
            "select batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time, cur_tick_event_seq, prev_tick_event_seq \
             from pgq.next_batch_custom($1, $2, $3::float8 * interval '1 second', $4::int4, $5::float8 * interval '1 second')",
            &[&queue, &consumer, &min_lag, &rules.min_count, &min_interval],
        )
        .await
        .map_err(|e| PgqError::sql(format!("next batch of {consumer} on {queue}"), e))?;
    Ok(Batch::from_row(&row))
}

impl Batch {
    /// The batch a row of `next_batch_custom` or `coop_next_batch` names (batch id, current
    /// and previous tick id, time and event sequence, in that order), or `None` when it
    /// names none (no new tick).
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> Option<Batch> {
        let batch_id = row.get::<_, Option<i64>>(0)?;
        Some(Batch {
            batch_id,
            cur_tick_id: row.get(1),
            prev_tick_id: row.get(2),
            cur_tick_time: row.get(3),
            prev_tick_time: row.get(4),
            cur_tick_event_seq: row.get(5),
            prev_tick_event_seq: row.get(6),
            coop: None,
        })
    }
}

/// Puts an event into the retry queue, to come back in a batch after `after` (counted
/// from the call, to the microsecond: pgq's integer variant would round a sub-second
/// delay down to whole seconds, from the start of the transaction).
pub async fn event_retry(
    client: &Client,
    batch_id: i64,
    ev_id: i64,
    after: Duration,
) -> Result<()> {
    // Capped (at about 31,000 years) where a timestamp still holds the result.
    let secs = after.as_secs_f64().min(1e12);
    client
        .query_one(
            "select pgq.event_retry($1, $2, clock_timestamp() + $3::float8 * interval '1 second')",
            &[&batch_id, &ev_id, &secs],
        )
        .await
        .map_err(|e| PgqError::sql(format!("retrying event {ev_id} of batch {batch_id}"), e))?;
    Ok(())
}

/// Closes a batch: the consumer's position moves to its end.
pub async fn finish_batch(client: &Client, batch_id: i64) -> Result<()> {
    client
        .query_one("select pgq.finish_batch($1)", &[&batch_id])
        .await
        .map_err(|e| PgqError::sql(format!("finishing batch {batch_id}"), e))?;
    Ok(())
}

/// One queue as `pgq.get_queue_info` reports it, with intervals in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueInfo {
    /// The queue.
    pub queue_name: String,
    /// Event tables rotated through (3 by default).
    pub ntables: i32,
    /// The event table new events go to (0-based).
    pub cur_table: i32,
    /// How often the tables rotate, in seconds.
    pub rotation_period_secs: Option<f64>,
    /// Seconds since the last rotation.
    pub switch_age_secs: Option<f64>,
    /// Whether step 2 of the last rotation is still to run.
    pub rotation_pending_step2: bool,
    /// Ticks come from outside (a cascaded branch), not from a ticker.
    pub external_ticker: bool,
    /// The ticker skips this queue.
    pub ticker_paused: bool,
    /// A tick is due after this many events...
    pub ticker_max_count: i32,
    /// ...or after this many seconds with new events.
    pub ticker_max_lag_secs: f64,
    /// Longest gap between ticks of an idle queue.
    pub ticker_idle_period_secs: f64,
    /// Seconds since the newest tick.
    pub ticker_lag_secs: Option<f64>,
    /// Event rate between the last ticks, as pgq computes it.
    pub ev_per_sec: Option<f64>,
    /// Events since the newest tick.
    pub ev_new: Option<i64>,
    /// The newest tick.
    pub last_tick_id: Option<i64>,
}

/// Every queue (or just `queue`).
pub async fn queue_info(client: &Client, queue: Option<&str>) -> Result<Vec<QueueInfo>> {
    let rows = client
        .query(
            "select i.queue_name, i.queue_ntables, i.queue_cur_table, \
                    extract(epoch from i.queue_rotation_period)::float8, \
                    extract(epoch from now() - i.queue_switch_time)::float8, \
                    q.queue_switch_step2 is null, \
                    i.queue_external_ticker, i.queue_ticker_paused, i.queue_ticker_max_count, \
                    extract(epoch from i.queue_ticker_max_lag)::float8, \
                    extract(epoch from i.queue_ticker_idle_period)::float8, \
                    extract(epoch from i.ticker_lag)::float8, i.ev_per_sec, i.ev_new, i.last_tick_id \
             from pgq.get_queue_info() i join pgq.queue q using (queue_name) \
             where $1::text is null or i.queue_name = $1 order by 1",
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql("reading queue info", e))?;
    Ok(rows
        .iter()
        .map(|r| QueueInfo {
            queue_name: r.get(0),
            ntables: r.get(1),
            cur_table: r.get(2),
            rotation_period_secs: r.get(3),
            switch_age_secs: r.get(4),
            rotation_pending_step2: r.get(5),
            external_ticker: r.get(6),
            ticker_paused: r.get(7),
            ticker_max_count: r.get(8),
            ticker_max_lag_secs: r.get(9),
            ticker_idle_period_secs: r.get(10),
            ticker_lag_secs: r.get(11),
            ev_per_sec: r.get(12),
            ev_new: r.get(13),
            last_tick_id: r.get(14),
        })
        .collect())
}

/// One consumer as `pgq.get_consumer_info` reports it, with intervals in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerInfo {
    /// The queue.
    pub queue_name: String,
    /// The consumer (`main.sub` for a cooperative subconsumer).
    pub consumer_name: String,
    /// Seconds since the last finished tick was made (includes ticker delay).
    pub lag_secs: Option<f64>,
    /// Seconds since the consumer last asked for or finished a batch.
    pub last_seen_secs: Option<f64>,
    /// The consumer's position (NULL for an idle cooperative subconsumer).
    pub last_tick: Option<i64>,
    /// The open batch, if any.
    pub current_batch: Option<i64>,
    /// The tick closing the open batch.
    pub next_tick: Option<i64>,
    /// Events after the consumer's position (pgq's estimate from its event sequence).
    pub pending_events: Option<i64>,
}

/// Every consumer (optionally of one queue).
pub async fn consumer_info(client: &Client, queue: Option<&str>) -> Result<Vec<ConsumerInfo>> {
    let rows = client
        .query(
            "select queue_name, consumer_name, extract(epoch from lag)::float8, \
                    extract(epoch from last_seen)::float8, last_tick, current_batch, next_tick, pending_events \
             from pgq.get_consumer_info($1::text, null::text) order by 1, 2",
            &[&queue],
        )
        .await
        .map_err(|e| PgqError::sql("reading consumer info", e))?;
    Ok(rows
        .iter()
        .map(|r| ConsumerInfo {
            queue_name: r.get(0),
            consumer_name: r.get(1),
            lag_secs: r.get(2),
            last_seen_secs: r.get(3),
            last_tick: r.get(4),
            current_batch: r.get(5),
            next_tick: r.get(6),
            pending_events: r.get(7),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_sql() {
        assert!(check_name("queue", "q.1 with \"quotes\"").is_ok());
        assert!(check_name("queue", "").unwrap_err().is_bad_input());
        assert!(check_name("queue", "a\0b").is_err());
        assert!(check_name("queue", &"x".repeat(201)).is_err());
    }

    #[test]
    fn batch_rules_default_to_plain_next_batch() {
        let rules = BatchRules::default();
        assert_eq!(
            (
                secs(rules.min_lag),
                rules.min_count,
                secs(rules.min_interval)
            ),
            (None, None, None)
        );
        assert_eq!(secs(Some(Duration::from_millis(1500))), Some(1.5));
    }
}
