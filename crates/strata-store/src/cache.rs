//! A local, size-bounded cache of immutable objects.
//!
//! Which objects are immutable is not this crate's knowledge: the owner of the key layout
//! (`strata_repo::layout`) hands a [`CacheRule`] to whoever builds the store stack. Objects
//! the rule calls cacheable are written once and never changed, so a copy on local disk
//! stays valid for as long as the object exists. Reads of those objects are served from
//! the cache; writes go through to the store and into the cache; deletes remove both.
//! Listings (whole or after a key) always ask the store (they are the truth of which
//! objects exist), except the listing of the rule's `remembered_listing` prefix (a
//! repository's keys), which is remembered so that opening a repository with a warm cache
//! costs one request (the generation key, below): [`Store::list_fresh`] asks the store
//! again when a remembered listing lacks a key. Large objects read once (packs) are left
//! out by the rule.
//!
//! The rule's `generation_key` (a repository's `config`) is the exception among cached
//! objects: it changes when a repository is migrated to a new format (which rewrites
//! objects in place) or recreated at the same location, so it is always read from the
//! store (one GET per open), and when it differs from the cached copy the whole cache is
//! dropped: no stale object outlives its repository's format.

use crate::{DynStore, ObjectMeta, Store, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const KEY_LISTING: &str = "listing-of-keys";

/// Which keys a [`CachingStore`] keeps, supplied by the owner of the key layout.
#[derive(Debug, Clone, Copy)]
pub struct CacheRule {
    /// Whether an object is immutable under its key and worth a local copy.
    pub cacheable: fn(&str) -> bool,
    /// A cacheable key read from the store on every get; when it differs from the cached
    /// copy, every cached object is dropped.
    pub generation_key: &'static str,
    /// The one prefix whose listing is remembered (asked again by `list_fresh`).
    pub remembered_listing: &'static str,
}

/// The caching wrapper.
#[derive(Debug)]
pub struct CachingStore {
    inner: DynStore,
    rule: CacheRule,
    dir: PathBuf,
    max_bytes: u64,
    /// Serialises evictions.
    evicting: Mutex<()>,
}

impl CachingStore {
    /// Caches the objects of `inner` that `rule` names in `dir`, keeping at most about
    /// `max_bytes` there.
    pub fn new(inner: DynStore, rule: CacheRule, dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        CachingStore {
            inner,
            rule,
            dir: dir.into(),
            max_bytes,
            evicting: Mutex::new(()),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join("objects").join(key)
    }

    fn read(&self, path: &Path) -> Option<Bytes> {
        let data = std::fs::read(path).ok()?;
        // Touch it: eviction removes the least recently used objects first.
        let _ = filetime_now(path);
        Some(Bytes::from(data))
    }

    /// Writes a cache file atomically; failures only cost a later request.
    fn write(&self, path: &Path, data: &[u8]) {
        let Some(dir) = path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        // A name of its own per write: threads of one process fill the same directories.
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix).expect("the OS random source is available");
        let temp = dir.join(format!(".tmp-{}", hex::encode(suffix)));
        let written = std::fs::File::create(&temp).and_then(|mut f| f.write_all(data));
        if written.is_ok() && std::fs::rename(&temp, path).is_ok() {
            self.evict();
        } else {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Removes the least recently used files until the cache fits its budget.
    fn evict(&self) {
        let Ok(_guard) = self.evicting.try_lock() else {
            return;
        };
        let mut files = Vec::new();
        let mut stack = vec![self.dir.join("objects")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    files.push((meta.modified().ok(), meta.len(), entry.path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes * 9 / 10 {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }

    fn listing_path(&self) -> PathBuf {
        self.dir.join(KEY_LISTING)
    }

    fn remember_listing(&self, listing: &[ObjectMeta]) {
        let text: String = listing
            .iter()
            .map(|m| format!("{} {}\n", m.size, m.key))
            .collect();
        self.write(&self.listing_path(), text.as_bytes());
    }

    fn remembered_listing(&self) -> Option<Vec<ObjectMeta>> {
        let text = std::fs::read_to_string(self.listing_path()).ok()?;
        text.lines()
            .map(|line| {
                let (size, key) = line.split_once(' ')?;
                Some(ObjectMeta {
                    key: key.to_string(),
                    size: size.parse().ok()?,
                    modified: None,
                })
            })
            .collect()
    }
}

fn filetime_now(path: &Path) -> std::io::Result<()> {
    std::fs::File::options()
        .append(true)
        .open(path)?
        .set_modified(std::time::SystemTime::now())
}

// Every method is forwarded explicitly, the trait's defaults too: a default added to
// `Store` later fails clippy here until this wrapper says what it does with it.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for CachingStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(key, data.clone()).await?;
        if (self.rule.cacheable)(key) {
            self.write(&self.path(key), &data);
        }
        Ok(())
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        self.inner.put_in_class(key, data.clone(), class).await?;
        if (self.rule.cacheable)(key) {
            self.write(&self.path(key), &data);
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put_if_absent(key, data.clone()).await?;
        if (self.rule.cacheable)(key) {
            self.write(&self.path(key), &data);
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        if !(self.rule.cacheable)(key) {
            return self.inner.get(key).await;
        }
        crate::validate_key(key)?;
        let path = self.path(key);
        if key == self.rule.generation_key {
            let data = self.inner.get(key).await?;
            if self.read(&path).is_some_and(|cached| cached != data) {
                let _ = std::fs::remove_dir_all(self.dir.join("objects"));
                let _ = std::fs::remove_file(self.listing_path());
            }
            self.write(&path, &data);
            return Ok(data);
        }
        if let Some(data) = self.read(&path) {
            return Ok(data);
        }
        let data = self.inner.get(key).await?;
        self.write(&path, &data);
        Ok(data)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        if prefix == self.rule.remembered_listing {
            if let Some(listing) = self.remembered_listing() {
                return Ok(listing);
            }
        }
        self.list_fresh(prefix).await
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let listing = self.inner.list_fresh(prefix).await?;
        if prefix == self.rule.remembered_listing && !listing.is_empty() {
            self.remember_listing(&listing);
        }
        Ok(listing)
    }

    /// The tail of what [`Store::list`] answers here: of the remembered listing for its
    /// prefix (filtered, as `list` would serve it), else of the store's own listing.
    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        if prefix == self.rule.remembered_listing {
            let mut listing = self.list(prefix).await?;
            listing.retain(|o| o.key.as_str() > after);
            return Ok(listing);
        }
        self.inner.list_after(prefix, after).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await?;
        let _ = std::fs::remove_file(self.path(key));
        Ok(())
    }

    fn fence(&self) -> Option<crate::Fence> {
        self.inner.fence()
    }

    fn writes_end_with_their_writer(&self) -> bool {
        self.inner.writes_end_with_their_writer()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A rule shaped like a repository's (this crate knows no prefix of its own).
    fn rule() -> CacheRule {
        CacheRule {
            cacheable: |key| key == "config" || key.starts_with("summaries/"),
            generation_key: "config",
            remembered_listing: "keys/",
        }
    }

    #[tokio::test]
    async fn a_changed_config_drops_every_cached_object() {
        let dir = tempfile::tempdir().unwrap();
        let inner: DynStore = Arc::new(crate::LocalStore::new(dir.path().join("store")));
        let cache = CachingStore::new(inner.clone(), rule(), dir.path().join("cache"), 1 << 20);
        cache
            .put("config", Bytes::from_static(b"v1"))
            .await
            .unwrap();
        cache
            .put("summaries/a", Bytes::from_static(b"old"))
            .await
            .unwrap();
        assert_eq!(&cache.get("summaries/a").await.unwrap()[..], b"old");
        // Another host migrates the repository: config and objects rewritten in place.
        inner
            .put("config", Bytes::from_static(b"v2"))
            .await
            .unwrap();
        inner
            .put("summaries/a", Bytes::from_static(b"new"))
            .await
            .unwrap();
        assert_eq!(&cache.get("config").await.unwrap()[..], b"v2");
        assert_eq!(&cache.get("summaries/a").await.unwrap()[..], b"new");
        // An unchanged config keeps the cache.
        inner
            .put("summaries/a", Bytes::from_static(b"newer"))
            .await
            .unwrap();
        assert_eq!(&cache.get("config").await.unwrap()[..], b"v2");
        assert_eq!(&cache.get("summaries/a").await.unwrap()[..], b"new");
    }

    /// `list_fresh` asks the store past a remembered listing (and remembers what it
    /// found), `list_after` of the remembered prefix answers what `list` would, and the
    /// tail of any other prefix comes from the store.
    #[tokio::test]
    async fn fresh_listings_pass_the_remembered_listing_and_tails_follow_list() {
        let dir = tempfile::tempdir().unwrap();
        let inner: DynStore = Arc::new(crate::LocalStore::new(dir.path().join("store")));
        let counted = crate::CountingStore::new(inner.clone());
        let cache = CachingStore::new(
            Arc::new(counted.clone()),
            rule(),
            dir.path().join("cache"),
            1 << 20,
        );
        let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        cache.put("keys/a", Bytes::from_static(b"k")).await.unwrap();
        assert_eq!(keys(cache.list("keys/").await.unwrap()), ["keys/a"]);
        inner.put("keys/b", Bytes::from_static(b"k")).await.unwrap();
        let lists = counted.counts().list;
        assert_eq!(keys(cache.list("keys/").await.unwrap()), ["keys/a"]);
        assert!(cache
            .list_after("keys/", "keys/a")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            counted.counts().list,
            lists,
            "both from the remembered listing"
        );
        assert_eq!(
            keys(cache.list_fresh("keys/").await.unwrap()),
            ["keys/a", "keys/b"]
        );
        assert_eq!(counted.counts().list, lists + 1);
        assert_eq!(
            keys(cache.list_after("keys/", "keys/a").await.unwrap()),
            ["keys/b"]
        );
        assert_eq!(counted.counts().list, lists + 1, "remembered afresh");

        for key in ["summaries/a", "summaries/b"] {
            cache.put(key, Bytes::from_static(b"s")).await.unwrap();
        }
        let tail = cache.list_after("summaries/", "summaries/a").await.unwrap();
        assert_eq!(counted.counts().list, lists + 2);
        assert_eq!(keys(tail.clone()), ["summaries/b"]);
        assert!(tail[0].modified.is_some(), "the store's own listing");
    }
}
