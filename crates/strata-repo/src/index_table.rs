//! The local index table: a repository's index on this host's disk, sorted by blob id and
//! memory-mapped, so a lookup touches a few pages of the page cache instead of a hash map
//! of every blob in anonymous memory. It implements [`BlobIndex`].
//!
//! A directory per repository holds a small log-structured store, size-tiered:
//!
//! ```text
//! lock          taken (flock) by a commit: one writer of the directory at a time
//! meta          "STRATAIM" | version u32 (3) | generation u64 LE | postcard(Meta)
//!               replaced by rename
//! runs/<name>   "STRATAIR" | version u32 (2) | count u64 LE | records
//!               written once under a temporary name, then renamed in
//! record        48 bytes: blob id [32] | pack position u32 LE | offset u32 LE |
//!               length u32 LE | raw_length u32 LE (high bit: compressed)
//! ```
//!
//! `meta` names the **runs** of the view (record files, oldest and largest first), the
//! packs (id, size, blob count, in position order) and the index objects the view holds
//! with the positions of the packs each lists; its generation changes with every write,
//! so a process can tell in 20 bytes whether another one committed since it looked.
//! Records are sorted by blob id within a run; a blob two packs hold has a record for
//! each. All records of a pack are in one run (they are added together and runs are only
//! ever merged whole). A pack is live while an object of the view lists it: lookups skip
//! records of dead packs, so forgetting an object costs nothing but its entry in `meta`.
//!
//! New records wait in a small in-memory delta until [`BlobIndex::commit`], which writes
//! them as a new run and then merges runs by **tiers**: a run of fewer than 64Ki records
//! is tier 0, and each tier above holds runs four times larger. A run is merged with the
//! smaller runs written before it, and four runs of one tier into one of the next. So a
//! record is rewritten once per tier it climbs (about 4 times between a million and 100
//! million blobs), a commit costs what it adds plus, now and then, a merge of runs its
//! size, and a view has a few runs per tier (at most 3 per tier, about 20 at 100 million
//! blobs). Merges drop the records of dead packs; once dead records outnumber live ones,
//! a commit merges everything into one run and renumbers the packs. (The first version
//! had two levels and rewrote its base every million records: a new host's first start
//! grew with the square of the repository, hours at 100 million blobs.)
//!
//! Files are written beside, synced and renamed; `meta` is the commit point, so a crash
//! leaves the previous view or the new one. A commit holds `lock`, so the directory has
//! one writer at a time; two processes that both changed their views each write theirs,
//! and the last `meta` wins: the table is a cache of the repository's `index/` objects,
//! never trusted over them (every refresh lists them), so whatever one process's view
//! lacks is read again by the next refresh. A view whose runs another process merged
//! away writes them again from its own mappings; one with nothing to write adopts a newer
//! `meta` ([`BlobIndex::adopt_newer`]). A table that does not open (damaged, or naming a
//! file another process removed) is cleared and rebuilt.
//!
//! In RAM: the delta, the packs (about 90 bytes per pack with its position map: a pack
//! holds a hundred or more blobs, so under a byte per blob) and the object list. On
//! disk: 48 bytes per blob copy, plus the dead records a merge has not dropped yet.

use crate::id::PackId;
use crate::index::{
    distinct, positions_of, prefer_uncondemned, BlobIndex, BlobLocation, IndexedPack,
};
use crate::BlobId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const META_MAGIC: &[u8; 8] = b"STRATAIM";
const RUN_MAGIC: &[u8; 8] = b"STRATAIR";
/// `meta`'s version: 3 lists runs; 2 (a base and a recent file) is read and converted.
const META_VERSION: u32 = 3;
const RUN_VERSION: u32 = 2;
const RUN_HEADER: usize = 8 + 4 + 8;
const META_HEADER: usize = 8 + 4 + 8;
const META: &str = "meta";
const LOCK: &str = "lock";
const RUNS: &str = "runs";
/// Bytes per blob record on disk.
pub const RECORD: usize = 48;
const COMPRESSED: u32 = 1 << 31;
/// Runs of fewer records than this are tier 0.
const TIER_BASE: usize = 1 << 16;
/// Each tier's runs are this many times larger than the one below, and this many runs
/// of one tier are merged into one of the next.
const TIER_FANOUT: usize = 4;
/// A commit with fewer new records than this, and fewer objects added or forgotten than
/// [`LAZY_OBJECTS`], leaves the files as they are: the view in memory is right, and the
/// next process of the host reads those few objects again. Rewriting `meta` (tens of
/// MB at 100 million blobs) for each WAL push would cost more than that.
const LAZY_RECORDS: usize = 1 << 14;
const LAZY_OBJECTS: usize = 32;
/// Dead packs kept in `meta` before a compaction is worth its cost.
const MIN_DEAD_PACKS: usize = 4096;
/// Temporary files no commit finished are removed once this old.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// One pack of the view.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackMeta {
    id: PackId,
    size: u64,
    blobs: u32,
    /// Whether its records are in the runs or the delta (a dead pack's records are
    /// dropped by the next merge of its run; listed again, its blobs are added again).
    has_records: bool,
}

/// The contents of `meta`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    /// Oldest first.
    runs: Vec<String>,
    packs: Vec<PackMeta>,
    objects: Vec<(String, Vec<u32>)>,
}

/// [`Meta`] as written, borrowed from the view (postcard encodes both alike).
#[derive(Serialize)]
struct MetaRef<'a> {
    runs: &'a [String],
    packs: &'a [PackMeta],
    objects: Vec<(&'a str, &'a [u32])>,
}

/// The contents of a version 2 `meta`.
#[derive(Debug, Default, Deserialize)]
struct MetaV2 {
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
    /// The file, open: scans read it (see [`Run::iter`]), even once another process
    /// removed its name.
    file: File,
}

/// Records a scan reads at a time (64 KiB).
const SCAN_RECORDS: usize = 1365;

impl Run {
    #[allow(unsafe_code)] // a memory map of the index records: the reason is beside the block
    fn open(dir: &Path, name: &str) -> io::Result<Run> {
        let file = File::open(dir.join(RUNS).join(name))?;
        // SAFETY: record files are this host's own cache, written whole under a temporary
        // name and renamed in, never modified in place, so the mapping never changes.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        if map.len() < RUN_HEADER || &map[..8] != RUN_MAGIC {
            return Err(invalid(format!("{name}: not an index record file")));
        }
        let version = u32::from_le_bytes(map[8..12].try_into().unwrap());
        if version != RUN_VERSION {
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
            file,
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

    /// Every record in order. A scan reads the file in small pieces, not the mapping:
    /// every page of a run a merge or a collection scans would otherwise count in the
    /// process's resident memory until the run is dropped (gigabytes at 100 million
    /// blobs); lookups, which touch a few pages, use the mapping.
    fn iter(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        use std::os::unix::fs::FileExt;
        let (mut buf, mut at, mut next) = (Vec::new(), 0, 0);
        std::iter::from_fn(move || {
            if at == buf.len() {
                if next == self.count {
                    return None;
                }
                let n = (self.count - next).min(SCAN_RECORDS);
                let start = RUN_HEADER + next * RECORD;
                buf.resize(n * RECORD, 0);
                if self.file.read_exact_at(&mut buf, start as u64).is_err() {
                    // The same bytes through the mapping (a file never changes in place).
                    buf.copy_from_slice(&self.map[start..start + n * RECORD]);
                }
                (at, next) = (0, next + n);
            }
            at += RECORD;
            Some(decode(&buf[at - RECORD..at]))
        })
    }
}

/// A repository's index on local disk; see the module documentation.
#[derive(Debug)]
pub struct IndexTable {
    dir: PathBuf,
    /// Oldest first.
    runs: Vec<Run>,
    /// The generation of the `meta` this view was read from or wrote last.
    generation: u64,
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
    condemned: HashSet<u32>,
    /// Whether `meta` lags the view.
    dirty: bool,
    /// Objects added or forgotten since `meta` was read or written.
    changed_objects: usize,
    /// Whether small changes wait (see [`LAZY_RECORDS`]); off in tests.
    lazy: bool,
    /// Runs of fewer records than this are tier 0 ([`TIER_BASE`]; smaller in tests).
    tier_base: usize,
    /// Runs [`BlobIndex::spill`] wrote since the last commit: no `meta` names them, so a
    /// spill that merges one away removes its file at once.
    spilled: HashSet<String>,
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

type Records<'a> = Box<dyn Iterator<Item = (BlobId, BlobLocation)> + 'a>;

/// Merges sources sorted by blob id into one sorted stream.
fn merge<'a>(mut sources: Vec<Records<'a>>) -> impl Iterator<Item = (BlobId, BlobLocation)> + 'a {
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

/// The tier of a run of `count` records: 0 below `base`, then one more per factor of
/// [`TIER_FANOUT`].
fn tier(count: usize, base: usize) -> u32 {
    let (mut tier, mut scaled) = (0, count / base.max(1));
    while scaled > 0 {
        tier += 1;
        scaled /= TIER_FANOUT;
    }
    tier
}

/// Where the records of one run of the next view come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// A run of this view (by index).
    Run(usize),
    Delta,
}

/// One run of the next view: kept as it is, or written from its sources.
#[derive(Debug)]
struct Planned {
    sources: Vec<Source>,
    /// Records in the sources (dead ones included).
    count: usize,
    /// Whether it is one run of this view, kept as it is.
    keep: bool,
}

/// The runs the next view has: this view's runs (those another process removed written
/// again), then the delta's, merged by tiers; see the module documentation.
fn plan(runs: &[(usize, bool)], delta: usize, base: usize) -> Vec<Planned> {
    let mut planned: Vec<Planned> = runs
        .iter()
        .enumerate()
        .map(|(i, &(count, present))| Planned {
            sources: vec![Source::Run(i)],
            count,
            keep: present,
        })
        .collect();
    if delta > 0 {
        planned.push(Planned {
            sources: vec![Source::Delta],
            count: delta,
            keep: false,
        });
    }
    let merge_last = |planned: &mut Vec<Planned>, n: usize| {
        let merged: Vec<Planned> = planned.drain(planned.len() - n..).collect();
        planned.push(Planned {
            sources: merged.iter().flat_map(|p| p.sources.clone()).collect(),
            count: merged.iter().map(|p| p.count).sum(),
            keep: false,
        });
    };
    while planned.len() >= 2 {
        let newest = tier(planned[planned.len() - 1].count, base);
        let older = &planned[..planned.len() - 1];
        // Smaller runs written before the newest are merged into it, so tiers only go
        // down from the oldest run to the newest.
        let smaller = older
            .iter()
            .rev()
            .take_while(|p| tier(p.count, base) < newest)
            .count();
        if smaller > 0 {
            merge_last(&mut planned, smaller + 1);
            continue;
        }
        let same = planned
            .iter()
            .rev()
            .take_while(|p| tier(p.count, base) == newest)
            .count();
        if same >= TIER_FANOUT {
            merge_last(&mut planned, same);
            continue;
        }
        break;
    }
    planned
}

impl IndexTable {
    /// Opens the table in `dir`, or an empty one when there is none. A damaged table is
    /// an error: see [`IndexTable::open_or_rebuild`].
    pub fn open(dir: &Path) -> io::Result<IndexTable> {
        let raw = match fs::read(dir.join(META)) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return IndexTable::from_meta(dir, Meta::default(), 0)
            }
            Err(e) => return Err(e),
        };
        if raw.len() < 12 || &raw[..8] != META_MAGIC {
            return Err(invalid("not an index table"));
        }
        let version = u32::from_le_bytes(raw[8..12].try_into().unwrap());
        let (meta, generation) = match version {
            2 => {
                let old: MetaV2 =
                    postcard::from_bytes(&raw[12..]).map_err(|e| invalid(format!("meta: {e}")))?;
                let runs = old.base.into_iter().chain(old.recent).collect();
                let meta = Meta {
                    runs,
                    packs: old.packs,
                    objects: old.objects,
                };
                (meta, 0)
            }
            META_VERSION if raw.len() >= META_HEADER => {
                let generation = u64::from_le_bytes(raw[12..20].try_into().unwrap());
                let meta = postcard::from_bytes(&raw[META_HEADER..])
                    .map_err(|e| invalid(format!("meta: {e}")))?;
                (meta, generation)
            }
            _ => return Err(invalid(format!("index table version {version}"))),
        };
        IndexTable::from_meta(dir, meta, generation)
    }

    /// The view `meta` describes, its record files mapped.
    fn from_meta(dir: &Path, meta: Meta, generation: u64) -> io::Result<IndexTable> {
        let mut table = IndexTable {
            dir: dir.to_path_buf(),
            runs: Vec::new(),
            generation,
            packs: Vec::new(),
            pack_positions: HashMap::new(),
            refs: Vec::new(),
            objects: HashMap::new(),
            delta: BTreeMap::new(),
            live_blobs: 0,
            condemned: Default::default(),
            dirty: false,
            changed_objects: 0,
            lazy: true,
            tier_base: TIER_BASE,
            spilled: HashSet::new(),
        };
        table.runs = meta
            .runs
            .iter()
            .map(|n| Run::open(dir, n))
            .collect::<io::Result<_>>()?;
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
                Err(_) => break,
                Ok(table) => return Ok(table),
            }
        }
        // Under the lock no commit replaces `meta` or removes a run: a table that still
        // does not open is damaged, not raced, and only then is it cleared (a process
        // that lost a race with commits must not throw away a good table, which costs
        // minutes to build again at 100 million blobs).
        let _lock = lock(dir)?;
        match IndexTable::open(dir) {
            Ok(table) => Ok(table),
            Err(err) => IndexTable::clear_locked(dir, err),
        }
    }

    /// Clears `dir` after `err` and opens it empty. The caller holds the lock.
    fn clear_locked(dir: &Path, err: io::Error) -> io::Result<IndexTable> {
        eprintln!(
            "strata: warning: the local index in {} does not open ({err}); rebuilding it from the repository",
            dir.display()
        );
        match fs::remove_file(dir.join(META)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        match fs::remove_dir_all(dir.join(RUNS)) {
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

    /// Whether dead packs outweigh live ones (their records in the runs, or their
    /// entries in `meta`): then a commit compacts, at a cost the dead ones paid for.
    fn mostly_dead(&self) -> bool {
        let dead = (0..self.packs.len()).filter(|&p| self.refs[p] == 0);
        let dead_records: usize = dead
            .clone()
            .filter(|&p| self.packs[p].has_records)
            .map(|p| self.packs[p].blobs as usize)
            .sum();
        let dead_packs = dead.count();
        let live_packs = self.packs.len() - dead_packs;
        dead_records > self.live_blobs.max(self.tier_base)
            || dead_packs > live_packs.max(MIN_DEAD_PACKS)
    }

    fn live(&self, location: &BlobLocation) -> bool {
        self.refs
            .get(location.pack as usize)
            .is_some_and(|&r| r > 0)
    }

    /// Blob records waiting in memory for the next commit.
    pub fn pending(&self) -> usize {
        self.delta.len()
    }

    /// Records in each run, oldest first.
    pub fn run_sizes(&self) -> Vec<usize> {
        self.runs.iter().map(|r| r.count).collect()
    }

    fn source(&self, source: Source) -> Records<'_> {
        match source {
            Source::Run(i) => Box::new(self.runs[i].iter()),
            Source::Delta => Box::new(self.delta.iter().map(|((id, _), l)| (*id, *l))),
        }
    }

    /// Every record of every source, live or not, sorted by blob id.
    fn all_records(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        let sources = std::iter::once(Source::Delta)
            .chain((0..self.runs.len()).map(Source::Run))
            .map(|s| self.source(s))
            .collect();
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
            let mut out = BufWriter::with_capacity(1 << 16, File::create(&temp)?);
            out.write_all(RUN_MAGIC)?;
            out.write_all(&RUN_VERSION.to_le_bytes())?;
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

    /// Writes `meta` beside and renames it in. Encoded straight into the file: at 100
    /// million blobs it is about 30 MB, which a buffer would hold twice while growing.
    fn write_meta(&self, meta: &MetaRef<'_>, generation: u64) -> io::Result<()> {
        let temp = self.dir.join(format!(".meta-{}.tmp", random_name()));
        let written = (|| {
            let mut out = BufWriter::with_capacity(1 << 16, File::create(&temp)?);
            out.write_all(META_MAGIC)?;
            out.write_all(&META_VERSION.to_le_bytes())?;
            out.write_all(&generation.to_le_bytes())?;
            let out = postcard::to_io(meta, out).map_err(|e| invalid(e.to_string()))?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&temp, self.dir.join(META))?;
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Removes the record files `keep` does not name (called under the lock, so no
    /// other commit is writing one; a process whose view still maps one writes it again
    /// at its next commit), and temporary files a stopped commit left.
    fn remove_unnamed_runs(&self, keep: &[String]) {
        let Ok(entries) = fs::read_dir(self.dir.join(RUNS)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let remove = !name.starts_with('.')
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_AFTER);
            if remove {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Everything in one run with dead packs dropped and the rest renumbered: the next
    /// view's `meta`.
    fn write_compacted(&self) -> io::Result<Meta> {
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
        let runs = self.write_run(records)?.into_iter().collect();
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
            runs,
            packs,
            objects,
        })
    }

    /// The planned runs written (dropping dead records): the next view's run names, and
    /// the packs whose records a merge dropped.
    fn write_tiers(&self) -> io::Result<(Vec<String>, HashSet<u32>)> {
        let present: Vec<(usize, bool)> = self
            .runs
            .iter()
            .map(|r| (r.count, self.dir.join(RUNS).join(&r.name).exists()))
            .collect();
        let planned = plan(&present, self.delta.len(), self.tier_base);
        let mut runs = Vec::with_capacity(planned.len());
        let mut dropped: HashSet<u32> = HashSet::new();
        for part in planned {
            if part.keep {
                let [Source::Run(i)] = part.sources[..] else {
                    unreachable!("only a single run is kept as it is")
                };
                runs.push(self.runs[i].name.clone());
                continue;
            }
            let sources = part.sources.iter().map(|&s| self.source(s)).collect();
            let records = merge(sources).filter_map(|(id, l)| {
                if self.live(&l) {
                    Some(encode(&id, &l))
                } else {
                    dropped.insert(l.pack);
                    None
                }
            });
            runs.extend(self.write_run(records)?);
        }
        Ok((runs, dropped))
    }

    /// Makes `names` the view's runs (those it maps already kept, the others mapped) and
    /// empties the delta, whose records they hold.
    fn map_runs(&mut self, names: &[String]) -> io::Result<()> {
        // The new ones first: a run that does not map leaves the view as it was.
        let mut opened: HashMap<&String, Run> = HashMap::new();
        for name in names {
            if !self.runs.iter().any(|r| &r.name == name) {
                opened.insert(name, Run::open(&self.dir, name)?);
            }
        }
        let mut mapped: HashMap<String, Run> =
            self.runs.drain(..).map(|r| (r.name.clone(), r)).collect();
        self.runs = names
            .iter()
            .map(|n| match opened.remove(n) {
                Some(run) => run,
                None => mapped.remove(n).expect("a kept run is mapped"),
            })
            .collect();
        self.delta.clear();
        Ok(())
    }

    /// `meta` as written from a compacted one.
    fn meta_ref_of<'a>(&self, meta: &'a Meta) -> MetaRef<'a> {
        MetaRef {
            runs: &meta.runs,
            packs: &meta.packs,
            objects: meta
                .objects
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
        }
    }

    /// `meta` for this view with `runs`.
    fn meta_ref<'a>(&'a self, runs: &'a [String]) -> MetaRef<'a> {
        MetaRef {
            runs,
            packs: &self.packs,
            objects: self
                .objects
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
        }
    }
}

/// Takes `dir`'s lock (made when missing), released when the file is dropped.
fn lock(dir: &Path) -> io::Result<File> {
    fs::create_dir_all(dir)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))?;
    file.lock()?;
    Ok(file)
}

/// The generation of the `meta` in `dir` (0 when there is none or it has none).
fn meta_generation(dir: &Path) -> io::Result<u64> {
    let mut header = [0u8; META_HEADER];
    match File::open(dir.join(META)).and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) if header[8..12] == META_VERSION.to_le_bytes() => {
            Ok(u64::from_le_bytes(header[12..20].try_into().unwrap()))
        }
        Ok(()) => Ok(0),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

fn random_name() -> String {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).expect("the OS random source is available");
    hex::encode(suffix)
}

/// A new generation: random and never 0, so two processes never write the same one.
fn new_generation() -> u64 {
    let mut raw = [0u8; 8];
    getrandom::getrandom(&mut raw).expect("the OS random source is available");
    u64::from_le_bytes(raw).max(1)
}

impl IndexTable {
    /// Every location of `id` in a live pack, delta first.
    fn locations<'a>(&'a self, id: &'a BlobId) -> impl Iterator<Item = BlobLocation> + 'a {
        let range = (*id, 0)..=(*id, u32::MAX);
        let in_delta = self.delta.range(range).map(|(_, l)| *l);
        let in_runs = self.runs.iter().rev().flat_map(move |run| {
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

    fn set_condemned(&mut self, packs: &HashSet<PackId>) {
        self.condemned = positions_of(packs, &self.pack_positions);
    }

    fn pack(&self, position: u32) -> (PackId, u64) {
        let pack = &self.packs[position as usize];
        (pack.id, pack.size)
    }

    fn pack_blobs(&self, position: u32) -> u32 {
        self.packs[position as usize].blobs
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

    fn object_map(&self) -> &HashMap<String, Vec<u32>> {
        &self.objects
    }

    fn copies(&self) -> Box<dyn Iterator<Item = (BlobId, BlobLocation)> + '_> {
        Box::new(self.all_records().filter(|(_, l)| self.live(l)))
    }

    fn add_pack(&mut self, pack: &IndexedPack) -> u32 {
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
        let meta = &mut self.packs[position as usize];
        if !meta.has_records {
            meta.has_records = true;
            for entry in &pack.blobs {
                self.delta
                    .insert((entry.id, position), BlobLocation::of(position, entry));
            }
        }
        position
    }

    fn add_listing(&mut self, key: &str, positions: Vec<u32>) {
        if self.objects.contains_key(key) {
            return;
        }
        let positions = distinct(positions);
        for &position in &positions {
            if self.refs[position as usize] == 0 {
                self.live_blobs += self.packs[position as usize].blobs as usize;
            }
            self.refs[position as usize] += 1;
        }
        self.objects.insert(key.to_string(), positions);
        self.dirty = true;
        self.changed_objects += 1;
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
        self.changed_objects += 1;
    }

    fn pending_records(&self) -> usize {
        self.delta.len()
    }

    fn adopt_newer(&mut self) -> io::Result<bool> {
        if self.dirty || !self.delta.is_empty() || meta_generation(&self.dir)? == self.generation {
            return Ok(false);
        }
        let condemned: HashSet<PackId> = self
            .condemned
            .iter()
            .map(|&p| self.packs[p as usize].id)
            .collect();
        let (lazy, tier_base) = (self.lazy, self.tier_base);
        *self = IndexTable::open_or_rebuild(&self.dir.clone())?;
        (self.lazy, self.tier_base) = (lazy, tier_base);
        self.set_condemned(&condemned);
        Ok(true)
    }

    fn commit(&mut self) -> io::Result<()> {
        // Runs a spill wrote are never left unnamed: the next process would read every
        // object again.
        let small = self.delta.len() < LAZY_RECORDS
            && self.changed_objects < LAZY_OBJECTS
            && self.spilled.is_empty();
        if (!self.dirty && self.delta.is_empty()) || (self.lazy && small) {
            return Ok(());
        }
        let _lock = lock(&self.dir)?;
        let generation = new_generation();
        let condemned: HashSet<PackId> = self
            .condemned
            .iter()
            .map(|&p| self.packs[p as usize].id)
            .collect();
        if self.mostly_dead() {
            let meta = self.write_compacted()?;
            self.write_meta(&self.meta_ref_of(&meta), generation)?;
            self.remove_unnamed_runs(&meta.runs);
            // Positions changed: the view is made again from what it wrote.
            let (lazy, tier_base) = (self.lazy, self.tier_base);
            *self = IndexTable::from_meta(&self.dir.clone(), meta, generation)?;
            (self.lazy, self.tier_base) = (lazy, tier_base);
            self.set_condemned(&condemned);
            return Ok(());
        }
        let (names, dropped) = self.write_tiers()?;
        // A dead pack whose records a merge dropped has none left (they were all in one
        // run): listed again, its blobs are added again.
        for p in dropped {
            self.packs[p as usize].has_records = false;
        }
        self.write_meta(&self.meta_ref(&names), generation)?;
        // The runs this view replaced go now, and any other no `meta` names (a process
        // that mapped one keeps its mapping, and writes it again if it still needs it).
        self.remove_unnamed_runs(&names);
        // This view goes on from what it wrote, not from `meta` on disk, which another
        // process of the host may replace with a view that lacks this one's objects.
        self.map_runs(&names)?;
        self.spilled.clear();
        self.generation = generation;
        self.dirty = false;
        self.changed_objects = 0;
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.delta.is_empty() {
            return Ok(());
        }
        // Under the lock: no commit of another process removes a run between its rename
        // and its mapping here.
        let _lock = lock(&self.dir)?;
        let (names, dropped) = self.write_tiers()?;
        let before: HashSet<String> = self.runs.iter().map(|r| r.name.clone()).collect();
        self.map_runs(&names)?;
        for p in dropped {
            self.packs[p as usize].has_records = false;
        }
        for name in &before {
            if self.spilled.contains(name) && !names.contains(name) {
                let _ = fs::remove_file(self.dir.join(RUNS).join(name));
            }
        }
        self.spilled.retain(|n| names.contains(n));
        self.spilled
            .extend(names.into_iter().filter(|n| !before.contains(n)));
        self.dirty = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexFile, IndexedPack, MemoryIndex};
    use crate::pack::PackEntry;
    use proptest::prelude::*;

    fn id(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    /// The table `dir` holds as a new process opens it: it names each of `keys` and holds
    /// exactly the records of `written`, the view that committed last.
    fn reopened_holds(dir: &Path, written: &IndexTable, keys: &[&str]) -> IndexTable {
        let reopened = IndexTable::open(dir).unwrap();
        for key in keys {
            assert!(reopened.has_object(key), "{key}");
        }
        assert_eq!(reopened.len(), written.len());
        let listed: Vec<BlobId> = reopened.blobs().map(|(id, _)| id).collect();
        assert_eq!(
            listed,
            written.blobs().map(|(id, _)| id).collect::<Vec<_>>()
        );
        reopened
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
        /// Puts the delta in runs no `meta` names yet, as a first refresh does.
        Spill,
        Reopen,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..12, 1usize..4, 0usize..40).prop_map(|(s, p, b)| Step::Add(s, p, b)),
            2 => (0u64..12).prop_map(Step::Forget),
            1 => (0u64..12).prop_map(Step::Condemn),
            1 => Just(Step::Commit),
            1 => Just(Step::Spill),
            1 => Just(Step::Reopen),
        ]
    }

    /// The runs `meta` in `dir` names (none without one).
    fn read_meta_runs(dir: &Path) -> Vec<String> {
        IndexTable::open(dir)
            .map(|t| t.runs.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
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
            // Small tiers, so a few commits climb several of them.
            table.tier_base = 8;
            table.lazy = false;
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
                    Step::Commit => {
                        table.commit().unwrap();
                        // A commit leaves no file its `meta` does not name: what spills
                        // wrote and merged away is gone.
                        let mut on_disk: Vec<String> = fs::read_dir(dir.path().join(RUNS))
                            .map(|entries| {
                                entries
                                    .flatten()
                                    .map(|e| e.file_name().to_string_lossy().into_owned())
                                    .collect()
                            })
                            .unwrap_or_default();
                        on_disk.sort();
                        let mut named = table.runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
                        named.sort();
                        prop_assert_eq!(on_disk, named);
                    }
                    Step::Spill => {
                        table.spill().unwrap();
                        prop_assert_eq!(table.pending(), 0);
                        // Spilled runs merged away are removed at once: the directory
                        // holds at most the view's runs and those `meta` names.
                        let files = fs::read_dir(dir.path().join(RUNS)).map(|e| e.count()).unwrap_or(0);
                        prop_assert!(files <= table.runs.len() + read_meta_runs(dir.path()).len());
                    }
                    Step::Reopen => {
                        table.commit().unwrap();
                        table = IndexTable::open(dir.path()).unwrap();
                        table.tier_base = 8;
            table.lazy = false;
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

    /// An object whose plaintext stops inside its second pack is not listed: the blobs
    /// of the first pack, decoded before the error, are not found (in the table and the
    /// hash map alike), and the same pack listed whole by another object is.
    #[test]
    fn an_object_that_does_not_decode_adds_no_live_pack() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.lazy = false;
        let mut memory = MemoryIndex::default();
        let whole = file(1, 2, 30);
        let plain = postcard::to_stdvec(&whole).unwrap();
        let first = postcard::to_stdvec(&whole.packs[0]).unwrap().len();
        let cut = &plain[..1 + first + 10];
        let views: [&mut dyn BlobIndex; 2] = [&mut table, &mut memory];
        for view in views {
            assert!(view.add_encoded("index/cut", cut).is_err());
            assert!(!view.has_object("index/cut"));
            assert_eq!(view.len(), 0);
            assert!(view.get(&whole.packs[0].blobs[0].id).is_none());
            view.add_encoded("index/whole", &plain).unwrap();
            assert_eq!(view.len(), 60);
            assert!(view.get(&whole.packs[0].blobs[0].id).is_some());
        }
        table.commit().unwrap();
        assert_eq!(IndexTable::open(dir.path()).unwrap().len(), 60);
    }

    /// A first refresh spills as it reads and then commits a few objects more: however
    /// small that commit, it names the spilled runs, so the next process reads nothing
    /// again, and no file is left that `meta` does not name.
    #[test]
    fn a_lazy_table_names_what_it_spilled_at_its_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        assert!(table.lazy);
        table.add_object("index/a", &file(1, 2, 30));
        table.spill().unwrap();
        table.add_object("index/b", &file(2, 3, 20));
        table.spill().unwrap();
        table.add_object("index/c", &file(3, 1, 5));
        table.commit().unwrap();
        let reopened = reopened_holds(dir.path(), &table, &["index/a", "index/b", "index/c"]);
        let files = fs::read_dir(dir.path().join(RUNS)).unwrap().count();
        assert_eq!(files, reopened.runs.len());
    }

    #[test]
    fn a_damaged_table_is_refused_or_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.lazy = false;
        table.add_object("index/a", &file(1, 2, 30));
        table.commit().unwrap();
        assert_eq!(table.pending(), 0);
        let base = table.runs[0].name.clone();
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
    fn commits_write_runs_merged_by_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.tier_base = 16;
        table.lazy = false;
        table.add_object("index/base", &file(0, 3, 40));
        table.commit().unwrap();
        assert_eq!(table.run_sizes(), [120], "the first commit writes one run");
        table.add_object("index/small", &file(1, 1, 10));
        table.commit().unwrap();
        assert_eq!(table.run_sizes(), [120, 10], "a smaller one beside it");
        table.forget_object("index/small");
        table.add_object("index/small-2", &file(2, 1, 11));
        table.commit().unwrap();
        assert_eq!(
            table.run_sizes(),
            [120, 10, 11],
            "runs of one tier wait for a fourth"
        );
        assert_eq!(table.len(), 131);
        for seed in 3..5 {
            table.add_object(&format!("index/{seed}"), &file(seed, 1, 9 + seed as usize));
            table.commit().unwrap();
        }
        assert_eq!(
            table.run_sizes(),
            [120, 11 + 12 + 13],
            "four runs of tier 0 merged into one of tier 1, the dead records dropped"
        );
        table.add_object("index/small-again", &file(1, 1, 10));
        assert_eq!(table.len(), 166, "a pack listed again is live again");
        table.commit().unwrap();
        assert_eq!(table.run_sizes(), [120, 36, 10], "its records added again");
        assert!(table.contains(&file(1, 1, 10).packs[0].blobs[3].id));
        for seed in 5..9 {
            table.add_object(&format!("index/{seed}"), &file(seed, 1, 20 + seed as usize));
            table.commit().unwrap();
        }
        let sizes = table.run_sizes();
        assert!(
            sizes.windows(2).all(|w| tier(w[0], 16) >= tier(w[1], 16)),
            "{sizes:?}"
        );
        for t in 0..8 {
            let same = sizes.iter().filter(|&&c| tier(c, 16) == t).count();
            assert!(same < TIER_FANOUT, "{same} runs of tier {t}: {sizes:?}");
        }
        assert_eq!(sizes.iter().sum::<usize>(), table.len());
        let reopened = IndexTable::open(dir.path()).unwrap();
        assert_eq!(reopened.run_sizes(), sizes);
        assert_eq!(reopened.len(), table.len());
    }

    #[test]
    fn tiers_keep_few_runs_and_rewrite_each_record_a_few_times() {
        // A million records committed 1,000 at a time, with a tier base of 1,000.
        let (mut runs, mut written) = (Vec::<(usize, bool)>::new(), 0usize);
        for _ in 0..1000 {
            let planned = plan(&runs, 1000, 1000);
            runs = planned
                .iter()
                .map(|p| {
                    if !p.keep {
                        written += p.count;
                    }
                    (p.count, true)
                })
                .collect();
            assert!(runs.len() <= 3 * 6, "{} runs", runs.len());
        }
        assert_eq!(runs.iter().map(|r| r.0).sum::<usize>(), 1_000_000);
        let rewrites = written as f64 / 1_000_000.0;
        assert!(rewrites < 7.0, "each record written {rewrites} times");
    }

    /// Two new hosts' first refreshes at once on one state directory: the second's commit
    /// removes the runs the first spilled (no `meta` names them), between the first's
    /// spills and its commit. The first still has them (mapped, their files open), writes
    /// them again, and its commit names every object it read, records read through the
    /// open files of runs whose names are gone.
    #[test]
    fn runs_spilled_and_removed_by_another_process_are_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = IndexTable::open(dir.path()).unwrap();
        first.tier_base = 4;
        first.add_object("index/a", &file(1, 2, 30));
        first.spill().unwrap();
        first.add_object("index/b", &file(2, 3, 20));
        first.spill().unwrap();
        let spilled: Vec<String> = first.runs.iter().map(|r| r.name.clone()).collect();
        let mut second = IndexTable::open(dir.path()).unwrap();
        second.lazy = false;
        second.add_object("index/c", &file(3, 1, 5));
        second.commit().unwrap();
        assert!(spilled
            .iter()
            .all(|name| !dir.path().join(RUNS).join(name).exists()));
        first.add_object("index/d", &file(4, 1, 5));
        first.commit().unwrap();
        let reopened = reopened_holds(dir.path(), &first, &["index/a", "index/b", "index/d"]);
        assert!(reopened.contains(&file(1, 2, 30).packs[1].blobs[7].id));
    }

    #[test]
    fn a_view_whose_runs_another_process_merged_away_writes_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = IndexTable::open(dir.path()).unwrap();
        first.tier_base = 4;
        first.lazy = false;
        first.add_object("index/a", &file(1, 2, 30));
        first.commit().unwrap();
        let mut second = IndexTable::open(dir.path()).unwrap();
        second.tier_base = 4;
        second.lazy = false;
        second.add_object("index/b", &file(2, 3, 30));
        second.commit().unwrap();
        assert!(first
            .runs
            .iter()
            .all(|r| !dir.path().join(RUNS).join(&r.name).exists()));
        // The first view still answers from its mapping, and writes what it needs.
        assert!(first.contains(&file(1, 2, 30).packs[1].blobs[7].id));
        first.add_object("index/c", &file(3, 1, 5));
        first.commit().unwrap();
        let reopened = IndexTable::open(dir.path()).unwrap();
        for key in ["index/a", "index/c"] {
            assert!(reopened.has_object(key));
        }
        assert_eq!(reopened.len(), first.len());
        assert!(reopened.contains(&file(1, 2, 30).packs[1].blobs[7].id));
        // The second view has nothing to write: it takes up the newer one.
        assert!(second.adopt_newer().unwrap());
        assert!(second.has_object("index/c") && !second.has_object("index/b"));
        assert!(!second.adopt_newer().unwrap(), "already the newest");
    }

    #[test]
    fn a_version_2_table_opens_as_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = IndexTable::open(dir.path()).unwrap();
        table.lazy = false;
        table.add_object("index/a", &file(1, 2, 30));
        table.commit().unwrap();
        #[derive(Serialize)]
        struct V2<'a> {
            base: Option<String>,
            recent: Option<String>,
            packs: &'a [PackMeta],
            objects: Vec<(String, Vec<u32>)>,
        }
        let old = V2 {
            base: Some(table.runs[0].name.clone()),
            recent: None,
            packs: &table.packs,
            objects: table.objects(),
        };
        let mut raw = META_MAGIC.to_vec();
        raw.extend_from_slice(&2u32.to_le_bytes());
        raw.extend_from_slice(&postcard::to_stdvec(&old).unwrap());
        fs::write(dir.path().join(META), raw).unwrap();
        let reopened = IndexTable::open(dir.path()).unwrap();
        assert_eq!(reopened.run_sizes(), table.run_sizes());
        assert_eq!(reopened.len(), 60);
    }
}
