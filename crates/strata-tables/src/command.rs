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
        // Boxed: the rollup options would make every command as large as this one.
        #[cfg_attr(feature = "cli", command(flatten))]
        policy: Box<PolicyArgs>,
    },
    /// List the policies.
    List {
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
    },
    /// Change a policy (an empty value clears --tablespace, --target or --archive-schema).
    /// A downsample policy's --into, --bucket, --group-by (`''`: none) and --aggregate
    /// (all of them, replaced) need --reset-watermark once it has rolled anything up.
    Edit {
        id: i64,
        // Boxed, as in `add`.
        #[cfg_attr(feature = "cli", command(flatten))]
        edit: Box<PolicyEditArgs>,
    },
    /// Remove a policy, or every policy with the given tags.
    Rm {
        #[cfg_attr(feature = "cli", arg(required_unless_present = "tags"))]
        id: Option<i64>,
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
    },
    /// What a run would do: the partitions each policy acts on, with their sizes.
    Plan {
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
        /// Plan as if it were this time (default: now): 2026-01-01, 2026-01-01T12:00:00Z.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
        cutoff: Option<String>,
    },
    /// Apply the policies. Exit 0 done (or nothing to do), 1 a step or table failed,
    /// 6 a table was skipped because another run held it.
    Run {
        #[cfg_attr(feature = "cli", command(flatten))]
        tags: TagFilter,
        #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
        cutoff: Option<String>,
        /// Plan and record the run, change nothing.
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
        #[cfg_attr(feature = "cli", arg(long, value_name = "STORAGE"))]
        from: Option<String>,
    },
}

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
            text.map(|t| crate::parse_cutoff(&t).map_err(crate::TablesError::Cutoff))
                .transpose()
        };
        let table = table.map(|t| crate::TableName::parse(&t)).transpose()?;
        if limit < 1 {
            return Err(crate::TablesError::Unsupported(
                "--limit must be at least 1".into(),
            ));
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

/// `strata load ARCHIVE --into SCHEMA.TABLE`: which archive goes where.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct LoadArgs {
    /// The archive: its key prefix in the storage (`tables/SCHEMA/TABLE/PARTITION`), as
    /// `tables run` and `tables archives` print it.
    pub archive: String,
    /// The table to load into (SCHEMA.TABLE); it must have the archived columns. Into a
    /// partitioned table, the archived partition is recreated when it is missing.
    #[cfg_attr(feature = "cli", arg(long, value_name = "TABLE"))]
    pub into: String,
    /// The storage of the configuration holding the archive (default: the default
    /// storage).
    #[cfg_attr(feature = "cli", arg(long, value_name = "STORAGE"))]
    pub from: Option<String>,
    /// Load even though the target already holds rows of the archived range (they are
    /// added to; loading an archive twice duplicates its rows).
    #[cfg_attr(feature = "cli", arg(long))]
    pub append: bool,
}
