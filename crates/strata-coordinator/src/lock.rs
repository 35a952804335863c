//! The cluster lock: one object per running operation and generation under `locks/`.
//!
//! A coordinator writes `locks/<operation>/<generation>.json` (generation 1) with a
//! conditional put, then lists the prefix again: if another live lock is there, the older
//! one wins and the newer releases its own and refuses, naming the operation that holds
//! the cluster. Locks carry an expiry that the holder pushes forward while it runs.
//!
//! **Fencing.** Every renewal writes the *next* generation with a conditional put
//! (`put_if_absent`), never overwriting: a process that finds a lock expired (or its
//! holder dead) fences it by writing that lock's next generation itself, marked
//! `broken`. The stalled holder's next renewal then finds its generation taken and knows
//! it lost the lock; it cannot re-create it. The holder also keeps a monotonic deadline
//! ([`std::time::Instant`]): once its TTL minus a margin has passed since the start of its
//! last successful renewal it considers the lock lost, whatever the wall clock or the
//! store says, and its [`strata_store::Fence`] guard stops every write that would make
//! data visible. Other processes judge expiry from the record's wall-clock `expires_ms`.
//!
//! **Release without delete rights.** Releasing writes a last generation marked
//! `released` (which nobody counts as live), then deletes the lock's objects; a store
//! that refuses deletes (credentials that may write but not delete) leaves them behind,
//! harmless, for garbage collection to remove. The repository is shared by every
//! coordinator of the cluster, so this works across hosts without any other service.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strata_store::{DynStore, FenceGuard, StoreError};

const PREFIX: &str = strata_repo::layout::LOCKS;

/// Where a lock stands, as its newest generation says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LockState {
    /// Held while not expired.
    #[default]
    Held,
    /// Given back by its holder.
    Released,
    /// Found expired and fenced by another process; its holder has lost it.
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
    pub operation: String,
    /// `backup`, `restore` or `delete`.
    pub kind: String,
    /// Host and process of the coordinator.
    pub holder: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    /// Unix milliseconds after which the lock is void unless renewed.
    pub expires_ms: u64,
    /// The generation this record is (1 for the first; 0 for a lock of the layout
    /// before generations, `locks/<operation>.json`).
    #[serde(default)]
    pub generation: u64,
    #[serde(default, skip_serializing_if = "LockState::is_held")]
    pub state: LockState,
    /// For a broken lock: who broke it, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl LockRecord {
    /// Whether the lock still holds at `now_ms`: held, not expired, and its holder is
    /// not a process of this host that has died (a killed `strata backup` does not block
    /// the next one for a whole TTL).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.state == LockState::Held && self.expires_ms > now_ms && !holder_is_dead(&self.holder)
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
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// `host:pid`, to tell coordinators apart in messages.
pub fn holder_name() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// Whether `holder` is a process of this host that no longer runs.
fn holder_is_dead(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == host_name() && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Why the lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the cluster is busy: {0} holds it; try again when it has ended")]
    Busy(String),
    /// The holder lost its lock: taken over by another process, or not renewed within
    /// its TTL. Nothing more may become visible under it.
    #[error("lost the cluster lock: {0}")]
    Lost(String),
    #[error("cannot read or write the cluster lock in the repository")]
    Store(#[from] strata_store::StoreError),
}

/// The share of the TTL kept in reserve: the holder gives its lock up this long before
/// others may judge it expired, for the time a write takes and small clock-rate errors.
fn margin(ttl: Duration) -> Duration {
    ttl / 5
}

/// A held lock. Release it with [`RepoLock::release`]; dropped without release, it expires.
#[derive(Debug)]
pub struct RepoLock {
    store: DynStore,
    record: LockRecord,
    ttl: Duration,
    /// When the holder stops trusting the lock (monotonic).
    deadline: Instant,
    /// Why the lock was lost, once it was.
    lost: Option<String>,
    /// This lock's entry in the store's fence, when the store has one.
    guard: Option<FenceGuard>,
}

/// The key of generation `generation` of `operation`'s lock.
fn key(operation: &str, generation: u64) -> String {
    if generation == 0 {
        format!("{PREFIX}{operation}.json")
    } else {
        format!("{PREFIX}{operation}/{generation:010}.json")
    }
}

/// The operation and generation a key under `locks/` names (`None` for a stray key).
fn parse_key(key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix(PREFIX)?;
    match rest.split_once('/') {
        Some((operation, file)) => {
            let generation = file.strip_suffix(".json")?.parse().ok()?;
            Some((operation.to_string(), generation))
        }
        None => Some((rest.strip_suffix(".json")?.to_string(), 0)),
    }
}

/// Every lock object, as operation -> its generations (ascending).
async fn lock_objects(store: &DynStore) -> Result<BTreeMap<String, Vec<u64>>, LockError> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for meta in store.list_fresh(PREFIX).await? {
        if let Some((operation, generation)) = parse_key(&meta.key) {
            out.entry(operation).or_default().push(generation);
        }
    }
    for generations in out.values_mut() {
        generations.sort_unstable();
    }
    Ok(out)
}

/// The newest generation of every lock, whatever its state, with its generations.
async fn newest_records(store: &DynStore) -> Result<Vec<(LockRecord, Vec<u64>)>, LockError> {
    let mut out = Vec::new();
    for (operation, generations) in lock_objects(store).await? {
        let newest = *generations.last().expect("listed locks have a generation");
        match store.get(&key(&operation, newest)).await {
            Ok(bytes) => {
                if let Ok(mut record) = serde_json::from_slice::<LockRecord>(&bytes) {
                    // The key is the truth: a record copied elsewhere fences nothing.
                    record.operation = operation;
                    record.generation = newest;
                    out.push((record, generations));
                }
            }
            // Released between list and get.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|(a, _), (b, _)| (a.started_ms, &a.operation).cmp(&(b.started_ms, &b.operation)));
    Ok(out)
}

/// The locks in the repository that are held, live or expired (released and broken ones
/// are as good as absent).
pub async fn list_locks(store: &DynStore) -> Result<Vec<LockRecord>, LockError> {
    Ok(newest_records(store)
        .await?
        .into_iter()
        .map(|(record, _)| record)
        .filter(|r| r.state == LockState::Held)
        .collect())
}

/// Deletes `keys`, ignoring refusals: cleanup of lock objects nobody counts any more.
async fn delete_quietly(store: &DynStore, keys: impl IntoIterator<Item = String>) -> bool {
    let mut all = true;
    for key in keys {
        if store.delete(&key).await.is_err() {
            all = false;
        }
    }
    all
}

impl RepoLock {
    /// Takes the cluster lock for `operation`, or says who holds it.
    pub async fn acquire(
        store: DynStore,
        operation: &str,
        kind: &str,
        ttl: Duration,
    ) -> Result<RepoLock, LockError> {
        let now = now_ms();
        let existing = newest_records(&store).await?;
        if let Some((holder, _)) = existing
            .iter()
            .find(|(l, _)| l.operation != operation && l.is_live(now))
        {
            return Err(LockError::Busy(holder.describe()));
        }
        let clock = Instant::now();
        let now = now_ms();
        let record = LockRecord {
            operation: operation.to_string(),
            kind: kind.to_string(),
            holder: holder_name(),
            started_ms: now,
            expires_ms: now + ttl.as_millis() as u64,
            generation: 1,
            state: LockState::Held,
            note: None,
        };
        store
            .put_if_absent(&key(operation, 1), record.body())
            .await?;
        let deadline = clock + ttl.saturating_sub(margin(ttl));
        let guard = store
            .fence()
            .map(|fence| fence.guard(&format!("{kind} {operation}"), deadline));
        let lock = RepoLock {
            store,
            record,
            ttl,
            deadline,
            lost: None,
            guard,
        };
        // Fence the expired locks, so their holders, if merely stalled, cannot renew.
        for (stale, _) in existing.iter().filter(|(l, _)| {
            l.operation != operation && l.state == LockState::Held && !l.is_live(now)
        }) {
            if let Err(err) = lock.fence_stale(stale).await {
                lock.release().await;
                return Err(err);
            }
        }
        // Two coordinators may have passed the first check at once: the older lock wins.
        let now = now_ms();
        let rivals = newest_records(&lock.store).await?;
        if let Some((rival, _)) = rivals.iter().find(|(l, _)| {
            l.operation != operation
                && l.is_live(now)
                && (l.started_ms, &l.operation) < (lock.record.started_ms, &lock.record.operation)
        }) {
            let holder = rival.describe();
            lock.release().await;
            return Err(LockError::Busy(holder));
        }
        // Opportunistic cleanup: superseded generations, and locks given back. A store
        // without delete rights keeps them; they are ignored.
        let mut leftovers = Vec::new();
        for (record, generations) in &rivals {
            let keep = match record.state {
                LockState::Released => 0,
                _ => 1,
            };
            let superseded = generations.len().saturating_sub(keep);
            leftovers.extend(
                generations[..superseded]
                    .iter()
                    .map(|g| key(&record.operation, *g)),
            );
        }
        delete_quietly(&lock.store, leftovers).await;
        Ok(lock)
    }

    /// Writes the next generation of the expired lock `stale`, marked broken; refuses as
    /// busy when its holder renewed it meanwhile.
    async fn fence_stale(&self, stale: &LockRecord) -> Result<(), LockError> {
        let broken = LockRecord {
            generation: stale.generation + 1,
            state: LockState::Broken,
            expires_ms: 0,
            note: Some(format!(
                "expired; taken over by {} {} ({})",
                self.record.kind, self.record.operation, self.record.holder
            )),
            ..stale.clone()
        };
        match self
            .store
            .put_if_absent(&key(&stale.operation, broken.generation), broken.body())
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                // Renewed or fenced by someone else meanwhile: look again.
                let now = now_ms();
                let renewed = newest_records(&self.store)
                    .await?
                    .into_iter()
                    .find(|(l, _)| l.operation == stale.operation && l.is_live(now));
                match renewed {
                    Some((holder, _)) => Err(LockError::Busy(holder.describe())),
                    None => Ok(()),
                }
            }
            Err(err) => Err(err.into()),
        }
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
    /// process fenced it.
    pub async fn renew(&mut self) -> Result<(), LockError> {
        if let Err(LockError::Lost(why)) = self.check() {
            return Err(self.lose(why));
        }
        let clock = Instant::now();
        let mut next = self.record.clone();
        next.generation += 1;
        next.expires_ms = now_ms() + self.ttl.as_millis() as u64;
        let operation = self.record.operation.clone();
        match self
            .store
            .put_if_absent(&key(&operation, next.generation), next.body())
            .await
        {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                let why = match self.store.get(&key(&operation, next.generation)).await {
                    Ok(bytes) => serde_json::from_slice::<LockRecord>(&bytes)
                        .ok()
                        .and_then(|r| r.note)
                        .unwrap_or_else(|| "another process wrote its next generation".into()),
                    Err(_) => "another process wrote its next generation".into(),
                };
                return Err(self.lose(why));
            }
            Err(err) => return Err(err.into()),
        }
        let previous = key(&operation, self.record.generation);
        self.record = next;
        self.deadline = clock + self.ttl.saturating_sub(margin(self.ttl));
        if let Some(guard) = &self.guard {
            guard.renewed(self.deadline);
        }
        delete_quietly(&self.store, [previous]).await;
        Ok(())
    }

    /// Gives the lock back (best effort: if this fails, the lock expires). Writes a
    /// `released` generation first, so that a store refusing the deletes that follow
    /// leaves nothing that blocks the next operation.
    pub async fn release(self) {
        if self.lost.is_some() {
            // Not ours any more: whatever is there belongs to whoever fenced it.
            return;
        }
        let operation = &self.record.operation;
        let released = LockRecord {
            generation: self.record.generation + 1,
            state: LockState::Released,
            expires_ms: now_ms(),
            ..self.record.clone()
        };
        match self
            .store
            .put_if_absent(&key(operation, released.generation), released.body())
            .await
        {
            Ok(()) => {}
            // Fenced by another process meanwhile: it is not ours to remove.
            Err(StoreError::AlreadyExists { .. }) => return,
            Err(e) => eprintln!(
                "strata: warning: cannot mark the lock of {operation} released ({e}); it expires by itself"
            ),
        }
        let keys = (1..=released.generation).map(|g| key(operation, g));
        if !delete_quietly(&self.store, keys).await {
            eprintln!(
                "strata: warning: cannot remove the lock objects of {operation} (the storage refuses deletes?); they are marked released and block nothing"
            );
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

/// Where WAL pushes announce themselves. They run beside backups and restores (a base
/// backup even waits for them), so they take no cluster lock; only garbage collection,
/// which deletes data no record references yet, must not overlap them.
const WRITERS: &str = strata_repo::layout::WRITERS;

/// How long an archive writer's mark holds unless renewed; it is renewed every third of
/// that while the writer runs.
pub const MARK_TTL: Duration = Duration::from_secs(60);

/// A running archive writer (`strata wal-push`), announced in the repository and
/// renewed in the background until released.
#[derive(Debug)]
pub struct ArchiveMark {
    store: DynStore,
    key: String,
    stop: tokio::sync::watch::Sender<bool>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Announces an archive writer, then checks for a garbage collection: each side writes
/// its own object before looking for the other's, so at least one of them sees the other
/// and steps back. The writer steps back with [`LockError::Busy`] (PostgreSQL retries the
/// archive command); garbage collection waits for announced writers to end. Take it
/// before reading the index: a collection that started earlier has finished (or is seen).
pub async fn mark_archive_writer(store: DynStore, what: &str) -> Result<ArchiveMark, LockError> {
    mark_archive_writer_with_ttl(store, what, MARK_TTL).await
}

/// [`mark_archive_writer`] with a TTL of `ttl` (tests use short ones).
pub async fn mark_archive_writer_with_ttl(
    store: DynStore,
    what: &str,
    ttl: Duration,
) -> Result<ArchiveMark, LockError> {
    let clock = Instant::now();
    let now = now_ms();
    let mut record = LockRecord {
        operation: format!("{what}-{now}-{}", std::process::id()),
        kind: what.to_string(),
        holder: holder_name(),
        started_ms: now,
        expires_ms: now + ttl.as_millis() as u64,
        generation: 0,
        state: LockState::Held,
        note: None,
    };
    let key = format!("{WRITERS}{}.json", record.operation);
    store.put(&key, record.body()).await?;
    let mut deadline = clock + ttl.saturating_sub(margin(ttl));
    let guard = store
        .fence()
        .map(|fence| fence.guard(&format!("{what} {}", record.operation), deadline));
    let now = now_ms();
    let gc = list_locks(&store)
        .await?
        .into_iter()
        .find(|l| l.kind == "gc" && l.is_live(now));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (renew_store, renew_key) = (store.clone(), key.clone());
    // Renews the mark until released; gives up (and the fence stops visible writes) once
    // the monotonic deadline passed, without re-creating a mark gc may have removed.
    let renewer = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ttl / 3) => {}
                _ = stopped.changed() => return,
            }
            if Instant::now() >= deadline {
                if let Some(guard) = &guard {
                    guard.lose("the archive writer's mark was not renewed in time");
                }
                let _ = stopped.changed().await;
                return;
            }
            let clock = Instant::now();
            record.expires_ms = now_ms() + ttl.as_millis() as u64;
            match renew_store.put(&renew_key, record.body()).await {
                Ok(()) => {
                    deadline = clock + ttl.saturating_sub(margin(ttl));
                    if let Some(guard) = &guard {
                        guard.renewed(deadline);
                    }
                }
                Err(e) => eprintln!("strata: warning: cannot renew the archive writer's mark: {e}"),
            }
        }
    });
    let mark = ArchiveMark {
        store,
        key,
        stop,
        renewer,
    };
    if let Some(gc) = gc {
        mark.release().await;
        return Err(LockError::Busy(gc.describe()));
    }
    Ok(mark)
}

impl ArchiveMark {
    /// Stops renewing and withdraws the announcement. A store that refuses the delete
    /// gets the mark rewritten as already expired instead, which nobody counts.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.renewer.await;
        if self.store.delete(&self.key).await.is_ok() {
            return;
        }
        let expired = self.store.get(&self.key).await.ok().and_then(|bytes| {
            let mut record = serde_json::from_slice::<LockRecord>(&bytes).ok()?;
            record.expires_ms = now_ms().saturating_sub(1);
            record.state = LockState::Released;
            Some(record)
        });
        match expired {
            Some(record) if self.store.put(&self.key, record.body()).await.is_ok() => {}
            _ => eprintln!(
                "strata: warning: cannot withdraw the archive writer's mark {}; it expires by itself",
                self.key
            ),
        }
    }
}

/// The live archive writers, oldest first. Marks of ended writers are removed when the
/// store allows it (garbage collection runs with delete rights).
pub async fn live_archive_writers(store: &DynStore) -> Result<Vec<LockRecord>, LockError> {
    let now = now_ms();
    let mut out = Vec::new();
    for meta in store.list_fresh(WRITERS).await? {
        match store.get(&meta.key).await {
            Ok(bytes) => match serde_json::from_slice::<LockRecord>(&bytes) {
                Ok(record) if record.is_live(now) => out.push(record),
                _ => {
                    let _ = store.delete(&meta.key).await;
                }
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by_key(|r| r.started_ms);
    Ok(out)
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
    }

    #[tokio::test]
    async fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let (_dir, store) = store();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = LockRecord {
            operation: "op-a".into(),
            kind: "backup".into(),
            holder: format!("{}:{pid}", host_name()),
            started_ms: now_ms(),
            expires_ms: now_ms() + 60_000,
            generation: 0,
            state: LockState::Held,
            note: None,
        };
        // A lock of the layout before generations (`locks/<operation>.json`) counts too.
        store
            .put(&key("op-a", 0), serde_json::to_vec(&dead).unwrap().into())
            .await
            .unwrap();
        let elsewhere = LockRecord {
            holder: format!("another-host:{pid}"),
            ..dead.clone()
        };
        assert!(!dead.is_live(now_ms()));
        assert!(
            elsewhere.is_live(now_ms()),
            "other hosts' processes are not ours to judge"
        );
        RepoLock::acquire(store, "op-b", "backup", Duration::from_secs(5))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_renewed_lock_outlives_its_ttl_until_released() {
        let (_dir, store) = store();
        let held = RepoLock::acquire(store.clone(), "op-a", "gc", Duration::from_millis(600))
            .await
            .unwrap()
            .keep_renewed();
        tokio::time::sleep(Duration::from_millis(1800)).await;
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
        let dead = RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_millis(1))
            .await
            .unwrap();
        std::mem::forget(dead);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let lock = RepoLock::acquire(store.clone(), "op-b", "backup", Duration::from_secs(5))
            .await
            .unwrap();
        let locks = list_locks(&store).await.unwrap();
        assert_eq!(locks.len(), 1, "the stale lock is fenced");
        assert_eq!(locks[0].operation, lock.record().operation);
    }

    /// The generations of `operation`'s lock in the store.
    async fn generations(store: &DynStore, operation: &str) -> Vec<u64> {
        lock_objects(store)
            .await
            .unwrap()
            .remove(operation)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_renewal_after_a_takeover_neither_recreates_nor_overwrites_the_lock() {
        let (_dir, store) = store();
        let mut stalled =
            RepoLock::acquire(store.clone(), "op-a", "backup", Duration::from_secs(30))
                .await
                .unwrap();
        // Another host whose wall clock runs ahead finds the lock expired: the holder's
        // own (monotonic) deadline has not passed, so only the store can stop it.
        let mut expired = stalled.record().clone();
        expired.expires_ms = now_ms() - 1;
        store.put(&key("op-a", 1), expired.body()).await.unwrap();
        let taker = RepoLock::acquire(store.clone(), "op-b", "backup", Duration::from_secs(30))
            .await
            .unwrap();
        let before = generations(&store, "op-a").await;
        let err = stalled.renew().await.unwrap_err();
        assert!(matches!(err, LockError::Lost(_)), "{err}");
        assert!(
            err.to_string().contains("op-b"),
            "names who took over: {err}"
        );
        assert_eq!(generations(&store, "op-a").await, before, "nothing written");
        let held = list_locks(&store).await.unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].operation, "op-b");
        // Lost stays lost, and releasing writes nothing either.
        assert!(stalled.check().is_err());
        assert!(stalled.renew().await.is_err());
        stalled.release().await;
        assert_eq!(generations(&store, "op-a").await, before);
        assert!(
            RepoLock::acquire(store.clone(), "op-c", "gc", Duration::from_secs(5))
                .await
                .is_err_and(|e| e.to_string().contains("op-b"))
        );
        taker.release().await;
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
        let before = generations(&store, "op-a").await;
        assert!(matches!(lock.renew().await, Err(LockError::Lost(_))));
        assert_eq!(generations(&store, "op-a").await, before, "not renewed");
        let refused = store
            .put("summaries/b", bytes::Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
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
        assert!(
            !generations(&store, "op-a").await.is_empty(),
            "objects stay"
        );
        assert!(list_locks(&refusing).await.unwrap().is_empty());
        RepoLock::acquire(refusing.clone(), "op-b", "backup", Duration::from_secs(30))
            .await
            .expect("a released lock blocks nothing")
            .release()
            .await;
        let mark = mark_archive_writer(refusing.clone(), "wal-push")
            .await
            .unwrap();
        assert_eq!(live_archive_writers(&refusing).await.unwrap().len(), 1);
        mark.release().await;
        assert!(live_archive_writers(&refusing).await.unwrap().is_empty());
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
            live_archive_writers(&store).await.unwrap().len(),
            1,
            "still announced after three TTLs"
        );
        mark.release().await;
        assert!(live_archive_writers(&store).await.unwrap().is_empty());
    }
}
