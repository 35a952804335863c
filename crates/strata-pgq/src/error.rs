//! Errors of the PgQ library.

use strata_pg::ConnectError;

/// What went wrong talking to PgQ; every variant names the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PgqError {
    /// The database could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A statement failed on the server (the message is PostgreSQL's, on one line).
    #[error("{what}: {message}")]
    Sql {
        what: String,
        message: String,
        /// The driver's error, kept for callers that inspect SQLSTATE (not chained into
        /// the message: `message` already says it).
        cause: tokio_postgres::Error,
    },
    /// The database has no `pgq` schema: the extension is not installed there.
    #[error("database {0} has no pgq schema (CREATE EXTENSION pgq)")]
    NoPgq(String),
    /// The server ended the session.
    #[error("connection to database {0} lost")]
    Lost(String),
    /// A name or setting given by the user is not acceptable.
    #[error("{0}")]
    BadInput(String),
    /// An event payload did not parse as the trigger format it claims to be.
    #[error("event {ev_id}: cannot decode {format} payload: {reason}")]
    Decode {
        ev_id: i64,
        format: &'static str,
        reason: String,
    },
    /// A configuration file could not be read or parsed.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    /// A local I/O step (pidfile, log file, listener) failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl PgqError {
    /// Wraps a server error with what was being done.
    pub fn sql(what: impl Into<String>, source: tokio_postgres::Error) -> PgqError {
        PgqError::Sql {
            what: what.into(),
            message: strata_pg::error_message(&source),
            cause: source,
        }
    }

    /// Whether the caller's input (names, options, files) is at fault rather than the
    /// server: the CLI maps this to the usage exit code.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, PgqError::BadInput(_) | PgqError::Config { .. })
    }

    /// A local I/O error with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> PgqError {
        PgqError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = PgqError> = std::result::Result<T, E>;
