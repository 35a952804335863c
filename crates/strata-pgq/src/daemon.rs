//! `--daemon`: a long-running command (the ticker, a Londiste worker) detaches by starting
//! itself again in a new session (no fork of a running async runtime, which is unsafe with
//! threads), then waits until the child has written its pidfile, so a child that fails at
//! start is reported by the parent.

use crate::ticker::config::TickerConfig;
use crate::ticker::Overrides;
use crate::PgqError;
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

/// Starts the ticker in the background; returns its pid once its pidfile names it.
/// `config` is the ticker's settings as read from its file (checked here: a daemon needs
/// a pidfile and a logfile).
pub fn detach(config: &TickerConfig, overrides: &Overrides) -> Result<u32, PgqError> {
    let pidfile = overrides
        .pidfile
        .clone()
        .or(config.pidfile.clone())
        .ok_or_else(|| {
            PgqError::BadInput("--daemon needs a pidfile (in the config or --pidfile)".into())
        })?;
    if overrides.logfile.is_none() && config.logfile.is_none() {
        return Err(PgqError::BadInput(
            "--daemon needs a logfile (in the config or --logfile): a daemon has no terminal"
                .into(),
        ));
    }
    spawn_detached(&pidfile, None, "ticker")
}

/// Starts this command again in the background, in a new session, with stdout and
/// stderr appended to `logfile` (or discarded); returns the child's pid once `pidfile`
/// names it. `what` names the command in errors.
pub fn spawn_detached(pidfile: &Path, logfile: Option<&Path>, what: &str) -> Result<u32, PgqError> {
    refuse_live(pidfile)?;
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
            return Err(PgqError::BadInput(format!(
                "the background {what} exited at start ({status}): see its logfile"
            )));
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

/// Fails when the pidfile at `path` names a process that still runs.
fn refuse_live(path: &Path) -> Result<(), PgqError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            // SAFETY: kill with signal 0 only checks that the process exists.
            if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 {
                return Err(PgqError::BadInput(format!(
                    "pidfile {} names running process {pid}: is one running already?",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// A pidfile that is removed when dropped. Refuses to start over a live process.
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's pid to `path`, unless it names a process that still runs.
    pub fn create(path: &Path) -> Result<PidFile, PgqError> {
        refuse_live(path)?;
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| PgqError::io(format!("writing pidfile {}", path.display()), e))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
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
