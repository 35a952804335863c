//! The cluster lock: one chain of versions in the repository, changed only by
//! compare-and-swap.
//!
//! The lock is `locks/cluster/<generation>.json`; its newest generation says who holds it
//! (see [`chain`] for the rules and why they hold when writes land late and out of
//! order). Taking the lock, renewing it, taking an expired one over and releasing it each
//! write the next generation with create-if-absent, which succeeds only while the
//! generation it follows is still the newest. Two processes that read the same newest
//! generation and both write the next one: the storage accepts exactly one.
//!
//! **Fencing.** A process that finds the lock expired (or its holder dead on this host)
//! takes it over by writing the next generation itself; the stalled holder's next renewal
//! finds that generation taken and knows it lost the lock. The holder also keeps a
//! monotonic deadline ([`std::time::Instant`]): its TTL minus a margin after it *issued*
//! its last successful write; once that has passed it considers the lock lost, whatever
//! the wall clock or the store says, and its [`strata_store::Fence`] guard stops every
//! write that would make data visible. Others judge expiry from the record's wall-clock
//! `expires_ms` (the issue time plus the whole TTL).
//!
//! **Release without delete rights.** Releasing writes a generation marked `released`;
//! old generations are deleted only once no write aimed at them can still be in flight
//! ([`chain::deletable`]). A store that refuses deletes keeps them, harmless. The
//! repository is shared by every coordinator of the cluster, so this works across hosts
//! without any other service. The protocol is checked exhaustively by a model
//! (`model.rs`, run by the tests).

pub mod chain;
pub mod clock;
pub use strata_liveness as liveness;
mod marks;
#[cfg(test)]
mod model;

pub use marks::{
    backup_may_still_write, has_ended, mark_archive_writer, mark_archive_writer_with_ttl,
    mark_backup_writer, running_writers, ArchiveMark, MARK_TTL,
};

use chain::Decision;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strata_store::{DynStore, FenceGuard, StoreError};

/// Where a lock stands, as its newest generation says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LockState {
    /// Held while not expired.
    #[default]
    Held,
    /// Given back by its holder.
    Released,
    /// Found expired and fenced by another process (written by versions before the
    /// lock chain; read as ended).
    Broken,
}

impl LockState {
    fn is_held(&self) -> bool {
        *self == LockState::Held
    }
}

/// What a lock object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LockRecord {
    /// The id of the operation that holds (or held) the lock.
    pub operation: String,
    /// `backup`, `restore` or `delete`.
    pub kind: String,
    /// Host and process of the coordinator.
    pub holder: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    /// Unix milliseconds after which the lock is void unless renewed.
    pub expires_ms: u64,
    /// The generation of the chain this record is (1 for the first).
    #[serde(default)]
    pub generation: u64,
    /// Where this generation of the chain stands (omitted when held).
    #[serde(default, skip_serializing_if = "LockState::is_held")]
    pub state: LockState,
    /// For a lock taken over: whose expired lock it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The lease this write grants, counted by the storage's clock from the moment the
    /// storage wrote it (its modification time); records of older versions have none
    /// and are judged by `expires_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// The holder's process, to prove it dead before the lease expires (see
    /// [`liveness`]); absent in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<liveness::Liveness>,
    /// On a backup's writer mark: the backup it announces. Its engines' parts that no
    /// summary records yet are left alone while the mark has not ended (the summary may
    /// still land); absent in records of older versions and on every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

impl LockRecord {
    /// Whether a record of the lock layout before the chain still holds at wall-clock
    /// `now_ms` (those records carry no TTL for the storage's clock).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.state == LockState::Held && self.expires_ms > now_ms
    }

    /// When the lease of this record ends, in the storage's clock, given when the storage
    /// wrote it (`created_ms`): its TTL after that, plus a second for storages whose
    /// modification times are whole seconds. Records of older versions, or with no
    /// known write time, end at their writer's wall-clock `expires_ms`.
    pub fn expires_by_storage(&self, created_ms: Option<u64>) -> u64 {
        match (self.ttl_ms, created_ms) {
            (Some(ttl), Some(created)) => created + ttl + 1_000,
            _ => self.expires_ms,
        }
    }

    /// Whether this record's holder provably no longer uses it: a process that ended
    /// (see [`liveness::provably_dead`]), or this process after it could not give the
    /// lock back. `/proc` and PIDs are never consulted.
    fn holder_is_dead(&self) -> bool {
        if test_unsafe("proc-liveness") {
            // Negative control: the rule before this one (a holder of this host name whose
            // PID has no `/proc` entry here is dead), which the PID-namespace test catches.
            let by_proc = self.holder.rsplit_once(':').is_some_and(|(host, pid)| {
                host == liveness::host_name()
                    && pid != std::process::id().to_string()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if by_proc {
                return true;
            }
        }
        match &self.process {
            Some(process) if liveness::is_this_process(process) => {
                abandoned().lock().unwrap().contains(&self.operation)
            }
            Some(process) => liveness::provably_dead(process),
            None => false,
        }
    }

    /// "backup X (started 2026-.. by host:pid)".
    pub fn describe(&self) -> String {
        let started = UNIX_EPOCH + Duration::from_millis(self.started_ms);
        format!(
            "{} {} (started {} by {})",
            self.kind,
            self.operation,
            humantime::format_rfc3339_seconds(started),
            self.holder
        )
    }

    fn body(&self) -> bytes::Bytes {
        serde_json::to_vec_pretty(self)
            .expect("lock records serialize")
            .into()
    }
}

/// Wall-clock milliseconds.
///
/// The test-only switch `STRATA_TEST_CLOCK_OFFSET_SECS` (signed seconds) shifts it, to
/// stand for a host whose clock is off: no safety decision may depend on it.
pub fn now_ms() -> u64 {
    clock::ms(host_now())
}

/// This host's wall clock ([`now_ms`]'s, shifted the same way in tests): what a backup
/// shows beside its start by the storage's clock.
pub fn host_now() -> SystemTime {
    shifted(SystemTime::now(), test_clock_offset_ms())
}

/// `now` moved by `offset_ms` (signed).
fn shifted(now: SystemTime, offset_ms: i64) -> SystemTime {
    let shift = Duration::from_millis(offset_ms.unsigned_abs());
    match offset_ms < 0 {
        true => now.checked_sub(shift).unwrap_or(UNIX_EPOCH),
        false => now + shift,
    }
}

fn test_clock_offset_ms() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        offset_ms_of(strata_util::test_switch("STRATA_TEST_CLOCK_OFFSET_SECS").as_deref())
    })
}

/// The offset in milliseconds that `STRATA_TEST_CLOCK_OFFSET_SECS`'s value (signed seconds)
/// names; none when unset or not a number.
fn offset_ms_of(secs: Option<&str>) -> i64 {
    secs.and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(0, |s| s * 1000)
}

/// `host:pid`, to tell coordinators apart in messages (the host from `uname(2)`). Never
/// used to judge a holder: two processes of one pod, or of two PID namespaces, can share
/// it ([`liveness`] does that).
pub fn holder_name() -> String {
    format!("{}:{}", liveness::host_name(), std::process::id())
}

pub use strata_util::test_unsafe;

/// The operations of this process whose lock could not be given back: nothing here
/// trusts them any more, so this process may take them over before they expire.
fn abandoned() -> &'static std::sync::Mutex<std::collections::BTreeSet<String>> {
    static ABANDONED: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        std::sync::OnceLock::new();
    ABANDONED.get_or_init(Default::default)
}

fn abandon(operation: &str) {
    abandoned().lock().unwrap().insert(operation.to_string());
}

/// Why the lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live operation holds the lock (its description).
    #[error("the cluster is busy: {0} holds it; try again when it has ended")]
    Busy(String),
    /// The storage answered a lock or mark write so late that nobody may trust it (the
    /// write was given back): busy in effect, but no other operation holds it.
    #[error("the storage took {took_secs:.1} s or more to write the {what} (it lives {ttl_secs:.1} s), so it was given back; try again, or raise [server] lease_ttl_secs for a slow storage")]
    TooSlow {
        /// What was written (`cluster lock`, a writer's mark).
        what: String,
        /// How long the write took at least, in seconds.
        took_secs: f32,
        /// How long the lock or mark lives unless renewed, in seconds.
        ttl_secs: f32,
    },
    /// The holder lost its lock: taken over by another process, or not renewed within
    /// its TTL. Nothing more may become visible under it.
    #[error("lost the cluster lock: {0}")]
    Lost(String),
    /// The garbage collection lock is held by a holder that ended without giving it back
    /// (provably dead, or its lease expired): it lapses once no write of it can still land.
    #[error("the garbage collection lock is not free yet: {0}")]
    Lapsing(String),
    /// The process was asked to stop (SIGTERM, SIGINT): the holder stopped at a safe point,
    /// between two steps, and gives its lock back.
    #[error("{0}; stopped at a safe point, the garbage collection lock given back")]
    Stopped(String),
    /// The lock could not be read or written on the storage.
    #[error("cannot read or write the cluster lock in the repository")]
    Store(#[from] strata_store::StoreError),
}

/// The chain as one listing and one read found it.
#[derive(Debug, Default)]
struct ChainView {
    /// The newest generation and what it says (`None` when unreadable: it blocks nothing).
    newest: Option<(u64, Option<LockRecord>)>,
    /// Every generation, with when the storage says it was created.
    generations: Vec<(u64, Option<SystemTime>)>,
    /// Live locks of the layout before the chain (`locks/<operation>/...`), written by an
    /// older strata during an upgrade: they are respected.
    legacy: Vec<LockRecord>,
}

impl ChainView {
    fn newest_record(&self) -> Option<(u64, &LockRecord)> {
        match &self.newest {
            Some((g, Some(record))) => Some((*g, record)),
            _ => None,
        }
    }

    /// Whether deciding needs the storage's clock: the newest generation is held.
    fn needs_clock(&self) -> bool {
        self.newest_record()
            .is_some_and(|(_, r)| r.state == LockState::Held)
    }

    /// The next generation to write: after the newest, even an unreadable one. `now_ms`
    /// is the storage's clock: a held generation expires its TTL after the storage
    /// wrote it (see [`LockRecord::expires_by_storage`]). On a chain whose holders
    /// rewrite index objects (`waits_landings`, the garbage collection lock), a holder
    /// that stopped without giving the lock back may still have such a write in flight,
    /// which would name packs the next holder deletes: its lock ends only once the
    /// longest flight has passed after its expiry, and a dead holder is not taken over
    /// early (its last writes may still land).
    fn decide(&self, now_ms: u64, waits_landings: bool, writes_end_with_writer: bool) -> Decision {
        match (&self.newest, self.newest_record()) {
            (Some((g, None)), _) => Decision::Take {
                generation: g + 1,
                took_over: false,
            },
            (_, None) => chain::decide(None, now_ms, LockRecord::holder_is_dead),
            (_, Some((generation, record))) => {
                let created = self
                    .generations
                    .iter()
                    .find(|(g, _)| *g == generation)
                    .and_then(|(_, t)| t.map(clock::ms));
                let landings = if waits_landings && !test_unsafe("no-landing-wait") {
                    chain::max_flight().as_millis() as u64
                } else {
                    0
                };
                let judged = LockRecord {
                    expires_ms: record.expires_by_storage(created) + landings,
                    ..record.clone()
                };
                // A holder that provably ended is taken over at once where its writes
                // ended with it (a directory on this host's disk); elsewhere a write it
                // issued may still land, and its lock lapses after the landing window.
                if waits_landings && !writes_end_with_writer {
                    let never = |_: &LockRecord| false;
                    return chain::decide(Some((generation, &judged)), now_ms, never);
                }
                chain::decide(
                    Some((generation, &judged)),
                    now_ms,
                    LockRecord::holder_is_dead,
                )
            }
        }
    }
}

impl ChainView {
    /// For a garbage collection lock that is busy only because its holder's last writes
    /// may still land (the holder provably ended, or its lease expired by the storage's
    /// clock `now_ms`): says so, and when it can be taken, by the storage's clock.
    fn lapsing(&self, generation: u64, holder: &LockRecord, now_ms: u64) -> Option<String> {
        let created = self
            .generations
            .iter()
            .find(|(g, _)| *g == generation)
            .and_then(|(_, t)| t.map(clock::ms));
        let expires = holder.expires_by_storage(created);
        let how = if holder.holder_is_dead() {
            "its process ended without giving it back"
        } else if expires <= now_ms {
            "it stopped renewing it (its lease expired)"
        } else {
            return None;
        };
        let free = expires + chain::max_flight().as_millis() as u64;
        let at = UNIX_EPOCH + Duration::from_millis(free);
        let wait = Duration::from_secs(free.saturating_sub(now_ms).div_ceil(1_000));
        Some(format!(
            "{} holds it, but {how}; a write it issued may still land until {} by the storage's clock, so garbage collection can run then (in {})",
            holder.describe(),
            humantime::format_rfc3339_seconds(at),
            humantime::format_duration(wait)
        ))
    }
}

/// Asks every garbage collection lock held in this process to stop: each holder's next
/// [`HeldLock::check`] (its next safe point) fails with [`LockError::Stopped`], and the
/// holder then gives its lock back as usual (see [`RepoLock::release`]: left to lapse
/// only when a write of it is still unanswered). For a process asked to end (SIGTERM).
pub fn stop_collections(why: &str) {
    stopping()
        .lock()
        .unwrap()
        .get_or_insert_with(|| why.to_string());
}

fn stopping() -> &'static std::sync::Mutex<Option<String>> {
    static STOPPING: std::sync::OnceLock<std::sync::Mutex<Option<String>>> =
        std::sync::OnceLock::new();
    STOPPING.get_or_init(Default::default)
}

/// Reads the chain `chain`: one listing, then the newest generation. The cluster lock's
/// also honours live locks of the layout before the chain.
async fn read_chain(store: &DynStore, chain: &str) -> Result<ChainView, LockError> {
    let mut view = ChainView::default();
    let mut legacy: std::collections::BTreeMap<String, (u64, String)> = Default::default();
    let is_cluster = chain == chain::CHAIN;
    let prefix = if is_cluster {
        strata_repo::layout::LOCKS
    } else {
        chain
    };
    for meta in store.list_fresh(prefix).await? {
        if let Some(generation) = chain::parse_key_in(chain, &meta.key) {
            view.generations.push((generation, meta.modified));
        } else if !is_cluster {
            continue;
        } else if let Some((operation, generation)) = parse_legacy_key(&meta.key) {
            let entry = legacy
                .entry(operation)
                .or_insert((generation, meta.key.clone()));
            if generation >= entry.0 {
                *entry = (generation, meta.key.clone());
            }
        }
    }
    if let Some(newest) = view.generations.iter().map(|(g, _)| *g).max() {
        let record = match store.get(&chain::key_in(chain, newest)).await {
            Ok(bytes) => serde_json::from_slice::<LockRecord>(&bytes)
                .ok()
                .map(|mut r| {
                    // The key is the truth: a record copied elsewhere fences nothing.
                    r.generation = newest;
                    r
                }),
            // The newest generation is never deleted by strata; gone, it blocks nothing.
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        view.newest = Some((newest, record));
    }
    let now = now_ms();
    for (_, key) in legacy.into_values() {
        match store.get(&key).await {
            Ok(bytes) => {
                if let Ok(record) = serde_json::from_slice::<LockRecord>(&bytes) {
                    if record.is_live(now) {
                        view.legacy.push(record);
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(view)
}

/// The operation and generation a key of the layout before the chain names
/// (`locks/<operation>/<generation>.json`, `locks/<operation>.json`).
fn parse_legacy_key(key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix(strata_repo::layout::LOCKS)?;
    if rest.starts_with("cluster/") || rest.starts_with("gc/") {
        return None;
    }
    match rest.split_once('/') {
        Some((operation, file)) => {
            let generation = file.strip_suffix(".json")?.parse().ok()?;
            Some((operation.to_string(), generation))
        }
        None => Some((rest.strip_suffix(".json")?.to_string(), 0)),
    }
}

/// The lock as it stands: its holder when the newest generation is held (live or
/// expired), and live locks of an older strata. Released locks are as good as absent.
pub async fn list_locks(store: &DynStore) -> Result<Vec<LockRecord>, LockError> {
    let mut out = held_in(store, chain::CHAIN).await?;
    out.extend(held_in(store, chain::GC_CHAIN).await?);
    Ok(out)
}

/// The holder of the lock of `chain` (and, for the cluster lock, live locks of an older
/// strata).
async fn held_in(store: &DynStore, chain: &str) -> Result<Vec<LockRecord>, LockError> {
    let view = read_chain(store, chain).await?;
    let mut out: Vec<LockRecord> = view
        .newest_record()
        .map(|(_, r)| r.clone())
        .filter(|r| r.state == LockState::Held)
        .into_iter()
        .collect();
    out.extend(view.legacy);
    Ok(out)
}

/// Deletes the generations no write can still aim at (best effort: a store that
/// refuses deletes keeps them, and they block nothing). Ages are judged by the storage's
/// clock: "now" is the newest write time the listing shows (never later than the
/// storage's now), so a host whose clock runs ahead deletes nothing early.
async fn prune(store: &DynStore, chain: &str, generations: &[(u64, Option<SystemTime>)]) {
    let Some(now) = generations.iter().filter_map(|(_, t)| *t).max() else {
        return;
    };
    let old = |created: SystemTime, now: SystemTime| {
        now.duration_since(created)
            .is_ok_and(|age| age >= chain::max_flight())
    };
    for generation in chain::deletable(generations, now, old) {
        if store
            .delete(&chain::key_in(chain, generation))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How many times taking the lock looks again after losing a race to write the next
/// generation, before it says the cluster is busy.
const ACQUIRE_ROUNDS: usize = 4;

/// A held lock. Release it with [`RepoLock::release`]; dropped without release, it expires.
#[derive(Debug)]
pub struct RepoLock {
    store: DynStore,
    /// Where its chain lives ([`chain::CHAIN`] or [`chain::GC_CHAIN`]).
    chain: &'static str,
    record: LockRecord,
    ttl: Duration,
    /// When the holder stops trusting the lock (monotonic).
    deadline: Instant,
    /// Why the lock was lost, once it was.
    lost: Option<String>,
    /// This lock's entry in the store's fence, when the store has one.
    guard: Option<FenceGuard>,
    /// The fence's count of unconfirmed visible writes when the lock was taken.
    unconfirmed_before: Option<u64>,
}

impl RepoLock {
    /// Takes the cluster lock for `operation`, or says who holds it.
    pub async fn acquire(
        store: DynStore,
        operation: &str,
        kind: &str,
        ttl: Duration,
    ) -> Result<RepoLock, LockError> {
        RepoLock::acquire_in(store, chain::CHAIN, operation, kind, ttl).await
    }

    /// Takes the lock whose chain is `chain` (same rules as the cluster lock's).
    pub async fn acquire_in(
        store: DynStore,
        chain: &'static str,
        operation: &str,
        kind: &str,
        ttl: Duration,
    ) -> Result<RepoLock, LockError> {
        let writes_end_with_writer = store.writes_end_with_their_writer();
        for _ in 0..ACQUIRE_ROUNDS {
            let view = read_chain(&store, chain).await?;
            if let Some(old) = view.legacy.first() {
                return Err(LockError::Busy(old.describe()));
            }
            let now = if view.needs_clock() {
                clock::storage_now_ms(&store).await?
            } else {
                0
            };
            let (generation, took_over) =
                match view.decide(now, chain == chain::GC_CHAIN, writes_end_with_writer) {
                    Decision::Busy => {
                        let (generation, holder) =
                            view.newest_record().expect("busy means a holder");
                        if chain == chain::GC_CHAIN {
                            if let Some(lapsing) = view.lapsing(generation, holder, now) {
                                return Err(LockError::Lapsing(lapsing));
                            }
                        }
                        return Err(LockError::Busy(holder.describe()));
                    }
                    Decision::Take {
                        generation,
                        took_over,
                    } => (generation, took_over),
                };
            let note = took_over
                .then(|| view.newest_record())
                .flatten()
                .map(|(_, old)| format!("took over the expired lock of {}", old.describe()));
            let issued = Instant::now();
            let now = now_ms();
            let record = LockRecord {
                operation: operation.to_string(),
                kind: kind.to_string(),
                holder: holder_name(),
                started_ms: now,
                expires_ms: now + ttl.as_millis() as u64,
                generation,
                state: LockState::Held,
                note,
                ttl_ms: Some(ttl.as_millis() as u64),
                process: Some(liveness::this_process()),
                backup: None,
            };
            match store
                .put_if_absent(&chain::key_in(chain, generation), record.body())
                .await
            {
                Ok(()) => {}
                // Another process wrote that generation first: look again.
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
            let deadline = issued + chain::trust_for(ttl);
            let guard = store
                .fence()
                .map(|fence| fence.guard(&format!("{kind} {operation}"), deadline));
            let unconfirmed_before = store.fence().map(|f| f.unconfirmed_writes());
            let lock = RepoLock {
                store,
                chain,
                record,
                ttl,
                deadline,
                lost: None,
                guard,
                unconfirmed_before,
            };
            if Instant::now() >= deadline {
                // Written, but too late to be sure nobody judged it expired meanwhile.
                lock.release().await;
                return Err(LockError::TooSlow {
                    what: format!(
                        "{} lock",
                        if chain == chain::GC_CHAIN {
                            "garbage collection"
                        } else {
                            "cluster"
                        }
                    ),
                    took_secs: chain::trust_for(ttl).as_secs_f32(),
                    ttl_secs: ttl.as_secs_f32(),
                });
            }
            prune(&lock.store, chain, &view.generations).await;
            return Ok(lock);
        }
        Err(LockError::Busy(format!(
            "the cluster lock changed hands {ACQUIRE_ROUNDS} times while {kind} {operation} tried to take it"
        )))
    }

    /// The lock's record.
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// `Ok` while the lock holds as far as this process can tell: not lost, and its
    /// monotonic deadline not passed. Call right before anything that depends on it.
    pub fn check(&self) -> Result<(), LockError> {
        if let Some(why) = &self.lost {
            return Err(LockError::Lost(why.clone()));
        }
        if Instant::now() >= self.deadline {
            return Err(LockError::Lost(format!(
                "not renewed within its TTL of {} s (the process was stalled or could not reach the storage)",
                self.ttl.as_secs_f32()
            )));
        }
        Ok(())
    }

    fn lose(&mut self, why: String) -> LockError {
        if let Some(guard) = &self.guard {
            guard.lose(&why);
        }
        self.lost.get_or_insert(why.clone());
        LockError::Lost(why)
    }

    /// Pushes the expiry forward by the TTL, by writing the next generation; fails with
    /// [`LockError::Lost`] (writing nothing) when the lock is past its deadline or another
    /// process took it over, and when the renewal itself came back too late to count.
    pub async fn renew(&mut self) -> Result<(), LockError> {
        if let Err(LockError::Lost(why)) = self.check() {
            return Err(self.lose(why));
        }
        let issued = Instant::now();
        let mut next = self.record.clone();
        next.generation += 1;
        next.expires_ms = now_ms() + self.ttl.as_millis() as u64;
        match self
            .store
            .put_if_absent(&chain::key_in(self.chain, next.generation), next.body())
            .await
        {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                let why = match self
                    .store
                    .get(&chain::key_in(self.chain, next.generation))
                    .await
                {
                    Ok(bytes) => serde_json::from_slice::<LockRecord>(&bytes)
                        .ok()
                        .map(|r| format!("taken over by {}", r.describe()))
                        .unwrap_or_else(|| "another process wrote its next generation".into()),
                    Err(_) => "another process wrote its next generation".into(),
                };
                return Err(self.lose(why));
            }
            Err(err) => return Err(err.into()),
        }
        if !chain::renewal_counts(Instant::now(), self.deadline) {
            let why = format!(
                "its renewal took past the lock's deadline (TTL {} s) to reach the storage",
                self.ttl.as_secs_f32()
            );
            return Err(self.lose(why));
        }
        self.record = next;
        self.deadline = issued + chain::trust_for(self.ttl);
        if let Some(guard) = &self.guard {
            guard.renewed(self.deadline);
        }
        if self.record.generation.is_multiple_of(16) {
            if let Ok(view) = read_chain(&self.store, self.chain).await {
                prune(&self.store, self.chain, &view.generations).await;
            }
        }
        Ok(())
    }

    /// Gives the lock back (best effort: if this fails, the lock expires) by writing a
    /// `released` generation; older generations go once no write can aim at them.
    pub async fn release(self) {
        if self.lost.is_some() {
            // Not ours any more: whatever is there belongs to whoever took it over.
            return;
        }
        let unconfirmed = self.store.fence().map(|f| f.unconfirmed_writes());
        if self.chain == chain::GC_CHAIN
            && unconfirmed > self.unconfirmed_before
            && !test_unsafe("no-landing-wait")
        {
            // An index object this holder gave up on may still land and name packs the
            // next holder deletes: the lock is left to expire, and the next holder waits
            // out the longest flight after that (see `ChainView::decide`).
            eprintln!(
                "strata: note: a write of {} may still land in the storage, so its lock is left to expire: the next garbage collection waits for it",
                self.record.operation
            );
            return;
        }
        let released = LockRecord {
            generation: self.record.generation + 1,
            state: LockState::Released,
            expires_ms: now_ms(),
            ..self.record.clone()
        };
        match self
            .store
            .put_if_absent(
                &chain::key_in(self.chain, released.generation),
                released.body(),
            )
            .await
        {
            Ok(()) => {}
            // Taken over meanwhile: it is not ours to give back.
            Err(StoreError::AlreadyExists { .. }) => return,
            Err(e) => {
                // Never deleted instead (the model shows two holders then): the lock
                // expires by itself, and this process, which knows it is not using it,
                // may take it over at once.
                abandon(&self.record.operation);
                eprintln!(
                    "strata: warning: cannot mark the lock of {} released ({e}); it expires by itself",
                    self.record.operation
                );
                return;
            }
        }
        if let Ok(view) = read_chain(&self.store, self.chain).await {
            prune(&self.store, self.chain, &view.generations).await;
        }
    }
}

impl RepoLock {
    /// Keeps the lock alive, renewing it every third of its TTL, until released: for
    /// operations (garbage collection, copies) that may outlast one TTL.
    pub fn keep_renewed(mut self) -> HeldLock {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (period, ttl) = (self.ttl / 3, self.ttl);
        let (state_tx, state) = tokio::sync::watch::channel::<Option<(Instant, Option<String>)>>(
            Some((self.deadline, None)),
        );
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stopped.changed() => return self,
                }
                match self.renew().await {
                    Ok(()) => {}
                    Err(LockError::Lost(why)) => {
                        eprintln!("strata: error: lost the cluster lock: {why}");
                        let _ = state_tx.send(Some((self.deadline, Some(why))));
                        let _ = stopped.changed().await;
                        return self;
                    }
                    Err(e) => eprintln!("strata: warning: cannot renew the cluster lock: {e}"),
                }
                let _ = state_tx.send(Some((self.deadline, None)));
            }
        });
        HeldLock {
            stop,
            task,
            state,
            ttl,
        }
    }
}

/// A lock renewed in the background; see [`RepoLock::keep_renewed`].
pub struct HeldLock {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<RepoLock>,
    /// The deadline after the last renewal, and why the lock was lost, if it was.
    state: tokio::sync::watch::Receiver<Option<(Instant, Option<String>)>>,
    ttl: Duration,
}

impl HeldLock {
    /// Like [`RepoLock::check`]: call right before anything that depends on the lock
    /// (garbage collection, before each delete).
    pub fn check(&self) -> Result<(), LockError> {
        if let Some(why) = stopping().lock().unwrap().clone() {
            return Err(LockError::Stopped(why));
        }
        let state = self.state.borrow().clone();
        match state {
            Some((_, Some(why))) => Err(LockError::Lost(why)),
            Some((deadline, None)) if Instant::now() < deadline => Ok(()),
            _ => Err(LockError::Lost(format!(
                "not renewed within its TTL of {} s (the process was stalled or could not reach the storage)",
                self.ttl.as_secs_f32()
            ))),
        }
    }

    /// Stops renewing and removes the lock.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        if let Ok(lock) = self.task.await {
            lock.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(strata_store::LocalStore::new(dir.path()));
        (dir, store)
    }

    /// The generations of the chain in the store.
    async fn generations(store: &DynStore) -> Vec<u64> {
        let mut out: Vec<u64> = read_chain(store, chain::CHAIN)
            .await
            .unwrap()
            .generations
            .iter()
            .map(|(g, _)| *g)
            .collect();
        out.sort_unstable();
        out
    }

    fn record(operation: &str, holder: String, expires_ms: u64, generation: u64) -> LockRecord {
        LockRecord {
            operation: operation.into(),
            kind: "backup".into(),
            holder,
            started_ms: now_ms(),
            expires_ms,
            generation,
            state: LockState::Held,
            note: None,
            ttl_ms: None,
            process: None,
            backup: None,
        }
    }

    #[tokio::test]
    async fn a_second_operation_is_refused_naming_the_first() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(30);
        let first = RepoLock::acquire(store.clone(), "op-a", "backup", ttl)
            .await
            .unwrap();
        let err = RepoLock::acquire(store.clone(), "op-b", "backup", ttl)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("busy") && err.contains("backup op-a"), "{err}");
        first.release().await;
        let second = RepoLock::acquire(store.clone(), "op-b", "restore", ttl)
            .await
            .unwrap();
        assert_eq!(
            list_locks(&store).await.unwrap(),
            vec![second.record().clone()]
        );
        assert_eq!(generations(&store).await, vec![1, 2, 3], "one chain");
    }

    /// A record of another process of this boot whose alive file is
    /// `path`, held (alive) or not (ended) by `held`.
    fn other_process(path: &std::path::Path) -> (liveness::Liveness, std::fs::File) {
        let file = std::fs::File::create(path).unwrap();
        let process = liveness::Liveness {
            instance: "another-instance".into(),
            alive_file: Some(liveness::AliveFile::of(path, &file).unwrap()),
            ..liveness::this_process()
        };
        (process, file)
    }

    #[tokio::test]
    async fn a_holder_is_taken_over_early_only_when_provably_dead() {
        let (dir, store) = store();
        let ttl = Duration::from_secs(60);
        // A PID that does not exist here proves nothing: it may live in another PID
        // namespace, or behind a /proc that hides it.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut held = record(
            "op-a",
            format!("{}:{pid}", liveness::host_name()),
            now_ms() + 60_000,
            1,
        );
        held.ttl_ms = Some(ttl.as_millis() as u64);
        store.put(&chain::key(1), held.body()).await.unwrap();
        let busy = RepoLock::acquire(store.clone(), "op-b", "backup", ttl).await;
        assert!(matches!(busy, Err(LockError::Busy(_))), "{busy:?}");
        // Its alive file still locked: alive, whatever its PID says.
        let (process, file) = other_process(&dir.path().join("alive.lock"));
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        held.process = Some(process);
        store.put(&chain::key(1), held.body()).await.unwrap();
        let busy = RepoLock::acquire(store.clone(), "op-b", "backup", ttl).await;
        assert!(matches!(busy, Err(LockError::Busy(_))), "{busy:?}");
        // Released: provably ended (by the boot id, or where a sandbox hides it, by the
        // test's local directory), taken over at once.
        drop(file);
        let lock = RepoLock::acquire(store, "op-b", "backup", ttl)
            .await
            .unwrap();
        assert_eq!(lock.record().generation, 2);
        assert!(lock.record().note.as_deref().unwrap().contains("op-a"));
    }

    #[tokio::test]
    async fn expiry_is_judged_by_the_storage_clock_not_the_holders() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(60);
        // A holder whose clock runs 10 minutes behind wrote an expiry long past by ours;
        // the storage wrote it just now, so its lease runs for the whole TTL.
        let mut held = record("op-a", "another-host:1".into(), now_ms() - 600_000, 1);
        held.ttl_ms = Some(ttl.as_millis() as u64);
        store.put(&chain::key(1), held.body()).await.unwrap();
        let busy = RepoLock::acquire(store.clone(), "op-b", "backup", ttl).await;
        assert!(matches!(busy, Err(LockError::Busy(_))), "{busy:?}");
        // A lease of 1 ms: over by the storage's clock a moment (and its second) later.
        held.ttl_ms = Some(1);
        held.expires_ms = now_ms() + 3_600_000;
        store.put(&chain::key(1), held.body()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let lock = RepoLock::acquire(store, "op-b", "backup", ttl)
            .await
            .unwrap();
        assert_eq!(lock.record().generation, 2);
    }

    #[tokio::test]
    async fn a_live_lock_of_an_older_strata_is_respected() {
        let (_dir, store) = store();
        let old = record("op-a", "another-host:1".into(), now_ms() + 60_000, 2);
        store
            .put("locks/op-a/0000000002.json", old.body())
            .await
            .unwrap();
        let err = RepoLock::acquire(store.clone(), "op-b", "gc", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("op-a"), "{err}");
        assert!(generations(&store).await.is_empty(), "nothing written");
    }

    #[tokio::test]
    async fn a_renewed_lock_outlives_its_ttl_until_released() {
        let (_dir, store) = store();
        // A TTL long enough that a loaded machine does not stall the renewal past it (a
        // renewal later than its trust window loses the lock, which is the rule): renewed
        // every second, trusted 2.4 s, so a stall of 1.4 s is borne. Then over two TTLs.
        let held = RepoLock::acquire(store.clone(), "op-a", "gc", Duration::from_secs(3))
            .await
            .unwrap()
            .keep_renewed();
        tokio::time::sleep(Duration::from_secs(7)).await;
        let err = RepoLock::acquire(store.clone(), "op-b", "backup", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("gc op-a"), "{err}");
        held.release().await;
        assert!(list_locks(&store).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_expired_lock_is_taken_over() {
        let (_dir, store) = store();
        let dead =
            RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_millis(1)).await;
        // A TTL of 1 ms may already be past when the write returns: either way, the lock
        // of op-a is not live once the storage's clock passed its TTL and the one second
        // every lease gets beyond it (5 ms were enough only when the acquire itself
        // gave up).
        if let Ok(dead) = dead {
            std::mem::forget(dead);
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let lock = RepoLock::acquire(store.clone(), "op-b", "backup", Duration::from_secs(5))
            .await
            .unwrap();
        let locks = list_locks(&store).await.unwrap();
        assert_eq!(locks, vec![lock.record().clone()]);
    }

    #[tokio::test]
    async fn a_renewal_after_a_takeover_neither_recreates_nor_overwrites_the_lock() {
        let (_dir, store) = store();
        let mut stalled =
            RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_secs(30))
                .await
                .unwrap();
        // Another process finds the lock expired by the storage's clock (a lease of 1 ms
        // stands for a storage clock that ran faster): the holder's own (monotonic)
        // deadline has not passed, so only the store can stop it.
        let mut expired = stalled.record().clone();
        expired.ttl_ms = Some(1);
        store.put(&chain::key(1), expired.body()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let taker = RepoLock::acquire(store.clone(), "op-b", "backup", Duration::from_secs(30))
            .await
            .unwrap();
        let before = generations(&store).await;
        let err = stalled.renew().await.unwrap_err();
        assert!(matches!(err, LockError::Lost(_)), "{err}");
        assert!(
            err.to_string().contains("op-b"),
            "names who took over: {err}"
        );
        assert_eq!(generations(&store).await, before, "nothing written");
        assert_eq!(
            list_locks(&store).await.unwrap(),
            vec![taker.record().clone()]
        );
        // Lost stays lost, and releasing writes nothing either.
        assert!(stalled.check().is_err());
        assert!(stalled.renew().await.is_err());
        stalled.release().await;
        assert_eq!(generations(&store).await, before);
        assert!(
            RepoLock::acquire(store.clone(), "op-c", "gc", Duration::from_secs(5))
                .await
                .is_err_and(|e| e.to_string().contains("op-b"))
        );
        taker.release().await;
    }

    #[tokio::test]
    async fn a_lock_write_that_lands_late_never_makes_two_holders() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use strata_testkit::intercept::{Intercept, Request};
        let (_dir, inner) = store();
        // The first lock write waits for a signal before it lands: the slow PUT of the
        // issue, with the process that issued it waiting on it.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let delayed = Arc::new(AtomicBool::new(false));
        let (g, d) = (gate.clone(), delayed.clone());
        let slow: DynStore = Arc::new(Intercept::new(inner.clone(), move |request, key| {
            let late = request == Request::PutIfAbsent
                && key.starts_with("locks/")
                && !d.swap(true, Ordering::SeqCst);
            let g = g.clone();
            Box::pin(async move {
                if late {
                    let _permit = g.acquire().await.unwrap();
                }
            })
        }));
        let ttl = Duration::from_secs(30);
        // The first process reads the empty chain and issues its write, which stalls.
        let first = tokio::spawn(async move { RepoLock::acquire(slow, "gc-1", "gc", ttl).await });
        while !delayed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The second takes the lock meanwhile...
        let second = RepoLock::acquire(inner.clone(), "backup-2", "backup", ttl)
            .await
            .unwrap();
        // ...and the first one's write lands after: it must not hold.
        gate.add_permits(1);
        let err = first.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("backup-2"), "{err}");
        assert_eq!(
            list_locks(&inner).await.unwrap(),
            vec![second.record().clone()]
        );
        assert_eq!(generations(&inner).await, vec![1]);
    }

    #[tokio::test]
    async fn a_holder_past_its_monotonic_deadline_gives_up_without_writing() {
        let (_dir, store) = store();
        let store: DynStore = Arc::new(strata_store::FencedStore::new(
            store,
            strata_repo::layout::makes_visible,
        ));
        let mut lock =
            RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_millis(300))
                .await
                .unwrap();
        store
            .put("index/x", bytes::Bytes::from_static(b"1"))
            .await
            .unwrap();
        // Stalled (as by SIGSTOP) past the TTL: no renewal ran.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let before = generations(&store).await;
        assert!(matches!(lock.renew().await, Err(LockError::Lost(_))));
        assert_eq!(generations(&store).await, before, "not renewed");
        let refused = store
            .put("summaries/b", bytes::Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
    }

    #[tokio::test]
    async fn old_generations_go_and_the_newest_stays() {
        let (dir, store) = store();
        let lock = RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_secs(30))
            .await
            .unwrap();
        lock.release().await;
        assert_eq!(generations(&store).await, vec![1, 2], "young ones stay");
        // Age generation 1 past the longest flight of a write.
        let old = SystemTime::now() - chain::MAX_FLIGHT - Duration::from_secs(1);
        let path = dir.path().join(chain::key(1));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let lock = RepoLock::acquire(store.clone(), "op-b", "backup", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(generations(&store).await, vec![2, 3]);
        lock.release().await;
    }

    /// A store over `store` whose writes under `index/` fail as a timeout does.
    fn index_writes_time_out(store: DynStore) -> DynStore {
        let mode = std::sync::atomic::AtomicU8::new(INDEX_TIMEOUTS);
        Arc::new(WritesMayLand(store, None, Arc::new(mode)))
    }

    #[tokio::test]
    async fn a_gc_lock_whose_holder_may_still_have_a_write_in_flight_waits_it_out() {
        let (_dir, store) = store();
        let fenced: DynStore = Arc::new(strata_store::FencedStore::new(
            index_writes_time_out(store.clone()),
            strata_repo::layout::makes_visible,
        ));
        let ttl = Duration::from_secs(30);
        let lock = RepoLock::acquire_in(fenced.clone(), chain::GC_CHAIN, "gc-a", "gc", ttl)
            .await
            .unwrap();
        assert!(fenced.put("index/x", bytes::Bytes::new()).await.is_err());
        lock.release().await;
        let next = RepoLock::acquire_in(store.clone(), chain::GC_CHAIN, "gc-b", "gc", ttl).await;
        assert!(
            matches!(next, Err(LockError::Busy(_))),
            "the index write may still land: {next:?}"
        );
        // Even expired by its TTL and its holder gone, the landing window is waited out.
        let mut expired: LockRecord =
            serde_json::from_slice(&store.get(&chain::key_in(chain::GC_CHAIN, 1)).await.unwrap())
                .unwrap();
        expired.ttl_ms = Some(1);
        expired.process = None;
        store
            .put(&chain::key_in(chain::GC_CHAIN, 1), expired.body())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let next = RepoLock::acquire_in(store.clone(), chain::GC_CHAIN, "gc-b", "gc", ttl).await;
        // Refused, saying that its holder ended and when gc can run.
        assert!(
            matches!(&next, Err(LockError::Lapsing(why)) if why.contains("lease expired")
                && why.contains("by the storage's clock")),
            "{next:?}"
        );
        // The cluster lock has no such window: its holders rewrite no index objects.
        store.put(&chain::key(1), expired.body()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let taken = RepoLock::acquire(store.clone(), "op-b", "backup", ttl).await;
        assert!(taken.is_ok(), "{taken:?}");
    }

    /// A writer one of whose visible writes went unanswered (the storage may still apply
    /// it) leaves its mark to lapse; one whose writes were all answered withdraws it.
    #[tokio::test]
    async fn a_writer_with_a_write_unanswered_leaves_its_mark_to_lapse() {
        let (_dir, store) = store();
        let fenced: DynStore = Arc::new(strata_store::FencedStore::new(
            index_writes_time_out(store.clone()),
            strata_repo::layout::makes_visible,
        ));
        let ttl = Duration::from_secs(30);
        let answered = mark_archive_writer_with_ttl(fenced.clone(), "wal-push", ttl)
            .await
            .unwrap();
        answered.release().await;
        assert!(
            running_writers(&store).await.unwrap().is_empty(),
            "withdrawn"
        );
        let unanswered = mark_archive_writer_with_ttl(fenced.clone(), "wal-push", ttl)
            .await
            .unwrap();
        assert!(fenced.put("index/x", bytes::Bytes::new()).await.is_err());
        unanswered.release().await;
        assert_eq!(
            running_writers(&store).await.unwrap().len(),
            1,
            "left to lapse"
        );
    }

    /// A store over `0` that does not say its writes end with their writer, as object
    /// storage does not; reading the key `1` (when set) fails with the error `2` makes;
    /// `2` is its mode: [`REFUSING`], [`SLOW`], [`HANGING`] or [`INDEX_TIMEOUTS`].
    #[derive(Debug)]
    struct WritesMayLand(
        DynStore,
        Option<Unreadable>,
        Arc<std::sync::atomic::AtomicU8>,
    );

    const REFUSING: u8 = 1;
    const SLOW: u8 = 2;
    /// Every write hangs for a minute.
    const HANGING: u8 = 3;
    /// Every write under `index/` fails as a timeout does (the storage may apply it later).
    const INDEX_TIMEOUTS: u8 = 4;

    /// A key, and the error a read of it fails with.
    type Unreadable = (String, fn(String) -> StoreError);

    #[async_trait::async_trait]
    impl strata_store::Store for WritesMayLand {
        async fn put(&self, key: &str, data: bytes::Bytes) -> strata_store::StoreResult<()> {
            match self.2.load(std::sync::atomic::Ordering::SeqCst) {
                SLOW => tokio::time::sleep(Duration::from_secs(2)).await,
                HANGING => tokio::time::sleep(Duration::from_secs(60)).await,
                INDEX_TIMEOUTS if key.starts_with("index/") => {
                    return Err(StoreError::Transient {
                        op: "put",
                        key: key.into(),
                        store: self.describe(),
                        message: "timed out".into(),
                    });
                }
                _ => {}
            }
            self.0.put(key, data).await
        }
        async fn put_if_absent(
            &self,
            key: &str,
            data: bytes::Bytes,
        ) -> strata_store::StoreResult<()> {
            let mode = self.2.load(std::sync::atomic::Ordering::SeqCst);
            if mode == HANGING {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if mode == REFUSING {
                return Err(StoreError::Backend {
                    op: "put",
                    key: key.into(),
                    store: "test".into(),
                    message: "writes refused".into(),
                });
            }
            self.0.put_if_absent(key, data).await
        }
        async fn get(&self, key: &str) -> strata_store::StoreResult<bytes::Bytes> {
            match &self.1 {
                Some((unreadable, error)) if unreadable == key => Err(error(key.to_string())),
                _ => self.0.get(key).await,
            }
        }
        async fn get_range(
            &self,
            key: &str,
            range: std::ops::Range<u64>,
        ) -> strata_store::StoreResult<bytes::Bytes> {
            self.0.get_range(key, range).await
        }
        async fn list(
            &self,
            prefix: &str,
        ) -> strata_store::StoreResult<Vec<strata_store::ObjectMeta>> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &str) -> strata_store::StoreResult<()> {
            self.0.delete(key).await
        }
        fn describe(&self) -> String {
            format!("may-land:{}", self.0.describe())
        }
    }

    /// A garbage collection lock whose holder provably ended: taken over at once on a
    /// directory of this host's disk (nothing it wrote can land after it), left to lapse
    /// through the landing window elsewhere, saying so.
    #[tokio::test]
    async fn a_dead_gc_holder_is_taken_over_at_once_only_where_its_writes_ended_with_it() {
        let (dir, store) = store();
        assert!(
            store.writes_end_with_their_writer(),
            "a test directory on this disk"
        );
        let ttl = Duration::from_secs(60);
        let (process, file) = other_process(&dir.path().join("alive.lock"));
        drop(file);
        let mut held = record("gc-a", liveness::host_name(), now_ms() + 60_000, 1);
        held.kind = "gc".into();
        held.ttl_ms = Some(ttl.as_millis() as u64);
        held.process = Some(process);
        let key = chain::key_in(chain::GC_CHAIN, 1);
        store.put(&key, held.body()).await.unwrap();
        let remote: DynStore = Arc::new(WritesMayLand(store.clone(), None, Default::default()));
        let next = RepoLock::acquire_in(remote, chain::GC_CHAIN, "gc-b", "gc", ttl).await;
        assert!(
            matches!(&next, Err(LockError::Lapsing(why)) if why.contains("its process ended without giving it back")),
            "{next:?}"
        );
        let lock = RepoLock::acquire_in(store, chain::GC_CHAIN, "gc-b", "gc", ttl)
            .await
            .unwrap();
        assert_eq!(lock.record().generation, 2);
    }

    #[tokio::test]
    async fn a_release_the_store_refuses_to_delete_blocks_nobody() {
        let (_dir, store) = store();
        let refusing: DynStore = Arc::new(strata_store::FaultyStore::new(
            store.clone(),
            strata_store::FaultConfig {
                refuse_deletes: true,
                ..Default::default()
            },
        ));
        let mut lock =
            RepoLock::acquire(refusing.clone(), "op-a", "backup", Duration::from_secs(30))
                .await
                .unwrap();
        lock.renew().await.unwrap();
        lock.release().await;
        assert!(list_locks(&refusing).await.unwrap().is_empty());
        RepoLock::acquire(refusing.clone(), "op-b", "backup", Duration::from_secs(30))
            .await
            .expect("a released lock blocks nobody")
            .release()
            .await;
        let mark = mark_archive_writer(refusing.clone(), "wal-push")
            .await
            .unwrap();
        assert_eq!(running_writers(&refusing).await.unwrap().len(), 1);
        mark.release().await;
        assert!(running_writers(&refusing).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_archive_writers_mark_is_renewed_while_it_runs() {
        let (_dir, store) = store();
        let mark =
            mark_archive_writer_with_ttl(store.clone(), "wal-push", Duration::from_millis(600))
                .await
                .unwrap();
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(
            running_writers(&store).await.unwrap().len(),
            1,
            "still announced after three TTLs"
        );
        mark.release().await;
        assert!(running_writers(&store).await.unwrap().is_empty());
    }

    /// Runs the ignored test `name` of this test binary alone in a child process with the
    /// environment `env`: for rules that read a process-wide switch once (the test clock,
    /// a stop asked by a signal), which must not leak into the tests beside it.
    fn in_a_process_of_its_own(name: &str, env: &[(&str, &str)]) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {log}");
        assert!(log.contains("1 passed"), "{name} ran: {log}");
    }

    /// Readers that cannot learn when the storage wrote a record (and strata before the
    /// storage's clock) judge it by `expires_ms`: the writer's start plus the TTL.
    #[tokio::test]
    async fn a_lock_carries_its_expiry_by_the_writer_s_clock_for_older_readers() {
        let (_dir, store) = store();
        let lock = RepoLock::acquire(store, "op-a", "backup", Duration::from_secs(30))
            .await
            .unwrap();
        let record = lock.record();
        assert_eq!(record.expires_ms, record.started_ms + 30_000);
        assert_eq!(record.ttl_ms, Some(30_000));
        lock.release().await;
    }

    #[test]
    fn a_legacy_record_is_live_while_held_and_before_its_expiry() {
        let held = record("op-a", "h:1".into(), 1_000, 1);
        assert!(held.is_live(999));
        assert!(!held.is_live(1_000), "expired at its expiry");
        let released = LockRecord {
            state: LockState::Released,
            ..held
        };
        assert!(!released.is_live(0));
    }

    #[test]
    fn a_lease_ends_its_ttl_and_a_second_after_the_storage_wrote_it() {
        let mut held = record("op-a", "h:1".into(), 5, 1);
        assert_eq!(
            held.expires_by_storage(Some(10_000)),
            5,
            "no TTL: the writer's"
        );
        held.ttl_ms = Some(30_000);
        assert_eq!(held.expires_by_storage(Some(10_000)), 41_000);
        assert_eq!(
            held.expires_by_storage(None),
            5,
            "no write time: the writer's"
        );
    }

    /// The format (docs/format.md): `state` is omitted while held.
    #[test]
    fn a_held_record_is_written_without_its_state() {
        let held = record("op-a", "h:1".into(), 5, 1);
        let json = String::from_utf8(held.body().to_vec()).unwrap();
        assert!(!json.contains("\"state\""), "{json}");
        let released = LockRecord {
            state: LockState::Released,
            ..held
        };
        let json = String::from_utf8(released.body().to_vec()).unwrap();
        assert!(json.contains("\"state\": \"released\""), "{json}");
    }

    #[test]
    fn this_process_s_own_lock_is_over_only_once_abandoned() {
        let mut own = record("op-own-abandoned", holder_name(), u64::MAX, 1);
        own.process = Some(liveness::this_process());
        assert!(!own.holder_is_dead(), "held by this process, in use");
        abandon("op-own-abandoned");
        assert!(own.holder_is_dead(), "given up by this process");
        let other = LockRecord {
            operation: "op-other".into(),
            ..own
        };
        assert!(!other.holder_is_dead(), "only the abandoned operation");
    }

    #[test]
    fn the_holder_is_named_by_host_and_pid() {
        assert_eq!(
            holder_name(),
            format!("{}:{}", liveness::host_name(), std::process::id())
        );
    }

    #[test]
    fn the_test_clock_shifts_both_ways() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(shifted(now, 0), now);
        assert_eq!(shifted(now, -600_000), now - Duration::from_secs(600));
        assert_eq!(shifted(now, 600_000), now + Duration::from_secs(600));
        assert_eq!(offset_ms_of(Some(" -600 ")), -600_000);
        assert_eq!(offset_ms_of(Some("5")), 5_000);
        assert_eq!(offset_ms_of(Some("ten")), 0);
        assert_eq!(offset_ms_of(None), 0);
    }

    #[test]
    fn the_test_clock_follows_its_switch() {
        in_a_process_of_its_own(
            "lock::tests::with_the_clock_600_s_behind",
            &[("STRATA_TEST_CLOCK_OFFSET_SECS", "-600")],
        );
    }

    #[test]
    #[ignore = "run by the_test_clock_follows_its_switch, in a process of its own"]
    fn with_the_clock_600_s_behind() {
        assert_eq!(test_clock_offset_ms(), -600_000);
        let behind = SystemTime::now()
            .duration_since(host_now())
            .unwrap()
            .as_secs();
        assert!((599..=601).contains(&behind), "{behind}");
    }

    /// The negative control `proc-liveness` is the rule it stands for (a holder of this
    /// host name whose PID has no `/proc` entry here is dead), or its test would prove
    /// nothing.
    #[test]
    fn the_proc_liveness_control_judges_by_host_name_and_proc() {
        in_a_process_of_its_own(
            "lock::tests::with_the_proc_liveness_control",
            &[("STRATA_TEST_UNSAFE", "proc-liveness")],
        );
    }

    #[test]
    #[ignore = "run by the_proc_liveness_control_judges_by_host_name_and_proc, in a process of its own"]
    fn with_the_proc_liveness_control() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let holder = |host: &str, pid: u32| record("op-a", format!("{host}:{pid}"), 0, 1);
        let here = liveness::host_name();
        assert!(holder(&here, gone).holder_is_dead(), "no /proc entry here");
        assert!(!holder(&here, 1).holder_is_dead(), "PID 1 lives");
        assert!(
            !holder(&here, std::process::id()).holder_is_dead(),
            "this process"
        );
        assert!(
            !holder("another-host", gone).holder_is_dead(),
            "another host"
        );
    }

    /// The negative control `wall-clock` is the rule it stands for (a mark ends at its
    /// writer's own expiry, by this host's clock), or its test would prove nothing.
    #[test]
    fn the_wall_clock_control_judges_marks_by_their_writer_s_expiry() {
        in_a_process_of_its_own(
            "lock::tests::with_the_wall_clock_control",
            &[("STRATA_TEST_UNSAFE", "wall-clock")],
        );
    }

    #[test]
    #[ignore = "run by the_wall_clock_control_judges_marks_by_their_writer_s_expiry, in a process of its own"]
    fn with_the_wall_clock_control() {
        let mut mark = record("wal-push-1", "h:1".into(), 1_000_000, 0);
        mark.ttl_ms = Some(60_000);
        assert!(!has_ended(&mark, Some(0), 999_999));
        assert!(has_ended(&mark, Some(0), 1_000_000), "at its own expiry");
    }

    #[test]
    fn a_stop_asked_ends_a_held_gc_lock_at_its_next_check() {
        in_a_process_of_its_own("lock::tests::a_stop_asked_meanwhile", &[]);
    }

    #[tokio::test]
    #[ignore = "run by a_stop_asked_ends_a_held_gc_lock_at_its_next_check, in a process of its own"]
    async fn a_stop_asked_meanwhile() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(30);
        let lock = RepoLock::acquire_in(store, chain::GC_CHAIN, "gc-a", "gc", ttl)
            .await
            .unwrap()
            .keep_renewed();
        lock.check().unwrap();
        stop_collections("asked to stop (SIGTERM)");
        let stopped = lock.check();
        assert!(
            matches!(&stopped, Err(LockError::Stopped(why)) if why.contains("SIGTERM")),
            "{stopped:?}"
        );
        lock.release().await;
    }

    /// A view of a chain whose only generation, `1`, the storage wrote at `created_ms`.
    fn view_of(record: Option<LockRecord>, created_ms: u64) -> ChainView {
        ChainView {
            newest: Some((1, record)),
            generations: vec![(1, Some(UNIX_EPOCH + Duration::from_millis(created_ms)))],
            legacy: Vec::new(),
        }
    }

    #[test]
    fn the_storage_s_clock_is_read_only_for_a_held_newest_generation() {
        let mut held = record("op-a", "h:1".into(), 5, 1);
        assert!(view_of(Some(held.clone()), 0).needs_clock());
        held.state = LockState::Released;
        assert!(!view_of(Some(held), 0).needs_clock());
        assert!(!view_of(None, 0).needs_clock(), "unreadable");
        assert!(!ChainView::default().needs_clock(), "empty");
    }

    /// A holder that stopped renewing: its lease ends its TTL (and a second) after the
    /// storage wrote it, its gc lock the longest flight of a write after that.
    #[test]
    fn a_gc_lock_ends_the_landing_window_after_its_lease() {
        let mut held = record("gc-a", "another-host:1".into(), 0, 1);
        held.kind = "gc".into();
        held.ttl_ms = Some(30_000);
        let created = 1_000_000;
        let lease_end = created + 31_000;
        let free = lease_end + chain::max_flight().as_millis() as u64;
        let view = view_of(Some(held.clone()), created);
        let take = Decision::Take {
            generation: 2,
            took_over: true,
        };
        assert_eq!(view.decide(lease_end - 1, false, true), Decision::Busy);
        assert_eq!(view.decide(lease_end, false, true), take, "no landings");
        assert_eq!(view.decide(lease_end, true, true), Decision::Busy);
        assert_eq!(view.decide(free - 1, true, true), Decision::Busy);
        assert_eq!(view.decide(free, true, true), take);
        // And it says when, by the storage's clock.
        let said = view.lapsing(1, &held, lease_end).unwrap();
        let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(free));
        assert!(said.contains(&format!("until {at}")), "{said}");
        assert!(said.contains("(in 15m)"), "{said}");
        assert_eq!(view.lapsing(1, &held, lease_end - 1), None, "still held");
    }

    /// A lock of the layout before the chain: its newest generation speaks for it.
    #[tokio::test]
    async fn a_legacy_lock_released_by_its_newest_generation_blocks_nothing() {
        let (_dir, store) = store();
        let held = record("op-a", "another-host:1".into(), now_ms() + 60_000, 1);
        let released = LockRecord {
            state: LockState::Released,
            generation: 2,
            ..held.clone()
        };
        store
            .put("locks/op-a/0000000001.json", held.body())
            .await
            .unwrap();
        store
            .put("locks/op-a/0000000002.json", released.body())
            .await
            .unwrap();
        RepoLock::acquire(store, "op-b", "backup", Duration::from_secs(5))
            .await
            .expect("released by its newest generation")
            .release()
            .await;
    }

    fn denied(key: String) -> StoreError {
        StoreError::PermissionDenied {
            op: "get",
            key,
            store: "test".into(),
            message: "denied".into(),
        }
    }

    fn gone(key: String) -> StoreError {
        StoreError::NotFound {
            key,
            store: "test".into(),
        }
    }

    /// A lock of the layout before the chain that cannot be read is an error, never a
    /// free lock; one gone meanwhile blocks nothing.
    #[tokio::test]
    async fn an_unreadable_legacy_lock_is_an_error_unless_it_is_gone() {
        let (_dir, store) = store();
        let key = "locks/op-a/0000000001.json";
        let old = record("op-a", "another-host:1".into(), now_ms() + 60_000, 1);
        store.put(key, old.body()).await.unwrap();
        let ttl = Duration::from_secs(5);
        let unreadable = |error: fn(String) -> StoreError| -> DynStore {
            Arc::new(WritesMayLand(
                store.clone(),
                Some((key.to_string(), error)),
                Default::default(),
            ))
        };
        let err = RepoLock::acquire(unreadable(denied), "op-b", "backup", ttl).await;
        assert!(matches!(err, Err(LockError::Store(_))), "{err:?}");
        RepoLock::acquire(unreadable(gone), "op-b", "backup", ttl)
            .await
            .expect("a legacy lock gone meanwhile blocks nothing")
            .release()
            .await;
    }

    /// A renewal of a writer's mark that the storage answered after the writer's deadline
    /// does not count (the mark may have been judged lapsed before it landed): the
    /// writer's visible writes are fenced, saying so.
    #[tokio::test]
    async fn a_mark_renewed_too_late_fences_its_writer() {
        let (_dir, store) = store();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let slow: DynStore = Arc::new(WritesMayLand(store, None, mode.clone()));
        let fenced: DynStore = Arc::new(strata_store::FencedStore::new(
            slow,
            strata_repo::layout::makes_visible,
        ));
        // Trusted 2.4 s after each write; the renewal at 1 s comes back at 3 s.
        let mark = mark_archive_writer_with_ttl(fenced.clone(), "wal-push", Duration::from_secs(3))
            .await
            .unwrap();
        mode.store(SLOW, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        let refused = fenced.put("index/x", bytes::Bytes::new()).await;
        assert!(
            matches!(&refused, Err(StoreError::Fenced { why, .. }) if why.contains("too late")),
            "{refused:?}"
        );
        mode.store(0, std::sync::atomic::Ordering::SeqCst);
        mark.release().await;
    }

    /// A writer's mark that cannot be read is an error, never a writer that ended; one
    /// gone meanwhile (withdrawn) is not listed.
    #[tokio::test]
    async fn an_unreadable_writer_s_mark_is_an_error_unless_it_is_gone() {
        let (_dir, store) = store();
        let mark = mark_archive_writer_with_ttl(store.clone(), "wal-push", Duration::from_secs(30))
            .await
            .unwrap();
        let key = store.list(strata_repo::layout::WRITERS).await.unwrap()[0]
            .key
            .clone();
        let unreadable = |error: fn(String) -> StoreError| -> DynStore {
            Arc::new(WritesMayLand(
                store.clone(),
                Some((key.clone(), error)),
                Default::default(),
            ))
        };
        let err = running_writers(&unreadable(denied)).await;
        assert!(matches!(err, Err(LockError::Store(_))), "{err:?}");
        assert!(running_writers(&unreadable(gone)).await.unwrap().is_empty());
        assert_eq!(running_writers(&store).await.unwrap().len(), 1);
        mark.release().await;
    }

    /// A lock kept renewed is over for its holder when another process took it over, and
    /// when its renewals fail until its deadline passed.
    #[tokio::test]
    async fn a_held_lock_is_lost_to_a_takeover_and_to_failed_renewals() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(3);
        let held = RepoLock::acquire(store.clone(), "op-a", "gc", ttl)
            .await
            .unwrap()
            .keep_renewed();
        held.check().unwrap();
        // Another process writes the next generations first: the next renewal loses.
        for generation in 2..10 {
            let other = record(
                "op-b",
                "another-host:1".into(),
                now_ms() + 60_000,
                generation,
            );
            let _ = store
                .put_if_absent(&chain::key(generation), other.body())
                .await;
        }
        let lost = wait_for_loss(&held).await;
        assert!(lost.contains("op-b") || lost.contains("taken"), "{lost}");
        held.release().await;

        let (_dir, store) = self::store();
        let refusing = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let flaky: DynStore = Arc::new(WritesMayLand(store, None, refusing.clone()));
        let held = RepoLock::acquire(flaky, "op-a", "gc", ttl)
            .await
            .unwrap()
            .keep_renewed();
        held.check().unwrap();
        refusing.store(REFUSING, std::sync::atomic::Ordering::SeqCst);
        let lost = wait_for_loss(&held).await;
        assert!(lost.contains("not renewed within its TTL"), "{lost}");
    }

    /// A renewal that never comes back (the storage hangs) loses the lock by its holder's
    /// monotonic deadline alone: nothing else tells it.
    #[tokio::test]
    async fn a_renewal_that_hangs_loses_the_lock_by_the_deadline_alone() {
        let (_dir, store) = store();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let hanging: DynStore = Arc::new(WritesMayLand(store, None, mode.clone()));
        let held = RepoLock::acquire(hanging, "op-a", "gc", Duration::from_secs(3))
            .await
            .unwrap()
            .keep_renewed();
        held.check().unwrap();
        mode.store(HANGING, std::sync::atomic::Ordering::SeqCst);
        // Trusted for 2.4 s after the acquisition; the renewal at 1 s hangs.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let lost = held.check();
        assert!(
            matches!(&lost, Err(LockError::Lost(why)) if why.contains("not renewed within its TTL")),
            "{lost:?}"
        );
        // Not released: its renewal still hangs; the runtime's end drops it.
    }

    /// Why `held` was lost, polled for up to 20 s.
    async fn wait_for_loss(held: &HeldLock) -> String {
        for _ in 0..200 {
            if let Err(LockError::Lost(why)) = held.check() {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the lock was never lost");
    }

    /// A renewal and a release each say, for older readers, when they end by the
    /// writer's clock: a renewal its TTL from now, a release now.
    #[tokio::test]
    async fn renewals_and_releases_carry_their_expiry_by_the_writer_s_clock() {
        let (_dir, store) = store();
        let mut lock = RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_secs(30))
            .await
            .unwrap();
        let before = now_ms();
        lock.renew().await.unwrap();
        let renewed = lock.record().expires_ms;
        assert!(
            (before + 30_000..=now_ms() + 30_000).contains(&renewed),
            "{renewed}"
        );
        lock.release().await;
        let released: LockRecord =
            serde_json::from_slice(&store.get(&chain::key(3)).await.unwrap()).unwrap();
        assert_eq!(released.state, LockState::Released);
        assert!(released.expires_ms <= now_ms() && released.expires_ms >= before);
    }

    /// The newest generation gone between the listing and the read blocks nothing; one
    /// that cannot be read for another reason is an error, never a free lock.
    #[tokio::test]
    async fn an_unreadable_newest_generation_is_an_error_unless_it_is_gone() {
        let (_dir, store) = store();
        let held = record("op-a", "another-host:1".into(), now_ms() + 60_000, 1);
        store.put(&chain::key(1), held.body()).await.unwrap();
        let denied: DynStore = Arc::new(WritesMayLand(
            store.clone(),
            Some((chain::key(1), denied)),
            Default::default(),
        ));
        let err = RepoLock::acquire(denied, "op-b", "backup", Duration::from_secs(5)).await;
        assert!(matches!(err, Err(LockError::Store(_))), "{err:?}");
        let gone: DynStore = Arc::new(WritesMayLand(
            store.clone(),
            Some((chain::key(1), gone)),
            Default::default(),
        ));
        let lock = RepoLock::acquire(gone, "op-b", "backup", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(lock.record().generation, 2);
    }
}
