//! What a branch worker does beyond a leaf's: it keeps a full copy of the queue so other
//! nodes can read from it. Every event of a batch is copied into the branch's own queue
//! with its original id (in the batch's target transaction), and after the commit the
//! branch gets the provider's tick (same id, same time) through `pgq.ticker(queue, id,
//! time, event_seq)`. As in Python Londiste, the tick is made in its own transaction after
//! the commit (its snapshot must see the copied events), and a missing tick is made up
//! when the batch is found applied after a crash.

use crate::error::{LondisteError, Result};
use std::time::SystemTime;
use strata_pgclient::Client;
use strata_pgq::api::Batch;
use strata_pgq::event::Event;

/// The branch queue's newest tick and its event sequence value.
pub(crate) async fn last_tick(dst: &Client, queue: &str) -> Result<(i64, i64)> {
    let row = dst
        .query_opt(
            "select t.tick_id, t.tick_event_seq from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
             where q.queue_name = $1 order by t.tick_id desc limit 1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the branch queue's last tick", e))?
        .ok_or_else(|| LondisteError::State(format!("the branch has no tick for queue {queue}")))?;
    Ok((row.get(0), row.get(1)))
}

/// Copies `events` into the branch queue's current event table (ids kept), inside the
/// caller's transaction, in one statement.
pub(crate) async fn copy_events(dst: &Client, queue: &str, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let table: String = dst
        .query_one("select pgq.current_event_table($1)", &[&queue])
        .await
        .map_err(|e| LondisteError::sql("finding the branch queue's event table", e))?
        .get(0);
    let (schema, name) = table.split_once('.').unwrap_or(("pgq", table.as_str()));
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let times: Vec<SystemTime> = events.iter().map(|e| e.time).collect();
    let col =
        |f: fn(&Event) -> &Option<String>| events.iter().map(|e| f(e).clone()).collect::<Vec<_>>();
    let (types, data) = (col(|e| &e.ev_type), col(|e| &e.data));
    let (x1, x2, x3, x4) = (
        col(|e| &e.extra1),
        col(|e| &e.extra2),
        col(|e| &e.extra3),
        col(|e| &e.extra4),
    );
    dst.execute(
        &format!(
            "insert into {} (ev_id, ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4) \
             select * from unnest($1::int8[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])",
            strata_pgclient::quote_qualified(schema, name)
        ),
        &[&ids, &times, &types, &data, &x1, &x2, &x3, &x4],
    )
    .await
    .map_err(|e| LondisteError::sql("copying events into the branch queue", e))?;
    Ok(())
}

/// Makes the branch's tick for `batch` (autocommit: outside any transaction).
pub(crate) async fn create_tick(
    dst: &Client,
    queue: &str,
    batch: &Batch,
    event_seq: i64,
) -> Result<()> {
    // The announcement wakes the branch's own subscribers at once (delivered when the
    // tick commits), as strata's ticker does on a root.
    dst.query_one(
        "select pgq.ticker($1, $2, $3, $4), pg_notify($5, $1)",
        &[
            &queue,
            &batch.cur_tick_id,
            &batch.cur_tick_time,
            &event_seq,
            &strata_pgq::ticker::db::TICK_CHANNEL,
        ],
    )
    .await
    .map_err(|e| {
        LondisteError::sql(
            format!("creating tick {} on the branch", batch.cur_tick_id),
            e,
        )
    })?;
    Ok(())
}

/// After a crash: the batch is applied; make its tick if the crash came before it.
pub(crate) async fn ensure_tick(
    dst: &Client,
    queue: &str,
    batch: &Batch,
    event_seq: i64,
) -> Result<()> {
    let (last, _) = last_tick(dst, queue).await?;
    if last == batch.cur_tick_id {
        return Ok(());
    }
    if last != batch.prev_tick_id {
        return Err(LondisteError::State(format!(
            "branch queue's last tick is {last}, expected {} or {}",
            batch.prev_tick_id, batch.cur_tick_id
        )));
    }
    create_tick(dst, queue, batch, event_seq).await
}
