//! Scheduled SQL: `[[tables.jobs]]` that refresh a materialized view or run a named
//! statement, on a schedule (`[[schedules]] job = "sql"`) or now (`strata tables sql
//! NAME`), with the locks, run records, audit rows and history of retention runs.
//!
//! Statements come from the configuration file only, never from a command line or an API
//! body: the file is the operator's. A view's name is quoted as an identifier; a
//! statement's values are bound parameters (`$1`, `$2`, ... from `params`, as text: cast
//! them in the statement, `$1::interval`).

use crate::catalog::{AuditEntry, Catalog};
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use crate::run::{lock_key, RunOutcome};
pub use crate::sql_job_error::SqlJobError;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use strata_pgclient::Client;

/// One `[[tables.jobs]]` entry: `refresh` a materialized view, or run `sql`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlJob {
    /// What `strata tables sql NAME` and `[[schedules]] sql = "NAME"` call it.
    pub name: String,
    /// A materialized view to refresh (`schema.view`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// Refresh `CONCURRENTLY` (readers are not blocked) when the view allows it: it is
    /// populated and has a unique index on plain columns without a WHERE clause.
    #[serde(default = "yes")]
    pub concurrently: bool,
    /// A statement to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The statement's parameters, bound as `$1`, `$2`, ... (text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

fn yes() -> bool {
    true
}

impl SqlJob {
    /// Checks the entry: a name, and exactly one of `refresh` and `sql`.
    pub fn validate(&self) -> Result<(), SqlJobError> {
        if self.name.trim().is_empty() {
            return Err(SqlJobError::NoName);
        }
        match (&self.refresh, &self.sql) {
            (Some(view), None) => {
                TableName::parse(view)
                    .map(|_| ())
                    .map_err(|source| SqlJobError::BadView {
                        job: self.name.clone(),
                        source,
                    })
            }
            (None, Some(sql)) if !sql.trim().is_empty() => Ok(()),
            _ => Err(SqlJobError::NoStatement(self.name.clone())),
        }
    }

    /// What the job does, in words: `refresh reports.daily` or `sql (2 parameters)`.
    pub fn describe(&self) -> String {
        match (&self.refresh, &self.sql) {
            (Some(view), _) => format!("refresh {view}"),
            (None, Some(sql)) => {
                let first = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                let short: String = first.chars().take(60).collect();
                let more = if first.chars().count() > 60 {
                    "..."
                } else {
                    ""
                };
                format!("sql: {short}{more} ({} parameters)", self.params.len())
            }
            _ => "nothing".into(),
        }
    }
}

/// Checks every job and that names are unique.
pub fn validate_jobs(jobs: &[SqlJob]) -> Result<(), SqlJobError> {
    let mut seen = std::collections::HashSet::new();
    for job in jobs {
        job.validate()?;
        if !seen.insert(job.name.as_str()) {
            return Err(SqlJobError::DefinedTwice(job.name.clone()));
        }
    }
    Ok(())
}

/// How one run of a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlRun {
    /// The run's id in the run table.
    pub run_id: i64,
    /// The job's name.
    pub job: String,
    /// `done`, `failed`, `busy` (another run held the job's lock) or `dry-run`.
    pub outcome: RunOutcome,
    /// The statement run (or that would run).
    pub statement: String,
    /// `refreshed concurrently in 0.4 s`, `12 rows in 0.1 s`, or the error.
    pub detail: String,
}

impl SqlRun {
    /// The line a schedule keeps; an error when the job failed.
    // String: the line is the scheduler's record of the run (`JobError::Outcome`), read by people.
    pub fn job_result(&self) -> Result<String, String> {
        let line = format!(
            "run {}: sql job {}: {} ({})",
            self.run_id, self.job, self.outcome, self.detail
        );
        match self.outcome {
            RunOutcome::Failed => Err(line),
            _ => Ok(line),
        }
    }
}

/// High half of the advisory lock keys of statement jobs (`SQLJ`); the low half is a
/// hash of the job's name. A refresh takes its view's table lock ([`lock_key`]), so a
/// retention run and a refresh never act on one relation at once.
pub const SQL_LOCK_CLASS: i64 = 0x5351_4c4a;

fn statement_lock_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (SQL_LOCK_CLASS << 32) | i64::from(hash)
}

/// The statement a refresh runs: `CONCURRENTLY` when asked and the view allows it.
async fn refresh_statement(
    client: &Client,
    view: &TableName,
    concurrently: bool,
) -> TablesResult<(String, i64)> {
    let row = client
        .query_opt(
            "SELECT c.oid::bigint, c.relkind::text, c.relispopulated, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique \
                            AND i.indpred IS NULL AND i.indexprs IS NULL) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&view.schema, &view.name],
        )
        .await
        .map_err(|e| TablesError::db("looking up the materialized view", &e))?
        .ok_or_else(|| TablesError::UnknownTable(view.clone()))?;
    let (oid, kind, populated, unique): (i64, String, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if kind != "m" {
        return Err(TablesError::Unsupported(format!(
            "{view} is not a materialized view"
        )));
    }
    let how = if concurrently && populated && unique {
        "CONCURRENTLY "
    } else {
        ""
    };
    Ok((
        format!("REFRESH MATERIALIZED VIEW {how}{}", view.quoted()),
        oid,
    ))
}

/// Runs `job` now (or, with `dry_run`, says what it would run), recorded as a run with
/// one audit row; the job's lock is held while it runs, and a job whose lock another
/// session holds is left alone (`busy`).
pub async fn run_job(
    client: &Client,
    catalog: &Catalog,
    who: &str,
    job: &SqlJob,
    dry_run: bool,
) -> TablesResult<SqlRun> {
    job.validate()?;
    let (statement, key, table) = match (&job.refresh, &job.sql) {
        (Some(view), _) => {
            let view = TableName::parse(view)?;
            let (statement, oid) = refresh_statement(client, &view, job.concurrently).await?;
            let oid = u32::try_from(oid).unwrap_or_default();
            (statement, lock_key(oid), Some(view.to_string()))
        }
        (None, Some(sql)) => (sql.clone(), statement_lock_key(&job.name), None),
        _ => unreachable!("validated"),
    };
    let now = chrono::Utc::now().to_rfc3339();
    let tags = vec![format!("sql:{}", job.name)];
    let run_id = catalog.start_run(client, who, &now, dry_run, &tags).await?;
    let started = Instant::now();
    let (outcome, detail) = if dry_run {
        (RunOutcome::DryRun, "nothing run".to_string())
    } else {
        match execute_locked(client, key, &statement, job).await {
            Ok(None) => (
                RunOutcome::Busy,
                "another run holds the job's lock; not run".to_string(),
            ),
            Ok(Some(rows)) => {
                let took = format!("{:.1} s", started.elapsed().as_secs_f64());
                let detail = match (&job.refresh, statement.contains("CONCURRENTLY")) {
                    (Some(_), true) => format!("refreshed concurrently in {took}"),
                    (Some(_), false) => format!("refreshed in {took}"),
                    (None, _) => format!("{rows} rows in {took}"),
                };
                (RunOutcome::Done, detail)
            }
            Err(err) => (RunOutcome::Failed, err.to_string()),
        }
    };
    let what = match job.refresh {
        Some(_) => "sql refresh",
        None => "sql statement",
    };
    catalog
        .audit(
            client,
            &AuditEntry {
                who: who.to_string(),
                what: format!("{what} {}", job.name),
                run_id: Some(run_id),
                table,
                outcome: outcome.to_string(),
                detail: detail.clone(),
                ..AuditEntry::default()
            },
        )
        .await?;
    catalog
        .finish_run(
            client,
            run_id,
            outcome.as_str(),
            &format!("{}: {detail}", job.name),
        )
        .await?;
    Ok(SqlRun {
        run_id,
        job: job.name.clone(),
        outcome,
        statement,
        detail,
    })
}

/// Runs the statement under the session advisory lock `key`; `None` when another
/// session holds it. Returns the rows the statement touched.
async fn execute_locked(
    client: &Client,
    key: i64,
    statement: &str,
    job: &SqlJob,
) -> TablesResult<Option<u64>> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| TablesError::db("taking the job's advisory lock", &e))?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let params: Vec<&(dyn strata_pgclient::tokio_postgres::types::ToSql + Sync)> = job
        .params
        .iter()
        .map(|p| p as &(dyn strata_pgclient::tokio_postgres::types::ToSql + Sync))
        .collect();
    // Every parameter is text (the statement casts it): typed so, or `$1::interval`
    // would ask for an interval the text cannot be sent as.
    let text = strata_pgclient::tokio_postgres::types::Type::TEXT;
    let result = match client
        .prepare_typed(statement, &vec![text; job.params.len()])
        .await
    {
        Ok(prepared) => client.execute(&prepared, &params).await,
        Err(err) => Err(err),
    }
    .map_err(|e| TablesError::db(format!("job {}", job.name), &e));
    // A session lock: released here, or by the server when the session ends.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await;
    result.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::LOCK_CLASS;

    fn job(refresh: Option<&str>, sql: Option<&str>) -> SqlJob {
        SqlJob {
            name: "j".into(),
            refresh: refresh.map(str::to_string),
            concurrently: true,
            sql: sql.map(str::to_string),
            params: vec![],
        }
    }

    #[test]
    fn a_job_refreshes_or_runs_a_statement_never_both() {
        assert!(job(Some("reports.daily"), None).validate().is_ok());
        assert!(job(None, Some("DELETE FROM t")).validate().is_ok());
        assert!(job(Some("a.b"), Some("x")).validate().is_err());
        assert!(job(None, None).validate().is_err());
        assert!(job(None, Some("  ")).validate().is_err());
        assert!(job(Some("a.b.c"), None).validate().is_err());
        let twice = [job(None, Some("x")), job(None, Some("y"))];
        assert_eq!(
            validate_jobs(&twice).unwrap_err(),
            SqlJobError::DefinedTwice("j".into())
        );
        let parsed: SqlJob = toml::from_str(
            "name = \"prune\"\nsql = \"DELETE FROM log WHERE at < now() - $1::interval\"\nparams = [\"90 days\"]",
        )
        .unwrap();
        assert_eq!(parsed.params, ["90 days"]);
        assert!(parsed.concurrently);
        assert!(toml::from_str::<SqlJob>("name = \"x\"\nsql = \"y\"\nnope = 1").is_err());
    }

    #[test]
    fn statement_locks_are_per_job_and_recognisable() {
        assert_eq!(statement_lock_key("a") >> 32, SQL_LOCK_CLASS);
        assert_ne!(statement_lock_key("a"), statement_lock_key("b"));
        assert_ne!(SQL_LOCK_CLASS, LOCK_CLASS);
    }
}
