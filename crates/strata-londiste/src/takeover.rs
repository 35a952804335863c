//! `takeover OLD` run on a branch whose provider is the live root OLD: a switchover, step for
//! step as Python Londiste's `takeover_root`, with a check first that every table of the
//! new root is in sync (`ok`). The old root stops taking events (`demote_root` 1), makes a
//! last tick (2); this node catches up to it, pauses, becomes root (`promote_branch`), the
//! old root is subscribed to it at that tick and becomes its branch (3). Both workers
//! acknowledge each pause and resume, and switch roles on their own.

use crate::admin;
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, checked};
use crate::state::TableState;
use std::time::{Duration, Instant};
use strata_pg::Client;

/// Sets `paused` on `worker` of the node behind `client` and waits until the worker
/// acknowledges (its `uptodate` flag), so no batch is in flight after it returns.
async fn set_paused_and_wait(
    client: &Client,
    queue: &str,
    worker: &str,
    paused: bool,
    node_name: &str,
    timeout: Duration,
) -> Result<()> {
    node::set_paused(client, queue, worker, paused).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let state = node::consumer_state(client, queue, worker)
            .await?
            .ok_or_else(|| {
                LondisteError::State(format!("{worker} is not registered on {node_name}"))
            })?;
        if state.paused != paused {
            return Err(LondisteError::State(format!(
                "the pause flag of {node_name} changed under the takeover"
            )));
        }
        if state.uptodate {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LondisteError::State(format!(
                "the worker of {node_name} did not acknowledge {} within {} s: is it running?",
                if paused { "the pause" } else { "the resume" },
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn demote(old: &Client, queue: &str, step: i32, new_name: &str) -> Result<Option<i64>> {
    let row = old
        .query_one(
            "select ret_code, ret_note, last_tick from pgq_node.demote_root($1, $2, $3)",
            &[&queue, &step, &new_name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("demote_root step {step}"), e))?;
    let code: i32 = row.get(0);
    if code >= 300 {
        return Err(LondisteError::Refused {
            what: format!("demote_root step {step}"),
            code,
            note: row.get::<_, Option<String>>(1).unwrap_or_default(),
        });
    }
    Ok(row.get(2))
}

/// Makes this node (a branch) the root in place of the root `old_name`. With `dead_root`
/// the old root is not contacted: this branch is promoted at the tick it has, the old
/// root is marked dead, and events that never left it are lost.
pub async fn takeover(
    cf: &NodeConfig,
    old_name: &str,
    dead_root: bool,
    timeout: Duration,
) -> Result<String> {
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let new_name = info.node_name.clone().unwrap_or_default();
    let new_worker = info
        .worker_name
        .clone()
        .unwrap_or_else(|| cf.job_name.clone());
    if info.node_type.as_deref() != Some("branch") {
        return Err(LondisteError::BadInput(format!(
            "takeover runs on the branch that becomes root; {new_name} is a {}",
            info.node_type.unwrap_or_default()
        )));
    }
    if info.provider_node.as_deref() != Some(old_name) {
        return Err(LondisteError::BadInput(format!(
            "{old_name} is not this node's provider ({}): only a root switchover to its direct branch is supported",
            info.provider_node.unwrap_or_default()
        )));
    }
    let unsynced: Vec<String> = node::tables(&db, queue)
        .await?
        .into_iter()
        .filter(|t| t.local && t.state != TableState::Ok)
        .map(|t| format!("{} ({})", t.table_name, t.state))
        .collect();
    if !unsynced.is_empty() {
        return Err(LondisteError::BadInput(format!(
            "tables not in sync here, refusing to take over: {}",
            unsynced.join(", ")
        )));
    }
    let location = node::locations(&db, queue)
        .await?
        .into_iter()
        .find(|m| m.node_name == old_name)
        .ok_or_else(|| LondisteError::BadInput(format!("no member named {old_name}")))?;
    if dead_root {
        set_paused_and_wait(&db, queue, &new_worker, true, &new_name, timeout).await?;
        checked(
            &db,
            "promoting this branch",
            "select ret_code, ret_note from pgq_node.promote_branch($1)",
            &[&queue],
        )
        .await?;
        node::register_location(&db, queue, old_name, &location.node_location, true).await?;
        set_paused_and_wait(&db, queue, &new_worker, false, &new_name, timeout).await?;
        let tick = node::consumer_state(&db, queue, &new_worker)
            .await?
            .and_then(|s| s.completed_tick)
            .unwrap_or(0);
        return Ok(format!(
            "{new_name} is the root now (from tick {tick}); {old_name} is marked dead: events it made after that tick are lost"
        ));
    }
    let old = admin::connect(&location.node_location, "old root")
        .await
        .map_err(|e| {
            LondisteError::State(format!(
                "the old root {old_name} cannot be reached ({e}): use --dead-root"
            ))
        })?;
    let old_info = node::node_info(&old, queue).await?;
    if !old_info.is_root() {
        return Err(LondisteError::BadInput(format!(
            "{old_name} is not the root"
        )));
    }
    let old_worker = old_info.worker_name.clone().unwrap_or_default();

    set_paused_and_wait(&old, queue, &old_worker, true, old_name, timeout).await?;
    demote(&old, queue, 1, &new_name).await?;
    let last_tick = demote(&old, queue, 2, &new_name)
        .await?
        .ok_or_else(|| LondisteError::State("demote_root step 2 returned no tick".into()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let done = node::consumer_state(&db, queue, &new_worker)
            .await?
            .and_then(|s| s.completed_tick)
            .unwrap_or(0);
        if done >= last_tick {
            break;
        }
        if Instant::now() > deadline {
            return Err(LondisteError::State(format!(
                "this node did not catch up to the old root's last tick {last_tick} within {} s (at {done}); the old root stays read-only: finish with the same command",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set_paused_and_wait(&db, queue, &new_worker, true, &new_name, timeout).await?;
    checked(
        &db,
        "promoting this branch",
        "select ret_code, ret_note from pgq_node.promote_branch($1)",
        &[&queue],
    )
    .await?;
    node::register_subscriber(&db, queue, old_name, &old_worker, last_tick).await?;
    node::unregister_subscriber(&old, queue, &new_name).await?;
    set_paused_and_wait(&db, queue, &new_worker, false, &new_name, timeout).await?;
    demote(&old, queue, 3, &new_name).await?;
    set_paused_and_wait(&old, queue, &old_worker, false, old_name, timeout).await?;
    Ok(format!(
        "{new_name} is the root now; {old_name} is its branch (from tick {last_tick})"
    ))
}

/// Moves this node (a branch or leaf) to another provider `new_name` of the cascade, as
/// Python's `change-provider`: every table this node replicates must be `ok` on the new
/// provider; the worker is paused (and acknowledges), subscribed on the new provider at
/// the tick it has completed, switched over, unsubscribed from the old provider, resumed.
/// No event is lost or repeated: the new provider serves from exactly that tick.
pub async fn change_provider(cf: &NodeConfig, new_name: &str, timeout: Duration) -> Result<String> {
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let name = info.node_name.clone().unwrap_or_default();
    let worker = info
        .worker_name
        .clone()
        .unwrap_or_else(|| cf.job_name.clone());
    if info.is_root() {
        return Err(LondisteError::BadInput(format!(
            "{name} is the root: it has no provider to change"
        )));
    }
    let old_name = info.provider_node.clone().unwrap_or_default();
    if new_name == old_name {
        return Err(LondisteError::BadInput(format!(
            "{new_name} is this node's provider already"
        )));
    }
    if new_name == name {
        return Err(LondisteError::BadInput(
            "a node cannot be its own provider".into(),
        ));
    }
    let members = node::locations(&db, queue).await?;
    let location = |wanted: &str| {
        members
            .iter()
            .find(|m| m.node_name == wanted)
            .map(|m| m.node_location.clone())
    };
    let new_location = location(new_name).ok_or_else(|| {
        LondisteError::BadInput(format!(
            "{new_name} is not a member of this cascade (see `members`)"
        ))
    })?;
    let old_location = location(&old_name).ok_or_else(|| {
        LondisteError::State(format!("the current provider {old_name} has no location"))
    })?;
    let new = admin::connect(&new_location, "the new provider").await?;
    let new_info = node::node_info(&new, queue).await?;
    if new_info.node_type.as_deref() == Some("leaf") {
        return Err(LondisteError::BadInput(format!(
            "{new_name} is a leaf: a leaf has no queue to serve"
        )));
    }
    if new_info.provider_node.as_deref() == Some(name.as_str()) {
        return Err(LondisteError::BadInput(format!(
            "{new_name} reads from {name}: changing to it would make a loop"
        )));
    }
    let there: std::collections::HashMap<String, TableState> = node::tables(&new, queue)
        .await?
        .into_iter()
        .filter(|t| t.local || new_info.is_root())
        .map(|t| (t.table_name, t.state))
        .collect();
    let mine = node::tables(&db, queue).await?;
    let copying: Vec<String> = mine
        .iter()
        .filter(|t| t.local && t.state != TableState::Ok)
        .map(|t| format!("{} ({})", t.table_name, t.state))
        .collect();
    if !copying.is_empty() {
        return Err(LondisteError::BadInput(format!(
            "tables still copying here, change the provider once they are ok: {}",
            copying.join(", ")
        )));
    }
    let behind: Vec<String> = mine
        .into_iter()
        .filter(|t| t.local)
        .filter(|t| !new_info.is_root() && there.get(&t.table_name) != Some(&TableState::Ok))
        .map(|t| t.table_name)
        .collect();
    if !behind.is_empty() {
        return Err(LondisteError::BadInput(format!(
            "{new_name} does not have these tables in sync: {}",
            behind.join(", ")
        )));
    }
    set_paused_and_wait(&db, queue, &worker, true, &name, timeout).await?;
    let tick = node::consumer_state(&db, queue, &worker)
        .await?
        .and_then(|s| s.completed_tick)
        .ok_or_else(|| LondisteError::State(format!("{worker} has no completed tick")))?;
    let switched = async {
        node::register_subscriber(&new, queue, &name, &worker, tick).await?;
        checked(
            &db,
            &format!("switching {name} to {new_name}"),
            "select ret_code, ret_note from pgq_node.change_consumer_provider($1, $2, $3)",
            &[&queue, &worker, &new_name],
        )
        .await?;
        let old = admin::connect(&old_location, "the old provider").await?;
        node::unregister_subscriber(&old, queue, &name).await
    }
    .await;
    // Resume in any case: a failed step leaves the node reading from whichever provider
    // it is set to, which both still serve from its tick.
    let resumed = set_paused_and_wait(&db, queue, &worker, false, &name, timeout).await;
    switched?;
    resumed?;
    Ok(format!(
        "{name} reads from {new_name} now (was {old_name}), from tick {tick}"
    ))
}
