//! Writers' marks: a running backup or `strata wal-push` announces itself under
//! `writers/` before it reads the index, so garbage collection, which condemns packs no
//! backup or record references yet, deletes them only once every writer that may have
//! relied on them has ended (see `strata_repo::condemned`). Nobody is refused.

use super::{chain, holder_name, now_ms, LockError, LockRecord, LockState};
use std::time::{Duration, Instant};
use strata_store::DynStore;

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

/// Announces a writer (a backup, a WAL push). Each side writes its own object before
/// looking for the other's: the writer its mark before it reads the index (and the
/// condemnations), garbage collection its condemnation before it lists the marks. So a
/// writer either sees the condemnation (and stores those packs' blobs again) or is
/// listed by it (and the packs wait for it to end).
pub async fn mark_archive_writer(store: DynStore, what: &str) -> Result<ArchiveMark, LockError> {
    mark_archive_writer_with_ttl(store, what, MARK_TTL).await
}

/// [`mark_archive_writer`] with a TTL of `ttl` (tests use short ones).
pub async fn mark_archive_writer_with_ttl(
    store: DynStore,
    what: &str,
    ttl: Duration,
) -> Result<ArchiveMark, LockError> {
    let issued = Instant::now();
    let now = now_ms();
    let mut record = LockRecord {
        // Unique even for two writers of one process in one millisecond.
        operation: format!("{what}-{now}-{}-{:08x}", std::process::id(), {
            let mut r = [0u8; 4];
            getrandom::getrandom(&mut r).expect("the OS random source is available");
            u32::from_le_bytes(r)
        }),
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
    let mut deadline = issued + chain::trust_for(ttl);
    let guard = store
        .fence()
        .map(|fence| fence.guard(&format!("{what} {}", record.operation), deadline));
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
            let issued = Instant::now();
            record.expires_ms = now_ms() + ttl.as_millis() as u64;
            match renew_store.put(&renew_key, record.body()).await {
                // Back too late: garbage collection may have judged the mark expired
                // before it landed, so it does not extend the writer's deadline.
                Ok(()) if !chain::renewal_counts(Instant::now(), deadline) => {
                    if let Some(guard) = &guard {
                        guard.lose("the archive writer's mark was renewed too late");
                    }
                    let _ = stopped.changed().await;
                    return;
                }
                Ok(()) => {
                    deadline = issued + chain::trust_for(ttl);
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
    if Instant::now() >= deadline {
        mark.release().await;
        return Err(LockError::Busy(format!(
            "the storage took longer than the mark's TTL of {} s to write it",
            ttl.as_secs_f32()
        )));
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
