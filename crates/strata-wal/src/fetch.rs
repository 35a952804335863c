//! `wal-fetch`: PostgreSQL's `restore_command`, from the read-ahead spool first, then
//! from the archive; and the prefetcher (`wal prefetch`) that keeps the spool filled
//! beside recovery.

use crate::error::{WalError, WalFailure};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_cluster::config::Config;
use strata_postgres::spool::Spool;
use strata_postgres::wal::{self, ReadAhead};
use strata_repo::Repository;
use strata_store::DynStore;

/// The read-ahead of `wal-fetch`: `postgres.wal_fetch_ahead` segments into
/// `<state_dir>/wal-spool/<repository id>` (one spool per repository, so a segment of
/// another archive is never handed out); `None` when it is off or the repository's id
/// cannot be read (the fetch then reports why).
pub async fn read_ahead(config: &Config, store: &DynStore) -> Option<ReadAhead> {
    let segments = config.postgres.wal_fetch_ahead;
    if segments == 0 {
        return None;
    }
    let id = Repository::read_config(store).await.ok()?.id;
    let dir = config.state_dir().join("wal-spool").join(id);
    Some(ReadAhead {
        spool: Spool::new(dir),
        segments,
    })
}

/// What a `wal-fetch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Size of the file written to the destination, in bytes.
    pub bytes: u64,
    /// Whether the file came from the spool (read ahead earlier) rather than the archive.
    pub from_spool: bool,
}

/// `wal-fetch NAME DEST`: from the read-ahead spool when an earlier fetch or the
/// prefetcher put `name` there (no repository opened, no key derived), else from the
/// repository `open` opens, reading the following segments into the spool. Spooled
/// segments recovery has passed are removed first, and `name` is noted as the one
/// recovery wants now (the prefetcher follows it).
pub async fn fetch<O>(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = Result<Arc<Repository>, O>>,
    name: &str,
    dest: &Path,
) -> Result<Fetched, WalError<O>> {
    let read_ahead = read_ahead(config, store).await;
    if let Some(ra) = &read_ahead {
        ra.spool.prune(name);
        let _ = ra.spool.note_wanted(name);
        if let Ok(Some(bytes)) = ra.spool.take(name, dest) {
            return Ok(Fetched {
                bytes,
                from_spool: true,
            });
        }
        if let Some(answer) = ask_prefetcher(&ra.spool, name, dest).await {
            return answer;
        }
    }
    let repo = open.await.map_err(WalError::Open)?;
    let bytes = wal::fetch(&repo, name, dest, read_ahead.as_ref()).await?;
    Ok(Fetched {
        bytes,
        from_spool: false,
    })
}

/// How long a `wal-fetch` that missed the spool waits for the running prefetcher's
/// answer before it opens the repository itself.
const ASK_WAIT: Duration = Duration::from_secs(3);

/// A spool miss while a prefetcher runs: asks it for `name` and waits for the file (taken
/// to `dest`) or its absent mark (the end of the archive, a history file not there).
/// `None` when no prefetcher runs or it did not answer in [`ASK_WAIT`]: the caller
/// fetches by itself.
async fn ask_prefetcher<O>(
    spool: &Spool,
    name: &str,
    dest: &Path,
) -> Option<Result<Fetched, WalError<O>>> {
    if !spool.prefetcher_running() || spool.ask(name).is_err() {
        return None;
    }
    let deadline = std::time::Instant::now() + ASK_WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(bytes)) = spool.take(name, dest) {
            return Some(Ok(Fetched {
                bytes,
                from_spool: true,
            }));
        }
        if spool.is_absent(name) {
            return Some(Err(WalError::NotFound(name.to_string())));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// `wal prefetch --after NAME`: keeps the read-ahead spool of the repository in `store`
/// filled beside recovery (see [`strata_postgres::wal::prefetch`]) until recovery has
/// asked for nothing for `postgres.wal_prefetch_idle_secs`. `None` when the read-ahead is off or another
/// prefetcher already serves this spool (one per spool, by a lock the kernel releases
/// when its holder dies).
pub async fn prefetch<O>(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = Result<Arc<Repository>, O>>,
    after: &str,
) -> Result<Option<wal::Prefetched>, WalError<O>> {
    let Some(ra) = read_ahead(config, store).await else {
        return Ok(None);
    };
    let lock = ra.spool.lock_prefetcher().map_err(|e| {
        WalError::Failed(WalFailure::Refused(format!(
            "cannot take the prefetcher's lock in the WAL spool: {e}"
        )))
    })?;
    let Some(_lock) = lock else {
        return Ok(None);
    };
    let repo = open.await.map_err(WalError::Open)?;
    let idle = Duration::from_secs(config.postgres.wal_prefetch_idle_secs);
    Ok(Some(wal::prefetch(&repo, &ra, after, idle).await))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_repo::RepoError;

    use crate::test_support::{config, opened, SEGMENT};

    /// A segment in the read-ahead spool is handed out without opening the repository;
    /// one the archive lacks is `NotFound` (the end of the archive), nothing else.
    #[tokio::test]
    async fn a_fetch_takes_the_spool_first_and_reports_the_end_of_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let repo = strata_testkit::repo::scratch_repo(dir.path()).await;
        let store = repo.store().clone();
        let config = config(dir.path());
        let ahead = read_ahead(&config, &store).await.unwrap();
        ahead.spool.put(SEGMENT, b"spooled").unwrap();
        let dest = dir.path().join("dest");
        let never = async { Err(RepoError::PasswordRequired("must not be opened".into())) };
        assert_eq!(
            fetch(&config, &store, never, SEGMENT, &dest).await.unwrap(),
            Fetched {
                bytes: 7,
                from_spool: true
            }
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"spooled");

        let open = opened(repo.clone());
        let missing = fetch(&config, &store, open, SEGMENT, &dest).await;
        assert!(matches!(missing, Err(WalError::NotFound(ref n)) if n == SEGMENT));
        assert_eq!(std::fs::read(&dest).unwrap(), b"spooled", "dest left alone");
    }
}
