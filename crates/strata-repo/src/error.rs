use strata_failure::ErrorCode;
use strata_store::StoreError;

/// Errors of the repository layer. Each says what failed; the edge adds what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The storage below failed (I/O, network, permissions, a missing object).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No `config` object: the location holds no strata repository (yet).
    #[error("no strata repository at {0} (run `strata init` first)")]
    NotARepository(String),
    /// `init` on a location that already holds a repository.
    #[error("a strata repository already exists at {0}")]
    AlreadyInitialized(String),
    /// `init` lost the race for the `config` object to another `init` of the same
    /// location: the repository is the other one's.
    #[error(
        "the repository at {location} was created by another `strata init` meanwhile; this init created nothing ({})",
        left_behind(key_file, *removed)
    )]
    InitRaced {
        /// The repository's location, for the message.
        location: String,
        /// The key file (`keys/<id>`) this init wrote before it lost the race.
        key_file: String,
        /// Whether that key file was removed again.
        removed: bool,
    },
    /// The password does not unwrap any key of the repository.
    #[error("wrong password for repository {0}")]
    WrongPassword(String),
    /// An encrypted repository was opened without a password.
    #[error("repository {0} is encrypted and no password was given (set STRATA_PASSWORD or password_file)")]
    PasswordRequired(String),
    /// The repository was written by a newer, incompatible strata.
    #[error("repository format version {found} is not supported by this strata (it reads version {supported}); upgrade strata")]
    UnsupportedVersion {
        /// The format version found, in the `config` or in an object's header.
        found: u32,
        /// The newest format version this build reads ([`crate::format::FORMAT_VERSION`]).
        supported: u32,
    },
    /// An object failed authentication, decoding or its hash check.
    #[error("{what} is corrupted: {why}")]
    Corrupted {
        /// The object or part that failed, for the message (a key, a blob id).
        what: String,
        /// What was wrong with it.
        why: String,
    },
    /// A blob's zstd frame names a compression dictionary the repository does not have.
    #[error(
        "blob {blob} is compressed with dictionary {}, which the repository does not have",
        crate::dictionary::dictionary_key(*id)
    )]
    MissingDictionary {
        /// The blob, for the message.
        blob: String,
        /// The dictionary's id.
        id: u32,
    },
    /// A blob referenced by a manifest is not in the index.
    #[error("blob {0} is not in the repository index")]
    MissingBlob(String),
    /// A background worker of the write pipeline stopped.
    #[error("write pipeline failed: {0}")]
    Pipeline(String),
    /// The config does not match its MAC under the repository's keys: it was edited.
    #[error("the config of repository {0} is not authentic (edited, or the keys were replaced); refusing to use it")]
    ConfigNotAuthentic(String),
    /// A repository of an older format version is read-only until migrated.
    #[error("repository {0} has an older format version, which this strata reads but does not write: run `strata migrate` (with its password) first")]
    NeedsMigration(String),
    /// A key management request that would lose access or names no key.
    #[error("{0}")]
    KeyRefused(String),
    /// A named backup does not exist.
    #[error("no backup named {0}")]
    NoSuchBackup(String),
}

/// What a lost init did with the key file it wrote.
fn left_behind(key_file: &str, removed: bool) -> String {
    if removed {
        format!("its key file {key_file} was removed again")
    } else {
        format!("its key file {key_file} could not be removed: remove it with `strata key remove`")
    }
}

impl RepoError {
    /// What kind of failure this is (exit code and HTTP status: see `strata-failure`).
    /// Every variant is named, so a new one is classified where it is added.
    pub fn code(&self) -> ErrorCode {
        match self {
            RepoError::WrongPassword(_) | RepoError::PasswordRequired(_) => ErrorCode::Password,
            RepoError::NoSuchBackup(_) => ErrorCode::NotFound,
            RepoError::NotARepository(_)
            | RepoError::AlreadyInitialized(_)
            | RepoError::InitRaced { .. }
            | RepoError::NeedsMigration(_)
            | RepoError::KeyRefused(_) => ErrorCode::BadRequest,
            RepoError::Corrupted { .. } | RepoError::MissingDictionary { .. } => ErrorCode::Damaged,
            RepoError::Store(_)
            | RepoError::UnsupportedVersion { .. }
            | RepoError::MissingBlob(_)
            | RepoError::Pipeline(_)
            | RepoError::ConfigNotAuthentic(_) => ErrorCode::Failed,
        }
    }

    /// Shorthand for a corruption error.
    pub fn corrupted(what: impl Into<String>, why: impl std::fmt::Display) -> Self {
        RepoError::Corrupted {
            what: what.into(),
            why: why.to_string(),
        }
    }
}

/// Result alias of the repository layer.
pub type RepoResult<T> = Result<T, RepoError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant once, as the API and the command line classify it.
    #[test]
    fn every_repository_failure_has_its_code() {
        let s = || "x".to_string();
        let cases = [
            (
                RepoError::Store(StoreError::NotFound {
                    key: "k".into(),
                    store: "s".into(),
                }),
                ErrorCode::Failed,
            ),
            (RepoError::NotARepository(s()), ErrorCode::BadRequest),
            (RepoError::AlreadyInitialized(s()), ErrorCode::BadRequest),
            (RepoError::WrongPassword(s()), ErrorCode::Password),
            (RepoError::PasswordRequired(s()), ErrorCode::Password),
            (RepoError::corrupted("a", "b"), ErrorCode::Damaged),
            (
                RepoError::MissingDictionary { blob: s(), id: 1 },
                ErrorCode::Damaged,
            ),
            (RepoError::MissingBlob(s()), ErrorCode::Failed),
            (RepoError::Pipeline(s()), ErrorCode::Failed),
            (RepoError::ConfigNotAuthentic(s()), ErrorCode::Failed),
            (RepoError::NeedsMigration(s()), ErrorCode::BadRequest),
            (RepoError::KeyRefused(s()), ErrorCode::BadRequest),
            (RepoError::NoSuchBackup(s()), ErrorCode::NotFound),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }
}
