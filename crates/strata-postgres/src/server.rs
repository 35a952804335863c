//! Starting a restored server and watching its recovery.
//!
//! `pg_ctl start -w` returns once the server accepts connections, which during a
//! point-in-time recovery is long before the target is reached. Recovery has ended when
//! the server is out of recovery (promoted), paused at the target, or stopped (target
//! action `shutdown`); a server that exits during recovery failed, and its log says why,
//! most often that the WAL to reach the target is not in the archive.

use crate::recovery::{RecoveryPlan, TargetAction};
use crate::{NodeSettings, PgError, PgResult};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a server runs on the node's data directory (`pg_ctl status`).
pub fn is_running(node: &NodeSettings) -> bool {
    Command::new(node.bin_dir.join("pg_ctl"))
        .arg("status")
        .arg("-D")
        .arg(&node.data_dir)
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// Why a postmaster may hold `data_dir`, or `None` when none can: the directory has no
/// `postmaster.pid`, or the one it has is provably stale. This is PostgreSQL's own
/// interlock (`CreateLockFile`), made stricter: a PID this host does not show is no proof
/// that the postmaster is gone (it may run in another PID namespace, a container), so the
/// lock counts as released only when
///
/// - the shared memory segment `postmaster.pid` names exists (same key) with no process
///   attached (the postmaster and every backend stay attached while they live), or
/// - nothing shows it alive (no process with its PID, no server on its socket) and it
///   started before this host booted (asked last: a clock stepped forward after the
///   server started moves the computed boot time past its start).
///
/// Anything else holds the directory: a live process with that PID (whoever owns it), a
/// segment still attached (a crashed postmaster's backends, or a postmaster this PID
/// namespace cannot see), a server answering on the socket it names, or a
/// `postmaster.pid` that cannot be read or proven stale.
pub fn held(data_dir: &Path) -> Option<String> {
    let pid_file = data_dir.join("postmaster.pid");
    let text = match std::fs::read(&pid_file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            return Some(format!(
                "{} cannot be read ({err}): a server may run there",
                pid_file.display()
            ))
        }
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let line = |i: usize| lines.get(i).copied().unwrap_or("");
    // PostgreSQL writes a negative PID for a single-user server.
    let Some(pid) = line(0).parse::<i64>().ok().map(|p| p.unsigned_abs()) else {
        return Some(format!(
            "{} names no process (a server may be starting there)",
            pid_file.display()
        ));
    };
    let named = format!("{} names process {pid}", pid_file.display());
    match shared_memory(line(6)) {
        Some(Segment::Attached(n)) => {
            return Some(format!(
                "{named}, and its shared memory is attached by {n} processes: a server (or a crashed postmaster's backends) still runs there, perhaps in another PID namespace"
            ))
        }
        Some(Segment::Detached) => return None,
        None => {}
    }
    let process = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(process) = process {
        match rustix::process::test_kill_process(process) {
            Ok(()) | Err(rustix::io::Errno::PERM) => {
                return Some(format!("{named}, which is running: a server runs there"))
            }
            Err(_) => {}
        }
    }
    if let (Ok(port), dir) = (line(3).parse::<u16>(), line(4)) {
        let socket = Path::new(dir).join(format!(".s.PGSQL.{port}"));
        if !dir.is_empty() && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Some(format!(
                "{named}, and a server answers on {}",
                socket.display()
            ));
        }
    }
    // Last, and only once nothing shows the server alive: a postmaster that started
    // before this host booted is gone. (Asked after the process and the socket: a clock
    // stepped forward since the server started can move the boot time past its start.)
    if let (Ok(started), Some(boot)) = (line(2).parse::<u64>(), boot_time()) {
        if started < boot {
            return None;
        }
    }
    Some(format!(
        "{named}, which this host does not show, and its shared memory is not found: that does not prove the server gone (it may run in another PID or IPC namespace); if no server uses {}, remove {} and try again",
        data_dir.display(),
        pid_file.display()
    ))
}

/// What became of the System V shared memory segment a postmaster made.
enum Segment {
    /// Processes are attached to it: the postmaster or its children live.
    Attached(u64),
    /// It exists, with nothing attached: every process of that server has ended.
    Detached,
}

/// The segment of `postmaster.pid`'s line 7 (`KEY ID`); `None` when the line names none
/// or it is gone (removed, or made in another IPC namespace: nothing is proven).
fn shared_memory(line: &str) -> Option<Segment> {
    let mut parts = line.split_whitespace();
    let key: i64 = parts.next()?.parse().ok()?;
    let id: i32 = parts.next()?.parse().ok()?;
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: shmctl(IPC_STAT) writes at most one shmid_ds into the buffer given, which
    // is a properly sized and aligned shmid_ds; it is read only when the call succeeded.
    #[allow(unsafe_code)] // System V shared memory has no safe binding: the reason above
    let ds = unsafe {
        if libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) != 0 {
            return None;
        }
        ds.assume_init()
    };
    // Another segment under a recycled id proves nothing about this server's.
    if i64::from(ds.shm_perm.__key) != key && (ds.shm_perm.__key as u32 as i64) != key {
        return None;
    }
    Some(match ds.shm_nattch {
        0 => Segment::Detached,
        n => Segment::Attached(n),
    })
}

/// When this host booted (seconds since the epoch, `btime` of `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Stops the server on the node's data directory (`pg_ctl stop -m fast`: sessions are
/// ended, a checkpoint is written), waiting up to `timeout`.
pub fn stop(node: &NodeSettings, timeout: Duration) -> PgResult<()> {
    let out = Command::new(node.bin_dir.join("pg_ctl"))
        .args(["stop", "-m", "fast", "-w", "-t"])
        .arg(timeout.as_secs().max(1).to_string())
        .arg("-D")
        .arg(&node.data_dir)
        .output()
        .map_err(PgError::io("cannot run", node.bin_dir.join("pg_ctl")))?;
    if out.status.success() || !is_running(node) {
        return Ok(());
    }
    Err(PgError::Refused(format!(
        "PostgreSQL on {} did not stop: {}",
        node.data_dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Closes the current WAL segment of a restored server that ended recovery, so the first
/// segment of its new timeline reaches the archive, and waits (up to `wait`) until it
/// has. Until then a replica built from the archive (Patroni's replica method, `reinit`)
/// finds the old timeline's segment there and replays past the fork. Returns a line for
/// the report; a server that does not archive says so.
pub async fn switch_and_archive(node: &NodeSettings, wait: Duration) -> PgResult<String> {
    let client = node.connect.connect().await?;
    let row = client
        .query_one(
            "SELECT current_setting('archive_mode') <> 'off', pg_walfile_name(pg_switch_wal())",
            &[],
        )
        .await
        .map_err(PgError::query("pg_switch_wal()"))?;
    let (archiving, segment): (bool, String) = (row.get(0), row.get(1));
    if !archiving {
        return Ok(format!("{segment} not archived (archive_mode is off)"));
    }
    let deadline = Instant::now() + wait;
    loop {
        let row = client
            .query_one(
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(PgError::query("pg_stat_archiver"))?;
        let archived: String = row.get(0);
        // Names sort by timeline, then position: the segment or a later one.
        if archived.len() == segment.len() && archived >= segment {
            return Ok(format!("its new timeline is archived up to {segment}"));
        }
        if Instant::now() >= deadline {
            return Err(PgError::Refused(format!(
                "{segment}, the first segment of the restored server's new timeline, did not reach the archive within {} s: replicas built from the archive would replay the old timeline past the restore point; check archive_command",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The most telling line of a failed recovery's log.
fn reason(log: &Path) -> String {
    reason_in(&std::fs::read_to_string(log).unwrap_or_default())
}

/// Whether a log line is a connection refused or ended while the server was not open
/// (`FATAL:  the database system is in recovery mode`, `... is shutting down`): what a
/// client met (strata's own wait connects every 100 ms), logged after the line that says
/// why the server stopped as often as not.
fn refused_client(line: &str) -> bool {
    line.contains("FATAL:  the database system is ")
        || line.contains("FATAL:  terminating connection due to administrator command")
}

/// The last FATAL or PANIC line of a log's `text` that is not a client's: why the server
/// stopped, when it stopped on an error.
fn fatal_in(text: &str) -> Option<&str> {
    text.lines()
        .rev()
        .filter(|l| !refused_client(l))
        .find(|l| l.contains("FATAL:") || l.contains("PANIC:"))
}

/// [`reason`] of a log's `text`: [`fatal_in`]'s line, explained when it is the target
/// that the WAL never reached, else the log's last lines but the clients' refusals.
fn reason_in(text: &str) -> String {
    match fatal_in(text) {
        Some(line)
            if line.contains("recovery ended before configured recovery target was reached") =>
        {
            format!(
            "the WAL needed to reach the recovery target is not in the archive (PostgreSQL: {})",
            line.trim()
        )
        }
        Some(line) => line.trim().to_string(),
        None => {
            let kept: Vec<&str> = text.lines().filter(|l| !refused_client(l)).collect();
            kept[kept.len().saturating_sub(15)..].join("\n")
        }
    }
}

/// Starts PostgreSQL on a prepared data directory and waits (up to `timeout`) until
/// recovery has ended as `plan` asks. The server log goes to `log`.
pub async fn start_and_recover(
    node: &NodeSettings,
    plan: &RecoveryPlan,
    log: &Path,
    timeout: Duration,
) -> PgResult<String> {
    let started = Instant::now();
    let status = Command::new(node.bin_dir.join("pg_ctl"))
        .args(["start", "-w", "-t"])
        .arg(timeout.as_secs().max(1).to_string())
        .arg("-D")
        .arg(&node.data_dir)
        .arg("-l")
        .arg(log)
        .output()
        .map_err(PgError::io("cannot run", node.bin_dir.join("pg_ctl")))?;
    if !status.status.success() {
        return Err(PgError::Refused(format!(
            "PostgreSQL did not start on {}: {}",
            node.data_dir.display(),
            reason(log)
        )));
    }
    if node.primary_conninfo.is_some() {
        return Ok("standby running".into());
    }
    loop {
        if started.elapsed() > timeout {
            return Err(PgError::Refused(format!(
                "recovery on {} did not end within {} s (see {})",
                node.data_dir.display(),
                timeout.as_secs(),
                log.display()
            )));
        }
        if !is_running(node) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if plan.action == TargetAction::Shutdown && fatal_in(&text).is_none() {
                return Ok("recovered and shut down at the target".into());
            }
            return Err(PgError::Refused(format!(
                "PostgreSQL stopped during recovery on {}: {}",
                node.data_dir.display(),
                reason_in(&text)
            )));
        }
        if let Ok(client) = node.connect.connect().await {
            let row = client
                .query_one(
                    // The pause state is an error outside recovery.
                    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END",
                    &[],
                )
                .await;
            if let Ok(row) = row {
                let in_recovery: bool = row.get(0);
                let pause: String = row.get(1);
                if !in_recovery {
                    return Ok("recovered and promoted".into());
                }
                if plan.action == TargetAction::Pause && pause == "paused" {
                    return Ok("recovered; paused at the target".into());
                }
            }
        }
        // Short: the restore is not over until this notices, and a query is cheap.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    #[test]
    fn a_clients_refusal_logged_last_does_not_hide_why_recovery_stopped() {
        let log = "\
2026-11-29 09:03:16.901 UTC [24610] LOG:  redo done at 0/5000148
2026-11-29 09:03:16.902 UTC [24610] FATAL:  recovery ended before configured recovery target was reached
2026-11-29 09:03:16.950 UTC [24600] LOG:  startup process (PID 24610) exited with exit code 1
2026-11-29 09:03:17.157 UTC [24630] FATAL:  the database system is in recovery mode
2026-11-29 09:03:17.160 UTC [24600] LOG:  database system is shut down
";
        let why = reason_in(log);
        assert!(why.contains("is not in the archive"), "{why}");
        assert!(fatal_in(log).is_some());
    }

    #[test]
    fn a_shutdown_at_the_target_amid_clients_refusals_is_no_failure() {
        let log = "\
2026-11-29 09:03:16.100 UTC [24630] FATAL:  the database system is not yet accepting connections
2026-11-29 09:03:16.200 UTC [24610] LOG:  recovery stopping before commit of transaction 745
2026-11-29 09:03:16.201 UTC [24610] LOG:  shutdown at recovery target
2026-11-29 09:03:16.300 UTC [24631] FATAL:  the database system is shutting down
2026-11-29 09:03:16.310 UTC [24632] FATAL:  terminating connection due to administrator command
2026-11-29 09:03:16.400 UTC [24600] LOG:  database system is shut down
";
        assert_eq!(fatal_in(log), None, "only clients' refusals");
        let why = reason_in(log);
        assert!(!why.contains("FATAL"), "{why}");
        assert!(why.contains("shutdown at recovery target"), "{why}");
    }
}
