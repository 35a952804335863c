//! The WAL fetch spool: segments `wal-fetch` read ahead, waiting for PostgreSQL to ask.
//!
//! Recovery runs `restore_command` once per segment, and every `strata wal-fetch` has to
//! unwrap the repository key (a deliberately slow password hash) and load the index
//! before it can read one segment. Reading the next few segments in the same call and
//! keeping them here turns the following calls into a rename.
//!
//! A spooled file is only ever the exact content the archive holds under that name: the
//! archive refuses a different file under an archived name, files are written beside their
//! final name and renamed (never half a segment), and the directory is per repository.
//! Spooled segments that recovery has passed, and any file left longer than [`STALE`]
//! (an abandoned recovery), are removed on the next fetch.

use crate::walname::WalFileKind;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Spooled files older than this belong to a recovery that is over.
pub const STALE: Duration = Duration::from_secs(15 * 60);

/// Suffix of files being written.
const PARTIAL: &str = ".spooling";
/// Where `wal-fetch` notes the last file recovery asked for (the prefetcher follows it).
const WANTED: &str = "wanted";
/// Held (locked) by the one prefetcher of the spool.
const PREFETCH_LOCK: &str = "prefetch.lock";
/// Where a `wal-fetch` that missed the spool asks the running prefetcher for a file.
const ASKING: &str = "asking";
/// Suffix of the mark a prefetcher leaves for a file asked for that the archive lacks.
const ABSENT: &str = ".absent";

/// A directory of read-ahead WAL files.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into() }
    }

    /// The spooled file of `name`, if `name` is a WAL file name: anything else (a path
    /// with `/` or `..` from a mistyped command line) never reaches outside the spool.
    fn file(&self, name: &str) -> Option<PathBuf> {
        WalFileKind::parse(name).map(|_| self.dir.join(name))
    }

    /// Moves spooled `name` to `dest`; `Ok(None)` when it is not spooled.
    pub fn take(&self, name: &str, dest: &Path) -> io::Result<Option<u64>> {
        let Some(from) = self.file(name) else {
            return Ok(None);
        };
        let size = match fs::metadata(&from) {
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        match fs::rename(&from, dest) {
            Ok(()) => Ok(Some(size)),
            // Another filesystem: copy beside the destination, then rename into place.
            Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
                let tmp = dest.with_extension("strata-partial");
                fs::copy(&from, &tmp)?;
                fs::rename(&tmp, dest)?;
                let _ = fs::remove_file(&from);
                Ok(Some(size))
            }
            Err(err) => Err(err),
        }
    }

    /// Keeps `data` as `name` for a later [`Spool::take`].
    pub fn put(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let file = self
            .file(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a WAL file name"))?;
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{name}{PARTIAL}"));
        fs::write(&tmp, data)?;
        fs::rename(&tmp, file)
    }

    /// Whether `name` is spooled.
    pub fn has(&self, name: &str) -> bool {
        self.file(name).is_some_and(|f| f.is_file())
    }

    /// Notes that recovery asked for `name` now (for the prefetcher).
    pub fn note_wanted(&self, name: &str) -> io::Result<()> {
        if WalFileKind::parse(name).is_none() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{WANTED}{PARTIAL}"));
        fs::write(&tmp, name)?;
        fs::rename(&tmp, self.dir.join(WANTED))
    }

    /// The last file recovery asked for and when, if it is a WAL file name.
    pub fn wanted(&self) -> Option<(String, SystemTime)> {
        let path = self.dir.join(WANTED);
        let at = fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        let name = fs::read_to_string(&path).ok()?;
        WalFileKind::parse(&name).map(|_| (name, at))
    }

    /// Asks the running prefetcher for `name` (see [`Spool::asked`]): a `wal-fetch` that
    /// missed the spool then waits for the file or its [`Spool::is_absent`] mark instead
    /// of opening the repository itself. An earlier absent mark of `name` goes first, so
    /// only the prefetcher's answer to this ask counts.
    pub fn ask(&self, name: &str) -> io::Result<()> {
        if WalFileKind::parse(name).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a WAL file name",
            ));
        }
        match fs::remove_file(self.dir.join(format!("{name}{ABSENT}"))) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{ASKING}{PARTIAL}"));
        fs::write(&tmp, name)?;
        fs::rename(&tmp, self.dir.join(ASKING))
    }

    /// The file a `wal-fetch` asks for, if asked within `fresh` and still neither spooled
    /// nor marked absent.
    pub fn asked(&self, fresh: Duration) -> Option<String> {
        let path = self.dir.join(ASKING);
        let at = fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        if at.elapsed().unwrap_or_default() > fresh {
            return None;
        }
        let name = fs::read_to_string(&path).ok()?;
        WalFileKind::parse(&name)?;
        (!self.has(&name) && !self.is_absent(&name)).then_some(name)
    }

    /// Withdraws the ask for `name` once it is answered (so the file, taken, is not
    /// fetched again); an ask for another file since stays.
    pub fn answered(&self, name: &str) {
        let path = self.dir.join(ASKING);
        if fs::read_to_string(&path).is_ok_and(|asked| asked == name) {
            let _ = fs::remove_file(path);
        }
    }

    /// Marks `name` as not in the archive (the prefetcher's answer to an ask).
    pub fn mark_absent(&self, name: &str) -> io::Result<()> {
        if WalFileKind::parse(name).is_none() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        fs::write(self.dir.join(format!("{name}{ABSENT}")), b"")
    }

    /// Whether the prefetcher marked `name` absent since it was last asked for.
    pub fn is_absent(&self, name: &str) -> bool {
        WalFileKind::parse(name).is_some() && self.dir.join(format!("{name}{ABSENT}")).is_file()
    }

    /// Whether a prefetcher serves this spool now (holds its lock).
    pub fn prefetcher_running(&self) -> bool {
        match self.lock_prefetcher() {
            Ok(Some(_free)) => false,
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// The prefetcher's lock, taken without waiting; `None` while another process
    /// holds it (it is released when the file is closed, also when its holder dies).
    pub fn lock_prefetcher(&self) -> io::Result<Option<fs::File>> {
        fs::create_dir_all(&self.dir)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(PREFETCH_LOCK))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(err)) => Err(err),
        }
    }

    /// Removes what recovery will not ask for again: segments of `requested`'s timeline
    /// that sort before it, half-written files, and anything older than [`STALE`].
    pub fn prune(&self, requested: &str) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let timeline = WalFileKind::parse(requested).map(|k| k.timeline());
        let now = SystemTime::now();
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == PREFETCH_LOCK {
                continue;
            }
            let passed = matches!(WalFileKind::parse(&name), Some(k @ WalFileKind::Segment { .. })
                if Some(k.timeline()) == timeline && name.as_str() < requested);
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
            if passed || stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The names of the `count` segments after segment `name` on its timeline (empty for
/// anything but a segment).
pub fn following_segments(name: &str, segment_size: u64, count: usize) -> Vec<String> {
    let Some(kind @ WalFileKind::Segment { .. }) = WalFileKind::parse(name) else {
        return Vec::new();
    };
    let Some(segno) = kind.segno(segment_size) else {
        return Vec::new();
    };
    (1..=count as u64)
        .map(|i| crate::walname::segment_name(kind.timeline(), segno + i, segment_size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    #[test]
    fn spooled_files_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let dest = dir.path().join("RECOVERYXLOG");
        assert_eq!(spool.take("000000010000000000000003", &dest).unwrap(), None);
        spool.put("000000010000000000000003", b"wal").unwrap();
        assert!(spool.has("000000010000000000000003"));
        assert_eq!(
            spool.take("000000010000000000000003", &dest).unwrap(),
            Some(3)
        );
        assert_eq!(fs::read(&dest).unwrap(), b"wal");
        assert!(!spool.has("000000010000000000000003"));
    }

    #[test]
    fn an_ask_is_answered_by_the_file_or_an_absent_mark() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let fresh = Duration::from_secs(10);
        assert_eq!(spool.asked(fresh), None);
        assert!(spool.ask("../../etc/passwd").is_err());
        spool.ask("00000002.history").unwrap();
        assert_eq!(spool.asked(fresh).as_deref(), Some("00000002.history"));
        spool.mark_absent("00000002.history").unwrap();
        assert!(spool.is_absent("00000002.history"));
        assert_eq!(spool.asked(fresh), None, "answered");
        // Asked again: the old answer no longer counts.
        spool.ask("00000002.history").unwrap();
        assert!(!spool.is_absent("00000002.history"));
        spool.ask("000000010000000000000005").unwrap();
        spool.put("000000010000000000000005", b"wal").unwrap();
        assert_eq!(spool.asked(fresh), None, "spooled");
        spool.answered("000000010000000000000004");
        assert!(
            dir.path().join("spool/asking").exists(),
            "another file's ask stays"
        );
        spool.answered("000000010000000000000005");
        let dest = dir.path().join("RECOVERYXLOG");
        spool.take("000000010000000000000005", &dest).unwrap();
        assert_eq!(
            spool.asked(fresh),
            None,
            "answered and taken: not asked again"
        );
        assert!(!spool.prefetcher_running());
        let _held = spool.lock_prefetcher().unwrap().unwrap();
        assert!(spool.prefetcher_running());
    }

    #[test]
    fn the_wanted_name_and_the_prefetchers_lock() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        assert!(spool.wanted().is_none());
        spool.note_wanted("000000010000000000000007").unwrap();
        spool.note_wanted("../../etc/passwd").unwrap();
        assert_eq!(spool.wanted().unwrap().0, "000000010000000000000007");
        let held = spool
            .lock_prefetcher()
            .unwrap()
            .expect("the first takes it");
        assert!(
            spool.lock_prefetcher().unwrap().is_none(),
            "one prefetcher a spool"
        );
        spool.prune("000000010000000000000009");
        assert!(
            spool.lock_prefetcher().unwrap().is_none(),
            "pruning keeps the lock"
        );
        drop(held);
        assert!(spool.lock_prefetcher().unwrap().is_some());
    }

    #[test]
    fn names_that_are_not_wal_files_never_leave_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("000000010000000000000003");
        fs::write(&outside, b"not spooled").unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        fs::create_dir_all(dir.path().join("spool")).unwrap();
        let dest = dir.path().join("dest");
        let sneaky = "../000000010000000000000003";
        assert_eq!(spool.take(sneaky, &dest).unwrap(), None);
        assert!(!spool.has(sneaky));
        assert!(spool.put(sneaky, b"x").is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"not spooled");
        assert!(!dest.exists());
    }

    #[test]
    fn pruning_drops_passed_segments_of_the_timeline_only() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        for name in [
            "000000010000000000000002",
            "000000010000000000000004",
            "000000020000000000000001",
        ] {
            spool.put(name, b"x").unwrap();
        }
        spool.prune("000000010000000000000003");
        assert!(!spool.has("000000010000000000000002"));
        assert!(spool.has("000000010000000000000004"));
        assert!(spool.has("000000020000000000000001"));
    }

    #[test]
    fn following_segments_cross_log_boundaries() {
        assert_eq!(
            following_segments("0000000100000000000000FE", SEG, 3),
            vec![
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
        assert!(following_segments("00000002.history", SEG, 3).is_empty());
        assert!(following_segments("000000010000000000000003.partial", SEG, 3).is_empty());
    }
}
