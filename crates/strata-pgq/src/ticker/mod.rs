//! The ticker daemon: pgqd's job (ticks, retry events, maintenance for every database
//! with pgq) plus what pgqd lacks: wake-ups on event notifications, a health endpoint and
//! metrics that show an unreachable database, and an exit policy for it.

pub mod config;
pub mod db;
pub mod health;
pub mod log;

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
    /// `--exit-on-unreachable SECS`.
    pub exit_on_unreachable: Option<Duration>,
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
    /// The exit policy fired: this database was unreachable too long.
    Unreachable {
        /// The database.
        database: String,
        /// How long it had been unreachable.
        secs: u64,
    },
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
        config.exit_on_unreachable = Some(d);
    }
    if let Some(p) = &overrides.pidfile {
        config.pidfile = Some(p.clone());
    }
    if let Some(p) = &overrides.logfile {
        config.logfile = Some(p.clone());
    }
    Ok(config)
}

/// The databases to tick right now: the configured list, or every connectable database
/// whose pgq schema exists (`true` marks discovered ones).
async fn databases(config: &TickerConfig, log: &Log, health: &Health) -> Vec<(String, bool)> {
    if !config.database_list.is_empty() {
        return config
            .database_list
            .iter()
            .map(|d| (d.clone(), false))
            .collect();
    }
    let initial = &config.initial_database;
    let listed = async {
        let pg = conn::config_for(&config.base_connstr, initial)?;
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
            let Ok(pg) = conn::config_for(&config.base_connstr, &name) else { continue };
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
            found
        }
        Err(e) => {
            log.warn(format!(
                "{initial} (initial_database): {}",
                e.full_message()
            ));
            health.down(initial, e.full_message());
            Vec::new()
        }
    }
}

struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn stop_all(workers: &mut BTreeMap<String, Worker>) {
    for worker in workers.values() {
        let _ = worker.stop.send(true);
    }
    for (_, worker) in std::mem::take(workers) {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker.task).await;
    }
}

/// Runs the ticker from the config file at `path` (read with `read`) until
/// SIGTERM/SIGINT (or the exit policy); SIGHUP re-reads the file and restarts the
/// database workers with it. `quiet` keeps log lines off stderr when there is no logfile.
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
    let _pidfile = config
        .pidfile
        .as_deref()
        .map(crate::daemon::PidFile::create)
        .transpose()?;
    let health = Health::default();
    let mut signals = (
        signal(SignalKind::hangup()).map_err(|e| PgqError::io("installing SIGHUP handler", e))?,
        signal(SignalKind::terminate())
            .map_err(|e| PgqError::io("installing SIGTERM handler", e))?,
        signal(SignalKind::interrupt())
            .map_err(|e| PgqError::io("installing SIGINT handler", e))?,
    );
    let _server = match &config.health_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| PgqError::io(format!("listening on {addr} for /health"), e))?;
            log.info(format!(
                "health and metrics on http://{addr}/health and /metrics"
            ));
            Some(AbortOnDrop(tokio::spawn(health::serve(
                listener,
                health.clone(),
            ))))
        }
        None => None,
    };
    log.info(format!(
        "ticker started (pid {}, config {}, {})",
        std::process::id(),
        path.display(),
        if config.database_list.is_empty() {
            "databases: every one with pgq".to_string()
        } else {
            format!("databases: {}", config.database_list.join(", "))
        }
    ));
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    let mut check = tokio::time::interval(config.check_period);
    let mut stats = tokio::time::interval(config.stats_period);
    stats.reset();
    let mut policy = tokio::time::interval(Duration::from_secs(1));
    let exit = loop {
        tokio::select! {
            _ = check.tick() => {
                let wanted = databases(&config, &log, &health).await;
                for (db, discovered) in &wanted {
                    let running = workers.get(db).is_some_and(|w| !w.task.is_finished());
                    if !running {
                        let (tx, rx) = watch::channel(false);
                        let task = tokio::spawn(db::run(db.clone(), *discovered, config.clone(), log.clone(), health.clone(), rx));
                        workers.insert(db.clone(), Worker { stop: tx, task });
                    }
                }
                let gone: Vec<String> = workers.keys().filter(|d| !wanted.iter().any(|(w, _)| w == *d)).cloned().collect();
                for db in gone {
                    if let Some(w) = workers.remove(&db) {
                        let _ = w.stop.send(true);
                        let _ = w.task.await;
                        health.forget(&db);
                        log.info(format!("{db}: no longer ticked"));
                    }
                }
            }
            _ = stats.tick() => {
                for (db, s) in health.snapshot() {
                    log.info(format!(
                        "{db}: {} ticks ({} on wake-up), {} rotations, {} maintenance calls, {} retried events, {}",
                        s.ticks, s.wakeup_ticks, s.rotations, s.maint_calls, s.retried_events,
                        if s.up { "up".to_string() } else { format!("DOWN: {}", s.error.unwrap_or_default()) }
                    ));
                }
            }
            _ = policy.tick(), if config.exit_on_unreachable.is_some() => {
                let limit = config.exit_on_unreachable.unwrap_or_default();
                if let Some((db, down)) = health.longest_down() {
                    if down >= limit {
                        log.warn(format!("{db}: unreachable for {} s (exit_on_unreachable = {} s): stopping", down.as_secs(), limit.as_secs()));
                        break Exit::Unreachable { database: db, secs: down.as_secs() };
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
                        stop_all(&mut workers).await;
                        for db in health.snapshot().keys() {
                            health.forget(db);
                        }
                        config = TickerConfig { health_listen: config.health_listen.clone(), pidfile: config.pidfile.clone(), logfile: config.logfile.clone(), ..new };
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
    stop_all(&mut workers).await;
    match &exit {
        Exit::Stopped => log.info("ticker stopped"),
        Exit::Unreachable { .. } => log.warn("ticker stopped by the exit policy"),
    }
    Ok(exit)
}

/// Aborts a background task when dropped (the health server ends with the ticker).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
