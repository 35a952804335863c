use std::path::PathBuf;
use strata_repo::RepoError;

/// Errors that stop a node operation as a whole (per-file problems are reported, not
/// raised).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A configured root does not exist or cannot be read.
    #[error("root {path} cannot be read")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A root pattern that is not a valid glob.
    #[error("invalid root pattern {pattern:?}: {why}")]
    Pattern { pattern: String, why: String },
    /// A manifest that would write outside the restore target.
    #[error("refusing to restore: {0}")]
    UnsafeManifest(String),
    /// The restore target cannot be prepared.
    #[error("cannot prepare restore target {path}")]
    Target {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The restore target filesystem is full: the restore stopped, no partial file kept.
    #[error("restore target is full while writing {path} (free space and run the restore again: files already restored are kept)")]
    DiskFull { path: PathBuf },
    /// The operation was cancelled (its lease was lost or the coordinator aborted it).
    #[error("cancelled: the coordinator's lease on this node ended")]
    Cancelled,
    /// The files cache could not be written.
    #[error("cannot write the files cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The temporary file of the manifest in the making failed.
    #[error("cannot keep the manifest of the backup in a temporary file")]
    Spool(#[source] std::io::Error),
}

/// Result alias of the agent layer.
pub type AgentResult<T> = Result<T, AgentError>;
