//! A policy as a front end receives it: words, not yet checked. Read here, once, so
//! `tables add`, `tables edit`, `ttl` and any later front end parse options the same way
//! and refuse bad ones with the same one-line errors (every one
//! [`TablesError::is_bad_input`]). The first mistake is the one reported, in the order the
//! fields are listed.

use crate::catalog::{PolicyEdit, RollupEdit};
use crate::duration::Retention;
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use crate::policy::{Action, ArchiveFormat, PolicySpec, SpecError, ACTION_NAMES, FORMAT_NAMES};
use crate::rollup::{Aggregate, Rollup};

/// The options of an action, the same for add and edit (where an empty value clears one).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ActionArgs {
    /// reallocate: the target tablespace.
    #[cfg_attr(feature = "cli", arg(long))]
    pub tablespace: Option<String>,
    /// archive: the storage of the configuration.
    #[cfg_attr(feature = "cli", arg(long, value_name = "STORAGE"))]
    pub target: Option<String>,
    /// detach: move detached partitions to this schema.
    #[cfg_attr(feature = "cli", arg(long, value_name = "SCHEMA"))]
    pub archive_schema: Option<String>,
    /// archive: csv (zstd-compressed CSV, the default) or parquet (typed Parquet files).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FORMAT"))]
    pub format: Option<String>,
    /// Never leave fewer partitions than N (default 1: the last one stays).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep: Option<u32>,
}

/// How a downsample policy aggregates, as given: durations as text (`1h`), aggregates as
/// `FUNC:COLUMN[=INTO]`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct RollupArgs {
    /// downsample: the coarser table (SCHEMA.TABLE) with the time column, the --group-by
    /// columns, one column per aggregate, and a unique index on (time, group-by columns).
    #[cfg_attr(feature = "cli", arg(long, value_name = "TABLE"))]
    pub into: Option<String>,
    /// downsample: the bucket width (date_bin stride, aligned to the Unix epoch): 5m, 1h, 1d.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
    pub bucket: Option<String>,
    /// downsample: FUNC:COLUMN[=INTO] with FUNC avg, min, max, sum; or count[=INTO]
    /// (repeatable). INTO defaults to COLUMN_FUNC (count: `count`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "AGG"))]
    pub aggregate: Vec<String>,
    /// downsample: columns that identify a series, kept as they are (repeatable or a,b).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "COLUMN", value_delimiter = ',')
    )]
    pub group_by: Vec<String>,
    /// downsample: how far back each run recomputes for rows that arrive late (default:
    /// one bucket).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
    pub lookback: Option<String>,
}

/// A new policy (`tables add`).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct PolicyArgs {
    /// SCHEMA.TABLE (quote a part holding a dot: "my.schema".t).
    #[cfg_attr(feature = "cli", arg(long))]
    pub table: String,
    /// The time column (the partition key of a partitioned table).
    #[cfg_attr(feature = "cli", arg(long))]
    pub column: String,
    /// delete, detach, reallocate, archive, downsample.
    #[cfg_attr(feature = "cli", arg(long))]
    pub action: String,
    /// How long data is kept: 90d, 1w, 12h, 1y, 1d12h, INF.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
    pub after: String,
    /// Tag (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "tag", value_name = "TAG"))]
    pub tags: Vec<String>,
    /// The options of an action (tablespace, target, archive schema, format, keep).
    #[cfg_attr(feature = "cli", command(flatten))]
    pub options: ActionArgs,
    /// The options of `downsample`.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub rollup: RollupArgs,
    /// Store the policy disabled.
    #[cfg_attr(feature = "cli", arg(long))]
    pub disabled: bool,
}

/// A change to a policy (`tables edit`): what is absent stays. (A field without a doc
/// comment has no --help text.)
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct PolicyEditArgs {
    /// The new time column.
    #[cfg_attr(feature = "cli", arg(long))]
    pub column: Option<String>,
    /// How long data is kept: 90d, 1w, 12h, 1y, 1d12h, INF.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
    pub after: Option<String>,
    /// Replace the tags (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "tag", value_name = "TAG"))]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "tags"))]
    pub clear_tags: bool,
    /// The options of an action to change (an empty value clears one).
    #[cfg_attr(feature = "cli", command(flatten))]
    pub options: ActionArgs,
    /// The options of `downsample` to change.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub rollup: RollupArgs,
    /// downsample: forget how far the rollup got; the next run rolls up again from the
    /// first row still in the source table.
    #[cfg_attr(feature = "cli", arg(long))]
    pub reset_watermark: bool,
    /// Enable the policy: runs act on it again.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "disable"))]
    pub enable: bool,
    /// Disable the policy: it is kept, but runs leave it out.
    #[cfg_attr(feature = "cli", arg(long))]
    pub disable: bool,
}

/// The `ttl` shortcut: `SCHEMA.TABLE:COLUMN ACTION[:ARG] DURATION` and its options.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TtlArgs {
    /// SCHEMA.TABLE:COLUMN.
    pub table_column: String,
    /// delete, detach[:SCHEMA], reallocate:TABLESPACE or archive:STORAGE.
    pub action: String,
    /// How long data is kept: 90d, 1w, 12h, 1y, INF.
    pub after: String,
    /// Tag of the policy (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "tag", value_name = "TAG"))]
    pub tags: Vec<String>,
    /// The options of the action.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub options: TtlOptions,
}

/// The options of `ttl` beyond its three words and its tags.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TtlOptions {
    /// Never leave fewer partitions than N.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub keep: Option<u32>,
    /// archive: csv (zstd-compressed CSV, the default) or parquet (typed Parquet files).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FORMAT"))]
    pub format: Option<String>,
}

fn refuse(message: String) -> TablesError {
    TablesError::Spec(SpecError(message))
}

/// A `--format`.
fn archive_format(text: Option<String>) -> TablesResult<Option<ArchiveFormat>> {
    text.map(|text| {
        ArchiveFormat::parse(&text).ok_or_else(|| {
            refuse(format!(
                "unknown archive format {text:?}: use one of {FORMAT_NAMES}"
            ))
        })
    })
    .transpose()
}

/// A duration option of a rollup in seconds (`INF` refused: a bucket has a width).
fn rollup_seconds(what: &str, text: &Option<String>) -> TablesResult<Option<i64>> {
    match text {
        None => Ok(None),
        Some(text) => match Retention::parse(text)? {
            Retention::After(s) => Ok(Some(s)),
            Retention::Forever => Err(refuse(format!("--{what} cannot be INF"))),
        },
    }
}

fn aggregates(texts: &[String]) -> TablesResult<Vec<Aggregate>> {
    texts
        .iter()
        .map(|a| Aggregate::parse(a).map_err(|e| refuse(e.to_string())))
        .collect()
}

impl PolicyArgs {
    /// The policy these words describe; [`crate::Engine::add`] then checks it against
    /// its table.
    pub fn spec(self) -> TablesResult<PolicySpec> {
        self.check_bounds()?;
        let action = Action::parse(&self.action).ok_or_else(|| {
            refuse(format!(
                "unknown action {:?}: use one of {ACTION_NAMES}",
                self.action
            ))
        })?;
        let table = TableName::parse(&self.table)?;
        let after = Retention::parse(&self.after)?;
        let mut spec = PolicySpec::new(table, self.column, action, after);
        spec.tags = self.tags;
        spec.tablespace = self.options.tablespace;
        spec.target = self.options.target;
        spec.archive_schema = self.options.archive_schema;
        spec.archive_format = archive_format(self.options.format)?.unwrap_or_default();
        spec.keep = self.options.keep.unwrap_or(1);
        spec.enabled = !self.disabled;
        spec.rollup = self.rollup.rollup(action)?;
        Ok(spec)
    }
}

impl RollupArgs {
    fn given(&self) -> bool {
        self.into.is_some()
            || self.bucket.is_some()
            || !self.aggregate.is_empty()
            || !self.group_by.is_empty()
            || self.lookback.is_some()
    }

    /// The rollup of a new policy: when the action is downsample or an option is given (the
    /// policy's validation then says what does not fit). The lookback defaults to one
    /// bucket.
    fn rollup(self, action: Action) -> TablesResult<Option<Rollup>> {
        if action != Action::Downsample && !self.given() {
            return Ok(None);
        }
        let into = self.into.as_deref().ok_or_else(|| {
            refuse("downsample needs --into SCHEMA.TABLE (the rollup table)".into())
        })?;
        let into = TableName::parse(into)?;
        let bucket = rollup_seconds("bucket", &self.bucket)?
            .ok_or_else(|| refuse("downsample needs --bucket DURATION (e.g. 1h)".into()))?;
        let aggregates = aggregates(&self.aggregate)?;
        Ok(Some(Rollup {
            into,
            bucket_secs: bucket,
            lookback_secs: rollup_seconds("lookback", &self.lookback)?.unwrap_or(bucket),
            group_by: self.group_by,
            aggregates,
        }))
    }

    /// The rollup changes of an edit: only what is given. Blank `--group-by` entries are
    /// dropped, so `--group-by ''` means no grouping.
    fn edit(self) -> TablesResult<RollupEdit> {
        Ok(RollupEdit {
            into: self.into.as_deref().map(TableName::parse).transpose()?,
            bucket_secs: rollup_seconds("bucket", &self.bucket)?,
            lookback_secs: rollup_seconds("lookback", &self.lookback)?,
            group_by: (!self.group_by.is_empty()).then(|| {
                self.group_by
                    .into_iter()
                    .filter(|c| !c.trim().is_empty())
                    .collect()
            }),
            aggregates: if self.aggregate.is_empty() {
                None
            } else {
                Some(aggregates(&self.aggregate)?)
            },
        })
    }
}

/// The longest option value an edit takes: a name (PostgreSQL's are at most 63 bytes,
/// quoted schema-qualified ones a little more), a duration or an aggregate. Bounded so an
/// edit from the API, where the caller is any program, never stores a megabyte of text.
pub const MAX_VALUE_BYTES: usize = 256;
/// The most tags, group-by columns or aggregates an edit takes.
pub const MAX_LIST: usize = 64;

/// Refuses a value over [`MAX_VALUE_BYTES`] or holding control characters (a newline in
/// a tag or a tablespace name is never what was meant, and would break every listing).
fn check_value(what: &str, value: &str) -> TablesResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(refuse(format!(
            "{what} is {} bytes long: at most {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(refuse(format!("{what} {value:?} holds control characters")));
    }
    Ok(())
}

/// Refuses more than [`MAX_LIST`] tags or a tag out of bounds: the tags of a run's filter
/// from the API are as bounded as a policy's.
pub fn check_tags(tags: &[String]) -> TablesResult<()> {
    check_list("tags", tags)
}

fn check_list(what: &str, values: &[String]) -> TablesResult<()> {
    if values.len() > MAX_LIST {
        return Err(refuse(format!(
            "{} {what}: at most {MAX_LIST}",
            values.len()
        )));
    }
    values.iter().try_for_each(|v| check_value(what, v))
}

/// Each of `values` (by its option's name) within bounds, when given.
fn check_values(values: &[(&str, Option<&String>)]) -> TablesResult<()> {
    values
        .iter()
        .filter_map(|(what, value)| value.map(|v| (what, v)))
        .try_for_each(|(what, value)| check_value(what, value))
}

impl ActionArgs {
    fn check_bounds(&self) -> TablesResult<()> {
        check_values(&[
            ("--tablespace", self.tablespace.as_ref()),
            ("--target", self.target.as_ref()),
            ("--archive-schema", self.archive_schema.as_ref()),
            ("--format", self.format.as_ref()),
        ])
    }
}

impl RollupArgs {
    fn check_bounds(&self) -> TablesResult<()> {
        check_values(&[
            ("--into", self.into.as_ref()),
            ("--bucket", self.bucket.as_ref()),
            ("--lookback", self.lookback.as_ref()),
        ])?;
        check_list("--group-by columns", &self.group_by)?;
        check_list("aggregates", &self.aggregate)
    }
}

impl PolicyArgs {
    /// Every value within bounds (see [`MAX_VALUE_BYTES`], [`MAX_LIST`]): a new policy
    /// from the API is as bounded as an edit.
    fn check_bounds(&self) -> TablesResult<()> {
        check_values(&[
            ("--table", Some(&self.table)),
            ("--column", Some(&self.column)),
            ("--action", Some(&self.action)),
            ("--after", Some(&self.after)),
        ])?;
        check_list("tags", &self.tags)?;
        self.options.check_bounds()?;
        self.rollup.check_bounds()
    }
}

impl PolicyEditArgs {
    /// Every value within bounds (see [`MAX_VALUE_BYTES`], [`MAX_LIST`]).
    fn check_bounds(&self) -> TablesResult<()> {
        check_values(&[
            ("--column", self.column.as_ref()),
            ("--after", self.after.as_ref()),
        ])?;
        check_list("tags", &self.tags)?;
        self.options.check_bounds()?;
        self.rollup.check_bounds()
    }

    /// The edit these words describe; [`crate::Engine::edit`] applies and checks it.
    pub fn edit(self) -> TablesResult<PolicyEdit> {
        self.check_bounds()?;
        let rollup = self.rollup.edit()?;
        let after = self.after.as_deref().map(Retention::parse).transpose()?;
        let tags = if self.clear_tags {
            Some(Vec::new())
        } else {
            (!self.tags.is_empty()).then_some(self.tags)
        };
        let archive_format = archive_format(self.options.format)?;
        let enabled = match (self.enable, self.disable) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        };
        Ok(PolicyEdit {
            column: self.column,
            after,
            tags,
            tablespace: self.options.tablespace,
            archive_schema: self.options.archive_schema,
            target: self.options.target,
            archive_format,
            keep: self.options.keep,
            enabled,
            rollup,
            reset_watermark: self.reset_watermark,
        })
    }
}

impl TtlArgs {
    /// The policy of a `ttl` line (see [`PolicySpec::from_ttl`]), keeping one partition
    /// unless told otherwise.
    pub fn spec(self) -> TablesResult<PolicySpec> {
        let mut spec = PolicySpec::from_ttl(&self.table_column, &self.action, &self.after)?;
        spec.tags = self.tags;
        spec.keep = self.options.keep.unwrap_or(1);
        spec.archive_format = archive_format(self.options.format)?.unwrap_or_default();
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(action: &str, rollup: RollupArgs) -> PolicyArgs {
        PolicyArgs {
            table: "metrics.raw".into(),
            column: "ts".into(),
            action: action.into(),
            after: "90d".into(),
            rollup,
            ..Default::default()
        }
    }

    fn hourly() -> RollupArgs {
        RollupArgs {
            into: Some("metrics.hourly".into()),
            bucket: Some("1h".into()),
            aggregate: vec!["avg:value".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_new_policy_keeps_one_partition_and_is_enabled_unless_told() {
        let spec = add("delete", RollupArgs::default()).spec().unwrap();
        assert_eq!((spec.keep, spec.enabled, spec.rollup), (1, true, None));
        assert_eq!(spec.archive_format, ArchiveFormat::Csv);
        assert_eq!(spec.after, Retention::After(90 * 86_400));
    }

    #[test]
    fn a_downsample_lookback_defaults_to_one_bucket() {
        let rollup = add("downsample", hourly()).spec().unwrap().rollup.unwrap();
        assert_eq!((rollup.bucket_secs, rollup.lookback_secs), (3600, 3600));
        let mut longer = hourly();
        longer.lookback = Some("3h".into());
        let rollup = add("downsample", longer).spec().unwrap().rollup.unwrap();
        assert_eq!(rollup.lookback_secs, 3 * 3600);
    }

    #[test]
    fn bad_words_are_bad_input_naming_what_is_wrong() {
        let cases: Vec<(PolicyArgs, &str)> = vec![
            (
                add("shred", RollupArgs::default()),
                "unknown action \"shred\"",
            ),
            (
                PolicyArgs {
                    after: "soon".into(),
                    ..add("delete", RollupArgs::default())
                },
                "unparsable duration \"soon\"",
            ),
            (
                PolicyArgs {
                    options: ActionArgs {
                        format: Some("xls".into()),
                        ..Default::default()
                    },
                    ..add("archive", RollupArgs::default())
                },
                "unknown archive format \"xls\"",
            ),
            (
                add("downsample", RollupArgs::default()),
                "downsample needs --into",
            ),
            (
                add(
                    "downsample",
                    RollupArgs {
                        bucket: None,
                        ..hourly()
                    },
                ),
                "downsample needs --bucket",
            ),
            (
                add(
                    "downsample",
                    RollupArgs {
                        bucket: Some("INF".into()),
                        ..hourly()
                    },
                ),
                "--bucket cannot be INF",
            ),
            (
                add(
                    "downsample",
                    RollupArgs {
                        aggregate: vec!["median:value".into()],
                        ..hourly()
                    },
                ),
                "median",
            ),
        ];
        for (args, needle) in cases {
            let err = args.spec().unwrap_err();
            assert!(err.is_bad_input(), "{err}");
            assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
        }
    }

    #[test]
    fn a_rollup_option_on_another_action_is_read_so_validation_can_refuse_it() {
        // Not silently dropped: the spec carries it and `validate` names the mistake.
        let spec = add("delete", hourly()).spec().unwrap();
        assert!(spec.rollup.is_some());
        assert!(spec.validate().unwrap_err().0.contains("for downsample"));
    }

    #[test]
    fn an_edit_changes_only_what_is_given() {
        let edit = PolicyEditArgs::default().edit().unwrap();
        assert!(edit.column.is_none() && edit.after.is_none() && edit.tags.is_none());
        assert!(edit.enabled.is_none() && edit.archive_format.is_none());
        let edit = PolicyEditArgs {
            clear_tags: true,
            disable: true,
            rollup: RollupArgs {
                group_by: vec![String::new()],
                ..Default::default()
            },
            ..Default::default()
        }
        .edit()
        .unwrap();
        assert_eq!(edit.tags, Some(Vec::new()));
        assert_eq!(edit.enabled, Some(false));
        // `--group-by ''`: no grouping, not a column named "".
        assert_eq!(edit.rollup.group_by, Some(Vec::new()));
        assert!(edit.rollup.bucket_secs.is_none());
    }

    #[test]
    fn an_edit_refuses_values_out_of_bounds() {
        let long = PolicyEditArgs {
            options: ActionArgs {
                tablespace: Some("x".repeat(MAX_VALUE_BYTES + 1)),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(long.edit().unwrap_err().to_string().contains("at most 256"));
        let newline = PolicyEditArgs {
            tags: vec!["a\nb".into()],
            ..Default::default()
        };
        assert!(newline.edit().unwrap_err().is_bad_input());
        let many = PolicyEditArgs {
            tags: (0..=MAX_LIST).map(|i| i.to_string()).collect(),
            ..Default::default()
        };
        assert!(many.edit().unwrap_err().to_string().contains("65 tags"));
    }

    #[test]
    fn a_new_policy_refuses_values_out_of_bounds() {
        let policy = |edit: &dyn Fn(&mut PolicyArgs)| {
            let mut args = PolicyArgs {
                table: "metrics.raw".into(),
                column: "ts".into(),
                action: "delete".into(),
                after: "30d".into(),
                ..Default::default()
            };
            edit(&mut args);
            args.spec().map(|_| ()).unwrap_err().to_string()
        };
        let err = policy(&|a| a.column = "c".repeat(MAX_VALUE_BYTES + 1));
        assert!(err.contains("--column is 257 bytes long"), "{err}");
        let err = policy(&|a| a.tags = vec!["a\nb".into()]);
        assert!(err.contains("control characters"), "{err}");
        let err = policy(&|a| a.rollup.aggregate = vec!["count".into(); MAX_LIST + 1]);
        assert!(err.contains("65 aggregates"), "{err}");
        let err = policy(&|a| a.options.target = Some("t\0".into()));
        assert!(err.contains("--target"), "{err}");
    }

    #[test]
    fn ttl_takes_tags_keep_and_format() {
        let spec = TtlArgs {
            table_column: "metrics.raw:ts".into(),
            action: "archive:cold".into(),
            after: "1y".into(),
            tags: vec!["m".into()],
            options: TtlOptions {
                keep: Some(3),
                format: Some("parquet".into()),
            },
        }
        .spec()
        .unwrap();
        assert_eq!(spec.target.as_deref(), Some("cold"));
        assert_eq!(
            (spec.keep, spec.archive_format),
            (3, ArchiveFormat::Parquet)
        );
        assert_eq!(spec.tags, vec!["m".to_string()]);
    }
}
