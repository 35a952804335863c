//! A store in a local directory: the embedded default.
//!
//! Writes are atomic (a temporary file in the target directory, then `rename`) and
//! durable (the file and its directory are fsynced before `put` returns), so a crash or
//! power loss leaves either the complete object or none. Temporary files start with
//! `.tmp-` and are never listed.

use crate::{validate_key, ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const TEMP_PREFIX: &str = ".tmp-";

/// A repository directory on a local (or mounted) filesystem.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// Whether this store has found its directory in place (a read or a write succeeded).
    /// Shared by the clones each operation makes.
    root_seen: Arc<AtomicBool>,
}

impl LocalStore {
    /// A store rooted at `root`; the directory is created on the first write, but never
    /// again once this store has seen it: a directory that disappears while in use (an
    /// unmounted disk, a moved repository) makes writes fail instead of starting a new,
    /// partial tree on whatever filesystem is left, where a WAL segment or a pack would
    /// be reported stored and then be lost.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            root_seen: Arc::new(AtomicBool::new(false)),
        }
    }

    fn saw_root(&self) {
        self.root_seen.store(true, Ordering::Relaxed);
    }

    /// Refuses a write when the directory this store has seen is gone.
    fn check_root(&self) -> StoreResult<()> {
        if self.root_seen.load(Ordering::Relaxed) && !self.root.is_dir() {
            return Err(StoreError::Io {
                op: "write into",
                path: self.root.clone(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "the storage directory is gone (unmounted or moved?); it is not created again",
                ),
            });
        }
        Ok(())
    }

    /// The directory this store writes into.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> StoreResult<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            key: key.to_string(),
            store: self.describe(),
        }
    }

    fn io_error(&self, op: &'static str, path: &Path, key: &str, err: io::Error) -> StoreError {
        if err.kind() == io::ErrorKind::NotFound {
            self.not_found(key)
        } else {
            StoreError::Io {
                op,
                path: path.to_path_buf(),
                source: err,
            }
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to a new temporary file beside `path` and fsyncs it.
fn write_temp(path: &Path, data: &[u8]) -> StoreResult<PathBuf> {
    let dir = path.parent().expect("store paths always have a parent");
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    let temp = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(suffix)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(StoreError::Io {
            op: "write",
            path: temp,
            source: err,
        });
    }
    Ok(temp)
}

/// Makes a rename or link inside `dir` durable.
fn sync_dir(dir: &Path) -> StoreResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

impl LocalStore {
    fn put_blocking(&self, key: &str, data: &[u8], if_absent: bool) -> StoreResult<()> {
        let path = self.path_of(key)?;
        self.check_root()?;
        let temp = write_temp(&path, data)?;
        self.saw_root();
        let published = if if_absent {
            // link() fails atomically when the target exists: a conditional put.
            fs::hard_link(&temp, &path)
        } else {
            fs::rename(&temp, &path)
        };
        if if_absent || published.is_err() {
            let _ = fs::remove_file(&temp);
        }
        match published {
            Ok(()) => sync_dir(path.parent().expect("parent")),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                    store: self.describe(),
                })
            }
            Err(err) => Err(StoreError::Io {
                op: "publish",
                path,
                source: err,
            }),
        }
    }

    fn get_range_blocking(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Bytes> {
        let path = self.path_of(key)?;
        let mut file = File::open(&path).map_err(|e| self.io_error("open", &path, key, e))?;
        self.saw_root();
        let size = file
            .metadata()
            .map_err(|e| self.io_error("stat", &path, key, e))?
            .len();
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(StoreError::OutOfRange {
                key: key.to_string(),
                size,
                start: range.start,
                end: range.end,
            });
        }
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| self.io_error("read", &path, key, e))?;
        Ok(Bytes::from(buf))
    }

    /// The objects under `prefix` whose keys sort after `after`, if given: what sorts
    /// before it is passed over before it is stat'ed (a directory whose every key sorts
    /// before it, without being read).
    fn list_blocking(&self, prefix: &str, after: Option<&str>) -> StoreResult<Vec<ObjectMeta>> {
        let before_start = |key: &str| after.is_some_and(|a| key <= a);
        // Walk only the deepest directory the prefix names completely.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = self.root.join(dir_part);
        let mut out = Vec::new();
        let mut stack = vec![(start, dir_part.to_string())];
        while let Some((dir, key_prefix)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_err("list", &dir)(err)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err("list", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let key = if key_prefix.is_empty() {
                    name
                } else {
                    format!("{key_prefix}/{name}")
                };
                let file_type = entry.file_type().map_err(io_err("list", &dir))?;
                if file_type.is_dir() {
                    // Every key under it starts with `key/`: all of them sort before
                    // `after` when `key/` does and `after` is not under it.
                    let dir = format!("{key}/");
                    let passed = before_start(&dir) && !after.is_some_and(|a| a.starts_with(&dir));
                    if !passed && (key.starts_with(prefix) || prefix.starts_with(&dir)) {
                        stack.push((entry.path(), key));
                    }
                } else if key.starts_with(prefix) && !before_start(&key) {
                    let meta = match entry.metadata() {
                        Ok(meta) => meta,
                        // Deleted between the directory read and the stat: a listing
                        // taken a moment later, as an object store's may be.
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(io_err("stat", &dir)(err)),
                    };
                    out.push(ObjectMeta {
                        key,
                        size: meta.len(),
                        modified: meta.modified().ok(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One object's metadata: a regular file (a directory or anything else is no object,
    /// as a listing would not show it).
    fn head_blocking(&self, key: &str) -> StoreResult<ObjectMeta> {
        let path = self.path_of(key)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| self.io_error("stat", &path, key, e))?;
        self.saw_root();
        if !meta.is_file() {
            return Err(self.not_found(key));
        }
        Ok(ObjectMeta {
            key: key.to_string(),
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    fn delete_blocking(&self, key: &str) -> StoreResult<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("parent")),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err("delete", &path)(err)),
        }
    }
}

/// Runs blocking filesystem work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("store task panicked")
}

#[async_trait]
impl Store for LocalStore {
    /// On a disk of this host: every write is a system call of the writing process
    /// (written, synced and renamed into place), so none lands after it ended. On a
    /// network file system another host's kernel may hold a write back: not claimed.
    fn writes_end_with_their_writer(&self) -> bool {
        strata_liveness::on_a_local_disk(&self.root)
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.put_blocking(&key, &data, false)).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.put_blocking(&key, &data, true)).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.get_range_blocking(&key, None)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.get_range_blocking(&key, Some(range))).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        blocking(move || this.list_blocking(&prefix, None)).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        let (this, prefix, after) = (self.clone(), prefix.to_string(), after.to_string());
        blocking(move || this.list_blocking(&prefix, Some(&after))).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.head_blocking(&key)).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.delete_blocking(&key)).await
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("repo"));
        (dir, store)
    }

    #[tokio::test]
    async fn a_directory_that_disappears_is_not_created_again() {
        let (dir, store) = store();
        // A fresh location is created by the first write.
        store
            .put("packs/a", Bytes::from_static(b"a"))
            .await
            .unwrap();
        // Then the directory goes away (an unmount, a move) under a store in use.
        std::fs::rename(dir.path().join("repo"), dir.path().join("moved")).unwrap();
        let err = store
            .put("packs/b", Bytes::from_static(b"b"))
            .await
            .unwrap_err();
        assert!(
            format!("{err} {}", std::error::Error::source(&err).unwrap()).contains("is gone"),
            "{err}"
        );
        assert!(!err.is_transient());
        assert!(!dir.path().join("repo").exists(), "recreated");
        // A store that found the directory by reading it counts as having seen it too.
        std::fs::rename(dir.path().join("moved"), dir.path().join("repo")).unwrap();
        let reader = LocalStore::new(dir.path().join("repo"));
        reader.get("packs/a").await.unwrap();
        std::fs::rename(dir.path().join("repo"), dir.path().join("moved")).unwrap();
        assert!(reader
            .put("packs/c", Bytes::from_static(b"c"))
            .await
            .is_err());
        assert!(!dir.path().join("repo").exists(), "recreated");
    }

    #[tokio::test]
    async fn put_get_roundtrip_and_ranges() {
        let (_dir, store) = store();
        store
            .put("data/ab/abc", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(&store.get("data/ab/abc").await.unwrap()[..], b"hello world");
        assert_eq!(
            &store.get_range("data/ab/abc", 6..11).await.unwrap()[..],
            b"world"
        );
        assert!(matches!(
            store.get_range("data/ab/abc", 6..12).await,
            Err(StoreError::OutOfRange { size: 11, .. })
        ));
        assert!(store
            .get("data/ab/missing")
            .await
            .unwrap_err()
            .is_not_found());
    }

    #[tokio::test]
    async fn put_if_absent_refuses_existing_objects() {
        let (_dir, store) = store();
        store
            .put_if_absent("lock", Bytes::from_static(b"a"))
            .await
            .unwrap();
        let err = store
            .put_if_absent("lock", Bytes::from_static(b"b"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        assert_eq!(&store.get("lock").await.unwrap()[..], b"a");
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(store.root()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[tokio::test]
    async fn list_filters_by_prefix_and_hides_temporaries() {
        let (_dir, store) = store();
        for key in [
            "summaries/b",
            "summaries/a",
            "manifests/a/n1",
            "data/00/x",
            "config",
        ] {
            store.put(key, Bytes::from_static(b"x")).await.unwrap();
        }
        fs::write(store.root().join("summaries/.tmp-123"), b"partial").unwrap();
        let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.list("summaries/").await.unwrap()),
            ["summaries/a", "summaries/b"]
        );
        assert_eq!(
            keys(store.list("manifests/a/").await.unwrap()),
            ["manifests/a/n1"]
        );
        assert_eq!(keys(store.list("con").await.unwrap()), ["config"]);
        assert_eq!(store.list("").await.unwrap().len(), 5);
        assert!(store.list("nothing/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn list_after_returns_the_tail_and_passes_over_directories_before_it() {
        let (_dir, store) = store();
        for key in [
            "listing/pages/a/x",
            "listing/pages/b/x",
            "listing/entries/e1",
            "summaries/20261125T000000Z-1",
            "summaries/20261126T000000Z-2",
            "summaries/backup",
            "summit",
        ] {
            store.put(key, Bytes::from_static(b"x")).await.unwrap();
        }
        fs::write(store.root().join("summaries/.tmp-9"), b"partial").unwrap();
        let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        let after = |prefix: &'static str, after: &'static str| {
            let store = store.clone();
            async move { keys(store.list_after(prefix, after).await.unwrap()) }
        };
        assert_eq!(
            after("summaries/", "summaries/20261125T120000").await,
            ["summaries/20261126T000000Z-2", "summaries/backup"]
        );
        assert_eq!(
            after("summaries/", "summaries/backup").await,
            Vec::<String>::new()
        );
        assert_eq!(after("summaries/", "").await.len(), 3);
        assert_eq!(after("sum", "summaries/z").await, ["summit"]);
        // A directory wholly before `after` is passed over, one `after` is inside of is not.
        assert_eq!(
            after("listing/", "listing/pages/a/x").await,
            ["listing/pages/b/x"]
        );
        assert_eq!(after("listing/", "listing/entries/e0").await.len(), 3);
        assert_eq!(after("listing/", "listing/entries0").await.len(), 2);
    }

    #[tokio::test]
    async fn delete_is_idempotent() {
        let (_dir, store) = store();
        store.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        store.delete("a/b").await.unwrap();
        store.delete("a/b").await.unwrap();
        assert!(store.get("a/b").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let (_dir, store) = store();
        let err = store.put("../evil", Bytes::new()).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey(_)));
    }
}
