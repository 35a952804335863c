//! The errors of the WAL commands: what failed, and what kind of failure it is (the exit
//! code and HTTP status: see `strata-failure`).

use strata_failure::ErrorCode;
use strata_repo::RepoError;

/// A WAL step that failed: the repository, or a refusal with its reason.
#[derive(Debug, thiserror::Error)]
pub enum WalFailure {
    /// The repository refused or failed (the storage, damage, the key).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The step cannot be done as things are; why, in one line.
    #[error("{0}")]
    Refused(String),
}

impl WalFailure {
    /// What kind of failure this is: the repository's own kind, a refusal a bad request.
    pub fn code(&self) -> ErrorCode {
        match self {
            WalFailure::Repo(err) => err.code(),
            WalFailure::Refused(_) => ErrorCode::BadRequest,
        }
    }
}

/// Result alias of the WAL steps that report a [`WalFailure`].
pub type WalResult<T> = Result<T, WalFailure>;

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
            (WalFailure::Refused("x".into()), ErrorCode::BadRequest),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }
}
