//! Fencing: no write that makes data visible once this process may have lost its lock.
//!
//! A process that holds the cluster lock (or an archive writer's mark) registers a
//! [`FenceGuard`] with the store's [`Fence`]: a monotonic deadline (when the lock expires
//! unless renewed, minus a margin) that every successful renewal pushes forward, and a
//! "lost" flag set when a renewal finds that another process took the lock over.
//! [`FencedStore`], the innermost wrapper around a backend, checks the fence right before
//! every write of an object that makes data visible (in a repository: index objects,
//! manifests, backup summaries, archive records; the caller's [`VisibleRule`] says which
//! keys those are): once a guard's deadline has passed (the process was
//! stopped, say with SIGSTOP, or could not renew) or its lock was lost, those writes fail
//! with [`StoreError::Fenced`] and nothing becomes visible. The deadline uses
//! [`std::time::Instant`], so a wall clock that jumps neither extends nor shortens it.
//!
//! **One fence per process and location.** Every [`FencedStore`] of one location (as its
//! backend describes itself) in a process shares one fence, whatever wrapper stack or
//! configuration opened it: a lock or mark taken through one store object guards the
//! writes made through any other, so no caller can take its lock on one object and write
//! through another.
//!
//! Packs and other objects that nothing references until an index or manifest names
//! them are not fenced: written by a holder that lost its lock, they stay invisible and
//! garbage collection removes them.

use crate::{DynStore, ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

/// Whether writing a key makes data visible to readers; supplied by the owner of the key
/// layout (`strata_repo::layout::makes_visible`), as this crate knows no prefix.
pub type VisibleRule = fn(&str) -> bool;

#[derive(Debug)]
struct GuardState {
    what: String,
    deadline: Instant,
    lost: Option<String>,
}

#[derive(Debug, Default)]
struct FenceState {
    next: u64,
    guards: BTreeMap<u64, GuardState>,
    /// Visible writes that failed or were abandoned after they were issued: the storage
    /// may still apply each of them later.
    unconfirmed: u64,
}

/// The fences of this process by location, for [`Fence::of_location`]: entries whose
/// fence every holder dropped are swept when a new one is added.
static FENCES: OnceLock<Mutex<HashMap<String, Weak<Mutex<FenceState>>>>> = OnceLock::new();

/// The guards of the locks this process holds over one store; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    state: Arc<Mutex<FenceState>>,
}

impl Fence {
    /// A fence with no guard: every write passes until a lock registers one.
    pub fn new() -> Fence {
        Fence::default()
    }

    /// The fence of `location` in this process: the same one for every caller while any
    /// holds it.
    pub fn of_location(location: &str) -> Fence {
        let mut fences = FENCES
            .get_or_init(Default::default)
            .lock()
            .expect("fence registry lock");
        if let Some(state) = fences.get(location).and_then(Weak::upgrade) {
            return Fence { state };
        }
        fences.retain(|_, weak| weak.strong_count() > 0);
        let fence = Fence::new();
        fences.insert(location.to_string(), Arc::downgrade(&fence.state));
        fence
    }

    /// Whether `self` and `other` are one fence.
    pub fn same_as(&self, other: &Fence) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// Registers a lock described by `what` ("backup X"), valid until `deadline` unless
    /// renewed; removed when the guard is dropped.
    pub fn guard(&self, what: &str, deadline: Instant) -> FenceGuard {
        let mut state = self.state.lock().expect("fence lock");
        state.next += 1;
        let id = state.next;
        state.guards.insert(
            id,
            GuardState {
                what: what.to_string(),
                deadline,
                lost: None,
            },
        );
        FenceGuard {
            fence: self.clone(),
            id,
        }
    }

    /// How many visible writes of this process to this location failed or were abandoned
    /// after they were issued (so far). The storage may apply any of them later, up to
    /// the longest a write stays in flight: a writer whose count grew must not withdraw
    /// its mark as if everything it wrote were known, but let it lapse, so garbage
    /// collection waits out those landings.
    pub fn unconfirmed_writes(&self) -> u64 {
        self.state.lock().expect("fence lock").unconfirmed
    }

    fn count_unconfirmed(&self) {
        self.state.lock().expect("fence lock").unconfirmed += 1;
    }

    /// The earliest deadline of the registered locks, if any.
    fn deadline(&self) -> Option<Instant> {
        let state = self.state.lock().expect("fence lock");
        state.guards.values().map(|g| g.deadline).min()
    }

    /// `Err(why)` when any registered lock is lost or past its deadline.
    pub fn check(&self) -> Result<(), FenceBroken> {
        let state = self.state.lock().expect("fence lock");
        let now = Instant::now();
        for guard in state.guards.values() {
            if let Some(why) = &guard.lost {
                return Err(FenceBroken::Lost {
                    what: guard.what.clone(),
                    why: why.clone(),
                });
            }
            if now >= guard.deadline {
                return Err(FenceBroken::Expired {
                    what: guard.what.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why a [`Fence`] stops writes: one of its locks is no longer held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceBroken {
    /// The lock was lost (taken over, or its renewal refused).
    #[error("the lock of {what} was lost: {why}")]
    Lost {
        /// What the lock guards (`backup X`).
        what: String,
        /// How it was lost.
        why: String,
    },
    /// The lock was not renewed before its deadline.
    #[error("the lock of {what} was not renewed in time (the process was stalled or could not reach the storage)")]
    Expired {
        /// What the lock guards (`backup X`).
        what: String,
    },
}

/// One held lock's entry in a [`Fence`].
#[derive(Debug)]
pub struct FenceGuard {
    fence: Fence,
    id: u64,
}

impl FenceGuard {
    fn update(&self, change: impl FnOnce(&mut GuardState)) {
        let mut state = self.fence.state.lock().expect("fence lock");
        if let Some(guard) = state.guards.get_mut(&self.id) {
            change(guard);
        }
    }

    /// The lock was renewed: it holds until `deadline` (never moves a lost lock back).
    pub fn renewed(&self, deadline: Instant) {
        self.update(|g| g.deadline = deadline);
    }

    /// The lock was lost for `why`; visible writes fail until the guard is dropped.
    pub fn lose(&self, why: &str) {
        self.update(|g| {
            g.lost.get_or_insert_with(|| why.to_string());
        });
    }
}

impl Drop for FenceGuard {
    fn drop(&mut self) {
        if let Ok(mut state) = self.fence.state.lock() {
            state.guards.remove(&self.id);
        }
    }
}

/// A store that refuses writes of visible objects while its [`Fence`] says a lock is lost.
#[derive(Debug)]
pub struct FencedStore {
    inner: DynStore,
    visible: VisibleRule,
    /// The deletes that are fenced too (see [`FencedStore::fencing_deletes`]).
    deletes: Option<VisibleRule>,
    fence: Fence,
}

impl FencedStore {
    /// Wraps `inner` with the fence of its location in this process (see
    /// [`Fence::of_location`]), guarding the writes `visible` names.
    pub fn new(inner: DynStore, visible: VisibleRule) -> FencedStore {
        let fence = Fence::of_location(&inner.describe());
        FencedStore {
            inner,
            visible,
            deletes: None,
            fence,
        }
    }

    /// Also fences the deletes of the keys `rule` names: a process that lost its lock
    /// (garbage collection, a delete) removes nothing more, and a delete still in flight
    /// at its deadline is abandoned like a write.
    pub fn fencing_deletes(mut self, rule: VisibleRule) -> FencedStore {
        self.deletes = Some(rule);
        self
    }

    fn check(&self, key: &str) -> StoreResult<()> {
        if !(self.visible)(key) {
            return Ok(());
        }
        self.fence.check().map_err(|why| StoreError::Fenced {
            key: key.to_string(),
            why: why.to_string(),
        })
    }

    /// Runs a write (or fenced delete) of `key` that passed the fence, abandoning it when it is
    /// still in flight once a lock's deadline passes without a renewal: a write that took
    /// that long is not waited for (an object store drops a request whose connection is
    /// closed before it has the whole body).
    async fn write(
        &self,
        key: &str,
        write: impl std::future::Future<Output = StoreResult<()>>,
    ) -> StoreResult<()> {
        let done = self.abandon_at_deadline(key, write).await;
        if matches!(&done, Err(e) if !matches!(e, StoreError::AlreadyExists { .. })) {
            self.fence.count_unconfirmed();
        }
        done
    }

    async fn abandon_at_deadline(
        &self,
        key: &str,
        write: impl std::future::Future<Output = StoreResult<()>>,
    ) -> StoreResult<()> {
        tokio::pin!(write);
        loop {
            let Some(deadline) = self.fence.deadline() else {
                return write.await;
            };
            tokio::select! {
                done = &mut write => return done,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Err(why) = self.fence.check() {
                        return Err(StoreError::Fenced {
                            key: key.to_string(),
                            why: format!("{why}; the write was still in flight and is abandoned"),
                        });
                    }
                }
            }
        }
    }
}

// Every method is forwarded explicitly, the trait's defaults too: a default added to
// `Store` later fails clippy here until this wrapper says what it does with it.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for FencedStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if !(self.visible)(key) {
            return self.inner.put(key, data).await;
        }
        self.check(key)?;
        self.write(key, self.inner.put(key, data)).await
    }

    async fn put_in_class(&self, key: &str, data: Bytes, class: &str) -> StoreResult<()> {
        if !(self.visible)(key) {
            return self.inner.put_in_class(key, data, class).await;
        }
        self.check(key)?;
        self.write(key, self.inner.put_in_class(key, data, class))
            .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if !(self.visible)(key) {
            return self.inner.put_if_absent(key, data).await;
        }
        self.check(key)?;
        self.write(key, self.inner.put_if_absent(key, data)).await
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
        if !self.deletes.is_some_and(|fenced| fenced(key)) {
            return self.inner.delete(key).await;
        }
        self.fence.check().map_err(|why| StoreError::Fenced {
            key: key.to_string(),
            why: why.to_string(),
        })?;
        self.write(key, self.inner.delete(key)).await
    }

    fn fence(&self) -> Option<Fence> {
        Some(self.fence.clone())
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
    use std::time::Duration;

    #[tokio::test]
    async fn visible_writes_stop_once_a_guard_is_lost_or_late() {
        let dir = tempfile::tempdir().unwrap();
        // The repository's rule, written out here: this crate knows no prefix.
        let visible: VisibleRule = |key| {
            ["index/", "manifests/", "summaries/", "archive/"]
                .iter()
                .any(|p| key.starts_with(p))
        };
        let store = FencedStore::new(Arc::new(crate::LocalStore::new(dir.path())), visible);
        let fence = store.fence().unwrap();
        let guard = fence.guard("backup b", Instant::now() + Duration::from_secs(60));
        store
            .put("index/a", Bytes::from_static(b"1"))
            .await
            .unwrap();
        guard.renewed(Instant::now() - Duration::from_millis(1));
        let err = store
            .put("manifests/b/n", Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        // Packs and lock records are not fenced: nothing reads them through an index.
        store
            .put("data/ab/x", Bytes::from_static(b"1"))
            .await
            .unwrap();
        guard.renewed(Instant::now() + Duration::from_secs(60));
        guard.lose("taken over");
        assert!(store
            .put_if_absent("summaries/b", Bytes::from_static(b"1"))
            .await
            .is_err());
        drop(guard);
        store
            .put("summaries/c", Bytes::from_static(b"1"))
            .await
            .unwrap();
        assert!(store.get("manifests/b/n").await.unwrap_err().is_not_found());
        // Writes with a storage class are fenced alike.
        let guard = fence.guard("backup d", Instant::now() + Duration::from_secs(60));
        guard.lose("taken over");
        let err = store
            .put_in_class("summaries/d", Bytes::from_static(b"1"), "STANDARD_IA")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        store
            .put_in_class("data/cd/y", Bytes::from_static(b"1"), "STANDARD_IA")
            .await
            .unwrap();
    }

    /// Locations registered in this process whose names start with `prefix`.
    fn registered(prefix: &str) -> Vec<String> {
        let fences = FENCES.get_or_init(Default::default).lock().unwrap();
        let mut names: Vec<String> = fences
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_location_keeps_its_fence_while_held_and_leaves_the_registry_when_dropped() {
        let live = Fence::of_location("registry-test:live");
        drop(Fence::of_location("registry-test:dropped"));
        // Adding a location sweeps the dropped one, never a live one.
        let other = Fence::of_location("registry-test:other");
        assert!(Fence::of_location("registry-test:live").same_as(&live));
        assert!(!other.same_as(&live));
        assert_eq!(
            registered("registry-test:"),
            ["registry-test:live", "registry-test:other"]
        );
    }

    #[test]
    fn each_guard_is_an_entry_of_its_own() {
        let fence = Fence::new();
        let live = fence.guard("backup a", Instant::now() + Duration::from_secs(60));
        let late = fence.guard("backup b", Instant::now());
        assert!(fence.check().is_err());
        // Dropping one guard removes its entry only.
        drop(live);
        assert_eq!(
            fence.check(),
            Err(FenceBroken::Expired {
                what: "backup b".into()
            })
        );
        drop(late);
        assert_eq!(fence.check(), Ok(()));
    }

    /// A visible write that failed may still be applied by the storage: counted, one by
    /// one; a write the storage refused as already there is known, not counted.
    #[tokio::test]
    async fn visible_writes_that_failed_are_counted_as_unconfirmed() {
        let dir = tempfile::tempdir().unwrap();
        let visible: VisibleRule = |key| key.starts_with("index/");
        let failing = crate::fault::FaultyStore::new(
            Arc::new(crate::LocalStore::new(dir.path())),
            crate::fault::FaultConfig {
                fail_ratio: 1.0,
                ..Default::default()
            },
        );
        let store = FencedStore::new(Arc::new(failing), visible);
        let fence = store.fence().unwrap();
        assert_eq!(fence.unconfirmed_writes(), 0);
        for (key, counted) in [("index/a", 1), ("data/a", 1), ("index/b", 2)] {
            assert!(store.put(key, Bytes::from_static(b"1")).await.is_err());
            assert_eq!(fence.unconfirmed_writes(), counted, "after {key}");
        }

        let other = tempfile::tempdir().unwrap();
        let store = FencedStore::new(Arc::new(crate::LocalStore::new(other.path())), visible);
        for _ in 0..2 {
            let _ = store
                .put_if_absent("index/a", Bytes::from_static(b"1"))
                .await;
        }
        assert_eq!(store.fence().unwrap().unconfirmed_writes(), 0);
    }

    /// A visible write still in flight when a lock's deadline passes is abandoned (and
    /// counted as unconfirmed), not waited for.
    #[tokio::test]
    async fn a_visible_write_in_flight_at_the_deadline_is_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let slow = crate::fault::FaultyStore::new(
            Arc::new(crate::LocalStore::new(dir.path())),
            crate::fault::FaultConfig {
                delay: Duration::from_secs(60),
                ..Default::default()
            },
        );
        let store = FencedStore::new(Arc::new(slow), |key| key.starts_with("index/"));
        let fence = store.fence().unwrap();
        let _guard = fence.guard("backup b", Instant::now() + Duration::from_millis(200));
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            store.put("index/a", Bytes::from_static(b"1")),
        )
        .await
        .expect("abandoned at the deadline, not waited for")
        .unwrap_err();
        assert!(err.to_string().contains("still in flight"), "{err}");
        assert_eq!(fence.unconfirmed_writes(), 1);
    }

    /// Whether a writer's writes end with it is the backend's to say (a local disk: yes;
    /// `/proc`, which is no local disk: no).
    #[test]
    fn it_says_of_its_writes_what_its_backend_says() {
        let disk = tempfile::tempdir().unwrap();
        for root in [disk.path(), std::path::Path::new("/proc/self")] {
            let backend = crate::LocalStore::new(root);
            let says = backend.writes_end_with_their_writer();
            let fenced = FencedStore::new(Arc::new(backend), |_| true);
            assert_eq!(fenced.writes_end_with_their_writer(), says, "{root:?}");
        }
        assert!(crate::LocalStore::new(disk.path()).writes_end_with_their_writer());
        assert!(!crate::LocalStore::new("/proc/self").writes_end_with_their_writer());
    }

    #[tokio::test]
    async fn two_stores_of_one_location_share_their_fence() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let visible: VisibleRule = |key| key.starts_with("index/");
        let open = |path: &std::path::Path| {
            FencedStore::new(Arc::new(crate::LocalStore::new(path)), visible)
        };
        let (marked, writer, elsewhere) = (open(dir.path()), open(dir.path()), open(other.path()));
        assert!(marked.fence().unwrap().same_as(&writer.fence().unwrap()));
        assert!(!marked.fence().unwrap().same_as(&elsewhere.fence().unwrap()));
        let guard = marked.fence().unwrap().guard("wal-push x", Instant::now());
        let err = writer
            .put("index/a", Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        elsewhere
            .put("index/a", Bytes::from_static(b"1"))
            .await
            .unwrap();
        drop(guard);
        writer
            .put("index/a", Bytes::from_static(b"1"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn fenced_deletes_stop_once_a_guard_is_late() {
        let dir = tempfile::tempdir().unwrap();
        let visible: VisibleRule = |key| key.starts_with("index/");
        let store = FencedStore::new(Arc::new(crate::LocalStore::new(dir.path())), visible)
            .fencing_deletes(|key| !key.starts_with("locks/"));
        for key in ["data/p", "locks/l"] {
            store.put(key, Bytes::from_static(b"1")).await.unwrap();
        }
        let guard = store.fence().unwrap().guard("gc g", Instant::now());
        let err = store.delete("data/p").await.unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        store.delete("locks/l").await.unwrap();
        assert!(store.get("data/p").await.is_ok(), "nothing deleted");
        drop(guard);
        store.delete("data/p").await.unwrap();
    }

    /// Listings read: a lost lock stops none of them.
    #[tokio::test]
    async fn listings_are_not_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FencedStore::new(Arc::new(crate::LocalStore::new(dir.path())), |_| true)
            .fencing_deletes(|_| true);
        for key in ["index/a", "index/b"] {
            store.put(key, Bytes::from_static(b"1")).await.unwrap();
        }
        let guard = store.fence().unwrap().guard("gc g", Instant::now());
        guard.lose("taken over");
        assert_eq!(store.list("index/").await.unwrap().len(), 2);
        assert_eq!(store.list_fresh("index/").await.unwrap().len(), 2);
        assert_eq!(
            store.list_after("index/", "index/a").await.unwrap().len(),
            1
        );
        assert!(store.delete("index/a").await.is_err());
    }
}
