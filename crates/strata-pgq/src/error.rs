//! Errors of the PgQ library.

use strata_pgclient::ConnectError;

/// What went wrong talking to PgQ; every variant names the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PgqError {
    /// The database could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A statement failed on the server (the message is PostgreSQL's, on one line).
    #[error("{what}: {message}")]
    Sql {
        /// What was being done (`creating queue q`).
        what: String,
        /// PostgreSQL's message (with its detail).
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
    /// The server did not answer in time (a hung server, or a statement waiting on a
    /// lock past the session's limit): the session is given up.
    #[error("{what}: no answer within {secs} s")]
    Timeout {
        /// What was being done (`ticker round`).
        what: String,
        /// How long was waited.
        secs: u64,
    },
    /// A process started in the background (`--daemon`) failed before it was running.
    #[error("the background {what} exited at start ({status}): {message}")]
    ChildFailed {
        /// What was started (`ticker`).
        what: String,
        /// Its exit status.
        status: String,
        /// The child's exit code, when it exited (not killed by a signal).
        code: Option<i32>,
        /// Its last message, read from its logfile.
        message: String,
    },
    /// A cooperative subconsumer's batch was taken over by a sibling (it was silent for
    /// longer than the dead interval), so it can no longer be finished by this one.
    #[error(
        "batch {0} was taken over by another subconsumer (silent longer than the dead interval)"
    )]
    TakenOver(i64),
    /// A name or setting given by the user is not acceptable.
    #[error("{0}")]
    BadInput(String),
    /// An event payload did not parse as the trigger format it claims to be.
    #[error("event {ev_id}: cannot decode {format} payload: {reason}")]
    Decode {
        /// The event's id.
        ev_id: i64,
        /// `logutriga`, `sqltriga` or `jsontriga`.
        format: &'static str,
        /// What did not parse.
        reason: String,
    },
    /// A configuration file could not be read or parsed.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, with the line when known.
        reason: String,
    },
    /// A local I/O step (pidfile, log file, listener) failed.
    #[error("{what}")]
    Io {
        /// What was being done (`writing pidfile /run/x.pid`).
        what: String,
        /// The system's error (chained, see [`PgqError::full_message`]).
        #[source]
        source: std::io::Error,
    },
}

impl PgqError {
    /// Wraps a server error with what was being done.
    pub fn sql(what: impl Into<String>, source: tokio_postgres::Error) -> PgqError {
        PgqError::Sql {
            what: what.into(),
            message: strata_pgclient::error_message(&source),
            cause: source,
        }
    }

    /// Whether the caller's input (names, options, files) is at fault rather than the
    /// server: the CLI maps this to the usage exit code.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, PgqError::BadInput(_) | PgqError::Config { .. })
    }

    /// What kind of failure this is (exit code and HTTP status: see `strata-failure`):
    /// bad input, and a value the server could not take (SQLSTATE class 22, such as
    /// `ticker_max_lag=soon`), is a bad request; the rest failed.
    pub fn code(&self) -> strata_failure::ErrorCode {
        let bad_value = matches!(self, PgqError::Sql { cause, .. }
            if cause.code().is_some_and(|c| c.code().starts_with("22")));
        match self.is_bad_input() || bad_value {
            true => strata_failure::ErrorCode::BadRequest,
            false => strata_failure::ErrorCode::Failed,
        }
    }

    /// The message with its causes, `: `-separated, each once: what a log line or a
    /// health report shows (`to_string` alone drops the causes of wrapped errors).
    pub fn full_message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let part = cause.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = cause.source();
        }
        text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_message_names_every_cause_once() {
        let err = PgqError::io(
            "writing pidfile /run/x.pid",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied"),
        );
        assert_eq!(err.to_string(), "writing pidfile /run/x.pid");
        assert_eq!(
            err.full_message(),
            "writing pidfile /run/x.pid: permission denied"
        );
        let err = PgqError::BadInput("bad".into());
        assert_eq!(err.full_message(), "bad");
    }
}
