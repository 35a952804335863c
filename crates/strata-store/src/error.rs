use std::path::PathBuf;

/// Errors of a storage backend, classified so callers can react (retry, treat as absent).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key} not found in {store}")]
    NotFound { key: String, store: String },
    /// A conditional put found an existing object.
    #[error("object {key} already exists in {store}")]
    AlreadyExists { key: String, store: String },
    /// A requested byte range lies outside the object (a truncated object, usually).
    #[error("object {key} is {size} bytes, cannot read bytes {start}..{end}")]
    OutOfRange {
        key: String,
        size: u64,
        start: u64,
        end: u64,
    },
    /// A key that is not a clean relative path.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// A location string whose scheme no backend handles.
    #[error("unsupported storage location {0:?} (supported: a local path or file://PATH)")]
    UnsupportedLocation(String),
    /// An I/O error of the local filesystem.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the object is simply absent, which callers often handle as a normal case.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// Result alias of the store layer.
pub type StoreResult<T> = Result<T, StoreError>;
