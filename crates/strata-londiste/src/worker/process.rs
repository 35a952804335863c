//! The process's edge: the `worker` command ([`run_until_signal`]), detached or not, its
//! health server ([`serve_health`]) and its signals ([`stop_on_signal`]).

use super::run::run;
use super::{ReplayStats, WorkerOptions};
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use std::sync::Arc;
use strata_pgq::log::Log;
use tokio::sync::watch;

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
