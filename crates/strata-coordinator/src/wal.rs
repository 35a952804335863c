//! The WAL archive of a PostgreSQL cluster, as the commands see it: pushing under an
//! archive-writer mark (taken before the index is read, renewed while the push runs, so
//! garbage collection never deletes data a push is storing),
//! fetching, listing, verifying, and retention (WAL older than the oldest kept base backup
//! goes; WAL a kept backup needs never does).

use crate::lock::{mark_archive_writer_with_ttl, ArchiveMark, LockError};
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_postgres::wal::{self, ArchiveReport, Pushed, ReadAhead};
use strata_postgres::{BaseBackupInfo, PgError, WAL_SPACE};
use strata_repo::writer::WriterOptions;
use strata_repo::Repository;

/// Errors of WAL commands, sorted by what PostgreSQL should make of them.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The archive lacks the file: for `restore_command`, the normal end of the archive.
    #[error("{0} is not in the archive")]
    NotFound(String),
    /// Garbage collection runs: try again shortly (PostgreSQL does).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Failed(#[from] CoordinatorError),
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
            LockError::Busy(_) => WalError::Busy(format!(
                "{err}; PostgreSQL retries the archive command, nothing is lost"
            )),
            other => WalError::Failed(other.into()),
        }
    }
}

/// Announces a WAL push (see [`crate::lock::mark_archive_writer`]) for `ttl` at a time
/// (renewed while it runs): call before the repository (and its index) is opened, and
/// pass the mark to [`push`].
pub async fn mark_push(
    store: strata_store::DynStore,
    ttl: std::time::Duration,
) -> Result<ArchiveMark, WalError> {
    // Only into a repository: a location that is not one (an unmounted or moved storage)
    // gets no mark written into it, and the push fails as it would have.
    Repository::read_config(&store)
        .await
        .map_err(CoordinatorError::from)?;
    Ok(mark_archive_writer_with_ttl(store, "wal-push", ttl).await?)
}

/// `strata wal-push PATH`: archives `path` and up to `ahead` further ready segments under
/// `mark` (renewed meanwhile, released at the end).
pub async fn push(
    repo: &Arc<Repository>,
    mark: ArchiveMark,
    path: &Path,
    ahead: usize,
    writer: WriterOptions,
) -> Result<Vec<Pushed>, WalError> {
    let mut paths: Vec<PathBuf> = vec![path.to_path_buf()];
    paths.extend(wal::ready_after(path, ahead));
    let outcome = wal::push(repo, &paths, writer).await;
    mark.release().await;
    Ok(outcome?)
}

/// `strata wal-fetch NAME DEST`, reading ahead into `read_ahead`'s spool.
pub async fn fetch(
    repo: &Arc<Repository>,
    name: &str,
    dest: &Path,
    read_ahead: Option<&ReadAhead>,
) -> Result<u64, WalError> {
    Ok(wal::fetch(repo, name, dest, read_ahead).await?)
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
    pub archive: ArchiveReport,
    pub backups: Vec<BackupWal>,
}

/// One PostgreSQL backup's view of the archive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupWal {
    pub backup: String,
    pub timeline: u32,
    pub start_wal: String,
    pub stop_wal: String,
    /// Whether the WAL that makes it consistent is archived.
    pub consistent: bool,
    /// The first gap after its start on its timeline (recovery cannot pass it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gap: Option<String>,
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
