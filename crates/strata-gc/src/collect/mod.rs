//! Garbage collection: delete the data no backup references any more, without stopping
//! a backup or a WAL push.
//!
//! It holds the garbage collection lock (`locks/gc/`, so two collections, index merges
//! and repairs never interleave), never the cluster lock: backups, WAL pushes, restores
//! and verifications run while it runs. It deletes in two phases (see
//! [`strata_repo::condemned`] for the protocol and why it is safe):
//!
//! 1. **Condemn.** It reads every backup's manifests and every archive record into the
//!    set of referenced blob ids (one node manifest at a time), and condemns the indexed
//!    packs none of them references (and mostly-garbage packs, whose live blobs it first
//!    copies to new packs, at most 4 GiB of them a run: the rest wait for the next): it writes the condemnation, lists the live writer marks, and
//!    arms the condemnation with them. From then on every writer stores those packs'
//!    blobs again instead of relying on them; readers still find them.
//! 2. **Sweep.** A condemnation whose writers have all ended (their summaries or archive
//!    records are visible then; a writer whose mark lapsed is fenced) is swept: the set
//!    of referenced ids is brought up to date (new backups and archive records only)
//!    and the index view too (packs written meanwhile hold blobs as well); for each
//!    referenced blob whose every copy is in a condemned pack, one of those packs (the
//!    lowest id) is kept (its condemnation simply goes); the others leave the index
//!    (index objects listing them are rewritten, at most
//!    [`strata_repo::index::MAX_PACKS_PER_OBJECT`] packs each, small ones merged), then
//!    are deleted. With no writer running, one run condemns and sweeps; otherwise the
//!    sweep happens in the first run after those writers ended.
//!
//! Each step is safe to interrupt: an unarmed condemnation is dropped by the next run,
//! an index rewrite writes the new objects before deleting the old ones, and packs are
//! deleted only once no index object lists them.
//!
//! **Memory.** Nothing it holds grows with the number of blobs: the referenced ids are
//! sorted on scratch disk ([`strata_repo::sorted_ids`], in a temporary directory of the
//! state directory, removed when the run ends) and joined with the index's copies in
//! blob id order ([`strata_repo::index::BlobIndex::copies`]), once to find each pack's
//! live and total bytes and once more, in the sweep, to rescue; index objects are read
//! and rewritten one at a time. What grows is per pack (a few dozen bytes each) and per
//! backup or archive record.
//!
//! **Writers it cannot see.** Packs that no index lists and manifests of backups without
//! a summary are deleted only once older than the grace period (`[gc] grace`, by the
//! storage's modification time): those are what a stalled writer may still be about to
//! index (its fence refuses it once its lease lapsed). Before every rewrite and delete,
//! the run checks that it still holds its lock; its deletes are fenced by it too.

mod condemn;
mod orphans;
mod sweep;
mod view;

use crate::lock::{chain, HeldLock, RepoLock};
use crate::{GcError, GcResult};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use strata_repo::{RepoError, Repository};

/// What a collection found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    /// Nothing was deleted or rewritten: the report says what a collection would do.
    pub dry_run: bool,
    /// Backups read for the blobs they reference.
    pub backups: usize,
    /// Blobs the backups and the archive records (WAL) reference: their packs stay.
    pub referenced_blobs: u64,
    /// Packs kept: those the index still lists.
    pub packs_kept: u64,
    /// Mostly-garbage packs whose live blobs were moved to new packs (then condemned).
    pub packs_repacked: u64,
    /// Packs condemned by this run (deleted by it too when no writer was running).
    #[serde(default)]
    pub packs_condemned: u64,
    /// Condemned packs that a backup or archive record referenced again: kept.
    #[serde(default)]
    pub packs_rescued: u64,
    /// Condemned packs still waiting for writers that were running when they were
    /// condemned (the next run deletes them).
    #[serde(default)]
    pub packs_waiting: u64,
    /// Packs deleted by this run (condemned earlier, or unindexed past the grace period).
    pub packs_deleted: u64,
    /// Packs no index lists, past the grace period, kept because a writer may still run
    /// (it may be about to index them, however long it has run): the first run with no
    /// writer running deletes them.
    #[serde(default)]
    pub unindexed_waiting: u64,
    /// Bytes of the deleted packs.
    pub bytes_freed: u64,
    /// Index objects rewritten into new ones (then deleted) to drop what the deleted packs held.
    pub index_objects_replaced: u64,
    /// Manifests, pins and verification records of backups that no longer exist.
    pub manifests_deleted: u64,
}

/// The grace period when the configuration names none (`[gc] grace`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// How long the garbage collection lock holds unless renewed.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// Collects garbage in `repo` (only reports with `dry_run`), with the default grace.
pub async fn collect_garbage(repo: &Arc<Repository>, dry_run: bool) -> GcResult<GcReport> {
    collect_garbage_with(repo, dry_run, DEFAULT_GRACE).await
}

/// Collects garbage in `repo`, sparing unindexed packs and summary-less manifests
/// younger than `grace`.
pub async fn collect_garbage_with(
    repo: &Arc<Repository>,
    dry_run: bool,
    grace: Duration,
) -> GcResult<GcReport> {
    let run = crate::run_name();
    let lock = take_gc_lock(repo, &run, "gc").await?;
    let result = collect(repo, dry_run, &lock, grace, &run).await;
    lock.release().await;
    let report = result?;
    if !dry_run {
        repo.reload_index().await?;
    }
    Ok(report)
}

/// Takes the garbage collection lock (`locks/gc/`) for `operation`, renewed until
/// released: held by collections, index merges and repairs, which rewrite index objects
/// or delete data, never by backups or WAL pushes.
pub async fn take_gc_lock(repo: &Repository, operation: &str, kind: &str) -> GcResult<HeldLock> {
    Ok(RepoLock::acquire_in(
        repo.store().clone(),
        chain::GC_CHAIN,
        operation,
        kind,
        LOCK_TTL,
    )
    .await?
    .keep_renewed())
}

/// One collection, its phases in order: each takes the value the one before returns, so
/// none can run early or twice (condemn, then choose what the ended writers let go, then
/// take it out of the index, then delete).
async fn collect(
    repo: &Arc<Repository>,
    dry_run: bool,
    lock: &HeldLock,
    grace: Duration,
    run: &str,
) -> GcResult<GcReport> {
    let condemned = condemn::condemn(repo, lock, dry_run, run).await?;
    let doomed = sweep::choose(repo, condemned, run).await?;
    if dry_run {
        return doomed.dry_report(repo, grace).await;
    }
    let unlisted = sweep::unlist(repo, lock, doomed).await?;
    sweep::delete(repo, lock, unlisted, grace).await
}

/// Runs blocking work (reading or writing scratch files, walking the index) without
/// stalling the other tasks of a multi-threaded runtime.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Refuses to go on when the view skipped index objects that do not decode: the packs
/// they list would look unindexed (and their blobs missing).
fn refuse_damaged_index(repo: &Repository) -> GcResult<()> {
    match repo.damaged_index().first() {
        Some(damaged) => Err(GcError::Repo(RepoError::Corrupted {
            what: damaged.key.clone(),
            why: damaged.reason.clone(),
        })),
        None => Ok(()),
    }
}

/// Whether an object listed with `modified` is younger than `grace` at the storage's time
/// `now_ms` (unknown: young). Both times are the storage's clock, never this host's.
fn is_young(modified: Option<SystemTime>, now_ms: u64, grace: Duration) -> bool {
    match modified {
        Some(t) => now_ms.saturating_sub(crate::lock::clock::ms(t)) < grace.as_millis() as u64,
        None => true,
    }
}

/// The operation names of the writers (backups, copies, WAL pushes) that may still run
/// or still have writes in flight (see [`crate::lock::running_writers`]).
async fn running_writers(repo: &Repository) -> GcResult<HashSet<String>> {
    Ok(crate::lock::running_writers(repo.store())
        .await?
        .into_iter()
        .map(|r| r.operation)
        .collect())
}

/// Whether objects no index or summary names yet may be deleted now: only when no writer
/// may still run, since any of them may be about to name them, however long it has run.
/// Call after listing those objects and before reading the index or summaries that
/// decide they are unnamed: a writer that ended in between named its objects first.
async fn no_writer_may_name(repo: &Repository) -> GcResult<bool> {
    if crate::lock::test_unsafe("unindexed-by-age") {
        // Negative control: the rule before this one (age alone).
        return Ok(true);
    }
    Ok(running_writers(repo).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::condemn::{find_garbage, RepackBudget, REPACK_BELOW};
    use super::sweep::rescue;
    use super::view::Positions;
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use strata_repo::id::PackId;
    use strata_repo::index::BlobIndex;
    use strata_repo::index::IndexedPack;
    use strata_repo::index::{IndexFile, MemoryIndex};
    use strata_repo::layout;
    use strata_repo::pack::PackEntry;
    use strata_repo::sorted_ids::Scratch;
    use strata_repo::sorted_ids::SortedIdsBuilder;
    use strata_repo::BlobId;
    use strata_store::{DynStore, LocalStore};

    /// Mostly-garbage packs (live data under half) are repacked in the view's order while
    /// their live bytes and blobs fit the budget, the first whatever its size; a pack
    /// exactly half live stays.
    #[test]
    fn mostly_garbage_packs_are_repacked_within_the_budget() {
        let scratch = Scratch::new_in(&std::env::temp_dir(), "gc-budget-test").unwrap();
        // Each pack: (live blobs, each 10 bytes), (dead blobs, each 10 bytes).
        let shapes = [(1, 9), (5, 5), (2, 8), (3, 7), (0, 4)];
        let mut referenced = BTreeSet::new();
        let mut packs = Vec::new();
        let mut next = 0;
        for (p, (live, dead)) in shapes.iter().enumerate() {
            let mut entries = Vec::new();
            for n in 0..live + dead {
                next += 1;
                let id = blob(next);
                if n < *live {
                    referenced.insert(id);
                }
                entries.push(PackEntry {
                    id,
                    offset: 0,
                    length: 10,
                    raw_length: 10,
                    compressed: false,
                });
            }
            entries.sort_by_key(|e| e.id);
            packs.push(IndexedPack {
                id: blob(2_000_000 + p as u64),
                size: 1,
                blobs: entries,
            });
        }
        let mut index = MemoryIndex::default();
        index.add_object(
            "index/0",
            &IndexFile {
                packs: packs.clone(),
            },
        );
        let mut ids = SortedIdsBuilder::with_buffer(scratch.clone(), 7, None);
        referenced.iter().for_each(|id| ids.push(*id));
        let ids = ids.finish().unwrap();
        let chosen = |budget: RepackBudget| -> (BTreeSet<PackId>, BTreeSet<PackId>) {
            let found = find_garbage(&index, &ids, &[], &scratch, budget)
                .unwrap()
                .unwrap();
            (
                found.repack.iter().map(|(_, id)| *id).collect(),
                found.condemn.iter().map(|(id, _)| *id).collect(),
            )
        };
        let [p0, p1, p2, p3, p4] = [0, 1, 2, 3, 4].map(|i| packs[i].id);
        // Positions follow the packs' order here; p1 is half live (it stays), p4 dead.
        let order: Vec<PackId> = Positions::of(&index).live().map(|(_, id, _)| id).collect();
        assert_eq!(order, vec![p0, p1, p2, p3, p4]);
        let all = RepackBudget {
            bytes: 1_000,
            blobs: 1_000,
        };
        assert_eq!(chosen(all), ([p0, p2, p3].into(), [p4].into()));
        // 35 live bytes: p0 (10) and p2 (20) fit, p3 (30 more) does not.
        let bytes = RepackBudget {
            bytes: 35,
            blobs: 1_000,
        };
        assert_eq!(chosen(bytes).0, [p0, p2].into());
        // 2 live blobs: p0 (1); p2 (3 in all) and p3 (4) do not fit.
        let blobs = RepackBudget {
            bytes: 1_000,
            blobs: 2,
        };
        assert_eq!(chosen(blobs).0, [p0].into());
        // 3: p0 and p2 (3 in all); p3 (6) does not.
        let blobs = RepackBudget {
            bytes: 1_000,
            blobs: 3,
        };
        assert_eq!(chosen(blobs).0, [p0, p2].into());
        // A budget nothing fits: the first mostly-garbage pack still goes.
        let none = RepackBudget { bytes: 0, blobs: 0 };
        assert_eq!(chosen(none).0, [p0].into());
    }

    /// What one run repacks at most, as docs/architecture.md says: 4 GiB of live data or a
    /// million live blobs (a run always moves one pack, whatever its size). A test of the
    /// cut itself would need that much live data.
    #[test]
    fn a_run_repacks_at_most_4_gib_or_a_million_blobs() {
        assert_eq!(super::condemn::MAX_REPACK_BYTES, 4 * 1024 * 1024 * 1024);
        assert_eq!(super::condemn::MAX_REPACK_BLOBS, 1_048_576);
    }

    /// An object is old enough once its age by the storage's clock reaches the grace;
    /// one whose time is unknown is young.
    #[test]
    fn an_object_is_young_until_its_age_reaches_the_grace() {
        let written = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = crate::lock::clock::ms(written);
        let grace = Duration::from_secs(60);
        assert!(is_young(Some(written), at + 59_999, grace));
        assert!(!is_young(Some(written), at + 60_000, grace));
        assert!(!is_young(Some(written), at, Duration::ZERO), "no grace");
        assert!(is_young(None, u64::MAX, grace));
        assert!(
            is_young(Some(written), at - 5_000, grace),
            "written after now: young"
        );
    }

    /// On a multi-threaded runtime, blocking work lets the runtime's other tasks run
    /// meanwhile (the lock's renewal among them): here a task that the work waits for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn blocking_work_leaves_the_other_tasks_running() {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let setter = flag.clone();
        let started = Arc::new(tokio::sync::Notify::new());
        let ready = started.clone();
        tokio::spawn(async move {
            ready.notified().await;
            setter.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // On the runtime's one worker, as a collection runs.
        let seen = tokio::spawn(async move {
            blocking(|| {
                started.notify_one();
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while std::time::Instant::now() < deadline {
                    if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                false
            })
        })
        .await
        .unwrap();
        assert!(seen, "the other task never ran");
    }

    /// A small deterministic generator (the cases must not depend on a seed source).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn blob(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    /// The joins against a plain computation over random views (blobs in several packs,
    /// packs in several objects, referenced ids some of which no pack holds): the
    /// liveness per pack, the missing ids, and after a rescue, a holder that stays for
    /// every referenced blob a pack holds, rescuing only doomed packs.
    #[test]
    fn the_joins_agree_with_sets_and_leave_every_referenced_blob_a_holder() {
        let scratch = Scratch::new_in(&std::env::temp_dir(), "gc-join-test").unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..150 {
            let (packs, blobs) = (1 + rng.below(12), 1 + rng.below(40));
            let mut index = MemoryIndex::default();
            let mut holders: BTreeMap<BlobId, BTreeSet<PackId>> = BTreeMap::new();
            let mut bytes: BTreeMap<PackId, (u64, u64)> = BTreeMap::new();
            let referenced: BTreeSet<BlobId> = (0..blobs + 5)
                .filter(|_| rng.below(3) > 0)
                .map(blob)
                .collect();
            let mut objects = Vec::new();
            for p in 0..packs {
                let id = blob(1_000_000 + case * 100 + p);
                let mut entries: Vec<PackEntry> = (0..rng.below(8))
                    .map(|_| blob(rng.below(blobs)))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|b| PackEntry {
                        id: b,
                        offset: 0,
                        length: 1 + rng.below(100) as u32,
                        raw_length: 1,
                        compressed: false,
                    })
                    .collect();
                entries.sort_by_key(|e| e.id);
                let (mut live, mut total) = (0, 0);
                for e in &entries {
                    holders.entry(e.id).or_default().insert(id);
                    total += e.length as u64;
                    if referenced.contains(&e.id) {
                        live += e.length as u64;
                    }
                }
                bytes.insert(id, (live, total));
                objects.push(IndexedPack {
                    id,
                    size: 1,
                    blobs: entries,
                });
            }
            for (n, chunk) in objects.chunks(3).enumerate() {
                let file = IndexFile {
                    packs: chunk.to_vec(),
                };
                index.add_object(&format!("index/{n}"), &file);
            }
            let mut ids = SortedIdsBuilder::with_buffer(scratch.clone(), 7, None);
            referenced.iter().for_each(|id| ids.push(*id));
            let ids = ids.finish().unwrap();

            let found = find_garbage(&index, &ids, &[], &scratch, RepackBudget::PER_RUN).unwrap();
            let missing: Vec<&BlobId> = referenced
                .iter()
                .filter(|id| !holders.contains_key(id))
                .collect();
            match found {
                Err(id) => assert!(missing.contains(&&id), "case {case}: refused for {id:?}"),
                Ok(found) => {
                    assert!(missing.is_empty(), "case {case}: missing ids not seen");
                    let condemned: BTreeSet<PackId> =
                        found.condemn.iter().map(|(id, _)| *id).collect();
                    for (id, (live, total)) in &bytes {
                        let has_live = holders
                            .iter()
                            .any(|(b, h)| h.contains(id) && referenced.contains(b));
                        assert_eq!(condemned.contains(id), !has_live, "case {case}");
                        let repacked = found.repack.iter().any(|(_, p)| p == id);
                        let mostly_garbage =
                            has_live && (*live as f64) < REPACK_BELOW * *total as f64;
                        assert_eq!(repacked, mostly_garbage, "case {case}");
                    }
                }
            }

            // The sweep: a random doomed set, then the rescue.
            let doomed: Vec<PackId> = {
                let mut d: Vec<PackId> = bytes
                    .keys()
                    .filter(|_| rng.below(2) == 0)
                    .copied()
                    .collect();
                d.sort();
                d
            };
            let positions = Positions::of(&index);
            let rescued = rescue(&index, &positions, &ids, &doomed, &scratch).unwrap();
            let staying = |p: &PackId| doomed.binary_search(p).is_err() || rescued.contains(p);
            for r in &rescued {
                assert!(doomed.contains(r), "case {case}: rescued a pack not doomed");
            }
            for (b, h) in &holders {
                if referenced.contains(b) {
                    assert!(
                        h.iter().any(staying),
                        "case {case}: a referenced blob lost every holder"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn young_unindexed_packs_and_summaryless_manifests_wait_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let options = strata_testkit::repo::fast_init();
        let repo = Repository::init(store.clone(), Some("pw"), options)
            .await
            .unwrap();
        // What a backup stalled past its lock's TTL leaves: a pack uploaded but not yet
        // indexed, and a manifest whose summary is not written yet.
        let pack = format!("data/ab/ab{}", "0".repeat(62));
        let manifest = "manifests/20261125T000000Z-0123abcd/db1";
        for key in [pack.as_str(), manifest] {
            store
                .put(key, bytes::Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let report = collect_garbage_with(&repo, false, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((report.packs_deleted, report.manifests_deleted), (0, 0));
        for key in [pack.as_str(), manifest] {
            assert!(
                store.get(key).await.is_ok(),
                "{key} deleted within the grace"
            );
        }
        // Past the grace period they are leftovers, and go.
        let report = collect_garbage_with(&repo, false, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!((report.packs_deleted, report.manifests_deleted), (1, 1));
        for key in [pack.as_str(), manifest] {
            assert!(
                store.get(key).await.unwrap_err().is_not_found(),
                "{key} kept"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_that_appears_after_the_index_was_read_is_not_a_missing_blob() {
        use strata_testkit::intercept::{Intercept, Request};
        let dir = tempfile::tempdir().unwrap();
        let local: DynStore = Arc::new(LocalStore::new(dir.path()));
        Repository::init(local.clone(), Some("pw"), strata_testkit::repo::fast_init())
            .await
            .unwrap();
        let other = Repository::open(local.clone(), Some("pw")).await.unwrap();
        // A WAL push finishes between gc's read of the index and its list of the
        // summaries and records (the moment gc lists the summaries): its index object and
        // record are both new to gc.
        let once = std::sync::atomic::AtomicBool::new(false);
        let intercept = Intercept::new(local, move |request, prefix| {
            let first = request == Request::ListFresh
                && prefix == layout::SUMMARIES
                && !once.swap(true, std::sync::atomic::Ordering::SeqCst);
            let other = other.clone();
            Box::pin(async move {
                if first {
                    let writer = strata_repo::writer::BlobWriter::start(
                        other.clone(),
                        strata_repo::writer::WriterOptions::default(),
                    );
                    let data = vec![7u8; 100_000];
                    let (o, file) = (other.clone(), "000000010000000000000001");
                    let (writer, record) = tokio::task::spawn_blocking(move || {
                        let record = strata_repo::archive::store_file(&o, &writer, file, &data);
                        (writer, record.unwrap())
                    })
                    .await
                    .unwrap();
                    writer.finish().await.unwrap();
                    other.save_archived("wal", &record).await.unwrap();
                }
            })
        });
        // Another location than `local`: the process shares one index view per location,
        // and gc's must not see what the other writer adds to it.
        let store: DynStore = Arc::new(intercept.as_another_process("as gc sees it"));
        let repo = Repository::open(store, Some("pw")).await.unwrap();
        let report = collect_garbage_with(&repo, false, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.packs_deleted, 0, "{report:?}");
        assert!(report.referenced_blobs > 0, "{report:?}");
        let record = repo
            .load_archived("wal", "000000010000000000000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            repo.read_archived(&record).await.unwrap(),
            vec![7u8; 100_000]
        );
    }
}
