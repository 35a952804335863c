//! What `strata server`'s scheduler runs. Cluster jobs (backup, cleanup, verify) go to the
//! coordinator's [`ClusterJobs`]; `tables` jobs run table retention on `[tables] db`. The
//! two live in crates that do not know each other (strata-tables sits beside the
//! coordinator), so they meet here, in the server that runs both.

use std::future::Future;
use std::sync::Arc;
use strata_coordinator::config::{Config, ScheduleConfig};
use strata_coordinator::events::{Ending, Events, TablesRunReport};
use strata_coordinator::jobs::ClusterJobs;
use strata_coordinator::schedule::{JobError, JobRunner};
use strata_coordinator::storage::Storage;
use strata_tables::config::TablesConfig;
use tokio::runtime::Builder;

/// The scheduler's runner: cluster jobs when the server coordinates nodes, table retention
/// when `[tables] db` is set.
pub struct ServerJobs {
    pub cluster: Option<ClusterJobs>,
    pub config: Config,
    /// `[tables]`: the database `tables` jobs run on.
    pub tables: TablesConfig,
    pub events: Arc<Events>,
}

impl ServerJobs {
    /// Checks that every schedule has what its job needs, before the server starts.
    // String: a validator; the server's start wraps the line at once (ComposeError::Usage).
    pub fn check(&self) -> Result<(), String> {
        for schedule in &self.config.schedules {
            match schedule.job.as_str() {
                "tables" | "sql" if self.tables.db.is_none() => {
                    return Err(format!(
                        "schedule {:?} runs on the tables database but [tables] db is not set",
                        schedule.name()
                    ))
                }
                "tables" => {}
                "sql" => {
                    let name = schedule.sql.as_deref().unwrap_or_default();
                    self.tables
                        .job(name)
                        .map_err(|e| format!("schedule {:?}: {e}", schedule.name()))?;
                }
                _ if self.cluster.is_none() => {
                    return Err(format!(
                        "schedule {:?} ({}) needs the coordinator: configure [[nodes]]",
                        schedule.name(),
                        schedule.job
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// One `tables run` at the current time over the policies with the job's tags, on a
    /// thread of its own (see [`on_own_thread`]).
    async fn tables(&self, job: &ScheduleConfig) -> Result<String, JobError> {
        let (config, tables, job) = (self.config.clone(), self.tables.clone(), job.clone());
        on_own_thread("table retention", move || async move {
            Self::run_tables(&config, &tables, &job).await
        })
        .await
        .map_err(JobError::NotRunnable)?
    }

    /// One run of the `[[tables.jobs]]` entry the schedule names, on a thread of its own.
    async fn sql(&self, job: &ScheduleConfig) -> Result<String, JobError> {
        let (tables, job) = (self.tables.clone(), job.clone());
        on_own_thread("scheduled SQL", move || async move {
            let name = job.sql.as_deref().unwrap_or_default();
            strata_tables::run_scheduled_sql(&tables, job.name(), name)
                .await
                .map_err(|e| JobError::Other(Box::new(e)))?
                .job_result()
                .map_err(JobError::Outcome)
        })
        .await
        .map_err(JobError::NotRunnable)?
    }

    async fn run_tables(
        config: &Config,
        tables: &TablesConfig,
        job: &ScheduleConfig,
    ) -> Result<String, JobError> {
        let stores = strata_tables::named_storages(|name| Storage::open_for_archives(config, name));
        let report = strata_tables::run_scheduled(tables, job.name(), &job.tags, &stores)
            .await
            .map_err(|e| JobError::Other(Box::new(e)))?;
        report.job_result().map_err(JobError::Outcome)
    }
}

#[async_trait::async_trait]
impl JobRunner for ServerJobs {
    async fn run(&self, job: &ScheduleConfig) -> Result<String, JobError> {
        if job.job != "tables" && job.job != "sql" {
            return match &self.cluster {
                Some(cluster) => cluster.run(job).await,
                None => Err(JobError::NotRunnable(format!(
                    "{} needs the coordinator",
                    job.job
                ))),
            };
        }
        let who = format!("scheduler:{}", job.name());
        let target = crate::tables_run::tables_target(&self.tables);
        // Table runs are audited in the database's own audit table; webhooks hear of them.
        let report = TablesRunReport::start(self.events.clone(), &who, &target);
        let result = match job.job.as_str() {
            "sql" => self.sql(job).await,
            _ => self.tables(job).await,
        };
        match &result {
            Ok(line) => report.end(Ending::Succeeded, line),
            Err(why) => report.end(Ending::Failed, &why.to_string()),
        }
        result
    }
}

/// Runs the future `make` builds on a thread of its own with a single-threaded runtime,
/// and waits for its result without blocking the caller's runtime: how `strata server`'s
/// scheduler runs table retention: it streams COPY data between two tasks, which on one
/// thread costs less CPU than across the threads of the multi-threaded runtime (see the
/// binary's `runtime` module and docs/benchmarks.md).
// String: a line for the run's report; tables_api.rs hands it on as text (`told.end`).
pub async fn on_own_thread<F, Fut, T>(what: &str, make: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let runtime = Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for {what}: {e}"))?;
    std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let _ = done.send(runtime.block_on(make()));
        })
        .map_err(|e| format!("cannot start a thread for {what}: {e}"))?;
    result
        .await
        .map_err(|_| format!("{what} stopped without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_on_its_own_thread_returns_its_result() {
        let caller = Builder::new_multi_thread().enable_all().build().unwrap();
        let caller_thread = std::thread::current().id();
        let (value, thread) = caller
            .block_on(on_own_thread("test work", || async {
                tokio::task::yield_now().await;
                (42, std::thread::current().id())
            }))
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, caller_thread);
    }

    #[test]
    fn a_panic_is_an_error_not_a_hang() {
        let caller = Builder::new_current_thread().enable_all().build().unwrap();
        let result: Result<(), String> =
            caller.block_on(on_own_thread("failing work", || async { panic!("boom") }));
        assert!(result.unwrap_err().contains("failing work"));
    }
}
