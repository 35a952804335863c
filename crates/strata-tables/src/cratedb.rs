//! The CrateDB dialect: the statements cratedb-toolkit's retention runs, built safely, and
//! expiry on a partition's upper bound.
//!
//! CrateDB partitions a table by the value of a column, usually a generated one such as
//! `ts_month = date_trunc('month', ts)`. `information_schema.table_partitions` lists each
//! partition's value (epoch milliseconds for a timestamp). cratedb-toolkit retires a
//! partition once that value, the partition's *start*, is older than the cutoff, which can
//! drop up to a partition's width of data still inside the window. Here a partition expires
//! only when its start plus its width (`day`, `week`, `month`, `year` of `date_trunc`, or a
//! fixed duration) is at or before the cutoff, as for PostgreSQL.
//!
//! Identifiers are quoted and string values are literals with quotes doubled; partition
//! values are integers, formatted as such, so nothing from a policy can change a
//! statement's shape. [`plan`] lays out what a retention run does to a table whose
//! partitions are known (`strata tables plan --dialect cratedb`). Checked: every statement
//! parses under CrateDB's own grammar (cratedb-sqlparse, in `crates/strata/tests/tables.rs`)
//! and golden tests pin the text. Not checked: what a live CrateDB does with them (none
//! runs in this environment).

use chrono::{DateTime, Months, Utc};
use strata_pgclient::{quote_ident, quote_literal};

use crate::name::TableName;

/// How wide one partition is: the `date_trunc` unit of the generated partition column, or
/// a fixed number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// `date_trunc('day', ...)`: one partition a day.
    Day,
    /// `date_trunc('week', ...)`: one partition a week.
    Week,
    /// `date_trunc('month', ...)`: one partition a month.
    Month,
    /// `date_trunc('year', ...)`: one partition a year.
    Year,
    /// A fixed width, in seconds.
    Seconds(i64),
}

/// A partition width that is none of `day`, `week`, `month`, `year` or a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition width {0:?}: use day, week, month, year or a duration such as 6h")]
pub struct WidthError(pub String);

impl Width {
    /// `day`, `week`, `month`, `year`, or a duration such as `6h`.
    pub fn parse(text: &str) -> Result<Width, WidthError> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "day" => Width::Day,
            "week" => Width::Week,
            "month" => Width::Month,
            "year" => Width::Year,
            other => match crate::duration::Retention::parse(other) {
                Ok(crate::duration::Retention::After(s)) => Width::Seconds(s),
                _ => return Err(WidthError(text.to_string())),
            },
        })
    }

    /// The end (exclusive) of the partition that starts at `start`.
    pub fn end_of(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Width::Day => start.checked_add_signed(chrono::Duration::days(1)),
            Width::Week => start.checked_add_signed(chrono::Duration::weeks(1)),
            Width::Month => start.checked_add_months(Months::new(1)),
            Width::Year => start.checked_add_months(Months::new(12)),
            Width::Seconds(s) => start.checked_add_signed(chrono::Duration::seconds(s)),
        }
    }
}

/// The partitions (by value, epoch ms) whose every row is older than `threshold`, oldest
/// first, leaving at least `keep` (at least one) partitions in the table.
pub fn expired(values: &[i64], width: Width, threshold: DateTime<Utc>, keep: usize) -> Vec<i64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let removable = sorted.len().saturating_sub(keep.max(1));
    sorted
        .into_iter()
        .filter(|v| {
            DateTime::from_timestamp_millis(*v)
                .and_then(|start| width.end_of(start))
                .is_some_and(|end| end <= threshold)
        })
        .take(removable)
        .collect()
}

/// The partition values of `table` by `column` (bind: schema, table).
pub fn partitions_sql(column: &str) -> String {
    format!(
        "SELECT values[{}] FROM information_schema.table_partitions WHERE table_schema = ? AND table_name = ? ORDER BY 1",
        quote_literal(column)
    )
}

/// The partitions that still have a shard on a node whose attribute `attribute` is not
/// `value` (bind: schema, table): reallocating only those makes a run idempotent.
pub fn partitions_to_reallocate_sql(column: &str, attribute: &str, value: &str) -> String {
    format!(
        "SELECT DISTINCT p.values[{col}] FROM information_schema.table_partitions p \
         JOIN sys.shards s ON s.schema_name = p.table_schema AND s.table_name = p.table_name AND s.partition_ident = p.partition_ident \
         JOIN sys.nodes n ON n.id = s.node['id'] \
         WHERE p.table_schema = ? AND p.table_name = ? AND (n.attributes[{attr}] IS NULL OR n.attributes[{attr}] <> {value}) ORDER BY 1",
        col = quote_literal(column),
        attr = quote_literal(attribute),
        value = quote_literal(value),
    )
}

/// `DELETE FROM T WHERE C = V`: matches the whole partition, which CrateDB drops without
/// evaluating rows.
pub fn delete_sql(table: &TableName, column: &str, value: i64) -> String {
    format!(
        "DELETE FROM {} WHERE {} = {value}",
        table.quoted(),
        quote_ident(column)
    )
}

/// `ALTER TABLE T PARTITION (C = V) SET ("routing.allocation.require.<attr>" = 'value')`.
pub fn reallocate_sql(
    table: &TableName,
    column: &str,
    value: i64,
    attribute: &str,
    target: &str,
) -> String {
    format!(
        "ALTER TABLE {} PARTITION ({} = {value}) SET ({} = {})",
        table.quoted(),
        quote_ident(column),
        quote_ident(&format!("routing.allocation.require.{attribute}")),
        quote_literal(target)
    )
}

/// `CREATE SNAPSHOT "repo"."schema.table-V" TABLE T PARTITION (C = V) WITH
/// ("wait_for_completion" = true)`; the partition is deleted only after it succeeded.
pub fn snapshot_sql(table: &TableName, column: &str, value: i64, repository: &str) -> String {
    format!(
        "CREATE SNAPSHOT {}.{} TABLE {} PARTITION ({} = {value}) WITH (\"wait_for_completion\" = true)",
        quote_ident(repository),
        quote_ident(&format!("{}.{}-{value}", table.schema, table.name)),
        table.quoted(),
        quote_ident(column)
    )
}

/// What a retention run does to one CrateDB table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrateAction {
    /// `DELETE` each expired partition whole.
    Delete,
    /// Move each expired partition to the nodes whose `attribute` is `value`.
    Reallocate {
        /// The node attribute (`routing.allocation.require.<attribute>`).
        attribute: String,
        /// The attribute's value on the nodes the partitions move to.
        value: String,
    },
    /// Snapshot each expired partition into `repository`, then delete it.
    Snapshot {
        /// The CrateDB snapshot repository.
        repository: String,
    },
}

/// A CrateDB table's layout and the policy to plan for it.
#[derive(Debug, Clone)]
pub struct CrateLayout {
    /// The CrateDB table.
    pub table: TableName,
    /// The partition column (usually generated: `date_trunc('month', ts)`).
    pub column: String,
    /// How wide one partition is.
    pub width: Width,
    /// What a run does to an expired partition.
    pub action: CrateAction,
    /// Partitions whose every row is older than this many seconds expire.
    pub after_seconds: i64,
    /// At least this many partitions stay.
    pub keep: usize,
    /// The partition values (epoch milliseconds) the table has.
    pub partitions: Vec<i64>,
}

/// One partition of a [`CratePlan`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CratePartition {
    /// The partition's value: its start, epoch milliseconds.
    pub value: i64,
    /// RFC 3339: the partition's first and first-after-last instant.
    pub start: String,
    /// RFC 3339: the first instant after the partition.
    pub end: String,
    /// Whether the run acts on it.
    pub expired: bool,
    /// The statements run for it, in order (none when it stays).
    pub statements: Vec<String>,
}

/// The plan of one CrateDB table at a cutoff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CratePlan {
    /// The table, `schema.table`.
    pub table: String,
    /// The time planned for, RFC 3339.
    pub cutoff: String,
    /// Rows older than this expire: the cutoff minus the policy's age.
    pub threshold: String,
    /// The query that lists the partitions a run acts on (bind: schema, table).
    pub discovery: String,
    /// Every partition of the table, oldest first, with what the run does to it.
    pub partitions: Vec<CratePartition>,
}

impl CratePlan {
    /// Every statement of the plan: the discovery query, then each partition's.
    pub fn statements(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.discovery.as_str()).chain(
            self.partitions
                .iter()
                .flat_map(|p| p.statements.iter().map(String::as_str)),
        )
    }
}

/// What a run at `cutoff` does to `layout`'s table: which partitions expire (on their
/// end, never the last `keep`) and the statements for each.
pub fn plan(layout: &CrateLayout, cutoff: DateTime<Utc>) -> CratePlan {
    let threshold = cutoff - chrono::Duration::seconds(layout.after_seconds);
    let gone = expired(&layout.partitions, layout.width, threshold, layout.keep);
    let (table, column) = (&layout.table, layout.column.as_str());
    let discovery = match &layout.action {
        CrateAction::Reallocate { attribute, value } => {
            partitions_to_reallocate_sql(column, attribute, value)
        }
        _ => partitions_sql(column),
    };
    let mut values = layout.partitions.clone();
    values.sort_unstable();
    values.dedup();
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let partitions = values
        .into_iter()
        .map(|value| {
            let start = DateTime::from_timestamp_millis(value);
            let expired = gone.contains(&value);
            let statements = match (&layout.action, expired) {
                (_, false) => Vec::new(),
                (CrateAction::Delete, true) => vec![delete_sql(table, column, value)],
                (
                    CrateAction::Reallocate {
                        attribute,
                        value: to,
                    },
                    true,
                ) => {
                    vec![reallocate_sql(table, column, value, attribute, to)]
                }
                (CrateAction::Snapshot { repository }, true) => vec![
                    snapshot_sql(table, column, value, repository),
                    delete_sql(table, column, value),
                ],
            };
            CratePartition {
                value,
                start: time(start),
                end: time(start.and_then(|s| layout.width.end_of(s))),
                expired,
                statements,
            }
        })
        .collect();
    CratePlan {
        table: table.to_string(),
        cutoff: cutoff.to_rfc3339(),
        threshold: threshold.to_rfc3339(),
        discovery,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ms(y: i32, m: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn statements_match_cratedb_toolkit_with_quoting() {
        let t = TableName::new("doc", "sensor_readings");
        assert_eq!(
            delete_sql(&t, "time_month", 1735689600000),
            "DELETE FROM \"doc\".\"sensor_readings\" WHERE \"time_month\" = 1735689600000"
        );
        assert_eq!(
            reallocate_sql(&t, "time_month", 1735689600000, "storage", "warm"),
            "ALTER TABLE \"doc\".\"sensor_readings\" PARTITION (\"time_month\" = 1735689600000) SET (\"routing.allocation.require.storage\" = 'warm')"
        );
        assert_eq!(
            snapshot_sql(&t, "time_month", 1735689600000, "export_cold"),
            "CREATE SNAPSHOT \"export_cold\".\"doc.sensor_readings-1735689600000\" TABLE \"doc\".\"sensor_readings\" PARTITION (\"time_month\" = 1735689600000) WITH (\"wait_for_completion\" = true)"
        );
        assert_eq!(
            partitions_sql("time_month"),
            "SELECT values['time_month'] FROM information_schema.table_partitions WHERE table_schema = ? AND table_name = ? ORDER BY 1"
        );
        assert_eq!(
            partitions_to_reallocate_sql("time_month", "storage", "warm"),
            "SELECT DISTINCT p.values['time_month'] FROM information_schema.table_partitions p \
             JOIN sys.shards s ON s.schema_name = p.table_schema AND s.table_name = p.table_name AND s.partition_ident = p.partition_ident \
             JOIN sys.nodes n ON n.id = s.node['id'] \
             WHERE p.table_schema = ? AND p.table_name = ? AND (n.attributes['storage'] IS NULL OR n.attributes['storage'] <> 'warm') ORDER BY 1"
        );
    }

    #[test]
    fn a_plan_lists_every_partition_and_the_statements_of_the_expired() {
        let layout = CrateLayout {
            table: TableName::new("doc", "t"),
            column: "m".into(),
            width: Width::Month,
            action: CrateAction::Snapshot {
                repository: "cold".into(),
            },
            after_seconds: 30 * 86_400,
            keep: 1,
            partitions: vec![ms(2025, 3), ms(2025, 1), ms(2025, 2), ms(2025, 1)],
        };
        let cutoff = Utc.with_ymd_and_hms(2025, 4, 15, 0, 0, 0).unwrap();
        let plan = plan(&layout, cutoff);
        assert_eq!(plan.threshold, "2025-03-16T00:00:00+00:00");
        let expired: Vec<(i64, bool)> = plan
            .partitions
            .iter()
            .map(|p| (p.value, p.expired))
            .collect();
        assert_eq!(
            expired,
            [
                (ms(2025, 1), true),
                (ms(2025, 2), true),
                (ms(2025, 3), false)
            ]
        );
        assert_eq!(plan.partitions[0].end, "2025-02-01T00:00:00+00:00");
        assert_eq!(plan.partitions[1].statements.len(), 2);
        assert!(plan.partitions[1].statements[0].starts_with("CREATE SNAPSHOT \"cold\""));
        assert!(plan.partitions[2].statements.is_empty());
        assert_eq!(plan.statements().count(), 5);
    }

    #[test]
    fn hostile_names_and_values_stay_names_and_values() {
        let t = TableName::new("d\"oc", "t'; DROP TABLE x; --");
        let sql = reallocate_sql(&t, "c\"", 1, "a\" = 1); DROP", "w'); DROP TABLE y; --");
        assert_eq!(
            sql,
            "ALTER TABLE \"d\"\"oc\".\"t'; DROP TABLE x; --\" PARTITION (\"c\"\"\" = 1) SET (\"routing.allocation.require.a\"\" = 1); DROP\" = 'w''); DROP TABLE y; --')"
        );
        assert!(partitions_sql("x'] OR 1=1 --").starts_with("SELECT values['x''] OR 1=1 --']"));
    }

    #[test]
    fn partitions_expire_on_their_end_not_their_start() {
        let values: Vec<i64> = (1..=12).map(|m| ms(2025, m)).collect();
        // Threshold 2025-03-15: January and February have ended; March has not.
        let threshold = Utc.with_ymd_and_hms(2025, 3, 15, 0, 0, 0).unwrap();
        assert_eq!(
            expired(&values, Width::Month, threshold, 1),
            vec![ms(2025, 1), ms(2025, 2)]
        );
        // cratedb-toolkit would also take March (its start is before the threshold).
        let threshold = Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap();
        assert_eq!(expired(&values, Width::Month, threshold, 1).len(), 3);
        // Never the last partition; `keep` raises the floor.
        let far = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(expired(&values, Width::Month, far, 1).len(), 11);
        assert_eq!(expired(&values, Width::Month, far, 5).len(), 7);
        assert_eq!(
            expired(&values, Width::Seconds(86_400), threshold, 1).len(),
            3
        );
        let days: Vec<i64> = (0..10).map(|d| ms(2025, 1) + d * 86_400_000).collect();
        assert_eq!(
            expired(
                &days,
                Width::Day,
                Utc.with_ymd_and_hms(2025, 1, 3, 12, 0, 0).unwrap(),
                1
            )
            .len(),
            2
        );
        assert_eq!(Width::parse("month"), Ok(Width::Month));
        assert_eq!(Width::parse("6h"), Ok(Width::Seconds(21_600)));
        assert!(Width::parse("fortnight").is_err());
    }
}
