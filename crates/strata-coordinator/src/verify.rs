//! Verification: prove that backups can be restored.
//!
//! The structure check reads every summary and manifest of the chosen backups and checks
//! that each referenced blob is in the index and that each indexed pack exists with the
//! right size. With `read_data`, every pack is read in full: its hash must match its name
//! and every blob must authenticate and hash to its id. Damage is mapped back to the
//! backups, nodes and files it affects.

use crate::{resolve_backup, CoordinatorResult};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use strata_repo::id::PackId;
use strata_repo::layout::pack_key;
use strata_repo::manifest::EntryKind;
use strata_repo::pack::read_header;
use strata_repo::summary::BackupSummary;
use strata_repo::{BlobId, Repository};

/// A file that cannot be fully restored.
#[derive(
    Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema,
)]
pub struct DamagedFile {
    /// The backup that holds the file.
    pub backup: String,
    /// The node of the backup the file belongs to.
    pub node: String,
    /// The file's path in the node's manifest, or a note in parentheses when the damage hides
    /// which files (an unreadable manifest or part of one).
    pub path: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Backups checked.
    pub backups: u64,
    /// Node manifests read.
    pub manifests: u64,
    /// Files whose chunks were looked up in the index.
    pub files: u64,
    /// Blobs read from their packs, decrypted and checked against their ids (when pack
    /// data is read).
    pub blobs_checked: u64,
    /// Packs read whole and checked against their hashes (when pack data is read).
    pub packs_checked: u64,
    /// Size of the packs read, in bytes.
    pub bytes_read: u64,
    /// Every problem, one line each. Empty when all is well.
    pub problems: Vec<String>,
    /// Files affected by the problems.
    pub damaged_files: Vec<DamagedFile>,
    /// Backups deleted while the verification ran: what could not be read of them is
    /// gone because they were deleted, not damage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_meanwhile: Vec<String>,
}

/// The blobs of `blobs` (in `pack`) whose location the index answers in `pack`: what a
/// restore would read from it, so what its damage costs (a blob another pack also holds
/// is read from the one the index answers).
fn blobs_read_from(
    repo: &Repository,
    pack: &PackId,
    blobs: &[(BlobId, strata_repo::index::BlobLocation)],
) -> Vec<BlobId> {
    let index = repo.index();
    blobs
        .iter()
        .filter(|(id, _)| index.get(id).is_some_and(|l| index.pack(l.pack).0 == *pack))
        .map(|(id, _)| *id)
        .collect()
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds the findings of another verification (of another storage).
    pub fn absorb(&mut self, other: VerifyReport) {
        self.backups += other.backups;
        self.manifests += other.manifests;
        self.files += other.files;
        self.blobs_checked += other.blobs_checked;
        self.packs_checked += other.packs_checked;
        self.bytes_read += other.bytes_read;
        self.problems.extend(other.problems);
        self.damaged_files.extend(other.damaged_files);
    }
}

/// How much data a verification reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataCheck {
    /// Structure only: packs exist with the right size, blobs are indexed.
    Structure,
    /// Every pack, every blob.
    All,
    /// This percentage of the packs (at least one), a different random choice each run.
    Subset(f64),
}

impl DataCheck {
    /// The name recorded for this kind of check.
    pub fn mode(&self) -> String {
        match self {
            DataCheck::Structure => "structure".into(),
            DataCheck::All => "data".into(),
            DataCheck::Subset(p) => format!("data-subset-{p}pct"),
        }
    }
}

impl VerifyReport {
    /// Whether nothing found touches backup `name`.
    pub fn backup_ok(&self, name: &str) -> bool {
        let tag = format!("backup {name}");
        !self.damaged_files.iter().any(|f| f.backup == name)
            && !self.problems.iter().any(|p| p.contains(&tag))
    }
}

/// Verifies one backup (`Some(name)`) or all of them; `read_data` reads every pack.
pub async fn run_verify(
    repo: &Repository,
    backup: Option<&str>,
    read_data: bool,
) -> CoordinatorResult<VerifyReport> {
    let check = if read_data {
        DataCheck::All
    } else {
        DataCheck::Structure
    };
    run_verify_with(repo, backup, check).await
}

/// Verifies one backup or all of them (as [`run_verify_with`]) after reloading the index,
/// and records the outcome of each verified backup, so `list`, metrics and the dashboard
/// show when each was last proven restorable. A record that cannot be written is a
/// warning, not a failed verification.
pub async fn verify_and_record(
    repo: &Repository,
    backup: Option<&str>,
    check: DataCheck,
) -> CoordinatorResult<VerifyReport> {
    repo.reload_index().await?;
    let report = run_verify_with(repo, backup, check).await?;
    let verified = match backup {
        Some(name) => vec![resolve_backup(repo, name).await?.name],
        // A damaged summary has no backup to record against: its problem is in the report.
        None => repo
            .scan_backups()
            .await?
            .0
            .into_iter()
            .map(|b| b.name)
            .collect(),
    };
    for name in verified {
        let ok = report.backup_ok(&name);
        if let Err(e) = crate::verified::record(repo, &name, ok, &check.mode()).await {
            eprintln!("strata: warning: cannot record the verification of {name}: {e}");
        }
    }
    Ok(report)
}

/// The packs a subset check reads: `percent` of them, at least one, chosen by a keyed
/// hash with a fresh key, so successive runs cover different packs.
fn pick_subset(packs: &[(PackId, u64)], percent: f64) -> HashSet<PackId> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).expect("the OS random source is available");
    let mut scored: Vec<([u8; 32], PackId)> = packs
        .iter()
        .map(|(p, _)| (*blake3::keyed_hash(&key, &p.0).as_bytes(), *p))
        .collect();
    scored.sort();
    let wanted =
        ((packs.len() as f64 * percent / 100.0).ceil() as usize).clamp(1, packs.len().max(1));
    scored.into_iter().take(wanted).map(|(_, p)| p).collect()
}

/// The packs the index lists after one refresh, taken when a pack is found missing.
#[derive(Default)]
struct StillIndexed(Option<HashSet<PackId>>);

impl StillIndexed {
    /// Whether `pack` is still in the index (refreshed on first use).
    async fn check(&mut self, repo: &Repository, pack: &PackId) -> CoordinatorResult<bool> {
        if self.0.is_none() {
            repo.reload_index().await?;
            self.0 = Some(repo.index().packs().into_iter().map(|(id, _)| id).collect());
        }
        Ok(self.0.as_ref().is_some_and(|live| live.contains(pack)))
    }
}

/// Verifies one backup (`Some(name)`) or all of them, reading as much data as `check` says:
/// the index and dictionaries decode, every pack the index names is stored at its size,
/// (with data) every byte of the packs reads back, and every backup's manifests name only
/// data that is there.
pub async fn run_verify_with(
    repo: &Repository,
    backup: Option<&str>,
    check: DataCheck,
) -> CoordinatorResult<VerifyReport> {
    let mut report = VerifyReport::default();
    let summaries = backups_to_verify(repo, backup, &mut report).await?;
    // 0. Index objects that do not decode: their packs' blobs are unknown.
    for object in repo.damaged_index() {
        report.problems.push(format!(
            "{} (skipped; run `strata repair index`)",
            object.reason
        ));
    }
    // 0b. Compression dictionaries that do not decode: the blobs compressed with them
    // fail below (with --read-data) as damaged.
    let (_, dictionary_problems) = repo.check_dictionaries().await?;
    report.problems.extend(dictionary_problems);
    let packs: Vec<(PackId, u64)> = repo.index().packs();
    // A pack garbage collection swept while this runs (it leaves the index before it is
    // deleted) is not missing: the view is refreshed once and such packs skipped.
    let mut still_indexed = StillIndexed::default();
    let bad_packs = check_packs_stored(repo, &packs, &mut still_indexed, &mut report).await?;
    let bad_blobs = if check != DataCheck::Structure {
        read_every_pack(
            repo,
            &packs,
            check,
            &bad_packs,
            &mut still_indexed,
            &mut report,
        )
        .await?
    } else {
        let index = repo.index();
        index
            .blobs()
            .filter(|(_, loc)| bad_packs.contains(&index.pack(loc.pack).0))
            .map(|(id, _)| id)
            .collect()
    };
    // 3. Every backup's manifests, and the files the damage touches.
    let mut all_damaged = BTreeSet::new();
    for summary in &summaries {
        report.backups += 1;
        // What this backup's reading found, kept only if the backup still exists at its
        // end: one deleted meanwhile (a delete's repack) was deleted, not damaged.
        let problems_before = report.problems.len();
        let damaged_here = check_manifests(repo, summary, &bad_blobs, &mut report).await;
        let found_any = report.problems.len() > problems_before || !damaged_here.is_empty();
        if found_any && deleted_since(repo, &summary.name).await {
            report.problems.truncate(problems_before);
            report.deleted_meanwhile.push(summary.name.clone());
            continue;
        }
        all_damaged.extend(damaged_here);
    }
    report.damaged_files = all_damaged.into_iter().collect();
    Ok(report)
}

/// The backups to verify: `backup` alone, or every one listed (a summary that does not
/// decode is a problem of the report).
async fn backups_to_verify(
    repo: &Repository,
    backup: Option<&str>,
    report: &mut VerifyReport,
) -> CoordinatorResult<Vec<BackupSummary>> {
    Ok(match backup {
        Some(name) => vec![resolve_backup(repo, name).await?],
        None => {
            let (summaries, damaged) = repo.scan_backups().await?;
            for object in damaged {
                report.problems.push(format!(
                    "backup {}: {} (run `strata repair backups`)",
                    object.backup().unwrap_or_default(),
                    object.reason
                ));
            }
            summaries
        }
    })
}

/// Step 1: the packs named by the index must be stored at their recorded size. Returns
/// the ones that are not.
async fn check_packs_stored(
    repo: &Repository,
    packs: &[(PackId, u64)],
    still_indexed: &mut StillIndexed,
    report: &mut VerifyReport,
) -> CoordinatorResult<HashSet<PackId>> {
    let stored: HashMap<String, u64> = repo
        .store()
        .list(strata_repo::layout::DATA)
        .await
        .map_err(strata_repo::RepoError::from)?
        .into_iter()
        .map(|m| (m.key, m.size))
        .collect();
    let mut bad_packs: HashSet<PackId> = HashSet::new();
    for (pack, size) in packs {
        match stored.get(&pack_key(pack)) {
            None if !still_indexed.check(repo, pack).await? => {}
            None => {
                report.problems.push(format!(
                    "pack {} is missing ({})",
                    pack.short(),
                    pack_key(pack)
                ));
                bad_packs.insert(*pack);
            }
            Some(actual) if actual != size => {
                report.problems.push(format!(
                    "pack {} is {actual} bytes, expected {size} ({})",
                    pack.short(),
                    pack_key(pack)
                ));
                bad_packs.insert(*pack);
            }
            Some(_) => {}
        }
    }
    Ok(bad_packs)
}

/// Step 2, with --read-data: every byte of every pack (of the subset `check` names).
/// Returns the blobs that do not read back, and those of `bad_packs`.
async fn read_every_pack(
    repo: &Repository,
    packs: &[(PackId, u64)],
    check: DataCheck,
    bad_packs: &HashSet<PackId>,
    still_indexed: &mut StillIndexed,
    report: &mut VerifyReport,
) -> CoordinatorResult<HashSet<BlobId>> {
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    // Pack by pack as the index objects list them, one object at a time: memory
    // holds one object (at most 4,096 packs), not every blob of the repository.
    let subset = match check {
        DataCheck::Subset(percent) => Some(pick_subset(packs, percent)),
        _ => None,
    };
    let live: HashSet<PackId> = packs.iter().map(|(id, _)| *id).collect();
    let mut checked: HashSet<PackId> = HashSet::new();
    let objects = repo
        .store()
        .list(strata_repo::layout::INDEX)
        .await
        .map_err(strata_repo::RepoError::from)?;
    for object in objects {
        let file = match repo.read_index_object(&object.key).await {
            Ok(file) => file,
            // Replaced by a merge or a collection meanwhile: its packs are listed by
            // the objects that replaced it, read below or already.
            Err(strata_repo::RepoError::Store(e)) if e.is_not_found() => continue,
            Err(err) => {
                report.problems.push(format!("{}: {err}", object.key));
                continue;
            }
        };
        for indexed in file.packs {
            let pack = indexed.id;
            if !live.contains(&pack)
                || subset
                    .as_ref()
                    .is_some_and(|chosen| !chosen.contains(&pack))
                || !checked.insert(pack)
            {
                continue;
            }
            let blobs: Vec<(BlobId, strata_repo::index::BlobLocation)> = indexed
                .blobs
                .iter()
                .map(|entry| (entry.id, strata_repo::index::BlobLocation::of(0, entry)))
                .collect();
            if bad_packs.contains(&pack) {
                bad_blobs.extend(blobs_read_from(repo, &pack, &blobs));
                continue;
            }
            let bytes = match repo.store().get(&pack_key(&pack)).await {
                Ok(bytes) => bytes,
                Err(err) if err.is_not_found() && !still_indexed.check(repo, &pack).await? => {
                    continue;
                }
                Err(err) => {
                    report
                        .problems
                        .push(format!("pack {} cannot be read: {err}", pack.short()));
                    bad_blobs.extend(blobs_read_from(repo, &pack, &blobs));
                    continue;
                }
            };
            report.packs_checked += 1;
            report.bytes_read += bytes.len() as u64;
            if PackId::from(*blake3::hash(&bytes).as_bytes()) != pack {
                report.problems.push(format!(
                    "pack {} does not match its hash ({})",
                    pack.short(),
                    pack_key(&pack)
                ));
            }
            if let Err(err) =
                read_header(repo.cipher(), &bytes, &format!("pack {}", pack_key(&pack)))
            {
                report.problems.push(err.to_string());
            }
            for (id, loc) in blobs {
                report.blobs_checked += 1;
                let end = loc.offset as usize + loc.length as usize;
                let result = match bytes.get(loc.offset as usize..end) {
                    Some(sealed) => repo.open_blob(&id, sealed, &loc).map(|_| ()),
                    None => Err(strata_repo::RepoError::corrupted(
                        format!("blob {}", id.short()),
                        "beyond the end of its pack",
                    )),
                };
                if let Err(err) = result {
                    report
                        .problems
                        .push(format!("{err} (in pack {})", pack.short()));
                    bad_blobs.extend(blobs_read_from(repo, &pack, &[(id, loc)]));
                }
            }
        }
    }
    Ok(bad_blobs)
}

/// Step 3: one backup's manifests, part by part. Returns the files whose data is missing
/// from the index or among `bad_blobs`, or that an unreadable manifest hides.
async fn check_manifests(
    repo: &Repository,
    summary: &BackupSummary,
    bad_blobs: &HashSet<BlobId>,
    report: &mut VerifyReport,
) -> BTreeSet<DamagedFile> {
    let mut damaged_here = BTreeSet::new();
    let damaged = &mut damaged_here;
    // A manifest, or a part of it, that cannot be read: a problem, and the files it hides.
    let unreadable =
        |report: &mut VerifyReport, node: &str, err: &dyn std::fmt::Display, path: String| {
            report
                .problems
                .push(format!("backup {} node {node}: {err}", summary.name));
            DamagedFile {
                backup: summary.name.clone(),
                node: node.to_string(),
                path,
            }
        };
    for node in summary.nodes.iter().filter(|n| n.has_manifest) {
        // One part (a manifest chunk) at a time: a node of millions of files costs
        // one chunk of memory, and a damaged chunk costs only the files it lists.
        let mut manifest = match repo.open_manifest(&summary.name, &node.name).await {
            Ok(manifest) => manifest,
            Err(err) => {
                let path = "(all files: the manifest is unreadable)".to_string();
                damaged.insert(unreadable(report, &node.name, &err, path));
                continue;
            }
        };
        report.manifests += 1;
        let mut position = 0;
        while let Some(part) = manifest.next_part(repo).await {
            let part_at = position;
            position += 1;
            let entries = match part {
                Ok(entries) => entries,
                Err(err) => {
                    let path = format!(
                        "(the files of {}: unreadable)",
                        manifest.describe_part(part_at)
                    );
                    damaged.insert(unreadable(report, &node.name, &err, path));
                    continue;
                }
            };
            let index = repo.index();
            for entry in &entries {
                let EntryKind::File { chunks, .. } = &entry.kind else {
                    continue;
                };
                report.files += 1;
                let missing = chunks.iter().any(|id| index.get(id).is_none());
                if missing {
                    report.problems.push(format!(
                        "backup {} node {}: {} references data missing from the index",
                        summary.name,
                        node.name,
                        entry.display_path()
                    ));
                }
                if missing || chunks.iter().any(|id| bad_blobs.contains(id)) {
                    damaged.insert(DamagedFile {
                        backup: summary.name.clone(),
                        node: node.name.clone(),
                        path: entry.display_path(),
                    });
                }
            }
        }
    }
    damaged_here
}

/// Whether backup `name`'s summary is gone now: the backup was deleted after the
/// verification listed it. A summary that cannot be read for another reason is not
/// taken for a deletion.
async fn deleted_since(repo: &Repository, name: &str) -> bool {
    match repo
        .store()
        .head(&strata_repo::layout::summary_key(name))
        .await
    {
        Ok(_) => false,
        Err(err) => err.is_not_found(),
    }
}

/// What a restore drill did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DrillReport {
    /// The backup the drill restored.
    pub backup: String,
    /// Nodes restored.
    pub nodes: u64,
    /// Files that came back with the size their manifest records.
    pub files: u64,
    /// The bytes of those files.
    pub bytes: u64,
    /// Everything that did not come back as the manifest says, and damage the database
    /// checks found. Empty when all is well.
    pub problems: Vec<String>,
    /// What the database checks of PostgreSQL nodes did (the scratch server started and
    /// consistent, `pg_amcheck`, `pg_checksums`), or why they did not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub database: Vec<String>,
}

impl DrillReport {
    /// What a database check of one node found (`prefix` names the backup and node):
    /// what held and why nothing ran go to `database`, damage to the problems.
    fn add_proof(
        &mut self,
        prefix: &str,
        checked: Vec<String>,
        skipped: Option<String>,
        damaged: Vec<String>,
    ) {
        self.database
            .extend(checked.iter().map(|c| format!("{prefix}: {c}")));
        self.database
            .extend(skipped.map(|why| format!("{prefix}: {why}")));
        self.problems.extend(
            damaged
                .iter()
                .map(|d| format!("{prefix}: database damaged: {d}")),
        );
    }

    /// The audit outcome and detail line of a finished drill.
    pub fn outcome(&self) -> (&'static str, String) {
        if self.problems.is_empty() {
            (
                "succeeded",
                format!("restore drill: {} nodes, {} files", self.nodes, self.files),
            )
        } else {
            (
                "failed",
                format!(
                    "restore drill: {} problems; first: {}",
                    self.problems.len(),
                    self.problems[0]
                ),
            )
        }
    }
}

/// [`restore_drill`], then its outcome recorded as the backup's last verification (mode
/// `restore`), so `list` and the dashboard show it. A record that cannot be written is
/// logged, not fatal: the drill itself ran.
pub async fn drill_and_record(
    repo: &std::sync::Arc<Repository>,
    summary: &strata_repo::summary::BackupSummary,
    scratch: &std::path::Path,
) -> CoordinatorResult<DrillReport> {
    let report = restore_drill(repo.clone(), summary, scratch).await?;
    let ok = report.problems.is_empty();
    if let Err(e) = crate::verified::record(repo, &summary.name, ok, "restore").await {
        eprintln!(
            "strata: warning: cannot record the drill of {}: {e}",
            summary.name
        );
    }
    Ok(report)
}

/// A restore drill: restores every node of `summary` into `scratch` (every blob verified
/// on the way), checks each file of the manifests is there with its size, and removes the
/// scratch copy whatever happened.
pub async fn restore_drill(
    repo: std::sync::Arc<Repository>,
    summary: &strata_repo::summary::BackupSummary,
    scratch: &std::path::Path,
) -> CoordinatorResult<DrillReport> {
    let result = drill(repo, summary, scratch).await;
    let _ = std::fs::remove_dir_all(scratch);
    result
}

async fn drill(
    repo: std::sync::Arc<Repository>,
    summary: &strata_repo::summary::BackupSummary,
    scratch: &std::path::Path,
) -> CoordinatorResult<DrillReport> {
    use std::os::unix::ffi::OsStrExt;
    let options = strata_agent::restore::RestoreOptions {
        // A PostgreSQL copy is started as its owner, who must own its files.
        set_owner: rustix::process::geteuid().is_root(),
        // A drill's copy is read back and removed: nothing to keep through a crash.
        sync: false,
        ..Default::default()
    };
    let restored =
        crate::restore::run_restore(repo.clone(), summary, scratch, None, options).await?;
    let mut report = DrillReport {
        backup: summary.name.clone(),
        ..DrillReport::default()
    };
    for node in restored {
        report.nodes += 1;
        let info = summary
            .nodes
            .iter()
            .find(|n| n.name == node.node)
            .and_then(|n| strata_postgres::BaseBackupInfo::from_map(&n.plugin));
        report.problems.extend(
            node.report
                .errors
                .iter()
                .map(|e| format!("backup {} node {}: {e}", summary.name, node.node)),
        );
        let manifest = repo.load_manifest(&summary.name, &node.node).await?;
        for entry in &manifest.entries {
            let EntryKind::File { size, .. } = &entry.kind else {
                continue;
            };
            let path = node.target.join(std::ffi::OsStr::from_bytes(&entry.path));
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.len() == *size => {
                    report.files += 1;
                    report.bytes += size;
                }
                Ok(meta) => report.problems.push(format!(
                    "backup {} node {}: {} came back with {} bytes, not {size}",
                    summary.name,
                    node.node,
                    entry.display_path(),
                    meta.len()
                )),
                Err(e) => report.problems.push(format!(
                    "backup {} node {}: {} did not come back: {e}",
                    summary.name,
                    node.node,
                    entry.display_path()
                )),
            }
        }
        if let Some(info) = info.filter(|_| node.report.errors.is_empty()) {
            prove_database(&repo, summary, &node, &info, scratch, &mut report).await;
        }
        let backed_up = summary.nodes.iter().find(|n| n.name == node.node);
        if let Some(backed_up) = backed_up.filter(|_| node.report.errors.is_empty()) {
            let plugin = crate::plugin::of_backup_node(backed_up);
            let work = scratch.join(format!(".{}-{}", plugin.name(), node.node));
            if let Some(proof) = plugin.prove_restored(backed_up, &node.target, &work).await {
                let prefix = format!("backup {} node {}", summary.name, node.node);
                report.add_proof(&prefix, proof.checked, proof.skipped, proof.damaged);
            }
        }
    }
    Ok(report)
}

/// Starts the restored PostgreSQL node in scratch space and checks it page by page (see
/// [`strata_postgres::proof`]): damage goes to the problems, what ran to `database`.
async fn prove_database(
    repo: &std::sync::Arc<Repository>,
    summary: &strata_repo::summary::BackupSummary,
    node: &crate::restore::DirRestore,
    info: &strata_postgres::BaseBackupInfo,
    scratch: &std::path::Path,
    report: &mut DrillReport,
) {
    let prefix = format!("backup {} node {}", summary.name, node.node);
    // The data directory is the node's first root: its copy holds PG_VERSION.
    let Some(data_dir) = find_data_dir(&node.target) else {
        report
            .problems
            .push(format!("{prefix}: no PG_VERSION in the restored copy"));
        return;
    };
    let work = scratch.join(format!(".pg-{}", node.node));
    let proved = strata_postgres::proof::prove(
        repo,
        info,
        &data_dir,
        &work,
        None,
        std::time::Duration::from_secs(600),
    )
    .await;
    match proved {
        Ok(proof) => report.add_proof(&prefix, proof.checked, proof.skipped, proof.damaged),
        Err(e) => report.problems.push(format!(
            "{prefix}: the restored database could not be proven: {}",
            crate::error_chain(&e)
        )),
    }
}

/// The directory under `target` (it, or one level down) that holds `PG_VERSION`.
fn find_data_dir(target: &std::path::Path) -> Option<std::path::PathBuf> {
    if target.join("PG_VERSION").is_file() {
        return Some(target.to_path_buf());
    }
    std::fs::read_dir(target)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("PG_VERSION").is_file() && !p.is_symlink())
}
