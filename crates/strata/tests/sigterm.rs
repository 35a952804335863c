//! SIGTERM during a backup, as a unit's stop or a package upgrade sends it: the backup
//! ends within the stop timeout, recorded `failed` with the reason (summary, audit), with
//! nothing visible as complete, the cluster lock and the nodes' leases given back, so the
//! next backup runs at once. Both for `strata backup` run here and for `strata server`.
//!
//! The backup is held at its first pack upload (the test-only `STRATA_TEST_HOLD_WRITE`
//! switch) so the signal always arrives while it runs, however fast the machine.

use crate::common;

use common::server::Server;
use common::{one_node_site, strata_at, strata_with_token};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use strata_testkit::process::{
    terminate_child_within, terminate_within, wait_for_mark, KillOnDrop,
};

/// Generous: a guard against a hang, not a timing assertion (systemd's default stop
/// timeout is 90 s).
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// One node over a fresh repository, its lease far longer than the stop limit: only a
/// real release lets the next backup in.
fn site() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = one_node_site(dir.path(), "[server]\nlease_ttl_secs = 600\n");
    let init = strata_at(dir.path(), &config).arg("init").status().unwrap();
    assert!(init.success());
    (dir, config)
}

fn held(cmd: &mut Command, dir: &Path) -> std::path::PathBuf {
    let hold = dir.join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    cmd.env(
        "STRATA_TEST_HOLD_WRITE",
        format!("data/:{}", hold.display()),
    );
    hold
}

fn list(dir: &Path, config: &Path) -> Vec<serde_json::Value> {
    let out = strata_at(dir, config)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// The one backup recorded: failed, its node's error naming the signal; nothing else.
fn assert_recorded_failed_by_sigterm(dir: &Path, config: &Path) {
    let backups = list(dir, config);
    assert_eq!(backups.len(), 1, "{backups:#?}");
    assert_eq!(backups[0]["status"], "failed", "{:#?}", backups[0]);
    let error = backups[0]["nodes"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("SIGTERM"),
        "the reason is recorded: {:#?}",
        backups[0]
    );
    let audit = strata_at(dir, config)
        .args(["audit", "--json"])
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "backup"
            && e["outcome"] == "failed"
            && e["detail"].as_str().unwrap_or_default().contains("SIGTERM")),
        "the audit log says why: {entries:#?}"
    );
    // The lock and the leases were given back: the next backup runs now, not after a TTL.
    let out = strata_at(dir, config).arg("backup").output().unwrap();
    assert!(
        out.status.success(),
        "the next backup is not refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statuses: Vec<String> = list(dir, config)
        .iter()
        .map(|b| b["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["failed", "complete"]);
}

#[test]
fn sigterm_ends_a_backup_here_recorded_failed_and_the_lock_released() {
    let (dir, config) = site();
    let mut cmd = strata_at(dir.path(), &config);
    let hold = held(&mut cmd, dir.path());
    let mut backup = KillOnDrop(
        cmd.arg("backup")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_mark(
        &mut backup.0,
        &hold.join("held"),
        STOP_LIMIT,
        "strata backup",
    );
    let code = terminate_within(&mut backup, STOP_LIMIT);
    let mut stderr = String::new();
    std::io::Read::read_to_string(backup.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(3), "a failed backup's exit code: {stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert_recorded_failed_by_sigterm(dir.path(), &config);
}

#[test]
fn sigterm_stops_a_server_with_its_running_backup_recorded_failed() {
    let (dir, config) = site();
    let mut cmd = strata_with_token(dir.path(), &config, "user-token");
    let hold = held(&mut cmd, dir.path());
    let mut server = Server::start(cmd, &dir.path().join("server.log"));
    let url = server.url.clone();
    let started = common::server::http(&url, "POST", "/api/v1/backups", Some("user-token"), "");
    assert_eq!(started.status, 202, "{}", started.body);
    wait_for_mark(
        server.child(),
        &hold.join("held"),
        STOP_LIMIT,
        "the server's backup",
    );
    let code = terminate_child_within(server.child(), STOP_LIMIT);
    assert_eq!(code, Some(0), "a server that stopped as asked exits 0");
    assert_recorded_failed_by_sigterm(dir.path(), &config);
}

#[test]
fn sigterm_to_a_cli_following_a_server_leaves_at_once_and_the_server_goes_on() {
    let (dir, config) = site();
    let mut cmd = strata_with_token(dir.path(), &config, "user-token");
    let hold = held(&mut cmd, dir.path());
    let mut server = Server::start(cmd, &dir.path().join("server.log"));
    let url = server.url.clone();
    let mut follower = KillOnDrop(
        strata_with_token(dir.path(), &config, "user-token")
            .args(["--server", &url, "backup", "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_mark(
        server.child(),
        &hold.join("held"),
        STOP_LIMIT,
        "the server's backup",
    );
    // The follower goes (a signal ends it, as before), well before the held backup could.
    let code = terminate_within(&mut follower, Duration::from_secs(20));
    assert_ne!(
        code,
        Some(0),
        "a follower stopped by a signal does not claim success"
    );
    // The server's backup was not stopped by the follower leaving.
    let status = common::server::http(&url, "GET", "/api/v1/status", Some("user-token"), "").json();
    assert_eq!(
        status["operations"].as_array().map(|o| o.len()),
        Some(1),
        "the server's backup still runs: {status}"
    );
}
