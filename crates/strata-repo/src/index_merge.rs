//! Keeping the number and the size of index objects bounded.
//!
//! Every writer adds an index object (a backup node, a `wal-push`), so between two
//! garbage collections their number grows with the writes; and one object listing the
//! whole repository would be fetched and decoded whole by every new view. So:
//!
//! - no index object lists more than [`crate::index::MAX_PACKS_PER_OBJECT`] packs, nor
//!   more than [`crate::index::MAX_BLOBS_PER_OBJECT`] blobs (every writer cuts its
//!   output there, [`crate::index::bounded_objects`]; garbage collection and `migrate`
//!   cut objects written before), so a fresh host's first reading of the index holds
//!   one bounded object at a time;
//! - once [`MERGE_AT`] small objects (under [`SMALL_OBJECT`] bytes) exist, a writer that
//!   holds the cluster lock merges them into few bounded ones
//!   ([`Repository::merge_small_index_objects`]): like a log-structured store's first
//!   level, so a view's refresh after many small writes reads few objects.
//!
//! A merge writes the merged objects first and deletes the small ones after: a reader in
//! between sees the packs twice (harmless), never zero times. It runs only under the
//! cluster lock, which garbage collection (the other rewriter of index objects) holds
//! too, so the two never interleave; deletes are fenced like every write.

use crate::index::{bounded_objects, IndexedPack};
use crate::layout;
use crate::{RepoResult, Repository};

/// Index objects below this size count as small (a few hundred packs).
pub const SMALL_OBJECT: u64 = 256 * 1024;
/// A merge starts at this many small objects.
pub const MERGE_AT: usize = 16;

impl Repository {
    /// Writes `packs` as index objects within the bound (at most
    /// [`crate::index::MAX_PACKS_PER_OBJECT`] packs and
    /// [`crate::index::MAX_BLOBS_PER_OBJECT`] blobs, see [`crate::index::fits`]);
    /// returns their keys.
    pub async fn write_index_objects(&self, packs: Vec<IndexedPack>) -> RepoResult<Vec<String>> {
        let mut keys = Vec::new();
        for file in bounded_objects(packs) {
            keys.push(self.write_index(&file).await?);
        }
        Ok(keys)
    }

    /// Merges the small index objects into bounded ones when there are at least
    /// [`MERGE_AT`]; returns how many were merged. The caller holds the cluster lock (see
    /// the module documentation). A small object that does not decode is left alone for
    /// `strata repair index`.
    pub async fn merge_small_index_objects(&self) -> RepoResult<usize> {
        self.check_writable()?;
        let mut small: Vec<String> = self
            .list_index_objects()
            .await?
            .into_iter()
            .filter(|o| o.size < SMALL_OBJECT)
            .map(|o| o.key)
            .collect();
        if small.len() < MERGE_AT {
            return Ok(0);
        }
        small.sort();
        let mut packs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut merged = Vec::new();
        for key in small {
            match self.read_index(&key).await {
                Ok(file) => {
                    packs.extend(file.packs.into_iter().filter(|p| seen.insert(p.id)));
                    merged.push(key);
                }
                Err(err) if err.is_damage() => {}
                Err(crate::RepoError::Store(e)) if e.is_not_found() => {}
                Err(err) => return Err(err),
            }
        }
        packs.sort_by_key(|p| p.id);
        let written = self.write_index_objects(packs).await?;
        for key in merged.iter().filter(|k| !written.contains(k)) {
            self.store().delete(key).await?;
        }
        debug_assert!(merged.iter().all(|k| k.starts_with(layout::INDEX)));
        Ok(merged.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexFile, MAX_BLOBS_PER_OBJECT, MAX_PACKS_PER_OBJECT};
    use crate::pack::PackEntry;
    use crate::BlobId;

    fn id(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    fn pack(n: u64) -> IndexedPack {
        IndexedPack {
            id: id(1 << 40 | n),
            size: 1000,
            blobs: vec![PackEntry {
                id: id(n),
                offset: 0,
                length: 900,
                raw_length: 1000,
                compressed: false,
            }],
        }
    }

    #[tokio::test]
    async fn small_objects_are_merged_into_bounded_ones_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        for n in 0..(MERGE_AT as u64 - 1) {
            repo.write_index(&IndexFile {
                packs: vec![pack(n), pack(n + 1)],
            })
            .await
            .unwrap();
        }
        assert_eq!(
            repo.merge_small_index_objects().await.unwrap(),
            0,
            "too few"
        );
        repo.write_index(&IndexFile {
            packs: vec![pack(99)],
        })
        .await
        .unwrap();
        assert_eq!(repo.merge_small_index_objects().await.unwrap(), MERGE_AT);
        assert_eq!(repo.list_index_objects().await.unwrap().len(), 1);
        repo.reload_index().await.unwrap();
        let index = repo.index();
        assert_eq!(index.len(), MERGE_AT + 1, "each pack once");
        for n in (0..MERGE_AT as u64).chain([99]) {
            assert!(index.contains(&id(n)), "blob {n}");
        }
    }

    /// Packs of many small blobs: objects are cut by blobs too, never inside a pack; a
    /// pack larger than the bound (written before packs were bounded) is an object alone.
    #[tokio::test]
    async fn no_object_lists_more_blobs_than_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        let sized = |n: u64, blobs: u64| {
            let mut p = pack(n);
            let template = p.blobs[0];
            p.blobs = (0..blobs)
                .map(|b| PackEntry {
                    id: id(1_000_000 * (n + 1) + b),
                    ..template
                })
                .collect();
            p
        };
        let mut packs: Vec<IndexedPack> = (0..40u64).map(|n| sized(n, 5_000)).collect();
        packs.insert(20, sized(99, 20_000));
        let keys = repo.write_index_objects(packs).await.unwrap();
        let mut total = 0;
        let mut alone = 0;
        for key in &keys {
            let file = repo.read_index(key).await.unwrap();
            let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
            if file.packs.len() == 1 && blobs > MAX_BLOBS_PER_OBJECT {
                alone += 1;
            } else {
                assert!(blobs <= MAX_BLOBS_PER_OBJECT, "{key}: {blobs} blobs");
            }
            total += blobs;
        }
        assert_eq!(total, 220_000);
        assert_eq!(alone, 1, "the large pack alone");
        // Three packs of 5,000 per object (a fourth would pass 16,384): 20 packs before
        // the large one in 7 objects, 20 after it in 7.
        assert_eq!(keys.len(), 15);
    }

    #[tokio::test]
    async fn no_object_lists_more_than_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        let packs = (0..(MAX_PACKS_PER_OBJECT as u64 * 2 + 1))
            .map(pack)
            .collect();
        let keys = repo.write_index_objects(packs).await.unwrap();
        assert_eq!(keys.len(), 3);
        for key in keys {
            assert!(repo.read_index(&key).await.unwrap().packs.len() <= MAX_PACKS_PER_OBJECT);
        }
    }

    /// Small objects whose packs add up past the bound (16 of 5,000 blobs, 2 of them in
    /// packs of 1,000): the merge writes objects within it, listing every pack once.
    #[tokio::test]
    async fn a_merge_leaves_no_index_object_over_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::plain(dir.path()).await;
        for n in 0..MERGE_AT as u64 {
            let sizes: &[u64] = if n < 2 { &[1000; 5] } else { &[5000] };
            let packs = sizes
                .iter()
                .enumerate()
                .map(|(i, &blobs)| {
                    let mut p = pack(n * 10 + i as u64);
                    let template = p.blobs[0];
                    p.blobs = (0..blobs)
                        .map(|b| PackEntry {
                            id: id(10_000_000 * (n * 10 + i as u64 + 1) + b),
                            ..template
                        })
                        .collect();
                    p
                })
                .collect();
            repo.write_index(&IndexFile { packs }).await.unwrap();
        }
        assert_eq!(repo.merge_small_index_objects().await.unwrap(), MERGE_AT);
        assert_eq!(
            crate::test_repo::objects_over_bound(&repo).await,
            Vec::new()
        );
        repo.reload_index().await.unwrap();
        assert_eq!(repo.index().len(), 80_000, "every blob once");
    }
}
