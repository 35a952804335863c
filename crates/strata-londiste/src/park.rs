//! Parked events: events a node does not apply, each on an operator's decision (`park-event`)
//! or by its worker's configuration (`park_unknown_events`), recorded with every field of
//! the event, its batch and tick, the reason, who and when, in
//! `strata_londiste.parked_events` of the node's database (created on first use). The
//! worker skips exactly those events (id and transaction) and applies the rest of their
//! batch; nothing is skipped without a row here.

use crate::admin;
use crate::config::NodeConfig;
use crate::error::{describe_db, LondisteError, Result};
use crate::node;
use serde::Serialize;
use std::collections::HashMap;
use strata_pgq::event::Event;
use tokio_postgres::GenericClient;

/// The table, for messages and docs.
pub const TABLE: &str = "strata_londiste.parked_events";

const CREATE: &str = "\
create schema if not exists strata_londiste;
create table if not exists strata_londiste.parked_events (
    queue_name    text        not null,
    consumer_name text        not null,
    batch_id      bigint,
    prev_tick_id  bigint      not null,
    tick_id       bigint      not null,
    ev_id         bigint      not null,
    ev_time       timestamptz,
    ev_txid       bigint      not null,
    ev_retry      int4,
    ev_type       text,
    ev_data       text,
    ev_extra1     text,
    ev_extra2     text,
    ev_extra3     text,
    ev_extra4     text,
    reason        text        not null,
    parked_by     text        not null default session_user,
    parked_at     timestamptz not null default now(),
    primary key (queue_name, ev_id, ev_txid)
);
create index if not exists parked_events_tick on strata_londiste.parked_events (queue_name, tick_id);";

/// Creates the table when it is missing.
pub async fn ensure_table(client: &impl GenericClient) -> Result<()> {
    if !table_exists(client).await? {
        client
            .batch_execute(CREATE)
            .await
            .map_err(|e| LondisteError::sql(format!("creating {TABLE}"), e))?;
    }
    Ok(())
}

/// Where a parked event was met: the consumer and its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    /// The consumer whose batch held the event.
    pub consumer: String,
    /// The batch.
    pub batch_id: i64,
    /// The tick the batch starts after.
    pub prev_tick_id: i64,
    /// The tick the batch ends at: with the event id, what a parked event is keyed by.
    pub tick_id: i64,
}

/// Records `ev` as parked (a second park of the same event keeps the first row).
pub async fn park(
    client: &impl GenericClient,
    queue: &str,
    batch: &BatchRef,
    ev: &Event,
    reason: &str,
    parked_by: Option<&str>,
) -> Result<()> {
    ensure_table(client).await?;
    let ev_time = chrono::DateTime::<chrono::Utc>::from(ev.time);
    client
        .execute(
            "insert into strata_londiste.parked_events (queue_name, consumer_name, batch_id, prev_tick_id, tick_id, \
                ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4, \
                reason, parked_by) \
             values ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                coalesce($17, session_user::text)) \
             on conflict do nothing",
            &[
                &queue,
                &batch.consumer,
                &batch.batch_id,
                &batch.prev_tick_id,
                &batch.tick_id,
                &ev.id,
                &ev_time.to_rfc3339(),
                &ev.txid,
                &ev.retry,
                &ev.ev_type,
                &ev.data,
                &ev.extra1,
                &ev.extra2,
                &ev.extra3,
                &ev.extra4,
                &reason,
                &parked_by,
            ],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("parking event {} in {TABLE}", ev.id), e))?;
    Ok(())
}

/// Whether the table exists.
async fn table_exists(client: &impl GenericClient) -> Result<bool> {
    Ok(client
        .query_one(
            "select to_regclass('strata_londiste.parked_events') is not null",
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql("looking for the parked events table", e))?
        .get(0))
}

/// The parked events a batch after tick `prev_tick_id` may hold: event id to transaction.
/// One indexed query per batch once the table exists; until then only a catalog lookup
/// (`exists` remembers it between batches).
pub async fn for_batch(
    client: &impl GenericClient,
    queue: &str,
    prev_tick_id: i64,
    exists: &mut bool,
) -> Result<HashMap<i64, i64>> {
    if !*exists {
        *exists = table_exists(client).await?;
        if !*exists {
            return Ok(HashMap::new());
        }
    }
    let rows = client
        .query(
            "select ev_id, ev_txid from strata_londiste.parked_events where queue_name = $1 and tick_id > $2",
            &[&queue, &prev_tick_id],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the parked events", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// One parked event as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parked {
    /// The event's id.
    pub ev_id: i64,
    /// The event's type.
    pub ev_type: Option<String>,
    /// The table it would have changed.
    pub table: Option<String>,
    /// The end tick of its batch.
    pub tick_id: i64,
    /// Why it was parked (the operator's words, or the worker's).
    pub reason: String,
    /// Who parked it: an operator (`local:<user>@<host>`) or the worker.
    pub parked_by: String,
    /// RFC 3339.
    pub parked_at: String,
}

/// How many events are parked on a node, and the latest few.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParkedSummary {
    /// Every event parked on the node.
    pub count: i64,
    /// The newest few, newest first.
    pub latest: Vec<Parked>,
}

/// The node's parked events of `queue`: their count and the `latest` most recent.
pub async fn summary(
    client: &impl GenericClient,
    queue: &str,
    latest: i64,
) -> Result<ParkedSummary> {
    if !table_exists(client).await? {
        return Ok(ParkedSummary::default());
    }
    let count: i64 = client
        .query_one(
            "select count(*) from strata_londiste.parked_events where queue_name = $1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("counting parked events", e))?
        .get(0);
    let rows = client
        .query(
            "select ev_id, ev_type, ev_extra1, tick_id, reason, parked_by, \
                to_char(parked_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             from strata_londiste.parked_events where queue_name = $1 \
             order by parked_at desc, ev_id desc limit $2",
            &[&queue, &latest],
        )
        .await
        .map_err(|e| LondisteError::sql("reading parked events", e))?;
    Ok(ParkedSummary {
        count,
        latest: rows
            .iter()
            .map(|r| Parked {
                ev_id: r.get(0),
                ev_type: r.get(1),
                table: r.get(2),
                tick_id: r.get(3),
                reason: r.get(4),
                parked_by: r.get(5),
                parked_at: r.get(6),
            })
            .collect(),
    })
}

/// What `park-event` parked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkReport {
    /// The event's id.
    pub ev_id: i64,
    /// The event's type.
    pub ev_type: Option<String>,
    /// The table it would have changed.
    pub table: Option<String>,
    /// The batch it was in.
    pub batch_id: i64,
    /// The end tick of that batch.
    pub tick_id: i64,
    /// The worker that now applies the rest of the batch without it.
    pub consumer: String,
}

/// `park-event`: records event `ev_id` of the worker's open batch on its provider (or of
/// batch `batch_id`) as parked on this node, with `reason`, so the worker applies the rest
/// of the batch without it; wakes the worker (NOTIFY) so it retries at once. Refused when
/// the event is not in that batch.
pub async fn park_event(
    cf: &NodeConfig,
    ev_id: i64,
    batch_id: Option<i64>,
    reason: &str,
) -> Result<ParkReport> {
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let local = describe_db(info.node_name.as_deref(), &cf.db);
    let queue = cf.queue_name.as_str();
    let consumer = info
        .worker_name
        .clone()
        .unwrap_or_else(|| cf.job_name.clone());
    let location = info.provider_location.clone().ok_or_else(|| {
        LondisteError::BadInput("this node has no provider: only subscribers apply events".into())
    })?;
    let provider = admin::connect(&location, "provider").await?;
    let at = describe_db(info.provider_node.as_deref(), &location);
    let batch_id = match batch_id {
        Some(b) => b,
        None => {
            let row = provider
                .query_opt(
                    "select current_batch from pgq.get_consumer_info($1, $2)",
                    &[&queue, &consumer],
                )
                .await
                .map_err(|e| LondisteError::sql("reading the worker's open batch", e).on(&at))?;
            row.and_then(|r| r.get::<_, Option<i64>>(0))
                .ok_or_else(|| {
                    LondisteError::BadInput(format!(
                        "worker {consumer} has no open batch on its provider: give --batch"
                    ))
                })?
        }
    };
    let ticks = provider
        .query_opt(
            "select prev_tick_id, tick_id from pgq.get_batch_info($1)",
            &[&batch_id],
        )
        .await
        .map_err(|e| {
            LondisteError::BadInput(format!(
                "batch {batch_id} is not open on the provider: {}",
                strata_pgclient::error_message(&e)
            ))
        })?
        .ok_or_else(|| LondisteError::BadInput(format!("batch {batch_id} is not open")))?;
    let (prev_tick_id, tick_id): (Option<i64>, Option<i64>) = (ticks.get(0), ticks.get(1));
    let (Some(prev_tick_id), Some(tick_id)) = (prev_tick_id, tick_id) else {
        return Err(LondisteError::BadInput(format!(
            "batch {batch_id} is not open"
        )));
    };
    let row = provider
        .query_opt(
            "select ev_id, ev_time::text, ev_txid, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 \
             from pgq.get_batch_events($1) where ev_id = $2",
            &[&batch_id, &ev_id],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading batch {batch_id}"), e).on(&at))?
        .ok_or_else(|| {
            LondisteError::BadInput(format!(
                "event {ev_id} is not in batch {batch_id} (ticks {prev_tick_id}..{tick_id}) of worker {consumer}"
            ))
        })?;
    let time: Option<String> = row.get(1);
    let ev = Event {
        id: row.get(0),
        time: time
            .and_then(|t| chrono::DateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f%#z").ok())
            .map(std::time::SystemTime::from)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH),
        txid: row.get(2),
        retry: row.get(3),
        ev_type: row.get(4),
        data: row.get(5),
        extra1: row.get(6),
        extra2: row.get(7),
        extra3: row.get(8),
        extra4: row.get(9),
    };
    let batch = BatchRef {
        consumer: consumer.clone(),
        batch_id,
        prev_tick_id,
        tick_id,
    };
    park(&db, queue, &batch, &ev, reason, None)
        .await
        .map_err(|e| e.on(&local))?;
    node::notify_worker(&db, queue)
        .await
        .map_err(|e| e.on(&local))?;
    Ok(ParkReport {
        ev_id,
        ev_type: ev.ev_type,
        table: ev.extra1,
        batch_id,
        tick_id,
        consumer,
    })
}
