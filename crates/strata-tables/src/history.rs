//! The history of table retention: every run, its steps and every policy change, read back
//! from the audit table (`strata tables history`), and kept bounded: rows older than
//! `[tables] history_days` are pruned at the end of each run.

use crate::catalog::{AuditEntry, Catalog};
use crate::error::TablesResult;
use crate::name::TableName;
use chrono::{DateTime, Utc};
use strata_pgclient::Client;

/// Which rows of the history to show; each given filter narrows it.
#[derive(Debug, Clone)]
pub struct HistoryFilter {
    /// Rows about this table (`schema.table`; a bare name is in `public`).
    pub table: Option<TableName>,
    /// Rows about this policy (its changes and the steps it made).
    pub policy: Option<i64>,
    /// Rows of runs with this tag, and of policies that have it.
    pub tag: Option<String>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// The newest rows, at most this many.
    pub limit: i64,
}

impl Default for HistoryFilter {
    fn default() -> Self {
        HistoryFilter {
            table: None,
            policy: None,
            tag: None,
            since: None,
            until: None,
            limit: 100,
        }
    }
}

/// One row of the history: a run, one of its steps, or a policy change. `what` is `run`,
/// `run (dry-run)`, `run delete`, `run archive`, ..., `policy add`, `policy edit`,
/// `policy remove`, `sql refresh NAME`, `sql statement NAME`, `load` or `setup`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableHistoryEntry))]
pub struct HistoryEntry {
    /// The audit row's id.
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// Who did what, to what, and how it went.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// The columns of [`HistoryEntry::row`].
pub const HISTORY_COLUMNS: [&str; 9] = [
    "at",
    "who",
    "what",
    "table",
    "policy",
    "run",
    "outcome",
    "partitions",
    "detail",
];

impl HistoryEntry {
    /// The entry as a table row (`-` for what it does not have).
    pub fn row(&self) -> Vec<String> {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let e = &self.entry;
        vec![
            self.at.clone(),
            e.who.clone(),
            e.what.clone(),
            or_dash(e.table.clone()),
            or_dash(e.policy_id.map(|p| p.to_string())),
            or_dash(e.run_id.map(|r| r.to_string())),
            e.outcome.clone(),
            match e.partitions.len() {
                0 => "-".into(),
                1 => e.partitions[0].clone(),
                n => format!("{} (+{} more)", e.partitions[0], n - 1),
            },
            e.detail.clone(),
        ]
    }
}

impl Catalog {
    /// The history rows `filter` selects, newest first.
    pub async fn history(
        &self,
        client: &Client,
        filter: &HistoryFilter,
    ) -> TablesResult<Vec<HistoryEntry>> {
        let sql = format!(
            "SELECT a.id, to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), a.who, a.what, \
                    a.policy_id, a.run_id, a.table_name, a.outcome, a.partitions, a.detail \
             FROM {audit} a \
             WHERE ($1::text IS NULL OR a.table_name = $1) \
               AND ($2::bigint IS NULL OR a.policy_id = $2) \
               AND ($3::text IS NULL \
                    OR EXISTS (SELECT 1 FROM {policy} p WHERE p.id = a.policy_id AND $3 = ANY (p.tags)) \
                    OR EXISTS (SELECT 1 FROM {run} r WHERE r.id = a.run_id AND $3 = ANY (r.tags))) \
               AND ($4::text IS NULL OR a.at >= $4::text::timestamptz) \
               AND ($5::text IS NULL OR a.at < $5::text::timestamptz) \
             ORDER BY a.at DESC, a.id DESC LIMIT $6",
            audit = self.table("audit"),
            policy = self.table("policy"),
            run = self.table("run"),
        );
        let table = filter.table.as_ref().map(|t| t.to_string());
        let since = filter.since.map(|t| t.to_rfc3339());
        let until = filter.until.map(|t| t.to_rfc3339());
        let rows = client
            .query(
                &sql,
                &[
                    &table,
                    &filter.policy,
                    &filter.tag,
                    &since,
                    &until,
                    &filter.limit.max(1),
                ],
            )
            .await
            .map_err(|e| self.map_err("reading the history", e))?;
        Ok(rows
            .iter()
            .map(|row| HistoryEntry {
                id: row.get(0),
                at: row.get(1),
                entry: AuditEntry {
                    who: row.get(2),
                    what: row.get(3),
                    policy_id: row.get(4),
                    run_id: row.get(5),
                    table: row.get(6),
                    outcome: row.get(7),
                    partitions: row.get(8),
                    detail: row.get(9),
                },
            })
            .collect())
    }

    /// Deletes history older than `days` days: audit rows, and runs that have ended.
    /// Returns how many audit rows and runs went; `days` 0 keeps everything.
    pub async fn prune_history(&self, client: &Client, days: u32) -> TablesResult<(u64, u64)> {
        if days == 0 {
            return Ok((0, 0));
        }
        let days = i32::try_from(days).unwrap_or(i32::MAX);
        let audit = client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE at < now() - make_interval(days => $1)",
                    self.table("audit")
                ),
                &[&days],
            )
            .await
            .map_err(|e| self.map_err("pruning the audit log", e))?;
        let runs = client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE finished_at IS NOT NULL AND started_at < now() - make_interval(days => $1)",
                    self.table("run")
                ),
                &[&days],
            )
            .await
            .map_err(|e| self.map_err("pruning the runs", e))?;
        Ok((audit, runs))
    }
}
