//! Membership commands: `tag-dead`/`tag-alive` (tell every live member that a node is
//! gone or back), `drop-node` (remove a node from the cascade, and from its own database
//! when it answers), `change-location` and `rename-node` (a member's connection string
//! or name, changed on every member) and `wait-root`/`wait-provider` (block until everything committed
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

/// What `change-location` and `rename-node` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemberReport {
    /// The steps done, one line each.
    pub done: Vec<String>,
    /// Members that could not be told, with why, and what to do about it.
    pub warnings: Vec<String>,
}

/// Runs `work` in one transaction on `client`, rolled back when it fails.
async fn in_tx<T>(
    client: &strata_pgclient::Client,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    client
        .batch_execute("begin")
        .await
        .map_err(|e| LondisteError::sql("begin", e))?;
    match work.await {
        Ok(v) => {
            client
                .batch_execute("commit")
                .await
                .map_err(|e| LondisteError::sql("commit", e))?;
            Ok(v)
        }
        Err(e) => {
            let _ = client.batch_execute("rollback").await;
            Err(e)
        }
    }
}

/// Sets the location (connection string) of member `node_name` to `location` on every
/// live member, the member itself included, as `pgq_node.register_location` does (on
/// the root it also sends `pgq.location-info`, so members that were not reached learn
/// it through the queue). Before anything is written, `location` must reach a database
/// whose node for this queue is `node_name`. Members tagged dead are not asked.
pub async fn change_location(
    cf: &NodeConfig,
    node_name: &str,
    location: &str,
) -> Result<MemberReport> {
    strata_pgclient::Dsn::parse(location)
        .map_err(|e| LondisteError::BadInput(format!("the new location: {e}")))?;
    let cascade = load(cf).await?;
    let queue = cascade.queue.as_str();
    let member = cascade.member(node_name)?;
    if member.location == location {
        return Err(LondisteError::BadInput(format!(
            "{node_name} is at {location} already"
        )));
    }
    let there =
        match tokio::time::timeout(ASK_TIMEOUT, admin::connect(location, "the new location")).await
        {
            Ok(client) => client?,
            Err(_) => {
                return Err(LondisteError::State(format!(
                    "the new location of {node_name} did not answer within {} s",
                    ASK_TIMEOUT.as_secs()
                )))
            }
        };
    match node::node_info(&there, queue).await?.node_name {
        Some(name) if name == node_name => {}
        Some(name) => {
            return Err(LondisteError::BadInput(format!(
                "the new location is node {name}, not {node_name}: nothing changed"
            )))
        }
        None => {
            return Err(LondisteError::BadInput(format!(
                "the new location has no node for queue {queue}, so it is not {node_name}: nothing changed"
            )))
        }
    }
    let mut report = MemberReport::default();
    let dead = member.tagged_dead;
    let mut root_told = false;
    for m in cascade.members() {
        // The node itself is written through its new location: its old one may be gone.
        let client = if m.name == node_name && m.name != cascade.local {
            Some(&there)
        } else {
            m.client.as_ref()
        };
        let Some(client) = client else {
            report.warnings.push(format!(
                "{}: not told ({})",
                m.name,
                m.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        };
        match node::register_location(client, queue, node_name, location, dead).await {
            Ok(()) => {
                root_told |= m.info.as_ref().is_some_and(|i| i.is_root());
                report
                    .done
                    .push(format!("{}: {node_name} is at the new location", m.name));
            }
            Err(e) => report.warnings.push(format!("{}: {e}", m.name)),
        }
    }
    if !report.warnings.is_empty() {
        report.warnings.push(if root_told {
            "the members not told learn the new location from the root's pgq.location-info event once their workers run".to_string()
        } else {
            format!("the root was not told: run change-location {node_name} again once the members not told answer")
        });
    }
    Ok(report)
}

/// On provider `p` (`pc`), the subscription of `old` becomes `new`'s, in one transaction:
/// a `.new.watermark` consumer registered at the old one's tick (or its worker's), the
/// subscription renamed, the `.old.watermark` consumer dropped.
async fn rename_subscription(
    pc: &strata_pgclient::Client,
    queue: &str,
    p: &str,
    old: &str,
    new: &str,
) -> Result<()> {
    let (old_wm, new_wm) = (format!(".{old}.watermark"), format!(".{new}.watermark"));
    in_tx(pc, async {
        let tick: Option<i64> = pc
            .query_opt(
                "select coalesce(\
                   (select last_tick from pgq.get_consumer_info($1, $2)), \
                   (select c.last_tick from pgq_node.subscriber_info s, pgq.get_consumer_info($1, s.worker_name) c \
                     where s.queue_name = $1 and s.subscriber_node = $3))",
                &[&queue, &old_wm, &old],
            )
            .await
            .map_err(|e| LondisteError::sql("reading the subscriber's watermark", e))?
            .and_then(|r| r.get(0));
        let tick = tick.ok_or_else(|| {
            LondisteError::State(format!("{p} has no position for {old}"))
        })?;
        sql(
            pc,
            "registering the new watermark consumer",
            "select pgq.register_consumer_at($1, $2, $3)",
            &[&queue, &new_wm, &tick],
        )
        .await?;
        sql(
            pc,
            "renaming the subscription",
            "update pgq_node.subscriber_info set subscriber_node = $2, watermark_name = $3 where queue_name = $1 and subscriber_node = $4",
            &[&queue, &new, &new_wm, &old],
        )
        .await?;
        sql(
            pc,
            "dropping the old watermark consumer",
            "select pgq.unregister_consumer($1, $2) from pgq.get_consumer_info($1) where consumer_name = $2",
            &[&queue, &old_wm],
        )
        .await
    })
    .await
}

/// Renames member `old` to `new` on every member. pgq_node has no function for it, so
/// this writes its tables the way its own functions do, one transaction a member: `new`
/// gets `old`'s location everywhere; the node's own `node_info` (and a root's own
/// `local_state` row) takes the new name; on its provider the subscription is renamed
/// (the worker's consumer and position kept, the `.old.watermark` consumer replaced by
/// `.new.watermark` at its tick); its subscribers' `local_state` rows name the new
/// provider; then `old`'s location goes everywhere. Worker (consumer) names are not
/// node names and stay. Refused unless every member not tagged dead answers, so no
/// member is left with the old name.
pub async fn rename_node(cf: &NodeConfig, old: &str, new: &str) -> Result<MemberReport> {
    strata_pgq::api::check_name("node", new)?;
    if old == new {
        return Err(LondisteError::BadInput(format!(
            "{old} is named {new} already"
        )));
    }
    let cascade = load(cf).await?;
    let queue = cascade.queue.as_str();
    let member = cascade.member(old)?;
    if cascade.members().iter().any(|m| m.name == new) {
        return Err(LondisteError::BadInput(format!(
            "{new} is a member already (see `members`)"
        )));
    }
    if member.tagged_dead {
        return Err(LondisteError::BadInput(format!(
            "{old} is tagged dead: a rename needs the node itself (tag-alive it once it answers)"
        )));
    }
    if let Some(m) = cascade
        .members()
        .iter()
        .find(|m| !m.tagged_dead && !m.alive())
    {
        return Err(LondisteError::State(format!(
            "{} cannot be reached ({}): every member not tagged dead must answer a rename, or it keeps the old name; nothing changed",
            m.name,
            m.error.as_deref().unwrap_or("no answer")
        )));
    }
    let old_client = cascade.client(old)?;
    let old_info = node::node_info(old_client, queue).await?;
    if old_info.node_name.as_deref() != Some(old) {
        return Err(LondisteError::State(format!(
            "the database at {old}'s location is node {}, not {old}: fix the location first (change-location)",
            old_info.node_name.unwrap_or_default()
        )));
    }
    let provider = old_info
        .provider_node
        .clone()
        .filter(|_| !old_info.is_root());
    if let Some(p) = &provider {
        let subscribed = node::subscribers(cascade.client(p)?, queue).await?;
        if !subscribed.iter().any(|s| s == old) {
            return Err(LondisteError::State(format!(
                "{old} is not subscribed on its provider {p}: nothing changed"
            )));
        }
    }
    let location = member.location.clone();
    let mut report = MemberReport::default();
    // 1. The new name is known everywhere, at the old location.
    for m in cascade.members() {
        if let Some(client) = &m.client {
            node::register_location(client, queue, new, &location, false).await?;
        }
    }
    report
        .done
        .push(format!("every live member knows {new} at {old}'s location"));
    // 2. The node takes its new name.
    in_tx(old_client, async {
        sql(
            old_client,
            "renaming the node",
            "update pgq_node.node_info set node_name = $2 where queue_name = $1",
            &[&queue, &new],
        )
        .await?;
        sql(
            old_client,
            "renaming the root's own provider",
            "update pgq_node.local_state set provider_node = $2 where queue_name = $1 and provider_node = $3",
            &[&queue, &new, &old],
        )
        .await
    })
    .await?;
    report
        .done
        .push(format!("{old} is named {new} in its own database"));
    // 3. Its subscription on its provider takes the new name, keeping the position.
    if let Some(p) = &provider {
        rename_subscription(cascade.client(p)?, queue, p, old, new).await?;
        report
            .done
            .push(format!("{p}: the subscription of {old} is {new}'s now"));
    }
    // 4. Its subscribers read from the new name; 5. the old name goes everywhere.
    for m in cascade.members().iter().filter(|m| m.name != old) {
        let Some(client) = &m.client else { continue };
        let consumers: Vec<String> = client
            .query(
                "select consumer_name from pgq_node.local_state where queue_name = $1 and provider_node = $2",
                &[&queue, &old],
            )
            .await
            .map_err(|e| LondisteError::sql(format!("reading the consumers of {}", m.name), e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for consumer in &consumers {
            node::checked(
                client,
                &format!("switching {consumer} on {} to {new}", m.name),
                "select ret_code, ret_note from pgq_node.change_consumer_provider($1, $2, $3)",
                &[&queue, consumer, &new],
            )
            .await?;
        }
        if !consumers.is_empty() {
            report.done.push(format!("{} reads from {new}", m.name));
        }
    }
    for m in cascade.members() {
        if let Some(client) = &m.client {
            sql(
                client,
                &format!("forgetting {old} on {}", m.name),
                "delete from pgq_node.node_location where queue_name = $1 and node_name = $2",
                &[&queue, &old],
            )
            .await?;
        }
    }
    report
        .done
        .push(format!("{old} is forgotten on every live member"));
    for m in cascade.members().iter().filter(|m| m.tagged_dead) {
        report.warnings.push(format!(
            "{}: tagged dead, not told; it still knows {old} (drop-node {old} with its ini file if it comes back)",
            m.name
        ));
    }
    if provider.is_some() {
        report.warnings.push(format!(
        "a Python worker of {new} must be restarted: until then it publishes its watermark to its provider under the old name, which is refused, so the provider's queue does not rotate (a strata worker follows the new name by itself)"
    ));
    }
    Ok(report)
}

/// Runs one statement, its result ignored.
async fn sql(
    client: &strata_pgclient::Client,
    what: &str,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<()> {
    client
        .execute(statement, params)
        .await
        .map(drop)
        .map_err(|e| LondisteError::sql(what, e))
}
