//! Restores that lay a backup down in a directory of this host: `strata restore --to DIR`
//! and Patroni's replica creation and bootstrap methods (`strata patroni-replica`,
//! `strata patroni-bootstrap`), which leave the rest to Patroni: it writes its own
//! `postgresql.conf` and signal files and starts the server, recovering WAL through the
//! `restore_command` its configuration gives (`strata wal-fetch %f %p`).

use crate::failure::{CoordinatorError, ErrorCode};
use crate::InProcess;
use std::path::{Path, PathBuf};
use strata_agent::restore::RestoreOptions;
use strata_coordinator::restore::DirRestore;
use strata_coordinator::CoordinatorResult;
use strata_postgres::recovery::{RecoveryPlan, Target, TargetAction};
use strata_repo::summary::{BackupSummary, ComponentStatus};

/// A backup restored into a directory here.
#[derive(Debug)]
pub struct DirRestored {
    /// The backup restored.
    pub summary: BackupSummary,
    /// Each node restored, where, and what its restore did.
    pub restored: Vec<DirRestore>,
    /// The components left out, and why (see [`skipped_into_dir`]).
    pub skipped: Vec<(String, String)>,
}

impl DirRestored {
    /// Every entry not restored, as `node: why`.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for r in &self.restored {
            for e in &r.report.errors {
                errors.push(format!("{}: {e}", r.node));
            }
        }
        errors
    }
}

/// The components of `summary` a restore into a directory leaves out, and why: those
/// without nodes (Camunda, `command`, `http`) have no files in the repository, their
/// data is in the external system's own snapshots.
pub fn skipped_into_dir(summary: &BackupSummary) -> Vec<(String, String)> {
    summary
        .components
        .iter()
        .filter(|c| c.nodes.is_empty() && c.status() == ComponentStatus::Complete)
        .map(|c| {
            let why = match c.plugin.as_str() {
                "camunda" => "its restore is a checklist the operator runs against the Camunda engines (`strata restore` without --to prints it); strata keeps no files of it".to_string(),
                plugin => format!("a {plugin} component is a snapshot in its own system, restored through that system (`strata restore` without --to); strata keeps no files of it"),
            };
            (c.name.clone(), why)
        })
        .collect()
}

/// Why Patroni's method did not lay a backup down.
#[derive(Debug, thiserror::Error)]
pub enum LayDownError {
    /// Patroni's arguments or its data directory are not what the method needs.
    #[error("{0}")]
    Usage(String),
    /// The restore did not bring every file back.
    #[error("{0}")]
    Damaged(String),
    /// The data directory could not be prepared for Patroni.
    #[error("{path}: {why}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        why: std::io::Error,
    },
    /// The backup could not be found or restored.
    #[error(transparent)]
    Restore(#[from] CoordinatorError),
}

impl LayDownError {
    /// The failure's kind, as the API and the exit codes name it.
    pub fn code(&self) -> ErrorCode {
        match self {
            LayDownError::Usage(_) => ErrorCode::BadRequest,
            LayDownError::Damaged(_) => ErrorCode::Damaged,
            LayDownError::Io { .. } => ErrorCode::Failed,
            LayDownError::Restore(err) => err.code(),
        }
    }
}

/// A backup laid down for Patroni.
#[derive(Debug)]
pub struct LaidDown {
    /// The backup's name.
    pub backup: String,
    /// Patroni's data directory.
    pub datadir: PathBuf,
    /// The time Patroni's `recovery_conf` recovers it to (a bootstrap's
    /// `--target-time`).
    pub target: Option<String>,
}

/// The value of `--name VALUE` or `--name=VALUE` among Patroni's arguments (names with
/// `-` and `_` alike: Patroni passes settings as they are spelled in its YAML).
fn argument(args: &[String], name: &str) -> Option<String> {
    let same = |arg: &str| arg.trim_start_matches('-').replace('_', "-") == name;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some((key, value)) = arg.split_once('=') {
            if key.starts_with("--") && same(key) {
                return Some(value.to_string());
            }
        } else if arg.starts_with("--") && same(arg) {
            return iter.next().cloned();
        }
    }
    None
}

impl InProcess {
    /// `strata restore --to DIR`: the backup's nodes (or `node`) into `to`, only what is
    /// at or below `path` when given, every byte verified.
    pub async fn restore_to_dir(
        &self,
        wanted: &str,
        to: &Path,
        node: Option<&str>,
        path: Option<&str>,
        mut options: RestoreOptions,
    ) -> CoordinatorResult<DirRestored> {
        if let Some(path) = path {
            // The same check as a cluster restore's and the API's.
            strata_coordinator::input::check_include(path).map_err(CoordinatorError::Invalid)?;
        }
        options.include = path.map(|p| p.trim_matches('/').as_bytes().to_vec());
        let (summary, restored) = self.restore_into(wanted, to, node, options).await?;
        let skipped = match node {
            None => skipped_into_dir(&summary),
            Some(_) => Vec::new(),
        };
        Ok(DirRestored {
            summary,
            restored,
            skipped,
        })
    }

    /// Patroni's method: lays a backup down in Patroni's `--datadir` (empty), the latest
    /// complete one, or for a `bootstrap` with `--target-time` the newest complete one
    /// that had ended by then.
    pub async fn patroni_lay_down(
        &self,
        args: &[String],
        bootstrap: bool,
    ) -> Result<LaidDown, LayDownError> {
        let datadir = argument(args, "datadir")
            .map(PathBuf::from)
            .ok_or_else(|| {
                LayDownError::Usage("Patroni passes --datadir DIR: none was given".into())
            })?;
        if datadir
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some())
        {
            return Err(LayDownError::Usage(format!(
                "{} is not empty: Patroni hands replica and bootstrap methods an empty data directory",
                datadir.display()
            )));
        }
        let target = argument(args, "target-time").filter(|_| bootstrap);
        let plan = target.clone().map(|t| RecoveryPlan {
            target: Target::Time(t),
            action: TargetAction::Promote,
            start: false,
            no_archive: false,
        });
        // Owners as recorded when run as root (the default), so postgres owns its files.
        let options = RestoreOptions::default();
        let (summary, restored) = self
            .restore_postgres_into("latest", plan.as_ref(), &datadir, options)
            .await?;
        if let Some(errors) = restored.iter().find(|r| !r.report.errors.is_empty()) {
            return Err(LayDownError::Damaged(format!(
                "backup {}: {} did not come back whole: {}",
                summary.name, errors.node, errors.report.errors[0]
            )));
        }
        // What Patroni writes itself must not be there already.
        for stale in ["recovery.signal", "standby.signal", "postmaster.pid"] {
            let _ = std::fs::remove_file(datadir.join(stale));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |why| LayDownError::Io { path, why }
        };
        let status = datadir.join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).map_err(io(&status))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&datadir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&datadir))?;
        }
        Ok(LaidDown {
            backup: summary.name,
            datadir,
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patronis_arguments_are_read_in_both_forms() {
        let args: Vec<String> = [
            "--scope=demo",
            "--role",
            "replica",
            "--datadir",
            "/var/lib/pg",
            "--target_time=2026-11-26 10:00:00+00",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(argument(&args, "datadir").as_deref(), Some("/var/lib/pg"));
        assert_eq!(argument(&args, "scope").as_deref(), Some("demo"));
        assert_eq!(
            argument(&args, "target-time").as_deref(),
            Some("2026-11-26 10:00:00+00")
        );
        assert_eq!(argument(&args, "connstring"), None);
    }
}
