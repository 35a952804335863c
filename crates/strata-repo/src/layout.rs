//! The repository's key layout: every prefix and key name of a repository, in one place.
//!
//! `strata-repo` owns the layout of the objects in a store, including the ones written by
//! upper layers (locks, writer marks, pins, verification records, the audit log): a reader
//! of the format, a migration, garbage collection and the store's cache and fence all
//! need the same answer to "what lives where", and two copies of a prefix drift. Upper
//! layers build their keys with the functions and constants here; `strata-store`, which
//! sits below this crate, is handed [`cacheable`] and [`makes_visible`] as rules by whoever
//! builds the store stack, so it knows no prefix itself. See docs/format.md.

use crate::id::PackId;

/// The repository's config (format version, chunker, key-wrapping parameters).
pub const CONFIG: &str = "config";
/// Wrapped data keys: `keys/<key id>`.
pub const KEYS: &str = "keys/";
/// Pack files: `data/<first two hex digits>/<pack id in hex>`.
pub const DATA: &str = "data/";
/// Index objects: `index/<id in hex>`.
pub const INDEX: &str = "index/";
/// Node manifests: `manifests/<backup>/<node>`.
pub const MANIFESTS: &str = "manifests/";
/// Backup summaries: `summaries/<backup>`.
pub const SUMMARIES: &str = "summaries/";
/// Archived files (WAL and others): `archive/<space>/<name>`.
pub const ARCHIVE: &str = "archive/";
/// The audit log: `audit/<milliseconds, 13 digits>-<random hex>`.
pub const AUDIT: &str = "audit/";
/// The cluster lock: the chain `locks/cluster/<generation>.json` (and, from older
/// stratas, `locks/<operation>/<generation>.json` and `locks/<operation>.json`).
pub const LOCKS: &str = "locks/";
/// Archive writers' marks: `writers/<operation>.json`.
pub const WRITERS: &str = "writers/";
/// Pins that keep a backup from retention: `pins/<backup>`.
pub const PINS: &str = "pins/";
/// Verification records: `verified/<backup>/<milliseconds>-<outcome>-<mode>`.
pub const VERIFIED: &str = "verified/";
/// The backup listing (format version 4): `listing/entries/<position>` and
/// `listing/pages/<oldest position>/<newest position>/<id>-<count>` (see
/// `crate::listing`).
pub const LISTING: &str = "listing/";
/// The listing's generation object, replaced by every listing write (see
/// `crate::listing::generation`). The one object under `listing/` that changes under its
/// key: never cached.
pub const LISTING_GENERATION: &str = "listing/generation";

/// Compression dictionaries (format version 5): `dicts/<id, 8 hex digits>` (see
/// `crate::dictionary`). Written once, never changed, never deleted.
pub const DICTS: &str = "dicts/";

/// Packs condemned by garbage collection: `gc/condemned/<run>/packs` and
/// `gc/condemned/<run>/writers` (see `crate::condemned`).
pub const CONDEMNED: &str = "gc/condemned/";

/// Objects written once and never changed under their key (a pin rewritten by a second
/// `pin` says the same thing, so its old copy stays right): a local copy stays valid for
/// as long as the object exists. The config changes on migration; a cache reads it from
/// the store every time and drops everything when it differs (see `strata_store::cache`).
const CACHEABLE: [&str; 8] = [
    SUMMARIES, MANIFESTS, INDEX, KEYS, VERIFIED, PINS, LISTING, DICTS,
];

/// Objects that make data visible to readers: written by a process that has lost its
/// lock, they must be refused (the store's fence). Packs are not among them: nothing
/// reads a pack until an index object names it. The listing shows nothing its summaries
/// do not, but a holder that lost its lock must not replace pages either.
const VISIBLE: [&str; 6] = [INDEX, MANIFESTS, SUMMARIES, ARCHIVE, LISTING, CONDEMNED];

/// Whether a store cache may keep `key` (the rule handed to `strata_store::CachingStore`).
pub fn cacheable(key: &str) -> bool {
    key == CONFIG || (key != LISTING_GENERATION && CACHEABLE.iter().any(|p| key.starts_with(p)))
}

/// Whether writing `key` makes data visible (the rule handed to `strata_store::FencedStore`).
pub fn makes_visible(key: &str) -> bool {
    // A bump of the listing generation shows nothing: it only makes readers reconcile
    // again, so even a writer that lost its lock may (and should) make one.
    key != LISTING_GENERATION && VISIBLE.iter().any(|p| key.starts_with(p))
}

/// Whether deleting `key` needs the cluster lock (the rule of
/// `strata_store::FencedStore::fencing_deletes`): everything but the coordination
/// objects (`locks/`, `writers/`), which their own protocols remove.
pub fn delete_needs_lock(key: &str) -> bool {
    !key.starts_with(LOCKS) && !key.starts_with(WRITERS)
}

/// The cache rule of a repository's store: cacheable objects, the config as the marker
/// whose change drops the cache, and the `keys/` listing remembered.
pub fn cache_rule() -> strata_store::CacheRule {
    strata_store::CacheRule {
        cacheable,
        generation_key: CONFIG,
        remembered_listing: KEYS,
    }
}

/// The key of a wrapped data key.
pub fn key_key(id: &str) -> String {
    format!("{KEYS}{id}")
}

/// The key of a pack: spread over 256 directories so no directory grows huge.
pub fn pack_key(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("{DATA}{}/{}", &hex[..2], hex)
}

/// The key of an index object named by its id.
pub fn index_key(id: &[u8]) -> String {
    format!("{INDEX}{}", hex::encode(id))
}

/// A new index object's key: random (the name is bound into the sealed object, so it
/// cannot be its hash).
pub fn new_index_key() -> String {
    let mut id = [0u8; 32];
    getrandom::getrandom(&mut id).expect("the OS random source is available");
    index_key(&id)
}

/// The prefix of every manifest of one backup.
pub fn manifests_of(backup: &str) -> String {
    format!("{MANIFESTS}{backup}/")
}

/// The key of a node manifest.
pub fn manifest_key(backup: &str, node: &str) -> String {
    format!("{MANIFESTS}{backup}/{node}")
}

/// The key of a backup summary.
pub fn summary_key(backup: &str) -> String {
    format!("{SUMMARIES}{backup}")
}

/// The prefix of one archive space.
pub fn archive_space(space: &str) -> String {
    format!("{ARCHIVE}{space}/")
}

/// The key of an archived file's record.
pub fn archive_key(space: &str, name: &str) -> String {
    format!("{ARCHIVE}{space}/{name}")
}

/// The key of a pin.
pub fn pin_key(backup: &str) -> String {
    format!("{PINS}{backup}")
}

/// The prefix of every verification record of one backup.
pub fn verified_of(backup: &str) -> String {
    format!("{VERIFIED}{backup}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_cover_what_the_format_says() {
        for key in [
            "config",
            "keys/0",
            "index/a",
            "manifests/b/n",
            "summaries/b",
        ] {
            assert!(cacheable(key), "{key}");
        }
        for key in [
            "pins/b",
            "verified/b/1-ok-data",
            "listing/entries/x",
            "listing/pages/x/y/z",
        ] {
            assert!(cacheable(key), "{key}");
        }
        // Packs are large and read once; locks, marks and the audit log change or grow;
        // the listing generation changes under its key.
        for key in [
            LISTING_GENERATION,
            "data/ab/abcd",
            "locks/backup.json",
            "writers/w.json",
            "audit/1-x",
        ] {
            assert!(!cacheable(key), "{key}");
        }
        for key in ["index/a", "manifests/b/n", "summaries/b", "archive/wal/x"] {
            assert!(makes_visible(key), "{key}");
        }
        for key in [
            "data/ab/x",
            "locks/backup.json",
            "config",
            "keys/0",
            "pins/b",
            LISTING_GENERATION,
        ] {
            assert!(!makes_visible(key), "{key}");
        }
        assert_eq!(manifest_key("b", "n"), "manifests/b/n");
        assert!(manifest_key("b", "n").starts_with(&manifests_of("b")));
        assert_eq!(archive_key("wal", "x"), "archive/wal/x");
        assert!(archive_key("wal", "x").starts_with(&archive_space("wal")));
    }
}
