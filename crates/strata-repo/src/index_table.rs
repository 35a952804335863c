//! The local index table: a repository's index on this host's disk, sorted by blob id and
//! memory-mapped, so a lookup touches a few pages of the page cache instead of a hash map
//! of every blob in anonymous memory.
//!
//! One file, `<dir>/table`, replaced whole by rename, so it is always self-consistent
//! (two processes of one host that refresh at once each write a whole table; the last
//! rename wins, and a process that mapped the other keeps its consistent mapping):
//!
//! ```text
//! "STRATAIX" | version u32 | count u64 | packs_len u64 | seen_len u64     (all LE)
//! packs      postcard: Vec<(PackId, size)>, in position order
//! seen       the index object keys the table holds, one per line
//! records    count x 48 bytes, sorted by id: id [32] | pack position u32 |
//!            offset u32 | length u32 | raw_length u32 (high bit: compressed)
//! ```
//!
//! The table is a cache of the repository's `index/` objects, never trusted over them: it
//! is rebuilt when missing or damaged (opening checks the header and the size, never
//! every record: a record naming no pack reads as absent), and it says which objects it holds, so a process
//! reads only the index objects it has not seen ([`IndexTable::seen`]). Entries added since
//! the table was written live in a small in-memory delta until [`IndexTable::flush`]
//! merges them into a new table (a streaming merge; files are replaced by rename, never
//! rewritten in place, so a mapped file never changes under a reader).
//!
//! In RAM: the delta, and the pack list (40 bytes per pack plus its position map: a pack
//! holds a hundred or more blobs, so under a byte per blob). On disk: 48 bytes per blob.

use crate::id::PackId;
use crate::index::{BlobLocation, IndexFile};
use crate::{BlobId, RepoError, Repository};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"STRATAIX";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 8;
const FILE: &str = "table";
/// Bytes per blob on disk.
pub const RECORD: usize = 48;
const COMPRESSED: u32 = 1 << 31;

/// A repository's index on local disk; see the module documentation.
#[derive(Debug)]
pub struct IndexTable {
    dir: PathBuf,
    /// The mapped table file (`None` while there is none).
    map: Option<memmap2::Mmap>,
    /// Where the records start in the map.
    records: usize,
    count: usize,
    packs: Vec<(PackId, u64)>,
    pack_positions: HashMap<PackId, u32>,
    delta: HashMap<BlobId, BlobLocation>,
    seen: BTreeSet<String>,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn encode(id: &BlobId, location: &BlobLocation) -> io::Result<[u8; RECORD]> {
    let offset = u32::try_from(location.offset)
        .map_err(|_| invalid(format!("blob offset {} past 4 GiB", location.offset)))?;
    if location.raw_length & COMPRESSED != 0 {
        return Err(invalid("blob raw length past 2 GiB"));
    }
    let mut record = [0u8; RECORD];
    record[..32].copy_from_slice(&id.0);
    record[32..36].copy_from_slice(&location.pack.to_le_bytes());
    record[36..40].copy_from_slice(&offset.to_le_bytes());
    record[40..44].copy_from_slice(&location.length.to_le_bytes());
    let raw = location.raw_length | if location.compressed { COMPRESSED } else { 0 };
    record[44..48].copy_from_slice(&raw.to_le_bytes());
    Ok(record)
}

fn decode(record: &[u8]) -> (BlobId, BlobLocation) {
    let word = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().unwrap());
    let raw = word(44);
    (
        BlobId(record[..32].try_into().unwrap()),
        BlobLocation {
            pack: word(32),
            offset: word(36) as u64,
            length: word(40),
            raw_length: raw & !COMPRESSED,
            compressed: raw & COMPRESSED != 0,
        },
    )
}

impl IndexTable {
    /// Opens the table in `dir`, or an empty one when there is none. A damaged table is
    /// an error: the caller removes `dir` and starts empty (the table is only a cache).
    pub fn open(dir: &Path) -> io::Result<IndexTable> {
        let mut table = IndexTable {
            dir: dir.to_path_buf(),
            map: None,
            records: 0,
            count: 0,
            packs: Vec::new(),
            pack_positions: HashMap::new(),
            delta: HashMap::new(),
            seen: BTreeSet::new(),
        };
        let file = match File::open(dir.join(FILE)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(table),
            Err(e) => return Err(e),
        };
        // SAFETY: the file is this host's own cache, replaced by rename and never
        // modified in place, so the mapping never changes under the reader.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(invalid("not an index table"));
        }
        let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap());
        let version = u32::from_le_bytes(map[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(invalid(format!("table version {version}")));
        }
        let (count, packs_len, seen_len) = (word(12), word(20), word(28));
        let records = (HEADER as u64)
            .checked_add(packs_len)
            .and_then(|n| n.checked_add(seen_len))
            .filter(|n| *n <= map.len() as u64)
            .ok_or_else(|| invalid("truncated"))? as usize;
        if (map.len() - records) as u64 != count.saturating_mul(RECORD as u64) {
            return Err(invalid("truncated"));
        }
        let packs_end = HEADER + packs_len as usize;
        let packs: Vec<(PackId, u64)> = postcard::from_bytes(&map[HEADER..packs_end])
            .map_err(|e| invalid(format!("packs: {e}")))?;
        let seen = std::str::from_utf8(&map[packs_end..records])
            .map_err(|e| invalid(format!("seen: {e}")))?;
        table.seen = seen.lines().map(str::to_string).collect();
        table.pack_positions = packs
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32))
            .collect();
        table.packs = packs;
        table.records = records;
        table.count = count as usize;
        table.map = Some(map);
        Ok(table)
    }

    fn record<'a>(&self, map: &'a [u8], i: usize) -> &'a [u8] {
        let at = self.records + i * RECORD;
        &map[at..at + RECORD]
    }

    /// Whether the index object `key` is in the table already.
    pub fn seen(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Adds the packs and blobs of the index object `key` (once); a blob present in two
    /// packs keeps its first location.
    pub fn add(&mut self, key: &str, file: &IndexFile) {
        if !self.seen.insert(key.to_string()) {
            return;
        }
        for pack in &file.packs {
            let position = *self.pack_positions.entry(pack.id).or_insert_with(|| {
                self.packs.push((pack.id, pack.size));
                (self.packs.len() - 1) as u32
            });
            for entry in &pack.blobs {
                if self.find(&entry.id).is_some() {
                    continue;
                }
                self.delta.entry(entry.id).or_insert(BlobLocation {
                    pack: position,
                    offset: entry.offset,
                    length: entry.length,
                    raw_length: entry.raw_length,
                    compressed: entry.compressed,
                });
            }
        }
    }

    /// Binary search of the mapped table.
    fn find(&self, id: &BlobId) -> Option<BlobLocation> {
        let map = self.map.as_ref()?;
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            let record = self.record(map, mid);
            match record[..32].cmp(&id.0) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                // A record naming no pack (a damaged table) is not trusted: the blob reads
                // as absent, so it is stored again rather than looked for nowhere.
                std::cmp::Ordering::Equal => {
                    let location = decode(record).1;
                    return ((location.pack as usize) < self.packs.len()).then_some(location);
                }
            }
        }
        None
    }

    /// Finds a blob.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.find(id).or_else(|| self.delta.get(id).copied())
    }

    /// True when the blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.get(id).is_some()
    }

    /// The pack id and size at a position.
    pub fn pack(&self, position: u32) -> (PackId, u64) {
        self.packs[position as usize]
    }

    /// Every pack with its size.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.count + self.delta.len()
    }

    /// True when the table holds no blob.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blobs held in memory until the next [`IndexTable::flush`].
    pub fn pending(&self) -> usize {
        self.delta.len()
    }

    /// Merges the delta into a new table file (written beside, synced, renamed into
    /// place: a crash leaves the previous table or the new one, whole).
    pub fn flush(&mut self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut delta: Vec<(BlobId, BlobLocation)> = self.delta.drain().collect();
        delta.sort_unstable_by_key(|a| a.0);
        let count = self.count + delta.len();
        let packs = postcard::to_stdvec(&self.packs).map_err(|e| invalid(e.to_string()))?;
        let seen: String = self.seen.iter().map(|k| format!("{k}\n")).collect();
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix).expect("the OS random source is available");
        let temp = self.dir.join(format!("{FILE}.tmp-{}", hex::encode(suffix)));
        let written = (|| {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
            out.write_all(MAGIC)?;
            out.write_all(&VERSION.to_le_bytes())?;
            for n in [count, packs.len(), seen.len()] {
                out.write_all(&(n as u64).to_le_bytes())?;
            }
            out.write_all(&packs)?;
            out.write_all(seen.as_bytes())?;
            let mut fresh = delta.iter().peekable();
            if let Some(map) = &self.map {
                for i in 0..self.count {
                    let record = self.record(map, i);
                    while let Some((id, location)) =
                        fresh.next_if(|(id, _)| id.0[..] < record[..32])
                    {
                        out.write_all(&encode(id, location)?)?;
                    }
                    out.write_all(record)?;
                }
            }
            for (id, location) in fresh {
                out.write_all(&encode(id, location)?)?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&temp, self.dir.join(FILE))?;
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        *self = IndexTable::open(&self.dir)?;
        Ok(())
    }
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("cannot write the local index table: {0}")]
    Table(#[from] io::Error),
}

/// What a refresh did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Index objects read (those the table had not seen).
    pub read: usize,
    /// Whether the table started over, because an object it held is gone.
    pub rebuilt: bool,
    /// Index objects that do not decode, skipped (read again next time).
    pub damaged: Vec<String>,
}

impl IndexTable {
    /// Empties the table, on disk too.
    pub fn clear(&mut self) -> io::Result<()> {
        self.map = None;
        match fs::remove_file(self.dir.join(FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        *self = IndexTable::open(&self.dir)?;
        Ok(())
    }

    /// Brings the table up to `repo`'s index objects: one listing, then only the objects
    /// it has not seen. When an object it holds is gone (garbage collection replaced it),
    /// it starts over from every object, as it cannot tell which entries came from it.
    pub async fn refresh(&mut self, repo: &Repository) -> Result<Refresh, RefreshError> {
        let listed: BTreeSet<String> = repo
            .list_index_objects()
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let mut report = Refresh::default();
        if self.seen.iter().any(|k| !listed.contains(k)) {
            self.clear()?;
            report.rebuilt = true;
        }
        let new: Vec<String> = listed.into_iter().filter(|k| !self.seen(k)).collect();
        for key in &new {
            match repo.read_index(key).await {
                Ok(file) => {
                    self.add(key, &file);
                    report.read += 1;
                }
                // Replaced by garbage collection since the listing.
                Err(RepoError::Store(e)) if e.is_not_found() => {}
                Err(err) if err.is_damage() => report.damaged.push(key.clone()),
                Err(err) => return Err(err.into()),
            }
        }
        if self.pending() > 0 || report.rebuilt {
            self.flush()?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Index, IndexedPack};
    use crate::pack::PackEntry;
    use proptest::prelude::*;

    fn file(seed: u64, packs: usize, blobs: usize) -> IndexFile {
        let id = |n: u64| BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes());
        IndexFile {
            packs: (0..packs as u64)
                .map(|p| IndexedPack {
                    id: id(1_000_000_000 + seed * 1_000 + p),
                    size: 1 << 20,
                    blobs: (0..blobs as u64)
                        .map(|b| PackEntry {
                            // Some ids repeat across files: a blob in two packs.
                            id: id((seed * 7 + p * 13 + b) % 5_000),
                            offset: b * 4096,
                            length: 4000,
                            raw_length: 9000 + b as u32,
                            compressed: b % 3 == 0,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The table answers as the in-memory index does, before and after each flush
        /// and after reopening.
        #[test]
        fn answers_as_the_in_memory_index(files in prop::collection::vec((0u64..50, 1usize..4, 0usize..60), 1..6), flush_every in 1usize..4) {
            let dir = tempfile::tempdir().unwrap();
            let mut table = IndexTable::open(dir.path()).unwrap();
            let mut index = Index::default();
            for (n, (seed, packs, blobs)) in files.iter().enumerate() {
                let f = file(*seed, *packs, *blobs);
                let key = format!("index/{seed}-{packs}-{blobs}");
                if !table.seen(&key) {
                    for pack in &f.packs {
                        index.add_pack(pack);
                    }
                }
                table.add(&key, &f);
                if n % flush_every == 0 {
                    table.flush().unwrap();
                }
            }
            let check = |table: &IndexTable| -> Result<(), TestCaseError> {
                prop_assert_eq!(table.len(), index.len());
                for (id, location) in index.blobs() {
                    let found = table.get(id).unwrap();
                    prop_assert_eq!(table.pack(found.pack), index.pack(location.pack));
                    prop_assert_eq!(
                        (found.offset, found.length, found.raw_length, found.compressed),
                        (location.offset, location.length, location.raw_length, location.compressed)
                    );
                }
                prop_assert!(!table.contains(&BlobId([0xEE; 32])));
                Ok(())
            };
            check(&table)?;
            table.flush().unwrap();
            check(&table)?;
            check(&IndexTable::open(dir.path()).unwrap())?;
        }
    }

    /// A repository with cheap key derivation in `dir`, and `n` index objects of
    /// fabricated packs written into it.
    async fn repository_with_index(dir: &Path, n: u64) -> std::sync::Arc<Repository> {
        let store: strata_store::DynStore =
            std::sync::Arc::new(strata_store::LocalStore::new(dir.join("repo")));
        let options = crate::InitOptions {
            kdf: crate::crypto::KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..Default::default()
        };
        let repo = Repository::init(store, Some("pw"), options).await.unwrap();
        for i in 0..n {
            repo.write_index(&file(i, 2, 40)).await.unwrap();
        }
        repo.reload_index().await.unwrap();
        repo
    }

    fn same_answers(table: &IndexTable, repo: &Repository) {
        let index = repo.index();
        assert_eq!(table.len(), index.len());
        for (id, location) in index.blobs() {
            let found = table.get(id).unwrap();
            assert_eq!(table.pack(found.pack), index.pack(location.pack));
            assert_eq!(found.offset, location.offset);
        }
    }

    #[tokio::test]
    async fn a_refresh_reads_only_new_objects_and_starts_over_after_a_merge() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repository_with_index(dir.path(), 3).await;
        let mut table = IndexTable::open(&dir.path().join("table")).unwrap();
        let first = table.refresh(&repo).await.unwrap();
        assert_eq!((first.read, first.rebuilt), (3, false));
        same_answers(&table, &repo);
        // A later process: nothing new, nothing read.
        let mut table = IndexTable::open(&dir.path().join("table")).unwrap();
        assert_eq!(table.refresh(&repo).await.unwrap(), Refresh::default());
        repo.write_index(&file(40, 1, 10)).await.unwrap();
        repo.reload_index().await.unwrap();
        assert_eq!(table.refresh(&repo).await.unwrap().read, 1);
        same_answers(&table, &repo);
        // Garbage collection merges every object into one and deletes the others.
        let files = repo.index_files().await.unwrap();
        let merged = IndexFile {
            packs: files
                .iter()
                .flat_map(|(_, f)| f.packs.clone())
                .take(5)
                .collect(),
        };
        repo.write_index(&merged).await.unwrap();
        for (key, _) in &files {
            repo.store().delete(key).await.unwrap();
        }
        repo.reload_index().await.unwrap();
        let report = table.refresh(&repo).await.unwrap();
        assert_eq!((report.read, report.rebuilt), (1, true));
        same_answers(&table, &repo);
    }

    #[test]
    fn a_damaged_table_is_refused_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.add("index/a", &file(1, 2, 30));
        table.flush().unwrap();
        assert_eq!(table.pending(), 0);
        let path = dir.path().join(FILE);
        let bytes = fs::read(&path).unwrap();
        let records = table.records;
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(IndexTable::open(dir.path()).is_err(), "truncated");
        let mut wrong_pack = bytes.clone();
        wrong_pack[records + 32..records + 36].copy_from_slice(&99u32.to_le_bytes());
        fs::write(&path, &wrong_pack).unwrap();
        let damaged = IndexTable::open(dir.path()).unwrap();
        let id = BlobId(wrong_pack[records..records + 32].try_into().unwrap());
        assert_eq!(
            damaged.get(&id),
            None,
            "a record naming no pack is not trusted"
        );
        let mut huge = bytes.clone();
        huge[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        fs::write(&path, &huge).unwrap();
        assert!(
            IndexTable::open(dir.path()).is_err(),
            "a section past the end"
        );
        fs::write(&path, b"garbage").unwrap();
        assert!(IndexTable::open(dir.path()).is_err());
    }
}
