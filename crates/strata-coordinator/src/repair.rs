//! Repairs of a damaged repository: `strata repair index` and `strata repair backups`.
//!
//! Both run under the cluster lock (as garbage collection does), so no backup writes
//! packs, indexes or summaries while they decide, and both can report what they would do
//! (`dry_run`) without changing anything.
//!
//! **Index.** Every pack is self-describing: its trailer gives the length of a sealed
//! header listing each blob. The rebuild reads each pack's trailer and header with two
//! ranged reads (never the whole pack), writes new `index/` objects in bounded batches
//! and, only once all of them are stored, deletes the index objects that existed before
//! (damaged or not: the new ones describe every readable pack). A pack whose header does
//! not decode keeps the entries a readable old index object had for it; otherwise its
//! blobs are lost (unless another pack holds them) and it is reported. A crash before the
//! deletions leaves old and new objects side by side, which describe the same packs.
//!
//! **Backups.** Needs an intact index (run the index repair first). For each backup:
//! a summary that does not decode is rebuilt from the manifests that do, as a `partial`
//! backup with a note (its original status, figures and plugin data are lost), or dropped
//! when no manifest decodes; a manifest that does not decode is deleted and its node marked
//! `failed`; files whose data no stored pack holds any more (and hard links to them) are
//! removed from their manifest, named in the node's warnings, and the node and backup
//! marked `partial`. Removing them, rather than keeping references to data that is gone,
//! keeps the repository consistent: `verify` passes again and garbage collection, which
//! refuses to run while a backup references a blob the index lacks, can run. Every drop
//! is reported.

use crate::lock::RepoLock;
use crate::{CoordinatorError, CoordinatorResult};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use strata_repo::id::PackId;
use strata_repo::index::{IndexFile, IndexedPack};
use strata_repo::layout;
use strata_repo::layout::pack_key;
use strata_repo::manifest::{EntryKind, NodeManifest};
use strata_repo::summary::{BackupStatus, BackupSummary, NodeSummary};
use strata_repo::{BlobId, DamagedObject, RepoError, Repository};

/// Blob entries per new index object: bounds the memory of a rebuild and the size of each
/// object (about 60 bytes an entry), whatever the size of the repository.
pub const INDEX_BATCH_BLOBS: usize = strata_repo::index::MAX_BLOBS_PER_OBJECT;

/// A pack whose header does not decode.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DamagedPack {
    /// The pack's storage key.
    pub key: String,
    /// Why its header does not decode.
    pub reason: String,
    /// Blobs of the pack still indexed, from a readable old index object (0: all lost
    /// unless another pack holds them).
    pub blobs_kept: u64,
}

/// What `repair index` found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct IndexRepairReport {
    /// Nothing was written or deleted: the report says what a repair would do.
    pub dry_run: bool,
    /// Packs whose header was read and indexed.
    pub packs_indexed: u64,
    /// Blobs entered in the new index.
    pub blobs_indexed: u64,
    /// Old index objects that did not decode.
    pub damaged_index: Vec<DamagedObject>,
    /// Packs whose header does not decode.
    pub damaged_packs: Vec<DamagedPack>,
    /// Packs an old index listed that are no longer stored: dropped from the index.
    pub missing_packs: Vec<String>,
    /// Stored packs no readable index listed (left by an interrupted backup, or listed
    /// only by a damaged index object): indexed now.
    pub unlisted_packs: Vec<String>,
    /// Objects under `data/` that are not named like a pack: left alone.
    pub stray_objects: Vec<String>,
    /// New index objects written (or, with `dry_run`, to be written).
    pub index_objects_written: u64,
    /// Old index objects deleted (or to be deleted).
    pub index_objects_deleted: Vec<String>,
}

/// What `repair backups` did (or would do) to one backup.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BackupRepair {
    /// The backup's name.
    pub backup: String,
    /// `rebuilt` (summary rebuilt from its manifests), `dropped` (nothing salvageable),
    /// or `marked` (summary kept, nodes or files marked as lost).
    pub action: String,
    /// What is lost, one line each.
    pub lost: Vec<String>,
    /// Objects deleted (or to be deleted).
    pub deleted: Vec<String>,
    /// Manifests rewritten without the files whose data is gone (or to be).
    pub rewritten: Vec<String>,
    /// The backup's status afterwards (none when dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BackupStatus>,
}

/// What `repair backups` found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BackupsRepairReport {
    /// Nothing was written or deleted: the report says what a repair would do.
    pub dry_run: bool,
    /// Backups checked.
    pub backups: u64,
    /// The backups changed (or to be changed); the others were intact.
    pub repairs: Vec<BackupRepair>,
}

impl BackupsRepairReport {
    /// One line for the audit log: which backups changed and how.
    pub fn summary(&self) -> String {
        if self.repairs.is_empty() {
            return format!("{} backups intact", self.backups);
        }
        self.repairs
            .iter()
            .map(|b| format!("{} {}", b.backup, b.action))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl IndexRepairReport {
    /// One line for the audit log.
    pub fn summary(&self) -> String {
        format!(
            "{} packs, {} blobs indexed; {} damaged index objects, {} damaged packs, {} missing packs",
            self.packs_indexed,
            self.blobs_indexed,
            self.damaged_index.len(),
            self.damaged_packs.len(),
            self.missing_packs.len()
        )
    }
}

/// The locks a repair holds: the cluster lock, and the garbage collection lock, as it
/// rewrites index objects and deletes what a collection would otherwise decide about.
struct RepairLocks(crate::lock::HeldLock, crate::lock::HeldLock);

impl RepairLocks {
    async fn release(self) {
        self.1.release().await;
        self.0.release().await;
    }
}

/// Takes the locks of a repair, renewed until released.
async fn lock(repo: &Repository, what: &str) -> CoordinatorResult<RepairLocks> {
    let id = format!("repair-{}", crate::names::new_backup_name());
    let cluster = RepoLock::acquire(repo.store().clone(), &id, what, Duration::from_secs(60))
        .await?
        .keep_renewed();
    match crate::gc::take_gc_lock(repo, &id, what).await {
        Ok(gc) => Ok(RepairLocks(cluster, gc)),
        Err(err) => {
            cluster.release().await;
            Err(err.into())
        }
    }
}

/// Rebuilds the index from the pack headers (only reports with `dry_run`).
pub async fn repair_index(
    repo: &Arc<Repository>,
    dry_run: bool,
) -> CoordinatorResult<IndexRepairReport> {
    let lock = lock(repo, "repair-index").await?;
    let result = rebuild_index(repo, dry_run, INDEX_BATCH_BLOBS).await;
    lock.release().await;
    let report = result?;
    if !dry_run {
        repo.reload_index().await?;
    }
    Ok(report)
}

/// Index objects in bounded batches, written as they fill.
struct Batches<'a> {
    repo: &'a Repository,
    dry_run: bool,
    /// Blob entries that close an object.
    batch: usize,
    current: IndexFile,
    blobs: usize,
    written: HashSet<String>,
    count: u64,
}

impl Batches<'_> {
    async fn add(&mut self, pack: IndexedPack) -> CoordinatorResult<()> {
        let fits = strata_repo::index::fits(self.current.packs.len(), self.blobs, pack.blobs.len());
        if !fits || self.blobs >= self.batch {
            self.flush().await?;
        }
        self.blobs += pack.blobs.len();
        self.current.packs.push(pack);
        Ok(())
    }

    async fn flush(&mut self) -> CoordinatorResult<()> {
        if self.current.packs.is_empty() {
            return Ok(());
        }
        let file = std::mem::take(&mut self.current);
        self.blobs = 0;
        self.count += 1;
        if !self.dry_run {
            self.written.insert(self.repo.write_index(&file).await?);
        }
        Ok(())
    }
}

/// The rebuild, with index objects of about `batch` blob entries (one pack more at most).
async fn rebuild_index(
    repo: &Repository,
    dry_run: bool,
    batch: usize,
) -> CoordinatorResult<IndexRepairReport> {
    let store = repo.store();
    let mut report = IndexRepairReport {
        dry_run,
        ..IndexRepairReport::default()
    };
    // 1. Which packs the old index objects list (ids only: one object in memory at once).
    let old_objects = repo.list_index_objects().await?;
    // Each pack's first listing, by position in `old_objects`.
    let mut listed: HashMap<PackId, usize> = HashMap::new();
    for (position, object) in old_objects.iter().enumerate() {
        match repo.read_index(&object.key).await {
            Ok(file) => {
                for pack in file.packs {
                    listed.entry(pack.id).or_insert(position);
                }
            }
            Err(RepoError::Store(e)) if e.is_not_found() => {}
            Err(err) if err.is_damage() => report.damaged_index.push(DamagedObject {
                key: object.key.clone(),
                reason: err.to_string(),
            }),
            Err(err) => return Err(err.into()),
        }
    }
    // 2. Every stored pack's header, by ranged reads.
    let mut batches = Batches {
        repo,
        dry_run,
        batch,
        current: IndexFile::default(),
        blobs: 0,
        written: HashSet::new(),
        count: 0,
    };
    let mut stored: HashSet<PackId> = HashSet::new();
    // Damaged headers whose entries a readable old index object may still have.
    let mut fallback: HashMap<usize, Vec<(PackId, u64, usize)>> = HashMap::new();
    for object in repo.list_packs().await? {
        let id = object
            .key
            .rsplit('/')
            .next()
            .and_then(BlobId::from_hex)
            .filter(|id| pack_key(id) == object.key);
        let Some(id) = id else {
            report.stray_objects.push(object.key);
            continue;
        };
        match repo.read_pack_header(&id, object.size).await {
            Ok(blobs) => {
                stored.insert(id);
                if !listed.contains_key(&id) {
                    report.unlisted_packs.push(object.key.clone());
                }
                report.packs_indexed += 1;
                report.blobs_indexed += blobs.len() as u64;
                batches
                    .add(IndexedPack {
                        id,
                        size: object.size,
                        blobs,
                    })
                    .await?;
            }
            // Deleted since the listing.
            Err(RepoError::Store(e)) if e.is_not_found() => {}
            Err(err) if err.is_damage() => {
                stored.insert(id);
                let position = report.damaged_packs.len();
                report.damaged_packs.push(DamagedPack {
                    key: object.key.clone(),
                    reason: err.to_string(),
                    blobs_kept: 0,
                });
                if let Some(listing) = listed.get(&id) {
                    fallback
                        .entry(*listing)
                        .or_default()
                        .push((id, object.size, position));
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    // 3. Damaged headers: keep what a readable old index object says about the pack, if
    // the pack still has the size it was indexed with (each blob is authenticated on
    // read, so a wrong entry cannot return wrong data).
    for (listing, packs) in fallback {
        let file = repo.read_index(&old_objects[listing].key).await?;
        for (id, size, position) in packs {
            if let Some(old) = file.packs.iter().find(|p| p.id == id && p.size == size) {
                report.damaged_packs[position].blobs_kept = old.blobs.len() as u64;
                report.blobs_indexed += old.blobs.len() as u64;
                batches.add(old.clone()).await?;
            }
        }
    }
    batches.flush().await?;
    report.index_objects_written = batches.count;
    report.missing_packs = listed
        .keys()
        .filter(|id| !stored.contains(id))
        .map(pack_key)
        .collect();
    report.missing_packs.sort();
    // 4. Only now that the new index is stored: remove the old objects.
    for object in &old_objects {
        if batches.written.contains(&object.key) {
            continue;
        }
        if !dry_run {
            match store.delete(&object.key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        report.index_objects_deleted.push(object.key.clone());
    }
    Ok(report)
}

/// Drops or salvages damaged summaries and manifests, and marks the files whose data is
/// gone (only reports with `dry_run`). Refuses while index objects are damaged: their
/// packs' blobs would look lost.
pub async fn repair_backups(
    repo: &Arc<Repository>,
    dry_run: bool,
) -> CoordinatorResult<BackupsRepairReport> {
    let lock = lock(repo, "repair-backups").await?;
    let result = repair_all_backups(repo, dry_run).await;
    if result.is_ok() && !dry_run {
        crate::listing::compact(repo, true).await;
    }
    lock.release().await;
    result
}

async fn repair_all_backups(
    repo: &Arc<Repository>,
    dry_run: bool,
) -> CoordinatorResult<BackupsRepairReport> {
    repo.reload_index().await?;
    let damaged = repo.damaged_index();
    if !damaged.is_empty() {
        let keys: Vec<&str> = damaged.iter().map(|d| d.key.as_str()).collect();
        return Err(CoordinatorError::Damaged(format!(
            "index objects are damaged ({}): run `strata repair index` first, or every backup that needs their data would be marked as lost",
            keys.join(", ")
        )));
    }
    let store = repo.store();
    let present: HashSet<PackId> = repo
        .list_packs()
        .await?
        .into_iter()
        .filter_map(|m| m.key.rsplit('/').next().and_then(BlobId::from_hex))
        .collect();
    let mut report = BackupsRepairReport {
        dry_run,
        ..BackupsRepairReport::default()
    };
    for object in store.list_fresh(layout::SUMMARIES).await? {
        let name = object.key.trim_start_matches(layout::SUMMARIES).to_string();
        report.backups += 1;
        let repair = match repo.load_summary(&name).await {
            Ok(summary) => mark_losses(repo, &present, summary, dry_run).await?,
            Err(RepoError::NoSuchBackup(_)) => None,
            Err(err) if err.is_damage() => {
                Some(rebuild_summary(repo, &present, &name, &err, dry_run).await?)
            }
            Err(err) => return Err(err.into()),
        };
        report.repairs.extend(repair);
    }
    Ok(report)
}

/// A node's manifest checked against the stored data.
struct NodeScan {
    /// Figures of what remains restorable.
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
    /// Paths of files whose data no stored pack holds (and hard links to them).
    lost: Vec<String>,
    lost_bytes: u64,
    /// The manifest without the lost files, when there are any.
    pruned: Option<NodeManifest>,
}

fn scan_manifest(
    repo: &Repository,
    present: &HashSet<PackId>,
    mut manifest: NodeManifest,
) -> NodeScan {
    let mut lost_paths: HashSet<Vec<u8>> = HashSet::new();
    let mut lost_bytes = 0;
    {
        let index = repo.index();
        let available = |id: &BlobId| {
            index
                .get(id)
                .is_some_and(|loc| present.contains(&index.pack(loc.pack).0))
        };
        for entry in &manifest.entries {
            if let EntryKind::File { size, chunks } = &entry.kind {
                if !chunks.iter().all(available) {
                    lost_paths.insert(entry.path.clone());
                    lost_bytes += size;
                }
            }
        }
    }
    for entry in &manifest.entries {
        if let EntryKind::HardLink { target } = &entry.kind {
            if lost_paths.contains(target) {
                lost_paths.insert(entry.path.clone());
            }
        }
    }
    let lost: Vec<String> = manifest
        .entries
        .iter()
        .filter(|e| lost_paths.contains(&e.path))
        .map(|e| e.display_path())
        .collect();
    let pruned = if lost.is_empty() {
        None
    } else {
        manifest.entries.retain(|e| !lost_paths.contains(&e.path));
        Some(manifest.clone())
    };
    let mut scan = NodeScan {
        files: 0,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
        lost,
        lost_bytes,
        pruned,
    };
    for entry in &manifest.entries {
        match &entry.kind {
            EntryKind::Dir => scan.dirs += 1,
            EntryKind::Symlink { .. } => scan.symlinks += 1,
            EntryKind::HardLink { .. } => scan.files += 1,
            EntryKind::File { size, .. } => {
                scan.files += 1;
                scan.bytes += size;
            }
        }
    }
    scan
}

/// Warnings kept per node (as a backup keeps them); the count covers the rest.
const WARNINGS_KEPT: usize = 100;

/// Records the lost files of a node in its summary; returns whether there were any.
fn mark_node(node: &mut NodeSummary, backup: &str, scan: &NodeScan, out: &mut Vec<String>) -> bool {
    if scan.lost.is_empty() {
        return false;
    }
    for path in &scan.lost {
        out.push(format!(
            "backup {backup} node {}: file {path}: its data is in no stored pack (removed from the manifest)",
            node.name
        ));
        let line = format!("{path}: data lost, removed by strata repair");
        if node.warnings.len() < WARNINGS_KEPT && !node.warnings.contains(&line) {
            node.warnings.push(line);
        }
    }
    node.warning_count += scan.lost.len() as u64;
    node.files = node.files.saturating_sub(scan.lost.len() as u64);
    node.bytes = node.bytes.saturating_sub(scan.lost_bytes);
    if node.status == BackupStatus::Complete {
        node.status = BackupStatus::Partial;
    }
    true
}

/// The status a backup's nodes allow: never better than it was.
fn overall(before: BackupStatus, nodes: &[NodeSummary]) -> BackupStatus {
    let computed = if nodes.iter().all(|n| n.status == BackupStatus::Failed) {
        BackupStatus::Failed
    } else if nodes.iter().any(|n| n.status != BackupStatus::Complete) {
        BackupStatus::Partial
    } else {
        BackupStatus::Complete
    };
    let rank = |s: BackupStatus| match s {
        BackupStatus::Complete => 0,
        BackupStatus::Partial => 1,
        BackupStatus::Failed => 2,
    };
    if rank(computed) > rank(before) {
        computed
    } else {
        before
    }
}

/// Checks a readable summary's manifests; drops those that do not decode (their nodes
/// become failed) and names the files whose data is gone.
async fn mark_losses(
    repo: &Arc<Repository>,
    present: &HashSet<PackId>,
    mut summary: BackupSummary,
    dry_run: bool,
) -> CoordinatorResult<Option<BackupRepair>> {
    let name = summary.name.clone();
    let mut lost = Vec::new();
    let mut deleted = Vec::new();
    let mut rewrites = Vec::new();
    let mut changed = false;
    for node in summary.nodes.iter_mut().filter(|n| n.has_manifest) {
        let key = layout::manifest_key(&name, &node.name);
        match repo.load_manifest(&name, &node.name).await {
            Ok(manifest) => {
                let scan = scan_manifest(repo, present, manifest);
                changed |= mark_node(node, &name, &scan, &mut lost);
                rewrites.extend(scan.pruned);
            }
            Err(err)
                if err.is_damage() || matches!(&err, RepoError::Store(e) if e.is_not_found()) =>
            {
                lost.push(format!(
                    "backup {name} node {}: every file ({} files): {err}",
                    node.name, node.files
                ));
                node.status = BackupStatus::Failed;
                node.has_manifest = false;
                node.error = Some(format!("manifest lost (dropped by strata repair): {err}"));
                if err.is_damage() {
                    deleted.push(key);
                }
                changed = true;
            }
            Err(err) => return Err(err.into()),
        }
    }
    if !changed {
        return Ok(None);
    }
    summary.status = overall(summary.status, &summary.nodes);
    let rewritten = write_repair(repo, &summary, &rewrites, &deleted, dry_run).await?;
    Ok(Some(BackupRepair {
        backup: name,
        action: "marked".into(),
        lost,
        deleted,
        rewritten,
        status: Some(summary.status),
    }))
}

/// Rebuilds an unreadable summary from the manifests that decode, or drops the backup.
async fn rebuild_summary(
    repo: &Arc<Repository>,
    present: &HashSet<PackId>,
    name: &str,
    why: &RepoError,
    dry_run: bool,
) -> CoordinatorResult<BackupRepair> {
    let prefix = layout::manifests_of(name);
    let mut nodes = Vec::new();
    let mut lost = vec![format!(
        "backup {name}: the summary ({why}): the original status, node figures, timings, warnings and plugin data (e.g. PostgreSQL positions) are lost; the rebuilt backup is partial"
    )];
    let mut deleted = Vec::new();
    let mut rewrites = Vec::new();
    for object in repo.store().list_fresh(&prefix).await? {
        let node_name = object.key[prefix.len()..].to_string();
        match repo.load_manifest(name, &node_name).await {
            Ok(manifest) => {
                let roots = manifest.roots.clone();
                let scan = scan_manifest(repo, present, manifest);
                let mut node = NodeSummary {
                    name: node_name,
                    status: BackupStatus::Partial,
                    roots,
                    files: scan.files,
                    dirs: scan.dirs,
                    symlinks: scan.symlinks,
                    bytes: scan.bytes,
                    has_manifest: true,
                    warnings: vec![format!(
                        "summary rebuilt by strata repair from this manifest; the node's original outcome is unknown"
                    )],
                    warning_count: 1,
                    ..NodeSummary::default()
                };
                // The figures above already leave the lost files out.
                let kept = (node.files, node.bytes);
                mark_node(&mut node, name, &scan, &mut lost);
                (node.files, node.bytes) = kept;
                rewrites.extend(scan.pruned);
                nodes.push(node);
            }
            Err(RepoError::Store(e)) if e.is_not_found() => {}
            Err(err) if err.is_damage() => {
                lost.push(format!("backup {name} node {node_name}: every file: {err}"));
                deleted.push(object.key.clone());
            }
            Err(err) => return Err(err.into()),
        }
    }
    let summary_key = layout::summary_key(name);
    if nodes.is_empty() {
        lost.push(format!("backup {name}: dropped, no manifest of it decodes"));
        deleted.insert(0, summary_key);
        if !dry_run {
            for key in &deleted {
                delete(repo, key).await?;
            }
        }
        return Ok(BackupRepair {
            backup: name.to_string(),
            action: "dropped".into(),
            lost,
            deleted,
            rewritten: Vec::new(),
            status: None,
        });
    }
    let summary = BackupSummary {
        name: name.to_string(),
        started: started_from_name(name).unwrap_or_else(|| {
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
        }),
        host_started: None,
        duration_ms: 0,
        status: BackupStatus::Partial,
        strata_version: format!(
            "{} (summary rebuilt by strata repair)",
            env!("CARGO_PKG_VERSION")
        ),
        nodes,
        requests: None,
        components: Vec::new(),
        still_paused: Vec::new(),
    };
    let rewritten = write_repair(repo, &summary, &rewrites, &deleted, dry_run).await?;
    Ok(BackupRepair {
        backup: name.to_string(),
        action: "rebuilt".into(),
        lost,
        deleted,
        rewritten,
        status: Some(BackupStatus::Partial),
    })
}

/// The start time encoded in a backup name (`20261122T055350Z-3fa1b2c4`), RFC 3339 with
/// milliseconds as summaries record it.
fn started_from_name(name: &str) -> Option<String> {
    let stamp = name.get(..16)?;
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        stamp
            .get(r.clone())
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
    };
    if b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}.000Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    ))
}

/// Stores a repaired backup: the summary first (it already names every loss, so a crash
/// after it leaves an honest backup), then the manifests without their lost files, then
/// the deletions. Returns the keys of the rewritten manifests.
async fn write_repair(
    repo: &Arc<Repository>,
    summary: &BackupSummary,
    rewrites: &[NodeManifest],
    deleted: &[String],
    dry_run: bool,
) -> CoordinatorResult<Vec<String>> {
    let keys = rewrites
        .iter()
        .map(|m| layout::manifest_key(&summary.name, &m.node))
        .collect();
    if dry_run {
        return Ok(keys);
    }
    repo.save_summary(summary).await?;
    for manifest in rewrites {
        repo.save_manifest(&summary.name, manifest).await?;
    }
    for key in deleted {
        delete(repo, key).await?;
    }
    Ok(keys)
}

async fn delete(repo: &Repository, key: &str) -> CoordinatorResult<()> {
    match repo.store().delete(key).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_come_from_backup_names() {
        assert_eq!(
            started_from_name("20261122T055350Z-3fa1b2c4").as_deref(),
            Some("2026-11-22T05:53:50.000Z")
        );
        assert_eq!(started_from_name("manual"), None);
        assert_eq!(started_from_name("2026112xT055350Z-3fa1b2c4"), None);
        assert_eq!(started_from_name("20261122T05535é"), None);
        assert_eq!(started_from_name("20261122T0553é0Z"), None);
    }

    /// Stores `packs` packs of `per_pack` small blobs each, indexed like a backup does.
    async fn repo_with_packs(
        dir: &std::path::Path,
        packs: usize,
        per_pack: usize,
    ) -> (Arc<Repository>, Vec<(BlobId, Vec<u8>)>) {
        use strata_repo::pack::PackBuilder;
        let store: strata_store::DynStore =
            Arc::new(strata_store::LocalStore::new(dir.join("repo")));
        let options = strata_testkit::repo::fast_init();
        let repo = Repository::init(store, Some("pw"), options).await.unwrap();
        let mut blobs = Vec::new();
        for p in 0..packs {
            let mut builder = PackBuilder::new(1024);
            for b in 0..per_pack {
                let data = format!("blob {b} of pack {p}").into_bytes();
                let id = repo.keys().blob_id(&data);
                builder.add(id, &repo.cipher().seal(&data), data.len() as u32, false);
                blobs.push((id, data));
            }
            let pack = builder.finish(repo.cipher());
            let size = pack.bytes.len() as u64;
            repo.store()
                .put(&pack_key(&pack.id), pack.bytes.into())
                .await
                .unwrap();
            repo.add_index(IndexFile {
                packs: vec![IndexedPack {
                    id: pack.id,
                    size,
                    blobs: pack.entries,
                }],
            })
            .await
            .unwrap();
        }
        (repo, blobs)
    }

    #[tokio::test]
    async fn the_rebuilt_index_comes_in_bounded_objects_and_finds_every_blob() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, blobs) = repo_with_packs(dir.path(), 5, 3).await;
        let old: Vec<String> = repo
            .store()
            .list("index/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(old.len(), 5);

        let plan = rebuild_index(&repo, true, 4).await.unwrap();
        assert_eq!(plan.index_objects_written, 3);
        assert_eq!(
            plan.index_objects_deleted, old,
            "a dry run lists what it would delete"
        );
        assert_eq!(
            repo.store().list("index/").await.unwrap().len(),
            5,
            "a dry run wrote"
        );

        // Packs of 3 blobs, objects closed at 4 entries: [3+3], [3+3], [3].
        let report = rebuild_index(&repo, false, 4).await.unwrap();
        assert_eq!((report.packs_indexed, report.blobs_indexed), (5, 15));
        let now = repo.index_files().await.unwrap();
        assert_eq!(now.len(), 3);
        assert!(now.iter().all(|(key, file)| {
            !old.contains(key) && file.packs.iter().map(|p| p.blobs.len()).sum::<usize>() <= 6
        }));
        repo.reload_index().await.unwrap();
        for (id, data) in &blobs {
            assert_eq!(&repo.read_blob(id).await.unwrap(), data);
        }
    }

    #[test]
    fn repairs_never_improve_a_status() {
        let node = |status| NodeSummary {
            status,
            ..NodeSummary::default()
        };
        let nodes = [node(BackupStatus::Complete), node(BackupStatus::Failed)];
        assert_eq!(
            overall(BackupStatus::Complete, &nodes),
            BackupStatus::Partial
        );
        assert_eq!(overall(BackupStatus::Failed, &nodes), BackupStatus::Failed);
        let all_failed = [node(BackupStatus::Failed)];
        assert_eq!(
            overall(BackupStatus::Partial, &all_failed),
            BackupStatus::Failed
        );
    }
}
