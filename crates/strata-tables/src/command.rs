//! The table retention commands as the `strata tables ...` line gives them: with the
//! `cli` feature these types (and the [`crate::policy_args`] they hold) are the command
//! line's definitions (clap derives, their doc comments the help), so each flag is declared
//! once, here, beside the code that reads it.

use crate::config::TablesConfig;
use crate::policy_args::{PolicyArgs, PolicyEditArgs};
use crate::{Engine, TablesResult, TagFilter};

/// The database of the table retention commands.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DbArgs {
    /// The database: `postgresql://user@host:5432/db` or `host=... dbname=...` (default:
    /// `[tables] db`); the password from the string, $PGPASSWORD or nothing (it is never
    /// printed).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            global = true,
            env = "STRATA_TABLES_DB",
            value_name = "DSN",
            hide_env_values = true
        )
    )]
    pub db: Option<String>,
    /// Schema of the policy, run and audit tables (default: `[tables] schema`, `strata`).
    #[cfg_attr(
        feature = "cli",
        arg(long, global = true, env = "STRATA_TABLES_SCHEMA")
    )]
    pub schema: Option<String>,
    /// Who to record in the audit log (default: the database user).
    #[cfg_attr(feature = "cli", arg(long, global = true, value_name = "NAME"))]
    pub who: Option<String>,
    /// Seconds a step waits for a table lock before it fails (the run then stops that
    /// table; the next run picks it up). Default: `[tables] lock_timeout_secs`, 30.
    #[cfg_attr(feature = "cli", arg(long, global = true, value_name = "SECS"))]
    pub lock_timeout: Option<u64>,
}

/// `strata tables ...`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum TablesCommand {
    /// Create the schema with the policy, run and audit tables (idempotent).
    Setup,
    /// Add a policy.
    Add {
        /// Show the policy and the plan it would make; save nothing.
        #[cfg_attr(feature = "cli", arg(long))]
        dry_run: bool,
        // Boxed: the rollup options would make every command as large as this one.
        /// The policy to add.
        #[cfg_attr(feature = "cli", command(flatten))]
        policy: Box<PolicyArgs>,
    },
    /// List the policies.
    List {
        /// Which policies to list.
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
    },
    /// Change a policy (an empty value clears --tablespace, --target or --archive-schema).
    /// A downsample policy's --into, --bucket, --group-by (`''`: none) and --aggregate
    /// (all of them, replaced) need --reset-watermark once it has rolled anything up.
    Edit {
        /// The id of the policy to change.
        id: i64,
        /// Show the edited policy and the plan it would make; save nothing.
        #[cfg_attr(feature = "cli", arg(long))]
        dry_run: bool,
        // Boxed, as in `add`.
        /// What to change.
        #[cfg_attr(feature = "cli", command(flatten))]
        edit: Box<PolicyEditArgs>,
    },
    /// Remove a policy, or every policy with the given tags.
    Rm {
        /// The id of the policy to remove.
        #[cfg_attr(feature = "cli", arg(required_unless_present = "tags"))]
        id: Option<i64>,
        /// Remove every policy these tags select, instead of one by id.
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
    },
    /// What a run would do: the partitions each policy acts on, with their sizes. With
    /// `--dialect cratedb`: the plan and the SQL for a CrateDB table laid out by the
    /// options below (no database is asked).
    Plan {
        /// Which policies to plan.
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
        /// Plan as if it were this time (default: now): 2026-01-01, 2026-01-01T12:00:00Z.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
        cutoff: Option<String>,
        /// With `--dialect cratedb`: the table's layout and policy.
        #[cfg_attr(feature = "cli", command(flatten))]
        crate_layout: CrateArgs,
    },
    /// Apply the policies. Exit 0 done (or nothing to do), 1 a step or table failed,
    /// 6 a table was skipped because another run held it.
    Run {
        /// Which policies to apply.
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
        /// Act as if it were this time (default: now): 2026-01-01, 2026-01-01T12:00:00Z.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
        cutoff: Option<String>,
        /// Plan and record the run, change nothing.
        #[cfg_attr(feature = "cli", arg(long))]
        dry_run: bool,
    },
    /// The `[[tables.jobs]]` of the configuration, or with NAME: run that job now
    /// (refresh its materialized view, or run its statement). Exit 0 done, 1 failed, 6
    /// another run held the job's lock.
    Sql {
        /// The job to run; without it, the jobs are listed.
        name: Option<String>,
        /// Record the run and print the statement; run nothing.
        #[cfg_attr(feature = "cli", arg(long))]
        dry_run: bool,
    },
    /// Runs, their steps and policy changes, newest first (the audit table).
    History {
        /// Only rows about this table (`schema.table`; a bare name is in `public`).
        #[cfg_attr(feature = "cli", arg(long, value_name = "TABLE"))]
        table: Option<String>,
        /// Only rows about this policy (its changes and its steps).
        #[cfg_attr(feature = "cli", arg(long, value_name = "ID"))]
        policy: Option<i64>,
        /// Only runs with this tag and rows of policies that have it.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TAG"))]
        tag: Option<String>,
        /// At or after this time: 2026-01-01, 2026-01-01T12:00:00Z.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
        since: Option<String>,
        /// Before this time.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
        until: Option<String>,
        /// The newest rows, at most this many.
        #[cfg_attr(feature = "cli", arg(long, default_value_t = 100))]
        limit: i64,
    },
    /// The archives in a storage (default: the default storage).
    Archives {
        /// The storage to list (default: the default storage).
        #[cfg_attr(feature = "cli", arg(long, value_name = "STORAGE"))]
        from: Option<String>,
    },
}

/// `tables plan --dialect cratedb`: a CrateDB table's layout and the policy to plan.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CrateArgs {
    /// `cratedb`: plan for a CrateDB table described by --layout, --width, --action,
    /// --after and --partition, printing every statement a run would send.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIALECT"))]
    pub dialect: Option<String>,
    /// The table and its partition column: `doc.metrics:ts_month`.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "TABLE:COLUMN", requires = "dialect")
    )]
    pub layout: Option<String>,
    /// How wide one partition is: day, week, month, year or a duration (6h).
    #[cfg_attr(feature = "cli", arg(long, value_name = "WIDTH", requires = "dialect"))]
    pub width: Option<String>,
    /// delete, reallocate:ATTRIBUTE=VALUE, or snapshot:REPOSITORY (then delete).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "ACTION", requires = "dialect")
    )]
    pub action: Option<String>,
    /// Partitions whose every row is older than this expire: 90d, 12w, 1y.
    #[cfg_attr(feature = "cli", arg(long, value_name = "AGE", requires = "dialect"))]
    pub after: Option<String>,
    /// A partition of the table: its value in epoch milliseconds or its start as a time
    /// (repeatable).
    #[cfg_attr(
        feature = "cli",
        arg(long = "partition", value_name = "VALUE", requires = "dialect")
    )]
    pub partitions: Vec<String>,
    /// At least this many partitions stay.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 1, value_name = "N", requires = "dialect")
    )]
    pub keep: usize,
}

impl CrateArgs {
    /// The layout these options describe, or `None` without `--dialect`; bad input is a
    /// usage error naming the option.
    pub fn layout(&self) -> crate::TablesResult<Option<crate::cratedb::CrateLayout>> {
        use crate::cratedb::{CrateAction, CrateLayout, Width};
        use crate::TablesError::Unsupported as Bad;
        let Some(dialect) = &self.dialect else {
            return Ok(None);
        };
        if dialect != "cratedb" {
            return Err(Bad(format!(
                "--dialect {dialect:?}: the dialect here is cratedb (PostgreSQL plans read the database: leave --dialect out)"
            )));
        }
        let need = |value: &Option<String>, flag: &str| {
            value
                .clone()
                .ok_or_else(|| Bad(format!("--dialect cratedb needs {flag}")))
        };
        let layout = need(&self.layout, "--layout TABLE:COLUMN")?;
        let (table, column) = layout
            .rsplit_once(':')
            .filter(|(t, c)| !t.is_empty() && !c.is_empty())
            .ok_or_else(|| Bad(format!("--layout {layout:?}: give TABLE:COLUMN")))?;
        let table = crate::TableName::parse_in(table, "doc")?;
        let width = Width::parse(&need(&self.width, "--width")?).map_err(|e| Bad(e.to_string()))?;
        let action_text = need(&self.action, "--action")?;
        let action = match action_text.split_once(':') {
            None if action_text == "delete" => CrateAction::Delete,
            Some(("reallocate", rule)) => match rule.split_once('=') {
                Some((attribute, value)) if !attribute.is_empty() && !value.is_empty() => {
                    CrateAction::Reallocate {
                        attribute: attribute.into(),
                        value: value.into(),
                    }
                }
                _ => return Err(Bad(format!("--action {action_text:?}: give reallocate:ATTRIBUTE=VALUE"))),
            },
            Some(("snapshot", repository)) if !repository.is_empty() => CrateAction::Snapshot {
                repository: repository.into(),
            },
            _ => {
                return Err(Bad(format!(
                    "--action {action_text:?}: delete, reallocate:ATTRIBUTE=VALUE or snapshot:REPOSITORY"
                )))
            }
        };
        let after = need(&self.after, "--after")?;
        let after_seconds = match crate::duration::Retention::parse(&after)? {
            crate::duration::Retention::After(seconds) => seconds,
            _ => return Err(Bad(format!("--after {after:?}: give an age such as 90d"))),
        };
        let partitions = self
            .partitions
            .iter()
            .map(|p| match p.parse::<i64>() {
                Ok(ms) => Ok(ms),
                Err(_) => crate::parse_cutoff(p)
                    .map(|t| t.timestamp_millis())
                    .map_err(|why| Bad(format!("--partition {p:?}: {why}"))),
            })
            .collect::<crate::TablesResult<Vec<i64>>>()?;
        Ok(Some(CrateLayout {
            table,
            column: column.to_string(),
            width,
            action,
            after_seconds,
            keep: self.keep,
            partitions,
        }))
    }
}

/// The most history rows one answer holds: a page, not the whole audit table at once.
pub const MAX_HISTORY: i64 = 10_000;

impl TablesCommand {
    /// The filter of `history`'s options; bad input is a usage error.
    pub fn history_filter(
        table: Option<String>,
        policy: Option<i64>,
        tag: Option<String>,
        since: Option<String>,
        until: Option<String>,
        limit: i64,
    ) -> crate::TablesResult<crate::history::HistoryFilter> {
        let time = |text: Option<String>| -> crate::TablesResult<_> {
            text.map(|t| crate::parse_cutoff(&t).map_err(crate::TablesError::from))
                .transpose()
        };
        let table = table.map(|t| crate::TableName::parse(&t)).transpose()?;
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(crate::TablesError::Unsupported(format!(
                "--limit must be 1 to {MAX_HISTORY}"
            )));
        }
        Ok(crate::history::HistoryFilter {
            table,
            policy,
            tag,
            since: time(since)?,
            until: time(until)?,
            limit,
        })
    }
}

impl DbArgs {
    /// The engine on `section` with `--db`, `--schema` and `--lock-timeout` applied,
    /// recording `--who`.
    pub async fn open(&self, section: &TablesConfig) -> TablesResult<Engine> {
        let config = section.overridden(self.db.clone(), self.schema.clone(), self.lock_timeout);
        Engine::open(&config, self.who.clone()).await
    }
}

/// `strata load ARCHIVE --into SCHEMA.TABLE`: which archive goes where; or with `--file`,
/// an external file (see [`LoadFileArgs`]).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct LoadArgs {
    /// The archive: its key prefix in the storage (`tables/SCHEMA/TABLE/PARTITION`), as
    /// `tables run` and `tables archives` print it. Not with --file.
    #[cfg_attr(
        feature = "cli",
        arg(required_unless_present = "file", conflicts_with = "file")
    )]
    pub archive: Option<String>,
    /// The table to load into (SCHEMA.TABLE). For an archive it must have the archived
    /// columns; into a partitioned table, the archived partition is recreated when it is
    /// missing.
    #[cfg_attr(feature = "cli", arg(long, value_name = "TABLE"))]
    pub into: String,
    /// The storage of the configuration holding the archive (default: the default
    /// storage), or with --file the storage the file is a key of.
    #[cfg_attr(feature = "cli", arg(long, value_name = "STORAGE"))]
    pub from: Option<String>,
    /// Load even though the target already holds rows of the archived range (they are
    /// added to; loading an archive twice duplicates its rows).
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "file"))]
    pub append: bool,
    /// With --file: the external file and how to read it.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub file: LoadFileArgs,
}

/// `strata load --file PATH|URL --into SCHEMA.TABLE`: an external file.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct LoadFileArgs {
    /// Load this file instead of an archive: a local path, an s3://, az:// or gs:// URL
    /// (in the configured storage whose URL it starts with, or from the environment), or
    /// with --from STORAGE a key in that storage.
    #[cfg_attr(feature = "cli", arg(long, value_name = "PATH|URL"))]
    pub file: Option<String>,
    /// csv, tsv, ndjson (also jsonl, json-lines) or parquet (default: from the
    /// extension).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FORMAT", requires = "file"))]
    pub format: Option<String>,
    /// The character between a CSV's fields (default `,`; a tab for tsv; `\t` for a tab).
    #[cfg_attr(feature = "cli", arg(long, value_name = "CHAR", requires = "file"))]
    pub delimiter: Option<String>,
    /// none, gzip or zstd (default: from the extension, `.gz` or `.zst`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "KIND", requires = "file"))]
    pub compression: Option<String>,
    /// Create the table, with the file's columns and types inferred from its values
    /// (bigint, double precision, boolean, timestamptz, text; Parquet's from its schema).
    #[cfg_attr(feature = "cli", arg(long, requires = "file"))]
    pub create: bool,
    /// The CSV has no header: its fields load into the table's first columns, in order.
    #[cfg_attr(feature = "cli", arg(long, requires = "file"))]
    pub no_header: bool,
    /// Skip this many data rows of the file first.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", default_value_t = 0, requires = "file")
    )]
    pub offset: u64,
    /// Read at most this many data rows (after --offset).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N", requires = "file"))]
    pub limit: Option<u64>,
    /// Only rows whose --time-column is at or after this time (2025-01-01,
    /// 2025-01-01T12:00:00Z).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "TIME", requires = "time_column")
    )]
    pub start: Option<String>,
    /// Only rows whose --time-column is before this time.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "TIME", requires = "time_column")
    )]
    pub stop: Option<String>,
    /// The column of the file --start and --stop apply to.
    #[cfg_attr(feature = "cli", arg(long, value_name = "COLUMN", requires = "file"))]
    pub time_column: Option<String>,
    /// Read and check the file, print the table's columns and the rows it would load;
    /// change nothing.
    #[cfg_attr(feature = "cli", arg(long, requires = "file"))]
    pub dry_run: bool,
    /// Progress on stderr even when it is not a terminal.
    #[cfg_attr(feature = "cli", arg(short, long, requires = "file"))]
    pub verbose: bool,
}

impl LoadFileArgs {
    /// The load these options ask for, of `source` into `into`; bad options are usage
    /// errors naming the option.
    pub fn request(
        &self,
        into: &str,
        source: crate::load_file::FileSource,
    ) -> TablesResult<crate::load_file::LoadFileRequest> {
        use crate::load_file::{FileFormat, FileShape, LoadFileError, TimeWindow, Window};
        let file = self.file.clone().unwrap_or_default();
        let shape = FileShape::of(
            &file,
            self.format.as_deref(),
            self.delimiter.as_deref(),
            self.compression.as_deref(),
        )?;
        let format = shape.format;
        if self.no_header && format != FileFormat::Csv {
            return Err(LoadFileError::Usage("--no-header is for CSV files".into()).into());
        }
        let time = |option: &str, text: &Option<String>| -> TablesResult<Option<i64>> {
            text.as_deref()
                .map(|t| {
                    crate::parse_cutoff(t)
                        .map(|t| t.timestamp_micros())
                        .map_err(|why| LoadFileError::Usage(format!("{option}: {why}")).into())
                })
                .transpose()
        };
        let (start, stop) = (time("--start", &self.start)?, time("--stop", &self.stop)?);
        if let (Some(start), Some(stop)) = (start, stop) {
            if start >= stop {
                return Err(LoadFileError::Usage("--start must be before --stop".into()).into());
            }
        }
        let time = match &self.time_column {
            Some(column) if start.is_some() || stop.is_some() => Some(TimeWindow {
                column: column.clone(),
                start,
                stop,
            }),
            Some(_) => {
                return Err(LoadFileError::Usage(
                    "--time-column needs --start, --stop or both".into(),
                )
                .into())
            }
            None => None,
        };
        Ok(crate::load_file::LoadFileRequest {
            source,
            file,
            format,
            delimiter: shape.delimiter,
            compression: shape.compression,
            into: crate::TableName::parse(into)?,
            create: self.create,
            header: !self.no_header,
            window: Window {
                offset: self.offset,
                limit: self.limit,
                time,
            },
            dry_run: self.dry_run,
        })
    }
}
