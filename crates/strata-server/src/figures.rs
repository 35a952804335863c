//! What `/metrics` says of a storage's backups, kept between scrapes.
//!
//! A scrape must cost the same at 10 and at 10,000 backups, so it never reads the
//! repository itself: it reads these figures, which are computed from the backup listing
//! (a LIST, the listing's pages, and the keys of the verification records) at most once
//! per [`REFRESH`], or at once after this server finished an operation (a backup, a
//! delete, a cleanup: what changes them). Changes made by another process show within
//! [`REFRESH`]. Each scrape still asks the storage one thing, its `config`, so a storage
//! that stops answering is seen at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use strata_repo::listing::read::PageRequest;
use strata_repo::summary::BackupSummary;
use strata_repo::{RepoError, Repository};

/// How long figures are served before the listing is read again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The figures about one storage's backups.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Backups by status (`complete`, `partial`, `failed`).
    pub by_status: HashMap<&'static str, usize>,
    /// Summaries that do not decode.
    pub damaged: usize,
    /// The newest complete backup, as the listing keeps it.
    pub last_complete: Option<BackupSummary>,
    /// Backups whose last verification found them intact, and damaged.
    pub verified_ok: usize,
    pub verified_damaged: usize,
    /// Backups listed (readable).
    pub listed: usize,
}

impl Figures {
    /// Reads the figures of `repo` from its listing.
    async fn read(repo: &Repository) -> Result<Figures, RepoError> {
        let page = repo
            .backup_page(&PageRequest {
                limit: usize::MAX,
                before: None,
            })
            .await?;
        let outcomes = strata_coordinator::verified::outcomes_by_key(repo).await?;
        let mut figures = Figures {
            damaged: page.damaged.len(),
            listed: page.backups.len(),
            ..Figures::default()
        };
        for status in ["complete", "partial", "failed"] {
            figures.by_status.insert(status, 0);
        }
        for backup in &page.backups {
            *figures.by_status.entry(backup.status.as_str()).or_default() += 1;
            match outcomes.get(&backup.name) {
                Some(true) => figures.verified_ok += 1,
                Some(false) => figures.verified_damaged += 1,
                None => {}
            }
        }
        figures.last_complete = page.backups.into_iter().find(|b| b.is_complete());
        Ok(figures)
    }
}

/// The figures of one storage and when they were read.
#[derive(Default)]
pub struct FigureCache {
    kept: tokio::sync::Mutex<Option<Kept>>,
}

struct Kept {
    at: Instant,
    /// The server's count of finished operations when they were read.
    generation: u64,
    figures: Figures,
}

impl FigureCache {
    /// The figures of `repo`, read again when older than [`REFRESH`] or when the
    /// server's count of finished operations is no longer `generation`.
    /// Each call asks the storage for the repository's `config` (one GET, whatever the
    /// number of backups), so a storage that stopped answering shows at the next scrape.
    pub async fn get(&self, repo: &Repository, generation: u64) -> Result<Figures, RepoError> {
        repo.store().get(strata_repo::layout::CONFIG).await?;
        let mut kept = self.kept.lock().await;
        if let Some(k) = kept.as_ref() {
            if k.generation == generation && k.at.elapsed() < REFRESH {
                return Ok(k.figures.clone());
            }
        }
        let figures = Figures::read(repo).await?;
        *kept = Some(Kept {
            at: Instant::now(),
            generation,
            figures: figures.clone(),
        });
        Ok(figures)
    }
}
