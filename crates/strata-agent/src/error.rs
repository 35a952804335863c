use std::path::PathBuf;
use strata_repo::RepoError;

/// Errors that stop a node operation as a whole (per-file problems are reported, not
/// raised).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A configured root does not exist or cannot be read.
    #[error("root {path} cannot be read")]
    Root {
        /// The root.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// A root pattern that is not a valid glob.
    #[error("invalid root pattern {pattern:?}: {why}")]
    Pattern {
        /// The pattern as configured.
        pattern: String,
        /// What is wrong with it.
        why: String,
    },
    /// A manifest that would write outside the restore target.
    #[error("refusing to restore: {0}")]
    UnsafeManifest(strata_repo::manifest::UnsafePath),
    /// The restore target cannot be prepared.
    #[error("cannot prepare restore target {path}")]
    Target {
        /// The directory that could not be created or opened.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The restore target filesystem is full: the restore stopped, no partial file kept.
    #[error("restore target is full while writing {path} (free space and run the restore again: files already restored are kept)")]
    DiskFull {
        /// The file being written when space ran out.
        path: PathBuf,
    },
    /// The operation was cancelled (its lease was lost or the coordinator aborted it).
    #[error("cancelled: the coordinator's lease on this node ended")]
    Cancelled,
    /// The files cache could not be written.
    #[error("cannot write the files cache {path}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The temporary file of the manifest in the making failed.
    #[error("cannot keep the manifest of the backup in a temporary file")]
    Spool(#[source] std::io::Error),
}

/// Result alias of the agent layer.
pub type AgentResult<T> = Result<T, AgentError>;
