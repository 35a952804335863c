//! Patroni's hooks into strata: a replica creation method (`patroni-replica`) and a
//! custom bootstrap method (`patroni-bootstrap`). Each lays a PostgreSQL backup down in
//! the data directory Patroni names and leaves the rest to Patroni: it writes its own
//! `postgresql.conf` and signal files and starts the server, recovering WAL through the
//! `restore_command` its configuration gives (`strata wal-fetch %f %p`).

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use std::path::PathBuf;
use strata_api::requests::RestoreOptions;

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

impl Context {
    /// Lays the backup down in Patroni's `--datadir`: the latest complete one, or for a
    /// bootstrap with `--target-time` the newest complete one that had ended by then.
    pub(crate) async fn patroni_lay_down(&self, args: &[String], bootstrap: bool) -> CommandResult {
        let datadir = argument(args, "datadir")
            .map(PathBuf::from)
            .ok_or_else(|| {
                Failure::new(code::USAGE, "Patroni passes --datadir DIR: none was given")
            })?;
        if datadir
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some())
        {
            return Err(Failure::new(
                code::USAGE,
                format!(
                    "{} is not empty: Patroni hands replica and bootstrap methods an empty data directory",
                    datadir.display()
                ),
            ));
        }
        let target = argument(args, "target-time").filter(|_| bootstrap);
        let wanted = "latest";
        let plan = target
            .clone()
            .map(|t| strata_postgres::recovery::RecoveryPlan {
                target: strata_postgres::recovery::Target::Time(t),
                action: strata_postgres::recovery::TargetAction::Promote,
                start: false,
                no_archive: false,
            });
        // Owners as recorded when run as root (the default), so postgres owns its files.
        let options = RestoreOptions::default();
        let (summary, restored) = self
            .local
            .restore_postgres_into(wanted, plan.as_ref(), &datadir, options)
            .await?;
        if let Some(errors) = restored.iter().find(|r| !r.report.errors.is_empty()) {
            return Err(Failure::new(
                code::DAMAGED,
                format!(
                    "backup {}: {} did not come back whole: {}",
                    summary.name, errors.node, errors.report.errors[0]
                ),
            ));
        }
        // What Patroni writes itself must not be there already.
        for stale in ["recovery.signal", "standby.signal", "postmaster.pid"] {
            let _ = std::fs::remove_file(datadir.join(stale));
        }
        let status = datadir.join("pg_wal/archive_status");
        std::fs::create_dir_all(&status)
            .map_err(|e| Failure::new(code::FAILED, format!("{}: {e}", status.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&datadir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Failure::new(code::FAILED, format!("{}: {e}", datadir.display())))?;
        }
        self.say(format!(
            "backup {} laid down in {} for Patroni ({}){}",
            summary.name,
            datadir.display(),
            if bootstrap { "bootstrap" } else { "replica" },
            target
                .map(|t| format!("; its recovery_conf recovers it to {t}"))
                .unwrap_or_default()
        ));
        Ok(0)
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
