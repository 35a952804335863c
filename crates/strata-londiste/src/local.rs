//! This node's own state, read through its ini file: the tables and sequences of the set
//! as it sees them, what it does not replicate, its pending foreign keys, the members it
//! knows and its pgq_node information; and `wait-sync`, which polls its tables until every
//! copy is done. Each function connects to the node's database and refuses (bad input)
//! when no node exists there for the ini's queue.

use crate::admin::{self, SeqInfo};
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, Location, Missing, NodeInfo, PendingFkey, TableInfo};
use crate::state::TableState;
use std::time::{Duration, Instant};
use strata_pgclient::Client;

/// How often `wait_sync` asks again.
const SYNC_POLL: Duration = Duration::from_millis(300);

/// The node's database, once the node is known to exist there.
async fn open(cf: &NodeConfig) -> Result<(Client, NodeInfo)> {
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    Ok((db, info))
}

/// The node's pgq_node information.
pub async fn node_info(cf: &NodeConfig) -> Result<NodeInfo> {
    open(cf).await.map(|(_, info)| info)
}

/// The tables of the set with their state on this node.
pub async fn tables(cf: &NodeConfig) -> Result<Vec<TableInfo>> {
    let (db, _) = open(cf).await?;
    node::tables(&db, &cf.queue_name).await
}

/// Tables and sequences of the set that this node does not replicate.
pub async fn missing(cf: &NodeConfig) -> Result<Vec<Missing>> {
    let (db, _) = open(cf).await?;
    node::missing(&db, &cf.queue_name).await
}

/// Foreign keys dropped around copies and not restored yet.
pub async fn pending_fkeys(cf: &NodeConfig) -> Result<Vec<PendingFkey>> {
    let (db, _) = open(cf).await?;
    node::pending_fkeys(&db, &cf.queue_name).await
}

/// The cascade's members as this node knows them.
pub async fn members(cf: &NodeConfig) -> Result<Vec<Location>> {
    let (db, _) = open(cf).await?;
    node::locations(&db, &cf.queue_name).await
}

/// The sequences of the set with their published value.
pub async fn seqs(cf: &NodeConfig) -> Result<Vec<SeqInfo>> {
    let (db, _) = open(cf).await?;
    admin::seqs(&db, &cf.queue_name).await
}

/// The local tables not in state `ok` yet, each as `name (state)`.
pub fn not_in_sync(tables: &[TableInfo]) -> Vec<String> {
    tables
        .iter()
        .filter(|t| t.local && t.state != TableState::Ok)
        .map(|t| format!("{} ({})", t.table_name, t.state))
        .collect()
}

/// Waits until every local table is `ok` (its copy done), asking every 300 ms; after
/// `timeout` fails ([`LondisteError::State`]) naming the tables still copying.
pub async fn wait_sync(cf: &NodeConfig, timeout: Duration) -> Result<()> {
    let (db, _) = open(cf).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let pending = not_in_sync(&node::tables(&db, &cf.queue_name).await?);
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LondisteError::State(format!(
                "not in sync after {} s: {}",
                timeout.as_secs(),
                pending.join(", ")
            )));
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
}
