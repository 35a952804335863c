//! Cluster operations of strata.
//!
//! The coordinator turns "back up the cluster" into node snapshots that share one write
//! pipeline (so a chunk held by several nodes is stored once), stores each node manifest,
//! and writes the backup summary last: a backup is visible only once it is whole, and its
//! status says honestly whether every node made it. It also resolves backup names
//! (`latest` means the newest *complete* backup), restores, and verifies.

pub mod assign;
pub mod backup;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod copy;
mod error;
pub mod gc;
pub mod jobs;
pub mod lock;
pub mod mapping;
pub mod node;
pub mod operation;
pub mod remote;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod setup;
pub mod storage;
pub mod verify;
pub mod verify_record;
pub mod wal;

pub use error::{CoordinatorError, CoordinatorResult};

use strata_repo::summary::BackupSummary;
use strata_repo::Repository;

/// Finds a backup by name, unique name prefix, or `latest` (the newest complete backup).
pub async fn resolve_backup(repo: &Repository, wanted: &str) -> CoordinatorResult<BackupSummary> {
    let backups = repo.list_backups().await?;
    if wanted == "latest" {
        return backups
            .into_iter()
            .rev()
            .find(BackupSummary::is_complete)
            .ok_or_else(|| {
                CoordinatorError::NoBackup("no complete backup in the repository".into())
            });
    }
    if let Some(exact) = backups.iter().find(|b| b.name == wanted) {
        return Ok(exact.clone());
    }
    let mut matches = backups.into_iter().filter(|b| b.name.starts_with(wanted));
    match (matches.next(), matches.next()) {
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => Err(CoordinatorError::NoBackup(format!(
            "{wanted:?} matches several backups; give more of the name"
        ))),
        _ => Err(CoordinatorError::NoBackup(format!(
            "no backup named {wanted:?} (see `strata list`)"
        ))),
    }
}
