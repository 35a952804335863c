//! Recovery settings for a restored data directory.
//!
//! After the files of a base backup are back, PostgreSQL must be told to replay WAL from
//! the archive (through `strata wal-fetch`) up to a target, then what to do there. The
//! settings go into `postgresql.auto.conf` between two marker lines, replacing the block a
//! previous restore wrote, and `recovery.signal` (or `standby.signal` for a standby)
//! switches recovery on. WAL left in `pg_wal` from the server that lived here before is
//! removed: replaying it on top of the backup would mix two histories.

use crate::{NodeSettings, PgError, PgResult};
use serde::{Deserialize, Serialize};
use std::path::Path;
use strata_pg::quote_config_value;

const BEGIN: &str = "# --- strata restore: begin (rewritten by the next restore) ---";
const END: &str = "# --- strata restore: end ---";

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Replay every archived WAL file (the latest state).
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// A timestamp (`2026-11-23 05:00:00+00`).
    Time(String),
    /// A WAL position (`0/3000060`).
    Lsn(String),
    /// A transaction id.
    Xid(String),
}

/// What to do at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

impl TargetAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }

    pub fn parse(text: &str) -> Option<TargetAction> {
        match text {
            "promote" => Some(TargetAction::Promote),
            "pause" => Some(TargetAction::Pause),
            "shutdown" => Some(TargetAction::Shutdown),
            _ => None,
        }
    }
}

/// How a restored node recovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryPlan {
    pub target: Target,
    pub action: TargetAction,
    /// Whether to start PostgreSQL and wait for recovery to end.
    pub start: bool,
}

/// The settings block for `node`: `restore_command` runs `wal_fetch` (a command line
/// ending in `wal-fetch`), the target, and the port and socket directory the node's
/// connection settings expect the server at.
pub fn settings_block(node: &NodeSettings, plan: &RecoveryPlan, wal_fetch: &str) -> String {
    let mut lines = vec![BEGIN.to_string()];
    let mut set =
        |key: &str, value: &str| lines.push(format!("{key} = {}", quote_config_value(value)));
    set("restore_command", &format!("{wal_fetch} %f %p"));
    set("port", &node.connect.port.to_string());
    if node.connect.host.starts_with('/') {
        set("unix_socket_directories", &node.connect.host);
    }
    match &node.primary_conninfo {
        Some(conninfo) => {
            set("primary_conninfo", conninfo);
            set("recovery_target_timeline", "latest");
        }
        None => {
            // To a point in time: along the backup's own timeline (a later branch, such as
            // an earlier point-in-time restore's, may have forked before this backup). To
            // the end: follow the newest timeline, as after a failover.
            let timeline = if plan.target == Target::Latest {
                "latest"
            } else {
                "current"
            };
            set("recovery_target_timeline", timeline);
            match &plan.target {
                Target::Latest => {}
                Target::Immediate => set("recovery_target", "immediate"),
                Target::Time(t) => set("recovery_target_time", t),
                Target::Lsn(l) => set("recovery_target_lsn", l),
                Target::Xid(x) => set("recovery_target_xid", x),
            }
            if plan.target != Target::Latest {
                set("recovery_target_action", plan.action.as_str());
            }
        }
    }
    lines.push(END.to_string());
    lines.join("\n") + "\n"
}

/// `text` without a block an earlier restore wrote.
fn without_block(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Prepares a restored data directory for recovery. The server must not be running.
pub fn prepare(node: &NodeSettings, plan: &RecoveryPlan, wal_fetch: &str) -> PgResult<()> {
    let data = &node.data_dir;
    let io = |what: &str, path: &Path| PgError::io(what.to_string(), path.to_path_buf());
    for stale in [
        "postmaster.pid",
        "recovery.signal",
        "standby.signal",
        "backup_label.old",
    ] {
        let path = data.join(stale);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
        }
    }
    // PostgreSQL refuses a data directory others can enter (group read is allowed).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data)
        .map_err(io("cannot read", data))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o700 && mode != 0o750 {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot set permissions of", data))?;
    }
    let wal = data.join("pg_wal");
    if wal.is_dir() {
        for entry in std::fs::read_dir(&wal).map_err(io("cannot read", &wal))? {
            let path = entry.map_err(io("cannot read", &wal))?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
            } else {
                std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
            }
        }
    }
    let status = wal.join("archive_status");
    std::fs::create_dir_all(&status).map_err(io("cannot create", &status))?;
    let auto = data.join("postgresql.auto.conf");
    let old = std::fs::read_to_string(&auto).unwrap_or_default();
    let text = without_block(&old) + &settings_block(node, plan, wal_fetch);
    std::fs::write(&auto, text).map_err(io("cannot write", &auto))?;
    let signal = if node.primary_conninfo.is_some() {
        "standby.signal"
    } else {
        "recovery.signal"
    };
    let path = data.join(signal);
    std::fs::write(&path, b"").map_err(io("cannot write", &path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn node(dir: &Path, standby: bool) -> NodeSettings {
        NodeSettings {
            data_dir: dir.to_path_buf(),
            connect: strata_pg::ConnectSettings {
                host: "/tmp/sock dir".into(),
                port: 5544,
                ..Default::default()
            },
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            primary_conninfo: standby.then(|| "host=/tmp port=5432".to_string()),
            tablespaces: Default::default(),
        }
    }

    #[test]
    fn a_second_restore_replaces_the_first_block() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        std::fs::create_dir_all(data.join("pg_wal/archive_status")).unwrap();
        std::fs::write(data.join("pg_wal/000000010000000000000009"), b"old").unwrap();
        std::fs::write(data.join("postmaster.pid"), b"123").unwrap();
        std::fs::write(data.join("postgresql.auto.conf"), "work_mem = '8MB'\n").unwrap();
        let plan = RecoveryPlan {
            target: Target::Time("2026-11-23 05:00:00+00".into()),
            action: TargetAction::Promote,
            start: false,
        };
        prepare(
            &node(data, false),
            &plan,
            "/usr/bin/strata --config '/etc/s.toml' wal-fetch",
        )
        .unwrap();
        let plan = RecoveryPlan {
            target: Target::Lsn("0/3000000".into()),
            action: TargetAction::Pause,
            start: false,
        };
        prepare(&node(data, false), &plan, "strata wal-fetch").unwrap();
        let text = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        assert!(text.starts_with("work_mem = '8MB'\n"));
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.contains("recovery_target_lsn = '0/3000000'"));
        assert!(text.contains("recovery_target_action = 'pause'"));
        assert!(text.contains("recovery_target_timeline = 'current'"));
        assert!(!text.contains("recovery_target_time ="));
        assert!(text.contains("restore_command = 'strata wal-fetch %f %p'"));
        assert!(text.contains("port = '5544'"));
        assert!(text.contains("unix_socket_directories = '/tmp/sock dir'"));
        assert!(data.join("recovery.signal").exists());
        assert!(!data.join("postmaster.pid").exists());
        assert!(!data.join("pg_wal/000000010000000000000009").exists());
        assert!(data.join("pg_wal/archive_status").is_dir());
    }

    #[test]
    fn a_standby_streams_from_its_primary() {
        let dir = tempfile::tempdir().unwrap();
        let plan = RecoveryPlan {
            target: Target::Latest,
            action: TargetAction::Promote,
            start: false,
        };
        prepare(&node(dir.path(), true), &plan, "strata wal-fetch").unwrap();
        let text = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(text.contains("primary_conninfo = 'host=/tmp port=5432'"));
        assert!(!text.contains("recovery_target_action"));
        assert!(dir.path().join("standby.signal").exists());
        assert!(!dir.path().join("recovery.signal").exists());
    }

    #[test]
    fn quotes_in_values_cannot_break_out() {
        let dir = tempfile::tempdir().unwrap();
        let plan = RecoveryPlan {
            target: Target::Time("x'; archive_command = 'rm -rf /".into()),
            action: TargetAction::Promote,
            start: false,
        };
        let block = settings_block(&node(dir.path(), false), &plan, "strata wal-fetch");
        assert!(block.contains("recovery_target_time = 'x''; archive_command = ''rm -rf /'"));
    }
}
