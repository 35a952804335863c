//! A backup of every node of the cluster.

use crate::{CoordinatorError, CoordinatorResult};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use strata_agent::backup::{backup_node, NodeSource};
use strata_agent::files_cache::FilesCache;
use strata_agent::progress::Progress;
use strata_repo::summary::{BackupStatus, BackupSummary, NodeSummary};
use strata_repo::writer::{BlobWriter, WriterOptions};
use strata_repo::{BlobId, Repository};

/// How to run a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub writer: WriterOptions,
    /// Where nodes keep their files caches.
    pub state_dir: PathBuf,
    /// The request counter of the storage, to record what the backup cost.
    pub requests: Option<strata_store::CountingStore>,
    /// Files and bytes handled so far, for a live display.
    pub progress: Arc<Progress>,
}

/// A unique, time-sortable backup name such as `20261122T055350Z-3fa1b2c4`: 32 random
/// bits make two backups started in the same second collide with negligible odds.
pub fn new_backup_name() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut suffix = [0u8; 4];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    format!("{compact}-{}", hex::encode(suffix))
}

/// Sum of sealed sizes of `ids` (deduplicated) according to the index.
fn stored_size<'a>(repo: &Repository, ids: impl Iterator<Item = &'a BlobId>) -> u64 {
    let index = repo.index();
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(**id))
        .filter_map(|id| index.get(id))
        .map(|loc| loc.length as u64)
        .sum()
}

/// Error chains as one line: "what: why: why".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Backs up `nodes` in-process and records the backup. Returns the summary, which says
/// whether every node made it. Fails without recording anything when the repository
/// cannot store the data (the repository stays valid: unfinished data is never indexed).
pub async fn run_backup(
    repo: Arc<Repository>,
    nodes: &[NodeSource],
    options: &BackupOptions,
) -> CoordinatorResult<BackupSummary> {
    if nodes.is_empty() {
        return Err(CoordinatorError::NothingToDo(
            "no nodes to back up: give a path (`strata backup DIR`) or configure [[nodes]]".into(),
        ));
    }
    let name = new_backup_name();
    let requests_before = options.requests.as_ref().map(|c| c.counts());
    let started = std::time::SystemTime::now();
    let clock = Instant::now();
    let writer = Arc::new(BlobWriter::start(repo.clone(), options.writer.clone()));
    let mut results = Vec::new();
    for node in nodes {
        let node_name = node.name.clone();
        let cache_path = FilesCache::path(&options.state_dir, &repo.config().id, &node.name);
        let (repo, writer, node) = (repo.clone(), writer.clone(), node.clone());
        let progress = options.progress.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let cache = FilesCache::load(&cache_path);
            backup_node(&repo, &writer, &node, &cache, &progress).map(|b| (b, cache_path))
        })
        .await
        .expect("node backup thread panicked");
        if let Err(strata_agent::AgentError::Repo(err)) = &outcome {
            // The repository itself failed: no node can succeed; stop here.
            return Err(CoordinatorError::Repo(strata_repo::RepoError::Pipeline(
                error_chain(err),
            )));
        }
        results.push((node_name, outcome));
    }
    let writer = Arc::into_inner(writer).expect("node tasks are done");
    writer.finish().await?;

    let mut summaries = Vec::new();
    let mut caches = Vec::new();
    for (node_name, outcome) in results {
        match outcome {
            Ok(((node_backup, new_blobs), cache_path)) => {
                let mut summary = node_backup.summary;
                summary.stored_bytes = stored_size(
                    &repo,
                    node_backup
                        .manifest
                        .entries
                        .iter()
                        .flat_map(|e| match &e.kind {
                            strata_repo::manifest::EntryKind::File { chunks, .. } => {
                                chunks.as_slice()
                            }
                            _ => &[],
                        }),
                );
                summary.new_bytes = stored_size(&repo, new_blobs.iter());
                repo.save_manifest(&name, &node_backup.manifest).await?;
                summary.has_manifest = true;
                summaries.push(summary);
                caches.push((node_backup.cache, cache_path));
            }
            Err(err) => summaries.push(NodeSummary {
                name: node_name,
                status: BackupStatus::Failed,
                error: Some(error_chain(&err)),
                ..NodeSummary::default()
            }),
        }
    }
    let status = if summaries.iter().all(|n| n.status == BackupStatus::Complete) {
        BackupStatus::Complete
    } else if summaries.iter().any(|n| n.has_manifest) {
        BackupStatus::Partial
    } else {
        BackupStatus::Failed
    };
    let summary = BackupSummary {
        name,
        started: humantime::format_rfc3339_millis(started).to_string(),
        duration_ms: clock.elapsed().as_millis() as u64,
        status,
        strata_version: env!("CARGO_PKG_VERSION").to_string(),
        nodes: summaries,
        // Counted up to here; the summary's own PUT is the one request not included.
        requests: options
            .requests
            .as_ref()
            .zip(requests_before)
            .map(|(counter, before)| counter.counts().since(&before)),
    };
    repo.save_summary(&summary).await?;
    // The backup is committed: only now may the caches point at its data.
    for (cache, path) in caches {
        if let Err(err) = cache.save(&path) {
            // A lost cache only costs speed next time; the backup itself is fine.
            eprintln!("warning: {}", error_chain(&err));
        }
    }
    Ok(summary)
}
