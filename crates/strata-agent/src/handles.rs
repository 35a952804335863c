//! Filesystem work relative to open directory handles.
//!
//! strata runs as root and writes into (and reads from) trees that other users may own and
//! change while it works. Every system call that takes a path resolves it again, so a
//! symlink swapped in between a check and a use redirects the use: root then writes,
//! chmods or deletes wherever the link points. Here a directory is opened once, and every
//! further step is a `*at` call relative to that handle, one name at a time, with
//! `O_NOFOLLOW` (and `O_DIRECTORY` for directories): a symlink, planted before or swapped
//! in during the work, is never followed. New files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`; owner, mode and times are set through the open
//! descriptor (`fchown`, `fchmod`, `futimens`) or with `AT_SYMLINK_NOFOLLOW`.
//!
//! Only the directory the operator names (a restore target, a root) is opened by its path;
//! a symlink in that path is the operator's choice.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Flags of every directory opened below a handle: never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// An open directory.
#[derive(Debug)]
pub struct Dir(OwnedFd);

/// What `lstat` says about a name in a directory.
pub type Stat = rfs::Stat;

/// The file type of a `Stat`.
pub fn file_type(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

fn shown(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes()).into_owned()
}

/// Refuses names that are not one plain component.
fn check_name(name: &OsStr) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a plain file name", shown(name)),
        ));
    }
    Ok(())
}

fn not_a_dir(name: &OsStr) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!(
            "{} is not a directory (a symlink or a file is in its place); refusing to go through it",
            shown(name)
        ),
    )
}

impl Dir {
    /// Another handle of the same open directory (`dup`), for a thread that outlives
    /// this borrow.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir(self.0.try_clone()?))
    }

    /// Opens a directory by the path the operator gave.
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(Dir(rfs::open(path, flags, Mode::empty())?))
    }

    /// Opens the subdirectory `name`; a symlink or a file there is an error.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        check_name(name)?;
        match rfs::openat(&self.0, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir(fd)),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(not_a_dir(name)),
            Err(err) => Err(err.into()),
        }
    }

    /// Opens the subdirectory `name`, creating it with `mode` (less the umask) when it
    /// does not exist. Returns whether it was created.
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> io::Result<(Dir, bool)> {
        check_name(name)?;
        let created = match rfs::mkdirat(&self.0, name, Mode::from_raw_mode(mode)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(err) => return Err(err.into()),
        };
        Ok((self.open_dir(name)?, created))
    }

    /// `lstat` of `name`; `None` when nothing is there.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        check_name(name)?;
        match rfs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Creates a new file `name` for writing; fails when anything (a file, a symlink) is
    /// there already.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        check_name(name)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.0, name, flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Creates an unnamed regular file in this directory (`O_TMPFILE`) for writing. It
    /// gets a name only through [`Dir::link_unnamed`], once complete: no name of it can be
    /// swapped for another file meanwhile, and a crash leaves nothing behind. Fails where
    /// the file system does not support it (`EOPNOTSUPP`, or `EISDIR` on old kernels).
    pub fn create_unnamed(&self, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.0, ".", flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Gives `file`, made by [`Dir::create_unnamed`] in this directory, the name `name`
    /// (`linkat` with `AT_EMPTY_PATH`, which needs `CAP_DAC_READ_SEARCH` on older
    /// kernels). Fails with [`io::ErrorKind::AlreadyExists`] when the name is taken,
    /// whatever holds it: nothing is replaced, nothing followed.
    pub fn link_unnamed(&self, file: &File, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        Ok(rfs::linkat(file, "", &self.0, name, AtFlags::EMPTY_PATH)?)
    }

    /// Opens the existing regular file `name` with `flags` (plus `O_NOFOLLOW`), checking
    /// that what was opened is a regular file.
    fn open_regular(&self, name: &OsStr, flags: OFlags) -> io::Result<File> {
        self.open_regular_stat(name, flags).map(|(file, _)| file)
    }

    /// [`Dir::open_regular`], with the `fstat` it checked the file with.
    fn open_regular_stat(&self, name: &OsStr, flags: OFlags) -> io::Result<(File, rfs::Stat)> {
        check_name(name)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rfs::openat(&self.0, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is a symlink; refusing to follow it", shown(name)),
                ))
            }
            Err(err) => return Err(err.into()),
        };
        let stat = rfs::fstat(&fd)?;
        if file_type(&stat) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", shown(name)),
            ));
        }
        Ok((File::from(fd), stat))
    }

    /// Opens the regular file `name` for reading, never through a symlink and without
    /// blocking on a FIFO.
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        self.open_regular(name, OFlags::RDONLY)
    }

    /// Opens the regular file `name` for writing, never through a symlink, and returns
    /// the inode it opened (checked against what the caller created).
    pub fn open_write_inode(&self, name: &OsStr) -> io::Result<(File, u64)> {
        let (file, stat) = self.open_regular_stat(name, OFlags::WRONLY)?;
        Ok((file, stat.st_ino))
    }

    /// Removes the non-directory `name` (a symlink itself, never its target).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        Ok(rfs::unlinkat(&self.0, name, AtFlags::empty())?)
    }

    /// Removes `name` and, when it is a directory, everything below it, descending through
    /// handles: a directory swapped for a symlink is unlinked, never entered.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        let dir = match self.open_dir(name) {
            Ok(dir) => dir,
            Err(err) if err.kind() == io::ErrorKind::NotADirectory => {
                return self.remove_file(name)
            }
            Err(err) => return Err(err),
        };
        for (child, kind) in dir.entries()? {
            if kind == FileType::Directory {
                dir.remove_tree(&child)?;
            } else {
                dir.remove_file(&child)?;
            }
        }
        Ok(rfs::unlinkat(&self.0, name, AtFlags::REMOVEDIR)?)
    }

    /// Renames `from` to `to`, both in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        Ok(rfs::renameat(&self.0, from, &self.0, to)?)
    }

    /// Creates the symlink `name` pointing at `target`.
    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        Ok(rfs::symlinkat(target, &self.0, name)?)
    }

    /// Creates `name` as a hard link to `from_name` in `from` (a symlink there is linked
    /// itself, not followed).
    pub fn hard_link(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        check_name(from_name)?;
        check_name(name)?;
        Ok(rfs::linkat(
            &from.0,
            from_name,
            &self.0,
            name,
            AtFlags::empty(),
        )?)
    }

    /// Sets owner and times of the symlink `name` itself.
    pub fn set_link_attrs(
        &self,
        name: &OsStr,
        owner: Option<(u32, u32)>,
        mtime_ns: i64,
    ) -> io::Result<()> {
        check_name(name)?;
        if let Some((uid, gid)) = owner {
            let (uid, gid) = ids(uid, gid);
            rfs::chownat(&self.0, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(rfs::utimensat(
            &self.0,
            name,
            &timestamps(mtime_ns),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// The names in this directory (without `.` and `..`) with their types, as `lstat`
    /// would say.
    pub fn entries(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let mut listing = rfs::Dir::read_from(&self.0)?;
        let mut out = Vec::new();
        while let Some(entry) = listing.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let kind = match entry.file_type() {
                FileType::Unknown => match self.stat(&name)? {
                    Some(stat) => file_type(&stat),
                    None => continue,
                },
                kind => kind,
            };
            out.push((name, kind));
        }
        Ok(out)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A manifest's uid and gid; `-1` means "leave as is" to the kernel, and is kept so.
fn ids(uid: u32, gid: u32) -> (Option<rfs::Uid>, Option<rfs::Gid>) {
    (
        (uid != u32::MAX).then(|| rfs::Uid::from_raw_unchecked(uid)),
        (gid != u32::MAX).then(|| rfs::Gid::from_raw_unchecked(gid)),
    )
}

fn timestamps(mtime_ns: i64) -> Timestamps {
    let at = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

/// Sets owner (first: `fchown` clears set-id bits) and mode of an open file or directory
/// through its descriptor.
fn set_owner_and_mode(fd: impl AsFd, owner: Option<(u32, u32)>, mode: u32) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        let (uid, gid) = ids(uid, gid);
        rfs::fchown(&fd, uid, gid)?;
    }
    rfs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
    if mode & 0o6000 != 0 {
        // Without CAP_FSETID the kernel drops a set-group-ID bit (of a group the process
        // is not in) instead of failing: a restore must say so, not report success.
        let set = rfs::fstat(&fd)?.st_mode & 0o7777;
        if set != mode & 0o7777 {
            return Err(io::Error::other(format!(
                "mode {:04o} could not be set (the system kept {set:04o}): setting a set-user- or set-group-ID bit needs CAP_FSETID",
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// Largest value of one extended attribute (the kernel's limit, `XATTR_SIZE_MAX`).
const XATTR_VALUE_MAX: usize = 64 * 1024;
/// Most bytes (names and values) of extended attributes kept per file: beyond, the rest
/// is left out with a warning.
pub const XATTR_FILE_MAX: usize = 256 * 1024;

/// Whether an extended attribute is backed up and restored: `user.*`, `security.*`
/// (SELinux labels, file capabilities), the POSIX ACLs `system.posix_acl_access` and
/// `system.posix_acl_default`, and `trusted.*` only when running as root. Anything else
/// (other `system.*` names the kernel computes) is neither read nor, from a crafted
/// manifest, written.
pub fn xattr_kept(name: &[u8], root: bool) -> bool {
    name.starts_with(b"user.")
        || name.starts_with(b"security.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
        || (root && name.starts_with(b"trusted."))
}

/// The namespace of an attribute name (`user`, `security`, ...), for messages.
pub fn xattr_namespace(name: &[u8]) -> String {
    let end = name.iter().position(|&b| b == b'.').unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// Whether the process runs as root (may read and write `trusted.*`).
pub fn running_as_root() -> bool {
    // Asked once: a restore asks for every file, and strata never changes its user.
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| rustix::process::geteuid().is_root())
}

/// The extended attributes of an open file or directory that [`xattr_kept`] keeps, sorted
/// by name, read through its descriptor (never by path, so never through a symlink). The
/// second value is false when some were left out because they exceed [`XATTR_FILE_MAX`].
/// A filesystem without extended attributes has none.
pub fn read_xattrs(fd: impl AsFd) -> io::Result<(Vec<strata_repo::manifest::Xattr>, bool)> {
    let root = running_as_root();
    let mut list = vec![0u8; XATTR_VALUE_MAX];
    let len = match rfs::flistxattr(&fd, &mut list[..]) {
        Ok(len) => len,
        Err(Errno::OPNOTSUPP) => return Ok((Vec::new(), true)),
        Err(err) => return Err(err.into()),
    };
    let mut names: Vec<&[u8]> = list[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty() && xattr_kept(n, root))
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::with_capacity(names.len());
    let mut value = vec![0u8; XATTR_VALUE_MAX];
    let mut total = 0;
    let mut whole = true;
    for name in names {
        let len = match rfs::fgetxattr(&fd, OsStr::from_bytes(name), &mut value[..]) {
            Ok(len) => len,
            // Removed since the listing.
            Err(Errno::NODATA) => continue,
            Err(err) => {
                return Err(io::Error::other(format!(
                    "extended attribute {}: {err}",
                    String::from_utf8_lossy(name)
                )))
            }
        };
        if total + name.len() + len > XATTR_FILE_MAX {
            whole = false;
            continue;
        }
        total += name.len() + len;
        out.push(strata_repo::manifest::Xattr {
            name: name.to_vec(),
            value: value[..len].to_vec(),
        });
    }
    Ok((out, whole))
}

/// An extended attribute that was not set, at the cost of that attribute only: the file
/// or directory is restored without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrRefused {
    /// The target's filesystem does not support the attribute's namespace (`EOPNOTSUPP`).
    Unsupported,
    /// The process may not set it (`EPERM`, `EACCES`): file capabilities
    /// (`security.capability`) need `CAP_SETFCAP`, other `security.*` names (SELinux
    /// labels) `CAP_SYS_ADMIN` or the security module's consent, as a restore run by
    /// another user than root lacks.
    NotPermitted(Errno),
}

/// How a failure to set one extended attribute is handled: `Some` costs only that
/// attribute (a warning), `None` is an error of the file or directory.
pub fn xattr_refused(err: Errno) -> Option<XattrRefused> {
    match err {
        Errno::OPNOTSUPP => Some(XattrRefused::Unsupported),
        Errno::PERM | Errno::ACCESS => Some(XattrRefused::NotPermitted(err)),
        _ => None,
    }
}

/// Sets extended attributes on an open file or directory through its descriptor; only
/// names [`xattr_kept`] allows (so `trusted.*` only as root: anyone else skips them,
/// silently). An attribute the filesystem does not support or the process may not set
/// (see [`xattr_refused`]) is reported to `refused` with its full name, and the rest
/// are still set; any other failure is an error.
pub fn write_xattrs(
    fd: impl AsFd,
    xattrs: &[strata_repo::manifest::Xattr],
    refused: &dyn Fn(&[u8], XattrRefused),
) -> io::Result<()> {
    let root = running_as_root();
    for xattr in xattrs {
        if !xattr_kept(&xattr.name, root) || xattr.name.contains(&0) {
            continue;
        }
        match rfs::fsetxattr(
            &fd,
            OsStr::from_bytes(&xattr.name),
            &xattr.value,
            rfs::XattrFlags::empty(),
        ) {
            Ok(()) => {}
            Err(err) => match xattr_refused(err) {
                Some(why) => refused(&xattr.name, why),
                None => {
                    return Err(io::Error::other(format!(
                        "extended attribute {}: {err}",
                        String::from_utf8_lossy(&xattr.name)
                    )))
                }
            },
        }
    }
    Ok(())
}

/// [`set_attrs`] with extended attributes, in the order that keeps each right: owner
/// first (`fchown` clears set-id bits and file capabilities), then mode, then the
/// extended attributes (after `fchmod`, which rewrites an ACL's mask entry: the ACL
/// restored last comes back exactly, mask included; it sets the group bits from its mask,
/// as they were), then times.
pub fn set_attrs_and_xattrs(
    fd: impl AsFd,
    owner: Option<(u32, u32)>,
    mode: u32,
    mtime_ns: i64,
    xattrs: &[strata_repo::manifest::Xattr],
    refused: &dyn Fn(&[u8], XattrRefused),
) -> io::Result<()> {
    set_owner_and_mode(&fd, owner, mode)?;
    write_xattrs(&fd, xattrs, refused)?;
    Ok(rfs::futimens(&fd, &timestamps(mtime_ns))?)
}

/// Removes the ACLs a new file or directory inherited from its directory's default ACL
/// (a file: the access ACL; a directory: also the default ACL) when the backup says it has
/// none: what the restore creates must not grant more than what was backed up.
pub fn drop_inherited_acl(
    fd: impl AsFd,
    is_dir: bool,
    xattrs: &[strata_repo::manifest::Xattr],
) -> io::Result<()> {
    // Only a directory can have a default ACL: a file is spared asking.
    let names: &[&[u8]] = if is_dir {
        &[b"system.posix_acl_access", b"system.posix_acl_default"]
    } else {
        &[b"system.posix_acl_access"]
    };
    for &name in names {
        if xattrs.iter().any(|x| x.name == name) {
            continue;
        }
        match rfs::fremovexattr(&fd, OsStr::from_bytes(name)) {
            // None (or a file, which has no default ACL), or no ACLs on this filesystem.
            Ok(()) | Err(Errno::NODATA | Errno::OPNOTSUPP | Errno::ACCESS) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Splits a relative path into its parent (empty for a top-level name) and last name.
pub fn split(rel: &[u8]) -> (&[u8], &OsStr) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(at) => (&rel[..at], OsStr::from_bytes(&rel[at + 1..])),
        None => (&[], OsStr::from_bytes(rel)),
    }
}

/// Open handles of the directories below a root, by relative path, opened (and, when
/// asked, created) one component at a time from the root. Bounded: when full it starts
/// over, so a tree with many directories does not exhaust the descriptor limit (handles
/// in use stay valid; a dropped one is reopened from the root when needed again).
pub struct DirCache {
    root: Arc<Dir>,
    open: Mutex<HashMap<Vec<u8>, Arc<Dir>>>,
    /// Mode (less the umask) of directories created on the way; `None`: create nothing.
    create: Option<u32>,
}

/// Handles a [`DirCache`] keeps open at most.
const CACHED_DIRS: usize = 256;

impl DirCache {
    pub fn new(root: Dir, create: Option<u32>) -> DirCache {
        DirCache {
            root: Arc::new(root),
            open: Mutex::new(HashMap::new()),
            create,
        }
    }

    /// The handle of directory `rel` (empty: the root).
    pub fn get(&self, rel: &[u8]) -> io::Result<Arc<Dir>> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(dir) = self.open.lock().unwrap().get(rel) {
            return Ok(dir.clone());
        }
        let (parent, name) = split(rel);
        let parent = self.get(parent)?;
        let dir = Arc::new(match self.create {
            Some(mode) => parent.create_dir(name, mode)?.0,
            None => parent.open_dir(name)?,
        });
        let mut open = self.open.lock().unwrap();
        if open.len() >= CACHED_DIRS {
            open.clear();
        }
        open.insert(rel.to_vec(), dir.clone());
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"keep").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink(outside.join("f"), root.join("file-link")).unwrap();
        let handle = Dir::open_path(&root).unwrap();
        let err = handle.open_dir(OsStr::new("link")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
        assert!(handle.open_read(OsStr::new("file-link")).is_err());
        assert!(handle.open_write_inode(OsStr::new("file-link")).is_err());
        assert!(handle.create_new(OsStr::new("file-link"), 0o600).is_err());
        assert!(handle.create_dir(OsStr::new("link"), 0o700).is_err());
        handle.remove_tree(OsStr::new("link")).unwrap();
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"keep");
        assert!(handle.open_dir(OsStr::new("..")).is_err());
        let cache = DirCache::new(handle, Some(0o700));
        cache.get(b"a/b/c").unwrap();
        assert!(root.join("a/b/c").is_dir());
        assert!(cache.get(b"file-link/x").is_err());
    }

    /// A POSIX access ACL as the kernel stores it: version 2, then (tag, perm, id) entries.
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    #[test]
    fn the_acl_is_set_after_the_mode_and_comes_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        // user::rw- user:65534:rw- group::--- mask::rw- other::---
        let access = acl(&[
            (0x01, 6, u32::MAX),
            (0x02, 6, 65534),
            (0x04, 0, u32::MAX),
            (0x10, 6, u32::MAX),
            (0x20, 0, u32::MAX),
        ]);
        let xattrs = [strata_repo::manifest::Xattr {
            name: b"system.posix_acl_access".to_vec(),
            value: access.clone(),
        }];
        // A mode whose group bits say less than the mask: a chmod after the ACL would
        // rewrite the mask to ---; set after the chmod, the ACL is exactly the backup's.
        let refused = std::cell::Cell::new(false);
        set_attrs_and_xattrs(&file, None, 0o600, 0, &xattrs, &|_, _| refused.set(true)).unwrap();
        if refused.get() {
            eprintln!("skipped: the filesystem of the temporary directory has no ACLs");
            return;
        }
        let mut back = vec![0u8; 1024];
        let len = rfs::fgetxattr(&file, "system.posix_acl_access", &mut back[..]).unwrap();
        assert_eq!(&back[..len], &access[..]);
        assert_eq!(rfs::fstat(&file).unwrap().st_mode & 0o777, 0o660);
    }

    #[test]
    fn a_filesystem_without_extended_attributes_is_reported_per_namespace_not_an_error() {
        // procfs supports no extended attributes: EOPNOTSUPP.
        let file = File::open("/proc/self/stat").unwrap();
        let xattrs = [
            strata_repo::manifest::Xattr {
                name: b"user.a".to_vec(),
                value: b"1".to_vec(),
            },
            strata_repo::manifest::Xattr {
                name: b"user.b".to_vec(),
                value: b"2".to_vec(),
            },
        ];
        let seen = Mutex::new(Vec::new());
        write_xattrs(&file, &xattrs, &|name, why| {
            seen.lock().unwrap().push((name.to_vec(), why))
        })
        .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (b"user.a".to_vec(), XattrRefused::Unsupported),
                (b"user.b".to_vec(), XattrRefused::Unsupported)
            ]
        );
        assert!(read_xattrs(&file).unwrap().0.is_empty());
    }

    #[test]
    fn only_a_refusal_of_the_attribute_itself_costs_only_the_attribute() {
        assert_eq!(
            xattr_refused(Errno::OPNOTSUPP),
            Some(XattrRefused::Unsupported)
        );
        for err in [Errno::PERM, Errno::ACCESS] {
            assert_eq!(xattr_refused(err), Some(XattrRefused::NotPermitted(err)));
        }
        // A full disk, an I/O error, a value the filesystem cannot hold: errors of the file.
        for err in [
            Errno::NOSPC,
            Errno::DQUOT,
            Errno::IO,
            Errno::RANGE,
            Errno::TOOBIG,
            Errno::INVAL,
            Errno::BADF,
        ] {
            assert_eq!(xattr_refused(err), None, "{err:?}");
        }
    }

    #[test]
    fn an_attribute_the_process_may_not_set_is_reported_not_an_error() {
        // An immutable file refuses every attribute with EPERM, to root too.
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let flags = rfs::ioctl_getflags(&file).unwrap_or(rfs::IFlags::empty());
        if let Err(err) = rfs::ioctl_setflags(&file, flags | rfs::IFlags::IMMUTABLE) {
            eprintln!("skipped: the file cannot be made immutable here ({err})");
            return;
        }
        let xattrs = [
            strata_repo::manifest::Xattr {
                name: b"security.capability".to_vec(),
                // VFS_CAP_REVISION_2 with the effective flag; permitted: cap_net_bind_service.
                value: [[1, 0, 0, 2], [0, 4, 0, 0], [0; 4], [0; 4], [0; 4]].concat(),
            },
            strata_repo::manifest::Xattr {
                name: b"user.a".to_vec(),
                value: b"1".to_vec(),
            },
        ];
        let seen = Mutex::new(Vec::new());
        let written = write_xattrs(&file, &xattrs, &|name, why| {
            seen.lock().unwrap().push((name.to_vec(), why))
        });
        rfs::ioctl_setflags(&file, flags).unwrap();
        written.unwrap();
        let refused = XattrRefused::NotPermitted(Errno::PERM);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (b"security.capability".to_vec(), refused),
                (b"user.a".to_vec(), refused)
            ]
        );
    }

    #[test]
    fn only_the_documented_namespaces_are_kept() {
        for name in [
            &b"user.x"[..],
            b"security.selinux",
            b"security.capability",
            b"system.posix_acl_access",
            b"system.posix_acl_default",
        ] {
            assert!(xattr_kept(name, false), "{name:?}");
        }
        assert!(xattr_kept(b"trusted.x", true));
        assert!(!xattr_kept(b"trusted.x", false));
        for name in [
            &b"system.nfs4_acl"[..],
            b"system.sockprotoname",
            b"userx",
            b"other.x",
        ] {
            assert!(!xattr_kept(name, true), "{name:?}");
        }
        assert_eq!(xattr_namespace(b"user.a.b"), "user");
    }

    #[test]
    fn user_xattrs_roundtrip_through_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let xattrs = vec![
            strata_repo::manifest::Xattr {
                name: b"user.a".to_vec(),
                value: vec![0, 1, 2],
            },
            strata_repo::manifest::Xattr {
                name: b"user.b".to_vec(),
                value: Vec::new(),
            },
        ];
        // Names outside the policy, from a crafted manifest, are not written.
        let mut with_foreign = xattrs.clone();
        with_foreign.push(strata_repo::manifest::Xattr {
            name: b"system.foreign".to_vec(),
            value: b"x".to_vec(),
        });
        write_xattrs(&file, &with_foreign, &|name, why| {
            panic!("{}: {why:?}", String::from_utf8_lossy(name))
        })
        .unwrap();
        let (read, whole) = read_xattrs(&file).unwrap();
        assert!(whole);
        assert_eq!(read, xattrs);
    }
}
