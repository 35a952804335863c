//! Membership commands: `tag-dead`/`tag-alive` (tell every live member that a node is
//! gone or back), `drop-node` (remove a node from the cascade, and from its own database
//! when it answers) and `wait-root`/`wait-provider` (block until everything committed
//! upstream before the call is applied here: scripts run them after a deploy).

use crate::admin;
use crate::cascade::{self, Cascade};
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node;
use serde::Serialize;
use std::time::Duration;

/// How long members get to answer when the cascade is loaded.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

async fn load(cf: &NodeConfig) -> Result<Cascade> {
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let name = info.node_name.clone().unwrap_or_default();
    Cascade::load(db, &cf.queue_name, &name, ASK_TIMEOUT).await
}

/// Sets the dead flag of `node` on every live member (this one included); returns the
/// members that could not be told. A node tagged dead is not asked by `status`,
/// `execute --wait` and the takeovers, so one dead machine stalls none of them.
pub async fn tag(cf: &NodeConfig, node_name: &str, dead: bool) -> Result<Vec<String>> {
    let cascade = load(cf).await?;
    if dead && node_name == cascade.local {
        return Err(LondisteError::BadInput(
            "a node cannot tag itself dead: run tag-dead on another member".into(),
        ));
    }
    cascade.tag(node_name, dead).await
}

/// What `drop-node` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DropReport {
    /// The steps done, one line each.
    pub done: Vec<String>,
    /// Members that could not be told (unreachable or refusing), with why.
    pub warnings: Vec<String>,
}

/// Removes `node_name` from the cascade: refused while other nodes read from it. When
/// the node answers, its tables stop being replicated first (triggers removed, so its
/// tables take writes again) and its node and queue are dropped; every other live
/// member forgets it (its subscription, so its provider's queue can rotate again).
pub async fn drop_node(cf: &NodeConfig, node_name: &str) -> Result<DropReport> {
    let cascade = load(cf).await?;
    let queue = cascade.queue.as_str();
    let member = cascade.member(node_name)?;
    let mut report = DropReport::default();
    if let Some(client) = &member.client {
        let subscribers = node::subscribers(client, queue).await?;
        if !subscribers.is_empty() {
            return Err(LondisteError::BadInput(format!(
                "{node_name} still has subscribers ({}): move them first (change-provider or takeover)",
                subscribers.join(", ")
            )));
        }
    }
    let readers: Vec<String> = cascade.subscribers_of(node_name);
    if !readers.is_empty() {
        return Err(LondisteError::BadInput(format!(
            "{} still read from {node_name}: move them first (change-provider or takeover --dead-branch)",
            readers.join(", ")
        )));
    }
    if let Some(client) = &member.client {
        for table in node::tables(client, queue)
            .await?
            .into_iter()
            .filter(|t| t.local)
        {
            node::checked(
                client,
                &format!("removing {} on {node_name}", table.table_name),
                "select ret_code, ret_note from londiste.local_remove_table($1, $2)",
                &[&queue, &table.table_name],
            )
            .await?;
        }
        node::drop_node(client, queue, node_name).await?;
        report.done.push(format!(
            "{node_name}: replication triggers, node and queue dropped"
        ));
    } else {
        report.warnings.push(format!(
            "{node_name} cannot be reached ({}): its own database keeps its node; run drop-node with its ini file if it comes back",
            member.error.as_deref().unwrap_or("no answer")
        ));
    }
    for other in cascade.members().iter().filter(|m| m.name != node_name) {
        let Some(client) = &other.client else {
            report.warnings.push(format!(
                "{}: not told ({})",
                other.name,
                other.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        };
        match node::drop_node(client, queue, node_name).await {
            Ok(()) => report
                .done
                .push(format!("{}: forgot {node_name}", other.name)),
            Err(e) => report.warnings.push(format!("{}: {e}", other.name)),
        }
    }
    Ok(report)
}

/// Which upstream node `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The root: everything committed on the root before the call.
    Root,
    /// The provider: everything the provider had applied before the call.
    Provider,
}

/// Waits until this node's worker has applied a tick newer than the upstream node's
/// newest when the call started; returns that tick. On the root the root's queue gets a
/// tick soon (`pgq.force_tick`), so an idle queue does not make the caller wait for the
/// ticker's idle period. Fails after `timeout` naming where this node is.
pub async fn wait(cf: &NodeConfig, upstream: Upstream, timeout: Duration) -> Result<i64> {
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let queue = cf.queue_name.as_str();
    let name = info.node_name.clone().unwrap_or_default();
    if info.is_root() {
        return Err(LondisteError::BadInput(format!(
            "{name} is the root: there is nothing upstream to wait for"
        )));
    }
    let root = admin::find_root(&db, queue).await?;
    let forced: i64 = root
        .query_one("select coalesce(pgq.force_tick($1), 0)", &[&queue])
        .await
        .map_err(|e| LondisteError::sql("asking the root for a tick", e))?
        .get(0);
    let target = match upstream {
        Upstream::Root => forced,
        Upstream::Provider => {
            let location = info
                .provider_location
                .clone()
                .ok_or_else(|| LondisteError::State("the node has no provider".into()))?;
            let provider = admin::connect(&location, "provider").await?;
            node::node_info(&provider, queue)
                .await?
                .worker_last_tick
                .unwrap_or(0)
        }
    };
    cascade::wait_for_tick(&db, queue, &name, target + 1, timeout).await
}
