//! Copying a backup to another storage, sending only the data it lacks.
//!
//! The two repositories have their own keys, so blob ids differ: each blob is read from the
//! source (authenticated and hash-checked), renamed with the target's id key, and stored
//! unless the target has it. Manifests are rewritten with the target ids and the summary is
//! written last, as for any backup. Finally every blob the copy references is read back
//! from the target and checked, so a copy that lands is a verified copy. The copy holds the
//! target's cluster lock, so no garbage collection there removes what it relies on.

use crate::{CoordinatorError, CoordinatorResult};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use strata_repo::manifest::EntryKind;
use strata_repo::summary::BackupSummary;
use strata_repo::writer::{BlobWriter, WriterOptions};
use strata_repo::{BlobId, Repository};

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CopyReport {
    /// The backup copied.
    pub backup: String,
    /// Distinct blobs the backup references.
    pub blobs: u64,
    /// Blobs the target did not have and received.
    pub blobs_sent: u64,
    /// Bytes of new packs written to the target.
    pub bytes_sent: u64,
    /// Blobs read back from the target and verified.
    pub blobs_verified: u64,
}

/// Copies `backup` from `source` to `target` (both opened with their index).
pub async fn copy_backup(
    source: Arc<Repository>,
    target: Arc<Repository>,
    backup: &BackupSummary,
    writer_options: WriterOptions,
) -> CoordinatorResult<CopyReport> {
    if target
        .list_backups()
        .await?
        .iter()
        .any(|b| b.name == backup.name)
    {
        return Err(CoordinatorError::NothingToDo(format!(
            "backup {} is already in the target storage",
            backup.name
        )));
    }
    // The target's cluster lock, as a backup takes it.
    let id = format!("copy-{}", crate::names::new_backup_name());
    let lock = crate::lock::RepoLock::acquire(
        target.store().clone(),
        &id,
        "copy",
        std::time::Duration::from_secs(60),
    )
    .await?
    .keep_renewed();
    // A writer like a backup: announced to the target's garbage collection before the
    // target's index is read (see `strata_repo::condemned`).
    let mark = match crate::lock::mark_archive_writer(target.store().clone(), "copy").await {
        Ok(mark) => mark,
        Err(err) => {
            lock.release().await;
            return Err(err.into());
        }
    };
    let result = copy_locked(&source, &target, backup, writer_options).await;
    mark.release().await;
    if result.is_ok() {
        crate::listing::compact(&target, false).await;
    }
    lock.release().await;
    result
}

async fn copy_locked(
    source: &Arc<Repository>,
    target: &Arc<Repository>,
    backup: &BackupSummary,
    writer_options: WriterOptions,
) -> CoordinatorResult<CopyReport> {
    // Read after the writer mark: packs condemned before it are not relied on.
    target.reload_index().await?;
    let mut report = CopyReport {
        backup: backup.name.clone(),
        ..CopyReport::default()
    };
    let writer = BlobWriter::start(target.clone(), writer_options);
    let mut renamed: HashMap<BlobId, BlobId> = HashMap::new();
    let mut manifests = Vec::new();
    for node in backup.nodes.iter().filter(|n| n.has_manifest) {
        let mut manifest = source.load_manifest(&backup.name, &node.name).await?;
        for entry in &mut manifest.entries {
            let EntryKind::File { chunks, .. } = &mut entry.kind else {
                continue;
            };
            for id in chunks.iter_mut() {
                if let Some(new_id) = renamed.get(id) {
                    *id = *new_id;
                    continue;
                }
                let plain = source.read_blob(id).await?;
                let new_id = target.keys().blob_id(&plain);
                let writer_ref = &writer;
                let sent =
                    tokio::task::block_in_place(|| writer_ref.submit(new_id, Bytes::from(plain)))?;
                report.blobs_sent += u64::from(sent);
                renamed.insert(*id, new_id);
                *id = new_id;
            }
        }
        manifests.push(manifest);
    }
    report.bytes_sent = writer.finish().await?.new_pack_bytes;
    report.blobs = renamed.len() as u64;
    for manifest in &manifests {
        target.save_manifest(&backup.name, manifest).await?;
    }
    // Read back everything the copy references before making it visible.
    let unique: HashSet<BlobId> = renamed.values().copied().collect();
    for id in &unique {
        target.read_blob(id).await?;
        report.blobs_verified += 1;
    }
    let mut summary = backup.clone();
    summary.requests = None;
    target.save_summary(&summary).await?;
    Ok(report)
}
