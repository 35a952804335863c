//! What an index of N blobs costs in memory: the local index table (memory-mapped) against
//! the in-memory hash map, each in its own process run, on fabricated index entries.
//!
//! ```sh
//! cargo run --release -p strata-repo --example index_memory -- table 10000000 /tmp/ix
//! cargo run --release -p strata-repo --example index_memory -- map 10000000
//! ```
//!
//! Prints the anonymous resident memory (RssAnon) after the index is ready and after a
//! million lookups, the file-backed resident memory (RssFile: the mapped table's pages in
//! the page cache), the table's size on disk, and the lookup rate.

use std::time::Instant;
use strata_repo::index::{BlobIndex, IndexFile, IndexedPack, MemoryIndex};
use strata_repo::index_table::IndexTable;
use strata_repo::pack::PackEntry;
use strata_repo::BlobId;

/// Blobs per fabricated pack (a 16 MiB pack of 128 KiB chunks).
const PER_PACK: u64 = 128;

fn id(n: u64) -> BlobId {
    BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

/// The fabricated index object `part` of `parts`, covering blobs `range`.
fn index_file(range: std::ops::Range<u64>) -> IndexFile {
    let mut packs = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = (start + PER_PACK).min(range.end);
        packs.push(IndexedPack {
            id: id(u64::MAX - start),
            size: 16 << 20,
            blobs: (start..end)
                .map(|n| PackEntry {
                    id: id(n),
                    offset: (n - start) * (128 << 10),
                    length: 100_000,
                    raw_length: 131_072,
                    compressed: true,
                })
                .collect(),
        });
        start = end;
    }
    IndexFile { packs }
}

/// Bytes of the files under `dir`.
fn disk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                disk_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("table");
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch = 1_000_000u64;
    let clock = Instant::now();
    let lookup: Box<dyn Fn(&BlobId) -> bool> = match kind {
        "map" => {
            let mut index = MemoryIndex::default();
            for start in (0..n).step_by(batch as usize) {
                let file = index_file(start..(start + batch).min(n));
                index.add_object(&format!("index/{start}"), &file);
            }
            Box::new(move |id| index.contains(id))
        }
        _ => {
            let dir = std::path::PathBuf::from(args.get(3).expect("a directory for the table"));
            let _ = std::fs::remove_dir_all(&dir);
            let mut table = IndexTable::open(&dir).unwrap();
            for start in (0..n).step_by(batch as usize) {
                let file = index_file(start..(start + batch).min(n));
                table.add_object(&format!("index/{start}"), &file);
                table.commit().unwrap();
            }
            drop(table);
            let size = disk_size(&dir);
            println!(
                "table on disk: {size} bytes ({:.1} per blob)",
                size as f64 / n as f64
            );
            let table = IndexTable::open(&dir).unwrap();
            println!(
                "reopened: RssAnon {}, RssFile {}",
                status("RssAnon"),
                status("RssFile")
            );
            Box::new(move |id| table.contains(id))
        }
    };
    println!(
        "{kind}: {n} blobs ready in {:.1} s; RssAnon {}",
        clock.elapsed().as_secs_f64(),
        status("RssAnon")
    );
    let clock = Instant::now();
    let lookups = 1_000_000u64;
    let mut found = 0;
    for i in 0..lookups {
        // Half present, half absent.
        let probe = if i % 2 == 0 { (i * 7919) % n } else { n + i };
        found += lookup(&id(probe)) as u64;
    }
    let secs = clock.elapsed().as_secs_f64();
    assert_eq!(found, lookups / 2);
    println!(
        "{kind}: {lookups} lookups in {secs:.2} s ({:.0}/s); RssAnon {}, RssFile {}",
        lookups as f64 / secs,
        status("RssAnon"),
        status("RssFile")
    );
}
