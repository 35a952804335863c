//! The persistent files cache of a node, read and written as a sorted stream.
//!
//! After a backup, the node remembers for each regular file its size, mtime, ctime and
//! inode together with the blob ids of its content. The next backup reuses the ids of any
//! file whose four values are unchanged (and whose blobs are still in the repository)
//! without reading it: incremental-forever speed, also after a restart. The cache lives in
//! the node's state directory, one file per repository and node.
//!
//! A node of millions of files must not hold two caches of millions of entries. The
//! walker visits files in one fixed order (roots in order, then component by component:
//! [`path_order`]), and the cache is written in that order as it goes, so the next backup
//! reads the previous cache *sequentially*, a record at a time, in step with its walk:
//! [`FilesCache::lookup`] only moves forward. The new cache is written beside the old one
//! ([`NewFilesCache`]) and renamed over it when the backup is committed.
//!
//! Layout (version 2): a zstd stream of records, each a `u32` little-endian length and a
//! postcard [`CachedFile`]; the first record is the header `{version: 2}`. A truncated or
//! damaged cache is read up to the damage: the rest of the files are read again.

use crate::{AgentError, AgentResult};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use strata_repo::manifest_chunks::path_order;
use strata_repo::BlobId;

/// Identity of a file's content as far as the filesystem tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch: catches a content change
    /// that had its mtime set back.
    pub ctime_ns: i64,
    /// Inode number: a file replaced by another of the same size and times differs here.
    pub inode: u64,
}

/// One cached file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFile {
    path: Vec<u8>,
    stamp: FileStamp,
    chunks: Vec<BlobId>,
}

/// The whole cache as version 1 wrote it (one postcard object, in no particular order).
#[derive(Serialize, Deserialize)]
struct CacheFileV1 {
    version: u32,
    entries: Vec<CachedFile>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
}

const VERSION: u32 = 2;
/// Largest record a reader accepts: a file of a million blobs (32 MiB of ids).
const MAX_RECORD: u32 = 40 << 20;

/// Where the records of the previous cache come from.
enum Source {
    Empty,
    /// Version 2: decoded one record at a time.
    Stream(Box<zstd::stream::read::Decoder<'static, BufReader<File>>>),
    /// Version 1 (written before the stream): read whole once, sorted.
    Sorted(std::vec::IntoIter<CachedFile>),
}

impl Source {
    fn next(&mut self) -> Option<CachedFile> {
        match self {
            Source::Empty => None,
            Source::Sorted(records) => records.next(),
            Source::Stream(decoder) => match read_record(decoder.as_mut()) {
                Some(bytes) => postcard::from_bytes(&bytes).ok(),
                None => None,
            },
        }
    }
}

/// Reads one length-prefixed record; `None` at the end or on damage.
fn read_record(input: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).ok()?;
    let len = u32::from_le_bytes(len);
    if len > MAX_RECORD {
        return None;
    }
    let mut bytes = Vec::new();
    input.take(len as u64).read_to_end(&mut bytes).ok()?;
    (bytes.len() == len as usize).then_some(bytes)
}

struct Cursor {
    source: Source,
    /// The next record not yet passed by the walk.
    current: Option<CachedFile>,
}

/// The previous backup's cache of one node for one repository, read forward in walk
/// order. Looking up paths out of order is not an error: a path the reader has passed
/// is a miss (the file is read again).
pub struct FilesCache {
    cursor: Mutex<Cursor>,
    /// Where the cache lives; the next cache is written beside it.
    path: Option<PathBuf>,
}

impl Default for FilesCache {
    fn default() -> Self {
        FilesCache {
            cursor: Mutex::new(Cursor {
                source: Source::Empty,
                current: None,
            }),
            path: None,
        }
    }
}

impl std::fmt::Debug for FilesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FilesCache({:?})", self.path)
    }
}

impl FilesCache {
    /// Where the cache of `node` for repository `repo_id` lives under `state_dir`.
    pub fn path(state_dir: &Path, repo_id: &str, node: &str) -> PathBuf {
        state_dir
            .join("files-cache")
            .join(repo_id)
            .join(format!("{node}.cache"))
    }

    /// Opens the cache at `path` for reading; a missing or unreadable cache is an empty
    /// one (it is only a hint). The next backup's cache goes beside it.
    pub fn load(path: &Path) -> FilesCache {
        let source = open_source(path).unwrap_or(Source::Empty);
        let mut cursor = Cursor {
            source,
            current: None,
        };
        cursor.current = cursor.source.next();
        FilesCache {
            cursor: Mutex::new(cursor),
            path: Some(path.to_path_buf()),
        }
    }

    /// Whether the cache held no file when it was opened (or has passed them all): a
    /// first backup, which reads every file.
    pub fn is_empty(&self) -> bool {
        self.cursor.lock().expect("cache lock").current.is_none()
    }

    /// The cached chunk ids of `path` when its stamp is unchanged. Paths must come in
    /// walk order: records before `path` are passed over for good.
    pub fn lookup(&self, path: &[u8], stamp: &FileStamp) -> Option<Vec<BlobId>> {
        let mut cursor = self.cursor.lock().expect("cache lock");
        loop {
            let order = match &cursor.current {
                None => return None,
                Some(record) => path_order(&record.path, path),
            };
            match order {
                Ordering::Less => cursor.current = cursor.source.next(),
                Ordering::Greater => return None,
                Ordering::Equal => {
                    let record = cursor.current.take().expect("a current record");
                    cursor.current = cursor.source.next();
                    return (record.stamp == *stamp).then_some(record.chunks);
                }
            }
        }
    }

    /// A cache to write the next backup's records into, beside this one (nowhere when
    /// this one has no place: tests and re-reads).
    pub fn next_cache(&self) -> NewFilesCache {
        match &self.path {
            Some(path) => NewFilesCache::create(path),
            None => NewFilesCache::default(),
        }
    }
}

fn open_source(path: &Path) -> Option<Source> {
    let file = File::open(path).ok()?;
    let mut decoder = zstd::stream::read::Decoder::new(file).ok()?;
    let first = read_record(&mut decoder);
    if let Some(header) = first
        .as_deref()
        .and_then(|b| postcard::from_bytes::<Header>(b).ok())
        .filter(|h| h.version == VERSION)
    {
        let _ = header;
        return Some(Source::Stream(Box::new(decoder)));
    }
    // Version 1: one postcard object, whole.
    let bytes = std::fs::read(path).ok()?;
    let plain = zstd::stream::decode_all(&bytes[..]).ok()?;
    let file = postcard::from_bytes::<CacheFileV1>(&plain)
        .ok()
        .filter(|f| f.version == 1)?;
    let mut entries = file.entries;
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    Some(Source::Sorted(entries.into_iter()))
}

/// The cache a backup writes as it walks, in walk order, to a temporary file beside the
/// old cache; [`NewFilesCache::save`] puts it in place once the backup is committed.
#[derive(Default)]
pub struct NewFilesCache {
    out: Option<Writing>,
    len: usize,
    /// The first error, reported by `save`.
    error: Option<(PathBuf, std::io::Error)>,
}

struct Writing {
    encoder: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    last: Vec<u8>,
    written: usize,
}

impl std::fmt::Debug for NewFilesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewFilesCache({} files)", self.len)
    }
}

impl NewFilesCache {
    /// Starts writing the cache that will replace the one at `target`.
    pub fn create(target: &Path) -> NewFilesCache {
        let temp = target.with_extension("cache.new");
        let opened = (|| {
            std::fs::create_dir_all(target.parent().expect("cache paths have a parent"))?;
            let file = File::create(&temp)?;
            let mut encoder = zstd::stream::write::Encoder::new(BufWriter::new(file), 1)?;
            write_record(&mut encoder, &Header { version: VERSION })?;
            Ok::<_, std::io::Error>(encoder)
        })();
        match opened {
            Ok(encoder) => NewFilesCache {
                out: Some(Writing {
                    encoder,
                    temp,
                    target: target.to_path_buf(),
                    last: Vec::new(),
                    written: 0,
                }),
                len: 0,
                error: None,
            },
            Err(err) => NewFilesCache {
                out: None,
                len: 0,
                error: Some((temp, err)),
            },
        }
    }

    /// Records a file for the next backup. Files must come in walk order; one out of
    /// order is left out (the next backup reads it again) rather than breaking the order
    /// the reader relies on.
    pub fn insert(&mut self, path: Vec<u8>, stamp: FileStamp, chunks: Vec<BlobId>) {
        self.len += 1;
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if out.written > 0 && path_order(&out.last, &path) != Ordering::Less {
            return;
        }
        let record = CachedFile {
            path,
            stamp,
            chunks,
        };
        if let Err(err) = write_record(&mut out.encoder, &record) {
            self.error = Some((out.temp.clone(), err));
            self.out = None;
            return;
        }
        out.last = record.path;
        out.written += 1;
    }

    /// Number of files recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no file was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finishes the stream and puts it in place of the old cache (fsync, rename).
    pub fn save(self) -> AgentResult<()> {
        if let Some((path, source)) = self.error {
            return Err(AgentError::Cache { path, source });
        }
        let Some(out) = self.out else {
            return Ok(());
        };
        let err = |source| AgentError::Cache {
            path: out.temp.clone(),
            source,
        };
        let file = out
            .encoder
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&out.temp, &out.target).map_err(err)
    }
}

fn write_record(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(value).expect("cache records serialize");
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64) -> FileStamp {
        FileStamp {
            size,
            mtime_ns: 5,
            ctime_ns: 6,
            inode: 7,
        }
    }

    #[test]
    fn cache_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = FilesCache::path(dir.path(), "repo1", "db1");
        let mut cache = FilesCache::load(&path).next_cache();
        cache.insert(b"/data/a".to_vec(), stamp(10), vec![BlobId([1; 32])]);
        cache.insert(b"/data/b".to_vec(), stamp(11), vec![BlobId([2; 32])]);
        assert_eq!(cache.len(), 2);
        cache.save().unwrap();
        let loaded = FilesCache::load(&path);
        assert_eq!(
            loaded.lookup(b"/data/a", &stamp(10)),
            Some(vec![BlobId([1; 32])])
        );
        let touched = FileStamp {
            mtime_ns: 8,
            ..stamp(11)
        };
        assert_eq!(loaded.lookup(b"/data/b", &touched), None);
    }

    #[test]
    fn lookups_move_forward_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.cache");
        let mut cache = NewFilesCache::create(&path);
        // Walk order: a directory's files before a sibling whose name sorts between.
        for (i, p) in ["/d/a", "/d/a/x", "/d/a/y", "/d/a-b", "/d/c"]
            .iter()
            .enumerate()
        {
            cache.insert(p.as_bytes().to_vec(), stamp(i as u64), vec![]);
        }
        // Out of order: left out, the order stays intact.
        cache.insert(b"/d/b".to_vec(), stamp(9), vec![]);
        cache.save().unwrap();
        let loaded = FilesCache::load(&path);
        assert!(loaded.lookup(b"/d/a/x", &stamp(1)).is_some());
        // A path the walk no longer has is skipped over.
        assert!(loaded.lookup(b"/d/a-b", &stamp(3)).is_some());
        // Passed records are gone for good; unknown paths are misses.
        assert!(loaded.lookup(b"/d/a/y", &stamp(2)).is_none());
        assert!(loaded.lookup(b"/d/b", &stamp(9)).is_none());
        assert!(loaded.lookup(b"/d/c", &stamp(4)).is_some());
        assert!(loaded.lookup(b"/d/z", &stamp(4)).is_none());
    }

    #[test]
    fn a_version_1_cache_is_still_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.cache");
        let entries = ["/d/b", "/d/a"]
            .iter()
            .map(|p| CachedFile {
                path: p.as_bytes().to_vec(),
                stamp: stamp(1),
                chunks: vec![BlobId([3; 32])],
            })
            .collect();
        let plain = postcard::to_stdvec(&CacheFileV1 {
            version: 1,
            entries,
        })
        .unwrap();
        std::fs::write(&path, zstd::bulk::compress(&plain, 1).unwrap()).unwrap();
        let loaded = FilesCache::load(&path);
        assert!(loaded.lookup(b"/d/a", &stamp(1)).is_some());
        assert!(loaded.lookup(b"/d/b", &stamp(1)).is_some());
    }

    #[test]
    fn a_damaged_cache_is_read_up_to_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cache");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(FilesCache::load(&path).lookup(b"/a", &stamp(1)).is_none());
        assert!(FilesCache::load(&dir.path().join("missing"))
            .lookup(b"/a", &stamp(1))
            .is_none());
        let mut cache = NewFilesCache::create(&path);
        // Enough records for several zstd blocks: the first ones survive the cut.
        for i in 0..100_000u64 {
            cache.insert(
                format!("/f{i:06}").into_bytes(),
                stamp(i),
                vec![BlobId([i as u8; 32])],
            );
        }
        cache.save().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let loaded = FilesCache::load(&path);
        assert!(loaded.lookup(b"/f000001", &stamp(1)).is_some());
        assert!(loaded.lookup(b"/f099999", &stamp(99_999)).is_none());
    }
}
