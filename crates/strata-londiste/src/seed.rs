//! A subscriber seeded from a point-in-time restore of its provider's database instead of
//! an initial copy (`join-restored`).
//!
//! The restored database holds the provider's tables, and its queue state, as they were
//! at the recovery target. The node joins at the last tick the restore holds, `K`. The
//! rows of transactions that committed after tick `K` but before the target are already
//! there, and their events come in the batches after `K`. They are skipped with the
//! snapshot the restored data was taken at: each table's `custom_snapshot`, which both
//! tools' workers honour after a copy.
//!
//! That snapshot is exact only while the restored server is still in recovery, paused at
//! its target (`strata restore ... --target-action pause`). There it is the provider's
//! own snapshot at that point: the standby knows which transactions were running. Once
//! the server is promoted, its own new transactions take the transaction ids the
//! provider gives to its later ones, and the boundary is lost. So the command reads the
//! position first, promotes the server itself, and only then converts the database.
//! The standby's `txid_current_snapshot()` is not that snapshot as it stands (see
//! [`restored_snapshot`]): its running transactions are read from the commit log.

use crate::admin::{self, AddTableOptions, NodeType};
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, checked};
use crate::state::TableState;
use serde::Serialize;
use std::time::{Duration, Instant};
use strata_pgclient::Client;

/// Where a restored database joins its provider's queue.
#[derive(Debug, Clone, Serialize)]
pub struct SeedPosition {
    /// The provider's node, whose database was restored.
    pub provider_node: String,
    /// The last tick of the queue the restore holds: the new node's worker starts there.
    pub tick: i64,
    /// That tick's snapshot, which the provider's must equal (the same history).
    pub tick_snapshot: String,
    /// The snapshot the restored data was taken at (the provider's at the recovery
    /// target); events of transactions it sees are already in the tables.
    pub snapshot: String,
    /// The tables the new node replicates from the start, without a copy: those the
    /// provider replicated and had `ok` at the target.
    pub tables: Vec<String>,
    /// Tables of the provider that were still being copied at the target: they are
    /// added, and copied, like any new table.
    pub copying: Vec<String>,
    /// The sequences the provider replicated: the new node follows them too.
    pub seqs: Vec<String>,
}

/// What `join-restored` did.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// Where the restore joins the provider's queue.
    pub position: SeedPosition,
    /// Whether the node was made (false with `--check`).
    pub joined: bool,
    /// The new node's name.
    pub node: String,
    /// `leaf` or `branch`.
    pub node_type: String,
}

/// What `join-restored` is asked to do.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    /// The new node's name in the cascade.
    pub name: &'a str,
    /// The new node's connection string, as the other members will reach it.
    pub location: &'a str,
    /// The provider whose database was restored here.
    pub provider: &'a str,
    /// A branch (with its own queue) instead of a leaf.
    pub branch: bool,
    /// Check and report the position only; change nothing.
    pub check_only: bool,
    /// Join although the restored server archives its WAL.
    pub keep_archiving: bool,
    /// How long to wait for the promotion.
    pub promote_timeout: Duration,
}

/// Makes the local database, a restore of the provider's paused at its recovery target,
/// the subscriber `name` of the provider (a leaf, or a branch), without copying its
/// tables. With `check_only`, checks and reports the position and changes nothing.
pub async fn join_restored(cf: &NodeConfig, request: &JoinRequest<'_>) -> Result<SeedReport> {
    let JoinRequest {
        name,
        location,
        provider,
        branch,
        check_only,
        keep_archiving,
        promote_timeout,
    } = *request;
    strata_pgq::api::check_name("node", name)?;
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    let position = read_position(&db, queue).await?;
    if !keep_archiving {
        refuse_archiving(&db).await?;
    }
    let pdb = admin::connect(provider, "--provider").await?;
    check_provider(&pdb, queue, &position).await?;
    let node_type = if branch {
        NodeType::Branch
    } else {
        NodeType::Leaf
    };
    let mut report = SeedReport {
        position,
        joined: false,
        node: name.to_string(),
        node_type: node_type.as_str().to_string(),
    };
    if check_only {
        return Ok(report);
    }
    drop(db);
    promote(cf, promote_timeout).await?;
    // From here the restore is an ordinary server: a failure cannot be taken back or
    // resumed (its position is lost with the promotion), so it says to start over.
    convert(cf, name, location, provider, node_type, &report.position)
        .await
        .map_err(|e| {
            LondisteError::State(format!(
                "the restored server is promoted but did not become node {name}: {e}; restore it again (paused at the target) and rerun join-restored"
            ))
        })?;
    report.joined = true;
    Ok(report)
}

/// Turns the promoted restore into the subscriber: forgets the provider's identity,
/// creates the node at the restored tick, and adds the tables in sync with the
/// restore's snapshot.
async fn convert(
    cf: &NodeConfig,
    name: &str,
    location: &str,
    provider: &str,
    node_type: NodeType,
    position: &SeedPosition,
) -> Result<()> {
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    forget_provider_identity(&db, queue, &position.provider_node).await?;
    drop(db);
    admin::create_node_at(
        cf,
        node_type,
        name,
        location,
        Some(provider),
        Some(position.tick),
    )
    .await?;
    let tables = &position.tables;
    if !tables.is_empty() {
        let sync = AddTableOptions {
            expect_sync: true,
            ..Default::default()
        };
        admin::add_tables(cf, tables, &sync).await?;
        let db = admin::connect_local(cf).await?;
        for table in tables {
            node::set_table_state(&db, queue, table, Some(&position.snapshot), &TableState::Ok)
                .await?;
        }
    }
    if !position.copying.is_empty() {
        admin::add_tables(cf, &position.copying, &AddTableOptions::default()).await?;
    }
    if !position.seqs.is_empty() {
        admin::add_seqs(cf, &position.seqs, false).await?;
    }
    Ok(())
}

/// Reads the join position from the restored server, which must be in recovery and
/// paused at its target.
async fn read_position(db: &Client, queue: &str) -> Result<SeedPosition> {
    let row = db
        .query_one(
            "select pg_catalog.pg_is_in_recovery(), \
             case when pg_catalog.pg_is_in_recovery() then pg_catalog.pg_get_wal_replay_pause_state() end",
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the recovery state", e))?;
    let (in_recovery, pause): (bool, Option<String>) = (row.get(0), row.get(1));
    if !in_recovery || pause.as_deref() != Some("paused") {
        return Err(LondisteError::BadInput(format!(
            "the local database must be a restore of the provider's, still in recovery and paused at its target (strata restore ... --target-time T --target-action pause); it is {}",
            if in_recovery { "in recovery but not paused" } else { "not in recovery: its own transactions may already use the provider's later transaction ids, so the point it was restored to cannot be known exactly" }
        )));
    }
    let info = node::node_info(db, queue).await?;
    let provider_node = match (info.node_name, info.node_type.as_deref()) {
        (Some(n), Some("root" | "branch")) => n,
        (Some(n), Some(t)) => {
            return Err(LondisteError::BadInput(format!(
                "the restored database is {t} {n} of queue {queue}: only a root's or a branch's database can seed a subscriber"
            )))
        }
        _ => {
            return Err(LondisteError::BadInput(format!(
                "the restored database has no node of queue {queue}: restore the provider's database"
            )))
        }
    };
    let row = db
        .query_opt(
            "select t.tick_id, t.tick_snapshot::text from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
             where q.queue_name = $1 order by t.tick_id desc limit 1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the restored queue's last tick", e))?
        .ok_or_else(|| {
            LondisteError::State(format!("the restored queue {queue} has no tick"))
        })?;
    let (tick, tick_snapshot): (i64, String) = (row.get(0), row.get(1));
    let snapshot = restored_snapshot(db).await?;
    let (mut tables, mut copying) = (Vec::new(), Vec::new());
    for t in node::tables(db, queue)
        .await?
        .into_iter()
        .filter(|t| t.local)
    {
        if t.state == TableState::Ok {
            tables.push(t.table_name);
        } else {
            copying.push(t.table_name);
        }
    }
    let seqs = admin::seqs(db, queue)
        .await?
        .into_iter()
        .filter(|q| q.local)
        .map(|q| q.seq_name)
        .collect();
    Ok(SeedPosition {
        seqs,
        provider_node,
        tick,
        tick_snapshot,
        snapshot,
        tables,
        copying,
    })
}

/// The snapshot of the restored data: the transactions the paused standby has seen
/// commit. Its bounds come from the standby's own snapshot (every transaction below
/// `xmin` has ended, none from `xmax` on has committed), but not its list of running
/// transactions: during recovery PostgreSQL keeps every running transaction id in the
/// snapshot's subtransaction array, which `txid_current_snapshot()` does not print, so
/// on a standby it shows them as committed. The list is rebuilt from the commit log:
/// each transaction between the bounds that has not committed there.
async fn restored_snapshot(db: &Client) -> Result<String> {
    let text: String = db
        .query_one(
            "with s as (select pg_catalog.txid_current_snapshot() as s) \
             select pg_catalog.txid_snapshot_xmin(s)::text || ':' || pg_catalog.txid_snapshot_xmax(s)::text || ':' || \
             coalesce((select string_agg(x::text, ',' order by x) \
                       from generate_series(pg_catalog.txid_snapshot_xmin(s), pg_catalog.txid_snapshot_xmax(s) - 1) x \
                       where pg_catalog.txid_status(x) is distinct from 'committed'), '') from s",
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the restored snapshot", e))?
        .get(0);
    crate::snapshot::Snapshot::parse(&text)?;
    Ok(text)
}

/// A restore carries its provider's `archive_mode` and `archive_command`. Promoted, it
/// would archive its own new timeline wherever that command points: as restored, the
/// provider's repository, where a later restore of the provider to its latest timeline
/// would follow the new node's history instead of the provider's. So archiving must be
/// off (`strata restore --no-archive`), unless the operator says the command already
/// points at this node's own repository.
async fn refuse_archiving(db: &Client) -> Result<()> {
    let row = db
        .query_one(
            "select current_setting('archive_mode'), current_setting('archive_command'), \
             coalesce(current_setting('archive_library', true), '')",
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the restored server's archive settings", e))?;
    let (mode, command, library): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    if mode == "off" {
        return Ok(());
    }
    // Named, never quoted: an archive command may carry credentials.
    let how = match (command.is_empty(), library.is_empty()) {
        (false, _) => "archive_command set",
        (true, false) => "archive_library set",
        (true, true) => "no command yet, so its WAL would pile up",
    };
    Err(LondisteError::BadInput(format!(
        "the restored server has archive_mode = {mode} ({how}): once promoted it would archive its own timeline into the repository of the cluster it was restored from, and a later restore of that cluster to its latest timeline would follow this node's history. Restore it again with `strata restore ... --target-action pause --no-archive`, or pass --keep-archiving if the command already points at this node's own repository"
    )))
}

/// The provider must be the node that was restored, on the same history (its tick holds
/// the same snapshot), and still hold the tick (pgq keeps a tick only while the events
/// after it are kept).
async fn check_provider(pdb: &Client, queue: &str, position: &SeedPosition) -> Result<()> {
    let info = node::node_info(pdb, queue).await?;
    if info.node_name.as_deref() != Some(position.provider_node.as_str()) {
        return Err(LondisteError::BadInput(format!(
            "the restored database is node {} but the provider is {}: restore the provider's own database",
            position.provider_node,
            info.node_name.unwrap_or_else(|| "no node".into())
        )));
    }
    let theirs: Option<String> = pdb
        .query_opt(
            "select t.tick_snapshot::text from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
             where q.queue_name = $1 and t.tick_id = $2",
            &[&queue, &position.tick],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the provider's tick", e))?
        .map(|r| r.get(0));
    let tick = position.tick;
    match theirs {
        None => Err(LondisteError::State(format!(
            "the provider no longer has tick {tick} (its queue rotated past it): restore a newer backup, or to a point closer to now"
        ))),
        Some(s) if s != position.tick_snapshot => Err(LondisteError::State(format!(
            "tick {tick} differs between the restore ({}) and the provider ({s}): the restore is of another history (another timeline or database)",
            position.tick_snapshot
        ))),
        Some(_) => Ok(()),
    }
}

/// Ends recovery (`pg_promote`) and waits until the server takes writes.
async fn promote(cf: &NodeConfig, limit: Duration) -> Result<()> {
    let db = admin::connect_local(cf).await?;
    let secs = i32::try_from(limit.as_secs().max(1)).unwrap_or(i32::MAX);
    let done: bool = db
        .query_one("select pg_catalog.pg_promote(true, $1)", &[&secs])
        .await
        .map_err(|e| LondisteError::sql("promoting the restored server", e))?
        .get(0);
    if done {
        return Ok(());
    }
    // pg_promote gave up waiting: the promotion may still finish.
    let deadline = Instant::now() + limit;
    loop {
        let in_recovery: bool = db
            .query_one("select pg_catalog.pg_is_in_recovery()", &[])
            .await
            .map_err(|e| LondisteError::sql("reading the recovery state", e))?
            .get(0);
        if !in_recovery {
            break;
        }
        if Instant::now() > deadline {
            return Err(LondisteError::State(format!(
                "the restored server did not finish its promotion within {} s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Removes the provider's node from the restored database (its rows stay): the set's
/// triggers of a root, the table and sequence registrations, then the node, its queue
/// and its subscribers.
async fn forget_provider_identity(db: &Client, queue: &str, provider_node: &str) -> Result<()> {
    for t in node::tables(db, queue)
        .await?
        .into_iter()
        .filter(|t| t.local)
    {
        db.query_one(
            "select londiste.drop_table_triggers($1, $2)",
            &[&queue, &t.table_name],
        )
        .await
        .map_err(|e| {
            LondisteError::sql(
                format!("dropping the provider's triggers of {}", t.table_name),
                e,
            )
        })?;
    }
    for sql in [
        "delete from londiste.table_info where queue_name = $1",
        "delete from londiste.seq_info where queue_name = $1",
        "delete from londiste.applied_execute where queue_name = $1",
    ] {
        db.execute(sql, &[&queue])
            .await
            .map_err(|e| LondisteError::sql("removing the provider's registrations", e))?;
    }
    checked(
        db,
        &format!("dropping the provider's node {provider_node} from the restore"),
        "select ret_code, ret_note from pgq_node.drop_node($1, $2)",
        &[&queue, &provider_node],
    )
    .await
    .map(drop)
}
