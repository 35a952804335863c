//! Writing WAL into the repository under an archive-writer mark (taken before the index
//! is read, renewed while the push runs, so garbage collection never deletes data a push
//! is storing), and the errors of WAL commands. Below both `wal-push` ([`crate::wal`]) and
//! the archiver ([`crate::wal_archiver`]), which both push through [`push_paths`].

use crate::config::Config;
use crate::lock::{mark_archive_writer_with_ttl, ArchiveMark, LockError};
use crate::{CoordinatorError, CoordinatorResult};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::api::ErrorCode;
use strata_postgres::wal::{self, Pushed, PushedFile};
use strata_postgres::PgError;
use strata_repo::Repository;
use strata_store::DynStore;

/// Errors of WAL commands, sorted by what PostgreSQL should make of them.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The archive lacks the file: for `restore_command`, the normal end of the archive.
    #[error("{0} is not in the archive")]
    NotFound(String),
    /// Garbage collection runs: try again shortly (PostgreSQL does).
    #[error("{0}")]
    Busy(String),
    /// The repository could not be opened (configuration, password, storage).
    #[error(transparent)]
    Open(CoordinatorError),
    /// Storing the files failed (the storage, the lock, the repository).
    #[error(transparent)]
    Failed(#[from] CoordinatorError),
}

impl WalError {
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

impl From<PgError> for WalError {
    fn from(err: PgError) -> Self {
        match err {
            PgError::WalMissing(name) => WalError::NotFound(name),
            other => WalError::Failed(CoordinatorError::NothingToDo(
                strata_agent::service::error_chain(&other),
            )),
        }
    }
}

impl From<LockError> for WalError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Busy(_) | LockError::Lapsing(_) | LockError::TooSlow { .. } => {
                WalError::Busy(format!(
                    "{err}; PostgreSQL retries the archive command, nothing is lost"
                ))
            }
            other => WalError::Failed(other.into()),
        }
    }
}

/// Announces a WAL push (see [`crate::lock::mark_archive_writer`]) for `ttl` at a time
/// (renewed while it runs): taken before the repository (and its index) is opened.
async fn mark_push(store: DynStore, ttl: Duration) -> Result<ArchiveMark, WalError> {
    // Only into a repository: a location that is not one (an unmounted or moved storage)
    // gets no mark written into it, and the push fails as it would have.
    Repository::read_config(&store)
        .await
        .map_err(CoordinatorError::from)?;
    Ok(mark_archive_writer_with_ttl(store, "wal-push", ttl).await?)
}

/// Archives `paths` (failing as a whole only when the first fails) into the repository
/// in `store`. The archive-writer mark comes first, then `ready`, which opens that
/// repository and reads its index (a one-shot `wal-push`) or brings an open one's index
/// up to date (the archiver): a garbage collection that ran before the mark was written
/// cannot have removed data the index read here still lists, and one that starts after
/// it waits for the mark or has its condemnations seen. The mark is renewed while the push
/// runs and released at the end, also when `ready` fails.
pub async fn push_paths(
    config: &Config,
    store: &DynStore,
    ready: impl Future<Output = CoordinatorResult<Arc<Repository>>>,
    paths: &[PathBuf],
) -> Result<Vec<Pushed>, WalError> {
    let files = push_paths_hashed(config, store, ready, paths).await?;
    Ok(files.into_iter().map(|f| f.pushed).collect())
}

/// [`push_paths`], with the hash of the bytes each outcome is about (see
/// [`wal::push_hashed`]).
pub async fn push_paths_hashed(
    config: &Config,
    store: &DynStore,
    ready: impl Future<Output = CoordinatorResult<Arc<Repository>>>,
    paths: &[PathBuf],
) -> Result<Vec<PushedFile>, WalError> {
    let ttl = Duration::from_secs(config.server.lease_ttl_secs);
    let mark = mark_push(store.clone(), ttl).await?;
    let repo = match ready.await {
        Ok(repo) => repo,
        Err(err) => {
            mark.release().await;
            return Err(WalError::Open(err));
        }
    };
    // The mark guards only writes through its own fence: one per process and location
    // (strata_store::Fence::of_location), so this holds by construction; checked, as a
    // push written outside its mark's guard could be acknowledged after gc removed it.
    let same_fence = match (store.fence(), repo.store().fence()) {
        (Some(marked), Some(written)) => marked.same_as(&written),
        (None, None) => true,
        _ => false,
    };
    if !same_fence {
        mark.release().await;
        return Err(WalError::Failed(CoordinatorError::NothingToDo(
            "the WAL push would write outside its archive writer's fence (a repository opened on another storage object); nothing was written".into(),
        )));
    }
    let outcome = wal::push_hashed(&repo, paths, config.backup.writer_options()).await;
    mark.release().await;
    Ok(outcome?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_repo::RepoError;

    /// Each kind once: what `strata wal-push` exits with comes from here.
    #[test]
    fn every_wal_failure_has_its_code() {
        let cases = [
            (WalError::NotFound("x".into()), ErrorCode::NotFound),
            (WalError::Busy("x".into()), ErrorCode::Busy),
            (
                WalError::Open(RepoError::WrongPassword("x".into()).into()),
                ErrorCode::Password,
            ),
            (
                WalError::Failed(CoordinatorError::NothingToDo("x".into())),
                ErrorCode::Failed,
            ),
            (PgError::WalMissing("x".into()).into(), ErrorCode::NotFound),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }
}
