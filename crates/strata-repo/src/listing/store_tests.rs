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
