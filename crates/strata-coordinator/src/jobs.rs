//! What scheduled jobs do: back up the cluster, apply the retention policy and collect
//! garbage, verify the repository (recording the outcome per backup).

use crate::config::ScheduleConfig;
use crate::schedule::JobRunner;
use std::path::PathBuf;
use std::sync::Arc;

/// The jobs of a coordinator: backups of its cluster, cleanup with its retention policy,
/// verification of its repository.
pub struct ClusterJobs {
    pub coordinator: Arc<crate::cluster::Coordinator>,
    pub retention: crate::config::RetentionConfig,
}

impl ClusterJobs {
    /// Runs `work` as action `kind` of `who`, reporting its start and end (audit log,
    /// webhooks).
    async fn reported(
        &self,
        who: &str,
        kind: &str,
        work: impl std::future::Future<Output = Result<String, String>>,
    ) -> Result<String, String> {
        let action = crate::events::Action {
            who,
            kind,
            target: "all",
            operation: None,
        };
        self.coordinator
            .events()
            .started(&action, self.coordinator.storage());
        let result = work.await;
        let (outcome, detail) = match &result {
            Ok(line) => ("succeeded", line),
            Err(line) => ("failed", line),
        };
        self.coordinator.report(&action, outcome, detail).await;
        result
    }

    /// [`ClusterJobs::cleanup`], counted for metrics.
    async fn counted_cleanup(&self) -> Result<String, String> {
        let clock = std::time::Instant::now();
        let result = self.cleanup().await;
        let outcome = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        self.coordinator
            .record_operation("cleanup", outcome, clock.elapsed());
        result
    }

    /// Applies the retention policy and expires old WAL, then collects garbage if
    /// anything was removed.
    async fn cleanup(&self) -> Result<String, String> {
        let c = &self.coordinator;
        crate::retention::apply(c.repo(), &self.retention, false, || {
            c.collect_garbage(false)
        })
        .await
        .map(|report| report.summary())
        .map_err(|e| crate::backup::error_chain(&e))
    }
}

#[async_trait::async_trait]
impl JobRunner for ClusterJobs {
    async fn run(&self, job: &ScheduleConfig) -> Result<String, String> {
        let who = format!("scheduler:{}", job.name());
        match job.job.as_str() {
            "backup" => {
                let chain = |e: crate::CoordinatorError| crate::backup::error_chain(&e);
                let summary = self
                    .coordinator
                    .backup(&who)
                    .await
                    .map_err(chain)?
                    .run()
                    .await
                    .map_err(chain)?;
                let line = format!("backup {} {}", summary.name, summary.status.as_str());
                if !summary.is_complete() {
                    return Err(line);
                }
                // With a retention policy configured, every scheduled backup is followed
                // by a cleanup, so the repository never holds more than the policy says.
                if self.retention.check().is_err() {
                    return Ok(line);
                }
                let cleanup = self
                    .reported(&who, "cleanup", self.counted_cleanup())
                    .await?;
                Ok(format!("{line}; cleanup: {cleanup}"))
            }
            "cleanup" => self.reported(&who, "cleanup", self.counted_cleanup()).await,
            "verify" => self.reported(&who, "verify", self.verify(job)).await,
            other => Err(format!("unknown job {other:?}")),
        }
    }
}

impl ClusterJobs {
    /// Verifies the repository as the job says, recording the outcome per backup.
    async fn verify(&self, job: &ScheduleConfig) -> Result<String, String> {
        let chain = |e: crate::CoordinatorError| crate::backup::error_chain(&e);
        use crate::verify::DataCheck;
        let check = match (&job.read_data_subset, job.read_data) {
            (Some(p), _) => DataCheck::Subset(
                p.trim_end_matches('%')
                    .trim()
                    .parse()
                    .map_err(|_| format!("read_data_subset {p:?} is not a percentage"))?,
            ),
            (None, true) => DataCheck::All,
            (None, false) => DataCheck::Structure,
        };
        let report = self.coordinator.verify(None, check).await.map_err(chain)?;
        if report.is_ok() {
            Ok(format!(
                "{} backups verified ({})",
                report.backups,
                check.mode()
            ))
        } else {
            Err(format!(
                "{} problems; first: {}",
                report.problems.len(),
                report.problems[0]
            ))
        }
    }
}

/// A runner for showing schedules without running them (`strata schedules` in-process).
pub struct NoRuns;

#[async_trait::async_trait]
impl JobRunner for NoRuns {
    async fn run(&self, _job: &ScheduleConfig) -> Result<String, String> {
        Err("this process only shows schedules; `strata server` runs them".into())
    }
}

/// Where the scheduler of a state directory remembers its last starts.
pub fn state_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("schedules.json")
}
