//! How a worker is doing, as `/ready` says it ([`WorkerHealth`]), and the watchdog that
//! marks it failing while its main loop makes no progress.

use crate::monitor::WorkerMetrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_pgq::log::Log;

/// Marks the worker not ready and failing while its main loop makes no progress for
/// `limit` (`stall_timeout`): a worker stuck waiting (on a lock, a table's hand-over, a
/// copy task) would otherwise answer ready while only its lag rises. The next round of
/// work makes it ready again.
pub(super) async fn watch_for_stalls(
    health: WorkerHealth,
    metrics: WorkerMetrics,
    log: Log,
    limit: Duration,
) {
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
    pub(super) fn connected(&self) {
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

    pub(super) fn rounds(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connected to the node at a (re)start: ready only the first time. After a failure
    /// the worker stays not ready until a round goes through, so a batch that keeps
    /// failing never shows ready between its retries.
    pub(super) fn reached(&self) {
        let mut readiness = self.0.lock().unwrap();
        if let Readiness::Connecting = *readiness {
            *readiness = Readiness::Replaying;
        }
    }

    pub(super) fn failed(&self, why: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
