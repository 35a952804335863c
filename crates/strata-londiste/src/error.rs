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
        /// What was being done, e.g. `reading the table list`: the server's message alone
        /// rarely says which step of a command failed.
        what: String,
        /// PostgreSQL's message, on one line.
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
        /// What was being done, as for [`LondisteError::Sql`].
        what: String,
        /// The function's `ret_code`, kept for callers that tell refusals apart by it.
        code: i32,
        /// The function's `ret_note`: why it refused.
        note: String,
    },
    /// Names, options or files given by the user are not acceptable.
    #[error("{0}")]
    BadInput(String),
    /// The ini file could not be read or parsed.
    #[error("{path}: {reason}")]
    Config {
        /// The ini file, as given.
        path: String,
        /// What is wrong with it.
        #[source]
        reason: ConfigError,
    },
    /// A local file could not be written (`repair`'s fix files).
    #[error("{path}: {source}")]
    Io {
        /// The file, so the operator can look at its directory.
        path: String,
        /// Why the write failed (space, permissions).
        source: std::io::Error,
    },
    /// The node's replication state does not allow the step (lost position, a table in
    /// an unknown state): needs an operator.
    #[error("{0}")]
    State(String),
    /// A consumer's position on the provider and in the target disagree (two programs
    /// consumed under one name, or someone moved one side): a copy task recovers by
    /// copying its table again; the main worker needs an operator.
    #[error("{0}")]
    LostPosition(String),
    /// An error of one database, with the node and database it came from (see
    /// [`LondisteError::on`]): `applying the batch on node leaf (db host:5432/leaf as
    /// postgres): ...`. Never a password: the database is described by host, port, name
    /// and user only.
    #[error("{}", at_message(at, source))]
    At {
        /// The node and database, from [`describe_db`].
        at: String,
        /// The error itself, kept whole so callers can still match on its kind.
        source: Box<LondisteError>,
    },
    /// An event of a batch could not be applied (an unknown type, or SQL the target
    /// refused): the batch stops there, named, until it applies or the event is parked.
    #[error("event {event_id} of batch {batch_id} (tick {tick_id}, type {ev_type}{}) cannot be applied: {reason}",
        .table.as_deref().map(|t| format!(", table {t}")).unwrap_or_default())]
    Event {
        /// The event's `ev_id`: with the tick, what `park-event` needs.
        event_id: i64,
        /// The batch the event came in, retried as a whole until the event applies.
        batch_id: i64,
        /// The batch's end tick: with the event id, what a parked event is keyed by.
        tick_id: i64,
        /// The event's `ev_type`, which says how it was meant to be applied.
        ev_type: String,
        /// The table it changes, for row events: often the first thing to check.
        table: Option<String>,
        /// Why, naming the database (an [`LondisteError::At`] message).
        reason: String,
    },
}

/// Why an ini file was refused: each variant names the line, key or value at fault, so
/// an operator can fix the file from the message alone (it is printed after the file's
/// path, see [`LondisteError::Config`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// A `[` that does not close: ConfigParser refuses it too.
    #[error("line {line}: section header without ]")]
    UnclosedSection {
        /// The 1-based line number.
        line: usize,
    },
    /// A setting outside any section, which no reader could place.
    #[error("line {line}: setting before any [section]")]
    OutsideSection {
        /// The 1-based line number.
        line: usize,
    },
    /// A line that is neither a comment, a section, a continuation nor `key = value`.
    #[error("line {line}: expected key = value")]
    NotASetting {
        /// The 1-based line number.
        line: usize,
    },
    /// `= value` with nothing before it.
    #[error("line {line}: empty key")]
    EmptyKey {
        /// The 1-based line number.
        line: usize,
    },
    /// `%(key)s` references nested more than ten deep, most likely a loop.
    #[error("interpolation too deep in {value:?}")]
    InterpolationTooDeep {
        /// The value being expanded when the limit was hit.
        value: String,
    },
    /// A `%(` without its closing `)s`.
    #[error("bad interpolation in {value:?}")]
    BadInterpolation {
        /// The value as written.
        value: String,
    },
    /// `%(key)s` naming a key the section does not have.
    #[error("{value:?} refers to unknown key {key:?}")]
    UnknownKey {
        /// The value as written.
        value: String,
        /// The key it refers to, lowercased as keys are.
        key: String,
    },
    /// Neither `[londiste3]` nor `[londiste]` is in the file.
    #[error("no [londiste3] section")]
    NoSection,
    /// A key the node cannot run without (`db`, `queue_name`, `job_name`) is missing or empty.
    #[error("[{section}] needs {key} =")]
    Missing {
        /// The section read.
        section: String,
        /// The missing key.
        key: &'static str,
    },
    /// A duration or size that is not a non-negative number.
    #[error("{key} = {value:?}: expected a non-negative number")]
    NotANumber {
        /// The key.
        key: &'static str,
        /// Its value as written.
        value: String,
    },
    /// A count (copies, statements, bytes) that is zero, fractional or absurdly large.
    #[error("{key}: expected a whole number of at least 1")]
    NotACount {
        /// The key.
        key: &'static str,
    },
    /// A switch that is not one of ConfigParser's boolean words.
    #[error("{key} = {value:?}: expected true or false")]
    NotAFlag {
        /// The key.
        key: &'static str,
        /// Its value, lowercased.
        value: String,
    },
    /// A `log_level` the worker's log does not know.
    #[error("log_level = {value:?}: expected error, warning, info or debug")]
    LogLevel {
        /// The value as written.
        value: String,
    },
    /// A job or queue name pgq cannot hold.
    #[error("{0}")]
    BadName(#[source] strata_pgq::PgqError),
}

/// `what on AT: message` for errors with a step, `message (on AT)` for the others.
fn at_message(at: &str, source: &LondisteError) -> String {
    match source {
        LondisteError::Sql { what, message, .. } => format!("{what} on {at}: {message}"),
        LondisteError::Refused { what, code, note } => {
            format!("{what} on {at}: {note} (code {code})")
        }
        LondisteError::Pgq(PgqError::Sql { what, message, .. }) => {
            format!("{what} on {at}: {message}")
        }
        other => format!("{other} (on {at})"),
    }
}

/// How errors name a database: `node NAME (db DESCRIPTION)`, or `db DESCRIPTION` before the
/// node's name is known. `dsn` is a libpq connection string; only its host, port, database
/// and user are shown (never its password), and an unparsable one is not shown at all.
pub fn describe_db(node: Option<&str>, dsn: &str) -> String {
    let db = strata_pgclient::Dsn::parse(dsn)
        .map(|d| d.describe())
        .unwrap_or_else(|_| "with an unreadable connection string".into());
    match node {
        Some(node) => format!("node {node} (db {db})"),
        None => format!("db {db}"),
    }
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
            LondisteError::At { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }

    /// What kind of failure this is (exit code and HTTP status: see `strata-failure`).
    pub fn code(&self) -> strata_failure::ErrorCode {
        match self.is_bad_input() {
            true => strata_failure::ErrorCode::BadRequest,
            false => strata_failure::ErrorCode::Failed,
        }
    }

    /// Names the database an error of a statement came from (`at`, from
    /// [`describe_db`]); an error already named, or one that is not a database's
    /// (bad input, files, a parked event's description), is left as it is.
    pub fn on(self, at: &str) -> LondisteError {
        match self {
            LondisteError::Sql { .. }
            | LondisteError::Refused { .. }
            | LondisteError::Pgq(PgqError::Sql { .. } | PgqError::Timeout { .. })
            | LondisteError::State(_)
            | LondisteError::LostPosition(_) => LondisteError::At {
                at: at.to_string(),
                source: Box::new(self),
            },
            other => other,
        }
    }

    /// Whether a consumer lost its position (through [`LondisteError::At`] too).
    pub fn is_lost_position(&self) -> bool {
        match self {
            LondisteError::LostPosition(_) => true,
            LondisteError::At { source, .. } => source.is_lost_position(),
            _ => false,
        }
    }

    /// The server's error, when a statement failed (through [`LondisteError::At`] too).
    pub fn db_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            LondisteError::Sql { cause, .. } => Some(cause),
            LondisteError::Pgq(PgqError::Sql { cause, .. }) => Some(cause),
            LondisteError::At { source, .. } => source.db_error(),
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = LondisteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_error_says_the_node_and_database_and_never_the_password() {
        let at = describe_db(
            Some("leaf"),
            "host=db1 port=5433 dbname=leafdb user=repl password=hunter2",
        );
        assert_eq!(at, "node leaf (db db1:5433/leafdb as repl)");
        assert!(!describe_db(None, "password=hunter2 host=x").contains("hunter2"));
        let refused = LondisteError::Refused {
            what: "recording tick 7".into(),
            code: 404,
            note: "no consumer".into(),
        }
        .on(&at);
        assert_eq!(
            refused.to_string(),
            "recording tick 7 on node leaf (db db1:5433/leafdb as repl): no consumer (code 404)"
        );
        // Named once: a second `on` (the target's, around the provider's) keeps the first.
        assert_eq!(
            refused.on("db other").to_string().matches(" on ").count(),
            1
        );
        let state = LondisteError::State("lost position".into()).on("db x:1/y as z");
        assert_eq!(state.to_string(), "lost position (on db x:1/y as z)");
        let bad = LondisteError::BadInput("no such table".into()).on("db x");
        assert!(bad.is_bad_input() && bad.to_string() == "no such table");
    }
}
