//! Policies, runs and the audit log, stored in the database the policies are about (schema
//! `strata` unless configured): they travel with the database's own backups, and every tool
//! that can read a table can read them.

use crate::duration::Retention;
use crate::error::{is_missing_column, is_missing_relation, TablesError, TablesResult};
use crate::name::TableName;
use crate::policy::{Action, ArchiveFormat, Policy, PolicySpec, SpecError, TagFilter};
use strata_pgclient::{quote_ident, Client};

/// The policy tables of one schema.
#[derive(Debug, Clone)]
pub struct Catalog {
    schema: String,
}

/// A change to a policy; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PolicyEdit {
    /// The new time column.
    pub column: Option<String>,
    /// The new retention duration.
    pub after: Option<Retention>,
    /// Replaces the tags (empty: no tags).
    pub tags: Option<Vec<String>>,
    /// `reallocate`: the target tablespace; empty clears it.
    pub tablespace: Option<String>,
    /// `detach`: the schema detached partitions move to; empty clears it.
    pub archive_schema: Option<String>,
    /// `archive`: the storage the partitions go to; empty clears it.
    pub target: Option<String>,
    /// `archive`: how the partitions are stored.
    pub archive_format: Option<ArchiveFormat>,
    /// The new floor of partitions never removed (at least 1).
    pub keep: Option<u32>,
    /// Enables or disables the policy.
    pub enabled: Option<bool>,
    /// `downsample`: changes to the rollup.
    pub rollup: RollupEdit,
    /// `downsample`: forget how far the rollup got, so the next run rolls up again from
    /// the first row still in the source table.
    pub reset_watermark: bool,
}

/// A change to a downsample policy's rollup; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct RollupEdit {
    /// The rollup table.
    pub into: Option<TableName>,
    /// Bucket width in seconds.
    pub bucket_secs: Option<i64>,
    /// How far before the watermark each run recomputes, in seconds.
    pub lookback_secs: Option<i64>,
    /// Replaces the group-by columns (empty: no grouping).
    pub group_by: Option<Vec<String>>,
    /// Replaces the aggregates.
    pub aggregates: Option<Vec<crate::rollup::Aggregate>>,
}

impl RollupEdit {
    fn is_empty(&self) -> bool {
        self.into.is_none()
            && self.bucket_secs.is_none()
            && self.lookback_secs.is_none()
            && self.group_by.is_none()
            && self.aggregates.is_none()
    }
}

impl PolicyEdit {
    /// The policy's spec after this edit, checked. A change to what a rollup writes (its
    /// table, bucket, grouping or aggregates) once it has rolled anything up needs
    /// `reset_watermark`: the buckets already written were made the old way, and only
    /// rolling up again from the start makes the table consistent where the source still
    /// has the rows. The lookback can change at any time.
    pub fn apply(&self, before: &Policy) -> Result<PolicySpec, SpecError> {
        let mut spec = before.spec.clone();
        let non_empty = |v: &String| (!v.is_empty()).then(|| v.clone());
        if let Some(column) = &self.column {
            spec.column = column.clone();
        }
        if let Some(after) = self.after {
            spec.after = after;
        }
        if let Some(tags) = &self.tags {
            spec.tags = tags.clone();
        }
        // An empty value clears an option.
        if let Some(v) = &self.tablespace {
            spec.tablespace = non_empty(v);
        }
        if let Some(v) = &self.archive_schema {
            spec.archive_schema = non_empty(v);
        }
        if let Some(v) = &self.target {
            spec.target = non_empty(v);
        }
        if let Some(format) = self.archive_format {
            spec.archive_format = format;
        }
        if let Some(keep) = self.keep {
            spec.keep = keep;
        }
        if let Some(enabled) = self.enabled {
            spec.enabled = enabled;
        }
        if (!self.rollup.is_empty() || self.reset_watermark) && spec.action != Action::Downsample {
            return Err(SpecError(format!(
                "--into, --bucket, --aggregate, --group-by, --lookback and --reset-watermark are for downsample, not {}",
                spec.action
            )));
        }
        if let Some(rollup) = &mut spec.rollup {
            let edit = &self.rollup;
            if let Some(into) = &edit.into {
                rollup.into = into.clone();
            }
            if let Some(bucket) = edit.bucket_secs {
                rollup.bucket_secs = bucket;
            }
            if let Some(lookback) = edit.lookback_secs {
                rollup.lookback_secs = lookback;
            }
            if let Some(group_by) = &edit.group_by {
                rollup.group_by = group_by.clone();
            }
            if let Some(aggregates) = &edit.aggregates {
                rollup.aggregates = aggregates.clone();
            }
        }
        spec.validate()?;
        let reshaped = match (&before.spec.rollup, &spec.rollup) {
            (Some(a), Some(b)) => {
                a.into != b.into
                    || a.bucket_secs != b.bucket_secs
                    || a.group_by != b.group_by
                    || a.aggregates != b.aggregates
                    || before.spec.column != spec.column
            }
            _ => false,
        };
        if reshaped && before.watermark.is_some() && !self.reset_watermark {
            return Err(SpecError(format!(
                "policy {} has rolled up to {}: the buckets written so far were made with its current table, bucket, grouping and aggregates. Give --reset-watermark to roll up again from the first row still in {} (see docs/tables.md, \"Changing a downsample policy\")",
                before.id,
                before.watermark.as_deref().unwrap_or_default(),
                spec.table
            )));
        }
        Ok(spec)
    }
}

/// One audit row: who did what, when, how it went, to which partitions.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableAuditEntry))]
pub struct AuditEntry {
    /// `--who NAME`, else the database user.
    pub who: String,
    /// What was done: `setup`, `policy add`, `policy edit`, `policy remove`, `run`,
    /// `run <action>`, `sql ...` or `load`.
    pub what: String,
    /// The policy concerned, if one is.
    pub policy_id: Option<i64>,
    /// The run the row belongs to, if it belongs to one.
    pub run_id: Option<i64>,
    /// The table concerned (`schema.table`), if one is.
    pub table: Option<String>,
    /// How it went (`done`, `failed`, `busy`, `nothing to do`, `dry-run`).
    pub outcome: String,
    /// The partitions acted on.
    pub partitions: Vec<String>,
    /// Free text: what was done in detail, or the error.
    pub detail: String,
}

/// The columns a policy is read from, of the policy table aliased `p`. The archive format
/// is read through `to_jsonb(p)`, which gives NULL (CSV) where the column is missing: policy
/// tables set up before formats existed keep working until `setup` adds it.
const POLICY_COLUMNS: &str = "id, table_schema, table_name, column_name, action, after_text, tags, tablespace, archive_schema, target, keep, enabled, created_by, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), rollup::text, to_char(watermark AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), to_jsonb(p) ->> 'archive_format'";

/// Why `spec` cannot be added: its table has a policy of its action already (one per table
/// and action; the policy table's unique key says so when two adds race).
pub fn already_has(spec: &PolicySpec) -> TablesError {
    TablesError::Unsupported(format!(
        "table {} already has a {} policy: change it with `strata tables edit ID`",
        spec.table, spec.action
    ))
}

impl Catalog {
    /// The policy tables in `schema` (not created by this: see `setup`).
    pub fn new(schema: impl Into<String>) -> Catalog {
        Catalog {
            schema: schema.into(),
        }
    }

    /// The schema that holds the policy, run and audit tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// The statements of `strata tables setup`; each can run again.
    pub fn setup_sql(&self) -> Vec<String> {
        let policy = self.table("policy");
        let run = self.table("run");
        let audit = self.table("audit");
        vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&self.schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {policy} (
                    id bigserial PRIMARY KEY,
                    table_schema text NOT NULL,
                    table_name text NOT NULL,
                    column_name text NOT NULL,
                    action text NOT NULL CHECK (action IN ('delete', 'detach', 'reallocate', 'archive', 'downsample')),
                    after_text text NOT NULL,
                    after_seconds bigint,
                    tags text[] NOT NULL DEFAULT '{{}}',
                    tablespace text,
                    archive_schema text,
                    target text,
                    keep integer NOT NULL DEFAULT 1 CHECK (keep >= 1),
                    enabled boolean NOT NULL DEFAULT true,
                    created_by text NOT NULL DEFAULT current_user,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (table_schema, table_name, action))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {run} (
                    id bigserial PRIMARY KEY,
                    who text NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now(),
                    finished_at timestamptz,
                    cutoff timestamptz NOT NULL,
                    dry_run boolean NOT NULL,
                    tags text[] NOT NULL DEFAULT '{{}}',
                    outcome text NOT NULL DEFAULT 'running',
                    summary text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {audit} (
                    id bigserial PRIMARY KEY,
                    at timestamptz NOT NULL DEFAULT now(),
                    who text NOT NULL,
                    what text NOT NULL,
                    policy_id bigint,
                    run_id bigint,
                    table_name text,
                    outcome text NOT NULL,
                    partitions text[] NOT NULL DEFAULT '{{}}',
                    detail text NOT NULL DEFAULT '')"
            ),
            // Added after the first release of these tables: `setup` again adds them.
            format!(
                "ALTER TABLE {policy} ADD COLUMN IF NOT EXISTS rollup jsonb, \
                 ADD COLUMN IF NOT EXISTS watermark timestamptz"
            ),
            format!(
                "ALTER TABLE {policy} ADD COLUMN IF NOT EXISTS archive_format text NOT NULL \
                 DEFAULT 'csv' CHECK (archive_format IN ('csv', 'parquet'))"
            ),
            // `tables history` reads the newest rows and each run prunes the oldest: by
            // time, whatever the size of the history.
            format!("CREATE INDEX IF NOT EXISTS audit_at ON {audit} (at)"),
            format!("CREATE INDEX IF NOT EXISTS run_started_at ON {run} (started_at)"),
        ]
    }

    /// Creates the schema and tables (idempotent).
    pub async fn setup(&self, client: &Client, who: &str) -> TablesResult<()> {
        for statement in self.setup_sql() {
            client
                .batch_execute(&statement)
                .await
                .map_err(|e| TablesError::db("setting up the policy tables", &e))?;
        }
        self.audit(
            client,
            &AuditEntry {
                who: who.into(),
                what: "setup".into(),
                outcome: "ok".into(),
                detail: format!("schema {}", self.schema),
                ..AuditEntry::default()
            },
        )
        .await
    }

    pub(crate) fn map_err(&self, what: &str, err: strata_pgclient::PgError) -> TablesError {
        if is_missing_relation(&err) {
            TablesError::NotSetUp {
                schema: self.schema.clone(),
            }
        } else if is_missing_column(&err) {
            TablesError::NeedsUpgrade {
                schema: self.schema.clone(),
                message: strata_pgclient::error_message(&err),
            }
        } else {
            TablesError::db(what, &err)
        }
    }

    /// Adds a policy; returns its id. One policy per table and action. A CSV archive
    /// policy leaves `archive_format` to its default, so policy tables that predate the
    /// column still take every policy they can hold.
    pub async fn add(&self, client: &Client, spec: &PolicySpec, who: &str) -> TablesResult<i64> {
        spec.validate()?;
        let (format_column, format_value) = if spec.archive_format == ArchiveFormat::Csv {
            ("", "")
        } else {
            (", archive_format", ", $15")
        };
        let sql = format!(
            "INSERT INTO {} (table_schema, table_name, column_name, action, after_text, after_seconds, tags, tablespace, archive_schema, target, keep, enabled, created_by, rollup{format_column})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::text::jsonb{format_value})
             ON CONFLICT (table_schema, table_name, action) DO NOTHING RETURNING id",
            self.table("policy")
        );
        let keep = i32::try_from(spec.keep).unwrap_or(i32::MAX);
        let rollup = spec
            .rollup
            .as_ref()
            .map(|r| serde_json::to_string(r).expect("rollups serialize"));
        let format = spec.archive_format.as_str();
        let action = spec.action.as_str();
        let after_text = spec.after.to_string();
        let after_seconds = spec.after.seconds();
        let mut params: Vec<&(dyn strata_pgclient::tokio_postgres::types::ToSql + Sync)> = vec![
            &spec.table.schema,
            &spec.table.name,
            &spec.column,
            &action,
            &after_text,
            &after_seconds,
            &spec.tags,
            &spec.tablespace,
            &spec.archive_schema,
            &spec.target,
            &keep,
            &spec.enabled,
            &who,
            &rollup,
        ];
        if !format_column.is_empty() {
            params.push(&format);
        }
        let rows = client
            .query(&sql, &params)
            .await
            .map_err(|e| self.map_err("adding the policy", e))?;
        let Some(row) = rows.first() else {
            return Err(already_has(spec));
        };
        let id: i64 = row.get(0);
        self.audit(
            client,
            &AuditEntry {
                who: who.into(),
                what: "policy add".into(),
                policy_id: Some(id),
                table: Some(spec.table.to_string()),
                outcome: "ok".into(),
                detail: describe_spec(spec),
                ..AuditEntry::default()
            },
        )
        .await?;
        Ok(id)
    }

    /// The statement that moves a downsample policy's watermark (`$1` the new end as
    /// RFC 3339 text, `$2` the policy id, `$3` the watermark the run started from, NULL
    /// for none), run in the transaction of the rollup itself. It changes no row when the
    /// watermark is no longer the one the run started from (an edit reset it meanwhile):
    /// the rollup step then fails rather than undo the reset.
    pub fn watermark_sql(&self) -> String {
        format!(
            "UPDATE {} SET watermark = $1::text::timestamptz WHERE id = $2 AND watermark IS NOT DISTINCT FROM $3::text::timestamptz",
            self.table("policy")
        )
    }

    /// One policy, its row locked until `tx` ends (an edit of it waits), or `None` when it
    /// is gone.
    pub async fn get_for_update(
        &self,
        tx: &strata_pgclient::tokio_postgres::Transaction<'_>,
        id: i64,
    ) -> TablesResult<Option<Policy>> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM {} p WHERE id = $1 FOR UPDATE",
            self.table("policy")
        );
        tx.query_opt(&sql, &[&id])
            .await
            .map_err(|e| self.map_err("reading the policy", e))?
            .map(|row| policy_from_row(&row))
            .transpose()
    }

    /// Every policy (oldest first) whose tags match.
    pub async fn list(&self, client: &Client, filter: &TagFilter) -> TablesResult<Vec<Policy>> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM {} p ORDER BY id",
            self.table("policy")
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| self.map_err("reading the policies", e))?;
        let mut policies = Vec::new();
        for row in rows {
            let policy = policy_from_row(&row)?;
            if filter.matches(&policy.spec.tags) {
                policies.push(policy);
            }
        }
        Ok(policies)
    }

    /// One policy.
    pub async fn get(&self, client: &Client, id: i64) -> TablesResult<Policy> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM {} p WHERE id = $1",
            self.table("policy")
        );
        let row = client
            .query_opt(&sql, &[&id])
            .await
            .map_err(|e| self.map_err("reading the policy", e))?
            .ok_or(TablesError::NoSuchPolicy(id))?;
        policy_from_row(&row)
    }

    /// Changes a policy (see [`PolicyEdit::apply`]); returns it as it now is.
    pub async fn edit(
        &self,
        client: &Client,
        id: i64,
        edit: &PolicyEdit,
        who: &str,
    ) -> TablesResult<Policy> {
        let before = self.get(client, id).await?;
        let spec = edit.apply(&before)?;
        let keep = i32::try_from(spec.keep).unwrap_or(i32::MAX);
        let after_text = spec.after.to_string();
        let after_seconds = spec.after.seconds();
        let format = spec.archive_format.as_str();
        let rollup = spec
            .rollup
            .as_ref()
            .map(|r| serde_json::to_string(r).expect("rollups serialize"));
        let mut sets = String::from(
            "column_name = $2, after_text = $3, after_seconds = $4, tags = $5, tablespace = $6, archive_schema = $7, target = $8, keep = $9, enabled = $10",
        );
        let mut params: Vec<&(dyn strata_pgclient::tokio_postgres::types::ToSql + Sync)> = vec![
            &id,
            &spec.column,
            &after_text,
            &after_seconds,
            &spec.tags,
            &spec.tablespace,
            &spec.archive_schema,
            &spec.target,
            &keep,
            &spec.enabled,
        ];
        // The format and rollup columns are written only when they are involved, so policy
        // tables that predate them can still be edited.
        if spec.archive_format != ArchiveFormat::Csv
            || before.spec.archive_format != ArchiveFormat::Csv
        {
            params.push(&format);
            sets.push_str(&format!(", archive_format = ${}", params.len()));
        }
        if spec.rollup != before.spec.rollup {
            params.push(&rollup);
            sets.push_str(&format!(", rollup = ${}::text::jsonb", params.len()));
        }
        if edit.reset_watermark {
            sets.push_str(", watermark = NULL");
        }
        let sql = format!("UPDATE {} SET {sets} WHERE id = $1", self.table("policy"));
        client
            .execute(&sql, &params)
            .await
            .map_err(|e| self.map_err("changing the policy", e))?;
        let reset = if edit.reset_watermark {
            format!(
                "; watermark reset (was {})",
                before.watermark.as_deref().unwrap_or("none")
            )
        } else {
            String::new()
        };
        self.audit(
            client,
            &AuditEntry {
                who: who.into(),
                what: "policy edit".into(),
                policy_id: Some(id),
                table: Some(spec.table.to_string()),
                outcome: "ok".into(),
                detail: format!(
                    "was: {}; now: {}{reset}",
                    describe_spec(&before.spec),
                    describe_spec(&spec)
                ),
                ..AuditEntry::default()
            },
        )
        .await?;
        self.get(client, id).await
    }

    /// Deletes policy `id` and audits it as `policy remove` by `who`, in one statement (the
    /// policy never goes without its audit row); answers the policy as it was, read with
    /// the caller's table lock held, or `None` when another caller removed it first.
    pub async fn remove(
        &self,
        client: &Client,
        id: i64,
        who: &str,
    ) -> TablesResult<Option<Policy>> {
        let policy = match self.get(client, id).await {
            Ok(policy) => policy,
            Err(TablesError::NoSuchPolicy(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        let sql = format!(
            "WITH gone AS (DELETE FROM {policy} WHERE id = $1 RETURNING id)
             INSERT INTO {audit} (who, what, policy_id, table_name, outcome, detail)
             SELECT $2, 'policy remove', id, $3, 'ok', $4 FROM gone RETURNING id",
            policy = self.table("policy"),
            audit = self.table("audit"),
        );
        let table = policy.spec.table.to_string();
        let detail = describe_spec(&policy.spec);
        let rows = client
            .query(&sql, &[&id, &who, &table, &detail])
            .await
            .map_err(|e| self.map_err("removing the policy", e))?;
        Ok((!rows.is_empty()).then_some(policy))
    }

    /// Writes one audit row.
    pub async fn audit(&self, client: &Client, entry: &AuditEntry) -> TablesResult<()> {
        let sql = format!(
            "INSERT INTO {} (who, what, policy_id, run_id, table_name, outcome, partitions, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            self.table("audit")
        );
        client
            .execute(
                &sql,
                &[
                    &entry.who,
                    &entry.what,
                    &entry.policy_id,
                    &entry.run_id,
                    &entry.table,
                    &entry.outcome,
                    &entry.partitions,
                    &entry.detail,
                ],
            )
            .await
            .map_err(|e| self.map_err("writing the audit log", e))?;
        Ok(())
    }

    /// Opens a run record; returns its id.
    pub async fn start_run(
        &self,
        client: &Client,
        who: &str,
        cutoff: &str,
        dry_run: bool,
        tags: &[String],
    ) -> TablesResult<i64> {
        let sql = format!(
            "INSERT INTO {} (who, cutoff, dry_run, tags) VALUES ($1, $2::text::timestamptz, $3, $4) RETURNING id",
            self.table("run")
        );
        let row = client
            .query_one(&sql, &[&who, &cutoff, &dry_run, &tags])
            .await
            .map_err(|e| self.map_err("recording the run", e))?;
        Ok(row.get(0))
    }

    /// Closes a run record with its outcome.
    pub async fn finish_run(
        &self,
        client: &Client,
        id: i64,
        outcome: &str,
        summary: &str,
    ) -> TablesResult<()> {
        let sql = format!(
            "UPDATE {} SET finished_at = now(), outcome = $2, summary = $3 WHERE id = $1",
            self.table("run")
        );
        client
            .execute(&sql, &[&id, &outcome, &summary])
            .await
            .map_err(|e| self.map_err("recording the run's outcome", e))?;
        Ok(())
    }
}

/// One line describing a policy, for the audit log.
pub fn describe_spec(spec: &PolicySpec) -> String {
    let mut text = format!(
        "{} {}:{} after {}",
        spec.action, spec.table, spec.column, spec.after
    );
    if let Some(t) = &spec.tablespace {
        text.push_str(&format!(" tablespace {t}"));
    }
    if let Some(t) = &spec.target {
        text.push_str(&format!(" target {t}"));
    }
    if spec.action == Action::Archive {
        text.push_str(&format!(" format {}", spec.archive_format));
    }
    if let Some(s) = &spec.archive_schema {
        text.push_str(&format!(" archive schema {s}"));
    }
    if let Some(r) = &spec.rollup {
        text.push_str(&format!(" {}", r.describe()));
    }
    if spec.keep != 1 {
        text.push_str(&format!(" keep {}", spec.keep));
    }
    if !spec.tags.is_empty() {
        text.push_str(&format!(" tags {}", spec.tags.join(",")));
    }
    if !spec.enabled {
        text.push_str(" (disabled)");
    }
    text
}

fn policy_from_row(row: &strata_pgclient::tokio_postgres::Row) -> TablesResult<Policy> {
    let action_text: String = row.get(4);
    let action = Action::parse(&action_text).ok_or_else(|| {
        TablesError::Unsupported(format!("stored policy has unknown action {action_text:?}"))
    })?;
    let after_text: String = row.get(5);
    let keep: i32 = row.get(10);
    let archive_format = match row.get::<_, Option<String>>(16) {
        None => ArchiveFormat::Csv,
        Some(text) => ArchiveFormat::parse(&text).ok_or_else(|| {
            TablesError::Unsupported(format!(
                "stored policy {} has unknown archive format {text:?}",
                row.get::<_, i64>(0)
            ))
        })?,
    };
    let rollup = match row.get::<_, Option<String>>(14) {
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
            TablesError::Unsupported(format!(
                "stored rollup of policy {} is unreadable: {e}",
                row.get::<_, i64>(0)
            ))
        })?),
        None => None,
    };
    Ok(Policy {
        id: row.get(0),
        spec: PolicySpec {
            table: TableName::new(row.get::<_, String>(1), row.get::<_, String>(2)),
            column: row.get(3),
            action,
            after: Retention::parse(&after_text)?,
            tags: row.get(6),
            tablespace: row.get(7),
            archive_schema: row.get(8),
            target: row.get(9),
            archive_format,
            rollup,
            keep: u32::try_from(keep).unwrap_or(1),
            enabled: row.get(11),
        },
        created_by: row.get(12),
        created_at: row.get(13),
        watermark: row.get(15),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downsample(watermark: Option<&str>) -> Policy {
        let mut spec = PolicySpec::new(
            TableName::new("m", "raw"),
            "ts",
            Action::Downsample,
            Retention::After(3600),
        );
        spec.rollup = Some(crate::rollup::Rollup {
            into: TableName::new("m", "hourly"),
            bucket_secs: 3600,
            lookback_secs: 3600,
            group_by: vec!["host".into()],
            aggregates: vec![crate::rollup::Aggregate::parse("count").unwrap()],
        });
        Policy {
            id: 4,
            spec,
            created_by: "t".into(),
            created_at: String::new(),
            watermark: watermark.map(str::to_string),
        }
    }

    #[test]
    fn reshaping_a_rollup_that_ran_needs_a_reset() {
        let ran = downsample(Some("2026-01-01T00:00:00Z"));
        let bucket = PolicyEdit {
            rollup: RollupEdit {
                bucket_secs: Some(86_400),
                ..RollupEdit::default()
            },
            ..PolicyEdit::default()
        };
        let err = bucket.apply(&ran).unwrap_err().0;
        assert!(err.contains("--reset-watermark"), "{err}");
        // Never ran: nothing to redo.
        let spec = bucket.apply(&downsample(None)).unwrap();
        assert_eq!(spec.rollup.unwrap().bucket_secs, 86_400);
        let reset = PolicyEdit {
            reset_watermark: true,
            ..bucket.clone()
        };
        assert_eq!(
            reset.apply(&ran).unwrap().rollup.unwrap().bucket_secs,
            86_400
        );
        // The lookback, and grouping replaced by the same list, are not a new shape.
        let lookback = PolicyEdit {
            rollup: RollupEdit {
                lookback_secs: Some(7200),
                group_by: Some(vec!["host".into()]),
                ..RollupEdit::default()
            },
            ..PolicyEdit::default()
        };
        assert_eq!(
            lookback.apply(&ran).unwrap().rollup.unwrap().lookback_secs,
            7200
        );
        let ungroup = PolicyEdit {
            rollup: RollupEdit {
                group_by: Some(vec![]),
                ..RollupEdit::default()
            },
            ..PolicyEdit::default()
        };
        assert!(ungroup.apply(&ran).is_err());
        // Rollup options on another action are refused.
        let mut delete = downsample(None);
        delete.spec.action = Action::Delete;
        delete.spec.rollup = None;
        assert!(lookback
            .apply(&delete)
            .unwrap_err()
            .0
            .contains("are for downsample"));
        let reset_only = PolicyEdit {
            reset_watermark: true,
            ..PolicyEdit::default()
        };
        assert!(reset_only.apply(&delete).is_err());
    }

    #[test]
    fn setup_sql_quotes_the_schema() {
        let sql = Catalog::new("my\"schema; DROP").setup_sql();
        assert_eq!(sql[0], "CREATE SCHEMA IF NOT EXISTS \"my\"\"schema; DROP\"");
        assert!(sql[1].contains("\"my\"\"schema; DROP\".\"policy\""));
    }
}
