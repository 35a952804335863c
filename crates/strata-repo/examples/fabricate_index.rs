//! Fills an existing repository with index objects of fabricated packs, for benchmarks of
//! the engine at the size of real clusters (a repository of N blobs without storing N
//! blobs). The packs do not exist: only what reads the index (every backup and WAL push
//! asking "is this blob new?", the local index table) sees them; restores and
//! verification of real backups in the same repository are unaffected.
//!
//! ```sh
//! strata init                       # with STRATA_REPO, STRATA_PASSWORD set
//! cargo run --release -p strata-repo --example fabricate_index -- REPO_DIR 100000000
//! ```
//!
//! Packs hold 128 blobs (128 KiB chunks in 16 MiB packs), or `STRATA_FABRICATE_PER_PACK`
//! (packs of small files hold tens of thousands); objects are cut where writers, garbage
//! collection and merges cut them (4,096 packs or 65,536 blobs beside the last pack's).
//! The password comes from `STRATA_PASSWORD`. With
//! `STRATA_FABRICATE_PACKS=sparse` each pack is also made as a sparse file of its size
//! (no disk blocks), so `verify` finds every indexed pack with its size.
//!
//! With a third argument, `--garbage PERCENT`, it also makes work for garbage collection:
//! archive records (space `fabricated`, 100,000 chunks each) reference every blob of the
//! packs but PERCENT of them, spread evenly; each unreferenced pack is stored as a tiny
//! object (a sparse file with `STRATA_FABRICATE_PACKS=sparse`; a collection condemns,
//! unindexes and deletes it; the referenced ones need not exist, which a collection never
//! notices: it reads no pack it keeps).

use std::sync::Arc;
use std::time::Instant;
use strata_repo::archive::ArchivedFile;
use strata_repo::index::{IndexedPack, MAX_BLOBS_PER_OBJECT, MAX_PACKS_PER_OBJECT};
use strata_repo::pack::PackEntry;
use strata_repo::{BlobId, Repository};

/// Blobs of a fabricated pack unless `STRATA_FABRICATE_PER_PACK` says otherwise.
const DEFAULT_PER_PACK: u64 = 128;

/// Chunks listed by one fabricated archive record.
const PER_RECORD: usize = 100_000;

fn id(n: u64) -> BlobId {
    BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("a repository directory");
    let blobs: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .expect("a number of blobs");
    let garbage: Option<u64> = match args.get(3).map(String::as_str) {
        Some("--garbage") => Some(
            args.get(4)
                .and_then(|s| s.parse().ok())
                .filter(|p| *p <= 100)
                .expect("--garbage PERCENT"),
        ),
        Some(other) => panic!("unknown argument {other}"),
        None => None,
    };
    // Pack number n (its first blob / the blobs a pack) is garbage when this says so.
    let is_garbage = |pack: u64| garbage.is_some_and(|percent| (pack * 37) % 100 < percent);
    let password = std::env::var("STRATA_PASSWORD").ok();
    let store: strata_store::DynStore = Arc::new(strata_store::LocalStore::new(dir));
    let repo = Repository::open_catalog(store.clone(), password.as_deref())
        .await
        .expect("the repository opens");
    let sparse = std::env::var("STRATA_FABRICATE_PACKS").as_deref() == Ok("sparse");
    let per_pack: u64 = std::env::var("STRATA_FABRICATE_PER_PACK")
        .ok()
        .map(|n| {
            n.parse()
                .expect("STRATA_FABRICATE_PER_PACK is a number of blobs")
        })
        .unwrap_or(DEFAULT_PER_PACK)
        .max(1);
    // Each pack's entries span at most 16 MiB, whatever the count.
    let spacing = (16u64 << 20) / per_pack;
    let clock = Instant::now();
    let per_object = (MAX_PACKS_PER_OBJECT as u64 * per_pack)
        .min(MAX_BLOBS_PER_OBJECT as u64 + per_pack)
        .div_ceil(per_pack)
        * per_pack;
    let mut start = 0;
    while start < blobs {
        let end = (start + per_object).min(blobs);
        let packs: Vec<IndexedPack> = (start..end)
            .step_by(per_pack as usize)
            .map(|first| IndexedPack {
                id: id(u64::MAX - first),
                size: 16 << 20,
                blobs: (first..(first + per_pack).min(end))
                    .map(|n| PackEntry {
                        id: id(n),
                        offset: (n - first) * spacing,
                        length: spacing.min(100_000) as u32,
                        raw_length: 131_072,
                        compressed: true,
                    })
                    .collect(),
            })
            .collect();
        if sparse {
            for pack in &packs {
                let path = std::path::Path::new(dir).join(strata_repo::layout::pack_key(&pack.id));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::File::create(&path)
                    .and_then(|f| f.set_len(pack.size))
                    .expect("sparse pack file");
            }
        } else if garbage.is_some() {
            for first in (start..end).step_by(per_pack as usize) {
                if !is_garbage(first / per_pack) {
                    continue;
                }
                let key = strata_repo::layout::pack_key(&id(u64::MAX - first));
                store
                    .put(&key, bytes::Bytes::from_static(b"fabricated"))
                    .await
                    .expect("pack stored");
            }
        }
        repo.write_index_objects(packs)
            .await
            .expect("index written");
        start = end;
        eprint!("\r{start} blobs");
    }
    if garbage.is_some() {
        let mut chunks = Vec::new();
        let mut records = 0;
        for n in 0..blobs {
            if !is_garbage(n / per_pack) {
                chunks.push(id(n));
            }
            if chunks.len() == PER_RECORD || (n + 1 == blobs && !chunks.is_empty()) {
                let name = format!("record-{records:08}");
                let file = ArchivedFile {
                    content_id: id(u64::MAX / 2 - records),
                    name,
                    size: chunks.len() as u64 * 131_072,
                    chunks: std::mem::take(&mut chunks),
                    stored: "2026-01-01T00:00:00Z".into(),
                    meta: Default::default(),
                };
                repo.save_archived("fabricated", &file)
                    .await
                    .expect("record written");
                records += 1;
            }
        }
        eprintln!("{records} archive records reference the blobs of the packs that stay");
    }
    eprintln!(
        "\n{blobs} fabricated blobs in {} index objects, {:.0} s",
        blobs.div_ceil(per_object),
        clock.elapsed().as_secs_f64()
    );
}
