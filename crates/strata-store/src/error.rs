use std::path::PathBuf;

/// Errors of a storage backend, classified so callers can react (retry, treat as absent).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key} not found in {store}")]
    NotFound {
        /// The key that was asked for.
        key: String,
        /// The store, as [`Store::describe`](crate::Store::describe) names it.
        store: String,
    },
    /// A conditional put found an existing object.
    #[error("object {key} already exists in {store}")]
    AlreadyExists {
        /// The key that is taken.
        key: String,
        /// The store, as [`Store::describe`](crate::Store::describe) names it.
        store: String,
    },
    /// A requested byte range lies outside the object (a truncated object, usually).
    #[error("object {key} is {size} bytes, cannot read bytes {start}..{end}")]
    OutOfRange {
        /// The object read.
        key: String,
        /// Its actual size in bytes.
        size: u64,
        /// First byte asked for.
        start: u64,
        /// End of the range asked for (exclusive).
        end: u64,
    },
    /// A key that is not a clean relative path (see [`validate_key`](crate::validate_key));
    /// holds the key as given.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// A location string whose scheme no backend handles; holds the location as given.
    #[error(
        "unsupported storage location {0:?} (supported: a path, file://PATH, s3://, az://, gs://)"
    )]
    UnsupportedLocation(String),
    /// A failure worth retrying: a timeout, a dropped connection, a 5xx, a short read.
    #[error("{op} {key} on {store} failed (transient): {message}")]
    Transient {
        /// The request: `put`, `get`, `list` or `delete`.
        op: &'static str,
        /// The object (for a listing, its prefix).
        key: String,
        /// The store, as [`Store::describe`](crate::Store::describe) names it.
        store: String,
        /// What went wrong: the backend's words, or the timeout or short read seen here.
        message: String,
    },
    /// A failure that retrying will not fix: access denied, bad configuration, quota.
    #[error("{op} {key} on {store} failed: {message}")]
    Backend {
        /// The request: `put`, `get`, `list`, `delete`, or `open` when the store was
        /// being set up.
        op: &'static str,
        /// The object (for a listing, its prefix); empty for `open`.
        key: String,
        /// The store, as [`Store::describe`](crate::Store::describe) names it (the
        /// location itself for `open`).
        store: String,
        /// What the backend said, for the operator.
        message: String,
    },
    /// The credentials may not do this (HTTP 401/403, `AccessDenied`, ...): permanent,
    /// never retried.
    #[error(
        "permission denied: the credentials may not {op} under {store}/{prefix} ({op} {key}): {message}",
        prefix = key_prefix(key)
    )]
    PermissionDenied {
        /// The request: `put`, `get`, `list` or `delete`.
        op: &'static str,
        /// The object (for a listing, its prefix).
        key: String,
        /// The store, as [`Store::describe`](crate::Store::describe) names it.
        store: String,
        /// What the backend said, for the operator.
        message: String,
    },
    /// The bucket (S3, GCS) or container (Azure) of the location does not exist: no
    /// object can be read or written until it is created.
    #[error("the {kind} of {store} does not exist (create it, or check its name and region in the location): {message}")]
    NoBucket {
        /// "bucket" or "container".
        kind: &'static str,
        /// The store, as [`Store::describe`](crate::Store::describe) names it.
        store: String,
        /// What the backend said, for the operator.
        message: String,
    },
    /// An operation gave up after retries; the last error is the source.
    #[error(
        "the storage {store} did not answer: {op} {key} failed {attempts} times over {:.1} s of retries (see [retry] budget_secs)",
        elapsed.as_secs_f64()
    )]
    GaveUp {
        /// The request: `put`, `get`, `list` or `delete`.
        op: &'static str,
        /// The object (for a listing, its prefix).
        key: String,
        /// The store, as [`Store::describe`](crate::Store::describe) names it.
        store: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// From the first attempt until giving up.
        elapsed: std::time::Duration,
        /// The error of the last attempt (a transient one).
        #[source]
        last: Box<StoreError>,
    },
    /// A write that would make data visible, refused because this process may have lost
    /// the lock it writes under (see [`crate::Fence`]).
    #[error("refused to write {key}: {why}")]
    Fenced {
        /// The object that was not written (or deleted).
        key: String,
        /// Why the fence is closed: which lock was lost or not renewed in time.
        why: String,
    },
    /// An I/O error of the local filesystem.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`write`, `publish`, `create directory`, ...), which the
        /// message prints before the path.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error of the filesystem.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the object is simply absent, which callers often handle as a normal case.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// True when trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Transient { .. } => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// The part of a key that access rules usually name: its first directory (`data/` of
/// `data/ab/abcd`), or the key itself when it has none.
fn key_prefix(key: &str) -> &str {
    match key.find('/') {
        Some(i) => &key[..=i],
        None => key,
    }
}

/// Result alias of the store layer.
pub type StoreResult<T> = Result<T, StoreError>;
