//! Restore of a node manifest into a directory, verified and resumable.
//!
//! Every blob is authenticated and hash-checked against its id before a byte is written.
//! Files are written to a temporary name and renamed only when complete, so a file that
//! exists under its real name is whole. A file already present with the right content is
//! kept (resume after an interruption). Paths are validated before anything is written,
//! nothing is ever written through a symlink, and symlinks are created last, so a crafted
//! manifest cannot make the restore write outside the target directory.

use crate::progress::Progress;
use crate::{AgentError, AgentResult};
use filetime::FileTime;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use strata_repo::id::pack_key;
use strata_repo::index::BlobLocation;
use strata_repo::manifest::{validate_relative_path, Entry, EntryKind, NodeManifest};
use strata_repo::{BlobId, RepoError, Repository};
use tokio::runtime::Handle;

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Files restored in parallel.
    pub workers: usize,
    /// Restore owners (uid/gid). Defaults to true when running as root.
    pub set_owner: bool,
    /// Only entries at or below this relative path (empty: everything).
    pub include: Option<Vec<u8>>,
    /// Where the restore reports files and bytes as it goes.
    pub progress: Arc<Progress>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            // SAFETY: geteuid has no preconditions and cannot fail.
            set_owner: unsafe { libc::geteuid() } == 0,
            include: None,
            progress: Arc::default(),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files that were already correct on disk and kept.
    pub files_kept: u64,
    /// Files that could not be restored, with the reason. Empty on success.
    pub errors: Vec<String>,
}

fn selected(entry: &Entry, include: &Option<Vec<u8>>) -> bool {
    match include {
        None => true,
        Some(prefix) if prefix.is_empty() => true,
        Some(prefix) => {
            entry.path == *prefix
                || (entry.path.starts_with(prefix) && entry.path.get(prefix.len()) == Some(&b'/'))
        }
    }
}

/// Refuses manifests with paths that could leave the target, before anything is written.
fn check_manifest(manifest: &NodeManifest) -> AgentResult<()> {
    for entry in &manifest.entries {
        validate_relative_path(&entry.path).map_err(AgentError::UnsafeManifest)?;
        if let EntryKind::HardLink { target } = &entry.kind {
            validate_relative_path(target).map_err(AgentError::UnsafeManifest)?;
        }
    }
    Ok(())
}

/// Joins a manifest path to the target, refusing to pass through any symlink that exists
/// below the target (it could point anywhere).
fn safe_join(target: &Path, rel: &[u8]) -> io::Result<PathBuf> {
    let mut path = target.to_path_buf();
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(OsStr::from_bytes(part));
        let is_last = i + 1 == parts.len();
        if !is_last {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} is a symlink; refusing to write through it",
                            path.display()
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(path)
}

/// Restores a node manifest under `target`. Per-file failures are collected in the
/// report; a full disk or an unsafe manifest stops the restore with an error.
pub async fn restore_node(
    repo: Arc<Repository>,
    manifest: Arc<NodeManifest>,
    target: PathBuf,
    options: RestoreOptions,
) -> AgentResult<RestoreReport> {
    check_manifest(&manifest)?;
    fs::create_dir_all(&target).map_err(|source| AgentError::Target {
        path: target.clone(),
        source,
    })?;
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        Restorer::new(repo, manifest, target, options, handle).run()
    })
    .await
    .expect("restore thread panicked")
}

/// A file being restored: its temporary file fills up piece by piece.
struct FileJob<'e> {
    entry: &'e Entry,
    path: PathBuf,
    temp: PathBuf,
    /// Pieces not yet handled; the one that brings it to zero finishes the file.
    remaining: AtomicUsize,
    failure: Mutex<Option<String>>,
}

/// One blob of one file: where it goes and where it comes from.
struct Piece {
    file: usize,
    at: u64,
    id: BlobId,
    location: BlobLocation,
}

struct Restorer {
    repo: Arc<Repository>,
    manifest: Arc<NodeManifest>,
    target: PathBuf,
    options: RestoreOptions,
    runtime: Handle,
    report: Mutex<RestoreReport>,
    bytes: AtomicU64,
    disk_full: Mutex<Option<PathBuf>>,
    stop: AtomicBool,
}

impl Restorer {
    fn new(
        repo: Arc<Repository>,
        manifest: Arc<NodeManifest>,
        target: PathBuf,
        options: RestoreOptions,
        runtime: Handle,
    ) -> Self {
        Restorer {
            repo,
            manifest,
            target,
            options,
            runtime,
            report: Mutex::new(RestoreReport::default()),
            bytes: AtomicU64::new(0),
            disk_full: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether to stop early: the disk is full, or the operation was cancelled.
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.options.progress.is_cancelled()
    }

    fn fail(&self, entry: &Entry, why: impl std::fmt::Display) {
        self.options.progress.file_failed();
        self.report
            .lock()
            .unwrap()
            .errors
            .push(format!("{}: {why}", entry.display_path()));
    }

    fn run(self) -> AgentResult<RestoreReport> {
        let entries: Vec<&Entry> = self
            .manifest
            .entries
            .iter()
            .filter(|e| selected(e, &self.options.include))
            .collect();
        // 1. Directories, owner-writable until their content is in place.
        for entry in entries.iter().filter(|e| matches!(e.kind, EntryKind::Dir)) {
            match safe_join(&self.target, &entry.path).and_then(|p| create_dir(&p)) {
                Ok(()) => self.report.lock().unwrap().dirs += 1,
                Err(err) => self.fail(entry, err),
            }
        }
        // 2. Regular files: prepared one by one, then filled pack by pack in parallel.
        let total: u64 = entries.iter().map(|e| e.size()).sum();
        self.options.progress.add_total(total);
        self.options.progress.add_total_files(
            entries
                .iter()
                .filter(|e| matches!(e.kind, EntryKind::File { .. } | EntryKind::HardLink { .. }))
                .count() as u64,
        );
        let mut jobs = Vec::new();
        let mut by_pack: HashMap<u32, Vec<Piece>> = HashMap::new();
        for entry in entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        {
            if self.stopped() {
                break;
            }
            self.prepare_file(entry, &mut jobs, &mut by_pack);
        }
        let mut packs: Vec<(u32, Vec<Piece>)> = by_pack.into_iter().collect();
        for (_, pieces) in &mut packs {
            pieces.sort_by_key(|p| (p.location.offset, p.file));
        }
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..self.options.workers.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= packs.len() || self.stopped() {
                        return;
                    }
                    self.restore_pack(&jobs, packs[i].0, &packs[i].1);
                });
            }
        });
        // Files a stopped restore did not finish leave no trace.
        for job in &jobs {
            if job.remaining.load(Ordering::Relaxed) > 0 {
                let _ = fs::remove_file(&job.temp);
            }
        }
        if let Some(path) = self.disk_full.lock().unwrap().take() {
            return Err(AgentError::DiskFull { path });
        }
        if self.options.progress.is_cancelled() {
            return Err(AgentError::Cancelled);
        }
        // 3. Hard links, then symlinks (last, so nothing is written through them).
        for entry in &entries {
            let result = match &entry.kind {
                EntryKind::HardLink { target } => self.restore_hard_link(entry, target),
                _ => continue,
            };
            match result {
                Ok(()) => self.report.lock().unwrap().hard_links += 1,
                Err(err) => self.fail(entry, err),
            }
        }
        for entry in &entries {
            let EntryKind::Symlink { target } = &entry.kind else {
                continue;
            };
            match self.restore_symlink(entry, target) {
                Ok(()) => self.report.lock().unwrap().symlinks += 1,
                Err(err) => self.fail(entry, err),
            }
        }
        // 4. Directory metadata, deepest first so setting a parent's mtime is final.
        let mut dirs: Vec<&&Entry> = entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Dir))
            .collect();
        dirs.sort_by_key(|e| std::cmp::Reverse(e.path.iter().filter(|&&b| b == b'/').count()));
        for entry in dirs {
            if let Err(err) =
                safe_join(&self.target, &entry.path).and_then(|p| self.apply_metadata(&p, entry))
            {
                self.fail(entry, err);
            }
        }
        let mut report = self.report.into_inner().unwrap();
        report.bytes = self.bytes.load(Ordering::Relaxed);
        Ok(report)
    }

    /// Checks, creates and plans one file: kept when already correct, else a temporary
    /// file of the final size whose pieces are listed by pack.
    fn prepare_file<'e>(
        &self,
        entry: &'e Entry,
        jobs: &mut Vec<FileJob<'e>>,
        by_pack: &mut HashMap<u32, Vec<Piece>>,
    ) {
        let EntryKind::File { size, chunks } = &entry.kind else {
            return;
        };
        let path = match safe_join(&self.target, &entry.path) {
            Ok(path) => path,
            Err(err) => return self.fail(entry, err),
        };
        if let Some(parent) = path.parent() {
            if let Err(err) = fs::create_dir_all(parent) {
                return self.fail(entry, err);
            }
        }
        if self.already_correct(&path, *size, chunks) {
            let outcome = self.apply_metadata(&path, entry);
            let mut report = self.report.lock().unwrap();
            report.files_kept += 1;
            report.files += 1;
            drop(report);
            self.options.progress.file_done(*size);
            if let Err(err) = outcome {
                self.fail(entry, err);
            }
            return;
        }
        let mut pieces = Vec::with_capacity(chunks.len());
        let mut at = 0u64;
        {
            let index = self.repo.index();
            for id in chunks {
                let Some(location) = index.get(id) else {
                    return self.fail(entry, RepoError::MissingBlob(id.to_hex()));
                };
                pieces.push(Piece {
                    file: jobs.len(),
                    at,
                    id: *id,
                    location,
                });
                at += location.raw_length as u64;
            }
        }
        if at != *size {
            return self.fail(
                entry,
                format!("its blobs hold {at} bytes but the backup records {size}"),
            );
        }
        let temp = temp_name(&path);
        let created = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|file| file.set_len(*size));
        if let Err(err) = created {
            let _ = fs::remove_file(&temp);
            return self.write_failed(entry, &path, err);
        }
        let job = FileJob {
            entry,
            path,
            temp,
            remaining: AtomicUsize::new(pieces.len()),
            failure: Mutex::new(None),
        };
        if pieces.is_empty() {
            self.finish_file(&job);
        }
        jobs.push(job);
        for piece in pieces {
            by_pack.entry(piece.location.pack).or_default().push(piece);
        }
    }

    /// Fetches what the pieces need from one pack (in a few ranged reads) and writes each
    /// verified blob where it belongs.
    fn restore_pack(&self, jobs: &[FileJob<'_>], pack: u32, pieces: &[Piece]) {
        /// Bytes of unneeded data worth reading through rather than making a new request.
        const GAP: u64 = 1 << 20;
        const MAX_SPAN: u64 = 16 << 20;
        let key = pack_key(&self.repo.index().pack(pack).0);
        let mut first = 0;
        while first < pieces.len() {
            if self.stopped() {
                return;
            }
            let start = pieces[first].location.offset;
            let mut end = start + pieces[first].location.length as u64;
            let mut last = first + 1;
            while let Some(next) = pieces.get(last) {
                let next_end = next.location.offset + next.location.length as u64;
                if next.location.offset > end + GAP || next_end.max(end) - start > MAX_SPAN {
                    break;
                }
                end = end.max(next_end);
                last += 1;
            }
            let span = &pieces[first..last];
            first = last;
            let bytes = match self
                .runtime
                .block_on(self.repo.store().get_range(&key, start..end))
            {
                Ok(bytes) => bytes,
                Err(err) => {
                    let why = err.to_string();
                    span.iter()
                        .for_each(|p| self.piece_done(&jobs[p.file], Some(why.clone())));
                    continue;
                }
            };
            let mut opened: Option<(BlobId, Vec<u8>)> = None;
            for piece in span {
                let job = &jobs[piece.file];
                if job.failure.lock().unwrap().is_some() {
                    self.piece_done(job, None);
                    continue;
                }
                if opened.as_ref().is_none_or(|(id, _)| *id != piece.id) {
                    let at = (piece.location.offset - start) as usize;
                    let sealed = bytes
                        .get(at..at + piece.location.length as usize)
                        .unwrap_or_default();
                    match self.repo.open_blob(&piece.id, sealed, &piece.location) {
                        Ok(plain) => opened = Some((piece.id, plain)),
                        Err(err) => {
                            opened = None;
                            self.piece_done(job, Some(err.to_string()));
                            continue;
                        }
                    }
                }
                let data = &opened.as_ref().expect("opened above").1;
                let written = OpenOptions::new()
                    .write(true)
                    .open(&job.temp)
                    .and_then(|file| file.write_all_at(data, piece.at));
                match written {
                    Ok(()) => self.piece_done(job, None),
                    Err(err) if is_disk_full(&err) => {
                        self.disk_full
                            .lock()
                            .unwrap()
                            .get_or_insert(job.path.clone());
                        self.stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(err) => self.piece_done(job, Some(err.to_string())),
                }
            }
        }
    }

    /// Counts a piece as handled (with the reason when it failed); the last one finishes
    /// the file.
    fn piece_done(&self, job: &FileJob<'_>, failure: Option<String>) {
        if let Some(why) = failure {
            job.failure.lock().unwrap().get_or_insert(why);
        }
        if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_file(job);
        }
    }

    /// Publishes a complete file under its name, or removes a failed one.
    fn finish_file(&self, job: &FileJob<'_>) {
        if let Some(why) = job.failure.lock().unwrap().take() {
            let _ = fs::remove_file(&job.temp);
            return self.fail(job.entry, why);
        }
        let published = replace_with(&job.temp, &job.path)
            .and_then(|_| self.apply_metadata(&job.path, job.entry));
        match published {
            Ok(()) => {
                self.report.lock().unwrap().files += 1;
                self.bytes.fetch_add(job.entry.size(), Ordering::Relaxed);
                self.options.progress.file_done(job.entry.size());
            }
            Err(err) => {
                let _ = fs::remove_file(&job.temp);
                self.fail(job.entry, err);
            }
        }
    }

    fn write_failed(&self, entry: &Entry, path: &Path, err: io::Error) {
        if is_disk_full(&err) {
            self.disk_full
                .lock()
                .unwrap()
                .get_or_insert(path.to_path_buf());
            self.stop.store(true, Ordering::Relaxed);
        } else {
            self.fail(entry, err);
        }
    }

    /// True when `path` already holds exactly the content of `chunks` (resume).
    fn already_correct(&self, path: &Path, size: u64, chunks: &[BlobId]) -> bool {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return false;
        };
        if !meta.is_file() || meta.len() != size {
            return false;
        }
        let Ok(mut file) = File::open(path) else {
            return false;
        };
        let index = self.repo.index();
        let mut buf = Vec::new();
        for id in chunks {
            let Some(location) = index.get(id) else {
                return false;
            };
            buf.resize(location.raw_length as usize, 0);
            if file.read_exact(&mut buf).is_err() || self.repo.keys().blob_id(&buf) != *id {
                return false;
            }
        }
        true
    }

    fn restore_hard_link(&self, entry: &Entry, target: &[u8]) -> io::Result<()> {
        let original = safe_join(&self.target, target)?;
        let path = safe_join(&self.target, &entry.path)?;
        make_room(&path)?;
        fs::hard_link(&original, &path)
    }

    fn restore_symlink(&self, entry: &Entry, target: &[u8]) -> io::Result<()> {
        let path = safe_join(&self.target, &entry.path)?;
        make_room(&path)?;
        symlink(OsStr::from_bytes(target), &path)?;
        if self.options.set_owner {
            std::os::unix::fs::lchown(&path, Some(entry.uid), Some(entry.gid))?;
        }
        let mtime = file_time(entry.mtime_ns);
        filetime::set_symlink_file_times(&path, mtime, mtime)
    }

    fn apply_metadata(&self, path: &Path, entry: &Entry) -> io::Result<()> {
        if self.options.set_owner {
            std::os::unix::fs::lchown(path, Some(entry.uid), Some(entry.gid))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))?;
        let mtime = file_time(entry.mtime_ns);
        filetime::set_file_times(path, mtime, mtime)
    }
}

fn file_time(ns: i64) -> FileTime {
    FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Prepares `path` for a new link: parents exist, an old file or link there is removed,
/// a directory in the way is an error (never deleted).
fn make_room(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

fn create_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a non-directory is in the way",
        )),
        Err(_) => {
            fs::create_dir_all(path)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        }
    }
}

/// Replaces `path` by `temp`; a directory in the way is an error, not deleted.
fn replace_with(temp: &Path, path: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory is in the way",
            ));
        }
    }
    fs::rename(temp, path)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".strata-partial");
    path.with_file_name(name)
}

fn is_disk_full(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT)
}

use std::os::unix::fs::OpenOptionsExt;
