//! A server's kept listing (`strata_coordinator::listing_cache`) against a real local
//! store, counting requests: a page costs one GET per validation whatever the number of
//! backups, a change by a writer that bumps the listing generation shows at the next
//! validation (a deleted backup included), and a generation object that is missing,
//! damaged or forged falls back to reconciling with the summaries, saying so.

use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::listing::{self, BackupsPage, PageQuery};
use strata_coordinator::listing_cache::ListingCache;
use strata_repo::format::ObjectKind;
use strata_repo::summary::{BackupStatus, BackupSummary, NodeSummary};
use strata_repo::{layout, Repository};
use strata_store::{CountingStore, DynStore, LocalStore, RequestCounts};

const HOUR: Duration = Duration::from_secs(3600);

async fn open_repo(dir: &std::path::Path) -> (Arc<Repository>, CountingStore) {
    let counting = CountingStore::new(Arc::new(LocalStore::new(dir)));
    let store: DynStore = Arc::new(counting.clone());
    let repo = Repository::init(store, Some("pw"), strata_testkit::repo::fast_init())
        .await
        .unwrap();
    (repo, counting)
}

/// The `i`-th backup: one a minute from 2026-11-01, every seventh failed.
fn nth(i: usize) -> BackupSummary {
    let (h, m) = (i / 60, i % 60);
    let (day, h) = (1 + h / 24, h % 24);
    let status = if i % 7 == 3 {
        BackupStatus::Failed
    } else {
        BackupStatus::Complete
    };
    BackupSummary {
        name: format!("202611{day:02}T{h:02}{m:02}00Z-{i:08x}"),
        started: format!("2026-11-{day:02}T{h:02}:{m:02}:00.250Z"),
        host_started: None,
        duration_ms: 5,
        status,
        strata_version: "0.1.0".into(),
        nodes: vec![NodeSummary {
            name: "n1".into(),
            status,
            ..NodeSummary::default()
        }],
        requests: None,
        components: Vec::new(),
        still_paused: Vec::new(),
    }
}

/// A summary written the way a writer that does not know the generation writes it (an
/// older strata, a tool): the summary alone.
async fn write_without_bump(repo: &Repository, summary: &BackupSummary) {
    let key = layout::summary_key(&summary.name);
    let json = serde_json::to_vec(summary).unwrap();
    let bytes = repo.seal_object(ObjectKind::Summary, &key, &json).unwrap();
    repo.store().put(&key, bytes.into()).await.unwrap();
}

fn first(limit: usize) -> PageQuery {
    PageQuery {
        limit,
        cursor: None,
    }
}

fn names(page: &BackupsPage) -> Vec<String> {
    page.backups
        .iter()
        .map(|b| b.summary.name.clone())
        .collect()
}

/// A page from `cache` and what it cost.
async fn cached(
    cache: &ListingCache,
    repo: &Repository,
    counting: &CountingStore,
    query: &PageQuery,
) -> (BackupsPage, RequestCounts) {
    let before = counting.counts();
    let page = cache.page(&[("main", repo)], query, 0).await.unwrap();
    (page, counting.counts().since(&before))
}

#[tokio::test]
async fn a_kept_listing_costs_one_get_per_validation_at_any_count() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, counting) = open_repo(dir.path()).await;
    let count = 1200; // more than one listing page object
    for i in 0..count {
        repo.save_summary(&nth(i)).await.unwrap();
        if i % 100 == 99 {
            repo.compact_listing(false).await.unwrap();
        }
    }
    repo.compact_listing(true).await.unwrap();
    strata_coordinator::pins::set_pinned(&repo, &nth(count - 2).name, true)
        .await
        .unwrap();
    strata_coordinator::verified::record(&repo, &nth(count - 3).name, true, "structure")
        .await
        .unwrap();
    let expected: Vec<String> = (0..count).rev().map(|i| nth(i).name).collect();

    // Validating at every page: the first reconciles, the next cost one GET each.
    let cache = ListingCache::new(Duration::ZERO, Duration::ZERO, HOUR);
    let (page, cost) = cached(&cache, &repo, &counting, &first(50)).await;
    assert!(cost.list > 0, "the first page reconciles: {cost:?}");
    assert_eq!(names(&page), expected[..50]);
    assert_eq!(page.total, count);
    assert!(page.notes.is_empty(), "{:?}", page.notes);
    assert_eq!((page.pinned.len(), page.verified.len()), (1, 1));
    for _ in 0..3 {
        let (again, cost) = cached(&cache, &repo, &counting, &first(50)).await;
        assert_eq!(names(&again), expected[..50]);
        assert_eq!(
            (cost.get, cost.list, cost.put, cost.delete),
            (1, 0, 0, 0),
            "one GET, the generation: {cost:?}"
        );
    }
    // Every page by cursor agrees with the direct reading, at one GET a page.
    let mut walked = Vec::new();
    let mut query = first(150);
    loop {
        let (page, cost) = cached(&cache, &repo, &counting, &query).await;
        assert_eq!(cost.get + cost.list, 1, "{cost:?}");
        let direct = listing::page(&[("main", &repo)], &query).await.unwrap();
        assert_eq!(names(&page), names(&direct));
        assert_eq!((page.next.clone(), page.total), (direct.next, direct.total));
        assert_eq!(page.pinned, direct.pinned);
        assert_eq!(page.verified.len(), direct.verified.len());
        walked.extend(names(&page));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(walked, expected);
    let everything = cache
        .page(&[("main", &repo)], &PageQuery::all(), 0)
        .await
        .unwrap();
    assert_eq!(names(&everything), expected);

    // Within an interval, no request at all; `latest` too reads its page from memory.
    let cache = ListingCache::new(HOUR, Duration::ZERO, HOUR);
    cached(&cache, &repo, &counting, &first(50)).await;
    let (_, cost) = cached(&cache, &repo, &counting, &first(50)).await;
    assert_eq!(cost, RequestCounts::default());
    let before = counting.counts();
    let (_, latest) = cache.latest(&[("main", &repo)], 0).await.unwrap().unwrap();
    assert_eq!(latest.name, nth(count - 1).name);
    let cost = counting.counts().since(&before);
    assert_eq!((cost.get, cost.list), (1, 0), "the one summary: {cost:?}");
    // The caller's own change (`local` moves) makes it read again at once.
    let before = counting.counts();
    cache.page(&[("main", &repo)], &first(50), 1).await.unwrap();
    assert!(counting.counts().since(&before).list > 0);
}

#[tokio::test]
async fn changes_show_at_the_next_validation_and_deletes_are_never_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, counting) = open_repo(dir.path()).await;
    for i in 0..30 {
        repo.save_summary(&nth(i)).await.unwrap();
    }
    repo.compact_listing(true).await.unwrap();
    let cache = ListingCache::new(Duration::ZERO, Duration::ZERO, HOUR);
    let (page, _) = cached(&cache, &repo, &counting, &first(10)).await;
    assert_eq!(page.backups[0].summary.name, nth(29).name);

    // A new backup: its writer bumps the generation, the next page shows it.
    repo.save_summary(&nth(30)).await.unwrap();
    let (page, cost) = cached(&cache, &repo, &counting, &first(10)).await;
    assert!(cost.list > 0, "a new generation reconciles: {cost:?}");
    assert_eq!(page.backups[0].summary.name, nth(30).name);
    assert_eq!(page.total, 31);

    // A deleted backup is gone from the next page (the validation interval being zero
    // here: a server serves a kept page for at most its interval after a change).
    repo.delete_backup(&nth(30).name).await.unwrap();
    repo.delete_backup(&nth(28).name).await.unwrap();
    let (page, _) = cached(&cache, &repo, &counting, &first(10)).await;
    let shown = names(&page);
    assert_eq!(shown[0], nth(29).name);
    assert!(!shown.contains(&nth(28).name) && !shown.contains(&nth(30).name));
    assert_eq!(page.total, 29);

    // Pins and verification records bump it too.
    strata_coordinator::pins::set_pinned(&repo, &nth(29).name, true)
        .await
        .unwrap();
    let (page, _) = cached(&cache, &repo, &counting, &first(10)).await;
    assert!(page
        .pinned
        .contains(&("main".to_string(), nth(29).name.clone())));

    // A generation written too recently for the writes before it to have surely landed
    // is not trusted: every validation reconciles until it settles.
    let unsettled = ListingCache::new(Duration::ZERO, HOUR, HOUR);
    for _ in 0..2 {
        let (_, cost) = cached(&unsettled, &repo, &counting, &first(10)).await;
        assert!(cost.list > 0, "{cost:?}");
    }

    // A writer that does not bump: the kept listing may miss its backup until the
    // maximum age, never longer (here zero: at once).
    let aged = ListingCache::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    cached(&aged, &repo, &counting, &first(10)).await;
    write_without_bump(&repo, &nth(40)).await;
    let (page, cost) = cached(&cache, &repo, &counting, &first(10)).await;
    assert_eq!((cost.get, cost.list), (1, 0));
    assert_eq!(
        page.backups[0].summary.name,
        nth(29).name,
        "stale, not wrong"
    );
    let (page, _) = cached(&aged, &repo, &counting, &first(10)).await;
    assert_eq!(page.backups[0].summary.name, nth(40).name);
    assert!(page
        .notes
        .iter()
        .any(|n| n.contains("read from their summaries")));
}

#[tokio::test]
async fn a_missing_damaged_or_forged_generation_falls_back_to_the_summaries_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, counting) = open_repo(dir.path()).await;
    for i in 0..20 {
        repo.save_summary(&nth(i)).await.unwrap();
    }
    repo.compact_listing(true).await.unwrap();
    let cache = ListingCache::new(Duration::ZERO, Duration::ZERO, HOUR);
    let (page, _) = cached(&cache, &repo, &counting, &first(5)).await;
    assert!(page.notes.is_empty(), "{:?}", page.notes);
    let generation = dir.path().join(layout::LISTING_GENERATION);

    // Missing: every validation reconciles, and the page says why.
    write_without_bump(&repo, &nth(21)).await;
    std::fs::remove_file(&generation).unwrap();
    for _ in 0..2 {
        let (page, cost) = cached(&cache, &repo, &counting, &first(5)).await;
        assert!(cost.list > 0, "{cost:?}");
        assert_eq!(page.backups[0].summary.name, nth(21).name);
        assert!(
            page.notes
                .iter()
                .any(|n| n.contains("no listing generation object")),
            "{:?}",
            page.notes
        );
    }

    // A bump by a writer: trusted again.
    repo.save_summary(&nth(22)).await.unwrap();
    let (page, _) = cached(&cache, &repo, &counting, &first(5)).await;
    assert_eq!(page.backups[0].summary.name, nth(22).name);
    let (_, cost) = cached(&cache, &repo, &counting, &first(5)).await;
    assert_eq!((cost.get, cost.list), (1, 0));

    // Forged: a generation sealed by another repository (whose key this one does not
    // have), and plain garbage. Neither is trusted; the summaries are read.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = open_repo(other_dir.path()).await;
    other.bump_listing_generation().await.unwrap();
    let forged = std::fs::read(other_dir.path().join(layout::LISTING_GENERATION)).unwrap();
    for (bytes, unbumped) in [(forged, 23), (b"STRO garbage".to_vec(), 24)] {
        write_without_bump(&repo, &nth(unbumped)).await;
        std::fs::write(&generation, &bytes).unwrap();
        let (page, cost) = cached(&cache, &repo, &counting, &first(5)).await;
        assert!(cost.list > 0, "{cost:?}");
        assert_eq!(page.backups[0].summary.name, nth(unbumped).name);
        assert!(
            page.notes.iter().any(|n| n.contains("does not decode")),
            "{:?}",
            page.notes
        );
    }
    // A damaged copy of this repository's own generation: the same.
    repo.save_summary(&nth(25)).await.unwrap();
    let mut bytes = std::fs::read(&generation).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    std::fs::write(&generation, &bytes).unwrap();
    write_without_bump(&repo, &nth(26)).await;
    let (page, _) = cached(&cache, &repo, &counting, &first(5)).await;
    assert_eq!(page.backups[0].summary.name, nth(26).name);
    assert!(page.notes.iter().any(|n| n.contains("does not decode")));
}
