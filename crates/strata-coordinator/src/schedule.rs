//! The scheduler of `strata server`: backup, cleanup and verify jobs on cron expressions.
//!
//! Each job's next run is the next cron match after the previous one, in the job's time
//! zone, plus an optional random jitter. A job never overlaps itself: a run that comes due
//! while the previous one still runs is skipped and recorded. The start of every run is
//! persisted, so after a restart the first due time is the first match after the last
//! start: if runs were missed, exactly one runs at once, and the schedule continues from
//! now. Time comes from a [`Clock`], so tests move it by hand instead of sleeping.

use crate::config::ScheduleConfig;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Where the scheduler gets the time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Runs one job; `Ok` carries a one-line outcome, `Err` why it failed.
#[async_trait::async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs `job` once, to its end.
    async fn run(&self, job: &ScheduleConfig) -> Result<String, JobError>;
}

/// Why a scheduled run failed. The schedule shows it as one line; a caller that acts on
/// the kind (a busy cluster is tried at the next run, not alerted on) matches the variant.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The use case failed, with its error's kind (busy, lock lost, storage, ...).
    #[error("{}", strata_util::error_chain(.0))]
    Operation(#[from] crate::CoordinatorError),
    /// The run ended but not well: a backup not complete, a verification or a drill that
    /// found problems, a table run with a failed table. The line says which.
    #[error("{0}")]
    Outcome(String),
    /// The job cannot run in this process: not a job it knows, a setting it cannot use,
    /// or a process that only shows schedules.
    #[error("{0}")]
    NotRunnable(String),
    /// Another crate's use case failed (table lifecycle), its error kept as the source.
    #[error("{}", strata_util::error_chain(.0.as_ref()))]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl JobError {
    /// Whether it failed because another operation holds the cluster (tried again at the
    /// job's next run).
    pub fn is_busy(&self) -> bool {
        matches!(self, JobError::Operation(e) if e.code() == strata_cluster::node_api::ErrorCode::Busy)
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    /// RFC 3339.
    pub started: String,
    /// When the run ended (RFC 3339); none while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// `running`, `succeeded`, `failed` or `skipped`.
    pub outcome: String,
    /// What the job said when it ended: its result, or why it failed or was skipped.
    pub detail: String,
}

/// A job as `strata schedules` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    /// The job's name (`name` of its `[[schedules]]` entry, by default the job).
    pub name: String,
    /// What runs: `backup`, `cleanup`, `verify`, `drill`, `tables` or `sql`.
    pub job: String,
    /// When it runs: a cron expression of 5 fields, or 6 with seconds first.
    pub cron: String,
    /// The IANA time zone the cron expression is read in.
    pub timezone: String,
    /// RFC 3339.
    pub next: Option<String>,
    /// The last run, if any.
    pub last: Option<RunRecord>,
    /// Runs skipped because the previous one was still running, since the server started.
    pub skipped: u64,
}

/// Checks a schedule's job, cron expression and time zone.
// String: a validator; the configuration wraps the line at once (ConfigError::Invalid).
pub fn check(schedule: &ScheduleConfig) -> Result<(), String> {
    if !["backup", "cleanup", "verify", "drill", "tables", "sql"].contains(&schedule.job.as_str()) {
        return Err(format!(
            "schedule {:?}: job {:?} is not one of backup, cleanup, verify, drill, tables or sql",
            schedule.name(),
            schedule.job
        ));
    }
    if (schedule.job == "sql") != schedule.sql.is_some() {
        return Err(format!(
            "schedule {:?}: `sql = \"NAME\"` (a [[tables.jobs]] entry) goes with job = \"sql\", and only with it",
            schedule.name()
        ));
    }
    parse_cron(&schedule.cron).map_err(|e| format!("schedule {:?}: {e}", schedule.name()))?;
    schedule.timezone.parse::<Tz>().map_err(|_| {
        format!(
            "schedule {:?}: timezone {:?} is not an IANA time zone",
            schedule.name(),
            schedule.timezone
        )
    })?;
    Ok(())
}

fn parse_cron(expression: &str) -> Result<Cron, BadCron> {
    Cron::new(expression)
        .with_seconds_optional()
        .parse()
        .map_err(|source| BadCron {
            expression: expression.to_string(),
            source,
        })
}

/// A cron expression that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("cron {expression:?}: {source}")]
struct BadCron {
    /// The expression as configured.
    expression: String,
    /// What the parser said.
    source: croner::errors::CronError,
}

struct Job {
    config: ScheduleConfig,
    cron: Cron,
    tz: Tz,
    state: Mutex<JobState>,
}

#[derive(Default)]
struct JobState {
    next: Option<DateTime<Utc>>,
    last: Option<RunRecord>,
    running: bool,
    skipped: u64,
}

impl Job {
    /// The first match after `after`, plus jitter.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        let jitter = if self.config.jitter_secs > 0 {
            let mut bytes = [0u8; 8];
            getrandom::getrandom(&mut bytes).expect("the OS random source is available");
            u64::from_le_bytes(bytes) % (self.config.jitter_secs + 1)
        } else {
            0
        };
        Some(next.with_timezone(&Utc) + chrono::Duration::seconds(jitter as i64))
    }
}

/// The jobs of a coordinator and their state.
pub struct Scheduler {
    jobs: Vec<Arc<Job>>,
    runner: Arc<dyn JobRunner>,
    clock: Arc<dyn Clock>,
    /// Last start of every job, kept across restarts.
    state_file: Option<PathBuf>,
    starts: Mutex<BTreeMap<String, String>>,
}

impl Scheduler {
    /// A scheduler of `schedules`; `state_file` remembers the last starts.
    pub fn new(
        schedules: &[ScheduleConfig],
        runner: Arc<dyn JobRunner>,
        clock: Arc<dyn Clock>,
        state_file: Option<PathBuf>,
        // String: refuses only what `check` does; callers wrap the line at once (CoordinatorError::Invalid).
    ) -> Result<Arc<Scheduler>, String> {
        let starts: BTreeMap<String, String> = state_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let now = clock.now();
        let mut jobs = Vec::new();
        for config in schedules {
            check(config)?;
            let job = Job {
                config: config.clone(),
                cron: parse_cron(&config.cron).map_err(|e| e.to_string())?,
                tz: config.timezone.parse().expect("checked"),
                state: Mutex::new(JobState::default()),
            };
            let last_start = starts
                .get(config.name())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            job.state.lock().unwrap().next = job.next_after(last_start.unwrap_or(now));
            jobs.push(Arc::new(job));
        }
        Ok(Arc::new(Scheduler {
            jobs,
            runner,
            clock,
            state_file,
            starts: Mutex::new(starts),
        }))
    }

    /// Starts every job that is due; returns the started runs (tests await them).
    pub fn tick(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let now = self.clock.now();
        let mut started = Vec::new();
        for job in &self.jobs {
            let mut state = job.state.lock().unwrap();
            if state.next.is_none_or(|next| next > now) {
                continue;
            }
            state.next = job.next_after(now);
            let stamp = now.to_rfc3339();
            if state.running {
                state.skipped += 1;
                eprintln!(
                    "strata scheduler: {} skipped at {stamp}: the previous run is still running",
                    job.config.name()
                );
                continue;
            }
            state.running = true;
            state.last = Some(RunRecord {
                started: stamp.clone(),
                finished: None,
                outcome: "running".into(),
                detail: String::new(),
            });
            drop(state);
            self.remember_start(job.config.name(), &stamp);
            let (scheduler, job) = (self.clone(), job.clone());
            started.push(tokio::spawn(async move {
                let result = scheduler.runner.run(&job.config).await;
                let finished = scheduler.clock.now().to_rfc3339();
                let mut state = job.state.lock().unwrap();
                state.running = false;
                let (outcome, detail) = match result {
                    Ok(detail) => ("succeeded", detail),
                    Err(why) => ("failed", why.to_string()),
                };
                eprintln!(
                    "strata scheduler: {} {outcome}: {detail}",
                    job.config.name()
                );
                state.last = Some(RunRecord {
                    started: stamp,
                    finished: Some(finished),
                    outcome: outcome.into(),
                    detail,
                });
            }));
        }
        started
    }

    fn remember_start(&self, name: &str, stamp: &str) {
        let mut starts = self.starts.lock().unwrap();
        starts.insert(name.to_string(), stamp.to_string());
        if let Some(path) = &self.state_file {
            let body = serde_json::to_vec_pretty(&*starts).expect("states serialize");
            let tmp = path.with_extension("json.tmp");
            let written = std::fs::create_dir_all(path.parent().unwrap_or(path))
                .and_then(|_| std::fs::write(&tmp, body))
                .and_then(|_| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                eprintln!(
                    "strata scheduler: warning: cannot save {}: {e} (a restart may run a job again)",
                    path.display()
                );
            }
        }
    }

    /// Every job with its next and last run.
    pub fn status(&self) -> Vec<JobStatus> {
        let starts = self.starts.lock().unwrap();
        self.jobs
            .iter()
            .map(|job| {
                let state = job.state.lock().unwrap();
                let last = state.last.clone().or_else(|| {
                    starts.get(job.config.name()).map(|started| RunRecord {
                        started: started.clone(),
                        finished: None,
                        outcome: "unknown".into(),
                        detail: "started before this server did".into(),
                    })
                });
                JobStatus {
                    name: job.config.name().to_string(),
                    job: job.config.job.clone(),
                    cron: job.config.cron.clone(),
                    timezone: job.config.timezone.clone(),
                    next: state.next.map(|t| t.to_rfc3339()),
                    last,
                    skipped: state.skipped,
                }
            })
            .collect()
    }

    /// Runs the schedule until the process ends: ticks whenever a job comes due (and at
    /// least every 30 s, so a changed system clock is noticed).
    pub async fn run(self: Arc<Self>) {
        loop {
            self.tick();
            let now = self.clock.now();
            let soonest = self
                .jobs
                .iter()
                .filter_map(|j| j.state.lock().unwrap().next)
                .min();
            let wait = soonest
                .map(|t| (t - now).to_std().unwrap_or_default())
                .unwrap_or(std::time::Duration::from_secs(30))
                .min(std::time::Duration::from_secs(30));
            tokio::time::sleep(wait.max(std::time::Duration::from_millis(20))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct ManualClock(Mutex<DateTime<Utc>>);

    impl ManualClock {
        fn at(t: &str) -> Arc<ManualClock> {
            Arc::new(ManualClock(Mutex::new(
                DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc),
            )))
        }
        fn set(&self, t: &str) {
            *self.0.lock().unwrap() = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    /// Counts runs; each run waits until the test lets it finish.
    struct Gate {
        runs: AtomicUsize,
        release: tokio::sync::Semaphore,
    }

    impl Default for Gate {
        fn default() -> Self {
            Gate {
                runs: AtomicUsize::new(0),
                release: tokio::sync::Semaphore::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl JobRunner for Gate {
        async fn run(&self, _job: &ScheduleConfig) -> Result<String, JobError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.release.acquire().await.unwrap().forget();
            Ok("done".into())
        }
    }

    fn daily(tz: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: None,
            job: "backup".into(),
            cron: "0 2 * * *".into(),
            timezone: tz.into(),
            jitter_secs: 0,
            read_data: false,
            read_data_subset: None,
            tags: Vec::new(),
            sql: None,
        }
    }

    #[tokio::test]
    async fn a_job_runs_when_due_in_its_time_zone_and_never_overlaps_itself() {
        let clock = ManualClock::at("2026-11-23T00:30:00Z");
        let gate = Arc::new(Gate::default());
        let s =
            Scheduler::new(&[daily("Europe/Berlin")], gate.clone(), clock.clone(), None).unwrap();
        // 02:00 in Berlin is 01:00 UTC in November.
        assert_eq!(
            s.status()[0].next.as_deref(),
            Some("2026-11-23T01:00:00+00:00")
        );
        assert!(s.tick().is_empty(), "not due yet");
        clock.set("2026-11-23T01:00:00Z");
        let first = s.tick();
        assert_eq!(first.len(), 1);
        tokio::task::yield_now().await;
        // The run hangs past the next slot: that slot is skipped and recorded.
        clock.set("2026-11-24T01:00:05Z");
        assert!(s.tick().is_empty());
        assert_eq!(s.status()[0].skipped, 1);
        assert_eq!(s.status()[0].last.as_ref().unwrap().outcome, "running");
        gate.release.add_permits(1);
        for h in first {
            h.await.unwrap();
        }
        let status = &s.status()[0];
        assert_eq!(status.last.as_ref().unwrap().outcome, "succeeded");
        assert_eq!(status.next.as_deref(), Some("2026-11-25T01:00:00+00:00"));
        assert_eq!(gate.runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn missed_runs_after_a_restart_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("schedules.json");
        let gate = Arc::new(Gate::default());
        gate.release.add_permits(100);
        let clock = ManualClock::at("2026-11-20T00:00:00Z");
        let s = Scheduler::new(
            &[daily("UTC")],
            gate.clone(),
            clock.clone(),
            Some(state.clone()),
        )
        .unwrap();
        clock.set("2026-11-20T02:00:00Z");
        for h in s.tick() {
            h.await.unwrap();
        }
        assert_eq!(gate.runs.load(Ordering::SeqCst), 1);
        drop(s);
        // Down for three days: three slots missed.
        clock.set("2026-11-23T12:00:00Z");
        let s = Scheduler::new(&[daily("UTC")], gate.clone(), clock.clone(), Some(state)).unwrap();
        assert!(s.status()[0].last.is_some(), "the last start is remembered");
        for h in s.tick() {
            h.await.unwrap();
        }
        for h in s.tick() {
            h.await.unwrap();
        }
        assert_eq!(
            gate.runs.load(Ordering::SeqCst),
            2,
            "one catch-up run, not three"
        );
        assert_eq!(
            s.status()[0].next.as_deref(),
            Some("2026-11-24T02:00:00+00:00")
        );
    }

    #[tokio::test]
    async fn jitter_delays_within_its_bound_and_bad_schedules_are_refused() {
        let clock = ManualClock::at("2026-11-23T00:00:00Z");
        let gate = Arc::new(Gate::default());
        let jittery = ScheduleConfig {
            jitter_secs: 600,
            ..daily("UTC")
        };
        for _ in 0..20 {
            let s = Scheduler::new(
                std::slice::from_ref(&jittery),
                gate.clone(),
                clock.clone(),
                None,
            )
            .unwrap();
            let next = s.status()[0].next.clone().unwrap();
            let next = DateTime::parse_from_rfc3339(&next).unwrap();
            let slot = DateTime::parse_from_rfc3339("2026-11-23T02:00:00Z").unwrap();
            assert!(next >= slot && next <= slot + chrono::Duration::seconds(600));
        }
        let bad = ScheduleConfig {
            cron: "61 * * * *".into(),
            ..daily("UTC")
        };
        assert!(Scheduler::new(&[bad], gate, clock, None).is_err());
    }
}
