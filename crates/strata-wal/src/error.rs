//! The errors of the WAL commands: what failed, and what kind of failure it is (the exit
//! code and HTTP status: see `strata-failure`).

use std::convert::Infallible;
use strata_failure::ErrorCode;
use strata_gc::lock::LockError;
use strata_postgres::PgError;
use strata_repo::RepoError;

/// A WAL step that failed: the repository, the writer's mark, or a refusal with its
/// reason.
#[derive(Debug, thiserror::Error)]
pub enum WalFailure {
    /// The repository refused or failed (the storage, damage, the key).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The archive writer's mark was lost (taken over, or stalled past its TTL): nothing
    /// more was made visible.
    #[error("{0}")]
    LockLost(String),
    /// The step cannot be done as things are; why, in one line.
    #[error("{0}")]
    Refused(String),
}

impl WalFailure {
    /// What kind of failure this is: the repository's own kind, a lost mark a failure, a
    /// refusal a bad request.
    pub fn code(&self) -> ErrorCode {
        match self {
            WalFailure::Repo(err) => err.code(),
            WalFailure::LockLost(_) => ErrorCode::Failed,
            WalFailure::Refused(_) => ErrorCode::BadRequest,
        }
    }
}

/// Result alias of the WAL steps that report a [`WalFailure`].
pub type WalResult<T> = Result<T, WalFailure>;

/// An error that says what kind of failure it is: what the opening of the repository a
/// WAL command is handed may fail with (the coordinator's error, a repository's).
pub trait Coded: std::error::Error {
    /// What kind of failure this is (exit code and HTTP status).
    fn code(&self) -> ErrorCode;
}

impl Coded for RepoError {
    fn code(&self) -> ErrorCode {
        RepoError::code(self)
    }
}

/// What a command that opens no repository (the archiver's client) fails with instead.
impl Coded for Infallible {
    fn code(&self) -> ErrorCode {
        match *self {}
    }
}

/// Errors of WAL commands, sorted by what PostgreSQL should make of them. `O` is what
/// opening the repository the command was handed fails with.
#[derive(Debug, thiserror::Error)]
pub enum WalError<O = Infallible> {
    /// The archive lacks the file: for `restore_command`, the normal end of the archive.
    #[error("{0} is not in the archive")]
    NotFound(String),
    /// Garbage collection runs: try again shortly (PostgreSQL does).
    #[error("{0}")]
    Busy(String),
    /// The repository could not be opened (configuration, password, storage).
    #[error(transparent)]
    Open(O),
    /// Storing the files failed (the storage, the lock, the repository).
    #[error(transparent)]
    Failed(#[from] WalFailure),
}

impl<O: Coded> WalError<O> {
    /// What kind of failure this is (exit code and HTTP status: see `strata-failure`).
    pub fn code(&self) -> ErrorCode {
        match self {
            WalError::NotFound(_) => ErrorCode::NotFound,
            WalError::Busy(_) => ErrorCode::Busy,
            // Opening the repository failed as that failure did (a password, damage).
            WalError::Open(err) => err.code(),
            WalError::Failed(_) => ErrorCode::Failed,
        }
    }
}

impl WalError {
    /// This failure of a step that opens no repository (the archiver's client), as one of
    /// a command whose repository opens with an `O`.
    pub fn with_open_error<O>(self) -> WalError<O> {
        match self {
            WalError::NotFound(name) => WalError::NotFound(name),
            WalError::Busy(why) => WalError::Busy(why),
            WalError::Open(never) => match never {},
            WalError::Failed(failure) => WalError::Failed(failure),
        }
    }
}

impl<O> From<PgError> for WalError<O> {
    fn from(err: PgError) -> Self {
        match err {
            PgError::WalMissing(name) => WalError::NotFound(name),
            other => WalError::Failed(WalFailure::Refused(strata_util::error_chain(&other))),
        }
    }
}

impl<O> From<LockError> for WalError<O> {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Busy(_) | LockError::Lapsing(_) | LockError::TooSlow { .. } => {
                WalError::Busy(format!(
                    "{err}; PostgreSQL retries the archive command, nothing is lost"
                ))
            }
            LockError::Lost(_) | LockError::Stopped(_) => {
                WalError::Failed(WalFailure::LockLost(err.to_string()))
            }
            LockError::Store(e) => WalError::Failed(WalFailure::Repo(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind once: what the API answers and the command line exits with.
    #[test]
    fn every_failure_has_its_code() {
        let cases = [
            (
                WalFailure::Repo(RepoError::WrongPassword("x".into())),
                ErrorCode::Password,
            ),
            (
                WalFailure::Repo(RepoError::corrupted("x", "y")),
                ErrorCode::Damaged,
            ),
            (WalFailure::LockLost("x".into()), ErrorCode::Failed),
            (WalFailure::Refused("x".into()), ErrorCode::BadRequest),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }

    /// Each kind once: what `strata wal-push` exits with comes from here.
    #[test]
    fn every_wal_failure_has_its_code() {
        let cases: [(WalError<RepoError>, ErrorCode); 5] = [
            (WalError::NotFound("x".into()), ErrorCode::NotFound),
            (WalError::Busy("x".into()), ErrorCode::Busy),
            (
                WalError::Open(RepoError::WrongPassword("x".into())),
                ErrorCode::Password,
            ),
            (
                WalError::Failed(WalFailure::Refused("x".into())),
                ErrorCode::Failed,
            ),
            (PgError::WalMissing("x".into()).into(), ErrorCode::NotFound),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }
}
