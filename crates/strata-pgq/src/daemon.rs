//! `--daemon`: a long-running command (the ticker, a Londiste worker) detaches by starting
//! itself again in a new session (no fork of a running async runtime, which is unsafe with
//! threads), then waits until the child has written its pidfile. The child writes it only
//! once everything that can fail at start has worked, and its stderr goes to its logfile,
//! so a child that fails at start is reported by the parent: exit status and message.

use crate::PgqError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the detached child's environment: it runs in the foreground whatever its
/// arguments say (`-qd` and other spellings of the switch included), so it can never
/// detach again.
pub const CHILD_ENV: &str = "STRATA_PGQ_DETACHED";

/// Whether this process is the detached child of [`detach`].
pub fn is_detached_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The command line without the daemon switch.
pub fn child_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .filter(|a| a != "--daemon" && a != "-d")
        .collect()
}

/// Starts this command again in the background, in a new session, with stdout and
/// stderr appended to `logfile` (or discarded); returns the child's pid once `pidfile`
/// names it. A child that exits before is [`PgqError::ChildFailed`], with its exit code
/// and the last line it wrote to `logfile` (its error). `what` names the command in
/// errors.
#[allow(unsafe_code)] // setsid(2) in the child before exec: std has no safe form
pub fn spawn_detached(pidfile: &Path, logfile: Option<&Path>, what: &str) -> Result<u32, PgqError> {
    refuse_live(pidfile)?;
    let log_start = logfile
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let output = |logfile: Option<&Path>| -> Result<Stdio, PgqError> {
        match logfile {
            None => Ok(Stdio::null()),
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .map_err(|e| PgqError::io(format!("opening logfile {}", path.display()), e)),
        }
    };
    let exe =
        std::env::current_exe().map_err(|e| PgqError::io("finding the strata executable", e))?;
    let args = child_args(std::env::args().skip(1));
    let mut command = Command::new(exe);
    command
        .args(args)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(output(logfile)?)
        .stderr(output(logfile)?);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| PgqError::io(format!("starting the {what} in the background"), e))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(text) = std::fs::read_to_string(pidfile) {
            if text.trim() == pid.to_string() {
                return Ok(pid);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let message = logfile
                .and_then(|p| last_line(p, log_start))
                .unwrap_or_else(|| match logfile {
                    Some(p) => format!("no message in {}", p.display()),
                    None => "no message (no logfile)".to_string(),
                });
            return Err(PgqError::ChildFailed {
                what: what.to_string(),
                status: status.to_string(),
                code: status.code(),
                message,
            });
        }
        if Instant::now() > deadline {
            return Err(PgqError::BadInput(format!(
                "the background {what} (pid {pid}) did not write {} within 15 s",
                pidfile.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last line written to `path` after byte `from`, without strata's `strata: error: `
/// prefix: what a child that failed at start said.
fn last_line(path: &Path, from: u64) -> Option<String> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(
        line.strip_prefix("strata: error: ")
            .unwrap_or(line)
            .to_string(),
    )
}

/// The pid in a pidfile, if it holds one.
fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|p| *p > 0)
}

fn alive(pid: i32) -> bool {
    // Signal 0 only checks that the process exists (and is ours to signal).
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// Tries to take the lock on an open pidfile: `Ok(false)` when another process holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

fn refused(path: &Path, pid: Option<i32>) -> PgqError {
    PgqError::BadInput(format!(
        "pidfile {} names running process {}: is one running already?",
        path.display(),
        pid.map_or("(unknown)".to_string(), |p| p.to_string())
    ))
}

/// The live process another program (Python Londiste's copy process, say) holds the
/// pidfile at `path` for: its pid when the file is locked or names a process that runs and
/// is not this one; `None` when nothing holds it (a pidfile left by a process that died
/// holds nothing: [`PidFile::create`] takes it over).
pub fn live_holder(path: &Path) -> Option<i32> {
    let mut file = File::open(path).ok()?;
    let pid = read_pid(&mut file);
    let ours = pid == Some(std::process::id() as i32);
    let locked = !try_lock(&file).unwrap_or(true);
    if ours {
        return None;
    }
    if locked || pid.is_some_and(alive) {
        return Some(pid.unwrap_or(0));
    }
    None
}

/// Fails when the pidfile at `path` is locked by a live process (or names one: pgqd and
/// older versions do not lock it).
fn refuse_live(path: &Path) -> Result<(), PgqError> {
    let Ok(mut file) = File::open(path) else {
        return Ok(());
    };
    let pid = read_pid(&mut file);
    let unlocked = try_lock(&file)
        .map_err(|e| PgqError::io(format!("locking pidfile {}", path.display()), e))?;
    if !unlocked || pid.is_some_and(alive) {
        return Err(refused(path, pid));
    }
    Ok(())
}

/// A pidfile held locked (`flock`) while the process runs, removed when dropped. Taking
/// the lock is the atomic part: of two processes starting at once, exactly one gets it;
/// a pidfile left by a process that died is taken over (the kernel dropped its lock).
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Locks the pidfile at `path` and writes this process's pid into it, unless another
    /// process holds it or it names a process that still runs.
    pub fn create(path: &Path) -> Result<PidFile, PgqError> {
        let io = |e| PgqError::io(format!("writing pidfile {}", path.display()), e);
        // A holder that exits removes the file after we opened it: then the lock we got
        // is on a file nobody sees any more, and we try again on the new one.
        for _ in 0..10 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io)?;
            if !try_lock(&file).map_err(io)? {
                return Err(refused(path, read_pid(&mut file)));
            }
            let ours = file.metadata().map_err(io)?;
            match std::fs::metadata(path) {
                Ok(seen) if seen.ino() == ours.ino() && seen.dev() == ours.dev() => {}
                _ => continue,
            }
            if let Some(pid) = read_pid(&mut file) {
                if pid != std::process::id() as i32 && alive(pid) {
                    return Err(refused(path, Some(pid)));
                }
            }
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io)?;
            return Ok(PidFile {
                path: path.to_path_buf(),
                file,
            });
        }
        Err(PgqError::BadInput(format!(
            "pidfile {} keeps being replaced: is another process starting?",
            path.display()
        )))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed only while it is still ours (never another process's new file); the
        // lock goes with the descriptor, after the removal.
        let ours = self.file.metadata().ok();
        let seen = std::fs::metadata(&self.path).ok();
        if let (Some(a), Some(b)) = (ours, seen) {
            if a.ino() == b.ino() && a.dev() == b.dev() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_starters_exactly_one_gets_the_pidfile() {
        let dir = std::env::temp_dir().join(format!("strata-pgq-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pid");
        let _ = std::fs::remove_file(&path);
        for _ in 0..20 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let results: Vec<_> = (0..4)
                .map(|_| {
                    let (barrier, path) = (barrier.clone(), path.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let got = PidFile::create(&path);
                        // Hold it until every starter has tried.
                        barrier.wait();
                        got.is_ok()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
            assert!(!path.exists(), "removed by its holder");
        }
        // A pidfile left behind by a dead process is taken over.
        std::fs::write(&path, "999999999\n").unwrap();
        let held = PidFile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        assert!(refuse_live(&path).is_err(), "a held pidfile is refused");
        drop(held);
        assert!(refuse_live(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_last_line_of_a_failed_start_is_its_message() {
        let dir = std::env::temp_dir().join(format!("strata-pgq-lastline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        std::fs::write(&path, "old line\n").unwrap();
        let from = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(
            b"strata: error: listening on 127.0.0.1:1 for /health: Address already in use\n\n",
        )
        .unwrap();
        assert_eq!(
            last_line(&path, from).as_deref(),
            Some("listening on 127.0.0.1:1 for /health: Address already in use")
        );
        assert_eq!(
            last_line(&path, std::fs::metadata(&path).unwrap().len()),
            None
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_child_runs_in_the_foreground() {
        let args = [
            "pgq", "ticker", "-d", "x.ini", "--daemon", "--health", "a:1",
        ]
        .map(String::from);
        assert_eq!(
            super::child_args(args),
            vec!["pgq", "ticker", "x.ini", "--health", "a:1"]
        );
    }
}
