//! `wal-push`: PostgreSQL's `archive_command`. A segment goes to the local archiver when
//! one listens, else into the repository by this process (under an archive writer's
//! mark: [`crate::write`]) with the ready segments after it; those archived ahead leave
//! receipts, so their own pushes need not open the repository. A push that keeps failing
//! while too much WAL waits may be dropped, loudly and counted ([`crate::queue`]).

use crate::archiver::{self, client};
use crate::error::WalError;
use crate::receipts;
use crate::write::push_paths_hashed;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_cluster::config::Config;
use strata_postgres::wal::{self, Pushed};
use strata_repo::Repository;
use strata_store::DynStore;

/// `wal-push PATH`: hands `path` to the local archiver when one listens (see
/// [`crate::archiver`]), else archives it and up to `postgres.wal_push_ahead` further
/// ready segments into the repository in `store`, opened by `open` (see
/// [`crate::push_paths`]). A push that fails while more WAL waits than
/// `postgres.wal_queue_max_mib` (when set) is acknowledged as [`Pushed::Dropped`] (see
/// [`crate::queue`]).
pub async fn push<O: std::error::Error + 'static>(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = Result<Arc<Repository>, O>>,
    path: &Path,
) -> Result<Vec<Pushed>, WalError<O>> {
    match push_or_fail(config, store, open, path).await {
        Err(err) => drop_if_over_queue(config, path, err),
        pushed => pushed,
    }
}

/// `err` unless the WAL waiting beside `path` exceeds `postgres.wal_queue_max_mib` and
/// the drop could be counted: then `path` is acknowledged unarchived.
fn drop_if_over_queue<O: std::error::Error + 'static>(
    config: &Config,
    path: &Path,
    err: WalError<O>,
) -> Result<Vec<Pushed>, WalError<O>> {
    let max_mib = config.postgres.wal_queue_max_mib;
    let waiting = crate::queue::waiting(path);
    if max_mib == 0 || waiting.bytes <= max_mib << 20 {
        return Err(err);
    }
    let Ok(name) = wal::file_name(path) else {
        return Err(err);
    };
    let why = strata_util::error_chain(&err);
    let dropped = crate::queue::Dropped {
        name: name.clone(),
        at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        why: why.clone(),
        waiting_bytes: waiting.bytes,
    };
    match crate::queue::record(&config.state_dir(), dropped) {
        Ok(_) => Ok(vec![Pushed::Dropped {
            name,
            why,
            waiting_bytes: waiting.bytes,
        }]),
        // Never dropped without its count: PostgreSQL keeps it and calls again.
        Err(_) => Err(err),
    }
}

async fn push_or_fail<O>(
    config: &Config,
    store: &DynStore,
    open: impl Future<Output = Result<Arc<Repository>, O>>,
    path: &Path,
) -> Result<Vec<Pushed>, WalError<O>> {
    let socket = archiver::socket_path(config);
    let timeout = archiver::answer_timeout(config);
    let handed = client::push(&socket, path, timeout).await;
    if let Some(outcomes) = handed.map_err(WalError::with_open_error)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use strata_postgres::WAL_SPACE;
    use strata_repo::RepoError;

    use crate::test_support::{config, opened, SEGMENT};

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
        let refused = async { Err(RepoError::PasswordRequired("no password".into())) };
        let err = push(&config(dir.path()), &store, refused, &path).await;
        assert!(matches!(err, Err(WalError::Open(_))), "{err:?}");
        assert!(store
            .list(strata_repo::layout::WRITERS)
            .await
            .unwrap()
            .is_empty());
        assert!(repo.list_archived(WAL_SPACE).await.unwrap().is_empty());

        let pushed = push(&config(dir.path()), &store, opened(repo.clone()), &path)
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
        let once = push(&config, &store, opened(repo.clone()), &path).await;
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
        let again = push(&config, &store, opened(repo.clone()), &path).await;
        assert!(
            matches!(&again.unwrap()[..], [Pushed::StoredAgain { name: n, .. }] if *n == name),
            "stored again, not acknowledged as archived"
        );
        let dest = dir.path().join("fetched");
        crate::fetch(&config, &store, opened(repo.clone()), &name, &dest)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&path).unwrap());
        // With its data there, the next push is "already archived".
        let third = push(&config, &store, opened(repo.clone()), &path).await;
        assert!(matches!(
            &third.unwrap()[..],
            [Pushed::AlreadyArchived { .. }]
        ));
    }
}
