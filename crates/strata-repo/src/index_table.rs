//! The local index table: a repository's index on this host's disk, sorted by blob id and
//! memory-mapped, so a lookup touches a few pages of the page cache instead of a hash map
//! of every blob in anonymous memory. It implements [`BlobIndex`].
//!
//! A directory per repository holds a small log-structured store of two levels:
//!
//! ```text
//! meta          "STRATAIM" | version u32 | postcard(Meta)       replaced by rename
//! runs/<name>   "STRATAIR" | version u32 | count u64 | records  written once, then renamed in
//! record        48 bytes: blob id [32] | pack position u32 LE | offset u32 LE |
//!               length u32 LE | raw_length u32 LE (high bit: compressed)
//! ```
//!
//! `meta` names the two record files of the view (the large **base** and the small
//! **recent**), the packs (id, size, blob count, in position order) and the index objects
//! the view holds with the positions of the packs each lists. Records are sorted by blob
//! id within a file; a blob two packs hold has a record for each. A pack is live while an
//! object of the view lists it: lookups skip records of dead packs, so forgetting an
//! object the repository no longer has costs nothing but its entry in `meta`.
//!
//! New records wait in a small in-memory delta until [`BlobIndex::commit`], which merges
//! them into a new recent file (dropping records of dead packs), or, when the recent file
//! would pass an eighth of the base (at most a million records), everything into a new
//! base (dropping dead packs from the positions too). So a commit costs the recent file
//! (at most 48 MB), and the base is rewritten once per million new blobs.
//!
//! Files are written beside, synced and renamed; `meta` is the commit point, so a crash
//! leaves the previous view or the new one. Two processes of one host may commit at once:
//! each writes whole files and the last `meta` wins; the table is a cache of the
//! repository's `index/` objects, never trusted over them (every refresh lists them), so
//! whatever one process's view lacks is read again by the next refresh. A table that does
//! not open (damaged, or naming a file another process removed) is cleared and rebuilt.
//!
//! In RAM: the delta, the packs (about 90 bytes per pack with its position map: a pack
//! holds a hundred or more blobs, so under a byte per blob) and the object list. On
//! disk: 48 bytes per blob copy.

use crate::id::PackId;
use crate::index::{positions_of, prefer_uncondemned, BlobIndex, BlobLocation, IndexFile};
use crate::BlobId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const META_MAGIC: &[u8; 8] = b"STRATAIM";
const RUN_MAGIC: &[u8; 8] = b"STRATAIR";
const VERSION: u32 = 2;
const RUN_HEADER: usize = 8 + 4 + 8;
const META: &str = "meta";
const RUNS: &str = "runs";
/// Bytes per blob record on disk.
pub const RECORD: usize = 48;
const COMPRESSED: u32 = 1 << 31;
/// The recent file never grows past this many records before a base merge.
const RECENT_MAX: usize = 1 << 20;
/// Nor past an eighth of the base, nor below this.
const RECENT_MIN: usize = 1 << 16;
/// Record files no `meta` names are removed once this old (another process may be
/// about to name a younger one).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// One pack of the view.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackMeta {
    id: PackId,
    size: u64,
    blobs: u32,
    /// Whether its records are in the files or the delta (a pack that died has them
    /// dropped at the next commit; listed again, its blobs are added again).
    has_records: bool,
}

/// The contents of `meta`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    base: Option<String>,
    recent: Option<String>,
    packs: Vec<PackMeta>,
    objects: Vec<(String, Vec<u32>)>,
}

/// A mapped record file.
#[derive(Debug)]
struct Run {
    name: String,
    map: memmap2::Mmap,
    count: usize,
}

impl Run {
    fn open(dir: &Path, name: &str) -> io::Result<Run> {
        let file = File::open(dir.join(RUNS).join(name))?;
        // SAFETY: record files are this host's own cache, written whole under a temporary
        // name and renamed in, never modified in place, so the mapping never changes.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        if map.len() < RUN_HEADER || &map[..8] != RUN_MAGIC {
            return Err(invalid(format!("{name}: not an index record file")));
        }
        let version = u32::from_le_bytes(map[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(invalid(format!("{name}: record file version {version}")));
        }
        let count = u64::from_le_bytes(map[12..20].try_into().unwrap());
        if (map.len() - RUN_HEADER) as u64 != count.saturating_mul(RECORD as u64) {
            return Err(invalid(format!("{name}: truncated")));
        }
        Ok(Run {
            name: name.to_string(),
            map,
            count: count as usize,
        })
    }

    fn record(&self, i: usize) -> &[u8] {
        let at = RUN_HEADER + i * RECORD;
        &self.map[at..at + RECORD]
    }

    /// The first record of `id` or later.
    fn lower_bound(&self, id: &BlobId) -> usize {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.record(mid)[..32] < id.0[..] {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    fn iter(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        (0..self.count).map(|i| decode(self.record(i)))
    }
}

/// A repository's index on local disk; see the module documentation.
#[derive(Debug)]
pub struct IndexTable {
    dir: PathBuf,
    base: Option<Run>,
    recent: Option<Run>,
    packs: Vec<PackMeta>,
    pack_positions: HashMap<PackId, u32>,
    /// Per pack position: how many objects of the view list it.
    refs: Vec<u32>,
    objects: HashMap<String, Vec<u32>>,
    delta: BTreeMap<(BlobId, u32), BlobLocation>,
    /// Blob copies in live packs.
    live_blobs: usize,
    /// Positions of condemned packs (not persisted: read from the repository at each
    /// refresh).
    condemned: std::collections::HashSet<u32>,
    /// Whether `meta` lags the view.
    dirty: bool,
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

/// Merges sources sorted by blob id into one sorted stream.
fn merge<'a>(
    mut sources: Vec<Box<dyn Iterator<Item = (BlobId, BlobLocation)> + 'a>>,
) -> impl Iterator<Item = (BlobId, BlobLocation)> + 'a {
    let mut heads: Vec<Option<(BlobId, BlobLocation)>> =
        sources.iter_mut().map(|s| s.next()).collect();
    std::iter::from_fn(move || {
        let (at, _) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(id, _)| (i, *id)))
            .min_by_key(|(_, id)| *id)?;
        let next = heads[at].take();
        heads[at] = sources[at].next();
        next
    })
}

impl IndexTable {
    /// Opens the table in `dir`, or an empty one when there is none. A damaged table is
    /// an error: see [`IndexTable::open_or_rebuild`].
    pub fn open(dir: &Path) -> io::Result<IndexTable> {
        let raw = match fs::read(dir.join(META)) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return IndexTable::from_meta(dir, Meta::default())
            }
            Err(e) => return Err(e),
        };
        if raw.len() < 12 || &raw[..8] != META_MAGIC {
            return Err(invalid("not an index table"));
        }
        let version = u32::from_le_bytes(raw[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(invalid(format!("index table version {version}")));
        }
        let meta: Meta =
            postcard::from_bytes(&raw[12..]).map_err(|e| invalid(format!("meta: {e}")))?;
        IndexTable::from_meta(dir, meta)
    }

    /// The view `meta` describes, its record files mapped.
    fn from_meta(dir: &Path, meta: Meta) -> io::Result<IndexTable> {
        let mut table = IndexTable {
            dir: dir.to_path_buf(),
            base: None,
            recent: None,
            packs: Vec::new(),
            pack_positions: HashMap::new(),
            refs: Vec::new(),
            objects: HashMap::new(),
            delta: BTreeMap::new(),
            live_blobs: 0,
            condemned: Default::default(),
            dirty: false,
        };
        table.base = meta
            .base
            .as_deref()
            .map(|n| Run::open(dir, n))
            .transpose()?;
        table.recent = meta
            .recent
            .as_deref()
            .map(|n| Run::open(dir, n))
            .transpose()?;
        table.refs = vec![0; meta.packs.len()];
        for (key, positions) in meta.objects {
            for &p in &positions {
                *table
                    .refs
                    .get_mut(p as usize)
                    .ok_or_else(|| invalid("an object names no pack"))? += 1;
            }
            table.objects.insert(key, positions);
        }
        table.pack_positions = meta
            .packs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        table.packs = meta.packs;
        table.live_blobs = table.count_live();
        Ok(table)
    }

    /// [`IndexTable::open`], or an empty table in a cleared `dir` when the one there does
    /// not open (the table is only a cache: the next refresh reads every index object).
    pub fn open_or_rebuild(dir: &Path) -> io::Result<IndexTable> {
        // A file named by a `meta` another process replaced meanwhile: read `meta` again.
        for _ in 0..3 {
            match IndexTable::open(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => return other.or_else(|err| IndexTable::rebuild(dir, err)),
            }
        }
        match IndexTable::open(dir) {
            Ok(table) => Ok(table),
            Err(err) => IndexTable::rebuild(dir, err),
        }
    }

    /// Clears `dir` after `err` and opens it empty.
    fn rebuild(dir: &Path, err: io::Error) -> io::Result<IndexTable> {
        eprintln!(
            "strata: warning: the local index in {} does not open ({err}); rebuilding it from the repository",
            dir.display()
        );
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        IndexTable::open(dir)
    }

    fn count_live(&self) -> usize {
        (0..self.packs.len())
            .filter(|&p| self.refs[p] > 0)
            .map(|p| self.packs[p].blobs as usize)
            .sum()
    }

    fn live(&self, location: &BlobLocation) -> bool {
        self.refs
            .get(location.pack as usize)
            .is_some_and(|&r| r > 0)
    }

    fn runs(&self) -> impl Iterator<Item = &Run> {
        self.recent.iter().chain(self.base.iter())
    }

    /// Blob records waiting in memory for the next commit.
    pub fn pending(&self) -> usize {
        self.delta.len()
    }

    /// Records in the base and recent files.
    pub fn stored_records(&self) -> (usize, usize) {
        (
            self.base.as_ref().map_or(0, |r| r.count),
            self.recent.as_ref().map_or(0, |r| r.count),
        )
    }

    /// Every record of every source, live or not, sorted by blob id.
    fn all_records(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        let mut sources: Vec<Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_>> =
            vec![Box::new(self.delta.iter().map(|((id, _), l)| (*id, *l)))];
        for run in self.runs() {
            sources.push(Box::new(run.iter()));
        }
        merge(sources)
    }

    /// Writes `records` to a new record file; returns its name (`None` when empty).
    fn write_run(
        &self,
        records: impl Iterator<Item = io::Result<[u8; RECORD]>>,
    ) -> io::Result<Option<String>> {
        let runs = self.dir.join(RUNS);
        fs::create_dir_all(&runs)?;
        let name = random_name();
        let temp = runs.join(format!(".{name}.tmp"));
        let written = (|| {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
            out.write_all(RUN_MAGIC)?;
            out.write_all(&VERSION.to_le_bytes())?;
            out.write_all(&0u64.to_le_bytes())?;
            let mut count = 0u64;
            for record in records {
                out.write_all(&record?)?;
                count += 1;
            }
            let mut file = out.into_inner().map_err(|e| e.into_error())?;
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(12))?;
            file.write_all(&count.to_le_bytes())?;
            file.sync_all()?;
            Ok::<_, io::Error>(count)
        })();
        match written {
            Ok(0) => {
                let _ = fs::remove_file(&temp);
                Ok(None)
            }
            Ok(_) => {
                fs::rename(&temp, runs.join(&name))?;
                Ok(Some(name))
            }
            Err(err) => {
                let _ = fs::remove_file(&temp);
                Err(err)
            }
        }
    }

    fn write_meta(&self, meta: &Meta) -> io::Result<()> {
        let mut raw = META_MAGIC.to_vec();
        raw.extend_from_slice(&VERSION.to_le_bytes());
        raw.extend_from_slice(&postcard::to_stdvec(meta).map_err(|e| invalid(e.to_string()))?);
        let temp = self.dir.join(format!(".meta-{}.tmp", random_name()));
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&raw)?;
            file.sync_all()?;
            fs::rename(&temp, self.dir.join(META))?;
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Removes record files that the current `meta` does not name and that are old
    /// enough not to be another process's newest.
    fn remove_stale_runs(&self, keep: &[Option<String>]) {
        let Ok(entries) = fs::read_dir(self.dir.join(RUNS)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.iter().flatten().any(|k| *k == name) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Merges everything into a new base, dropping dead packs and renumbering the rest.
    fn merge_into_base(&mut self) -> io::Result<Meta> {
        let mut renumber = vec![u32::MAX; self.packs.len()];
        let mut packs = Vec::new();
        for (p, pack) in self.packs.iter().enumerate() {
            if self.refs[p] > 0 {
                renumber[p] = packs.len() as u32;
                packs.push(PackMeta {
                    has_records: true,
                    ..pack.clone()
                });
            }
        }
        let records = self.all_records().filter_map(|(id, mut l)| {
            let to = renumber.get(l.pack as usize).copied().unwrap_or(u32::MAX);
            (to != u32::MAX).then(|| {
                l.pack = to;
                encode(&id, &l)
            })
        });
        let base = self.write_run(records)?;
        let objects = self
            .objects
            .iter()
            .map(|(k, ps)| {
                (
                    k.clone(),
                    ps.iter().map(|&p| renumber[p as usize]).collect(),
                )
            })
            .collect();
        Ok(Meta {
            base,
            recent: None,
            packs,
            objects,
        })
    }

    /// Merges the delta into a new recent file, dropping records of dead packs.
    fn merge_into_recent(&mut self) -> io::Result<Meta> {
        let mut packs = self.packs.clone();
        if self.refs.contains(&0) {
            // A dead pack whose records sat in the delta or the recent file loses them
            // now (all records of a pack were added at once, so they sit in one place);
            // one in the base keeps them until the next base merge.
            let outside_base: std::collections::HashSet<u32> = self
                .delta
                .keys()
                .map(|(_, p)| *p)
                .chain(
                    self.recent
                        .iter()
                        .flat_map(|r| r.iter().map(|(_, l)| l.pack)),
                )
                .collect();
            for (p, pack) in packs.iter_mut().enumerate() {
                if self.refs[p] == 0 && outside_base.contains(&(p as u32)) {
                    pack.has_records = false;
                }
            }
        }
        let mut sources: Vec<Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_>> =
            vec![Box::new(self.delta.iter().map(|((id, _), l)| (*id, *l)))];
        if let Some(run) = &self.recent {
            sources.push(Box::new(run.iter()));
        }
        let records = merge(sources)
            .filter(|(_, l)| self.live(l))
            .map(|(id, l)| encode(&id, &l));
        let recent = self.write_run(records)?;
        Ok(Meta {
            base: self.base.as_ref().map(|r| r.name.clone()),
            recent,
            packs,
            objects: self
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

fn random_name() -> String {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    hex::encode(suffix)
}

impl IndexTable {
    /// Every location of `id` in a live pack, delta first.
    fn locations<'a>(&'a self, id: &'a BlobId) -> impl Iterator<Item = BlobLocation> + 'a {
        let range = (*id, 0)..=(*id, u32::MAX);
        let in_delta = self.delta.range(range).map(|(_, l)| *l);
        let in_runs = self.runs().flat_map(move |run| {
            (run.lower_bound(id)..run.count)
                .map(move |i| run.record(i))
                .take_while(move |record| record[..32] == id.0[..])
                .map(|record| decode(record).1)
        });
        // A record naming no pack (a damaged table) is not trusted: the blob reads as
        // absent, so it is stored again rather than looked for nowhere.
        in_delta.chain(in_runs).filter(|l| self.live(l))
    }
}

impl BlobIndex for IndexTable {
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
        let pack = &self.packs[position as usize];
        (pack.id, pack.size)
    }

    fn packs(&self) -> Vec<(PackId, u64)> {
        (0..self.packs.len())
            .filter(|&p| self.refs[p] > 0)
            .map(|p| (self.packs[p].id, self.packs[p].size))
            .collect()
    }

    fn blobs(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_> {
        let mut last: Option<BlobId> = None;
        Box::new(self.all_records().filter(move |(id, l)| {
            if !self.live(l) || last == Some(*id) {
                return false;
            }
            last = Some(*id);
            true
        }))
    }

    fn len(&self) -> usize {
        self.live_blobs
    }

    fn has_object(&self, key: &str) -> bool {
        self.objects.contains_key(key)
    }

    fn object_keys(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    fn objects(&self) -> Vec<(String, Vec<u32>)> {
        self.objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn copies(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_> {
        Box::new(self.all_records().filter(|(_, l)| self.live(l)))
    }

    fn add_object(&mut self, key: &str, file: &IndexFile) {
        if self.objects.contains_key(key) {
            return;
        }
        let mut positions = Vec::with_capacity(file.packs.len());
        for pack in &file.packs {
            let position = match self.pack_positions.get(&pack.id) {
                Some(&p) => p,
                None => {
                    let p = self.packs.len() as u32;
                    self.packs.push(PackMeta {
                        id: pack.id,
                        size: pack.size,
                        blobs: pack.blobs.len() as u32,
                        has_records: false,
                    });
                    self.pack_positions.insert(pack.id, p);
                    self.refs.push(0);
                    p
                }
            };
            if positions.contains(&position) {
                continue;
            }
            positions.push(position);
            let meta = &mut self.packs[position as usize];
            if !meta.has_records {
                meta.has_records = true;
                for entry in &pack.blobs {
                    self.delta
                        .insert((entry.id, position), BlobLocation::of(position, entry));
                }
            }
            if self.refs[position as usize] == 0 {
                self.live_blobs += self.packs[position as usize].blobs as usize;
            }
            self.refs[position as usize] += 1;
        }
        self.objects.insert(key.to_string(), positions);
        self.dirty = true;
    }

    fn forget_object(&mut self, key: &str) {
        let Some(positions) = self.objects.remove(key) else {
            return;
        };
        for p in positions {
            self.refs[p as usize] -= 1;
            if self.refs[p as usize] == 0 {
                self.live_blobs -= self.packs[p as usize].blobs as usize;
            }
        }
        self.dirty = true;
    }

    fn pending_records(&self) -> usize {
        self.delta.len()
    }

    fn commit(&mut self) -> io::Result<()> {
        if !self.dirty && self.delta.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let (base, recent) = self.stored_records();
        let recent_limit = (base / 8).clamp(RECENT_MIN, RECENT_MAX);
        // Another process may have replaced the base this view maps: then this view
        // writes its own.
        let base_gone = self
            .base
            .as_ref()
            .is_some_and(|r| !self.dir.join(RUNS).join(&r.name).exists());
        let meta = if base == 0 || base_gone || recent + self.delta.len() > recent_limit {
            self.merge_into_base()?
        } else {
            self.merge_into_recent()?
        };
        self.write_meta(&meta)?;
        // The files this view replaced go now (a process that mapped them keeps its
        // mapping; one that reads an older `meta` naming them rebuilds), others' stale
        // ones once old.
        let keep = [meta.base.clone(), meta.recent.clone()];
        for run in self.runs() {
            if !keep.iter().flatten().any(|k| *k == run.name) {
                let _ = fs::remove_file(self.dir.join(RUNS).join(&run.name));
            }
        }
        self.remove_stale_runs(&keep);
        let condemned: std::collections::HashSet<PackId> = self
            .condemned
            .iter()
            .map(|&p| self.packs[p as usize].id)
            .collect();
        // This view goes on from what it wrote, not from `meta` on disk, which another
        // process of the host may have replaced since with a view that lacks this one's
        // objects.
        *self = IndexTable::from_meta(&self.dir.clone(), meta)?;
        self.set_condemned(&condemned);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexedPack, MemoryIndex};
    use crate::pack::PackEntry;
    use proptest::prelude::*;

    fn id(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    /// Index object `seed`: `packs` packs of `blobs` blobs, some ids shared with others.
    fn file(seed: u64, packs: usize, blobs: usize) -> IndexFile {
        IndexFile {
            packs: (0..packs as u64)
                .map(|p| IndexedPack {
                    // Pack ids repeat across seeds too: a merged object lists packs again.
                    // (A pack's id names its content, so the same id has the same blobs.)
                    id: id(1_000_000_000 + (seed % 7) * 100_000 + p * 1_000 + blobs as u64),
                    size: 1 << 20,
                    blobs: (0..blobs as u64)
                        .map(|b| PackEntry {
                            id: id(((seed % 7) * 13 + p * 31 + b) % 500),
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

    /// One step of a view's life.
    #[derive(Debug, Clone)]
    enum Step {
        Add(u64, usize, usize),
        Forget(u64),
        /// Condemns the packs of the objects of a seed.
        Condemn(u64),
        Commit,
        Reopen,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..12, 1usize..4, 0usize..40).prop_map(|(s, p, b)| Step::Add(s, p, b)),
            2 => (0u64..12).prop_map(Step::Forget),
            1 => (0u64..12).prop_map(Step::Condemn),
            1 => Just(Step::Commit),
            1 => Just(Step::Reopen),
        ]
    }

    fn same_answers(table: &IndexTable, memory: &MemoryIndex) -> Result<(), TestCaseError> {
        prop_assert_eq!(table.len(), memory.len());
        let mut packs = table.packs();
        let mut expected = memory.packs();
        packs.sort();
        expected.sort();
        prop_assert_eq!(packs, expected);
        for n in 0..520 {
            let (a, b) = (table.get(&id(n)), memory.get(&id(n)));
            prop_assert_eq!(a.is_some(), b.is_some(), "blob {}", n);
            prop_assert_eq!(
                table.contains(&id(n)),
                memory.contains(&id(n)),
                "blob {}",
                n
            );
            if let (Some(a), Some(b)) = (a, b) {
                // Either live copy will do; both must be real copies of the blob.
                prop_assert!(memory.packs().contains(&table.pack(a.pack)));
                prop_assert_eq!(a.length, b.length);
            }
        }
        let listed: Vec<BlobId> = table.blobs().map(|(id, _)| id).collect();
        let expected: Vec<BlobId> = memory.blobs().map(|(id, _)| id).collect();
        prop_assert_eq!(listed, expected);
        // Every live copy, by blob id, with its pack (positions differ between the two).
        let copies = |index: &dyn BlobIndex| {
            let all: Vec<(BlobId, PackId)> = index
                .copies()
                .map(|(id, l)| (id, index.pack(l.pack).0))
                .collect();
            let mut sorted = all.clone();
            sorted.sort();
            (all.windows(2).all(|w| w[0].0 <= w[1].0), sorted)
        };
        let (ordered, table_copies) = copies(table);
        prop_assert!(ordered, "copies out of blob id order");
        prop_assert_eq!(table_copies, copies(memory).1);
        let objects = |index: &dyn BlobIndex| {
            let mut all: Vec<(String, Vec<PackId>)> = index
                .objects()
                .into_iter()
                .map(|(k, ps)| {
                    let mut packs: Vec<PackId> = ps.iter().map(|&p| index.pack(p).0).collect();
                    packs.sort();
                    (k, packs)
                })
                .collect();
            all.sort();
            all
        };
        prop_assert_eq!(objects(table), objects(memory));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The table answers as the in-memory index does after any sequence of objects
        /// added and forgotten, commits and reopenings.
        #[test]
        fn answers_as_the_in_memory_index(steps in prop::collection::vec(step(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut table = IndexTable::open(dir.path()).unwrap();
            let mut memory = MemoryIndex::default();
            // Condemnations are not kept in the table: a refresh sets them on a reopened one.
            let mut condemned = std::collections::HashSet::new();
            for step in steps {
                match step {
                    Step::Add(seed, packs, blobs) => {
                        let key = format!("index/{seed}-{packs}-{blobs}");
                        let f = file(seed, packs, blobs);
                        table.add_object(&key, &f);
                        memory.add_object(&key, &f);
                        // As a refresh does: condemnations apply to the packs known.
                        table.set_condemned(&condemned);
                        memory.set_condemned(&condemned);
                    }
                    Step::Forget(seed) => {
                        for key in memory.object_keys() {
                            if key.starts_with(&format!("index/{seed}-")) {
                                table.forget_object(&key);
                                memory.forget_object(&key);
                            }
                        }
                    }
                    Step::Condemn(seed) => {
                        let packs = (1..4)
                            .flat_map(|n| (0..40).map(move |b| file(seed, n, b)))
                            .flat_map(|f| f.packs.into_iter().map(|p| p.id))
                            .collect();
                        table.set_condemned(&packs);
                        memory.set_condemned(&packs);
                        condemned = packs;
                    }
                    Step::Commit => table.commit().unwrap(),
                    Step::Reopen => {
                        table.commit().unwrap();
                        table = IndexTable::open(dir.path()).unwrap();
                        table.set_condemned(&condemned);
                    }
                }
                same_answers(&table, &memory)?;
            }
            table.commit().unwrap();
            let mut reopened = IndexTable::open(dir.path()).unwrap();
            reopened.set_condemned(&condemned);
            same_answers(&reopened, &memory)?;
        }
    }

    #[test]
    fn a_damaged_table_is_refused_or_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.add_object("index/a", &file(1, 2, 30));
        table.commit().unwrap();
        assert_eq!(table.pending(), 0);
        let base = table.base.as_ref().unwrap().name.clone();
        let path = dir.path().join(RUNS).join(&base);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(IndexTable::open(dir.path()).is_err(), "truncated");
        let mut wrong_pack = bytes.clone();
        wrong_pack[RUN_HEADER + 32..RUN_HEADER + 36].copy_from_slice(&99u32.to_le_bytes());
        fs::write(&path, &wrong_pack).unwrap();
        let damaged = IndexTable::open(dir.path()).unwrap();
        let first = BlobId(wrong_pack[RUN_HEADER..RUN_HEADER + 32].try_into().unwrap());
        assert_eq!(
            damaged.get(&first),
            None,
            "a record naming no pack is not trusted"
        );
        fs::write(dir.path().join(META), b"garbage").unwrap();
        assert!(IndexTable::open(dir.path()).is_err());
        let rebuilt = IndexTable::open_or_rebuild(dir.path()).unwrap();
        assert!(rebuilt.is_empty() && rebuilt.object_keys().is_empty());
    }

    #[test]
    fn commits_write_the_recent_file_and_merge_into_the_base_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.add_object("index/base", &file(0, 3, 40));
        table.commit().unwrap();
        assert_eq!(
            table.stored_records(),
            (120, 0),
            "the first commit writes the base"
        );
        table.add_object("index/small", &file(1, 1, 10));
        table.commit().unwrap();
        assert_eq!(
            table.stored_records(),
            (120, 10),
            "later ones the recent file"
        );
        table.forget_object("index/small");
        table.commit().unwrap();
        assert_eq!(table.stored_records(), (120, 0), "dead records dropped");
        table.add_object("index/small-again", &file(1, 1, 10));
        assert_eq!(table.len(), 130, "a pack listed again is live again");
        table.commit().unwrap();
        assert_eq!(table.stored_records(), (120, 10));
        assert!(table.contains(&file(1, 1, 10).packs[0].blobs[3].id));
    }
}
