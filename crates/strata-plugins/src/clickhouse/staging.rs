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
    #[error("{path} holds {text:?}, not a number of rows")]
    BadCount {
        /// The part's `count.txt`.
        path: String,
        /// What it holds.
        text: String,
    },
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
    _lock: File,
}

impl Staging {
    /// Takes the staging directory of the server at `server_path`, or says who holds it;
    /// removes what a killed holder left.
    pub fn take(server_path: &Path) -> Result<Staging, StagingError> {
        let shadow = server_path.join("shadow");
        if !server_path.is_dir() {
            return Err(StagingError::NoServerPath(
                server_path.display().to_string(),
            ));
        }
        std::fs::create_dir_all(&shadow).map_err(io("cannot create", &shadow))?;
        let lock_path = shadow.join(format!("{FREEZE_NAME}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc_nofollow())
            .open(&lock_path)
            .map_err(io("cannot open", &lock_path))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(StagingError::Locked(lock_path.display().to_string()));
        }
        let staging = Staging {
            root: root(server_path),
            _lock: lock,
        };
        staging.clear()?;
        Ok(staging)
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the staging directory and everything in it (hard links of frozen parts:
    /// the tables keep theirs). `remove_dir_all` never follows a symbolic link.
    pub fn clear(&self) -> Result<(), StagingError> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &self.root)(e)),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(why) = self.clear() {
            eprintln!("strata: {why}");
        }
    }
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// The parts under a table's frozen directory `dir`, by name, with their rows (their
/// `count.txt`) and bytes. Entries that are not part directories are refused: the
/// freeze writes nothing else there.
pub fn parts(dir: &Path) -> Result<Vec<Part>, StagingError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A table without parts froze nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("cannot list", dir)(e)),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let kind = entry.file_type().map_err(io("cannot read", &path))?;
        if !kind.is_dir() || !part_name_ok(&name) {
            return Err(StagingError::NotAPart(path.display().to_string()));
        }
        let (rows, bytes) = part_figures(&entry.path())?;
        parts.push(Part { name, rows, bytes });
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(parts)
}

/// A part's rows (its `count.txt`) and the bytes of its files.
fn part_figures(part: &Path) -> Result<(u64, u64), StagingError> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(part).map_err(io("cannot list", part))? {
        let entry = entry.map_err(io("cannot list", part))?;
        let meta = entry.metadata().map_err(io("cannot read", part))?;
        bytes += meta.len();
    }
    let count = part.join("count.txt");
    let mut text = String::new();
    File::open(&count)
        .and_then(|f| f.take(64).read_to_string(&mut text))
        .map_err(io("cannot read", &count))?;
    let rows = text.trim().parse().map_err(|_| StagingError::BadCount {
        path: count.display().to_string(),
        text: text.trim().to_string(),
    })?;
    Ok((rows, bytes))
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
        return Err(StagingError::Exists(target.display().to_string()));
    }
    std::fs::rename(part, &target).map_err(io("cannot move", part))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!staging.root().exists(), "the leftovers are gone");
        std::fs::create_dir_all(staging.root().join("data")).unwrap();
        drop(staging);
        assert!(!root(dir.path()).exists(), "nothing outlives its holder");
        // Released: the next one takes it.
        Staging::take(dir.path()).unwrap();
    }

    #[test]
    fn parts_are_counted_from_their_files_and_strangers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("202401_1_1_0");
        std::fs::create_dir(&part).unwrap();
        std::fs::write(part.join("count.txt"), "12").unwrap();
        std::fs::write(part.join("x.bin"), vec![0u8; 100]).unwrap();
        let parts = parts(dir.path()).unwrap();
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
