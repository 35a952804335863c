//! Writing and reading node manifests in the repository, a part at a time.
//!
//! A version-4 manifest object is a [`ManifestTop`]; its entries live in chunk blobs that
//! [`ManifestReader::next_part`] reads one by one. Manifests of versions 1 to 3 are one
//! whole object, read as they are: they are one part. Everything that walks a manifest
//! (restore, `ls`, verify, garbage collection) goes through a [`ManifestReader`] and
//! holds one part at a time.

use crate::format::{decode_object, ObjectKind};
use crate::index::BlobLocation;
use crate::layout::pack_key;
use crate::manifest::{Entry, EntryKind, NodeManifest};
use crate::manifest_chunks::{decode_chunk, ChunkPlace, ChunkRef, ManifestBuilder, ManifestTop};
use crate::writer::{BlobWriter, WriterOptions};
use crate::{BlobId, RepoError, RepoResult, Repository};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// The first format version whose manifests are chunked.
pub const CHUNKED_MANIFEST_VERSION: u32 = 4;

/// A node manifest opened for reading: its top (node, roots, directory index) in memory,
/// its entries read part by part.
#[derive(Debug)]
pub struct ManifestReader {
    key: String,
    node: String,
    roots: Vec<String>,
    body: Body,
    /// The parts still to read, as positions.
    next: Range<usize>,
}

#[derive(Debug)]
enum Body {
    /// Versions 1 to 3: one part.
    Whole(Vec<Entry>),
    Chunked(ManifestTop),
}

impl ManifestReader {
    /// The node the manifest belongs to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The source paths on the node, as configured.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// The object's key (for messages).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The top of a chunked manifest; `None` for versions 1 to 3.
    pub fn top(&self) -> Option<&ManifestTop> {
        match &self.body {
            Body::Chunked(top) => Some(top),
            Body::Whole(_) => None,
        }
    }

    /// Number of parts (chunks; 1 for a whole manifest).
    pub fn parts(&self) -> usize {
        match &self.body {
            Body::Chunked(top) => top.chunks.len(),
            Body::Whole(_) => 1,
        }
    }

    /// Limits the parts still to read to those that may hold `prefix` or entries below
    /// it, using the directory index (every part of a whole or unordered manifest).
    /// Entries outside the subtree may still come: the caller filters.
    pub fn restrict_to(&mut self, prefix: &[u8]) {
        if let Body::Chunked(top) = &self.body {
            let range = top.chunks_under(prefix);
            self.next = self.next.start.max(range.start)..self.next.end.min(range.end);
        }
    }

    /// Every chunk blob of the manifest (none for a whole one).
    pub fn chunk_ids(&self) -> Vec<BlobId> {
        self.top()
            .map(|top| top.chunk_ids().copied().collect())
            .unwrap_or_default()
    }

    /// Where the part at `position` starts, for messages: its first path.
    pub fn describe_part(&self, position: usize) -> String {
        match &self.body {
            Body::Chunked(top) => describe_chunk(&self.key, position, top),
            Body::Whole(_) => self.key.clone(),
        }
    }

    /// Starts reading from the first part again (a restore reads a manifest twice:
    /// first to check every path, then to restore). Undoes [`ManifestReader::restrict_to`].
    pub fn rewind(&mut self) {
        self.next = 0..self.parts();
    }

    /// Reads the next part. A part that is missing or damaged is an error that names it
    /// (position, blob, first path); the reader has moved past it, so the caller may go
    /// on with the next one.
    pub async fn next_part(&mut self, repo: &Repository) -> Option<RepoResult<Vec<Entry>>> {
        let position = self.next.next()?;
        match &mut self.body {
            Body::Whole(entries) => Some(Ok(entries.clone())),
            Body::Chunked(top) => Some(read_chunk(repo, &self.key, position, top).await),
        }
    }

    /// Reads every remaining part into one list (for the few callers that need a whole
    /// manifest in memory, e.g. `strata copy` and repairs).
    pub async fn read_all(&mut self, repo: &Repository) -> RepoResult<Vec<Entry>> {
        if let Body::Whole(entries) = &mut self.body {
            self.next = 0..0;
            return Ok(std::mem::take(entries));
        }
        let mut out = Vec::new();
        while let Some(part) = self.next_part(repo).await {
            out.extend(part?);
        }
        Ok(out)
    }
}

fn describe_chunk(key: &str, position: usize, top: &ManifestTop) -> String {
    let chunk = &top.chunks[position];
    format!(
        "chunk {} of {} of {key} (blob {}, entries from {:?})",
        position + 1,
        top.chunks.len(),
        chunk.id.short(),
        String::from_utf8_lossy(&chunk.first_path)
    )
}

async fn read_chunk(
    repo: &Repository,
    key: &str,
    position: usize,
    top: &ManifestTop,
) -> RepoResult<Vec<Entry>> {
    let chunk: &ChunkRef = &top.chunks[position];
    let what = || describe_chunk(key, position, top);
    let placed = match &chunk.at {
        Some(at) => read_placed(repo, &chunk.id, at).await,
        None => Err(RepoError::MissingBlob(chunk.id.to_hex())),
    };
    let bytes = match placed {
        Ok(bytes) => bytes,
        Err(RepoError::Store(e)) if !e.is_not_found() => return Err(RepoError::Store(e)),
        // Moved since (garbage collection repacks), or never placed: the index knows.
        Err(_) => {
            if repo.index().get(&chunk.id).is_none() {
                // Opened without its index (listing, `ls`): loaded now.
                repo.reload_index().await?;
            }
            match repo.read_blob(&chunk.id).await {
                Ok(bytes) => bytes,
                Err(RepoError::Store(e)) if !e.is_not_found() => return Err(RepoError::Store(e)),
                Err(err) => return Err(RepoError::corrupted(what(), err)),
            }
        }
    };
    let entries = decode_chunk(&bytes).map_err(|e| RepoError::corrupted(what(), e))?;
    if entries.len() != chunk.entries as usize
        || entries.first().map(|e| &e.path) != Some(&chunk.first_path)
    {
        return Err(RepoError::corrupted(
            what(),
            "does not hold the entries the manifest lists",
        ));
    }
    Ok(entries)
}

/// Reads a chunk blob where the top says it was stored.
/// A pack found gone (garbage collection moved the chunk since) is looked up in the index.
async fn read_placed(repo: &Repository, id: &BlobId, at: &ChunkPlace) -> RepoResult<Vec<u8>> {
    let range = at.offset..at.offset + at.length as u64;
    let sealed = match repo.store().get_range(&pack_key(&at.pack), range).await {
        Ok(sealed) => sealed,
        Err(e) if e.is_not_found() => return repo.read_blob(id).await,
        Err(e) => return Err(e.into()),
    };
    let location = BlobLocation {
        pack: 0,
        offset: at.offset,
        length: at.length,
        raw_length: at.raw_length,
        compressed: at.compressed,
    };
    match repo.open_blob(id, &sealed, &location) {
        // A catalog opening loads no dictionary until a blob needs one.
        Err(RepoError::MissingDictionary { .. }) => {
            repo.reload_dictionaries().await?;
            repo.open_blob(id, &sealed, &location)
        }
        other => other,
    }
}

impl Repository {
    /// Opens a node manifest of a backup: reads its object (the top of a version-4
    /// manifest, the whole manifest of versions 1 to 3) and checks it is `node`'s.
    pub async fn open_manifest(&self, backup: &str, node: &str) -> RepoResult<ManifestReader> {
        let key = crate::layout::manifest_key(backup, node);
        let bytes = self.store().get(&key).await?;
        let plain = decode_object(self.cipher(), ObjectKind::Manifest, &bytes, &key)?;
        // decode_object checked the header: its version says how the payload is laid out.
        let version = u16::from_le_bytes([bytes[5], bytes[6]]) as u32;
        let (found, roots, body) = if version >= CHUNKED_MANIFEST_VERSION {
            let top = ManifestTop::from_bytes(&plain).map_err(|e| RepoError::corrupted(&key, e))?;
            (top.node.clone(), top.roots.clone(), Body::Chunked(top))
        } else {
            let whole = NodeManifest::from_bytes_of_version(&plain, version)
                .map_err(|e| RepoError::corrupted(&key, e))?;
            (whole.node, whole.roots, Body::Whole(whole.entries))
        };
        // An object served under the wrong key (a broken cache or store) must not restore
        // another node's files.
        if found != node {
            return Err(RepoError::corrupted(
                key,
                format!("holds the manifest of node {found:?}"),
            ));
        }
        let parts = match &body {
            Body::Chunked(top) => top.chunks.len(),
            Body::Whole(_) => 1,
        };
        Ok(ManifestReader {
            key,
            node: found,
            roots,
            body,
            next: 0..parts,
        })
    }

    /// Reads a whole node manifest into memory. Prefer [`Repository::open_manifest`],
    /// which holds one part at a time.
    pub async fn load_manifest(&self, backup: &str, node: &str) -> RepoResult<NodeManifest> {
        let mut reader = self.open_manifest(backup, node).await?;
        let entries = reader.read_all(self).await?;
        Ok(NodeManifest {
            node: reader.node,
            roots: reader.roots,
            entries,
        })
    }

    /// Calls `each` with every blob a node manifest references: its chunk blobs first,
    /// then the content blobs of its files (an id may come more than once). Garbage
    /// collection keeps exactly these. Fails on a manifest or chunk that cannot be read:
    /// nothing may be deleted on the strength of a manifest only partly read.
    pub async fn manifest_references(
        &self,
        backup: &str,
        node: &str,
        mut each: impl FnMut(&BlobId),
    ) -> RepoResult<()> {
        let mut reader = self.open_manifest(backup, node).await?;
        reader.chunk_ids().iter().for_each(&mut each);
        while let Some(part) = reader.next_part(self).await {
            for entry in part? {
                if let EntryKind::File { chunks, .. } = &entry.kind {
                    chunks.iter().for_each(&mut each);
                }
            }
        }
        Ok(())
    }

    /// Writes the top of a chunked manifest. Its chunk blobs must be stored and indexed
    /// first (the [`BlobWriter`] that took them finished).
    /// The places of the chunks are filled in from the index.
    pub async fn save_manifest_top(&self, backup: &str, top: &ManifestTop) -> RepoResult<()> {
        let mut top = top.clone();
        {
            let index = self.index();
            for chunk in &mut top.chunks {
                let location = index
                    .get(&chunk.id)
                    .ok_or_else(|| RepoError::MissingBlob(chunk.id.to_hex()))?;
                chunk.at = Some(ChunkPlace {
                    pack: index.pack(location.pack).0,
                    offset: location.offset,
                    length: location.length,
                    raw_length: location.raw_length,
                    compressed: location.compressed,
                });
            }
        }
        let key = crate::layout::manifest_key(backup, &top.node);
        let bytes = self.seal_object(ObjectKind::Manifest, &key, &top.to_bytes())?;
        self.store().put(&key, Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Writes a node manifest held in memory: its chunks through a writer of its own,
    /// then its top. A backup streams its entries through a [`ManifestBuilder`] instead.
    pub async fn save_manifest(
        self: &Arc<Self>,
        backup: &str,
        manifest: &NodeManifest,
    ) -> RepoResult<()> {
        let mut builder =
            ManifestBuilder::new(self.keys(), manifest.node.clone(), manifest.roots.clone());
        let mut chunks: Vec<_> = manifest
            .entries
            .iter()
            .filter_map(|e| builder.push(e))
            .collect();
        let (last, top) = builder.finish();
        chunks.extend(last);
        self.check_writable()?;
        let writer = Arc::new(BlobWriter::start(self.clone(), WriterOptions::default()));
        let submitting = writer.clone();
        let submitted = tokio::task::spawn_blocking(move || {
            for chunk in chunks {
                submitting.submit(chunk.id, chunk.bytes)?;
            }
            Ok::<_, RepoError>(())
        })
        .await
        .map_err(|e| RepoError::Pipeline(e.to_string()))?;
        let writer = Arc::into_inner(writer).expect("the submitting thread is done");
        let finished = writer.finish().await;
        submitted?;
        finished?;
        self.save_manifest_top(backup, &top).await
    }
}
