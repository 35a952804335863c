//! Errors at the edge: one line with the cause chain, and a documented exit code.

use strata_agent::api::{ApiError, ErrorCode};
use strata_agent::AgentError;
use strata_coordinator::config::ConfigError;
use strata_coordinator::CoordinatorError;
use strata_repo::RepoError;

/// Exit codes, documented in `docs/cli.md` and in `strata --help`.
pub mod code {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PARTIAL: u8 = 3;
    pub const DAMAGED: u8 = 4;
    pub const PASSWORD: u8 = 5;
    pub const BUSY: u8 = 6;
    pub const UNAUTHORIZED: u8 = 7;
}

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
    strata_coordinator::error_chain(err)
}

/// What to do, for errors where strata knows it.
fn hint(err: &RepoError) -> &'static str {
    match err {
        RepoError::Store(e) => store_hint(e),
        _ => "",
    }
}

fn store_hint(err: &strata_store::StoreError) -> &'static str {
    use strata_store::StoreError;
    match err {
        StoreError::GaveUp { .. } | StoreError::Transient { .. } => {
            " (check the storage's url or endpoint and the network)"
        }
        StoreError::PermissionDenied { .. } => {
            " (grant the credentials this operation on this prefix: the bucket policy, IAM role, SAS or service account)"
        }
        _ => "",
    }
}

fn repo_code(err: &RepoError) -> u8 {
    match err {
        RepoError::WrongPassword(_) | RepoError::PasswordRequired(_) => code::PASSWORD,
        RepoError::NotARepository(_)
        | RepoError::AlreadyInitialized(_)
        | RepoError::InitRaced { .. }
        | RepoError::NoSuchBackup(_)
        | RepoError::NeedsMigration(_)
        | RepoError::KeyRefused(_) => code::USAGE,
        _ => code::FAILED,
    }
}

impl From<CoordinatorError> for Failure {
    fn from(err: CoordinatorError) -> Self {
        let code = match &err {
            CoordinatorError::Repo(e) => repo_code(e),
            CoordinatorError::Agent(AgentError::Repo(e)) => repo_code(e),
            CoordinatorError::Agent(AgentError::UnsafeManifest(_)) => code::DAMAGED,
            CoordinatorError::Agent(_) => code::FAILED,
            CoordinatorError::Config(_)
            | CoordinatorError::NoBackup(_)
            | CoordinatorError::NoNode(_) => code::USAGE,
            CoordinatorError::NothingToDo(_) | CoordinatorError::Invalid(_) => code::USAGE,
            CoordinatorError::Password(_) => code::PASSWORD,
            CoordinatorError::Damaged(_) => code::DAMAGED,
            CoordinatorError::Busy(_) => code::BUSY,
            CoordinatorError::Pinned(_) => code::USAGE,
            CoordinatorError::LockLost(_) => code::FAILED,
            CoordinatorError::Api(e) => api_code(e),
        };
        let hint = match &err {
            CoordinatorError::Repo(e) | CoordinatorError::Agent(AgentError::Repo(e)) => hint(e),
            _ => "",
        };
        Failure::new(code, chain(&err) + hint)
    }
}

impl From<RepoError> for Failure {
    fn from(err: RepoError) -> Self {
        Failure::new(repo_code(&err), chain(&err) + hint(&err))
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Failure::new(code::USAGE, chain(&err))
    }
}

impl From<strata_store::StoreError> for Failure {
    fn from(err: strata_store::StoreError) -> Self {
        Failure::new(code::FAILED, chain(&err) + store_hint(&err))
    }
}

fn api_code(err: &ApiError) -> u8 {
    match err.code {
        ErrorCode::Busy => code::BUSY,
        ErrorCode::Unauthorized | ErrorCode::TooManyRequests => code::UNAUTHORIZED,
        ErrorCode::BadRequest
        | ErrorCode::NotFound
        | ErrorCode::MethodNotAllowed
        | ErrorCode::TooLarge
        | ErrorCode::Version => code::USAGE,
        _ => code::FAILED,
    }
}

impl From<ApiError> for Failure {
    fn from(err: ApiError) -> Self {
        let hint = match err.code {
            ErrorCode::Unauthorized if !err.message.contains("agent token") => {
                " (check $STRATA_TOKEN or --token-file)"
            }
            _ => "",
        };
        Failure::new(api_code(&err), format!("{}{hint}", err.message))
    }
}
