//! Changes of the cascade's shape, run on the node that gains the role: `takeover OLD`
//! (switchover from a live root or branch, failover from a dead one) and
//! `change-provider`. All of them move workers between providers with one primitive,
//! [`move_node`]: pause the worker and wait for its acknowledgement, subscribe it on the
//! new provider at the tick it completed (once the new provider has that tick), switch,
//! resume, unsubscribe from the old provider. No event is lost or repeated, because the
//! new provider serves exactly from that tick.
//!
//! Python Londiste's steps are kept (demote_root 1-2, catch-up, promote_branch,
//! demote_root 3; a `OLD.gravestone` subscription on the new root after a failover, which
//! `resurrect` uses), with what it misses: tables must be in sync first, and a new root
//! must replicate every table of the set (or be told to go on without); in a failover
//! the new root first catches up from the most advanced surviving branch (Python moves
//! the siblings away before looking for one); a sibling that is ahead of the new root
//! is not moved onto a tick it never saw but reported.

use crate::admin;
use crate::cascade::{self, Cascade};
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, checked};
use crate::state::TableState;
use serde::Serialize;
use std::time::{Duration, Instant};
use strata_pgclient::Client;

/// Sets `paused` on `worker` of the node behind `client` and waits until the worker
/// acknowledges (its `uptodate` flag), so no batch is in flight after it returns.
pub(crate) async fn set_paused_and_wait(
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

/// The consumer name that holds a dead root's place on the new root after a failover:
/// it keeps the new root's events from the failover tick, and `resurrect` finds the
/// failover tick there. Python Londiste's name, so either tool can resurrect.
pub fn gravestone(node_name: &str) -> String {
    format!("{node_name}.gravestone")
}

/// Moves the worker of member `node` to read from member `new_provider`; returns the
/// tick it switched at. Both must answer and `node`'s worker must run (it acknowledges
/// the pause). When the new provider does not have the tick yet (it is behind), this
/// waits for it to get there.
pub async fn move_node(
    cascade: &Cascade,
    node_name: &str,
    new_provider: &str,
    timeout: Duration,
) -> Result<i64> {
    let queue = cascade.queue.as_str();
    if node_name == new_provider {
        return Err(LondisteError::BadInput(
            "a node cannot be its own provider".into(),
        ));
    }
    let client = cascade.client(node_name)?;
    let info = node::node_info(client, queue).await?;
    let worker = info
        .worker_name
        .clone()
        .ok_or_else(|| LondisteError::State(format!("{node_name} has no worker registered")))?;
    let old_provider = info.provider_node.clone();
    if old_provider.as_deref() == Some(new_provider) {
        return Ok(info.worker_last_tick.unwrap_or(0));
    }
    let target = cascade.client(new_provider)?;
    let target_info = node::node_info(target, queue).await?;
    if target_info.node_type.as_deref() == Some("leaf") {
        return Err(LondisteError::BadInput(format!(
            "{new_provider} is a leaf: a leaf has no queue to serve"
        )));
    }
    let location = cascade.member(node_name)?.location.clone();
    set_paused_and_wait(client, queue, &worker, true, node_name, timeout).await?;
    let tick = node::consumer_state(client, queue, &worker)
        .await?
        .and_then(|s| s.completed_tick)
        .ok_or_else(|| LondisteError::State(format!("{worker} has no completed tick")))?;
    let switched = async {
        cascade::wait_for_tick(target, queue, new_provider, tick, timeout).await?;
        node::register_location(target, queue, node_name, &location, false).await?;
        node::register_subscriber(target, queue, node_name, &worker, tick).await?;
        checked(
            client,
            &format!("switching {node_name} to {new_provider}"),
            "select ret_code, ret_note from pgq_node.change_consumer_provider($1, $2, $3)",
            &[&queue, &worker, &new_provider],
        )
        .await
    }
    .await;
    // Resume in any case: a failed step leaves the node reading from whichever provider
    // it is set to, which both still serve from its tick.
    let resumed = set_paused_and_wait(client, queue, &worker, false, node_name, timeout).await;
    switched?;
    resumed?;
    if let Some(old) = old_provider.filter(|o| cascade.alive(o)) {
        node::unregister_subscriber(cascade.client(&old)?, queue, node_name).await?;
    }
    Ok(tick)
}

/// How the old node of a takeover is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldNode {
    /// It answers: a switchover, nothing is lost.
    Live,
    /// The root is gone: failover, events that never left it are lost.
    DeadRoot,
    /// A branch is gone: its subscribers move up to its provider (or to this node).
    DeadBranch,
}

/// What a takeover did and what needs the operator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TakeoverReport {
    /// The steps done, one line each.
    pub done: Vec<String>,
    /// Things to know (a dead node still holding a subscription, lost events).
    pub warnings: Vec<String>,
    /// Nodes that could not be moved, with why: they still read from the old node.
    pub stranded: Vec<String>,
    /// Tables of the set the new root does not replicate (taken over with
    /// `--allow-missing-tables`): nothing feeds them any more.
    pub missing_tables: Vec<String>,
}

/// Makes this node take the place of `old_name`: the root's (it must be a branch of the
/// root) or a branch's (it must read from that branch, or be a branch to take its
/// subscribers). With `all` (implied for a dead node) the other subscribers of the old
/// node move to this node. Taking the root's role is refused while this node lacks
/// tables of the set, unless `allow_missing_tables` (then the report names them).
pub async fn takeover(
    cf: &NodeConfig,
    old_name: &str,
    old: OldNode,
    all: bool,
    allow_missing_tables: bool,
    timeout: Duration,
) -> Result<TakeoverReport> {
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let new_name = info.node_name.clone().unwrap_or_default();
    if old_name == new_name {
        return Err(LondisteError::BadInput(
            "a node cannot take over from itself: run takeover on the node that takes the role"
                .into(),
        ));
    }
    let mut cascade =
        Cascade::load(db, queue, &new_name, timeout.min(Duration::from_secs(10))).await?;
    cascade.member(old_name)?;
    let old_type = match old {
        OldNode::DeadRoot => "root".to_string(),
        OldNode::DeadBranch => "branch".to_string(),
        OldNode::Live => {
            let m = cascade.member(old_name)?;
            match (&m.client, m.node_type()) {
                (Some(_), Some(t)) => t.to_string(),
                _ => {
                    return Err(LondisteError::State(format!(
                        "{old_name} cannot be reached ({}): use --dead-root or --dead-branch",
                        m.error.as_deref().unwrap_or("no answer")
                    )))
                }
            }
        }
    };
    // Every check before the first change: a refused takeover changes nothing.
    require_in_sync(cascade.local_client(), queue).await?;
    let kind = info.node_type.clone().unwrap_or_default();
    match old_type.as_str() {
        "root" if kind != "branch" => {
            return Err(LondisteError::BadInput(format!(
                "the root's role goes to a branch; {new_name} is a {kind}"
            )))
        }
        "root" if info.provider_node.as_deref() != Some(old_name) => {
            return Err(LondisteError::BadInput(format!(
                "{old_name} is not this node's provider ({}): the root's role goes to one of its direct branches",
                info.provider_node.clone().unwrap_or_default()
            )))
        }
        "branch" if old == OldNode::Live && kind != "branch" => {
            return Err(LondisteError::BadInput(format!(
                "{new_name} is a {kind}: only a branch can take a live branch's place (its subscribers need a queue)"
            )))
        }
        "root" | "branch" => {}
        other => {
            return Err(LondisteError::BadInput(format!(
                "{old_name} is a {other}: a leaf has no role to take over (use change-provider on it)"
            )))
        }
    }
    let mut report = TakeoverReport::default();
    let (missing, role, lacking) = if old_type == "root" {
        (
            missing_from_new_root(&cascade, old_name, old).await?,
            "the new root would lack them",
            format!("the new root {new_name}"),
        )
    } else {
        let moving = all || old != OldNode::Live;
        (
            missing_from_new_branch(&cascade, old_name, old, moving, kind == "branch").await?,
            "the nodes that will read from it replicate them",
            new_name.clone(),
        )
    };
    if !missing.is_empty() {
        if !allow_missing_tables {
            return Err(LondisteError::BadInput(format!(
                "refusing to take over: {new_name} does not replicate these tables, {role}: {} (add-table them here and wait-sync, or give --allow-missing-tables to go on without them)",
                missing.join(", ")
            )));
        }
        report.warnings.push(format!(
            "these tables will be missing from {lacking}: {}; nothing feeds them any more (their subscribers keep their rows but get no changes): add-table them on {new_name} once they are there, or remove-table them on the subscribers",
            missing.join(", ")
        ));
        report.missing_tables = missing;
    }
    if old != OldNode::Live {
        cascade.forget(old_name, "declared dead by takeover");
        let untold = cascade.tag(old_name, true).await?;
        report.done.push(format!("{old_name} tagged dead"));
        if !untold.is_empty() {
            report.warnings.push(format!(
                "could not tag {old_name} dead on {} (unreachable): run tag-dead there later",
                untold.join(", ")
            ));
        }
    }
    match old_type.as_str() {
        "root" => take_root(&cascade, &info, old_name, old, &mut report, timeout).await?,
        _ => take_branch(&cascade, &info, old_name, old, &mut report, timeout).await?,
    }
    if all || old != OldNode::Live {
        move_subscribers(&cascade, old_name, &old_type, old, &mut report, timeout).await?;
    }
    Ok(report)
}

/// Refuses a takeover by a node whose tables are not all in sync.
async fn require_in_sync(db: &Client, queue: &str) -> Result<()> {
    let unsynced: Vec<String> = node::tables(db, queue)
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
    Ok(())
}

/// The tables of the set that this node does not replicate, which a new root made of
/// it would lack, in name order. The set is the old root's own list when it answers;
/// for a dead root it is what is known without it: this node's view of the set (every
/// table its provider announced, replicated here or not) and the views of every other
/// member that answers (a sibling may have seen a table added after this node's last
/// batch).
async fn missing_from_new_root(
    cascade: &Cascade,
    old_name: &str,
    old: OldNode,
) -> Result<Vec<String>> {
    let queue = cascade.queue.as_str();
    let mine = node::tables(cascade.local_client(), queue).await?;
    let mut set = std::collections::BTreeSet::new();
    if old == OldNode::Live {
        for t in node::tables(cascade.client(old_name)?, queue).await? {
            set.insert(t.table_name);
        }
    } else {
        set.extend(mine.iter().map(|t| t.table_name.clone()));
        for m in cascade.members() {
            let Some(client) = m.client.as_ref().filter(|_| m.name != cascade.local) else {
                continue;
            };
            if m.name == old_name {
                continue;
            }
            for t in node::tables(client, queue).await? {
                set.insert(t.table_name);
            }
        }
    }
    let here: std::collections::HashSet<&str> = mine
        .iter()
        .filter(|t| t.local)
        .map(|t| t.table_name.as_str())
        .collect();
    Ok(set
        .into_iter()
        .filter(|t| !here.contains(t.as_str()))
        .collect())
}

/// The tables a branch takeover would leave unfed: those replicated by a node that will
/// read from this node afterwards (the old branch itself when it is live, and its other
/// subscribers when they move here) but not by this node. Each is named with the nodes
/// that need it. Subscribers that do not answer are not asked (a dead branch's are
/// asked directly, never the dead branch).
async fn missing_from_new_branch(
    cascade: &Cascade,
    old_name: &str,
    old: OldNode,
    subscribers_move: bool,
    this_is_a_branch: bool,
) -> Result<Vec<String>> {
    let queue = cascade.queue.as_str();
    let mut readers = Vec::new();
    if old == OldNode::Live {
        readers.push(old_name.to_string());
    }
    // A leaf taking a dead branch's place sends its siblings to the branch's provider.
    if subscribers_move && this_is_a_branch {
        readers.extend(
            cascade
                .subscribers_of(old_name)
                .into_iter()
                .filter(|s| *s != cascade.local),
        );
    }
    let here: std::collections::HashSet<String> = node::tables(cascade.local_client(), queue)
        .await?
        .into_iter()
        .filter(|t| t.local)
        .map(|t| t.table_name)
        .collect();
    let mut needed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for reader in readers {
        let Some(client) = cascade.member(&reader)?.client.as_ref() else {
            continue;
        };
        for t in node::tables(client, queue).await? {
            if t.local && !here.contains(&t.table_name) {
                needed.entry(t.table_name).or_default().push(reader.clone());
            }
        }
    }
    Ok(needed
        .into_iter()
        .map(|(table, nodes)| format!("{table} (replicated by {})", nodes.join(", ")))
        .collect())
}

/// The root's role moves to this branch.
async fn take_root(
    cascade: &Cascade,
    info: &node::NodeInfo,
    old_name: &str,
    old: OldNode,
    report: &mut TakeoverReport,
    timeout: Duration,
) -> Result<()> {
    let queue = cascade.queue.as_str();
    let new_name = cascade.local.as_str();
    let db = cascade.local_client();
    let new_worker = info.worker_name.clone().unwrap_or_default();
    if old != OldNode::Live {
        return fail_over_root(cascade, old_name, &new_worker, report, timeout).await;
    }
    let old_client = cascade.client(old_name)?;
    let old_info = node::node_info(old_client, queue).await?;
    if !old_info.is_root() {
        return Err(LondisteError::BadInput(format!(
            "{old_name} is not the root"
        )));
    }
    let old_worker = old_info.worker_name.clone().unwrap_or_default();
    set_paused_and_wait(old_client, queue, &old_worker, true, old_name, timeout).await?;
    demote(old_client, queue, 1, new_name).await?;
    let last_tick = demote(old_client, queue, 2, new_name)
        .await?
        .ok_or_else(|| LondisteError::State("demote_root step 2 returned no tick".into()))?;
    cascade::wait_for_tick(db, queue, new_name, last_tick, timeout)
        .await
        .map_err(|e| {
            LondisteError::State(format!(
                "{e}; the old root stays read-only: finish with the same command"
            ))
        })?;
    set_paused_and_wait(db, queue, &new_worker, true, new_name, timeout).await?;
    checked(
        db,
        "promoting this branch",
        "select ret_code, ret_note from pgq_node.promote_branch($1)",
        &[&queue],
    )
    .await?;
    node::register_subscriber(db, queue, old_name, &old_worker, last_tick).await?;
    node::unregister_subscriber(old_client, queue, new_name).await?;
    set_paused_and_wait(db, queue, &new_worker, false, new_name, timeout).await?;
    demote(old_client, queue, 3, new_name).await?;
    set_paused_and_wait(old_client, queue, &old_worker, false, old_name, timeout).await?;
    report.done.push(format!(
        "{new_name} is the root now; {old_name} is its branch (from tick {last_tick})"
    ));
    Ok(())
}

/// Failover from a dead root: catch up from the most advanced surviving branch, promote,
/// keep the new root's events from the failover tick under the old root's gravestone.
async fn fail_over_root(
    cascade: &Cascade,
    old_name: &str,
    new_worker: &str,
    report: &mut TakeoverReport,
    timeout: Duration,
) -> Result<()> {
    let queue = cascade.queue.as_str();
    let new_name = cascade.local.as_str();
    let db = cascade.local_client();
    let mine = node::node_info(db, queue)
        .await?
        .worker_last_tick
        .unwrap_or(0);
    let ahead = cascade
        .subscribers_of(old_name)
        .into_iter()
        .filter(|n| n != new_name)
        .filter_map(|n| {
            let m = cascade.member(&n).ok()?;
            (m.node_type() == Some("branch")).then(|| (m.last_tick().unwrap_or(0), n))
        })
        .filter(|(tick, _)| *tick > mine)
        .max();
    let mut provider = old_name.to_string();
    if let Some((tick, other)) = ahead {
        move_node(cascade, new_name, &other, timeout).await?;
        cascade::wait_for_tick(db, queue, new_name, tick, timeout).await?;
        report.done.push(format!(
            "caught up from {other} to tick {tick} (it was ahead of {new_name}'s {mine})"
        ));
        provider = other;
    }
    set_paused_and_wait(db, queue, new_worker, true, new_name, timeout).await?;
    let last_tick = node::consumer_state(db, queue, new_worker)
        .await?
        .and_then(|s| s.completed_tick)
        .unwrap_or(0);
    checked(
        db,
        "promoting this branch",
        "select ret_code, ret_note from pgq_node.promote_branch($1)",
        &[&queue],
    )
    .await?;
    node::register_subscriber(db, queue, old_name, &gravestone(old_name), last_tick).await?;
    if provider != old_name {
        node::unregister_subscriber(cascade.client(&provider)?, queue, new_name).await?;
    }
    set_paused_and_wait(db, queue, new_worker, false, new_name, timeout).await?;
    report.done.push(format!(
        "{new_name} is the root now (from tick {last_tick})"
    ));
    report.warnings.push(format!(
        "events {old_name} made after tick {last_tick} are lost; {new_name} keeps its events from that tick for `resurrect` on {old_name} (or drop-node {old_name} if it will not come back)"
    ));
    Ok(())
}

/// A branch's role moves to this node: this node reads from the branch's provider, and
/// a live old branch becomes this node's subscriber.
async fn take_branch(
    cascade: &Cascade,
    info: &node::NodeInfo,
    old_name: &str,
    old: OldNode,
    report: &mut TakeoverReport,
    timeout: Duration,
) -> Result<()> {
    let new_name = cascade.local.as_str();
    let upstream = cascade.provider_of(old_name).await?;
    if info.provider_node.as_deref() == Some(old_name) {
        let tick = move_node(cascade, new_name, &upstream, timeout).await?;
        report.done.push(format!(
            "{new_name} reads from {upstream} now (was {old_name}), from tick {tick}"
        ));
    }
    if old == OldNode::Live {
        let tick = move_node(cascade, old_name, new_name, timeout).await?;
        report.done.push(format!(
            "{old_name} reads from {new_name} now, from tick {tick}"
        ));
    } else {
        report.warnings.push(format!(
            "{old_name} is still subscribed on {upstream}, which keeps events for it: drop-node {old_name} once it will not come back"
        ));
    }
    Ok(())
}

/// Moves the other subscribers of the old node to this node (or, when this node is a
/// leaf, to the old node's provider). A subscriber ahead of its new provider (it
/// applied events the new provider never got) is not moved but reported.
async fn move_subscribers(
    cascade: &Cascade,
    old_name: &str,
    old_type: &str,
    old: OldNode,
    report: &mut TakeoverReport,
    timeout: Duration,
) -> Result<()> {
    let queue = cascade.queue.as_str();
    let new_name = cascade.local.as_str();
    let local = node::node_info(cascade.local_client(), queue).await?;
    let target = if local.node_type.as_deref() == Some("leaf") {
        if old_type == "root" {
            return Ok(());
        }
        cascade.provider_of(old_name).await?
    } else {
        new_name.to_string()
    };
    let target_tick = node::node_info(cascade.client(&target)?, queue)
        .await?
        .worker_last_tick
        .unwrap_or(0);
    for sub in cascade.subscribers_of(old_name) {
        if sub == new_name {
            continue;
        }
        let sub_tick = cascade.member(&sub)?.last_tick().unwrap_or(0);
        // A dead root's subscriber ahead of the new root applied events the cascade
        // lost: moving it would replay other events under the same tick ids.
        if old == OldNode::DeadRoot && sub_tick > target_tick {
            report.stranded.push(format!(
                "{sub} is at tick {sub_tick}, ahead of {target} ({target_tick}): it holds changes the new root lost; not moved (drop-node {sub} and create it again, or resync its tables after change-provider)"
            ));
            continue;
        }
        match move_node(cascade, &sub, &target, timeout).await {
            Ok(tick) => report
                .done
                .push(format!("{sub} reads from {target} now, from tick {tick}")),
            Err(e) => report
                .stranded
                .push(format!("{sub} still reads from {old_name}: {e}")),
        }
    }
    Ok(())
}

/// Moves this node (a branch or leaf) to another provider `new_name` of the cascade, as
/// Python's `change-provider`: every table this node replicates must be `ok` on the new
/// provider, which must not be a leaf nor read from this node; then [`move_node`].
pub async fn change_provider(cf: &NodeConfig, new_name: &str, timeout: Duration) -> Result<String> {
    let queue = cf.queue_name.as_str();
    let db = admin::connect_local(cf).await?;
    let info = admin::require_node(&db, cf).await?;
    let name = info.node_name.clone().unwrap_or_default();
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
    let cascade = Cascade::load(db, queue, &name, timeout.min(Duration::from_secs(10))).await?;
    cascade.member(new_name)?;
    let new = cascade.client(new_name)?;
    let new_info = node::node_info(new, queue).await?;
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
    let there: std::collections::HashMap<String, TableState> = node::tables(new, queue)
        .await?
        .into_iter()
        .filter(|t| t.local || new_info.is_root())
        .map(|t| (t.table_name, t.state))
        .collect();
    let mine = node::tables(cascade.local_client(), queue).await?;
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
    if !cascade.alive(&old_name) {
        return Err(LondisteError::State(format!(
            "the current provider {old_name} cannot be reached: use takeover {old_name} --dead-branch (or --dead-root)"
        )));
    }
    let tick = move_node(&cascade, &name, new_name, timeout).await?;
    Ok(format!(
        "{name} reads from {new_name} now (was {old_name}), from tick {tick}"
    ))
}
