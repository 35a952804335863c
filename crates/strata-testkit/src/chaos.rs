//! A store wrapper for concurrency torture, standing where the storage is: below each
//! simulated process's fence, so the fence sees what the storage does and counts a write
//! it gave up on as unconfirmed.
//!
//! Every request is delayed at random (a slow process's requests much longer); some fail
//! before they reach the storage; and a write or delete that went out is the storage's from
//! then on: it is applied by a task of its own, whether or not the process still waits for
//! the answer. So a write whose answer was lost, or that the process stopped waiting for
//! (its fence closed at its lock's deadline, its request timed out), still lands, later,
//! but always within [`ChaosConfig::land_within`] of being issued (the bound the storage's
//! request timeout sets), or never when it was refused. Reads stall now and then for
//! longer than a lock's TTL, the way a slow PUT, a retried 503 or a frozen VM delays them.
//!
//! Each simulated process gets its own wrapper (its own `describe()`, so its own fence)
//! over one shared backend; all of them record what was issued and what landed, in order,
//! in one [`Journal`] that the test checks afterwards. [`SkewedClockStore`] gives a
//! simulated process a wall clock that is off.
//!
//! Randomness is seeded: the choices a seed makes are the same on every run (the order in
//! which concurrent requests draw them depends on scheduling).

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_store::{DynStore, Fence, ObjectMeta, Store, StoreError, StoreResult};

/// What the chaos does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The seed of the run: the same seed draws the same fates (a failure is replayed with it).
    pub seed: u64,
    /// Every request waits up to this long before it reaches the store.
    pub max_delay: Duration,
    /// Share of requests that fail: half of them before they reach the storage, half after
    /// it applied them (a lost answer).
    pub fail_ratio: f64,
    /// Share of requests that stall: a read for [`ChaosConfig::stall`], a write or delete
    /// lands between that long and [`ChaosConfig::land_within`] after it was issued (the
    /// process waits for it, unless its fence or request timeout gives up first).
    pub stall_ratio: f64,
    /// How long a stalled read waits, and the least a stalled write stays in flight.
    pub stall: Duration,
    /// Share of writes and deletes whose answer is an error while the storage applies them
    /// later, up to [`ChaosConfig::land_within`] after they were issued; until then the
    /// process's further attempts at that key fail too (its path to the storage times out),
    /// so its retries give up and it moves on without the write. Not for lock records
    /// (`locks/`): a lock taken by a write that lands after its taker gave up stays taken
    /// for its whole TTL (a minute for garbage collection's), which would stop most
    /// rounds; such a write fails or lands as the other fates say.
    pub late_ratio: f64,
    /// The longest a write or delete stays in flight: the storage applies it within this
    /// of its issue, or never.
    pub land_within: Duration,
    /// Share of the simulated processes made with [`ChaosStore::maybe_slow`] that are
    /// slow: each of their requests waits up to [`ChaosConfig::slow_delay`] instead of
    /// [`ChaosConfig::max_delay`].
    pub slow_ratio: f64,
    /// The longest a request of a slow process waits before it reaches the store.
    pub slow_delay: Duration,
    /// Share of writes and deletes that freeze their process (a VM paused, a process
    /// stopped) as they are issued: for
    /// between [`ChaosConfig::stall`] and [`ChaosConfig::land_within`], nothing it sends
    /// reaches the storage and no answer reaches it; what it sent meanwhile lands when
    /// the freeze ends, within [`ChaosConfig::land_within`] of being issued.
    pub freeze_ratio: f64,
    /// Share of simulated processes whose wall clock is off ([`Chaos::draw_skew`]), and by
    /// how much at most, either way.
    pub skewed_ratio: f64,
    /// How far a skewed process's wall clock is off at most, either way.
    pub max_skew: Duration,
}

/// One request that was issued to the storage, or one that reached it and changed it.
#[derive(Debug, Clone)]
pub struct Landed {
    /// When it was issued or landed.
    pub at: Instant,
    /// The simulated process that sent it.
    pub process: u32,
    /// The object's key.
    pub key: String,
    /// The body of a write under `locks/` (kept to follow the lock); `None` otherwise.
    pub body: Option<Bytes>,
    /// A delete (a write otherwise).
    pub delete: bool,
    /// An entry made when the request was issued (it passed the process's fence), before
    /// anything landed: it lands later, or never. Landings have `issued == false`.
    pub issued: bool,
    /// For a landing: whether the process was told it succeeded. A landing whose answer
    /// was lost, or that the process no longer waited for, stays `false`.
    pub answered: Arc<AtomicBool>,
}

impl Landed {
    /// Whether the process that made this landing was told it succeeded.
    pub fn was_answered(&self) -> bool {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Everything that was issued and landed, in the order it happened.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<Vec<Landed>>,
}

impl Journal {
    fn push(
        &self,
        process: u32,
        key: &str,
        body: Option<&Bytes>,
        delete: bool,
        issued: bool,
    ) -> Arc<AtomicBool> {
        let body = body.filter(|_| key.starts_with("locks/")).cloned();
        let answered = Arc::new(AtomicBool::new(false));
        self.entries.lock().unwrap().push(Landed {
            at: Instant::now(),
            process,
            key: key.to_string(),
            body,
            delete,
            issued,
            answered: answered.clone(),
        });
        answered
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
    /// Every request issued and every landing, in order: what the checks replay.
    pub journal: Journal,
    /// Off between rounds, while the test checks the repository.
    enabled: AtomicBool,
}

/// What becomes of one write or delete.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Fails after the delay, never reaching the storage.
    Refused(Duration),
    /// Lands this long after its issue; the answer says so, unless it is lost.
    Lands { after: Duration, answer_lost: bool },
    /// Answered with an error after `answer`; lands `after` its issue all the same.
    LandsUnanswered { answer: Duration, after: Duration },
}

impl Chaos {
    /// A run with `config`, its random sequence seeded by `config.seed`.
    pub fn new(config: ChaosConfig) -> Arc<Chaos> {
        Arc::new(Chaos {
            rng: Mutex::new(config.seed ^ 0x9E37_79B9_7F4A_7C15),
            config,
            journal: Journal::default(),
            enabled: true.into(),
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &ChaosConfig {
        &self.config
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

    /// The clock offset of a new simulated process, in milliseconds: 0 for most, else a
    /// whole number of seconds up to [`ChaosConfig::max_skew`] either way.
    pub fn draw_skew(&self) -> i64 {
        if self.unit() >= self.config.skewed_ratio {
            return 0;
        }
        let secs = 1 + (self.unit() * self.config.max_skew.as_secs() as f64) as i64;
        if self.unit() < 0.5 {
            -secs * 1000
        } else {
            secs * 1000
        }
    }

    /// Turns the chaos on or off (the journal records either way; writes already issued
    /// land as their fate says).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    fn on(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// For a read: waits a random delay, sometimes a stall; then says whether to fail.
    async fn before(&self, max_delay: Duration) -> bool {
        if !self.on() {
            return false;
        }
        let delay = max_delay.mul_f64(self.unit());
        let stall = self.unit() < self.config.stall_ratio;
        tokio::time::sleep(if stall { self.config.stall } else { delay }).await;
        self.unit() < self.config.fail_ratio / 2.0
    }

    /// The fate of a write or delete issued now by a process whose requests wait up to
    /// `max_delay`.
    fn fate(&self, max_delay: Duration) -> Fate {
        let c = &self.config;
        let delay = max_delay.mul_f64(self.unit()).min(c.land_within);
        let draw = self.unit();
        let late = self.unit();
        let within = |from: Duration| from + c.land_within.saturating_sub(from).mul_f64(late);
        if draw < c.stall_ratio {
            Fate::Lands {
                after: within(c.stall),
                answer_lost: false,
            }
        } else if draw < c.stall_ratio + c.late_ratio {
            Fate::LandsUnanswered {
                answer: delay,
                after: within(delay),
            }
        } else if draw < c.stall_ratio + c.late_ratio + c.fail_ratio / 2.0 {
            Fate::Refused(delay)
        } else {
            Fate::Lands {
                after: delay,
                answer_lost: draw < c.stall_ratio + c.late_ratio + c.fail_ratio,
            }
        }
    }
}

/// A write or a delete.
#[derive(Debug, Clone)]
enum Change {
    Put(Bytes),
    PutIfAbsent(Bytes),
    Delete,
}

impl Change {
    fn body(&self) -> Option<&Bytes> {
        match self {
            Change::Put(data) | Change::PutIfAbsent(data) => Some(data),
            Change::Delete => None,
        }
    }

    fn op(&self) -> &'static str {
        match self {
            Change::Delete => "delete",
            _ => "put",
        }
    }

    async fn apply(&self, store: &DynStore, key: &str) -> StoreResult<()> {
        match self {
            Change::Put(data) => store.put(key, data.clone()).await,
            Change::PutIfAbsent(data) => store.put_if_absent(key, data.clone()).await,
            Change::Delete => store.delete(key).await,
        }
    }
}

/// The store of one simulated process.
#[derive(Debug)]
pub struct ChaosStore {
    inner: DynStore,
    process: u32,
    chaos: Arc<Chaos>,
    /// The longest this process's requests wait (a slow process's are longer).
    max_delay: Duration,
    /// While this process is frozen: until when.
    frozen_until: Mutex<Option<tokio::time::Instant>>,
    /// Keys with a write of this process to land later, and when: its attempts at them
    /// fail until then.
    failing: Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
}

impl ChaosStore {
    /// The store of simulated process `process`.
    pub fn new(inner: DynStore, process: u32, chaos: Arc<Chaos>) -> ChaosStore {
        ChaosStore {
            max_delay: chaos.config.max_delay,
            inner,
            process,
            chaos,
            frozen_until: Mutex::new(None),
            failing: Mutex::default(),
        }
    }

    /// The same, slow for a share ([`ChaosConfig::slow_ratio`]) of the processes made so.
    pub fn maybe_slow(inner: DynStore, process: u32, chaos: Arc<Chaos>) -> ChaosStore {
        let slow = chaos.unit() < chaos.config.slow_ratio;
        let max_delay = if slow {
            chaos.config.slow_delay
        } else {
            chaos.config.max_delay
        };
        ChaosStore {
            max_delay,
            ..ChaosStore::new(inner, process, chaos)
        }
    }

    /// Whether this process's requests are slow.
    pub fn is_slow(&self) -> bool {
        self.max_delay > self.chaos.config.max_delay
    }

    /// Until when this process is frozen, if it is: now and then a write (`may_start`)
    /// starts a freeze.
    fn frozen(&self, may_start: bool) -> Option<tokio::time::Instant> {
        if !self.chaos.on() {
            return None;
        }
        let now = tokio::time::Instant::now();
        let mut until = self.frozen_until.lock().unwrap();
        if until.is_some_and(|u| u > now) {
            return *until;
        }
        let c = &self.chaos.config;
        if may_start && self.chaos.unit() < c.freeze_ratio {
            let length = c.stall
                + c.land_within
                    .saturating_sub(c.stall)
                    .mul_f64(self.chaos.unit());
            *until = Some(now + length);
            return *until;
        }
        None
    }

    /// Waits out a freeze of this process.
    async fn thaw(&self) {
        if let Some(until) = self.frozen(false) {
            tokio::time::sleep_until(until).await;
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

    /// A write or delete: issued now, landing (or not) as its fate says, from a task that
    /// outlives this request.
    async fn change(&self, key: &str, change: Change) -> StoreResult<()> {
        let (delete, op) = (matches!(change, Change::Delete), change.op());
        let journal = &self.chaos.journal;
        if !self.chaos.on() {
            let done = change.apply(&self.inner, key).await;
            if done.is_ok() {
                journal
                    .push(self.process, key, change.body(), delete, false)
                    .store(true, Ordering::SeqCst);
            }
            return done;
        }
        let issued = tokio::time::Instant::now();
        journal.push(self.process, key, change.body(), delete, true);
        let thaw = self.frozen(true);
        let mut fate = self.chaos.fate(self.max_delay);
        {
            let mut failing = self.failing.lock().unwrap();
            failing.retain(|_, until| *until > issued);
            match (failing.get(key), fate) {
                (Some(_), _) => fate = Fate::Refused(self.max_delay.mul_f64(self.chaos.unit())),
                (None, Fate::LandsUnanswered { after, .. }) if key.starts_with("locks/") => {
                    fate = Fate::Lands {
                        after,
                        answer_lost: true,
                    };
                }
                (None, Fate::LandsUnanswered { after, .. }) => {
                    failing.insert(key.to_string(), issued + after);
                }
                _ => {}
            }
        }
        let after = match fate {
            Fate::Refused(delay) => {
                tokio::time::sleep((issued + delay).max(thaw.unwrap_or(issued)) - issued).await;
                return Err(self.fault(op, key));
            }
            Fate::Lands { after, .. } | Fate::LandsUnanswered { after, .. } => after,
        };
        let (inner, chaos, process, owned_key) = (
            self.inner.clone(),
            self.chaos.clone(),
            self.process,
            key.to_string(),
        );
        let landing = tokio::spawn(async move {
            // A frozen process's write leaves when the freeze ends (both are within
            // `land_within` of its issue).
            tokio::time::sleep_until((issued + after).max(thaw.unwrap_or(issued))).await;
            let done = change.apply(&inner, &owned_key).await;
            let answered = done.is_ok().then(|| {
                chaos
                    .journal
                    .push(process, &owned_key, change.body(), delete, false)
            });
            (done, answered)
        });
        match fate {
            Fate::Lands {
                answer_lost: false, ..
            } => {
                let (done, answered) = landing.await.expect("the landing task");
                if let Some(answered) = answered {
                    answered.store(true, Ordering::SeqCst);
                }
                done
            }
            Fate::Lands { .. } => {
                let _ = landing.await;
                Err(self.fault(op, key))
            }
            Fate::LandsUnanswered { answer, .. } => {
                tokio::time::sleep_until((issued + answer).max(thaw.unwrap_or(issued))).await;
                Err(self.fault(op, key))
            }
            Fate::Refused(_) => unreachable!("returned above"),
        }
    }
}

#[async_trait]
impl Store for ChaosStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.change(key, Change::Put(data)).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.change(key, Change::PutIfAbsent(data)).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.thaw().await;
        if self.chaos.before(self.max_delay).await {
            return Err(self.fault("get", key));
        }
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.thaw().await;
        if self.chaos.before(self.max_delay).await {
            return Err(self.fault("get", key));
        }
        self.inner.get_range(key, range).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.thaw().await;
        if self.chaos.before(self.max_delay).await {
            return Err(self.fault("list", prefix));
        }
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.change(key, Change::Delete).await
    }

    fn describe(&self) -> String {
        // One description per process: each simulated process has its own fence.
        format!("{} (process {})", self.inner.describe(), self.process)
    }
}

/// The store of a simulated process whose wall clock is `offset_ms` off: the lock and
/// mark records it writes (JSON under `locks/` and `writers/`) carry their times
/// (`started_ms`, `expires_ms`) shifted by that much, as such a process writes them.
/// That is the only way a process's wall clock reaches the repository; what it decides by
/// its own clock in memory cannot be shifted per simulated process (they share one real
/// process and its clock).
///
/// It goes outermost, above the retries, which compare what they wrote with what they
/// find after a lost answer: both are the shifted body.
#[derive(Debug)]
pub struct SkewedClockStore {
    inner: DynStore,
    offset_ms: i64,
}

impl SkewedClockStore {
    /// `inner` whose modification times read `offset_ms` off (a storage whose clock is not the hosts').
    pub fn new(inner: DynStore, offset_ms: i64) -> SkewedClockStore {
        SkewedClockStore { inner, offset_ms }
    }

    fn shift(&self, key: &str, data: Bytes) -> Bytes {
        if !(key.starts_with("locks/") || key.starts_with("writers/")) {
            return data;
        }
        let Ok(serde_json::Value::Object(mut record)) = serde_json::from_slice(&data) else {
            return data;
        };
        for field in ["started_ms", "expires_ms"] {
            if let Some(ms) = record.get(field).and_then(|v| v.as_u64()) {
                let shifted = (ms as i64 + self.offset_ms).max(0) as u64;
                record.insert(field.to_string(), shifted.into());
            }
        }
        serde_json::to_vec_pretty(&record)
            .expect("a record serializes")
            .into()
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for SkewedClockStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(key, self.shift(key, data)).await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        self.inner
            .put_in_class(key, self.shift(key, data), class)
            .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put_if_absent(key, self.shift(key, data)).await
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

    fn fence(&self) -> Option<Fence> {
        self.inner.fence()
    }

    /// Only its clock is skewed: its writes are its store's.
    fn writes_end_with_their_writer(&self) -> bool {
        self.inner.writes_end_with_their_writer()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
