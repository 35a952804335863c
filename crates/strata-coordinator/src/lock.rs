//! The cluster lock: one object per running operation under `locks/` in the repository.
//!
//! A coordinator writes `locks/<operation>.json` with a conditional put, then lists the
//! prefix again: if another live lock is there, the older one wins and the newer removes
//! its own and refuses, naming the operation that holds the cluster. Locks carry an expiry
//! that the holder pushes forward while it runs; a crashed coordinator's lock simply
//! expires, and the next operation deletes it. The repository is shared by every
//! coordinator of the cluster, so this works across hosts without any other service.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_store::DynStore;

const PREFIX: &str = "locks/";

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
}

impl LockRecord {
    /// Whether the lock still holds at `now_ms`: not expired, and its holder is not a
    /// process of this host that has died (a killed `strata backup` does not block the
    /// next one for a whole TTL).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms && !holder_is_dead(&self.holder)
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

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the cluster is busy: {0} holds it; try again when it has ended")]
    Busy(String),
    #[error("cannot read or write the cluster lock in the repository")]
    Store(#[from] strata_store::StoreError),
}

/// A held lock. Release it with [`RepoLock::release`]; dropped without release, it expires.
#[derive(Debug)]
pub struct RepoLock {
    store: DynStore,
    record: LockRecord,
    ttl: Duration,
}

fn key(operation: &str) -> String {
    format!("{PREFIX}{operation}.json")
}

/// The locks in the repository, live or not.
pub async fn list_locks(store: &DynStore) -> Result<Vec<LockRecord>, LockError> {
    let mut out = Vec::new();
    for meta in store.list_fresh(PREFIX).await? {
        match store.get(&meta.key).await {
            Ok(bytes) => {
                if let Ok(record) = serde_json::from_slice::<LockRecord>(&bytes) {
                    out.push(record);
                }
            }
            // Released between list and get.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|a, b| (a.started_ms, &a.operation).cmp(&(b.started_ms, &b.operation)));
    Ok(out)
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
        let live_other = |locks: &[LockRecord], now: u64| {
            locks
                .iter()
                .find(|l| l.operation != operation && l.is_live(now))
                .cloned()
        };
        let existing = list_locks(&store).await?;
        if let Some(holder) = live_other(&existing, now) {
            return Err(LockError::Busy(holder.describe()));
        }
        for stale in existing.iter().filter(|l| !l.is_live(now)) {
            let _ = store.delete(&key(&stale.operation)).await;
        }
        let record = LockRecord {
            operation: operation.to_string(),
            kind: kind.to_string(),
            holder: holder_name(),
            started_ms: now,
            expires_ms: now + ttl.as_millis() as u64,
        };
        let body = serde_json::to_vec_pretty(&record).expect("lock records serialize");
        store.put_if_absent(&key(operation), body.into()).await?;
        let lock = RepoLock { store, record, ttl };
        // Two coordinators may have passed the first check at once: the older lock wins.
        let now = now_ms();
        let rivals = list_locks(&lock.store).await?;
        if let Some(rival) = rivals.iter().find(|l| {
            l.operation != operation
                && l.is_live(now)
                && (l.started_ms, &l.operation) < (lock.record.started_ms, &lock.record.operation)
        }) {
            let holder = rival.describe();
            lock.release().await;
            return Err(LockError::Busy(holder));
        }
        Ok(lock)
    }

    /// The lock's record.
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Pushes the expiry forward by the TTL.
    pub async fn renew(&mut self) -> Result<(), LockError> {
        self.record.expires_ms = now_ms() + self.ttl.as_millis() as u64;
        let body = serde_json::to_vec_pretty(&self.record).expect("lock records serialize");
        self.store
            .put(&key(&self.record.operation), body.into())
            .await?;
        Ok(())
    }

    /// Removes the lock (best effort: if this fails, the lock expires).
    pub async fn release(self) {
        if let Err(e) = self.store.delete(&key(&self.record.operation)).await {
            eprintln!(
                "strata: warning: cannot remove lock of {} ({e}); it expires by itself",
                self.record.operation
            );
        }
    }
}

impl RepoLock {
    /// Keeps the lock alive, renewing it every third of its TTL, until released: for
    /// operations (garbage collection, copies) that may outlast one TTL.
    pub fn keep_renewed(mut self) -> HeldLock {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let period = self.ttl / 3;
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stopped.changed() => return self,
                }
                if let Err(e) = self.renew().await {
                    eprintln!("strata: warning: cannot renew the cluster lock: {e}");
                }
            }
        });
        HeldLock { stop, task }
    }
}

/// A lock renewed in the background; see [`RepoLock::keep_renewed`].
pub struct HeldLock {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<RepoLock>,
}

impl HeldLock {
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
        };
        store
            .put(&key("op-a"), serde_json::to_vec(&dead).unwrap().into())
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
        let held = RepoLock::acquire(store.clone(), "op-a", "gc", Duration::from_millis(300))
            .await
            .unwrap()
            .keep_renewed();
        tokio::time::sleep(Duration::from_millis(900)).await;
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
        assert_eq!(locks.len(), 1, "the stale lock is removed");
        assert_eq!(locks[0].operation, lock.record().operation);
    }
}

/// Where WAL pushes announce themselves. They run beside backups and restores (a base
/// backup even waits for them), so they take no cluster lock; only garbage collection,
/// which deletes data no record references yet, must not overlap them.
const WRITERS: &str = "writers/";

/// A running archive writer (`strata wal-push`), announced in the repository.
#[derive(Debug)]
pub struct ArchiveMark {
    store: DynStore,
    key: String,
}

/// Announces an archive writer, then checks for a garbage collection: each side writes
/// its own object before looking for the other's, so at least one of them sees the other
/// and steps back. The writer steps back with [`LockError::Busy`] (PostgreSQL retries the
/// archive command); garbage collection waits for announced writers to end.
pub async fn mark_archive_writer(store: DynStore, what: &str) -> Result<ArchiveMark, LockError> {
    let now = now_ms();
    let record = LockRecord {
        operation: format!("{what}-{now}-{}", std::process::id()),
        kind: what.to_string(),
        holder: holder_name(),
        started_ms: now,
        expires_ms: now + 10 * 60 * 1000,
    };
    let key = format!("{WRITERS}{}.json", record.operation);
    let body = serde_json::to_vec_pretty(&record).expect("lock records serialize");
    store.put(&key, body.into()).await?;
    let mark = ArchiveMark { store, key };
    let now = now_ms();
    let gc = list_locks(&mark.store)
        .await?
        .into_iter()
        .find(|l| l.kind == "gc" && l.is_live(now));
    if let Some(gc) = gc {
        mark.release().await;
        return Err(LockError::Busy(gc.describe()));
    }
    Ok(mark)
}

impl ArchiveMark {
    /// Withdraws the announcement (best effort: it expires after ten minutes anyway).
    pub async fn release(self) {
        let _ = self.store.delete(&self.key).await;
    }
}

/// The live archive writers, oldest first.
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
