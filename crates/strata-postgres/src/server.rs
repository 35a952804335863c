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

/// The last lines of a log, for an error message.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The most telling line of a failed recovery's log.
fn reason(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let fatal = text
        .lines()
        .rev()
        .find(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .map(str::to_string);
    match fatal {
        Some(line)
            if line.contains("recovery ended before configured recovery target was reached") =>
        {
            format!(
            "the WAL needed to reach the recovery target is not in the archive (PostgreSQL: {})",
            line.trim()
        )
        }
        Some(line) => line.trim().to_string(),
        None => log_tail(log, 15),
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
            if plan.action == TargetAction::Shutdown && !reason(log).contains("FATAL") {
                return Ok("recovered and shut down at the target".into());
            }
            return Err(PgError::Refused(format!(
                "PostgreSQL stopped during recovery on {}: {}",
                node.data_dir.display(),
                reason(log)
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
