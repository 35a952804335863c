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
use strata_repo::id::{pack_key, PackId};
use strata_repo::manifest::EntryKind;
use strata_repo::pack::read_header;
use strata_repo::{BlobId, Repository};

/// A file that cannot be fully restored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DamagedFile {
    pub backup: String,
    pub node: String,
    pub path: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub backups: u64,
    pub manifests: u64,
    pub files: u64,
    pub blobs_checked: u64,
    pub packs_checked: u64,
    pub bytes_read: u64,
    /// Every problem, one line each. Empty when all is well.
    pub problems: Vec<String>,
    /// Files affected by the problems.
    pub damaged_files: Vec<DamagedFile>,
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

/// Verifies one backup (`Some(name)`) or all of them.
pub async fn run_verify(
    repo: &Repository,
    backup: Option<&str>,
    read_data: bool,
) -> CoordinatorResult<VerifyReport> {
    let mut report = VerifyReport::default();
    let summaries = match backup {
        Some(name) => vec![resolve_backup(repo, name).await?],
        None => repo.list_backups().await?,
    };
    // 1. Packs named by the index must exist with their recorded size.
    let stored: HashMap<String, u64> = repo
        .store()
        .list("data/")
        .await
        .map_err(strata_repo::RepoError::from)?
        .into_iter()
        .map(|m| (m.key, m.size))
        .collect();
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    let mut bad_packs: HashSet<PackId> = HashSet::new();
    let packs: Vec<(PackId, u64)> = repo.index().packs().to_vec();
    for (pack, size) in &packs {
        match stored.get(&pack_key(pack)) {
            None => {
                report
                    .problems
                    .push(format!("pack {} is missing", pack.short()));
                bad_packs.insert(*pack);
            }
            Some(actual) if actual != size => {
                report.problems.push(format!(
                    "pack {} is {actual} bytes, expected {size}",
                    pack.short()
                ));
                bad_packs.insert(*pack);
            }
            Some(_) => {}
        }
    }
    // 2. With --read-data, every byte of every pack.
    if read_data {
        let mut blobs_by_pack: HashMap<u32, Vec<(BlobId, strata_repo::index::BlobLocation)>> =
            HashMap::new();
        for (id, loc) in repo.index().blobs() {
            blobs_by_pack.entry(loc.pack).or_default().push((*id, *loc));
        }
        for (position, blobs) in blobs_by_pack {
            let (pack, _) = repo.index().pack(position);
            if bad_packs.contains(&pack) {
                bad_blobs.extend(blobs.iter().map(|(id, _)| *id));
                continue;
            }
            let bytes = match repo.store().get(&pack_key(&pack)).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    report
                        .problems
                        .push(format!("pack {} cannot be read: {err}", pack.short()));
                    bad_blobs.extend(blobs.iter().map(|(id, _)| *id));
                    continue;
                }
            };
            report.packs_checked += 1;
            report.bytes_read += bytes.len() as u64;
            if PackId::from(*blake3::hash(&bytes).as_bytes()) != pack {
                report
                    .problems
                    .push(format!("pack {} does not match its hash", pack.short()));
            }
            if let Err(err) = read_header(repo.cipher(), &bytes, &format!("pack {}", pack.short()))
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
                    bad_blobs.insert(id);
                }
            }
        }
    } else {
        for (id, loc) in repo.index().blobs() {
            if bad_packs.contains(&repo.index().pack(loc.pack).0) {
                bad_blobs.insert(*id);
            }
        }
    }
    // 3. Every backup's manifests, and the files the damage touches.
    let mut damaged = BTreeSet::new();
    for summary in &summaries {
        report.backups += 1;
        for node in summary.nodes.iter().filter(|n| n.has_manifest) {
            let manifest = match repo.load_manifest(&summary.name, &node.name).await {
                Ok(manifest) => manifest,
                Err(err) => {
                    report
                        .problems
                        .push(format!("backup {} node {}: {err}", summary.name, node.name));
                    damaged.insert(DamagedFile {
                        backup: summary.name.clone(),
                        node: node.name.clone(),
                        path: "(all files: the manifest is unreadable)".into(),
                    });
                    continue;
                }
            };
            report.manifests += 1;
            let index = repo.index();
            for entry in &manifest.entries {
                let EntryKind::File { chunks, .. } = &entry.kind else {
                    continue;
                };
                report.files += 1;
                let missing = chunks.iter().any(|id| !index.contains(id));
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
    report.damaged_files = damaged.into_iter().collect();
    Ok(report)
}
