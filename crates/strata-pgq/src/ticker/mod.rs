//! The ticker daemon: pgqd's job (ticks, retry events, maintenance for every database
//! with pgq) plus what pgqd lacks: wake-ups on event notifications, a health endpoint and
//! metrics that show an unreachable database, and an exit policy for it.

mod answer;
pub mod config;
pub mod db;
pub mod health;
pub mod jobs;
/// The log, shared with the Londiste worker (it lives at the crate's root now).
pub use crate::log;
pub mod maint;

use crate::{conn, PgqError};
use config::TickerConfig;
use health::Health;
use log::Log;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Settings given on the command line, over the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--health ADDR`.
    pub health_listen: Option<String>,
    /// `--exit-on-unreachable SECS`: `Some(None)` (`0` on the command line) turns the
    /// file's exit policy off.
    pub exit_on_unreachable: Option<Option<Duration>>,
    /// `--pidfile PATH`.
    pub pidfile: Option<PathBuf>,
    /// `--logfile PATH`.
    pub logfile: Option<PathBuf>,
}

/// Why the ticker stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT.
    Stopped,
    /// The exit policy fired: this database was unreachable (or stalled: connected but
    /// its ticks hung) too long.
    Unreachable {
        /// The database.
        database: String,
        /// How long it had gone without ticks.
        secs: u64,
        /// Connected but stalled, rather than unreachable.
        stalled: bool,
    },
}

impl std::fmt::Display for Exit {
    /// Why the ticker stopped, as the `ticker` command reports an exit policy that fired.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Stopped => write!(f, "ticker stopped"),
            Exit::Unreachable {
                database,
                secs,
                stalled,
            } => write!(
                f,
                "ticker stopped: database {database} {} for {secs} s (exit_on_unreachable)",
                if *stalled {
                    "stalled (connected, no ticker round)"
                } else {
                    "unreachable"
                }
            ),
        }
    }
}

/// `--exit-on-unreachable SECS`: a positive number of seconds, or 0 for "never" (which
/// overrides a policy in the file); `None` when not given.
pub fn exit_policy(secs: Option<f64>) -> Result<Option<Option<Duration>>, PgqError> {
    match secs {
        None => Ok(None),
        Some(0.0) => Ok(Some(None)),
        Some(s) if s > 0.0 && s < 1e9 => Ok(Some(Some(Duration::from_secs_f64(s)))),
        Some(_) => Err(PgqError::BadInput(
            "--exit-on-unreachable: a positive number of seconds, or 0 for never".into(),
        )),
    }
}

/// How a `ticker` command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Started in the background; the child's pid.
    Detached(u32),
    /// Ran in this process until it stopped.
    Ran(Exit),
}

/// Starts the ticker in the background; returns its pid once its pidfile names it.
/// `config` is the ticker's settings as read from its file (checked here: a daemon needs
/// a pidfile and a logfile).
fn detach(config: &config::TickerConfig, overrides: &Overrides) -> Result<u32, PgqError> {
    let pidfile = overrides
        .pidfile
        .clone()
        .or(config.pidfile.clone())
        .ok_or_else(|| {
            PgqError::BadInput("--daemon needs a pidfile (in the config or --pidfile)".into())
        })?;
    let logfile = overrides
        .logfile
        .clone()
        .or(config.logfile.clone())
        .ok_or_else(|| {
            PgqError::BadInput(
                "--daemon needs a logfile (in the config or --logfile): a daemon has no terminal"
                    .into(),
            )
        })?;
    crate::daemon::spawn_detached(&pidfile, Some(&logfile), "ticker")
}

/// The `ticker` command: with `daemon` (and not already the detached child) checks the
/// file and starts the ticker in the background ([`detach`]); otherwise
/// [`run`]s it here until it stops.
pub async fn run_or_detach(
    path: &Path,
    read: Reader,
    overrides: &Overrides,
    daemon: bool,
    quiet: bool,
) -> Result<Outcome, PgqError> {
    if daemon && !crate::daemon::is_detached_child() {
        let config = read(path)?;
        return detach(&config, overrides).map(Outcome::Detached);
    }
    run(path, read, overrides, quiet).await.map(Outcome::Ran)
}

/// Reads the ticker's settings from its file: [`TickerConfig::load`] for pgqd's ini; the
/// `strata` binary passes its own reader for the `[pgq]` section of strata's
/// configuration. Called again on SIGHUP.
pub type Reader = fn(&Path) -> Result<TickerConfig, PgqError>;

/// Reads the file and applies the command line's overrides.
pub fn load(path: &Path, read: Reader, overrides: &Overrides) -> Result<TickerConfig, PgqError> {
    let mut config = read(path)?;
    if let Some(h) = &overrides.health_listen {
        config.health_listen = Some(h.clone());
    }
    if let Some(d) = overrides.exit_on_unreachable {
        config.exit_on_unreachable = d;
    }
    if let Some(p) = &overrides.pidfile {
        config.pidfile = Some(p.clone());
    }
    if let Some(p) = &overrides.logfile {
        config.logfile = Some(p.clone());
    }
    Ok(config)
}

/// The longest a discovery round may take (each connection has its own timeout too); a
/// round that takes longer is given up and the databases ticked so far stay.
const DISCOVERY_LIMIT: Duration = Duration::from_secs(60);

/// How long stopping database workers may take before they are aborted (a worker
/// waiting on a hung server does not see its stop signal).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Databases to tick, each with whether it was discovered (not listed).
type Wanted = Vec<(String, bool)>;

/// [`databases`] under [`DISCOVERY_LIMIT`]: `None` when it did not finish.
async fn discover(config: TickerConfig, log: Log, health: Health) -> Option<Wanted> {
    let found = tokio::time::timeout(DISCOVERY_LIMIT, databases(&config, &log, &health)).await;
    if found.is_err() {
        log.warn(format!(
            "discovering databases took longer than {} s: given up until the next check",
            DISCOVERY_LIMIT.as_secs()
        ));
    }
    found.ok().flatten()
}

/// The databases to tick right now: the configured list, or every connectable database
/// whose pgq schema exists (`true` marks discovered ones). `None` when the list cannot be
/// read (the initial database is down): the databases ticked so far are not known to be
/// gone, so their workers go on rather than stop with the one database that lists them.
async fn databases(config: &TickerConfig, log: &Log, health: &Health) -> Option<Wanted> {
    if !config.database_list.is_empty() {
        return Some(
            config
                .database_list
                .iter()
                .map(|d| (d.clone(), false))
                .collect(),
        );
    }
    let initial = &config.initial_database;
    let guard = |pg: strata_pgclient::Dsn| {
        pg.with_session_guards(db::KEEPALIVE_IDLE, Some(DISCOVERY_LIMIT))
    };
    let listed = async {
        let pg = guard(conn::config_for(&config.base_connstr, initial)?);
        let (client, _notes) = conn::connect_listening(&pg).await?;
        let rows = client
            .query(
                "select datname from pg_catalog.pg_database where datallowconn and not datistemplate order by 1",
                &[],
            )
            .await
            .map_err(|e| PgqError::sql("listing databases", e))?;
        let mut found = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let Ok(pg) = conn::config_for(&config.base_connstr, &name).map(guard) else { continue };
            match conn::connect_listening(&pg).await {
                Ok((c, _)) => {
                    if crate::api::has_pgq(&c).await.unwrap_or(false) {
                        found.push((name, true));
                    }
                }
                // Unreachable now: keep (or start) its task, which reports it down in
                // health and metrics and lets it go if it turns out to have no pgq.
                Err(e) => {
                    log.warn(format!("{name}: {}", e.full_message()));
                    found.push((name, true));
                }
            }
        }
        Ok::<_, PgqError>(found)
    }
    .await;
    match listed {
        Ok(found) => {
            health.forget(initial);
            Some(found)
        }
        Err(e) => {
            log.warn(format!(
                "{initial} (initial_database): {}; the databases ticked so far go on",
                e.full_message()
            ));
            health.down(initial, e.full_message());
            None
        }
    }
}

struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Stops workers: each is told to stop and given [`STOP_GRACE`] (together, not one after
/// the other), then aborted, so a worker stuck on a hung server cannot delay SIGTERM or
/// SIGHUP for longer than that.
async fn stop_workers(workers: impl IntoIterator<Item = Worker>) {
    let workers: Vec<Worker> = workers.into_iter().collect();
    for worker in &workers {
        let _ = worker.stop.send(true);
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for mut worker in workers {
        if tokio::time::timeout_at(deadline, &mut worker.task)
            .await
            .is_err()
        {
            worker.task.abort();
        }
    }
}

async fn stop_all(workers: &mut BTreeMap<String, Worker>) {
    stop_workers(std::mem::take(workers).into_values()).await;
}

/// Binds the health listener; the error names the address.
async fn bind_health(addr: &str) -> Result<tokio::net::TcpListener, PgqError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| PgqError::io(format!("listening on {addr} for /health"), e))
}

/// Logs each database's counters and state (every `stats_period`).
fn log_stats(log: &Log, health: &Health) {
    for (db, s) in health.snapshot() {
        let job_errors: u64 = s.job_errors.values().sum();
        let state = if !s.up {
            format!("DOWN: {}", s.error.unwrap_or_default())
        } else if s.stalled {
            format!(
                "STALLED: no ticker round for {:.0} s",
                s.last_round_age_secs.unwrap_or_default()
            )
        } else {
            "up".to_string()
        };
        log.info(format!(
            "{db}: {} ticks ({} on wake-up), {} rotations, {} maintenance calls, {} retried events, {job_errors} job errors, {state}",
            s.ticks, s.wakeup_ticks, s.rotations, s.maint_calls, s.retried_events
        ));
    }
}

/// Runs the ticker from the config file at `path` (read with `read`) until
/// SIGTERM/SIGINT (or the exit policy); SIGHUP re-reads the file and restarts the
/// database workers with it. `quiet` keeps log lines off stderr when there is no logfile.
/// Everything that can fail at start (the file, the logfile, the signal handlers, the
/// health port) is done before the pidfile is written, so a `--daemon` parent, which
/// waits for the pidfile, sees a failed start as the child's exit.
pub async fn run(
    path: &Path,
    read: Reader,
    overrides: &Overrides,
    quiet: bool,
) -> Result<Exit, PgqError> {
    let mut config = load(path, read, overrides)?;
    let log = Log::open(config.logfile.as_ref(), quiet).map_err(|e| {
        PgqError::io(
            format!(
                "opening logfile {}",
                config
                    .logfile
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            ),
            e,
        )
    })?;
    let health = Health::new(config.stall_limit());
    let mut signals = (
        signal(SignalKind::hangup()).map_err(|e| PgqError::io("installing SIGHUP handler", e))?,
        signal(SignalKind::terminate())
            .map_err(|e| PgqError::io("installing SIGTERM handler", e))?,
        signal(SignalKind::interrupt())
            .map_err(|e| PgqError::io("installing SIGINT handler", e))?,
    );
    let listener = match &config.health_listen {
        Some(addr) => Some((addr.clone(), bind_health(addr).await?)),
        None => None,
    };
    let _pidfile = config
        .pidfile
        .as_deref()
        .map(crate::daemon::PidFile::create)
        .transpose()?;
    let _server = listener.map(|(addr, listener)| {
        log.info(format!(
            "health and metrics on http://{addr}/health and /metrics"
        ));
        AbortOnDrop(tokio::spawn(health::serve(
            listener,
            health.clone(),
            Some(log.clone()),
        )))
    });
    log.info(format!(
        "ticker started (pid {}, config {}, {}, exit_on_unreachable: {})",
        std::process::id(),
        path.display(),
        if config.database_list.is_empty() {
            "databases: every one with pgq".to_string()
        } else {
            format!("databases: {}", config.database_list.join(", "))
        },
        config
            .exit_on_unreachable
            .map_or("never".to_string(), |d| format!("{} s", d.as_secs_f64()))
    ));
    // Type=notify units: started once the health port is bound; the watchdog hears from
    // this runtime while it runs tasks.
    strata_health::notify::ready("ticking");
    let _watchdog = AbortOnDrop(tokio::spawn(strata_health::notify::watchdog()));
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    let mut discovery: Option<JoinHandle<Option<Wanted>>> = None;
    let mut check = tokio::time::interval(config.check_period);
    let mut stats = tokio::time::interval(config.stats_period);
    stats.reset();
    let mut policy = tokio::time::interval(Duration::from_secs(1));
    let exit = loop {
        tokio::select! {
            // Discovery runs as a task of its own: a database that hangs while it is
            // looked at must not keep signals from being handled.
            _ = check.tick(), if discovery.is_none() => {
                discovery = Some(tokio::spawn(discover(config.clone(), log.clone(), health.clone())));
            }
            found = async { discovery.as_mut().expect("guarded by is_some").await }, if discovery.is_some() => {
                discovery = None;
                let Ok(Some(wanted)) = found else { continue };
                health.discovered();
                for (db, discovered) in &wanted {
                    let running = workers.get(db).is_some_and(|w| !w.task.is_finished());
                    if !running {
                        let (tx, rx) = watch::channel(false);
                        let task = tokio::spawn(db::run(db.clone(), *discovered, config.clone(), log.clone(), health.clone(), rx));
                        workers.insert(db.clone(), Worker { stop: tx, task });
                    }
                }
                // Stopped together: one grace period in all, not one per database, as
                // signals wait while this branch runs.
                let gone: Vec<String> = workers.keys().filter(|d| !wanted.iter().any(|(w, _)| w == *d)).cloned().collect();
                stop_workers(gone.iter().filter_map(|db| workers.remove(db))).await;
                for db in &gone {
                    health.forget(db);
                    log.info(format!("{db}: no longer ticked"));
                }
            }
            _ = stats.tick() => log_stats(&log, &health),
            _ = policy.tick(), if config.exit_on_unreachable.is_some() => {
                let limit = config.exit_on_unreachable.unwrap_or_default();
                if let Some((db, unticked, stalled)) = health.longest_unticked() {
                    if unticked >= limit {
                        let how = if stalled { "stalled (connected, no ticker round)" } else { "unreachable" };
                        log.warn(format!("{db}: {how} for {} s (exit_on_unreachable = {} s): stopping", unticked.as_secs(), limit.as_secs()));
                        break Exit::Unreachable { database: db, secs: unticked.as_secs(), stalled };
                    }
                }
            }
            _ = signals.0.recv() => {
                match load(path, read, overrides) {
                    Ok(new) => {
                        log.info("SIGHUP: configuration reloaded, restarting database workers");
                        if new.health_listen != config.health_listen || new.pidfile != config.pidfile || new.logfile != config.logfile {
                            log.warn("SIGHUP: health_listen, pidfile and logfile changes need a restart");
                        }
                        if let Some(d) = discovery.take() {
                            d.abort();
                        }
                        stop_all(&mut workers).await;
                        for db in health.snapshot().keys() {
                            health.forget(db);
                        }
                        config = TickerConfig { health_listen: config.health_listen.clone(), pidfile: config.pidfile.clone(), logfile: config.logfile.clone(), ..new };
                        health.set_stall_limit(config.stall_limit());
                        check = tokio::time::interval(config.check_period);
                        stats = tokio::time::interval(config.stats_period);
                        stats.reset();
                    }
                    Err(e) => log.warn(format!("SIGHUP: keeping the old configuration: {}", e.full_message())),
                }
            }
            _ = signals.1.recv() => break Exit::Stopped,
            _ = signals.2.recv() => break Exit::Stopped,
        }
    };
    strata_health::notify::stopping(match &exit {
        Exit::Stopped => "stopping on a signal",
        Exit::Unreachable { .. } => "stopping: exit_on_unreachable",
    });
    if let Some(d) = discovery.take() {
        d.abort();
    }
    stop_all(&mut workers).await;
    match &exit {
        Exit::Stopped => log.info("ticker stopped"),
        Exit::Unreachable { .. } => log.warn("ticker stopped by the exit policy"),
    }
    Ok(exit)
}

/// Aborts a background task when dropped (the health server ends with the ticker, a
/// database's upkeep with its worker).
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_policy(_: &Path) -> Result<TickerConfig, PgqError> {
        Ok(TickerConfig {
            exit_on_unreachable: Some(Duration::from_secs(5)),
            ..TickerConfig::default()
        })
    }

    #[test]
    fn exit_on_unreachable_zero_turns_the_policy_off() {
        assert_eq!(exit_policy(None).unwrap(), None);
        assert_eq!(exit_policy(Some(0.0)).unwrap(), Some(None));
        assert_eq!(
            exit_policy(Some(2.5)).unwrap(),
            Some(Some(Duration::from_millis(2500)))
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(exit_policy(Some(bad)).unwrap_err().is_bad_input(), "{bad}");
        }
    }

    #[test]
    fn an_exit_policy_that_fired_names_the_database_and_why() {
        let exit = |stalled| Exit::Unreachable {
            database: "db1".into(),
            secs: 7,
            stalled,
        };
        assert_eq!(
            exit(false).to_string(),
            "ticker stopped: database db1 unreachable for 7 s (exit_on_unreachable)"
        );
        assert_eq!(
            exit(true).to_string(),
            "ticker stopped: database db1 stalled (connected, no ticker round) for 7 s (exit_on_unreachable)"
        );
    }

    #[test]
    fn the_command_line_can_turn_the_exit_policy_off_or_change_it() {
        let path = Path::new("unused.ini");
        let kept = load(path, with_policy, &Overrides::default()).unwrap();
        assert_eq!(kept.exit_on_unreachable, Some(Duration::from_secs(5)));
        let off = Overrides {
            exit_on_unreachable: Some(None),
            ..Overrides::default()
        };
        assert_eq!(
            load(path, with_policy, &off).unwrap().exit_on_unreachable,
            None
        );
        let other = Overrides {
            exit_on_unreachable: Some(Some(Duration::from_secs(9))),
            ..Overrides::default()
        };
        assert_eq!(
            load(path, with_policy, &other).unwrap().exit_on_unreachable,
            Some(Duration::from_secs(9))
        );
    }
}
