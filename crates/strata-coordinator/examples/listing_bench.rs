//! Fabricates backups for the listing benchmark (`bench/listing.sh`) and measures what
//! reading them costs, in requests and time, through the same functions `strata list`
//! and `strata show latest` use.
//!
//!     listing_bench synth LOCATION COUNT   # COUNT backups: summaries and listing entries,
//!                                          # 64 writes at a time, then one compaction
//!     listing_bench cost LOCATION          # LISTs, keys listed, GETs and ms of: a page of
//!                                          # 50, the next one, latest, and the same from a
//!                                          # kept listing
//!
//! LOCATION is a directory or an object storage URL (`s3://bucket/prefix`, configured from
//! the environment as strata does); the repository must exist (`strata init`), its
//! password in `STRATA_PASSWORD`. The backups are summaries only (one node, no manifest,
//! no data): what a listing reads, not what a restore needs.

use futures::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_coordinator::listing::{self, PageQuery};
use strata_coordinator::listing_cache::{self, ListingCache};
use strata_repo::summary::{BackupStatus, BackupSummary, NodeSummary};
use strata_repo::Repository;
use strata_store::{CountingStore, DynStore};

/// The `i`-th fabricated backup: hourly from 2025-01-01, every 25th failed.
fn fabricated(i: u64) -> BackupSummary {
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_735_689_600 + i * 3600);
    let text = humantime::format_rfc3339_seconds(start).to_string();
    let compact: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
    let status = if i % 25 == 7 {
        BackupStatus::Failed
    } else {
        BackupStatus::Complete
    };
    BackupSummary {
        name: format!("{compact}-{i:08x}"),
        started: humantime::format_rfc3339_millis(start).to_string(),
        host_started: None,
        duration_ms: 60_000 + i % 1000,
        status,
        strata_version: env!("CARGO_PKG_VERSION").into(),
        nodes: vec![NodeSummary {
            name: "db1".into(),
            status,
            roots: vec!["/var/lib/postgresql/15/main".into()],
            files: 2_000 + i % 100,
            dirs: 40,
            bytes: 10 << 30,
            stored_bytes: 3 << 30,
            new_bytes: 50 << 20,
            new_blobs: 400,
            files_read: 30,
            has_manifest: true,
            ..NodeSummary::default()
        }],
        requests: None,
        components: Vec::new(),
        still_paused: Vec::new(),
    }
}

async fn open(location: &str) -> (Arc<Repository>, CountingStore) {
    let store = strata_store::open_location(location, &Default::default()).expect("a location");
    let counting = CountingStore::new(store);
    let store: DynStore = Arc::new(counting.clone());
    let password = std::env::var("STRATA_PASSWORD").ok();
    let repo = Repository::open_catalog(store, password.as_deref())
        .await
        .expect("the repository opens");
    (repo, counting)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("synth"), Some(location)) => {
            let count: u64 = args.get(3).and_then(|c| c.parse().ok()).expect("a COUNT");
            let (repo, _) = open(location).await;
            let clock = Instant::now();
            stream::iter(0..count)
                .for_each_concurrent(64, |i| {
                    let repo = repo.clone();
                    async move { repo.save_summary(&fabricated(i)).await.expect("written") }
                })
                .await;
            let written = clock.elapsed();
            let lock = strata_coordinator::lock::RepoLock::acquire(
                repo.store().clone(),
                "bench-compaction",
                "compact",
                Duration::from_secs(600),
            )
            .await
            .expect("the cluster lock");
            let report = repo.compact_listing(true).await.expect("compacted");
            lock.release().await;
            println!(
                "{count} backups written in {:.1} s, compacted into {} pages in {:.1} s",
                written.as_secs_f64(),
                report.pages_written,
                (clock.elapsed() - written).as_secs_f64()
            );
        }
        (Some("cost"), Some(location)) => {
            let (repo, counting) = open(location).await;
            let sources = [("main", repo.as_ref())];
            // LISTs as calls, and the keys they returned (S3 sends a thousand a request).
            let measure =
                |what: &str, before: (strata_store::RequestCounts, u64), clock: Instant| {
                    let cost = counting.counts().since(&before.0);
                    println!(
                        "{what}\t{}\t{}\t{}\t{:.1}",
                        cost.list,
                        counting.keys_listed() - before.1,
                        cost.get,
                        clock.elapsed().as_secs_f64() * 1000.0
                    );
                };
            let counts = || (counting.counts(), counting.keys_listed());
            println!("what\tLIST\tkeys listed\tGET\tms");
            let (before, clock) = (counts(), Instant::now());
            let page = listing::page(
                &sources,
                &PageQuery {
                    limit: 50,
                    cursor: None,
                },
            )
            .await
            .expect("a page");
            assert_eq!(page.backups.len(), 50.min(page.total));
            measure("page of 50", before, clock);
            if let Some(cursor) = page.next.clone() {
                let (before, clock) = (counts(), Instant::now());
                let query = PageQuery {
                    limit: 50,
                    cursor: Some(cursor),
                };
                let next = listing::page(&sources, &query).await.expect("a page");
                assert_eq!(next.backups.len(), 50.min(page.total - 50));
                measure("next page of 50", before, clock);
            }
            let (before, clock) = (counts(), Instant::now());
            let latest = listing::latest(&sources).await.expect("latest");
            assert!(latest.is_some());
            measure("latest", before, clock);
            // What a server does: the listing kept, validated here at every page (a
            // server validates at most once a second) by one GET of its generation.
            let kept = ListingCache::new(Duration::ZERO, Duration::ZERO, listing_cache::MAX_AGE);
            let first = PageQuery {
                limit: 50,
                cursor: None,
            };
            let (before, clock) = (counts(), Instant::now());
            kept.page(&sources, &first, 0).await.expect("a page");
            measure("kept listing: reconcile", before, clock);
            let (before, clock) = (counts(), Instant::now());
            let page = kept.page(&sources, &first, 0).await.expect("a page");
            assert_eq!(page.backups.len(), 50.min(page.total));
            measure("kept listing: validated page of 50", before, clock);
            let (before, clock) = (counts(), Instant::now());
            kept.latest(&sources, 0).await.expect("latest");
            measure("kept listing: validated latest", before, clock);
        }
        _ => {
            eprintln!("usage: listing_bench synth LOCATION COUNT | cost LOCATION");
            std::process::exit(2);
        }
    }
}
