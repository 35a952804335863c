//! Garbage collection against a real repository on a local directory: what a run deletes,
//! keeps, repacks, waits for and rescues, and what its report says. The models of
//! `src/model.rs` check the protocol's interleavings; these check the code's choices and
//! counts, one situation each.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use strata_gc::lock::mark_backup_writer;
use strata_gc::{collect_garbage_with, GcReport};
use strata_repo::id::PackId;
use strata_repo::layout;
use strata_repo::manifest::{Entry, EntryKind, NodeManifest};
use strata_repo::summary::{new_backup_name, BackupStatus, BackupSummary, NodeSummary};
use strata_repo::writer::{BlobWriter, WriterOptions};
use strata_repo::{BlobId, Repository};

/// No grace: summary-less manifests and unindexed packs of any age may go.
const NOW: Duration = Duration::ZERO;

async fn repository() -> (tempfile::TempDir, Arc<Repository>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = strata_testkit::repo::scratch_repo(dir.path()).await;
    (dir, repo)
}

/// Content `n` of a test: 4 KiB that compress poorly, different for each `n`.
fn content(n: u64) -> Vec<u8> {
    strata_testkit::data::pseudo_random(4096, n)
}

/// Writes `blobs` through one writer (so into one pack), indexed.
async fn store_blobs(repo: &Arc<Repository>, blobs: &[Vec<u8>]) -> Vec<BlobId> {
    let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
    let ids: Vec<BlobId> = blobs.iter().map(|b| repo.keys().blob_id(b)).collect();
    for (id, data) in ids.iter().zip(blobs) {
        writer.submit(*id, Bytes::from(data.clone())).unwrap();
    }
    writer.finish().await.unwrap();
    repo.reload_index().await.unwrap();
    ids
}

/// A complete backup of one node whose one file is made of `chunks` (already stored).
async fn backup_of(repo: &Arc<Repository>, chunks: &[BlobId]) -> String {
    let name = new_backup_name();
    let manifest = NodeManifest {
        node: "n1".into(),
        roots: vec!["/data".into()],
        entries: vec![Entry {
            path: b"file".to_vec(),
            kind: EntryKind::File {
                size: 4096 * chunks.len() as u64,
                chunks: chunks.to_vec(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: Vec::new(),
        }],
    };
    repo.save_manifest(&name, &manifest).await.unwrap();
    let summary = BackupSummary {
        name: name.clone(),
        started: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        host_started: None,
        duration_ms: 1,
        status: BackupStatus::Complete,
        strata_version: "test".into(),
        nodes: vec![NodeSummary {
            name: "n1".into(),
            status: BackupStatus::Complete,
            roots: vec!["/data".into()],
            files: 1,
            has_manifest: true,
            ..NodeSummary::default()
        }],
        requests: None,
        components: Vec::new(),
        still_paused: Vec::new(),
    };
    repo.save_summary(&summary).await.unwrap();
    name
}

/// Deletes backup `name` as `strata delete` leaves it for garbage collection: its
/// summary goes, its manifests stay.
async fn forget(repo: &Repository, name: &str) {
    repo.store()
        .delete(&layout::summary_key(name))
        .await
        .unwrap();
}

/// The packs stored under `data/`.
async fn stored_packs(repo: &Repository) -> usize {
    repo.store().list(layout::DATA).await.unwrap().len()
}

/// Whether blob `id` reads back as `data` (through a fresh view of the index).
async fn reads_back(repo: &Repository, id: &BlobId, data: &[u8]) -> bool {
    repo.reload_index().await.unwrap();
    repo.read_blob(id).await.is_ok_and(|got| got == data)
}

/// Every object's key but the locks' (which a dry run takes too).
async fn data_objects(repo: &Repository) -> Vec<String> {
    let mut keys: Vec<String> = repo
        .store()
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| !k.starts_with(layout::LOCKS))
        .collect();
    keys.sort();
    keys
}

/// A repository of two backups of one blob each (`content(1)` kept, `content(2)` gone),
/// the second deleted: the set-up most tests start from.
async fn a_kept_and_a_deleted_backup(
) -> (tempfile::TempDir, Arc<Repository>, Vec<BlobId>, Vec<BlobId>) {
    let (dir, repo) = repository().await;
    let kept = store_blobs(&repo, &[content(1)]).await;
    backup_of(&repo, &kept).await;
    let gone = store_blobs(&repo, &[content(2)]).await;
    let deleted = backup_of(&repo, &gone).await;
    forget(&repo, &deleted).await;
    (dir, repo, kept, gone)
}

async fn collect(repo: &Arc<Repository>, dry_run: bool) -> GcReport {
    collect_garbage_with(repo, dry_run, NOW).await.unwrap()
}

/// A deleted backup's data pack and its manifest's pack go, with its manifest; the other
/// backup's stay and read back; a second run finds nothing more.
#[tokio::test]
async fn the_packs_of_a_deleted_backup_go_and_the_others_stay() {
    let (_dir, repo) = repository().await;
    let kept_data = [content(1)];
    let kept = store_blobs(&repo, &kept_data).await;
    backup_of(&repo, &kept).await;
    let gone = store_blobs(&repo, &[content(2), content(3)]).await;
    let deleted = backup_of(&repo, &gone).await;
    let packs_before = stored_packs(&repo).await;
    forget(&repo, &deleted).await;

    let report = collect(&repo, false).await;
    assert!(!report.dry_run);
    // The caller's view of the index is the one after the collection.
    assert!(repo.index().get(&gone[0]).is_none());
    assert!(repo.index().get(&kept[0]).is_some());
    assert_eq!(report.backups, 1, "{report:?}");
    assert_eq!(report.manifests_deleted, 1, "{report:?}");
    // Its data pack and the pack of its manifest's chunks.
    assert_eq!(report.packs_condemned, 2, "{report:?}");
    assert_eq!(report.packs_deleted, 2, "{report:?}");
    assert_eq!(report.packs_kept, 2, "{report:?}");
    assert_eq!(
        (report.packs_waiting, report.packs_rescued),
        (0, 0),
        "{report:?}"
    );
    assert!(report.bytes_freed > 2 * 4096, "{report:?}");
    // Every object listing a doomed pack is rewritten, and the small ones (four, of one
    // pack each) are merged: one object stays, listing the two kept packs.
    assert_eq!(report.index_objects_replaced, 4, "{report:?}");
    let objects = repo.store().list(layout::INDEX).await.unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    // The kept backup's file and its manifest's one chunk.
    assert_eq!(report.referenced_blobs, 2, "{report:?}");
    assert_eq!(stored_packs(&repo).await, packs_before - 2);
    assert!(reads_back(&repo, &kept[0], &kept_data[0]).await);
    assert!(!reads_back(&repo, &gone[0], &content(2)).await);
    assert!(repo
        .store()
        .list(&layout::manifest_key(&deleted, ""))
        .await
        .unwrap()
        .is_empty());

    let again = collect(&repo, false).await;
    assert_eq!(
        (
            again.packs_deleted,
            again.manifests_deleted,
            again.bytes_freed
        ),
        (0, 0, 0),
        "{again:?}"
    );
}

/// A dry run deletes and rewrites nothing, and says what a run would do.
#[tokio::test]
async fn a_dry_run_deletes_nothing_and_says_what_a_run_would() {
    let (_dir, repo, kept, gone) = a_kept_and_a_deleted_backup().await;
    let objects_before = data_objects(&repo).await;

    let dry = collect(&repo, true).await;
    assert!(dry.dry_run);
    assert!(reads_back(&repo, &kept[0], &content(1)).await);
    assert_eq!(data_objects(&repo).await, objects_before);
    assert!(
        reads_back(&repo, &gone[0], &content(2)).await,
        "nothing deleted"
    );
    let run = collect(&repo, false).await;
    assert_eq!(dry.packs_condemned, run.packs_condemned, "{dry:?} {run:?}");
    assert_eq!(
        (dry.packs_deleted, dry.bytes_freed, dry.packs_kept),
        (run.packs_deleted, run.bytes_freed, run.packs_kept),
        "{dry:?} {run:?}"
    );
    assert_eq!(run.packs_deleted, 2, "{run:?}");
    assert_eq!(
        dry.manifests_deleted, run.manifests_deleted,
        "{dry:?} {run:?}"
    );
    assert_eq!(dry.backups, run.backups);
}

/// A pack whose blobs are mostly garbage has its live blobs copied to a new pack, then
/// goes; they read back from the copy.
#[tokio::test]
async fn a_mostly_garbage_pack_is_repacked() {
    let (_dir, repo) = repository().await;
    let data: Vec<Vec<u8>> = (10..30).map(content).collect();
    let ids = store_blobs(&repo, &data).await;
    let whole = backup_of(&repo, &ids).await;
    // A later backup needs one of the twenty blobs (found in the index, not stored again).
    backup_of(&repo, &ids[..1]).await;
    forget(&repo, &whole).await;

    let report = collect(&repo, false).await;
    assert_eq!(report.packs_repacked, 1, "{report:?}");
    // The repacked pack, and the pack of the deleted backup's manifest.
    assert_eq!(report.packs_condemned, 2, "{report:?}");
    assert!(report.packs_deleted >= 1, "{report:?}");
    assert!(reads_back(&repo, &ids[0], &data[0]).await);
    assert!(!reads_back(&repo, &ids[1], &data[1]).await);
}

/// While a writer runs, a condemned pack waits (the writer may rely on it); once the
/// writer has ended, the next run deletes it.
#[tokio::test]
async fn a_condemned_pack_waits_for_the_writers_running_when_it_was_condemned() {
    let (_dir, repo, kept, gone) = a_kept_and_a_deleted_backup().await;
    let writer = mark_backup_writer(repo.store().clone(), "running", Duration::from_secs(30))
        .await
        .unwrap();

    let first = collect(&repo, false).await;
    assert_eq!(first.packs_condemned, 2, "{first:?}");
    assert_eq!(first.packs_waiting, 2, "{first:?}");
    assert_eq!(first.packs_deleted, 0, "{first:?}");
    assert!(
        reads_back(&repo, &gone[0], &content(2)).await,
        "still there"
    );

    writer.release().await;
    let second = collect(&repo, false).await;
    assert_eq!(second.packs_deleted, 2, "{second:?}");
    assert_eq!(second.packs_waiting, 0, "{second:?}");
    assert!(!reads_back(&repo, &gone[0], &content(2)).await);
    assert!(reads_back(&repo, &kept[0], &content(1)).await);
}

/// A condemned pack that a backup finished meanwhile references again is kept: its
/// condemnation goes, the blob reads back.
#[tokio::test]
async fn a_condemned_pack_a_new_backup_references_is_rescued() {
    let (_dir, repo) = repository().await;
    let gone = store_blobs(&repo, &[content(2)]).await;
    let deleted = backup_of(&repo, &gone).await;
    forget(&repo, &deleted).await;
    let writer = mark_backup_writer(repo.store().clone(), "running", Duration::from_secs(30))
        .await
        .unwrap();
    let first = collect(&repo, false).await;
    assert!(first.packs_waiting >= 1, "{first:?}");
    // The running backup (which found the blob indexed before the condemnation) ends
    // and references it.
    backup_of(&repo, &gone).await;
    writer.release().await;

    let second = collect(&repo, false).await;
    assert_eq!(second.packs_rescued, 1, "{second:?}");
    assert!(reads_back(&repo, &gone[0], &content(2)).await);
}

/// A pack no index lists goes once it is older than the grace period, not before.
#[tokio::test]
async fn an_unindexed_pack_goes_only_after_the_grace_period() {
    let (_dir, repo) = repository().await;
    let kept = store_blobs(&repo, &[content(1)]).await;
    backup_of(&repo, &kept).await;
    let stray = layout::pack_key(&PackId::from([7u8; 32]));
    repo.store()
        .put(&stray, Bytes::from_static(b"not indexed"))
        .await
        .unwrap();

    let within = collect_garbage_with(&repo, false, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(within.packs_deleted, 0, "{within:?}");
    assert!(repo.store().head(&stray).await.is_ok());

    let past = collect(&repo, false).await;
    assert_eq!(past.packs_deleted, 1, "{past:?}");
    assert_eq!(past.bytes_freed, b"not indexed".len() as u64, "{past:?}");
    assert!(repo.store().head(&stray).await.is_err());
    assert!(reads_back(&repo, &kept[0], &content(1)).await);
}

/// Past the grace period but with a writer running, an unindexed pack waits (the writer
/// may be about to index it), and says so.
#[tokio::test]
async fn an_unindexed_pack_waits_for_a_running_writer() {
    let (_dir, repo) = repository().await;
    let stray = layout::pack_key(&PackId::from([9u8; 32]));
    repo.store()
        .put(&stray, Bytes::from_static(b"not indexed"))
        .await
        .unwrap();
    let writer = mark_backup_writer(repo.store().clone(), "running", Duration::from_secs(30))
        .await
        .unwrap();
    let report = collect(&repo, false).await;
    assert_eq!(report.unindexed_waiting, 1, "{report:?}");
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    writer.release().await;
    let report = collect(&repo, false).await;
    assert_eq!(report.packs_deleted, 1, "{report:?}");
}

/// Doomed packs (condemned, no writer left that may rely on them) go whatever their age,
/// and whatever writer started after their condemnation: the grace and the running
/// writers hold back only packs no index lists.
#[tokio::test]
async fn doomed_packs_go_whatever_their_age_and_later_writers() {
    let (_dir, repo, kept, gone) = a_kept_and_a_deleted_backup().await;
    let hour = Duration::from_secs(3600);
    let first = mark_backup_writer(repo.store().clone(), "first", Duration::from_secs(30))
        .await
        .unwrap();
    let condemned = collect_garbage_with(&repo, false, hour).await.unwrap();
    assert_eq!(condemned.packs_waiting, 2, "{condemned:?}");
    first.release().await;
    let later = mark_backup_writer(repo.store().clone(), "later", Duration::from_secs(30))
        .await
        .unwrap();
    let swept = collect_garbage_with(&repo, false, hour).await.unwrap();
    assert_eq!(
        swept.packs_deleted, 2,
        "young and a writer running: {swept:?}"
    );
    assert!(!reads_back(&repo, &gone[0], &content(2)).await);
    assert!(reads_back(&repo, &kept[0], &content(1)).await);
    later.release().await;
}

/// A condemnation a collection wrote but never armed (it stopped in between) is dropped
/// by the next run; the run after condemns its packs again if they still are garbage.
#[tokio::test]
async fn a_condemnation_never_armed_is_dropped_by_the_next_run() {
    let (_dir, repo, kept, gone) = a_kept_and_a_deleted_backup().await;
    let stale = strata_repo::condemned::Condemnation {
        run: "gc-20261128T000000Z-00000000".into(),
        created_ms: 0,
        packs: repo.index().packs().into_iter().map(|(id, _)| id).collect(),
    };
    repo.write_condemnation(&stale).await.unwrap();
    // The run takes the packs it names for condemned already, and drops it unarmed.
    let first = collect(&repo, false).await;
    assert_eq!(first.packs_deleted, 0, "{first:?}");
    let (left, damaged) = repo.condemnations().await.unwrap();
    assert!(
        left.is_empty() && damaged.is_empty(),
        "{left:?} {damaged:?}"
    );
    let second = collect(&repo, false).await;
    assert_eq!(second.packs_deleted, 2, "{second:?}");
    assert!(!reads_back(&repo, &gone[0], &content(2)).await);
    assert!(
        reads_back(&repo, &kept[0], &content(1)).await,
        "only garbage goes"
    );
}

/// A run whose only garbage is in packs still mostly in use (none wholly garbage)
/// repacks them: the blobs no backup names go, the one named reads back from its copy.
#[tokio::test]
async fn a_run_with_only_mostly_garbage_packs_repacks_them() {
    let (_dir, repo) = repository().await;
    // Twenty blobs no backup ever named but the first (a backup that failed before its
    // summary leaves such blobs); no manifest is deleted, so no pack is wholly garbage.
    let data: Vec<Vec<u8>> = (40..60).map(content).collect();
    let ids = store_blobs(&repo, &data).await;
    backup_of(&repo, &ids[..1]).await;

    let report = collect(&repo, false).await;
    assert_eq!(report.packs_repacked, 1, "{report:?}");
    assert_eq!(report.packs_condemned, 1, "{report:?}");
    assert_eq!(report.packs_deleted, 1, "{report:?}");
    assert!(reads_back(&repo, &ids[0], &data[0]).await);
    assert!(!reads_back(&repo, &ids[1], &data[1]).await);
}

/// The index objects' keys, sorted.
async fn index_keys(repo: &Repository) -> Vec<String> {
    let mut keys: Vec<String> = repo
        .store()
        .list(layout::INDEX)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    keys.sort();
    keys
}

/// How many packs each index object lists (in the order of [`index_keys`]).
async fn packs_per_object(repo: &Repository) -> Vec<usize> {
    let mut counts = Vec::new();
    for key in index_keys(repo).await {
        counts.push(repo.read_index(&key).await.unwrap().packs.len());
    }
    counts
}

/// Whether every pack the index lists is stored (a doomed pack deleted while an index
/// object still lists it would damage the index).
async fn every_indexed_pack_is_stored(repo: &Repository) -> bool {
    repo.reload_index().await.unwrap();
    let stored: Vec<String> = repo
        .store()
        .list(layout::DATA)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    repo.index()
        .packs()
        .into_iter()
        .all(|(id, _)| stored.contains(&layout::pack_key(&id)))
}

/// How a run lays out the index objects that stay: small ones merged (each pack listed
/// once), one of `STAYING_OBJECT_PACKS` (256) packs or more left alone unless it lists a
/// doomed pack, one that does rewritten without it even when it is the only object to
/// rewrite, and a lone small object with nothing doomed left as it is.
#[tokio::test]
async fn the_index_objects_that_stay_are_merged_kept_or_rewritten_by_what_they_list() {
    let (_dir, repo) = repository().await;
    // 253 packs of one blob each (253 index objects), one of them listed twice.
    let data: Vec<Vec<u8>> = (1000..1253).map(content).collect();
    let mut ids = Vec::new();
    for blob in &data {
        ids.extend(store_blobs(&repo, std::slice::from_ref(blob)).await);
    }
    let first = index_keys(&repo).await[0].clone();
    let twice = repo.read_index(&first).await.unwrap().packs;
    repo.write_index_objects(twice).await.unwrap();
    backup_of(&repo, &ids).await;
    // A backup to delete later, its pack merged with the others (256 packs in all).
    let later = store_blobs(&repo, &[content(2000)]).await;
    let later_backup = backup_of(&repo, &later).await;
    assert_eq!(index_keys(&repo).await.len(), 257);

    // No garbage: the 257 small objects are merged into one, each pack listed once.
    let merged = collect(&repo, false).await;
    assert_eq!(merged.packs_deleted, 0, "{merged:?}");
    assert_eq!(merged.backups, 2, "{merged:?}");
    assert_eq!(merged.index_objects_replaced, 257, "{merged:?}");
    assert_eq!(packs_per_object(&repo).await, vec![256]);
    let large = index_keys(&repo).await;

    // A backup deleted whose packs are listed by small objects only: those two are
    // rewritten (to nothing); the object of 256 packs stays as it is.
    let gone = store_blobs(&repo, &[content(3000)]).await;
    let gone_backup = backup_of(&repo, &gone).await;
    forget(&repo, &gone_backup).await;
    let small_only = collect(&repo, false).await;
    assert_eq!(small_only.packs_deleted, 2, "{small_only:?}");
    assert_eq!(small_only.index_objects_replaced, 2, "{small_only:?}");
    assert_eq!(index_keys(&repo).await, large);

    // A backup deleted whose packs the large object lists: the one object is rewritten
    // without them before they go. A dry run first says what stays.
    forget(&repo, &later_backup).await;
    let dry = collect(&repo, true).await;
    assert_eq!((dry.packs_deleted, dry.packs_kept), (2, 254), "{dry:?}");
    let in_large = collect(&repo, false).await;
    assert_eq!(in_large.packs_deleted, 2, "{in_large:?}");
    assert_eq!(in_large.packs_kept, 254, "{in_large:?}");
    assert_eq!(in_large.index_objects_replaced, 1, "{in_large:?}");
    assert_eq!(packs_per_object(&repo).await, vec![254]);
    assert!(every_indexed_pack_is_stored(&repo).await);
    assert!(!reads_back(&repo, &later[0], &content(2000)).await);

    // One small object and nothing doomed: nothing to rewrite.
    let rewritten = index_keys(&repo).await;
    let idle = collect(&repo, false).await;
    assert_eq!(idle.index_objects_replaced, 0, "{idle:?}");
    assert_eq!(index_keys(&repo).await, rewritten);
    assert!(reads_back(&repo, &ids[0], &data[0]).await);
    assert!(reads_back(&repo, &ids[252], &data[252]).await);
}

/// An index object over the bound (as written before objects were bounded by blobs):
/// 256 packs of 300 blobs, every blob referenced, none doomed. A run rewrites it cut at
/// the bound (it would leave an object of 256 packs with nothing doomed alone), and no
/// blob is lost.
#[tokio::test]
async fn an_index_object_over_the_bound_is_cut_by_a_run() {
    use strata_repo::index::{over_bound, IndexFile, IndexedPack};
    use strata_repo::pack::PackEntry;
    let (_dir, repo) = repository().await;
    let id = |n: u64| BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes());
    let packs: Vec<IndexedPack> = (0..256u64)
        .map(|p| IndexedPack {
            id: id(1 << 40 | p),
            size: 16 << 20,
            blobs: (0..300u64)
                .map(|b| PackEntry {
                    id: id(p * 1000 + b),
                    offset: b * 4096,
                    length: 4000,
                    raw_length: 4096,
                    compressed: false,
                })
                .collect(),
        })
        .collect();
    let referenced: Vec<BlobId> = packs
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    let old = repo.write_index(&IndexFile { packs }).await.unwrap();
    repo.reload_index().await.unwrap();
    backup_of(&repo, &referenced).await;
    let over = |repo: &Arc<Repository>| {
        let repo = repo.clone();
        async move {
            let mut over = Vec::new();
            for key in index_keys(&repo).await {
                let file = repo.read_index(&key).await.unwrap();
                let counts: Vec<usize> = file.packs.iter().map(|p| p.blobs.len()).collect();
                if over_bound(&counts) {
                    over.push(key);
                }
            }
            over
        }
    };
    assert_eq!(over(&repo).await, vec![old.clone()]);

    let report = collect(&repo, false).await;
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(report.index_objects_replaced, 2, "{report:?}");
    assert_eq!(over(&repo).await, Vec::<String>::new());
    assert!(!index_keys(&repo).await.contains(&old));
    repo.reload_index().await.unwrap();
    for blob in &referenced {
        assert!(repo.index().contains(blob), "{blob} still indexed");
    }
    // 54 packs (16,200 blobs) an object, the manifest's one-blob pack where it falls.
    let per_object = packs_per_object(&repo).await;
    assert_eq!(per_object.len(), 5, "{per_object:?}");
    assert_eq!(per_object.iter().sum::<usize>(), 257, "{per_object:?}");
}

/// What another process does to the repository at one exact point of a collection, once.
#[derive(Debug)]
enum Meddle {
    /// Before the first read of a key starting with `on`, these keys are deleted (a
    /// `strata delete` that ran meanwhile).
    DeleteBeforeRead { on: String, delete: Vec<String> },
    /// After the first fresh listing of `after`, before the next fresh listing of
    /// `before`, these objects are written (a backup that ended meanwhile).
    PutBetweenListings {
        after: String,
        before: String,
        put: Vec<(String, Bytes)>,
    },
}

/// The repository of `dir` (made by [`repository`]) opened again through a store that
/// does each of `meddles` at its point (the test kit's [`Intercept`]).
async fn meddled(dir: &tempfile::TempDir, meddles: Vec<Meddle>) -> Arc<Repository> {
    use std::sync::Mutex;
    use strata_testkit::intercept::{Intercept, Request};
    let inner: strata_store::DynStore =
        Arc::new(strata_store::LocalStore::new(dir.path().join("repo")));
    let target = inner.clone();
    let pending = Mutex::new(meddles);
    let listed = Mutex::new(Vec::<String>::new());
    let store = Intercept::new(inner, move |request: Request, key: &str| {
        let reading = matches!(request, Request::Get | Request::GetRange);
        let due = {
            let mut pending = pending.lock().unwrap();
            let listed = listed.lock().unwrap();
            let at = pending.iter().position(|m| match m {
                Meddle::DeleteBeforeRead { on, .. } => reading && key.starts_with(on.as_str()),
                Meddle::PutBetweenListings { after, before, .. } => {
                    request == Request::ListFresh && key == before && listed.contains(after)
                }
            });
            at.map(|i| pending.remove(i))
        };
        if request == Request::ListFresh {
            listed.lock().unwrap().push(key.to_string());
        }
        let target = target.clone();
        Box::pin(async move {
            match due {
                Some(Meddle::DeleteBeforeRead { delete, .. }) => {
                    for key in delete {
                        target.delete(&key).await.unwrap();
                    }
                }
                Some(Meddle::PutBetweenListings { put, .. }) => {
                    for (key, data) in put {
                        target.put(&key, data).await.unwrap();
                    }
                }
                None => {}
            }
        })
    });
    Repository::open(Arc::new(store), Some("pw")).await.unwrap()
}

/// A backup deleted while the collection reads it (its summary gone before the
/// collection reads it, or its manifest and summary gone after it read the summary)
/// references nothing: the run goes on, and its data goes with the deleted backup's.
#[tokio::test]
async fn a_backup_deleted_while_the_collection_reads_it_counts_for_nothing() {
    let (dir, repo) = repository().await;
    let kept = store_blobs(&repo, &[content(1)]).await;
    backup_of(&repo, &kept).await;
    let early_blobs = store_blobs(&repo, &[content(2)]).await;
    let early = backup_of(&repo, &early_blobs).await;
    let late = store_blobs(&repo, &[content(3)]).await;
    let late = backup_of(&repo, &late).await;
    let late_manifests: Vec<String> = repo
        .store()
        .list(&layout::manifest_key(&late, ""))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(!late_manifests.is_empty());
    let mut late_gone = late_manifests.clone();
    late_gone.push(layout::summary_key(&late));
    let repo = meddled(
        &dir,
        vec![
            Meddle::DeleteBeforeRead {
                on: layout::summary_key(&early),
                delete: vec![layout::summary_key(&early)],
            },
            Meddle::DeleteBeforeRead {
                on: late_manifests[0].clone(),
                delete: late_gone,
            },
        ],
    )
    .await;

    let report = collect(&repo, false).await;
    assert_eq!(report.backups, 1, "{report:?}");
    // Each deleted backup's data pack and manifest pack.
    assert_eq!(report.packs_deleted, 4, "{report:?}");
    assert!(reads_back(&repo, &kept[0], &content(1)).await);
    assert!(!reads_back(&repo, &early_blobs[0], &content(2)).await);
}

/// A backup that ended between the collection's listing of the packs and its check for
/// running writers: its packs, unlisted by the index the run started from, are listed
/// by the index read again before any unindexed pack goes, and are kept.
#[tokio::test]
async fn packs_indexed_after_the_listing_are_kept() {
    let (dir, repo) = repository().await;
    let before = data_objects(&repo).await;
    let ids = store_blobs(&repo, &[content(5)]).await;
    backup_of(&repo, &ids).await;
    // Everything the backup wrote but its packs comes back after the listing of packs,
    // before the index is read again.
    let mut late = Vec::new();
    for key in data_objects(&repo).await {
        if !before.contains(&key) && !key.starts_with(layout::DATA) {
            late.push((key.clone(), repo.store().get(&key).await.unwrap()));
            repo.store().delete(&key).await.unwrap();
        }
    }
    assert!(late.iter().any(|(k, _)| k.starts_with(layout::INDEX)));
    let packs = stored_packs(&repo).await;
    let repo = meddled(
        &dir,
        vec![Meddle::PutBetweenListings {
            after: layout::DATA.into(),
            before: layout::INDEX.into(),
            put: late,
        }],
    )
    .await;

    let report = collect(&repo, false).await;
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(stored_packs(&repo).await, packs);
    assert!(reads_back(&repo, &ids[0], &content(5)).await);
    let again = collect(&repo, false).await;
    assert_eq!(again.packs_deleted, 0, "{again:?}");
    assert!(reads_back(&repo, &ids[0], &content(5)).await);
}
