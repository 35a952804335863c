//! Garbage collection: delete the data no backup references any more, without stopping
//! a backup or a WAL push.
//!
//! It holds the garbage collection lock (`locks/gc/`, so two collections, index merges
//! and repairs never interleave), never the cluster lock: backups, WAL pushes, restores
//! and verifications run while it runs. It deletes in two phases (see
//! [`strata_repo::condemned`] for the protocol and why it is safe):
//!
//! 1. **Condemn.** It reads every backup's manifests and every archive record into the
//!    set of referenced blob ids (one node manifest at a time), and condemns the indexed
//!    packs none of them references (and mostly-garbage packs, whose live blobs it first
//!    copies to new packs, at most 4 GiB of them a run: the rest wait for the next): it writes the condemnation, lists the live writer marks, and
//!    arms the condemnation with them. From then on every writer stores those packs'
//!    blobs again instead of relying on them; readers still find them.
//! 2. **Sweep.** A condemnation whose writers have all ended (their summaries or archive
//!    records are visible then; a writer whose mark lapsed is fenced) is swept: the set
//!    of referenced ids is brought up to date (new backups and archive records only)
//!    and the index view too (packs written meanwhile hold blobs as well); for each
//!    referenced blob whose every copy is in a condemned pack, one of those packs (the
//!    lowest id) is kept (its condemnation simply goes); the others leave the index
//!    (index objects listing them are rewritten, at most
//!    [`strata_repo::index::MAX_PACKS_PER_OBJECT`] packs each, small ones merged), then
//!    are deleted. With no writer running, one run condemns and sweeps; otherwise the
//!    sweep happens in the first run after those writers ended.
//!
//! Each step is safe to interrupt: an unarmed condemnation is dropped by the next run,
//! an index rewrite writes the new objects before deleting the old ones, and packs are
//! deleted only once no index object lists them.
//!
//! **Memory.** Nothing it holds grows with the number of blobs: the referenced ids are
//! sorted on scratch disk ([`strata_repo::sorted_ids`], in a temporary directory of the
//! state directory, removed when the run ends) and joined with the index's copies in
//! blob id order ([`strata_repo::index::BlobIndex::copies`]), once to find each pack's
//! live and total bytes and once more, in the sweep, to rescue; index objects are read
//! and rewritten one at a time. What grows is per pack (a few dozen bytes each) and per
//! backup or archive record.
//!
//! **Writers it cannot see.** Packs that no index lists and manifests of backups without
//! a summary are deleted only once older than the grace period (`[gc] grace`, by the
//! storage's modification time): those are what a stalled writer may still be about to
//! index (its fence refuses it once its lease lapsed). Before every rewrite and delete,
//! the run checks that it still holds its lock; its deletes are fenced by it too.

use crate::lock::{chain, HeldLock, RepoLock};
use crate::{GcError, GcResult};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use strata_repo::condemned::{ArmedBy, Condemnation};
use strata_repo::id::PackId;
use strata_repo::index::{BlobIndex, BlobLocation, IndexedPack, MAX_PACKS_PER_OBJECT};
use strata_repo::layout;
use strata_repo::layout::pack_key;
use strata_repo::sorted_ids::{Scratch, SortedIds, SortedIdsBuilder};
use strata_repo::{BlobId, RepoError, Repository};

/// What a collection found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    /// Nothing was deleted or rewritten: the report says what a collection would do.
    pub dry_run: bool,
    /// Backups read for the blobs they reference.
    pub backups: usize,
    /// Blobs the backups and the archive records (WAL) reference: their packs stay.
    pub referenced_blobs: u64,
    /// Packs kept: those the index still lists.
    pub packs_kept: u64,
    /// Mostly-garbage packs whose live blobs were moved to new packs (then condemned).
    pub packs_repacked: u64,
    /// Packs condemned by this run (deleted by it too when no writer was running).
    #[serde(default)]
    pub packs_condemned: u64,
    /// Condemned packs that a backup or archive record referenced again: kept.
    #[serde(default)]
    pub packs_rescued: u64,
    /// Condemned packs still waiting for writers that were running when they were
    /// condemned (the next run deletes them).
    #[serde(default)]
    pub packs_waiting: u64,
    /// Packs deleted by this run (condemned earlier, or unindexed past the grace period).
    pub packs_deleted: u64,
    /// Packs no index lists, past the grace period, kept because a writer may still run
    /// (it may be about to index them, however long it has run): the first run with no
    /// writer running deletes them.
    #[serde(default)]
    pub unindexed_waiting: u64,
    /// Bytes of the deleted packs.
    pub bytes_freed: u64,
    /// Index objects rewritten into new ones (then deleted) to drop what the deleted packs held.
    pub index_objects_replaced: u64,
    /// Manifests, pins and verification records of backups that no longer exist.
    pub manifests_deleted: u64,
}

/// The grace period when the configuration names none (`[gc] grace`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// How long the garbage collection lock holds unless renewed.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// Collects garbage in `repo` (only reports with `dry_run`), with the default grace.
pub async fn collect_garbage(repo: &Arc<Repository>, dry_run: bool) -> GcResult<GcReport> {
    collect_garbage_with(repo, dry_run, DEFAULT_GRACE).await
}

/// Collects garbage in `repo`, sparing unindexed packs and summary-less manifests
/// younger than `grace`.
pub async fn collect_garbage_with(
    repo: &Arc<Repository>,
    dry_run: bool,
    grace: Duration,
) -> GcResult<GcReport> {
    let run = crate::run_name();
    let lock = take_gc_lock(repo, &run, "gc").await?;
    let result = collect(repo, dry_run, &lock, grace, &run).await;
    lock.release().await;
    let report = result?;
    if !dry_run {
        repo.reload_index().await?;
    }
    Ok(report)
}

/// Takes the garbage collection lock (`locks/gc/`) for `operation`, renewed until
/// released: held by collections, index merges and repairs, which rewrite index objects
/// or delete data, never by backups or WAL pushes.
pub async fn take_gc_lock(repo: &Repository, operation: &str, kind: &str) -> GcResult<HeldLock> {
    Ok(RepoLock::acquire_in(
        repo.store().clone(),
        chain::GC_CHAIN,
        operation,
        kind,
        LOCK_TTL,
    )
    .await?
    .keep_renewed())
}

/// The blob ids backups and archive records reference (sorted on scratch disk, see
/// [`strata_repo::sorted_ids`]: memory does not grow with them), and which backups and
/// records were read, so it can be brought up to date by reading only what appeared since.
struct Referenced {
    scratch: Arc<Scratch>,
    /// `None` before the first update.
    blobs: Option<SortedIds>,
    backups: HashSet<String>,
    archived: HashSet<String>,
}

/// A failure of the collection's scratch files on this host's disk.
fn scratch_error(scratch: &Scratch, err: std::io::Error) -> GcError {
    GcError::from(strata_store::StoreError::Backend {
        op: "write",
        key: scratch.path().display().to_string(),
        store: "this host's disk (garbage collection's scratch files)".into(),
        message: err.to_string(),
    })
}

/// Runs blocking work (reading or writing scratch files, walking the index) without
/// stalling the other tasks of a multi-threaded runtime.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl Referenced {
    fn new() -> GcResult<Referenced> {
        let scratch = Scratch::for_process("gc").map_err(|e| {
            GcError::from(strata_store::StoreError::Backend {
                op: "create",
                key: "gc scratch directory".into(),
                store: "this host's disk".into(),
                message: e.to_string(),
            })
        })?;
        Ok(Referenced {
            scratch,
            blobs: None,
            backups: HashSet::new(),
            archived: HashSet::new(),
        })
    }

    /// The referenced ids (after the first update).
    fn blobs(&self) -> &SortedIds {
        self.blobs.as_ref().expect("read before use")
    }

    fn count(&self) -> u64 {
        self.blobs.as_ref().map_or(0, SortedIds::len)
    }

    /// Reads the backups and archive records not read yet. Strict: a summary or
    /// manifest that does not decode stops the collection (it might reference anything).
    async fn update(&mut self, repo: &Repository) -> GcResult<usize> {
        let mut ids = match self.blobs.take() {
            Some(ids) => ids.extend(),
            None => SortedIdsBuilder::new(self.scratch.clone()),
        };
        let mut count = 0;
        for object in repo
            .store()
            .list_fresh(layout::SUMMARIES)
            .await
            .map_err(RepoError::from)?
        {
            let name = &object.key[layout::SUMMARIES.len()..];
            if self.backups.contains(name) {
                count += 1;
                continue;
            }
            // A backup deleted while this runs (deletes do not wait for collections)
            // references nothing any more: skipped, whichever object went first. (Ids of
            // its nodes read before it went stay in the set: they only keep data.)
            let summary = match repo.load_summary(name).await {
                Ok(summary) => summary,
                Err(RepoError::NoSuchBackup(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            let mut deleted = false;
            for node in summary.nodes.iter().filter(|n| n.has_manifest) {
                // Its chunk blobs (format version 4) and its files' data.
                let read = repo
                    .manifest_references(&summary.name, &node.name, |id| ids.push(*id))
                    .await;
                match read {
                    Ok(()) => {}
                    Err(RepoError::Store(e)) if e.is_not_found() => {
                        match repo.load_summary(name).await {
                            Err(RepoError::NoSuchBackup(_)) => {
                                deleted = true;
                                break;
                            }
                            _ => return Err(RepoError::Store(e).into()),
                        }
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            if !deleted {
                self.backups.insert(summary.name.clone());
                count += 1;
            }
        }
        // Files archived outside backups (WAL) keep their data too: one record at a time.
        for object in repo.store().list(layout::ARCHIVE).await? {
            let rest = object.key.trim_start_matches(layout::ARCHIVE);
            let Some((space, name)) = rest.split_once('/') else {
                continue;
            };
            let Some(file) = repo.load_archived(space, name).await? else {
                continue;
            };
            // A name stored again with other content is another record.
            let key = format!("{space}/{}/{}", file.name, file.content_id.to_hex());
            if self.archived.insert(key) {
                file.chunks.iter().for_each(|id| ids.push(*id));
            }
        }
        let sorted = blocking(|| ids.finish()).map_err(|e| scratch_error(&self.scratch, e))?;
        self.blobs = Some(sorted);
        Ok(count)
    }
}

/// A pack whose live blobs take less than this share of its blob bytes is repacked.
const REPACK_BELOW: f64 = 0.5;

/// Live bytes one run copies out of mostly-garbage packs at most (the packs beyond wait
/// for the next run), and live blobs: what bounds the time and memory of a repack.
const MAX_REPACK_BYTES: u64 = 4 << 30;
const MAX_REPACK_BLOBS: u64 = 1 << 20;

/// An index object listing at least this many packs, none of which goes, stays as it
/// is; smaller ones are merged into the objects a rewrite writes.
const STAYING_OBJECT_PACKS: usize = 256;

/// Walks every blob copy of the index (in blob id order) beside the sorted referenced
/// ids, a merge join: calls `each(id, copies, referenced)` once per blob a live pack
/// holds, and `missing(id)` for each referenced id no live pack holds.
fn join(
    index: &dyn BlobIndex,
    referenced: &SortedIds,
    mut each: impl FnMut(&BlobId, &[BlobLocation], bool),
    mut missing: impl FnMut(&BlobId),
) -> std::io::Result<()> {
    let mut refs = referenced.iter()?;
    let mut next_ref = refs.next();
    let mut copies = index.copies().peekable();
    let mut group: Vec<BlobLocation> = Vec::new();
    while let Some((id, first)) = copies.next() {
        group.clear();
        group.push(first);
        while let Some((_, more)) = copies.next_if(|(next, _)| *next == id) {
            group.push(more);
        }
        while let Some(r) = next_ref.filter(|r| *r < id) {
            missing(&r);
            next_ref = refs.next();
        }
        let is_referenced = next_ref == Some(id);
        if is_referenced {
            next_ref = refs.next();
        }
        each(&id, &group, is_referenced);
    }
    while let Some(r) = next_ref {
        missing(&r);
        next_ref = refs.next();
    }
    match refs.error() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The packs of an index view by position (see [`BlobIndex::pack`]): the objects with
/// their positions, and each live position's pack id and size.
struct Positions {
    objects: Vec<(String, Vec<u32>)>,
    /// Per position: the pack, when an object of the view lists it.
    packs: Vec<Option<(PackId, u64)>>,
    /// (pack id, position), sorted: from a pack id to its position.
    by_id: Vec<(PackId, u32)>,
}

impl Positions {
    fn of(index: &dyn BlobIndex) -> Positions {
        let mut objects = index.objects();
        objects.sort();
        let count = objects
            .iter()
            .flat_map(|(_, p)| p.iter())
            .max()
            .map_or(0, |&m| m as usize + 1);
        let mut packs = vec![None; count];
        for &position in objects.iter().flat_map(|(_, p)| p.iter()) {
            packs[position as usize] = Some(index.pack(position));
        }
        let mut by_id: Vec<(PackId, u32)> = packs
            .iter()
            .enumerate()
            .filter_map(|(p, pack)| pack.map(|(id, _)| (id, p as u32)))
            .collect();
        by_id.sort_unstable();
        Positions {
            objects,
            packs,
            by_id,
        }
    }

    fn position(&self, pack: &PackId) -> Option<u32> {
        self.by_id
            .binary_search_by(|(id, _)| id.cmp(pack))
            .ok()
            .map(|i| self.by_id[i].1)
    }

    fn live(&self) -> impl Iterator<Item = (u32, PackId, u64)> + '_ {
        self.packs
            .iter()
            .enumerate()
            .filter_map(|(p, pack)| pack.map(|(id, size)| (p as u32, id, size)))
    }

    /// Per position: whether the pack is among `sorted` pack ids.
    fn flags(&self, sorted: &[PackId]) -> Vec<bool> {
        self.packs
            .iter()
            .map(|p| p.is_some_and(|(id, _)| sorted.binary_search(&id).is_ok()))
            .collect()
    }
}

/// The object key of a view's object name (a refresh names objects with their size and
/// time as listed, `key#size-millis`).
fn object_key(name: &str) -> &str {
    name.split_once('#').map_or(name, |(key, _)| key)
}

/// The pack a `data/` key names, if it is a pack key.
fn pack_of_key(key: &str) -> Option<PackId> {
    let id = BlobId::from_hex(key.rsplit('/').next()?)?;
    (pack_key(&id) == key).then_some(id)
}

/// Refuses to go on when the view skipped index objects that do not decode: the packs
/// they list would look unindexed (and their blobs missing).
fn refuse_damaged_index(repo: &Repository) -> GcResult<()> {
    match repo.damaged_index().first() {
        Some(damaged) => Err(GcError::Repo(RepoError::Corrupted {
            what: damaged.key.clone(),
            why: damaged.reason.clone(),
        })),
        None => Ok(()),
    }
}

/// Copies the referenced blobs `ids` (of mostly-garbage packs) into new packs (read,
/// checked, sealed again); returns whether any was copied.
async fn move_live_blobs(repo: &Arc<Repository>, ids: &[BlobId]) -> GcResult<bool> {
    let writer = Arc::new(strata_repo::writer::BlobWriter::start(
        repo.clone(),
        strata_repo::writer::WriterOptions::default(),
    ));
    for id in ids {
        let data = repo.read_blob(id).await?;
        let (w, id) = (writer.clone(), *id);
        tokio::task::spawn_blocking(move || w.rewrite(id, bytes::Bytes::from(data)))
            .await
            .expect("repack thread panicked")?;
    }
    let writer = Arc::into_inner(writer).expect("repack submissions are done");
    writer.finish().await?;
    Ok(!ids.is_empty())
}

/// Whether an object listed with `modified` is younger than `grace` at the storage's time
/// `now_ms` (unknown: young). Both times are the storage's clock, never this host's.
fn is_young(modified: Option<SystemTime>, now_ms: u64, grace: Duration) -> bool {
    match modified {
        Some(t) => now_ms.saturating_sub(crate::lock::clock::ms(t)) < grace.as_millis() as u64,
        None => true,
    }
}

/// The operation names of the writers (backups, copies, WAL pushes) that may still run
/// or still have writes in flight (see [`crate::lock::running_writers`]).
async fn running_writers(repo: &Repository) -> GcResult<HashSet<String>> {
    Ok(crate::lock::running_writers(repo.store())
        .await?
        .into_iter()
        .map(|r| r.operation)
        .collect())
}

/// Whether objects no index or summary names yet may be deleted now: only when no writer
/// may still run, since any of them may be about to name them, however long it has run.
/// Call after listing those objects and before reading the index or summaries that
/// decide they are unnamed: a writer that ended in between named its objects first.
async fn no_writer_may_name(repo: &Repository) -> GcResult<bool> {
    if crate::lock::test_unsafe("unindexed-by-age") {
        // Negative control: the rule before this one (age alone).
        return Ok(true);
    }
    Ok(running_writers(repo).await?.is_empty())
}

/// What the first phase found in the view: the packs to condemn (with their sizes), the
/// mostly-garbage ones to repack (as positions), and how many packs the view lists.
struct Found {
    condemn: Vec<(PackId, u64)>,
    repack: Vec<(u32, PackId)>,
    listed: u64,
}

/// The first phase's merge join: per pack, its live and total bytes; the packs with no
/// referenced blob are condemned, those mostly garbage repacked (at most
/// [`MAX_REPACK_BYTES`] and [`MAX_REPACK_BLOBS`] of live data per run). A referenced id
/// no pack holds is returned instead (`Ok(Err(id))`).
fn find_garbage(
    index: &dyn BlobIndex,
    referenced: &SortedIds,
    already: &[PackId],
    scratch: &Scratch,
) -> GcResult<Result<Found, BlobId>> {
    let positions = Positions::of(index);
    let count = positions.packs.len();
    let (mut total, mut live, mut live_blobs) =
        (vec![0u64; count], vec![0u64; count], vec![0u64; count]);
    let mut missing: Option<BlobId> = None;
    join(
        index,
        referenced,
        |_, copies, is_referenced| {
            for copy in copies {
                let p = copy.pack as usize;
                if p >= count {
                    continue;
                }
                total[p] += copy.length as u64;
                if is_referenced {
                    live[p] += copy.length as u64;
                    live_blobs[p] += 1;
                }
            }
        },
        |id| {
            missing.get_or_insert(*id);
        },
    )
    .map_err(|e| scratch_error(scratch, e))?;
    if let Some(missing) = missing {
        return Ok(Err(missing));
    }
    let mut found = Found {
        condemn: Vec::new(),
        repack: Vec::new(),
        listed: 0,
    };
    let (mut repack_bytes, mut repack_blobs) = (0u64, 0u64);
    for (p, id, size) in positions.live() {
        found.listed += 1;
        if already.binary_search(&id).is_ok() {
            continue;
        }
        let p_ = p as usize;
        if live_blobs[p_] == 0 {
            found.condemn.push((id, size));
        } else if (live[p_] as f64) < REPACK_BELOW * total[p_] as f64 {
            let fits = repack_bytes + live[p_] <= MAX_REPACK_BYTES
                && repack_blobs + live_blobs[p_] <= MAX_REPACK_BLOBS;
            if fits || found.repack.is_empty() {
                repack_bytes += live[p_];
                repack_blobs += live_blobs[p_];
                found.repack.push((p, id));
            }
        }
    }
    Ok(Ok(found))
}

/// The referenced ids with a copy in one of the packs at `positions` (a second pass of
/// the join, for a repack).
fn live_blobs_of(
    index: &dyn BlobIndex,
    referenced: &SortedIds,
    positions: &[u32],
    scratch: &Scratch,
) -> GcResult<Vec<BlobId>> {
    let mut chosen = Vec::new();
    join(
        index,
        referenced,
        |id, copies, is_referenced| {
            if is_referenced && copies.iter().any(|c| positions.contains(&c.pack)) {
                chosen.push(*id);
            }
        },
        |_| {},
    )
    .map_err(|e| scratch_error(scratch, e))?;
    Ok(chosen)
}

/// The sweep's merge join: every referenced blob keeps a holder that stays. A blob whose
/// every copy is in a doomed pack has one of them (the lowest pack id) rescued. Returns
/// the rescued packs.
fn rescue(
    index: &dyn BlobIndex,
    positions: &Positions,
    referenced: &SortedIds,
    doomed: &[PackId],
    scratch: &Scratch,
) -> GcResult<Vec<PackId>> {
    let mut doomed_at = positions.flags(doomed);
    let mut rescued = Vec::new();
    let pack_at = |p: u32| positions.packs.get(p as usize).copied().flatten();
    join(
        index,
        referenced,
        |_, copies, is_referenced| {
            let doomed_copy = |c: &BlobLocation| doomed_at.get(c.pack as usize) == Some(&true);
            if !is_referenced || !copies.iter().all(doomed_copy) {
                return;
            }
            let keep = copies
                .iter()
                .filter_map(|c| pack_at(c.pack).map(|(id, _)| (id, c.pack)))
                .min();
            if let Some((id, p)) = keep {
                doomed_at[p as usize] = false;
                rescued.push(id);
            }
        },
        |_| {},
    )
    .map_err(|e| scratch_error(scratch, e))?;
    Ok(rescued)
}

async fn collect(
    repo: &Arc<Repository>,
    dry_run: bool,
    lock: &HeldLock,
    grace: Duration,
    run: &str,
) -> GcResult<GcReport> {
    let store = repo.store();
    repo.reload_index().await?;
    refuse_damaged_index(repo)?;
    let mut referenced = Referenced::new()?;
    let backups = referenced.update(repo).await?;
    let (condemnations, damaged) = repo.condemnations().await?;
    let mut already: Vec<PackId> = condemnations
        .iter()
        .flat_map(|c| c.condemnation.packs.iter().copied())
        .collect();
    already.sort_unstable();
    already.dedup();

    // Phase 1: condemn what no backup references, and mostly-garbage packs. The index was
    // read before the summaries and archive records: one that became visible in between
    // relies on index objects the view lacks. Read again, the index has them (a writer
    // writes its index objects before its summary or record); a blob it still lacks
    // refuses the collection.
    let find = || {
        blocking(|| {
            find_garbage(
                &**repo.index(),
                referenced.blobs(),
                &already,
                &referenced.scratch,
            )
        })
    };
    let found = match find()? {
        Ok(found) => found,
        Err(_) => {
            repo.reload_index().await?;
            refuse_damaged_index(repo)?;
            find()?.map_err(|missing| {
                GcError::NeedsRepair(format!(
                    "a backup references blob {} that the index lacks: the repository needs repair, so nothing was deleted (run `strata verify`)",
                    missing.short()
                ))
            })?
        }
    };
    let mut condemn: Vec<PackId> = found.condemn.iter().map(|(id, _)| *id).collect();
    let mut report = GcReport {
        dry_run,
        backups,
        referenced_blobs: referenced.count(),
        packs_repacked: found.repack.len() as u64,
        packs_condemned: (found.condemn.len() + found.repack.len()) as u64,
        ..GcReport::default()
    };
    let mut repacked = false;
    let mut condemnations = condemnations;
    if !dry_run && (!condemn.is_empty() || !found.repack.is_empty()) {
        if !found.repack.is_empty() {
            let mut positions: Vec<u32> = found.repack.iter().map(|(p, _)| *p).collect();
            positions.sort_unstable();
            let ids = blocking(|| {
                live_blobs_of(
                    &**repo.index(),
                    referenced.blobs(),
                    &positions,
                    &referenced.scratch,
                )
            })?;
            lock.check()?;
            repacked = move_live_blobs(repo, &ids).await?;
            condemn.extend(found.repack.iter().map(|(_, id)| *id));
        }
        condemn.sort();
        let condemnation = Condemnation {
            run: run.to_string(),
            created_ms: crate::lock::now_ms(),
            packs: condemn,
        };
        lock.check()?;
        repo.write_condemnation(&condemnation).await?;
        // Listed after the condemnation exists: a writer not among these read the
        // index after it, and does not rely on its packs.
        let mut writers: Vec<String> = running_writers(repo).await?.into_iter().collect();
        writers.sort();
        let armed = ArmedBy {
            run: run.to_string(),
            writers,
        };
        lock.check()?;
        repo.arm_condemnation(&armed).await?;
        condemnations.push(strata_repo::condemned::Found {
            condemnation,
            armed_by: Some(armed),
        });
    } else if dry_run {
        // A dry run reports what a run with no writer running would delete.
        for (_, size) in &found.condemn {
            report.packs_deleted += 1;
            report.bytes_freed += size;
        }
    }

    // Phase 2: sweep the condemnations whose writers have all ended. The referenced set
    // is brought up to date after the writers were listed: a writer that ended before
    // made its backup or archive record visible first.
    let running = running_writers(repo).await?;
    referenced.update(repo).await?;
    report.referenced_blobs = referenced.count();
    let mut swept_runs: Vec<String> = damaged;
    let mut doomed: Vec<PackId> = Vec::new();
    for found in &condemnations {
        let c = &found.condemnation;
        match &found.armed_by {
            None if c.run != run => {
                // Left by a collection stopped before arming it: dropped, its packs
                // are condemned again if they still are garbage.
                swept_runs.push(c.run.clone());
                continue;
            }
            None => continue,
            Some(armed) if armed.writers.iter().any(|w| running.contains(w)) => {
                report.packs_waiting += c.packs.len() as u64;
                continue;
            }
            Some(_) => {}
        }
        doomed.extend(c.packs.iter().copied());
        swept_runs.push(c.run.clone());
    }
    doomed.sort_unstable();
    doomed.dedup();
    // A swept pack goes unless it holds a referenced blob no pack that stays holds (a
    // backup relied on it after all): such a pack is rescued and stays. The view is
    // brought up to date first, so packs written meanwhile (a repack's new packs, a
    // backup's) count as holders. A repacked pack's live blobs are in the new packs, so
    // it goes.
    repo.reload_index().await?;
    refuse_damaged_index(repo)?;
    let (positions, rescued) = blocking(|| {
        let index = repo.index();
        let positions = Positions::of(&**index);
        let rescued = if doomed.is_empty() {
            Vec::new()
        } else {
            rescue(
                &**index,
                &positions,
                referenced.blobs(),
                &doomed,
                &referenced.scratch,
            )?
        };
        GcResult::Ok((positions, rescued))
    })?;
    report.packs_rescued = rescued.len() as u64;
    doomed.retain(|id| !rescued.contains(id));
    if dry_run {
        report.packs_kept = found.listed - report.packs_deleted;
        report.manifests_deleted = orphans(repo, &mut referenced, grace).await?.len() as u64;
        return Ok(report);
    }

    // The index objects listing a doomed pack are rewritten without it (small ones
    // merged), the new objects first; one object is read at a time, and the kept packs
    // are written as objects of at most MAX_PACKS_PER_OBJECT packs as they fill.
    let doomed_at = positions.flags(&doomed);
    let lists_doomed = |packs: &[u32]| {
        packs
            .iter()
            .any(|&p| doomed_at.get(p as usize) == Some(&true))
    };
    let replaced: Vec<&(String, Vec<u32>)> = positions
        .objects
        .iter()
        .filter(|(_, packs)| lists_doomed(packs) || packs.len() < STAYING_OBJECT_PACKS)
        .collect();
    let rewrite =
        replaced.iter().any(|(_, packs)| lists_doomed(packs)) || replaced.len() > 1 || repacked;
    if rewrite {
        let mut staying = vec![false; positions.packs.len()];
        for (name, packs) in &positions.objects {
            if !replaced.iter().any(|(r, _)| r == name) {
                packs.iter().for_each(|&p| staying[p as usize] = true);
            }
        }
        let mut kept_at = vec![false; positions.packs.len()];
        let mut kept: Vec<IndexedPack> = Vec::new();
        let mut written: Vec<String> = Vec::new();
        let mut keys: Vec<&str> = replaced.iter().map(|(name, _)| object_key(name)).collect();
        keys.dedup();
        for key in &keys {
            let file = repo.read_index(key).await?;
            for pack in file.packs {
                if doomed.binary_search(&pack.id).is_ok() {
                    continue;
                }
                if let Some(p) = positions.position(&pack.id) {
                    if staying[p as usize] || kept_at[p as usize] {
                        continue;
                    }
                    kept_at[p as usize] = true;
                }
                kept.push(pack);
                if kept.len() >= MAX_PACKS_PER_OBJECT {
                    lock.check()?;
                    written.extend(repo.write_index_objects(std::mem::take(&mut kept)).await?);
                }
            }
        }
        if !kept.is_empty() {
            lock.check()?;
            written.extend(repo.write_index_objects(kept).await?);
        }
        for key in &keys {
            if !written.iter().any(|w| w == key) {
                lock.check()?;
                store.delete(key).await?;
            }
        }
        report.index_objects_replaced = keys.len() as u64;
    }
    // Doomed packs (no index lists them now) go. Packs no index lists go only when they
    // are older than the grace period by the storage's clock and no writer may still run:
    // the listing first, then the writers, then the index that says they are unindexed.
    let mut indexed: Vec<PackId> = positions
        .live()
        .map(|(_, id, _)| id)
        .filter(|id| doomed.binary_search(id).is_err())
        .collect();
    indexed.sort_unstable();
    let listed = repo.list_packs().await?;
    let now = crate::lock::clock::storage_now_ms(store).await?;
    let mut delete: Vec<(String, u64)> = Vec::new();
    // (A key under data/ that names no pack is a stray: it goes by the same rule.)
    let mut unindexed: Vec<(Option<PackId>, String, u64)> = Vec::new();
    for o in listed {
        match pack_of_key(&o.key) {
            Some(id) if indexed.binary_search(&id).is_ok() => {}
            Some(id) if doomed.binary_search(&id).is_ok() => delete.push((o.key, o.size)),
            pack if !is_young(o.modified, now, grace) => unindexed.push((pack, o.key, o.size)),
            _ => {}
        }
    }
    if !unindexed.is_empty() {
        if no_writer_may_name(repo).await? {
            repo.reload_index().await?;
            refuse_damaged_index(repo)?;
            let now_indexed = Positions::of(&**repo.index());
            delete.extend(
                unindexed
                    .into_iter()
                    .filter(|(id, _, _)| id.is_none_or(|id| now_indexed.position(&id).is_none()))
                    .map(|(_, key, size)| (key, size)),
            );
        } else {
            report.unindexed_waiting = unindexed.len() as u64;
        }
    }
    delete.sort();
    for (key, size) in &delete {
        lock.check()?;
        store.delete(key).await?;
        report.packs_deleted += 1;
        report.bytes_freed += size;
    }
    for swept in &swept_runs {
        lock.check()?;
        repo.remove_condemnation(swept).await?;
    }
    let orphans = orphans(repo, &mut referenced, grace).await?;
    for key in &orphans {
        lock.check()?;
        store.delete(key).await?;
    }
    report.manifests_deleted = orphans.len() as u64;
    report.packs_kept = indexed.len() as u64;
    Ok(report)
}

/// Manifests, pins and verification records of backups that no longer exist. A
/// manifest of a backup with no summary goes only once older than the grace period by
/// the storage's clock and when no writer may still run (any may be about to write its
/// summary, however long it has run): the listing first, then the writers, then the
/// summaries again.
async fn orphans(
    repo: &Repository,
    referenced: &mut Referenced,
    grace: Duration,
) -> GcResult<Vec<String>> {
    let mut listed = Vec::new();
    for prefix in [layout::MANIFESTS, layout::PINS, layout::VERIFIED] {
        for object in repo.store().list_fresh(prefix).await? {
            let backup = object.key[prefix.len()..]
                .split('/')
                .next()
                .map(str::to_string);
            listed.push((prefix, backup, object));
        }
    }
    let unnamed = |referenced: &Referenced, backup: &Option<String>| {
        !backup
            .as_ref()
            .is_some_and(|b| referenced.backups.contains(b))
    };
    if !listed
        .iter()
        .any(|(_, backup, _)| unnamed(referenced, backup))
    {
        return Ok(Vec::new());
    }
    let now = crate::lock::clock::storage_now_ms(repo.store()).await?;
    let manifests_may_go = no_writer_may_name(repo).await?;
    if manifests_may_go {
        referenced.update(repo).await?;
    }
    Ok(listed
        .into_iter()
        .filter(|(prefix, backup, object)| {
            let manifest = *prefix == layout::MANIFESTS;
            unnamed(referenced, backup)
                && (!manifest || (manifests_may_go && !is_young(object.modified, now, grace)))
        })
        .map(|(_, _, object)| object.key)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use strata_repo::index::{IndexFile, MemoryIndex};
    use strata_repo::pack::PackEntry;
    use strata_repo::sorted_ids::SortedIdsBuilder;
    use strata_store::{DynStore, LocalStore};

    /// A small deterministic generator (the cases must not depend on a seed source).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn blob(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    /// The joins against a plain computation over random views (blobs in several packs,
    /// packs in several objects, referenced ids some of which no pack holds): the
    /// liveness per pack, the missing ids, and after a rescue, a holder that stays for
    /// every referenced blob a pack holds, rescuing only doomed packs.
    #[test]
    fn the_joins_agree_with_sets_and_leave_every_referenced_blob_a_holder() {
        let scratch = Scratch::new_in(&std::env::temp_dir(), "gc-join-test").unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..150 {
            let (packs, blobs) = (1 + rng.below(12), 1 + rng.below(40));
            let mut index = MemoryIndex::default();
            let mut holders: BTreeMap<BlobId, BTreeSet<PackId>> = BTreeMap::new();
            let mut bytes: BTreeMap<PackId, (u64, u64)> = BTreeMap::new();
            let referenced: BTreeSet<BlobId> = (0..blobs + 5)
                .filter(|_| rng.below(3) > 0)
                .map(blob)
                .collect();
            let mut objects = Vec::new();
            for p in 0..packs {
                let id = blob(1_000_000 + case * 100 + p);
                let mut entries: Vec<PackEntry> = (0..rng.below(8))
                    .map(|_| blob(rng.below(blobs)))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|b| PackEntry {
                        id: b,
                        offset: 0,
                        length: 1 + rng.below(100) as u32,
                        raw_length: 1,
                        compressed: false,
                    })
                    .collect();
                entries.sort_by_key(|e| e.id);
                let (mut live, mut total) = (0, 0);
                for e in &entries {
                    holders.entry(e.id).or_default().insert(id);
                    total += e.length as u64;
                    if referenced.contains(&e.id) {
                        live += e.length as u64;
                    }
                }
                bytes.insert(id, (live, total));
                objects.push(IndexedPack {
                    id,
                    size: 1,
                    blobs: entries,
                });
            }
            for (n, chunk) in objects.chunks(3).enumerate() {
                let file = IndexFile {
                    packs: chunk.to_vec(),
                };
                index.add_object(&format!("index/{n}"), &file);
            }
            let mut ids = SortedIdsBuilder::with_buffer(scratch.clone(), 7, None);
            referenced.iter().for_each(|id| ids.push(*id));
            let ids = ids.finish().unwrap();

            let found = find_garbage(&index, &ids, &[], &scratch).unwrap();
            let missing: Vec<&BlobId> = referenced
                .iter()
                .filter(|id| !holders.contains_key(id))
                .collect();
            match found {
                Err(id) => assert!(missing.contains(&&id), "case {case}: refused for {id:?}"),
                Ok(found) => {
                    assert!(missing.is_empty(), "case {case}: missing ids not seen");
                    let condemned: BTreeSet<PackId> =
                        found.condemn.iter().map(|(id, _)| *id).collect();
                    for (id, (live, total)) in &bytes {
                        let has_live = holders
                            .iter()
                            .any(|(b, h)| h.contains(id) && referenced.contains(b));
                        assert_eq!(condemned.contains(id), !has_live, "case {case}");
                        let repacked = found.repack.iter().any(|(_, p)| p == id);
                        let mostly_garbage =
                            has_live && (*live as f64) < REPACK_BELOW * *total as f64;
                        assert_eq!(repacked, mostly_garbage, "case {case}");
                    }
                }
            }

            // The sweep: a random doomed set, then the rescue.
            let doomed: Vec<PackId> = {
                let mut d: Vec<PackId> = bytes
                    .keys()
                    .filter(|_| rng.below(2) == 0)
                    .copied()
                    .collect();
                d.sort();
                d
            };
            let positions = Positions::of(&index);
            let rescued = rescue(&index, &positions, &ids, &doomed, &scratch).unwrap();
            let staying = |p: &PackId| doomed.binary_search(p).is_err() || rescued.contains(p);
            for r in &rescued {
                assert!(doomed.contains(r), "case {case}: rescued a pack not doomed");
            }
            for (b, h) in &holders {
                if referenced.contains(b) {
                    assert!(
                        h.iter().any(staying),
                        "case {case}: a referenced blob lost every holder"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn young_unindexed_packs_and_summaryless_manifests_wait_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let options = strata_testkit::repo::fast_init();
        let repo = Repository::init(store.clone(), Some("pw"), options)
            .await
            .unwrap();
        // What a backup stalled past its lock's TTL leaves: a pack uploaded but not yet
        // indexed, and a manifest whose summary is not written yet.
        let pack = format!("data/ab/ab{}", "0".repeat(62));
        let manifest = "manifests/20261125T000000Z-0123abcd/db1";
        for key in [pack.as_str(), manifest] {
            store
                .put(key, bytes::Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let report = collect_garbage_with(&repo, false, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((report.packs_deleted, report.manifests_deleted), (0, 0));
        for key in [pack.as_str(), manifest] {
            assert!(
                store.get(key).await.is_ok(),
                "{key} deleted within the grace"
            );
        }
        // Past the grace period they are leftovers, and go.
        let report = collect_garbage_with(&repo, false, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!((report.packs_deleted, report.manifests_deleted), (1, 1));
        for key in [pack.as_str(), manifest] {
            assert!(
                store.get(key).await.unwrap_err().is_not_found(),
                "{key} kept"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_that_appears_after_the_index_was_read_is_not_a_missing_blob() {
        use strata_testkit::intercept::{Intercept, Request};
        let dir = tempfile::tempdir().unwrap();
        let local: DynStore = Arc::new(LocalStore::new(dir.path()));
        Repository::init(local.clone(), Some("pw"), strata_testkit::repo::fast_init())
            .await
            .unwrap();
        let other = Repository::open(local.clone(), Some("pw")).await.unwrap();
        // A WAL push finishes between gc's read of the index and its list of the
        // summaries and records (the moment gc lists the summaries): its index object and
        // record are both new to gc.
        let once = std::sync::atomic::AtomicBool::new(false);
        let intercept = Intercept::new(local, move |request, prefix| {
            let first = request == Request::ListFresh
                && prefix == layout::SUMMARIES
                && !once.swap(true, std::sync::atomic::Ordering::SeqCst);
            let other = other.clone();
            Box::pin(async move {
                if first {
                    let writer = strata_repo::writer::BlobWriter::start(
                        other.clone(),
                        strata_repo::writer::WriterOptions::default(),
                    );
                    let data = vec![7u8; 100_000];
                    let (o, file) = (other.clone(), "000000010000000000000001");
                    let (writer, record) = tokio::task::spawn_blocking(move || {
                        let record = strata_repo::archive::store_file(&o, &writer, file, &data);
                        (writer, record.unwrap())
                    })
                    .await
                    .unwrap();
                    writer.finish().await.unwrap();
                    other.save_archived("wal", &record).await.unwrap();
                }
            })
        });
        // Another location than `local`: the process shares one index view per location,
        // and gc's must not see what the other writer adds to it.
        let store: DynStore = Arc::new(intercept.as_another_process("as gc sees it"));
        let repo = Repository::open(store, Some("pw")).await.unwrap();
        let report = collect_garbage_with(&repo, false, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.packs_deleted, 0, "{report:?}");
        assert!(report.referenced_blobs > 0, "{report:?}");
        let record = repo
            .load_archived("wal", "000000010000000000000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            repo.read_archived(&record).await.unwrap(),
            vec![7u8; 100_000]
        );
    }
}
