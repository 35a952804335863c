//! Pages of backups for a long-running process (a server): the listing of each storage
//! reconciled once, then reused while the repository's listing generation (see
//! `strata_repo::listing::generation`) stays the same.
//!
//! A page served from here costs no request while the kept listing was validated less than
//! [`ListingCache::interval`] ago, and one GET (the generation object) when it is older:
//! one validation per interval and storage, shared by every concurrent request (the first
//! validates, the others wait for it and use its answer; from half the interval on, the
//! first request validates ahead while the others are served the kept listing, so under
//! steady load nobody waits). A reconcile (the LISTs and pages
//! of `Repository::backup_page` for every backup, with the pins and verification records)
//! happens only when the generation changed, is missing or does not decode (the answer says
//! so), was written too recently for the writes before it to have surely landed
//! ([`SETTLE`]), when this process made a change itself, or when the kept listing is older
//! than [`MAX_AGE`] (writers that do not bump the generation: older stratas, tools). So a
//! change made by a writer that bumps shows within one interval, and any change within
//! [`MAX_AGE`]; the generation object can make a listing stale for that long, never
//! wrong, as every listing served was reconciled with the summaries.

use super::{before_in, merge, parse_cursor, BackupsPage, PageQuery, Source};
use crate::verified::VerifyRecord;
use crate::CoordinatorResult;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_repo::listing::generation::{now_ms, GenerationRead};
use strata_repo::listing::read::{BackupPage, PageRequest};
use strata_repo::listing::Position;
use strata_repo::summary::BackupSummary;
use strata_repo::{RepoError, Repository};

/// How long a validated listing is served without asking the storage.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long after its writer wrote it a generation is trusted: writes a store shows late
/// (or out of order) have landed by then. Until then every validation reconciles.
pub const SETTLE: Duration = Duration::from_secs(5);
/// The oldest reconcile served, whatever the generation says.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// The kept listings of the storages a process reads, by storage name.
pub struct ListingCache {
    /// How long a validated listing is served without asking the storage.
    pub interval: Duration,
    /// See [`SETTLE`].
    pub settle: Duration,
    /// See [`MAX_AGE`].
    pub max_age: Duration,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Default for ListingCache {
    fn default() -> Self {
        ListingCache::new(INTERVAL, SETTLE, MAX_AGE)
    }
}

#[derive(Default)]
struct Slot {
    kept: Mutex<Option<Kept>>,
    /// Held by the one request validating; the others wait for its answer.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Kept {
    snapshot: Arc<Snapshot>,
    /// When the validation that last found it current began.
    validated: Instant,
    /// The caller's count of its own changes then.
    local: u64,
}

/// Which reconciles a page was read from: equal stamps, equal pages. A server keeps what
/// it made of a page (its serialised body) under the stamp, and makes it again only when
/// the stamp moves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListingStamp(Vec<u64>);

/// Numbers every reconcile of the process, so no two snapshots share a stamp.
static RECONCILES: AtomicU64 = AtomicU64::new(0);

/// One storage's listing, reconciled.
struct Snapshot {
    /// This reconcile's number (see [`ListingStamp`]).
    serial: u64,
    /// Every backup, newest first, and what reading them had to do (see `BackupPage`).
    all: BackupPage,
    /// The positions of `all.backups`, newest first.
    positions: Vec<Position>,
    pinned: HashSet<String>,
    verified: HashMap<String, VerifyRecord>,
    /// The generation it was reconciled under, when it may be reused while that stays:
    /// present, decoding, and settled when the reconcile began.
    reusable_under: Option<String>,
    reconciled: Instant,
    /// What the generation object was, when it is missing or damaged.
    note: Option<String>,
}

impl Snapshot {
    /// Reads every backup of `repo` with its pins and records, `generation` having been
    /// read just before.
    async fn reconcile(
        repo: &Repository,
        generation: &GenerationRead,
        settle: Duration,
    ) -> CoordinatorResult<Snapshot> {
        let reconciled = Instant::now();
        let (reusable_under, note) = match generation {
            GenerationRead::Current(g) => {
                let settled = g.settled(now_ms(), settle.as_millis() as u64);
                (settled.then(|| g.token.clone()), None)
            }
            GenerationRead::Missing => (
                None,
                Some("no listing generation object (the next backup, delete or pin writes one): the listing is reconciled with the summaries at every validation".to_string()),
            ),
            GenerationRead::Damaged(why) => (
                None,
                Some(format!(
                    "the listing generation object does not decode ({why}): the listing is reconciled with the summaries at every validation until a writer replaces it"
                )),
            ),
        };
        let all = repo
            .backup_page(&PageRequest {
                limit: usize::MAX,
                before: None,
            })
            .await?;
        let pinned = crate::pins::pinned(repo).await.map_err(RepoError::from)?;
        let verified = crate::verified::latest(repo)
            .await
            .map_err(RepoError::from)?;
        let positions = all.backups.iter().map(Position::of).collect();
        Ok(Snapshot {
            serial: RECONCILES.fetch_add(1, Ordering::Relaxed),
            all,
            positions,
            pinned,
            verified,
            reusable_under,
            reconciled,
            note,
        })
    }

    /// The page `request` asks for, as `Repository::backup_page` would answer it.
    fn page(&self, request: &PageRequest) -> BackupPage {
        let limit = request.limit.max(1);
        // Positions are newest first: skip those not older than `before`.
        let start = match &request.before {
            Some(before) => self.positions.partition_point(|p| p >= before),
            None => 0,
        };
        let end = start.saturating_add(limit).min(self.positions.len());
        let more = end < self.positions.len();
        BackupPage {
            backups: self.all.backups[start..end].to_vec(),
            next: (more && end > start).then(|| self.positions[end - 1].clone()),
            total: self.all.total,
            from_summaries: self.all.from_summaries.clone(),
            damaged: self.all.damaged.clone(),
            damaged_listing: self.all.damaged_listing.clone(),
        }
    }
}

impl ListingCache {
    /// A cache validating at most every `interval` (see the module's documentation).
    pub fn new(interval: Duration, settle: Duration, max_age: Duration) -> ListingCache {
        ListingCache {
            interval,
            settle,
            max_age,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, storage: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("cache lock")
            .entry(storage.to_string())
            .or_default()
            .clone()
    }

    /// The kept listing when it was validated less than `within` ago (and the caller
    /// made no change since).
    fn fresh(&self, slot: &Slot, local: u64, within: Duration) -> Option<Arc<Snapshot>> {
        let kept = slot.kept.lock().expect("cache lock");
        kept.as_ref()
            .filter(|k| k.local == local && k.validated.elapsed() < within)
            .map(|k| k.snapshot.clone())
    }

    /// The listing of `storage`, validated less than an interval ago. `local` counts
    /// the changes the caller made itself: when it moved, the listing is read again.
    ///
    /// Once half the interval has gone, the first request to come validates ahead while
    /// the others go on with the kept listing (still within its interval), so under load
    /// nobody waits for the validation's GET; only when a whole interval has gone do
    /// requests wait for one (shared) validation.
    async fn snapshot(
        &self,
        storage: &str,
        repo: &Repository,
        local: u64,
    ) -> CoordinatorResult<Arc<Snapshot>> {
        let slot = self.slot(storage);
        if let Some(snapshot) = self.fresh(&slot, local, self.interval / 2) {
            return Ok(snapshot);
        }
        if let Some(snapshot) = self.fresh(&slot, local, self.interval) {
            let Ok(_validating) = slot.refresh.try_lock() else {
                return Ok(snapshot); // another request validates
            };
            if let Some(newer) = self.fresh(&slot, local, self.interval / 2) {
                return Ok(newer);
            }
            // A failed validation ahead leaves the kept listing for its interval: the
            // next request after it waits for a validation, and sees the failure.
            return Ok(self.validate(&slot, repo, local).await.unwrap_or(snapshot));
        }
        let _validating = slot.refresh.lock().await;
        if let Some(snapshot) = self.fresh(&slot, local, self.interval) {
            return Ok(snapshot);
        }
        self.validate(&slot, repo, local).await
    }

    /// Validates (or reconciles) the listing of `slot`, its refresh lock held.
    async fn validate(
        &self,
        slot: &Slot,
        repo: &Repository,
        local: u64,
    ) -> CoordinatorResult<Arc<Snapshot>> {
        let previous = slot.kept.lock().expect("cache lock").clone();
        let validated = Instant::now();
        let generation = repo.listing_generation().await?;
        let reusable = match (&previous, &generation) {
            (Some(kept), GenerationRead::Current(g)) => {
                kept.local == local
                    && kept.snapshot.reusable_under.as_deref() == Some(g.token.as_str())
                    && kept.snapshot.reconciled.elapsed() < self.max_age
            }
            _ => false,
        };
        let snapshot = match previous {
            Some(kept) if reusable => kept.snapshot,
            _ => Arc::new(Snapshot::reconcile(repo, &generation, self.settle).await?),
        };
        *slot.kept.lock().expect("cache lock") = Some(Kept {
            snapshot: snapshot.clone(),
            validated,
            local,
        });
        Ok(snapshot)
    }

    /// One page of the backups of `sources` with their pins and verification records,
    /// as [`crate::listing::page`] answers it, from the kept listings.
    pub async fn page(
        &self,
        sources: &[Source<'_>],
        query: &PageQuery,
        local: u64,
    ) -> CoordinatorResult<BackupsPage> {
        Ok(self.stamped_page(sources, query, local).await?.0)
    }

    /// The stamp of the listings a page of `sources` would be read from now: the same
    /// validation as [`ListingCache::page`], without making the page.
    pub async fn stamp(
        &self,
        sources: &[Source<'_>],
        local: u64,
    ) -> CoordinatorResult<ListingStamp> {
        let mut serials = Vec::with_capacity(sources.len());
        for (storage, repo) in sources {
            serials.push(self.snapshot(storage, repo, local).await?.serial);
        }
        Ok(ListingStamp(serials))
    }

    /// [`ListingCache::page`] with the stamp of the listings it was read from.
    pub async fn stamped_page(
        &self,
        sources: &[Source<'_>],
        query: &PageQuery,
        local: u64,
    ) -> CoordinatorResult<(BackupsPage, ListingStamp)> {
        let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let limit = query.limit.max(1);
        let mut reads = Vec::new();
        let mut snapshots = HashMap::new();
        let mut notes = Vec::new();
        let mut serials = Vec::with_capacity(sources.len());
        for (storage, repo) in sources {
            let snapshot = self.snapshot(storage, repo, local).await?;
            serials.push(snapshot.serial);
            let before = before_in(cursor.as_ref(), storage);
            reads.push((*storage, snapshot.page(&PageRequest { limit, before })));
            if let Some(note) = &snapshot.note {
                notes.push(format!("storage {storage}: {note}"));
            }
            snapshots.insert(storage.to_string(), snapshot);
        }
        let mut out = merge(reads, limit);
        out.notes.extend(notes);
        for backup in &out.backups {
            let snapshot = &snapshots[&backup.storage];
            let key = (backup.storage.clone(), backup.summary.name.clone());
            if snapshot.pinned.contains(&backup.summary.name) {
                out.pinned.insert(key.clone());
            }
            if let Some(record) = snapshot.verified.get(&backup.summary.name) {
                out.verified.insert(key, record.clone());
            }
        }
        Ok((out, ListingStamp(serials)))
    }

    /// The newest complete backup of `sources`, as [`crate::listing::latest`] finds it,
    /// reading its pages from the kept listings (then its one summary).
    pub async fn latest(
        &self,
        sources: &[Source<'_>],
        local: u64,
    ) -> CoordinatorResult<Option<(usize, BackupSummary)>> {
        super::latest_from(sources, Some((self, local))).await
    }
}
