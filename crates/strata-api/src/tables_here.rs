//! [`Tables`] on this host: the engine (`strata_tables::Engine`) on the database of
//! `[tables]` with the command line's `--db`, `--schema`, `--lock-timeout` and `--who`,
//! archives in the configuration's storages, runs told to its webhooks. Also what only
//! runs here: setting the policy tables up, SQL jobs, archives listed and loaded back,
//! files loaded.
//!
//! Each call opens its own connection first (a command makes one call), so a command
//! without a database fails on that before its options are read, as it always has.

use crate::runs::{DynStore, Ending, Events, Storage, TablesRunReport, Webhooks};
use crate::tables::{TablePlans, Tables, TablesOutcome};
use crate::types::tables::TableHistoryQuery;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::config::Config;
use strata_tables::archive::LoadReport;
use strata_tables::command::{CrateArgs, DbArgs, LoadArgs};
use strata_tables::config::TablesConfig;
use strata_tables::history::HistoryEntry;
use strata_tables::load_file::{LoadFileReport, LoadObserver};
use strata_tables::policy_args::{PolicyArgs, PolicyEditArgs};
use strata_tables::run::{RunObserver, RunOutcome};
use strata_tables::sql_job::SqlRun;
use strata_tables::{cutoff_or_now, AddOutcome, EditOutcome, Engine, Policy, PolicySpec};
use strata_tables::{RunReport, TableName, TablesResult, TagFilter, TtlArgs};

/// How long a command waits, at its end, for the webhooks to hear of its run: deliveries
/// still in flight would die with the process.
const FLUSH: Duration = Duration::from_secs(10);

/// The table lifecycle use cases on this host (see the module's doc).
pub struct TablesHere {
    /// `[tables]` with the command line's choices applied.
    tables: TablesConfig,
    /// Who the audit log records (default: the database user).
    who: Option<String>,
    /// The storages archives go to and come from, and the webhooks runs are told to.
    config: Config,
}

impl TablesHere {
    /// The use cases on `section` with the database options `db` of the command line,
    /// over the storages and webhooks of `config`.
    pub fn new(config: Config, section: &TablesConfig, db: &DbArgs) -> TablesHere {
        TablesHere {
            tables: section.overridden(db.db.clone(), db.schema.clone(), db.lock_timeout),
            who: db.who.clone(),
            config,
        }
    }

    async fn engine(&self) -> TablesResult<Engine> {
        Engine::open(&self.tables, self.who.clone()).await
    }

    /// The storages of the configuration by name, where archives go and come from.
    fn storages(&self) -> impl Fn(&str) -> TablesResult<DynStore> + Sync + '_ {
        strata_tables::named_storages(|name| Storage::open_for_archives(&self.config, name))
    }

    /// The storage `from` names (default: the default storage), with its name.
    fn archive_storage(&self, from: Option<String>) -> TablesResult<(String, DynStore)> {
        let name = from.unwrap_or_else(|| self.config.default_storage.clone());
        let store = self.storages()(&name)?;
        Ok((name, store))
    }

    /// Where runs report: the configuration's webhooks.
    fn events(&self) -> TablesOutcome<Arc<Events>> {
        Ok(Events::new(Webhooks::from_config(&self.config.webhooks)?))
    }

    /// `strata tables setup`: the policy tables, made or upgraded; answers their schema.
    pub async fn setup(&self) -> TablesResult<String> {
        let engine = self.engine().await?;
        engine.setup().await?;
        Ok(engine.catalog().schema().to_string())
    }

    /// `strata ttl`: adds the policy the shortcut describes; answers it with its id.
    pub async fn ttl(&self, ttl: TtlArgs) -> TablesResult<Policy> {
        let engine = self.engine().await?;
        add_with(&engine, &ttl.spec()?).await
    }

    /// `strata tables sql NAME`: runs the configured SQL job now (with `dry_run` records
    /// the run and runs nothing), telling the webhooks how it ended.
    pub async fn sql_job(&self, name: &str, dry_run: bool) -> TablesOutcome<SqlRun> {
        let engine = self.engine().await?;
        let job = self.tables.job(name)?;
        let events = self.events()?;
        let told = TablesRunReport::start(events.clone(), engine.who(), engine.target());
        let run = engine.run_sql_job(job, dry_run).await;
        match &run {
            Ok(report) => {
                let (Ok(line) | Err(line)) = report.job_result();
                tell_end(&told, report.outcome, &line);
            }
            Err(err) => told.end(Ending::Failed, &strata_coordinator::error_chain(err)),
        }
        events.flush(FLUSH).await;
        Ok(run?)
    }

    /// `strata tables archives`: the archives in the storage `from` (default: the
    /// default storage), with the storage's name.
    pub async fn archives(&self, from: Option<String>) -> TablesResult<(String, Vec<String>)> {
        let (name, store) = self.archive_storage(from)?;
        let archives = strata_tables::archive::list_archives(&store).await?;
        Ok((name, archives))
    }

    /// `strata load ARCHIVE --into S.T`: an archived partition back into a table.
    pub async fn load_archive(&self, load: LoadArgs) -> TablesResult<LoadReport> {
        let into = TableName::parse(&load.into)?;
        let (_, store) = self.archive_storage(load.from)?;
        let mut engine = self.engine().await?;
        let archive = load.archive.unwrap_or_default();
        engine
            .load_archive(&store, &archive, &into, load.append)
            .await
    }

    /// `strata load --file PATH|URL --into S.T`: a file (here, in a storage, or at a URL
    /// of a storage) into a table, `observer` told how far it got.
    pub async fn load_file(
        &self,
        load: &LoadArgs,
        observer: &dyn LoadObserver,
    ) -> TablesResult<LoadFileReport> {
        let file = load.file.file.clone().unwrap_or_default();
        let urls: Vec<(String, String)> = (self.config.storages.iter())
            .filter_map(|(name, s)| s.url.clone().map(|url| (name.clone(), url)))
            .collect();
        let storages = self.storages();
        let from = load.from.as_deref();
        let source = strata_tables::load_file::resolve(&file, from, &storages, &urls)?;
        let request = load.file.request(&load.into, source)?;
        let mut engine = self.engine().await?;
        engine.load_file(&request, observer).await
    }
}

/// Adds the policy `spec` through `engine`; answers it with its id.
async fn add_with(engine: &Engine, spec: &PolicySpec) -> TablesResult<Policy> {
    let id = engine.add(spec).await?;
    Ok(Policy {
        id,
        spec: spec.clone(),
        created_by: engine.who().to_string(),
        created_at: String::new(),
        watermark: None,
    })
}

#[async_trait]
impl Tables for TablesHere {
    async fn policies(&self, tags: TagFilter) -> TablesOutcome<Vec<Policy>> {
        Ok(self.engine().await?.list(&tags).await?)
    }

    async fn plan(
        &self,
        tags: TagFilter,
        cutoff: Option<String>,
        layout: CrateArgs,
    ) -> TablesOutcome<TablePlans> {
        if let Some(layout) = layout.layout()? {
            let cutoff = cutoff_or_now(cutoff.as_deref())?;
            return Ok(TablePlans::Crate(strata_tables::cratedb::plan(
                &layout, cutoff,
            )));
        }
        let engine = self.engine().await?;
        let cutoff = cutoff_or_now(cutoff.as_deref())?;
        Ok(TablePlans::Planned(engine.plan(&tags, cutoff).await?))
    }

    async fn history(&self, query: TableHistoryQuery) -> TablesOutcome<Vec<HistoryEntry>> {
        let engine = self.engine().await?;
        Ok(engine.history(&query.filter()?).await?)
    }

    async fn preview_edit(&self, id: i64, edit: PolicyEditArgs) -> TablesOutcome<EditOutcome> {
        let engine = self.engine().await?;
        Ok(engine.preview_edit(id, &edit.edit()?).await?)
    }

    async fn edit(&self, id: i64, edit: PolicyEditArgs) -> TablesOutcome<Policy> {
        let engine = self.engine().await?;
        Ok(engine.edit(id, &edit.edit()?).await?)
    }

    async fn preview_add(&self, policy: PolicyArgs) -> TablesOutcome<AddOutcome> {
        let engine = self.engine().await?;
        Ok(engine.preview_add(&policy.spec()?).await?)
    }

    async fn add(&self, policy: PolicyArgs) -> TablesOutcome<Policy> {
        let engine = self.engine().await?;
        Ok(add_with(&engine, &policy.spec()?).await?)
    }

    async fn remove(
        &self,
        id: Option<i64>,
        tags: TagFilter,
        removed: &mut (dyn FnMut(Policy) + Send),
    ) -> TablesOutcome<()> {
        let engine = self.engine().await?;
        engine
            .remove(id, &tags)
            .await?
            .into_iter()
            .for_each(removed);
        Ok(())
    }

    async fn run(
        &self,
        tags: TagFilter,
        cutoff: Option<String>,
        dry_run: bool,
        observer: &dyn RunObserver,
    ) -> TablesOutcome<RunReport> {
        let mut engine = self.engine().await?;
        let cutoff = cutoff_or_now(cutoff.as_deref())?;
        let (stores, events) = (self.storages(), self.events()?);
        let told = TablesRunReport::start(events.clone(), engine.who(), engine.target());
        let run = engine.run(&tags, cutoff, dry_run, &stores, observer).await;
        match &run {
            Ok(report) => {
                let (Ok(line) | Err(line)) = report.job_result();
                tell_end(&told, report.run_outcome(), &line);
            }
            Err(err) => told.end(Ending::Failed, &strata_coordinator::error_chain(err)),
        }
        events.flush(FLUSH).await;
        Ok(run?)
    }
}

/// Tells the webhooks how a table run or SQL job they heard start ended: `outcome` as the
/// run record keeps it (`busy`, a table skipped because another run held it, is partial)
/// with the run's line. The one place the command line, the API and the scheduler tell
/// it from.
pub fn tell_end(told: &TablesRunReport, outcome: RunOutcome, line: &str) {
    told.end(ending(outcome), line);
}

/// The webhooks' ending of a run that ended with `outcome`.
fn ending(outcome: RunOutcome) -> Ending {
    match outcome {
        RunOutcome::Failed => Ending::Failed,
        RunOutcome::Busy => Ending::Partial,
        RunOutcome::Done | RunOutcome::NothingToDo | RunOutcome::DryRun => Ending::Succeeded,
    }
}

#[cfg(test)]
mod ending_tests {
    use super::*;

    /// A run that skipped a table another run held is partial, not a success.
    #[test]
    fn every_outcome_ends_as_the_webhooks_say() {
        let cases = [
            (RunOutcome::Done, "succeeded"),
            (RunOutcome::NothingToDo, "succeeded"),
            (RunOutcome::DryRun, "succeeded"),
            (RunOutcome::Busy, "partial"),
            (RunOutcome::Failed, "failed"),
        ];
        for (outcome, phase) in cases {
            assert_eq!(ending(outcome).phase(), phase, "{outcome:?}");
        }
    }
}
