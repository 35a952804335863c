//! Restore of a node manifest into a directory, verified and resumable.
//!
//! Every blob is authenticated and hash-checked against its id before a byte is written.
//! Files are written to a temporary name and renamed only when complete (or, one-piece
//! files in directories the restore created, written without a name and linked when
//! complete), so a file that exists under its real name is whole. A file already present
//! with the right content is kept (resume after an interruption).
//!
//! The target may be owned, in part, by someone who changes it while the restore runs.
//! Paths are validated before anything is written, and all work is relative to directory
//! handles ([`crate::handles`]): the target is opened once, every directory below it is
//! opened one name at a time with `O_NOFOLLOW | O_DIRECTORY`, temporary files are created
//! with `O_EXCL | O_NOFOLLOW` in their parent's handle, renamed with `renameat`, and
//! owner, mode and times are set through the open descriptor. A symlink planted before or
//! swapped in during the restore is never followed, so nothing outside the target is
//! written, chmod'ed or chowned. Symlinks of the backup are created last.

use crate::handles::{self, Dir, DirCache};
use crate::progress::Progress;
use crate::write_behind::WriteBehind;
use crate::{AgentError, AgentResult};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use strata_repo::index::BlobLocation;
use strata_repo::layout::pack_key;
use strata_repo::manifest::{validate_relative_path, Entry, EntryKind, NodeManifest};
use strata_repo::{BlobId, ManifestReader, RepoError, Repository};
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
    /// Write everything to disk (`syncfs` of the target's filesystem) before the restore
    /// reports success, so a crash right after it cannot take back what it reported;
    /// off only for scratch copies that are read and removed (drills).
    pub sync: bool,
    /// Files at or below these paths come back as holes of their recorded size, nothing
    /// read: for a scratch copy that needs them to exist but not their content (the
    /// databases of a PostgreSQL node a table restore does not need; recovery writes
    /// full-page images over every page it touches).
    pub hollow: Vec<Vec<u8>>,
    /// Entries at or below these relative paths are left out (a ClickHouse replica that
    /// does not attach its replicated tables' parts: another replica of its shard does).
    pub exclude: Vec<Vec<u8>>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            set_owner: rustix::process::geteuid().is_root(),
            include: None,
            progress: Arc::default(),
            sync: true,
            hollow: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Regular files restored, those kept included.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links made to a file restored before.
    pub hard_links: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files that were already correct on disk and kept.
    pub files_kept: u64,
    /// Files that could not be restored, with the reason. Empty on success.
    pub errors: Vec<String>,
    /// What was restored incompletely without failing a file: extended attributes the
    /// target's filesystem does not support (one line per namespace), and those the
    /// restore may not set (one line per file and attribute, up to
    /// [`NOT_PERMITTED_WARNINGS`] per attribute name, then one line with how many more).
    pub warnings: Vec<String>,
}

fn selected(entry: &Entry, include: &Option<Vec<u8>>) -> bool {
    match include {
        None => true,
        Some(prefix) if prefix.is_empty() => true,
        Some(prefix) => at_or_below(&entry.path, prefix),
    }
}

/// Whether `path` is `prefix` or below it.
fn at_or_below(path: &[u8], prefix: &[u8]) -> bool {
    path == prefix || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

/// Refuses manifests with paths that could leave the target, before anything is written.
/// The one entry with an empty path is the root directory's own metadata.
fn check_entries(entries: &[Entry]) -> AgentResult<()> {
    for entry in entries {
        if entry.path.is_empty() && matches!(entry.kind, EntryKind::Dir) {
            continue;
        }
        validate_relative_path(&entry.path).map_err(AgentError::UnsafeManifest)?;
        if let EntryKind::HardLink { target } = &entry.kind {
            validate_relative_path(target).map_err(AgentError::UnsafeManifest)?;
        }
    }
    Ok(())
}

/// Where a restore gets a manifest's entries: a part at a time.
pub enum ManifestSource {
    /// A manifest in memory, handed out in parts of [`MEMORY_PART`] entries.
    Memory(Arc<NodeManifest>),
    /// A stored manifest, read a chunk at a time (see [`ManifestReader`]).
    Stored(ManifestReader),
}

/// Entries per part of a manifest held in memory.
const MEMORY_PART: usize = 4096;

/// The parts of a [`ManifestSource`] as the restore reads them.
struct Parts {
    source: ManifestSource,
    next: usize,
}

impl Parts {
    fn new(source: ManifestSource) -> Self {
        Parts { source, next: 0 }
    }

    /// Starts over, limited to the parts that may hold `include`.
    fn rewind(&mut self, include: &Option<Vec<u8>>) {
        self.next = 0;
        if let ManifestSource::Stored(reader) = &mut self.source {
            reader.rewind();
            if let Some(prefix) = include {
                reader.restrict_to(prefix);
            }
        }
    }

    /// The next part, or what made it unreadable (with its place in the manifest).
    fn next(
        &mut self,
        repo: &Repository,
        runtime: &Handle,
    ) -> Option<Result<Vec<Entry>, RepoError>> {
        match &mut self.source {
            ManifestSource::Memory(manifest) => {
                let start = self.next * MEMORY_PART;
                if start >= manifest.entries.len() {
                    return None;
                }
                self.next += 1;
                let end = (start + MEMORY_PART).min(manifest.entries.len());
                Some(Ok(manifest.entries[start..end].to_vec()))
            }
            ManifestSource::Stored(reader) => runtime.block_on(reader.next_part(repo)),
        }
    }
}

/// Restores a node manifest held in memory under `target` (see [`restore_stored`]).
pub async fn restore_node(
    repo: Arc<Repository>,
    manifest: Arc<NodeManifest>,
    target: PathBuf,
    options: RestoreOptions,
) -> AgentResult<RestoreReport> {
    restore_stored(repo, ManifestSource::Memory(manifest), target, options).await
}

/// Restores a node manifest under `target`, one part of it at a time: memory holds the
/// files of one manifest chunk, plus the node's directories and links, which are
/// finished last. Per-file failures (also those of a manifest chunk that cannot be
/// read) are collected in the report; a full disk or an unsafe manifest stops the restore
/// with an error. Every path is checked, in a first pass over the manifest, before
/// anything is written.
pub async fn restore_stored(
    repo: Arc<Repository>,
    manifest: ManifestSource,
    target: PathBuf,
    options: RestoreOptions,
) -> AgentResult<RestoreReport> {
    let target_error = |source| AgentError::Target {
        path: target.clone(),
        source,
    };
    let handle = Handle::current();
    let (repo2, handle2) = (repo.clone(), handle.clone());
    let mut parts = Parts::new(manifest);
    let include = options.include.clone();
    // 1. Every path, before anything is written.
    let (mut parts, unreadable) = tokio::task::spawn_blocking(move || {
        parts.rewind(&include);
        let mut unreadable = Vec::new();
        while let Some(part) = parts.next(&repo2, &handle2) {
            match part {
                Ok(entries) => check_entries(&entries)?,
                Err(why) => unreadable.push(why),
            }
        }
        Ok::<_, AgentError>((parts, unreadable))
    })
    .await
    .expect("restore thread panicked")?;
    fs::create_dir_all(&target).map_err(target_error)?;
    let root = Dir::open_path(&target).map_err(target_error)?;
    let include = options.include.clone();
    tokio::task::spawn_blocking(move || {
        parts.rewind(&include);
        let restorer = Restorer::new(repo, root, options, handle);
        for why in unreadable {
            restorer.options.progress.file_failed();
            restorer
                .report
                .lock()
                .unwrap()
                .errors
                .push(format!("the files of {why}"));
        }
        restorer.run(parts)
    })
    .await
    .expect("restore thread panicked")
}

/// A file being restored: its temporary file fills up piece by piece.
struct FileJob<'e> {
    entry: &'e Entry,
    /// The parent directory, relative to the target.
    parent: &'e [u8],
    name: &'e OsStr,
    temp: OsString,
    /// The inode of the temporary file this restore created (a file put in its place is
    /// not written to); [`UNNAMED`] for one created without a name; [`NOT_CREATED`] for
    /// a deferred file, created only when its one piece is written, by a worker (see
    /// [`Restorer::open_for_writing`]), not while the restore plans: a single-piece file
    /// in a directory this restore created, so nothing is there to keep or replace.
    inode: AtomicU64,
    /// Whether its directory was created by this restore (so it inherited no ACL).
    in_created_dir: bool,
    /// Pieces not yet handled; the one that brings it to zero finishes the file.
    remaining: AtomicUsize,
    failure: Mutex<Option<String>>,
}

/// [`FileJob::inode`] of a deferred file not created yet.
const NOT_CREATED: u64 = 0;
/// [`FileJob::inode`] of a file created without a name (`O_TMPFILE`), named by `linkat`.
const UNNAMED: u64 = u64::MAX;

/// One blob of one file: where it goes and where it comes from.
struct Piece {
    file: usize,
    at: u64,
    id: BlobId,
    location: BlobLocation,
}

struct Restorer {
    repo: Arc<Repository>,
    dirs: DirCache,
    options: RestoreOptions,
    runtime: Handle,
    report: Mutex<RestoreReport>,
    bytes: AtomicU64,
    disk_full: Mutex<Option<PathBuf>>,
    stop: AtomicBool,
    /// Namespaces of extended attributes the target refused as unsupported (warned once).
    unsupported: Mutex<std::collections::HashSet<String>>,
    /// Extended attributes the restore was not permitted to set: how many times, by name.
    not_permitted: Mutex<std::collections::BTreeMap<Vec<u8>, u64>>,
    /// Directories this restore created (their inherited ACLs are dropped).
    created_dirs: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Whether deferred files are created without a name and linked when complete
    /// ([`Dir::create_unnamed`]): the target's file system and this process's privileges
    /// allow it (tried once on the target, see [`unnamed_files_work`]).
    unnamed_files: AtomicBool,
}

/// Mode of directories the restore creates: owner-only until their content is in place.
const NEW_DIR_MODE: u32 = 0o700;

/// Warnings naming the file, per extended attribute the restore may not set; beyond, one
/// line counts the rest (a restore of an SELinux-labelled tree by another user than root
/// would otherwise warn once per file).
pub const NOT_PERMITTED_WARNINGS: u64 = 10;

/// Why setting an extended attribute needs a privilege, for the warning when it was not
/// permitted.
fn privilege_needed(name: &[u8]) -> &'static str {
    if name == b"security.capability" {
        "; setting file capabilities needs CAP_SETFCAP (restore as root to keep them)"
    } else if name.starts_with(b"security.") {
        "; setting security labels needs CAP_SYS_ADMIN or the security policy's permission (restore as root to keep them)"
    } else if name.starts_with(b"trusted.") {
        "; setting trusted.* attributes needs CAP_SYS_ADMIN"
    } else {
        ""
    }
}

impl Restorer {
    fn new(repo: Arc<Repository>, root: Dir, options: RestoreOptions, runtime: Handle) -> Self {
        let unnamed_files = AtomicBool::new(unnamed_files_work(&root));
        Restorer {
            repo,
            // Parents the manifest does not list (a `--path` restore) are created as
            // `mkdir -p` would, less the umask.
            dirs: DirCache::new(root, Some(0o777)),
            options,
            runtime,
            report: Mutex::new(RestoreReport::default()),
            bytes: AtomicU64::new(0),
            disk_full: Mutex::new(None),
            stop: AtomicBool::new(false),
            unsupported: Mutex::default(),
            not_permitted: Mutex::default(),
            created_dirs: Mutex::default(),
            unnamed_files,
        }
    }

    /// Whether to stop early: the disk is full, or the operation was cancelled.
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.options.progress.is_cancelled()
    }

    fn fail(&self, entry: &Entry, why: impl std::fmt::Display) {
        self.options.progress.file_failed();
        let shown = if entry.path.is_empty() {
            ".".to_string()
        } else {
            entry.display_path()
        };
        self.report
            .lock()
            .unwrap()
            .errors
            .push(format!("{shown}: {why}"));
    }

    fn owner(&self, entry: &Entry) -> Option<(u32, u32)> {
        self.options.set_owner.then_some((entry.uid, entry.gid))
    }

    /// Notes that the target refused an extended attribute of `namespace` as unsupported:
    /// one warning per namespace and restore.
    fn unsupported_namespace(&self, namespace: &str, entry: &Entry) {
        if self
            .unsupported
            .lock()
            .unwrap()
            .insert(namespace.to_string())
        {
            let shown = if entry.path.is_empty() {
                ".".to_string()
            } else {
                entry.display_path()
            };
            self.report.lock().unwrap().warnings.push(format!(
                "extended attributes {namespace}.* not restored: the target's filesystem does not support them (first: {shown})"
            ));
        }
    }

    /// Notes that the restore was not permitted to set the extended attribute `name` of
    /// `entry` (it is restored without it): a warning naming both, up to
    /// [`NOT_PERMITTED_WARNINGS`] per attribute name.
    fn not_permitted(&self, name: &[u8], err: rustix::io::Errno, entry: &Entry) {
        let count = {
            let mut counts = self.not_permitted.lock().unwrap();
            let count = counts.entry(name.to_vec()).or_default();
            *count += 1;
            *count
        };
        if count > NOT_PERMITTED_WARNINGS {
            return;
        }
        let shown = if entry.path.is_empty() {
            ".".to_string()
        } else {
            entry.display_path()
        };
        self.report.lock().unwrap().warnings.push(format!(
            "{shown}: extended attribute {} not restored: {err}{}",
            String::from_utf8_lossy(name),
            privilege_needed(name)
        ));
    }

    /// Notes an extended attribute of `entry` the target refused, at the cost of that
    /// attribute only.
    fn xattr_refused(&self, name: &[u8], why: handles::XattrRefused, entry: &Entry) {
        match why {
            handles::XattrRefused::Unsupported => {
                self.unsupported_namespace(&handles::xattr_namespace(name), entry)
            }
            handles::XattrRefused::NotPermitted(err) => self.not_permitted(name, err, entry),
        }
    }

    /// The lines that count the attributes not permitted beyond the warnings naming files.
    fn not_permitted_beyond(&self) -> Vec<String> {
        self.not_permitted
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, &count)| count > NOT_PERMITTED_WARNINGS)
            .map(|(name, count)| {
                format!(
                    "extended attribute {} not restored on {} more files and directories (not permitted)",
                    String::from_utf8_lossy(name),
                    count - NOT_PERMITTED_WARNINGS
                )
            })
            .collect()
    }

    /// Sets owner, mode, extended attributes (ACLs after the mode: see
    /// [`handles::set_attrs_and_xattrs`]) and times of a restored file or directory
    /// through its descriptor.
    fn set_metadata(&self, fd: impl std::os::fd::AsFd, entry: &Entry) -> io::Result<()> {
        let refused = |name: &[u8], why| self.xattr_refused(name, why, entry);
        handles::set_attrs_and_xattrs(
            fd,
            self.owner(entry),
            entry.mode,
            entry.mtime_ns,
            &entry.xattrs,
            &refused,
        )
    }

    /// Restores the directories and regular files of one part of the manifest (selected
    /// entries only): directories first, then the files filled pack by pack in parallel.
    fn restore_part(&self, entries: &[Entry]) -> AgentResult<()> {
        let entries: Vec<&Entry> = entries.iter().collect();
        // 1. Directories, owner-writable until their content is in place.
        for entry in entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Dir) && !e.path.is_empty())
        {
            match self.create_dir(&entry.path) {
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
                self.remove_temp(job);
            }
        }
        if let Some(path) = self.disk_full.lock().unwrap().take() {
            return Err(AgentError::DiskFull { path });
        }
        if self.options.progress.is_cancelled() {
            return Err(AgentError::Cancelled);
        }
        Ok(())
    }

    fn run(self, mut parts: Parts) -> AgentResult<RestoreReport> {
        // Kept until the end: links are made once every file is in place, and directory
        // metadata is set once their content is.
        let mut dirs: Vec<Entry> = Vec::new();
        let mut links: Vec<Entry> = Vec::new();
        while let Some(part) = parts.next(&self.repo, &self.runtime) {
            let entries: Vec<Entry> = match part {
                Ok(entries) => entries
                    .into_iter()
                    .filter(|e| selected(e, &self.options.include))
                    .filter(|e| !self.options.exclude.iter().any(|x| at_or_below(&e.path, x)))
                    .collect(),
                // Reported by the first pass already.
                Err(_) => continue,
            };
            self.restore_part(&entries)?;
            for entry in entries {
                match entry.kind {
                    EntryKind::Dir => dirs.push(entry),
                    EntryKind::HardLink { .. } | EntryKind::Symlink { .. } => links.push(entry),
                    EntryKind::File { .. } => {}
                }
            }
        }
        let entries: Vec<&Entry> = links.iter().collect();
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
        // 4. Directory metadata, deepest first so setting a parent's mtime is final; the
        // root's own last.
        let mut dirs: Vec<&Entry> = dirs.iter().collect();
        dirs.sort_by_key(|e| {
            let depth = e.path.iter().filter(|&&b| b == b'/').count();
            std::cmp::Reverse(if e.path.is_empty() { 0 } else { depth + 1 })
        });
        for entry in dirs {
            // A directory this restore created lost its inherited ACLs when it was made.
            let result = self
                .dirs
                .get(&entry.path)
                .and_then(|dir| self.set_metadata(dir.as_fd(), entry));
            if let Err(err) = result {
                self.fail(entry, err);
            }
        }
        let beyond = self.not_permitted_beyond();
        let mut report = self.report.into_inner().unwrap();
        report.warnings.extend(beyond);
        report.bytes = self.bytes.load(Ordering::Relaxed);
        // One call for the whole tree (and the kernel's writeback errors since the
        // restore opened it, on Linux 5.8 and later), not an fsync per file.
        if self.options.sync {
            if let Err(err) = self
                .dirs
                .get(b"")
                .and_then(|root| Ok(rustix::fs::syncfs(root.as_fd())?))
            {
                report.errors.push(format!(
                    "the restored files could not all be written to disk (syncfs: {err}): they may be incomplete"
                ));
            }
        }
        Ok(report)
    }

    /// Creates directory `rel` (parents first); an existing directory is kept, anything
    /// else in its place (a file, a symlink) is an error and left alone.
    fn create_dir(&self, rel: &[u8]) -> io::Result<()> {
        let (parent, name) = handles::split(rel);
        let (_, created) = self.dirs.get(parent)?.create_dir(name, NEW_DIR_MODE)?;
        if created {
            // The umask may have taken the owner's bits; the final mode comes last.
            let dir = self.dirs.get(rel)?;
            rustix::fs::fchmod(dir.as_fd(), rustix::fs::Mode::from_raw_mode(NEW_DIR_MODE))?;
            // ACLs inherited from the parent's default ACL go now, before anything is
            // created inside (the backup's own come with the metadata, last): a file
            // created here then inherits nothing, and is spared asking (see `publish`).
            // Only this restore's user can give the directory a default ACL meanwhile.
            handles::drop_inherited_acl(dir.as_fd(), true, &[])?;
            self.created_dirs.lock().unwrap().insert(rel.to_vec());
        }
        Ok(())
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
        let (parent, name) = handles::split(&entry.path);
        let dir = match self.dirs.get(parent) {
            Ok(dir) => dir,
            Err(err) => return self.fail(entry, err),
        };
        // A directory this restore created held nothing before it: no file there can be
        // correct already, and looking costs an open per file.
        let fresh = self.created_dirs.lock().unwrap().contains(parent);
        if let Some(file) = (!fresh)
            .then(|| self.already_correct(&dir, name, *size, chunks))
            .flatten()
        {
            let outcome = self.set_metadata(&file, entry);
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
        let hollow = self
            .options
            .hollow
            .iter()
            .any(|prefix| selected(entry, &Some(prefix.clone())));
        let mut pieces = Vec::with_capacity(chunks.len());
        let mut at = if hollow { *size } else { 0u64 };
        if !hollow {
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
        let temp = temp_name(name);
        // The common small file: created by the worker that writes its piece, which
        // saves this thread an open, a stat and a close per file, and the worker the
        // second open.
        let deferred = fresh && pieces.len() == 1;
        let inode = if deferred {
            NOT_CREATED
        } else {
            let length = pieces.is_empty().then_some(*size);
            match create_temp(&dir, &temp, length) {
                Ok((_, inode)) => inode,
                Err(err) => return self.write_failed(entry, err),
            }
        };
        let job = FileJob {
            entry,
            parent,
            name,
            temp,
            inode: AtomicU64::new(inode),
            in_created_dir: fresh,
            remaining: AtomicUsize::new(pieces.len()),
            failure: Mutex::new(None),
        };
        if pieces.is_empty() {
            self.finish_file(&job, None);
        }
        jobs.push(job);
        for piece in pieces {
            by_pack.entry(piece.location.pack).or_default().push(piece);
        }
    }

    /// Opens the temporary file of `job` for writing: through its parent's handle, never
    /// through a symlink, and only if it is still the file this restore created.
    fn open_temp(&self, job: &FileJob<'_>) -> io::Result<File> {
        let expected = job.inode.load(Ordering::Acquire);
        if expected == NOT_CREATED || expected == UNNAMED {
            return Err(io::Error::other("its file was never created"));
        }
        let (file, inode) = self.dirs.get(job.parent)?.open_write_inode(&job.temp)?;
        if inode != expected {
            return Err(io::Error::other(
                "its temporary file was replaced during the restore",
            ));
        }
        Ok(file)
    }

    /// Opens a job's file for writing its pieces: a deferred file is created now, without
    /// a name where the target allows it, else under its temporary name.
    fn open_for_writing(&self, job: &FileJob<'_>) -> io::Result<File> {
        if job.inode.load(Ordering::Acquire) != NOT_CREATED {
            return self.open_temp(job);
        }
        let dir = self.dirs.get(job.parent)?;
        if self.unnamed_files.load(Ordering::Relaxed) {
            match dir.create_unnamed(0o600) {
                Ok(file) => {
                    job.inode.store(UNNAMED, Ordering::Release);
                    return Ok(file);
                }
                // A directory on a file system without O_TMPFILE (a mount below the
                // target): named files from now on. Any other error is met again below.
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                    ) =>
                {
                    self.unnamed_files.store(false, Ordering::Relaxed)
                }
                Err(_) => {}
            }
        }
        let (file, inode) = create_temp(&dir, &job.temp, None)?;
        job.inode.store(inode, Ordering::Release);
        Ok(file)
    }

    fn remove_temp(&self, job: &FileJob<'_>) {
        let inode = job.inode.load(Ordering::Acquire);
        if inode == NOT_CREATED || inode == UNNAMED {
            // Nothing to remove: never created, or gone with its last descriptor.
            return;
        }
        if let Ok(dir) = self.dirs.get(job.parent) {
            if matches!(dir.stat(&job.temp), Ok(Some(stat)) if stat.st_ino == inode) {
                let _ = dir.remove_file(&job.temp);
            }
        }
    }

    /// Fetches what the pieces need from one pack (in a few ranged reads) and writes each
    /// verified blob where it belongs.
    fn restore_pack(&self, jobs: &[FileJob<'_>], pack: u32, pieces: &[Piece]) {
        let key = pack_key(&self.repo.index().pack(pack).0);
        // The file last written, kept open for its next pieces: a pack holds a file's
        // chunks side by side, so this saves an open, two stats and a close per chunk.
        let mut target: Option<(usize, File)> = None;
        // Only a durable restore starts writeback early: a scratch copy is read and removed.
        let mut behind = self.options.sync.then(WriteBehind::default);
        self.fill_from_pack(jobs, &key, pieces, &mut target, &mut behind);
        if let (Some(behind), Some((_, file))) = (&mut behind, &target) {
            behind.moving_on(file);
        }
    }

    /// The loop of [`Restorer::restore_pack`]: `target` is the file written last, kept
    /// open; `behind` starts the writeback of what was written.
    fn fill_from_pack(
        &self,
        jobs: &[FileJob<'_>],
        key: &str,
        pieces: &[Piece],
        target: &mut Option<(usize, File)>,
        behind: &mut Option<WriteBehind>,
    ) {
        /// Bytes of unneeded data worth reading through rather than making a new request.
        const GAP: u64 = 1 << 20;
        /// One ranged read's size at most (one blob larger than this is read whole): what
        /// each worker holds. A quarter of a pack keeps requests few and a restore's
        /// memory below restic's.
        const MAX_SPAN: u64 = 4 << 20;
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
            // A pack gone since the plan was made: garbage collection moved its live
            // blobs to new packs (a repack) and deleted it. Each blob is then read where
            // the index, brought up to date, says it is now.
            let bytes = match self
                .runtime
                .block_on(self.repo.store().get_range(key, start..end))
            {
                Ok(bytes) => Some(bytes),
                Err(err) if err.is_not_found() => None,
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
                    let read = match &bytes {
                        Some(bytes) => {
                            let at = (piece.location.offset - start) as usize;
                            let sealed = bytes
                                .get(at..at + piece.location.length as usize)
                                .unwrap_or_default();
                            self.repo.open_blob(&piece.id, sealed, &piece.location)
                        }
                        None => self.runtime.block_on(self.repo.read_blob(&piece.id)),
                    };
                    match read {
                        Ok(plain) => opened = Some((piece.id, plain)),
                        Err(err) => {
                            opened = None;
                            self.piece_done(job, Some(err.to_string()));
                            continue;
                        }
                    }
                }
                let data = &opened.as_ref().expect("opened above").1;
                if target.as_ref().is_none_or(|(file, _)| *file != piece.file) {
                    if let (Some(behind), Some((_, file))) = (behind.as_mut(), target.as_ref()) {
                        behind.moving_on(file);
                    }
                    *target = None;
                    match self.open_for_writing(job) {
                        Ok(file) => *target = Some((piece.file, file)),
                        // Out of space or of inodes creating a deferred file: the whole
                        // restore stops, as when a write finds the target full.
                        Err(err) if is_disk_full(&err) => return self.target_full(job.entry),
                        Err(err) => {
                            self.piece_done(job, Some(err.to_string()));
                            continue;
                        }
                    }
                }
                let file = &target.as_ref().expect("opened above").1;
                let ends_file = piece.at + data.len() as u64 == job.entry.size();
                let written = write_sparse_at(file, data, piece.at, ends_file);
                match written {
                    Ok(()) => {
                        if let Some(behind) = behind.as_mut() {
                            behind.wrote(file, piece.at, data.len() as u64);
                        }
                        self.piece_written(job, file)
                    }
                    Err(err) if is_disk_full(&err) => return self.target_full(job.entry),
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
            self.finish_file(job, None);
        }
    }

    /// Counts a piece written through `file` (the job's temporary file, opened by
    /// [`Restorer::open_temp`]); the last one publishes the file through that handle.
    fn piece_written(&self, job: &FileJob<'_>, file: &File) {
        if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_file(job, Some(file));
        }
    }

    /// Publishes a complete file under its name (owner, mode and times set through its
    /// descriptor first), or removes a failed one.
    /// `open` is the temporary file's handle when the caller holds one (opened by
    /// [`Restorer::open_temp`], so its inode was checked); else it is opened again.
    fn finish_file(&self, job: &FileJob<'_>, open: Option<&File>) {
        if let Some(why) = job.failure.lock().unwrap().take() {
            self.remove_temp(job);
            return self.fail(job.entry, why);
        }
        let entry = job.entry;
        let published = match open {
            Some(file) => self.publish(job, file),
            None => self
                .open_temp(job)
                .and_then(|file| self.publish(job, &file)),
        };
        match published {
            Ok(()) => {
                self.report.lock().unwrap().files += 1;
                self.bytes.fetch_add(entry.size(), Ordering::Relaxed);
                self.options.progress.file_done(entry.size());
            }
            Err(err) => {
                self.remove_temp(job);
                self.fail(entry, err);
            }
        }
    }

    /// Sets the metadata of a job's complete temporary file through `file` and renames it
    /// to its name.
    fn publish(&self, job: &FileJob<'_>, file: &File) -> io::Result<()> {
        // A file this restore created: an ACL it inherited from its directory's default
        // ACL (a directory that was already there) goes first. One in a directory this
        // restore created inherited nothing (see `create_dir`).
        if !job.in_created_dir {
            handles::drop_inherited_acl(file, false, &job.entry.xattrs)?;
        }
        self.set_metadata(file, job.entry)?;
        let dir = self.dirs.get(job.parent)?;
        let inode = job.inode.load(Ordering::Acquire);
        if inode == UNNAMED {
            // Named now that it is whole. In a directory this restore created the name
            // is free unless someone put something there meanwhile: a file or link
            // there goes (as a rename would replace it), a directory stays.
            return match dir.link_unnamed(file, job.name) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    make_room(&dir, job.name)?;
                    dir.link_unnamed(file, job.name)
                }
                other => other,
            };
        }
        // The name still holds the file written through `file`, which may have been
        // opened many pieces ago: a file swapped in under the temporary name since is not
        // published as the restored one.
        if !matches!(dir.stat(&job.temp)?, Some(stat) if stat.st_ino == inode) {
            return Err(io::Error::other(
                "its temporary file was replaced during the restore",
            ));
        }
        // A file cannot replace a directory: rename says so (EISDIR).
        match dir.rename(&job.temp, job.name) {
            Err(err) if err.raw_os_error() == Some(rustix::io::Errno::ISDIR.raw_os_error()) => Err(
                io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way"),
            ),
            other => other,
        }
    }

    fn write_failed(&self, entry: &Entry, err: io::Error) {
        if is_disk_full(&err) {
            self.target_full(entry);
        } else {
            self.fail(entry, err);
        }
    }

    /// The target is full (space or inodes) while `entry` is written: the restore stops
    /// and reports it, naming the first such file.
    fn target_full(&self, entry: &Entry) {
        self.disk_full
            .lock()
            .unwrap()
            .get_or_insert(entry.display_path().into());
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The file `name` in `dir`, opened, when it already holds exactly the content of
    /// `chunks` (resume). Never through a symlink.
    fn already_correct(
        &self,
        dir: &Dir,
        name: &OsStr,
        size: u64,
        chunks: &[BlobId],
    ) -> Option<File> {
        let mut file = dir.open_read(name).ok()?;
        if file.metadata().ok()?.len() != size {
            return None;
        }
        let index = self.repo.index();
        let mut buf = Vec::new();
        for id in chunks {
            let location = index.get(id)?;
            buf.resize(location.raw_length as usize, 0);
            if file.read_exact(&mut buf).is_err() || self.repo.keys().blob_id(&buf) != *id {
                return None;
            }
        }
        Some(file)
    }

    fn restore_hard_link(&self, entry: &Entry, target: &[u8]) -> io::Result<()> {
        let (from_parent, from_name) = handles::split(target);
        let from = self.dirs.get(from_parent)?;
        let (parent, name) = handles::split(&entry.path);
        let dir = self.dirs.get(parent)?;
        make_room(&dir, name)?;
        dir.hard_link(&from, from_name, name)
    }

    fn restore_symlink(&self, entry: &Entry, target: &[u8]) -> io::Result<()> {
        let (parent, name) = handles::split(&entry.path);
        let dir = self.dirs.get(parent)?;
        make_room(&dir, name)?;
        dir.symlink(OsStr::from_bytes(target), name)?;
        dir.set_link_attrs(name, self.owner(entry), entry.mtime_ns)
    }
}

/// Whether files can be created without a name in `root` and linked to a name later
/// ([`Dir::create_unnamed`], [`Dir::link_unnamed`]): tried once per restore with a
/// probe name that is removed at once. Anything that fails means named temporary files.
/// (A file given to another user is linked under `fs.protected_hardlinks` only with
/// `CAP_FOWNER`, which its `fchmod` needed before already.)
fn unnamed_files_work(root: &Dir) -> bool {
    /// Tells apart the probes of restores this process runs at once.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let Ok(file) = root.create_unnamed(0o600) else {
        return false;
    };
    let probe = OsString::from(format!(
        ".strata-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    match root.link_unnamed(&file, &probe) {
        Ok(()) => root.remove_file(&probe).is_ok(),
        Err(_) => false,
    }
}

/// Creates the temporary file `temp` in `dir` and returns it, open for writing, with its
/// inode; `length`, when given, is set (a file no piece will write: a hollow one). A file
/// with pieces gets its length from its last piece's write (see [`write_sparse_at`]). A
/// leftover of an interrupted restore (or anything else planted there, a symlink
/// included) is removed first, never followed.
fn create_temp(dir: &Dir, temp: &OsStr, length: Option<u64>) -> io::Result<(File, u64)> {
    let file = match dir.create_new(temp, 0o600) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            dir.remove_file(temp)?;
            dir.create_new(temp, 0o600)?
        }
        other => other?,
    };
    let created = match length {
        Some(size) if size > 0 => file.set_len(size),
        _ => Ok(()),
    }
    .and_then(|()| file.metadata());
    match created {
        Ok(meta) => Ok((file, meta.ino())),
        Err(err) => {
            let _ = dir.remove_file(temp);
            Err(err)
        }
    }
}

/// Granularity of holes a restore leaves: a page of zeros is not written.
const HOLE_PAGE: u64 = 4096;

/// Writes `data` at `at` into a file whose unwritten bytes read as zeros (a temporary
/// file made by [`create_temp`], holes from end to end), leaving out every whole page of
/// zeros (pages counted from the file's start): the file keeps the holes of the file
/// that was backed up (and gets some where that one had written zeros). Its content is the
/// same byte for byte.
///
/// `ends_file`: `data` is the file's last piece. Its last page is then written even when
/// it is zeros, so the writes alone give the file its length (no `ftruncate` per file;
/// see [`create_temp`]).
fn write_sparse_at(file: &File, data: &[u8], at: u64, ends_file: bool) -> io::Result<()> {
    let end = at + data.len() as u64;
    // Runs of non-zero pages, written one run at a time.
    let mut run: Option<u64> = None;
    let mut page_start = at;
    while page_start < end {
        let page_end = ((page_start / HOLE_PAGE) + 1) * HOLE_PAGE;
        let page_end = page_end.min(end);
        let bytes = &data[(page_start - at) as usize..(page_end - at) as usize];
        let zero = !(ends_file && page_end == end) && bytes.iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(page_start),
            (true, Some(from)) => {
                file.write_all_at(
                    &data[(from - at) as usize..(page_start - at) as usize],
                    from,
                )?;
                run = None;
            }
            _ => {}
        }
        page_start = page_end;
    }
    if let Some(from) = run {
        file.write_all_at(&data[(from - at) as usize..], from)?;
    }
    Ok(())
}

/// Prepares `name` in `dir` for a new link: an old file or link there is removed, a
/// directory in the way is an error (never deleted).
fn make_room(dir: &Dir, name: &OsStr) -> io::Result<()> {
    match dir.stat(name)? {
        Some(stat) if handles::file_type(&stat) == rustix::fs::FileType::Directory => Err(
            io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way"),
        ),
        Some(_) => dir.remove_file(name),
        None => Ok(()),
    }
}

fn temp_name(name: &OsStr) -> OsString {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(".strata-partial");
    temp
}

fn is_disk_full(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A restorer into an empty directory of a scratch repository (the directory, the
    /// runtime it needs, the restorer).
    fn restorer_into_scratch() -> (tempfile::TempDir, tokio::runtime::Runtime, Restorer) {
        let dir = tempfile::tempdir().unwrap();
        let (rt, repo) = crate::test_support::scratch_repo(dir.path());
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        let restorer = {
            let _guard = rt.enter();
            Restorer::new(
                repo,
                Dir::open_path(&target).unwrap(),
                RestoreOptions::default(),
                rt.handle().clone(),
            )
        };
        (dir, rt, restorer)
    }

    /// A deferred job for `name` in the target's root, as `prepare_file` plans a
    /// single-piece file in a directory the restore created.
    fn deferred_job<'e>(entry: &'e Entry, name: &'e OsStr) -> FileJob<'e> {
        FileJob {
            entry,
            parent: b"",
            name,
            temp: temp_name(name),
            inode: AtomicU64::new(NOT_CREATED),
            in_created_dir: true,
            remaining: AtomicUsize::new(1),
            failure: Mutex::new(None),
        }
    }

    fn file_entry(path: &str, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                size,
                chunks: Vec::new(),
            },
            mode: 0o640,
            uid: 0,
            gid: 0,
            mtime_ns: 1_000_000_000,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn a_deferred_file_has_no_name_until_whole_and_then_takes_its_own() {
        let (dir, rt, restorer) = restorer_into_scratch();
        let _guard = rt.enter();
        let target = dir.path().join("t");
        assert!(
            restorer.unnamed_files.load(Ordering::Relaxed),
            "the test's directory is local and the tests run as root"
        );
        let names = || -> Vec<_> {
            fs::read_dir(&target)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect()
        };
        // Written: nothing in the directory yet, not even a temporary name.
        let entry = file_entry("f", 5);
        let job = deferred_job(&entry, OsStr::new("f"));
        let file = restorer.open_for_writing(&job).unwrap();
        assert_eq!(job.inode.load(Ordering::Relaxed), UNNAMED);
        write_sparse_at(&file, b"ours!", 0, true).unwrap();
        assert!(names().is_empty(), "{:?}", names());
        // A file put at its name meanwhile is replaced, as a rename would; its mode and
        // times are set before it has a name.
        fs::write(target.join("f"), b"planted").unwrap();
        restorer.publish(&job, &file).unwrap();
        assert_eq!(fs::read(target.join("f")).unwrap(), b"ours!");
        let meta = fs::metadata(target.join("f")).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o640, 1));
        assert_eq!(names(), vec![OsString::from("f")]);
        // A directory at its name stays, and the file fails.
        let entry = file_entry("d", 2);
        let job = deferred_job(&entry, OsStr::new("d"));
        let file = restorer.open_for_writing(&job).unwrap();
        write_sparse_at(&file, b"hi", 0, true).unwrap();
        fs::create_dir(target.join("d")).unwrap();
        let err = restorer.publish(&job, &file).unwrap_err();
        assert!(err.to_string().contains("directory is in the way"), "{err}");
        assert!(target.join("d").is_dir());
        // Where unnamed files do not work: a temporary name, renamed when whole.
        restorer.unnamed_files.store(false, Ordering::Relaxed);
        let entry = file_entry("g", 3);
        let job = deferred_job(&entry, OsStr::new("g"));
        let file = restorer.open_for_writing(&job).unwrap();
        assert_ne!(job.inode.load(Ordering::Relaxed), UNNAMED);
        assert!(target.join(temp_name(OsStr::new("g"))).exists());
        write_sparse_at(&file, b"abc", 0, true).unwrap();
        restorer.publish(&job, &file).unwrap();
        assert_eq!(fs::read(target.join("g")).unwrap(), b"abc");
        assert!(!target.join(temp_name(OsStr::new("g"))).exists());
        // A job never created has nothing to remove or reopen.
        let entry = file_entry("h", 1);
        let job = deferred_job(&entry, OsStr::new("h"));
        restorer.remove_temp(&job);
        assert!(restorer.open_temp(&job).is_err());
    }

    #[test]
    fn a_temporary_file_swapped_after_its_pieces_were_written_is_never_published() {
        let (dir, rt, restorer) = restorer_into_scratch();
        let _guard = rt.enter();
        let target = dir.path().join("t");
        let entry = Entry {
            path: b"f".to_vec(),
            kind: EntryKind::File {
                size: 5,
                chunks: Vec::new(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: Vec::new(),
        };
        let temp = temp_name(OsStr::new("f"));
        let root = restorer.dirs.get(b"").unwrap();
        let (_, inode) = create_temp(&root, &temp, Some(5)).unwrap();
        let job = FileJob {
            entry: &entry,
            parent: b"",
            name: OsStr::new("f"),
            temp: temp.clone(),
            inode: AtomicU64::new(inode),
            in_created_dir: false,
            remaining: AtomicUsize::new(1),
            failure: Mutex::new(None),
        };
        let written = restorer.open_temp(&job).unwrap();
        write_sparse_at(&written, b"ours!", 0, true).unwrap();
        // Another file takes the temporary name while the restore holds its handle.
        fs::remove_file(target.join(&temp)).unwrap();
        fs::write(target.join(&temp), b"planted").unwrap();

        let err = restorer.publish(&job, &written).unwrap_err();
        assert!(err.to_string().contains("replaced"), "{err}");
        assert!(!target.join("f").exists(), "the planted file was published");
        assert_eq!(fs::read(target.join(&temp)).unwrap(), b"planted");
    }

    #[test]
    fn an_unsupported_namespace_is_one_warning_for_the_whole_restore() {
        let (_dir, rt, restorer) = restorer_into_scratch();
        let _guard = rt.enter();
        let proc_file = File::open("/proc/self/stat").unwrap();
        let entry = |path: &[u8]| Entry {
            path: path.to_vec(),
            kind: EntryKind::Dir,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: vec![strata_repo::manifest::Xattr {
                name: b"user.x".to_vec(),
                value: b"1".to_vec(),
            }],
        };
        // procfs refuses every extended attribute as unsupported.
        for path in [&b"a"[..], b"b", b"c"] {
            let entry = entry(path);
            let refused = |name: &[u8], why| restorer.xattr_refused(name, why, &entry);
            handles::write_xattrs(&proc_file, &entry.xattrs, &refused).unwrap();
        }
        let warnings = restorer.report.lock().unwrap().warnings.clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("extended attributes user.* not restored"));
        assert!(warnings[0].ends_with("(first: a)"));
    }

    #[test]
    fn an_attribute_not_permitted_is_a_warning_per_file_then_a_count() {
        let (_dir, rt, restorer) = restorer_into_scratch();
        let _guard = rt.enter();
        let entry = |path: String| Entry {
            path: path.into_bytes(),
            kind: EntryKind::File {
                size: 0,
                chunks: Vec::new(),
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            xattrs: Vec::new(),
        };
        let refused = handles::XattrRefused::NotPermitted(rustix::io::Errno::PERM);
        let more = 3;
        for n in 0..NOT_PERMITTED_WARNINGS + more {
            restorer.xattr_refused(b"security.capability", refused, &entry(format!("bin/{n}")));
        }
        let denied = handles::XattrRefused::NotPermitted(rustix::io::Errno::ACCESS);
        restorer.xattr_refused(b"security.selinux", denied, &entry("etc/f".into()));
        let mut warnings = restorer.report.lock().unwrap().warnings.clone();
        warnings.extend(restorer.not_permitted_beyond());
        assert_eq!(
            warnings.len() as u64,
            NOT_PERMITTED_WARNINGS + 2,
            "{warnings:#?}"
        );
        assert!(
            warnings[0].starts_with(
                "bin/0: extended attribute security.capability not restored: Operation not permitted"
            ),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].contains("CAP_SETFCAP"), "{}", warnings[0]);
        assert!(warnings[NOT_PERMITTED_WARNINGS as usize].starts_with(
            "etc/f: extended attribute security.selinux not restored: Permission denied"
        ));
        assert_eq!(
            warnings.last().unwrap(),
            &format!("extended attribute security.capability not restored on {more} more files and directories (not permitted)")
        );
    }

    #[test]
    fn zero_pages_are_left_as_holes_and_the_content_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let size = 8 << 20;
        file.set_len(size).unwrap();
        // A blob of zeros with a few bytes in it, written at an offset that is not page
        // aligned: the pages holding the bytes are written, no other.
        let mut data = vec![0u8; 4 << 20];
        data[10] = 1;
        data[(2 << 20) + 5000] = 2;
        let last = data.len() - 1;
        data[last] = 3;
        write_sparse_at(&file, &data, 1000, false).unwrap();
        write_sparse_at(&file, &[], 0, false).unwrap();
        write_sparse_at(&file, &[7; 10], size - 10, true).unwrap();
        let mut expected = vec![0u8; size as usize];
        expected[1000..1000 + data.len()].copy_from_slice(&data);
        expected[size as usize - 10..].fill(7);
        assert!(fs::read(&path).unwrap() == expected);
        assert!(fs::metadata(&path).unwrap().blocks() * 512 <= 64 * 1024);
    }

    /// A file's length comes from its last piece's write: its last page is written even
    /// when it is zeros, so a file that ends in zeros (or is all zeros) is whole without
    /// an `ftruncate`.
    #[test]
    fn the_last_piece_gives_the_file_its_length_even_when_it_ends_in_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_path(dir.path()).unwrap();
        for (name, content) in [
            ("tail", [vec![5u8; 4096], vec![0u8; 8192]].concat()),
            ("zeros", vec![0u8; 100]),
            ("page", vec![0u8; 4096]),
        ] {
            let temp = OsStr::new(name);
            let (file, _) = create_temp(&root, temp, None).unwrap();
            let (first, last) = content.split_at(content.len() / 2);
            write_sparse_at(&file, first, 0, false).unwrap();
            write_sparse_at(&file, last, first.len() as u64, true).unwrap();
            assert_eq!(fs::read(dir.path().join(name)).unwrap(), content, "{name}");
        }
    }
}
