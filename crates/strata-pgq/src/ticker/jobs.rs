//! Failures of the jobs that must not stop ticking (maintenance functions, retry events,
//! queue figures, trigger installation): each is logged, counted in the health state by
//! job, and its job paused before the next try, as pgqd pauses maintenance after an
//! error, so a function that always fails neither floods the log nor takes the database
//! down, and the other jobs go on.

use super::health::Health;
use super::log::Log;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first pause after a failure (pgqd's); it doubles with each failure in a row.
pub const FIRST_PAUSE: Duration = Duration::from_secs(20);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

struct Failing {
    in_a_row: u32,
    retry_at: Instant,
}

/// The failing jobs of one database, by key (`public.fn(queue)`, `retry events`).
#[derive(Default)]
pub struct Jobs {
    failing: HashMap<String, Failing>,
}

impl Jobs {
    /// Whether the job may run now (it is not pausing after a failure).
    pub fn ready(&self, key: &str) -> bool {
        self.failing
            .get(key)
            .is_none_or(|f| Instant::now() >= f.retry_at)
    }

    /// Records a failure of job `key` (counted under `label` in the health state):
    /// logged with the pause before its next try.
    pub fn failed(
        &mut self,
        db: &str,
        key: &str,
        label: &str,
        error: &str,
        log: &Log,
        health: &Health,
    ) {
        let failing = self.failing.entry(key.to_string()).or_insert(Failing {
            in_a_row: 0,
            retry_at: Instant::now(),
        });
        failing.in_a_row += 1;
        let pause = pause(failing.in_a_row);
        failing.retry_at = Instant::now() + pause;
        health.job_failed(db, label);
        log.warn(format!(
            "{db}: {key} failed ({} in a row; next try in {} s, ticking goes on): {error}",
            failing.in_a_row,
            pause.as_secs()
        ));
    }

    /// Records a success of job `key`; logs the recovery of a job that was failing.
    pub fn succeeded(&mut self, db: &str, key: &str, log: &Log) {
        if let Some(f) = self.failing.remove(key) {
            log.info(format!(
                "{db}: {key} works again (after {} failures)",
                f.in_a_row
            ));
        }
    }
}

/// The pause after `n` failures in a row: 20 s, 40 s, 80 s, ... up to 10 min.
fn pause(n: u32) -> Duration {
    FIRST_PAUSE
        .saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(MAX_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_ten_minutes() {
        assert_eq!(pause(1), Duration::from_secs(20));
        assert_eq!(pause(2), Duration::from_secs(40));
        assert_eq!(pause(5), Duration::from_secs(320));
        assert_eq!(pause(6), MAX_PAUSE);
        assert_eq!(pause(u32::MAX), MAX_PAUSE);
    }

    #[test]
    fn a_failed_job_pauses_and_recovers() {
        let log = Log::open(None, true).unwrap();
        let health = Health::default();
        let mut jobs = Jobs::default();
        assert!(jobs.ready("f(q)"));
        jobs.failed("db", "f(q)", "f", "boom", &log, &health);
        assert!(!jobs.ready("f(q)"), "paused after a failure");
        assert!(jobs.ready("g(q)"), "other jobs go on");
        assert_eq!(health.snapshot()["db"].job_errors["f"], 1);
        jobs.succeeded("db", "f(q)", &log);
        assert!(jobs.ready("f(q)"));
    }
}
