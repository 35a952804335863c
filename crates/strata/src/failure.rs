//! Errors at the edge: one line with the cause chain, and a documented exit code.

use strata_api::config::ConfigError;
use strata_api::failure::CoordinatorError;
use strata_api::failure::RepoError;
use strata_api::failure::{advice, repo_advice, store_advice};
use strata_api::failure::{ApiError, ErrorCode};

/// Exit codes, documented in `docs/cli.md` and in `strata --help`: the one registry in
/// `strata-failure`.
pub use strata_api::failure::exit as code;

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// A failure with an explicit message and code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code,
        }
    }
}

pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    strata_api::failure::error_chain(err)
}

impl From<CoordinatorError> for Failure {
    fn from(err: CoordinatorError) -> Self {
        Failure::new(exit_code(err.code()), chain(&err) + advice(&err))
    }
}

impl From<RepoError> for Failure {
    fn from(err: RepoError) -> Self {
        let code = exit_code(err.code());
        Failure::new(code, chain(&err) + repo_advice(&err))
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Failure::new(code::USAGE, chain(&err))
    }
}

impl From<strata_api::failure::StoreError> for Failure {
    fn from(err: strata_api::failure::StoreError) -> Self {
        Failure::new(code::FAILED, chain(&err) + store_advice(&err))
    }
}

/// The exit code of a failure of kind `code` (see [`ErrorCode::exit_code`]): the same
/// whether it happened in this process or a server answered it.
pub fn exit_code(code: ErrorCode) -> u8 {
    code.exit_code()
}

impl From<ApiError> for Failure {
    fn from(err: ApiError) -> Self {
        let hint = match err.code {
            ErrorCode::Unauthorized if !err.message.contains("agent token") => {
                " (check $STRATA_TOKEN or --token-file)"
            }
            _ => "",
        };
        Failure::new(exit_code(err.code), format!("{}{hint}", err.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_api::failure::AgentError;

    /// A failure exits the same in process and through a server: the server answers
    /// `err.code()` as JSON, the client reads it back and maps it.
    #[test]
    fn every_failure_exits_the_same_in_process_and_through_a_server() {
        let errors = vec![
            CoordinatorError::Repo(RepoError::WrongPassword("k".into())),
            CoordinatorError::Repo(RepoError::PasswordRequired("k".into())),
            CoordinatorError::Repo(RepoError::NotARepository("r".into())),
            CoordinatorError::Repo(RepoError::NoSuchBackup("b".into())),
            CoordinatorError::Repo(RepoError::corrupted("summaries/b", "cut short")),
            CoordinatorError::Agent(AgentError::Repo(RepoError::corrupted("index/x", "bad"))),
            CoordinatorError::Damaged("backup b is damaged".into()),
            CoordinatorError::Password("the two entries differ".into()),
            CoordinatorError::Busy("held".into()),
            CoordinatorError::NoBackup("nosuch".into()),
            CoordinatorError::NoNode("db9".into()),
            CoordinatorError::Invalid("../db1".into()),
            CoordinatorError::NothingToDo("nothing".into()),
            CoordinatorError::Pinned("b".into()),
            CoordinatorError::LockLost("lost".into()),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for err in errors {
            let wire = serde_json::to_vec(&ApiError::new(err.code(), err.to_string())).unwrap();
            let answered: ApiError = serde_json::from_slice(&wire).unwrap();
            let label = format!("{err:?}");
            let local = Failure::from(err).code;
            let remote = Failure::from(CoordinatorError::Api(answered)).code;
            assert_eq!(local, remote, "{label}");
            seen.insert(local);
        }
        let all = [
            code::FAILED,
            code::USAGE,
            code::DAMAGED,
            code::PASSWORD,
            code::BUSY,
        ];
        assert_eq!(seen, all.into_iter().collect(), "every code is reached");
    }

    #[test]
    fn a_rate_limited_client_is_told_to_wait_not_that_its_token_is_bad() {
        let limited = ApiError::new(ErrorCode::TooManyRequests, "wait");
        assert_eq!(Failure::from(limited).code, code::BUSY);
        let refused = ApiError::new(ErrorCode::Unauthorized, "wrong token");
        assert_eq!(Failure::from(refused).code, code::UNAUTHORIZED);
    }
}
