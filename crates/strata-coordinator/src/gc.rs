//! Garbage collection: delete the data no backup references any more.
//!
//! It runs under the cluster lock, so no backup writes packs or relies on a blob while it
//! decides (a backup started meanwhile is refused as busy and runs after). It reads every
//! remaining backup's manifests into the set of referenced blob ids (one node manifest at
//! a time; the set is bounded by the repository's distinct blobs, not by its history),
//! keeps every pack holding a referenced blob, and removes the rest in an order that is
//! safe to interrupt at any point:
//!
//! 1. a new index object listing the kept packs is written;
//! 2. the old index objects are deleted (until then both describe the kept packs);
//! 3. the unreferenced packs (and packs no index lists, left by crashed backups), and the
//!    manifests, pins and verification records of backups without a summary are deleted.
//!
//! Packs whose live blobs fill less than half of them are repacked first: their live
//! blobs are read (and checked) and written to new packs with an index object of their
//! own, and the old packs join the garbage. A crash after 1 or 2 leaves only unreferenced
//! objects behind, which the next run removes. If a backup references a blob the index lacks, nothing is deleted.
//!
//! **Writers it cannot see.** A backup stalled past its lock's TTL (or a WAL push past
//! its mark's) may resume while this runs. It cannot make anything visible any more (its
//! fence refuses index, manifest and summary writes), but as a second line of defence
//! packs that no index lists and manifests of backups without a summary are deleted only
//! once older than the grace period (`[gc] grace`, by the storage's modification time):
//! those are what such a writer may still be about to index. Only the index objects read
//! at the start (and those the repacking wrote) are replaced, never one that appeared
//! meanwhile, so the index never lists a pack this run deleted. Before the new index and
//! before every delete, the run checks that it still holds its own lock.

use crate::lock::{HeldLock, RepoLock};
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use strata_repo::id::pack_key;
use strata_repo::index::{IndexFile, IndexedPack};
use strata_repo::layout;
use strata_repo::{BlobId, Repository};

/// What a collection found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    pub dry_run: bool,
    pub backups: usize,
    pub referenced_blobs: u64,
    pub packs_kept: u64,
    /// Mostly-garbage packs whose live blobs were moved to new packs (then deleted).
    pub packs_repacked: u64,
    pub packs_deleted: u64,
    /// Bytes of the deleted packs.
    pub bytes_freed: u64,
    pub index_objects_replaced: u64,
    /// Manifests, pins and verification records of backups that no longer exist.
    pub manifests_deleted: u64,
}

/// The grace period when the configuration names none (see [`crate::config::GcConfig`]).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

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
    let id = format!("gc-{}", crate::names::new_backup_name());
    let lock = RepoLock::acquire(repo.store().clone(), &id, "gc", Duration::from_secs(60))
        .await?
        .keep_renewed();
    let result = match wait_for_archive_writers(repo).await {
        Ok(()) => collect(repo, dry_run, &lock, grace).await,
        Err(err) => Err(err),
    };
    lock.release().await;
    let report = result?;
    if !dry_run {
        repo.reload_index().await?;
    }
    Ok(report)
}

/// Waits until no WAL push is storing data (new pushes see the collection's lock and
/// step back), or refuses as busy after a minute.
async fn wait_for_archive_writers(repo: &Arc<Repository>) -> CoordinatorResult<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let writers = crate::lock::live_archive_writers(repo.store()).await?;
        let Some(writer) = writers.first() else {
            return Ok(());
        };
        if std::time::Instant::now() > deadline {
            return Err(crate::lock::LockError::Busy(writer.describe()).into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A pack whose live blobs take less than this share of its blob bytes is repacked.
const REPACK_BELOW: f64 = 0.5;

/// Copies the referenced blobs of `packs` into new packs (read, checked, sealed again);
/// returns the new packs as indexed.
async fn move_live_blobs(
    repo: &Arc<Repository>,
    packs: &[IndexedPack],
    referenced: &HashSet<BlobId>,
) -> CoordinatorResult<Vec<IndexedPack>> {
    let before: HashSet<strata_repo::id::PackId> =
        repo.index().packs().iter().map(|(id, _)| *id).collect();
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

async fn collect(
    repo: &Arc<Repository>,
    dry_run: bool,
    lock: &HeldLock,
    grace: Duration,
) -> CoordinatorResult<GcReport> {
    let store = repo.store();
    let summaries = repo.list_backups().await?;
    let mut referenced: HashSet<BlobId> = HashSet::new();
    for summary in &summaries {
        for node in summary.nodes.iter().filter(|n| n.has_manifest) {
            // Its chunk blobs (format version 4) and its files' data.
            repo.manifest_references(&summary.name, &node.name, |id| {
                referenced.insert(*id);
            })
            .await?;
        }
    }
    // Files archived outside backups (WAL) keep their data too.
    for (_, file) in repo.all_archived().await? {
        referenced.extend(file.chunks.iter().copied());
    }
    // Under the lock the index can only have grown since the repository was opened; the
    // repository may also have been opened without it (for listing).
    repo.reload_index().await?;
    let missing = {
        let index = repo.index();
        referenced.iter().find(|id| !index.contains(id)).copied()
    };
    if let Some(missing) = missing {
        return Err(CoordinatorError::NothingToDo(format!(
            "a backup references blob {} that the index lacks: the repository needs repair, so nothing was deleted (run `strata verify`)",
            missing.short()
        )));
    }
    let index_files = repo.index_files().await?;
    let mut packs: HashMap<String, IndexedPack> = HashMap::new();
    for (_, file) in &index_files {
        for pack in &file.packs {
            packs
                .entry(pack_key(&pack.id))
                .or_insert_with(|| pack.clone());
        }
    }
    let indexed: HashSet<String> = packs.keys().cloned().collect();
    let kept: Vec<IndexedPack> = packs
        .into_values()
        .filter(|p| p.blobs.iter().any(|b| referenced.contains(&b.id)))
        .collect();
    // Packs whose live blobs fill less than REPACK_BELOW of them: their live blobs move to
    // new packs, and the old packs go with the garbage.
    let (repack, mut kept): (Vec<IndexedPack>, Vec<IndexedPack>) =
        kept.into_iter().partition(|p| {
            let total: u64 = p.blobs.iter().map(|b| b.length as u64).sum();
            let live: u64 = p
                .blobs
                .iter()
                .filter(|b| referenced.contains(&b.id))
                .map(|b| b.length as u64)
                .sum();
            (live as f64) < REPACK_BELOW * total as f64
        });
    // The index objects this run replaces: those read above, and those the repacking
    // writes. One written meanwhile by a writer this run cannot see is left alone.
    let mut replaced: HashSet<String> = index_files.iter().map(|(k, _)| k.clone()).collect();
    if !dry_run && !repack.is_empty() {
        lock.check()?;
        let before: HashSet<String> = repo
            .list_index_objects()
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        kept.extend(move_live_blobs(repo, &repack, &referenced).await?);
        for object in repo.list_index_objects().await? {
            if !before.contains(&object.key) {
                replaced.insert(object.key);
            }
        }
    }
    let kept_keys: HashSet<String> = kept.iter().map(|p| pack_key(&p.id)).collect();
    // Packs some index lists but no backup references go now; packs no index lists only
    // once older than the grace period (a stalled writer may be about to index them).
    let mut doomed: Vec<(String, u64)> = repo
        .list_packs()
        .await?
        .into_iter()
        .filter(|o| !kept_keys.contains(&o.key))
        .filter(|o| indexed.contains(&o.key) || !is_young(o.modified, grace))
        .map(|o| (o.key, o.size))
        .collect();
    doomed.sort();
    let with_summary: HashSet<&str> = summaries.iter().map(|s| s.name.as_str()).collect();
    // Manifests, pins and verification records of backups that no longer exist.
    let mut orphan_manifests: Vec<String> = Vec::new();
    for prefix in [layout::MANIFESTS, layout::PINS, layout::VERIFIED] {
        for object in store.list_fresh(prefix).await? {
            let backup = object.key[prefix.len()..].split('/').next();
            let young_manifest = prefix == layout::MANIFESTS && is_young(object.modified, grace);
            if !backup.is_some_and(|b| with_summary.contains(b)) && !young_manifest {
                orphan_manifests.push(object.key);
            }
        }
    }
    let needs_new_index = !doomed.is_empty() || index_files.len() > 1 || !repack.is_empty();
    let report = GcReport {
        dry_run,
        backups: summaries.len(),
        referenced_blobs: referenced.len() as u64,
        packs_kept: kept.len() as u64,
        packs_repacked: repack.len() as u64,
        packs_deleted: doomed.len() as u64,
        bytes_freed: doomed.iter().map(|(_, size)| size).sum(),
        index_objects_replaced: if needs_new_index {
            index_files.len() as u64
        } else {
            0
        },
        manifests_deleted: orphan_manifests.len() as u64,
    };
    if dry_run {
        return Ok(report);
    }
    if needs_new_index {
        let mut kept = kept;
        kept.sort_by_key(|p| p.id);
        lock.check()?;
        let new_key = repo.write_index(&IndexFile { packs: kept }).await?;
        // The index objects read at the start, and the ones the repacking wrote (its
        // packs are in the new one).
        let mut replaced: Vec<String> = replaced.into_iter().filter(|k| *k != new_key).collect();
        replaced.sort();
        for key in &replaced {
            lock.check()?;
            store.delete(key).await?;
        }
    }
    for (key, _) in &doomed {
        lock.check()?;
        store.delete(key).await?;
    }
    for key in &orphan_manifests {
        lock.check()?;
        store.delete(key).await?;
    }
    Ok(report)
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
