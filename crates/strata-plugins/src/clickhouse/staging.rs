//! The node's staging directory, `<path>/shadow/strata`: where `FREEZE WITH NAME
//! 'strata'` puts the hard links of every frozen part (the node's backup root), and where
//! a restore lays the parts down before they are moved into their tables' `detached/`.
//!
//! One backup or restore at a time holds it, by an exclusive `flock` on
//! `<path>/shadow/strata.lock`: the kernel drops the lock with the process, so a holder
//! killed with SIGKILL never blocks the next one, and no age or PID decides anything.
//! Whoever takes the lock first removes what a killed holder left (the freeze is named,
//! so what is under `shadow/strata` is strata's and nobody else's), and dropping the
//! holder removes it again: no frozen copy outlives its operation.

use super::record::{part_name_ok, Part};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the staging directory or a part in it cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A file system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done (`cannot list`).
        what: &'static str,
        /// On what.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server's data path is not a directory.
    #[error("[nodes.clickhouse] path {0} is not a directory: give the server's <path>")]
    NoServerPath(String),
    /// Another backup or restore holds the node.
    #[error(
        "another strata backup or restore holds this ClickHouse node ({0} is locked): wait for it"
    )]
    Locked(String),
    /// Something the freeze did not write sits among the parts.
    #[error("{0} is not a part the freeze wrote")]
    NotAPart(String),
    /// A part holds something other than plain files.
    #[error("{0} is not a plain file: a part holds nothing else")]
    NotPlain(String),
    /// A part's row count cannot be read.
    #[error("{0} does not hold a number of rows")]
    BadCount(String),
    /// The part is in the table's `detached/` already.
    #[error("{0} exists already: remove it, or restore into an empty table")]
    Exists(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StagingError {
    let path = path.display().to_string();
    move |source| StagingError::Io { what, path, source }
}

/// The name every freeze of strata's uses (`ALTER TABLE ... FREEZE WITH NAME`).
pub const FREEZE_NAME: &str = "strata";

/// The staging directory of a server whose data path is `server_path`.
pub fn root(server_path: &Path) -> PathBuf {
    server_path.join("shadow").join(FREEZE_NAME)
}

/// The staging directory, held.
#[derive(Debug)]
pub struct Staging {
    root: PathBuf,
    /// `<path>/shadow`, opened without following a link: the staging directory is
    /// removed through it, never by a path a link could redirect.
    shadow: rustix::fd::OwnedFd,
    _lock: File,
}

impl Staging {
    /// Takes the staging directory of the server at `server_path`, or says who holds it;
    /// removes what a killed holder left and creates it again, empty, owned like the
    /// server's data path (a server that runs as its own user writes its freezes there).
    ///
    /// The lock is `<path>/strata.lock`, beside `shadow/` rather than in it: tools that
    /// empty `shadow/` would take it with them. `shadow` and `shadow/strata` must be
    /// directories: a link in their place is refused, never followed.
    pub fn take(server_path: &Path) -> Result<Staging, StagingError> {
        use rustix::fs::{Mode, OFlags};
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // The configured path itself is the operator's: it may be a link.
        let data = rustix::fs::open(
            server_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| StagingError::NoServerPath(server_path.display().to_string()))?;
        let owner =
            rustix::fs::fstat(&data).map_err(|e| io("cannot read", server_path)(e.into()))?;
        let shadow_path = server_path.join("shadow");
        match rustix::fs::mkdirat(&data, "shadow", Mode::from_raw_mode(0o750)) {
            Ok(()) => {
                let made = rustix::fs::openat(&data, "shadow", dir_flags, Mode::empty())
                    .map_err(|e| io("cannot open", &shadow_path)(e.into()))?;
                give(&made, &owner)
                    .map_err(|e| io("cannot give to the server", &shadow_path)(e))?;
            }
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io("cannot create", &shadow_path)(e.into())),
        }
        let shadow = rustix::fs::openat(&data, "shadow", dir_flags, Mode::empty())
            .map_err(|e| io("cannot open (a directory, not a link)", &shadow_path)(e.into()))?;
        let lock_path = server_path.join(format!("{FREEZE_NAME}.lock"));
        let lock = rustix::fs::openat(
            &data,
            format!("{FREEZE_NAME}.lock").as_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("cannot open", &lock_path)(e.into()))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(StagingError::Locked(lock_path.display().to_string()));
        }
        let staging = Staging {
            root: root(server_path),
            shadow,
            _lock: File::from(lock),
        };
        staging.clear()?;
        rustix::fs::mkdirat(&staging.shadow, FREEZE_NAME, Mode::from_raw_mode(0o750))
            .map_err(|e| io("cannot create", &staging.root)(e.into()))?;
        let made = rustix::fs::openat(&staging.shadow, FREEZE_NAME, dir_flags, Mode::empty())
            .map_err(|e| io("cannot open", &staging.root)(e.into()))?;
        give(&made, &owner).map_err(|e| io("cannot give to the server", &staging.root)(e))?;
        Ok(staging)
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the staging directory and everything in it (hard links of frozen parts:
    /// the tables keep theirs), through the handle of `shadow`, following no link.
    pub fn clear(&self) -> Result<(), StagingError> {
        remove_tree_at(&self.shadow, FREEZE_NAME).map_err(io("cannot remove", &self.root))
    }
}

/// Gives a directory the owner of the server's data path.
fn give(dir: &rustix::fd::OwnedFd, owner: &rustix::fs::Stat) -> std::io::Result<()> {
    rustix::fs::fchown(
        dir,
        Some(rustix::fs::Uid::from_raw(owner.st_uid)),
        Some(rustix::fs::Gid::from_raw(owner.st_gid)),
    )?;
    Ok(())
}

/// Removes `name` in `parent` and, if it is a directory, everything below it, by
/// handles: a link is removed as a link, never followed. A missing `name` is fine.
fn remove_tree_at<P: rustix::path::Arg + Copy>(
    parent: &rustix::fd::OwnedFd,
    name: P,
) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let dir = match rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        // A file or a link: removed as it is.
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?)
        }
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let child = entry.file_name();
        if child.to_bytes() != b"." && child.to_bytes() != b".." {
            names.push(child.to_owned());
        }
    }
    for child in &names {
        remove_tree_at(&dir, child.as_c_str())?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(why) = self.clear() {
            eprintln!("strata: {why}");
        }
    }
}

/// `root/rel`, checked to be reached through directories only: a link on the way (planted
/// in the frozen tree while a backup read it, so restored as a link) is refused.
pub fn within(root: &Path, rel: &str) -> Result<PathBuf, StagingError> {
    let mut at = root.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(StagingError::NotAPart(at.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(root.join(rel)),
            Err(e) => return Err(io("cannot read", &at)(e)),
        }
    }
    Ok(at)
}

/// [`within`], creating the directories of `rel` that are missing: each one created
/// alone (never through a link: `mkdir` does not follow the name it creates) and checked
/// to be a directory before the next is made in it.
pub fn make_within(root: &Path, rel: &str) -> Result<PathBuf, StagingError> {
    let mut at = root.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        match std::fs::create_dir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("cannot create", &at)(e)),
        }
        let meta = std::fs::symlink_metadata(&at).map_err(io("cannot read", &at))?;
        if !meta.is_dir() {
            return Err(StagingError::NotAPart(at.display().to_string()));
        }
    }
    Ok(at)
}

/// The parts under a table's frozen directory `dir`, by name, with their rows (their
/// `count.txt`) and bytes, and the names of those without a `count.txt` (their rows are
/// 0 here). Entries that are not part directories are refused: the freeze writes
/// nothing else there.
pub fn parts(dir: &Path) -> Result<(Vec<Part>, Vec<String>), StagingError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A table without parts froze nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io("cannot list", dir)(e)),
    };
    let mut parts = Vec::new();
    let mut uncounted = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let kind = entry.file_type().map_err(io("cannot read", &path))?;
        if !kind.is_dir() || !part_name_ok(&name) {
            return Err(StagingError::NotAPart(path.display().to_string()));
        }
        let (rows, bytes) = part_figures(&entry.path())?;
        if rows.is_none() {
            uncounted.push(name.clone());
        }
        parts.push(Part {
            name,
            rows: rows.unwrap_or(0),
            bytes,
        });
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((parts, uncounted))
}

/// A part's rows (its `count.txt`) and the bytes of its files.
fn part_figures(part: &Path) -> Result<(Option<u64>, u64), StagingError> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(part).map_err(io("cannot list", part))? {
        let entry = entry.map_err(io("cannot list", part))?;
        let meta = entry.metadata().map_err(io("cannot read", part))?;
        bytes += meta.len();
    }
    // Parts of old-syntax tables (`MergeTree(date, key, granularity)`) have none: their
    // rows are asked of the server.
    let count = part.join("count.txt");
    let mut text = String::new();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&count);
    match opened {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, bytes)),
        other => other
            .and_then(|f| f.take(64).read_to_string(&mut text))
            .map_err(io("cannot read", &count))?,
    };
    let rows = text
        .trim()
        .parse()
        .map_err(|_| StagingError::BadCount(count.display().to_string()))?;
    Ok((Some(rows), bytes))
}

/// Removes part `name` from `table_dir/detached/`: a part of this restore's own that a
/// run cut short attached and ClickHouse detached again. Only a plain name, only through
/// a `detached` that is a directory (never a link planted in its place); a link named
/// like the part is removed as a link. Gone already: fine.
pub fn remove_detached(table_dir: &Path, name: &str) -> Result<(), StagingError> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(StagingError::NotAPart(name.to_string()));
    }
    let detached = table_dir.join("detached");
    match std::fs::symlink_metadata(&detached) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(StagingError::NotAPart(detached.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("cannot read", &detached)(e)),
    }
    let part = detached.join(name);
    match std::fs::remove_dir_all(&part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // remove_dir_all does not follow a link: one in the part's place is unlinked.
        Err(_) if std::fs::symlink_metadata(&part).is_ok_and(|m| m.is_symlink()) => {
            std::fs::remove_file(&part).map_err(io("cannot remove", &part))
        }
        Err(e) => Err(io("cannot remove", &part)(e)),
    }
}

/// Moves a restored part from the staging directory into a table's `detached/`,
/// owned like the table's directory (the server may run as its own user and cannot
/// attach what it cannot read). Only plain files and directories are taken: a link in a
/// part is refused, never followed.
pub fn move_to_detached(part: &Path, table_dir: &Path) -> Result<(), StagingError> {
    use std::os::unix::fs::{lchown, MetadataExt};
    let owner = std::fs::metadata(table_dir).map_err(io("cannot read", table_dir))?;
    let (uid, gid) = (Some(owner.uid()), Some(owner.gid()));
    let meta = std::fs::symlink_metadata(part).map_err(io("cannot read", part))?;
    if !meta.is_dir() {
        return Err(StagingError::NotAPart(part.display().to_string()));
    }
    let detached_meta = std::fs::symlink_metadata(table_dir.join("detached"));
    if detached_meta.as_ref().is_ok_and(|m| !m.is_dir()) {
        return Err(StagingError::NotAPart(
            table_dir.join("detached").display().to_string(),
        ));
    }
    let give = "cannot give to the server";
    for entry in std::fs::read_dir(part).map_err(io("cannot list", part))? {
        let path = entry.map_err(io("cannot list", part))?.path();
        let kind = std::fs::symlink_metadata(&path).map_err(io("cannot read", &path))?;
        if !kind.is_file() {
            return Err(StagingError::NotPlain(path.display().to_string()));
        }
        lchown(&path, uid, gid).map_err(io(give, &path))?;
    }
    lchown(part, uid, gid).map_err(io(give, part))?;
    let detached = table_dir.join("detached");
    match std::fs::create_dir(&detached) {
        Ok(()) => lchown(&detached, uid, gid).map_err(io(give, &detached))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("cannot create", &detached)(e)),
    }
    let target = detached.join(part.file_name().unwrap_or_default());
    if std::fs::symlink_metadata(&target).is_ok() {
        // A run of this restore cut short (the coordination service lost before the
        // attach) left the same part there: byte for byte the one laid down now, it is
        // replaced. Anything else is someone's: refused.
        if !same_part(part, &target)? {
            return Err(StagingError::Exists(target.display().to_string()));
        }
        std::fs::remove_dir_all(&target).map_err(io("cannot remove", &target))?;
    }
    std::fs::rename(part, &target).map_err(io("cannot move", part))
}

/// Whether the directory `other` holds exactly the plain files of the part `part`, byte
/// for byte (a link or a directory in it: not the same).
fn same_part(part: &Path, other: &Path) -> Result<bool, StagingError> {
    use std::io::Read;
    let other_meta = std::fs::symlink_metadata(other).map_err(io("cannot read", other))?;
    if !other_meta.is_dir() {
        return Ok(false);
    }
    let names =
        |dir: &Path| -> Result<std::collections::BTreeSet<std::ffi::OsString>, StagingError> {
            std::fs::read_dir(dir)
                .map_err(io("cannot list", dir))?
                .map(|e| e.map(|e| e.file_name()).map_err(io("cannot list", dir)))
                .collect()
        };
    let ours = names(part)?;
    if ours != names(other)? {
        return Ok(false);
    }
    let open = |path: &Path| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    };
    for name in &ours {
        let (a, b) = (part.join(name), other.join(name));
        let (Ok(mut fa), Ok(mut fb)) = (open(&a), open(&b)) else {
            return Ok(false);
        };
        let (ma, mb) = (
            fa.metadata().map_err(io("cannot read", &a))?,
            fb.metadata().map_err(io("cannot read", &b))?,
        );
        if !ma.is_file() || !mb.is_file() || ma.len() != mb.len() {
            return Ok(false);
        }
        let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
        loop {
            let n = fa.read(&mut ba).map_err(io("cannot read", &a))?;
            if n == 0 {
                break;
            }
            fb.read_exact(&mut bb[..n]).map_err(io("cannot read", &b))?;
            if ba[..n] != bb[..n] {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_part_is_removed_only_through_a_real_detached_directory() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("table");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("202402_3_3_0")).unwrap();
        std::fs::create_dir_all(&table).unwrap();
        // `detached` planted as a link to elsewhere: refused, nothing removed there.
        std::os::unix::fs::symlink(&outside, table.join("detached")).unwrap();
        assert!(remove_detached(&table, "202402_3_3_0").is_err());
        assert!(outside.join("202402_3_3_0").is_dir());
        std::fs::remove_file(table.join("detached")).unwrap();
        // A real one: the part goes; a name that is a path is refused.
        std::fs::create_dir_all(table.join("detached/202402_3_3_0/sub")).unwrap();
        remove_detached(&table, "202402_3_3_0").unwrap();
        assert!(!table.join("detached/202402_3_3_0").exists());
        remove_detached(&table, "202402_3_3_0").unwrap();
        assert!(remove_detached(&table, "../outside").is_err());
        assert!(outside.join("202402_3_3_0").is_dir());
    }

    #[test]
    fn directories_are_made_in_place_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let made = make_within(dir.path(), "data/shop/events").unwrap();
        assert!(made.is_dir() && made.starts_with(dir.path()));
        std::os::unix::fs::symlink(outside.path(), dir.path().join("data/evil")).unwrap();
        let err = make_within(dir.path(), "data/evil/t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data/evil"), "{err}");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing made outside"
        );
    }

    #[test]
    fn a_part_an_earlier_run_left_in_detached_is_replaced_only_when_identical() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("table");
        std::fs::create_dir_all(table.join("detached/all_1_1_0")).unwrap();
        std::fs::write(table.join("detached/all_1_1_0/data.bin"), b"rows").unwrap();
        let lay = |content: &[u8]| {
            let part = dir.path().join("staging/all_1_1_0");
            std::fs::create_dir_all(&part).unwrap();
            std::fs::write(part.join("data.bin"), content).unwrap();
            part
        };
        // Someone else's part of that name: refused, left alone.
        let part = lay(b"ROWS");
        assert!(matches!(
            move_to_detached(&part, &table),
            Err(StagingError::Exists(_))
        ));
        assert_eq!(
            std::fs::read(table.join("detached/all_1_1_0/data.bin")).unwrap(),
            b"rows"
        );
        // The same part (a run cut short): replaced by the one laid down now.
        std::fs::remove_dir_all(dir.path().join("staging")).unwrap();
        let part = lay(b"rows");
        move_to_detached(&part, &table).unwrap();
        assert!(!part.exists());
        assert_eq!(
            std::fs::read(table.join("detached/all_1_1_0/data.bin")).unwrap(),
            b"rows"
        );
    }

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Staging::take(dir.path()).unwrap();
        let err = Staging::take(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another strata backup or restore"), "{err}");
        drop(first);
        Staging::take(dir.path()).unwrap();
    }

    #[test]
    fn a_taker_removes_what_a_killed_holder_froze_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let stale = root(dir.path()).join("data/db/t/all_1_1_0");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("count.txt"), "3").unwrap();
        let staging = Staging::take(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(staging.root()).unwrap().count(),
            0,
            "the leftovers are gone, the directory is there and empty"
        );
        std::fs::create_dir_all(staging.root().join("data")).unwrap();
        drop(staging);
        assert!(!root(dir.path()).exists(), "nothing outlives its holder");
        // Released: the next one takes it.
        Staging::take(dir.path()).unwrap();
    }

    #[test]
    fn links_in_place_of_the_staging_directories_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(elsewhere.path().join("strata")).unwrap();
        std::fs::write(elsewhere.path().join("strata/keep"), "root's").unwrap();
        // `shadow` a link: refused, nothing removed where it points.
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("shadow")).unwrap();
        let err = Staging::take(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a directory, not a link"), "{err}");
        assert!(elsewhere.path().join("strata/keep").exists());
        // `shadow/strata` a link: the link is removed, not what it points to.
        std::fs::remove_file(dir.path().join("shadow")).unwrap();
        std::fs::create_dir(dir.path().join("shadow")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("strata"),
            dir.path().join("shadow/strata"),
        )
        .unwrap();
        let staging = Staging::take(dir.path()).unwrap();
        assert!(elsewhere.path().join("strata/keep").exists());
        assert!(std::fs::symlink_metadata(staging.root()).unwrap().is_dir());
        drop(staging);
        assert!(elsewhere.path().join("strata/keep").exists());
    }

    #[test]
    fn parts_are_counted_from_their_files_and_strangers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("202401_1_1_0");
        std::fs::create_dir(&part).unwrap();
        std::fs::write(part.join("count.txt"), "12").unwrap();
        std::fs::write(part.join("x.bin"), vec![0u8; 100]).unwrap();
        let (parts, uncounted) = parts(dir.path()).unwrap();
        assert!(uncounted.is_empty());
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].rows, parts[0].bytes), (12, 102));
        std::os::unix::fs::symlink("/etc", dir.path().join("all_2_2_0")).unwrap();
        let err = super::parts(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a part"), "{err}");
    }

    #[test]
    fn a_part_holding_a_link_is_never_moved_nor_followed() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("table");
        std::fs::create_dir(&table).unwrap();
        let part = dir.path().join("all_1_1_0");
        std::fs::create_dir(&part).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", part.join("count.txt")).unwrap();
        let err = move_to_detached(&part, &table).unwrap_err().to_string();
        assert!(err.contains("not a plain file"), "{err}");
        assert!(part.exists() && !table.join("detached/all_1_1_0").exists());
        std::fs::remove_file(part.join("count.txt")).unwrap();
        std::fs::write(part.join("count.txt"), "1").unwrap();
        move_to_detached(&part, &table).unwrap();
        assert!(table.join("detached/all_1_1_0/count.txt").is_file());
    }
}
