//! The bodies and queries of `/api/v1/tables/...`: table retention policies listed,
//! planned, edited, and their history. Each one only carries words to the engine
//! (`strata-tables`), which reads and checks them exactly as it reads the options of
//! `strata tables`: the API and the command line refuse the same input with the same
//! message.
//!
//! An edit carries values, never SQL: the policy's table, column and options are quoted
//! identifiers and bound parameters in every statement the engine sends, and scheduled
//! SQL jobs (`[[tables.jobs]]`) exist only in the server's configuration.

use serde::{Deserialize, Serialize};
use strata_tables::command::TablesCommand;
use strata_tables::history::HistoryFilter;
use strata_tables::policy_args::{ActionArgs, PolicyArgs, PolicyEditArgs, RollupArgs};
use strata_tables::{PolicyFilter, TablesError, TablesResult, TagFilter};

/// `GET /api/v1/tables/policies` and `GET /api/v1/tables/plan`: which policies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TablePolicyQuery {
    /// Policies on this table (`schema.table`; a bare name is in `public`).
    #[param(max_length = 300)]
    pub table: Option<String>,
    /// This policy (its id).
    pub policy: Option<i64>,
    /// Policies with this tag.
    #[param(max_length = 256)]
    pub tag: Option<String>,
}

impl TablePolicyQuery {
    /// The engine's filter; a table name that does not parse is bad input.
    pub fn filter(&self) -> TablesResult<PolicyFilter> {
        PolicyFilter::from_words(self.table.as_deref(), self.policy, self.tag.as_deref())
    }
}

/// `GET /api/v1/tables/history`: the filters of `strata tables history`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TableHistoryQuery {
    /// Rows about this table (`schema.table`).
    #[param(max_length = 300)]
    pub table: Option<String>,
    /// Rows about this policy: its changes and the steps it made.
    pub policy: Option<i64>,
    /// Rows of runs with this tag, and of policies that have it.
    #[param(max_length = 256)]
    pub tag: Option<String>,
    /// At or after this time: `2026-01-01`, `2026-01-01T12:00:00Z`.
    #[param(max_length = 64)]
    pub since: Option<String>,
    /// Before this time.
    #[param(max_length = 64)]
    pub until: Option<String>,
    /// The newest rows, at most this many: 1 to 10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

impl TableHistoryQuery {
    /// The engine's filter, read as `strata tables history` reads its options.
    pub fn filter(&self) -> TablesResult<HistoryFilter> {
        TablesCommand::history_filter(
            self.table.clone(),
            self.policy,
            self.tag.clone(),
            self.since.clone(),
            self.until.clone(),
            self.limit.unwrap_or(100),
        )
    }
}

/// `PATCH /api/v1/tables/policies/{id}`: whether to save.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TableEditQuery {
    /// Answer with the edited policy and the plan it would make; save nothing.
    pub dry_run: Option<bool>,
}

/// A change to a table retention policy: what is absent stays, as with `strata tables
/// edit`. An empty `tablespace`, `target` or `archive_schema` clears it; `tags: []`
/// removes every tag; `group_by: []` means no grouping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TablePolicyEdit {
    /// The time column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub column: Option<String>,
    /// How long data is kept: `90d`, `1w`, `12h`, `1y`, `1d12h`, `INF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub after: Option<String>,
    /// Replaces the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub tags: Option<Vec<String>>,
    /// `reallocate`: the target tablespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub tablespace: Option<String>,
    /// `archive`: the storage of the server's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub target: Option<String>,
    /// `detach`: the schema detached partitions move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub archive_schema: Option<String>,
    /// `archive`: `csv` or `parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub format: Option<String>,
    /// Never leave fewer partitions than this (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Whether runs apply the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `downsample`: the rollup table (`schema.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub into: Option<String>,
    /// `downsample`: the bucket width (`1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub bucket: Option<String>,
    /// `downsample`: how far back each run recomputes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub lookback: Option<String>,
    /// `downsample`: replaces the aggregates (`avg:value`, `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub aggregates: Option<Vec<String>>,
    /// `downsample`: replaces the group-by columns (`[]`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub group_by: Option<Vec<String>>,
    /// `downsample`: forget how far the rollup got (needed to reshape a rollup that has
    /// rolled anything up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_watermark: bool,
}

impl TablePolicyEdit {
    /// The edit as `strata tables edit` gives it; the engine reads both the same way.
    pub fn into_args(self) -> PolicyEditArgs {
        let (tags, clear_tags) = match self.tags {
            Some(tags) if tags.is_empty() => (Vec::new(), true),
            Some(tags) => (tags, false),
            None => (Vec::new(), false),
        };
        let group_by = match self.group_by {
            // `--group-by ''`: no grouping.
            Some(columns) if columns.is_empty() => vec![String::new()],
            Some(columns) => columns,
            None => Vec::new(),
        };
        PolicyEditArgs {
            column: self.column,
            after: self.after,
            tags,
            clear_tags,
            options: ActionArgs {
                tablespace: self.tablespace,
                target: self.target,
                archive_schema: self.archive_schema,
                format: self.format,
                keep: self.keep,
            },
            rollup: RollupArgs {
                into: self.into,
                bucket: self.bucket,
                aggregate: self.aggregates.unwrap_or_default(),
                group_by,
                lookback: self.lookback,
            },
            reset_watermark: self.reset_watermark,
            enable: self.enabled == Some(true),
            disable: self.enabled == Some(false),
        }
    }

    /// The body of `strata tables edit`'s options, for `--server`.
    pub fn from_args(args: PolicyEditArgs) -> TablePolicyEdit {
        let tags = if args.clear_tags {
            Some(Vec::new())
        } else {
            (!args.tags.is_empty()).then_some(args.tags)
        };
        let group_by = (!args.rollup.group_by.is_empty()).then(|| {
            args.rollup
                .group_by
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .collect()
        });
        TablePolicyEdit {
            column: args.column,
            after: args.after,
            tags,
            tablespace: args.options.tablespace,
            target: args.options.target,
            archive_schema: args.options.archive_schema,
            format: args.options.format,
            keep: args.options.keep,
            enabled: match (args.enable, args.disable) {
                (true, _) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            },
            into: args.rollup.into,
            bucket: args.rollup.bucket,
            lookback: args.rollup.lookback,
            aggregates: (!args.rollup.aggregate.is_empty()).then_some(args.rollup.aggregate),
            group_by,
            reset_watermark: args.reset_watermark,
        }
    }
}

/// `POST /api/v1/tables/policies`: a new table retention policy, the options of `strata
/// tables add`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TablePolicyNew {
    /// The table: `schema.table` (a bare name is in `public`).
    #[schema(max_length = 256)]
    pub table: String,
    /// The time column (the partition key of a partitioned table).
    #[schema(max_length = 256)]
    pub column: String,
    /// `delete`, `detach`, `reallocate`, `archive` or `downsample`.
    #[schema(max_length = 256)]
    pub action: String,
    /// How long data is kept: `90d`, `1w`, `12h`, `1y`, `1d12h`, `INF`.
    #[schema(max_length = 256)]
    pub after: String,
    /// The policy's tags (a run picks policies by them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 64)]
    pub tags: Vec<String>,
    /// `reallocate`: the target tablespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub tablespace: Option<String>,
    /// `archive`: the storage of the server's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub target: Option<String>,
    /// `detach`: the schema detached partitions move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub archive_schema: Option<String>,
    /// `archive`: `csv` (the default) or `parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub format: Option<String>,
    /// Never leave fewer partitions than this (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// `downsample`: the rollup table (`schema.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub into: Option<String>,
    /// `downsample`: the bucket width (`1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub bucket: Option<String>,
    /// `downsample`: how far back each run recomputes (default: one bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub lookback: Option<String>,
    /// `downsample`: the aggregates (`avg:value`, `count`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 64)]
    pub aggregates: Vec<String>,
    /// `downsample`: the columns that identify a series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 64)]
    pub group_by: Vec<String>,
    /// Store the policy disabled (runs skip it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl TablePolicyNew {
    /// The policy as `strata tables add` gives it; the engine reads both the same way.
    pub fn into_args(self) -> PolicyArgs {
        PolicyArgs {
            table: self.table,
            column: self.column,
            action: self.action,
            after: self.after,
            tags: self.tags,
            options: ActionArgs {
                tablespace: self.tablespace,
                target: self.target,
                archive_schema: self.archive_schema,
                format: self.format,
                keep: self.keep,
            },
            rollup: RollupArgs {
                into: self.into,
                bucket: self.bucket,
                aggregate: self.aggregates,
                group_by: self.group_by,
                lookback: self.lookback,
            },
            disabled: self.disabled,
        }
    }

    /// The body of `strata tables add`'s options, for `--server`.
    pub fn from_args(args: PolicyArgs) -> TablePolicyNew {
        TablePolicyNew {
            table: args.table,
            column: args.column,
            action: args.action,
            after: args.after,
            tags: args.tags,
            tablespace: args.options.tablespace,
            target: args.options.target,
            archive_schema: args.options.archive_schema,
            format: args.options.format,
            keep: args.options.keep,
            into: args.rollup.into,
            bucket: args.rollup.bucket,
            lookback: args.rollup.lookback,
            aggregates: args.rollup.aggregate,
            group_by: args.rollup.group_by,
            disabled: args.disabled,
        }
    }
}

/// `POST /api/v1/tables/policies`: whether to save.
pub type TableAddQuery = TableEditQuery;

/// `POST /api/v1/tables/run`: which policies to apply, as `strata tables run` picks them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableRunBody {
    /// Policies with every one of these tags (none: every policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 64)]
    pub tags: Vec<String>,
    /// Policies with any one of `tags` instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_tag: bool,
    /// Run as if it were this time (default: now): `2026-01-01`, `2026-01-01T12:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub cutoff: Option<String>,
    /// Plan and record the run; change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl TableRunBody {
    /// The policies the run applies, read as `strata tables run` reads `--tag` and
    /// `--any-tag`.
    pub fn filter(&self) -> TablesResult<TagFilter> {
        strata_tables::policy_args::check_tags(&self.tags)?;
        if self.any_tag && self.tags.is_empty() {
            return Err(TablesError::Unsupported(
                "any_tag needs tags to pick from".into(),
            ));
        }
        Ok(TagFilter {
            tags: self.tags.clone(),
            any: self.any_tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_goes_to_the_engine_and_back_unchanged() {
        let edit = TablePolicyEdit {
            after: Some("30d".into()),
            tags: Some(Vec::new()),
            enabled: Some(false),
            group_by: Some(Vec::new()),
            tablespace: Some(String::new()),
            ..Default::default()
        };
        let args = edit.clone().into_args();
        assert!(args.clear_tags && args.disable && !args.enable);
        assert_eq!(args.rollup.group_by, vec![String::new()]);
        assert_eq!(TablePolicyEdit::from_args(args), edit);
        let read = args_of(r#"{"after": "7d", "keep": 2}"#).edit().unwrap();
        assert_eq!(read.keep, Some(2));
        assert!(read.tags.is_none() && read.enabled.is_none());
    }

    fn args_of(json: &str) -> PolicyEditArgs {
        serde_json::from_str::<TablePolicyEdit>(json)
            .unwrap()
            .into_args()
    }

    #[test]
    fn a_new_policy_goes_to_the_engine_and_back_unchanged() {
        let new: TablePolicyNew = serde_json::from_str(
            r#"{"table": "public.m", "column": "ts", "action": "downsample", "after": "30d",
                "into": "public.m_1h", "bucket": "1h", "aggregates": ["avg:v"], "group_by": ["host"],
                "tags": ["metrics"], "disabled": true}"#,
        )
        .unwrap();
        assert_eq!(TablePolicyNew::from_args(new.clone().into_args()), new);
        let spec = new.into_args().spec().unwrap();
        assert!(!spec.enabled && spec.rollup.is_some() && spec.tags == ["metrics"]);
        let err = serde_json::from_str::<TablePolicyNew>(r#"{"table": "t", "column": "ts"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `action`"), "{err}");
    }

    #[test]
    fn unknown_fields_and_sql_are_refused() {
        let err = serde_json::from_str::<TablePolicyEdit>(r#"{"sql": "DROP TABLE x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sql`"), "{err}");
    }
}
