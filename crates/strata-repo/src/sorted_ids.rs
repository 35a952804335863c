//! A set of blob ids too large for memory, kept sorted on disk: an external sort.
//!
//! Garbage collection needs the set of every blob id the backups and archive records
//! reference (a hundred million of them in a large repository). [`SortedIdsBuilder`]
//! takes ids in any order into a bounded buffer; a full buffer is sorted, deduplicated
//! and written as a run file; [`SortedIdsBuilder::finish`] merges the runs into one
//! sorted file without duplicates. [`SortedIds`] streams it in order (for merge joins
//! with [`crate::index::BlobIndex::copies`]) and answers membership by binary search in
//! a memory map. Memory: the buffer (32 bytes an id) and one read buffer per run; disk:
//! 32 bytes an id (twice while merging).
//!
//! Files live in a [`Scratch`] directory, removed when it is dropped (an error or a
//! panic included).

use crate::BlobId;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Ids a builder holds in memory before it writes a run (64 MiB).
pub const DEFAULT_BUFFER_IDS: usize = 2 << 20;

const ID: usize = 32;

/// A scratch directory, removed with its files when the last handle is dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Makes a new directory `<parent>/<prefix>-<random>` (and `parent` if needed).
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<Arc<Scratch>> {
        std::fs::create_dir_all(parent)?;
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).expect("the OS random source is available");
        let path = parent.join(format!("{prefix}-{}", hex::encode(random)));
        std::fs::create_dir(&path)?;
        Ok(Arc::new(Scratch { path }))
    }

    /// A scratch directory in `<state dir>/tmp` (the state directory of this process's
    /// local index tables, see [`crate::shared_index::use_local_dir`]) when it has one,
    /// else in the system's temporary directory. Directories of the same prefix left
    /// there by a process killed outright, untouched for [`STALE_SCRATCH`], are removed
    /// first.
    pub fn for_process(prefix: &str) -> io::Result<Arc<Scratch>> {
        let parent = crate::shared_index::local_dir()
            .and_then(Path::parent)
            .map(|state| state.join("tmp"))
            .unwrap_or_else(std::env::temp_dir);
        remove_stale(&parent, prefix, STALE_SCRATCH);
        Scratch::new_in(&parent, prefix)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How long a scratch directory may go unmodified before another process removes it
/// (a run writes its files at its start and again at its sweep; one whose files went
/// meanwhile fails on the next read, it does not read wrong data).
pub const STALE_SCRATCH: std::time::Duration = std::time::Duration::from_secs(2 * 24 * 3600);

/// Removes the directories `<parent>/<prefix>-*` unmodified for `age`.
fn remove_stale(parent: &Path, prefix: &str, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let start = format!("{prefix}-");
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed >= age);
        if stale && entry.file_name().to_string_lossy().starts_with(&start) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A sorted set of distinct blob ids in a file; see the module documentation.
#[derive(Debug)]
pub struct SortedIds {
    path: PathBuf,
    len: u64,
    /// `None` when empty (an empty file cannot be mapped).
    map: Option<memmap2::Mmap>,
    scratch: Arc<Scratch>,
}

impl SortedIds {
    /// How many ids.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when there are no ids.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `id` is in the set (a binary search in the memory map: only the pages it
    /// touches are read).
    pub fn contains(&self, id: &BlobId) -> bool {
        let Some(map) = &self.map else {
            return false;
        };
        let (mut low, mut high) = (0usize, self.len as usize);
        while low < high {
            let mid = low + (high - low) / 2;
            match map[mid * ID..(mid + 1) * ID].cmp(&id.0[..]) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// The ids in order, read from the file through a small buffer.
    pub fn iter(&self) -> io::Result<IdReader> {
        IdReader::open(&self.path)
    }

    /// A builder that starts from this set: the ids pushed to it are added.
    pub fn extend(self) -> SortedIdsBuilder {
        SortedIdsBuilder::with_buffer(self.scratch.clone(), DEFAULT_BUFFER_IDS, Some(self))
    }
}

impl Drop for SortedIds {
    fn drop(&mut self) {
        self.map = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Streams the ids of a sorted file (or a run) in order.
pub struct IdReader {
    reader: BufReader<File>,
    failed: Option<io::Error>,
}

impl IdReader {
    fn open(path: &Path) -> io::Result<IdReader> {
        Ok(IdReader {
            reader: BufReader::with_capacity(1 << 16, File::open(path)?),
            failed: None,
        })
    }

    /// The read error that ended the iteration early, if one did.
    pub fn error(&mut self) -> Option<io::Error> {
        self.failed.take()
    }
}

impl Iterator for IdReader {
    type Item = BlobId;

    fn next(&mut self) -> Option<BlobId> {
        let mut id = [0u8; ID];
        match self.reader.read_exact(&mut id) {
            Ok(()) => Some(BlobId(id)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => {
                self.failed = Some(e);
                None
            }
        }
    }
}

/// Takes ids in any order; see the module documentation.
#[derive(Debug)]
pub struct SortedIdsBuilder {
    scratch: Arc<Scratch>,
    buffer: Vec<BlobId>,
    capacity: usize,
    runs: Vec<PathBuf>,
    /// The set this builder extends (merged as one more run).
    base: Option<SortedIds>,
    /// The first write error, reported by [`SortedIdsBuilder::finish`].
    failed: Option<io::Error>,
    pushed: u64,
}

impl SortedIdsBuilder {
    /// A builder writing its files in `scratch`, holding [`DEFAULT_BUFFER_IDS`] in memory.
    pub fn new(scratch: Arc<Scratch>) -> SortedIdsBuilder {
        SortedIdsBuilder::with_buffer(scratch, DEFAULT_BUFFER_IDS, None)
    }

    /// A builder holding at most `capacity` ids in memory (at least one).
    pub fn with_buffer(
        scratch: Arc<Scratch>,
        capacity: usize,
        base: Option<SortedIds>,
    ) -> SortedIdsBuilder {
        let capacity = capacity.max(1);
        SortedIdsBuilder {
            scratch,
            buffer: Vec::with_capacity(capacity.min(1 << 16)),
            capacity,
            runs: Vec::new(),
            base,
            failed: None,
            pushed: 0,
        }
    }

    /// Adds an id (a write error is kept for [`SortedIdsBuilder::finish`]).
    pub fn push(&mut self, id: BlobId) {
        self.pushed += 1;
        self.buffer.push(id);
        if self.buffer.len() >= self.capacity {
            if let Err(e) = self.spill() {
                self.failed.get_or_insert(e);
                self.buffer.clear();
            }
        }
    }

    /// Ids pushed so far (duplicates counted).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    fn new_file(&self, what: &str) -> PathBuf {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).expect("the OS random source is available");
        self.scratch
            .path()
            .join(format!("{what}-{}", hex::encode(random)))
    }

    /// Sorts the buffer and writes it as a run.
    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_unstable();
        self.buffer.dedup();
        let path = self.new_file("run");
        self.runs.push(path.clone());
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
        for id in &self.buffer {
            out.write_all(&id.0)?;
        }
        // Scratch, not state: flushed, never synced (nothing reads it after a crash).
        out.flush()?;
        self.buffer.clear();
        Ok(())
    }

    /// Merges everything pushed (and the set extended) into one sorted file without
    /// duplicates. Blocking: call it off the async threads when the runs are large.
    #[allow(unsafe_code)] // a memory map of the sorted ids: the reason is beside the block
    pub fn finish(mut self) -> io::Result<SortedIds> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.runs.is_empty() && self.buffer.is_empty() {
            if let Some(base) = self.base.take() {
                // Nothing added: the set extended is the answer, not copied.
                return Ok(base);
            }
        }
        self.buffer.sort_unstable();
        self.buffer.dedup();
        let mut sources: Vec<Box<dyn Iterator<Item = BlobId>>> = Vec::new();
        let mut readers = Vec::new();
        for run in &self.runs {
            readers.push(run.clone());
        }
        let base_path = self.base.as_ref().map(|b| b.path.clone());
        if let Some(path) = &base_path {
            readers.push(path.clone());
        }
        let failed = std::rc::Rc::new(std::cell::RefCell::new(None::<io::Error>));
        for path in &readers {
            let mut reader = IdReader::open(path)?;
            let failed = failed.clone();
            sources.push(Box::new(std::iter::from_fn(move || {
                let next = reader.next();
                if let Some(e) = reader.error() {
                    failed.borrow_mut().get_or_insert(e);
                }
                next
            })));
        }
        let buffer = std::mem::take(&mut self.buffer);
        sources.push(Box::new(buffer.into_iter()));
        let path = self.new_file("ids");
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
        let mut len = 0u64;
        let mut last: Option<BlobId> = None;
        for id in merge(sources) {
            if last != Some(id) {
                out.write_all(&id.0)?;
                len += 1;
                last = Some(id);
            }
        }
        if let Some(e) = failed.borrow_mut().take() {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        out.flush()?;
        drop(out);
        for run in &self.runs {
            let _ = std::fs::remove_file(run);
        }
        // The set extended is merged: its file goes (with it, when it drops).
        drop(self.base.take());
        let map = if len == 0 {
            None
        } else {
            // Safety: the file is private to this process's scratch directory and never
            // written again while mapped.
            Some(unsafe { memmap2::Mmap::map(&File::open(&path)?)? })
        };
        Ok(SortedIds {
            path,
            len,
            map,
            scratch: self.scratch.clone(),
        })
    }
}

/// Merges sorted sources into one sorted stream (duplicates kept).
fn merge(sources: Vec<Box<dyn Iterator<Item = BlobId>>>) -> impl Iterator<Item = BlobId> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut sources = sources;
    let mut heap = BinaryHeap::new();
    for (i, source) in sources.iter_mut().enumerate() {
        if let Some(id) = source.next() {
            heap.push(Reverse((id, i)));
        }
    }
    std::iter::from_fn(move || {
        let Reverse((id, i)) = heap.pop()?;
        if let Some(next) = sources[i].next() {
            heap.push(Reverse((next, i)));
        }
        Some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn id(n: u16) -> BlobId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        bytes[31] = (n % 7) as u8;
        BlobId(bytes)
    }

    proptest! {
        /// Whatever the buffer size and however many extensions, the set holds exactly
        /// the distinct ids pushed, in order, and answers membership as a BTreeSet does.
        #[test]
        fn matches_a_btreeset(
            batches in proptest::collection::vec(proptest::collection::vec(0u16..400, 0..120), 1..4),
            capacity in 1usize..40,
            probes in proptest::collection::vec(0u16..400, 0..40),
        ) {
            let dir = std::env::temp_dir();
            let scratch = Scratch::new_in(&dir, "sorted-ids-test").unwrap();
            let root = scratch.path().to_path_buf();
            let mut expected = BTreeSet::new();
            let mut set: Option<SortedIds> = None;
            for batch in &batches {
                let mut builder = match set.take() {
                    None => SortedIdsBuilder::with_buffer(scratch.clone(), capacity, None),
                    Some(s) => SortedIdsBuilder::with_buffer(scratch.clone(), capacity, Some(s)),
                };
                for n in batch {
                    builder.push(id(*n));
                    expected.insert(id(*n));
                }
                let built = builder.finish().unwrap();
                prop_assert_eq!(built.len(), expected.len() as u64);
                let listed: Vec<BlobId> = built.iter().unwrap().collect();
                prop_assert_eq!(&listed, &expected.iter().copied().collect::<Vec<_>>());
                for n in &probes {
                    prop_assert_eq!(built.contains(&id(*n)), expected.contains(&id(*n)));
                }
                set = Some(built);
            }
            // Only the last set's file is left; all of it goes with the scratch.
            prop_assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
            drop(set);
            drop(scratch);
            prop_assert!(!root.exists());
        }
    }

    #[test]
    fn stale_scratch_directories_of_the_prefix_go_and_the_others_stay() {
        let scratch = Scratch::new_in(&std::env::temp_dir(), "sorted-ids-test").unwrap();
        let root = scratch.path();
        for name in ["gc-old", "gc-young", "other-old"] {
            std::fs::create_dir(root.join(name)).unwrap();
        }
        let old = std::time::SystemTime::now() - STALE_SCRATCH * 2;
        for name in ["gc-old", "other-old"] {
            File::open(root.join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        remove_stale(root, "gc", STALE_SCRATCH);
        let mut left: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["gc-young", "other-old"]);
    }

    #[test]
    fn an_empty_set_contains_nothing() {
        let scratch = Scratch::new_in(&std::env::temp_dir(), "sorted-ids-test").unwrap();
        let set = SortedIdsBuilder::new(scratch).finish().unwrap();
        assert!(set.is_empty());
        assert!(!set.contains(&id(1)));
        assert_eq!(set.iter().unwrap().count(), 0);
    }
}
