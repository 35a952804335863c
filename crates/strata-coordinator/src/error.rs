use strata_agent::AgentError;
use strata_repo::RepoError;

/// Errors of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Agent(#[from] AgentError),
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
    Api(#[from] strata_agent::api::ApiError),
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
}

/// Result alias of the coordinator layer.
pub type CoordinatorResult<T> = Result<T, CoordinatorError>;

impl From<strata_store::StoreError> for CoordinatorError {
    fn from(err: strata_store::StoreError) -> Self {
        CoordinatorError::Repo(err.into())
    }
}
