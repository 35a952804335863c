//! Reading and compacting the listing against a real local store, counting requests.

use super::read::PageRequest;
use super::{ListingKey, Position, LOOSE_MAX, PAGE_MAX};
use crate::summary::{BackupStatus, BackupSummary};
use crate::{InitOptions, Repository};
use std::sync::Arc;
use strata_store::{CountingStore, DynStore, LocalStore};

async fn repo() -> (tempfile::TempDir, Arc<Repository>, CountingStore) {
    let dir = tempfile::tempdir().unwrap();
    let counting = CountingStore::new(Arc::new(LocalStore::new(dir.path())));
    let store: DynStore = Arc::new(counting.clone());
    let options = InitOptions {
        kdf: crate::crypto::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    let repo = Repository::init(store, Some("pw"), options).await.unwrap();
    (dir, repo, counting)
}

/// The `i`-th synthesized backup: one a minute, every seventh failed.
fn nth(i: usize) -> BackupSummary {
    let (h, m) = (i / 60, i % 60);
    let (day, h) = (1 + h / 24, h % 24);
    let status = if i % 7 == 3 {
        BackupStatus::Failed
    } else {
        BackupStatus::Complete
    };
    super::tests::summary(
        &format!("202611{day:02}T{h:02}{m:02}00Z-{i:08x}"),
        &format!("2026-11-{day:02}T{h:02}:{m:02}:00.250Z"),
        status,
    )
}

/// Every file under `dir`.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn names(backups: &[BackupSummary]) -> Vec<String> {
    backups.iter().map(|b| b.name.clone()).collect()
}

/// Every backup, newest first, page by page.
async fn walk(repo: &Repository, limit: usize) -> (Vec<String>, usize) {
    let (mut all, mut pages) = (Vec::new(), 0);
    let mut request = PageRequest {
        limit,
        before: None,
    };
    loop {
        let page = repo.backup_page(&request).await.unwrap();
        pages += 1;
        all.extend(names(&page.backups));
        match page.next {
            Some(next) => request.before = Some(next),
            None => return (all, pages),
        }
    }
}

#[tokio::test]
async fn pages_cost_a_bounded_number_of_reads_and_agree_with_the_summaries() {
    let (_dir, repo, counting) = repo().await;
    let count = 300;
    for i in 0..count {
        repo.save_summary(&nth(i)).await.unwrap();
        if i % 40 == 39 {
            repo.compact_listing(false).await.unwrap();
        }
    }
    repo.compact_listing(true).await.unwrap();
    let expected: Vec<String> = (0..count).rev().map(|i| nth(i).name).collect();

    let before = counting.counts();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    let cost = counting.counts().since(&before);
    assert_eq!(names(&page.backups), expected[..50]);
    assert_eq!(page.total, count);
    assert!(page.from_summaries.is_empty() && page.note().is_none());
    // Two LISTs (listing, summaries) and one page object: not a GET per backup.
    assert_eq!(cost.list, 2, "{cost:?}");
    assert!(cost.get <= 2, "{cost:?}");
    // Warnings stay in the summary; the listing keeps their count.
    assert!(page.backups[0].nodes[0].warnings.is_empty());
    assert_eq!(page.backups[0].nodes[0].warning_count, 1);

    // The second page, by cursor, also costs a page.
    let before = counting.counts();
    let second = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: page.next.clone(),
        })
        .await
        .unwrap();
    assert!(counting.counts().since(&before).get <= 2);
    assert_eq!(names(&second.backups), expected[50..100]);

    assert_eq!(walk(&repo, 50).await.0, expected);
    assert_eq!(walk(&repo, 7).await.0, expected);
    assert_eq!(walk(&repo, usize::MAX).await, (expected.clone(), 1));
}

#[tokio::test]
async fn deleted_missing_and_damaged_pieces_fall_back_to_the_summaries_and_say_so() {
    let (dir, repo, _) = repo().await;
    let count = PAGE_MAX / 5 + 5;
    for i in 0..count {
        repo.save_summary(&nth(i)).await.unwrap();
    }
    repo.compact_listing(true).await.unwrap();
    let mut expected: Vec<String> = (0..count).rev().map(|i| nth(i).name).collect();

    // A deleted backup disappears at once, though its page still holds it.
    repo.delete_backup(&nth(10).name).await.unwrap();
    expected.retain(|n| *n != nth(10).name);
    assert_eq!(walk(&repo, 50).await.0, expected);

    // A writer that stopped between the summary and its entry.
    let late = nth(count);
    repo.save_summary(&late).await.unwrap();
    let entry = ListingKey::Entry(Position::of(&late)).key();
    std::fs::remove_file(dir.path().join(&entry)).unwrap();
    expected.insert(0, late.name.clone());
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(names(&page.backups), expected[..50]);
    assert_eq!(page.from_summaries, vec![late.name.clone()]);
    assert!(page.note().unwrap().contains("read from their summaries"));

    // A damaged page: its backups are read from their summaries, and it says so.
    let inner = files(&dir.path().join("listing/pages")).remove(0);
    let mut bytes = std::fs::read(&inner).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&inner, bytes).unwrap();
    // (A process that read the page before keeps its checked copy: a new one reads.)
    let repo = Repository::open_catalog(repo.store().clone(), Some("pw"))
        .await
        .unwrap();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(names(&page.backups), expected[..50]);
    assert_eq!(page.damaged_listing.len(), 1);
    assert!(page.note().unwrap().contains("do not decode"));
    assert_eq!(walk(&repo, 30).await.0, expected);

    // A thorough compaction rebuilds it: nothing to fall back on afterwards.
    let report = repo.compact_listing(true).await.unwrap();
    assert_eq!(report.backups, expected.len());
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(names(&page.backups), expected[..50]);
    assert!(page.note().is_none(), "{:?}", page.note());

    // A missing page (removed by hand) is the same as a repository without a listing.
    std::fs::remove_dir_all(dir.path().join("listing")).unwrap();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(names(&page.backups), expected[..50]);
    assert_eq!(page.from_summaries.len(), expected.len());
}

/// `nth(i)` renamed into the second of `nth(j)`'s name, with a suffix of `id`: a backup
/// named in the same second as another.
fn named_in_second_of(i: usize, j: usize, id: &str) -> BackupSummary {
    let mut backup = nth(i);
    backup.name = format!("{}-{id}", &nth(j).name[..16]);
    backup
}

#[tokio::test]
async fn a_summary_without_entry_named_inside_a_pages_time_range_is_found() {
    for whole in [false, true] {
        let (dir, repo, _) = repo().await;
        let count = 100;
        for i in 0..count {
            repo.save_summary(&nth(i)).await.unwrap();
        }
        repo.compact_listing(true).await.unwrap();
        // After the compaction: one backup named in the second of the page's newest (the
        // suffix sorts first), one named an hour before its start; both stop before their
        // entries.
        let same_second = named_in_second_of(count, count - 1, "00000000");
        let early = named_in_second_of(count + 1, count - 61, "00000001");
        let mut expected: Vec<String> = (0..count).rev().map(|i| nth(i).name).collect();
        for late in [&same_second, &early] {
            repo.save_summary(late).await.unwrap();
            let entry = ListingKey::Entry(Position::of(late)).key();
            std::fs::remove_file(dir.path().join(&entry)).unwrap();
            expected.insert(0, late.name.clone());
        }
        let request = PageRequest {
            limit: if whole { usize::MAX } else { 10 },
            before: None,
        };
        let page = repo.backup_page(&request).await.unwrap();
        let shown = names(&page.backups);
        assert_eq!(shown, expected[..shown.len()], "whole: {whole}");
        let mut from: Vec<String> = page.from_summaries.clone();
        from.sort();
        assert_eq!(from, vec![early.name.clone(), same_second.name.clone()]);
        assert_eq!(walk(&repo, 7).await.0, expected, "whole: {whole}");
    }
}

#[tokio::test]
async fn compaction_waits_for_enough_loose_entries_and_keeps_unchanged_pages() {
    let (dir, repo, counting) = repo().await;
    for i in 0..LOOSE_MAX - 1 {
        repo.save_summary(&nth(i)).await.unwrap();
    }
    let before = counting.counts();
    assert_eq!(repo.compact_listing(false).await.unwrap().pages_written, 0);
    assert_eq!(counting.counts().since(&before).get, 0, "only LISTs");
    repo.save_summary(&nth(LOOSE_MAX - 1)).await.unwrap();
    let report = repo.compact_listing(false).await.unwrap();
    assert_eq!((report.pages_written, report.deleted), (1, LOOSE_MAX));
    let listed = |sub: &str| {
        std::fs::read_dir(dir.path().join("listing").join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(listed("entries"), 0);
    // Nothing changed: nothing written.
    let report = repo.compact_listing(true).await.unwrap();
    assert_eq!((report.pages_written, report.deleted), (0, 0));
}

#[tokio::test]
async fn a_summary_changed_after_its_listing_is_read_again() {
    let (dir, repo, _) = repo().await;
    for i in 0..5 {
        repo.save_summary(&nth(i)).await.unwrap();
    }
    repo.compact_listing(true).await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Damaged after the page was written: reported, not shown as the page remembers it.
    let damaged = dir.path().join(format!("summaries/{}", nth(4).name));
    std::fs::write(&damaged, b"STRO").unwrap();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(page.backups.len(), 4);
    assert_eq!(page.damaged.len(), 1, "{page:?}");
    // Compacted, the page names it, so its readers still report it.
    repo.compact_listing(true).await.unwrap();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!((page.backups.len(), page.damaged.len()), (4, 1));
    // Repaired (a new summary and entry): the new status wins over the page's.
    let mut repaired = nth(4);
    repaired.status = BackupStatus::Partial;
    repo.save_summary(&repaired).await.unwrap();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(page.backups[0].status, BackupStatus::Partial);
    assert!(page.damaged.is_empty());
    repo.compact_listing(true).await.unwrap();
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(page.backups[0].status, BackupStatus::Partial);
    assert!(page.damaged.is_empty() && page.from_summaries.is_empty());
}

#[tokio::test]
async fn every_listing_write_replaces_the_generation() {
    use super::generation::GenerationRead;
    let (dir, repo, _) = repo().await;
    assert_eq!(
        repo.listing_generation().await.unwrap(),
        GenerationRead::Missing
    );
    let token = |read: GenerationRead| match read {
        GenerationRead::Current(g) => g.token,
        other => panic!("{other:?}"),
    };
    repo.save_summary(&nth(0)).await.unwrap();
    let after_save = token(repo.listing_generation().await.unwrap());
    repo.save_summary(&nth(1)).await.unwrap();
    let after_second = token(repo.listing_generation().await.unwrap());
    assert_ne!(after_save, after_second);
    repo.compact_listing(true).await.unwrap();
    let after_compaction = token(repo.listing_generation().await.unwrap());
    assert_ne!(after_second, after_compaction);
    repo.delete_backup(&nth(0).name).await.unwrap();
    let after_delete = token(repo.listing_generation().await.unwrap());
    assert_ne!(after_compaction, after_delete);
    // Readers of the listing ignore it: it is no listing entry or page.
    let page = repo
        .backup_page(&PageRequest {
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(names(&page.backups), vec![nth(1).name]);
    assert!(page.note().is_none());
    // Damaged: read as such, not as an error.
    let path = dir.path().join(crate::layout::LISTING_GENERATION);
    std::fs::write(&path, b"STRO\x0a\xff\xffgarbage").unwrap();
    assert!(matches!(
        repo.listing_generation().await.unwrap(),
        GenerationRead::Damaged(_)
    ));
}

// ---- Pages read against the summaries after a bound (see `super::bounded`) ----

use super::bounded::{Bounded, Fallback};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Mutex;
use strata_store::{ObjectMeta, Store, StoreError, StoreResult};

/// A store in memory, its clock a counter (every write a microsecond after the previous
/// one), so a test of thousands of backups runs in a moment and "written after" is exact.
#[derive(Debug, Default)]
struct MemStore {
    /// The clock, and every object with when it was written.
    objects: Mutex<(u64, Objects)>,
}

type Objects = BTreeMap<String, (Bytes, std::time::SystemTime)>;

impl MemStore {
    fn missing(key: &str) -> StoreError {
        StoreError::NotFound {
            key: key.to_string(),
            store: "memory".into(),
        }
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let mut guard = self.objects.lock().unwrap();
        guard.0 += 1;
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(guard.0);
        guard.1.insert(key.to_string(), (data, at));
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if self.objects.lock().unwrap().1.contains_key(key) {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
                store: "memory".into(),
            });
        }
        self.put(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let guard = self.objects.lock().unwrap();
        guard
            .1
            .get(key)
            .map(|o| o.0.clone())
            .ok_or_else(|| Self::missing(key))
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
        let data = self.get(key).await?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let guard = self.objects.lock().unwrap();
        Ok(guard
            .1
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (data, at))| ObjectMeta {
                key: k.clone(),
                size: data.len() as u64,
                modified: Some(*at),
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.objects.lock().unwrap().1.remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// A repository in memory, unencrypted, counting its requests.
async fn mem_repo() -> (Arc<MemStore>, Arc<Repository>, CountingStore) {
    let mem = Arc::new(MemStore::default());
    let counting = CountingStore::new(mem.clone());
    let store: DynStore = Arc::new(counting.clone());
    let options = InitOptions {
        encryption: crate::format::Encryption::None,
        ..InitOptions::default()
    };
    let repo = Repository::init(store, None, options).await.unwrap();
    (mem, repo, counting)
}

/// A backup that starts at `start` (Unix seconds) and was named `slack` seconds before.
fn backup_at(i: usize, start: u64, slack: u64) -> BackupSummary {
    let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let named: String = humantime::format_rfc3339_seconds(at(start - slack))
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let status = if i % 9 == 4 {
        BackupStatus::Failed
    } else {
        BackupStatus::Complete
    };
    super::tests::summary(
        &format!("{named}-{i:08x}"),
        &humantime::format_rfc3339_millis(at(start) + std::time::Duration::from_millis(250))
            .to_string(),
        status,
    )
}

/// 2026-01-01T00:00:00Z.
const JAN_2026: u64 = 1_767_225_600;

/// The `i`-th hourly backup from 2026-01-01, named 40 seconds before it starts.
fn hourly(i: usize) -> BackupSummary {
    backup_at(i, JAN_2026 + i as u64 * 3600, 40)
}

/// Saves `backups` 64 at a time.
async fn save_all(repo: &Repository, backups: impl IntoIterator<Item = BackupSummary>) {
    use futures::StreamExt;
    futures::stream::iter(backups)
        .for_each_concurrent(64, |b| async move { repo.save_summary(&b).await.unwrap() })
        .await;
}

fn page_of(limit: usize, before: Option<Position>) -> PageRequest {
    PageRequest { limit, before }
}

/// The page read against the summaries after a bound; a failure when it falls back.
async fn bounded(repo: &Repository, request: &PageRequest) -> super::read::BackupPage {
    match repo.bounded_page(request).await.unwrap() {
        Bounded::Page(page) => page,
        Bounded::Gone => panic!("a listing object is gone"),
        Bounded::Fallback(why, _) => panic!("fell back: {why:?}"),
    }
}

/// Why the page falls back to every summary (`None`: it does not).
async fn fallback(repo: &Repository, request: &PageRequest) -> Option<Fallback> {
    match repo.bounded_page(request).await.unwrap() {
        Bounded::Page(_) => None,
        Bounded::Gone => panic!("a listing object is gone"),
        Bounded::Fallback(why, _) => Some(why),
    }
}

/// The names of `backups` newest first.
fn newest_first(backups: &[BackupSummary]) -> Vec<String> {
    let mut sorted: Vec<&BackupSummary> = backups.iter().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse(Position::of(b)));
    sorted.iter().map(|b| b.name.clone()).collect()
}

#[tokio::test]
async fn a_page_lists_the_same_few_summaries_at_1_200_and_at_3_000_backups() {
    let (_mem, repo, counting) = mem_repo().await;
    let mut costs = Vec::new();
    let mut made = 0;
    for count in [1_200, 3_000] {
        save_all(&repo, (made..count).map(hourly)).await;
        made = count;
        repo.compact_listing(true).await.unwrap();
        let all: Vec<BackupSummary> = (0..count).map(hourly).collect();
        let expected = newest_first(&all);

        let mut cost = Vec::new();
        for (limit, before) in [
            (50, None),
            (20, None),
            (50, Some(Position::of(&all[count - 50]))),
        ] {
            let request = page_of(limit, before.clone());
            let (counts, keys) = (counting.counts(), counting.keys_listed());
            let page = repo.backup_page(&request).await.unwrap();
            let (spent, keys) = (
                counting.counts().since(&counts),
                counting.keys_listed() - keys,
            );
            let skip = if before.is_some() { 50 } else { 0 };
            assert_eq!(
                names(&page.backups),
                expected[skip..skip + limit],
                "{count}"
            );
            assert_eq!(page.total, count);
            assert!(page.note().is_none(), "{:?}", page.note());
            assert!(fallback(&repo, &request).await.is_none());
            // `listing/` and the summaries after the bound: two LISTs, of the listing's
            // few keys and of the page's backups and 6 hours (six hourly backups) before.
            assert_eq!(spent.list, 2, "{spent:?}");
            assert!(spent.get <= 2, "{spent:?}");
            cost.push((spent.list, spent.get, keys));
        }
        costs.push(cost);
    }
    // The same LISTs and GETs at 3,000 as at 1,200 backups; only the listing's own keys
    // (one page key more per thousand backups) differ.
    for (small, large) in costs[0].iter().zip(&costs[1]) {
        assert_eq!((small.0, small.1), (large.0, large.1), "{costs:?}");
        assert!(large.2 <= small.2 + 2, "{costs:?}");
    }
    // A page of 50: 50 + 6 summaries, and the listing's 3 pages and generation.
    assert!(costs[1][0].2 <= 50 + 7 + 5, "{costs:?}");
    // The whole read lists them all.
    let keys = counting.keys_listed();
    repo.whole_page(&page_of(50, None), None).await.unwrap();
    assert!(counting.keys_listed() - keys >= 3_000);
}

/// Rewrites the page holding `name` under the older key form (no count), as a
/// repository written before counts has it.
async fn to_old_key_form(repo: &Repository, mem: &MemStore, name: &str) {
    for object in repo.listing_objects().await.unwrap() {
        let ListingKey::Page {
            oldest, newest, id, ..
        } = &object.key
        else {
            continue;
        };
        let contents = repo.read_listing_object(&object.key).await.unwrap();
        if !contents.entries.iter().any(|e| e.name == name) {
            continue;
        }
        let old = ListingKey::Page {
            oldest: oldest.clone(),
            newest: newest.clone(),
            id: id.clone(),
            count: None,
        };
        let plain = super::encode_contents(&contents.entries, &contents.damaged);
        let bytes = repo
            .seal_object(crate::format::ObjectKind::Listing, &old.key(), &plain)
            .unwrap();
        mem.put(&old.key(), bytes.into()).await.unwrap();
        mem.delete(&object.key.key()).await.unwrap();
        return;
    }
    panic!("no page holds {name}");
}

#[tokio::test]
async fn pages_fall_back_to_every_summary_where_the_bound_is_not_safe() {
    let (mem, repo, _) = mem_repo().await;
    let count = 200;
    let mut all: Vec<BackupSummary> = (0..count).map(hourly).collect();
    save_all(&repo, all.clone()).await;
    repo.compact_listing_into(true, 50).await.unwrap();
    let first = page_of(50, None);
    let check = |all: &[BackupSummary], page: &super::read::BackupPage, limit: usize| {
        let expected = newest_first(all);
        assert_eq!(names(&page.backups), expected[..limit.min(expected.len())]);
        assert_eq!(page.total, all.len());
    };
    check(&all, &bounded(&repo, &first).await, 50);

    // Every backup, or not more than the listing holds.
    let every = page_of(usize::MAX, None);
    assert_eq!(fallback(&repo, &every).await, Some(Fallback::All));
    check(&all, &repo.backup_page(&every).await.unwrap(), count);
    assert_eq!(
        fallback(&repo, &page_of(200, None)).await,
        Some(Fallback::ShortListing)
    );
    // The last page of a walk: only the whole LIST says nothing older lacks an entry.
    let last = page_of(51, Some(Position::of(&all[50]).successor()));
    assert_eq!(fallback(&repo, &last).await, Some(Fallback::MaybeLast));
    let page = repo.backup_page(&last).await.unwrap();
    assert_eq!(names(&page.backups), newest_first(&all[..51]));
    assert!(page.next.is_none());
    assert_eq!(walk(&repo, 50).await, (newest_first(&all), 4));
    assert_eq!(walk(&repo, 7).await.0, newest_first(&all));

    // A page named in the older key form: its count is unknown, so is the total; the
    // next thorough compaction names it anew.
    to_old_key_form(&repo, &mem, &all[count - 1].name).await;
    assert_eq!(fallback(&repo, &first).await, Some(Fallback::OldKeyForm));
    check(&all, &repo.backup_page(&first).await.unwrap(), 50);
    let report = repo.compact_listing(true).await.unwrap();
    assert_eq!(report.pages_written, 1);
    check(&all, &bounded(&repo, &first).await, 50);

    // A backup name that does not start with its time, in the listing or only among the
    // summaries (its entry lost).
    let mut nightly = hourly(count);
    nightly.name = "nightly-1".into();
    repo.save_summary(&nightly).await.unwrap();
    all.push(nightly.clone());
    assert_eq!(fallback(&repo, &first).await, Some(Fallback::UntimedName));
    check(&all, &repo.backup_page(&first).await.unwrap(), 50);
    mem.delete(&ListingKey::Entry(Position::of(&nightly)).key())
        .await
        .unwrap();
    assert_eq!(fallback(&repo, &first).await, Some(Fallback::UntimedName));
    let page = repo.backup_page(&first).await.unwrap();
    check(&all, &page, 50);
    assert_eq!(page.from_summaries, vec![nightly.name.clone()]);
    repo.delete_backup(&nightly.name).await.unwrap();
    all.pop();
    check(&all, &bounded(&repo, &first).await, 50);

    // A name far older than its backup (more than 6 hours before the page's oldest):
    // the backup is in the page, its name sorts before the bound.
    let late = backup_at(count + 1, JAN_2026 + (count as u64 + 1) * 3600, 100 * 3600);
    repo.save_summary(&late).await.unwrap();
    all.push(late.clone());
    assert_eq!(
        fallback(&repo, &first).await,
        Some(Fallback::NameBeforeBound)
    );
    check(&all, &repo.backup_page(&first).await.unwrap(), 50);
    repo.delete_backup(&late.name).await.unwrap();
    all.pop();

    // A listing object that does not decode: its backups come from their summaries.
    let newest = repo
        .listing_objects()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| matches!(o.key, ListingKey::Page { .. }))
        .max_by(|a, b| a.key.newest().cmp(b.key.newest()))
        .unwrap();
    let mut bytes = mem.get(&newest.key.key()).await.unwrap().to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    mem.put(&newest.key.key(), bytes.into()).await.unwrap();
    let fresh = Repository::open_catalog(repo.store().clone(), None)
        .await
        .unwrap();
    assert_eq!(
        fallback(&fresh, &first).await,
        Some(Fallback::DamagedObject)
    );
    let page = fresh.backup_page(&first).await.unwrap();
    check(&all, &page, 50);
    assert_eq!(page.damaged_listing.len(), 1);
    fresh.compact_listing(true).await.unwrap();
    check(&all, &bounded(&fresh, &first).await, 50);
}

#[tokio::test]
async fn summaries_without_entries_are_found_inside_the_range_and_counted_once_reached() {
    let (mem, repo, _) = mem_repo().await;
    let count = 300;
    let mut all: Vec<BackupSummary> = (0..count).map(hourly).collect();
    save_all(&repo, all.clone()).await;
    repo.compact_listing_into(true, 50).await.unwrap();
    let first = page_of(50, None);
    let lose_entry = |b: &BackupSummary| {
        let (mem, key) = (mem.clone(), ListingKey::Entry(Position::of(b)).key());
        async move { mem.delete(&key).await.unwrap() }
    };

    // The newest backup, its entry lost: read by itself, and said so.
    let newest = hourly(count);
    repo.save_summary(&newest).await.unwrap();
    lose_entry(&newest).await;
    all.push(newest.clone());
    let page = bounded(&repo, &first).await;
    assert_eq!(names(&page.backups), newest_first(&all)[..50]);
    assert_eq!(page.from_summaries, vec![newest.name.clone()]);
    assert_eq!(page.total, all.len());

    // One inside the range, among backups a page holds (a copy, or a repair of a backup
    // whose entry was lost): found, though the page's time range covers its name.
    let inside = backup_at(count + 1, JAN_2026 + (count as u64 - 20) * 3600 + 1800, 40);
    repo.save_summary(&inside).await.unwrap();
    lose_entry(&inside).await;
    all.push(inside.clone());
    let page = bounded(&repo, &first).await;
    assert_eq!(names(&page.backups), newest_first(&all)[..50]);
    assert!(page.backups.iter().any(|b| b.name == inside.name));
    assert_eq!(page.total, all.len());

    // One far older than the page: not read for it, and not in its total until a page's
    // range reaches it (a walk does) or a compaction folds it in.
    let outside = backup_at(count + 2, JAN_2026 + 100 * 3600 + 1800, 40);
    repo.save_summary(&outside).await.unwrap();
    lose_entry(&outside).await;
    all.push(outside.clone());
    let page = bounded(&repo, &first).await;
    assert_eq!(names(&page.backups), newest_first(&all)[..50]);
    assert!(!page.from_summaries.contains(&outside.name));
    assert_eq!(page.total, all.len() - 1);
    assert_eq!(walk(&repo, 50).await.0, newest_first(&all));
    repo.compact_listing(true).await.unwrap();
    let page = bounded(&repo, &first).await;
    assert_eq!(page.total, all.len());
    assert!(page.from_summaries.is_empty());
}

#[tokio::test]
async fn a_deleted_backup_leaves_the_page_at_once_and_the_total_once_its_page_is_rewritten() {
    let (_mem, repo, _) = mem_repo().await;
    let count = 300;
    let mut all: Vec<BackupSummary> = (0..count).map(hourly).collect();
    save_all(&repo, all.clone()).await;
    repo.compact_listing_into(true, 50).await.unwrap();
    let first = page_of(50, None);

    // The newest, its page still holding it: gone from the page and from the total.
    let gone = all.pop().unwrap();
    repo.delete_backup(&gone.name).await.unwrap();
    let page = bounded(&repo, &first).await;
    assert_eq!(names(&page.backups), newest_first(&all)[..50]);
    assert_eq!(page.total, all.len());

    // An old one, in a page the read does not fetch: gone from every page at once, still
    // counted by that page's key until a compaction rewrites the page (the one that
    // follows every delete under the cluster lock).
    let old = all.remove(20);
    repo.delete_backup(&old.name).await.unwrap();
    let page = bounded(&repo, &first).await;
    assert_eq!(page.total, all.len() + 1);
    assert_eq!(walk(&repo, 50).await.0, newest_first(&all));
    repo.compact_listing(true).await.unwrap();
    assert_eq!(bounded(&repo, &first).await.total, all.len());

    // Sixty of the newest deleted before any compaction: the page reaches further back,
    // round by round, and stays exact.
    for gone in all.split_off(all.len() - 60) {
        repo.delete_backup(&gone.name).await.unwrap();
    }
    let page = bounded(&repo, &first).await;
    assert_eq!(names(&page.backups), newest_first(&all)[..50]);
    assert_eq!(page.total, all.len());
    let page = bounded(&repo, &page_of(50, page.next.clone())).await;
    assert_eq!(names(&page.backups), newest_first(&all)[50..100]);
}

/// A store whose next LIST of `listing/` answers an older listing: a reader that listed
/// just before a compaction replaced what it listed.
#[derive(Debug)]
struct ListedBefore {
    inner: Arc<MemStore>,
    older: Mutex<Option<Vec<ObjectMeta>>>,
}

#[async_trait::async_trait]
impl Store for ListedBefore {
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        if prefix == crate::layout::LISTING {
            if let Some(older) = self.older.lock().unwrap().take() {
                return Ok(older);
            }
        }
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        "memory, listed before".into()
    }
}

#[tokio::test]
async fn a_page_compacted_away_between_the_list_and_its_get_is_read_again() {
    let (mem, repo, _) = mem_repo().await;
    let mut all: Vec<BackupSummary> = (0..300).map(hourly).collect();
    save_all(&repo, all.clone()).await;
    repo.compact_listing_into(true, 50).await.unwrap();
    all.extend((300..320).map(hourly));
    save_all(&repo, all[300..].to_vec()).await;
    let older = mem.list(crate::layout::LISTING).await.unwrap();
    // The loose entries are folded into the newest page, under a new key.
    assert!(
        repo.compact_listing_into(false, 50)
            .await
            .unwrap()
            .pages_written
            > 0
    );
    let stale = Arc::new(ListedBefore {
        inner: mem.clone(),
        older: Mutex::new(Some(older)),
    });
    let reader = Repository::open_catalog(stale.clone(), None).await.unwrap();
    let page = reader.backup_page(&page_of(50, None)).await.unwrap();
    assert!(
        stale.older.lock().unwrap().is_none(),
        "the older listing was read"
    );
    assert_eq!(names(&page.backups), newest_first(&all)[..50]);
    assert_eq!(page.total, all.len());
    assert!(page.note().is_none(), "{:?}", page.note());
}

/// Every page of `limit` backups, newest first, read as `backup_page` does or (`whole`)
/// against every summary: the names of each page, and the totals they gave.
async fn pages(repo: &Repository, limit: usize, whole: bool) -> (Vec<Vec<String>>, Vec<usize>) {
    let (mut out, mut totals) = (Vec::new(), Vec::new());
    let mut request = page_of(limit, None);
    loop {
        let page = if whole {
            repo.whole_page(&request, None).await.unwrap()
        } else {
            repo.backup_page(&request).await.unwrap()
        };
        out.push(names(&page.backups));
        totals.push(page.total);
        match page.next {
            Some(next) if out.len() < 10_000 => request.before = Some(next),
            _ => return (out, totals),
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Over random repositories (backups minutes to half a day apart, named up to 6
        /// hours before they started, compacted into small pages now and then, some
        /// deleted with or without the compaction that follows, the newest with their
        /// entries lost), every page read against the summaries after a bound is the page
        /// read against all of them, and both are what the summaries say. The totals
        /// agree too, but for deleted backups whose page was not rewritten yet.
        #[test]
        fn bounded_pages_are_the_pages_every_summary_gives(
            gaps in proptest::collection::vec(1u64..12 * 3600, 1..140),
            slacks in proptest::collection::vec(0u64..=6 * 3600, 140),
            page_max in 3usize..24,
            compact_every in 1usize..40,
            deletes in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
            compact_after_delete in any::<bool>(),
            unlisted in 0usize..4,
            limit in 1usize..60,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (mem, repo, _) = mem_repo().await;
                let mut start = JAN_2026;
                let mut all: Vec<BackupSummary> = Vec::new();
                for (i, gap) in gaps.iter().enumerate() {
                    start += gap;
                    let backup = backup_at(i, start, slacks[i].min(start - JAN_2026));
                    repo.save_summary(&backup).await.unwrap();
                    all.push(backup);
                    if i % compact_every == compact_every - 1 {
                        repo.compact_listing_into(i % 2 == 0, page_max).await.unwrap();
                    }
                }
                // Deleted: its page keeps it until a compaction rewrites the page.
                let mut pending = 0;
                for index in &deletes {
                    if all.is_empty() {
                        break;
                    }
                    let gone = all.remove(index.index(all.len()));
                    let loose = ListingKey::Entry(Position::of(&gone)).key();
                    pending += usize::from(mem.get(&loose).await.is_err());
                    repo.delete_backup(&gone.name).await.unwrap();
                }
                if compact_after_delete {
                    repo.compact_listing_into(true, page_max).await.unwrap();
                    pending = 0;
                }
                // The newest, their entries lost (a writer stopped between the two).
                for i in 0..unlisted {
                    start += 60;
                    let backup = backup_at(gaps.len() + i, start, 0);
                    repo.save_summary(&backup).await.unwrap();
                    mem.delete(&ListingKey::Entry(Position::of(&backup)).key()).await.unwrap();
                    all.push(backup);
                }

                let expected = newest_first(&all);
                let (mut bounded, totals) = pages(&repo, limit, false).await;
                let (mut whole, whole_totals) = pages(&repo, limit, true).await;
                // A page says there may be more when an older entry may still have its
                // summary (a deleted backup's page not rewritten yet, read by neither):
                // the next page is then empty.
                for walk in [&mut bounded, &mut whole] {
                    while walk.len() > 1 && walk.last().is_some_and(Vec::is_empty) {
                        walk.pop();
                    }
                }
                prop_assert_eq!(&bounded, &whole);
                prop_assert_eq!(bounded.concat(), expected);
                prop_assert!(whole_totals.iter().all(|t| *t == all.len()), "{:?}", whole_totals);
                for total in totals {
                    prop_assert!(
                        (all.len()..=all.len() + pending).contains(&total),
                        "total {} of {} backups, {} deleted in pages", total, all.len(), pending
                    );
                }
                Ok(())
            })?;
        }
    }
}
