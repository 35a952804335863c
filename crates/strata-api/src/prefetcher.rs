//! The WAL prefetcher beside recovery: `wal-fetch` starts `strata wal prefetch --after
//! NAME` in the background when recovery asks for a file the read-ahead spool lacks, so
//! the next ones are spooled by the time they are asked for.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts this executable as `wal prefetch --after AFTER` with the options `settings`
/// (the caller's own: its configuration, repository, storage, state directory), its
/// output appended to `log`. It outlives the caller (the next `wal-fetch` finds its
/// files spooled); a second one exits at once (one per spool). Failing to start it only
/// costs speed, so nothing is reported.
pub fn spawn_prefetcher(settings: Vec<OsString>, log: &Path, after: &str) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    let (out, err) = match log.and_then(|file| Ok((file.try_clone()?, file))) {
        Ok((out, err)) => (out.into(), err.into()),
        Err(_) => (Stdio::null(), Stdio::null()),
    };
    let _ = Command::new(exe)
        .args(settings)
        .args(["wal", "prefetch", "--after", after])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: a signal to recovery's restore_command is not its.
        .process_group(0)
        .spawn();
}
