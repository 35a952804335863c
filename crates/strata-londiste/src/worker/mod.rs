//! The replay worker: reads batches of the provider's queue and applies them to the local
//! node, exactly once. Each batch is applied in one target transaction that also records
//! the batch's end tick with `pgq_node.set_consumer_completed`; only after that commit is
//! the batch finished on the provider. A crash between the two leaves the batch open, and
//! the next run sees the tick already recorded and just finishes it. This is pgq_node's own
//! bookkeeping, the one Python Londiste uses, so either worker can take over the node.
//!
//! The same loop, in copy role, drives each table's copy task after its initial COPY
//! (see [`copy`]): it applies only that table's events until the hand-over.

pub mod copy;

use crate::admin;
use crate::config::NodeConfig;
use crate::error::{describe_db, LondisteError, Result};
use crate::monitor::WorkerMetrics;
use crate::node::{self, TableInfo};
use crate::park;
use crate::snapshot::Snapshot;
use crate::sqlgen::{self, SqlBuffer};
use crate::state::TableState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_pgclient::Client;
use strata_pgq::api::Batch;
use strata_pgq::event::{Event, Op};
use strata_pgq::log::Log;
use strata_pgq::{Consumer, ConsumerOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How the worker runs, beyond the ini file.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Fault injection for tests: after the target commit of this many batches that
    /// applied rows, stop as a crash would (before `finish_batch` on the provider).
    pub crash_after_commit: Option<u64>,
    /// Fault injection for tests: copy tasks that die once at a point of their table's
    /// state machine (each entry fires once, then is removed).
    pub crash_copies: CopyCrashes,
    /// Stop with an error instead of retrying when a batch fails (tests, one-shot runs).
    pub fail_fast: bool,
    /// Where the worker says how it is doing, for `/ready` (see [`WorkerHealth`]).
    pub health: WorkerHealth,
    /// Where the worker logs (stderr at the ini's `log_level` by default).
    pub log: Log,
    /// What `/metrics` shows.
    pub metrics: WorkerMetrics,
}

/// The first wait after an error; it doubles on each failure in a row up to
/// [`RETRY_MAX`], and starts over after a round that went through.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a waiting worker reads its pause flag, for pauses of tools that do not
/// NOTIFY (Python Londiste, pgq_node's functions called by hand).
pub const PAUSE_POLL: Duration = Duration::from_millis(250);

/// The wait before retry number `failures` (1 for the first failure in a row).
pub fn retry_delay(failures: u32) -> Duration {
    let doubled = RETRY_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(RETRY_MAX)
}

/// Marks the worker not ready and failing while its main loop makes no progress for
/// `limit` (`stall_timeout`): a worker stuck waiting (on a lock, a table's hand-over, a
/// copy task) would otherwise answer ready while only its lag rises. The next round of
/// work makes it ready again.
async fn watch_for_stalls(health: WorkerHealth, metrics: WorkerMetrics, log: Log, limit: Duration) {
    let every = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    // The line `/ready` shows while stalled.
    let mut stalled: Option<String> = None;
    loop {
        tokio::time::sleep(every).await;
        let (idle, step) = health.since_progress();
        if idle < limit {
            if stalled.take().is_some() {
                metrics.recovered();
                log.info(format!("progressing again ({step})"));
            }
            continue;
        }
        let text = format!(
            "no progress for {} s while {step} (stall_timeout is {} s)",
            idle.as_secs(),
            limit.as_secs_f64()
        );
        match &stalled {
            None if health.is_ready() => {
                log.warn(&text);
                health.failed(&text);
                metrics.failed(&text, Duration::ZERO);
                stalled = Some(text);
            }
            // Still stalled: `/ready` says for how long now (unless an error replaced
            // the stall's line meanwhile).
            Some(said) if health.replace_failure(said, &text) => stalled = Some(text),
            _ => {}
        }
    }
}

/// How the worker is doing, as `/ready` reports it: ready once it is connected to its
/// node and has it registered, not ready while it retries after an error (with the
/// error) or before it first connected.
#[derive(Debug, Clone, Default)]
pub struct WorkerHealth(
    Arc<std::sync::Mutex<Readiness>>,
    /// Rounds that went through, for the retry backoff (reset after a success).
    Arc<std::sync::atomic::AtomicU64>,
    /// When the worker last moved, and what it is doing: the stall watchdog's input.
    Arc<std::sync::Mutex<Progress>>,
);

/// What `/ready` says of the worker's node.
#[derive(Debug, Clone, Default)]
enum Readiness {
    /// Not connected yet.
    #[default]
    Connecting,
    /// Connected with the node registered, last round went through.
    Replaying,
    /// Retrying after this error (or stalled, saying where).
    // String: the error as shown by `/ready`; the errors themselves are not `Clone`.
    Retrying(String),
}

/// The last sign of life of the main loop, for [`watch_for_stalls`].
#[derive(Debug, Clone)]
struct Progress {
    at: Instant,
    step: String,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            at: Instant::now(),
            step: "starting".into(),
        }
    }
}

impl WorkerHealth {
    /// A round of work went through: ready.
    fn connected(&self) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.0.lock().unwrap() = Readiness::Replaying;
        self.alive("replaying");
    }

    /// The worker moved on to `step` (or is waiting as it should, paused): not stalled.
    pub(crate) fn alive(&self, step: &str) {
        let mut p = self.2.lock().unwrap_or_else(|e| e.into_inner());
        p.at = Instant::now();
        if p.step != step {
            p.step = step.to_string();
        }
    }

    /// The worker waits at `step`: named in a stall's message, but no progress.
    pub(crate) fn waiting(&self, step: &str) {
        let mut p = self.2.lock().unwrap_or_else(|e| e.into_inner());
        if p.step != step {
            p.step = step.to_string();
        }
    }

    /// How long since the worker last moved, and at what step.
    fn since_progress(&self) -> (Duration, String) {
        let p = self.2.lock().unwrap_or_else(|e| e.into_inner());
        (p.at.elapsed(), p.step.clone())
    }

    /// Whether `/ready` says ready now.
    fn is_ready(&self) -> bool {
        matches!(&*self.0.lock().unwrap(), Readiness::Replaying)
    }

    fn rounds(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connected to the node at a (re)start: ready only the first time. After a failure
    /// the worker stays not ready until a round goes through, so a batch that keeps
    /// failing never shows ready between its retries.
    fn reached(&self) {
        let mut readiness = self.0.lock().unwrap();
        if let Readiness::Connecting = *readiness {
            *readiness = Readiness::Replaying;
        }
    }

    fn failed(&self, why: &str) {
        *self.0.lock().unwrap() = Readiness::Retrying(why.to_string());
    }

    /// Replaces the failure `old` with `new` if `/ready` still shows `old`; whether it did.
    fn replace_failure(&self, old: &str, new: &str) -> bool {
        let mut readiness = self.0.lock().unwrap();
        match &*readiness {
            Readiness::Retrying(why) if why == old => {
                *readiness = Readiness::Retrying(new.to_string());
                true
            }
            _ => false,
        }
    }

    /// The `/ready` checks: one, the worker's node.
    pub fn checks(&self, job: &str) -> Vec<strata_health::Check> {
        let name = format!("worker {job}");
        vec![match &*self.0.lock().unwrap() {
            Readiness::Replaying => strata_health::Check::new(name, true, "connected, replaying"),
            Readiness::Retrying(why) => {
                strata_health::Check::new(name, false, format!("retrying: {why}"))
            }
            Readiness::Connecting => strata_health::Check::new(name, false, "connecting"),
        }]
    }
}

/// Where a copy task can be made to die, one point per table state it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPoint {
    /// Rows streamed, before the copy transaction commits (the table stays `in-copy`).
    InCopy,
    /// Copy committed, before any catch-up batch (`catching-up`).
    CatchingUp,
    /// Right after asking for the hand-over (`wanna-sync`).
    WannaSync,
    /// On seeing the main worker's `do-sync`, before finishing.
    DoSync,
}

/// One-shot copy-task crashes by table (fully qualified name), shared by all tasks.
#[derive(Debug, Clone, Default)]
pub struct CopyCrashes(Arc<std::sync::Mutex<Vec<(String, CopyPoint)>>>);

impl CopyCrashes {
    /// Crashes the copy task of each `(table, point)` once.
    pub fn new(points: Vec<(String, CopyPoint)>) -> CopyCrashes {
        CopyCrashes(Arc::new(std::sync::Mutex::new(points)))
    }

    /// `Err` (once) when the copy task of `table` must die at `point`.
    pub(crate) fn check(&self, table: &str, point: CopyPoint) -> Result<()> {
        let mut points = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = points.iter().position(|(t, p)| t == table && *p == point) {
            points.remove(i);
            return Err(LondisteError::State(format!(
                "crash injected in the copy of {table} at {point:?}"
            )));
        }
        Ok(())
    }

    /// Crashes not fired yet.
    pub fn pending(&self) -> usize {
        self.0.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// What a worker did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    /// Batches applied: the worker's pace, next to its lag.
    pub batches: u64,
    /// Batches found already applied in the target (a crash came before finish_batch).
    pub batches_skipped: u64,
    /// Events read from those batches, each counted whatever became of it.
    pub events: u64,
    /// Statements sent to the target (runs of inserts or updates share one).
    pub statements: u64,
    /// Round trips to the target: statements travel many to one.
    pub round_trips: u64,
}

/// Which events a replayer applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The main worker: every table in state `ok`, and the set's control events.
    Main,
    /// A copy task: only this table, while it is catching up or finishing its hand-over.
    Copy(String),
}

/// What the table-state step decided before a batch.
enum SyncStep {
    /// Apply the batch.
    Apply(HashMap<String, (TableInfo, Option<Snapshot>)>),
    /// This copy task is done (table ok, or gone): leave the batch unapplied.
    Exit,
}

/// What the main worker does next, from the node's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeCheck {
    Run,
    Paused,
    /// The node is no longer of the type the worker started with (takeover).
    RoleChanged,
}

/// Reads the node type and the worker's flags; acknowledges a pause or resume by setting
/// `uptodate` (what `pause`/`takeover` wait for, in Python's protocol too) and clears a
/// saved error once the worker runs again. A new type or a new provider (after
/// `takeover` or `change-provider`) makes the worker start over.
async fn check_node(
    dst: &Client,
    cf: &NodeConfig,
    worker: &str,
    node_type: &str,
    provider: Option<&str>,
) -> Result<NodeCheck> {
    let queue = cf.queue_name.as_str();
    let info = node::node_info(dst, queue).await?;
    if info.node_type.as_deref() != Some(node_type) {
        return Ok(NodeCheck::RoleChanged);
    }
    if provider.is_some() && info.provider_location.as_deref() != provider {
        return Ok(NodeCheck::RoleChanged);
    }
    let Some(state) = node::consumer_state(dst, queue, worker).await? else {
        return Err(LondisteError::State(format!(
            "worker {worker} is not registered on this node"
        )));
    };
    if !state.uptodate {
        node::checked(
            dst,
            "acknowledging the pause flag",
            "select ret_code, ret_note from pgq_node.set_consumer_uptodate($1, $2, true)",
            &[&queue, &worker],
        )
        .await?;
    }
    if state.paused {
        return Ok(NodeCheck::Paused);
    }
    if state.cur_error.is_some() {
        node::set_error(dst, queue, worker, None).await?;
    }
    Ok(NodeCheck::Run)
}

/// Whether `stop` asks to stop. A dropped sender does too: nobody is left to ask, and a
/// wait on a closed channel would return at once and spin.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps `d`, waking early when asked to stop.
pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    if stopping(stop) {
        return;
    }
    let _ = tokio::time::timeout(d, stop.changed()).await;
}

/// Wakes a waiting worker when its pause flag may have changed: a NOTIFY on
/// [`node::WORKER_CHANNEL`] (strata's `pause`, `resume`, `park-event`, and the pauses of
/// `takeover` and `change-provider`) ends a wait at once; pauses set by tools that do not
/// NOTIFY are seen by a poll of the flag every [`PAUSE_POLL`].
pub(crate) struct PauseWatch {
    dsn: Option<strata_pgclient::Dsn>,
    queue: String,
    listener: Option<(
        Client,
        mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    )>,
    tried: Option<Instant>,
}

/// What ended a [`PauseWatch::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The time was up (or the worker is stopping).
    Timeout,
    /// A NOTIFY, or the polled pause flag changed.
    Flag,
    /// The provider announced a tick.
    Tick,
}

impl PauseWatch {
    pub(crate) fn new(cf: &NodeConfig) -> PauseWatch {
        PauseWatch {
            dsn: cf.dsn().ok(),
            queue: cf.queue_name.clone(),
            listener: None,
            tried: None,
        }
    }

    /// A LISTEN session on the node's database, (re)connected at most every 5 s.
    async fn ensure(&mut self) {
        if self.listener.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.listener = None;
        }
        if self.listener.is_some()
            || self
                .tried
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.tried = Some(Instant::now());
        let Some(dsn) = &self.dsn else { return };
        if let Ok((client, rx)) = dsn.connect_listening().await {
            let listen = format!("LISTEN {}", node::WORKER_CHANNEL);
            if client.batch_execute(&listen).await.is_ok() {
                self.listener = Some((client, rx));
            }
        }
    }

    /// A NOTIFY for this queue; pending forever without a LISTEN session.
    async fn notified(&mut self) {
        loop {
            let Some((_, rx)) = self.listener.as_mut() else {
                return std::future::pending().await;
            };
            match rx.recv().await {
                Some(n) if n.payload() == self.queue => return,
                Some(_) => continue,
                None => {
                    self.listener = None;
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Waits up to `d`. With `flag` (the target, the worker's name and the pause flag as
    /// last seen) the flag is polled every [`PAUSE_POLL`] and a change ends the wait; with
    /// `tick`, so does the provider's tick announcement.
    pub(crate) async fn wait(
        &mut self,
        d: Duration,
        stop: &mut watch::Receiver<bool>,
        flag: Option<(&Client, &str, bool)>,
        mut tick: Option<&mut strata_pgq::conn::TickWaiter>,
    ) -> Woken {
        self.ensure().await;
        let deadline = Instant::now() + d;
        loop {
            if stopping(stop) {
                return Woken::Timeout;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woken::Timeout;
            }
            let slice = if flag.is_some() {
                left.min(PAUSE_POLL)
            } else {
                left
            };
            let ticked = async {
                match tick.as_deref_mut() {
                    Some(waiter) => waiter.wait(slice).await,
                    None => {
                        tokio::time::sleep(slice).await;
                        false
                    }
                }
            };
            tokio::select! {
                _ = self.notified() => return Woken::Flag,
                t = ticked => if t { return Woken::Tick },
                _ = stop.changed() => return Woken::Timeout,
            }
            if let Some((dst, worker, paused)) = flag {
                let row = dst
                    .query_opt(
                        "select paused from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
                        &[&self.queue, &worker],
                    )
                    .await;
                if let Ok(Some(row)) = row {
                    if row.get::<_, bool>(0) != paused {
                        return Woken::Flag;
                    }
                }
            }
        }
    }
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
    /// Main role: the stop flag of its copy tasks (see [`CopiesStop`]).
    pub(crate) copies_stop: watch::Receiver<bool>,
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
    let mut r = Replayer {
        cf: cf.clone(),
        role: Role::Main,
        name: worker,
        dst,
        consumer,
        provider_location: location,
        idle: false,
        stats: ReplayStats::default(),
        options,
        committed_with_rows: 0,
        copies: HashMap::new(),
        branch,
        event_seq,
        node_type: info.node_type.clone().unwrap_or_default(),
        node_name: info.node_name.clone().unwrap_or_default(),
        wm_published: None,
        tick_waiter: None,
        waiter_tried: false,
        stop: stop.clone(),
        provider_at,
        parked_table: false,
        careful: false,
        watch: Some(std::mem::replace(watch, PauseWatch::new(&cf))),
        foreign_copies: HashMap::new(),
        copies_stop: copies_stop.receiver(),
        copy_retries: HashMap::new(),
    };
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

impl Replayer {
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
            if self.branch {
                crate::branch::ensure_tick(&self.dst, &queue, batch, self.event_seq).await?;
            }
            self.consumer
                .finish_batch(batch)
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
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
        copy::restore_fkeys(&self.dst, &queue, &self.options.log).await?;
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
            let task = tokio::spawn(copy::start(
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

    /// Applies the batch in one target transaction with its tick, then finishes it. When
    /// an event fails in the buffered mode (its statement went with others), the batch
    /// is applied again at once event by event, so the error names the event that failed.
    async fn apply(
        &mut self,
        batch: &Batch,
        tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
    ) -> Result<()> {
        let mut event_failed = false;
        let first = self.apply_once(batch, tables, &mut event_failed).await;
        let result = match first {
            Err(_) if event_failed && !self.careful => {
                self.options.log.warn(format!(
                    "batch {} failed; applying it again event by event to name the event",
                    batch.batch_id
                ));
                self.careful = true;
                self.apply_once(batch, tables, &mut event_failed).await
            }
            other => other,
        };
        if result.is_ok() {
            self.careful = false;
        }
        result
    }

    /// The target's description in errors (`node X (db ...)`).
    fn target_at(&self) -> String {
        let node = Some(self.node_name.as_str()).filter(|n| !n.is_empty());
        describe_db(node, &self.cf.db)
    }
}

/// The error of event `ev` of `batch`: named (id, type, table), with the database.
fn event_error(batch: &Batch, ev: &Event, reason: String) -> LondisteError {
    {
        LondisteError::Event {
            event_id: ev.id,
            batch_id: batch.batch_id,
            tick_id: batch.cur_tick_id,
            ev_type: ev.ev_type.clone().unwrap_or_default(),
            table: ev.extra1.clone().filter(|t| !t.is_empty()),
            reason,
        }
    }
}

impl Replayer {
    /// Commits the target's transaction of `batch` (its events applied in it) and counts
    /// it; a crash after it can be injected for the tests.
    async fn commit_batch(
        &mut self,
        batch: &Batch,
        events: u64,
        statements: u64,
        flushes: u64,
    ) -> Result<()> {
        self.dst
            .batch_execute("commit")
            .await
            .map_err(|e| LondisteError::sql("committing the batch", e))?;
        self.stats.batches += 1;
        self.stats.events += events;
        self.stats.statements += statements;
        self.stats.round_trips += flushes;
        if self.role == Role::Main {
            self.options
                .metrics
                .batch_applied(events, batch.cur_tick_time);
        }
        self.options.log.debug_with(|| {
            format!(
                "batch {} (ticks {}..{}) applied: {events} events, {statements} statements",
                batch.batch_id, batch.prev_tick_id, batch.cur_tick_id
            )
        });
        if statements > 0 && self.role == Role::Main {
            self.committed_with_rows += 1;
            if Some(self.committed_with_rows) == self.options.crash_after_commit {
                return Err(LondisteError::State(
                    "crash injected after the target commit".into(),
                ));
            }
        }
        Ok(())
    }

    async fn apply_once(
        &mut self,
        batch: &Batch,
        tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
        event_failed: &mut bool,
    ) -> Result<()> {
        let queue = self.cf.queue_name.clone();
        let target_at = self.target_at();
        let dst = &self.dst;
        dst.batch_execute("begin")
            .await
            .map_err(|e| LondisteError::sql("starting the target transaction", e))?;
        let result = async {
            // Serialises workers of one consumer: a second copy waits here, then sees the
            // tick recorded and skips the batch.
            let row = dst
                .query_one(
                    "select last_tick_id from pgq_node.local_state where queue_name = $1 and consumer_name = $2 for update",
                    &[&queue, &self.name],
                )
                .await
                .map_err(|e| LondisteError::sql("locking the consumer's state", e))?;
            if row.get::<_, i64>(0) != batch.prev_tick_id {
                return Ok(None);
            }
            let parked = park::for_batch(dst, &queue, batch.prev_tick_id, &mut self.parked_table).await?;
            let batch_ref = || park::BatchRef {
                consumer: self.name.clone(),
                batch_id: batch.batch_id,
                prev_tick_id: batch.prev_tick_id,
                tick_id: batch.cur_tick_id,
            };
            let (count, bytes) = match self.careful {
                true => (1, 1),
                false => (self.cf.apply_batch_count, self.cf.apply_batch_bytes),
            };
            let mut buffer = SqlBuffer::new(count, bytes);
            let mut events = 0u64;
            let mut stream = self
                .consumer
                .events(batch)
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
            while let Some(chunk) = stream
                .next_chunk()
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?
            {
                if self.role == Role::Main {
                    self.options.health.alive("applying a batch");
                }
                for ev in &chunk {
                    events += 1;
                    if parked.get(&ev.id) == Some(&ev.txid) {
                        self.options.log.info(format!(
                            "event {} of batch {} ({}) skipped: parked in {}",
                            ev.id,
                            batch.batch_id,
                            ev.ev_type.as_deref().unwrap_or(""),
                            park::TABLE
                        ));
                        continue;
                    }
                    match apply_event(dst, &self.role, &queue, ev, tables, &mut buffer).await {
                        Ok(Handled::Done) => {}
                        Ok(Handled::Unknown) if self.cf.park_unknown_events => {
                            let ev_type = ev.ev_type.as_deref().unwrap_or("");
                            let reason = format!("unknown event type {ev_type:?} (park_unknown_events)");
                            let by = format!("worker {}", self.cf.job_name);
                            park::park(dst, &queue, &batch_ref(), ev, &reason, Some(&by)).await?;
                            self.parked_table = true;
                            self.options.metrics.event_parked();
                            self.options.log.warn(format!(
                                "event {} of batch {} parked: {reason}",
                                ev.id, batch.batch_id
                            ));
                        }
                        Ok(Handled::Unknown) => {
                            *event_failed = true;
                            let ev_type = ev.ev_type.as_deref().unwrap_or("");
                            return Err(event_error(batch, ev, format!(
                                "unknown event type {ev_type:?} on {target_at} (park it: park-event {}, or set park_unknown_events)",
                                ev.id
                            )));
                        }
                        Err(e) => {
                            *event_failed = true;
                            if !self.careful {
                                return Err(e);
                            }
                            let e = e.on(&target_at);
                            return Err(event_error(batch, ev, e.to_string()));
                        }
                    }
                }
                if self.branch {
                    crate::branch::copy_events(dst, &queue, &chunk).await?;
                    if let Some(max) = chunk.iter().map(|e| e.id).max() {
                        self.event_seq = self.event_seq.max(max);
                    }
                }
            }
            stream
                .close()
                .await
                .map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
            if let Err(e) = buffer.flush(dst).await {
                *event_failed = true;
                return Err(LondisteError::sql("applying the batch", e));
            }
            if self.role == Role::Main {
                forget_old_snapshots(dst, self.consumer.client(), &queue, batch, tables)
                    .await
                    .map_err(|e| e.on(&self.provider_at))?;
            }
            node::set_completed(dst, &queue, &self.name, batch.cur_tick_id).await?;
            Ok(Some((events, buffer.statements, buffer.flushes)))
        }
        .await;
        match result {
            Ok(Some((events, statements, flushes))) => {
                self.commit_batch(batch, events, statements, flushes)
                    .await?
            }
            Ok(None) => {
                let _ = dst.batch_execute("rollback").await;
                self.stats.batches_skipped += 1;
            }
            Err(e) => {
                let _ = dst.batch_execute("rollback").await;
                return Err(e);
            }
        }
        if self.branch {
            crate::branch::ensure_tick(&self.dst, &queue, batch, self.event_seq).await?;
        }
        self.consumer
            .finish_batch(batch)
            .await
            .map_err(|e| LondisteError::from(e).on(&self.provider_at))?;
        if self.role == Role::Main {
            self.publish_local_watermark(batch)
                .await
                .map_err(|e| e.on(&self.provider_at))?;
        }
        Ok(())
    }

    /// Tells the provider the lowest tick this node's subtree still needs (its
    /// `local_watermark`: on a branch the slowest consumer of its queue, on a leaf its
    /// own position), every `local_wm_publish_period`, as Python's worker does. Without
    /// it the provider keeps this node's watermark consumer at the subscription tick and
    /// its queue never rotates.
    async fn publish_local_watermark(&mut self, batch: &Batch) -> Result<()> {
        if self
            .wm_published
            .is_some_and(|t| t.elapsed() < self.cf.local_wm_publish_period)
        {
            return Ok(());
        }
        let queue = self.cf.queue_name.as_str();
        let info = node::node_info(&self.dst, queue).await?;
        let Some(wm) = info.local_watermark else {
            return Ok(());
        };
        let wm = wm.min(batch.cur_tick_id);
        // Under the node's name as it is now: `rename-node` may have changed it since the
        // worker started, and the provider would quietly refuse the old one.
        let name = info
            .node_name
            .clone()
            .unwrap_or_else(|| self.node_name.clone());
        // Refusals (a watermark that would go backwards) are not errors: the next
        // publication catches up, as in Python.
        self.consumer
            .client()
            .query_one(
                "select ret_code from pgq_node.set_subscriber_watermark($1, $2, $3)",
                &[&queue, &name, &wm],
            )
            .await
            .map_err(|e| LondisteError::sql("publishing the local watermark", e))?;
        self.wm_published = Some(Instant::now());
        Ok(())
    }
}

/// Clears the copy snapshot of `ok` tables once no later batch can hold an event the COPY
/// saw: the batches after this one start at its end tick, so when every transaction the
/// snapshot saw is older than that tick's snapshot (`xmax <= tick xmin`), the filter is
/// done. Precise where Python counts three batches.
async fn forget_old_snapshots(
    dst: &Client,
    provider: &Client,
    queue: &str,
    batch: &Batch,
    tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
) -> Result<()> {
    let mut tick_xmin: Option<i64> = None;
    for (info, snapshot) in tables.values() {
        let Some(snapshot) = snapshot else { continue };
        if info.state != TableState::Ok {
            continue;
        }
        let xmin = match tick_xmin {
            Some(x) => x,
            None => {
                let row = provider
                    .query_opt(
                        "select txid_snapshot_xmin(t.tick_snapshot) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                         where q.queue_name = $1 and t.tick_id = $2",
                        &[&queue, &batch.cur_tick_id],
                    )
                    .await
                    .map_err(|e| LondisteError::sql("reading the batch's end tick", e))?;
                let Some(row) = row else { return Ok(()) };
                let x: i64 = row.get(0);
                tick_xmin = Some(x);
                x
            }
        };
        if snapshot.xmax <= xmin {
            node::set_table_state(dst, queue, &info.table_name, None, &TableState::Ok).await?;
        }
    }
    Ok(())
}

/// The column types of `table` as SQL type names (`format_type`), for the casts of
/// gathered updates.
async fn column_types(dst: &Client, table: &str) -> Result<HashMap<String, String>> {
    let (schema, name) = crate::names::split(table);
    let rows = dst
        .query(
            "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute a \
             join pg_catalog.pg_class c on c.oid = a.attrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the column types of {table}"), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Applies an `EXECUTE` event as Python Londiste does: `execute_start` (which skips a
/// file already applied here), the SQL with local triggers firing
/// (`session_replication_role = local`), `execute_finish`, all in the batch's transaction.
async fn execute_event(dst: &Client, queue: &str, ev: &Event) -> Result<()> {
    let file = ev.extra1.clone().unwrap_or_default();
    let sql = ev.data.clone().unwrap_or_default();
    let attrs = crate::exec_attrs::ExecAttrs::parse_urlenc(ev.extra2.as_deref())?;
    let row = dst
        .query_one(
            "select ret_code, ret_note from londiste.execute_start($1, $2, $3, false, $4)",
            &[&queue, &file, &sql, &ev.extra2],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("starting EXECUTE of {file}"), e))?;
    if row.get::<_, i32>(0) > 200 {
        return Ok(());
    }
    dst.batch_execute("set local session_replication_role = 'local'")
        .await
        .map_err(|e| LondisteError::sql("switching to local role for EXECUTE", e))?;
    let local = admin::local_objects(dst, queue).await?;
    if attrs.need_execute(dst, &local).await? {
        dst.batch_execute(&attrs.process_sql(&sql, &local)?)
            .await
            .map_err(|e| LondisteError::sql(format!("EXECUTE of {file}"), e))?;
    }
    node::checked(
        dst,
        &format!("finishing EXECUTE of {file}"),
        "select ret_code, ret_note from londiste.execute_finish($1, $2)",
        &[&queue, &file],
    )
    .await?;
    dst.batch_execute("set local session_replication_role = 'replica'")
        .await
        .map_err(|e| LondisteError::sql("switching back to replica role", e))?;
    Ok(())
}

/// Whether the table wants a row event in this role: its state, and the copy snapshot
/// (events of transactions the COPY already saw are skipped).
fn wants(role: &Role, info: &TableInfo, snapshot: &Option<Snapshot>, txid: i64) -> bool {
    let state_ok = match role {
        Role::Main => info.state == TableState::Ok,
        Role::Copy(table) => {
            &info.table_name == table
                && matches!(info.state, TableState::CatchingUp | TableState::DoSync(_))
        }
    };
    state_ok && !snapshot.as_ref().is_some_and(|s| s.contains(txid))
}

/// What [`handle_event`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Applied, buffered, or not this node's (a table not replicated here, a cascade
    /// event of another queue).
    Done,
    /// A type the worker does not know: the caller stops or parks it, never skips it.
    Unknown,
}

async fn apply_event(
    dst: &Client,
    role: &Role,
    queue: &str,
    ev: &Event,
    tables: &HashMap<String, (TableInfo, Option<Snapshot>)>,
    buffer: &mut SqlBuffer,
) -> Result<Handled> {
    const DONE: Result<Handled> = Ok(Handled::Done);
    if let Some(change) = ev.row_change()? {
        let Some((info, snapshot)) = tables.get(&change.table) else {
            return DONE;
        };
        if !wants(role, info, snapshot, ev.txid) {
            return DONE;
        }
        if change.op == Op::Truncate {
            buffer
                .flush(dst)
                .await
                .map_err(|e| LondisteError::sql("applying the batch", e))?;
        }
        if let Some((head, tuple)) = sqlgen::insert_parts(&change, info.dest()) {
            if buffer.push_insert(&head, &tuple) {
                buffer.flush(dst).await.map_err(|e| {
                    LondisteError::sql(format!("applying the batch (near event {})", ev.id), e)
                })?;
            }
            return DONE;
        }
        if let Some(row) = sqlgen::update_parts(&change, info.dest()) {
            if !buffer.types.contains_key(info.dest()) {
                let types = column_types(dst, info.dest()).await?;
                buffer.types.insert(info.dest().to_string(), types);
            }
            let types = buffer.types[info.dest()].clone();
            if buffer.push_update(row, &types) {
                buffer.flush(dst).await.map_err(|e| {
                    LondisteError::sql(format!("applying the batch (near event {})", ev.id), e)
                })?;
            }
            return DONE;
        }
        let sql = sqlgen::statement(&change, info.dest())
            .map_err(|e| LondisteError::State(format!("event {}: {e}", ev.id)))?;
        if let Some(sql) = sql {
            if buffer.push(&sql) {
                buffer.flush(dst).await.map_err(|e| {
                    LondisteError::sql(format!("applying the batch (near event {})", ev.id), e)
                })?;
            }
        }
        return DONE;
    }
    if *role != Role::Main {
        return DONE;
    }
    let ev_type = ev.ev_type.as_deref().unwrap_or("");
    let data = ev.data.as_deref().unwrap_or("");
    let control: Option<(&str, String, Vec<Option<String>>)> = match ev_type {
        "londiste.add-table" => Some((
            "londiste.global_add_table($1, $2)",
            "adding a table to the set".into(),
            vec![Some(data.into())],
        )),
        "londiste.remove-table" => Some((
            "londiste.global_remove_table($1, $2)",
            "removing a table from the set".into(),
            vec![Some(data.into())],
        )),
        "londiste.remove-seq" => Some((
            "londiste.global_remove_seq($1, $2)",
            "removing a sequence".into(),
            vec![Some(data.into())],
        )),
        "londiste.update-seq" => Some((
            "londiste.global_update_seq($1, $2, $3::text::int8)",
            "updating a sequence".into(),
            vec![ev.extra1.clone(), Some(data.into())],
        )),
        "pgq.location-info" if ev.extra1.as_deref() == Some(queue) => Some((
            "pgq_node.register_location($1, $2, $3, $4::text::boolean)",
            "registering a location".into(),
            vec![Some(data.into()), ev.extra2.clone(), ev.extra3.clone()],
        )),
        "pgq.unregister-location" if ev.extra1.as_deref() == Some(queue) => Some((
            "pgq_node.unregister_location($1, $2)",
            "unregistering a location".into(),
            vec![Some(data.into())],
        )),
        "pgq.global-watermark" if ev.extra1.as_deref() == Some(queue) => Some((
            "pgq_node.set_global_watermark($1, $2::text::int8)",
            "setting the global watermark".into(),
            vec![Some(data.into())],
        )),
        "EXECUTE" => {
            buffer
                .flush(dst)
                .await
                .map_err(|e| LondisteError::sql("applying the batch", e))?;
            buffer.types.clear();
            return execute_event(dst, queue, ev).await.map(|()| Handled::Done);
        }
        // Cascade events of another queue (a combined queue's), as Python ignores them.
        t if t.starts_with("pgq.") => return DONE,
        _ => return Ok(Handled::Unknown),
    };
    let Some((call, what, args)) = control else {
        return DONE;
    };
    buffer
        .flush(dst)
        .await
        .map_err(|e| LondisteError::sql("applying the batch", e))?;
    let sql = format!("select ret_code, ret_note from {call}");
    let queue_param: Option<String> = Some(queue.to_string());
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&queue_param];
    for a in &args {
        params.push(a);
    }
    node::checked(dst, &what, &sql, &params)
        .await
        .map(|_| Handled::Done)
}

/// How `londiste worker` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// Started in the background: the child's pid and where it logs.
    Detached {
        /// The child's pid (also in the ini's pidfile), to stop it with a signal.
        pid: u32,
        /// The ini's logfile: the detached worker has no terminal to print to.
        logfile: std::path::PathBuf,
    },
    /// Ran here until SIGTERM or SIGINT, with what it did.
    Stopped(ReplayStats),
}

/// The `worker` command: with `detach` (and not already the detached child) starts this
/// command again in the background, which needs `logfile` and `pidfile` in the ini file;
/// otherwise runs the worker here until SIGTERM or SIGINT. The detached child holds the
/// pidfile while it runs and refuses to start next to a live worker. `verbosity` moves the
/// ini's `log_level` up (`-v`, positive) or down (`-q`, negative).
pub async fn run_until_signal(cf: NodeConfig, detach: bool, verbosity: i32) -> Result<WorkerExit> {
    let detached_child = strata_pgq::daemon::is_detached_child();
    if detach && !detached_child {
        let (Some(pidfile), Some(logfile)) = (&cf.pidfile, &cf.logfile) else {
            return Err(LondisteError::BadInput(
                "worker -d needs logfile and pidfile in the ini file: a daemon has no terminal"
                    .into(),
            ));
        };
        let pid = strata_pgq::daemon::spawn_detached(pidfile, Some(logfile), "Londiste worker")?;
        return Ok(WorkerExit::Detached {
            pid,
            logfile: logfile.clone(),
        });
    }
    // Any failure to take the pidfile (held by a live worker, or not writable) is the
    // ini's problem: bad input, in the pidfile's words.
    let _pidfile = match (&cf.pidfile, detached_child) {
        (Some(path), true) => Some(
            strata_pgq::daemon::PidFile::create(path)
                .map_err(|e| LondisteError::BadInput(e.full_message()))?,
        ),
        _ => None,
    };
    let stop = stop_on_signal();
    let options = WorkerOptions {
        log: Log::stderr(cf.log_level.shifted(verbosity)),
        ..WorkerOptions::default()
    };
    let _health_server = serve_health(&cf, &options).await?;
    // Type=notify units: started once health_listen is bound; the watchdog hears from
    // this runtime while it runs tasks.
    strata_health::notify::ready(&format!("replaying for {}", cf.job_name));
    let _watchdog =
        strata_pgq::ticker::AbortOnDrop(tokio::spawn(strata_health::notify::watchdog()));
    run(cf, options, stop).await.map(WorkerExit::Stopped)
}

/// `health_listen = host:port` in the ini: serves `/health`, `/ready` and `/metrics` there
/// (with the PgQ ticker's small server and its limits) while the worker runs.
pub async fn serve_health(
    cf: &NodeConfig,
    options: &WorkerOptions,
) -> Result<Option<strata_pgq::ticker::AbortOnDrop>> {
    let Some(address) = cf.raw.get("health_listen").filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        LondisteError::BadInput(format!("health_listen {address}: cannot listen: {e}"))
    })?;
    let (health, job) = (options.health.clone(), cf.job_name.clone());
    let metrics = options.metrics.clone();
    let answer = move |path: &str| match path {
        "/health" => {
            let (code, body) = strata_health::health_answer("strata londiste worker");
            Some((code, "application/json", body))
        }
        "/ready" => {
            let (code, body) = strata_health::ready_answer(health.checks(&job));
            Some((code, "application/json", body))
        }
        "/metrics" => Some((200, "text/plain; version=0.0.4", metrics.render(&job))),
        _ => None,
    };
    options.log.info(format!(
        "health and metrics on http://{address}/health, /ready and /metrics"
    ));
    let log = Some(options.log.clone());
    let server = strata_pgq::ticker::health::serve_answers(listener, Arc::new(answer), log);
    Ok(Some(strata_pgq::ticker::AbortOnDrop(tokio::spawn(server))))
}

/// A stop flag that turns true on SIGINT or SIGTERM, for the daemon: the worker finishes
/// (or abandons, uncommitted) the batch in hand and exits cleanly.
pub fn stop_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = tx.send(true);
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        strata_health::notify::stopping("stopping on a signal");
        let _ = tx.send(true);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_stop_sender_stops_instead_of_waking_every_wait_at_once() {
        let (tx, mut rx) = watch::channel(false);
        assert!(!stopping(&rx));
        drop(tx);
        assert!(stopping(&rx));
        // The wait returns at once rather than hanging or spinning on the closed channel.
        pause(&mut rx, Duration::from_secs(3600)).await;
    }

    /// A stall's line in `/ready` says how long the worker has made no progress, now,
    /// not when the stall was first seen; an error that replaced it stays.
    #[tokio::test]
    async fn a_stalled_workers_ready_line_keeps_counting() {
        let health = WorkerHealth::default();
        health.reached();
        let log = Log::open(None, true).unwrap();
        let detail = |h: &WorkerHealth| h.checks("job")[0].detail.clone();
        let _watch = strata_pgq::ticker::AbortOnDrop(tokio::spawn(watch_for_stalls(
            health.clone(),
            WorkerMetrics::default(),
            log,
            Duration::from_millis(400),
        )));
        let seconds = |text: &str| -> u64 {
            let rest = text
                .split("no progress for ")
                .nth(1)
                .unwrap_or_else(|| panic!("{text}"));
            rest.split(' ').next().unwrap().parse().unwrap()
        };
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let first = seconds(&detail(&health));
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let later = seconds(&detail(&health));
        assert!(later >= first + 2, "{first} s, then {later} s");
        health.failed("connecting to the provider: refused");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            detail(&health),
            "retrying: connecting to the provider: refused"
        );
    }

    #[test]
    fn retries_back_off_from_one_second_doubling_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0), RETRY_MIN);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }
}
