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
//!    copies to new packs): it writes the condemnation, lists the live writer marks, and
//!    arms the condemnation with them. From then on every writer stores those packs'
//!    blobs again instead of relying on them; readers still find them.
//! 2. **Sweep.** A condemnation whose writers have all ended (their summaries or archive
//!    records are visible then; a writer whose mark lapsed is fenced) is swept: the set
//!    of referenced ids is brought up to date (new backups and archive records only),
//!    condemned packs holding a referenced blob that no staying pack holds are kept (the
//!    condemnation simply goes), the others leave the index (index objects listing them are rewritten, at most
//!    [`strata_repo::index::MAX_PACKS_PER_OBJECT`] packs each, small ones merged), then
//!    are deleted. With no writer running, one run condemns and sweeps; otherwise the
//!    sweep happens in the first run after those writers ended.
//!
//! Each step is safe to interrupt: an unarmed condemnation is dropped by the next run,
//! an index rewrite writes the new objects before deleting the old ones, and packs are
//! deleted only once no index object lists them.
//!
//! **Writers it cannot see.** Packs that no index lists and manifests of backups without
//! a summary are deleted only once older than the grace period (`[gc] grace`, by the
//! storage's modification time): those are what a stalled writer may still be about to
//! index (its fence refuses it once its lease lapsed). Before every rewrite and delete,
//! the run checks that it still holds its lock; its deletes are fenced by it too.

use crate::lock::{chain, HeldLock, RepoLock};
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use strata_repo::condemned::{ArmedBy, Condemnation};
use strata_repo::id::{pack_key, PackId};
use strata_repo::index::{IndexFile, IndexedPack};
use strata_repo::layout;
use strata_repo::{BlobId, RepoError, Repository};

/// What a collection found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    pub dry_run: bool,
    pub backups: usize,
    pub referenced_blobs: u64,
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
    pub packs_deleted: u64,
    /// Bytes of the deleted packs.
    pub bytes_freed: u64,
    pub index_objects_replaced: u64,
    /// Manifests, pins and verification records of backups that no longer exist.
    pub manifests_deleted: u64,
}

/// The grace period when the configuration names none (see [`crate::config::GcConfig`]).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// How long the garbage collection lock holds unless renewed.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// Collects garbage in `repo` (only reports with `dry_run`), with the default grace.
pub async fn collect_garbage(repo: &Arc<Repository>, dry_run: bool) -> CoordinatorResult<GcReport> {
    collect_garbage_with(repo, dry_run, DEFAULT_GRACE).await
}

/// Collects garbage in `repo`, sparing unindexed packs and summary-less manifests
/// younger than `grace`.
pub async fn collect_garbage_with(
    repo: &Arc<Repository>,
    dry_run: bool,
    grace: Duration,
) -> CoordinatorResult<GcReport> {
    let run = format!("gc-{}", crate::names::new_backup_name());
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
pub async fn take_gc_lock(
    repo: &Repository,
    operation: &str,
    kind: &str,
) -> CoordinatorResult<HeldLock> {
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

/// The blob ids backups and archive records reference, and which of them were read, so
/// it can be brought up to date by reading only what appeared since.
#[derive(Default)]
struct Referenced {
    blobs: HashSet<BlobId>,
    backups: HashSet<String>,
    archived: HashSet<String>,
}

impl Referenced {
    /// Reads the backups and archive records not read yet. Strict: a summary or
    /// manifest that does not decode stops the collection (it might reference anything).
    async fn update(&mut self, repo: &Repository) -> CoordinatorResult<usize> {
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
            // references nothing any more: skipped, whichever object went first.
            let summary = match repo.load_summary(name).await {
                Ok(summary) => summary,
                Err(RepoError::NoSuchBackup(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            let mut deleted = false;
            for node in summary.nodes.iter().filter(|n| n.has_manifest) {
                // Its chunk blobs (format version 4) and its files' data.
                let blobs = &mut self.blobs;
                let read = repo
                    .manifest_references(&summary.name, &node.name, |id| {
                        blobs.insert(*id);
                    })
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
        // Files archived outside backups (WAL) keep their data too.
        for (space, file) in repo.all_archived().await? {
            // A name stored again with other content is another record.
            let key = format!("{space}/{}/{}", file.name, file.content_id.to_hex());
            if self.archived.insert(key) {
                self.blobs.extend(file.chunks.iter().copied());
            }
        }
        Ok(count)
    }
}

/// A pack whose live blobs take less than this share of its blob bytes is repacked.
const REPACK_BELOW: f64 = 0.5;

/// An index object listing at least this many packs, none of which goes, stays as it
/// is; smaller ones are merged into the objects a rewrite writes.
const STAYING_OBJECT_PACKS: usize = 256;

/// Copies the referenced blobs of `packs` into new packs (read, checked, sealed again);
/// returns the new packs as indexed.
async fn move_live_blobs(
    repo: &Arc<Repository>,
    packs: &[IndexedPack],
    referenced: &HashSet<BlobId>,
) -> CoordinatorResult<Vec<IndexedPack>> {
    let before: HashSet<PackId> = repo.index().packs().iter().map(|(id, _)| *id).collect();
    let writer = Arc::new(strata_repo::writer::BlobWriter::start(
        repo.clone(),
        strata_repo::writer::WriterOptions::default(),
    ));
    for pack in packs {
        for entry in pack.blobs.iter().filter(|b| referenced.contains(&b.id)) {
            let data = repo.read_blob(&entry.id).await?;
            let (w, id) = (writer.clone(), entry.id);
            tokio::task::spawn_blocking(move || w.rewrite(id, bytes::Bytes::from(data)))
                .await
                .expect("repack thread panicked")?;
        }
    }
    let writer = Arc::into_inner(writer).expect("repack submissions are done");
    writer.finish().await?;
    let mut moved = Vec::new();
    for (_, file) in repo.index_files().await? {
        moved.extend(file.packs.into_iter().filter(|p| !before.contains(&p.id)));
    }
    Ok(moved)
}

/// Whether an object listed with `modified` is younger than `grace` (unknown: young).
fn is_young(modified: Option<SystemTime>, grace: Duration) -> bool {
    match modified {
        Some(t) => SystemTime::now()
            .duration_since(t)
            .map_or(true, |age| age < grace),
        None => true,
    }
}

/// The operation names of the live writer marks (backups, WAL pushes).
async fn live_writers(repo: &Repository) -> CoordinatorResult<HashSet<String>> {
    Ok(crate::lock::live_archive_writers(repo.store())
        .await?
        .into_iter()
        .map(|r| r.operation)
        .collect())
}

async fn collect(
    repo: &Arc<Repository>,
    dry_run: bool,
    lock: &HeldLock,
    grace: Duration,
    run: &str,
) -> CoordinatorResult<GcReport> {
    let store = repo.store();
    repo.reload_index().await?;
    let mut referenced = Referenced::default();
    let backups = referenced.update(repo).await?;
    let missing = {
        let index = repo.index();
        referenced
            .blobs
            .iter()
            .find(|id| index.get(id).is_none())
            .copied()
    };
    if let Some(missing) = missing {
        return Err(CoordinatorError::NothingToDo(format!(
            "a backup references blob {} that the index lacks: the repository needs repair, so nothing was deleted (run `strata verify`)",
            missing.short()
        )));
    }
    let index_files = repo.index_files().await?;
    let mut packs: HashMap<PackId, IndexedPack> = HashMap::new();
    for (_, file) in &index_files {
        for pack in &file.packs {
            packs.entry(pack.id).or_insert_with(|| pack.clone());
        }
    }
    let (condemnations, damaged) = repo.condemnations().await?;
    let already: HashSet<PackId> = condemnations
        .iter()
        .flat_map(|c| c.condemnation.packs.iter().copied())
        .collect();
    let is_live = |p: &IndexedPack, referenced: &HashSet<BlobId>| {
        p.blobs.iter().any(|b| referenced.contains(&b.id))
    };

    // Phase 1: condemn what no backup references, and mostly-garbage packs.
    let mut condemn: Vec<PackId> = Vec::new();
    let mut repack: Vec<IndexedPack> = Vec::new();
    for pack in packs.values().filter(|p| !already.contains(&p.id)) {
        if !is_live(pack, &referenced.blobs) {
            condemn.push(pack.id);
            continue;
        }
        let total: u64 = pack.blobs.iter().map(|b| b.length as u64).sum();
        let live: u64 = pack
            .blobs
            .iter()
            .filter(|b| referenced.blobs.contains(&b.id))
            .map(|b| b.length as u64)
            .sum();
        if (live as f64) < REPACK_BELOW * total as f64 {
            repack.push(pack.clone());
        }
    }
    let mut report = GcReport {
        dry_run,
        backups,
        referenced_blobs: referenced.blobs.len() as u64,
        packs_repacked: repack.len() as u64,
        packs_condemned: (condemn.len() + repack.len()) as u64,
        ..GcReport::default()
    };
    let mut new_index_packs: Vec<IndexedPack> = Vec::new();
    let mut condemnations = condemnations;
    if !dry_run && (!condemn.is_empty() || !repack.is_empty()) {
        if !repack.is_empty() {
            lock.check()?;
            new_index_packs = move_live_blobs(repo, &repack, &referenced.blobs).await?;
            condemn.extend(repack.iter().map(|p| p.id));
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
        let mut writers: Vec<String> = live_writers(repo).await?.into_iter().collect();
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
        for id in &condemn {
            report.packs_deleted += 1;
            report.bytes_freed += packs[id].size;
        }
    }

    // Phase 2: sweep the condemnations whose writers have all ended. The referenced set
    // is brought up to date after the writers were listed: a writer that ended before
    // made its backup or archive record visible first.
    let running = live_writers(repo).await?;
    referenced.update(repo).await?;
    report.referenced_blobs = referenced.blobs.len() as u64;
    let mut swept_runs: Vec<String> = damaged;
    let mut doomed: HashSet<PackId> = HashSet::new();
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
    // A swept pack goes unless it holds a referenced blob no pack that stays holds (a
    // backup relied on it after all): such a pack is rescued and stays. A repacked pack's
    // live blobs are in the new packs, so it goes.
    let mut elsewhere: HashSet<BlobId> = packs
        .values()
        .chain(new_index_packs.iter())
        .filter(|p| !doomed.contains(&p.id))
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .filter(|id| referenced.blobs.contains(id))
        .collect();
    let mut candidates: Vec<PackId> = doomed.iter().copied().collect();
    candidates.sort();
    for id in candidates {
        let Some(pack) = packs.get(&id) else {
            continue;
        };
        let needed = pack
            .blobs
            .iter()
            .any(|b| referenced.blobs.contains(&b.id) && !elsewhere.contains(&b.id));
        if needed {
            doomed.remove(&id);
            report.packs_rescued += 1;
            elsewhere.extend(pack.blobs.iter().map(|b| b.id));
        }
    }
    if dry_run {
        report.packs_kept = packs.len() as u64 - report.packs_deleted;
        report.manifests_deleted = orphans(repo, &referenced, grace).await?.len() as u64;
        return Ok(report);
    }

    // The index objects listing a doomed pack are rewritten without it (small ones
    // merged), the new objects first.
    let doomed_listed = |f: &IndexFile| f.packs.iter().any(|p| doomed.contains(&p.id));
    let replaced: Vec<&(String, IndexFile)> = index_files
        .iter()
        .filter(|(_, f)| doomed_listed(f) || f.packs.len() < STAYING_OBJECT_PACKS)
        .collect();
    let rewrite = replaced.iter().any(|(_, f)| doomed_listed(f))
        || replaced.len() > 1
        || !new_index_packs.is_empty();
    if rewrite {
        let staying: HashSet<PackId> = index_files
            .iter()
            .filter(|(k, _)| !replaced.iter().any(|(r, _)| r == k))
            .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
            .collect();
        let mut kept: Vec<IndexedPack> = replaced
            .iter()
            .flat_map(|(_, f)| f.packs.iter())
            .filter(|p| !doomed.contains(&p.id) && !staying.contains(&p.id))
            .cloned()
            .collect();
        kept.sort_by_key(|p| p.id);
        kept.dedup_by_key(|p| p.id);
        lock.check()?;
        let written = repo.write_index_objects(kept).await?;
        for (key, _) in &replaced {
            if !written.contains(key) {
                lock.check()?;
                store.delete(key).await?;
            }
        }
        report.index_objects_replaced = replaced.len() as u64;
    }
    // Doomed packs (no index lists them now), and packs no index lists that are older
    // than the grace period (a stalled writer may be about to index younger ones).
    let indexed: HashSet<String> = packs
        .keys()
        .filter(|id| !doomed.contains(id))
        .map(pack_key)
        .chain(new_index_packs.iter().map(|p| pack_key(&p.id)))
        .collect();
    let mut delete: Vec<(String, u64)> = repo
        .list_packs()
        .await?
        .into_iter()
        .filter(|o| !indexed.contains(&o.key))
        .filter(|o| doomed.iter().any(|d| pack_key(d) == o.key) || !is_young(o.modified, grace))
        .map(|o| (o.key, o.size))
        .collect();
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
    let orphans = orphans(repo, &referenced, grace).await?;
    for key in &orphans {
        lock.check()?;
        store.delete(key).await?;
    }
    report.manifests_deleted = orphans.len() as u64;
    report.packs_kept = indexed.len() as u64;
    Ok(report)
}

/// Manifests, pins and verification records of backups that no longer exist (manifests
/// only once older than the grace period: a backup may be about to write its summary).
async fn orphans(
    repo: &Repository,
    referenced: &Referenced,
    grace: Duration,
) -> CoordinatorResult<Vec<String>> {
    let mut out = Vec::new();
    for prefix in [layout::MANIFESTS, layout::PINS, layout::VERIFIED] {
        for object in repo.store().list_fresh(prefix).await? {
            let backup = object.key[prefix.len()..].split('/').next();
            let young_manifest = prefix == layout::MANIFESTS && is_young(object.modified, grace);
            if !backup.is_some_and(|b| referenced.backups.contains(b)) && !young_manifest {
                out.push(object.key);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::{DynStore, LocalStore};

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
}
