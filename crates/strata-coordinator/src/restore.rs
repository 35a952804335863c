//! Restores of a backup onto directories of this machine.

use crate::{CoordinatorError, CoordinatorResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_agent::restore::{restore_node, RestoreOptions, RestoreReport};
use strata_repo::summary::BackupSummary;
use strata_repo::Repository;

/// The outcome for one node.
#[derive(Debug, Clone)]
pub struct NodeRestore {
    pub node: String,
    pub target: PathBuf,
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
) -> CoordinatorResult<Vec<NodeRestore>> {
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
    let mut out = Vec::new();
    for name in &chosen {
        let node_target = if chosen.len() == 1 {
            target.to_path_buf()
        } else {
            target.join(name)
        };
        let manifest = Arc::new(repo.load_manifest(&backup.name, name).await?);
        let report =
            restore_node(repo.clone(), manifest, node_target.clone(), options.clone()).await?;
        out.push(NodeRestore {
            node: name.to_string(),
            target: node_target,
            report,
        });
    }
    Ok(out)
}
