//! Errors of the Londiste library: one variant per kind of cause, each naming the object it
//! concerns, so the CLI can print one line and pick an exit code.

use strata_pgclient::ConnectError;
use strata_pgq::PgqError;

/// What went wrong while administering or replaying a Londiste node.
#[derive(Debug, thiserror::Error)]
pub enum LondisteError {
    /// A database could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A statement failed on the server (the message is PostgreSQL's, on one line).
    #[error("{what}: {message}")]
    Sql {
        what: String,
        message: String,
        /// The driver's error, for callers that inspect SQLSTATE.
        cause: tokio_postgres::Error,
    },
    /// The PgQ layer failed (batches, events, consumers).
    #[error(transparent)]
    Pgq(#[from] PgqError),
    /// A pgq_node or londiste function refused (its `ret_code` was 300 or more).
    #[error("{what}: {note} (code {code})")]
    Refused {
        what: String,
        code: i32,
        note: String,
    },
    /// Names, options or files given by the user are not acceptable.
    #[error("{0}")]
    BadInput(String),
    /// The ini file could not be read or parsed.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    /// A local file could not be written (`repair`'s fix files).
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The node's replication state does not allow the step (lost position, a table in
    /// an unknown state): needs an operator.
    #[error("{0}")]
    State(String),
}

impl LondisteError {
    /// Wraps a server error with what was being done.
    pub fn sql(what: impl Into<String>, cause: tokio_postgres::Error) -> LondisteError {
        LondisteError::Sql {
            what: what.into(),
            message: strata_pgclient::error_message(&cause),
            cause,
        }
    }

    /// Whether the caller's input is at fault (the CLI exits with the usage code).
    pub fn is_bad_input(&self) -> bool {
        match self {
            LondisteError::BadInput(_) | LondisteError::Config { .. } => true,
            LondisteError::Pgq(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = LondisteError> = std::result::Result<T, E>;
