//! Running policies: per table, take the table's advisory lock, discover, plan, execute
//! each step in its own transaction, audit every step.
//!
//! Every step is idempotent or atomic: a drop, a detach (with its move to the archive
//! schema) and a tablespace move commit whole or not at all; an archive is written and
//! verified before the partition is dropped, and exporting again replaces it; row deletes
//! are batches of an idempotent predicate. A run interrupted anywhere can be run again.

use crate::archive;
use crate::catalog::{AuditEntry, Catalog};
use crate::discover::{discover, TableShape};
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use crate::plan::{plan_selected, Step, StepKind, TablePlan};
use crate::policy::Policy;
use crate::sql;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strata_pgclient::Client;
use strata_store::DynStore;

/// Rows per batch of a row delete.
pub const DELETE_BATCH: u32 = 10_000;

/// High half of the advisory lock keys of table runs (`STTA`); the low half is the table's
/// oid. Documented in docs/tables.md so operators can see who holds one in `pg_locks`.
pub const LOCK_CLASS: i64 = 0x5354_5441;

/// The advisory lock key of a table.
pub fn lock_key(oid: u32) -> i64 {
    (LOCK_CLASS << 32) | i64::from(oid)
}

/// Opens the storage an archive policy names.
pub type StoreResolver<'a> = &'a (dyn Fn(&str) -> TablesResult<DynStore> + Sync);

/// The archive storages of strata's configuration, opened by name through `open`: the
/// application layer knows the configuration's storages, this crate does not. A storage
/// that cannot be opened reads `storage "NAME": why`.
pub fn named_storages<E: std::error::Error>(
    open: impl Fn(&str) -> Result<DynStore, E> + Sync,
) -> impl Fn(&str) -> TablesResult<DynStore> + Sync {
    move |name| {
        open(name).map_err(|e| TablesError::Storage {
            name: name.to_string(),
            why: crate::error::error_chain(&e),
        })
    }
}

/// How a table's run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TableOutcome {
    /// Every planned step was done.
    Done,
    /// Nothing had expired.
    NothingToDo,
    /// Only planned (`--dry-run`).
    DryRun,
    /// Another run held the table's lock: not touched.
    Busy,
    /// A step failed (the steps after it were not tried), or the table could not be planned.
    Failed,
}

/// How a run (of policies, or of a `[[tables.jobs]]` entry) ended, as its run record,
/// its audit row and its report say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Something was acted on, and nothing failed or was busy.
    #[serde(rename = "done")]
    Done,
    /// Nothing had expired.
    #[serde(rename = "nothing to do")]
    NothingToDo,
    /// Only planned (`--dry-run`).
    #[serde(rename = "dry-run")]
    DryRun,
    /// Another run held a table's (or the job's) lock: that one was not touched.
    #[serde(rename = "busy")]
    Busy,
    /// A table or the job failed.
    #[serde(rename = "failed")]
    Failed,
}

impl RunOutcome {
    /// The kind of failure a run that ended this way is, if it is one: failed, or busy
    /// (something was left for another run).
    pub fn failure(self) -> Option<strata_failure::ErrorCode> {
        match self {
            RunOutcome::Failed => Some(strata_failure::ErrorCode::Failed),
            RunOutcome::Busy => Some(strata_failure::ErrorCode::Busy),
            RunOutcome::Done | RunOutcome::NothingToDo | RunOutcome::DryRun => None,
        }
    }

    /// `done`, `nothing to do`, `dry-run`, `busy` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Done => "done",
            RunOutcome::NothingToDo => "nothing to do",
            RunOutcome::DryRun => "dry-run",
            RunOutcome::Busy => "busy",
            RunOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One executed step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableStepResult))]
pub struct StepResult {
    /// The step as planned.
    #[serde(flatten)]
    pub step: Step,
    /// `done` or `failed`.
    pub outcome: String,
    /// What was done (`done`) or the error (`failed`).
    pub detail: String,
}

/// One table of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableRun {
    /// The table, `schema.table`.
    pub table: String,
    /// How the table's run went.
    pub outcome: TableOutcome,
    /// The plan acted on; `None` when the table could not be planned.
    pub plan: Option<TablePlan>,
    /// The steps carried out, in order, up to the first that failed.
    pub steps: Vec<StepResult>,
    /// Why the table failed, when it did.
    pub error: Option<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableRunReport))]
pub struct RunReport {
    /// The run's id in the run table, when it was recorded.
    pub run_id: Option<i64>,
    /// The time the run acted as of, RFC 3339.
    pub cutoff: String,
    /// Whether the run only planned (`--dry-run`).
    pub dry_run: bool,
    /// One entry per table of the selected policies.
    pub tables: Vec<TableRun>,
}

impl RunReport {
    /// Whether a table of the run ended with `outcome`.
    pub fn any(&self, outcome: TableOutcome) -> bool {
        self.tables.iter().any(|t| t.outcome == outcome)
    }

    /// How the run ended: dry-run, else failed when a table failed, else busy when a
    /// table was busy, else done when a table was acted on, else nothing to do.
    pub fn run_outcome(&self) -> RunOutcome {
        if self.dry_run {
            RunOutcome::DryRun
        } else if self.any(TableOutcome::Failed) {
            RunOutcome::Failed
        } else if self.any(TableOutcome::Busy) {
            RunOutcome::Busy
        } else if self.any(TableOutcome::Done) {
            RunOutcome::Done
        } else {
            RunOutcome::NothingToDo
        }
    }

    /// `done`, `failed`, `busy`, `nothing to do` or `dry-run`, for the run record.
    pub fn outcome(&self) -> &'static str {
        self.run_outcome().as_str()
    }
}

impl RunReport {
    /// What a scheduled job records: `run ID: OUTCOME (N tables, M steps)`; an error when
    /// the run failed, with the first table error after the line.
    // String: the line is the scheduler's record of the run (`JobError::Outcome`), read by people.
    pub fn job_result(&self) -> Result<String, String> {
        let steps: usize = self.tables.iter().map(|t| t.steps.len()).sum();
        let line = format!(
            "run {}: {} ({} tables, {steps} steps)",
            self.run_id.unwrap_or_default(),
            self.outcome(),
            self.tables.len()
        );
        if self.run_outcome() != RunOutcome::Failed {
            return Ok(line);
        }
        let first = self.tables.iter().find_map(|t| t.error.as_deref());
        Err(format!("{line}; {}", first.unwrap_or_default()))
    }
}

/// Policies grouped by table, in a stable order.
pub fn by_table(policies: Vec<Policy>) -> BTreeMap<TableName, Vec<Policy>> {
    let mut tables: BTreeMap<TableName, Vec<Policy>> = BTreeMap::new();
    for policy in policies {
        tables
            .entry(policy.spec.table.clone())
            .or_default()
            .push(policy);
    }
    tables
}

/// Plans one table: discovery errors (unknown table, unreadable bound) come back as `Err`.
/// `policies` are the ones taking part (the run's tag filter); `all` is every policy: the
/// downsample policies that fill this table limit how far its own rollup reads, and every
/// downsample policy of this table, taking part or not, holds back removal of what it has
/// not rolled up. The rollup table of a downsample policy taking part is checked too: a
/// conflict key that cannot hold one row per bucket and series is a problem of the plan.
pub async fn plan_one(
    client: &Client,
    table: &TableName,
    policies: &[Policy],
    all: &[Policy],
    cutoff: DateTime<Utc>,
) -> TablesResult<(TableShape, TablePlan)> {
    let shape = discover(client, table).await?;
    let of_table: Vec<Policy> = all
        .iter()
        .filter(|p| &p.spec.table == table)
        .cloned()
        .collect();
    let selected = |p: &Policy| policies.iter().any(|s| s.id == p.id);
    let mut plan = plan_selected(
        &of_table,
        &selected,
        &shape,
        cutoff,
        filled_until(all, table),
    );
    if plan.problems.is_empty() {
        for step in &mut plan.steps {
            if let StepKind::DeleteRows { column, before } = &step.kind {
                let (rows, bytes) = estimate_delete(client, &shape, column, before).await?;
                step.rows_estimate = rows;
                step.bytes = bytes;
            }
        }
        for step in &plan.steps {
            let Some(policy) = policies.iter().find(|p| p.id == step.policy_id) else {
                continue;
            };
            if let (StepKind::Rollup { .. }, Some(rollup)) = (&step.kind, &policy.spec.rollup) {
                if let Err(err) =
                    crate::rollup_target::check(client, rollup, &policy.spec.column).await
                {
                    plan.problems.push(format!("policy {}: {err}", policy.id));
                }
            }
        }
    }
    Ok((shape, plan))
}

/// About how many rows (and bytes) a row delete of rows before `before` takes: the
/// planner's estimate of the rows matching, and that share of the table's size. `None`
/// where the statistics say nothing (a table never analyzed).
async fn estimate_delete(
    client: &Client,
    shape: &TableShape,
    column: &str,
    before: &str,
) -> TablesResult<(Option<i64>, Option<i64>)> {
    let table = &shape.table;
    let what = format!("estimating the rows to delete from {table}");
    let explain = format!(
        "EXPLAIN SELECT 1 FROM ONLY {} WHERE {} < $1::text::timestamptz",
        table.quoted(),
        strata_pgclient::quote_ident(column)
    );
    // The top node's `rows=N` of `Seq Scan on t  (cost=0.00..1.00 rows=N width=4)`.
    let top: String = client
        .query(&explain, &[&before])
        .await
        .map_err(|e| TablesError::db(&what, &e))?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default();
    let rows = top
        .split_once(" rows=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse::<i64>().ok());
    let size = client
        .query_one(
            "SELECT pg_total_relation_size($1::oid), reltuples::float8 FROM pg_class WHERE oid = $1::oid",
            &[&shape.oid],
        )
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    let (bytes, tuples): (i64, f64) = (size.get(0), size.get(1));
    // reltuples is -1 (or 0) before the first ANALYZE: then the planner guesses, and so
    // would we.
    if tuples <= 0.0 {
        return Ok((None, None));
    }
    let bytes = rows.map(|r| ((r as f64).min(tuples) / tuples * bytes as f64) as i64);
    Ok((rows, bytes))
}

/// How far the downsample policies that write into `table` have got (the least of their
/// watermarks; the epoch's start when one has not run yet), or `None` when none does.
pub fn filled_until(all: &[Policy], table: &TableName) -> Option<DateTime<Utc>> {
    all.iter()
        .filter(|p| p.spec.enabled && p.spec.rollup.as_ref().is_some_and(|r| &r.into == table))
        .map(|p| {
            p.watermark
                .as_deref()
                .and_then(|w| DateTime::parse_from_rfc3339(w).ok())
                .map(|w| w.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        })
        .min()
}

/// Tables in the order a run takes them: a rollup's source before the rollup table, so a
/// cascade (raw -> hourly -> daily) advances every level in one run.
pub fn run_order(all: &[Policy], tables: Vec<TableName>) -> Vec<TableName> {
    let depth = |table: &TableName| {
        let mut depth = 0;
        let mut current = vec![table.clone()];
        // Follow "filled by" links upwards; a cycle stops at the number of policies.
        while depth <= all.len() {
            let sources: Vec<TableName> = all
                .iter()
                .filter(|p| {
                    p.spec
                        .rollup
                        .as_ref()
                        .is_some_and(|r| current.contains(&r.into))
                })
                .map(|p| p.spec.table.clone())
                .collect();
            if sources.is_empty() {
                break;
            }
            depth += 1;
            current = sources;
        }
        depth
    };
    let mut ordered: Vec<(usize, TableName)> = tables.into_iter().map(|t| (depth(&t), t)).collect();
    ordered.sort();
    ordered.into_iter().map(|(_, t)| t).collect()
}

/// Who wants to know, while a run goes, which step starts and how each ended: the CLI
/// draws progress from it (an archive of a large partition takes a while).
pub trait RunObserver: Sync {
    /// `step` of `table` begins.
    fn step_started(&self, _table: &str, _step: &Step) {}
    /// `result` is how a step of `table` ended.
    fn step_finished(&self, _table: &str, _result: &StepResult) {}
}

/// An observer that ignores everything (scheduled runs, tests).
pub struct Quiet;

impl RunObserver for Quiet {}

/// What every table of one run shares: where to record, who acts, when the cutoff is,
/// whether anything may change, where archives go, and who watches.
#[derive(Clone, Copy)]
pub struct RunContext<'a> {
    /// Where the run and its steps are recorded.
    pub catalog: &'a Catalog,
    /// Who the audit log records as acting.
    pub who: &'a str,
    /// The run's id, when it is recorded.
    pub run_id: Option<i64>,
    /// The time the run acts as of.
    pub cutoff: DateTime<Utc>,
    /// Plan and record, change nothing.
    pub dry_run: bool,
    /// Opens the storages archives go to, by name.
    pub stores: StoreResolver<'a>,
    /// Hears which step starts and how each ended.
    pub observer: &'a dyn RunObserver,
}

/// Runs the policies of one table under its advisory lock. `policies` say which take part;
/// they, and every other policy [`plan_one`] needs, are read again once the lock is held.
pub async fn run_table(
    client: &mut Client,
    ctx: RunContext<'_>,
    table: &TableName,
    policies: &[Policy],
) -> TableRun {
    let dry_run = ctx.dry_run;
    let mut result = TableRun {
        table: table.to_string(),
        outcome: TableOutcome::NothingToDo,
        plan: None,
        steps: Vec::new(),
        error: None,
    };
    // The oid first (no lock needed to read the catalog), then the lock, then the real
    // discovery: what another run changed meanwhile is seen.
    let oid = match discover(client, table).await {
        Ok(shape) => shape.oid,
        Err(err) => return failed(result, err),
    };
    if !dry_run {
        match try_lock(client, oid).await {
            Ok(true) => {}
            Ok(false) => {
                result.outcome = TableOutcome::Busy;
                result.error = Some(format!(
                    "another run holds the lock of {table}; not touched"
                ));
                return result;
            }
            Err(err) => return failed(result, err),
        }
    }
    let outcome = run_locked(client, ctx, table, policies, &mut result).await;
    if !dry_run {
        // A session lock: released here, or by the server when the session ends.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock_key(oid)])
            .await;
    }
    if let Err(err) = outcome {
        return failed(result, err);
    }
    result
}

fn failed(mut result: TableRun, err: TablesError) -> TableRun {
    result.outcome = TableOutcome::Failed;
    result.error = Some(err.to_string());
    result
}

async fn try_lock(client: &Client, oid: u32) -> TablesResult<bool> {
    client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(oid)])
        .await
        .map(|row| row.get(0))
        .map_err(|e| TablesError::db("taking the table's advisory lock", &e))
}

async fn run_locked(
    client: &mut Client,
    ctx: RunContext<'_>,
    table: &TableName,
    policies: &[Policy],
    result: &mut TableRun,
) -> TablesResult<()> {
    let RunContext {
        catalog,
        who,
        run_id,
        cutoff,
        dry_run,
        stores,
        observer,
    } = ctx;
    // The policies as they are now that the table's lock is held: an edit (which takes the
    // lock too) made before it is followed, none can come during the run.
    let all = &catalog
        .list(client, &crate::policy::TagFilter::default())
        .await?;
    let policies = &all
        .iter()
        .filter(|p| policies.iter().any(|s| s.id == p.id))
        .cloned()
        .collect::<Vec<Policy>>();
    let (shape, plan) = plan_one(client, table, policies, all, cutoff).await?;
    result.plan = Some(plan.clone());
    if !plan.problems.is_empty() {
        result.outcome = TableOutcome::Failed;
        result.error = Some(plan.problems.join("; "));
        return Ok(());
    }
    if plan.steps.is_empty() {
        result.outcome = TableOutcome::NothingToDo;
        return Ok(());
    }
    if dry_run {
        result.outcome = TableOutcome::DryRun;
        return Ok(());
    }
    result.outcome = TableOutcome::Done;
    for step in &plan.steps {
        observer.step_started(&result.table, step);
        let outcome = execute(client, catalog, &shape, policies, step, stores).await;
        let (text, detail) = match &outcome {
            Ok(detail) => ("done", detail.clone()),
            Err(err) => ("failed", err.to_string()),
        };
        let step_result = StepResult {
            step: step.clone(),
            outcome: text.into(),
            detail: detail.clone(),
        };
        observer.step_finished(&result.table, &step_result);
        result.steps.push(step_result);
        catalog
            .audit(
                client,
                &AuditEntry {
                    who: who.into(),
                    what: format!("run {}", step.action),
                    policy_id: Some(step.policy_id),
                    run_id,
                    table: Some(table.to_string()),
                    outcome: text.into(),
                    partitions: step.partition.iter().cloned().collect(),
                    detail,
                },
            )
            .await?;
        if let Err(err) = outcome {
            // Oldest first, and no holes: the steps after a failure wait for the next run.
            result.outcome = TableOutcome::Failed;
            result.error = Some(format!(
                "{table}: {} {} failed: {err}; the steps after it wait for the next run",
                step.action,
                step.object()
            ));
            break;
        }
    }
    Ok(())
}

fn partition_name(step: &Step) -> TablesResult<TableName> {
    let text = step
        .partition
        .as_deref()
        .ok_or_else(|| TablesError::Unsupported("a partition step without a partition".into()))?;
    Ok(TableName::parse(text)?)
}

/// A rollup step: the whole buckets of `table` from `from` (or its first row) to `to`
/// written into `into` by `policy`, and the policy's watermark moved to `to`, in
/// one transaction that fails if the policy changed since the run read it.
async fn roll_up(
    client: &mut Client,
    catalog: &Catalog,
    table: &TableName,
    policy: &Policy,
    into: &str,
    from: &Option<String>,
    to: &String,
) -> TablesResult<String> {
    let rollup =
        policy.spec.rollup.as_ref().ok_or_else(|| {
            TablesError::Unsupported(format!("policy {} has no rollup", policy.id))
        })?;
    let what = format!("rolling {table} up into {into}");
    let upsert = rollup.upsert_sql(table, &policy.spec.column);
    let insert_missing = rollup.insert_missing_sql(table, &policy.spec.column);
    let bucket = format!("{} seconds", rollup.bucket_secs);
    let tx = client
        .transaction()
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    // The policy as it is now, its row locked to the commit: an edit since the run
    // read it (a reset watermark, another rollup table, bucket or aggregates) makes
    // this step fail, and with it every removal after it, rather than roll up and
    // move the watermark by the old policy.
    let now = catalog.get_for_update(&tx, policy.id).await?;
    let unchanged = now.as_ref().is_some_and(|now| {
        now.watermark == policy.watermark
            && now.spec.rollup == policy.spec.rollup
            && now.spec.column == policy.spec.column
            && now.spec.table == policy.spec.table
    });
    if !unchanged {
        return Err(changed_meanwhile(policy, now.as_ref()));
    }
    tx.batch_execute("SET LOCAL TIME ZONE 'UTC'")
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    // Only whole buckets are replaced: unless the oldest source row is on a bucket's
    // start, its bucket may have lost rows to removal, and is only added where the
    // rollup has no row for it (a reset or a longer lookback reaching it must not
    // overwrite a complete bucket with a partial one).
    let first = tx
        .query_one(
            &rollup.first_buckets_sql(table, &policy.spec.column),
            &[&bucket],
        )
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    // NULL (an empty source) is None; a time that does not read (an infinite one)
    // fails the step rather than be skipped.
    let time = |text: Option<String>| -> TablesResult<Option<DateTime<Utc>>> {
        text.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    TablesError::Unsupported(format!(
                        "{what}: cannot bucket the time {t:?} of {table}"
                    ))
                })
        })
        .transpose()
    };
    let (oldest, whole) = (time(first.get(0))?, time(first.get(1))?);
    let start = time(from.clone())?;
    let end = time(Some(to.clone()))?.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut windows: Vec<(bool, Option<String>)> = Vec::new();
    // An empty source (no oldest row) has nothing to write; the watermark moves on.
    if let (Some(oldest), Some(whole)) = (oldest, whole) {
        let partial_from = start.map_or(oldest, |s| s.max(oldest));
        if partial_from < whole.min(end) {
            windows.push((false, Some(partial_from.to_rfc3339())));
        }
        let main_from = start.map_or(whole, |s| s.max(whole));
        if main_from < end {
            windows.push((true, Some(main_from.to_rfc3339())));
        }
    }
    let mut rows = 0;
    for (replace, window_from) in &windows {
        let (statement, window_to) = if *replace {
            (&upsert, to.clone())
        } else {
            (
                &insert_missing,
                whole.map_or(end, |w| w.min(end)).to_rfc3339(),
            )
        };
        rows += tx
            .execute(statement, &[&bucket, window_from, &window_to])
            .await
            .map_err(|e| {
                TablesError::db(
                    format!(
                        "{what} (it needs the columns written and a unique index on the time and group-by columns)"
                    ),
                    &e,
                )
            })?;
    }
    let moved = tx
        .execute(
            &catalog.watermark_sql(),
            &[to, &policy.id, &policy.watermark],
        )
        .await
        .map_err(|e| TablesError::db(&what, &e))?;
    if moved != 1 {
        // Rolled back: nothing of this rollup stays.
        return Err(changed_meanwhile(policy, None));
    }
    tx.commit().await.map_err(|e| TablesError::db(&what, &e))?;
    Ok(format!(
        "{rows} buckets of {into} written from {} to {to}",
        from.as_deref().unwrap_or("the first row")
    ))
}

/// Executes one step; returns a line for the audit log.
async fn execute(
    client: &mut Client,
    catalog: &Catalog,
    shape: &TableShape,
    policies: &[Policy],
    step: &Step,
    stores: StoreResolver<'_>,
) -> TablesResult<String> {
    let table = &shape.table;
    match &step.kind {
        StepKind::DropPartition => {
            let partition = partition_name(step)?;
            in_transaction(
                client,
                &format!("dropping {partition}"),
                &[sql::detach(table, &partition), sql::drop_table(&partition)],
            )
            .await?;
            Ok(format!("dropped ({} bytes)", step.bytes.unwrap_or(0)))
        }
        StepKind::DetachPartition { schema } => {
            let partition = partition_name(step)?;
            let mut statements = vec![sql::detach(table, &partition)];
            if let Some(schema) = schema {
                client
                    .batch_execute(&sql::create_schema(schema))
                    .await
                    .map_err(|e| TablesError::db(format!("creating schema {schema:?}"), &e))?;
                statements.push(sql::set_schema(&partition, schema));
            }
            in_transaction(client, &format!("detaching {partition}"), &statements).await?;
            Ok(match schema {
                Some(schema) => format!(
                    "detached, now {}",
                    TableName::new(schema.clone(), partition.name)
                ),
                None => "detached".into(),
            })
        }
        StepKind::MoveTablespace { tablespace } => {
            let partition = partition_name(step)?;
            let mut statements = vec![sql::set_tablespace(&partition, tablespace)];
            for index in indexes(client, &partition).await? {
                statements.push(sql::set_index_tablespace(&index, tablespace));
            }
            in_transaction(client, &format!("moving {partition}"), &statements).await?;
            Ok(format!("moved to tablespace {tablespace}"))
        }
        StepKind::ArchivePartition { target, format } => {
            let partition = partition_name(step)?;
            let store = stores(target)?;
            let bound = step.bound.clone().unwrap_or_default();
            let manifest = archive::archive_partition(
                client,
                &store,
                &archive::ArchiveRequest {
                    table,
                    partition: &partition,
                    bound: &bound,
                    columns: &shape.columns,
                    column: shape.partition_key.as_deref(),
                    format: *format,
                },
            )
            .await?;
            Ok(format!(
                "archived to {}:{} as {format} ({} rows, {} bytes stored), dropped",
                target,
                archive::archive_prefix(table, &partition),
                manifest.rows,
                manifest.stored_bytes
            ))
        }
        StepKind::Rollup { into, from, to } => {
            let policy = policies
                .iter()
                .find(|p| p.id == step.policy_id)
                .ok_or_else(|| {
                    TablesError::Unsupported("a rollup step without its policy".into())
                })?;
            roll_up(client, catalog, table, policy, into, from, to).await
        }
        StepKind::DeleteRows { column, before } => {
            let statement = sql::delete_batch(table, column, DELETE_BATCH);
            let mut total = 0u64;
            loop {
                let deleted = client
                    .execute(&statement, &[before])
                    .await
                    .map_err(|e| TablesError::db(format!("deleting rows of {table}"), &e))?;
                total += deleted;
                if deleted < u64::from(DELETE_BATCH) {
                    break;
                }
            }
            Ok(format!(
                "deleted {total} rows with {column} before {before}"
            ))
        }
    }
}

/// The error of a rollup whose policy changed after the run read it.
fn changed_meanwhile(policy: &Policy, now: Option<&Policy>) -> TablesError {
    let now = match now {
        None => "it was removed or its watermark moved".to_string(),
        Some(now) => format!(
            "watermark {} (the run read {}), {}",
            now.watermark.as_deref().unwrap_or("none"),
            policy.watermark.as_deref().unwrap_or("none"),
            now.spec
                .rollup
                .as_ref()
                .map(|r| r.describe())
                .unwrap_or_else(|| "no rollup".into())
        ),
    };
    TablesError::Unsupported(format!(
        "policy {} changed while this run was under way ({now}): nothing rolled up and nothing removed; the next run follows the policy as it is now",
        policy.id
    ))
}

async fn in_transaction(
    client: &mut Client,
    what: &str,
    statements: &[String],
) -> TablesResult<()> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| TablesError::db(what, &e))?;
    for statement in statements {
        tx.batch_execute(statement)
            .await
            .map_err(|e| TablesError::db(what, &e))?;
    }
    tx.commit().await.map_err(|e| TablesError::db(what, &e))
}

async fn indexes(client: &Client, table: &TableName) -> TablesResult<Vec<TableName>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE tn.nspname = $1 AND t.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| TablesError::db(format!("listing the indexes of {table}"), &e))?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of run records, audit rows, webhooks and `--json` output stay what they
    /// were when outcomes were strings.
    #[test]
    fn outcomes_read_and_serialize_as_their_words() {
        for (outcome, word) in [
            (RunOutcome::Done, "done"),
            (RunOutcome::NothingToDo, "nothing to do"),
            (RunOutcome::DryRun, "dry-run"),
            (RunOutcome::Busy, "busy"),
            (RunOutcome::Failed, "failed"),
        ] {
            assert_eq!((outcome.as_str(), outcome.to_string()), (word, word.into()));
            assert_eq!(serde_json::to_value(outcome).unwrap(), word);
            let back: RunOutcome = serde_json::from_value(word.into()).unwrap();
            assert_eq!(back, outcome);
        }
    }

    #[test]
    fn lock_keys_are_per_table_and_recognisable() {
        assert_eq!(lock_key(16384) >> 32, LOCK_CLASS);
        assert_eq!(lock_key(16384) & 0xffff_ffff, 16384);
        assert!(lock_key(u32::MAX) > 0);
        assert_ne!(lock_key(1), lock_key(2));
    }
}
