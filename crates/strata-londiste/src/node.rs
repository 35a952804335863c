//! Typed calls of the pgq_node and londiste SQL functions. Python Londiste calls exactly
//! these, so what they write (node_info, local_state, table_info) is the shared state that
//! lets a Python and a strata worker take over from each other. Functions answering
//! `(ret_code, ret_note)` are checked: a code of 300 or more becomes
//! [`LondisteError::Refused`].

use crate::error::{LondisteError, Result};
use crate::state::TableState;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

/// Runs `select ret_code, ret_note from <call>` and checks the code; returns the note.
pub async fn checked(
    client: &impl GenericClient,
    what: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<String> {
    let row = client
        .query_one(sql, params)
        .await
        .map_err(|e| LondisteError::sql(what, e))?;
    let code: i32 = row.get("ret_code");
    let note: Option<String> = row.get("ret_note");
    let note = note.unwrap_or_default();
    if code >= 300 {
        return Err(LondisteError::Refused {
            what: what.to_string(),
            code,
            note,
        });
    }
    Ok(note)
}

/// A node as `pgq_node.get_node_info` describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    /// `root`, `branch` or `leaf`; `None` before `create-*`.
    pub node_type: Option<String>,
    /// The node's name in the cascade.
    pub node_name: Option<String>,
    /// The tick every node of the cascade has applied: events up to it can go.
    pub global_watermark: Option<i64>,
    /// The tick this node's subtree has applied, which it reports to its provider.
    pub local_watermark: Option<i64>,
    /// The node this one reads from (none on the root).
    pub provider_node: Option<String>,
    /// How to reach the provider (connection string).
    pub provider_location: Option<String>,
    /// For a merge leaf, the queue its events are combined into (`None` otherwise).
    pub combined_queue: Option<String>,
    /// The replay worker's consumer name on the provider.
    pub worker_name: Option<String>,
    /// Whether the worker is paused (`pause`): it stops before its next batch.
    pub worker_paused: Option<bool>,
    /// Whether the worker had caught up with its provider at its last batch.
    pub worker_uptodate: Option<bool>,
    /// The last tick the worker applied here.
    pub worker_last_tick: Option<i64>,
}

impl NodeInfo {
    /// Whether the queue has a node here.
    pub fn exists(&self) -> bool {
        self.node_name.is_some()
    }

    /// Whether it is the root (where events are made).
    pub fn is_root(&self) -> bool {
        self.node_type.as_deref() == Some("root")
    }
}

/// The local node of `queue` (all fields `None` when there is none).
pub async fn node_info(client: &impl GenericClient, queue: &str) -> Result<NodeInfo> {
    let row = client
        .query_one(
            "select node_type, node_name, global_watermark, local_watermark, provider_node, provider_location, \
                    combined_queue, worker_name, worker_paused, worker_uptodate, worker_last_tick \
             from pgq_node.get_node_info($1)",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the node info (is the londiste extension installed?)", e))?;
    Ok(NodeInfo {
        node_type: row.get(0),
        node_name: row.get(1),
        global_watermark: row.get(2),
        local_watermark: row.get(3),
        provider_node: row.get(4),
        provider_location: row.get(5),
        combined_queue: row.get(6),
        worker_name: row.get(7),
        worker_paused: row.get(8),
        worker_uptodate: row.get(9),
        worker_last_tick: row.get(10),
    })
}

/// One member of the cascade as the node knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    /// The member's name.
    pub node_name: String,
    /// How to reach it (connection string).
    pub node_location: String,
    /// Tagged dead (`tag-dead`): not asked by `status`, `execute --wait` or `takeover`.
    pub dead: bool,
}

/// Every member the node knows (`pgq_node.get_queue_locations`).
pub async fn locations(client: &impl GenericClient, queue: &str) -> Result<Vec<Location>> {
    let rows = client
        .query(
            "select node_name, node_location, dead from pgq_node.get_queue_locations($1) order by 1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading node locations", e))?;
    Ok(rows
        .iter()
        .map(|r| Location {
            node_name: r.get(0),
            node_location: r.get(1),
            dead: r.get(2),
        })
        .collect())
}

/// Adds or updates a member's location.
pub async fn register_location(
    client: &impl GenericClient,
    queue: &str,
    node: &str,
    location: &str,
    dead: bool,
) -> Result<()> {
    checked(
        client,
        &format!("registering location of node {node}"),
        "select ret_code, ret_note from pgq_node.register_location($1, $2, $3, $4)",
        &[&queue, &node, &location, &dead],
    )
    .await
    .map(drop)
}

/// A consumer's position and flags in the target (`pgq_node.get_consumer_state`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerState {
    /// The last tick the consumer finished here; its position in the queue.
    pub completed_tick: Option<i64>,
    /// The node it reads from.
    pub provider_node: Option<String>,
    /// How to reach that node.
    pub provider_location: Option<String>,
    /// Paused: it stops before its next batch.
    pub paused: bool,
    /// Caught up with its provider at its last batch.
    pub uptodate: bool,
    /// The error its last round stopped on, saved for `status`.
    pub cur_error: Option<String>,
}

/// The state of `consumer` in the local node, or `None` when it is not registered here.
pub async fn consumer_state(
    client: &impl GenericClient,
    queue: &str,
    consumer: &str,
) -> Result<Option<ConsumerState>> {
    let row = client
        .query_one(
            "select ret_code, completed_tick, provider_node, provider_location, paused, uptodate, cur_error \
             from pgq_node.get_consumer_state($1, $2)",
            &[&queue, &consumer],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the state of {consumer}"), e))?;
    if row.get::<_, i32>(0) == 404 {
        return Ok(None);
    }
    Ok(Some(ConsumerState {
        completed_tick: row.get(1),
        provider_node: row.get(2),
        provider_location: row.get(3),
        paused: row.get::<_, Option<bool>>(4).unwrap_or(false),
        uptodate: row.get::<_, Option<bool>>(5).unwrap_or(false),
        cur_error: row.get(6),
    }))
}

/// Records in the target that `consumer` applied everything up to `tick` (call it in
/// the transaction that applied the batch).
pub async fn set_completed(
    client: &impl GenericClient,
    queue: &str,
    consumer: &str,
    tick: i64,
) -> Result<()> {
    checked(
        client,
        &format!("recording tick {tick} for {consumer}"),
        "select ret_code, ret_note from pgq_node.set_consumer_completed($1, $2, $3)",
        &[&queue, &consumer, &tick],
    )
    .await
    .map(drop)
}

/// The channel a strata worker LISTENs on in its node's database; the payload is the
/// queue. A pause, a resume or a parked event NOTIFYs it, so the worker sees them at once.
pub const WORKER_CHANNEL: &str = "strata_londiste_worker";

/// Wakes the workers of `queue` on this database (see [`WORKER_CHANNEL`]).
pub async fn notify_worker(client: &impl GenericClient, queue: &str) -> Result<()> {
    client
        .execute("select pg_notify($1, $2)", &[&WORKER_CHANNEL, &queue])
        .await
        .map_err(|e| LondisteError::sql("waking the worker", e))
        .map(drop)
}

/// Pauses or resumes `consumer` (its worker checks the flag before every batch, and is
/// woken at once by the NOTIFY of the same statement: see [`WORKER_CHANNEL`]).
pub async fn set_paused(
    client: &impl GenericClient,
    queue: &str,
    consumer: &str,
    paused: bool,
) -> Result<()> {
    checked(
        client,
        &format!("setting the pause flag of {consumer}"),
        "select ret_code, ret_note, pg_notify('strata_londiste_worker', $1) from pgq_node.set_consumer_paused($1, $2, $3)",
        &[&queue, &consumer, &paused],
    )
    .await
    .map(drop)
}

/// Saves the last error of `consumer` (shown by `status`), or clears it with `None`.
pub async fn set_error(
    client: &impl GenericClient,
    queue: &str,
    consumer: &str,
    error: Option<&str>,
) -> Result<()> {
    checked(
        client,
        &format!("saving the error of {consumer}"),
        "select ret_code, ret_note from pgq_node.set_consumer_error($1, $2, $3)",
        &[&queue, &consumer, &error],
    )
    .await
    .map(drop)
}

/// One table of the set as `londiste.get_table_list` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableInfo {
    /// The table, fully qualified, as the set names it.
    pub table_name: String,
    /// Registered on this node (replicated here), not just known in the set.
    pub local: bool,
    #[serde(serialize_with = "crate::state::serialize_state")]
    /// Where its initial copy stands.
    pub state: TableState,
    /// The snapshot its copy ran under, so catching up skips what the copy already holds.
    pub custom_snapshot: Option<String>,
    /// The attributes given at `add-table` (handler and its options, urlencoded).
    pub table_attrs: Option<String>,
    /// Where it is replayed when not under its own name (`--dest-table`).
    pub dest_table: Option<String>,
}

impl TableInfo {
    /// The table written on this node (`dest_table`, or the same name).
    pub fn dest(&self) -> &str {
        self.dest_table.as_deref().unwrap_or(&self.table_name)
    }

    /// Whether the table attributes ask to keep the target's rows before the copy.
    pub fn skip_truncate(&self) -> bool {
        self.table_attrs
            .as_deref()
            .is_some_and(|a| a.split('&').any(|kv| kv == "skip_truncate=1"))
    }
}

/// Every table of the set known to the node.
pub async fn tables(client: &impl GenericClient, queue: &str) -> Result<Vec<TableInfo>> {
    let rows = client
        .query(
            "select table_name, local, merge_state, custom_snapshot, table_attrs, dest_table \
             from londiste.get_table_list($1) order by 1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the table list", e))?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let state: Option<String> = r.get(2);
            Ok(TableInfo {
                state: TableState::parse(state.as_deref())
                    .map_err(|e| LondisteError::State(format!("table {name}: {e}")))?,
                table_name: name,
                local: r.get(1),
                custom_snapshot: r.get(3),
                table_attrs: r.get(4),
                dest_table: r.get(5),
            })
        })
        .collect()
}

/// Subscribes node `node` (its worker `worker`) to this node's queue from `tick` on:
/// the provider then keeps every event after that tick for it.
pub async fn register_subscriber(
    provider: &impl GenericClient,
    queue: &str,
    node: &str,
    worker: &str,
    tick: i64,
) -> Result<()> {
    checked(
        provider,
        &format!("subscribing {node}"),
        "select ret_code, ret_note from pgq_node.register_subscriber($1, $2, $3, $4)",
        &[&queue, &node, &worker, &tick],
    )
    .await
    .map(drop)
}

/// Removes subscriber `node` from this node's queue.
pub async fn unregister_subscriber(
    provider: &impl GenericClient,
    queue: &str,
    node: &str,
) -> Result<()> {
    checked(
        provider,
        &format!("unsubscribing {node}"),
        "select ret_code, ret_note from pgq_node.unregister_subscriber($1, $2)",
        &[&queue, &node],
    )
    .await
    .map(drop)
}

/// An object of the set that this node does not replicate: `londiste missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// `r` for a table, `S` for a sequence (as pg_class.relkind).
    pub kind: String,
    /// The table or sequence, fully qualified.
    pub name: String,
}

/// The tables and sequences of the set on the provider that are not registered here,
/// from londiste's own `local_show_missing`, so it agrees with Python's `missing`.
pub async fn missing(client: &impl GenericClient, queue: &str) -> Result<Vec<Missing>> {
    let rows = client
        .query(
            "select obj_kind, obj_name from londiste.local_show_missing($1) order by 2",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("listing what this node lacks", e))?;
    Ok(rows
        .iter()
        .map(|r| Missing {
            kind: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// A foreign key dropped around a copy and not yet restored (`londiste fkeys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingFkey {
    /// The table holding the key.
    pub from_table: String,
    /// The table it references.
    pub to_table: String,
    /// The constraint's name.
    pub name: String,
    /// Its definition as londiste saved it when dropping it, to create it again.
    pub definition: String,
    /// Both tables are in sync now: the worker restores it next.
    pub ready: bool,
}

/// Foreign keys waiting in `londiste.pending_fkeys`, and whether each can come back now.
pub async fn pending_fkeys(client: &impl GenericClient, queue: &str) -> Result<Vec<PendingFkey>> {
    let rows = client
        .query(
            "select p.from_table, p.to_table, p.fkey_name, p.fkey_def, \
                    exists (select 1 from londiste.get_valid_pending_fkeys($1) v \
                            where v.from_table = p.from_table and v.fkey_name = p.fkey_name) \
             from londiste.pending_fkeys p order by 1, 3",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the pending foreign keys", e))?;
    Ok(rows
        .iter()
        .map(|r| PendingFkey {
            from_table: r.get(0),
            to_table: r.get(1),
            name: r.get(2),
            definition: r.get(3),
            ready: r.get(4),
        })
        .collect())
}

/// Moves a local table to `state`, with the copy snapshot (or none).
pub async fn set_table_state(
    client: &impl GenericClient,
    queue: &str,
    table: &str,
    snapshot: Option<&str>,
    state: &TableState,
) -> Result<()> {
    let text = state.to_text();
    checked(
        client,
        &format!("setting the state of {table}"),
        "select ret_code, ret_note from londiste.local_set_table_state($1, $2, $3, $4)",
        &[&queue, &table, &snapshot, &text],
    )
    .await
    .map(drop)
}

/// The nodes subscribed to this node's queue (`pgq_node.get_subscriber_info`).
pub async fn subscribers(client: &impl GenericClient, queue: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "select node_name from pgq_node.get_subscriber_info($1) order by 1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the subscribers", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Sets the dead flag of member `node` and keeps its location (on the root this also
/// sends a `pgq.location-info` event, so every node learns it).
pub async fn set_dead(
    client: &impl GenericClient,
    queue: &str,
    node: &str,
    dead: bool,
) -> Result<()> {
    checked(
        client,
        &format!("tagging {node} {}", if dead { "dead" } else { "alive" }),
        "select ret_code, ret_note from pgq_node.register_location($1, $2, null, $3)",
        &[&queue, &node, &dead],
    )
    .await
    .map(drop)
}

/// `pgq_node.drop_node`: on the node itself it removes the node (its queue included);
/// elsewhere it forgets the member (its subscription and location). Refused (405) on
/// the node's subscriber while it still reads from it.
pub async fn drop_node(client: &impl GenericClient, queue: &str, node: &str) -> Result<()> {
    checked(
        client,
        &format!("dropping node {node}"),
        "select ret_code, ret_note from pgq_node.drop_node($1, $2)",
        &[&queue, &node],
    )
    .await
    .map(drop)
}
