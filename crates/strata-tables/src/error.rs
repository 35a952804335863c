//! Errors of the retention engine, each one line an operator can act on.

use crate::name::TableName;

/// What went wrong, classified so the CLI can pick an exit code.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// Connecting to the database failed.
    #[error(transparent)]
    Connect(#[from] strata_pgclient::ConnectError),
    /// The connection string (`--db`, `[tables] db`) does not parse.
    #[error(transparent)]
    Dsn(#[from] strata_pgclient::DsnError),
    /// Neither the command line nor `[tables] db` names the database.
    #[error("no database: give --db DSN, set STRATA_TABLES_DB or [tables] db (postgresql://user@host/db)")]
    NoDatabase,
    /// A storage of strata's configuration that an archive goes to or comes from could not
    /// be opened (unknown name, bad location).
    #[error("storage {name:?}: {why}")]
    Storage {
        /// The storage's name in strata's configuration.
        name: String,
        /// Why it could not be opened.
        why: String,
    },
    /// A statement failed; `what` says which step.
    #[error("{what}: {message}")]
    Db {
        /// The step that ran the statement.
        what: String,
        /// What the server said.
        message: String,
    },
    /// The policy tables do not exist: `setup` has not run in this schema.
    #[error("the policy tables are missing in schema {schema:?} of this database: run `strata tables setup` first")]
    NotSetUp {
        /// The schema looked in.
        schema: String,
    },
    /// The policy tables lack a column this strata needs (they were set up by an older
    /// one): `setup` adds it.
    #[error("the policy tables in schema {schema:?} are older than this strata ({message}): run `strata tables setup` again to upgrade them")]
    NeedsUpgrade {
        /// The schema of the policy tables.
        schema: String,
        /// What is missing.
        message: String,
    },
    /// A policy's table is not in the database.
    #[error("table {0} does not exist")]
    UnknownTable(TableName),
    /// A policy's time column is not in its table.
    #[error("table {table} has no column {column:?}")]
    MissingColumn {
        /// The table.
        table: TableName,
        /// The column it lacks.
        column: String,
    },
    /// A request the engine cannot carry out as given (a second policy of an action, a
    /// table of a kind it cannot act on); the message says why.
    #[error("{0}")]
    Unsupported(String),
    /// A `--cutoff` that is not a time.
    #[error("{0}")]
    Cutoff(String),
    /// An id that names no policy.
    #[error("no policy with id {0}")]
    NoSuchPolicy(i64),
    /// A run of the table held its lock for the whole lock timeout: the change was not
    /// made, and can be made once the run is over.
    #[error("{0}")]
    Busy(String),
    /// A policy that makes no sense.
    #[error(transparent)]
    Spec(#[from] crate::policy::SpecError),
    /// A table name that cannot be read.
    #[error(transparent)]
    Name(#[from] crate::name::NameError),
    /// A duration that cannot be read.
    #[error(transparent)]
    Duration(#[from] crate::duration::DurationError),
    /// A partition bound that cannot be read with certainty: nothing is done to the table.
    #[error("table {table}, partition {partition}: {source}")]
    Bound {
        /// The partitioned table.
        table: TableName,
        /// The partition whose bound it is.
        partition: String,
        /// What is wrong with the bound.
        #[source]
        source: crate::bound::BoundError,
    },
    /// A request to the storage of an archive failed.
    #[error("{0}")]
    Store(#[from] strata_store::StoreError),
    /// A file that `strata load --file` cannot load.
    #[error(transparent)]
    LoadFile(#[from] crate::load_file_error::LoadFileError),
    /// An archive that does not check out: never drop after this.
    #[error("archive {key}: {why}")]
    Archive {
        /// The archive's key prefix.
        key: String,
        /// What does not check out.
        why: String,
    },
}

impl TablesError {
    /// True when the input (a name, an option, the database's state) is wrong rather than
    /// the operation failing: the CLI exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        if let TablesError::LoadFile(e) = self {
            return e.is_bad_input();
        }
        matches!(
            self,
            TablesError::Dsn(_)
                | TablesError::NoDatabase
                | TablesError::Storage { .. }
                | TablesError::NotSetUp { .. }
                | TablesError::NeedsUpgrade { .. }
                | TablesError::UnknownTable(_)
                | TablesError::MissingColumn { .. }
                | TablesError::Unsupported(_)
                | TablesError::NoSuchPolicy(_)
                | TablesError::Cutoff(_)
                | TablesError::Spec(_)
                | TablesError::Name(_)
                | TablesError::Duration(_)
                | TablesError::Bound { .. }
        )
    }

    /// A failed statement, with the server's message.
    pub fn db(what: impl Into<String>, err: &strata_pgclient::PgError) -> TablesError {
        TablesError::Db {
            what: what.into(),
            message: strata_pgclient::error_message(err),
        }
    }
}

pub(crate) use strata_util::error_chain;

/// Result alias of the engine.
pub type TablesResult<T> = Result<T, TablesError>;

/// SQLSTATEs the engine reacts to.
pub(crate) fn is_missing_relation(err: &strata_pgclient::PgError) -> bool {
    use strata_pgclient::tokio_postgres::error::SqlState;
    matches!(
        err.code(),
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME
    )
}

/// A lock not taken within `lock_timeout`.
pub(crate) fn is_lock_timeout(err: &strata_pgclient::PgError) -> bool {
    use strata_pgclient::tokio_postgres::error::SqlState;
    err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// An undefined column: policy tables older than this strata.
pub(crate) fn is_missing_column(err: &strata_pgclient::PgError) -> bool {
    use strata_pgclient::tokio_postgres::error::SqlState;
    err.code() == Some(&SqlState::UNDEFINED_COLUMN)
}
