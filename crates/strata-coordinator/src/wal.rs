//! The WAL archive of a PostgreSQL cluster, as the commands see it: pushing (through the
//! local archiver when one listens, else under an archive-writer mark: see
//! [`crate::wal_write`]), fetching, listing, verifying, and retention (WAL older than the
//! oldest kept base backup goes; WAL a kept backup needs never does).

use crate::config::Config;
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strata_postgres::spool::Spool;
/// What happened to each segment a push was given (printed by `strata wal-push`).
pub use strata_postgres::wal::Pushed;
use strata_postgres::wal::{self, ArchiveReport, ReadAhead};
use strata_postgres::{BaseBackupInfo, WAL_SPACE};
use strata_repo::Repository;
use strata_store::DynStore;

pub use crate::wal_write::{push_paths, push_paths_hashed, WalError};

mod receipts;

/// `wal-push PATH`: hands `path` to the local archiver when one listens (see
/// [`crate::wal_archiver`]), else archives it and up to `postgres.wal_push_ahead` further
/// ready segments into the repository in `store`, opened by `open` (see [`push_paths`]).
/// A push that fails while more WAL waits than `postgres.wal_queue_max_mib` (when set)
/// is acknowledged as [`Pushed::Dropped`] (see [`crate::wal_queue`]).
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
    let waiting = crate::wal_queue::waiting(path);
    if max_mib == 0 || waiting.bytes <= max_mib << 20 {
        return Err(err);
    }
    let Ok(name) = wal::file_name(path) else {
        return Err(err);
    };
    let why = crate::error_chain(&err);
    let dropped = crate::wal_queue::Dropped {
        name: name.clone(),
        at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        why: why.clone(),
        waiting_bytes: waiting.bytes,
    };
    match crate::wal_queue::record(&config.state_dir(), dropped) {
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
    let socket = crate::wal_archiver::socket_path(config);
    let timeout = crate::wal_archiver::answer_timeout(config);
    if let Some(outcomes) = crate::wal_archiver::client::push(&socket, path, timeout).await? {
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
        WalError::Failed(CoordinatorError::NothingToDo(format!(
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

/// The segment size the archive was written with, from any PostgreSQL backup's record
/// (16 MiB, PostgreSQL's default, when there is none yet).
async fn segment_size(repo: &Repository) -> CoordinatorResult<u64> {
    // A damaged summary is no reason to hide the archive: the readable ones tell.
    let (backups, _) = repo.scan_backups().await?;
    Ok(backups
        .iter()
        .flat_map(|b| &b.nodes)
        .find_map(|n| BaseBackupInfo::from_map(&n.plugin))
        .map_or(16 << 20, |info| info.segment_size))
}

/// What `strata wal list` shows: the archive's runs per timeline, and per PostgreSQL
/// backup whether all WAL from its start to the newest archived segment is there.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WalListing {
    /// The archive's runs of segments and their gaps, per timeline, and its history files.
    pub archive: ArchiveReport,
    /// Every PostgreSQL backup, with whether its WAL is archived.
    pub backups: Vec<BackupWal>,
}

/// One PostgreSQL backup's view of the archive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupWal {
    /// The backup's name.
    pub backup: String,
    /// The PostgreSQL timeline the backup was taken on.
    pub timeline: u32,
    /// The WAL segment the backup starts in.
    pub start_wal: String,
    /// The WAL segment the backup stops in: recovery must reach it to be consistent.
    pub stop_wal: String,
    /// Whether the WAL that makes it consistent is archived.
    pub consistent: bool,
    /// The first gap after its start on its timeline (recovery cannot pass it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gap: Option<String>,
}

impl WalListing {
    /// The listing for people, one line each: every timeline's runs and gaps, the
    /// history files, and whether each backup can be restored and how far.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.archive.timelines.is_empty() {
            lines.push("no WAL archived yet".to_string());
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        for t in &self.archive.timelines {
            let runs: Vec<String> = t
                .ranges
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.clone()
                    } else {
                        format!("{a} .. {b}")
                    }
                })
                .collect();
            let gaps = t.ranges.len().saturating_sub(1);
            lines.push(format!(
                "timeline {}: {} segments in {} run{} ({} gap{}): {}",
                t.timeline,
                t.segments,
                t.ranges.len(),
                plural(t.ranges.len()),
                gaps,
                plural(gaps),
                runs.join(", ")
            ));
        }
        if !self.archive.history_files.is_empty() {
            let files = self.archive.history_files.join(", ");
            lines.push(format!("history files: {files}"));
        }
        for b in &self.backups {
            let state = match (&b.consistent, &b.first_gap) {
                (false, _) => "NOT restorable: WAL to make it consistent is missing".to_string(),
                (true, Some(gap)) => format!("restorable up to the gap at {gap}"),
                (true, None) => "restorable to any point up to the newest archived WAL".into(),
            };
            lines.push(format!(
                "backup {} (timeline {}, WAL {} .. {}): {state}",
                b.backup, b.timeline, b.start_wal, b.stop_wal
            ));
        }
        lines
    }

    /// Whether some backup cannot be made consistent from the archive.
    pub fn broken(&self) -> bool {
        self.backups.iter().any(|b| !b.consistent)
    }
}

/// Lists the archive.
pub async fn list(repo: &Repository) -> CoordinatorResult<WalListing> {
    let size = segment_size(repo).await?;
    let names = repo.list_archived(WAL_SPACE).await?;
    let archive = wal::summarize(&names, size);
    let mut backups = Vec::new();
    for summary in repo.scan_backups().await?.0 {
        for node in &summary.nodes {
            let Some(info) = BaseBackupInfo::from_map(&node.plugin) else {
                continue;
            };
            let last = archive
                .timelines
                .iter()
                .filter(|t| t.timeline == info.timeline)
                .flat_map(|t| t.ranges.last())
                .map(|(_, last)| last.clone())
                .next_back()
                .unwrap_or_else(|| info.stop_wal.clone());
            backups.push(BackupWal {
                backup: summary.name.clone(),
                timeline: info.timeline,
                consistent: archive
                    .first_missing(info.timeline, &info.start_wal, &info.stop_wal, size)
                    .is_none(),
                first_gap: archive.first_missing(info.timeline, &info.start_wal, &last, size),
                start_wal: info.start_wal,
                stop_wal: info.stop_wal,
            });
        }
    }
    Ok(WalListing { archive, backups })
}

/// What `strata wal verify` found.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WalVerifyReport {
    /// Archived WAL files read back.
    pub checked: u64,
    /// Every file that did not read back intact.
    pub damaged: Vec<DamagedWal>,
}

/// An archived WAL file that did not read back intact.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DamagedWal {
    /// The file's name in the archive.
    pub name: String,
    /// What is wrong with it.
    pub why: String,
}

/// `strata wal verify`: reads every archived file back.
pub async fn verify(repo: &Arc<Repository>) -> CoordinatorResult<WalVerifyReport> {
    let (checked, damaged) = wal::verify(repo)
        .await
        .map_err(|e| CoordinatorError::NothingToDo(strata_agent::service::error_chain(&e)))?;
    let damaged = damaged
        .into_iter()
        .map(|(name, why)| DamagedWal { name, why })
        .collect();
    Ok(WalVerifyReport { checked, damaged })
}

/// What WAL retention removed (or would remove).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WalExpiry {
    /// The first segment the oldest kept PostgreSQL backup needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_needed: Option<String>,
    /// The archived WAL files removed (or, on a dry run, those that would be).
    pub removed: Vec<String>,
}

/// Removes archived WAL older than the oldest restorable PostgreSQL backup. Without any
/// such backup nothing is removed (the WAL may be all there is).
pub async fn expire(repo: &Repository, dry_run: bool) -> CoordinatorResult<WalExpiry> {
    let mut oldest: Option<BaseBackupInfo> = None;
    for summary in repo.list_backups().await? {
        if summary.status == strata_repo::summary::BackupStatus::Failed {
            continue;
        }
        for node in &summary.nodes {
            if let Some(info) = BaseBackupInfo::from_map(&node.plugin) {
                let older = oldest
                    .as_ref()
                    .is_none_or(|o| info.start_wal[8..] < o.start_wal[8..]);
                if older {
                    oldest = Some(info);
                }
            }
        }
    }
    let Some(oldest) = oldest else {
        return Ok(WalExpiry::default());
    };
    let names = repo.list_archived(WAL_SPACE).await?;
    let removed = wal::expired(&names, &oldest.start_wal, oldest.segment_size);
    if !dry_run {
        for name in &removed {
            repo.delete_archived(WAL_SPACE, name).await?;
        }
    }
    Ok(WalExpiry {
        oldest_needed: Some(oldest.start_wal),
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_postgres::wal::TimelineRanges;

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

    #[test]
    fn a_listing_names_runs_gaps_and_what_each_backup_can_reach() {
        let name = |n: u8| format!("0000000100000000000000{n:02X}");
        let listing = WalListing {
            archive: ArchiveReport {
                timelines: vec![TimelineRanges {
                    timeline: 1,
                    segments: 3,
                    ranges: vec![(name(1), name(2)), (name(4), name(4))],
                }],
                history_files: vec![],
                other_files: 0,
            },
            backups: vec![BackupWal {
                backup: "b1".into(),
                timeline: 1,
                start_wal: name(1),
                stop_wal: name(1),
                consistent: true,
                first_gap: Some(name(3)),
            }],
        };
        assert_eq!(
            listing.lines(),
            [
                format!(
                    "timeline 1: 3 segments in 2 runs (1 gap): {} .. {}, {}",
                    name(1),
                    name(2),
                    name(4)
                ),
                format!(
                    "backup b1 (timeline 1, WAL {} .. {}): restorable up to the gap at {}",
                    name(1),
                    name(1),
                    name(3)
                ),
            ]
        );
        assert!(!listing.broken());
        let empty = WalListing {
            archive: ArchiveReport::default(),
            backups: vec![],
        };
        assert_eq!(empty.lines(), ["no WAL archived yet"]);
    }
}
