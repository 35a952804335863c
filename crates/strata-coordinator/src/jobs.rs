//! What scheduled jobs do: back up the cluster, apply the retention policy and collect
//! garbage, verify the repository (recording the outcome per backup). Each job is one
//! call of the use case the CLI and the API call too ([`crate::actions`],
//! [`crate::coordinator::Coordinator::backup`]); a job only turns its outcome into the line
//! the schedule shows.

use crate::config::ScheduleConfig;
use crate::schedule::{JobError, JobRunner};
use std::path::PathBuf;
use std::sync::Arc;

/// The jobs of a coordinator: backups of its cluster, cleanup with its retention policy,
/// verification of its repository.
pub struct ClusterJobs {
    /// The coordinator that runs the backups, cleanups and verifications.
    pub coordinator: Arc<crate::coordinator::Coordinator>,
    /// The policy a cleanup applies.
    pub retention: crate::config::RetentionConfig,
}

impl ClusterJobs {
    /// Applies the retention policy and expires old WAL, then collects garbage if
    /// anything was removed.
    async fn cleanup(&self, who: &str) -> Result<String, JobError> {
        self.coordinator
            .actions()
            .cleanup(who, &self.retention, false)
            .await
            .map(|report| report.summary())
            .map_err(JobError::from)
    }
}

#[async_trait::async_trait]
impl JobRunner for ClusterJobs {
    async fn run(&self, job: &ScheduleConfig) -> Result<String, JobError> {
        let who = format!("scheduler:{}", job.name());
        match job.job.as_str() {
            "backup" => {
                let summary = self
                    .coordinator
                    .backup(&who)
                    .await
                    .map_err(JobError::from)?
                    .run()
                    .await
                    .map_err(JobError::from)?;
                let line = format!("backup {} {}", summary.name, summary.status.as_str());
                if !summary.is_complete() {
                    return Err(JobError::Outcome(line));
                }
                // With a retention policy configured, every scheduled backup is followed
                // by a cleanup, so the repository never holds more than the policy says.
                if self.retention.check().is_err() {
                    return Ok(line);
                }
                let cleanup = self.cleanup(&who).await?;
                Ok(format!("{line}; cleanup: {cleanup}"))
            }
            "cleanup" => self.cleanup(&who).await,
            "verify" => self.verify(&who, job).await,
            "drill" => self.drill(&who).await,
            other => Err(JobError::NotRunnable(format!("unknown job {other:?}"))),
        }
    }
}

impl ClusterJobs {
    /// A restore drill of the latest complete backup (a PostgreSQL node's copy started and
    /// checked page by page), recorded like `strata verify --restore latest`.
    async fn drill(&self, who: &str) -> Result<String, JobError> {
        let state_dir = self
            .coordinator
            .hooks()
            .pauses
            .as_ref()
            .map(|p| p.state_dir().to_path_buf())
            .ok_or_else(|| {
                JobError::NotRunnable("no state directory for the drill's scratch copy".into())
            })?;
        let summary = crate::resolve_backup(self.coordinator.repo(), "latest")
            .await
            .map_err(JobError::from)?;
        let report = self
            .coordinator
            .actions()
            .drill(who, &summary, &state_dir)
            .await
            .map_err(JobError::from)?;
        let (outcome, detail) = report.outcome();
        match outcome {
            "succeeded" => Ok(format!("{} of {}", detail, report.backup)),
            _ => Err(JobError::Outcome(format!(
                "{} of {}",
                detail, report.backup
            ))),
        }
    }

    /// Verifies the repository as the job says, recording the outcome per backup.
    async fn verify(&self, who: &str, job: &ScheduleConfig) -> Result<String, JobError> {
        use crate::verify::DataCheck;
        let check = match (&job.read_data_subset, job.read_data) {
            (Some(p), _) => {
                DataCheck::Subset(crate::actions::parse_percent(p).ok_or_else(|| {
                    JobError::NotRunnable(format!("read_data_subset {p:?} is not a percentage"))
                })?)
            }
            (None, true) => DataCheck::All,
            (None, false) => DataCheck::Structure,
        };
        let report = self
            .coordinator
            .actions()
            .verify(who, None, check)
            .await
            .map_err(JobError::from)?;
        if report.is_ok() {
            Ok(format!(
                "{} backups verified ({})",
                report.backups,
                check.mode()
            ))
        } else {
            Err(JobError::Outcome(format!(
                "{} problems; first: {}",
                report.problems.len(),
                report.problems[0]
            )))
        }
    }
}

/// A runner for showing schedules without running them (`strata schedules` in-process).
pub struct NoRuns;

#[async_trait::async_trait]
impl JobRunner for NoRuns {
    async fn run(&self, _job: &ScheduleConfig) -> Result<String, JobError> {
        Err(JobError::NotRunnable(
            "this process only shows schedules; `strata server` runs them".into(),
        ))
    }
}

/// Where the scheduler of a state directory remembers its last starts.
pub fn state_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("schedules.json")
}
