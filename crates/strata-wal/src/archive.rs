//! The WAL archive as the repository holds it: what `strata wal list` shows (the runs of
//! segments per timeline and how far each PostgreSQL backup can be recovered), `strata wal
//! verify` (every archived file read back), and retention (WAL older than the oldest kept
//! base backup goes; WAL a kept backup needs never does).

use crate::error::{WalFailure, WalResult};
use serde::Serialize;
use std::sync::Arc;
use strata_postgres::wal::{self, ArchiveReport};
use strata_postgres::{BaseBackupInfo, WAL_SPACE};
use strata_repo::Repository;

/// The segment size the archive was written with, from any PostgreSQL backup's record
/// (16 MiB, PostgreSQL's default, when there is none yet).
async fn segment_size(repo: &Repository) -> WalResult<u64> {
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
pub async fn list(repo: &Repository) -> WalResult<WalListing> {
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
pub async fn verify(repo: &Arc<Repository>) -> WalResult<WalVerifyReport> {
    let (checked, damaged) = wal::verify(repo)
        .await
        .map_err(|e| WalFailure::Refused(strata_util::error_chain(&e)))?;
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
pub async fn expire(repo: &Repository, dry_run: bool) -> WalResult<WalExpiry> {
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
