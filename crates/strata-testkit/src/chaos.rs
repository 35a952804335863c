//! A store wrapper for concurrency torture: every request is delayed at random, some
//! fail (before they reach the store, or after: a write that landed but whose answer was
//! lost), and now and then one stalls for longer than a lock's TTL, the way a slow PUT, a
//! retried 503 or a frozen VM delays it. Each simulated process gets its own wrapper (its
//! own `describe()`, so its own fence) over one shared backend; all of them record what
//! landed, in order, in one [`Journal`] that the test checks afterwards.
//!
//! Randomness is seeded: the choices a seed makes are the same on every run (the order in
//! which concurrent requests draw them depends on scheduling).

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_store::{DynStore, ObjectMeta, Store, StoreError, StoreResult};

/// What the chaos does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    /// Every request waits up to this long before it reaches the store.
    pub max_delay: Duration,
    /// Share of requests that fail (half of the failed writes land first).
    pub fail_ratio: f64,
    /// Share of requests that stall for [`ChaosConfig::stall`] before reaching the store.
    pub stall_ratio: f64,
    pub stall: Duration,
}

/// One request that reached the backend and changed it.
#[derive(Debug, Clone)]
pub struct Landed {
    pub at: Instant,
    pub process: u32,
    pub key: String,
    /// `None` for a delete; the body for a write under `locks/` (kept to follow the lock).
    pub body: Option<Bytes>,
    pub delete: bool,
}

/// Everything that landed, in the order it landed.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<Vec<Landed>>,
}

impl Journal {
    fn record(&self, process: u32, key: &str, body: Option<&Bytes>, delete: bool) {
        let body = body.filter(|_| key.starts_with("locks/")).cloned();
        self.entries.lock().unwrap().push(Landed {
            at: Instant::now(),
            process,
            key: key.to_string(),
            body,
            delete,
        });
    }

    /// Takes what was recorded so far.
    pub fn drain(&self) -> Vec<Landed> {
        std::mem::take(&mut *self.entries.lock().unwrap())
    }
}

/// The shared state of one torture run: configuration, random sequence, journal.
#[derive(Debug)]
pub struct Chaos {
    config: ChaosConfig,
    rng: Mutex<u64>,
    pub journal: Journal,
    /// Off between rounds, while the test checks the repository.
    enabled: std::sync::atomic::AtomicBool,
}

impl Chaos {
    pub fn new(config: ChaosConfig) -> Arc<Chaos> {
        Arc::new(Chaos {
            rng: Mutex::new(config.seed ^ 0x9E37_79B9_7F4A_7C15),
            config,
            journal: Journal::default(),
            enabled: true.into(),
        })
    }

    /// A number in `0..1` from the seeded sequence.
    pub fn unit(&self) -> f64 {
        let mut state = self.rng.lock().unwrap();
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Turns the chaos on or off (the journal records either way).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn on(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits a random delay, sometimes a stall; then says whether to fail.
    async fn before(&self) -> bool {
        if !self.on() {
            return false;
        }
        let delay = self.config.max_delay.mul_f64(self.unit());
        let stall = self.unit() < self.config.stall_ratio;
        tokio::time::sleep(if stall { self.config.stall } else { delay }).await;
        self.unit() < self.config.fail_ratio / 2.0
    }

    fn fail_after(&self) -> bool {
        self.on() && self.unit() < self.config.fail_ratio / 2.0
    }
}

/// The store of one simulated process.
#[derive(Debug)]
pub struct ChaosStore {
    inner: DynStore,
    process: u32,
    chaos: Arc<Chaos>,
}

impl ChaosStore {
    pub fn new(inner: DynStore, process: u32, chaos: Arc<Chaos>) -> ChaosStore {
        ChaosStore {
            inner,
            process,
            chaos,
        }
    }

    fn fault(&self, op: &'static str, key: &str) -> StoreError {
        StoreError::Transient {
            op,
            key: key.to_string(),
            store: self.describe(),
            message: "injected fault".into(),
        }
    }

    async fn write(&self, key: &str, data: Bytes, if_absent: bool) -> StoreResult<()> {
        if self.chaos.before().await {
            return Err(self.fault("put", key));
        }
        if if_absent {
            self.inner.put_if_absent(key, data.clone()).await?;
        } else {
            self.inner.put(key, data.clone()).await?;
        }
        self.chaos
            .journal
            .record(self.process, key, Some(&data), false);
        if self.chaos.fail_after() {
            return Err(self.fault("put", key));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for ChaosStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.write(key, data, false).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.write(key, data, true).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        if self.chaos.before().await {
            return Err(self.fault("get", key));
        }
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if self.chaos.before().await {
            return Err(self.fault("get", key));
        }
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        if self.chaos.before().await {
            return Err(self.fault("list", prefix));
        }
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        if self.chaos.before().await {
            return Err(self.fault("delete", key));
        }
        self.inner.delete(key).await?;
        self.chaos.journal.record(self.process, key, None, true);
        Ok(())
    }

    fn describe(&self) -> String {
        // One description per process: each simulated process has its own fence.
        format!("{} (process {})", self.inner.describe(), self.process)
    }
}
