//! The index: which pack holds each blob.
//!
//! Each backup writes `index/<id>` objects describing the packs it added (the same entries
//! as the pack headers). Opening a repository loads them all into an [`Index`]; a blob not
//! in the index does not exist for strata, even if some pack holds it (an interrupted
//! backup's packs are garbage until collected).

use crate::id::PackId;
use crate::pack::PackEntry;
use crate::BlobId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One pack as listed in an index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: PackId,
    /// Size of the pack object in bytes.
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

/// The payload of an `index/<id>` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexedPack>,
}

/// Where a blob lives; compact so millions of entries fit in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position in [`Index::packs`].
    pub pack: u32,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
    pub compressed: bool,
}

/// The in-memory index of a repository.
#[derive(Debug, Default, Clone)]
pub struct Index {
    packs: Vec<(PackId, u64)>,
    pack_positions: HashMap<PackId, u32>,
    blobs: HashMap<BlobId, BlobLocation>,
}

impl Index {
    /// Adds a pack and its blobs. A blob present in two packs keeps its first location.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        let position = *self.pack_positions.entry(pack.id).or_insert_with(|| {
            self.packs.push((pack.id, pack.size));
            (self.packs.len() - 1) as u32
        });
        for entry in &pack.blobs {
            self.blobs.entry(entry.id).or_insert(BlobLocation {
                pack: position,
                offset: entry.offset,
                length: entry.length,
                raw_length: entry.raw_length,
                compressed: entry.compressed,
            });
        }
    }

    /// Finds a blob.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.blobs.get(id).copied()
    }

    /// True when the blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// The pack id and size at a position.
    pub fn pack(&self, position: u32) -> (PackId, u64) {
        self.packs[position as usize]
    }

    /// Every pack with its size.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    /// Every blob with its location.
    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, &BlobLocation)> {
        self.blobs.iter()
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// True when the repository holds no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn index_files_roundtrip(n in 0usize..50, seed in any::<u8>()) {
            let pack = IndexedPack {
                id: BlobId([seed; 32]),
                size: 1234,
                blobs: (0..n).map(|i| PackEntry {
                    id: BlobId([i as u8; 32]), offset: i as u64 * 100, length: 90,
                    raw_length: 200, compressed: i % 2 == 0,
                }).collect(),
            };
            let file = IndexFile { packs: vec![pack.clone()] };
            let bytes = postcard::to_stdvec(&file).unwrap();
            let back: IndexFile = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &file);
            let mut index = Index::default();
            index.add_pack(&back.packs[0]);
            prop_assert_eq!(index.len(), n);
            for entry in &pack.blobs {
                let loc = index.get(&entry.id).unwrap();
                prop_assert_eq!(loc.offset, entry.offset);
                prop_assert_eq!(index.pack(loc.pack).0, pack.id);
            }
        }
    }
}
