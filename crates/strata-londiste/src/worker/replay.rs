//! The [`Replayer`]: one consumer's batch loop on the target, in the main role or a copy
//! task's. Before each batch it runs the table state machine (hand-overs, new copies);
//! the batch itself is applied in `apply`.

use super::crashes::CopyPoint;
use super::fkeys;
use super::pause::{check_node, pause, stopping, NodeCheck, PauseWatch};
use super::{retry_delay, ReplayStats, Role, WorkerOptions};
use crate::admin;
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node::{self, TableInfo};
use crate::snapshot::Snapshot;
use crate::state::TableState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_pgclient::Client;
use strata_pgq::api::Batch;
use strata_pgq::{Consumer, ConsumerOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts the copy task of a table (`copy::start`), given to the main role's replay loop
/// by the worker: the copy task runs this loop too, so the loop does not name the copy
/// module (the two would depend on each other).
pub(crate) type CopyLauncher = fn(
    Arc<NodeConfig>,
    String,
    String,
    WorkerOptions,
    watch::Receiver<bool>,
) -> futures::future::BoxFuture<'static, Result<()>>;

/// What the table-state step decided before a batch.
enum SyncStep {
    /// Apply the batch.
    Apply(HashMap<String, (TableInfo, Option<Snapshot>)>),
    /// This copy task is done (table ok, or gone): leave the batch unapplied.
    Exit,
}

/// One consumer's batch loop on the target.
pub(crate) struct Replayer {
    pub(crate) cf: Arc<NodeConfig>,
    pub(crate) role: Role,
    pub(crate) name: String,
    pub(crate) dst: Client,
    pub(crate) consumer: Consumer,
    pub(crate) provider_location: String,
    pub(crate) idle: bool,
    pub(crate) stats: ReplayStats,
    pub(crate) options: WorkerOptions,
    pub(crate) committed_with_rows: u64,
    /// Main role: the running copy tasks by table.
    pub(crate) copies: HashMap<String, JoinHandle<Result<()>>>,
    /// Main role on a branch: copy events into the local queue and make its ticks.
    pub(crate) branch: bool,
    /// The highest event id copied into the branch queue (the ticks' event sequence).
    pub(crate) event_seq: i64,
    /// Main role: the node type the worker started with (a change restarts it).
    pub(crate) node_type: String,
    /// Main role: the node's name (its subscription on the provider).
    pub(crate) node_name: String,
    /// Main role: when the local watermark last went to the provider.
    pub(crate) wm_published: Option<Instant>,
    /// Main role: LISTENs for the provider's tick announcements (see `wait_for_tick`).
    pub(crate) tick_waiter: Option<strata_pgq::conn::TickWaiter>,
    pub(crate) waiter_tried: bool,
    pub(crate) stop: watch::Receiver<bool>,
    /// How errors name the provider (`node X (db ...)`).
    pub(crate) provider_at: String,
    /// Whether `strata_londiste.parked_events` was seen (then read before every batch).
    pub(crate) parked_table: bool,
    /// Apply event by event (each statement sent alone), so a failing statement names its
    /// event: after a batch failed in the buffered mode, until the batch goes through.
    pub(crate) careful: bool,
    /// Main role: the wake-ups of its waits (pauses, resumes, parked events).
    pub(crate) watch: Option<PauseWatch>,
    /// Main role: tables another program's live copy process holds (their copy pidfile),
    /// with its pid, so the wait is logged once, not before every batch.
    pub(crate) foreign_copies: HashMap<String, i32>,
    /// Main role: the stop flag of its copy tasks (see [`CopiesStop`](super::run::CopiesStop)).
    pub(crate) copies_stop: watch::Receiver<bool>,
    /// How the main role starts copy tasks (none in a copy task's loop).
    pub(crate) launch_copy: Option<CopyLauncher>,
    /// Main role: copy tasks that failed in a row by table, and when the next may start
    /// ([`retry_delay`]), so a copy that keeps failing is not restarted in a tight loop.
    pub(crate) copy_retries: HashMap<String, (u32, Instant)>,
}

/// Opens the target connection the way the replay needs it: triggers and rules of the
/// target do not fire (`session_replication_role = replica`), literals are standard.
pub(crate) async fn open_target(cf: &NodeConfig) -> Result<Client> {
    let dst = admin::connect_local(cf).await?;
    dst.batch_execute(
        "set session_replication_role = replica; set standard_conforming_strings = on",
    )
    .await
    .map_err(|e| {
        LondisteError::sql(
            "preparing the target session (replica role needs a superuser)",
            e,
        )
    })?;
    Ok(dst)
}

/// The provider's queue, read by `name`.
pub(crate) async fn open_consumer(cf: &NodeConfig, location: &str, name: &str) -> Result<Consumer> {
    let provider = admin::connect(location, "provider").await?;
    Ok(Consumer::new(
        provider,
        &cf.queue_name,
        name,
        ConsumerOptions {
            byte_cap: cf.batch_byte_cap,
            ..ConsumerOptions::default()
        },
    )?)
}

impl Replayer {
    /// A consumer's loop as it starts: nothing applied, no copy running, the waits and
    /// the branch's tick making off (the main role sets what it needs of them).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cf: Arc<NodeConfig>,
        role: Role,
        name: String,
        dst: Client,
        consumer: Consumer,
        provider_location: String,
        provider_at: String,
        options: WorkerOptions,
        stop: watch::Receiver<bool>,
        copies_stop: watch::Receiver<bool>,
    ) -> Replayer {
        Replayer {
            cf,
            role,
            name,
            dst,
            consumer,
            provider_location,
            idle: false,
            stats: ReplayStats::default(),
            options,
            committed_with_rows: 0,
            copies: HashMap::new(),
            branch: false,
            event_seq: 0,
            node_type: String::new(),
            node_name: String::new(),
            wm_published: None,
            tick_waiter: None,
            waiter_tried: false,
            stop,
            provider_at,
            parked_table: false,
            careful: false,
            watch: None,
            foreign_copies: HashMap::new(),
            copies_stop,
            copy_retries: HashMap::new(),
            launch_copy: None,
        }
    }

    /// Batches until stopped (or, for a copy task, until the hand-over is done); `true`
    /// when the node changed its type and the worker must start over.
    pub(crate) async fn run_loop(&mut self) -> Result<bool> {
        while !stopping(&self.stop) {
            if self.role == Role::Main {
                self.reap_copies();
                match check_node(
                    &self.dst,
                    &self.cf,
                    &self.name,
                    &self.node_type,
                    Some(&self.provider_location),
                )
                .await?
                {
                    NodeCheck::RoleChanged => return Ok(true),
                    NodeCheck::Paused => {
                        if !self.paused_seen() {
                            self.options.log.info("paused");
                        }
                        self.options.metrics.set_paused(true);
                        self.options.health.alive("paused");
                        let d = self.cf.loop_delay;
                        match self.watch.as_mut() {
                            Some(w) => {
                                let flag = Some((&self.dst, self.name.as_str(), true));
                                w.wait(d, &mut self.stop, flag, None).await;
                            }
                            None => pause(&mut self.stop, d).await,
                        }
                        continue;
                    }
                    NodeCheck::Run => {
                        if self.paused_seen() {
                            self.options.log.info("resumed");
                        }
                        self.options.metrics.set_paused(false);
                    }
                }
            }
            let next = self.consumer.next_batch().await;
            // The provider's error, named as the provider's (not the target's).
            let next = next.map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
            let Some(batch) = next else {
                match &self.role {
                    Role::Main => {
                        let tables = node::tables(&self.dst, &self.cf.queue_name).await?;
                        self.launch_copies(&tables).await?;
                    }
                    Role::Copy(_) if !self.idle => {
                        // Caught up: a tick now lets the hand-over start without waiting
                        // for the ticker's idle period.
                        let _ = self
                            .consumer
                            .client()
                            .execute("select pgq.force_tick($1)", &[&self.cf.queue_name])
                            .await;
                    }
                    Role::Copy(_) => {}
                }
                if self.role == Role::Main {
                    self.options.health.connected();
                }
                self.idle = true;
                self.wait_for_tick().await;
                continue;
            };
            if !self.process_batch(&batch).await? {
                return Ok(false);
            }
            if self.role == Role::Main {
                self.options.health.connected();
            }
            self.idle = false;
        }
        Ok(false)
    }

    /// Sleeps up to `loop_delay` for the provider's next tick: a tick announced on
    /// `strata_pgq_tick` (by strata's ticker on a root, by a strata worker on a branch)
    /// ends the wait at once, so an idle queue's lag is the ticker's, not the poll's.
    /// Without announcements (pgqd, a Python branch) this is the plain poll.
    async fn wait_for_tick(&mut self) {
        let d = self.cf.loop_delay;
        // A session that ended (provider restarted) is replaced on the next idle wait.
        if self.tick_waiter.as_ref().is_some_and(|w| w.is_closed()) {
            self.tick_waiter = None;
            self.waiter_tried = false;
        }
        if self.tick_waiter.is_none() && self.role == Role::Main && !self.waiter_tried {
            self.waiter_tried = true;
            if let Ok(dsn) = strata_pgclient::Dsn::parse(&self.provider_location) {
                self.tick_waiter = strata_pgq::conn::TickWaiter::connect(&dsn, &self.cf.queue_name)
                    .await
                    .ok();
            }
        }
        if let Some(w) = self.watch.as_mut() {
            // Main role: a pause (NOTIFY or the polled flag) ends the wait too.
            let flag = Some((&self.dst, self.name.as_str(), false));
            w.wait(d, &mut self.stop, flag, self.tick_waiter.as_mut())
                .await;
            return;
        }
        match self.tick_waiter.as_mut() {
            Some(waiter) => {
                let mut stop = self.stop.clone();
                if stopping(&stop) {
                    return;
                }
                tokio::select! {
                    _ = waiter.wait(d) => {}
                    _ = stop.changed() => {}
                }
            }
            None => pause(&mut self.stop, d).await,
        }
    }

    /// Whether the last pause check found the node paused (for the log's transitions).
    fn paused_seen(&self) -> bool {
        self.options.metrics.paused()
    }

    fn reap_copies(&mut self) {
        let done: Vec<String> = self
            .copies
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for table in done {
            let task = self.copies.remove(&table).expect("listed");
            // The result is ready: polling a finished task does not wait.
            let result = futures::FutureExt::now_or_never(task);
            let why = match result {
                Some(Ok(Ok(()))) => {
                    self.copy_retries.remove(&table);
                    self.options.log.info(format!("copy of {table}: done"));
                    continue;
                }
                Some(Ok(Err(e))) => e.to_string(),
                Some(Err(e)) => format!("task failed: {e}"),
                None => continue,
            };
            let failures = self.copy_retries.get(&table).map_or(0, |(n, _)| *n) + 1;
            let delay = retry_delay(failures);
            self.copy_retries
                .insert(table.clone(), (failures, Instant::now() + delay));
            let text = format!(
                "copy of {table}: {why}; restarting it in {} s (failure {failures} in a row)",
                delay.as_secs()
            );
            self.options.log.error(&text);
            self.options.metrics.failed(&text, delay);
        }
    }

    /// One batch; `false` when a copy task has handed its table over and must exit.
    async fn process_batch(&mut self, batch: &Batch) -> Result<bool> {
        let queue = self.cf.queue_name.clone();
        let state = node::consumer_state(&self.dst, &queue, &self.name)
            .await?
            .ok_or_else(|| {
                LondisteError::State(format!(
                    "consumer {} is not registered in the target",
                    self.name
                ))
            })?;
        let completed = state.completed_tick.ok_or_else(|| {
            LondisteError::State(format!("consumer {} has no completed tick", self.name))
        })?;
        if completed == batch.cur_tick_id {
            // Applied before a crash that came ahead of finish_batch.
            self.finish_batch(batch).await?;
            self.stats.batches_skipped += 1;
            return Ok(true);
        }
        if completed != batch.prev_tick_id {
            return Err(LondisteError::LostPosition(format!(
                "lost position of consumer {}: batch {}..{} but the target has tick {completed}",
                self.name, batch.prev_tick_id, batch.cur_tick_id
            )));
        }
        let tables = match self.sync_tables(batch).await? {
            SyncStep::Apply(t) => t,
            SyncStep::Exit => return Ok(false),
        };
        self.apply(batch, &tables).await?;
        Ok(true)
    }

    /// The table state machine before a batch (Python's `sync_tables`); state changes
    /// commit on their own, the batch is not applied until this says so.
    async fn sync_tables(&mut self, batch: &Batch) -> Result<SyncStep> {
        let queue = self.cf.queue_name.clone();
        loop {
            let tables = node::tables(&self.dst, &queue).await?;
            if self.role == Role::Main {
                self.options.metrics.set_tables(
                    tables
                        .iter()
                        .filter(|t| t.local)
                        .map(|t| (t.table_name.as_str(), t.state.to_string())),
                );
            }
            let wait = match self.role.clone() {
                Role::Main => self.sync_main(batch, &tables).await?,
                Role::Copy(table) => {
                    let Some(t) = tables.iter().find(|t| t.table_name == table && t.local) else {
                        return Ok(SyncStep::Exit);
                    };
                    match t.state {
                        TableState::Missing | TableState::Ok => return Ok(SyncStep::Exit),
                        TableState::InCopy => {
                            return Err(LondisteError::State(format!(
                                "{table}: copy task replaying before its copy"
                            )))
                        }
                        TableState::CatchingUp if self.idle => {
                            node::set_table_state(
                                &self.dst,
                                &queue,
                                &table,
                                t.custom_snapshot.as_deref(),
                                &TableState::WannaSync(batch.cur_tick_id),
                            )
                            .await?;
                            self.options
                                .crash_copies
                                .check(&table, CopyPoint::WannaSync)?;
                            true
                        }
                        TableState::CatchingUp => false,
                        TableState::WannaSync(_) => {
                            // Ask for a tick so the main worker reaches ours soon.
                            let _ = self
                                .consumer
                                .client()
                                .execute("select pgq.force_tick($1)", &[&queue])
                                .await;
                            true
                        }
                        TableState::DoSync(_)
                            if self
                                .options
                                .crash_copies
                                .check(&table, CopyPoint::DoSync)
                                .is_err() =>
                        {
                            return Err(LondisteError::State(format!(
                                "crash injected in the copy of {table} at DoSync"
                            )))
                        }
                        TableState::DoSync(tick) if batch.cur_tick_id == tick => {
                            // The snapshot stays: the main worker's first batches may
                            // still hold events the COPY saw (Python keeps it too).
                            node::set_table_state(
                                &self.dst,
                                &queue,
                                &table,
                                t.custom_snapshot.as_deref(),
                                &TableState::Ok,
                            )
                            .await?;
                            return Ok(SyncStep::Exit);
                        }
                        TableState::DoSync(tick) if batch.cur_tick_id < tick => false,
                        TableState::DoSync(tick) => {
                            return Err(LondisteError::State(format!(
                                "{table}: copy task at tick {} passed the hand-over tick {tick}",
                                batch.cur_tick_id
                            )))
                        }
                    }
                }
            };
            if !wait {
                let mut map = HashMap::new();
                for t in tables.into_iter().filter(|t| t.local) {
                    let snap = match &t.custom_snapshot {
                        Some(s) => Some(Snapshot::parse(s)?),
                        None => None,
                    };
                    map.insert(t.table_name.clone(), (t, snap));
                }
                return Ok(SyncStep::Apply(map));
            }
            if stopping(&self.stop) {
                return Err(LondisteError::State(
                    "stopped while waiting for a table hand-over".into(),
                ));
            }
            if self.role == Role::Main {
                self.options
                    .health
                    .waiting("waiting for a table's hand-over from its copy task");
            }
            let d = self.cf.loop_delay.min(Duration::from_millis(200));
            pause(&mut self.stop, d).await;
        }
    }

    /// The main worker's part: answer hand-over requests, start copies. `true` to wait.
    async fn sync_main(&mut self, batch: &Batch, tables: &[TableInfo]) -> Result<bool> {
        let queue = self.cf.queue_name.clone();
        fkeys::restore_fkeys(&self.dst, &queue, &self.options.log).await?;
        let mut wait = false;
        for t in tables.iter().filter(|t| t.local) {
            match t.state {
                TableState::DoSync(_) => wait = true,
                TableState::WannaSync(tick) if batch.cur_tick_id >= tick => {
                    node::set_table_state(
                        &self.dst,
                        &queue,
                        &t.table_name,
                        t.custom_snapshot.as_deref(),
                        &TableState::DoSync(batch.cur_tick_id),
                    )
                    .await?;
                    wait = true;
                }
                _ => {}
            }
        }
        self.launch_copies(tables).await?;
        Ok(wait)
    }

    /// Starts copy tasks for tables waiting for a copy (NULL → `in-copy`) or whose task is
    /// gone, up to `parallel_copies`. Runs before each batch and while the queue is idle,
    /// so a new table starts copying without waiting for the next tick.
    async fn launch_copies(&mut self, tables: &[TableInfo]) -> Result<()> {
        let queue = self.cf.queue_name.clone();
        self.reap_copies();
        // Tables `ok` on the provider: only those can be copied from it (a branch still
        // copying a table would hand on a partial one).
        let mut provider_ok: Option<Vec<String>> = None;
        for t in tables.iter().filter(|t| t.local) {
            // A table in `do-sync` has the main loop waiting for its copy task: that task
            // starts even when every slot is taken, as the tasks in the slots may be
            // waiting for the main loop in turn (their own hand-over).
            let handing_over = matches!(t.state, TableState::DoSync(_));
            if self.copies.len() >= self.cf.parallel_copies && !handing_over {
                continue;
            }
            if self.copies.contains_key(&t.table_name) {
                continue;
            }
            if self.copied_elsewhere(&t.table_name) {
                continue;
            }
            if self
                .copy_retries
                .get(&t.table_name)
                .is_some_and(|(_, next)| Instant::now() < *next)
            {
                continue;
            }
            if t.state == TableState::Missing {
                if provider_ok.is_none() {
                    let list = node::tables(self.consumer.client(), &queue).await?;
                    provider_ok = Some(
                        list.into_iter()
                            .filter(|p| p.local && p.state == TableState::Ok)
                            .map(|p| p.table_name)
                            .collect(),
                    );
                }
                if !provider_ok
                    .as_ref()
                    .is_some_and(|ok| ok.contains(&t.table_name))
                {
                    continue;
                }
                node::set_table_state(&self.dst, &queue, &t.table_name, None, &TableState::InCopy)
                    .await?;
            } else if !t.state.in_copy_phase() {
                continue;
            }
            self.options
                .log
                .info(format!("copy of {}: starting", t.table_name));
            let Some(launch) = self.launch_copy else {
                // A copy task's loop starts no copies.
                return Ok(());
            };
            let task = tokio::spawn(launch(
                self.cf.clone(),
                t.table_name.clone(),
                self.provider_location.clone(),
                self.options.clone(),
                self.copies_stop.clone(),
            ));
            self.copies.insert(t.table_name.clone(), task);
        }
        Ok(())
    }

    /// Whether another program's copy process of `table` still runs (Python Londiste's
    /// outlives its main worker, and holds `<pidfile>.copy.<table>`): then it owns the
    /// copy and its consumer, and this worker only answers its hand-over, as Python's
    /// main worker does. A pidfile whose process is gone is the copy task's to take over.
    fn copied_elsewhere(&mut self, table: &str) -> bool {
        let holder = self
            .cf
            .copy_pidfile(table)
            .and_then(|path| strata_pgq::daemon::live_holder(&path).map(|pid| (path, pid)));
        match holder {
            Some((path, pid)) => {
                if self.foreign_copies.insert(table.to_string(), pid) != Some(pid) {
                    self.options.log.warn(format!(
                        "copy of {table}: process {pid} holds {} (another worker's copy \
                         process): waiting for it to finish or exit",
                        path.display()
                    ));
                }
                true
            }
            None => {
                if self.foreign_copies.remove(table).is_some() {
                    self.options
                        .log
                        .info(format!("copy of {table}: the other copy process is gone"));
                }
                false
            }
        }
    }
}
