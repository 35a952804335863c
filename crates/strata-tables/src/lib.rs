//! strata's table retention engine: the lifecycle of time-partitioned data inside
//! PostgreSQL.
//!
//! Policies (stored in the database, see [`catalog`]) say what happens to a table's data
//! once it is older than a duration: `delete`, `detach`, `reallocate` or `archive`.
//! Partitions are discovered from the catalog ([`discover`]), expire on their upper bound
//! ([`plan`]), and are acted on under a per-table advisory lock with every step audited
//! ([`run`]). Archives stream through zstd into a strata storage and are verified before
//! anything is dropped ([`archive`]).
//!
//! This crate sits beside the coordinator: it uses the shared PostgreSQL helpers
//! (`strata-pgclient`) and the storage trait (`strata-store`), never the backup layers.
//!
//! ```no_run
//! use strata_tables::config::TablesConfig;
//! use strata_tables::{Action, Engine, PolicySpec, Retention, TableName, TagFilter};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TablesConfig {
//!     db: Some("postgresql://strata@127.0.0.1:5432/shop".into()),
//!     ..TablesConfig::default()
//! };
//! let engine = Engine::open(&config, Some("example".into())).await?;
//! engine.setup().await?; // the policy, run and audit tables
//!
//! // Drop the partitions of public.events once their upper bound is 90 days old.
//! let spec = PolicySpec::new(
//!     TableName::parse("public.events")?,
//!     "created_at",
//!     Action::Delete,
//!     Retention::parse("90d")?,
//! );
//! engine.add(&spec).await?;
//!
//! // What a run now would do, table by table (nothing is changed).
//! for table in engine.plan(&TagFilter::default(), chrono::Utc::now()).await? {
//!     println!("{}: {:?}", table.table, table.plan);
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod archive;
pub mod bound;
pub mod catalog;
pub mod codec;
pub mod command;
pub mod config;
pub mod cratedb;
pub mod discover;
pub mod duration;
mod error;
pub mod history;
pub mod load_file;
pub mod load_file_error;
pub mod name;
pub mod outlook;
pub mod plan;
pub mod policy;
pub mod policy_args;
pub mod rollup;
pub mod rollup_target;
pub mod run;
pub mod sql;
pub mod sql_job;
pub mod sql_job_error;
pub mod text;

pub use catalog::{Catalog, PolicyEdit, RollupEdit};
pub use chrono;
pub use duration::Retention;
pub use error::{ErrorKind, TablesError, TablesResult};
pub use name::TableName;
pub use outlook::{AddOutcome, EditOutcome, PolicyFilter, TableOutlook};
pub use policy::{Action, ArchiveFormat, Policy, PolicySpec, TagFilter};
pub use policy_args::{ActionArgs, PolicyArgs, PolicyEditArgs, RollupArgs, TtlArgs, TtlOptions};
pub use run::{named_storages, RunOutcome, RunReport, TableOutcome};

use archive::load_target::LoadOptions;
use archive::LoadReport;
use chrono::{DateTime, Utc};
use config::TablesConfig;
use plan::TablePlan;
use strata_pgclient::{Client, Dsn};
use strata_store::DynStore;

/// The default schema of the policy tables.
pub const DEFAULT_SCHEMA: &str = "strata";

/// A connection to one database with its policy tables: what every `strata tables`
/// command and every scheduled `tables` job works through ([`Engine::open`]).
pub struct Engine {
    client: Client,
    catalog: Catalog,
    who: String,
    /// History older than this many days is pruned after each run (0: never).
    history_days: u32,
    /// The database as `user@host:port/db` (never a password), for reports.
    target: String,
}

/// The plan of one table, or why it cannot be planned.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlannedTable {
    /// The table, `schema.table`.
    pub table: String,
    /// What a run now would do; `None` when the table could not be planned.
    pub plan: Option<TablePlan>,
    /// Why the table could not be planned.
    pub error: Option<String>,
}

impl Engine {
    /// Connects to the database of `[tables]` (`db`, `schema`, `lock_timeout_secs`, with a
    /// command line's choices already applied by [`TablesConfig::overridden`]): the one
    /// way the CLI and the scheduler open an engine. `who` is recorded in the audit log.
    pub async fn open(config: &TablesConfig, who: Option<String>) -> TablesResult<Engine> {
        let text = config.db.as_deref().ok_or(TablesError::NoDatabase)?;
        let dsn = Dsn::parse(text)?;
        let mut engine =
            Engine::connect(&dsn, &config.schema, who, config.lock_timeout_secs).await?;
        engine.history_days = config.history_days;
        engine.target = dsn.describe();
        Ok(engine)
    }

    /// Connects; the session runs in UTC (partition bounds print in it) with a lock
    /// timeout, so a step waiting behind a long query fails instead of blocking every
    /// query that queues behind its lock. `who` defaults to the database user. Private:
    /// every front end opens an engine through [`Engine::open`].
    async fn connect(
        dsn: &Dsn,
        schema: &str,
        who: Option<String>,
        lock_timeout_secs: u64,
    ) -> TablesResult<Engine> {
        let client = dsn.connect().await?;
        client
            .batch_execute(&format!(
                "SET TimeZone = 'UTC'; SET lock_timeout = '{}s'",
                lock_timeout_secs.max(1)
            ))
            .await
            .map_err(|e| TablesError::db("setting up the session", &e))?;
        let who = match who {
            Some(who) if !who.trim().is_empty() => who,
            _ => client
                .query_one("SELECT current_user::text", &[])
                .await
                .map_err(|e| TablesError::db("asking who we are", &e))?
                .get(0),
        };
        Ok(Engine {
            client,
            catalog: Catalog::new(schema),
            who,
            history_days: 0,
            target: String::new(),
        })
    }

    /// The policy tables this engine uses.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Who the audit log records as acting.
    pub fn who(&self) -> &str {
        &self.who
    }

    /// The database as `user@host:port/db`: never a password, even one left in the DSN.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Deletes history older than `[tables] history_days` after a run: a failure to
    /// prune is no failure of the run, only a warning.
    async fn prune_history(&self) {
        if let Err(err) = self
            .catalog
            .prune_history(&self.client, self.history_days)
            .await
        {
            eprintln!("strata: warning: the history was not pruned: {err}");
        }
    }

    /// `strata tables history`: runs, their steps and policy changes, newest first.
    pub async fn history(
        &self,
        filter: &history::HistoryFilter,
    ) -> TablesResult<Vec<history::HistoryEntry>> {
        self.catalog.history(&self.client, filter).await
    }

    /// Runs SQL job `job` now (`strata tables sql NAME`, a `sql` schedule), then prunes
    /// the history as a retention run does.
    pub async fn run_sql_job(
        &self,
        job: &sql_job::SqlJob,
        dry_run: bool,
    ) -> TablesResult<sql_job::SqlRun> {
        let run = sql_job::run_job(&self.client, &self.catalog, &self.who, job, dry_run).await?;
        self.prune_history().await;
        Ok(run)
    }

    /// `strata tables setup`.
    pub async fn setup(&self) -> TablesResult<()> {
        self.catalog.setup(&self.client, &self.who).await
    }

    /// Adds a policy after checking it fits its table (exists, has the column, is
    /// partitioned on it when partitioned); returns its id.
    pub async fn add(&self, spec: &PolicySpec) -> TablesResult<i64> {
        spec.validate()?;
        self.check_fits(spec).await?;
        self.catalog.add(&self.client, spec, &self.who).await
    }

    async fn check_fits(&self, spec: &PolicySpec) -> TablesResult<()> {
        let shape = discover::discover(&self.client, &spec.table).await?;
        if shape.column(&spec.column).is_none() {
            return Err(TablesError::MissingColumn {
                table: spec.table.clone(),
                column: spec.column.clone(),
            });
        }
        if let Some(rollup) = &spec.rollup {
            let target = discover::discover(&self.client, &rollup.into).await?;
            let mut needed = vec![spec.column.clone()];
            needed.extend(rollup.group_by.iter().cloned());
            needed.extend(rollup.aggregates.iter().map(|a| a.into.clone()));
            for column in needed {
                if target.column(&column).is_none() {
                    return Err(TablesError::MissingColumn {
                        table: rollup.into.clone(),
                        column,
                    });
                }
            }
            let sources = rollup
                .group_by
                .iter()
                .cloned()
                .chain(rollup.aggregates.iter().filter_map(|a| a.column.clone()));
            for column in sources {
                if shape.column(&column).is_none() {
                    return Err(TablesError::MissingColumn {
                        table: spec.table.clone(),
                        column,
                    });
                }
            }
            rollup_target::check(&self.client, rollup, &spec.column).await?;
        }
        let probe = Policy {
            id: 0,
            spec: spec.clone(),
            created_by: String::new(),
            created_at: String::new(),
            watermark: None,
        };
        let plan = plan::plan_table(&[probe], &shape, Utc::now(), None);
        match plan.problems.first() {
            Some(problem) => Err(TablesError::Unsupported(
                problem.trim_start_matches("policy 0: ").to_string(),
            )),
            None => Ok(()),
        }
    }

    /// The policies the tags select.
    pub async fn list(&self, filter: &TagFilter) -> TablesResult<Vec<Policy>> {
        self.catalog.list(&self.client, filter).await
    }

    /// Changes a policy; a new time column or rollup is checked against the tables first,
    /// as `add` checks them. The edit holds its table's advisory lock, as a run does: it
    /// waits (up to the lock timeout) for a run of the table to end, and no run starts on
    /// the table while it changes, so a run never acts on a policy edited under it.
    pub async fn edit(&self, id: i64, edit: &PolicyEdit) -> TablesResult<Policy> {
        let policy = self.catalog.get(&self.client, id).await?;
        let lock = self.lock_table(&policy, "edit").await?;
        let edited = self.edit_locked(id, edit).await;
        self.unlock_table(lock).await;
        edited
    }

    /// Takes the advisory lock a run of `policy`'s table holds (see [`run::lock_key`]),
    /// waiting up to the lock timeout for a run to end; `None` when the table is gone
    /// (no run can hold it). `what` names the change refused when the wait fails.
    async fn lock_table(&self, policy: &Policy, what: &str) -> TablesResult<Option<i64>> {
        let table = &policy.spec.table;
        let oid: Option<u32> = self
            .client
            .query_one("SELECT to_regclass($1)::oid", &[&table.quoted()])
            .await
            .map_err(|e| TablesError::db(format!("looking up table {table}"), &e))?
            .get(0);
        let Some(key) = oid.map(run::lock_key) else {
            return Ok(None);
        };
        self.client
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| {
                let doing = format!(
                    "waiting for the run of {table} to end (it holds the table's lock); policy {} is unchanged, {what} it once the run is over",
                    policy.id
                );
                if error::is_lock_timeout(&e) {
                    TablesError::Busy(format!("{doing}: {}", strata_pgclient::error_message(&e)))
                } else {
                    TablesError::db(doing, &e)
                }
            })?;
        Ok(Some(key))
    }

    /// Releases what [`Engine::lock_table`] took. A session lock: released here, or by
    /// the server when the session ends.
    async fn unlock_table(&self, key: Option<i64>) {
        if let Some(key) = key {
            let _ = self
                .client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await;
        }
    }

    async fn edit_locked(&self, id: i64, edit: &PolicyEdit) -> TablesResult<Policy> {
        let policy = self.catalog.get(&self.client, id).await?;
        let spec = edit.apply(&policy)?;
        if spec.column != policy.spec.column || spec.rollup != policy.spec.rollup {
            self.check_fits(&spec).await?;
        }
        self.catalog.edit(&self.client, id, edit, &self.who).await
    }

    /// Removes policy `id`, or every policy `filter` picks (at least one tag), each under
    /// its table's lock as an edit is: a run never loses a policy in the middle of
    /// acting on it. Returns what was removed.
    pub async fn remove(&self, id: Option<i64>, filter: &TagFilter) -> TablesResult<Vec<Policy>> {
        let victims = match id {
            Some(id) => vec![self.catalog.get(&self.client, id).await?],
            None if filter.tags.is_empty() => {
                return Err(TablesError::Unsupported(
                    "name a policy id or at least one --tag".into(),
                ))
            }
            None => self.catalog.list(&self.client, filter).await?,
        };
        let mut removed = Vec::with_capacity(victims.len());
        for policy in victims {
            let outcome = match self.lock_table(&policy, "remove").await {
                Ok(lock) => {
                    let outcome = self
                        .catalog
                        .remove(&self.client, policy.id, &self.who)
                        .await;
                    self.unlock_table(lock).await;
                    outcome
                }
                Err(err) => Err(err),
            };
            match outcome {
                Ok(gone) => removed.extend(gone),
                // Stopped part-way: the error says what is already gone.
                Err(TablesError::Busy(why)) if !removed.is_empty() => {
                    let ids: Vec<String> = removed.iter().map(|p| p.id.to_string()).collect();
                    return Err(TablesError::Busy(format!(
                        "{why} (removed before it: policy {})",
                        ids.join(", ")
                    )));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(removed)
    }

    /// What a run at `cutoff` would do, table by table.
    pub async fn plan(
        &self,
        filter: &TagFilter,
        cutoff: DateTime<Utc>,
    ) -> TablesResult<Vec<PlannedTable>> {
        let all = self
            .catalog
            .list(&self.client, &TagFilter::default())
            .await?;
        let policies = all
            .iter()
            .filter(|p| filter.matches(&p.spec.tags))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for (table, policies) in run::by_table(policies) {
            match run::plan_one(&self.client, &table, &policies, &all, cutoff).await {
                Ok((_, plan)) => out.push(PlannedTable {
                    table: table.to_string(),
                    plan: Some(plan),
                    error: None,
                }),
                Err(err) => out.push(PlannedTable {
                    table: table.to_string(),
                    plan: None,
                    error: Some(err.to_string()),
                }),
            }
        }
        Ok(out)
    }

    /// `strata load`: loads an archive of `store` into `into` (see [`archive::load`]) and
    /// records the load in the audit log. The audit log exists only after `tables setup`;
    /// a load works without it.
    pub async fn load_archive(
        &mut self,
        store: &DynStore,
        archive: &str,
        into: &TableName,
        append: bool,
    ) -> TablesResult<LoadReport> {
        let options = LoadOptions { append };
        let loaded = archive::load(&mut self.client, store, archive, into, options).await?;
        let report = LoadReport {
            archive: archive.to_string(),
            created_partition: loaded.target.created_partition,
            into: loaded.target.table.to_string(),
            rows: loaded.rows,
            asked: into.to_string(),
        };
        let detail = format!(
            "{} rows from {archive}{}{}",
            report.rows,
            report.recreated(),
            if append { ", --append" } else { "" }
        );
        self.audit_load(&report.into, detail).await?;
        Ok(report)
    }

    /// Records a load into `table` in the audit log; without the policy tables (`tables
    /// setup` never ran) a load works and records nothing.
    async fn audit_load(&self, table: &str, detail: String) -> TablesResult<()> {
        let audit = catalog::AuditEntry {
            who: self.who.clone(),
            what: "load".into(),
            table: Some(table.to_string()),
            outcome: "ok".into(),
            detail,
            ..Default::default()
        };
        match self.catalog.audit(&self.client, &audit).await {
            Err(TablesError::NotSetUp { .. }) | Ok(()) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `strata load --file`: loads a file into a table (see [`load_file::load_file`]) and
    /// records the load in the audit log (when the policy tables are set up; a dry run
    /// records nothing).
    pub async fn load_file(
        &mut self,
        request: &load_file::LoadFileRequest,
        observer: &dyn load_file::LoadObserver,
    ) -> TablesResult<load_file::LoadFileReport> {
        let report = load_file::load_file(&mut self.client, request, observer).await?;
        if report.dry_run {
            return Ok(report);
        }
        let detail = format!(
            "{} rows from {} ({}){}",
            report.rows,
            report.file,
            report.format.name(),
            if report.created {
                ", table created"
            } else {
                ""
            }
        );
        self.audit_load(&report.into, detail).await?;
        Ok(report)
    }

    /// Runs the matching policies at `cutoff`, recording the run and every step. Any
    /// cutoff is taken here (an operator replays or tries a date with `--cutoff`); a
    /// front end whose callers are programs refuses a later one first
    /// ([`refuse_looking_ahead`]).
    pub async fn run(
        &mut self,
        filter: &TagFilter,
        cutoff: DateTime<Utc>,
        dry_run: bool,
        stores: run::StoreResolver<'_>,
        observer: &dyn run::RunObserver,
    ) -> TablesResult<RunReport> {
        let policies = self.catalog.list(&self.client, filter).await?;
        let cutoff_text = cutoff.to_rfc3339();
        let run_id = self
            .catalog
            .start_run(&self.client, &self.who, &cutoff_text, dry_run, &filter.tags)
            .await?;
        let mut report = RunReport {
            run_id: Some(run_id),
            cutoff: cutoff_text,
            dry_run,
            tables: Vec::new(),
        };
        let ctx = run::RunContext {
            catalog: &self.catalog,
            who: &self.who,
            run_id: Some(run_id),
            cutoff,
            dry_run,
            stores,
            observer,
        };
        let chosen: std::collections::HashSet<i64> = policies.iter().map(|p| p.id).collect();
        let tables = run::by_table(policies).into_keys().collect();
        let all = self
            .catalog
            .list(&self.client, &TagFilter::default())
            .await?;
        for table in run::run_order(&all, tables) {
            // Read again before each table (a rollup earlier in this run moved watermarks),
            // and once more by run_table under the table's lock.
            let all = self
                .catalog
                .list(&self.client, &TagFilter::default())
                .await?;
            let policies: Vec<Policy> = all
                .iter()
                .filter(|p| p.spec.table == table && chosen.contains(&p.id))
                .cloned()
                .collect();
            let table_run = run::run_table(&mut self.client, ctx, &table, &policies).await;
            report.tables.push(table_run);
        }
        let summary = report
            .tables
            .iter()
            .map(|t| format!("{}: {:?}", t.table, t.outcome))
            .collect::<Vec<_>>()
            .join("; ");
        self.catalog
            .finish_run(&self.client, run_id, report.outcome(), &summary)
            .await?;
        self.catalog
            .audit(
                &self.client,
                &catalog::AuditEntry {
                    who: self.who.clone(),
                    what: if dry_run {
                        "run (dry-run)".into()
                    } else {
                        "run".into()
                    },
                    run_id: Some(run_id),
                    outcome: report.outcome().into(),
                    detail: summary,
                    ..Default::default()
                },
            )
            .await?;
        self.prune_history().await;
        Ok(report)
    }
}

/// One scheduled `tables run` of job `job`: now, over the policies with every one of
/// `tags`, on the database of `[tables]`, recorded as `scheduler:JOB`, with nothing
/// watching. [`RunReport::job_result`] is the line the scheduler keeps.
pub async fn run_scheduled(
    config: &TablesConfig,
    job: &str,
    tags: &[String],
    stores: run::StoreResolver<'_>,
) -> TablesResult<RunReport> {
    let mut engine = Engine::open(config, Some(format!("scheduler:{job}"))).await?;
    let filter = TagFilter {
        tags: tags.to_vec(),
        any: false,
    };
    engine
        .run(&filter, Utc::now(), false, stores, &run::Quiet)
        .await
}

/// One scheduled run of SQL job `name` of `[tables] jobs`, recorded as `scheduler:JOB`.
pub async fn run_scheduled_sql(
    config: &TablesConfig,
    schedule: &str,
    name: &str,
) -> TablesResult<sql_job::SqlRun> {
    let job = config.job(name)?;
    let engine = Engine::open(config, Some(format!("scheduler:{schedule}"))).await?;
    engine.run_sql_job(job, false).await
}

/// How far a run's cutoff may pass the clock (clocks of client and database drift).
const LOOK_AHEAD_SLACK_SECS: i64 = 60;

/// Refuses a real run as of a time later than now (a dry run may look ahead): what the
/// API checks before it runs. The CLI's `--cutoff` takes any time, as its tests and
/// operators replaying a date use it.
pub fn refuse_looking_ahead(cutoff: DateTime<Utc>, dry_run: bool) -> TablesResult<()> {
    let latest = Utc::now() + chrono::Duration::seconds(LOOK_AHEAD_SLACK_SECS);
    if dry_run || cutoff <= latest {
        return Ok(());
    }
    Err(TablesError::Cutoff(format!(
        "cutoff {} is later than now: a run acts as of now or an earlier time (a later one would expire data before its time); --dry-run (dry_run) shows what it would do then",
        cutoff.to_rfc3339()
    )))
}

/// The cutoff of a plan or run: `text` read by [`parse_cutoff`], or now when absent.
pub fn cutoff_or_now(text: Option<&str>) -> TablesResult<DateTime<Utc>> {
    match text {
        Some(text) => parse_cutoff(text).map_err(TablesError::from),
        None => Ok(Utc::now()),
    }
}

/// A `--cutoff`: RFC 3339 (`2026-01-01T00:00:00Z`), `2026-01-01 00:00:00[+00]` or a date
/// (midnight UTC).
pub fn parse_cutoff(text: &str) -> Result<DateTime<Utc>, CutoffError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    bound::parse_time(text).ok_or_else(|| CutoffError(text.to_string()))
}

/// A cutoff (`--cutoff`, `--since`, `--start`, ...) that is not a time [`parse_cutoff`]
/// reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unparsable cutoff {0:?}: use 2026-01-01, 2026-01-01 12:00:00 (UTC) or 2026-01-01T12:00:00Z"
)]
pub struct CutoffError(pub String);

impl From<CutoffError> for TablesError {
    fn from(err: CutoffError) -> Self {
        TablesError::Cutoff(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs() {
        let t = parse_cutoff("2026-01-01").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(
            parse_cutoff("2026-01-01T12:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T10:00:00+00:00"
        );
        assert_eq!(
            parse_cutoff("2026-01-01 12:00:00").unwrap().to_rfc3339(),
            "2026-01-01T12:00:00+00:00"
        );
        let err = cutoff_or_now(Some("yesterday")).unwrap_err();
        assert!(err.is_bad_input() && err.to_string().contains("unparsable cutoff"));
        let before = Utc::now();
        assert!(cutoff_or_now(None).unwrap() >= before);
        assert!(parse_cutoff("yesterday")
            .unwrap_err()
            .to_string()
            .contains("2026-01-01"));
        // Only a dry run looks ahead; a minute of clock drift is no looking ahead.
        let ahead = Utc::now() + chrono::Duration::days(1);
        let err = refuse_looking_ahead(ahead, false).unwrap_err();
        assert!(err.is_bad_input() && err.to_string().contains("later than now"));
        assert!(refuse_looking_ahead(ahead, true).is_ok());
        assert!(refuse_looking_ahead(Utc::now() + chrono::Duration::seconds(30), false).is_ok());
    }
}
