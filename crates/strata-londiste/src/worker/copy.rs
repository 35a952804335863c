//! A table's initial copy, one task per table, as Python Londiste's `copy` process does it
//! and with the same state: consumer `<job>.copy.<table>` registered on the provider and
//! in `pgq_node.local_state`, the COPY under a REPEATABLE READ snapshot saved as
//! `custom_snapshot`, then catching up on the table's events until the hand-over on a tick
//! boundary (see [`crate::state::TableState`]). The rows stream from `COPY TO` into
//! `COPY FROM` chunk by chunk on two connections: no blocking pipe, no table in memory.
//! Indexes and constraints of the target are dropped before the copy and rebuilt after it;
//! foreign keys from or to the table go to `londiste.pending_fkeys` and come back when both
//! of their tables are `ok`.

use crate::config::NodeConfig;
use crate::error::{describe_db, LondisteError, Result};
use crate::names;
use crate::node::{self, checked, TableInfo};
use crate::state::TableState;
use crate::worker::{self as worker, fkeys, CopyCrashes, CopyPoint, Replayer, Role, WorkerOptions};
use futures::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use strata_pgclient::{quote_ident, Client};
use tokio::sync::watch;

/// Bytes of COPY data sent to the target in one message.
const COPY_CHUNK: usize = 256 << 10;

/// The copy task of `table` as a boxed future: the main worker spawns it, and the copy
/// task runs the same replay loop, so the type must be named to end the recursion.
pub(crate) fn start(
    cf: Arc<NodeConfig>,
    table: String,
    provider_location: String,
    options: WorkerOptions,
    stop: watch::Receiver<bool>,
) -> futures::future::BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        let at = describe_db(None, &cf.db);
        run(cf, table, provider_location, options, stop)
            .await
            .map_err(|e| e.on(&at))
    })
}

/// Runs the copy task of `table` until the table is `ok` (or removed), or `stop`.
///
/// The task holds the copy pidfile Python Londiste uses (`<pidfile>.copy.<table>`), so a
/// Python copy process started by hand refuses to run beside it, and one that died is
/// taken over. A copy that starts from `in-copy` registers its copy consumer afresh on
/// both sides: whatever an earlier copier (of either tool) left there is stale, and a
/// consumer whose two halves disagree would stop the catch-up with a lost position.
async fn run(
    cf: Arc<NodeConfig>,
    table: String,
    provider_location: String,
    options: WorkerOptions,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let crashes = options.crash_copies.clone();
    let provider_at = describe_db(None, &provider_location);
    let queue = cf.queue_name.clone();
    let name = cf.copy_consumer(&table);
    let _pidfile = match cf.copy_pidfile(&table) {
        Some(path) => Some(
            strata_pgq::daemon::PidFile::create(&path)
                .map_err(|e| LondisteError::State(format!("copy of {table}: {e}")))?,
        ),
        None => None,
    };
    let dst = worker::open_target(&cf).await?;
    let mut consumer = worker::open_consumer(&cf, &provider_location, &name)
        .await
        .map_err(|e| e.on(&provider_at))?;
    let info = node::tables(&dst, &queue)
        .await?
        .into_iter()
        .find(|t| t.table_name == table && t.local);
    let Some(mut info) = info else {
        return unregister(&dst, &mut consumer, &queue, &name).await;
    };
    let mut registered = node::consumer_state(&dst, &queue, &name).await?.is_some();
    if registered && left_behind(&dst, &consumer, &queue, &name, &options).await? {
        // Its position means nothing on this provider: the table is copied again, from
        // a consumer registered afresh here.
        checked(
            &dst,
            &format!("unregistering {name} in the target"),
            "select ret_code, ret_note from pgq_node.unregister_consumer($1, $2)",
            &[&queue, &name],
        )
        .await?;
        registered = false;
        if info.state != TableState::InCopy {
            node::set_table_state(&dst, &queue, &table, None, &TableState::InCopy).await?;
            options.log.warn(format!(
                "copy of {table}: its copy consumer did not read from this node's provider \
                 (the provider changed mid-copy): copying the table again"
            ));
            info.state = TableState::InCopy;
            info.custom_snapshot = None;
        }
    }
    if info.state == TableState::InCopy {
        let left = if registered {
            unregister(&dst, &mut consumer, &queue, &name).await?;
            true
        } else {
            consumer
                .unregister()
                .await
                .map_err(|e| LondisteError::from(e).on(&provider_at))?
        };
        if left {
            options.log.info(format!(
                "copy of {table}: registering {name} afresh (an earlier copy left it)"
            ));
        }
    }
    if info.state == TableState::InCopy || !registered {
        register(&dst, &mut consumer, &queue, &name, &provider_at).await?;
    }
    if info.state == TableState::InCopy {
        let rows = options.metrics.copy_rows(&table);
        let stop = Stop {
            flag: &stop,
            provider_location: &provider_location,
        };
        let Some(copied) =
            copy_table(&cf, consumer.client(), &dst, &info, &crashes, &rows, stop).await?
        else {
            // Stopped in the middle: nothing of the copy committed. The table goes back
            // to waiting for a copy, which is where either tool's worker starts one
            // (Python's only starts copies of tables in that state).
            node::set_table_state(&dst, &queue, &table, None, &TableState::Missing).await?;
            unregister(&dst, &mut consumer, &queue, &name).await?;
            options.log.info(format!(
                "copy of {table}: stopped before it finished; the table waits for a new copy"
            ));
            return Ok(());
        };
        rows.store(copied, Ordering::Relaxed);
        options.log.info(format!(
            "copy of {table}: {copied} rows copied, catching up"
        ));
        crashes.check(&table, CopyPoint::CatchingUp)?;
    }
    let mut r = Replayer::new(
        cf.clone(),
        Role::Copy(table.clone()),
        name.clone(),
        dst,
        consumer,
        provider_location,
        provider_at,
        options,
        stop.clone(),
        stop.clone(),
    );
    match r.run_loop().await {
        Ok(_) => {}
        Err(e) if e.is_lost_position() => {
            // The copy consumer was used by two copiers (or moved by hand): which events
            // the table has seen is unknown, so the table is copied again, from a
            // consumer registered afresh.
            node::set_table_state(&r.dst, &queue, &table, None, &TableState::InCopy).await?;
            return Err(LondisteError::State(format!(
                "copy of {table}: {e}; the table will be copied again"
            )));
        }
        Err(e) => return Err(e),
    }
    if *stop.borrow() {
        return Ok(());
    }
    unregister(&r.dst, &mut r.consumer, &queue, &name).await
}

/// Whether the copy consumer `name` registered in the target was left behind by a change
/// of provider (either tool's `change-provider` or `takeover` moves only the main
/// worker): registered in the target under another provider, or not known to the
/// current one. Its registration on the old provider is removed (it would hold that
/// queue's events forever); an old provider that cannot be reached is only logged.
async fn left_behind(
    dst: &Client,
    consumer: &strata_pgq::Consumer,
    queue: &str,
    name: &str,
    options: &WorkerOptions,
) -> Result<bool> {
    let Some(state) = node::consumer_state(dst, queue, name).await? else {
        return Ok(false);
    };
    let provider = node::node_info(dst, queue).await?.provider_node;
    let moved = state.provider_node.is_some() && state.provider_node != provider;
    if moved {
        let old = state.provider_node.clone().unwrap_or_default();
        let dropped = match &state.provider_location {
            Some(location) => unregister_at(location, queue, name).await,
            None => Err(LondisteError::State(format!("{old} has no location"))),
        };
        match dropped {
            Ok(()) => options.log.info(format!(
                "copy consumer {name}: unregistered on {old}, this node's provider before"
            )),
            Err(e) => options.log.warn(format!(
                "copy consumer {name}: cannot unregister it on {old}, this node's provider \
                 before ({e}): unregister it there by hand (pgq.unregister_consumer)"
            )),
        }
        return Ok(true);
    }
    let known = consumer
        .client()
        .query_opt(
            "select 1 from pgq.get_consumer_info($1, $2)",
            &[&queue, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("looking for {name} on the provider"), e))?
        .is_some();
    Ok(!known)
}

/// Unregisters `name` from the queue of the database at `location`.
async fn unregister_at(location: &str, queue: &str, name: &str) -> Result<()> {
    let client = crate::admin::connect(location, "the old provider").await?;
    client
        .query_opt(
            "select pgq.unregister_consumer(queue_name, consumer_name) from pgq.get_consumer_info($1, $2)",
            &[&queue, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("unregistering {name}"), e))?;
    Ok(())
}

/// Registers the copy consumer on the provider first, then in the target at the
/// provider's position (Python's `CascadedConsumer.register_consumer`).
async fn register(
    dst: &Client,
    consumer: &mut strata_pgq::Consumer,
    queue: &str,
    name: &str,
    provider_at: &str,
) -> Result<()> {
    consumer
        .register()
        .await
        .map_err(|e| LondisteError::from(e).on(provider_at))?;
    let last_tick: Option<i64> = consumer
        .client()
        .query_one(
            "select last_tick from pgq.get_consumer_info($1, $2)",
            &[&queue, &name],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the copy consumer's position", e).on(provider_at))?
        .get(0);
    let provider_node = node::node_info(consumer.client(), queue)
        .await?
        .node_name
        .ok_or_else(|| LondisteError::State("the provider has no node".into()))?;
    checked(
        dst,
        &format!("registering {name} in the target"),
        "select ret_code, ret_note from pgq_node.register_consumer($1, $2, $3, $4)",
        &[&queue, &name, &provider_node, &last_tick],
    )
    .await?;
    Ok(())
}

async fn unregister(
    dst: &Client,
    consumer: &mut strata_pgq::Consumer,
    queue: &str,
    name: &str,
) -> Result<()> {
    checked(
        dst,
        &format!("unregistering {name} in the target"),
        "select ret_code, ret_note from pgq_node.unregister_consumer($1, $2)",
        &[&queue, &name],
    )
    .await?;
    consumer.unregister().await?;
    Ok(())
}

/// Columns of `table` in attribute order.
async fn columns(client: &Client, table: &str) -> Result<Vec<String>> {
    let (schema, name) = names::split(table);
    let rows = client
        .query(
            "select a.attname from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped and a.attgenerated = '' \
             order by a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the columns of {table}"), e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `(drop, create)` statements for the target's indexes and constraints that the copy
/// may drop: everything, unless another table's foreign key depends on this one.
async fn droppable_ddl(dst: &Client, table: &str) -> Result<Vec<(String, String)>> {
    let (schema, name) = names::split(table);
    let oid_sql = "(select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2)";
    let referenced: bool = dst
        .query_one(
            &format!("select exists (select 1 from pg_catalog.pg_constraint where contype = 'f' and confrelid = {oid_sql})"),
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql("reading foreign keys", e))?
        .get(0);
    if referenced {
        return Ok(Vec::new());
    }
    let qt = names::quote_fq(table);
    let mut ddl = Vec::new();
    let constraints = dst
        .query(
            &format!("select conname, pg_catalog.pg_get_constraintdef(oid) from pg_catalog.pg_constraint where conrelid = {oid_sql} and contype in ('p', 'u', 'x', 'c') order by conname"),
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql("reading constraints", e))?;
    for r in constraints {
        let con: String = r.get(0);
        let def: String = r.get(1);
        ddl.push((
            format!("ALTER TABLE {qt} DROP CONSTRAINT {}", quote_ident(&con)),
            format!(
                "ALTER TABLE {qt} ADD CONSTRAINT {} {def}",
                quote_ident(&con)
            ),
        ));
    }
    let indexes = dst
        .query(
            &format!("select n.nspname, c.relname, pg_catalog.pg_get_indexdef(i.indexrelid) from pg_catalog.pg_index i \
             join pg_catalog.pg_class c on c.oid = i.indexrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where i.indrelid = {oid_sql} and not exists (select 1 from pg_catalog.pg_constraint k where k.conindid = i.indexrelid) order by 2"),
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql("reading indexes", e))?;
    for r in indexes {
        let (ns, idx, def): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        ddl.push((
            format!("DROP INDEX {}", strata_pgclient::quote_qualified(&ns, &idx)),
            def,
        ));
    }
    Ok(ddl)
}

/// The COPY itself: one target transaction (lock, drop indexes, truncate, stream the rows,
/// rebuild, state `catching-up` with the provider snapshot), so a crash leaves the table
/// `in-copy` and the next run starts over.
///
/// A stop in the middle cancels both sides' statements (a COPY can run for hours, and a
/// lock wait forever) and rolls back: `Ok(None)`.
async fn copy_table(
    cf: &NodeConfig,
    provider: &Client,
    dst: &Client,
    info: &TableInfo,
    crashes: &CopyCrashes,
    rows_copied: &AtomicU64,
    stop: Stop<'_>,
) -> Result<Option<u64>> {
    let dest = info.dest().to_string();
    let src_cols = columns(provider, &info.table_name).await?;
    let dst_cols = columns(dst, &dest).await?;
    let common: Vec<String> = dst_cols
        .into_iter()
        .filter(|c| src_cols.contains(c))
        .collect();
    if common.is_empty() {
        return Err(LondisteError::State(format!(
            "{}: no columns in common between provider and target (does {dest} exist here?)",
            info.table_name
        )));
    }
    fkeys::drop_fkeys(dst, &dest).await?;
    let col_list = common
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let pids = [backend_pid(dst).await, backend_pid(provider).await];
    dst.batch_execute("begin")
        .await
        .map_err(|e| LondisteError::sql("starting the copy transaction", e))?;
    let copy = async {
        let qdest = names::quote_fq(&dest);
        dst.batch_execute(&format!("LOCK TABLE {qdest}"))
            .await
            .map_err(|e| LondisteError::sql(format!("locking {dest}"), e))?;
        let ddl = droppable_ddl(dst, &dest).await?;
        for (drop, _) in &ddl {
            dst.batch_execute(drop)
                .await
                .map_err(|e| LondisteError::sql(format!("dropping an index of {dest}"), e))?;
        }
        if !info.skip_truncate() {
            dst.batch_execute(&format!("TRUNCATE ONLY {qdest}"))
                .await
                .map_err(|e| LondisteError::sql(format!("truncating {dest}"), e))?;
        }
        provider
            .batch_execute("begin isolation level repeatable read read only")
            .await
            .map_err(|e| LondisteError::sql("starting the provider snapshot", e))?;
        let copied = async {
            // The first statement fixes the transaction's snapshot: the COPY reads it.
            let snapshot: String = provider
                .query_one("select txid_current_snapshot()::text", &[])
                .await
                .map_err(|e| LondisteError::sql("reading the provider snapshot", e))?
                .get(0);
            let out = provider
                .copy_out(&format!(
                    "COPY {} ({col_list}) TO STDOUT",
                    names::quote_fq(&info.table_name)
                ))
                .await
                .map_err(|e| LondisteError::sql(format!("COPY {} TO", info.table_name), e))?;
            let sink = dst
                .copy_in::<_, bytes::Bytes>(&format!("COPY {qdest} ({col_list}) FROM STDIN"))
                .await
                .map_err(|e| LondisteError::sql(format!("COPY {dest} FROM"), e))?;
            futures::pin_mut!(out);
            futures::pin_mut!(sink);
            // PostgreSQL sends one message per row: gather rows into chunks of about
            // COPY_CHUNK bytes so the target gets few large messages, not a flush per row.
            let mut buf = bytes::BytesMut::with_capacity(COPY_CHUNK * 2);
            while let Some(chunk) = out.next().await {
                let chunk = chunk
                    .map_err(|e| LondisteError::sql(format!("reading {}", info.table_name), e))?;
                // One message per row: the progress `/metrics` shows.
                rows_copied.fetch_add(1, Ordering::Relaxed);
                buf.extend_from_slice(&chunk);
                if buf.len() >= COPY_CHUNK {
                    sink.send(buf.split().freeze())
                        .await
                        .map_err(|e| LondisteError::sql(format!("writing {dest}"), e))?;
                }
            }
            if !buf.is_empty() {
                sink.send(buf.split().freeze())
                    .await
                    .map_err(|e| LondisteError::sql(format!("writing {dest}"), e))?;
            }
            let rows = sink
                .finish()
                .await
                .map_err(|e| LondisteError::sql(format!("finishing COPY into {dest}"), e))?;
            Ok::<_, LondisteError>((rows, snapshot))
        }
        .await;
        let _ = provider.batch_execute("rollback").await;
        let (rows, snapshot) = copied?;
        crashes.check(&info.table_name, CopyPoint::InCopy)?;
        for (_, create) in &ddl {
            dst.batch_execute(create)
                .await
                .map_err(|e| LondisteError::sql(format!("rebuilding an index of {dest}"), e))?;
        }
        node::set_table_state(
            dst,
            &cf.queue_name,
            &info.table_name,
            Some(&snapshot),
            &TableState::CatchingUp,
        )
        .await?;
        Ok::<_, LondisteError>(rows)
    };
    futures::pin_mut!(copy);
    let mut flag = stop.flag.clone();
    let result = tokio::select! {
        result = &mut copy => result,
        // A dropped sender is no stop: then only the copy ends the wait.
        _ = async {
            if flag.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await
            }
        } => {
            cancel([&cf.db, stop.provider_location], pids).await;
            // The cancelled statements end the copy with their error, at once.
            let _ = copy.await;
            let _ = dst.batch_execute("rollback").await;
            return Ok(None);
        }
    };
    match result {
        Ok(rows) => {
            dst.batch_execute("commit")
                .await
                .map_err(|e| LondisteError::sql("committing the copy", e))?;
            Ok(Some(rows))
        }
        Err(e) => {
            let _ = dst.batch_execute("rollback").await;
            Err(e)
        }
    }
}

/// What stops a COPY: the worker's stop flag, and where to cancel the provider's side.
#[derive(Clone, Copy)]
struct Stop<'a> {
    flag: &'a watch::Receiver<bool>,
    provider_location: &'a str,
}

/// The server process of a connection, to cancel its statement from another one.
async fn backend_pid(client: &Client) -> Option<i32> {
    let row = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .ok()?;
    Some(row.get(0))
}

/// Cancels the copy's statements on the target and on the provider (`pg_cancel_backend`
/// from new connections: each side may be blocked, in a lock wait or on a full socket).
async fn cancel(dsns: [&str; 2], pids: [Option<i32>; 2]) {
    for (dsn, pid) in dsns.into_iter().zip(pids) {
        let Some(pid) = pid else { continue };
        if let Ok(client) = crate::admin::connect(dsn, "cancelling a copy").await {
            let _ = client
                .query_one("select pg_cancel_backend($1)", &[&pid])
                .await;
        }
    }
}
