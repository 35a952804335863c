//! Browsing a backup's files without restoring them (`strata ls`, `GET .../files`).
//!
//! Reads one manifest chunk at a time, and with a path only the chunks the manifest's
//! directory index says cover it: listing one directory of a node of millions of files
//! reads a chunk or two, never the whole manifest.

use crate::{CoordinatorError, CoordinatorResult};
use serde::{Deserialize, Serialize};
use strata_repo::manifest::EntryKind;
use strata_repo::manifest_chunks::is_inside;
use strata_repo::summary::BackupSummary;
use strata_repo::Repository;

/// One entry of a backup as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// The backup node the entry belongs to.
    pub node: String,
    /// Path inside the node's root (lossy UTF-8 for other names).
    pub path: String,
    /// `dir`, `file`, `symlink` or `hardlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Content size of regular files, 0 otherwise.
    pub size: u64,
    /// Permission bits in octal, as `ls -l` users read them (`644`).
    pub mode: String,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Where a symlink points, or the path a hard link shares its content with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Which entries a listing wants.
#[derive(Debug, Clone, Default)]
pub struct FileFilter<'a> {
    /// Only this node (default: every node with a manifest).
    pub node: Option<&'a str>,
    /// Only entries at or below this path (`base/16384`); leading and trailing slashes
    /// are ignored.
    pub path: Option<&'a str>,
}

/// Calls `each` with every entry of `backup` that `filter` selects, node by node in the
/// backup's order and in manifest order within a node. `each` returns false to stop early
/// (a page is full). A node named in the filter that the backup lacks is an error.
pub async fn for_each_file(
    repo: &Repository,
    backup: &BackupSummary,
    filter: &FileFilter<'_>,
    mut each: impl FnMut(FileEntry) -> bool,
) -> CoordinatorResult<()> {
    let prefix = filter
        .path
        .map(|p| p.trim_matches('/').as_bytes().to_vec())
        .unwrap_or_default();
    let nodes: Vec<_> = backup
        .nodes
        .iter()
        .filter(|n| n.has_manifest && filter.node.is_none_or(|want| want == n.name))
        .collect();
    if nodes.is_empty() {
        return Err(CoordinatorError::NoNode(match filter.node {
            Some(node) => format!("backup {} has no node {node:?}", backup.name),
            None => format!("backup {} has no node manifests", backup.name),
        }));
    }
    for node in nodes {
        let mut manifest = repo.open_manifest(&backup.name, &node.name).await?;
        // Only the chunks whose path range covers the prefix are read.
        manifest.restrict_to(&prefix);
        while let Some(part) = manifest.next_part(repo).await {
            for entry in part? {
                // The empty path holds the root directory's own metadata, not a file.
                if entry.path.is_empty() || !is_inside(&entry.path, &prefix) {
                    continue;
                }
                let (kind, target) = match &entry.kind {
                    EntryKind::Dir => ("dir", None),
                    EntryKind::File { .. } => ("file", None),
                    EntryKind::Symlink { target } => ("symlink", Some(target)),
                    EntryKind::HardLink { target } => ("hardlink", Some(target)),
                };
                let keep_going = each(FileEntry {
                    node: node.name.clone(),
                    path: entry.display_path(),
                    kind: kind.into(),
                    size: entry.size(),
                    mode: format!("{:o}", entry.mode),
                    uid: entry.uid,
                    gid: entry.gid,
                    mtime_ns: entry.mtime_ns,
                    target: target.map(|t| String::from_utf8_lossy(t).into_owned()),
                });
                if !keep_going {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
