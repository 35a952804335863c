//! The second half of a cluster backup on a node: upload the chunks the coordinator
//! assigned to this node, reading them again from where the scan found them.
//!
//! A chunk is read back by offset and checked against its id before it is sent, so a file
//! that changed since the scan can never put wrong bytes under an id: such a chunk is
//! reported as failed, and the coordinator gives it to another node that holds it.

use crate::backup::{ChunkPlace, ReadFile};
use crate::progress::Progress;
use crate::{AgentError, AgentResult};
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use strata_repo::writer::BlobWriter;
use strata_repo::{BlobId, Repository};

/// What an upload did.
#[derive(Debug, Default)]
pub struct UploadOutcome {
    /// How many blobs this node stored (the others were in the repository already).
    pub stored: u64,
    /// Blobs that could not be read back as scanned, with the reason.
    pub failed: Vec<(BlobId, String)>,
}

/// Reads `ids` from `files` at the places the scan noted and submits them to `writer`.
/// Blocking: run it on a blocking thread.
pub fn upload_chunks(
    repo: &Repository,
    writer: &BlobWriter,
    files: &[ReadFile],
    places: &HashMap<BlobId, ChunkPlace>,
    ids: &[BlobId],
    progress: &Progress,
) -> AgentResult<UploadOutcome> {
    let mut outcome = UploadOutcome::default();
    let mut planned: Vec<(ChunkPlace, BlobId)> = Vec::with_capacity(ids.len());
    for id in ids {
        match places.get(id) {
            Some(place) => planned.push((*place, *id)),
            None => outcome
                .failed
                .push((*id, "this node does not hold the chunk".into())),
        }
    }
    progress.add_total(planned.iter().map(|(p, _)| p.len as u64).sum());
    // In file order, then offset order: every file is opened once and read forwards.
    planned.sort_by_key(|(place, _)| (place.file, place.offset));
    let mut open: Option<(u32, std::io::Result<File>)> = None;
    for (place, id) in planned {
        if progress.is_cancelled() {
            return Err(AgentError::Cancelled);
        }
        let path = &files[place.file as usize].path;
        if open.as_ref().map(|(n, _)| *n) != Some(place.file) {
            // Never through a symlink at the file's name, never blocking on a FIFO; the
            // bytes must hash to the scanned ids anyway.
            let scanned = &files[place.file as usize];
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .and_then(|file| {
                    let meta = file.metadata()?;
                    if (meta.dev(), meta.ino()) == (scanned.dev, scanned.ino) {
                        Ok(file)
                    } else {
                        Err(std::io::Error::other("replaced since it was scanned"))
                    }
                });
            open = Some((place.file, file));
        }
        let file = match &open.as_ref().expect("opened above").1 {
            Ok(file) => file,
            Err(err) => {
                outcome
                    .failed
                    .push((id, format!("{}: {err}", path.display())));
                continue;
            }
        };
        let mut buf = vec![0u8; place.len as usize];
        if let Err(err) = file.read_exact_at(&mut buf, place.offset) {
            outcome
                .failed
                .push((id, format!("{}: {err}", path.display())));
            continue;
        }
        if repo.keys().blob_id(&buf) != id {
            outcome.failed.push((
                id,
                format!("{} changed since it was scanned", path.display()),
            ));
            continue;
        }
        progress.bytes_done(place.len as u64);
        if writer.submit(id, Bytes::from(buf))? {
            outcome.stored += 1;
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{snapshot_node, NodeSource, ScanSink};
    use crate::files_cache::FilesCache;
    use strata_repo::writer::WriterOptions;

    #[test]
    fn uploads_what_the_scan_noted_and_refuses_changed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("stable"), vec![7u8; 300_000]).unwrap();
        std::fs::write(data.join("moving"), vec![9u8; 300_000]).unwrap();
        let (rt, repo) = crate::test_support::scratch_repo(dir.path());
        let source = NodeSource {
            name: "n".into(),
            roots: vec![data.display().to_string()],
            exclude: vec![],
            follow: vec![],
            immutable: false,
        };
        let mut sink = ScanSink {
            repo: &repo,
            missing: HashMap::new(),
        };
        let progress = Progress::default();
        let scan =
            snapshot_node(&repo, &mut sink, &source, &FilesCache::default(), &progress).unwrap();
        assert_eq!(scan.read_files.len(), 2);
        assert!(repo.index().is_empty(), "a scan uploads nothing");
        let ids: Vec<BlobId> = sink.missing.keys().copied().collect();
        assert_eq!(ids.len(), 2, "one chunk per file");
        std::fs::write(data.join("moving"), vec![1u8; 300_000]).unwrap();

        let _guard = rt.enter();
        let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
        let outcome = upload_chunks(
            &repo,
            &writer,
            &scan.read_files,
            &sink.missing,
            &ids,
            &progress,
        )
        .unwrap();
        rt.block_on(writer.finish()).unwrap();
        assert_eq!(outcome.stored, 1);
        assert_eq!(outcome.failed.len(), 1);
        assert!(outcome.failed[0].1.contains("changed since it was scanned"));
        let stable_id = repo.keys().blob_id(&[7u8; 300_000]);
        let stable = rt.block_on(repo.read_blob(&stable_id)).unwrap();
        assert_eq!(stable, vec![7u8; 300_000]);
    }
}
