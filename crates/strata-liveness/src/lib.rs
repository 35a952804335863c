//! Whether the process behind a lock record, a writer's mark or a pause record has
//! *provably* ended, judged without `/proc` PIDs and without clocks.
//!
//! ```
//! # let state_dir = tempfile::tempdir().unwrap();
//! use strata_liveness::{hold_alive_file, provably_dead, this_process};
//!
//! // A process takes its alive file once, then writes `this_process()` into whatever
//! // it holds (a lock record, a mark, a pause record).
//! hold_alive_file(state_dir.path()).unwrap();
//! let me = this_process();
//! // Anyone reading the record asks whether that process has provably ended: never
//! // for a process that runs, never for this one, never when it cannot be told.
//! assert!(!provably_dead(&me));
//! ```
//!
//! A holder is judged dead only when that is provable from this process: its *alive
//! file* (a file of its state directory on which it holds an exclusive `flock(2)` for as
//! long as it runs) is still the same inode and no longer locked. The kernel releases
//! that lock only when every descriptor of the holder is closed, that is when it exited
//! or was killed, whatever PID namespace either process lives in. That proof holds only
//! where this process shares the holder's kernel's locks:
//!
//! - both read the same boot of the same kernel (`/proc/sys/kernel/random/boot_id`); a
//!   different one proves nothing (another host, or a copy of this disk); or
//! - where either could not read it (the packaged units' sandbox hides `/proc/sys`),
//!   the alive file lies on a local file system (ext4, xfs, btrfs, tmpfs, ...), whose
//!   locks no other kernel shares; a network file system proves nothing.
//!
//! Whatever cannot be read (another host, another container's files, no state
//! directory) proves nothing: a lock's holder is then waited for until its lease expires
//! by the storage's clock, and a pause's holder until a process that can tell resumes it.
//!
//! `/proc/PID` is never consulted: in another PID namespace, or under `hidepid`, a live
//! process has no entry there, and a PID is reused.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What a lock record says about its holder's process, beside the human `host:pid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Random, per process: two holders never share it, whatever their host and PID.
    pub instance: String,
    /// The kernel boot the process runs in, when it could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Its PID namespace (`pid:[4026531836]`), when it could read it: for people; the
    /// alive file's lock is the same in every namespace of a kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
    /// The file it holds locked while it runs, when it has a state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive_file: Option<AliveFile>,
}

/// A file its holder keeps `flock`ed for as long as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AliveFile {
    /// The file's path on the holder's host.
    pub path: String,
    /// The device number of the file, so a file replaced at the same path is told apart.
    pub dev: u64,
    /// The inode number of the file, so a file replaced at the same path is told apart.
    pub ino: u64,
}

impl AliveFile {
    /// The alive file at `path`, open as `file`: its absolute path and its inode.
    pub fn of(path: &Path, file: &File) -> std::io::Result<AliveFile> {
        let meta = file.metadata()?;
        Ok(AliveFile {
            path: absolute(path).to_string_lossy().into_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// This process's instance id: 16 random bytes in hex.
fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut r = [0u8; 16];
        getrandom::getrandom(&mut r).expect("the OS random source is available");
        r.iter().map(|b| format!("{b:02x}")).collect()
    })
}

fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

fn pid_ns() -> Option<String> {
    static NS: OnceLock<Option<String>> = OnceLock::new();
    NS.get_or_init(|| {
        std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    })
    .clone()
}

/// The alive file this process holds, once [`hold_alive_file`] took it.
static ALIVE: OnceLock<(File, AliveFile)> = OnceLock::new();

/// The host name, from `uname(2)` (not `/proc`, which a sandbox may hide).
pub fn host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// What this process writes into its lock records and marks.
pub fn this_process() -> Liveness {
    Liveness {
        instance: instance().to_string(),
        boot_id: boot_id(),
        pid_ns: pid_ns(),
        alive_file: ALIVE.get().map(|(_, a)| a.clone()),
    }
}

/// Whether `liveness` is this process's.
pub fn is_this_process(liveness: &Liveness) -> bool {
    liveness.instance == instance()
}

/// Takes this process's alive file in `<state_dir>/alive/` (once per process; later calls
/// do nothing) and removes the files of processes that have ended. Without it, other
/// processes can never prove this one dead and wait for its leases to expire.
pub fn hold_alive_file(state_dir: &Path) -> std::io::Result<()> {
    if ALIVE.get().is_some() {
        return Ok(());
    }
    let dir = state_dir.join("alive");
    std::fs::create_dir_all(&dir)?;
    if sweep_due(&dir) {
        sweep_ended(&dir);
    }
    let path = dir.join(format!("{}.lock", instance()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    let alive = AliveFile::of(&path, &file)?;
    let _ = ALIVE.set((file, alive));
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// How long the alive file of an ended process is kept after it was first found ended:
/// while it is there it proves its process gone (a lock that process held is taken over
/// at once); once removed, its leases are simply waited out.
const KEEP_ENDED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How often a process sweeps the alive files: a sweep opens every file of the
/// directory, which holds one per process of the last day (a one-shot `wal-push` per WAL
/// segment makes that tens of thousands), so it is not done by every process.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether this process sweeps: the stamp `alive/swept` is older than [`SWEEP_EVERY`]
/// (or missing), and is renewed here. Two processes may both sweep: harmless. A later
/// sweep stamps an ended file later, which only keeps its proof longer.
fn sweep_due(dir: &Path) -> bool {
    let stamp = dir.join("swept");
    let age = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok());
    if age.is_some_and(|a| a < SWEEP_EVERY) {
        return false;
    }
    // A stamp that cannot be written: every process sweeps, as before.
    let _ =
        std::fs::File::create(&stamp).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    true
}

/// Removes the alive files nobody has held for a day. A file first found unheld is
/// stamped (its modification time set to now) and kept, so that the proof of its
/// process's end outlives that process's leases.
fn sweep_ended(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") || unheld(&path, None, false) != Some(true)
        {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new().append(true).open(&path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else {
            continue;
        };
        // A live process never changes its file: a size of 0 means not stamped yet.
        if meta.len() == 0 {
            use std::io::Write;
            let _ = (&file).write_all(b"ended\n");
            continue;
        }
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
        if age.is_some_and(|a| a >= KEEP_ENDED) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Whether the file at `path` (the inode `expect`, when given) is locked by nobody:
/// `Some(true)` proven unheld, `Some(false)` held, `None` when it cannot be told (and,
/// with `local_only`, when it is not on a local file system).
fn unheld(path: &Path, expect: Option<(u64, u64)>, local_only: bool) -> Option<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || expect.is_some_and(|(dev, ino)| (meta.dev(), meta.ino()) != (dev, ino)) {
        return None;
    }
    if local_only && !on_a_local_file_system(&file) {
        return None;
    }
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        // Taken by us for an instant: its holder is gone. Closing `file` releases it.
        Ok(()) => Some(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Some(false),
        Err(_) => None,
    }
}

/// Whether the process that wrote `liveness` has provably ended (see the module's doc).
/// Never true for this process, nor for records of older versions that carry none.
pub fn provably_dead(liveness: &Liveness) -> bool {
    provably_dead_seen_from(liveness, &this_process())
}

/// [`provably_dead`] as the process `me` judges it.
fn provably_dead_seen_from(liveness: &Liveness, me: &Liveness) -> bool {
    if liveness.instance == me.instance {
        return false;
    }
    let same_boot = match (&liveness.boot_id, &me.boot_id) {
        (Some(theirs), Some(mine)) if theirs != mine => return false,
        (Some(_), Some(_)) => true,
        _ => false,
    };
    let Some(alive) = &liveness.alive_file else {
        return false;
    };
    unheld(
        Path::new(&alive.path),
        Some((alive.dev, alive.ino)),
        !same_boot,
    ) == Some(true)
}

/// Whether the directory or file at `path` lies on a file system only this kernel
/// mounts (see [`on_a_local_file_system`]): a process of this host writes there with
/// system calls that end with it, so nothing it wrote can land after it ended.
pub fn on_a_local_disk(path: &std::path::Path) -> bool {
    File::open(path).is_ok_and(|file| on_a_local_file_system(&file))
}

/// Whether `file` lies on a file system only this kernel mounts, so that its `flock`
/// locks are this kernel's alone: the common local ones, by their `statfs(2)` magic.
/// Network and shared ones (NFS, CIFS, FUSE, 9p, virtiofs, cluster file systems) are
/// not listed: a lock there may be another kernel's, or not be seen at all.
fn on_a_local_file_system(file: &File) -> bool {
    const LOCAL: [(u32, &str); 9] = [
        (0xEF53, "ext2/3/4"),
        (0x5846_5342, "xfs"),
        (0x9123_683E, "btrfs"),
        (0x0102_1994, "tmpfs"),
        (0xF2F5_2010, "f2fs"),
        (0x2FC1_2FC1, "zfs"),
        (0x794C_7630, "overlayfs"),
        (0x5265_4973, "reiserfs"),
        (0x3434, "nilfs"),
    ];
    rustix::fs::fstatfs(file).is_ok_and(|s| {
        let magic = s.f_type as u32;
        LOCAL.iter().any(|(m, _)| *m == magic)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(me: &Liveness) -> Liveness {
        Liveness {
            instance: "someone-else".into(),
            ..me.clone()
        }
    }

    #[test]
    fn only_a_released_alive_file_under_this_kernel_proves_death() {
        let dir = tempfile::tempdir().unwrap();
        let me = this_process();
        assert!(!provably_dead_seen_from(&me, &me), "never ourselves");
        // A holder of the same boot and namespace whose file is still locked: alive.
        let path = dir.path().join("x.lock");
        let file = File::create(&path).unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        let mut holder = other(&me);
        holder.alive_file = Some(AliveFile::of(&path, &file).unwrap());
        let local = on_a_local_file_system(&file);
        assert!(!provably_dead_seen_from(&holder, &me), "its lock is held");
        drop(file);
        assert_eq!(
            provably_dead_seen_from(&holder, &me),
            me.boot_id.is_some() || local,
            "its lock was released"
        );
        // A boot that could not be read on either side: the file's lock is this
        // kernel's when the file is local. Another namespace changes nothing.
        for change in [
            |h: &mut Liveness| h.boot_id = None,
            |h: &mut Liveness| h.pid_ns = Some("pid:[1]".into()),
            |h: &mut Liveness| h.pid_ns = None,
        ] {
            let mut changed = holder.clone();
            change(&mut changed);
            let proven = provably_dead_seen_from(&changed, &me);
            assert_eq!(
                proven,
                local || (me.boot_id.is_some() && changed.boot_id.is_some()),
                "{changed:?}"
            );
        }
        // Anything that cannot be compared proves nothing.
        for change in [
            |h: &mut Liveness| h.boot_id = Some("another boot".into()),
            |h: &mut Liveness| h.alive_file = None,
            |h: &mut Liveness| h.alive_file.as_mut().unwrap().ino += 1,
            |h: &mut Liveness| h.alive_file.as_mut().unwrap().path = "/nonexistent/x.lock".into(),
        ] {
            let mut changed = holder.clone();
            change(&mut changed);
            assert!(!provably_dead_seen_from(&changed, &me), "{changed:?}");
        }
    }

    #[test]
    fn a_file_here_is_on_a_local_file_system_and_proc_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("x")).unwrap();
        assert!(
            on_a_local_file_system(&file),
            "the test's temporary directory"
        );
        if let Ok(proc) = File::open("/proc/self/stat") {
            assert!(!on_a_local_file_system(&proc));
        }
    }

    #[test]
    fn ended_alive_files_stay_a_day_as_proof_then_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join("held.lock");
        let ended = dir.path().join("ended.lock");
        let old = dir.path().join("old.lock");
        let holder = File::create(&held).unwrap();
        rustix::fs::flock(
            &holder,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        File::create(&ended).unwrap();
        std::fs::write(&old, b"ended\n").unwrap();
        let long_ago =
            std::time::SystemTime::now() - KEEP_ENDED - std::time::Duration::from_secs(60);
        File::options()
            .append(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        sweep_ended(dir.path());
        assert!(held.exists(), "a live holder's file stays");
        assert!(ended.exists(), "an ended one stays as proof");
        assert!(std::fs::metadata(&ended).unwrap().len() > 0, "stamped");
        assert_eq!(
            unheld(&ended, None, false),
            Some(true),
            "and still proves its end"
        );
        assert!(!old.exists(), "a day after it was found ended, it goes");
    }

    #[test]
    fn the_sweep_runs_once_per_interval_not_per_process() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sweep_due(dir.path()), "never swept: due");
        assert!(!sweep_due(dir.path()), "just swept: not due");
        let long_ago = std::time::SystemTime::now() - SWEEP_EVERY;
        File::options()
            .write(true)
            .open(dir.path().join("swept"))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        assert!(sweep_due(dir.path()), "due again after the interval");
    }

    #[test]
    fn the_host_name_comes_from_uname() {
        assert!(!host_name().is_empty());
        // The same UTS name, as /proc shows it where it can be read.
        if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(host_name(), name.trim());
        }
    }

    #[test]
    fn this_process_is_told_by_its_random_instance_and_reads_its_kernel() {
        let me = this_process();
        assert_eq!(me.instance.len(), 32);
        assert!(me.instance.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            this_process().instance,
            me.instance,
            "one instance per process"
        );
        assert!(is_this_process(&me));
        assert!(!is_this_process(&other(&me)));
        if let Ok(boot) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            assert_eq!(me.boot_id.as_deref(), Some(boot.trim()));
        }
        if let Ok(ns) = std::fs::read_link("/proc/self/ns/pid") {
            assert_eq!(me.pid_ns.as_deref(), Some(ns.to_string_lossy().as_ref()));
        }
    }

    /// Each test runs in a process of its own (nextest): the alive file is this one's.
    #[test]
    fn the_alive_file_is_held_while_the_process_runs_and_proves_it_alive() {
        let dir = tempfile::tempdir().unwrap();
        hold_alive_file(dir.path()).unwrap();
        let me = this_process();
        let alive = me.alive_file.clone().expect("an alive file once held");
        assert!(alive.path.starts_with(&*dir.path().to_string_lossy()));
        assert_eq!(
            unheld(Path::new(&alive.path), None, false),
            Some(false),
            "held"
        );
        // Another process's view of us: alive.
        let mut seen_by = other(&me);
        seen_by.alive_file = None;
        assert!(!provably_dead_seen_from(&me, &seen_by));
    }

    #[test]
    fn provably_dead_judges_from_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.lock");
        let file = File::create(&path).unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        let mut holder = other(&this_process());
        holder.alive_file = Some(AliveFile::of(&path, &file).unwrap());
        assert!(!provably_dead(&holder), "held");
        drop(file);
        assert!(provably_dead(&holder), "released, on this disk");
        assert!(!provably_dead(&this_process()), "never this process");
    }

    /// A released lock is believed off this host's disks only when both boots are known
    /// and the same (the lock is then this kernel's); with a boot unknown, only on a
    /// local disk. `/proc` stands for a file system that is not a local disk here.
    #[test]
    fn a_lock_off_a_local_disk_proves_an_end_only_under_the_same_known_boot() {
        let me = this_process();
        let Ok(file) = File::open("/proc/self/stat") else {
            return;
        };
        if me.boot_id.is_none()
            || rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        {
            return;
        }
        let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
        let mut holder = other(&me);
        holder.alive_file = Some(AliveFile::of(Path::new("/proc/self/stat"), &file).unwrap());
        drop(file);
        assert!(
            provably_dead_seen_from(&holder, &me),
            "same boot: the lock is this kernel's"
        );
        let mut unknown = holder.clone();
        unknown.boot_id = None;
        assert!(
            !provably_dead_seen_from(&unknown, &me),
            "boot unknown: a local disk only"
        );
    }

    #[test]
    fn a_directory_on_this_disk_is_one_and_proc_or_nothing_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(on_a_local_disk(dir.path()));
        assert!(!on_a_local_disk(&dir.path().join("missing")));
        if Path::new("/proc/self").exists() {
            assert!(!on_a_local_disk(Path::new("/proc/self")));
        }
    }

    #[test]
    fn an_ended_file_stays_for_a_whole_day_and_the_stamp_is_never_swept() {
        let dir = tempfile::tempdir().unwrap();
        let hours_ago =
            |h: u64| std::time::SystemTime::now() - std::time::Duration::from_secs(h * 3600);
        // Found ended two hours ago: still proof of its process's end.
        let recent = dir.path().join("recent.lock");
        std::fs::write(&recent, b"ended\n").unwrap();
        File::options()
            .append(true)
            .open(&recent)
            .unwrap()
            .set_modified(hours_ago(2))
            .unwrap();
        // Not an alive file (the sweep's own stamp), however old: left alone.
        let stamp = dir.path().join("swept");
        std::fs::write(&stamp, b"x").unwrap();
        File::options()
            .append(true)
            .open(&stamp)
            .unwrap()
            .set_modified(hours_ago(48))
            .unwrap();
        sweep_ended(dir.path());
        assert!(recent.exists(), "kept for a day");
        assert!(stamp.exists(), "only alive files are swept");
        assert_eq!(KEEP_ENDED, std::time::Duration::from_secs(86_400));
    }
}
