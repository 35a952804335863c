//! Restore of a node manifest into a directory, verified and resumable.
//!
//! Every blob is authenticated and hash-checked against its id before a byte is written.
//! Files are written to a temporary name and renamed only when complete, so a file that
//! exists under its real name is whole. A file already present with the right content is
//! kept (resume after an interruption). Paths are validated before anything is written,
//! nothing is ever written through a symlink, and symlinks are created last, so a crafted
//! manifest cannot make the restore write outside the target directory.

use crate::{AgentError, AgentResult};
use filetime::FileTime;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            // SAFETY: geteuid has no preconditions and cannot fail.
            set_owner: unsafe { libc::geteuid() } == 0,
            include: None,
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

    fn fail(&self, entry: &Entry, why: impl std::fmt::Display) {
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
        // 2. Regular files, in parallel.
        let files: Vec<&Entry> = entries
            .iter()
            .copied()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..self.options.workers.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() || self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    self.restore_file(files[i]);
                });
            }
        });
        if let Some(path) = self.disk_full.lock().unwrap().take() {
            return Err(AgentError::DiskFull { path });
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

    fn restore_file(&self, entry: &Entry) {
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
            if let Err(err) = outcome {
                self.fail(entry, err);
            }
            return;
        }
        let temp = temp_name(&path);
        match self.write_content(&temp, *size, chunks) {
            Ok(()) => {}
            Err(WriteError::Io(err)) if is_disk_full(&err) => {
                let _ = fs::remove_file(&temp);
                self.disk_full.lock().unwrap().get_or_insert(path);
                self.stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(err) => {
                let _ = fs::remove_file(&temp);
                return self.fail(entry, err);
            }
        }
        let published = replace_with(&temp, &path).and_then(|_| self.apply_metadata(&path, entry));
        match published {
            Ok(()) => self.report.lock().unwrap().files += 1,
            Err(err) => {
                let _ = fs::remove_file(&temp);
                self.fail(entry, err);
            }
        }
    }

    fn write_content(&self, temp: &Path, size: u64, chunks: &[BlobId]) -> Result<(), WriteError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(temp)?;
        let mut written = 0u64;
        for id in chunks {
            if self.stop.load(Ordering::Relaxed) {
                return Err(WriteError::Stopped);
            }
            let data = self.runtime.block_on(self.repo.read_blob(id))?;
            file.write_all(&data)?;
            written += data.len() as u64;
        }
        if written != size {
            return Err(WriteError::Size { written, size });
        }
        file.flush()?;
        self.bytes.fetch_add(written, Ordering::Relaxed);
        Ok(())
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
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a directory is in the way",
                ))
            }
            Ok(_) => fs::remove_file(&path)?,
            Err(_) => {}
        }
        fs::hard_link(&original, &path)
    }

    fn restore_symlink(&self, entry: &Entry, target: &[u8]) -> io::Result<()> {
        let path = safe_join(&self.target, &entry.path)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a directory is in the way",
                ))
            }
            Ok(_) => fs::remove_file(&path)?,
            Err(_) => {}
        }
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

#[derive(Debug)]
enum WriteError {
    Io(io::Error),
    Repo(RepoError),
    Size { written: u64, size: u64 },
    Stopped,
}

impl From<io::Error> for WriteError {
    fn from(err: io::Error) -> Self {
        WriteError::Io(err)
    }
}

impl From<RepoError> for WriteError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Store(strata_store::StoreError::Io { source, .. })
                if is_disk_full(&source) =>
            {
                WriteError::Io(source)
            }
            other => WriteError::Repo(other),
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Io(err) => write!(f, "{err}"),
            WriteError::Repo(err) => write!(f, "{err}"),
            WriteError::Size { written, size } => {
                write!(f, "restored {written} bytes but the backup recorded {size}")
            }
            WriteError::Stopped => write!(f, "restore stopped"),
        }
    }
}
