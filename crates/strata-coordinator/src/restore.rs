//! Restores of a backup onto directories of this machine.

use crate::{CoordinatorError, CoordinatorResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_agent::restore::{restore_stored, ManifestSource, RestoreOptions, RestoreReport};
use strata_repo::summary::BackupSummary;
use strata_repo::Repository;

/// What a restore into a directory of this machine did for one node.
#[derive(Debug, Clone)]
pub struct DirRestore {
    /// The backup node restored.
    pub node: String,
    /// The directory it was restored into: the target itself for one node, else a
    /// subdirectory named after the node.
    pub target: PathBuf,
    /// What the restore did: files written, kept, and what failed.
    pub report: RestoreReport,
}

/// Restores the nodes of `backup` under `target`: directly into it when one node is
/// restored (the backup has one node, or `node` picks one), else into `target/<node>`.
pub async fn run_restore(
    repo: Arc<Repository>,
    backup: &BackupSummary,
    target: &Path,
    node: Option<&str>,
    options: RestoreOptions,
) -> CoordinatorResult<Vec<DirRestore>> {
    let available: Vec<&str> = backup
        .nodes
        .iter()
        .filter(|n| n.has_manifest)
        .map(|n| n.name.as_str())
        .collect();
    let chosen: Vec<&str> = match node {
        Some(wanted) if available.contains(&wanted) => vec![wanted],
        Some(wanted) => {
            return Err(CoordinatorError::NoNode(format!(
                "backup {} has no restorable node {wanted:?} (it has: {})",
                backup.name,
                available.join(", ")
            )))
        }
        None => available,
    };
    if chosen.is_empty() {
        return Err(CoordinatorError::NoNode(format!(
            "backup {} has no restorable node",
            backup.name
        )));
    }
    refuse_live_postgres(target, &chosen)?;
    check_index_damage(&repo, backup, &chosen, &options).await?;
    let mut out = Vec::new();
    for name in &chosen {
        let node_target = if chosen.len() == 1 {
            target.to_path_buf()
        } else {
            target.join(name)
        };
        // Read a chunk at a time: the restore holds one part of the manifest.
        let manifest = repo.open_manifest(&backup.name, name).await?;
        let report = restore_stored(
            repo.clone(),
            ManifestSource::Stored(manifest),
            node_target.clone(),
            options.clone(),
        )
        .await?;
        out.push(DirRestore {
            node: name.to_string(),
            target: node_target,
            report,
        });
    }
    Ok(out)
}

/// Refuses, before anything is written, a restore into a directory that holds a
/// PostgreSQL cluster a postmaster may still hold (running, or crashed with its lock and
/// shared memory in place): `target` itself, or one of the nodes' directories under it.
/// The lock check is the in-place restore's ([`strata_postgres::server::held`]).
fn refuse_live_postgres(target: &Path, chosen: &[&str]) -> CoordinatorResult<()> {
    let mut dirs = vec![target.to_path_buf()];
    if chosen.len() > 1 {
        dirs.extend(chosen.iter().map(|name| target.join(name)));
    }
    for dir in dirs {
        if let Some(why) = strata_postgres::server::held(&dir) {
            return Err(CoordinatorError::Invalid(format!(
                "{} holds a PostgreSQL cluster that may be running: {why}; nothing was written (stop the server, or restore into another directory)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// When index objects were skipped as damaged, refuses before writing anything a restore
/// that needs blobs the index does not list, naming them and the repair; a restore that
/// needs none of them goes ahead. Costs nothing when the index is intact.
async fn check_index_damage(
    repo: &Repository,
    backup: &BackupSummary,
    chosen: &[&str],
    options: &RestoreOptions,
) -> CoordinatorResult<()> {
    use strata_repo::manifest::EntryKind;
    let damaged = repo.damaged_index();
    if damaged.is_empty() {
        return Ok(());
    }
    let include = options.include.as_deref().filter(|p| !p.is_empty());
    let mut missing = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    for name in chosen {
        let manifest = repo.load_manifest(&backup.name, name).await?;
        let index = repo.index();
        for entry in &manifest.entries {
            let EntryKind::File { chunks, .. } = &entry.kind else {
                continue;
            };
            let wanted = include.is_none_or(|prefix| {
                entry.path == prefix
                    || (entry.path.starts_with(prefix)
                        && entry.path.get(prefix.len()) == Some(&b'/'))
            });
            let lacking: Vec<_> = chunks.iter().filter(|id| index.get(id).is_none()).collect();
            if wanted && !lacking.is_empty() {
                missing.extend(lacking.into_iter().map(|id| id.to_hex()));
                files.push(format!("{name}:{}", entry.display_path()));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = damaged.iter().map(|d| d.key.as_str()).collect();
    let blobs: Vec<&str> = missing.iter().take(5).map(|b| &b[..16]).collect();
    Err(CoordinatorError::Damaged(format!(
        "backup {} needs {} blobs the index does not list ({}{}) for {} files (first: {}); \
         damaged index objects were skipped ({}): run `strata repair index`, then restore again",
        backup.name,
        missing.len(),
        blobs.join(", "),
        if missing.len() > 5 { ", ..." } else { "" },
        files.len(),
        files[0],
        keys.join(", ")
    )))
}
