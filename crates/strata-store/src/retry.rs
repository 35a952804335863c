//! Retries with exponential backoff and jitter, and a timeout per attempt.
//!
//! Only transient errors (timeouts, dropped connections, 5xx, short reads) are retried;
//! "not found", "already exists", "permission denied", a missing bucket and other
//! permanent errors return at once. A ranged read that returns fewer bytes than asked is
//! treated as transient, so truncated responses never reach the repository layer as data.
//!
//! How long a request is retried is a time budget (the total of the waits between its
//! attempts), so a store that is away for half a minute (a restart, a failover) is ridden
//! out, whatever the number of attempts that takes.

use crate::{DynStore, ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::future::Future;
use std::ops::Range;
use std::time::Duration;

/// Retry policy.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts in all, including the first; 0 for no limit but `budget`.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time up to `max_backoff`. Each
    /// wait is between half its ceiling and the ceiling (jitter).
    pub initial_backoff: Duration,
    /// The ceiling the doubling backoff stops growing at.
    pub max_backoff: Duration,
    /// The most time one request spends waiting between its attempts, in all: once spent,
    /// the request gives up ([`StoreError::GaveUp`]).
    pub budget: Duration,
    /// Time limit of one attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 0,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(300),
        }
    }
}

/// The retrying wrapper.
#[derive(Debug)]
pub struct RetryStore {
    inner: DynStore,
    config: RetryConfig,
}

impl RetryStore {
    /// Wraps `inner`.
    pub fn new(inner: DynStore, config: RetryConfig) -> Self {
        RetryStore { inner, config }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.config.max_backoff);
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).expect("the OS random source is available");
        let fraction = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
        // Half fixed, half random: retries of many requests spread out, and every wait
        // makes progress through the budget.
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }

    async fn retry<T, F, Fut>(&self, op: &'static str, key: &str, mut call: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let started = tokio::time::Instant::now();
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match tokio::time::timeout(self.config.attempt_timeout, call()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if !err.is_transient() => return Err(err),
                Ok(Err(err)) => err,
                Err(_) => StoreError::Transient {
                    op,
                    key: key.to_string(),
                    store: self.inner.describe(),
                    message: format!("no answer within {:?}", self.config.attempt_timeout),
                },
            };
            let out_of_attempts =
                self.config.max_attempts != 0 && attempt >= self.config.max_attempts;
            if out_of_attempts || waited >= self.config.budget {
                return Err(StoreError::GaveUp {
                    op,
                    key: key.to_string(),
                    store: self.inner.describe(),
                    attempts: attempt,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                });
            }
            let wait = self
                .backoff(attempt - 1)
                .min(self.config.budget.saturating_sub(waited));
            waited += wait;
            tokio::time::sleep(wait).await;
        }
    }
}

// Every method is forwarded explicitly, the trait's defaults too: a default added to
// `Store` later fails clippy here until this wrapper says what it does with it.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for RetryStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.retry("put", key, || self.inner.put(key, data.clone()))
            .await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        self.retry("put", key, || {
            self.inner.put_in_class(key, data.clone(), class)
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        // Not retried blindly: after a lost answer a retry would see our own object and
        // report "already exists". Compare the content to tell the two apart.
        let mut attempt_made = false;
        self.retry("put", key, || {
            let data = data.clone();
            let first = !attempt_made;
            attempt_made = true;
            async move {
                match self.inner.put_if_absent(key, data.clone()).await {
                    Err(StoreError::AlreadyExists { .. }) if !first => {
                        match self.inner.get(key).await {
                            Ok(existing) if existing == data => Ok(()),
                            _ => Err(StoreError::AlreadyExists {
                                key: key.to_string(),
                                store: self.inner.describe(),
                            }),
                        }
                    }
                    other => other,
                }
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.retry("get", key, || self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let wanted = range.end.saturating_sub(range.start);
        self.retry("get", key, || {
            let range = range.clone();
            async move {
                let data = self.inner.get_range(key, range).await?;
                if data.len() as u64 != wanted {
                    return Err(StoreError::Transient {
                        op: "get",
                        key: key.to_string(),
                        store: self.inner.describe(),
                        message: format!("short read: {} of {wanted} bytes", data.len()),
                    });
                }
                Ok(data)
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.retry("list", prefix, || self.inner.list(prefix)).await
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.retry("list", prefix, || self.inner.list_fresh(prefix))
            .await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.retry("list", prefix, || self.inner.list_after(prefix, after))
            .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.retry("get", key, || self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.retry("delete", key, || self.inner.delete(key)).await
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
    use crate::{FaultConfig, FaultyStore, LocalStore};
    use std::sync::Arc;

    fn quick(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..RetryConfig::default()
        }
    }

    /// Fresh listings and listings after a key are retried as listings are, and give up
    /// the same way.
    #[tokio::test]
    async fn fresh_listings_and_tails_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let base: DynStore = Arc::new(LocalStore::new(dir.path()));
        for key in ["s/a", "s/b"] {
            base.put(key, Bytes::from_static(b"1")).await.unwrap();
        }
        let faulty = Arc::new(FaultyStore::new(
            base.clone(),
            FaultConfig {
                fail_ratio: 0.6,
                seed: 5,
                ..FaultConfig::default()
            },
        ));
        let store = RetryStore::new(faulty.clone(), quick(50));
        for _ in 0..10 {
            assert_eq!(store.list_fresh("s/").await.unwrap().len(), 2);
            let tail = store.list_after("s/", "s/a").await.unwrap();
            assert_eq!(tail.len(), 1);
            assert_eq!(tail[0].key, "s/b");
        }
        assert!(faulty.injected() > 0);

        let away = RetryStore::new(
            Arc::new(FaultyStore::new(
                base,
                FaultConfig {
                    fail_ratio: 1.0,
                    ..FaultConfig::default()
                },
            )),
            quick(3),
        );
        for err in [
            away.list_fresh("s/").await.unwrap_err(),
            away.list_after("s/", "s/a").await.unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    StoreError::GaveUp {
                        op: "list",
                        attempts: 3,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }
}
