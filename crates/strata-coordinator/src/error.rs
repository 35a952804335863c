//! The coordinator's errors, and the one classification of failures.
//!
//! The rule for errors in strata:
//! - Between crates and across traits, errors are typed (`thiserror` enums, or
//!   `ApiError` with its [`ErrorCode`] where a node or server answers), so a caller can
//!   tell a wrong password from damage from a busy cluster.
//! - A `Result<_, String>` is allowed only for a local validator or parser whose caller
//!   wraps the text at once into a typed error (`ConfigError::Invalid`,
//!   [`CoordinatorError::Invalid`], an `ApiError` with its code): `input::check_include`,
//!   `schedule::check`, the recovery-target parsers. Each says so in a `// String:`
//!   comment on the line before.
//! - [`CoordinatorError::code`] classifies every failure once; the API's error codes and
//!   the command line's exit codes are both derived from it, so a command exits the same
//!   in process and through `strata server`.
//! - At the edge, one line: [`crate::error_chain`] (what failed: why: why).

use strata_agent::AgentError;
use strata_cluster::node_api::ErrorCode;
use strata_repo::RepoError;

/// Errors of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The repository refused or failed (a damaged object, the storage, the key).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A node's agent failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The configuration is wrong or points at something missing.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The requested backup does not exist or is ambiguous.
    #[error("{0}")]
    NoBackup(String),
    /// A node name that is not in the backup.
    #[error("{0}")]
    NoNode(String),
    /// Another operation holds the cluster.
    #[error("{0}")]
    Busy(String),
    /// A node or server refused or failed a request.
    #[error(transparent)]
    Api(#[from] strata_cluster::node_api::ApiError),
    /// The backup is pinned and cannot be deleted.
    #[error("backup {0} is pinned: `strata unpin {0}` first")]
    Pinned(String),
    /// Nothing to back up.
    #[error("{0}")]
    NothingToDo(String),
    /// The operation lost the cluster lock (fenced by another process, or stalled past
    /// its TTL) and stopped before making anything more visible.
    #[error("{0}")]
    LockLost(String),
    /// The object an operation needs is damaged (the message names it and the repair).
    #[error("{0}")]
    Damaged(String),
    /// A request with a field that is not what it claims to be (a node name, an include
    /// path, a recovery target): see [`crate::input`].
    #[error("{0}")]
    Invalid(String),
    /// The repository's password could not be had (the terminal could not be read, the
    /// two entries differ).
    #[error("{0}")]
    Password(String),
    /// An external system did not do what strata asked (delete a snapshot).
    #[error("{0}")]
    External(String),
    /// A PostgreSQL step on this host failed (a scratch server, a dump, a load).
    #[error(transparent)]
    Postgres(#[from] strata_postgres::PgError),
    /// A plugin refused or failed a step (see [`crate::plugin::PluginError`]).
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
}

impl CoordinatorError {
    /// What kind of failure this is: the one classification the API's error codes and
    /// the command line's exit codes are both derived from (a failure reached through
    /// `strata server` exits as it does in process).
    pub fn code(&self) -> ErrorCode {
        match self {
            CoordinatorError::Repo(e) | CoordinatorError::Agent(AgentError::Repo(e)) => e.code(),
            CoordinatorError::Agent(AgentError::UnsafeManifest(_)) => ErrorCode::Damaged,
            CoordinatorError::Agent(_) => ErrorCode::Failed,
            CoordinatorError::NoBackup(_) | CoordinatorError::NoNode(_) => ErrorCode::NotFound,
            CoordinatorError::Config(_)
            | CoordinatorError::NothingToDo(_)
            | CoordinatorError::Invalid(_)
            | CoordinatorError::Pinned(_) => ErrorCode::BadRequest,
            CoordinatorError::Password(_) => ErrorCode::Password,
            CoordinatorError::Damaged(_) => ErrorCode::Damaged,
            CoordinatorError::Busy(_) => ErrorCode::Busy,
            CoordinatorError::LockLost(_)
            | CoordinatorError::External(_)
            | CoordinatorError::Postgres(_) => ErrorCode::Failed,
            CoordinatorError::Api(e) => e.code,
            CoordinatorError::Plugin(e) => e.code(),
        }
    }
}

/// Result alias of the coordinator layer.
pub type CoordinatorResult<T> = Result<T, CoordinatorError>;

impl From<strata_store::StoreError> for CoordinatorError {
    fn from(err: strata_store::StoreError) -> Self {
        CoordinatorError::Repo(err.into())
    }
}

impl From<strata_gc::GcError> for CoordinatorError {
    fn from(err: strata_gc::GcError) -> Self {
        match err {
            strata_gc::GcError::Repo(e) => CoordinatorError::Repo(e),
            strata_gc::GcError::Lock(e) => e.into(),
            // Refused before anything was deleted: the request cannot be done as things are.
            strata_gc::GcError::NeedsRepair(why) => CoordinatorError::NothingToDo(why),
        }
    }
}

impl From<strata_wal::WalFailure> for CoordinatorError {
    fn from(err: strata_wal::WalFailure) -> Self {
        match err {
            strata_wal::WalFailure::Repo(e) => CoordinatorError::Repo(e),
            // Refused as things are: the request cannot be done (a bad request).
            strata_wal::WalFailure::LockLost(why) => CoordinatorError::LockLost(why),
            strata_wal::WalFailure::Refused(why) => CoordinatorError::NothingToDo(why),
        }
    }
}

/// What opening a repository for a WAL command failed with: the kind [`CoordinatorError::code`] says.
impl strata_wal::Coded for CoordinatorError {
    fn code(&self) -> ErrorCode {
        CoordinatorError::code(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::plugin::PluginError;
    use strata_cluster::node_api::ApiError;

    /// Every variant once, with the code the API answers and the command line exits by.
    #[test]
    fn every_variant_has_its_code() {
        let text = || "x".to_string();
        let cases: Vec<(CoordinatorError, ErrorCode)> = vec![
            (RepoError::NoSuchBackup(text()).into(), ErrorCode::NotFound),
            (RepoError::WrongPassword(text()).into(), ErrorCode::Password),
            (
                RepoError::NotARepository(text()).into(),
                ErrorCode::BadRequest,
            ),
            (RepoError::corrupted("x", "y").into(), ErrorCode::Damaged),
            (
                AgentError::Repo(RepoError::corrupted("x", "y")).into(),
                ErrorCode::Damaged,
            ),
            (
                AgentError::UnsafeManifest(strata_repo::manifest::UnsafePath::Empty).into(),
                ErrorCode::Damaged,
            ),
            (AgentError::Cancelled.into(), ErrorCode::Failed),
            (ConfigError::Invalid(text()).into(), ErrorCode::BadRequest),
            (CoordinatorError::NoBackup(text()), ErrorCode::NotFound),
            (CoordinatorError::NoNode(text()), ErrorCode::NotFound),
            (CoordinatorError::Busy(text()), ErrorCode::Busy),
            (
                ApiError::new(ErrorCode::LeaseLost, "x").into(),
                ErrorCode::LeaseLost,
            ),
            (CoordinatorError::Pinned(text()), ErrorCode::BadRequest),
            (CoordinatorError::NothingToDo(text()), ErrorCode::BadRequest),
            (CoordinatorError::LockLost(text()), ErrorCode::Failed),
            (CoordinatorError::Damaged(text()), ErrorCode::Damaged),
            (CoordinatorError::Invalid(text()), ErrorCode::BadRequest),
            (CoordinatorError::Password(text()), ErrorCode::Password),
            (CoordinatorError::External(text()), ErrorCode::Failed),
            (
                strata_postgres::PgError::Refused(text()).into(),
                ErrorCode::Failed,
            ),
            (PluginError::Settings(text()).into(), ErrorCode::BadRequest),
            (PluginError::Refused(text()).into(), ErrorCode::BadRequest),
            (PluginError::NotRecorded("x").into(), ErrorCode::BadRequest),
            (PluginError::NoMember(text()).into(), ErrorCode::NotFound),
            (PluginError::System(text()).into(), ErrorCode::Failed),
            (
                PluginError::PartsLeft(vec![text()]).into(),
                ErrorCode::Failed,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }

    /// A refusal of garbage collection keeps its kind: nothing was deleted, the request
    /// cannot be done as things are.
    #[test]
    fn a_refused_collection_is_a_bad_request() {
        let err: CoordinatorError =
            strata_gc::GcError::NeedsRepair("damaged summaries".into()).into();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert_eq!(err.to_string(), "damaged summaries");
    }

    /// A failure of a WAL step keeps its kind and its words in the coordinator's error.
    #[test]
    fn a_wal_failure_keeps_its_kind() {
        use strata_wal::WalFailure;
        let cases = [
            WalFailure::Repo(RepoError::WrongPassword("k".into())),
            WalFailure::Repo(RepoError::corrupted("archive/wal/x", "bad")),
            WalFailure::LockLost("the archive writer's mark was taken over".into()),
            WalFailure::Refused("cannot read the archive".into()),
        ];
        for err in cases {
            let (code, text) = (err.code(), err.to_string());
            let converted = CoordinatorError::from(err);
            assert_eq!(converted.code(), code, "{converted:?}");
            assert_eq!(converted.to_string(), text);
        }
    }
}
