//! Request counting: what a backup cost in requests and bytes, kept in one place.

use crate::{DynStore, ObjectMeta, Store, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Requests sent to a storage and bytes moved, including failed and retried requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Writes: plain and conditional puts.
    pub put: u64,
    /// Reads: whole objects and byte ranges.
    pub get: u64,
    /// Listings, each counted once however many keys (and object store pages) it returned.
    pub list: u64,
    /// Deletes.
    pub delete: u64,
    /// Bytes of every put's body, failed puts included.
    pub bytes_sent: u64,
    /// Bytes returned by the reads that succeeded.
    pub bytes_received: u64,
}

impl RequestCounts {
    /// The requests made between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            put: self.put - earlier.put,
            get: self.get - earlier.get,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    put: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// Keys returned by listings (what a listing's cost follows: object stores return
    /// about a thousand keys per request).
    keys_listed: AtomicU64,
    /// Failed requests by kind (put, get, list, delete); "not found" and "already exists"
    /// are answers, not failures, and are not counted.
    errors: [AtomicU64; 4],
}

/// Failed requests by kind, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestErrors {
    /// Puts (plain and conditional) that failed; "already exists" is an answer, not counted.
    pub put: u64,
    /// Reads that failed; "not found" is an answer, not counted.
    pub get: u64,
    /// Listings that failed.
    pub list: u64,
    /// Deletes that failed.
    pub delete: u64,
}

const PUT: usize = 0;
const GET: usize = 1;
const LIST: usize = 2;
const DELETE: usize = 3;

/// The counting wrapper. Clones share their counters.
#[derive(Debug, Clone)]
pub struct CountingStore {
    inner: DynStore,
    counters: Arc<Counters>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: DynStore) -> Self {
        CountingStore {
            inner,
            counters: Arc::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            put: c.put.load(Ordering::Relaxed),
            get: c.get.load(Ordering::Relaxed),
            list: c.list.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
    }

    /// Keys returned by listings so far ([`Store::list`], [`Store::list_fresh`] and
    /// [`Store::list_after`] alike): a listing of many keys is one counted LIST but
    /// several requests to an object store, about one per thousand keys.
    pub fn keys_listed(&self) -> u64 {
        self.counters.keys_listed.load(Ordering::Relaxed)
    }

    /// The failed requests so far.
    pub fn errors(&self) -> RequestErrors {
        let e = &self.counters.errors;
        RequestErrors {
            put: e[PUT].load(Ordering::Relaxed),
            get: e[GET].load(Ordering::Relaxed),
            list: e[LIST].load(Ordering::Relaxed),
            delete: e[DELETE].load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `result` as a failed request of `kind` if it is one.
    fn checked<T>(&self, kind: usize, result: StoreResult<T>) -> StoreResult<T> {
        if let Err(e) = &result {
            let answer = e.is_not_found() || matches!(e, crate::StoreError::AlreadyExists { .. });
            if !answer {
                Self::count(&self.counters.errors[kind], 1);
            }
        }
        result
    }

    /// Counts a listing and the keys it returned.
    fn listed(&self, result: StoreResult<Vec<ObjectMeta>>) -> StoreResult<Vec<ObjectMeta>> {
        let listed = self.checked(LIST, result)?;
        Self::count(&self.counters.keys_listed, listed.len() as u64);
        Ok(listed)
    }
}

// Every method is forwarded explicitly, the trait's defaults too: a default added to
// `Store` later fails clippy here until this wrapper says what it does with it.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for CountingStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        Self::count(&self.counters.put, 1);
        Self::count(&self.counters.bytes_sent, data.len() as u64);
        self.checked(PUT, self.inner.put(key, data).await)
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        Self::count(&self.counters.put, 1);
        Self::count(&self.counters.bytes_sent, data.len() as u64);
        self.checked(PUT, self.inner.put_in_class(key, data, class).await)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        Self::count(&self.counters.put, 1);
        Self::count(&self.counters.bytes_sent, data.len() as u64);
        self.checked(PUT, self.inner.put_if_absent(key, data).await)
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        Self::count(&self.counters.get, 1);
        let data = self.checked(GET, self.inner.get(key).await)?;
        Self::count(&self.counters.bytes_received, data.len() as u64);
        Ok(data)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        Self::count(&self.counters.get, 1);
        let data = self.checked(GET, self.inner.get_range(key, range).await)?;
        Self::count(&self.counters.bytes_received, data.len() as u64);
        Ok(data)
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        Self::count(&self.counters.list, 1);
        self.listed(self.inner.list(prefix).await)
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        Self::count(&self.counters.list, 1);
        self.listed(self.inner.list_fresh(prefix).await)
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        Self::count(&self.counters.list, 1);
        self.listed(self.inner.list_after(prefix, after).await)
    }

    /// Counted as a GET: object stores bill and limit a HEAD as one.
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        Self::count(&self.counters.get, 1);
        self.checked(GET, self.inner.head(key).await)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        Self::count(&self.counters.delete, 1);
        self.checked(DELETE, self.inner.delete(key).await)
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

    /// A listing fresh or after a key is a LIST like any other, with the keys it
    /// returned, and its failures are failed LISTs.
    #[tokio::test]
    async fn every_listing_is_a_counted_list() {
        let dir = tempfile::tempdir().unwrap();
        let base: DynStore = Arc::new(crate::LocalStore::new(dir.path()));
        for key in ["s/a", "s/b", "s/c"] {
            base.put(key, Bytes::from_static(b"1")).await.unwrap();
        }
        let store = CountingStore::new(base);
        assert_eq!(store.list("s/").await.unwrap().len(), 3);
        assert_eq!(store.list_fresh("s/").await.unwrap().len(), 3);
        assert_eq!(store.list_after("s/", "s/a").await.unwrap().len(), 2);
        assert_eq!(store.counts().list, 3);
        assert_eq!(store.keys_listed(), 8);
        assert_eq!(store.counts().get, 0);

        let failing = CountingStore::new(Arc::new(crate::FaultyStore::new(
            Arc::new(crate::LocalStore::new(dir.path())),
            crate::FaultConfig {
                fail_ratio: 1.0,
                ..Default::default()
            },
        )));
        assert!(failing.list_fresh("s/").await.is_err());
        assert!(failing.list_after("s/", "s/a").await.is_err());
        assert_eq!(failing.counts().list, 2);
        assert_eq!(failing.errors().list, 2);
        assert_eq!(failing.keys_listed(), 0);
    }

    #[test]
    fn the_fence_below_is_passed_through() {
        let dir = tempfile::tempdir().unwrap();
        let fenced =
            crate::FencedStore::new(Arc::new(crate::LocalStore::new(dir.path())), |_| true);
        let fence = fenced.fence().unwrap();
        let store = CountingStore::new(Arc::new(fenced));
        assert!(store.fence().unwrap().same_as(&fence));
        let plain = CountingStore::new(Arc::new(crate::LocalStore::new(dir.path())));
        assert!(plain.fence().is_none());
    }
}
