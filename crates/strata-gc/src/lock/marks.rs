//! Writers' marks: a running backup, copy or `strata wal-push` announces itself under
//! `writers/` before it reads the index or writes anything, so garbage collection, which
//! condemns packs no backup or record references yet, deletes them only once every
//! writer that may have relied on them has ended (see `strata_repo::condemned`), and
//! deletes nothing that no index or summary names yet while any writer may still run.
//! Nobody is refused.
//!
//! **When a writer has ended** ([`running_writers`]): its mark is gone (withdrawn after
//! everything it wrote was acknowledged) or says `released`; or its lease lapsed by the
//! storage's clock ([`super::clock`]: its TTL after the storage last wrote the mark) and,
//! after that, the longest time a write can stay in flight
//! ([`chain::max_flight`]) passed too, so nothing it issued before its fence closed can
//! still land. How long a writer ran, which host's clock is ahead, and whether `/proc`
//! shows its process play no part. A writer some of whose visible writes failed or were
//! abandoned (the storage may apply them later) does not withdraw its mark: it lets it
//! lapse, so that wait covers those late landings too.

use super::{chain, clock, holder_name, liveness, now_ms, LockError, LockRecord, LockState};
use std::time::{Duration, Instant};
use strata_store::DynStore;

/// Where WAL pushes announce themselves. They run beside backups and restores (a base
/// backup even waits for them), so they take no cluster lock; only garbage collection,
/// which deletes data no record references yet, must not overlap them.
const WRITERS: &str = strata_repo::layout::WRITERS;

/// How long a writer's mark holds unless renewed, when the caller has no configured lease
/// (`[server] lease_ttl_secs` otherwise); it is renewed every third of that while the
/// writer runs. Also the TTL assumed for marks of older versions, which carry none.
pub const MARK_TTL: Duration = Duration::from_secs(60);

/// A running archive writer (`strata wal-push`), announced in the repository and
/// renewed in the background until released.
#[derive(Debug)]
pub struct ArchiveMark {
    store: DynStore,
    key: String,
    stop: tokio::sync::watch::Sender<bool>,
    renewer: tokio::task::JoinHandle<()>,
    /// The fence's count of unconfirmed visible writes when the mark was made.
    unconfirmed_before: Option<u64>,
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
    mark_writer(store, what, None, ttl).await
}

/// The writer's mark of backup `backup` (kind `backup`), naming it: its engines' parts
/// that no summary records yet wait while the mark has not ended
/// ([`backup_may_still_write`]).
pub async fn mark_backup_writer(
    store: DynStore,
    backup: &str,
    ttl: Duration,
) -> Result<ArchiveMark, LockError> {
    mark_writer(store, "backup", Some(backup), ttl).await
}

/// Whether backup `backup` may still be running or still have a write in flight (its
/// summary may still land): a mark naming it, or a backup's mark of an older version
/// that names none, has not ended (see [`has_ended`]).
pub async fn backup_may_still_write(store: &DynStore, backup: &str) -> Result<bool, LockError> {
    Ok(running_writers(store).await?.iter().any(|mark| {
        mark.kind == "backup" && mark.backup.as_deref().is_none_or(|named| named == backup)
    }))
}

async fn mark_writer(
    store: DynStore,
    what: &str,
    backup: Option<&str>,
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
        ttl_ms: Some(ttl.as_millis() as u64),
        process: Some(liveness::this_process()),
        backup: backup.map(str::to_string),
    };
    let key = format!("{WRITERS}{}.json", record.operation);
    let unconfirmed_before = store.fence().map(|f| f.unconfirmed_writes());
    store.put(&key, record.body()).await?;
    let mut deadline = issued + chain::trust_for(ttl);
    let guard = store
        .fence()
        .map(|fence| fence.guard(&format!("{what} {}", record.operation), deadline));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (renew_store, renew_key) = (store.clone(), key.clone());
    let kind = what.to_string();
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
                    guard.lose(&format!("the {kind} writer's mark was not renewed in time"));
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
                        guard.lose(&format!(
                            "the {kind} writer's mark was renewed too late (the storage took longer than {} s to answer)",
                            chain::trust_for(ttl).as_secs()
                        ));
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
                Err(e) => eprintln!("strata: warning: cannot renew the {kind} writer's mark: {e}"),
            }
        }
    });
    let mark = ArchiveMark {
        store,
        key,
        stop,
        renewer,
        unconfirmed_before,
    };
    if Instant::now() >= deadline {
        mark.release().await;
        return Err(LockError::TooSlow {
            what: format!("{what} writer's mark"),
            took_secs: chain::trust_for(ttl).as_secs_f32(),
            ttl_secs: ttl.as_secs_f32(),
        });
    }
    Ok(mark)
}

impl ArchiveMark {
    /// Stops renewing and withdraws the announcement. A store that refuses the delete
    /// gets the mark rewritten as released instead, which nobody counts. A writer some of
    /// whose visible writes failed after they were issued (the storage may still apply
    /// them) leaves the mark to lapse instead, so garbage collection waits for them.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.renewer.await;
        let unconfirmed = self.store.fence().map(|f| f.unconfirmed_writes());
        if unconfirmed > self.unconfirmed_before && !super::test_unsafe("no-landing-wait") {
            eprintln!(
                "strata: note: a write of this process may still land in the storage, so its mark {} is left to lapse: garbage collection waits for it",
                self.key
            );
            return;
        }
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

/// The writers that may still run or still have writes in flight, oldest first (see the
/// module's doc). Marks of ended writers are removed when the store allows it (garbage
/// collection runs with delete rights). Reads the storage's clock once when there is a
/// mark.
pub async fn running_writers(store: &DynStore) -> Result<Vec<LockRecord>, LockError> {
    let marks = store.list_fresh(WRITERS).await?;
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let now = if super::test_unsafe("wall-clock") {
        now_ms()
    } else {
        clock::storage_now_ms(store).await?
    };
    let mut out = Vec::new();
    for meta in marks {
        match store.get(&meta.key).await {
            Ok(bytes) => match serde_json::from_slice::<LockRecord>(&bytes) {
                Ok(record) if !has_ended(&record, meta.modified.map(clock::ms), now) => {
                    out.push(record)
                }
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

/// Whether the writer of the mark `record`, last written by the storage at `written_ms`
/// (its clock), has ended by storage time `now_ms`: released, or lapsed and past every
/// landing of a write it issued before its fence closed.
pub fn has_ended(record: &LockRecord, written_ms: Option<u64>, now_ms: u64) -> bool {
    if record.state != LockState::Held {
        return true;
    }
    if super::test_unsafe("wall-clock") {
        // Negative control: the writer's own wall clock, as before.
        return record.expires_ms <= now_ms;
    }
    let ttl = record.ttl_ms.unwrap_or(MARK_TTL.as_millis() as u64);
    let lapses = match written_ms {
        Some(written) => written + ttl + 1_000,
        // A listing that does not say when (a remembered one): the writer's own clock,
        // plus the landing window, is all there is.
        None => record.expires_ms,
    };
    let flight = if super::test_unsafe("no-landing-wait") {
        0
    } else {
        chain::max_flight().as_millis() as u64
    };
    now_ms >= lapses + flight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(ttl_ms: Option<u64>, expires_ms: u64) -> LockRecord {
        LockRecord {
            operation: "backup-1".into(),
            kind: "backup".into(),
            holder: "h:1".into(),
            started_ms: 0,
            expires_ms,
            generation: 0,
            state: LockState::Held,
            note: None,
            ttl_ms,
            process: None,
            backup: None,
        }
    }

    #[test]
    fn a_writer_ends_only_after_its_lease_by_the_storage_clock_and_every_landing() {
        let flight = chain::max_flight().as_millis() as u64;
        let written = 1_000_000;
        // The writer's own clock said it expired long ago: not consulted.
        let m = mark(Some(90_000), 0);
        assert!(!has_ended(&m, Some(written), written + 90_000));
        assert!(!has_ended(&m, Some(written), written + 91_000 + flight - 1));
        assert!(has_ended(&m, Some(written), written + 91_000 + flight));
        // Older versions' marks carry no TTL: the default one.
        let old = mark(None, 0);
        let default = MARK_TTL.as_millis() as u64;
        assert!(!has_ended(&old, Some(written), written + default + flight));
        assert!(has_ended(
            &old,
            Some(written),
            written + default + 1_000 + flight
        ));
        // Released: ended at once.
        let released = LockRecord {
            state: LockState::Released,
            ..mark(Some(90_000), u64::MAX)
        };
        assert!(has_ended(&released, Some(written), written));
    }

    fn store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = std::sync::Arc::new(strata_store::LocalStore::new(dir.path()));
        (dir, store)
    }

    /// The records of the marks in `store`.
    async fn marks_in(store: &DynStore) -> Vec<LockRecord> {
        let mut out = Vec::new();
        for meta in store.list(WRITERS).await.unwrap() {
            let bytes = store.get(&meta.key).await.unwrap();
            out.push(serde_json::from_slice(&bytes).unwrap());
        }
        out
    }

    /// A backup's mark keeps its engines' parts of that backup (and only that one) while
    /// it runs; a WAL push's mark keeps none; a backup's mark of an older version, which
    /// names no backup, keeps every backup's.
    #[tokio::test]
    async fn a_backup_may_still_write_while_its_own_mark_runs() {
        let (_dir, store) = store();
        let ttl = Duration::from_secs(30);
        assert!(!backup_may_still_write(&store, "b1").await.unwrap());
        let push = mark_archive_writer_with_ttl(store.clone(), "wal-push", ttl)
            .await
            .unwrap();
        assert!(!backup_may_still_write(&store, "b1").await.unwrap());
        let backup = mark_backup_writer(store.clone(), "b1", ttl).await.unwrap();
        assert!(backup_may_still_write(&store, "b1").await.unwrap());
        assert!(!backup_may_still_write(&store, "b2").await.unwrap());
        backup.release().await;
        assert!(!backup_may_still_write(&store, "b1").await.unwrap());
        let older = mark_writer(store.clone(), "backup", None, ttl)
            .await
            .unwrap();
        assert!(backup_may_still_write(&store, "b2").await.unwrap());
        older.release().await;
        push.release().await;
    }

    /// A mark says when it ends by its writer's clock (for older readers) and is
    /// rewritten with a later expiry at every renewal while its writer runs.
    #[tokio::test]
    async fn a_mark_carries_its_writer_s_expiry_and_is_rewritten_while_it_runs() {
        let (_dir, store) = store();
        let before = now_ms();
        let ttl = Duration::from_millis(4_500);
        let mark = mark_archive_writer_with_ttl(store.clone(), "wal-push", ttl)
            .await
            .unwrap();
        let first = marks_in(&store).await.remove(0).expires_ms;
        assert!((before + 4_500..=now_ms() + 4_500).contains(&first));
        // Renewed every 1.5 s: once by 2.25 s, again by 3.75 s.
        tokio::time::sleep(Duration::from_millis(2_250)).await;
        let second = marks_in(&store).await.remove(0).expires_ms;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let third = marks_in(&store).await.remove(0).expires_ms;
        assert!(first < second && second < third, "{first} {second} {third}");
        assert!(
            third <= now_ms() + 4_500,
            "its TTL from the renewal: {third}"
        );
        mark.release().await;
    }
}
