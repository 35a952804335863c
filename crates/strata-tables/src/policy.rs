//! The policy model: what to do with a table's data once it is older than a duration.

use crate::duration::Retention;
use crate::name::{split_unquoted, unquote, TableName};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a policy does to expired data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableAction))]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Detach and drop expired partitions (batched DELETE for an unpartitioned table).
    Delete,
    /// Detach expired partitions and keep them as tables, optionally in an archive schema.
    Detach,
    /// Move expired partitions to another tablespace.
    Reallocate,
    /// Export expired partitions to a storage, verify, then drop them.
    Archive,
    /// Aggregate into a coarser table (see [`crate::rollup`]).
    Downsample,
}

/// Every action name, for messages.
pub const ACTION_NAMES: &str = "delete, detach, reallocate, archive, downsample";

impl Action {
    /// An action's name, or one of its other names (`drop`, `tablespace`, `snapshot`,
    /// `export`, `rollup`); `None` for another word.
    pub fn parse(text: &str) -> Option<Action> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "delete" | "drop" => Action::Delete,
            "detach" => Action::Detach,
            "reallocate" | "tablespace" => Action::Reallocate,
            "archive" | "snapshot" | "export" => Action::Archive,
            "downsample" | "rollup" => Action::Downsample,
            _ => return None,
        })
    }

    /// The action's name as stored and printed.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Detach => "detach",
            Action::Reallocate => "reallocate",
            Action::Archive => "archive",
            Action::Downsample => "downsample",
        }
    }

    /// Whether the data leaves the table: such an action is the last one a partition sees.
    pub fn removes(&self) -> bool {
        matches!(self, Action::Delete | Action::Detach | Action::Archive)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an `archive` policy stores a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableArchiveFormat))]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// `COPY ... (FORMAT csv, HEADER)` compressed with zstd: PostgreSQL's own text of every
    /// value, read back by any CSV tool after `zstd -d`.
    #[default]
    Csv,
    /// Typed columns in Parquet files (zstd pages), read directly by DuckDB, Spark, pandas
    /// and the like; see [`crate::archive`] for the type mapping.
    Parquet,
}

/// Every archive format name, for messages.
pub const FORMAT_NAMES: &str = "csv, parquet";

impl ArchiveFormat {
    /// `csv` or `parquet`; `None` for another word.
    pub fn parse(text: &str) -> Option<ArchiveFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(ArchiveFormat::Csv),
            "parquet" => Some(ArchiveFormat::Parquet),
            _ => None,
        }
    }

    /// The format's name as stored and printed.
    pub fn as_str(&self) -> &'static str {
        match self {
            ArchiveFormat::Csv => "csv",
            ArchiveFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a policy says, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TablePolicySpec))]
pub struct PolicySpec {
    /// The table the policy is about.
    pub table: TableName,
    /// The time column: the partition key of a partitioned table, the column DELETE
    /// compares for an unpartitioned one.
    pub column: String,
    /// What the policy does to expired data.
    pub action: Action,
    /// How long data is kept: partitions (rows) older than this expire; `INF` never.
    pub after: Retention,
    /// Free labels that select policies (`--tag`).
    pub tags: Vec<String>,
    /// `reallocate`: the target tablespace.
    pub tablespace: Option<String>,
    /// `detach`: the schema detached partitions move to (default: they stay where they are).
    pub archive_schema: Option<String>,
    /// `archive`: the storage of strata's configuration the partitions go to.
    pub target: Option<String>,
    /// `archive`: how the partitions are stored (policies from before formats existed are
    /// CSV).
    #[serde(default)]
    pub archive_format: ArchiveFormat,
    /// `downsample`: the rollup table and how to aggregate into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup: Option<crate::rollup::Rollup>,
    /// Never leave fewer than this many partitions (at least 1: the last partition of a
    /// table is never removed).
    pub keep: u32,
    /// A disabled policy is kept but not run.
    pub enabled: bool,
}

/// A policy as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TablePolicy))]
pub struct Policy {
    /// The policy's id in the policy table.
    pub id: i64,
    /// What the policy says.
    #[serde(flatten)]
    pub spec: PolicySpec,
    /// Who added the policy (the audit log's `who`).
    pub created_by: String,
    /// When the policy was added, RFC 3339 (UTC).
    pub created_at: String,
    /// `downsample`: the end (exclusive, RFC 3339) of what has been rolled up so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

/// A policy spec that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl PolicySpec {
    /// A spec with the defaults: no tags, keep 1, enabled.
    pub fn new(
        table: TableName,
        column: impl Into<String>,
        action: Action,
        after: Retention,
    ) -> Self {
        PolicySpec {
            table,
            column: column.into(),
            action,
            after,
            tags: Vec::new(),
            tablespace: None,
            archive_schema: None,
            target: None,
            archive_format: ArchiveFormat::Csv,
            rollup: None,
            keep: 1,
            enabled: true,
        }
    }

    /// Checks that the options fit the action.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.column.is_empty() {
            return Err(SpecError("the time column is empty".into()));
        }
        match self.action {
            Action::Reallocate if self.tablespace.as_deref().unwrap_or("").is_empty() => {
                return Err(SpecError(
                    "reallocate needs a tablespace (--tablespace NAME)".into(),
                ))
            }
            Action::Archive if self.target.as_deref().unwrap_or("").is_empty() => {
                return Err(SpecError(
                    "archive needs a storage of the configuration (--target NAME)".into(),
                ))
            }
            Action::Downsample => match &self.rollup {
                None => return Err(SpecError(
                    "downsample needs --into TABLE, --bucket DURATION and --aggregate FUNC:COLUMN"
                        .into(),
                )),
                Some(rollup) => {
                    rollup
                        .validate(&self.column)
                        .map_err(|e| SpecError(e.to_string()))?;
                    if rollup.into == self.table {
                        return Err(SpecError(
                            "downsample cannot write into its own table".into(),
                        ));
                    }
                }
            },
            _ => {}
        }
        if self.rollup.is_some() && self.action != Action::Downsample {
            return Err(SpecError(format!(
                "--into, --bucket and --aggregate are for downsample, not {}",
                self.action
            )));
        }
        if self.tablespace.is_some() && self.action != Action::Reallocate {
            return Err(SpecError(format!(
                "--tablespace is for reallocate, not {}",
                self.action
            )));
        }
        if self.target.is_some() && self.action != Action::Archive {
            return Err(SpecError(format!(
                "--target is for archive, not {}",
                self.action
            )));
        }
        if self.archive_format != ArchiveFormat::Csv && self.action != Action::Archive {
            return Err(SpecError(format!(
                "--format is for archive, not {}",
                self.action
            )));
        }
        if self.archive_schema.is_some() && self.action != Action::Detach {
            return Err(SpecError(format!(
                "--archive-schema is for detach, not {}",
                self.action
            )));
        }
        if self.keep == 0 {
            return Err(SpecError(
                "--keep must be at least 1 (the last partition is never removed)".into(),
            ));
        }
        if self.tags.iter().any(|t| t.trim().is_empty()) {
            return Err(SpecError("a tag is empty".into()));
        }
        Ok(())
    }

    /// The `ttl` shortcut: `S.T:C ACTION[:ARG] DURATION`, e.g. `metrics.raw:ts archive:cold
    /// 365d`. ARG is the tablespace of `reallocate`, the storage of `archive`, the archive
    /// schema of `detach`.
    pub fn from_ttl(
        table_and_column: &str,
        action: &str,
        duration: &str,
    ) -> Result<Self, SpecError> {
        let parts = split_unquoted(table_and_column, ':', 1).map_err(|why| {
            SpecError(format!("invalid TABLE:COLUMN {table_and_column:?}: {why}"))
        })?;
        let [table, column] = parts.as_slice() else {
            return Err(SpecError(format!(
                "invalid TABLE:COLUMN {table_and_column:?}: write SCHEMA.TABLE:COLUMN, e.g. metrics.raw:ts"
            )));
        };
        let table = TableName::parse(table).map_err(|e| SpecError(e.to_string()))?;
        let column = unquote(column)
            .map_err(|why| SpecError(format!("invalid column in {table_and_column:?}: {why}")))?;
        let (action_name, arg) = match action.split_once(':') {
            Some((name, arg)) => (name, Some(arg.to_string())),
            None => (action, None),
        };
        let action = Action::parse(action_name).ok_or_else(|| {
            SpecError(format!(
                "unknown action {action_name:?}: use one of {ACTION_NAMES}"
            ))
        })?;
        let after = Retention::parse(duration).map_err(|e| SpecError(e.to_string()))?;
        let mut spec = PolicySpec::new(table, column, action, after);
        match (action, arg) {
            (_, None) => {}
            (Action::Reallocate, Some(arg)) => spec.tablespace = Some(arg),
            (Action::Archive, Some(arg)) => spec.target = Some(arg),
            (Action::Detach, Some(arg)) => spec.archive_schema = Some(arg),
            (Action::Downsample, _) => {
                return Err(SpecError(
                    "downsample has more options than `ttl` takes: use `strata tables add --action downsample --into TABLE --bucket 1h --aggregate avg:COLUMN ...`".into(),
                ));
            }
            (other, Some(_)) => {
                return Err(SpecError(format!("{other} takes no :ARG")));
            }
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// Which policies a command works on: all given tags must match (or any, with `any`).
/// With the `cli` feature, the `--tag` and `--any-tag` flags (the doc comments are the
/// help).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TagFilter {
    /// Only policies with this tag (repeatable: all must match).
    #[cfg_attr(feature = "cli", arg(long = "tag", value_name = "TAG"))]
    pub tags: Vec<String>,
    /// With several --tag: policies with any of them.
    #[cfg_attr(feature = "cli", arg(long = "any-tag", requires = "tags"))]
    pub any: bool,
}

impl TagFilter {
    /// Whether a policy with `tags` is selected: every tag of the filter is among them
    /// (with `any`, one is); an empty filter selects every policy.
    pub fn matches(&self, tags: &[String]) -> bool {
        if self.tags.is_empty() {
            return true;
        }
        if self.any {
            self.tags.iter().any(|t| tags.contains(t))
        } else {
            self.tags.iter().all(|t| tags.contains(t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_shortcut_compiles_to_a_policy() {
        let spec = PolicySpec::from_ttl("metrics.raw:ts", "archive:cold", "365d").unwrap();
        assert_eq!(spec.table, TableName::new("metrics", "raw"));
        assert_eq!(spec.column, "ts");
        assert_eq!(spec.action, Action::Archive);
        assert_eq!(spec.target.as_deref(), Some("cold"));
        assert_eq!(spec.after, Retention::After(365 * 86_400));

        let spec = PolicySpec::from_ttl("\"a:b\".\"c\":\"t:s\"", "reallocate:slow", "30d").unwrap();
        assert_eq!(spec.table, TableName::new("a:b", "c"));
        assert_eq!(spec.column, "t:s");
        assert_eq!(spec.tablespace.as_deref(), Some("slow"));

        assert!(PolicySpec::from_ttl("metrics.raw", "delete", "1d").is_err());
        assert!(PolicySpec::from_ttl("metrics.raw:ts", "explode", "1d")
            .unwrap_err()
            .to_string()
            .contains("delete, detach"));
        assert!(PolicySpec::from_ttl("metrics.raw:ts", "archive", "1d").is_err());
        assert!(PolicySpec::from_ttl("metrics.raw:ts", "delete:x", "1d").is_err());
        assert!(PolicySpec::from_ttl("metrics.raw:ts", "delete", "1 day").is_err());
    }

    #[test]
    fn options_must_fit_the_action() {
        let base = PolicySpec::new(
            TableName::new("s", "t"),
            "ts",
            Action::Delete,
            Retention::After(60),
        );
        assert!(base.validate().is_ok());
        let mut spec = base.clone();
        spec.tablespace = Some("x".into());
        assert!(spec.validate().is_err());
        let mut spec = base.clone();
        spec.archive_format = ArchiveFormat::Parquet;
        assert!(spec
            .validate()
            .unwrap_err()
            .0
            .contains("--format is for archive"));
        spec.action = Action::Archive;
        spec.target = Some("cold".into());
        assert!(spec.validate().is_ok());
        let mut spec = base.clone();
        spec.keep = 0;
        assert!(spec.validate().is_err());
        let mut spec = base;
        spec.action = Action::Reallocate;
        assert!(spec.validate().is_err());
        spec.tablespace = Some("slow".into());
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn formats_parse_and_default_to_csv() {
        assert_eq!(
            ArchiveFormat::parse("Parquet"),
            Some(ArchiveFormat::Parquet)
        );
        assert_eq!(ArchiveFormat::parse(" csv "), Some(ArchiveFormat::Csv));
        assert_eq!(ArchiveFormat::parse("orc"), None);
        // A policy serialized before formats existed reads as CSV.
        let mut json = serde_json::to_value(PolicySpec::new(
            TableName::new("s", "t"),
            "ts",
            Action::Archive,
            Retention::After(60),
        ))
        .unwrap();
        json.as_object_mut().unwrap().remove("archive_format");
        let spec: PolicySpec = serde_json::from_value(json).unwrap();
        assert_eq!(spec.archive_format, ArchiveFormat::Csv);
    }

    #[test]
    fn tags_match_all_or_any() {
        let tags = vec!["a".to_string(), "b".to_string()];
        let all = |t: &[&str]| TagFilter {
            tags: t.iter().map(|s| s.to_string()).collect(),
            any: false,
        };
        assert!(all(&[]).matches(&tags));
        assert!(all(&["a", "b"]).matches(&tags));
        assert!(!all(&["a", "c"]).matches(&tags));
        let mut any = all(&["a", "c"]);
        any.any = true;
        assert!(any.matches(&tags));
        any.tags = vec!["c".into()];
        assert!(!any.matches(&tags));
    }
}
