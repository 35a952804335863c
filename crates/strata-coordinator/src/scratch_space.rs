//! Scratch spaces of table restores and restore drills, and what is left of them when
//! their process is killed.
//!
//! A table restore (or a database restore) and a restore drill restore a PostgreSQL node
//! into a directory under the state directory and start a scratch server on it
//! ([`strata_postgres::scratch`]). Their own cleanup (an error, a panic, a SIGTERM) stops
//! the server and removes the directory; a SIGKILL, an out-of-memory kill or a power-cut
//! host leaves both, the server running on its copy for good.
//!
//! So before its directory is created each of them writes a *mark* into
//! `<state_dir>/scratch-marks/`: what it is, its directory, and its process's liveness
//! ([`crate::lock::liveness`]: boot, PID namespace, alive file). The next table restore,
//! restore drill and `strata server` start [`sweep`] the marks: a mark whose process is
//! *provably* gone (same boot, same PID namespace, its alive file no longer locked) has
//! the servers left in its directory stopped at once (`pg_ctl stop -m immediate`) and the
//! directory removed, each said in a warning line. A mark whose process may still run
//! (another restore right now, another host sharing the directory, nothing provable) is
//! left alone.

use crate::lock::liveness::{self, Liveness};
use crate::{CoordinatorError, CoordinatorResult};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use strata_postgres::scratch::Scratch;

/// The directory of the marks, under the state directory.
pub const MARKS_DIR: &str = "scratch-marks";

/// The names a scratch directory may have (directly under the state directory): nothing
/// else is ever removed by a sweep.
const SCRATCH_PREFIXES: &[&str] = &["table-restore-", "restore-drill-"];

/// What a mark says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mark {
    /// `table restore of backup X`, `restore drill of backup X`.
    what: String,
    /// The scratch directory (under the state directory).
    dir: PathBuf,
    host: String,
    pid: u32,
    /// When it began (RFC 3339).
    started: String,
    liveness: Liveness,
}

/// A scratch directory with its mark: when dropped, whatever happened, the scratch server
/// is stopped, any other server left in the directory too, the directory removed and
/// then the mark.
pub struct ScratchLease {
    dir: PathBuf,
    mark: PathBuf,
    server: Option<Scratch>,
}

impl ScratchLease {
    /// Marks `dir` (directly under `state_dir`, not created yet: the caller creates it
    /// after this) as the scratch space of `what` run by this process.
    pub fn take(state_dir: &Path, dir: &Path, what: &str) -> CoordinatorResult<ScratchLease> {
        let invalid = |m: String| CoordinatorError::Invalid(m);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if dir.parent() != Some(state_dir) || !SCRATCH_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            return Err(invalid(format!(
                "{} is not a scratch directory of the state directory {}",
                dir.display(),
                state_dir.display()
            )));
        }
        // Without an alive file nobody could ever prove this process gone.
        let _ = liveness::hold_alive_file(state_dir);
        let me = liveness::this_process();
        let marks = state_dir.join(MARKS_DIR);
        std::fs::create_dir_all(&marks)
            .map_err(|e| invalid(format!("cannot create {}: {e}", marks.display())))?;
        let mark = Mark {
            what: what.to_string(),
            dir: dir.to_path_buf(),
            host: liveness::host_name(),
            pid: std::process::id(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            liveness: me.clone(),
        };
        let path = marks.join(format!("{name}.{}.json", me.instance));
        let temp = marks.join(format!(".{name}.{}.tmp", me.instance));
        let text = serde_json::to_vec_pretty(&mark).expect("a mark serializes");
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                invalid(format!("cannot write {}: {e}", path.display()))
            })?;
        Ok(ScratchLease {
            dir: dir.to_path_buf(),
            mark: path,
            server: None,
        })
    }

    /// The scratch server started in the directory: stopped (fast) first when dropped.
    pub fn set_server(&mut self, server: Scratch) {
        self.server = Some(server);
    }
}

impl Drop for ScratchLease {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            let _ = server.stop();
        }
        // A server this process started but did not get to record (a start cut short, a
        // drill's): stopped too, before its files go.
        for data_dir in servers_under(&self.dir) {
            let _ = strata_postgres::scratch::stop_leftover(&data_dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !self.dir.exists() {
            let _ = std::fs::remove_file(&self.mark);
        }
    }
}

/// The data directories under `dir` (up to four levels down, links not followed) that
/// have a `postmaster.pid`: where a server may run.
fn servers_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if dir.join("postmaster.pid").is_file() {
            out.push(dir.to_path_buf());
            return;
        }
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, 4, &mut out);
    out
}

/// Finds the marks in `state_dir` whose process has provably ended, stops the servers
/// left in their directories and removes the directories; returns (and prints as
/// warnings) a line for each, and for each it could not clean up.
pub fn sweep(state_dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(state_dir.join(MARKS_DIR)) else {
        return lines;
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        if let Some(line) = sweep_one(state_dir, &path) {
            eprintln!("strata: warning: {line}");
            lines.push(line);
        }
    }
    lines
}

/// Sweeps the mark at `path`: a line when it found a leftover.
fn sweep_one(state_dir: &Path, path: &Path) -> Option<String> {
    // One sweeper at a time per mark (another process may sweep right now).
    let file = std::fs::File::open(path).ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    if !path.exists() {
        return None;
    }
    let mark: Mark = serde_json::from_reader(&file).ok()?;
    if !liveness::provably_dead(&mark.liveness) {
        return None;
    }
    let who = format!(
        "the {} by process {} on {} (started {}) ended without cleaning up",
        mark.what, mark.pid, mark.host, mark.started
    );
    let name = mark
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inside = mark.dir.parent().is_some_and(|p| same_dir(p, state_dir))
        && SCRATCH_PREFIXES.iter().any(|p| name.starts_with(p));
    if !inside {
        return Some(format!(
            "{who}; its mark {} names {}, which is not a scratch directory of {}: not removed (remove the mark once you have looked)",
            path.display(),
            mark.dir.display(),
            state_dir.display()
        ));
    }
    let mut stopped = Vec::new();
    for data_dir in servers_under(&mark.dir) {
        match strata_postgres::scratch::stop_leftover(&data_dir) {
            Ok(true) => stopped.push(data_dir),
            Ok(false) => {}
            Err(why) => {
                return Some(format!(
                    "{who}; its scratch server on {} could not be stopped ({why}): stop it (pg_ctl stop -m immediate -D {}) and remove {}",
                    data_dir.display(),
                    data_dir.display(),
                    mark.dir.display()
                ))
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&mark.dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Some(format!(
                "{who}; {} could not be removed: {e}",
                mark.dir.display()
            ));
        }
    }
    let _ = std::fs::remove_file(path);
    let servers = match stopped.len() {
        0 => "no scratch server of it was running".to_string(),
        _ => format!(
            "stopped its scratch server on {}",
            stopped
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Some(format!(
        "{who}: {servers} and removed {}",
        mark.dir.display()
    ))
}

/// Whether `a` and `b` name the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A mark of another process in `state_dir` for `dir`, its alive file `alive` (which
    /// this test holds locked or not).
    fn foreign_mark(state_dir: &Path, dir: &Path, alive: &Path) -> PathBuf {
        let meta = std::fs::metadata(alive).unwrap();
        let mut liveness = liveness::this_process();
        liveness.instance = "another-process".into();
        liveness.alive_file = Some(liveness::AliveFile {
            path: alive.to_string_lossy().into_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        });
        let mark = Mark {
            what: "table restore of backup b".into(),
            dir: dir.to_path_buf(),
            host: "h".into(),
            pid: 4242,
            started: "2026-01-01T00:00:00Z".into(),
            liveness,
        };
        std::fs::create_dir_all(state_dir.join(MARKS_DIR)).unwrap();
        let path = state_dir.join(MARKS_DIR).join("m.json");
        std::fs::write(&path, serde_json::to_vec(&mark).unwrap()).unwrap();
        path
    }

    #[test]
    fn the_leftover_of_a_provably_ended_process_is_removed_and_said() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("table-restore-x");
        std::fs::create_dir_all(dir.join("copy")).unwrap();
        let alive = state.path().join("other.lock");
        let holder = std::fs::File::create(&alive).unwrap();
        rustix::fs::flock(
            &holder,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        let mark = foreign_mark(state.path(), &dir, &alive);
        let me = liveness::this_process();
        assert!(sweep(state.path()).is_empty(), "its process runs");
        assert!(dir.exists() && mark.exists());
        drop(holder);
        if me.boot_id.is_none() || me.pid_ns.is_none() {
            // Nothing is provable here: the leftover stays.
            assert!(sweep(state.path()).is_empty());
            return;
        }
        let lines = sweep(state.path());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("process 4242") && lines[0].contains("removed"),
            "{lines:?}"
        );
        assert!(!dir.exists() && !mark.exists());
        assert!(sweep(state.path()).is_empty(), "once");
    }

    #[test]
    fn a_mark_naming_a_directory_elsewhere_removes_nothing() {
        let state = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let dir = elsewhere.path().join("table-restore-x");
        std::fs::create_dir_all(&dir).unwrap();
        let alive = state.path().join("other.lock");
        std::fs::File::create(&alive).unwrap();
        let mark = foreign_mark(state.path(), &dir, &alive);
        let lines = sweep(state.path());
        assert!(dir.exists(), "never removed");
        let me = liveness::this_process();
        if me.boot_id.is_some() && me.pid_ns.is_some() {
            assert!(
                lines.len() == 1 && lines[0].contains("not removed"),
                "{lines:?}"
            );
            assert!(mark.exists());
        }
    }

    #[test]
    fn a_lease_removes_its_directory_and_mark_when_dropped() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("restore-drill-b");
        assert!(ScratchLease::take(state.path(), &state.path().join("x"), "w").is_err());
        let lease = ScratchLease::take(state.path(), &dir, "restore drill of backup b").unwrap();
        std::fs::create_dir_all(dir.join("n")).unwrap();
        let marks = || {
            std::fs::read_dir(state.path().join(MARKS_DIR))
                .unwrap()
                .flatten()
                .count()
        };
        assert_eq!(marks(), 1);
        // This process's own mark is never swept.
        assert!(sweep(state.path()).is_empty());
        drop(lease);
        assert!(!dir.exists());
        assert_eq!(marks(), 0);
    }
}
