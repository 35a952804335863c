//! What a coordinator counts for `/metrics`: finished operations by kind and outcome, how
//! long the last one of each kind took, node leases lost, bytes garbage collection freed
//! and verifications that failed.
//!
//! The counting sits with the operations, not in the server: a cleanup the scheduler runs
//! and one asked for through the API must be counted alike, and only the code that runs
//! an operation knows how it ended. The counts live as long as the coordinator (a
//! Prometheus counter that restarts from zero with the process is what `rate()` expects).

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Counts of finished operations, for metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationStats {
    /// (kind, outcome) -> operations. Kinds: `backup`, `restore`, `verify`, `cleanup`,
    /// `gc`; outcomes: `succeeded`, `partial`, `failed`.
    pub finished: BTreeMap<(String, String), u64>,
    /// kind -> duration of the last one, in seconds.
    pub last_duration_secs: BTreeMap<String, f64>,
    /// kind -> seconds all finished ones took together: with the counts, the mean duration
    /// over any window (`rate(sum) / rate(count)`), runs between two scrapes included.
    pub total_duration_secs: BTreeMap<String, f64>,
    /// Leases a running operation could not renew.
    pub lease_losses: u64,
    /// Bytes garbage collections run by this coordinator (API, scheduler) freed.
    pub gc_freed_bytes: u64,
    /// Verifications run by this coordinator that did not prove the repository sound:
    /// those that found problems and those that could not run to the end (an unreadable
    /// index, a storage error).
    pub verify_failures: u64,
    /// Resumes of pause hooks that still failed after their retries: something is left
    /// paused (see `strata status`).
    pub resume_failures: u64,
    /// (component, status) -> backups that recorded the component so: which part of a
    /// system keeps failing.
    pub components: BTreeMap<(String, String), u64>,
}

impl OperationStats {
    /// Counts one operation of `kind` that ended with `outcome` after `took`.
    pub(crate) fn finished(&mut self, kind: &str, outcome: &str, took: Duration) {
        *self
            .finished
            .entry((kind.to_string(), outcome.to_string()))
            .or_default() += 1;
        self.last_duration_secs
            .insert(kind.to_string(), took.as_secs_f64());
        *self
            .total_duration_secs
            .entry(kind.to_string())
            .or_default() += took.as_secs_f64();
    }

    /// Counts the components of a recorded backup by status.
    pub(crate) fn components(&mut self, summary: &strata_repo::summary::BackupSummary) {
        for c in &summary.components {
            *self
                .components
                .entry((c.name.clone(), c.status().as_str().to_string()))
                .or_default() += 1;
        }
    }

    /// Counts a verification: `ok` is false when it found problems or failed to run.
    pub(crate) fn verified(&mut self, ok: bool, took: Duration) {
        self.finished("verify", if ok { "succeeded" } else { "failed" }, took);
        if !ok {
            self.verify_failures += 1;
        }
    }

    /// Counts a garbage collection; `freed` is `None` when it failed.
    pub(crate) fn collected(&mut self, freed: Option<u64>, took: Duration) {
        let outcome = if freed.is_some() {
            "succeeded"
        } else {
            "failed"
        };
        self.finished("gc", outcome, took);
        self.gc_freed_bytes += freed.unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_and_errored_verifications_both_count_as_failures() {
        let mut stats = OperationStats::default();
        stats.verified(true, Duration::from_millis(1500));
        stats.verified(false, Duration::from_secs(1));
        stats.verified(false, Duration::from_secs(2));
        assert_eq!(stats.verify_failures, 2);
        assert_eq!(stats.finished[&("verify".into(), "failed".into())], 2);
        assert_eq!(stats.finished[&("verify".into(), "succeeded".into())], 1);
        assert_eq!(stats.last_duration_secs["verify"], 2.0);
        assert_eq!(stats.total_duration_secs["verify"], 4.5);
    }

    #[test]
    fn garbage_collections_count_with_what_they_freed() {
        let mut stats = OperationStats::default();
        stats.collected(Some(4096), Duration::from_secs(1));
        stats.collected(None, Duration::from_secs(1));
        stats.collected(Some(10), Duration::from_secs(1));
        assert_eq!(stats.gc_freed_bytes, 4106);
        assert_eq!(stats.finished[&("gc".into(), "succeeded".into())], 2);
        assert_eq!(stats.finished[&("gc".into(), "failed".into())], 1);
    }
}
