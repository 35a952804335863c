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
//! A crash after 1 or 2 leaves only unreferenced objects behind, which the next run
//! removes. If a backup references a blob the index lacks, nothing is deleted.

use crate::lock::RepoLock;
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use strata_repo::id::pack_key;
use strata_repo::index::{IndexFile, IndexedPack};
use strata_repo::manifest::EntryKind;
use strata_repo::{BlobId, Repository};

/// What a collection found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub backups: usize,
    pub referenced_blobs: u64,
    pub packs_kept: u64,
    pub packs_deleted: u64,
    /// Bytes of the deleted packs.
    pub bytes_freed: u64,
    pub index_objects_replaced: u64,
    /// Manifests, pins and verification records of backups that no longer exist.
    pub manifests_deleted: u64,
}

/// Collects garbage in `repo` (only reports with `dry_run`).
pub async fn collect_garbage(repo: &Repository, dry_run: bool) -> CoordinatorResult<GcReport> {
    let id = format!("gc-{}", crate::backup::new_backup_name());
    let lock = RepoLock::acquire(repo.store().clone(), &id, "gc", Duration::from_secs(600)).await?;
    let result = collect(repo, dry_run).await;
    lock.release().await;
    let report = result?;
    if !dry_run {
        repo.reload_index().await?;
    }
    Ok(report)
}

async fn collect(repo: &Repository, dry_run: bool) -> CoordinatorResult<GcReport> {
    let store = repo.store();
    let summaries = repo.list_backups().await?;
    let mut referenced: HashSet<BlobId> = HashSet::new();
    for summary in &summaries {
        for node in summary.nodes.iter().filter(|n| n.has_manifest) {
            let manifest = repo.load_manifest(&summary.name, &node.name).await?;
            for entry in &manifest.entries {
                if let EntryKind::File { chunks, .. } = &entry.kind {
                    referenced.extend(chunks.iter().copied());
                }
            }
        }
    }
    let index_files = repo.index_files().await?;
    let mut packs: HashMap<String, IndexedPack> = HashMap::new();
    let mut indexed_blobs: HashSet<BlobId> = HashSet::new();
    for (_, file) in &index_files {
        for pack in &file.packs {
            indexed_blobs.extend(pack.blobs.iter().map(|b| b.id));
            packs
                .entry(pack_key(&pack.id))
                .or_insert_with(|| pack.clone());
        }
    }
    if let Some(missing) = referenced.iter().find(|id| !indexed_blobs.contains(id)) {
        return Err(CoordinatorError::NothingToDo(format!(
            "a backup references blob {} that the index lacks: the repository needs repair, so nothing was deleted (run `strata verify`)",
            missing.short()
        )));
    }
    let kept: Vec<IndexedPack> = packs
        .into_values()
        .filter(|p| p.blobs.iter().any(|b| referenced.contains(&b.id)))
        .collect();
    let kept_keys: HashSet<String> = kept.iter().map(|p| pack_key(&p.id)).collect();
    let mut doomed: Vec<(String, u64)> = store
        .list_fresh("data/")
        .await?
        .into_iter()
        .filter(|o| !kept_keys.contains(&o.key))
        .map(|o| (o.key, o.size))
        .collect();
    doomed.sort();
    let with_summary: HashSet<&str> = summaries.iter().map(|s| s.name.as_str()).collect();
    // Manifests, pins and verification records of backups that no longer exist.
    let mut orphan_manifests: Vec<String> = Vec::new();
    for prefix in ["manifests/", "pins/", "verified/"] {
        for object in store.list_fresh(prefix).await? {
            let backup = object.key[prefix.len()..].split('/').next();
            if !backup.is_some_and(|b| with_summary.contains(b)) {
                orphan_manifests.push(object.key);
            }
        }
    }
    let needs_new_index = !doomed.is_empty() || index_files.len() > 1;
    let report = GcReport {
        dry_run,
        backups: summaries.len(),
        referenced_blobs: referenced.len() as u64,
        packs_kept: kept.len() as u64,
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
        let new_key = repo.write_index(&IndexFile { packs: kept }).await?;
        for (key, _) in &index_files {
            if key != &new_key {
                store.delete(key).await?;
            }
        }
    }
    for (key, _) in &doomed {
        store.delete(key).await?;
    }
    for key in &orphan_manifests {
        store.delete(key).await?;
    }
    Ok(report)
}
