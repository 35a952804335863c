//! Object storage for strata.
//!
//! Everything strata writes goes through the [`Store`] trait: a deliberately small
//! key/value interface (put, get, ranged get, list, list after a key, delete) that every
//! object storage offers. Concerns such as retries, caching, request counting or fault
//! injection are meant to be wrappers that implement the same trait around another store,
//! so the repository engine never needs to know which backend or which wrappers it talks
//! to. A wrapper implements every method of the trait, the default ones too, and its impl
//! denies `clippy::missing_trait_methods`: a default method added later would otherwise
//! run over the wrapper itself and skip what it adds (a cache's fresh listing served from
//! what it remembers, a listing neither counted nor retried).
//!
//! Keys are `/`-separated relative paths such as `data/ab/abcdef...`. They never start
//! with `/` and never contain `..`; [`validate_key`] enforces that for every backend.
//!
//! A backend, wrapped (retries outside, counting inside), used through the trait:
//!
//! ```
//! use bytes::Bytes;
//! use std::sync::Arc;
//! use strata_store::{CountingStore, DynStore, LocalStore, RetryConfig, RetryStore, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let counting = CountingStore::new(Arc::new(LocalStore::new(dir.path())));
//! let store: DynStore = Arc::new(RetryStore::new(
//!     Arc::new(counting.clone()),
//!     RetryConfig::default(),
//! ));
//!
//! store.put("summaries/b1", Bytes::from_static(b"sealed bytes")).await?;
//! assert_eq!(store.get_range("summaries/b1", 0..6).await?, "sealed");
//! let listed = store.list("summaries/").await?;
//! assert_eq!(listed[0].key, "summaries/b1");
//! assert!(store.get("summaries/b2").await.unwrap_err().is_not_found());
//! assert!(store.put("../escape", Bytes::new()).await.is_err());
//!
//! // Every request that reached the counter, the refused one too.
//! let counts = counting.counts();
//! assert_eq!((counts.put, counts.get, counts.list), (2, 2, 1));
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod cache;
mod class;
mod cloud;
mod counting;
mod error;
mod fault;
mod fence;
mod gcs;
mod late;
mod local;
mod retry;

pub use cache::{CacheRule, CachingStore};
pub use class::InClass;
pub use cloud::CloudStore;
pub use counting::{CountingStore, RequestCounts};
pub use error::{StoreError, StoreResult};
pub use fault::{FaultConfig, FaultyStore, WriteHold};
pub use fence::{Fence, FenceBroken, FenceGuard, FencedStore, VisibleRule};
pub use gcs::GcsStore;
pub use late::{LateLandingStore, TEST_LAND_LATE_ENV};
pub use local::LocalStore;
pub use retry::{RetryConfig, RetryStore};

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// What a listing says about one object: enough to plan work without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key of the object.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, as the storage says (unknown for listings a
    /// cache remembers). Garbage collection spares young unindexed packs by it.
    pub modified: Option<std::time::SystemTime>,
}

/// The storage interface of strata.
///
/// Implementations must make `put` atomic and durable: once it returns `Ok`, a reader sees
/// either the whole new object or (before the call) nothing, and the object survives a crash.
/// Objects are immutable in strata's use, except lease and lock objects.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `key`, replacing any previous object.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Stores `data` under `key` in storage class `class` (S3's storage class, Azure's
    /// access tier, GCS's storage class): for objects written once and seldom read, such
    /// as table archives. A store without classes (a directory) stores it as
    /// [`Store::put`] does; wrappers forward it with their own behaviour for a put.
    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        let _ = class;
        self.put(key, data).await
    }

    /// Stores `data` under `key` only if no object exists there yet; the building block of
    /// leases and of write-once objects. Fails with [`StoreError::AlreadyExists`] otherwise.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Reads a whole object.
    async fn get(&self, key: &str) -> StoreResult<Bytes>;

    /// Reads the byte range `range` of an object; restores read single blobs out of packs.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;

    /// Lists every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>>;

    /// Like [`Store::list`], but never from a remembered listing: wrappers that cache
    /// listings pass this straight to the store.
    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.list(prefix).await
    }

    /// The objects [`Store::list`] would return for `prefix` whose keys sort strictly
    /// after `after` (byte order), in key order: the tail of a listing, which object
    /// stores answer without sending the keys before it (S3's `start-after`, GCS's
    /// `startOffset`, Azure's `startFrom`), so its cost follows the keys returned, not
    /// the keys under `prefix`. The default filters [`Store::list`]: right for every
    /// store, only not cheaper. Wrappers forward it with their own behaviour for a
    /// listing (a retry, a count, a remembered listing filtered the same way).
    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        let mut listed = self.list(prefix).await?;
        listed.retain(|o| o.key.as_str() > after);
        Ok(listed)
    }

    /// The size and write time of one object, without reading it or listing its
    /// neighbours (S3's `HEAD`, a file's metadata); [`StoreError::NotFound`] when there is
    /// none. The default finds it in [`Store::list`]: right for every store, only not
    /// cheaper under a prefix of many keys.
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.list(key)
            .await?
            .into_iter()
            .find(|o| o.key == key)
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
                store: self.describe(),
            })
    }

    /// Deletes an object. Deleting a missing object is not an error (idempotent cleanup).
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// The fence of visible writes, when a [`FencedStore`] is in the stack: locks
    /// register with it so a holder that lost its lock writes nothing visible. Wrappers
    /// pass this through to the store they wrap.
    fn fence(&self) -> Option<Fence> {
        None
    }

    /// Whether a write of a process ends with it: once the process provably ended,
    /// nothing it wrote can still land (a directory on a disk of this host, written with
    /// system calls). False for object storage, whose requests may be applied seconds
    /// later in any order, and for anything unknown. Wrappers that neither delay nor
    /// replay writes pass this through.
    fn writes_end_with_their_writer(&self) -> bool {
        false
    }

    /// A short human-readable description for messages, e.g. `local:/srv/backups`.
    fn describe(&self) -> String;
}

/// A shared handle to any store.
pub type DynStore = Arc<dyn Store>;

/// Checks that a key is a clean relative path, so no backend can be tricked into writing
/// outside its root.
pub fn validate_key(key: &str) -> StoreResult<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.ends_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// True for the object storage URLs [`open_cloud`] opens.
pub fn is_cloud_url(location: &str) -> bool {
    ["s3://", "az://", "azure://", "gs://"]
        .iter()
        .any(|scheme| location.starts_with(scheme))
}

/// Opens an object storage location: S3 and Azure through object_store, GCS through its
/// JSON API.
pub fn open_cloud(
    location: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> StoreResult<DynStore> {
    if let Some(rest) = location.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::UnsupportedLocation(location.to_string()));
        }
        return Ok(Arc::new(GcsStore::open(bucket, prefix, options)?));
    }
    Ok(Arc::new(CloudStore::open(location, options)?))
}

/// Opens a store from a location: a plain path, `file://PATH`, or an object storage URL
/// (`s3://`, `az://`, `gs://`) configured from the environment and `options`.
pub fn open_location(
    location: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> StoreResult<DynStore> {
    if is_cloud_url(location) {
        return open_cloud(location, options);
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    if let Some((scheme, _)) = location.split_once("://") {
        if scheme != "file" {
            return Err(StoreError::UnsupportedLocation(location.to_string()));
        }
    }
    Ok(Arc::new(LocalStore::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_clean_relative_paths() {
        for good in ["config", "data/ab/abcd", "a.b/c-d_e"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", "a/../b", "a//b", "a/", "./a", "..", "a\\b", "a\0b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let none = Default::default();
        assert!(matches!(
            open_location("gopher://x/y", &none),
            Err(StoreError::UnsupportedLocation(_))
        ));
        assert!(open_location("file:///tmp/x", &none).is_ok());
        assert!(open_location("relative/dir", &none).is_ok());
    }
}
