//! Starting the WAL prefetcher (`strata wal prefetch`) beside a recovery that a restore
//! is about to start, so the first segments are spooled before PostgreSQL asks and the
//! asks of its `restore_command` are answered without a repository open each (see
//! [`crate::wal::prefetch`]). A `wal-fetch` that misses the spool starts one too; a
//! second one for the same spool exits at once.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts `<strata and its options> wal prefetch --after AFTER`, the command prefix taken
/// from `wal_fetch` (the `restore_command` without ` %f %p`, ending in `wal-fetch`), in
/// its own process group, as the owner of `data_dir` (recovery's `wal-fetch` runs as that
/// user and shares the spool), its output appended to `log`. It stops by itself once
/// recovery has asked for nothing for `postgres.wal_prefetch_idle_secs`. Failing to
/// start it only costs speed, so failures are returned for a note, never fatal.
pub fn start(wal_fetch: &str, after: &str, data_dir: &Path, log: &Path) -> std::io::Result<()> {
    let prefix = wal_fetch.strip_suffix("wal-fetch").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the wal-fetch command does not end in wal-fetch",
        )
    })?;
    if crate::walname::WalFileKind::parse(after).is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a WAL file name",
        ));
    }
    let owner = std::fs::metadata(data_dir)?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new("/bin/sh");
    // `after` is a checked WAL file name: nothing for the shell to interpret.
    cmd.arg("-c")
        .arg(format!("exec {prefix}wal prefetch --after {after}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    if rustix::process::geteuid().is_root() {
        cmd.uid(owner.uid()).gid(owner.gid());
    }
    cmd.spawn()?;
    Ok(())
}
