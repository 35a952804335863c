//! Test-only: writes that the client gives up on and the storage applies later.
//!
//! An object store that received a whole request may apply it after the client timed
//! out and moved on, seconds or minutes later. `STRATA_TEST_LAND_LATE=PREFIX:DIR` gives
//! the real binary such a storage: every write of a key under `PREFIX` fails as a
//! timeout, and its body is kept as `DIR/<n>.data` beside `DIR/<n>.key` (the key), for
//! the test to land it whenever it likes (by writing it at that key). It sits below the
//! fence, where the storage is. Never set it on a repository that matters.

use crate::{DynStore, ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Test-only switch: `PREFIX:DIR` (see the module's doc).
pub const TEST_LAND_LATE_ENV: &str = "STRATA_TEST_LAND_LATE";

/// A store whose writes under a prefix land only when the test lands them.
#[derive(Debug)]
pub struct LateLandingStore {
    inner: DynStore,
    prefix: String,
    dir: PathBuf,
    next: AtomicU64,
}

impl LateLandingStore {
    /// `inner` wrapped as `STRATA_TEST_LAND_LATE` asks, or as it is when that is unset.
    pub fn from_test_env(inner: DynStore) -> DynStore {
        match strata_util::test_switch(TEST_LAND_LATE_ENV).and_then(|v| {
            v.split_once(':')
                .map(|(p, d)| (p.to_string(), PathBuf::from(d)))
        }) {
            Some((prefix, dir)) => std::sync::Arc::new(LateLandingStore {
                inner,
                prefix,
                dir,
                next: AtomicU64::new(0),
            }),
            None => inner,
        }
    }

    /// Keeps the write of `key` for the test to land, and fails it as a timeout.
    fn divert(&self, key: &str, data: &Bytes) -> StoreResult<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let stem = self.dir.join(format!("{}-{n}", std::process::id()));
        let kept = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(stem.with_extension("data"), data))
            .and_then(|()| std::fs::write(stem.with_extension("key"), key));
        let message = match kept {
            Ok(()) => "timed out (test: this write lands later)".to_string(),
            Err(e) => format!("timed out (test: could not keep the write: {e})"),
        };
        Err(StoreError::Transient {
            op: "put",
            key: key.to_string(),
            store: self.describe(),
            message,
        })
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for LateLandingStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if key.starts_with(&self.prefix) {
            return self.divert(key, &data);
        }
        self.inner.put(key, data).await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        if key.starts_with(&self.prefix) {
            return self.divert(key, &data);
        }
        self.inner.put_in_class(key, data, class).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if key.starts_with(&self.prefix) {
            return self.divert(key, &data);
        }
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list_fresh(prefix).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list_after(prefix, after).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    fn fence(&self) -> Option<crate::Fence> {
        self.inner.fence()
    }

    /// Its writes land late by design: never claimed.
    fn writes_end_with_their_writer(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
