//! The WAL archive of a PostgreSQL cluster, as the commands see it: pushing (through the
//! local archiver when one listens, else under an archive-writer mark: see
//! [`strata_wal::push_paths`]) and fetching. Listing, verifying and retention are
//! `strata_wal`'s.

use crate::config::Config;
use crate::{CoordinatorError, CoordinatorResult};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strata_postgres::spool::Spool;
/// What happened to each segment a push was given (printed by `strata wal-push`).
pub use strata_postgres::wal::Pushed;
use strata_postgres::wal::{self, ReadAhead};
use strata_repo::Repository;
use strata_store::DynStore;

use strata_wal::{archiver, WalFailure};
pub use strata_wal::{push_paths, push_paths_hashed};

/// Errors of WAL commands, whose repository is opened as the coordinator opens it.
pub type WalError = strata_wal::WalError<CoordinatorError>;

mod receipts;

/// `wal-push PATH`: hands `path` to the local archiver when one listens (see
/// [`strata_wal::archiver`]), else archives it and up to `postgres.wal_push_ahead` further
/// ready segments into the repository in `store`, opened by `open` (see [`push_paths`]).
/// A push that fails while more WAL waits than `postgres.wal_queue_max_mib` (when set)
/// is acknowledged as [`Pushed::Dropped`] (see [`strata_wal::queue`]).
pub async fn push(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = CoordinatorResult<Arc<Repository>>>,
    path: &Path,
) -> Result<Vec<Pushed>, WalError> {
    match push_or_fail(config, store, open, path).await {
        Err(err) => drop_if_over_queue(config, path, err),
        pushed => pushed,
    }
}

/// `err` unless the WAL waiting beside `path` exceeds `postgres.wal_queue_max_mib` and
/// the drop could be counted: then `path` is acknowledged unarchived.
fn drop_if_over_queue(
    config: &Config,
    path: &Path,
    err: WalError,
) -> Result<Vec<Pushed>, WalError> {
    let max_mib = config.postgres.wal_queue_max_mib;
    let waiting = strata_wal::queue::waiting(path);
    if max_mib == 0 || waiting.bytes <= max_mib << 20 {
        return Err(err);
    }
    let Ok(name) = wal::file_name(path) else {
        return Err(err);
    };
    let why = crate::error_chain(&err);
    let dropped = strata_wal::queue::Dropped {
        name: name.clone(),
        at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        why: why.clone(),
        waiting_bytes: waiting.bytes,
    };
    match strata_wal::queue::record(&config.state_dir(), dropped) {
        Ok(_) => Ok(vec![Pushed::Dropped {
            name,
            why,
            waiting_bytes: waiting.bytes,
        }]),
        // Never dropped without its count: PostgreSQL keeps it and calls again.
        Err(_) => Err(err),
    }
}

async fn push_or_fail(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = CoordinatorResult<Arc<Repository>>>,
    path: &Path,
) -> Result<Vec<Pushed>, WalError> {
    let socket = archiver::socket_path(config);
    let timeout = archiver::answer_timeout(config);
    let handed = archiver::client::push(&socket, path, timeout).await;
    if let Some(outcomes) = handed.map_err(strata_wal::WalError::with_open_error)? {
        return Ok(outcomes);
    }
    // Without the archiver: a segment an earlier push archived ahead is answered from its
    // receipt, without opening the repository (see `receipts`).
    let name = wal::file_name(path).ok();
    let mut receipts = None;
    if let Some(name) = &name {
        if receipts::any_for(&config.state_dir(), name) {
            if let Ok(repo) = Repository::read_config(store).await {
                let dir = receipts::dir(&config.state_dir(), &repo.id, &store.describe());
                let (n, p) = (name.clone(), path.to_path_buf());
                let held = dir.clone();
                let confirmed =
                    tokio::task::spawn_blocking(move || receipts::confirms(&held, &n, &p))
                        .await
                        .unwrap_or(false);
                if confirmed {
                    return Ok(vec![Pushed::AlreadyArchived { name: name.clone() }]);
                }
                receipts = Some(dir);
            }
        }
    }
    let mut paths: Vec<PathBuf> = vec![path.to_path_buf()];
    paths.extend(wal::ready_after(path, config.postgres.wal_push_ahead));
    let files = push_paths_hashed(config, store, open, &paths).await?;
    // Receipts for the segments archived ahead: PostgreSQL asks for them next.
    let ahead: Vec<_> = files
        .iter()
        .filter(|f| Some(f.pushed.name()) != name.as_deref())
        .collect();
    if !ahead.is_empty() {
        let dir = match receipts {
            Some(dir) => Some(dir),
            None => Repository::read_config(store)
                .await
                .ok()
                .map(|repo| receipts::dir(&config.state_dir(), &repo.id, &store.describe())),
        };
        if let Some(dir) = dir {
            for file in ahead {
                receipts::write(&dir, file.pushed.name(), &file.hash);
            }
            receipts::prune(&dir);
        }
    }
    Ok(files.into_iter().map(|f| f.pushed).collect())
}

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
pub async fn fetch(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = CoordinatorResult<Arc<Repository>>>,
    name: &str,
    dest: &Path,
) -> Result<Fetched, WalError> {
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
async fn ask_prefetcher(
    spool: &Spool,
    name: &str,
    dest: &Path,
) -> Option<Result<Fetched, WalError>> {
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
pub async fn prefetch(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = CoordinatorResult<Arc<Repository>>>,
    after: &str,
) -> Result<Option<wal::Prefetched>, WalError> {
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
    use strata_postgres::WAL_SPACE;

    const SEGMENT: &str = "000000010000000000000001";

    fn config(state: &Path) -> Config {
        Config {
            state_dir: Some(state.to_path_buf()),
            ..Config::default()
        }
    }

    async fn segment(dir: &Path, n: u8) -> PathBuf {
        let path = dir.join(format!("0000000100000000000000{n:02X}"));
        std::fs::write(&path, vec![n; 4096]).unwrap();
        path
    }

    /// A push whose repository cannot be opened fails as such, archives nothing and
    /// leaves no archive-writer mark that would hold garbage collection up.
    #[tokio::test]
    async fn a_push_that_cannot_open_the_repository_releases_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let repo = strata_testkit::repo::scratch_repo(dir.path()).await;
        let store = repo.store().clone();
        let path = segment(dir.path(), 1).await;
        let refused = async { Err(CoordinatorError::Password("no password".into())) };
        let err = push(&config(dir.path()), &store, refused, &path).await;
        assert!(matches!(err, Err(WalError::Open(_))), "{err:?}");
        assert!(store
            .list(strata_repo::layout::WRITERS)
            .await
            .unwrap()
            .is_empty());
        assert!(repo.list_archived(WAL_SPACE).await.unwrap().is_empty());

        let pushed = push(
            &config(dir.path()),
            &store,
            async { Ok(repo.clone()) },
            &path,
        )
        .await
        .unwrap();
        assert!(matches!(&pushed[..], [Pushed::Stored { name, .. }] if name == SEGMENT));
        assert!(store
            .list(strata_repo::layout::WRITERS)
            .await
            .unwrap()
            .is_empty());
    }

    /// A record whose data is gone (a record that landed after garbage collection
    /// removed its pack and index entries) is not "already archived": the push stores
    /// the segment again, and a fetch then returns it intact.
    #[tokio::test]
    async fn a_record_without_its_data_is_stored_again_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let repo = strata_testkit::repo::scratch_repo(dir.path()).await;
        let store = repo.store().clone();
        let config = config(dir.path());
        let path = segment(dir.path(), 7).await;
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let once = push(&config, &store, async { Ok(repo.clone()) }, &path).await;
        assert!(matches!(&once.unwrap()[..], [Pushed::Stored { .. }]));
        // What gc leaves when the record was not there yet: no pack, no index entry.
        for prefix in [strata_repo::layout::DATA, strata_repo::layout::INDEX] {
            for object in store.list(prefix).await.unwrap() {
                store.delete(&object.key).await.unwrap();
            }
        }
        repo.reload_index().await.unwrap();
        assert!(repo
            .load_archived(WAL_SPACE, &name)
            .await
            .unwrap()
            .is_some());
        let again = push(&config, &store, async { Ok(repo.clone()) }, &path).await;
        assert!(
            matches!(&again.unwrap()[..], [Pushed::StoredAgain { name: n, .. }] if *n == name),
            "stored again, not acknowledged as archived"
        );
        let dest = dir.path().join("fetched");
        fetch(&config, &store, async { Ok(repo.clone()) }, &name, &dest)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&path).unwrap());
        // With its data there, the next push is "already archived".
        let third = push(&config, &store, async { Ok(repo.clone()) }, &path).await;
        assert!(matches!(
            &third.unwrap()[..],
            [Pushed::AlreadyArchived { .. }]
        ));
    }

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
        let never = async { Err(CoordinatorError::Password("must not be opened".into())) };
        assert_eq!(
            fetch(&config, &store, never, SEGMENT, &dest).await.unwrap(),
            Fetched {
                bytes: 7,
                from_spool: true
            }
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"spooled");

        let open = async { Ok(repo.clone()) };
        let missing = fetch(&config, &store, open, SEGMENT, &dest).await;
        assert!(matches!(missing, Err(WalError::NotFound(ref n)) if n == SEGMENT));
        assert_eq!(std::fs::read(&dest).unwrap(), b"spooled", "dest left alone");
    }
}
