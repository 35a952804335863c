//! A store wrapper that lets a test stop or interleave one request at an exact point: it
//! forwards every request to the store it wraps, after awaiting what the test's hook
//! returns for it (a gate that opens later: a write that lands seconds late; another
//! process's work done just then: a writer that finishes between two reads).
//!
//! ```
//! use std::sync::Arc;
//! use strata_store::{DynStore, LocalStore, Store};
//! use strata_testkit::intercept::{Intercept, Request};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let store: DynStore = Arc::new(Intercept::new(
//!     Arc::new(LocalStore::new(dir.path())),
//!     move |request: Request, key: &str| {
//!         log.lock().unwrap().push(format!("{request:?} {key}"));
//!         Box::pin(async {})
//!     },
//! ));
//! store.put("a/b", bytes::Bytes::from_static(b"x")).await.unwrap();
//! assert_eq!(seen.lock().unwrap()[0], "Put a/b");
//! # }
//! ```

use async_trait::async_trait;
use bytes::Bytes;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use strata_store::{DynStore, Fence, ObjectMeta, Store, StoreResult};

/// Which request the hook is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `Store::put`.
    Put,
    /// `Store::put_if_absent`.
    PutIfAbsent,
    /// `Store::get`.
    Get,
    /// `Store::get_range`.
    GetRange,
    /// `Store::list`.
    List,
    /// `Store::list_fresh`.
    ListFresh,
    /// `Store::list_after`.
    ListAfter,
    /// `Store::head`.
    Head,
    /// `Store::delete`.
    Delete,
}

/// What a hook returns: awaited before the request goes on.
pub type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

type Hook = Box<dyn Fn(Request, &str) -> Wait + Send + Sync>;

/// See the module's documentation.
pub struct Intercept {
    inner: DynStore,
    hook: Hook,
    describe: Option<String>,
}

impl std::fmt::Debug for Intercept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercept")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Intercept {
    /// Wraps `inner`; `hook(request, key)` is awaited before each request (the key, or
    /// the prefix of a listing).
    pub fn new(
        inner: DynStore,
        hook: impl Fn(Request, &str) -> Wait + Send + Sync + 'static,
    ) -> Intercept {
        Intercept {
            inner,
            hook: Box::new(hook),
            describe: None,
        }
    }

    /// Names the wrapper as another location than its store: the process shares one
    /// index view and one fence per location, and a wrapper that stands for another
    /// process must not share them.
    pub fn as_another_process(mut self, name: &str) -> Intercept {
        self.describe = Some(format!("{} ({name})", self.inner.describe()));
        self
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Store for Intercept {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        (self.hook)(Request::Put, key).await;
        self.inner.put(key, data).await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        (self.hook)(Request::Put, key).await;
        self.inner.put_in_class(key, data, class).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        (self.hook)(Request::PutIfAbsent, key).await;
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        (self.hook)(Request::Get, key).await;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        (self.hook)(Request::GetRange, key).await;
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        (self.hook)(Request::List, prefix).await;
        self.inner.list(prefix).await
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        (self.hook)(Request::ListFresh, prefix).await;
        self.inner.list_fresh(prefix).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        (self.hook)(Request::ListAfter, prefix).await;
        self.inner.list_after(prefix, after).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        (self.hook)(Request::Head, key).await;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        (self.hook)(Request::Delete, key).await;
        self.inner.delete(key).await
    }

    fn fence(&self) -> Option<Fence> {
        self.inner.fence()
    }

    /// Its hook may hold a write: a test's stand-in for storage that delays, never
    /// claimed.
    fn writes_end_with_their_writer(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.describe
            .clone()
            .unwrap_or_else(|| self.inner.describe())
    }
}
