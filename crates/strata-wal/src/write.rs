//! Writing WAL into the repository under an archive-writer mark (taken before the index
//! is read, renewed while the push runs, so garbage collection never deletes data a push
//! is storing). Below both `wal-push` and the archiver, which both push through
//! [`push_paths`].

use crate::error::{WalError, WalFailure};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_cluster::config::Config;
use strata_gc::lock::{mark_archive_writer_with_ttl, ArchiveMark};
use strata_postgres::wal::{self, Pushed, PushedFile};
use strata_repo::Repository;
use strata_store::DynStore;

/// Announces a WAL push (see [`strata_gc::lock::mark_archive_writer`]) for `ttl` at a
/// time (renewed while it runs): taken before the repository (and its index) is opened.
async fn mark_push<O>(store: DynStore, ttl: Duration) -> Result<ArchiveMark, WalError<O>> {
    // Only into a repository: a location that is not one (an unmounted or moved storage)
    // gets no mark written into it, and the push fails as it would have.
    Repository::read_config(&store)
        .await
        .map_err(WalFailure::from)?;
    Ok(mark_archive_writer_with_ttl(store, "wal-push", ttl).await?)
}

/// Archives `paths` (failing as a whole only when the first fails) into the repository
/// in `store`. The archive-writer mark comes first, then `ready`, which opens that
/// repository and reads its index (a one-shot `wal-push`) or brings an open one's index
/// up to date (the archiver): a garbage collection that ran before the mark was written
/// cannot have removed data the index read here still lists, and one that starts after
/// it waits for the mark or has its condemnations seen. The mark is renewed while the push
/// runs and released at the end, also when `ready` fails.
pub async fn push_paths<O>(
    config: &Config,
    store: &DynStore,
    ready: impl Future<Output = Result<Arc<Repository>, O>>,
    paths: &[PathBuf],
) -> Result<Vec<Pushed>, WalError<O>> {
    let files = push_paths_hashed(config, store, ready, paths).await?;
    Ok(files.into_iter().map(|f| f.pushed).collect())
}

/// [`push_paths`], with the hash of the bytes each outcome is about (see
/// [`wal::push_hashed`]).
pub async fn push_paths_hashed<O>(
    config: &Config,
    store: &DynStore,
    ready: impl Future<Output = Result<Arc<Repository>, O>>,
    paths: &[PathBuf],
) -> Result<Vec<PushedFile>, WalError<O>> {
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
        return Err(WalError::Failed(WalFailure::Refused(
            "the WAL push would write outside its archive writer's fence (a repository opened on another storage object); nothing was written".into(),
        )));
    }
    let outcome = wal::push_hashed(&repo, paths, config.backup.writer_options()).await;
    mark.release().await;
    Ok(outcome?)
}
