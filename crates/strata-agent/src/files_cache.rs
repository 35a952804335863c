//! The persistent files cache of a node.
//!
//! After a backup, the node remembers for each regular file its size, mtime, ctime and
//! inode together with the blob ids of its content. The next backup reuses the ids of any
//! file whose four values are unchanged (and whose blobs are still in the repository)
//! without reading it: incremental-forever speed, also after a restart. The cache lives in
//! the node's state directory, one file per repository and node, written atomically.

use crate::{AgentError, AgentResult};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use strata_repo::BlobId;

/// Identity of a file's content as far as the filesystem tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFile {
    path: Vec<u8>,
    stamp: FileStamp,
    chunks: Vec<BlobId>,
}

#[derive(Serialize, Deserialize)]
struct CacheFileV1 {
    version: u32,
    entries: Vec<CachedFile>,
}

/// The cache of one node for one repository.
#[derive(Debug, Default)]
pub struct FilesCache {
    entries: HashMap<Vec<u8>, (FileStamp, Vec<BlobId>)>,
}

impl FilesCache {
    /// Where the cache of `node` for repository `repo_id` lives under `state_dir`.
    pub fn path(state_dir: &Path, repo_id: &str, node: &str) -> PathBuf {
        state_dir
            .join("files-cache")
            .join(repo_id)
            .join(format!("{node}.cache"))
    }

    /// Loads a cache; a missing or unreadable cache is an empty one (it is only a hint).
    pub fn load(path: &Path) -> FilesCache {
        let decoded = std::fs::read(path)
            .ok()
            .and_then(|bytes| zstd::stream::decode_all(&bytes[..]).ok())
            .and_then(|plain| postcard::from_bytes::<CacheFileV1>(&plain).ok())
            .filter(|file| file.version == 1);
        let entries = decoded
            .map(|file| {
                file.entries
                    .into_iter()
                    .map(|e| (e.path, (e.stamp, e.chunks)))
                    .collect()
            })
            .unwrap_or_default();
        FilesCache { entries }
    }

    /// The cached chunk ids of `path` when its stamp is unchanged.
    pub fn lookup(&self, path: &[u8], stamp: &FileStamp) -> Option<&[BlobId]> {
        match self.entries.get(path) {
            Some((cached, chunks)) if cached == stamp => Some(chunks),
            _ => None,
        }
    }

    /// Records a file for the next backup.
    pub fn insert(&mut self, path: Vec<u8>, stamp: FileStamp, chunks: Vec<BlobId>) {
        self.entries.insert(path, (stamp, chunks));
    }

    /// Number of files in the cache.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> AgentResult<()> {
        let entries = self
            .entries
            .iter()
            .map(|(path, (stamp, chunks))| CachedFile {
                path: path.clone(),
                stamp: *stamp,
                chunks: chunks.clone(),
            })
            .collect();
        let plain = postcard::to_stdvec(&CacheFileV1 {
            version: 1,
            entries,
        })
        .expect("cache serializes");
        let bytes = zstd::bulk::compress(&plain, 1).expect("in-memory zstd cannot fail");
        let err = |source| AgentError::Cache {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(dir).map_err(err)?;
        let temp = path.with_extension("cache.tmp");
        let mut file = std::fs::File::create(&temp).map_err(err)?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(err)?;
        std::fs::rename(&temp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = FilesCache::path(dir.path(), "repo1", "db1");
        let stamp = FileStamp {
            size: 10,
            mtime_ns: 5,
            ctime_ns: 6,
            inode: 7,
        };
        let mut cache = FilesCache::default();
        cache.insert(b"/data/a".to_vec(), stamp, vec![BlobId([1; 32])]);
        cache.save(&path).unwrap();
        let loaded = FilesCache::load(&path);
        assert_eq!(
            loaded.lookup(b"/data/a", &stamp),
            Some(&[BlobId([1; 32])][..])
        );
        let touched = FileStamp {
            mtime_ns: 8,
            ..stamp
        };
        assert_eq!(loaded.lookup(b"/data/a", &touched), None);
    }

    #[test]
    fn a_damaged_cache_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cache");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(FilesCache::load(&path).is_empty());
        assert!(FilesCache::load(&dir.path().join("missing")).is_empty());
    }
}
