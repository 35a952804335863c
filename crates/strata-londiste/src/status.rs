//! The cascade at a glance: every member the local node knows is asked at the same time
//! (Python's `status` polls them one by one, so one dead node stalls the whole report);
//! a node that does not answer within the timeout shows its error instead of hiding it.
//! A member tagged dead is not asked (nor asked for the lag of its subscribers): it is
//! shown as dead, which is not an error.

use crate::admin::{self, count_tables, TableCounts};
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, NodeInfo};
use crate::park::{self, ParkedSummary};
use serde::Serialize;
use std::time::Duration;

/// One member's report.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The member's name.
    pub name: String,
    /// Tagged dead in the local node's member list: not asked, not an error.
    pub location_dead: bool,
    /// `None` when the node was not asked (tagged dead) or could not be (see `error`).
    pub info: Option<NodeInfo>,
    /// Its local tables by state; `None` when it was not asked or did not answer.
    pub tables: Option<TableCounts>,
    /// The worker's lag behind its provider's newest tick, seconds (from the provider).
    pub lag_secs: Option<f64>,
    /// The worker's last error saved in the node, or why the node could not be asked.
    pub error: Option<String>,
    /// Events parked on the node (`park-event`, `park_unknown_events`): how many, and the
    /// latest few.
    pub parked: Option<ParkedSummary>,
}

impl NodeStatus {
    /// Whether the node is shown dead: tagged dead and therefore not asked. A member
    /// tagged dead that answered anyway (tagged by mistake, or back) is shown as it is.
    pub fn is_dead(&self) -> bool {
        self.location_dead && self.info.is_none()
    }

    /// Whether the node's worker is paused (`pause`), so its lag grows on purpose.
    pub fn is_paused(&self) -> bool {
        self.info
            .as_ref()
            .and_then(|i| i.worker_paused)
            .unwrap_or(false)
    }
}

/// How many parked events `status` lists per node.
const LATEST_PARKED: i64 = 3;

type Answer = (NodeInfo, TableCounts, Option<String>, ParkedSummary);

async fn ask(location: &str, queue: &str) -> Result<Answer> {
    let client = admin::connect(location, "node").await?;
    let info = node::node_info(&client, queue).await?;
    let tables = node::tables(&client, queue).await?;
    let mut cur_error = None;
    if let Some(worker) = &info.worker_name {
        if let Some(state) = node::consumer_state(&client, queue, worker).await? {
            cur_error = state.cur_error;
        }
    }
    let parked = park::summary(&client, queue, LATEST_PARKED).await?;
    Ok((info, count_tables(&tables), cur_error, parked))
}

async fn lag_on(location: &str, queue: &str, worker: &str) -> Result<Option<f64>> {
    let client = admin::connect(location, "provider").await?;
    let row = client
        .query_opt(
            "select extract(epoch from lag)::float8 from pgq.get_consumer_info($1, $2)",
            &[&queue, &worker],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the worker's lag", e))?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Reports every member, asked in parallel, each within `timeout`.
pub async fn cascade_status(cf: &NodeConfig, timeout: Duration) -> Result<Vec<NodeStatus>> {
    let db = admin::connect_local(cf).await?;
    admin::require_node(&db, cf).await?;
    let queue = cf.queue_name.clone();
    let members = node::locations(&db, &queue).await?;
    drop(db);
    let dead: std::collections::HashSet<String> = members
        .iter()
        .filter(|m| m.dead)
        .map(|m| m.node_name.clone())
        .collect();
    let asks = members.iter().map(|m| {
        let queue = queue.clone();
        async move {
            if m.dead {
                return Err(None);
            }
            match tokio::time::timeout(timeout, ask(&m.node_location, &queue)).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(Some(e.to_string())),
                Err(_) => Err(Some(format!("no answer within {} s", timeout.as_secs()))),
            }
        }
    });
    let answers = futures::future::join_all(asks).await;
    // Lags come from each worker's provider, also in parallel.
    let lags = answers.iter().map(|a| {
        let queue = queue.clone();
        let dead = &dead;
        async move {
            let Ok((info, _, _, _)) = a else { return None };
            if info
                .provider_node
                .as_deref()
                .is_some_and(|p| dead.contains(p))
            {
                return None;
            }
            let (Some(location), Some(worker)) = (&info.provider_location, &info.worker_name)
            else {
                return None;
            };
            if info.is_root() {
                return None;
            }
            tokio::time::timeout(timeout, lag_on(location, &queue, worker))
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten()
        }
    });
    let lags = futures::future::join_all(lags).await;
    Ok(members
        .into_iter()
        .zip(answers)
        .zip(lags)
        .map(|((m, answer), lag)| match answer {
            Ok((info, tables, cur_error, parked)) => NodeStatus {
                name: m.node_name,
                location_dead: m.dead,
                info: Some(info),
                tables: Some(tables),
                lag_secs: lag,
                error: cur_error,
                parked: Some(parked),
            },
            Err(error) => NodeStatus {
                name: m.node_name,
                location_dead: m.dead,
                info: None,
                tables: None,
                lag_secs: None,
                error,
                parked: None,
            },
        })
        .collect())
}
