//! `resurrect`: an old root that came back after a failover (`takeover --dead-root`)
//! rejoins the cascade as a branch of the new root. Step for step as Python Londiste,
//! so either tool can resurrect after either tool's takeover:
//!
//! 1. The failover tick is read from the gravestone consumer (`OLD.gravestone`) that the
//!    takeover left on the new root.
//! 2. The node is demoted (root) or paused (branch); its old subscriptions and consumers
//!    are dropped (they now live on the new root).
//! 3. The events it made after the failover tick, which no other node ever saw, are
//!    written to a JSON file (Python's format: one object per event with its tick), then
//!    deleted from its queue with the ticks after the failover tick. The file is written
//!    and synced before anything is deleted.
//! 4. Its worker is set to the failover tick and subscribed on the new root in the
//!    gravestone's place; the global watermark is taken over. The worker stays paused.
//!
//! Its tables still hold the lost changes: `compare` shows them, `repair` or `resync`
//! bring the node in line with the new root.

use crate::admin;
use crate::cascade::Cascade;
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, checked};
use crate::takeover::gravestone;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_pgclient::Client;
use strata_pgq::consumer::{Consumer, ConsumerOptions};

/// Python Londiste's dump file name, the default of `--dump`.
pub const DEFAULT_DUMP: &str = "resurrect-lost-events.json";

/// What `resurrect` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResurrectReport {
    /// The new root, whose branch this node is now.
    pub provider: String,
    /// The tick of the failover: this node continues from it.
    pub failover_tick: i64,
    /// Events made here after the failover tick, written to `dump`.
    pub lost_events: u64,
    /// Lost events by type (`I:id`, `U:id`, `TRUNCATE`, ...) and table.
    pub lost_by_table: BTreeMap<String, u64>,
    /// The JSON file holding them.
    pub dump: PathBuf,
    /// Ticks deleted from this node's queue.
    pub ticks_deleted: u64,
    /// The steps done.
    pub done: Vec<String>,
}

/// Finds the failover tick (the gravestone) and the new root among the live members.
async fn find_gravestone(cascade: &Cascade) -> Result<(String, i64)> {
    let queue = cascade.queue.as_str();
    let consumer = gravestone(&cascade.local);
    let mut found = None;
    // Leaves have no queue to hold it.
    for m in cascade
        .members()
        .iter()
        .filter(|m| m.name != cascade.local && m.node_type() != Some("leaf"))
    {
        let Some(client) = &m.client else { continue };
        let row = client
            .query_opt(
                "select last_tick from pgq.get_consumer_info($1, $2)",
                &[&queue, &consumer],
            )
            .await
            .map_err(|e| LondisteError::sql(format!("looking for {consumer} on {}", m.name), e))?;
        if let Some(row) = row {
            if let Some((other, _)) = &found {
                return Err(LondisteError::State(format!(
                    "two gravestones ({consumer}) on {other} and {}: resolve by hand",
                    m.name
                )));
            }
            found = Some((m.name.clone(), row.get::<_, i64>(0)));
        }
    }
    found.ok_or_else(|| {
        LondisteError::State(format!(
            "no live member holds {consumer}: was this node replaced with takeover --dead-root?"
        ))
    })
}

/// Makes this node (an old root replaced by a failover) a paused branch of the new root,
/// after saving the events only it has to `dump`.
pub async fn resurrect(cf: &NodeConfig, dump: &Path, timeout: Duration) -> Result<ResurrectReport> {
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let name = info.node_name.clone().unwrap_or_default();
    if info.node_type.as_deref() == Some("leaf") {
        return Err(LondisteError::BadInput(format!(
            "{name} is a leaf: it has no queue of its own, nothing to resurrect"
        )));
    }
    if std::fs::symlink_metadata(dump).is_ok() {
        return Err(LondisteError::BadInput(format!(
            "{} exists: it may hold the lost events of an earlier resurrect; move it away first",
            dump.display()
        )));
    }
    let worker = info
        .worker_name
        .clone()
        .unwrap_or_else(|| cf.job_name.clone());
    let cascade = Cascade::load(db, queue, &name, timeout.min(Duration::from_secs(10))).await?;
    let (provider, failover_tick) = find_gravestone(&cascade).await?;
    let prov = cascade.client(&provider)?;
    let db = cascade.local_client();
    let mut done = Vec::new();

    if info.is_root() {
        checked(
            db,
            "demote_root step 1",
            "select ret_code, ret_note from pgq_node.demote_root($1, 1, $2)",
            &[&queue, &provider],
        )
        .await?;
        checked(
            db,
            "demote_root step 2",
            "select ret_code, ret_note from pgq_node.demote_root($1, 2, $2)",
            &[&queue, &provider],
        )
        .await?;
        // Type change and pause in one transaction: the worker never runs as a branch
        // of the new root before its position is fixed.
        db.batch_execute("begin")
            .await
            .map_err(|e| LondisteError::sql("begin", e))?;
        let step3 = async {
            checked(
                db,
                "demote_root step 3",
                "select ret_code, ret_note from pgq_node.demote_root($1, 3, $2)",
                &[&queue, &provider],
            )
            .await?;
            node::set_paused(db, queue, &worker, true).await
        }
        .await;
        match step3 {
            Ok(()) => db
                .batch_execute("commit")
                .await
                .map_err(|e| LondisteError::sql("commit", e))?,
            Err(e) => {
                let _ = db.batch_execute("rollback").await;
                return Err(e);
            }
        }
        done.push(format!(
            "{name} demoted to a branch of {provider}, worker paused"
        ));
    } else {
        node::set_paused(db, queue, &worker, true).await?;
        done.push(format!("{name}'s worker paused"));
    }

    for sub in node::subscribers(db, queue).await? {
        node::unregister_subscriber(db, queue, &sub).await?;
        done.push(format!("dropped the old subscription of {sub}"));
    }
    let consumers: Vec<String> = db
        .query(
            "select consumer_name from pgq.get_consumer_info($1)",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("listing the consumers", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for consumer in consumers.iter().filter(|c| !c.starts_with('.')) {
        strata_pgq::api::unregister_consumer(db, queue, consumer).await?;
        done.push(format!("dropped the old consumer {consumer}"));
    }

    let dumped = dump_lost_events(cf, &name, failover_tick, dump).await?;
    let ticks_deleted = if dumped.last_tick > failover_tick {
        delete_lost(db, queue, failover_tick, dumped.last_tick).await?
    } else {
        0
    };

    node::set_completed(db, queue, &worker, failover_tick).await?;
    node::unregister_subscriber(prov, queue, &name).await?;
    let row = prov
        .query_one(
            "select ret_code, ret_note, global_watermark from pgq_node.register_subscriber($1, $2, $3, $4)",
            &[&queue, &name, &worker, &failover_tick],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("subscribing {name} on {provider}"), e))?;
    let code: i32 = row.get(0);
    if code >= 300 {
        return Err(LondisteError::Refused {
            what: format!("subscribing {name} on {provider}"),
            code,
            note: row.get::<_, Option<String>>(1).unwrap_or_default(),
        });
    }
    let watermark: i64 = row.get(2);
    checked(
        db,
        "taking over the global watermark",
        "select ret_code, ret_note from pgq_node.set_global_watermark($1, $2)",
        &[&queue, &watermark],
    )
    .await?;
    done.push(format!(
        "subscribed on {provider} from the failover tick {failover_tick} (the gravestone is gone)"
    ));
    let untold = cascade.tag(&name, false).await?;
    done.push(format!(
        "{name} tagged alive{}",
        if untold.is_empty() {
            String::new()
        } else {
            format!(" (not on {}: unreachable)", untold.join(", "))
        }
    ));
    Ok(ResurrectReport {
        provider,
        failover_tick,
        lost_events: dumped.events,
        lost_by_table: dumped.by_table,
        dump: dump.to_path_buf(),
        ticks_deleted,
        done,
    })
}

struct Dumped {
    events: u64,
    by_table: BTreeMap<String, u64>,
    last_tick: i64,
}

/// One event as Python's resurrect writes it.
#[derive(Serialize)]
struct DumpedEvent<'a> {
    ev_id: i64,
    ev_type: Option<&'a str>,
    ev_data: Option<&'a str>,
    ev_extra1: Option<&'a str>,
    ev_extra2: Option<&'a str>,
    ev_extra3: Option<&'a str>,
    ev_extra4: Option<&'a str>,
    ev_time: String,
    ev_txid: i64,
    ev_retry: Option<i32>,
    tick_id: i64,
    prev_tick_id: i64,
}

/// Streams the events after `failover_tick` from this node's queue into `dump` (a JSON
/// array, written and synced before the caller deletes anything), through a temporary
/// consumer `NODE.dumper`; memory stays at one capped chunk of events.
async fn dump_lost_events(
    cf: &NodeConfig,
    name: &str,
    failover_tick: i64,
    dump: &Path,
) -> Result<Dumped> {
    let queue = cf.queue_name.as_str();
    let dumper = format!("{name}.dumper");
    let client: Client = admin::connect_local(cf).await?;
    client
        .query_one(
            "select pgq.register_consumer_at($1, $2, $3)",
            &[&queue, &dumper, &failover_tick],
        )
        .await
        .map_err(|e| {
            LondisteError::sql(
                format!("reading this node's queue from the failover tick {failover_tick}"),
                e,
            )
        })?;
    // Nothing is deleted before the dump is complete and synced: a failed write leaves
    // the lost events in the queue, and resurrect can run again once the partial file is
    // moved away.
    let io = |e: std::io::Error| {
        LondisteError::State(format!(
            "writing the lost events to {}: {e}; nothing was deleted: move the partial file away and run resurrect again",
            dump.display()
        ))
    };
    // The events carry row data: readable by the owner only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dump)
        .map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    let mut consumer = Consumer::new(client, queue, &dumper, ConsumerOptions::default())?;
    let mut dumped = Dumped {
        events: 0,
        by_table: BTreeMap::new(),
        last_tick: failover_tick,
    };
    out.write_all(b"[").map_err(io)?;
    while let Some(batch) = consumer.next_batch().await? {
        let mut stream = consumer.events(&batch).await?;
        while let Some(chunk) = stream.next_chunk().await? {
            for ev in &chunk {
                let record = DumpedEvent {
                    ev_id: ev.id,
                    ev_type: ev.ev_type.as_deref(),
                    ev_data: ev.data.as_deref(),
                    ev_extra1: ev.extra1.as_deref(),
                    ev_extra2: ev.extra2.as_deref(),
                    ev_extra3: ev.extra3.as_deref(),
                    ev_extra4: ev.extra4.as_deref(),
                    ev_time: chrono::DateTime::<chrono::Utc>::from(ev.time)
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
                    ev_txid: ev.txid,
                    ev_retry: ev.retry,
                    tick_id: batch.cur_tick_id,
                    prev_tick_id: batch.prev_tick_id,
                };
                out.write_all(if dumped.events == 0 { b"\n" } else { b",\n" })
                    .map_err(io)?;
                serde_json::to_writer(&mut out, &record).map_err(|e| io(e.into()))?;
                dumped.events += 1;
                let kind = ev
                    .ev_type
                    .as_deref()
                    .map(|t| t.split(':').next().unwrap_or(t))
                    .unwrap_or("?");
                let what = match ev.extra1.as_deref() {
                    Some(table) => format!("{table} {kind}"),
                    None => kind.to_string(),
                };
                *dumped.by_table.entry(what).or_default() += 1;
            }
        }
        stream.close().await?;
        consumer.finish_batch(&batch).await?;
        dumped.last_tick = batch.cur_tick_id;
    }
    out.write_all(b"\n]\n").map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    consumer.unregister().await?;
    Ok(dumped)
}

/// Deletes the events between the failover tick and `last_tick` (exactly those of the
/// batches just dumped: visible in the last tick's snapshot, not in the failover tick's)
/// and those ticks, in one transaction; returns the ticks deleted.
async fn delete_lost(db: &Client, queue: &str, failover_tick: i64, last_tick: i64) -> Result<u64> {
    let row = db
        .query_one(
            "select q.queue_id, q.queue_data_pfx, t1.tick_snapshot::text, t2.tick_snapshot::text \
             from pgq.queue q join pgq.tick t1 on t1.tick_queue = q.queue_id and t1.tick_id = $2 \
             join pgq.tick t2 on t2.tick_queue = q.queue_id and t2.tick_id = $3 \
             where q.queue_name = $1",
            &[&queue, &failover_tick, &last_tick],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the ticks of the lost events", e))?;
    let queue_id: i32 = row.get(0);
    let prefix: String = row.get(1);
    let (s1, s2): (String, String) = (row.get(2), row.get(3));
    let (schema, table) = prefix
        .split_once('.')
        .ok_or_else(|| LondisteError::State(format!("unexpected queue table prefix {prefix:?}")))?;
    // The parent table: the delete reaches every rotation table below it.
    let events = strata_pgclient::quote_qualified(schema, table);
    db.batch_execute("begin")
        .await
        .map_err(|e| LondisteError::sql("begin", e))?;
    let work = async {
        db.execute(
            &format!(
                "delete from {events} where ev_txid >= txid_snapshot_xmin($1::text::txid_snapshot) \
                 and ev_txid <= txid_snapshot_xmax($2::text::txid_snapshot) \
                 and txid_visible_in_snapshot(ev_txid, $2::text::txid_snapshot) \
                 and not txid_visible_in_snapshot(ev_txid, $1::text::txid_snapshot)"
            ),
            &[&s1, &s2],
        )
        .await
        .map_err(|e| LondisteError::sql("deleting the lost events", e))?;
        db.execute(
            "delete from pgq.tick where tick_queue = $1 and tick_id > $2 and tick_id <= $3",
            &[&queue_id, &failover_tick, &last_tick],
        )
        .await
        .map_err(|e| LondisteError::sql("deleting the lost ticks", e))
    }
    .await;
    match work {
        Ok(ticks) => {
            db.batch_execute("commit")
                .await
                .map_err(|e| LondisteError::sql("commit", e))?;
            Ok(ticks)
        }
        Err(e) => {
            let _ = db.batch_execute("rollback").await;
            Err(e)
        }
    }
}
