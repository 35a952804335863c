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
//! Packs and other objects that nothing references until an index or manifest names
//! them are not fenced: written by a holder that lost its lock, they stay invisible and
//! garbage collection removes them.

use crate::{DynStore, ObjectMeta, Store, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
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
}

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

    /// `Err(why)` when any registered lock is lost or past its deadline.
    pub fn check(&self) -> Result<(), String> {
        let state = self.state.lock().expect("fence lock");
        let now = Instant::now();
        for guard in state.guards.values() {
            if let Some(why) = &guard.lost {
                return Err(format!("the lock of {} was lost: {why}", guard.what));
            }
            if now >= guard.deadline {
                return Err(format!(
                    "the lock of {} was not renewed in time (the process was stalled or could not reach the storage)",
                    guard.what
                ));
            }
        }
        Ok(())
    }
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
    fence: Fence,
}

impl FencedStore {
    /// Wraps `inner` with a new, empty fence that guards the writes `visible` names.
    pub fn new(inner: DynStore, visible: VisibleRule) -> FencedStore {
        FencedStore {
            inner,
            visible,
            fence: Fence::new(),
        }
    }

    fn check(&self, key: &str) -> StoreResult<()> {
        if !(self.visible)(key) {
            return Ok(());
        }
        self.fence.check().map_err(|why| StoreError::Fenced {
            key: key.to_string(),
            why,
        })
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.check(key)?;
        self.inner.put(key, data).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.check(key)?;
        self.inner.put_if_absent(key, data).await
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

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    fn fence(&self) -> Option<Fence> {
        Some(self.fence.clone())
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
    }
}
