//! Table retention runs told to the webhooks: what `strata tables run`, the API's
//! `POST /api/v1/tables/run` and the scheduler's `tables` jobs share, so the webhooks
//! hear of every run whoever started it (the run and its steps are audited by the engine
//! in the database itself).
//!
//! A delivery is a task on the runtime that tells it: a run on a thread of its own (the
//! API's, the scheduler's) is told from the caller's runtime, which outlives the run's.

use std::sync::Arc;
use strata_coordinator::events::{Ending, Events, TablesRunReport};
use strata_tables::config::TablesConfig;
use strata_tables::run::{RunObserver, StoreResolver};
use strata_tables::{Engine, RunReport, TablesResult, TagFilter};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The policies run.
    pub filter: TagFilter,
    /// The time the run acts as of (a partition expires by its bound and this).
    pub cutoff: strata_tables::chrono::DateTime<strata_tables::chrono::Utc>,
    /// Plan and record the run, change nothing.
    pub dry_run: bool,
}

/// The database of `[tables]` as a report names it: `user@host:port/db`, never a
/// password, even one left in the DSN (empty without one).
pub fn tables_target(tables: &TablesConfig) -> String {
    tables
        .db
        .as_deref()
        .and_then(|text| strata_pgclient::Dsn::parse(text).ok())
        .map(|dsn| dsn.describe())
        .unwrap_or_default()
}

/// Tells the webhooks how a run they heard start ended (see [`strata_api::tell_end`]).
pub fn tell_end(told: &TablesRunReport, run: &TablesResult<RunReport>) {
    match run {
        Ok(report) => {
            let (Ok(line) | Err(line)) = report.job_result();
            strata_api::tell_end(told, report.run_outcome(), &line);
        }
        Err(err) => told.end(Ending::Failed, &strata_coordinator::error_chain(err)),
    }
}

/// Runs `request` on `engine` here, telling `events` that it started (as the engine's
/// `who`, on its database) and how it ended.
pub async fn run_told(
    engine: &mut Engine,
    events: Arc<Events>,
    request: &RunRequest,
    stores: StoreResolver<'_>,
    observer: &dyn RunObserver,
) -> TablesResult<RunReport> {
    let told = TablesRunReport::start(events, engine.who(), engine.target());
    let run = engine
        .run(
            &request.filter,
            request.cutoff,
            request.dry_run,
            stores,
            observer,
        )
        .await;
    tell_end(&told, &run);
    run
}
