//! The index: which pack holds each blob.
//!
//! Each writer stores `index/<id>` objects describing the packs it added (the same entries
//! as the pack headers). A blob not in the index does not exist for strata, even if some
//! pack holds it (an interrupted backup's packs are garbage until collected).
//!
//! A process sees the index through [`BlobIndex`]: a view of the index objects it has
//! read. A pack is **live** while at least one index object the view holds lists it; when
//! every object listing a pack is gone from the repository (garbage collection or a merge
//! replaced them), [`BlobIndex::forget_object`] makes its blobs unknown, so a view is kept
//! current by reading only the objects that appeared and forgetting those that vanished,
//! never by starting over. Two implementations:
//!
//! - [`crate::index_table::IndexTable`], on this host's disk and memory-mapped: what every
//!   command and server uses (a few bytes of memory per blob);
//! - [`MemoryIndex`], a hash map: for a process without a state directory (library users,
//!   unit tests), and the reference the table is tested against.

use crate::id::PackId;
use crate::pack::PackEntry;
use crate::BlobId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;

/// One pack as listed in an index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPack {
    /// The pack's id (the BLAKE3 hash of the pack file).
    pub id: PackId,
    /// Size of the pack object in bytes.
    pub size: u64,
    /// Every blob of the pack, as its header lists them.
    pub blobs: Vec<PackEntry>,
}

/// The payload of an `index/<id>` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// The packs the object indexes (at most [`MAX_PACKS_PER_OBJECT`] and
    /// [`MAX_BLOBS_PER_OBJECT`] blobs, see [`fits`]).
    pub packs: Vec<IndexedPack>,
}

/// The packs of an index object's plaintext, decoded one at a time. An [`IndexFile`] is
/// written by postcard as the count of its packs (a varint) and then each pack, so a
/// reader can take them one by one: what a refresh does, holding one pack's entries
/// instead of the whole object's (tens of MB decoded at the object bound).
#[derive(Debug)]
pub struct PacksOf<'a> {
    rest: &'a [u8],
    left: u64,
}

impl<'a> PacksOf<'a> {
    /// The packs of `plain`; an error when not even the count decodes.
    pub fn new(plain: &'a [u8]) -> Result<PacksOf<'a>, postcard::Error> {
        let (left, rest) = postcard::take_from_bytes::<u64>(plain)?;
        Ok(PacksOf { rest, left })
    }
}

impl Iterator for PacksOf<'_> {
    type Item = Result<IndexedPack, postcard::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        match postcard::take_from_bytes::<IndexedPack>(self.rest) {
            Ok((pack, rest)) => {
                self.rest = rest;
                self.left -= 1;
                Some(Ok(pack))
            }
            Err(err) => {
                // Nothing after a pack that does not decode.
                self.left = 0;
                Some(Err(err))
            }
        }
    }
}

/// Index objects hold at most this many packs: merges and garbage collection cut larger
/// ones, so no object grows with the repository.
pub const MAX_PACKS_PER_OBJECT: usize = 4096;

/// Index objects hold at most this many blob entries (about 45 bytes each encoded, 720
/// KiB an object): what a host reading the index holds of one object, twice at most
/// (sealed and opened), so a new host's first command needs no more memory than a later
/// one. A pack is never split between objects, so packs hold at most as many blobs
/// ([`crate::pack::MAX_BLOBS_PER_PACK`]); a pack written before that bound, larger, is
/// an object of its own.
pub const MAX_BLOBS_PER_OBJECT: usize = 1 << 14;

// A pack fits in an object: objects are cut between packs, never inside one.
const _: () = assert!(crate::pack::MAX_BLOBS_PER_PACK <= MAX_BLOBS_PER_OBJECT);

/// Whether a pack of `pack_blobs` blobs goes into an object of `packs` packs and `blobs`
/// blob entries within the bound (into an empty one always).
pub fn fits(packs: usize, blobs: usize, pack_blobs: usize) -> bool {
    packs == 0 || (packs < MAX_PACKS_PER_OBJECT && blobs + pack_blobs <= MAX_BLOBS_PER_OBJECT)
}

/// Whether an object listing packs of these blob counts (in its order) is over the
/// bound. Objects written before the bound (65,536 blobs beside the last pack's, or none
/// by blobs before that) can be: garbage collection and `migrate` cut them.
pub fn over_bound(pack_blobs: &[usize]) -> bool {
    let (mut packs, mut blobs) = (0, 0);
    for &count in pack_blobs {
        if !fits(packs, blobs, count) {
            return true;
        }
        packs += 1;
        blobs += count;
    }
    false
}

/// `packs` as the index objects that list them within the bound, in order (none for no
/// packs): what every writer of index objects writes.
pub fn bounded_objects(packs: Vec<IndexedPack>) -> Vec<IndexFile> {
    let mut objects = Vec::new();
    let mut current: Vec<IndexedPack> = Vec::new();
    let mut blobs = 0;
    for pack in packs {
        if !fits(current.len(), blobs, pack.blobs.len()) {
            objects.push(IndexFile {
                packs: std::mem::take(&mut current),
            });
            blobs = 0;
        }
        blobs += pack.blobs.len();
        current.push(pack);
    }
    if !current.is_empty() {
        objects.push(IndexFile { packs: current });
    }
    objects
}

/// Where a blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position of its pack in the view (see [`BlobIndex::pack`]).
    pub pack: u32,
    /// Where the sealed blob starts, in bytes from the start of the pack file.
    pub offset: u64,
    /// Sealed length in bytes.
    pub length: u32,
    /// Plaintext length in bytes.
    pub raw_length: u32,
    /// Whether the sealed bytes hold zstd data (or the raw plaintext).
    pub compressed: bool,
}

impl BlobLocation {
    /// The location of `entry` in the pack at `pack`.
    pub fn of(pack: u32, entry: &PackEntry) -> BlobLocation {
        BlobLocation {
            pack,
            offset: entry.offset,
            length: entry.length,
            raw_length: entry.raw_length,
            compressed: entry.compressed,
        }
    }
}

/// A process's view of a repository's index; see the module documentation.
pub trait BlobIndex: Send + Sync + std::fmt::Debug {
    /// Where a blob lives, in a live pack (one not condemned when there is one); `None`
    /// when no live pack holds it.
    fn get(&self, id: &BlobId) -> Option<BlobLocation>;

    /// True when a live pack that garbage collection has not condemned holds the blob:
    /// a writer then does not store it again (see [`crate::condemned`]).
    fn contains(&self, id: &BlobId) -> bool;

    /// Replaces the set of condemned packs (packs the view does not know are ignored).
    fn set_condemned(&mut self, packs: &std::collections::HashSet<PackId>);

    /// The pack id and size at a position returned by [`BlobIndex::get`].
    fn pack(&self, position: u32) -> (PackId, u64);

    /// How many blobs the pack at `position` holds (what says whether an object listing
    /// it is within the bound, see [`over_bound`]).
    fn pack_blobs(&self, position: u32) -> u32;

    /// Every live pack with its size.
    fn packs(&self) -> Vec<(PackId, u64)>;

    /// Every blob of a live pack once, with one of its locations, in blob id order
    /// (streamed: the view is not copied).
    fn blobs(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_>;

    /// Blob copies in live packs (a blob two packs hold counts twice).
    fn len(&self) -> usize;

    /// True when no live pack holds a blob.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index objects of the view (keys as the refresh names them), each with the
    /// positions of the packs it lists (positions as [`BlobIndex::pack`] takes them).
    fn object_map(&self) -> &HashMap<String, Vec<u32>>;

    /// Whether the index object `key` is in the view.
    fn has_object(&self, key: &str) -> bool {
        self.object_map().contains_key(key)
    }

    /// The keys of the index objects in the view.
    fn object_keys(&self) -> Vec<String> {
        self.object_map().keys().cloned().collect()
    }

    /// The index objects of the view with their packs' positions, so a collection knows
    /// which objects list a pack without fetching them.
    fn objects(&self) -> Vec<(String, Vec<u32>)> {
        self.object_map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every copy of every blob in a live pack, in blob id order (copies of one blob
    /// next to each other, in no particular order among themselves), streamed: what a
    /// collection joins with its sorted set of referenced ids.
    fn copies(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_>;

    /// Adds the packs and blobs of the index object `key` (once).
    fn add_object(&mut self, key: &str, file: &IndexFile) {
        if self.has_object(key) {
            return;
        }
        let positions = file.packs.iter().map(|pack| self.add_pack(pack)).collect();
        self.add_listing(key, positions);
    }

    /// Adds the index object `key` (once) from its plaintext, pack by pack: the view
    /// holds one pack's entries at a time, never the object decoded whole. An object that
    /// does not decode is not listed: the packs decoded before the error stay dead, as
    /// packs no object lists are.
    fn add_encoded(&mut self, key: &str, plain: &[u8]) -> Result<(), postcard::Error> {
        if self.has_object(key) {
            return Ok(());
        }
        let mut positions = Vec::new();
        for pack in PacksOf::new(plain)? {
            positions.push(self.add_pack(&pack?));
        }
        self.add_listing(key, positions);
        Ok(())
    }

    /// Makes a pack an index object lists known to the view with its blobs, not live yet
    /// (see [`BlobIndex::add_listing`]); returns its position. What adds an object pack
    /// by pack, so a large object is never decoded whole.
    fn add_pack(&mut self, pack: &IndexedPack) -> u32;

    /// Records that the index object `key` lists the packs at `positions` (from
    /// [`BlobIndex::add_pack`], each once or more): they are live while it is in the view.
    fn add_listing(&mut self, key: &str, positions: Vec<u32>);

    /// Drops the index object `key` from the view: the packs no other object lists stop
    /// being live.
    fn forget_object(&mut self, key: &str);

    /// Records added since the last [`BlobIndex::commit`] or [`BlobIndex::spill`] that
    /// wait in memory (a refresh reading many objects spills as it goes, so its memory
    /// stays bounded whatever the repository's size).
    fn pending_records(&self) -> usize {
        0
    }

    /// Moves the records waiting in memory to where they cost none (the table: sorted
    /// runs on disk, merged by tiers as a commit merges them, which the next commit names
    /// in `meta`); the view answers as before. The hash map has nowhere to put them.
    fn spill(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Makes the view durable where it has a place to be (the table writes its files;
    /// the hash map has nothing to do).
    fn commit(&mut self) -> io::Result<()>;

    /// Takes up the durable view another process of the host wrote since this one read
    /// or wrote it, when this one has nothing of its own to write (so a refresh then
    /// reads only what neither read). Returns whether it did.
    fn adopt_newer(&mut self) -> io::Result<bool> {
        Ok(false)
    }
}

/// `positions` without repeats, in their first order (an object may list a pack twice).
pub(crate) fn distinct(positions: Vec<u32>) -> Vec<u32> {
    let mut seen = std::collections::HashSet::with_capacity(positions.len());
    positions.into_iter().filter(|p| seen.insert(*p)).collect()
}

/// The first location not in a condemned pack, or else the first one: what
/// [`BlobIndex::get`] answers in both implementations.
pub(crate) fn prefer_uncondemned(
    locations: impl Iterator<Item = BlobLocation>,
    condemned: &std::collections::HashSet<u32>,
) -> Option<BlobLocation> {
    let mut fallback = None;
    for location in locations {
        if !condemned.contains(&location.pack) {
            return Some(location);
        }
        fallback.get_or_insert(location);
    }
    fallback
}

/// The positions of the known packs among `packs` (what [`BlobIndex::set_condemned`]
/// keeps in both implementations).
pub(crate) fn positions_of(
    packs: &std::collections::HashSet<PackId>,
    positions: &HashMap<PackId, u32>,
) -> std::collections::HashSet<u32> {
    packs
        .iter()
        .filter_map(|p| positions.get(p).copied())
        .collect()
}

/// The index as a hash map in memory (about 100 bytes per blob).
#[derive(Debug, Default, Clone)]
pub struct MemoryIndex {
    packs: Vec<(PackId, u64)>,
    pack_positions: HashMap<PackId, u32>,
    /// Per pack position: how many objects of the view list it.
    refs: Vec<u32>,
    /// Per pack position: its blobs.
    blob_counts: Vec<u32>,
    objects: HashMap<String, Vec<u32>>,
    blobs: HashMap<BlobId, BlobLocation>,
    /// Further copies of blobs, in other packs (after a repack, briefly).
    copies: HashMap<BlobId, Vec<BlobLocation>>,
    condemned: std::collections::HashSet<u32>,
}

impl MemoryIndex {
    fn live(&self, location: &BlobLocation) -> bool {
        self.refs[location.pack as usize] > 0
    }

    fn locations<'a>(&'a self, id: &BlobId) -> impl Iterator<Item = BlobLocation> + 'a {
        let copies = self.copies.get(id).map(Vec::as_slice).unwrap_or_default();
        self.blobs
            .get(id)
            .into_iter()
            .chain(copies)
            .filter(|l| self.live(l))
            .copied()
    }
}

impl BlobIndex for MemoryIndex {
    fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        prefer_uncondemned(self.locations(id), &self.condemned)
    }

    fn contains(&self, id: &BlobId) -> bool {
        self.locations(id)
            .any(|l| !self.condemned.contains(&l.pack))
    }

    fn set_condemned(&mut self, packs: &std::collections::HashSet<PackId>) {
        self.condemned = positions_of(packs, &self.pack_positions);
    }

    fn pack(&self, position: u32) -> (PackId, u64) {
        self.packs[position as usize]
    }

    fn pack_blobs(&self, position: u32) -> u32 {
        self.blob_counts[position as usize]
    }

    fn packs(&self) -> Vec<(PackId, u64)> {
        (0..self.packs.len())
            .filter(|&p| self.refs[p] > 0)
            .map(|p| self.packs[p])
            .collect()
    }

    fn blobs(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_> {
        let mut ids: Vec<BlobId> = self.blobs.keys().copied().collect();
        ids.sort_unstable();
        Box::new(
            ids.into_iter()
                .filter_map(|id| self.get(&id).map(|l| (id, l))),
        )
    }

    fn len(&self) -> usize {
        (0..self.packs.len())
            .filter(|&p| self.refs[p] > 0)
            .map(|p| self.blob_counts[p] as usize)
            .sum()
    }

    fn object_map(&self) -> &HashMap<String, Vec<u32>> {
        &self.objects
    }

    fn copies(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_> {
        let mut ids: Vec<BlobId> = self.blobs.keys().copied().collect();
        ids.sort_unstable();
        Box::new(ids.into_iter().flat_map(move |id| {
            self.locations(&id)
                .collect::<Vec<_>>()
                .into_iter()
                .map(move |l| (id, l))
        }))
    }

    fn add_pack(&mut self, pack: &IndexedPack) -> u32 {
        if let Some(&p) = self.pack_positions.get(&pack.id) {
            return p;
        }
        let p = self.packs.len() as u32;
        self.packs.push((pack.id, pack.size));
        self.pack_positions.insert(pack.id, p);
        self.refs.push(0);
        self.blob_counts.push(pack.blobs.len() as u32);
        for entry in &pack.blobs {
            let location = BlobLocation::of(p, entry);
            match self.blobs.entry(entry.id) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(location);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.copies.entry(entry.id).or_default().push(location)
                }
            }
        }
        p
    }

    fn add_listing(&mut self, key: &str, positions: Vec<u32>) {
        if self.objects.contains_key(key) {
            return;
        }
        let positions = distinct(positions);
        for &position in &positions {
            self.refs[position as usize] += 1;
        }
        self.objects.insert(key.to_string(), positions);
    }

    fn forget_object(&mut self, key: &str) {
        for position in self.objects.remove(key).unwrap_or_default() {
            self.refs[position as usize] -= 1;
        }
    }

    fn commit(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack(seed: u8, n: usize) -> IndexedPack {
        IndexedPack {
            id: BlobId([seed; 32]),
            size: 1234,
            blobs: (0..n)
                .map(|i| PackEntry {
                    id: BlobId([i as u8; 32]),
                    offset: i as u64 * 100,
                    length: 90,
                    raw_length: 200,
                    compressed: i % 2 == 0,
                })
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn index_files_roundtrip(n in 0usize..50, seed in any::<u8>()) {
            let pack = pack(seed, n);
            let file = IndexFile { packs: vec![pack.clone()] };
            let bytes = postcard::to_stdvec(&file).unwrap();
            let back: IndexFile = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &file);
            let mut index = MemoryIndex::default();
            index.add_object("index/a", &back);
            prop_assert_eq!(index.len(), n);
            for entry in &pack.blobs {
                let loc = index.get(&entry.id).unwrap();
                prop_assert_eq!(loc.offset, entry.offset);
                prop_assert_eq!(index.pack(loc.pack).0, pack.id);
            }
        }
    }

    #[test]
    fn a_pack_lives_while_an_object_lists_it_and_a_second_copy_takes_over() {
        let mut index = MemoryIndex::default();
        let (a, b) = (pack(1, 3), pack(2, 2));
        index.add_object(
            "index/one",
            &IndexFile {
                packs: vec![a.clone()],
            },
        );
        index.add_object(
            "index/merged",
            &IndexFile {
                packs: vec![a.clone()],
            },
        );
        index.add_object("index/two", &IndexFile { packs: vec![b] });
        index.forget_object("index/one");
        assert_eq!(index.get(&BlobId([2; 32])).unwrap().pack, 0, "still listed");
        index.forget_object("index/merged");
        // Blobs 0 and 1 have a second copy in pack 2; blob 2 is gone.
        assert_eq!(
            index.pack(index.get(&BlobId([0; 32])).unwrap().pack).0,
            BlobId([2; 32])
        );
        assert!(!index.contains(&BlobId([2; 32])));
        assert_eq!(index.len(), 2);
        assert_eq!(index.packs(), vec![(BlobId([2; 32]), 1234)]);
        assert_eq!(index.blobs().count(), 2);
    }
}
