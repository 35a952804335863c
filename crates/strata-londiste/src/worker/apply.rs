//! One batch, applied in one target transaction with its end tick, then finished on the
//! provider: parked events skipped, the local watermark published, old copy snapshots
//! forgotten. Each event is `event`'s.

use super::event::{apply_event, Handled};
use super::replay::Replayer;
use super::Role;
use crate::error::{describe_db, LondisteError, Result};
use crate::node::{self, TableInfo};
use crate::park;
use crate::snapshot::Snapshot;
use crate::sqlgen::SqlBuffer;
use crate::state::TableState;
use std::collections::HashMap;
use std::time::Instant;
use strata_pgclient::Client;
use strata_pgq::api::Batch;
use strata_pgq::event::Event;

impl Replayer {
    /// Applies the batch in one target transaction with its tick, then finishes it. When
    /// an event fails in the buffered mode (its statement went with others), the batch
    /// is applied again at once event by event, so the error names the event that failed.
    pub(super) async fn apply(
        &mut self,
        batch: &Batch,
        tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
    ) -> Result<()> {
        let mut event_failed = false;
        let first = self.apply_once(batch, tables, &mut event_failed).await;
        let result = match first {
            Err(_) if event_failed && !self.careful => {
                self.options.log.warn(format!(
                    "batch {} failed; applying it again event by event to name the event",
                    batch.batch_id
                ));
                self.careful = true;
                self.apply_once(batch, tables, &mut event_failed).await
            }
            other => other,
        };
        if result.is_ok() {
            self.careful = false;
        }
        result
    }

    /// The target's description in errors (`node X (db ...)`).
    fn target_at(&self) -> String {
        let node = Some(self.node_name.as_str()).filter(|n| !n.is_empty());
        describe_db(node, &self.cf.db)
    }
}

/// The error of event `ev` of `batch`: named (id, type, table), with the database.
fn event_error(batch: &Batch, ev: &Event, reason: String) -> LondisteError {
    {
        LondisteError::Event {
            event_id: ev.id,
            batch_id: batch.batch_id,
            tick_id: batch.cur_tick_id,
            ev_type: ev.ev_type.clone().unwrap_or_default(),
            table: ev.extra1.clone().filter(|t| !t.is_empty()),
            reason,
        }
    }
}

impl Replayer {
    /// Commits the target's transaction of `batch` (its events applied in it) and counts
    /// it; a crash after it can be injected for the tests.
    async fn commit_batch(
        &mut self,
        batch: &Batch,
        events: u64,
        statements: u64,
        flushes: u64,
    ) -> Result<()> {
        self.dst
            .batch_execute("commit")
            .await
            .map_err(|e| LondisteError::sql("committing the batch", e))?;
        self.stats.batches += 1;
        self.stats.events += events;
        self.stats.statements += statements;
        self.stats.round_trips += flushes;
        if self.role == Role::Main {
            self.options
                .metrics
                .batch_applied(events, batch.cur_tick_time);
        }
        self.options.log.debug_with(|| {
            format!(
                "batch {} (ticks {}..{}) applied: {events} events, {statements} statements",
                batch.batch_id, batch.prev_tick_id, batch.cur_tick_id
            )
        });
        if statements > 0 && self.role == Role::Main {
            self.committed_with_rows += 1;
            if Some(self.committed_with_rows) == self.options.crash_after_commit {
                return Err(LondisteError::State(
                    "crash injected after the target commit".into(),
                ));
            }
        }
        Ok(())
    }

    async fn apply_once(
        &mut self,
        batch: &Batch,
        tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
        event_failed: &mut bool,
    ) -> Result<()> {
        let queue = self.cf.queue_name.clone();
        let target_at = self.target_at();
        let dst = &self.dst;
        dst.batch_execute("begin")
            .await
            .map_err(|e| LondisteError::sql("starting the target transaction", e))?;
        let result = async {
            // Serialises workers of one consumer: a second copy waits here, then sees the
            // tick recorded and skips the batch.
            let row = dst
                .query_one(
                    "select last_tick_id from pgq_node.local_state where queue_name = $1 and consumer_name = $2 for update",
                    &[&queue, &self.name],
                )
                .await
                .map_err(|e| LondisteError::sql("locking the consumer's state", e))?;
            if row.get::<_, i64>(0) != batch.prev_tick_id {
                return Ok(None);
            }
            let parked = park::for_batch(dst, &queue, batch.prev_tick_id, &mut self.parked_table).await?;
            let batch_ref = || park::BatchRef {
                consumer: self.name.clone(),
                batch_id: batch.batch_id,
                prev_tick_id: batch.prev_tick_id,
                tick_id: batch.cur_tick_id,
            };
            let (count, bytes) = match self.careful {
                true => (1, 1),
                false => (self.cf.apply_batch_count, self.cf.apply_batch_bytes),
            };
            let mut buffer = SqlBuffer::new(count, bytes);
            let mut events = 0u64;
            let mut stream = self
                .consumer
                .events(batch)
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
            while let Some(chunk) = stream
                .next_chunk()
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?
            {
                if self.role == Role::Main {
                    self.options.health.alive("applying a batch");
                }
                for ev in &chunk {
                    events += 1;
                    if parked.get(&ev.id) == Some(&ev.txid) {
                        self.options.log.info(format!(
                            "event {} of batch {} ({}) skipped: parked in {}",
                            ev.id,
                            batch.batch_id,
                            ev.ev_type.as_deref().unwrap_or(""),
                            park::TABLE
                        ));
                        continue;
                    }
                    match apply_event(dst, &self.role, &queue, ev, tables, &mut buffer).await {
                        Ok(Handled::Done) => {}
                        Ok(Handled::Unknown) if self.cf.park_unknown_events => {
                            let ev_type = ev.ev_type.as_deref().unwrap_or("");
                            let reason = format!("unknown event type {ev_type:?} (park_unknown_events)");
                            let by = format!("worker {}", self.cf.job_name);
                            park::park(dst, &queue, &batch_ref(), ev, &reason, Some(&by)).await?;
                            self.parked_table = true;
                            self.options.metrics.event_parked();
                            self.options.log.warn(format!(
                                "event {} of batch {} parked: {reason}",
                                ev.id, batch.batch_id
                            ));
                        }
                        Ok(Handled::Unknown) => {
                            *event_failed = true;
                            let ev_type = ev.ev_type.as_deref().unwrap_or("");
                            return Err(event_error(batch, ev, format!(
                                "unknown event type {ev_type:?} on {target_at} (park it: park-event {}, or set park_unknown_events)",
                                ev.id
                            )));
                        }
                        Err(e) => {
                            *event_failed = true;
                            if !self.careful {
                                return Err(e);
                            }
                            let e = e.on(&target_at);
                            return Err(event_error(batch, ev, e.to_string()));
                        }
                    }
                }
                if self.branch {
                    crate::branch::copy_events(dst, &queue, &chunk).await?;
                    if let Some(max) = chunk.iter().map(|e| e.id).max() {
                        self.event_seq = self.event_seq.max(max);
                    }
                }
            }
            stream
                .close()
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
            if let Err(e) = buffer.flush(dst).await {
                *event_failed = true;
                return Err(LondisteError::sql("applying the batch", e));
            }
            if self.role == Role::Main {
                forget_old_snapshots(dst, self.consumer.client(), &queue, batch, tables)
                    .await
                    .map_err(|e| e.on(&self.provider_at))?;
            }
            node::set_completed(dst, &queue, &self.name, batch.cur_tick_id).await?;
            Ok(Some((events, buffer.statements, buffer.flushes)))
        }
        .await;
        match result {
            Ok(Some((events, statements, flushes))) => {
                self.commit_batch(batch, events, statements, flushes)
                    .await?
            }
            Ok(None) => {
                let _ = dst.batch_execute("rollback").await;
                self.stats.batches_skipped += 1;
            }
            Err(e) => {
                let _ = dst.batch_execute("rollback").await;
                return Err(e);
            }
        }
        self.finish_batch(batch).await?;
        if self.role == Role::Main {
            self.publish_local_watermark(batch)
                .await
                .map_err(|e| e.on(&self.provider_at))?;
        }
        Ok(())
    }

    /// Ends `batch` on the provider, once its events are committed here (or were before
    /// a crash): a branch first records the tick in its own queue (`crate::branch`).
    pub(super) async fn finish_batch(&mut self, batch: &Batch) -> Result<()> {
        if self.branch {
            let queue = &self.cf.queue_name;
            crate::branch::ensure_tick(&self.dst, queue, batch, self.event_seq).await?;
        }
        self.consumer
            .finish_batch(batch)
            .await
            .map_err(|e| LondisteError::from(e).on(&self.provider_at))
    }

    /// Tells the provider the lowest tick this node's subtree still needs (its
    /// `local_watermark`: on a branch the slowest consumer of its queue, on a leaf its
    /// own position), every `local_wm_publish_period`, as Python's worker does. Without
    /// it the provider keeps this node's watermark consumer at the subscription tick and
    /// its queue never rotates.
    async fn publish_local_watermark(&mut self, batch: &Batch) -> Result<()> {
        if self
            .wm_published
            .is_some_and(|t| t.elapsed() < self.cf.local_wm_publish_period)
        {
            return Ok(());
        }
        let queue = self.cf.queue_name.as_str();
        let info = node::node_info(&self.dst, queue).await?;
        let Some(wm) = info.local_watermark else {
            return Ok(());
        };
        let wm = wm.min(batch.cur_tick_id);
        // Under the node's name as it is now: `rename-node` may have changed it since the
        // worker started, and the provider would quietly refuse the old one.
        let name = info
            .node_name
            .clone()
            .unwrap_or_else(|| self.node_name.clone());
        // Refusals (a watermark that would go backwards) are not errors: the next
        // publication catches up, as in Python.
        self.consumer
            .client()
            .query_one(
                "select ret_code from pgq_node.set_subscriber_watermark($1, $2, $3)",
                &[&queue, &name, &wm],
            )
            .await
            .map_err(|e| LondisteError::sql("publishing the local watermark", e))?;
        self.wm_published = Some(Instant::now());
        Ok(())
    }
}

/// Clears the copy snapshot of `ok` tables once no later batch can hold an event the COPY
/// saw: the batches after this one start at its end tick, so when every transaction the
/// snapshot saw is older than that tick's snapshot (`xmax <= tick xmin`), the filter is
/// done. Precise where Python counts three batches.
async fn forget_old_snapshots(
    dst: &Client,
    provider: &Client,
    queue: &str,
    batch: &Batch,
    tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
) -> Result<()> {
    let mut tick_xmin: Option<i64> = None;
    for (info, snapshot) in tables.values() {
        let Some(snapshot) = snapshot else { continue };
        if info.state != TableState::Ok {
            continue;
        }
        let xmin = match tick_xmin {
            Some(x) => x,
            None => {
                let row = provider
                    .query_opt(
                        "select txid_snapshot_xmin(t.tick_snapshot) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                         where q.queue_name = $1 and t.tick_id = $2",
                        &[&queue, &batch.cur_tick_id],
                    )
                    .await
                    .map_err(|e| LondisteError::sql("reading the batch's end tick", e))?;
                let Some(row) = row else { return Ok(()) };
                let x: i64 = row.get(0);
                tick_xmin = Some(x);
                x
            }
        };
        if snapshot.xmax <= xmin {
            node::set_table_state(dst, queue, &info.table_name, None, &TableState::Ok).await?;
        }
    }
    Ok(())
}
