//! How plans, steps and policies read for an operator: the words and table rows `strata
//! tables plan`, `run --dry-run` and `list` show. They belong with the types they describe,
//! so a front end only lays them out; sizes go through the caller's formatter, so every
//! front end keeps its one style.

use crate::plan::{Step, StepKind, TablePlan};
use crate::policy::{Action, Policy};
use crate::PlannedTable;

/// The columns of [`TablePlan::rows`].
pub const PLAN_COLUMNS: [&str; 7] = [
    "table",
    "policy",
    "action",
    "partition",
    "upper bound",
    "size",
    "what",
];

/// The columns of [`Policy::row`].
pub const POLICY_COLUMNS: [&str; 11] = [
    "id", "table", "column", "action", "to", "format", "after", "keep", "tags", "enabled", "by",
];

impl Step {
    /// What the step does, in words: `detach and drop`, `archive to cold as csv, drop`.
    pub fn describe(&self) -> String {
        match &self.kind {
            StepKind::DropPartition => "detach and drop".to_string(),
            StepKind::DetachPartition { schema: Some(s) } => format!("detach to schema {s}"),
            StepKind::DetachPartition { schema: None } => "detach".to_string(),
            StepKind::MoveTablespace { tablespace } => format!("move to tablespace {tablespace}"),
            StepKind::ArchivePartition { target, format } => {
                format!("archive to {target} as {format}, drop")
            }
            StepKind::DeleteRows { column, before } => match self.rows_estimate {
                Some(rows) => {
                    format!("delete rows with {column} < {before} (about {rows} rows: an estimate)")
                }
                None => format!("delete rows with {column} < {before}"),
            },
            StepKind::Rollup { into, from, to } => format!(
                "roll up into {into}: {} to {to}",
                from.as_deref().unwrap_or("first row")
            ),
        }
    }

    /// The partition's upper bound out of `FOR VALUES FROM (..) TO (..)` (empty for a row
    /// delete or a rollup).
    pub fn upper_bound(&self) -> String {
        let Some(bound) = self.bound.as_deref() else {
            return String::new();
        };
        match bound.rsplit_once(" TO (") {
            Some((_, upper)) => upper.trim_end_matches(')').trim_matches('\'').to_string(),
            None => bound.to_string(),
        }
    }
}

impl TablePlan {
    /// Bytes of the partitions the plan acts on. A row delete's size is an estimate, shown
    /// on its own line and left out here.
    pub fn partition_bytes(&self) -> u64 {
        let total: i64 = self
            .steps
            .iter()
            .filter(|s| s.rows_estimate.is_none())
            .filter_map(|s| s.bytes)
            .sum();
        total.max(0) as u64
    }

    /// One row per step, then one per partition kept and why, under [`PLAN_COLUMNS`]. A
    /// size that is an estimate (a row delete's) reads `~SIZE`.
    pub fn rows(&self, size: impl Fn(u64) -> String) -> Vec<Vec<String>> {
        let steps = self.steps.iter().map(|s| {
            let bytes = s.bytes.map(|b| size(b.max(0) as u64));
            let estimate = if s.rows_estimate.is_some() { "~" } else { "" };
            vec![
                self.table.clone(),
                s.policy_id.to_string(),
                s.action.to_string(),
                s.partition.clone().unwrap_or_else(|| "(rows)".into()),
                s.upper_bound(),
                bytes.map(|b| format!("{estimate}{b}")).unwrap_or_default(),
                s.describe(),
            ]
        });
        let kept = self.kept.iter().map(|k| {
            vec![
                self.table.clone(),
                k.policy_id.to_string(),
                "keep".into(),
                k.partition.clone(),
                String::new(),
                String::new(),
                k.reason.clone(),
            ]
        });
        steps.chain(kept).collect()
    }
}

impl PlannedTable {
    /// Whether planning this table failed or found a problem with its policies: `plan`
    /// then exits non-zero.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.plan.as_ref().is_some_and(|p| !p.problems.is_empty())
    }
}

impl Policy {
    /// The policy's row under [`POLICY_COLUMNS`]: "to" is the tablespace, target or archive
    /// schema its action uses; "format" is an archive's.
    pub fn row(&self) -> Vec<String> {
        let s = &self.spec;
        let to = s
            .tablespace
            .as_ref()
            .or(s.target.as_ref())
            .or(s.archive_schema.as_ref())
            .cloned()
            .unwrap_or_default();
        let format = if s.action == Action::Archive {
            s.archive_format.to_string()
        } else {
            String::new()
        };
        vec![
            self.id.to_string(),
            s.table.to_string(),
            s.column.clone(),
            s.action.to_string(),
            to,
            format,
            s.after.to_string(),
            s.keep.to_string(),
            s.tags.join(","),
            if s.enabled { "yes" } else { "no" }.into(),
            self.created_by.clone(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Kept;
    use crate::policy::ArchiveFormat;

    fn step(kind: StepKind, bound: Option<&str>, bytes: i64, rows: Option<i64>) -> Step {
        Step {
            policy_id: 4,
            action: Action::Archive,
            kind,
            partition: bound.map(|_| "metrics.raw_2025_01".into()),
            bound: bound.map(str::to_string),
            bytes: Some(bytes),
            rows_estimate: rows,
        }
    }

    #[test]
    fn plan_rows_show_the_upper_bound_and_mark_estimates() {
        let archive = step(
            StepKind::ArchivePartition {
                target: "cold".into(),
                format: ArchiveFormat::Parquet,
            },
            Some("FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')"),
            2048,
            None,
        );
        let delete = step(
            StepKind::DeleteRows {
                column: "at".into(),
                before: "2025-04-01".into(),
            },
            None,
            100,
            Some(12),
        );
        let plan = TablePlan {
            table: "metrics.raw".into(),
            steps: vec![archive, delete],
            kept: vec![Kept {
                policy_id: 4,
                partition: "metrics.raw_2025_02".into(),
                reason: "the last partition".into(),
            }],
            notes: Vec::new(),
            problems: Vec::new(),
        };
        let rows = plan.rows(|b| format!("{b}B"));
        assert_eq!(rows[0][4], "2025-02-01 00:00:00+00");
        assert_eq!(rows[0][5], "2048B");
        assert_eq!(rows[0][6], "archive to cold as parquet, drop");
        assert_eq!(rows[1][3], "(rows)");
        assert_eq!(rows[1][5], "~100B");
        assert!(rows[1][6].contains("about 12 rows: an estimate"));
        assert_eq!(rows[2][2..4], ["keep", "metrics.raw_2025_02"]);
        assert!(rows.iter().all(|r| r.len() == PLAN_COLUMNS.len()));
        // The estimate is not added to what the partitions weigh.
        assert_eq!(plan.partition_bytes(), 2048);
    }

    #[test]
    fn an_unbounded_or_odd_bound_is_shown_as_it_is() {
        let mut s = step(StepKind::DropPartition, Some("DEFAULT"), 1, None);
        assert_eq!(s.upper_bound(), "DEFAULT");
        s.bound = None;
        assert_eq!(s.upper_bound(), "");
    }
}
