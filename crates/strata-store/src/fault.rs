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
}

/// The fault-injecting wrapper.
#[derive(Debug)]
pub struct FaultyStore {
    inner: DynStore,
    config: FaultConfig,
    rng: Mutex<u64>,
    written: AtomicU64,
    injected: AtomicU64,
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
        if self.chance(self.config.fail_ratio) {
            return Err(self.fault(op, key));
        }
        Ok(())
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

#[async_trait]
impl Store for FaultyStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.before("put", key).await?;
        self.budget(key, data.len())?;
        self.inner.put(key, data).await?;
        // Sometimes the object is stored but the answer is lost on the way back.
        if self.chance(self.config.fail_ratio / 2.0) {
            return Err(self.fault("put", key));
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.before("put", key).await?;
        self.budget(key, data.len())?;
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.before("get", key).await?;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.before("get", key).await?;
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

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.before("delete", key).await?;
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
