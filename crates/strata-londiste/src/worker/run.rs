//! A run of the worker: [`run`] retries with backoff, each run opens the node in its
//! current role (a root's loop, or a [`Replayer`] in the main role) and stops its copy
//! tasks when it ends.

use super::health::watch_for_stalls;
use super::pause::{check_node, stopping, NodeCheck, PauseWatch, Woken};
use super::replay::{open_consumer, open_target, Replayer};
use super::{retry_delay, ReplayStats, Role, WorkerOptions};
use crate::admin;
use crate::config::NodeConfig;
use crate::error::{describe_db, LondisteError, Result};
use crate::node;
use crate::state::TableState;
use std::sync::Arc;
use std::time::Instant;
use strata_pgclient::Client;
use strata_pgq::log::Log;
use tokio::sync::watch;

/// Runs the node's worker until `stop` turns true. Errors of a batch are saved in the
/// node (`status` shows them) and retried after a pause, unless `fail_fast`.
pub async fn run(
    cf: NodeConfig,
    options: WorkerOptions,
    stop: watch::Receiver<bool>,
) -> Result<ReplayStats> {
    let cf = Arc::new(cf);
    let log = options.log.clone();
    let mut totals = ReplayStats::default();
    let mut stop_wait = stop.clone();
    let mut watch = PauseWatch::new(&cf);
    let (mut failures, mut rounds_at_failure) = (0u32, 0u64);
    options.health.alive("starting");
    let _watchdog = (!cf.stall_timeout.is_zero()).then(|| {
        strata_pgq::ticker::AbortOnDrop(tokio::spawn(watch_for_stalls(
            options.health.clone(),
            options.metrics.clone(),
            log.clone(),
            cf.stall_timeout,
        )))
    });
    log.info(format!(
        "londiste worker {} started (queue {}, {})",
        cf.job_name,
        cf.queue_name,
        describe_db(None, &cf.db)
    ));
    loop {
        let result = run_once(
            cf.clone(),
            options.clone(),
            stop.clone(),
            &mut watch,
            &mut totals,
        )
        .await;
        match result {
            // The node changed its type (takeover): start over in the new role.
            Ok(true) => {
                log.info("the node changed its type or provider: starting over");
                continue;
            }
            Ok(false) => {
                log.info(format!("londiste worker {} stopped", cf.job_name));
                return Ok(totals);
            }
            Err(e) if options.fail_fast || options.crash_after_commit.is_some() => {
                log.error(format!("{e}"));
                return Err(e);
            }
            Err(e) if e.is_bad_input() => {
                log.error(format!("{e}"));
                return Err(e);
            }
            Err(e) => {
                // Failures in a row double the wait; a round that went through since the
                // last failure starts it over.
                let rounds = options.health.rounds();
                failures = if rounds != rounds_at_failure {
                    1
                } else {
                    failures + 1
                };
                rounds_at_failure = rounds;
                let delay = retry_delay(failures);
                let text = e.to_string();
                log.error(format!(
                    "{text}; retrying in {} s (failure {failures} in a row)",
                    delay.as_secs()
                ));
                options.health.failed(&text);
                options.metrics.failed(&text, delay);
                if let Ok(db) = admin::connect_local(&cf).await {
                    let _ = node::set_error(&db, &cf.queue_name, &cf.job_name, Some(&text)).await;
                }
                // A resume or a parked event (their NOTIFY) ends the wait at once.
                if watch.wait(delay, &mut stop_wait, None, None).await == Woken::Flag {
                    log.info("woken by a pause, resume or parked event: retrying now");
                }
                if stopping(&stop_wait) {
                    return Ok(totals);
                }
            }
        }
    }
}

/// One run of the worker in the node's current role; every error of it names the database
/// it came from (the target's, unless a step on the provider named the provider's).
async fn run_once(
    cf: Arc<NodeConfig>,
    options: WorkerOptions,
    stop: watch::Receiver<bool>,
    watch: &mut PauseWatch,
    totals: &mut ReplayStats,
) -> Result<bool> {
    let db_only = describe_db(None, &cf.db);
    let dst = open_target(&cf).await.map_err(|e| e.on(&db_only))?;
    let info = admin::require_node(&dst, &cf)
        .await
        .map_err(|e| e.on(&db_only))?;
    let at = describe_db(info.node_name.as_deref(), &cf.db);
    run_node(cf, options, stop, watch, totals, dst, info, &at)
        .await
        .map_err(|e| e.on(&at))
}

#[allow(clippy::too_many_arguments)]
async fn run_node(
    cf: Arc<NodeConfig>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
    watch: &mut PauseWatch,
    totals: &mut ReplayStats,
    dst: Client,
    info: node::NodeInfo,
    at: &str,
) -> Result<bool> {
    options.health.reached();
    let worker = info
        .worker_name
        .clone()
        .unwrap_or_else(|| cf.job_name.clone());
    if worker != cf.job_name {
        return Err(LondisteError::BadInput(format!(
            "the node's worker is {worker:?} but the ini's job_name is {:?}",
            cf.job_name
        )));
    }
    if info.is_root() {
        // A root makes events; its ticker (pgqd or strata pgq ticker) is all it needs. The
        // worker acknowledges pause/resume and notices a demotion (takeover).
        let mut global_published: Option<Instant> = None;
        warn_of_unfinished_copies(&dst, &cf, &options.log).await?;
        options.metrics.became_root();
        while !stopping(&stop) {
            // The tables' states as the node has them now (a takeover may have changed
            // them under a copy this worker ran as a branch).
            let tables = node::tables(&dst, &cf.queue_name).await?;
            options.metrics.set_tables(
                tables
                    .iter()
                    .filter(|t| t.local)
                    .map(|t| (t.table_name.as_str(), t.state.to_string())),
            );
            // The global watermark (the lowest tick any node still needs) goes down the
            // cascade as a `pgq.global-watermark` event, so every node's queue rotates.
            if global_published.is_none_or(|t| t.elapsed() >= cf.global_wm_publish_period) {
                dst.query_one(
                    "select ret_code from pgq_node.set_global_watermark($1, null)",
                    &[&cf.queue_name],
                )
                .await
                .map_err(|e| LondisteError::sql("publishing the global watermark", e))?;
                global_published = Some(Instant::now());
            }
            let check = check_node(&dst, &cf, &worker, "root", None).await?;
            options.metrics.set_paused(check == NodeCheck::Paused);
            match check {
                NodeCheck::RoleChanged => return Ok(true),
                // Publishes sequence values ahead of use (`londiste.update-seq` events),
                // as Python's root worker does on every loop.
                NodeCheck::Run => {
                    node::checked(
                        &dst,
                        "publishing sequence values",
                        "select ret_code, ret_note from londiste.root_check_seqs($1)",
                        &[&cf.queue_name],
                    )
                    .await?;
                }
                NodeCheck::Paused => {}
            }
            options.health.connected();
            let d = cf.loop_delay;
            watch.wait(d, &mut stop, None, None).await;
        }
        return Ok(false);
    }
    let branch = info.node_type.as_deref() == Some("branch");
    let event_seq = if branch {
        crate::branch::last_tick(&dst, &cf.queue_name).await?.1
    } else {
        0
    };
    let location = info
        .provider_location
        .clone()
        .ok_or_else(|| LondisteError::State("the node has no provider location".into()))?;
    // A paused worker acknowledges without its provider (a takeover from a dead root
    // pauses a worker whose provider is gone).
    let node_type = info.node_type.clone().unwrap_or_default();
    let provider_at = describe_db(info.provider_node.as_deref(), &location);
    loop {
        let check = check_node(&dst, &cf, &worker, &node_type, Some(&location)).await?;
        options.metrics.set_paused(check == NodeCheck::Paused);
        match check {
            NodeCheck::RoleChanged => return Ok(true),
            NodeCheck::Paused if !stopping(&stop) => {
                let d = cf.loop_delay;
                watch
                    .wait(d, &mut stop, Some((&dst, worker.as_str(), true)), None)
                    .await;
            }
            NodeCheck::Paused => return Ok(false),
            NodeCheck::Run => break,
        }
    }
    let consumer = open_consumer(&cf, &location, &worker)
        .await
        .map_err(|e| e.on(&provider_at))?;
    options.log.info(format!(
        "replaying from {provider_at} into {at} as {}",
        node_type
    ));
    let (copies_stop, _forward) = CopiesStop::new(&stop);
    let mut r = Replayer::new(
        cf.clone(),
        Role::Main,
        worker,
        dst,
        consumer,
        location,
        provider_at,
        options,
        stop.clone(),
        copies_stop.receiver(),
    );
    r.launch_copy = Some(super::copy::start);
    r.branch = branch;
    r.event_seq = event_seq;
    r.node_type = info.node_type.clone().unwrap_or_default();
    r.node_name = info.node_name.clone().unwrap_or_default();
    r.watch = Some(std::mem::replace(watch, PauseWatch::new(&cf)));
    let result = r.run_loop().await;
    if let Some(w) = r.watch.take() {
        *watch = w;
    }
    stop_copies(&mut r, &copies_stop).await;
    add(totals, &r.stats);
    result
}

/// The stop flag of one run's copy tasks: set when the worker stops, and also when the
/// main loop ends for any other reason (a new role or provider, an error). A copy task
/// in catch-up waits for the main loop's hand-over, so the main loop must never wait
/// for a copy task it has not stopped.
struct CopiesStop(Arc<watch::Sender<bool>>);

impl CopiesStop {
    /// A flag that follows `stop` (a dropped `stop` sender stops too), and the task that
    /// forwards it, aborted on drop.
    fn new(stop: &watch::Receiver<bool>) -> (CopiesStop, strata_pgq::ticker::AbortOnDrop) {
        let tx = Arc::new(watch::channel(false).0);
        let (forward_tx, mut outer) = (tx.clone(), stop.clone());
        let forward = tokio::spawn(async move {
            let _ = outer.wait_for(|s| *s).await;
            let _ = forward_tx.send(true);
        });
        (CopiesStop(tx), strata_pgq::ticker::AbortOnDrop(forward))
    }

    fn receiver(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// Stops the run's copy tasks and waits for them: a task mid-COPY rolls it back (the
/// table waits for a new copy), one in catch-up keeps its state for the next run.
async fn stop_copies(r: &mut Replayer, copies_stop: &CopiesStop) {
    if r.copies.is_empty() {
        return;
    }
    copies_stop.stop();
    r.options.health.alive("stopping the copy tasks");
    for (table, task) in r.copies.drain() {
        match task.await {
            Ok(Err(e)) => r.options.log.info(format!("copy of {table} stopped: {e}")),
            Err(e) => r
                .options
                .log
                .warn(format!("copy of {table}: task failed: {e}")),
            Ok(Ok(())) => r.options.log.info(format!("copy of {table} stopped")),
        }
    }
}

/// A root replays nothing, so a table it was still copying when it became root (Python's
/// `takeover` cannot be refused mid-copy) stays as the copy left it: said once, loudly,
/// so the operator compares and repairs it rather than trusting its rows.
async fn warn_of_unfinished_copies(dst: &Client, cf: &NodeConfig, log: &Log) -> Result<()> {
    let unfinished: Vec<String> = node::tables(dst, &cf.queue_name)
        .await?
        .into_iter()
        .filter(|t| t.local && t.state != TableState::Ok)
        .map(|t| match t.state {
            TableState::Missing => format!("{} (not copied)", t.table_name),
            state => format!("{} ({state})", t.table_name),
        })
        .collect();
    if !unfinished.is_empty() {
        log.warn(format!(
            "this root holds tables whose copy did not finish, their rows may be incomplete: {} \
             (compare them with another node and repair them)",
            unfinished.join(", ")
        ));
    }
    Ok(())
}

fn add(to: &mut ReplayStats, from: &ReplayStats) {
    to.batches += from.batches;
    to.batches_skipped += from.batches_skipped;
    to.events += from.events;
    to.statements += from.statements;
    to.round_trips += from.round_trips;
}
