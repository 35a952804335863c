//! One event of a batch, in the batch's transaction: a row change into the SQL buffer, a
//! control event of the set (tables, sequences, locations, watermark), an `EXECUTE`.

use super::Role;
use crate::admin;
use crate::error::{LondisteError, Result};
use crate::node::{self, TableInfo};
use crate::snapshot::Snapshot;
use crate::sqlgen::{self, SqlBuffer};
use crate::state::TableState;
use std::collections::HashMap;
use strata_pgclient::Client;
use strata_pgq::event::{Event, Op};

/// The column types of `table` as SQL type names (`format_type`), for the casts of
/// gathered updates.
async fn column_types(dst: &Client, table: &str) -> Result<HashMap<String, String>> {
    let (schema, name) = crate::names::split(table);
    let rows = dst
        .query(
            "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute a \
             join pg_catalog.pg_class c on c.oid = a.attrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the column types of {table}"), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Applies an `EXECUTE` event as Python Londiste does: `execute_start` (which skips a
/// file already applied here), the SQL with local triggers firing
/// (`session_replication_role = local`), `execute_finish`, all in the batch's transaction.
async fn execute_event(dst: &Client, queue: &str, ev: &Event) -> Result<()> {
    let file = ev.extra1.clone().unwrap_or_default();
    let sql = ev.data.clone().unwrap_or_default();
    let attrs = crate::exec_attrs::ExecAttrs::parse_urlenc(ev.extra2.as_deref())?;
    let row = dst
        .query_one(
            "select ret_code, ret_note from londiste.execute_start($1, $2, $3, false, $4)",
            &[&queue, &file, &sql, &ev.extra2],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("starting EXECUTE of {file}"), e))?;
    if row.get::<_, i32>(0) > 200 {
        return Ok(());
    }
    dst.batch_execute("set local session_replication_role = 'local'")
        .await
        .map_err(|e| LondisteError::sql("switching to local role for EXECUTE", e))?;
    let local = admin::local_objects(dst, queue).await?;
    if attrs.need_execute(dst, &local).await? {
        dst.batch_execute(&attrs.process_sql(&sql, &local)?)
            .await
            .map_err(|e| LondisteError::sql(format!("EXECUTE of {file}"), e))?;
    }
    node::checked(
        dst,
        &format!("finishing EXECUTE of {file}"),
        "select ret_code, ret_note from londiste.execute_finish($1, $2)",
        &[&queue, &file],
    )
    .await?;
    dst.batch_execute("set local session_replication_role = 'replica'")
        .await
        .map_err(|e| LondisteError::sql("switching back to replica role", e))?;
    Ok(())
}

/// Whether the table wants a row event in this role: its state, and the copy snapshot
/// (events of transactions the COPY already saw are skipped).
fn wants(role: &Role, info: &TableInfo, snapshot: &Option<Snapshot>, txid: i64) -> bool {
    let state_ok = match role {
        Role::Main => info.state == TableState::Ok,
        Role::Copy(table) => {
            &info.table_name == table
                && matches!(info.state, TableState::CatchingUp | TableState::DoSync(_))
        }
    };
    state_ok && !snapshot.as_ref().is_some_and(|s| s.contains(txid))
}

/// What [`apply_event`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handled {
    /// Applied, buffered, or not this node's (a table not replicated here, a cascade
    /// event of another queue).
    Done,
    /// A type the worker does not know: the caller stops or parks it, never skips it.
    Unknown,
}

pub(super) async fn apply_event(
    dst: &Client,
    role: &Role,
    queue: &str,
    ev: &Event,
    tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
    buffer: &mut SqlBuffer,
) -> Result<Handled> {
    const DONE: Result<Handled> = Ok(Handled::Done);
    if let Some(change) = ev.row_change()? {
        let Some((info, snapshot)) = tables.get(&change.table) else {
            return DONE;
        };
        if !wants(role, info, snapshot, ev.txid) {
            return DONE;
        }
        if change.op == Op::Truncate {
            buffer
                .flush(dst)
                .await
                .map_err(|e| LondisteError::sql("applying the batch", e))?;
        }
        if let Some((head, tuple)) = sqlgen::insert_parts(&change, info.dest()) {
            if buffer.push_insert(&head, &tuple) {
                buffer.flush(dst).await.map_err(|e| {
                    LondisteError::sql(format!("applying the batch (near event {})", ev.id), e)
                })?;
            }
            return DONE;
        }
        if let Some(row) = sqlgen::update_parts(&change, info.dest()) {
            if !buffer.types.contains_key(info.dest()) {
                let types = column_types(dst, info.dest()).await?;
                buffer.types.insert(info.dest().to_string(), types);
            }
            let types = buffer.types[info.dest()].clone();
            if buffer.push_update(row, &types) {
                buffer.flush(dst).await.map_err(|e| {
                    LondisteError::sql(format!("applying the batch (near event {})", ev.id), e)
                })?;
            }
            return DONE;
        }
        let sql = sqlgen::statement(&change, info.dest())
            .map_err(|e| LondisteError::State(format!("event {}: {e}", ev.id)))?;
        if let Some(sql) = sql {
            if buffer.push(&sql) {
                buffer.flush(dst).await.map_err(|e| {
                    LondisteError::sql(format!("applying the batch (near event {})", ev.id), e)
                })?;
            }
        }
        return DONE;
    }
    if *role != Role::Main {
        return DONE;
    }
    let ev_type = ev.ev_type.as_deref().unwrap_or("");
    let data = ev.data.as_deref().unwrap_or("");
    let control: Option<(&str, String, Vec<Option<String>>)> = match ev_type {
        "londiste.add-table" => Some((
            "londiste.global_add_table($1, $2)",
            "adding a table to the set".into(),
            vec![Some(data.into())],
        )),
        "londiste.remove-table" => Some((
            "londiste.global_remove_table($1, $2)",
            "removing a table from the set".into(),
            vec![Some(data.into())],
        )),
        "londiste.remove-seq" => Some((
            "londiste.global_remove_seq($1, $2)",
            "removing a sequence".into(),
            vec![Some(data.into())],
        )),
        "londiste.update-seq" => Some((
            "londiste.global_update_seq($1, $2, $3::text::int8)",
            "updating a sequence".into(),
            vec![ev.extra1.clone(), Some(data.into())],
        )),
        "pgq.location-info" if ev.extra1.as_deref() == Some(queue) => Some((
            "pgq_node.register_location($1, $2, $3, $4::text::boolean)",
            "registering a location".into(),
            vec![Some(data.into()), ev.extra2.clone(), ev.extra3.clone()],
        )),
        "pgq.unregister-location" if ev.extra1.as_deref() == Some(queue) => Some((
            "pgq_node.unregister_location($1, $2)",
            "unregistering a location".into(),
            vec![Some(data.into())],
        )),
        "pgq.global-watermark" if ev.extra1.as_deref() == Some(queue) => Some((
            "pgq_node.set_global_watermark($1, $2::text::int8)",
            "setting the global watermark".into(),
            vec![Some(data.into())],
        )),
        "EXECUTE" => {
            buffer
                .flush(dst)
                .await
                .map_err(|e| LondisteError::sql("applying the batch", e))?;
            buffer.types.clear();
            return execute_event(dst, queue, ev).await.map(|()| Handled::Done);
        }
        // Cascade events of another queue (a combined queue's), as Python ignores them.
        t if t.starts_with("pgq.") => return DONE,
        _ => return Ok(Handled::Unknown),
    };
    let Some((call, what, args)) = control else {
        return DONE;
    };
    buffer
        .flush(dst)
        .await
        .map_err(|e| LondisteError::sql("applying the batch", e))?;
    let sql = format!("select ret_code, ret_note from {call}");
    let queue_param: Option<String> = Some(queue.to_string());
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&queue_param];
    for a in &args {
        params.push(a);
    }
    node::checked(dst, &what, &sql, &params)
        .await
        .map(|_| Handled::Done)
}
