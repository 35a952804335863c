//! A store wrapper that injects faults, for tests of everything above the store.
//!
//! It fails a share of requests (before or, for plain puts, after they reach the inner
//! store: a lost response), slows requests down, returns short data for ranged reads, and
//! can fail every write after a byte budget (a full or broken bucket). Randomness is seeded,
//! so a failing test can be replayed.

use crate::{DynStore, ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Share of requests (0.0-1.0) that fail with a transient error.
    pub fail_ratio: f64,
    /// Share of ranged reads that return fewer bytes than asked.
    pub truncate_ratio: f64,
    /// Delay added to every request.
    pub delay: Duration,
    /// After this many bytes were written, every write fails permanently.
    pub fail_after_bytes: Option<u64>,
    /// Seed of the fault sequence.
    pub seed: u64,
    /// Every delete is refused as access denied: credentials that may write but not
    /// delete.
    pub refuse_deletes: bool,
    /// Holds the first write of a key with a prefix until the test lets it go.
    pub hold: Option<WriteHold>,
    /// Hold the first ranged read of a key under a prefix the same way (a restore or a
    /// verification stopped after it planned its reads).
    pub hold_read: Option<WriteHold>,
    /// Every request fails transiently until this long after the wrapper was made: a
    /// store that is away for a while (a restart, a failover), measured on tokio's clock
    /// so tests can pause time.
    pub unreachable_for: Option<Duration>,
}

/// Holds the first write of a key starting with `prefix`: creates `dir/held` (holding
/// the key), then waits until `dir/release` exists. Lets a test stop a process at an
/// exact point of its work (say, packs uploaded but not indexed yet).
#[derive(Debug, Clone)]
pub struct WriteHold {
    /// The first write of a key starting with this is held (only the first).
    pub prefix: String,
    /// Where the hold says it is waiting (`held`, holding the key) and where the test
    /// lets it go (by creating `release`).
    pub dir: std::path::PathBuf,
}

/// Test-only switch: set to `1` to refuse every delete (see [`FaultConfig::from_test_env`]).
pub const TEST_REFUSE_DELETES_ENV: &str = "STRATA_TEST_REFUSE_DELETES";
/// Test-only switch: `PREFIX:DIR` holds the first write under `PREFIX` (see [`WriteHold`]).
pub const TEST_HOLD_WRITE_ENV: &str = "STRATA_TEST_HOLD_WRITE";
/// Test-only switch: `PREFIX:DIR` holds the first ranged read under `PREFIX` (see
/// [`FaultConfig::hold_read`]).
pub const TEST_HOLD_READ_ENV: &str = "STRATA_TEST_HOLD_READ";

impl FaultConfig {
    /// The faults that the test-only environment variables `STRATA_TEST_REFUSE_DELETES`
    /// and `STRATA_TEST_HOLD_WRITE` ask for, if any. They exist so integration tests can
    /// give the real binary a store without delete rights, or stop it at an exact point;
    /// they are not a feature and are documented as test-only in docs/configuration.md.
    pub fn from_test_env() -> Option<FaultConfig> {
        let refuse_deletes =
            strata_util::test_switch(TEST_REFUSE_DELETES_ENV).is_some_and(|v| v == "1");
        let hold_of = |env: &str| {
            strata_util::test_switch(env).and_then(|v| {
                let (prefix, dir) = v.split_once(':')?;
                Some(WriteHold {
                    prefix: prefix.to_string(),
                    dir: dir.into(),
                })
            })
        };
        let hold = hold_of(TEST_HOLD_WRITE_ENV);
        let hold_read = hold_of(TEST_HOLD_READ_ENV);
        (refuse_deletes || hold.is_some() || hold_read.is_some()).then(|| FaultConfig {
            refuse_deletes,
            hold,
            hold_read,
            ..FaultConfig::default()
        })
    }
}

/// The fault-injecting wrapper.
#[derive(Debug)]
pub struct FaultyStore {
    inner: DynStore,
    config: FaultConfig,
    rng: Mutex<u64>,
    written: AtomicU64,
    injected: AtomicU64,
    /// Whether the hold was used up.
    held: std::sync::atomic::AtomicBool,
    /// Whether the read hold was used up.
    held_read: std::sync::atomic::AtomicBool,
    /// When the wrapper was made, for `unreachable_for`.
    made: tokio::time::Instant,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: DynStore, config: FaultConfig) -> Self {
        let seed = config.seed;
        FaultyStore {
            inner,
            config,
            rng: Mutex::new(seed ^ 0x5DEE_CE66_D1CE_F00D),
            written: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            held: std::sync::atomic::AtomicBool::new(false),
            held_read: std::sync::atomic::AtomicBool::new(false),
            made: tokio::time::Instant::now(),
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn chance(&self, ratio: f64) -> bool {
        if ratio <= 0.0 {
            return false;
        }
        let mut state = self.rng.lock().expect("rng lock");
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 <= ratio
    }

    fn fault(&self, op: &'static str, key: &str) -> StoreError {
        self.injected.fetch_add(1, Ordering::Relaxed);
        StoreError::Transient {
            op,
            key: key.to_string(),
            store: self.describe(),
            message: "injected fault".into(),
        }
    }

    async fn before(&self, op: &'static str, key: &str) -> StoreResult<()> {
        if !self.config.delay.is_zero() {
            tokio::time::sleep(self.config.delay).await;
        }
        let away = self
            .config
            .unreachable_for
            .is_some_and(|span| self.made.elapsed() < span);
        if away || self.chance(self.config.fail_ratio) {
            return Err(self.fault(op, key));
        }
        Ok(())
    }

    /// Waits at the configured hold (once), see [`WriteHold`].
    async fn hold(&self, key: &str) {
        Self::hold_at(self.config.hold.as_ref(), &self.held, key).await
    }

    async fn hold_at(hold: Option<&WriteHold>, used: &std::sync::atomic::AtomicBool, key: &str) {
        let Some(hold) = hold else {
            return;
        };
        if !key.starts_with(&hold.prefix) || used.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = std::fs::write(hold.dir.join("held"), key);
        while !hold.dir.join("release").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn budget(&self, key: &str, len: usize) -> StoreResult<()> {
        let total = self.written.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        match self.config.fail_after_bytes {
            Some(limit) if total > limit => Err(StoreError::Backend {
                op: "put",
                key: key.to_string(),
                store: self.describe(),
                message: "injected permanent failure: write budget exhausted".into(),
            }),
            _ => Ok(()),
        }
    }
}

// Every method is forwarded explicitly, the trait's defaults too: a default added to
// `Store` later fails clippy here until this wrapper says what it does with it.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for FaultyStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.before("put", key).await?;
        self.hold(key).await;
        self.budget(key, data.len())?;
        self.inner.put(key, data).await?;
        // Sometimes the object is stored but the answer is lost on the way back.
        if self.chance(self.config.fail_ratio / 2.0) {
            return Err(self.fault("put", key));
        }
        Ok(())
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        self.before("put", key).await?;
        self.hold(key).await;
        self.budget(key, data.len())?;
        self.inner.put_in_class(key, data, class).await?;
        if self.chance(self.config.fail_ratio / 2.0) {
            return Err(self.fault("put", key));
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.before("put", key).await?;
        self.hold(key).await;
        self.budget(key, data.len())?;
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.before("get", key).await?;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.before("get", key).await?;
        Self::hold_at(self.config.hold_read.as_ref(), &self.held_read, key).await;
        let data = self.inner.get_range(key, range).await?;
        if data.len() > 1 && self.chance(self.config.truncate_ratio) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Ok(data.slice(..data.len() / 2));
        }
        Ok(data)
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.before("list", prefix).await?;
        self.inner.list(prefix).await
    }

    async fn list_fresh(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.before("list", prefix).await?;
        self.inner.list_fresh(prefix).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.before("list", prefix).await?;
        self.inner.list_after(prefix, after).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.before("get", key).await?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.before("delete", key).await?;
        if self.config.refuse_deletes {
            return Err(StoreError::PermissionDenied {
                op: "delete",
                key: key.to_string(),
                store: self.describe(),
                message: "AccessDenied (injected)".into(),
            });
        }
        self.inner.delete(key).await
    }

    fn fence(&self) -> Option<crate::Fence> {
        self.inner.fence()
    }

    /// Its injected failures may come after the write was applied: never claimed.
    fn writes_end_with_their_writer(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Fresh listings and listings after a key meet the same faults as listings.
    #[tokio::test]
    async fn fresh_listings_and_tails_get_faults_too() {
        let dir = tempfile::tempdir().unwrap();
        let base: DynStore = Arc::new(crate::LocalStore::new(dir.path()));
        base.put("s/a", Bytes::from_static(b"1")).await.unwrap();
        let store = FaultyStore::new(
            base.clone(),
            FaultConfig {
                fail_ratio: 1.0,
                ..FaultConfig::default()
            },
        );
        for err in [
            store.list_fresh("s/").await.unwrap_err(),
            store.list_after("s/", "").await.unwrap_err(),
        ] {
            assert!(
                matches!(err, StoreError::Transient { op: "list", .. }),
                "{err:?}"
            );
        }
        assert_eq!(store.injected(), 2);
        let calm = FaultyStore::new(base, FaultConfig::default());
        assert_eq!(calm.list_fresh("s/").await.unwrap().len(), 1);
        assert!(calm.list_after("s/", "s/a").await.unwrap().is_empty());
        assert_eq!(calm.injected(), 0);
    }
}
