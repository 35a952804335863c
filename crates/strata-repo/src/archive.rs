//! Files kept outside backups: PostgreSQL's WAL segments and timeline history files.
//!
//! A continuous archive receives one file at a time, long after and between backups, so
//! its files do not belong to any backup manifest. Each is stored like a backed-up file
//! (chunked, deduplicated, compressed, sealed into packs) and described by one small
//! sealed record under `archive/<space>/<name>`. Garbage collection counts the chunks of
//! every record as live; whoever owns a space (the postgres plugin for `wal`) decides when
//! a record goes.

use crate::format::{decode_object, ObjectKind};
use crate::writer::BlobWriter;
use crate::{BlobId, RepoError, RepoResult, Repository};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record of one archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    /// The file's name inside its space (a WAL segment name, say).
    pub name: String,
    /// The file's length in bytes.
    pub size: u64,
    /// Keyed hash of the whole content: tells "the same file again" from "another file
    /// under the same name" without revealing the content.
    pub content_id: BlobId,
    /// The blob ids of its content, in order (cut by the repository's chunker); empty for an
    /// empty file.
    pub chunks: Vec<BlobId>,
    /// When it was stored, RFC 3339 (UTC).
    pub stored: String,
    /// Facts the owner wants to keep with it (e.g. the PostgreSQL system identifier).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

pub use crate::layout::archive_key;

/// Cuts `data` into chunks and submits the ones the repository lacks to `writer`. The
/// returned record may be saved (with [`Repository::save_archived`]) only after the
/// writer has finished. Blocks while the pipeline is full: call from a blocking thread.
pub fn store_file(
    repo: &Repository,
    writer: &BlobWriter,
    name: &str,
    data: &[u8],
) -> RepoResult<ArchivedFile> {
    store_chunks(repo, writer, name, data, false)
}

/// Like [`store_file`], but stores every chunk again, whatever the index says: for a
/// file whose record exists but whose data was found missing.
pub fn store_file_again(
    repo: &Repository,
    writer: &BlobWriter,
    name: &str,
    data: &[u8],
) -> RepoResult<ArchivedFile> {
    store_chunks(repo, writer, name, data, true)
}

fn store_chunks(
    repo: &Repository,
    writer: &BlobWriter,
    name: &str,
    data: &[u8],
    again: bool,
) -> RepoResult<ArchivedFile> {
    let (chunker, _) = repo.chunkers();
    let mut chunks = Vec::new();
    for chunk in chunker.chunks(data) {
        let id = repo.keys().blob_id(chunk);
        let chunk = Bytes::copy_from_slice(chunk);
        if again {
            writer.rewrite(id, chunk)?;
        } else {
            writer.submit(id, chunk)?;
        }
        chunks.push(id);
    }
    Ok(ArchivedFile {
        name: name.to_string(),
        size: data.len() as u64,
        content_id: repo.keys().blob_id(data),
        chunks,
        stored: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        meta: BTreeMap::new(),
    })
}

impl Repository {
    /// Whether the data of `file` is there: every chunk in the index, and every pack
    /// holding one present in the storage (one fresh listing per pack, never a cache), so
    /// that "already archived" means the data, not only its record.
    pub async fn archived_data_present(&self, file: &ArchivedFile) -> RepoResult<bool> {
        let mut packs = std::collections::BTreeSet::new();
        {
            let index = self.index();
            for id in &file.chunks {
                match index.get(id) {
                    Some(location) => {
                        packs.insert(crate::layout::pack_key(&index.pack(location.pack).0))
                    }
                    None => return Ok(false),
                };
            }
        }
        for key in packs {
            if !self
                .store()
                .list_fresh(&key)
                .await?
                .iter()
                .any(|m| m.key == key)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the record of an archived file (its chunks must be stored already).
    pub async fn save_archived(&self, space: &str, file: &ArchivedFile) -> RepoResult<()> {
        let json = serde_json::to_vec(file).expect("records serialize");
        let key = archive_key(space, &file.name);
        let bytes = self.seal_object(ObjectKind::Archived, &key, &json)?;
        self.store().put(&key, Bytes::from(bytes)).await?;
        Ok(())
    }

    /// The record of an archived file, or `None` when there is none.
    pub async fn load_archived(&self, space: &str, name: &str) -> RepoResult<Option<ArchivedFile>> {
        let key = archive_key(space, name);
        let bytes = match self.store().get(&key).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let plain = decode_object(self.cipher(), ObjectKind::Archived, &bytes, &key)?;
        let file: ArchivedFile =
            serde_json::from_slice(&plain).map_err(|e| RepoError::corrupted(&key, e))?;
        if file.name != name {
            return Err(RepoError::corrupted(
                key,
                format!("holds the record of {:?}", file.name),
            ));
        }
        Ok(Some(file))
    }

    /// The names in a space, sorted.
    pub async fn list_archived(&self, space: &str) -> RepoResult<Vec<String>> {
        let prefix = crate::layout::archive_space(space);
        let mut names: Vec<String> = self
            .store()
            .list(&prefix)
            .await?
            .into_iter()
            .map(|o| o.key.trim_start_matches(&prefix).to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The names in `space` that sort after `after`, in name order: one keys-only LIST
    /// from there on (S3 `start-after`), not of the whole space.
    pub async fn list_archived_after(&self, space: &str, after: &str) -> RepoResult<Vec<String>> {
        let prefix = crate::layout::archive_space(space);
        let mut names: Vec<String> = self
            .store()
            .list_after(&prefix, &format!("{prefix}{after}"))
            .await?
            .into_iter()
            .map(|o| o.key.trim_start_matches(&prefix).to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every archived file of every space, for garbage collection: `(space, record)`.
    pub async fn all_archived(&self) -> RepoResult<Vec<(String, ArchivedFile)>> {
        let mut out = Vec::new();
        for object in self.store().list(crate::layout::ARCHIVE).await? {
            let rest = object.key.trim_start_matches(crate::layout::ARCHIVE);
            let Some((space, name)) = rest.split_once('/') else {
                continue;
            };
            if let Some(file) = self.load_archived(space, name).await? {
                out.push((space.to_string(), file));
            }
        }
        Ok(out)
    }

    /// Forgets an archived file; its data goes with the next garbage collection.
    pub async fn delete_archived(&self, space: &str, name: &str) -> RepoResult<()> {
        self.store().delete(&archive_key(space, name)).await?;
        Ok(())
    }

    /// The content of an archived file, every chunk verified and the whole checked against
    /// its content id.
    pub async fn read_archived(&self, file: &ArchivedFile) -> RepoResult<Vec<u8>> {
        let mut out = Vec::with_capacity(file.size as usize);
        for part in file.chunks.chunks(64) {
            for blob in self.read_blobs(part).await? {
                out.extend_from_slice(&blob);
            }
        }
        if out.len() as u64 != file.size || self.keys().blob_id(&out) != file.content_id {
            return Err(RepoError::corrupted(
                archive_key("?", &file.name),
                "content does not match its record",
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::WriterOptions;
    use crate::InitOptions;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn archived_files_round_trip_and_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let store: strata_store::DynStore = Arc::new(strata_store::LocalStore::new(dir.path()));
        let options = InitOptions {
            kdf: crate::crypto::KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        let repo = Repository::init(store, Some("pw"), options).await.unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
        let (r, d) = (repo.clone(), data.clone());
        let (writer, file) = tokio::task::spawn_blocking(move || {
            let file = store_file(&r, &writer, "000000010000000000000001", &d).unwrap();
            (writer, file)
        })
        .await
        .unwrap();
        let stats = writer.finish().await.unwrap();
        assert!(stats.new_blobs > 0);
        repo.save_archived("wal", &file).await.unwrap();

        let loaded = repo
            .load_archived("wal", "000000010000000000000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded, file);
        assert_eq!(repo.read_archived(&loaded).await.unwrap(), data);
        assert_eq!(
            repo.list_archived("wal").await.unwrap(),
            vec!["000000010000000000000001".to_string()]
        );
        assert_eq!(repo.all_archived().await.unwrap().len(), 1);
        assert!(repo.load_archived("wal", "other").await.unwrap().is_none());

        // The same content again stores nothing new.
        let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
        let (r, d) = (repo.clone(), data.clone());
        let writer = tokio::task::spawn_blocking(move || {
            store_file(&r, &writer, "again", &d).unwrap();
            writer
        })
        .await
        .unwrap();
        assert_eq!(writer.finish().await.unwrap().new_blobs, 0);

        repo.delete_archived("wal", "000000010000000000000001")
            .await
            .unwrap();
        assert!(repo.list_archived("wal").await.unwrap().is_empty());
    }
}
