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
        /// The server's SQLSTATE (`40P01`, `42501`, ...); `None` when the statement never
        /// got an answer (the connection broke).
        sqlstate: Option<String>,
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
    /// An archive's data that cannot be written or read back (compression, the Parquet
    /// writer or reader, the exported COPY stream): never drop after this.
    #[error("archive {key}: {fault}")]
    ArchiveData {
        /// The archive's key prefix.
        key: String,
        /// What went wrong with the data.
        #[source]
        fault: crate::codec::CodecError,
    },
    /// A `[[tables.jobs]]` entry that cannot run as written.
    #[error(transparent)]
    SqlJob(#[from] crate::sql_job_error::SqlJobError),
}

/// How a failure of the engine is classified: the one answer every front end turns into
/// its own terms (the CLI an exit code, the API an error code and HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is wrong (a name, an option, a policy, a configuration entry, the
    /// database's state such as policy tables not set up): exit 2, HTTP 400.
    BadInput,
    /// An id that names nothing: exit 2, HTTP 404.
    NotFound,
    /// Another run held what the request needs for the whole lock timeout: nothing was
    /// changed, and it can be tried again once that run is over. Exit 6, HTTP 409.
    Busy,
    /// The operation failed (the database unreachable or refusing, a storage, an
    /// archive): exit 1, HTTP 500.
    Failed,
}

impl ErrorKind {
    /// The kind's code in the one classification (`strata-failure`): its exit code and
    /// HTTP status, so a failure exits the same whether it happened here or a server
    /// answered it.
    pub fn code(self) -> strata_failure::ErrorCode {
        use strata_failure::ErrorCode;
        match self {
            ErrorKind::BadInput => ErrorCode::BadRequest,
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::Busy => ErrorCode::Busy,
            ErrorKind::Failed => ErrorCode::Failed,
        }
    }
}

impl TablesError {
    /// What kind of failure this is, in the one classification (see [`ErrorKind::code`]).
    pub fn code(&self) -> strata_failure::ErrorCode {
        self.kind().code()
    }

    /// What kind of failure this is: the classification the CLI's exit codes and the
    /// API's error codes both follow. Every variant is named, so a new one is classified
    /// where it is added.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind::{BadInput, Busy, Failed, NotFound};
        match self {
            TablesError::NoSuchPolicy(_) => NotFound,
            TablesError::Busy(_) => Busy,
            TablesError::LoadFile(e) if e.is_bad_input() => BadInput,
            TablesError::LoadFile(_) => Failed,
            TablesError::Dsn(_)
            | TablesError::NoDatabase
            | TablesError::Storage { .. }
            | TablesError::NotSetUp { .. }
            | TablesError::NeedsUpgrade { .. }
            | TablesError::UnknownTable(_)
            | TablesError::MissingColumn { .. }
            | TablesError::Unsupported(_)
            | TablesError::Cutoff(_)
            | TablesError::Spec(_)
            | TablesError::Name(_)
            | TablesError::Duration(_)
            | TablesError::Bound { .. }
            | TablesError::SqlJob(_) => BadInput,
            TablesError::Connect(_)
            | TablesError::Db { .. }
            | TablesError::Store(_)
            | TablesError::Archive { .. }
            | TablesError::ArchiveData { .. } => Failed,
        }
    }

    /// True when the input (a name, an option, the database's state) is wrong rather than
    /// the operation failing, an id that names nothing included: the CLI exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        matches!(self.kind(), ErrorKind::BadInput | ErrorKind::NotFound)
    }

    /// A failed statement, with the server's message and SQLSTATE.
    pub fn db(what: impl Into<String>, err: &strata_pgclient::PgError) -> TablesError {
        TablesError::Db {
            what: what.into(),
            message: strata_pgclient::error_message(err),
            sqlstate: err.code().map(|c| c.code().to_string()),
        }
    }

    /// The SQLSTATE of a statement the server refused.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            TablesError::Db { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_file_error::LoadFileError;

    /// Every variant once, with the kind the CLI and the API both follow. A variant added
    /// to [`TablesError`] fails to compile in [`TablesError::kind`] until it is classified;
    /// adding it here as well keeps this list whole.
    #[test]
    fn every_variant_is_classified_once() {
        use ErrorKind::{BadInput, Busy, Failed, NotFound};
        let table = || TableName::new("m", "raw");
        let cases: Vec<(TablesError, ErrorKind)> = vec![
            (
                strata_pgclient::ConnectError::Timeout {
                    at: "db:5432 as strata".into(),
                    secs: 5,
                }
                .into(),
                Failed,
            ),
            (
                strata_pgclient::DsnError::Invalid("no host".into()).into(),
                BadInput,
            ),
            (TablesError::NoDatabase, BadInput),
            (
                TablesError::Storage {
                    name: "s3".into(),
                    why: "unknown".into(),
                },
                BadInput,
            ),
            (
                TablesError::Db {
                    what: "listing partitions".into(),
                    message: "permission denied".into(),
                    sqlstate: Some("42501".into()),
                },
                Failed,
            ),
            (
                TablesError::NotSetUp {
                    schema: "strata".into(),
                },
                BadInput,
            ),
            (
                TablesError::NeedsUpgrade {
                    schema: "strata".into(),
                    message: "no column tags".into(),
                },
                BadInput,
            ),
            (TablesError::UnknownTable(table()), BadInput),
            (
                TablesError::MissingColumn {
                    table: table(),
                    column: "ts".into(),
                },
                BadInput,
            ),
            (TablesError::Unsupported("a view".into()), BadInput),
            (TablesError::Cutoff("tomorrow".into()), BadInput),
            (TablesError::NoSuchPolicy(7), NotFound),
            (TablesError::Busy("held".into()), Busy),
            (crate::policy::SpecError("keep 0".into()).into(), BadInput),
            (TableName::parse("a.b.c").unwrap_err().into(), BadInput),
            (
                crate::duration::Retention::parse("soon")
                    .unwrap_err()
                    .into(),
                BadInput,
            ),
            (
                TablesError::Bound {
                    table: table(),
                    partition: "raw_1".into(),
                    source: crate::bound::parse_bound("FOR VALUES IN (1)").unwrap_err(),
                },
                BadInput,
            ),
            (
                strata_store::StoreError::NotFound {
                    key: "k".into(),
                    store: "s".into(),
                }
                .into(),
                Failed,
            ),
            (
                LoadFileError::Usage("--no-header is for CSV".into()).into(),
                BadInput,
            ),
            (
                LoadFileError::Read {
                    file: "f.csv".into(),
                    why: "gone".into(),
                }
                .into(),
                Failed,
            ),
            (
                TablesError::Archive {
                    key: "a/b".into(),
                    why: "rows differ".into(),
                },
                Failed,
            ),
            (
                TablesError::ArchiveData {
                    key: "a/b".into(),
                    fault: crate::codec::CodecError::CutShort,
                },
                Failed,
            ),
            (crate::sql_job_error::SqlJobError::NoName.into(), BadInput),
        ];
        for (err, kind) in &cases {
            assert_eq!(err.kind(), *kind, "{err}");
            let usage = matches!(kind, BadInput | NotFound);
            assert_eq!(err.is_bad_input(), usage, "{err}");
        }
        // Every variant has a case (LoadFile two: its kind follows the file error's).
        let mut listed: Vec<usize> = cases.iter().map(|(e, _)| variant(e)).collect();
        listed.dedup();
        assert_eq!(listed, (0..VARIANTS).collect::<Vec<_>>());
    }

    const VARIANTS: usize = 22;

    /// The position of `err`'s variant in the list above: with no wildcard, a new variant
    /// does not compile until it is placed, and the test fails until it has a case.
    fn variant(err: &TablesError) -> usize {
        match err {
            TablesError::Connect(_) => 0,
            TablesError::Dsn(_) => 1,
            TablesError::NoDatabase => 2,
            TablesError::Storage { .. } => 3,
            TablesError::Db { .. } => 4,
            TablesError::NotSetUp { .. } => 5,
            TablesError::NeedsUpgrade { .. } => 6,
            TablesError::UnknownTable(_) => 7,
            TablesError::MissingColumn { .. } => 8,
            TablesError::Unsupported(_) => 9,
            TablesError::Cutoff(_) => 10,
            TablesError::NoSuchPolicy(_) => 11,
            TablesError::Busy(_) => 12,
            TablesError::Spec(_) => 13,
            TablesError::Name(_) => 14,
            TablesError::Duration(_) => 15,
            TablesError::Bound { .. } => 16,
            TablesError::Store(_) => 17,
            TablesError::LoadFile(_) => 18,
            TablesError::Archive { .. } => 19,
            TablesError::ArchiveData { .. } => 20,
            TablesError::SqlJob(_) => 21,
        }
    }

    #[test]
    fn a_refused_statement_keeps_its_sqlstate() {
        let err = TablesError::Db {
            what: "detaching".into(),
            message: "lock timeout".into(),
            sqlstate: Some("55P03".into()),
        };
        assert_eq!(err.sqlstate(), Some("55P03"));
        assert_eq!(err.to_string(), "detaching: lock timeout");
        assert_eq!(TablesError::NoDatabase.sqlstate(), None);
    }
}
