//! Snapshot of a node: walk its roots, reuse unchanged files from the files cache, chunk
//! and submit the rest to the repository's write pipeline, and build the node manifest.
//!
//! Problems with single files (vanished, unreadable, changed while read) are recorded as
//! warnings and do not stop the node; a file that could not be read makes the node
//! `partial`, because a database restored without one of its files is not a good backup.

use crate::files_cache::{FileStamp, FilesCache, NewFilesCache};
use crate::handles::{self, Dir};
use crate::prefetch::{cached, is_sample, Depth, Prefetcher};
use crate::progress::Progress;
use crate::spool::SpooledManifest;
use crate::{AgentError, AgentResult};
use bytes::Bytes;
use rustix::fs::FileType;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use strata_repo::chunker::Chunker;
use strata_repo::manifest::{Entry, EntryKind, Xattr};
use strata_repo::manifest_chunks::path_order;
use strata_repo::summary::{BackupStatus, NodeSummary};
use strata_repo::writer::BlobWriter;
use strata_repo::{BlobId, Repository};

/// How many warnings a node summary keeps verbatim (the count is always exact).
const MAX_WARNINGS_KEPT: usize = 100;
/// Read size for file contents.
const READ_SIZE: usize = 4 * 1024 * 1024;
/// How far ahead of the reads the kernel is asked to fetch a file (`POSIX_FADV_WILLNEED`):
/// the disk reads the next blocks while this thread chunks and hashes the current ones.
/// Without it a cold read waits for the disk, then the disk waits for the hashing (a full
/// backup of a cold data directory took 1.9x its warm time; see docs/benchmarks.md).
const READ_AHEAD: u64 = 4 * READ_SIZE as u64;
/// Page size that makes a file "page-structured" and selects the page chunker.
const PAGE_SIZE: u64 = 8192;
/// How close to the scan's start a file's mtime or ctime may be before the files cache
/// stops trusting it (git's "racy" rule). A write that lands in the same timestamp tick
/// as the walker's `lstat` leaves size, mtime and ctime unchanged, so the stamp cannot
/// tell the bytes read from the bytes now on disk. Two seconds covers the coarsest
/// timestamps a data directory may live on (FAT's 2 s, ext3's and HFS+'s 1 s) and the
/// kernel's coarse clock, which stamps files up to a tick behind the clock the scan
/// start is read from. Such files are read again by the next backup; files older than
/// that are trusted as before.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// What to back up on one node.
#[derive(Debug, Clone)]
pub struct NodeSource {
    /// The node's name, recorded in its manifest and summary.
    pub name: String,
    /// Directories or files; entries with `*`, `?` or `[` are glob patterns.
    pub roots: Vec<String>,
    /// Glob patterns of paths to leave out, matched against the path relative to the
    /// backup root (and against the bare file name when the pattern has no `/`).
    pub exclude: Vec<String>,
    /// Glob patterns (relative paths) of symlinks to follow when they point at a directory:
    /// the directory is backed up in the link's place. PostgreSQL's tablespaces
    /// (`pg_tblspc/<oid>`) are links to directories outside the data directory that
    /// belong to the cluster as much as the data directory itself.
    pub follow: Vec<String>,
    /// Files under the roots are never changed in place once written (ClickHouse's
    /// parts: a change is a new part): the files cache knows them by size, mtime and
    /// inode, not ctime, which every freeze changes (it links and chmods each file).
    pub immutable: bool,
}

/// The result of a node snapshot, before the coordinator stores it.
pub struct NodeBackup {
    /// The manifest, on disk until the backup's last step writes it.
    pub manifest: SpooledManifest,
    /// Figures; the coordinator adds stored and new bytes once the data is indexed.
    pub summary: NodeSummary,
    /// The files cache to save once the backup is committed.
    pub cache: NewFilesCache,
    /// The files whose content was read, with the index of their manifest entry: the
    /// places a chunk can be read again from, and the files to re-read when a chunk could
    /// not be uploaded after all.
    pub read_files: Vec<ReadFile>,
}

/// A file whose content this snapshot read.
#[derive(Debug, Clone)]
pub struct ReadFile {
    /// The path it was read from.
    pub path: PathBuf,
    /// Position of its entry in the manifest (see [`SpooledManifest::replace`]).
    pub entry: usize,
    /// Device and inode of the file the scan read: whatever reads it again by its path
    /// later must find this same file (a symlink or directory swapped in on the way leads
    /// to another one).
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
}

/// Where a snapshot sends the chunks it cuts: straight into the repository's write
/// pipeline ([`UploadSink`]), or only noted for a later upload once the coordinator has
/// decided which node sends which shared chunk ([`ScanSink`]).
pub trait ChunkSink {
    /// Whether the repository has (or is getting) the blob: a file found unchanged in the
    /// files cache is not read again only if all its blobs are known.
    fn is_known(&self, id: &BlobId) -> bool;
    /// Takes the chunk `id` found at `offset` in read file number `file`. Returns whether
    /// it was new to this sink. Blocks while a pipeline is full.
    fn submit(&mut self, id: BlobId, chunk: Bytes, file: u32, offset: u64) -> AgentResult<bool>;
    /// Whether the snapshot must remember every file it read ([`NodeBackup::read_files`]):
    /// the places a later upload reads chunks from and a repair re-reads. A sink that
    /// uploads as it goes needs neither (nothing is left to upload, so nothing can be
    /// lost), and a node of a million files then does not keep a million paths.
    fn keeps_places(&self) -> bool {
        true
    }
}

/// Uploads every chunk the repository lacks as the snapshot goes.
pub struct UploadSink<'a> {
    /// The repository's write pipeline.
    pub writer: &'a BlobWriter,
}

impl ChunkSink for UploadSink<'_> {
    fn is_known(&self, id: &BlobId) -> bool {
        self.writer.is_known(id)
    }

    fn keeps_places(&self) -> bool {
        false
    }

    fn submit(&mut self, id: BlobId, chunk: Bytes, _file: u32, _offset: u64) -> AgentResult<bool> {
        Ok(self.writer.submit(id, chunk)?)
    }
}

/// Where a chunk can be read again: file number, offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Index into [`NodeBackup::read_files`].
    pub file: u32,
    /// Byte offset in that file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Notes where each chunk the repository lacks can be read; uploads nothing.
pub struct ScanSink<'a> {
    /// The repository asked which chunks it has.
    pub repo: &'a Repository,
    /// Each chunk the repository lacks, at the first place the scan found it.
    pub missing: HashMap<BlobId, ChunkPlace>,
}

impl ChunkSink for ScanSink<'_> {
    fn is_known(&self, id: &BlobId) -> bool {
        self.repo.index().contains(id)
    }

    fn submit(&mut self, id: BlobId, chunk: Bytes, file: u32, offset: u64) -> AgentResult<bool> {
        if self.repo.index().contains(&id) || self.missing.contains_key(&id) {
            return Ok(false);
        }
        let len = chunk.len() as u32;
        self.missing.insert(id, ChunkPlace { file, offset, len });
        Ok(true)
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// What the walker knows about a name: its `lstat` (or, for an opened file, `fstat`).
#[derive(Debug, Clone, Copy)]
struct FileMeta {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileMeta {
    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    fn stamp(&self) -> FileStamp {
        FileStamp {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.ino,
        }
    }

    /// Whether `other` is the same file (device and inode) of the same type.
    fn same_file(&self, other: &FileMeta) -> bool {
        self.dev == other.dev && self.ino == other.ino && self.kind() == other.kind()
    }
}

impl From<&Metadata> for FileMeta {
    fn from(meta: &Metadata) -> Self {
        FileMeta {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            nlink: meta.nlink(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

impl From<&handles::Stat> for FileMeta {
    fn from(stat: &handles::Stat) -> Self {
        FileMeta {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: stat.st_mode,
            uid: stat.st_uid,
            gid: stat.st_gid,
            size: stat.st_size as u64,
            // u64 on some targets, u32 on others.
            #[allow(clippy::useless_conversion)]
            nlink: stat.st_nlink.into(),
            mtime_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
            ctime_ns: stat.st_ctime * 1_000_000_000 + stat.st_ctime_nsec as i64,
        }
    }
}

/// Where a name lives: its parent directory's handle and the name in it, or (for a
/// configured root) nowhere but its path.
type Parent<'d> = Option<(&'d Dir, &'d OsStr)>;

struct Snapshot<'a> {
    repo: &'a Repository,
    sink: &'a mut dyn ChunkSink,
    old_cache: &'a FilesCache,
    progress: &'a Progress,
    exclude: Vec<glob::Pattern>,
    follow: Vec<glob::Pattern>,
    /// See [`NodeSource::immutable`].
    immutable: bool,
    chunkers: (Chunker, Chunker),
    /// The entries so far, on disk.
    entries: SpooledManifest,
    /// The first error writing `entries`.
    spool_error: Option<io::Error>,
    cache: NewFilesCache,
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    summary: NodeSummary,
    read_files: Vec<ReadFile>,
    read_buf: Vec<u8>,
    /// Threads asking the disk for the next entries ahead of the walk (see
    /// [`crate::prefetch`]); a walk of a whole node has them, a reread of one file not.
    ahead: Option<Prefetcher>,
    /// What they ask for: the inodes and data of files while the samples read cold (a
    /// first backup), nothing otherwise.
    ahead_depth: Depth,
    /// The file being visited is a sample: its first read is looked up in the page cache
    /// first, and what that finds sets `ahead_depth`.
    sample: bool,
    /// Whether samples are taken at all (a first backup).
    sampling: bool,
    /// Files whose mtime or ctime is at or after this (the scan's start less
    /// [`RACY_WINDOW_NS`]) are never cached as clean.
    racy_since_ns: i64,
}

impl<'a> Snapshot<'a> {
    fn new(
        repo: &'a Repository,
        sink: &'a mut dyn ChunkSink,
        old_cache: &'a FilesCache,
        progress: &'a Progress,
    ) -> AgentResult<Self> {
        Ok(Snapshot {
            repo,
            sink,
            old_cache,
            progress,
            exclude: Vec::new(),
            follow: Vec::new(),
            immutable: false,
            chunkers: repo.chunkers(),
            entries: SpooledManifest::new(String::new(), Vec::new()).map_err(AgentError::Spool)?,
            spool_error: None,
            cache: old_cache.next_cache(),
            hard_links: HashMap::new(),
            summary: NodeSummary::default(),
            read_files: Vec::new(),
            read_buf: vec![0u8; READ_SIZE],
            ahead: None,
            ahead_depth: Depth::Nothing,
            sample: false,
            sampling: false,
            racy_since_ns: now_ns().saturating_sub(RACY_WINDOW_NS),
        })
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Takes the snapshot of one node, uploading what the repository lacks as it goes.
/// Blocking: run it on a blocking thread.
pub fn backup_node(
    repo: &Repository,
    writer: &BlobWriter,
    source: &NodeSource,
    old_cache: &FilesCache,
    progress: &Progress,
) -> AgentResult<NodeBackup> {
    let mut sink = UploadSink { writer };
    snapshot_node(repo, &mut sink, source, old_cache, progress)
}

/// Reads a file again and uploads its chunks (used when a chunk noted by a scan could not
/// be uploaded because the file changed since). `None` when the file cannot be read any
/// more or is not the file the scan read (a warning explains why).
pub fn reread_file(
    repo: &Repository,
    writer: &BlobWriter,
    file: &ReadFile,
    summary: &mut NodeSummary,
) -> AgentResult<Option<(Vec<BlobId>, u64, Metadata)>> {
    let path = file.path.as_path();
    let mut sink = UploadSink { writer };
    let cache = FilesCache::default();
    let progress = Progress::default();
    let mut snap = Snapshot::new(repo, &mut sink, &cache, &progress)?;
    let found = match fs::symlink_metadata(path) {
        Ok(meta) if (meta.dev(), meta.ino()) != (file.dev, file.ino) => {
            snap.warn(format!(
                "unreadable: {} (replaced since the scan; not read again)",
                path.display()
            ));
            None
        }
        Ok(meta) => snap
            .read_file(None, path, &FileMeta::from(&meta))?
            .map(|(c, s, _)| (c, s, meta)),
        Err(err) => {
            snap.warn(format!("vanished: {} ({err})", path.display()));
            None
        }
    };
    summary.warnings.append(&mut snap.summary.warnings);
    summary.warning_count += snap.summary.warning_count;
    Ok(found)
}

/// Takes the snapshot of one node, sending chunks to `sink`. Blocking: run it on a
/// blocking thread. Stops with [`AgentError::Cancelled`] once `progress` is cancelled.
pub fn snapshot_node(
    repo: &Repository,
    sink: &mut dyn ChunkSink,
    source: &NodeSource,
    old_cache: &FilesCache,
    progress: &Progress,
) -> AgentResult<NodeBackup> {
    let patterns = |list: &[String]| {
        list.iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| AgentError::Pattern {
                    pattern: p.clone(),
                    why: e.to_string(),
                })
            })
            .collect::<AgentResult<Vec<_>>>()
    };
    let exclude = patterns(&source.exclude)?;
    let follow = patterns(&source.follow)?;
    let roots = expand_roots(&source.roots)?;
    let single = source.roots.len() == 1 && !is_glob(&source.roots[0]);
    let mut snap = Snapshot::new(repo, sink, old_cache, progress)?;
    snap.ahead = Some(Prefetcher::start());
    // A first backup reads every file: its data is asked for while the tree reads cold.
    // An incremental one reads only what changed and asks for nothing: asking for the
    // inodes saved 13% of a cold unchanged backup and cost 21% of a warm one.
    let first = old_cache.is_empty();
    snap.ahead_depth = if first { Depth::Data } else { Depth::Nothing };
    snap.sampling = first;
    snap.exclude = exclude;
    snap.follow = follow;
    snap.immutable = source.immutable;
    snap.summary.name = source.name.clone();
    snap.summary.roots = roots.iter().map(|r| r.display().to_string()).collect();
    for root in &roots {
        let meta = fs::symlink_metadata(root).map_err(|source| AgentError::Root {
            path: root.clone(),
            source,
        })?;
        if single && meta.is_dir() {
            // The root's own mode, owner and times, under the empty path.
            match Dir::open_path(root) {
                Ok(dir) => {
                    let xattrs = snap.xattrs_of(dir.as_fd(), root);
                    snap.push(Vec::new(), &FileMeta::from(&meta), EntryKind::Dir, xattrs);
                    snap.walk_dir(&dir, root, &[])?
                }
                Err(source) => {
                    return Err(AgentError::Root {
                        path: root.clone(),
                        source,
                    })
                }
            }
        } else {
            let rel = if single {
                root.file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default()
            } else {
                let bytes = root.as_os_str().as_bytes();
                bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec()
            };
            if rel.is_empty() {
                return Err(AgentError::Pattern {
                    pattern: root.display().to_string(),
                    why: "the filesystem root cannot be one of several roots".into(),
                });
            }
            snap.visit(None, root, rel, FileMeta::from(&meta))?;
        }
    }
    if let Some(err) = snap.spool_error.take() {
        return Err(AgentError::Spool(err));
    }
    let mut summary = snap.summary;
    summary.status = if summary.warnings.iter().any(|w| w.starts_with("unreadable")) {
        BackupStatus::Partial
    } else {
        BackupStatus::Complete
    };
    Ok(NodeBackup {
        manifest: {
            let mut manifest = snap.entries;
            manifest.node = source.name.clone();
            manifest.roots = summary.roots.clone();
            manifest
        },
        summary,
        cache: snap.cache,
        read_files: snap.read_files,
    })
}

/// Resolves globs and makes every root absolute.
fn expand_roots(roots: &[String]) -> AgentResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for root in roots {
        if is_glob(root) {
            let paths = glob::glob(root).map_err(|e| AgentError::Pattern {
                pattern: root.clone(),
                why: e.to_string(),
            })?;
            let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            if matched.is_empty() {
                return Err(AgentError::Root {
                    path: PathBuf::from(root),
                    source: io::Error::new(io::ErrorKind::NotFound, "the pattern matches nothing"),
                });
            }
            matched.sort();
            out.extend(matched);
        } else {
            out.push(PathBuf::from(root));
        }
    }
    let mut out = out
        .into_iter()
        .map(|p| std::path::absolute(&p).map_err(|source| AgentError::Root { path: p, source }))
        .collect::<AgentResult<Vec<_>>>()?;
    // Walked in the order of the manifest and the files cache (component by component),
    // so both come out sorted however the roots were listed.
    out.sort_by(|a, b| path_order(a.as_os_str().as_bytes(), b.as_os_str().as_bytes()));
    Ok(out)
}

fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
        out.extend_from_slice(parent);
        out.push(b'/');
        out.extend_from_slice(name);
        out
    }
}

pub(crate) fn stamp_of(meta: &Metadata) -> FileStamp {
    FileMeta::from(meta).stamp()
}

/// Opens a configured root file by its path, never through a symlink at its last name and
/// without blocking on a FIFO.
fn open_root_file(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

impl Snapshot<'_> {
    fn warn(&mut self, message: String) {
        self.summary.warning_count += 1;
        if self.summary.warnings.len() < MAX_WARNINGS_KEPT {
            self.summary.warnings.push(message);
        }
    }

    fn excluded(&self, rel: &[u8], name: &[u8]) -> bool {
        let rel = String::from_utf8_lossy(rel);
        let name = String::from_utf8_lossy(name);
        self.exclude
            .iter()
            .any(|p| p.matches(&rel) || (!p.as_str().contains('/') && p.matches(&name)))
    }

    fn followed(&self, rel: &[u8]) -> bool {
        let rel = String::from_utf8_lossy(rel);
        self.follow.iter().any(|p| p.matches(&rel))
    }

    /// Whether a file with this stamp may be trusted by the next backup without reading
    /// it (not "racy": see [`RACY_WINDOW_NS`]).
    fn cacheable(&self, stamp: &FileStamp) -> bool {
        stamp.mtime_ns < self.racy_since_ns && stamp.ctime_ns < self.racy_since_ns
    }

    fn walk_dir(&mut self, dir: &Dir, path: &Path, rel: &[u8]) -> AgentResult<()> {
        let listing = match dir.entries() {
            Ok(listing) => listing,
            Err(err) => {
                self.warn(format!("unreadable: {}: {err}", path.display()));
                return Ok(());
            }
        };
        let mut names: Vec<OsString> = listing.into_iter().map(|(name, _)| name).collect();
        names.sort();
        let visited: Vec<(OsString, Vec<u8>)> = names
            .into_iter()
            .map(|name| {
                let child_rel = join_rel(rel, name.as_bytes());
                (name, child_rel)
            })
            .filter(|(name, child_rel)| !self.excluded(child_rel, name.as_bytes()))
            .collect();
        let order: Vec<&OsStr> = visited.iter().map(|(name, _)| name.as_os_str()).collect();
        let window = self.ahead.as_ref().and_then(|ahead| ahead.directory(dir));
        for (index, (name, child_rel)) in visited.iter().enumerate() {
            if self.progress.is_cancelled() {
                return Err(AgentError::Cancelled);
            }
            if let Some(window) = &window {
                window.reached(&order, index, self.ahead_depth);
                self.sample = self.sampling && is_sample(index);
            }
            let (name, child_rel) = (name.as_os_str(), child_rel.clone());
            let child = path.join(name);
            match dir.stat(name) {
                Ok(Some(stat)) => {
                    self.visit(Some((dir, name)), &child, child_rel, FileMeta::from(&stat))?
                }
                Ok(None) => self.warn(format!(
                    "vanished: {} (deleted during the backup)",
                    child.display()
                )),
                Err(err) => self.warn(format!("unreadable: {}: {err}", child.display())),
            }
        }
        Ok(())
    }

    fn push(&mut self, rel: Vec<u8>, meta: &FileMeta, kind: EntryKind, xattrs: Vec<Xattr>) {
        let entry = Entry {
            path: rel,
            kind,
            mode: meta.mode & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            mtime_ns: meta.mtime_ns,
            xattrs,
        };
        if let Err(err) = self.entries.push(&entry) {
            self.spool_error.get_or_insert(err);
        }
    }

    /// The extended attributes of an opened file or directory (see
    /// [`handles::read_xattrs`]); what cannot be read, or is beyond the per-file bound, is
    /// an `unreadable` warning (the node is then partial) and the rest is kept.
    fn xattrs_of(&mut self, fd: impl std::os::fd::AsFd, path: &Path) -> Vec<Xattr> {
        match handles::read_xattrs(fd) {
            Ok((xattrs, true)) => xattrs,
            Ok((xattrs, false)) => {
                self.warn(format!(
                    "unreadable: {}: extended attributes beyond {} KiB not kept",
                    path.display(),
                    handles::XATTR_FILE_MAX / 1024
                ));
                xattrs
            }
            Err(err) => {
                self.warn(format!("unreadable: {}: {err}", path.display()));
                Vec::new()
            }
        }
    }

    /// Opens a directory the walker listed and checks it is the one it `lstat`ed: a
    /// directory swapped for a symlink or another directory is not entered.
    fn enter_dir(&mut self, at: Parent<'_>, path: &Path, meta: &FileMeta) -> Option<Dir> {
        let opened = match at {
            Some((parent, name)) => parent.open_dir(name),
            None => Dir::open_path(path),
        };
        let dir = match opened {
            Ok(dir) => dir,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.warn(format!(
                    "vanished: {} (deleted during the backup)",
                    path.display()
                ));
                return None;
            }
            Err(err) => {
                self.warn(format!("unreadable: {}: {err}", path.display()));
                return None;
            }
        };
        match rustix::fs::fstat(dir.as_fd()) {
            Ok(stat) if FileMeta::from(&stat).same_file(meta) => Some(dir),
            _ => {
                self.warn(format!(
                    "unreadable: {} (replaced during the backup; not entered)",
                    path.display()
                ));
                None
            }
        }
    }

    fn visit(
        &mut self,
        at: Parent<'_>,
        path: &Path,
        rel: Vec<u8>,
        meta: FileMeta,
    ) -> AgentResult<()> {
        let kind = meta.kind();
        if kind == FileType::Directory {
            let Some(dir) = self.enter_dir(at, path, &meta) else {
                return Ok(());
            };
            self.summary.dirs += 1;
            let xattrs = self.xattrs_of(dir.as_fd(), path);
            self.push(rel.clone(), &meta, EntryKind::Dir, xattrs);
            self.walk_dir(&dir, path, &rel)
        } else if kind == FileType::Symlink && self.followed(&rel) {
            // A link the configuration says to follow (a tablespace): its directory is
            // backed up in the link's place.
            match fs::metadata(path) {
                Ok(target) if target.is_dir() => {
                    let target = FileMeta::from(&target);
                    let Some(dir) = self.enter_dir(None, path, &target) else {
                        return Ok(());
                    };
                    self.summary.dirs += 1;
                    let xattrs = self.xattrs_of(dir.as_fd(), path);
                    self.push(rel.clone(), &target, EntryKind::Dir, xattrs);
                    self.walk_dir(&dir, path, &rel)
                }
                Ok(_) => {
                    self.warn(format!(
                        "unreadable: {} (expected a link to a directory)",
                        path.display()
                    ));
                    Ok(())
                }
                Err(err) => {
                    self.warn(format!("unreadable: {}: {err}", path.display()));
                    Ok(())
                }
            }
        } else if kind == FileType::Symlink {
            let target = match at {
                Some((parent, name)) => rustix::fs::readlinkat(parent.as_fd(), name, Vec::new())
                    .map(|t| t.into_bytes())
                    .map_err(io::Error::from),
                None => fs::read_link(path).map(|t| t.into_os_string().into_encoded_bytes()),
            };
            match target {
                Ok(target) => {
                    self.summary.symlinks += 1;
                    // A symlink's own extended attributes are not kept: they can only
                    // be read by path, which a swapped name could redirect.
                    self.push(rel, &meta, EntryKind::Symlink { target }, Vec::new());
                }
                Err(err) => self.warn(format!("unreadable: {}: {err}", path.display())),
            }
            Ok(())
        } else if kind == FileType::RegularFile {
            self.visit_file(at, path, rel, meta)
        } else {
            self.warn(format!("skipped: {} (special file)", path.display()));
            Ok(())
        }
    }

    fn visit_file(
        &mut self,
        at: Parent<'_>,
        path: &Path,
        rel: Vec<u8>,
        meta: FileMeta,
    ) -> AgentResult<()> {
        let link_key = (meta.nlink > 1).then_some((meta.dev, meta.ino));
        if let Some(first) = link_key.and_then(|key| self.hard_links.get(&key)) {
            let target = first.clone();
            self.summary.files += 1;
            self.push(rel, &meta, EntryKind::HardLink { target }, Vec::new());
            return Ok(());
        }
        let mut stamp = meta.stamp();
        if self.immutable {
            stamp.ctime_ns = 0;
        }
        let abs = path.as_os_str().as_bytes();
        let cached = self
            .old_cache
            .lookup(abs, &stamp)
            .filter(|chunks| chunks.iter().all(|id| self.sink.is_known(id)));
        // Opened even when the cache knows the content: its extended attributes are read
        // through the handle (never by path).
        let Some(mut file) = self.open_checked(at, path, &meta) else {
            self.progress.file_failed();
            return Ok(());
        };
        let xattrs = self.xattrs_of(&file, path);
        let (chunks, size, clean) = match cached {
            Some(chunks) => (chunks, stamp.size, true),
            None => match self.read_content(&mut file, path, &meta)? {
                Some(found) => {
                    if self.sink.keeps_places() {
                        self.read_files.push(ReadFile {
                            path: path.to_path_buf(),
                            entry: self.entries.len(),
                            dev: meta.dev,
                            ino: meta.ino,
                        });
                    }
                    found
                }
                None => {
                    self.progress.file_failed();
                    return Ok(());
                }
            },
        };
        self.summary.files += 1;
        self.summary.bytes += size;
        self.progress.file_done(size);
        // Only a file read whole and unchanged, and old enough that a write in the same
        // timestamp tick is ruled out, may be skipped by the next backup.
        if clean && self.cacheable(&stamp) {
            self.cache.insert(abs.to_vec(), stamp, chunks.clone());
        }
        // A later name of this inode links to this one only now that it is in the
        // manifest: a first name that could not be read must not become a link target
        // (the restore would find no such file), so the next name is read instead.
        if let Some(key) = link_key {
            self.hard_links.insert(key, rel.clone());
        }
        self.push(rel, &meta, EntryKind::File { size, chunks }, xattrs);
        Ok(())
    }

    /// Reads, chunks and submits a file. `None` when the file could not be read (a
    /// warning is recorded).
    ///
    /// The file is opened through its parent's handle with `O_NOFOLLOW | O_NONBLOCK`, and
    /// the opened file must be the one the walker `lstat`ed (device, inode, type): a
    /// symlink or another file swapped in between is never read under this name. The
    /// third value is false when the file changed while being read (it must not be
    /// cached as clean).
    fn read_file(
        &mut self,
        at: Parent<'_>,
        path: &Path,
        before: &FileMeta,
    ) -> AgentResult<Option<(Vec<BlobId>, u64, bool)>> {
        match self.open_checked(at, path, before) {
            Some(mut file) => self.read_content(&mut file, path, before),
            None => Ok(None),
        }
    }

    /// Opens a file the walker listed (see [`Snapshot::read_file`]) and checks it is the
    /// one it `lstat`ed; `None` with a warning otherwise.
    fn open_checked(&mut self, at: Parent<'_>, path: &Path, before: &FileMeta) -> Option<File> {
        let opened = match at {
            Some((parent, name)) => parent.open_read(name),
            None => open_root_file(path),
        };
        let file = match opened {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.warn(format!(
                    "vanished: {} (deleted during the backup)",
                    path.display()
                ));
                return None;
            }
            Err(err) => {
                self.warn(format!(
                    "unreadable: {}: {err} (replaced during the backup? not read)",
                    path.display()
                ));
                return None;
            }
        };
        match file.metadata() {
            Ok(opened) if FileMeta::from(&opened).same_file(before) => Some(file),
            _ => {
                self.warn(format!(
                    "unreadable: {} (replaced by another file or a symlink between listing and reading; not read)",
                    path.display()
                ));
                None
            }
        }
    }

    /// Reads, chunks and submits the content of a file opened by
    /// [`Snapshot::open_checked`].
    fn read_content(
        &mut self,
        file: &mut File,
        path: &Path,
        before: &FileMeta,
    ) -> AgentResult<Option<(Vec<BlobId>, u64, bool)>> {
        let size = before.size;
        let chunker =
            if size.is_multiple_of(PAGE_SIZE) && size >= self.chunkers.1.params().min as u64 {
                self.chunkers.1.clone()
            } else {
                self.chunkers.0.clone()
            };
        // `pending[start..]` holds bytes read but not yet cut. Each chunk is copied into its
        // own buffer: a chunk waiting in the pipeline then pins exactly its own bytes, not
        // the whole read buffer, so memory stays bounded by the queue lengths.
        let mut pending: Vec<u8> = Vec::with_capacity(chunker.lookahead() + READ_SIZE);
        let mut start = 0;
        let mut chunks = Vec::new();
        let mut total = 0u64;
        let mut eof = false;
        let file_number = self.read_files.len() as u32;
        if std::mem::take(&mut self.sample) && size > 0 {
            // A sample never asked for ahead: in the cache, the tree reads warm.
            match cached(file) {
                Some(true) => self.ahead_depth = Depth::Nothing,
                Some(false) => self.ahead_depth = Depth::Data,
                None => {}
            }
        }
        let mut read_ahead = ReadAhead::new(file, size);
        loop {
            if !eof && pending.len() - start < chunker.lookahead() {
                pending.drain(..start);
                start = 0;
                while !eof && pending.len() < chunker.lookahead() {
                    read_ahead.advise(file, total + pending.len() as u64);
                    match file.read(&mut self.read_buf) {
                        Ok(0) => eof = true,
                        Ok(n) => pending.extend_from_slice(&self.read_buf[..n]),
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => {
                            self.warn(format!("unreadable: {}: {err}", path.display()));
                            return Ok(None);
                        }
                    }
                }
            }
            let window = &pending[start..];
            if window.is_empty() {
                break;
            }
            let cut = chunker.next_cut(window);
            let chunk = Bytes::copy_from_slice(&window[..cut]);
            start += cut;
            let id = self.repo.keys().blob_id(&chunk);
            self.sink.submit(id, chunk, file_number, total)?;
            total += cut as u64;
            chunks.push(id);
        }
        self.summary.files_read += 1;
        let changed = match file.metadata() {
            Ok(after) => stamp_of(&after) != before.stamp() || total != size,
            Err(_) => true,
        };
        if changed {
            self.warn(format!(
                "changed: {} (modified while being read; the backup holds the bytes read)",
                path.display()
            ));
        }
        Ok(Some((chunks, total, !changed)))
    }
}

/// Asks the kernel to read a file ahead of this thread, [`READ_AHEAD`] bytes at most, in
/// steps of [`READ_SIZE`]. Advice only: where the kernel or the filesystem ignores it, the
/// reads are as before.
struct ReadAhead {
    size: u64,
    /// Bytes from the start already asked for.
    asked: u64,
}

impl ReadAhead {
    fn new(file: &File, size: u64) -> ReadAhead {
        // Small files are read in one go; the walker's next open is what waits then.
        if size > READ_SIZE as u64 {
            let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Sequential);
        }
        ReadAhead { size, asked: 0 }
    }

    /// Called before reading at `offset`: keeps the window `offset..offset + READ_AHEAD`
    /// asked for.
    fn advise(&mut self, file: &File, offset: u64) {
        let want = (offset + READ_AHEAD).min(self.size);
        if self.size <= READ_SIZE as u64 || want < self.asked + READ_SIZE as u64 {
            return;
        }
        let from = self.asked.max(offset);
        if let Some(len) = std::num::NonZeroU64::new(want - from) {
            let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::WillNeed);
        }
        self.asked = want;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_repo::writer::WriterOptions;

    fn with_snapshot(test: impl FnOnce(&mut Snapshot<'_>)) {
        let dir = tempfile::tempdir().unwrap();
        let (rt, repo) = crate::test_support::scratch_repo(dir.path());
        let _guard = rt.enter();
        let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
        let cache = FilesCache::default();
        let progress = Progress::default();
        let mut sink = UploadSink { writer: &writer };
        let mut snap = Snapshot::new(&repo, &mut sink, &cache, &progress).unwrap();
        test(&mut snap);
        drop(snap);
        rt.block_on(writer.finish()).unwrap();
    }

    #[test]
    fn a_file_that_vanishes_after_listing_is_a_warning_not_an_error() {
        with_snapshot(|snap| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("wal-segment");
            std::fs::write(&path, b"soon gone").unwrap();
            let meta = fs::symlink_metadata(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            // The walker listed and stat'ed the file; it is deleted before it is opened.
            snap.visit(None, &path, b"wal-segment".to_vec(), FileMeta::from(&meta))
                .unwrap();
            assert!(snap.entries.is_empty());
            assert_eq!(snap.summary.warning_count, 1);
            assert!(
                snap.summary.warnings[0].starts_with("vanished:"),
                "{:?}",
                snap.summary.warnings
            );
        });
    }

    #[test]
    fn only_files_read_whole_unchanged_and_old_enough_are_cached_as_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table");
        std::fs::write(&path, vec![1u8; 20_000]).unwrap();
        let lstat = |path: &Path| FileMeta::from(&fs::symlink_metadata(path).unwrap());
        // Changed between the walker's lstat and the end of the read (same size): the
        // bytes read are not what the stamp describes.
        with_snapshot(|snap| {
            snap.racy_since_ns = i64::MAX;
            let before = lstat(&path);
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(&path, vec![2u8; 20_000]).unwrap();
            snap.visit(None, &path, b"table".to_vec(), before).unwrap();
            assert_eq!(snap.entries.len(), 1, "the file is in the backup");
            assert!(snap.cache.is_empty(), "but not cached as clean");
            assert!(snap.summary.warnings[0].starts_with("changed:"));
        });
        // Unchanged, but its mtime or ctime is within the racy window of the scan start.
        with_snapshot(|snap| {
            snap.racy_since_ns = 0;
            snap.visit(None, &path, b"table".to_vec(), lstat(&path))
                .unwrap();
            assert!(snap.cache.is_empty());
        });
        // Unchanged and old: cached, the next backup skips it.
        with_snapshot(|snap| {
            snap.racy_since_ns = i64::MAX;
            snap.visit(None, &path, b"table".to_vec(), lstat(&path))
                .unwrap();
            assert_eq!(snap.cache.len(), 1);
            assert_eq!(snap.summary.warning_count, 0);
        });
    }

    #[test]
    fn a_file_swapped_after_the_lstat_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        std::fs::write(&path, b"mine").unwrap();
        std::fs::write(dir.path().join("other"), b"root only").unwrap();
        let before = FileMeta::from(&fs::symlink_metadata(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), &path).unwrap();
        with_snapshot(|snap| {
            let root = Dir::open_path(dir.path()).unwrap();
            let name = OsStr::new("conf");
            snap.visit(Some((&root, name)), &path, b"conf".to_vec(), before)
                .unwrap();
            assert!(snap.entries.is_empty());
            assert!(snap.summary.warnings[0].starts_with("unreadable:"));
        });
    }

    #[test]
    fn a_hard_link_whose_first_name_cannot_be_read_is_read_under_the_next_name() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&first, b"shared").unwrap();
        std::fs::hard_link(&first, &second).unwrap();
        let first_meta = FileMeta::from(&fs::symlink_metadata(&first).unwrap());
        let second_meta = FileMeta::from(&fs::symlink_metadata(&second).unwrap());
        // The first name is swapped for a symlink between the listing and the read.
        std::fs::remove_file(&first).unwrap();
        std::os::unix::fs::symlink(&second, &first).unwrap();
        with_snapshot(|snap| {
            let root = Dir::open_path(dir.path()).unwrap();
            snap.visit(
                Some((&root, OsStr::new("a"))),
                &first,
                b"a".to_vec(),
                first_meta,
            )
            .unwrap();
            snap.visit(
                Some((&root, OsStr::new("b"))),
                &second,
                b"b".to_vec(),
                second_meta,
            )
            .unwrap();
            // `b` must not link to `a`, which is not in the manifest.
            let entries: Vec<Entry> = snap
                .entries
                .scan_entries()
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(entries.len(), 1, "{entries:?}");
            assert_eq!(entries[0].path, b"b");
            assert!(
                matches!(entries[0].kind, EntryKind::File { size: 6, .. }),
                "{:?}",
                entries[0].kind
            );
        });
    }

    #[test]
    fn a_reread_refuses_a_file_that_is_not_the_one_the_scan_read() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, repo) = crate::test_support::scratch_repo(dir.path());
        let _guard = rt.enter();
        let writer = BlobWriter::start(repo.clone(), WriterOptions::default());
        let path = dir.path().join("segment");
        std::fs::write(&path, b"scanned").unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        let scanned = ReadFile {
            path: path.clone(),
            entry: 0,
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let mut summary = NodeSummary::default();
        let again = reread_file(&repo, &writer, &scanned, &mut summary).unwrap();
        assert_eq!(again.map(|(_, size, _)| size), Some(7));
        // Replaced by another file (or reached through a swapped directory link).
        std::fs::write(dir.path().join("other"), b"someone else's").unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();
        let again = reread_file(&repo, &writer, &scanned, &mut summary).unwrap();
        assert!(again.is_none());
        assert!(summary.warnings[0].contains("replaced since the scan"));
        rt.block_on(writer.finish()).unwrap();
    }

    #[test]
    fn excludes_match_relative_paths_and_bare_names() {
        with_snapshot(|snap| {
            snap.exclude = vec![
                glob::Pattern::new("*.tmp").unwrap(),
                glob::Pattern::new("pg_wal/*").unwrap(),
            ];
            assert!(snap.excluded(b"base/x.tmp", b"x.tmp"));
            assert!(snap.excluded(b"pg_wal/000001", b"000001"));
            assert!(!snap.excluded(b"base/pg_wal", b"pg_wal"));
            assert!(!snap.excluded(b"base/1259", b"1259"));
        });
    }
}
